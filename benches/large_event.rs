//! Benchmark `large_event`: one organizer update of a large event through the real
//! daemon (issue #17), beside the engine alone.
//!
//! For every size N (`LARGE_SIZES`, default 10, 100, 1,000) and every handoff way, a
//! fresh `imipd serve` (the release binary, as the other daemon benches run it) starts
//! on a fresh temporary store with one local organizer, alice. She saves a new event
//! with N external attendees (`attendeeK@example.net`, CN, RSVP=TRUE,
//! PARTSTAT=NEEDS-ACTION); its N invitations are handed off (timed as "invite", for
//! information) and the delivery statuses settle into her file. Then the timed run:
//! she saves an UPDATE of that file as it now is (DTSTART and DTEND moved by a week,
//! SEQUENCE + 1), written to a hidden temporary file and renamed into the watched
//! folder. From the rename:
//!
//! - **save → all queued**: the daemon logs `changed: queued …` (info, JSON lines to
//!   its log file) after the transaction holding all N messages has committed. A
//!   thread of this bench reads the log file every 1 ms and takes the instant it
//!   reads the line whose `messages` is N, so the figure includes up to ~1 ms of
//!   polling and the log's own latency (the log line is written after the commit).
//!   The line's own timestamp, against the wall clock of the rename, is printed
//!   beside it. The metrics endpoint was not used: rendering it opens a read
//!   transaction on the state database, which polling at 1 ms would disturb.
//! - **save → all handed off**, two ways (`LARGE_ONLY=outbox,relay`): **outbox** (no
//!   `[relay]`): the instant (inotify, as benches/handoff.rs) the last of the N
//!   `.eml` files appears in the outbox folder; **relay** (`[relay]` to the loopback
//!   SMTP sink of tests/support, tls none): the instant the sink accepted the last of
//!   the N messages. The N mails must name N distinct recipients.
//! - **state database growth**: the size of the state file (redb) just before the
//!   rename, when all N are handed off, and the largest size sampled every 2 ms in
//!   between (the queue empties as it drains, so the largest may be the telling one).
//! - **daemon peak RSS**: VmHWM of the daemon process from /proc right before it is
//!   stopped. A fresh daemon per size and way, so the figure is per size; it covers
//!   the invite as well as the update, which are of the same size.
//! - **mail bytes**: all N handed-off mails of the update, in total and per mail.
//! - **engine only**: `imipd::itip::schedule_change` on the same two versions of the
//!   file, already parsed (as benches/engine.rs), median of ≥ 5 runs; and the ratio
//!   daemon (save → all handed off) / engine only.
//!
//! And throughput rows, through the outbox and through the sinks: `LARGE_EVENTS`
//! (default 200) different 10-attendee events, created in one burst, settled, then
//! all updated in one burst, each saved durably (written, fsynced, renamed);
//! events/s = events / (time from the first rename until the last of the 10 × events
//! mails is handed off), for the invites and for the updates, and for the updates up
//! to the last `changed: queued` line. Beside them the floor, measured in the same
//! run just before: the same saves into an unwatched folder of the same disk, saves/s.
//!
//! The third way, **smtp-sink** (`[relay]` to Postfix's `/usr/sbin/smtp-sink`, C and
//! event-driven, default `connections`): the instant a mail is handed off is when
//! this bench reads smtp-sink's running count (`-c`), which names no recipient.
//!
//! Environment: `LARGE_SIZES` (default `10,100,1000`), `LARGE_ONLY` (words picking
//! runs: `outbox` `relay` `smtp-sink` `sizes` `throughput`; within each kind it names, only the
//! named ones run), `LARGE_RUNS` (runs per size and way, fresh
//! daemon each, median reported; default 1), `LARGE_EVENTS` (default 200),
//! `LARGE_ATTENDEE_LIST` (when set, `attendee_list = "<value>"` in `[mail]`),
//! `LARGE_ENGINE_BUDGET_MS` (time per engine-only measurement, default 1000),
//! `LARGE_WRAP` (a command the daemon runs under, e.g. `valgrind --tool=callgrind`),
//! `LARGE_SMOKE=1` (a quick check that the bench works: size 10, one run, 5 events;
//! used by nothing in CI). Every wait is bounded (120 s to drain); a missing message
//! fails the bench with the count that arrived and the daemon's log. Loopback only.

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use calcard::icalendar::ICalendar;
use common::{env_or, sample, show, watch_arrivals, Arrivals, Samples};
use imipd::itip::{self, CalAddress, Context, ReplyDetails};
use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use support::{Sink, TempDir};

/// How long the messages of one save may take to be handed off.
const DRAIN: Duration = Duration::from_secs(120);

/// How long the organizer's file may take to show every delivery status.
const SETTLE: Duration = Duration::from_secs(60);

/// The organizer, local.
const ALICE: &str = "alice@example.com";

