//! Crash safety: the real daemon, killed with SIGKILL at random points while it works.
//!
//! 1,000 operations go through it: 500 invitations written into the organizer's store
//! (each to a local and an external attendee) and 500 REPLYs delivered over LMTP by a
//! client that behaves like an MTA (a message counts as delivered only on 250, and is
//! retried otherwise). The daemon is killed with SIGKILL at 24 random points and
//! restarted. At the end every expected email was sent exactly once, every local copy
//! exists exactly once, every reply is applied, and every store file parses.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use support::site::kill;
use support::Site;

const EVENTS: usize = 500;
const KILLS: usize = 24;

/// Alice and Bob, mail to the outbox, LMTP on `port`; counts the daemon's starts.
struct Crash {
    site: Site,
    port: u16,
    starts: usize,
}

support::deref_to!(Crash => Site, site);

impl Crash {
    fn new() -> Crash {
        Crash::named("crash")
    }

    fn named(label: &str) -> Crash {
        let store = "debounce_ms = 30\nrescan_interval = 5\n";
        let (site, port) = Site::with_port(label, &["alice", "bob"], store, |port| {
            format!(
                "[queue]\noutbox = \"outbox\"\n\
                 [lmtp]\nlisten = \"127.0.0.1:{port}\"\nimport_policy = \"everyone\"\n\
                 insecure_trust_from_header = true\n"
            )
        });
        Crash {
            site,
            port,
            starts: 0,
        }
    }

    fn start(&mut self) -> Child {
        self.start_with(&[])
    }

    /// Starts the daemon with extra environment (the crash tests' failpoint).
    fn start_with(&mut self, env: &[(&str, &str)]) -> Child {
        self.starts += 1;
        let mut all = vec![("RUST_LOG", "warn")];
        all.extend_from_slice(env);
        let child = self.site.serve_appending(&all);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "imipd did not start listening");
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    }
}

/// A tiny deterministic generator for the kill points.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn invitation(i: usize) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\nUID:crash-{i}\r\n\
         DTSTAMP:20300101T090000Z\r\nDTSTART:20300610T103000Z\r\nDTEND:20300610T113000Z\r\nSUMMARY:Meeting {i}\r\n\
         ORGANIZER:mailto:alice@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
         ATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\nATTENDEE;RSVP=TRUE:mailto:ext{i}@example.net\r\n\
         END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

fn reply(i: usize) -> String {
    format!(
        "From: ext{i}@example.net\r\nTo: alice@example.com\r\nSubject: Accepted\r\nMessage-ID: <reply-{i}@example.net>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/calendar; method=REPLY; charset=utf-8\r\n\r\n\
         BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Ext//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\nUID:crash-{i}\r\n\
         DTSTAMP:20300102T090000Z\r\nSEQUENCE:1\r\nORGANIZER:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:ext{i}@example.net\r\nREQUEST-STATUS:2.0;Success\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// One LMTP transaction; `Ok(reply)` with the final reply line, `Err` when the
/// connection failed (the daemon is down).
fn lmtp(port: u16, from: &str, rcpt: &str, data: &str) -> Result<String, String> {
    lmtp_then(port, from, rcpt, data, || {})
}

/// As [`lmtp`], running `after_data` once the message is sent, before its answer.
fn lmtp_then(
    port: u16,
    from: &str,
    rcpt: &str,
    data: &str,
    after_data: impl FnOnce(),
) -> Result<String, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    let read_reply = |reader: &mut BufReader<TcpStream>| -> Result<String, String> {
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("connection closed".into());
            }
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Ok(line.trim_end().to_string());
            }
        }
    };
    read_reply(&mut reader)?;
    let mut body = data.replace("\r\n.", "\r\n..");
    if !body.ends_with("\r\n") {
        body.push_str("\r\n");
    }
    for command in [
        "LHLO test\r\n".to_string(),
        format!("MAIL FROM:<{from}>\r\n"),
        format!("RCPT TO:<{rcpt}>\r\n"),
        "DATA\r\n".to_string(),
    ] {
        writer
            .write_all(command.as_bytes())
            .map_err(|e| e.to_string())?;
        read_reply(&mut reader)?;
    }
    writer
        .write_all(body.as_bytes())
        .map_err(|e| e.to_string())?;
    writer.write_all(b".\r\n").map_err(|e| e.to_string())?;
    after_data();
    let answer = read_reply(&mut reader)?;
    let _ = writer.write_all(b"QUIT\r\n");
    Ok(answer)
}

