//! The real `imipd serve` keeps SEQUENCE, writes the organizer's copy once per change,
//! mails nothing a client mailed itself, and answers for a client that left the answer
//! to the server (issue #22). Vdir stores, outbox transport.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A site with alice's and bob's stores and the outbox transport.
struct Site(support::Site);

support::deref_to!(Site => support::Site, 0);

impl Site {
    fn new(name: &str, extra_config: &str) -> Site {
        let site = support::Site::new(&format!("seq-{name}"), &["alice", "bob"]);
        site.write_config(&support::site::config(
            &["alice", "bob"],
            "debounce_ms = 50\n",
            &format!("[queue]\noutbox = \"outbox\"\n{extra_config}"),
        ));
        Site(site)
    }

    /// A site without extra configuration, its daemon running, and alice's folder.
    fn serving(name: &str) -> (Site, support::Daemon, PathBuf) {
        let site = Site::new(name, "");
        let daemon = site.serve();
        let alice = site.folder("alice");
        (site, daemon, alice)
    }

    /// Starts the daemon and waits until it runs.
    fn serve(&self) -> support::Daemon {
        self.0.start()
    }

    fn folder(&self, user: &str) -> PathBuf {
        self.calendar(user)
    }

    /// The calendars mailed so far, oldest first (by queue order in the file name).
    fn mails(&self) -> Vec<String> {
        // Finished mails only: the outbox's partial writes are hidden `.tmp-….eml` files.
        let mut files = self.files("outbox");
        files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files
            .iter()
            .map(|p| calendar_of(&std::fs::read(p).expect("eml")))
            .collect()
    }

    /// Waits until `n` emails are in the outbox, then until the queue is empty.
    fn wait_for_mails(&self, n: usize) -> Vec<String> {
        self.eventually(&format!("{n} emails"), || self.mails().len() >= n);
        self.settle();
        self.mails()
    }

    /// Lets the daemon finish what the last change started (status write-backs).
    fn settle(&self) {
        std::thread::sleep(Duration::from_millis(800));
    }
}

/// The text/calendar part of an email, unfolded.
fn calendar_of(eml: &[u8]) -> String {
    let mail = mail_parser::MessageParser::default()
        .parse(eml)
        .expect("a parsable email");
    support::files::calendar_part(&mail)
        .expect("a text/calendar part")
        .replace("\r\n ", "")
}

/// Every SEQUENCE value in a calendar text.
fn sequences(calendar: &str) -> Vec<i64> {
    calendar
        .lines()
        .filter_map(|l| l.trim().strip_prefix("SEQUENCE:"))
        .filter_map(|v| v.parse().ok())
        .collect()
}

fn method(calendar: &str) -> &str {
    calendar
        .lines()
        .find_map(|l| l.trim().strip_prefix("METHOD:"))
        .unwrap_or_default()
}

/// Writes like a careful client: a temporary file renamed into place.
fn write_event(dir: &Path, name: &str, text: &str) {
    let temp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, text).expect("write");
    std::fs::rename(&temp, dir.join(name)).expect("rename");
}

/// Alice's meeting with carol (outside) at `hour`, with `sequence` as the client
/// writes it (`None`: no SEQUENCE line) and `extra` lines in the VEVENT.
fn meeting(uid: &str, hour: u32, sequence: Option<i64>, extra: &str) -> String {
    let sequence = sequence
        .map(|s| format!("SEQUENCE:{s}\r\n"))
        .unwrap_or_default();
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n{sequence}\
         DTSTAMP:20300101T090000Z\r\nDTSTART:20300610T{hour:02}0000Z\r\nDTEND:20300610T{end:02}0000Z\r\n\
         SUMMARY:Planning\r\nORGANIZER:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
         ATTENDEE;RSVP=TRUE:mailto:carol@example.net\r\n{extra}END:VEVENT\r\nEND:VCALENDAR\r\n",
        end = hour + 1
    )
}

