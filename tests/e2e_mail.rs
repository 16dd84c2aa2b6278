//! The whole system: the real `imipd serve` binary with a real Radicale for the stores
//! and a real Postfix for mail in and out, all on loopback.
//!
//! Postfix is set up as a mail admin would: mail for the local domain (example.com,
//! which includes imipd's bounce address) goes to imipd over LMTP (`transport_maps`);
//! everything else goes to the outside world, here an SMTP sink. imipd sends through
//! Postfix as its relay.

#[path = "support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::radicale::{attendee_line as attendee, Radicale};
use support::site::{eventually, Daemon};
use support::{free_port, Postfix, Sink, Site};

/// imipd running on a Radicale store, with its relay and LMTP port.
struct Imipd {
    site: Site,
    _daemon: Daemon,
}

impl Imipd {
    fn start(
        radicale: &Radicale,
        relay: std::net::SocketAddr,
        lmtp_port: u16,
        first_retry: u64,
    ) -> Imipd {
        let site = Site::new("e2e-imipd", &[]);
        site.write_config(&format!(
            "state = \"state.redb\"\n[control]\nsocket = \"control.sock\"\n\
             [store]\nlayout = \"radicale\"\nroot = \"{root}\"\ndebounce_ms = 50\n\
             [[user]]\nname = \"alice\"\naddresses = [\"alice@example.com\"]\n\
             [[user]]\nname = \"bob\"\naddresses = [\"bob@example.com\"]\n\
             [mail]\ndomain = \"example.com\"\n\
             [queue]\nfirst_retry_delay = {first_retry}\nmax_retry_delay = {first_retry}\n\
             [relay]\nhost = \"{host}\"\nport = {port}\ntls = \"none\"\ntimeout = 10\n\
             [lmtp]\nlisten = \"127.0.0.1:{lmtp_port}\"\nimport_policy = \"everyone\"\n\
             insecure_trust_from_header = true\n",
            root = radicale.dir.join("collections").display(),
            host = relay.ip(),
            port = relay.port(),
        ));
        let daemon = Daemon::new(site.serve());
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", lmtp_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "imipd did not start:\n{}",
                site.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Imipd {
            site,
            _daemon: daemon,
        }
    }

    fn log(&self) -> String {
        self.site.log()
    }
}

fn invitation(uid: &str, externals: &[&str]) -> String {
    let mut text = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//CalDAV client//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
         DTSTAMP:20300101T090000Z\r\nSEQUENCE:0\r\nDTSTART:20300602T160000Z\r\nDTEND:20300602T170000Z\r\n\
         SUMMARY:Lunch\r\nORGANIZER;CN=\"Alice\":mailto:alice@example.com\r\n\
         ATTENDEE;CN=\"Alice\";PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
         ATTENDEE;CN=\"Bob\";RSVP=TRUE:mailto:bob@example.com\r\n"
    );
    for external in externals {
        text.push_str(&format!("ATTENDEE;RSVP=TRUE:mailto:{external}\r\n"));
    }
    text.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
    text
}

/// Alice's CalDAV client saves [`invitation`] `uid` at `path`: created (201).
fn alice_invites(radicale: &Radicale, path: &str, uid: &str, externals: &[&str]) {
    let (status, _, body) = radicale.request("PUT", "alice", path, &invitation(uid, externals));
    assert_eq!(status, 201, "{body}");
}

/// Sends `data` into Postfix by SMTP, as another mail server would.
fn submit(postfix: &Postfix, from: &str, to: &str, data: &str) {
    let file = std::env::temp_dir().join(format!(
        "imipd-e2e-{}-{}.eml",
        std::process::id(),
        free_port()
    ));
    std::fs::write(&file, data).expect("message file");
    let output = Command::new("swaks")
        .args([
            "--server",
            &postfix.smtp_addr().to_string(),
            "--from",
            from,
            "--to",
            to,
            "--data",
        ])
        .arg(&file)
        .output()
        .expect("swaks (install it: apt-get install swaks, see scripts/test)");
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "swaks failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn the_seed_story_through_radicale_and_postfix() {
    let radicale = Radicale::with_calendars("e2e-story", &["alice", "bob"]);
    let sink = Sink::start();
    let lmtp_port = free_port();
    let postfix = Postfix::builder()
        .route("example.com", &format!("lmtp:inet:127.0.0.1:{lmtp_port}"))
        .relayhost(sink.addr())
        .start();
    let imipd = Imipd::start(&radicale, postfix.smtp_addr(), lmtp_port, 60);

    // The organizer invites a local and an external attendee, with a CalDAV client.
    alice_invites(
        &radicale,
        "/alice/calendar/lunch.ics",
        "seed-lunch",
        &["carol@example.net"],
    );

    // The local attendee gets their copy at once, served by Radicale.
    let bob_folder = radicale
        .dir
        .join("collections/collection-root/bob/calendar");
    let bob_item = || {
        std::fs::read_dir(&bob_folder)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.ends_with(".ics"))
    };
    eventually("bob's copy", || imipd.log(), || bob_item().is_some());
    let item = bob_item().expect("bob's item");
    let (status, _, body) = radicale.request("GET", "bob", &format!("/bob/calendar/{item}"), "");
    assert_eq!(status, 200);
    assert!(
        body.contains("SUMMARY:Lunch") && body.contains("SEQUENCE:1"),
        "{body}"
    );

    // The external attendee gets the invitation by mail, through Postfix.
    let messages = sink.wait_for_messages(1, Duration::from_secs(40));
    assert_eq!(messages.len(), 1, "one invitation leaves the site");
    let mail = String::from_utf8_lossy(&messages[0].data).into_owned();
    assert!(mail.contains("text/calendar; method=REQUEST"), "{mail}");
    assert!(
        mail.contains("X-Imipd-Item: uid=seed-lunch; rcpt=carol@example.net"),
        "{mail}"
    );

    // The external REPLY comes back by mail: Postfix routes it to imipd over LMTP.
    let reply = "From: carol@example.net\r\nTo: alice@example.com\r\nSubject: Accepted: Lunch\r\n\
        Message-ID: <carol-reply@example.net>\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/calendar; method=REPLY; charset=utf-8\r\n\r\n\
        BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Carol//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\nUID:seed-lunch\r\n\
        DTSTAMP:20300102T090000Z\r\nSEQUENCE:1\r\nORGANIZER:mailto:alice@example.com\r\n\
        ATTENDEE;PARTSTAT=ACCEPTED:mailto:carol@example.net\r\nREQUEST-STATUS:2.0;Success\r\n\
        END:VEVENT\r\nEND:VCALENDAR\r\n";
    submit(&postfix, "carol@example.net", "alice@example.com", reply);

    // The organizer's copy, as the CalDAV client sees it, shows ACCEPTED with SCHEDULE-STATUS.
    eventually(
        "carol's answer in alice's calendar",
        || imipd.log(),
        || {
            let (_, _, body) = radicale.request("GET", "alice", "/alice/calendar/lunch.ics", "");
            attendee(&body, "carol@example.net").contains("PARTSTAT=ACCEPTED")
        },
    );
    let (_, _, body) = radicale.request("GET", "alice", "/alice/calendar/lunch.ics", "");
    let carol = attendee(&body, "carol@example.net");
    assert!(carol.contains("SCHEDULE-STATUS=2.0"), "{body}");
    assert!(
        attendee(&body, "bob@example.com").contains("SCHEDULE-STATUS=1.2"),
        "{body}"
    );
    assert_eq!(sink.messages().len(), 1, "nothing else was sent");
}