#[test]
fn sigkill_at_random_points_loses_nothing_and_doubles_nothing() {
    let mut site = Crash::new();
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let total_ops = 2 * EVENTS;
    let mut kill_at: Vec<usize> = (0..KILLS).map(|_| 1 + rng.below(total_ops - 1)).collect();
    kill_at.sort();
    kill_at.dedup();
    let mut daemon = Some(site.start());
    let calendar = site.dir.join("stores/alice/calendar");
    let mut kills = 0;
    let mut retried_deliveries = 0;
    let mut mid_transaction_kills = 0;
    for op in 0..total_ops {
        let kill_here = kill_at.binary_search(&op).is_ok();
        if kill_here && op < EVENTS {
            if let Some(running) = daemon.take() {
                kill(running);
                kills += 1;
            }
            daemon = Some(site.start());
        }
        if kill_here && op >= EVENTS {
            // Kill while the daemon is applying a reply: the whole message is sent,
            // then SIGKILL before the answer can come. The sender must retry, and the
            // reply must end up applied exactly once.
            let i = op - EVENTS;
            let _ = lmtp_then(
                site.port,
                &format!("ext{i}@example.net"),
                "alice@example.com",
                &reply(i),
                || {
                    if let Some(running) = daemon.take() {
                        kill(running);
                    }
                },
            );
            kills += 1;
            mid_transaction_kills += 1;
            daemon = Some(site.start());
        }
        if op < EVENTS {
            let temp = calendar.join(format!(".ev-{op}.tmp"));
            std::fs::write(&temp, invitation(op)).expect("write");
            std::fs::rename(&temp, calendar.join(format!("ev-{op}.ics"))).expect("rename");
        } else {
            let i = op - EVENTS;
            // The reply can only apply once the invitation was processed; an MTA
            // retries a 4xx, and so does this loop (bounded).
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                match lmtp(
                    site.port,
                    &format!("ext{i}@example.net"),
                    "alice@example.com",
                    &reply(i),
                ) {
                    Ok(answer) if answer.starts_with("250") && answer.contains("applied") => break,
                    Ok(answer) if answer.starts_with("250") && answer.contains("already") => break,
                    Ok(_) | Err(_) => {
                        retried_deliveries += 1;
                        assert!(Instant::now() < deadline, "reply {i} never applied");
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        }
    }
    // Let the daemon finish, then stop it.
    let deadline = Instant::now() + Duration::from_secs(180);
    while site.files("outbox").len() < EVENTS || site.files("stores/bob/calendar").len() < EVENTS {
        assert!(Instant::now() < deadline, "the daemon did not catch up");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    if let Some(running) = daemon.take() {
        let _ = Command::new("kill")
            .args(["-TERM", &running.id().to_string()])
            .status();
        let mut running = running;
        let _ = running.wait();
    }

    // Every external invitation exactly once; remember the SEQUENCE each carried.
    let mut per_item: BTreeMap<String, usize> = BTreeMap::new();
    let mut sent_sequence: BTreeMap<String, String> = BTreeMap::new();
    for file in site.files("outbox") {
        let text = std::fs::read_to_string(&file).expect("eml");
        let item = text
            .lines()
            .find_map(|l| l.strip_prefix("X-Imipd-Item: "))
            .unwrap_or("none")
            .to_string();
        let uid = item
            .trim_start_matches("uid=")
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        let sequence = text
            .lines()
            .find(|l| l.starts_with("SEQUENCE:"))
            .unwrap_or_default()
            .to_string();
        sent_sequence.insert(uid, sequence);
        *per_item.entry(item).or_insert(0) += 1;
    }
    let duplicated: Vec<_> = per_item.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "sent twice: {duplicated:?}");
    assert_eq!(
        per_item.len(),
        EVENTS,
        "one email per event, no more, no less"
    );

    // Every local copy exactly once, every file intact, every reply applied.
    let bob = site.files("stores/bob/calendar");
    assert_eq!(bob.len(), EVENTS);
    for file in bob.iter().chain(site.files("stores/alice/calendar").iter()) {
        let text = std::fs::read_to_string(file).expect("readable");
        assert!(
            calcard::icalendar::ICalendar::parse(&text).is_ok(),
            "{} does not parse:\n{text}",
            file.display()
        );
    }
    for i in 0..EVENTS {
        let text =
            std::fs::read_to_string(calendar.join(format!("ev-{i}.ics"))).expect("alice's copy");
        let unfolded = text.replace("\r\n ", "");
        assert!(
            unfolded
                .lines()
                .any(|l| l.contains(&format!("mailto:ext{i}@example.net"))
                    && l.contains("PARTSTAT=ACCEPTED")),
            "reply {i} missing:\n{text}"
        );
        // Organizer and attendees agree on the version (a crash between the write-back
        // and its commit may make that SEQUENCE:2 instead of 1, never two invitations).
        let stored = unfolded
            .lines()
            .find(|l| l.starts_with("SEQUENCE:"))
            .unwrap_or_default();
        assert_eq!(
            sent_sequence.get(&format!("crash-{i}")).map(String::as_str),
            Some(stored),
            "event {i}: the stored SEQUENCE is the one the invitation carried"
        );
    }
    assert!(kills >= 20, "only {kills} kills happened");
    println!(
        "crash harness: {total_ops} operations, {kills} SIGKILLs survived ({mid_transaction_kills} during an LMTP delivery), \
         {} daemon starts, {retried_deliveries} LMTP retries, {} emails (0 lost, 0 duplicated), {} local copies",
        site.starts,
        per_item.len(),
        EVENTS
    );
    let _ = Path::new(&site.dir);
}

/// Waits until `check` holds (bounded), polling.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The emails in the outbox as (METHOD, SEQUENCE line) pairs, sorted.
fn outbox_messages(site: &Site) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = site
        .files("outbox")
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|text| {
            let find = |prefix: &str| {
                text.lines()
                    .find(|l| l.starts_with(prefix))
                    .unwrap_or_default()
                    .to_string()
            };
            (find("METHOD:"), find("SEQUENCE:"))
        })
        .collect();
    out.sort();
    out
}

