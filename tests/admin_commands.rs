//! The admin commands against the real `imipd serve`, while it runs and after it stopped.
//!
//! What an admin used to Postfix expects: `imipd queue list` works while mail flows
//! (it used to say "Database already open … stop it first"), `imipd status` answers
//! with an exit code a monitoring check can use, `inject` exits with its verdict, and
//! `--config` goes anywhere on the line (or comes from IMIPD_CONFIG).

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use support::site::{self, stop, write_event};
use support::{free_port, Site};

/// Alice and Bob; the relay is a closed port, so outgoing mail stays queued with an
/// error and the queue has something to list.
fn new_site(name: &str) -> Site {
    let site = Site::new(&format!("admin-{name}"), &["alice", "bob"]);
    let (lmtp, relay) = (free_port(), free_port());
    site.write_config(&site::config(
        &["alice", "bob"],
        "debounce_ms = 50\n",
        &format!(
            "[relay]\nhost = \"127.0.0.1\"\nport = {relay}\ntls = \"none\"\ntimeout = 2\n\
             [queue]\nfirst_retry_delay = 600\n\
             [lmtp]\nlisten = \"127.0.0.1:{lmtp}\"\n{}",
            support_open_policy()
        ),
    ));
    site
}

/// [`new_site`] with its daemon serving (the control socket is there), and Alice's
/// invitation `uid` saved as `planning.ics`: the site, the daemon, her calendar folder.
fn running_site(name: &str, uid: &str) -> (Site, Child, PathBuf) {
    let site = new_site(name);
    let daemon = site.serve();
    let socket = site.dir.join("control.sock");
    site.eventually("the control socket", || socket.exists());
    let calendar = site.calendar("alice");
    write_event(&calendar, "planning.ics", &event(uid));
    (site, daemon, calendar)
}

