//! Crash safety: the real daemon, killed with SIGKILL at random points while it works.
//!
//! 1,000 operations go through it: 500 invitations written into the organizer's store
//! (each to a local and an external attendee) and 500 REPLYs delivered over LMTP by a
//! client that behaves like an MTA (a message counts as delivered only on 250, and is
//! retried otherwise). The daemon is killed with SIGKILL at 24 random points and
//! restarted. At the end every expected email was sent exactly once, every local copy
//! exists exactly once, every reply is applied, and every store file parses.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EVENTS: usize = 500;
const KILLS: usize = 24;

struct Site {
    dir: PathBuf,
    port: u16,
    starts: usize,
}

impl Site {
    fn new() -> Site {
        let dir = std::env::temp_dir().join(format!("imipd-crash-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for user in ["alice", "bob"] {
            std::fs::create_dir_all(dir.join("stores").join(user).join("calendar"))
                .expect("folders");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        std::fs::write(
            dir.join("imipd.toml"),
            format!(
                "state = \"state/imipd.redb\"\n[control]\nsocket = \"control.sock\"\n[store]\nroot = \"stores\"\ndebounce_ms = 30\nrescan_interval = 5\n\
                 [[user]]\nname = \"alice\"\naddresses = [\"alice@example.com\"]\n\
                 [[user]]\nname = \"bob\"\naddresses = [\"bob@example.com\"]\n\
                 [mail]\ndomain = \"example.com\"\n[queue]\noutbox = \"outbox\"\n\
                 [lmtp]\nlisten = \"127.0.0.1:{port}\"\nimport_policy = \"everyone\"\n"
            ),
        )
        .expect("configuration");
        Site {
            dir,
            port,
            starts: 0,
        }
    }

    fn start(&mut self) -> Child {
        self.starts += 1;
        let child = Command::new(env!("CARGO_BIN_EXE_imipd"))
            .args(["serve", "--config"])
            .arg(self.dir.join("imipd.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("serve.log"))
                    .expect("log"),
            )
            .spawn()
            .expect("imipd binary");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "imipd did not start listening");
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    }

    fn files(&self, folder: &str) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(self.dir.join(folder))
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        out.retain(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        });
        out
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kill(mut child: Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
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
    let mut site = Site::new();
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