/// Each kind of write killed in the window between the file write and the state
/// commit: the restarted daemon recognises the file as its own write and sends nothing
/// new (before write intents, a REPLY's PARTSTAT came back as the organizer's own edit
/// and every attendee got a new REQUEST with SEQUENCE + 1).
#[test]
fn a_kill_between_writing_a_file_and_committing_it_sends_nothing_again() {
    let mut site = Crash::named("intent");
    let calendar = site.dir.join("stores/alice/calendar");
    let mut daemon = site.start();
    let temp = calendar.join(".ev-0.tmp");
    std::fs::write(&temp, invitation(0)).expect("write");
    std::fs::rename(&temp, calendar.join("ev-0.ics")).expect("rename");
    wait_until("the invitation", || {
        site.files("outbox").len() == 1 && site.files("stores/bob/calendar").len() == 1
    });
    // Let the delivery statuses land, then stop.
    std::thread::sleep(Duration::from_millis(500));
    let before = outbox_messages(&site);
    let bob_file = site.files("stores/bob/calendar")[0].clone();
    let bob_before = std::fs::read_to_string(&bob_file).expect("bob");
    kill(daemon);

    // The REPLY is written into alice's copy, then the daemon dies before committing.
    let mut dying = site.start_with(&[("IMIPD_FAILPOINT_AFTER_WRITE", "reply applied")]);
    let answer = lmtp(
        site.port,
        "ext0@example.net",
        "alice@example.com",
        &reply(0),
    );
    assert!(
        !answer.as_deref().is_ok_and(|a| a.starts_with("250")),
        "the daemon died before answering: {answer:?}"
    );
    let _ = dying.wait();
    let written = std::fs::read_to_string(calendar.join("ev-0.ics")).expect("alice's copy");
    assert!(
        written
            .replace("\r\n ", "")
            .lines()
            .any(|l| l.contains("ext0@example.net") && l.contains("PARTSTAT=ACCEPTED")),
        "the answer was written before the kill:\n{written}"
    );

    // A temporary file a SIGKILL left mid-write is removed at start; a client's is not.
    let ours = calendar.join(".ev-0.ics.imipd-4242-7.tmp");
    let clients = calendar.join(".ev-0.ics.swp");
    std::fs::write(&ours, "half a calen").expect("plant");
    std::fs::write(&clients, "editor state").expect("plant");

    // Restarted: the MTA delivers again; the answer is taken as applied once.
    daemon = site.start();
    assert!(
        !ours.exists(),
        "imipd's own temporary file is removed at start"
    );
    assert!(clients.exists(), "other dot files are left alone");
    let answer = lmtp(
        site.port,
        "ext0@example.net",
        "alice@example.com",
        &reply(0),
    )
    .expect("lmtp");
    assert!(answer.starts_with("250"), "{answer}");
    std::thread::sleep(Duration::from_millis(1500));
    let after = outbox_messages(&site);
    kill(daemon);
    assert_eq!(after, before, "nothing sent again after the restart");
    assert_eq!(
        std::fs::read_to_string(&bob_file).expect("bob"),
        bob_before,
        "bob's copy was not re-invited"
    );
}