#[test]
fn refusals_by_the_relay_and_bounces_become_schedule_status() {
    let radicale = Radicale::with_calendars("e2e-bounce", &["alice", "bob"]);
    let sink = Sink::start();
    // The far side does not know erin: Postfix takes the message, then bounces it.
    sink.reply_to_rcpt(
        "erin@example.net",
        Some("550 5.1.1 <erin@example.net>: no such user"),
    );
    let lmtp_port = free_port();
    let postfix = Postfix::builder()
        .route("example.com", &format!("lmtp:inet:127.0.0.1:{lmtp_port}"))
        .relayhost(sink.addr())
        // The relay itself refuses dave at RCPT time.
        .set(
            "smtpd_recipient_restrictions",
            "check_recipient_access inline:{ dave@example.net=REJECT }, permit_mynetworks, reject_unauth_destination",
        )
        .start();
    let imipd = Imipd::start(&radicale, postfix.smtp_addr(), lmtp_port, 60);

    alice_invites(
        &radicale,
        "/alice/calendar/plan.ics",
        "bounce-plan",
        &["dave@example.net", "erin@example.net", "frank@example.net"],
    );
    let copy = || {
        radicale
            .request("GET", "alice", "/alice/calendar/plan.ics", "")
            .2
    };
    eventually(
        "every outcome recorded",
        || format!("{}\n--- postfix log:\n{}", imipd.log(), postfix.log()),
        || {
            let body = copy();
            attendee(&body, "dave@").contains("SCHEDULE-STATUS=5.1")
                && attendee(&body, "erin@").contains("SCHEDULE-STATUS=5.1")
                && attendee(&body, "frank@").contains("SCHEDULE-STATUS=1.1")
        },
    );
    let log = imipd.log();
    assert!(
        log.contains("delivery failed for good"),
        "dave's 5xx is logged:\n{log}"
    );
    assert!(
        log.contains("bounce (5.1.1) for erin@example.net"),
        "erin's bounce is matched:\n{log}"
    );
    // Postfix passes frank's copy on to the outside world in its own time.
    let messages = sink.wait_for_messages(1, Duration::from_secs(40));
    let delivered: Vec<String> = messages
        .iter()
        .flat_map(|m| m.rcpts.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>())
        .collect();
    assert_eq!(delivered, vec!["frank@example.net".to_string()]);
}

#[test]
fn a_relay_outage_delays_but_every_message_arrives_exactly_once() {
    let radicale = Radicale::with_calendars("e2e-outage", &["alice", "bob"]);
    let sink = Sink::start();
    sink.set_down(true);
    let imipd = Imipd::start(&radicale, sink.addr(), free_port(), 1);
    for i in 0..3 {
        alice_invites(
            &radicale,
            &format!("/alice/calendar/ev{i}.ics"),
            &format!("outage-{i}"),
            &[&format!("x{i}@example.net")],
        );
    }
    eventually(
        "retries while the relay is down",
        || imipd.log(),
        || imipd.log().matches("will retry").count() >= 3,
    );
    // The relay comes back answering 451 for one recipient, then recovers fully.
    sink.reply_to_rcpt("x1@example.net", Some("451 4.3.0 try again later"));
    sink.set_down(false);
    eventually(
        "the 4xx is retried",
        || imipd.log(),
        || imipd.log().contains("451") && sink.messages().len() >= 2,
    );
    sink.reply_to_rcpt("x1@example.net", None);
    let messages = sink.wait_for_messages(3, Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(2));
    let mut recipients: Vec<String> = sink
        .messages()
        .iter()
        .flat_map(|m| m.rcpts.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>())
        .collect();
    recipients.sort();
    assert_eq!(messages.len(), 3);
    assert_eq!(
        recipients,
        vec!["x0@example.net", "x1@example.net", "x2@example.net"],
        "each exactly once"
    );
}
