//! The real `imipd serve` binary on vdir stores with the outbox transport.
//!
//! What a new user of the quick start sees: an invitation copied into the organizer's
//! folder becomes an email in the outbox and a copy in the local attendee's calendar;
//! the attendee's answer lands in the organizer's copy; a restart redoes nothing; and a
//! SIGTERM in the middle of a burst of changes loses nothing and sends nothing twice.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::site::{self, stop, write_event};
use support::{free_port, Site};

/// Alice and Bob on vdir stores; mail goes to the outbox.
fn new_site(name: &str) -> Site {
    let site = Site::new(&format!("daemon-{name}"), &["alice", "bob"]);
    site.write_config(&site::config(
        &["alice", "bob"],
        "debounce_ms = 50\n",
        "[queue]\noutbox = \"outbox\"\n",
    ));
    site
}

/// A site whose daemon also serves metrics on a free loopback port.
fn with_metrics(name: &str) -> (Site, u16) {
    let site = new_site(name);
    let port = free_port();
    site.add_config(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    (site, port)
}

/// GET /metrics over plain HTTP.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics listener");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

fn event(uid: &str, summary: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
         DTSTAMP:20300101T090000Z\r\nDTSTART:20300610T103000Z\r\nDTEND:20300610T113000Z\r\n\
         SUMMARY:{summary}\r\nORGANIZER;CN=Alice:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\nATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\n\
         ATTENDEE;RSVP=TRUE:mailto:carol@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// Bob accepts in his own copy, saved as a careful client saves.
fn accept_as_bob(bob_copy: &Path) {
    let accepted = std::fs::read_to_string(bob_copy)
        .expect("bob's copy")
        .replace(
            "PARTSTAT=NEEDS-ACTION:mailto:bob",
            "PARTSTAT=ACCEPTED:mailto:bob",
        );
    assert!(
        accepted.contains("PARTSTAT=ACCEPTED:mailto:bob"),
        "{accepted}"
    );
    write_event(
        bob_copy.parent().expect("folder"),
        &bob_copy.file_name().expect("name").to_string_lossy(),
        &accepted,
    );
}

/// An email from the outbox, parsed.
fn parsed(bytes: &[u8]) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default()
        .parse(bytes)
        .expect("a parsable email")
}

/// The first address the email is To.
fn first_to(mail: &mail_parser::Message) -> String {
    mail.to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_invitation_reaches_the_outbox_and_the_local_attendee_and_the_answer_comes_back() {
    let (site, metrics_port) = with_metrics("story");
    let daemon = site.start();

    write_event(
        &site.dir.join("stores/alice/calendar"),
        "lunch.ics",
        &event("lunch-1", "Lunch"),
    );
    site.eventually("the invitation email", || site.files("outbox").len() == 1);
    site.eventually("bob's copy", || {
        site.files("stores/bob/calendar").len() == 1
    });
    let bytes = std::fs::read(&site.files("outbox")[0]).expect("eml");
    let mail = parsed(&bytes);
    let to = first_to(&mail);
    assert_eq!(to, "carol@example.net");
    let subject = mail.subject().unwrap_or_default();
    assert!(
        subject.starts_with("Invitation: Lunch @ Mon 10 Jun 2030 10:30"),
        "{subject}"
    );
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("text/calendar; method=REQUEST") || text.contains("method=\"REQUEST\""),
        "{text}"
    );

    // Bob accepts in his own calendar: Alice's copy shows it.
    accept_as_bob(&site.files("stores/bob/calendar").remove(0));
    let alice_copy = site.dir.join("stores/alice/calendar/lunch.ics");
    site.eventually("bob's answer in alice's copy", || {
        std::fs::read_to_string(&alice_copy)
            .map(|t| {
                t.replace("\r\n ", "")
                    .lines()
                    .any(|l| l.contains("mailto:bob") && l.contains("PARTSTAT=ACCEPTED"))
            })
            .unwrap_or(false)
    });
    let alice_text = std::fs::read_to_string(&alice_copy)
        .expect("alice's copy")
        .replace("\r\n ", "");
    assert!(alice_text.contains("SEQUENCE:1"), "{alice_text}");
    let carol = alice_text
        .lines()
        .find(|l| l.contains("mailto:carol"))
        .unwrap_or_default();
    assert!(
        carol.contains("SCHEDULE-STATUS=1.1"),
        "carol's invitation was sent: {carol}"
    );

    // What an admin's Prometheus sees, once the queue has settled.
    let expected = [
        "imipd_messages_sent_total 1",
        "imipd_messages_delivered_locally_total 2",
        "imipd_queue_depth 0",
        "imipd_change_to_handoff_seconds_count 3",
    ];
    site.eventually("the metrics", || {
        let metrics = scrape(metrics_port);
        expected.iter().all(|line| metrics.contains(line))
    });
    daemon.stop();

    // A restart finds nothing new to do.
    let daemon = site.start();
    std::thread::sleep(Duration::from_millis(500));
    daemon.stop();
    assert_eq!(site.files("outbox").len(), 1, "nothing sent twice");
}

#[test]
fn sigterm_during_a_burst_loses_nothing_and_sends_nothing_twice() {
    let site = new_site("burst");
    let mut daemon = Some(site.serve());
    site.eventually("startup", || site.log().contains("imipd is running"));
    let calendar = site.dir.join("stores/alice/calendar");
    const EVENTS: usize = 40;
    for i in 0..EVENTS {
        write_event(
            &calendar,
            &format!("ev-{i}.ics"),
            &event(&format!("burst-{i}"), &format!("Meeting {i}")),
        );
        if i == EVENTS / 2 {
            // Stop in the middle of the burst; the rest is written while it is down.
            if let Some(running) = daemon.take() {
                stop(running);
            }
        }
    }
    let daemon = site.serve();
    site.eventually("every invitation", || site.files("outbox").len() >= EVENTS);
    site.eventually("every local copy", || {
        site.files("stores/bob/calendar").len() >= EVENTS
    });
    std::thread::sleep(Duration::from_millis(500));
    stop(daemon);
    assert_eq!(
        site.files("outbox").len(),
        EVENTS,
        "exactly one email per event"
    );
    assert_eq!(
        site.files("stores/bob/calendar").len(),
        EVENTS,
        "exactly one copy per event"
    );
    let mut recipients_per_uid = std::collections::BTreeMap::new();
    for file in site.files("outbox") {
        let text = std::fs::read_to_string(&file).expect("eml");
        let uid = text
            .lines()
            .find_map(|l| l.strip_prefix("X-Imipd-Item: uid="))
            .and_then(|v| v.split(';').next())
            .unwrap_or_default()
            .to_string();
        *recipients_per_uid.entry(uid).or_insert(0) += 1;
    }
    assert_eq!(recipients_per_uid.len(), EVENTS, "{recipients_per_uid:?}");
    assert!(
        recipients_per_uid.values().all(|n| *n == 1),
        "{recipients_per_uid:?}"
    );
}

#[test]
fn a_user_added_by_sighup_gets_a_baseline_then_is_scheduled() {
    let site = new_site("sighup");
    // Bob's folder already holds an event he organizes, but he is not configured yet.
    let bob_calendar = site.dir.join("stores/bob/calendar");
    let bobs_old =
        event("bob-old", "Old plan").replace("mailto:alice@example.com", "mailto:bob@example.com");
    write_event(
        &bob_calendar,
        "old.ics",
        &bobs_old.replacen(
            "ATTENDEE;RSVP=TRUE:mailto:bob@example.com",
            "ATTENDEE;RSVP=TRUE:mailto:alice@example.com",
            1,
        ),
    );
    let config = site.dir.join("imipd.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let without_bob = text.replace(
        "[[user]]\nname = \"bob\"\naddresses = [\"bob@example.com\"]\n",
        "",
    );
    assert_ne!(text, without_bob);
    std::fs::write(&config, &without_bob).expect("config without bob");

    let daemon = site.start();
    std::fs::write(&config, &text).expect("config with bob");
    let _ = Command::new("kill")
        .args(["-HUP", &daemon.id().to_string()])
        .status();
    site.eventually("reload", || site.log().contains("user map reloaded"));

    // Touching the old event must not send it: it is bob's past, not a change.
    let touched = std::fs::read_to_string(bob_calendar.join("old.ics")).expect("old");
    write_event(&bob_calendar, "old.ics", &touched);
    site.eventually("bob's baseline", || {
        site.log().contains("newly configured users")
    });
    // A new event bob creates now is scheduled.
    let bobs_new = bobs_old
        .replace("bob-old", "bob-new")
        .replace("Old plan", "New plan");
    write_event(&bob_calendar, "new.ics", &bobs_new);
    site.eventually("bob's new invitation", || site.files("outbox").len() == 1);
    std::thread::sleep(Duration::from_millis(500));
    daemon.stop();
    let bytes = std::fs::read(&site.files("outbox")[0]).expect("eml");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("uid=bob-new"),
        "only the new event is sent: {text}"
    );
    assert_eq!(site.files("outbox").len(), 1);
}