/// The other writes, each killed between the file write and its commit: the organizer's
/// write-back of a new invitation, its import into the local attendee's calendar, the
/// delivery status on the organizer's copy, and an update delivered into the local
/// attendee's existing copy. After the restart each event went out
/// exactly once, with the SEQUENCE the organizer's copy holds.
#[test]
fn every_kind_of_write_killed_before_its_commit_is_recognised_after_a_restart() {
    for (n, kind) in ["organizer write-back", "import", "delivery status"]
        .into_iter()
        .enumerate()
    {
        let mut site = Crash::named(&format!("intent-kind-{n}"));
        let calendar = site.dir.join("stores/alice/calendar");
        if kind == "delivery status" {
            // The organizer's first write already says 1.2 and 1.1; a status is written
            // later only when the outcome differs: bob holds this event at a higher
            // SEQUENCE (a restored backup of alice's), so his delivery fails for good.
            let newer = invitation(0).replace("UID:crash-0\r\n", "UID:crash-0\r\nSEQUENCE:5\r\n");
            std::fs::write(site.dir.join("stores/bob/calendar/old.ics"), newer).expect("plant");
        }
        let mut dying = site.start_with(&[("IMIPD_FAILPOINT_AFTER_WRITE", kind)]);
        let temp = calendar.join(".ev-0.tmp");
        std::fs::write(&temp, invitation(0)).expect("write");
        std::fs::rename(&temp, calendar.join("ev-0.ics")).expect("rename");
        let deadline = Instant::now() + Duration::from_secs(30);
        while dying.try_wait().ok().flatten().is_none() {
            assert!(
                Instant::now() < deadline,
                "{kind}: the failpoint was never reached"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let daemon = site.start();
        wait_until("the invitation", || {
            site.files("outbox").len() == 1 && site.files("stores/bob/calendar").len() == 1
        });
        std::thread::sleep(Duration::from_millis(1500));
        let sent = outbox_messages(&site);
        let stored = std::fs::read_to_string(calendar.join("ev-0.ics")).expect("alice");
        let stored_sequence = stored
            .lines()
            .find(|l| l.starts_with("SEQUENCE:"))
            .unwrap_or_default()
            .to_string();
        kill(daemon);
        assert_eq!(
            sent,
            vec![("METHOD:REQUEST".to_string(), stored_sequence.clone())],
            "{kind}: one invitation, carrying the organizer's SEQUENCE"
        );
        assert_eq!(
            site.files("stores/bob/calendar").len(),
            1,
            "{kind}: one local copy"
        );
    }

    // A delivery into the local attendee's existing copy (an update), killed likewise.
    let mut site = Crash::named("intent-kind-update");
    let calendar = site.dir.join("stores/alice/calendar");
    let daemon = site.start();
    let file = calendar.join("ev-0.ics");
    std::fs::write(calendar.join(".ev-0.tmp"), invitation(0)).expect("write");
    std::fs::rename(calendar.join(".ev-0.tmp"), &file).expect("rename");
    wait_until("the invitation", || {
        site.files("outbox").len() == 1 && site.files("stores/bob/calendar").len() == 1
    });
    std::thread::sleep(Duration::from_millis(500));
    kill(daemon);
    let mut dying = site.start_with(&[("IMIPD_FAILPOINT_AFTER_WRITE", "local delivery")]);
    let moved = std::fs::read_to_string(&file)
        .expect("alice")
        .replace("DTSTART:20300610T103000Z", "DTSTART:20300612T103000Z");
    std::fs::write(calendar.join(".ev-0.tmp"), moved).expect("write");
    std::fs::rename(calendar.join(".ev-0.tmp"), &file).expect("rename");
    let deadline = Instant::now() + Duration::from_secs(30);
    while dying.try_wait().ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "the failpoint was never reached");
        std::thread::sleep(Duration::from_millis(10));
    }
    let daemon = site.start();
    wait_until("the update", || site.files("outbox").len() == 2);
    std::thread::sleep(Duration::from_millis(1500));
    let sent = outbox_messages(&site);
    let bob = std::fs::read_to_string(&site.files("stores/bob/calendar")[0]).expect("bob");
    kill(daemon);
    assert_eq!(sent.len(), 2, "invitation and update, once each: {sent:?}");
    assert!(
        bob.contains("DTSTART:20300612T103000Z"),
        "bob has the update:\n{bob}"
    );
}