/// The engine's clock for the engine-only figure: 2026-01-01T00:00:00Z (the events
/// are in 2030, so none is in the past).
const NOW: i64 = 1_767_225_600;

/// Where the messages of a run are handed off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handoff {
    Outbox,
    Relay,
    /// `[relay]` to Postfix's smtp-sink (C, event-driven), `connections` at its default.
    SmtpSink,
}

impl Handoff {
    fn name(self) -> &'static str {
        match self {
            Handoff::Outbox => "outbox",
            Handoff::Relay => "relay (SMTP sink)",
            Handoff::SmtpSink => "relay (Postfix smtp-sink)",
        }
    }

    /// The word of `LARGE_ONLY` that picks it.
    fn word(self) -> &'static str {
        match self {
            Handoff::Outbox => "outbox",
            Handoff::Relay => "relay",
            Handoff::SmtpSink => "smtp-sink",
        }
    }
}

/// A new event with `n` external attendees, as a client would save it.
fn event(uid: &str, n: usize) -> String {
    let mut text = String::with_capacity(120 * n + 600);
    text.push_str(&format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Bench//large event//EN\r\n\
         BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20300101T090000Z\r\nSEQUENCE:0\r\n\
         DTSTART:20300610T103000Z\r\nDTEND:20300610T113000Z\r\n\
         SUMMARY:All hands {n}\r\nLOCATION:Main hall\r\n\
         DESCRIPTION:Agenda: numbers\\, plans\\, questions.\r\n\
         ORGANIZER;CN=Alice Organizer:mailto:{ALICE}\r\n"
    ));
    for k in 0..n {
        text.push_str(&format!(
            "ATTENDEE;CN=Attendee {k};ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:\
             mailto:attendee{k}@example.net\r\n"
        ));
    }
    text.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
    text
}

/// The organizer's update of `current` (the file as it is now): the event moved by a
/// week and SEQUENCE raised by one; everything else (delivery statuses too) as it was.
fn updated(current: &str) -> String {
    let mut out = String::with_capacity(current.len() + 64);
    let mut sequence_seen = false;
    for line in current.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        if bare.starts_with("DTSTART") && !bare.starts_with("DTSTART;") {
            out.push_str("DTSTART:20300617T103000Z\r\n");
        } else if bare.starts_with("DTEND") && !bare.starts_with("DTEND;") {
            out.push_str("DTEND:20300617T113000Z\r\n");
        } else if let Some(n) = bare.strip_prefix("SEQUENCE:") {
            let n: u32 = n.trim().parse().unwrap_or(0);
            out.push_str(&format!("SEQUENCE:{}\r\n", n + 1));
            sequence_seen = true;
        } else {
            out.push_str(line);
        }
    }
    if !sequence_seen {
        out = out.replacen("\r\nUID:", "\r\nSEQUENCE:1\r\nUID:", 1);
    }
    out
}

/// Content lines unfolded (RFC 5545 §3.1), so that a parameter is on one line.
fn unfold(text: &str) -> String {
    text.replace("\r\n ", "").replace("\r\n\t", "")
}

/// Saves `text` as `dir/name` the way careful clients do: a hidden temporary file in
/// the same folder, renamed into place. Returns the instants right after the rename.
fn save(dir: &Path, name: &str, text: &str) -> (Instant, SystemTime) {
    let temp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, text).expect("write the temporary file");
    std::fs::rename(&temp, dir.join(name)).expect("rename into place");
    (Instant::now(), SystemTime::now())
}

/// One `changed: queued` line of the daemon's log.
#[derive(Debug, Clone)]
struct QueuedLine {
    /// The object key (`alice/calendar/NAME.ics`).
    object: String,
    /// How many messages the change queued.
    messages: usize,
    /// When this bench read the line.
    read_at: Instant,
    /// The line's own timestamp (the daemon's wall clock).
    stamp: Option<SystemTime>,
}

/// Reads the daemon's log file every 1 ms and keeps its `changed: queued` lines.
struct LogTail {
    lines: Arc<Mutex<Vec<QueuedLine>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogTail {
    fn start(path: PathBuf) -> LogTail {
        let lines: Arc<Mutex<Vec<QueuedLine>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (lines, stop) = (lines.clone(), stop.clone());
            std::thread::spawn(move || tail(&path, &lines, &stop))
        };
        LogTail {
            lines,
            stop,
            thread: Some(thread),
        }
    }

    /// The first line about `object` with `messages` messages read after `after`.
    fn find(&self, object: &str, messages: usize, after: Instant) -> Option<QueuedLine> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines
            .iter()
            .find(|l| l.object == object && l.messages == messages && l.read_at >= after)
            .cloned()
    }
}