#[test]
fn a_calendar_folder_that_vanishes_and_returns_cancels_nothing() {
    let site = new_site("vanish");
    site.replace_in_config("debounce_ms = 50", "debounce_ms = 50\nrescan_interval = 1");
    let daemon = site.start();
    let calendar = site.dir.join("stores/alice/calendar");
    write_event(&calendar, "lunch.ics", &event("vanish-1", "Lunch"));
    site.eventually("the invitation", || site.files("outbox").len() == 1);

    // The folder disappears (an unmounted share), through a few rescans, and returns.
    let away = site.dir.join("away");
    std::fs::rename(&calendar, &away).expect("move away");
    site.eventually("the rescans that see it missing", || {
        site.log().contains("calendar folder is missing")
    });
    std::thread::sleep(Duration::from_millis(2500));
    std::fs::rename(&away, &calendar).expect("move back");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        site.files("outbox").len(),
        1,
        "no CANCEL, no new invitation:\n{}",
        site.log()
    );
    assert_eq!(
        site.log().matches("calendar folder is missing").count(),
        1,
        "logged once, not per scan"
    );

    // A real deletion still cancels.
    std::fs::remove_file(calendar.join("lunch.ics")).expect("delete");
    site.eventually("the cancellation", || site.files("outbox").len() == 2);
    daemon.stop();
}