#[test]
fn each_move_goes_out_higher_from_a_client_that_never_raises_sequence_or_writes_none() {
    for (name, written) in [("never-raises", Some(0)), ("writes-none", None)] {
        let (site, daemon, alice) = Site::serving(name);
        let mut last = 0;
        // The client saves from its own copy each time: imipd's write-back never
        // reaches it, so the file says SEQUENCE:0 (or nothing) every time.
        for (n, hour) in [9, 10, 11].into_iter().enumerate() {
            write_event(&alice, "plan.ics", &meeting("plan-1", hour, written, ""));
            let mails = site.wait_for_mails(n + 1);
            assert_eq!(mails.len(), n + 1, "{name}: one email per change");
            let sent = sequences(&mails[n]);
            assert_eq!(method(&mails[n]), "REQUEST");
            assert!(
                sent.iter().all(|s| *s > last),
                "{name}: change {n} went out with {sent:?}, not above {last}"
            );
            last = sent.into_iter().max().unwrap_or(0);
        }
        daemon.stop();
    }
}

#[test]
fn a_series_cancel_after_an_occurrence_update_goes_out_above_it() {
    let (site, daemon, alice) = Site::serving("series-cancel");
    let series = meeting("weekly-1", 9, Some(0), "RRULE:FREQ=WEEKLY;COUNT=10\r\n");
    write_event(&alice, "weekly.ics", &series);
    site.wait_for_mails(1);
    // The client moves the second occurrence, writing the series' SEQUENCE on the
    // override as Thunderbird does.
    let moved = meeting("weekly-1", 9, Some(1), "RRULE:FREQ=WEEKLY;COUNT=10\r\n").replace(
        "END:VCALENDAR",
        "BEGIN:VEVENT\r\nUID:weekly-1\r\nSEQUENCE:1\r\nRECURRENCE-ID:20300617T090000Z\r\n\
         DTSTAMP:20300101T090000Z\r\nDTSTART:20300617T140000Z\r\nDTEND:20300617T150000Z\r\n\
         SUMMARY:Planning\r\nORGANIZER:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
         ATTENDEE;RSVP=TRUE:mailto:carol@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR",
    );
    write_event(&alice, "weekly.ics", &moved);
    let mails = site.wait_for_mails(2);
    let occurrence = sequences(&mails[1]).into_iter().max().expect("a SEQUENCE");
    std::fs::remove_file(alice.join("weekly.ics")).expect("delete");
    let mails = site.wait_for_mails(3);
    assert_eq!(method(&mails[2]), "CANCEL");
    let cancel = sequences(&mails[2]);
    assert!(
        cancel.iter().all(|s| *s > occurrence),
        "the series CANCEL went out with {cancel:?}, not above the occurrence's {occurrence}"
    );
    daemon.stop();
}

#[test]
fn an_event_the_client_mailed_itself_is_delivered_locally_and_mailed_to_no_one() {
    let (site, daemon, alice) = Site::serving("client-mailed");
    let text = meeting(
        "mailed-1",
        9,
        Some(0),
        "ATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\nX-MOZ-SEND-INVITATIONS:TRUE\r\nX-MOZ-GENERATION:1\r\n",
    );
    write_event(&alice, "mailed.ics", &text);
    site.eventually("bob's copy", || {
        std::fs::read_dir(site.folder("bob")).is_ok_and(|d| d.count() > 0)
    });
    site.settle();
    assert!(site.mails().is_empty(), "carol got a second email");
    let bob_copy = std::fs::read_dir(site.folder("bob"))
        .expect("bob's folder")
        .filter_map(|e| e.ok())
        .find(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| std::fs::read_to_string(e.path()).expect("bob's copy"))
        .expect("bob's copy");
    assert!(!bob_copy.contains("X-MOZ-"), "{bob_copy}");
    let alice_copy = std::fs::read_to_string(alice.join("mailed.ics"))
        .expect("alice's copy")
        .replace("\r\n ", "");
    for (who, status) in [("carol", "1.1"), ("bob", "1.2")] {
        let line = alice_copy
            .lines()
            .find(|l| l.contains(&format!("mailto:{who}")))
            .unwrap_or_default();
        assert!(
            line.contains(&format!("SCHEDULE-STATUS={status}")),
            "{who}: {line}"
        );
    }
    daemon.stop();
}