/// The inbound policy of this test: these tests are about the admin commands, not
/// about sender authentication, so the REPLYs here are not signed and the daemon runs
/// with the closed-setup option that believes From headers.
fn support_open_policy() -> &'static str {
    "insecure_trust_from_header = true\nimport_policy = \"everyone\"\n"
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn event(uid: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
         DTSTAMP:20300101T090000Z\r\nDTSTART:20300610T103000Z\r\nDTEND:20300610T113000Z\r\n\
         SUMMARY:Planning\r\nORGANIZER;CN=Alice:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
         ATTENDEE;RSVP=TRUE:mailto:carol@example.net\r\n\
         ATTENDEE;RSVP=TRUE:mailto:dave@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

fn reply(uid: &str, from: &str) -> String {
    format!(
        "From: {from}\r\nTo: alice@example.com\r\nSubject: Accepted: Planning\r\n\
         Message-ID: <{uid}-{from}@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/calendar; method=REPLY; charset=utf-8\r\n\r\n\
         BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n\
         UID:{uid}\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:1\r\n\
         ORGANIZER:mailto:alice@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:{from}\r\n\
         END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

fn exit(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

#[test]
fn queue_status_scan_and_inject_work_while_the_daemon_runs_and_after_it_stopped() {
    // An invitation to two outside attendees: the relay is down, so both stay queued.
    let (site, daemon, calendar) = running_site("both", "planning-1");
    site.eventually("two queued messages with an error", || {
        let list = text(&site.imipd(&["queue", "list"]));
        list.contains("carol@example.net")
            && list.contains("dave@example.net")
            && list.contains("—")
    });

    // While it runs: status is healthy, and names what it watches.
    let status = site.imipd(&["status"]);
    assert_eq!(exit(&status), 0, "{}", text(&status));
    let shown = text(&status);
    assert!(
        shown.contains("running") && shown.contains("2 users"),
        "{shown}"
    );
    assert!(shown.contains("queue: 2 messages"), "{shown}");
    assert!(shown.contains("last delivery error"), "{shown}");

    // `--config` before the command, after it, or from IMIPD_CONFIG: the same answer.
    let before = Command::new(env!("CARGO_BIN_EXE_imipd"))
        .arg("--config")
        .arg(site.config())
        .args(["queue", "list"])
        .output()
        .expect("imipd");
    let from_env = Command::new(env!("CARGO_BIN_EXE_imipd"))
        .args(["queue", "list"])
        .env("IMIPD_CONFIG", site.config())
        .output()
        .expect("imipd");
    let list = text(&site.imipd(&["queue", "list"]));
    for other in [&before, &from_env] {
        assert_eq!(exit(other), 0, "{}", text(other));
        assert!(text(other).contains("carol@example.net"), "{}", text(other));
    }

    // Drop Dave's message through the running daemon.
    let dave = list
        .lines()
        .find(|l| l.contains("dave@example.net"))
        .and_then(|l| l.split_whitespace().next())
        .expect("dave's queue id")
        .to_string();
    let dropped = site.imipd(&["queue", "drop", &dave]);
    assert_eq!(exit(&dropped), 0, "{}", text(&dropped));
    assert!(!text(&site.imipd(&["queue", "list"])).contains("dave@example.net"));
    let missing = site.imipd(&["queue", "drop", "999999"]);
    assert_eq!(exit(&missing), 1);
    assert!(text(&missing).contains("no queued message with id 999999"));

    // A scan through the daemon.
    let scan = site.imipd(&["scan"]);
    assert_eq!(exit(&scan), 0, "{}", text(&scan));
    assert!(text(&scan).contains("2 users"), "{}", text(&scan));

    // inject through the daemon: the verdict is the exit code.
    let message = site.dir.join("reply-carol.eml");
    std::fs::write(&message, reply("planning-1", "carol@example.net")).expect("eml");
    let m = message.to_string_lossy().to_string();
    let unknown = site.imipd(&["inject", "--rcpt", "nobody@example.com", &m]);
    assert_eq!(exit(&unknown), 67, "{}", text(&unknown));
    let dry = site.imipd(&["inject", "--rcpt", "alice@example.com", "--dry-run", &m]);
    assert_eq!(exit(&dry), 0, "{}", text(&dry));
    assert!(text(&dry).contains("nothing was changed"), "{}", text(&dry));
    let applied = site.imipd(&["inject", "--rcpt", "alice@example.com", &m]);
    assert_eq!(exit(&applied), 0, "{}", text(&applied));
    // Through the running daemon too, the dry run's verdict is the real one's.
    let verdict = |t: String| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("alice@example.com: "))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        verdict(text(&dry)),
        verdict(text(&applied)),
        "{}",
        text(&dry)
    );
    assert!(!verdict(text(&applied)).is_empty(), "{}", text(&applied));
    assert!(
        std::fs::read_to_string(calendar.join("planning.ics"))
            .expect("alice's copy")
            .contains("PARTSTAT=ACCEPTED:mailto:carol@example.net"),
        "the answer is in the organizer's copy"
    );
    // The same message again is accepted and changes nothing (exit 0, "already").
    let again = site.imipd(&["inject", "--rcpt", "alice@example.com", &m]);
    assert_eq!(exit(&again), 0, "{}", text(&again));

    stop(daemon);

    // Stopped: status says so with exit 3; the queue is read directly.
    let status = site.imipd(&["status"]);
    assert_eq!(exit(&status), 3, "{}", text(&status));
    assert!(text(&status).contains("not running"));
    let list = site.imipd(&["queue", "list"]);
    assert_eq!(exit(&list), 0, "{}", text(&list));
    assert!(text(&list).contains("carol@example.net"), "{}", text(&list));
    let scan = site.imipd(&["scan"]);
    assert_eq!(exit(&scan), 0, "{}", text(&scan));
    let message = site.dir.join("reply-dave.eml");
    std::fs::write(&message, reply("planning-1", "dave@example.net")).expect("eml");
    let m = message.to_string_lossy().to_string();
    let applied = site.imipd(&["inject", "--rcpt", "alice@example.com", &m]);
    assert_eq!(exit(&applied), 0, "{}", text(&applied));
    assert!(std::fs::read_to_string(calendar.join("planning.ics"))
        .expect("alice's copy")
        .contains("PARTSTAT=ACCEPTED:mailto:dave@example.net"));
    let unknown = site.imipd(&["inject", "--rcpt", "nobody@example.com", &m]);
    assert_eq!(exit(&unknown), 67, "{}", text(&unknown));
}

#[test]
fn a_stranger_s_reply_is_a_refusal_that_status_lists_and_inject_exits_ignored() {
    let (site, daemon, calendar) = running_site("refusal", "planning-2");
    site.eventually("queued messages", || {
        text(&site.imipd(&["queue", "list"])).contains("carol@example.net")
    });
    let before = std::fs::read(calendar.join("planning.ics")).expect("copy");
    let message = site.dir.join("stranger.eml");
    std::fs::write(&message, reply("planning-2", "mallory@example.org")).expect("eml");
    let m = message.to_string_lossy().to_string();
    let refused = site.imipd(&["inject", "--rcpt", "alice@example.com", &m]);
    assert_eq!(exit(&refused), 1, "ignored: {}", text(&refused));
    assert_eq!(
        std::fs::read(calendar.join("planning.ics")).expect("copy"),
        before,
        "a stranger's answer changes nothing"
    );
    let status = text(&site.imipd(&["status"]));
    assert!(
        status.contains("last refusals") && status.contains("mail to alice@example.com"),
        "{status}"
    );
    stop(daemon);
}