/// A group of changes (several saves due at the same moment share their commits)
/// killed right after the first of its files was written: the intents of all are
/// committed, the other files not written, nothing after them committed. After the
/// restart every event went out exactly once and every local copy exists once: the
/// written one is recognised as imipd's own, the others are processed again.
#[test]
fn a_group_of_changes_killed_after_its_first_write_resends_each_once() {
    const SAVES: usize = 6;
    let mut site = Crash::named("intent-group");
    let calendar = site.dir.join("stores/alice/calendar");
    let mut dying = site.start_with(&[("IMIPD_FAILPOINT_AFTER_WRITE", "organizer write-back")]);
    for i in 0..SAVES {
        std::fs::write(calendar.join(format!(".ev-{i}.tmp")), invitation(i)).expect("write");
    }
    for i in 0..SAVES {
        std::fs::rename(
            calendar.join(format!(".ev-{i}.tmp")),
            calendar.join(format!("ev-{i}.ics")),
        )
        .expect("rename");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while dying.try_wait().ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "the failpoint was never reached");
        std::thread::sleep(Duration::from_millis(10));
    }
    let daemon = site.start();
    wait_until("the invitations", || {
        site.files("outbox").len() >= SAVES && site.files("stores/bob/calendar").len() >= SAVES
    });
    std::thread::sleep(Duration::from_millis(1500));
    let sent = outbox_messages(&site);
    let copies = site.files("stores/bob/calendar").len();
    kill(daemon);
    assert_eq!(sent.len(), SAVES, "one invitation per event: {sent:?}");
    assert_eq!(copies, SAVES, "one local copy per event");
}

// ---------------------------------------------------------------------------------
// The organizer's whole life cycle under SIGKILL, with a relay that records everything.