/// Bob's copy as Thunderbird's iMIP bar stores an invitation imipd never imported.
fn accepted_in_thunderbird() -> String {
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Mozilla.org/NONSGML Mozilla Calendar V1.1//EN\r\n\
     BEGIN:VEVENT\r\nUID:outside-1\r\nSEQUENCE:0\r\nDTSTAMP:20300101T090000Z\r\n\
     DTSTART:20300610T090000Z\r\nDTEND:20300610T100000Z\r\nSUMMARY:Vendor call\r\n\
     ORGANIZER;SCHEDULE-AGENT=CLIENT:mailto:dave@example.net\r\n\
     ATTENDEE;PARTSTAT=ACCEPTED;RSVP=TRUE:mailto:bob@example.com\r\n\
     ATTENDEE;PARTSTAT=ACCEPTED:mailto:dave@example.net\r\n\
     X-MOZ-RECEIVED-SEQUENCE:0\r\nX-MOZ-RECEIVED-DTSTAMP:20300101T090000Z\r\n\
     END:VEVENT\r\nEND:VCALENDAR\r\n"
        .to_string()
}

#[test]
fn an_invitation_accepted_before_import_sends_exactly_one_reply_when_the_client_was_told() {
    // The front listens (nothing behind it is needed here: the client's file is
    // written straight into the folder, as the front's upstream would write it).
    let front = format!(
        "[caldav]\nlisten = \"127.0.0.1:{}\"\nupstream = \"http://127.0.0.1:{}\"\n",
        support::ports::free_port(),
        support::ports::free_port()
    );
    let site = Site::new("accept-told", &front);
    let daemon = site.serve();
    write_event(&site.folder("bob"), "call.ics", &accepted_in_thunderbird());
    let mails = site.wait_for_mails(1);
    assert_eq!(mails.len(), 1, "exactly one REPLY");
    assert_eq!(method(&mails[0]), "REPLY");
    assert!(mails[0].contains("PARTSTAT=ACCEPTED"), "{}", mails[0]);
    assert!(!mails[0].contains("X-MOZ-"), "{}", mails[0]);
    daemon.stop();
    // A restart sends nothing more.
    let daemon = site.serve();
    site.settle();
    daemon.stop();
    assert_eq!(site.mails().len(), 1);
}

#[test]
fn an_invitation_accepted_by_a_client_that_mails_its_own_reply_gets_none_from_imipd() {
    let site = Site::new("accept-not-told", "");
    let daemon = site.serve();
    write_event(&site.folder("bob"), "call.ics", &accepted_in_thunderbird());
    site.eventually("the change processed", || site.log().contains("call.ics"));
    site.settle();
    assert!(
        site.mails().is_empty(),
        "a second REPLY: {:?}",
        site.mails()
    );
    daemon.stop();
}

#[test]
fn a_new_invitation_writes_the_organizers_file_once() {
    use notify::event::{EventKind, ModifyKind, RenameMode};
    use notify::Watcher;
    let (site, daemon, alice) = Site::serving("one-write");
    let target = alice.join("lunch.ics");
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .expect("inotify");
    watcher
        .watch(&alice, notify::RecursiveMode::NonRecursive)
        .expect("watch alice's folder");
    let text = meeting(
        "lunch-1",
        12,
        Some(0),
        "ATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\n",
    );
    write_event(&alice, "lunch.ics", &text);
    site.wait_for_mails(1);
    site.eventually("bob's copy", || {
        std::fs::read_dir(site.folder("bob")).is_ok_and(|d| d.count() > 0)
    });
    site.settle();
    drop(watcher);
    // Every version a syncing client would see: a file put in place at the path (a
    // rename into place is one `To` event; notify also reports the pair as `Both`).
    let versions = rx
        .try_iter()
        .filter_map(Result::ok)
        .filter(|e: &notify::Event| match e.kind {
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                e.paths.first() == Some(&target)
            }
            _ => false,
        })
        .count();
    let copy = std::fs::read_to_string(&target)
        .expect("alice's copy")
        .replace("\r\n ", "");
    assert!(copy.contains("SEQUENCE:1"), "{copy}");
    assert!(copy.contains("SCHEDULE-STATUS=1.1"), "{copy}");
    assert!(copy.contains("SCHEDULE-STATUS=1.2"), "{copy}");
    assert_eq!(versions, 2, "the client's save and one write by imipd");
    daemon.stop();
}