impl Drop for LogTail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn tail(path: &Path, lines: &Mutex<Vec<QueuedLine>>, stop: &AtomicBool) {
    let mut offset = 0u64;
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        chunk.clear();
        if let Ok(mut file) = std::fs::File::open(path) {
            if file.seek(SeekFrom::Start(offset)).is_ok() {
                let _ = file.read_to_end(&mut chunk);
            }
        }
        if chunk.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let read_at = Instant::now();
        offset += chunk.len() as u64;
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some(found) = queued_line(&line, read_at) {
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(found);
            }
        }
    }
}

/// A `changed: queued` JSON log line, or `None`.
fn queued_line(line: &[u8], read_at: Instant) -> Option<QueuedLine> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    if !value["message"].as_str()?.starts_with("changed: queued") {
        return None;
    }
    let stamp = value["timestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            SystemTime::UNIX_EPOCH + Duration::from_micros(t.timestamp_micros().max(0) as u64)
        });
    Some(QueuedLine {
        object: value["object"].as_str()?.to_string(),
        messages: value["messages"].as_u64()? as usize,
        read_at,
        stamp,
    })
}

/// Samples the size of a file every 2 ms and keeps the largest.
struct SizeSampler {
    max: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SizeSampler {
    fn start(path: PathBuf) -> SizeSampler {
        let max = Arc::new(AtomicU64::new(file_size(&path)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (max, stop) = (max.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    max.fetch_max(file_size(&path), Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        SizeSampler {
            max,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the largest size seen.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.max.load(Ordering::SeqCst)
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The recipient named by an email's `X-Imipd-Item` header.
fn mail_rcpt(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(16 * 1024)];
    let text = String::from_utf8_lossy(head).replace("\r\n ", " ");
    let value = text.lines().find_map(|l| l.strip_prefix("X-Imipd-Item:"))?;
    let rcpt = value
        .split(';')
        .find_map(|p| p.trim().strip_prefix("rcpt="))?;
    Some(rcpt.trim().to_string())
}

/// One temporary site: store, configuration, state, outbox, log; and the daemon on it.
struct Site {
    dir: TempDir,
    daemon: Option<Child>,
}

impl Site {
    fn new(label: &str, relay: Option<std::net::SocketAddr>) -> Site {
        let dir = TempDir::new(&format!("bench-large-{label}"));
        for folder in ["stores/alice/calendar", "outbox", "state"] {
            std::fs::create_dir_all(dir.join(folder)).expect("site folders");
        }
        let root = dir.path().display().to_string();
        let attendee_list = std::env::var("LARGE_ATTENDEE_LIST")
            .ok()
            .map(|v| format!("attendee_list = \"{v}\"\n"))
            .unwrap_or_default();
        let mut config = format!(
            "state = \"{root}/state/imipd.redb\"\n[control]\nsocket = \"{root}/control.sock\"\n\
             [store]\nroot = \"{root}/stores\"\n\
             [[user]]\nname = \"alice\"\naddresses = [\"{ALICE}\"]\n\
             [mail]\ndomain = \"example.com\"\n{attendee_list}\
             [queue]\noutbox = \"{root}/outbox\"\n"
        );
        if let Some(addr) = relay {
            config.push_str(&format!(
                "[relay]\nhost = \"{}\"\nport = {}\ntls = \"none\"\n",
                addr.ip(),
                addr.port()
            ));
        }
        std::fs::write(dir.join("imipd.toml"), config).expect("configuration");
        Site { dir, daemon: None }
    }

    fn calendar(&self) -> PathBuf {
        self.dir.join("stores/alice/calendar")
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join("state/imipd.redb")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("serve.log")
    }

    /// The last `max` bytes of the daemon's log, for failure messages.
    fn log_tail(&self, max: usize) -> String {
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let start = log.len().saturating_sub(max);
        let start = (start..log.len())
            .find(|&i| log.is_char_boundary(i))
            .unwrap_or(log.len());
        log[start..].to_string()
    }

    /// Starts `imipd serve` (under `LARGE_WRAP`) and waits until it runs. A
    /// configuration the daemon rejects (e.g. `LARGE_ATTENDEE_LIST` on code without
    /// that option) fails the bench at once with `imipd check-config`'s words; a
    /// daemon that does not start fails it with its log.
    fn start(&mut self) -> u32 {
        let config = self.dir.join("imipd.toml");
        let check = std::process::Command::new(env!("CARGO_BIN_EXE_imipd"))
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .expect("imipd check-config runs");
        assert!(
            check.status.success(),
            "imipd rejects the bench's configuration:\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let child = common::start_daemon(
            &config,
            &self.log_file(),
            "LARGE_WRAP",
            "info",
            Duration::from_secs(60),
        );
        let pid = child.id();
        self.daemon = Some(child);
        pid
    }

    /// Stops the daemon.
    fn stop(&mut self) {
        if let Some(child) = self.daemon.take() {
            common::stop_daemon(child);
        }
    }

    /// Waits until each of the organizer's files `names` shows a delivery status for
    /// all `attendees` and none has changed for 300 ms; returns their texts.
    fn settled(&self, names: &[String], attendees: usize) -> Vec<String> {
        let paths: Vec<PathBuf> = names.iter().map(|n| self.calendar().join(n)).collect();
        let deadline = Instant::now() + SETTLE;
        let mut last: Vec<String> = vec![String::new(); paths.len()];
        let mut stable_since = Instant::now();
        loop {
            let mut done = 0;
            for (path, last) in paths.iter().zip(last.iter_mut()) {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                if text != *last {
                    *last = text;
                    stable_since = Instant::now();
                }
                if unfold(last).matches("SCHEDULE-STATUS=").count() >= attendees {
                    done += 1;
                }
            }
            if done == paths.len() && stable_since.elapsed() >= Duration::from_millis(300) {
                return last;
            }
            if Instant::now() > deadline {
                panic!(
                    "{done} of {} files show {attendees} delivery statuses within {} s; daemon log:\n{}",
                    paths.len(),
                    SETTLE.as_secs(),
                    self.log_tail(4000)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where a site's mails are seen: the outbox folder (inotify), the SMTP sink of
/// tests/support, or Postfix's smtp-sink (which tells when, not what).
struct Seen {
    sink: Option<Sink>,
    postfix: Option<common::SmtpSink>,
    _watcher: notify::RecommendedWatcher,
    arrivals: Arrivals,
}

/// One handed-off mail: when, how large, to whom.
struct Mail {
    at: Instant,
    bytes: usize,
    rcpt: Option<String>,
}

impl Seen {
    fn new(sink: Option<Sink>, postfix: Option<common::SmtpSink>, outbox: &Path) -> Seen {
        let (_watcher, arrivals) = watch_arrivals(&[outbox]);
        Seen {
            sink,
            postfix,
            _watcher,
            arrivals,
        }
    }

    /// Mails handed off so far.
    fn count(&self) -> usize {
        if let Some(postfix) = &self.postfix {
            return postfix.count();
        }
        match &self.sink {
            Some(sink) => sink.message_count(),
            None => self
                .arrivals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
        }
    }

    /// Waits (at most [`DRAIN`]) until `n` mails were handed off in all; panics with
    /// the count and the daemon's log when they are not.
    fn wait_for(&self, n: usize, what: &str, site: &Site) {
        let deadline = Instant::now() + DRAIN;
        while self.count() < n {
            if Instant::now() > deadline {
                panic!(
                    "{what}: {} of {n} mails handed off ({}) within {} s; daemon log:\n{}",
                    self.count(),
                    if self.sink.is_some() || self.postfix.is_some() {
                        "SMTP sink"
                    } else {
                        "outbox"
                    },
                    DRAIN.as_secs(),
                    site.log_tail(4000)
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The mails handed off after the first `skip` (sink) or since [`Seen::forget`]
    /// (outbox).
    fn mails(&self, skip: usize) -> Vec<Mail> {
        if let Some(postfix) = &self.postfix {
            return (postfix.arrivals().into_iter().skip(skip))
                .map(|at| Mail {
                    at,
                    bytes: 0,
                    rcpt: None,
                })
                .collect();
        }
        match &self.sink {
            Some(sink) => sink
                .messages()
                .into_iter()
                .skip(skip)
                .map(|m| Mail {
                    at: m.arrived,
                    bytes: m.data.len(),
                    rcpt: mail_rcpt(&m.data),
                })
                .collect(),
            None => {
                let arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
                arrivals
                    .iter()
                    .map(|(path, at)| {
                        let data = std::fs::read(path).unwrap_or_default();
                        Mail {
                            at: *at,
                            bytes: data.len(),
                            rcpt: mail_rcpt(&data),
                        }
                    })
                    .collect()
            }
        }
    }

    /// Forgets the outbox arrivals so far (the files stay), so that the next save's
    /// mails are the only ones counted (the sink is counted from an offset instead).
    fn forget(&self) {
        if self.sink.is_none() && self.postfix.is_none() {
            self.arrivals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
    }
}

/// What one large-event run measured.
struct Outcome {
    invite: Duration,
    /// The state file of the fresh daemon, before the invitation.
    state_fresh: u64,
    /// The largest state file while the invitation was handed off.
    invite_state_max: u64,
    queued: Duration,
    queued_stamp: Option<Duration>,
    handed_off: Duration,
    state_before: u64,
    state_after: u64,
    state_max: u64,
    rss_kib: u64,
    cpu: Duration,
    mail_bytes: usize,
    before: String,
    after: String,
}

fn run_large(handoff: Handoff, n: usize, run: usize) -> Outcome {
    let label = format!("{}-{n}-{run}", handoff.word());
    let (mut site, seen) = site_and_seen(handoff, &label);
    let tail = LogTail::start(site.log_file());
    let pid = site.start();
    let calendar = site.calendar();
    let name = format!("large-{n}.ics");
    let object = format!("alice/calendar/{name}");
    let uid = format!("large-{label}@example.com");

    // The invitation: not the figure, but it fills the store and warms the daemon.
    std::thread::sleep(Duration::from_millis(100));
    let state_fresh = file_size(&site.state_file());
    let sampler = SizeSampler::start(site.state_file());
    let (invited, _) = save(&calendar, &name, &event(&uid, n));
    seen.wait_for(n, "invitation", &site);
    let invite_state_max = sampler.finish().max(file_size(&site.state_file()));
    let invite = seen
        .mails(0)
        .iter()
        .map(|m| m.at)
        .max()
        .map_or(Duration::ZERO, |at| at.saturating_duration_since(invited));
    let before = site
        .settled(std::slice::from_ref(&name), n)
        .pop()
        .unwrap_or_default();
    let after = updated(&before);

    // The timed update.
    seen.forget();
    let base = seen.count();
    let state_before = file_size(&site.state_file());
    let sampler = SizeSampler::start(site.state_file());
    let (saved, saved_wall) = save(&calendar, &name, &after);
    seen.wait_for(base + n, "update", &site);
    let state_after = file_size(&site.state_file());
    let state_max = sampler.finish().max(state_after);
    let deadline = Instant::now() + Duration::from_secs(10);
    let queued = loop {
        if let Some(line) = tail.find(&object, n, saved) {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no `changed: queued` line for {object} with {n} messages; daemon log:\n{}",
            site.log_tail(4000)
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let mails = seen.mails(base);
    let recipients: HashSet<&str> = mails.iter().filter_map(|m| m.rcpt.as_deref()).collect();
    // smtp-sink tells when, not to whom.
    let told = handoff != Handoff::SmtpSink;
    assert!(
        mails.len() == n && (recipients.len() == n || !told),
        "the update handed off {} mails to {} distinct recipients, expected {n}",
        mails.len(),
        recipients.len()
    );
    let last = mails.iter().map(|m| m.at).max().unwrap_or(saved);
    let rss_kib = common::peak_rss_of_pid_kib(pid);
    let cpu = common::cpu_time_of_pid(pid);
    site.stop();
    Outcome {
        invite,
        state_fresh,
        invite_state_max,
        queued: queued.read_at.saturating_duration_since(saved),
        queued_stamp: queued.stamp.and_then(|s| s.duration_since(saved_wall).ok()),
        handed_off: last.saturating_duration_since(saved),
        state_before,
        state_after,
        state_max,
        rss_kib,
        cpu,
        mail_bytes: mails.iter().map(|m| m.bytes).sum(),
        before,
        after,
    }
}

/// The engine alone on the same two versions: `schedule_change` on parsed objects,
/// and bytes to bytes (parse both, schedule, serialise every message and the copy).
fn engine_only(before: &str, after: &str) -> (Duration, Duration, Duration) {
    let parse = |t: &str| ICalendar::parse(t).expect("the daemon's file parses");
    let (old, new) = (parse(before), parse(after));
    let account = [CalAddress::parse(ALICE).expect("address")];
    let context = Context {
        account: &account,
        now: NOW,
        reply_details: ReplyDetails::Full,
    };
    let schedule = |old: &ICalendar, new: &ICalendar| {
        itip::schedule_change(Some(old), new, &context).expect("the update schedules")
    };
    assert!(
        !schedule(&old, &new).messages.is_empty(),
        "the engine sends the update"
    );
    let budget = Duration::from_millis(env_or("LARGE_ENGINE_BUDGET_MS", 1000));
    let engine = sample(budget, 5, || {
        std::hint::black_box(schedule(&old, &new));
    });
    let bytes = sample(budget, 5, || {
        let outcome = schedule(&parse(before), &parse(after));
        let mut total: usize = outcome
            .messages
            .iter()
            .map(|m| m.calendar.to_string().len())
            .sum();
        total += outcome.updated.map_or(0, |c| c.to_string().len());
        std::hint::black_box(total);
    });
    // The daemon's CPU path without its disk: parse, schedule, serialise each message
    // once (as the queue stores it), and build every recipient's email from the mail
    // prepared once (as the queue worker does).
    let with_mail = sample(budget, 5, || {
        let outcome = schedule(&parse(before), &parse(after));
        let copy = outcome.updated.map_or(0, |c| c.to_string().len());
        std::hint::black_box(copy + common::build_emails(outcome.messages, NOW));
    });
    (engine.median(), bytes.median(), with_mail.median())
}

/// Throughput: `events` 10-attendee events created in one burst, then updated in one
/// burst, to the outbox. Returns (invites/s, updates/s, daemon CPU).
fn run_throughput(handoff: Handoff, events: usize, run: usize) -> Throughput {
    const ATTENDEES: usize = 10;
    let (mut site, seen) = site_and_seen(handoff, &format!("throughput-{}-{run}", handoff.word()));
    let tail = LogTail::start(site.log_file());
    let pid = site.start();
    let calendar = site.calendar();
    let names: Vec<String> = (0..events).map(|k| format!("ev-{k}.ics")).collect();
    std::thread::sleep(Duration::from_millis(100));

    let rate = |first: Instant, mails: &[Mail]| {
        let last = mails.iter().map(|m| m.at).max().unwrap_or(first);
        events as f64
            / last
                .saturating_duration_since(first)
                .as_secs_f64()
                .max(1e-9)
    };
    let texts: Vec<String> = (0..events)
        .map(|k| event(&format!("tp-{run}-{k}@example.com"), ATTENDEES))
        .collect();
    // The disk's floor, in this run: the same saves with no daemon watching.
    let floor = common::client_saves_per_second(&site.dir.join("floor"), &texts);
    let mut first = None;
    for (name, text) in names.iter().zip(&texts) {
        first.get_or_insert(common::save_durable(&calendar, name, text));
    }
    let first = first.unwrap_or_else(Instant::now);
    seen.wait_for(events * ATTENDEES, "throughput invitations", &site);
    let invites = rate(first, &seen.mails(0));
    let currents = site.settled(&names, ATTENDEES);

    seen.forget();
    let base = seen.count();
    let mut first = None;
    for (name, current) in names.iter().zip(&currents) {
        first.get_or_insert(common::save_durable(&calendar, name, &updated(current)));
    }
    let first = first.unwrap_or_else(Instant::now);
    seen.wait_for(base + events * ATTENDEES, "throughput updates", &site);
    let updates = rate(first, &seen.mails(base));
    let deadline = Instant::now() + Duration::from_secs(10);
    let last_queued = loop {
        let lines: Option<Vec<QueuedLine>> = names
            .iter()
            .map(|n| tail.find(&format!("alice/calendar/{n}"), ATTENDEES, first))
            .collect();
        if let Some(lines) = lines {
            break lines.into_iter().map(|l| l.read_at).max().unwrap_or(first);
        }
        assert!(
            Instant::now() < deadline,
            "not every update logged `changed: queued`; daemon log:\n{}",
            site.log_tail(4000)
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let updates_queued = events as f64
        / last_queued
            .saturating_duration_since(first)
            .as_secs_f64()
            .max(1e-9);
    let cpu = common::cpu_time_of_pid(pid);
    site.stop();
    Throughput {
        floor,
        invites,
        updates,
        updates_queued,
        cpu,
    }
}

/// A site whose mail goes where `handoff` says, and where its mails are seen.
fn site_and_seen(handoff: Handoff, label: &str) -> (Site, Seen) {
    let sink = (handoff == Handoff::Relay).then(Sink::start);
    let postfix = (handoff == Handoff::SmtpSink).then(common::SmtpSink::start);
    let relay = (sink.as_ref().map(Sink::addr)).or(postfix.as_ref().map(common::SmtpSink::addr));
    let site = Site::new(label, relay);
    let seen = Seen::new(sink, postfix, &site.dir.join("outbox"));
    (site, seen)
}

/// What one throughput run measured (events/s).
struct Throughput {
    /// The client's durable saves per second on the same disk, no daemon (the floor).
    floor: f64,
    /// New events: first save → last mail in the outbox.
    invites: f64,
    /// Updates: first save → last mail in the outbox.
    updates: f64,
    /// Updates: first save → last `changed: queued` line read.
    updates_queued: f64,
    /// Daemon CPU time for the whole run.
    cpu: Duration,
}

fn median_f64(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values
        .get(values.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}

fn median_u64(values: &mut [u64]) -> u64 {
    values.sort();
    values
        .get(values.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / 1024.0 / 1024.0)
}

fn signed_mib(before: u64, after: u64) -> String {
    let d = after as f64 - before as f64;
    format!("{:+.2} MiB", d / 1024.0 / 1024.0)
}

/// All runs of one size and way, reduced to medians.
struct Row {
    handoff: Handoff,
    n: usize,
    invite: Duration,
    state_fresh: u64,
    invite_state_max: u64,
    queued: Duration,
    queued_stamp: Duration,
    handed_off: Duration,
    state_before: u64,
    state_after: u64,
    state_max: u64,
    rss_kib: u64,
    cpu: Duration,
    mail_bytes: u64,
    engine: Duration,
    engine_bytes: Duration,
    engine_mail: Duration,
}

fn row(handoff: Handoff, n: usize, outcomes: &[Outcome]) -> Row {
    let durations = |f: fn(&Outcome) -> Duration| {
        let mut s = Samples::new();
        outcomes.iter().for_each(|o| s.push(f(o)));
        s.median()
    };
    let sizes = |f: fn(&Outcome) -> u64| {
        let mut v: Vec<u64> = outcomes.iter().map(f).collect();
        median_u64(&mut v)
    };
    let (engine, engine_bytes, engine_mail) = outcomes
        .first()
        .map(|o| engine_only(&o.before, &o.after))
        .unwrap_or_default();
    Row {
        handoff,
        n,
        invite: durations(|o| o.invite),
        state_fresh: sizes(|o| o.state_fresh),
        invite_state_max: sizes(|o| o.invite_state_max),
        queued: durations(|o| o.queued),
        queued_stamp: durations(|o| o.queued_stamp.unwrap_or_default()),
        handed_off: durations(|o| o.handed_off),
        state_before: sizes(|o| o.state_before),
        state_after: sizes(|o| o.state_after),
        state_max: sizes(|o| o.state_max),
        rss_kib: sizes(|o| o.rss_kib),
        cpu: durations(|o| o.cpu),
        mail_bytes: sizes(|o| o.mail_bytes as u64),
        engine,
        engine_bytes,
        engine_mail,
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let smoke = std::env::var_os("LARGE_SMOKE").is_some();
    let sizes: Vec<usize> = if smoke {
        vec![10]
    } else {
        std::env::var("LARGE_SIZES")
            .unwrap_or_else(|_| "10,100,1000".into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    };
    let runs: usize = if smoke {
        1
    } else {
        env_or("LARGE_RUNS", 1usize).max(1)
    };
    let events: usize = if smoke {
        5
    } else {
        env_or("LARGE_EVENTS", 200usize).max(1)
    };
    let only: Vec<String> = std::env::var("LARGE_ONLY")
        .unwrap_or_default()
        .split(',')
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty())
        .collect();
    // Within each kind of word (ways: outbox, relay; runs: sizes, throughput) that
    // LARGE_ONLY names, only the named ones run.
    let keep = |kind: &[&str], word: &str| {
        !kind.iter().any(|k| only.iter().any(|w| w == k)) || only.iter().any(|w| w == word)
    };
    const WAYS: [&str; 3] = ["outbox", "relay", "smtp-sink"];
    const RUNS: [&str; 2] = ["sizes", "throughput"];
    let load_start = load_average();

    let mut rows = Vec::new();
    for &n in &sizes {
        for handoff in [Handoff::Outbox, Handoff::Relay, Handoff::SmtpSink] {
            if !keep(&RUNS, "sizes") || !keep(&WAYS, handoff.word()) {
                continue;
            }
            let outcomes: Vec<Outcome> = (0..runs)
                .map(|run| {
                    let o = run_large(handoff, n, run);
                    eprintln!(
                        "{n} attendees, {} run {}: invite {}, queued {} (log stamp {}), \
                         handed off {}, state {} → {} (max {}; invite {} → {}), RSS {} MiB, CPU {}",
                        handoff.name(),
                        run + 1,
                        show(o.invite),
                        show(o.queued),
                        o.queued_stamp.map_or("—".into(), show),
                        show(o.handed_off),
                        mib(o.state_before),
                        mib(o.state_after),
                        mib(o.state_max),
                        mib(o.state_fresh),
                        mib(o.invite_state_max),
                        o.rss_kib / 1024,
                        show(o.cpu),
                    );
                    o
                })
                .collect();
            rows.push(row(handoff, n, &outcomes));
        }
    }
    let mut throughput = Vec::new();
    for handoff in [Handoff::Outbox, Handoff::Relay, Handoff::SmtpSink] {
        if !keep(&RUNS, "throughput") || !keep(&WAYS, handoff.word()) {
            continue;
        }
        let mut floors = Vec::new();
        let mut invites = Vec::new();
        let mut updates = Vec::new();
        let mut queued = Vec::new();
        let mut cpu = Samples::new();
        for run in 0..runs {
            let t = run_throughput(handoff, events, run);
            eprintln!(
                "throughput {} run {}: floor {:.0} saves/s, invites {:.0}/s, updates {:.0}/s handed off, {:.0}/s queued, CPU {}",
                handoff.name(),
                run + 1,
                t.floor,
                t.invites,
                t.updates,
                t.updates_queued,
                show(t.cpu)
            );
            floors.push(t.floor);
            invites.push(t.invites);
            updates.push(t.updates);
            queued.push(t.updates_queued);
            cpu.push(t.cpu);
        }
        throughput.push((
            handoff,
            Throughput {
                floor: median_f64(&mut floors),
                invites: median_f64(&mut invites),
                updates: median_f64(&mut updates),
                updates_queued: median_f64(&mut queued),
                cpu: cpu.median(),
            },
        ));
    }
    let load_end = load_average();

    println!("### Large events through the daemon\n");
    println!("Machine: {}\n", common::machine());
    println!(
        "Command: `LARGE_SIZES={} LARGE_RUNS={runs} LARGE_EVENTS={events} cargo bench --bench large_event`{}; \
         load average (1, 5, 15 min) {load_start} at the start, {load_end} at the end; \
         medians of {runs} run(s), a fresh daemon each\n",
        sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
        std::env::var("LARGE_ATTENDEE_LIST")
            .map(|v| format!(" (attendee_list = \"{v}\")"))
            .unwrap_or_default(),
    );
    println!(
        "| attendees | handoff | save → all queued (log read; log stamp) | save → all handed off | \
         engine only | engine bytes to bytes | engine + mail, in process | daemon / engine only | state, update: before → max (→ when handed off) | \
         state, invite: fresh → max | daemon peak RSS | daemon CPU | mail bytes | per mail | invite → all handed off |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} ({}) | {} | {} | {} | {} | {:.0}× | {} → {} ({}; → {}) | {} → {} ({}) | {} MiB | {} | {:.1} MB | {:.1} KB | {} |",
            r.n,
            r.handoff.name(),
            show(r.queued),
            show(r.queued_stamp),
            show(r.handed_off),
            show(r.engine),
            show(r.engine_bytes),
            show(r.engine_mail),
            r.handed_off.as_secs_f64() / r.engine.as_secs_f64().max(1e-12),
            mib(r.state_before),
            mib(r.state_max),
            signed_mib(r.state_before, r.state_max),
            mib(r.state_after),
            mib(r.state_fresh),
            mib(r.invite_state_max),
            signed_mib(r.state_fresh, r.invite_state_max),
            r.rss_kib / 1024,
            show(r.cpu),
            r.mail_bytes as f64 / 1e6,
            r.mail_bytes as f64 / 1e3 / r.n as f64,
            show(r.invite),
        );
    }
    if !throughput.is_empty() {
        println!(
            "\nThroughput: {events} events of 10 attendees saved in one burst, then all updated \
             in one burst (engine + mail); events/s from the first save:\n"
        );
        println!("| handoff | floor: client's durable saves, no daemon | new events, all handed off | updates, all handed off | updates ÷ floor | updates, all queued | daemon CPU (both bursts) |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (handoff, t) in &throughput {
            println!(
                "| {} | {:.0}/s | {:.0}/s | {:.0}/s | {:.2} | {:.0}/s | {} |",
                handoff.name(),
                t.floor,
                t.invites,
                t.updates,
                t.updates / t.floor.max(1e-9),
                t.updates_queued,
                show(t.cpu)
            );
        }
    }

    // The table, for the largest size measured.
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let of = |h: Handoff| rows.iter().find(|r| r.n == largest && r.handoff == h);
    let any = of(Handoff::Outbox).or(of(Handoff::Relay));
    println!("\n| figure | measured |\n|---|---|");
    if let Some(r) = any {
        println!(
            "| {largest}-attendee update: save → all queued | {} |",
            show(r.queued)
        );
        let handed: Vec<String> = [Handoff::Outbox, Handoff::Relay, Handoff::SmtpSink]
            .into_iter()
            .filter_map(|h| of(h).map(|r| format!("{} {}", show(r.handed_off), h.name())))
            .collect();
        println!(
            "| same: save → all {largest} mails handed off (outbox or loopback SMTP) | {} |",
            handed.join(", ")
        );
        println!(
            "| same: state database growth | update {} (largest file while draining; {} when all handed off); \
             the invitation before it, on a fresh state: {} |",
            signed_mib(r.state_before, r.state_max),
            signed_mib(r.state_before, r.state_after),
            signed_mib(r.state_fresh, r.invite_state_max),
        );
        let rss: Vec<String> = [Handoff::Outbox, Handoff::Relay, Handoff::SmtpSink]
            .into_iter()
            .filter_map(|h| of(h).map(|r| format!("{} MiB {}", r.rss_kib / 1024, h.name())))
            .collect();
        println!("| same: daemon peak RSS | {} |", rss.join(", "));
        println!(
            "| same: mail handed off | {:.1} MB, {:.1} KB per mail |",
            r.mail_bytes as f64 / 1e6,
            r.mail_bytes as f64 / 1e3 / r.n.max(1) as f64
        );
        println!(
            "| same: engine only; daemon (save → all handed off) / engine only | {}; {:.0}× |",
            show(r.engine),
            r.handed_off.as_secs_f64() / r.engine.as_secs_f64().max(1e-12)
        );
    }
    if !throughput.is_empty() {
        let rates: Vec<String> = throughput
            .iter()
            .map(|(h, t)| {
                format!(
                    "{:.0}/s {} ({:.0}/s queued; {:.2} × the floor of {:.0} client saves/s)",
                    t.updates,
                    h.name(),
                    t.updates_queued,
                    t.updates / t.floor.max(1e-9),
                    t.floor
                )
            })
            .collect();
        println!(
            "| 10-attendee update through the daemon path (engine + mail), events/s | {} |",
            rates.join(", ")
        );
    }
    if let Some(r) = rows.iter().find(|r| r.n == 10) {
        println!(
            "| 10-attendee update, engine + mail in process (no disk), events/s | {:.0}/s ({} each) |",
            1.0 / r.engine_mail.as_secs_f64().max(1e-12),
            show(r.engine_mail)
        );
    }
}