/// The harness's size: `CRASH_EVENTS` and `CRASH_KILLS` make a longer run
/// (RELIABILITY.md); the defaults keep `cargo test` under a minute or two.
fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn lifecycle_event(i: usize, step: usize) -> String {
    // step 0: created; 1: rescheduled; 2: extb removed.
    let start = if step == 0 {
        "20300610T103000Z"
    } else {
        "20300611T140000Z"
    };
    let extb = if step < 2 {
        format!("ATTENDEE;RSVP=TRUE:mailto:ext{i}b@example.net\r\n")
    } else {
        String::new()
    };
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\nUID:life-{i}\r\n\
         DTSTAMP:20300101T090000Z\r\nDTSTART:{start}\r\nDURATION:PT1H\r\nSUMMARY:Review {i}\r\n\
         ORGANIZER:mailto:alice@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
         ATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\nATTENDEE;RSVP=TRUE:mailto:ext{i}a@example.net\r\n\
         {extb}END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

fn lifecycle_reply(i: usize) -> String {
    format!(
        "From: ext{i}a@example.net\r\nTo: alice@example.com\r\nSubject: Accepted\r\nMessage-ID: <life-reply-{i}@example.net>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/calendar; method=REPLY; charset=utf-8\r\n\r\n\
         BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Ext//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\nUID:life-{i}\r\n\
         DTSTAMP:20300102T090000Z\r\nORGANIZER:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:ext{i}a@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// One message as the relay got it.
#[derive(Debug, Clone)]
struct Got {
    uid: String,
    rcpt: String,
    method: String,
    sequence: i64,
    message_id: String,
    /// What the change says: DTSTART and the attendees (not their answers).
    substance: String,
}

fn got(message: &support::sink::SinkMessage) -> Vec<Got> {
    let text = String::from_utf8_lossy(&message.data).replace("\r\n ", "");
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let (uid, method, message_id) = (field("UID:"), field("METHOD:"), field("Message-ID:"));
    let sequence = field("SEQUENCE:").parse().unwrap_or(0);
    let mut attendees: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("ATTENDEE"))
        .filter_map(|l| l.rsplit_once(':').map(|(_, a)| a.to_ascii_lowercase()))
        .collect();
    attendees.sort();
    let substance = format!("{} {}", field("DTSTART"), attendees.join(","));
    message
        .rcpts
        .iter()
        .map(|(rcpt, _)| Got {
            uid: uid.clone(),
            rcpt: rcpt.to_ascii_lowercase(),
            method: method.clone(),
            sequence,
            message_id: message_id.clone(),
            substance: substance.clone(),
        })
        .collect()
}

#[test]
fn sigkill_through_an_organizers_changes_and_answers_loses_and_repeats_nothing() {
    let events = knob("CRASH_EVENTS", 80);
    let kills_wanted = knob("CRASH_KILLS", 60);
    let sink = support::Sink::start();
    let mut site = Crash::named("lifecycle");
    site.replace_in_config(
        "[queue]\noutbox = \"outbox\"\n",
        &format!(
            "[queue]\nfirst_retry_delay = 1\nmax_retry_delay = 4\n\
             [relay]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\ntimeout = 10\n",
            sink.addr().port()
        ),
    );
    let calendar = site.dir.join("stores/alice/calendar");
    let mut rng = Rng(0x2026_1201_0013_CAFE);
    // Operations: create, answer, reschedule, remove an attendee, cancel; per round.
    let rounds = 5;
    let total_ops = rounds * events;
    let third = kills_wanted / 3;
    let mut random_kills: Vec<usize> = (0..third.max(1)).map(|_| rng.below(total_ops)).collect();
    random_kills.sort();
    // After the relay's 250: kill when the sink's count reaches these.
    let mut after_250: Vec<usize> = (0..third.max(1))
        .map(|_| 1 + rng.below(events * 5))
        .collect();
    after_250.sort();
    after_250.dedup();
    // After the LMTP dot: these answers.
    let mut after_dot: Vec<usize> = (0..(kills_wanted - 2 * third).max(1))
        .map(|_| rng.below(events))
        .collect();
    after_dot.sort();
    after_dot.dedup();

    let dot_delay_us: Vec<usize> = (0..events).map(|_| rng.below(6000)).collect();
    // Greylisting: every fourth event's first attendee is answered 451 until the end,
    // so its messages pile up and are retried with growing delays.
    let greylisted: Vec<String> = (0..events)
        .filter(|i| i % 4 == 0)
        .map(|i| format!("ext{i}a@example.net"))
        .collect();
    for rcpt in &greylisted {
        sink.reply_to_rcpt(rcpt, Some("451 4.7.1 greylisted, try again later"));
    }
    let daemon = std::sync::Arc::new(std::sync::Mutex::new(Some(site.start())));
    let kills = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sink = std::sync::Arc::new(sink);
    let watcher = {
        let (daemon, kills, stop, sink) =
            (daemon.clone(), kills.clone(), stop.clone(), sink.clone());
        let thresholds = after_250.clone();
        std::thread::spawn(move || {
            let mut next = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && next < thresholds.len() {
                if sink.message_count() >= thresholds[next] {
                    if let Some(child) = daemon.lock().expect("lock").take() {
                        kill(child);
                        kills.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    next += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let ensure_running = |site: &mut Crash| {
        let mut slot = daemon.lock().expect("lock");
        let dead = match slot.as_mut() {
            Some(child) => child.try_wait().ok().flatten().is_some(),
            None => true,
        };
        if dead {
            *slot = Some(site.start());
        }
    };
    let mut lmtp_retries = 0;
    for op in 0..total_ops {
        let (round, i) = (op / events, op % events);
        if random_kills.binary_search(&op).is_ok() {
            if let Some(child) = daemon.lock().expect("lock").take() {
                kill(child);
                kills.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        ensure_running(&mut site);
        let file = calendar.join(format!("life-{i}.ics"));
        match round {
            1 => {
                // The answer: killed right after the dot for some; an MTA retries.
                if after_dot.binary_search(&i).is_ok() {
                    let _ = lmtp_then(
                        site.port,
                        &format!("ext{i}a@example.net"),
                        "alice@example.com",
                        &lifecycle_reply(i),
                        || {
                            // 0–6 ms after the dot: the window where the answer is
                            // being written and committed.
                            std::thread::sleep(Duration::from_micros(dot_delay_us[i] as u64));
                            if let Some(child) = daemon.lock().expect("lock").take() {
                                kill(child);
                                kills.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                        },
                    );
                }
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    ensure_running(&mut site);
                    match lmtp(
                        site.port,
                        &format!("ext{i}a@example.net"),
                        "alice@example.com",
                        &lifecycle_reply(i),
                    ) {
                        Ok(answer) if answer.starts_with("250") => break,
                        _ => {
                            lmtp_retries += 1;
                            assert!(Instant::now() < deadline, "answer {i} never accepted");
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            }
            4 => {
                let _ = std::fs::remove_file(&file);
            }
            _ => {
                // Like a client: read the file (with what imipd wrote into it), change
                // it, save it by rename.
                let current = std::fs::read_to_string(&file)
                    .unwrap_or_default()
                    .replace("\r\n ", "");
                let text = match round {
                    0 => lifecycle_event(i, 0),
                    2 => current.replace("DTSTART:20300610T103000Z", "DTSTART:20300611T140000Z"),
                    _ => current
                        .split_inclusive("\r\n")
                        .filter(|l| !l.contains(&format!("ext{i}b@example.net")))
                        .collect(),
                };
                let temp = calendar.join(format!(".life-{i}.client-tmp"));
                std::fs::write(&temp, text).expect("write");
                std::fs::rename(&temp, &file).expect("rename");
            }
        }
        // A client saves at human speed, not all in one debounce window.
        std::thread::sleep(Duration::from_millis(15));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = watcher.join();
    ensure_running(&mut site);
    for rcpt in &greylisted {
        sink.reply_to_rcpt(rcpt, None);
    }

    // Done when every external attendee's last message is the CANCEL and the local
    // attendee holds a cancelled copy of every event (bounded: under load the local
    // deliveries can finish after the relay's last mail).
    let last_is_cancel = |all: &[Got], uid: &str, rcpt: &str| {
        all.iter()
            .rev()
            .find(|g| g.uid == uid && g.rcpt == rcpt)
            .is_some_and(|g| g.method == "CANCEL")
    };
    let bob_has_every_cancel = |site: &Crash| {
        let files = site.files("stores/bob/calendar");
        files.len() == events
            && files.iter().all(|f| {
                std::fs::read_to_string(f).is_ok_and(|text| text.contains("STATUS:CANCELLED"))
            })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let all: Vec<Got> = sink.messages().iter().flat_map(got).collect();
        let done = (0..events).all(|i| {
            let uid = format!("life-{i}");
            last_is_cancel(&all, &uid, &format!("ext{i}a@example.net"))
                && last_is_cancel(&all, &uid, &format!("ext{i}b@example.net"))
        }) && bob_has_every_cancel(&site);
        if done || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let any late resend arrive before counting.
    std::thread::sleep(Duration::from_secs(3));
    if let Some(child) = daemon.lock().expect("lock").take() {
        kill(child);
    }
    let all: Vec<Got> = sink.messages().iter().flat_map(got).collect();

    // Per (UID, recipient): the last message is the CANCEL (lost: 0), SEQUENCE never
    // goes down (order), and per (UID, recipient, method, SEQUENCE) one Message-ID
    // (logical duplicates: 0). The same Message-ID again is a resend SMTP forces.
    let mut lost = Vec::new();
    let mut out_of_order = Vec::new();
    let mut resent_changes = Vec::new();
    let mut ids: BTreeMap<(String, String, String, i64), std::collections::BTreeSet<String>> =
        BTreeMap::new();
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for g in &all {
        ids.entry((g.uid.clone(), g.rcpt.clone(), g.method.clone(), g.sequence))
            .or_default()
            .insert(g.message_id.clone());
        *copies
            .entry(format!("{}|{}", g.message_id, g.rcpt))
            .or_insert(0) += 1;
    }
    for i in 0..events {
        let uid = format!("life-{i}");
        for rcpt in [
            format!("ext{i}a@example.net"),
            format!("ext{i}b@example.net"),
        ] {
            if !last_is_cancel(&all, &uid, &rcpt) {
                lost.push(format!("{uid} → {rcpt}"));
            }
            let seqs: Vec<(i64, &str)> = all
                .iter()
                .filter(|g| g.uid == uid && g.rcpt == rcpt)
                .map(|g| (g.sequence, g.method.as_str()))
                .collect();
            if seqs.windows(2).any(|w| w[1].0 < w[0].0) {
                out_of_order.push(format!("{uid} → {rcpt}: {seqs:?}"));
            }
            // The same change sent again under a higher SEQUENCE (another Message-ID,
            // same substance as the REQUEST before it).
            let requests: Vec<&Got> = all
                .iter()
                .filter(|g| g.uid == uid && g.rcpt == rcpt && g.method == "REQUEST")
                .collect();
            for pair in requests.windows(2) {
                if pair[0].message_id != pair[1].message_id
                    && pair[0].substance == pair[1].substance
                {
                    resent_changes.push(format!(
                        "{uid} → {rcpt}: SEQUENCE {} then {} for {}",
                        pair[0].sequence, pair[1].sequence, pair[1].substance
                    ));
                }
            }
        }
    }
    let logical_duplicates: Vec<_> = ids.iter().filter(|(_, set)| set.len() > 1).collect();
    let logical_count = logical_duplicates.len() + resent_changes.len();
    let resends: usize = copies.values().map(|n| n - 1).sum();
    let kills = kills.load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "lifecycle harness: {events} events, {total_ops} organizer changes and answers, {kills} SIGKILLs \
         ({} random, {} after the relay's 250, {} after the LMTP dot), {} daemon starts, {} messages at the relay, \
         lost {}, logical duplicates {}, out of order {}, same-Message-ID resends {resends}, {lmtp_retries} LMTP retries",
        random_kills.len(),
        after_250.len(),
        after_dot.len(),
        site.starts,
        all.len(),
        lost.len(),
        logical_count,
        out_of_order.len(),
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(out_of_order.is_empty(), "out of order: {out_of_order:?}");
    assert!(
        logical_duplicates.is_empty(),
        "the same change sent again with another Message-ID: {logical_duplicates:?}"
    );
    assert!(
        resent_changes.is_empty(),
        "the same change sent again with a higher SEQUENCE: {resent_changes:?}"
    );
    for file in site.files("stores/bob/calendar") {
        let text = std::fs::read_to_string(&file).expect("bob's copy");
        assert!(
            calcard::icalendar::ICalendar::parse(&text).is_ok(),
            "{} parses",
            file.display()
        );
        assert!(
            text.contains("STATUS:CANCELLED"),
            "the local attendee's copy ends cancelled, not a meeting that was deleted:\n{text}"
        );
    }
    assert_eq!(
        site.files("stores/bob/calendar").len(),
        events,
        "one local copy per event"
    );
}