#[test]
fn a_file_saved_as_soon_as_the_daemon_says_it_is_running_is_sent_without_a_rescan() {
    let site = new_site("ready");
    // No rescan during the test: only the file watcher can notice the save.
    site.replace_in_config(
        "debounce_ms = 50",
        "debounce_ms = 50\nrescan_interval = 3600",
    );
    // A store with many folders of users not configured here, so setting up the
    // recursive watch takes a while: the daemon must not say it is running before.
    for i in 0..10000 {
        std::fs::create_dir_all(site.dir.join(format!("stores/other-{i}")))
            .expect("another user's folder");
    }
    let daemon = site.serve();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !site.log().contains("imipd is running") {
        assert!(Instant::now() < deadline, "startup:\n{}", site.log());
        std::thread::sleep(Duration::from_millis(2));
    }
    write_event(
        &site.dir.join("stores/alice/calendar"),
        "early.ics",
        &event("early-1", "Early"),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while site.files("outbox").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(25));
    }
    let sent = site.files("outbox").len();
    stop(daemon);
    assert_eq!(
        sent,
        1,
        "the save right after start was not noticed:\n{}",
        site.log()
    );
}

#[test]
fn with_attendee_list_hidden_no_attendee_learns_of_another_and_answers_still_arrive() {
    let site = new_site("hidden");
    site.replace_in_config("[mail]\n", "[mail]\nattendee_list = \"hidden\"\n");
    let daemon = site.start();
    let invitation = event("secret-1", "Surprise party").replace(
        "ATTENDEE;RSVP=TRUE:mailto:carol@example.net\r\n",
        "ATTENDEE;RSVP=TRUE:mailto:carol@example.net\r\nATTENDEE;RSVP=TRUE:mailto:dave@example.org\r\n",
    );
    write_event(
        &site.dir.join("stores/alice/calendar"),
        "party.ics",
        &invitation,
    );
    site.eventually("two emails and bob's copy", || {
        site.files("outbox").len() == 2 && site.files("stores/bob/calendar").len() == 1
    });
    let unfolded = |path: &Path| {
        String::from_utf8_lossy(&std::fs::read(path).expect("read")).replace("\r\n ", "")
    };
    let everyone = ["bob@example.com", "carol@example.net", "dave@example.org"];
    for file in site.files("outbox") {
        let bytes = std::fs::read(&file).expect("eml");
        let mail = parsed(&bytes);
        let to = first_to(&mail);
        // Decoded parts: the calendar (both copies) and the texts.
        let mut seen = String::new();
        for part in &mail.parts {
            seen.push_str(&String::from_utf8_lossy(part.contents()).replace("\r\n ", ""));
        }
        for other in everyone.iter().filter(|a| **a != to) {
            assert!(
                !seen.contains(other),
                "the email to {to} names {other}:\n{seen}"
            );
        }
        assert!(seen.contains("ORGANIZER"), "{seen}");
    }
    let bob_copy = site.files("stores/bob/calendar").remove(0);
    let copy = unfolded(&bob_copy);
    assert!(
        !copy.contains("carol@") && !copy.contains("dave@"),
        "{copy}"
    );
    assert!(copy.contains("mailto:bob@example.com"), "{copy}");
    // The organizer's copy keeps everyone; bob's answer from his cut-down copy lands.
    let alice_copy = site.dir.join("stores/alice/calendar/party.ics");
    assert!(everyone.iter().all(|a| unfolded(&alice_copy).contains(a)));
    accept_as_bob(&bob_copy);
    site.eventually("bob's answer in alice's copy", || {
        unfolded(&alice_copy).lines().any(|l| {
            l.starts_with("ATTENDEE")
                && l.ends_with("mailto:bob@example.com")
                && l.contains("PARTSTAT=ACCEPTED")
        })
    });
    assert!(everyone.iter().all(|a| unfolded(&alice_copy).contains(a)));
    daemon.stop();
}
