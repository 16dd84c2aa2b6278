//! Benchmark `handoff`: from a saved calendar file to the message handed off.
//!
//! The real `imipd serve` binary runs on a fresh temporary store for every run. The
//! organizer (alice, local) saves N new events, each with one local attendee (bob) and
//! three external ones, so every file yields three emails and one local delivery. The
//! clock starts when a file is complete in its folder (after the rename, or after the
//! close of an in-place write) and stops, per message, when
//!
//! - **outbox** (no `[relay]`): the `.eml` file appears in the outbox folder;
//! - **relay** (`[relay]` to a loopback SMTP sink, tls none): the sink has received the
//!   end of DATA and answers 250;
//! - **local**: bob's copy appears in his calendar folder.
//!
//! Arrivals in folders are seen through inotify (the `notify` crate): the instant is
//! taken in the event callback, microseconds after the kernel queued the event. The
//! sink takes its instant when it accepts the message. Files are matched to messages
//! by the event UID (the `X-Imipd-Item` header of an email, `UID:` of bob's copy).
//!
//! Two pacings: **paced** (one file every `HANDOFF_PACE_MS`, default 20 ms, so a
//! message does not wait behind others) and **burst** (all files at once: the figure
//! is then mostly queueing). Two ways of saving: **rename** (a temporary file in the
//! same folder renamed into place, as Radicale and careful clients do) and
//! **in-place** (open, truncate, write, close).
//!
//! Environment: `HANDOFF_FILES` (default 200), `HANDOFF_PACE_MS` (default 20),
//! `HANDOFF_DEBOUNCE_MS` (default: unset, the daemon's default), `HANDOFF_ONLY`
//! (words that pick runs, e.g. `outbox,paced`: `outbox` `relay` `paced` `burst`
//! `rename` `in-place`), `HANDOFF_WRAP` (a command the
//! daemon runs under, for profiling: `strace -f -T -o FILE`, `valgrind
//! --tool=callgrind`). Every run is bounded: 60 s to
//! drain at most. Loopback only.

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::{env_or, show, watch_arrivals, Samples};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant, SystemTime};
use support::{Sink, TempDir};

/// External attendees per event: each gets one email per change.
const EXTERNAL: [&str; 3] = ["carol@example.net", "dave@example.net", "erin@example.org"];

/// How long a run may take to drain after its last write.
const DRAIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handoff {
    Outbox,
    Relay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pacing {
    Paced,
    Burst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Save {
    Rename,
    InPlace,
}

impl Handoff {
    fn name(self) -> &'static str {
        match self {
            Handoff::Outbox => "outbox",
            Handoff::Relay => "relay (SMTP sink)",
        }
    }
}

impl Pacing {
    fn name(self) -> &'static str {
        match self {
            Pacing::Paced => "paced",
            Pacing::Burst => "burst",
        }
    }
}

impl Save {
    fn name(self) -> &'static str {
        match self {
            Save::Rename => "rename",
            Save::InPlace => "in-place",
        }
    }
}

/// What one run measured.
struct Outcome {
    files: usize,
    /// Write → handoff (outbox file or sink acceptance), per email.
    mail: Samples,
    /// Write → bob's copy in place, per file.
    local: Samples,
    /// Write → "queued" log line of the daemon, per file (wall clock on both sides).
    queued: Samples,
    /// Emails expected but not seen before the drain deadline.
    missing: usize,
    /// Wall time from the first write until the last message was seen.
    span: Duration,
    /// CPU time the daemon used in the whole run (start-up included).
    cpu: Duration,
}

/// The UID of an email's `X-Imipd-Item` header.
fn mail_uid(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let value = text.lines().find_map(|l| l.strip_prefix("X-Imipd-Item:"))?;
    let uid = value.trim().strip_prefix("uid=")?.split(';').next()?;
    Some(uid.trim().to_string())
}

/// The UID of a calendar file.
fn ics_uid(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("UID:"))
        .map(|u| u.trim().to_string())
}

fn event(uid: &str, n: usize) -> String {
    let mut text = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Bench//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
         DTSTAMP:20300101T090000Z\r\nDTSTART:20300610T103000Z\r\nDTEND:20300610T113000Z\r\n\
         SUMMARY:Meeting {n}\r\nORGANIZER;CN=Alice:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
         ATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\n"
    );
    for who in EXTERNAL {
        text.push_str(&format!("ATTENDEE;RSVP=TRUE:mailto:{who}\r\n"));
    }
    text.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
    text
}

/// One temporary site: store, configuration, state, outbox, log; and the daemon on it.
struct Site {
    dir: TempDir,
    daemon: Option<Child>,
    /// CPU time (user + system) the daemon had used when it was stopped.
    cpu: Duration,
}

impl Site {
    fn new(label: &str, relay: Option<std::net::SocketAddr>) -> Site {
        let dir = TempDir::new(&format!("bench-handoff-{label}"));
        for folder in [
            "stores/alice/calendar",
            "stores/bob/calendar",
            "outbox",
            "state",
        ] {
            std::fs::create_dir_all(dir.join(folder)).expect("site folders");
        }
        let root = dir.path().display().to_string();
        let debounce = std::env::var("HANDOFF_DEBOUNCE_MS")
            .ok()
            .map(|ms| format!("debounce_ms = {ms}\n"))
            .unwrap_or_default();
        let mut config = format!(
            "state = \"{root}/state/imipd.redb\"\n[control]\nsocket = \"{root}/control.sock\"\n\
             [store]\nroot = \"{root}/stores\"\n{debounce}\
             [[user]]\nname = \"alice\"\naddresses = [\"alice@example.com\"]\n\
             [[user]]\nname = \"bob\"\naddresses = [\"bob@example.com\"]\n\
             [mail]\ndomain = \"example.com\"\n\
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
        Site {
            dir,
            daemon: None,
            cpu: Duration::ZERO,
        }
    }

    fn calendar(&self) -> PathBuf {
        self.dir.join("stores/alice/calendar")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// Starts `imipd serve` (under `HANDOFF_WRAP`, e.g. "strace -f -T -o FILE" or
    /// "valgrind --tool=callgrind --callgrind-out-file=FILE") and waits until it runs.
    fn start(&mut self) {
        self.daemon = Some(common::start_daemon(
            &self.dir.join("imipd.toml"),
            &self.dir.join("serve.log"),
            "HANDOFF_WRAP",
            "info",
            Duration::from_secs(60),
        ));
    }

    /// Records the daemon's CPU time, then stops it.
    fn stop(&mut self) {
        let Some(child) = self.daemon.take() else {
            return;
        };
        self.cpu = common::cpu_time_of_pid(child.id());
        common::stop_daemon(child);
    }

    /// When the daemon logged "queued" for each object file name (wall clock).
    fn queued_at(&self) -> HashMap<String, SystemTime> {
        let mut out = HashMap::new();
        let Ok(file) = std::fs::File::open(self.dir.join("serve.log")) else {
            return out;
        };
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let message = value["message"].as_str().unwrap_or_default();
            if !message.starts_with("changed: queued") {
                continue;
            }
            let (Some(object), Some(at)) = (value["object"].as_str(), value["timestamp"].as_str())
            else {
                continue;
            };
            let Ok(at) = chrono::DateTime::parse_from_rfc3339(at) else {
                continue;
            };
            let since = Duration::from_micros(at.timestamp_micros().max(0) as u64);
            let name = object.rsplit('/').next().unwrap_or(object).to_string();
            out.entry(name).or_insert(SystemTime::UNIX_EPOCH + since);
        }
        out
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes one event file the chosen way; returns when it is complete in place.
fn save(dir: &Path, name: &str, text: &str, how: Save) {
    match how {
        Save::Rename => {
            let temp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&temp, text).expect("write the temporary file");
            std::fs::rename(&temp, dir.join(name)).expect("rename into place");
        }
        Save::InPlace => std::fs::write(dir.join(name), text).expect("write in place"),
    }
}

fn run(handoff: Handoff, pacing: Pacing, how: Save, files: usize, pace: Duration) -> Outcome {
    let label =
        format!("{}-{}-{}", handoff.name(), pacing.name(), how.name()).replace([' ', '(', ')'], "");
    let sink = (handoff == Handoff::Relay).then(Sink::start);
    let mut site = Site::new(&label, sink.as_ref().map(Sink::addr));
    site.start();
    let outbox = site.dir.join("outbox");
    let bob = site.dir.join("stores/bob/calendar");
    let (_watcher, arrivals) = watch_arrivals(&[&outbox, &bob]);
    let calendar = site.calendar();
    let emails = files * EXTERNAL.len();
    let under = |dir: &Path| {
        arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|p| p.starts_with(dir))
            .count()
    };
    let seen_emails = || match &sink {
        Some(sink) => sink.messages().len(),
        None => under(&outbox),
    };

    // Warm up (and make sure the daemon's watch is in place): one event in another
    // folder, not measured, until its emails and local copy are there.
    let warmup = site.dir.join("stores/alice/warmup");
    std::fs::create_dir_all(&warmup).expect("warm-up folder");
    std::thread::sleep(Duration::from_millis(100));
    save(&warmup, "warmup.ics", &event("warmup", 0), Save::Rename);
    let deadline = Instant::now() + DRAIN;
    while (seen_emails() < EXTERNAL.len() || under(&bob) < 1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        seen_emails() >= EXTERNAL.len(),
        "the warm-up event was not sent:\n{}",
        site.log()
    );
    // Let its delivery statuses settle.
    std::thread::sleep(Duration::from_millis(300));

    // Write the files, remembering when each was complete.
    let mut written: HashMap<String, (Instant, SystemTime, String)> = HashMap::new();
    let start = Instant::now();
    for n in 0..files {
        let uid = format!("handoff-{label}-{n}");
        let name = format!("ev-{n}.ics");
        let text = event(&uid, n);
        if pacing == Pacing::Paced {
            let slot = start + pace * n as u32;
            if let Some(wait) = slot.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        save(&calendar, &name, &text, how);
        written.insert(uid, (Instant::now(), SystemTime::now(), name));
    }

    // Wait (bounded) for every email and every local copy (the warm-up's too).
    let deadline = Instant::now() + DRAIN;
    while (seen_emails() < emails + EXTERNAL.len() || under(&bob) < files + 1)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the last deliveries settle so the log is complete, then stop.
    std::thread::sleep(Duration::from_millis(300));
    site.stop();

    // Match arrivals to writes.
    let arrivals = arrivals.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut mail = Samples::new();
    let mut local = Samples::new();
    let mut last = start;
    let mut take = |uid: Option<String>, at: Instant, into: &mut Samples| {
        if let Some((wrote, _, _)) = uid.and_then(|u| written.get(&u)) {
            into.push(at.saturating_duration_since(*wrote));
            last = last.max(at);
        }
    };
    match &sink {
        Some(sink) => {
            for message in sink.messages() {
                take(mail_uid(&message.data), message.arrived, &mut mail);
            }
        }
        None => {
            for (path, at) in arrivals.iter().filter(|(p, _)| p.starts_with(&outbox)) {
                let uid = std::fs::read(path).ok().and_then(|b| mail_uid(&b));
                take(uid, *at, &mut mail);
            }
        }
    }
    for (path, at) in arrivals.iter().filter(|(p, _)| p.starts_with(&bob)) {
        let uid = std::fs::read_to_string(path).ok().and_then(|t| ics_uid(&t));
        take(uid, *at, &mut local);
    }
    let queued_at = site.queued_at();
    let mut queued = Samples::new();
    for (_, wrote, name) in written.values() {
        if let Some(at) = queued_at.get(name) {
            queued.push(at.duration_since(*wrote).unwrap_or_default());
        }
    }
    Outcome {
        files,
        missing: emails.saturating_sub(mail.len()),
        mail,
        local,
        queued,
        span: last.duration_since(start),
        cpu: site.cpu,
    }
}

fn main() {
    let files: usize = env_or("HANDOFF_FILES", 200);
    let pace = Duration::from_millis(env_or("HANDOFF_PACE_MS", 20));
    let only = std::env::var("HANDOFF_ONLY").unwrap_or_default();
    let debounce = std::env::var("HANDOFF_DEBOUNCE_MS").unwrap_or_else(|_| "default".into());
    println!("### Change → handoff\n");
    println!("Machine: {}\n", common::machine());
    println!(
        "Command: `HANDOFF_FILES={files} HANDOFF_PACE_MS={} cargo bench --bench handoff` \
         (debounce_ms: {debounce}; paced = one file every {} ms)\n",
        pace.as_millis(),
        pace.as_millis()
    );
    // HANDOFF_ONLY: comma-separated words; within each kind (transport, pacing, save)
    // that it names, only the named ones run.
    let only: Vec<String> = only
        .split(',')
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty())
        .collect();
    let keep = |kind: &[&str], name: &str| {
        !kind.iter().any(|k| only.iter().any(|w| w == k)) || only.iter().any(|w| w == name)
    };
    let mut rows = Vec::new();
    for (handoff, short) in [(Handoff::Outbox, "outbox"), (Handoff::Relay, "relay")] {
        for pacing in [Pacing::Paced, Pacing::Burst] {
            for how in [Save::Rename, Save::InPlace] {
                if !keep(&["outbox", "relay"], short)
                    || !keep(&["paced", "burst"], pacing.name())
                    || !keep(&["rename", "in-place"], how.name())
                {
                    continue;
                }
                let outcome = run(handoff, pacing, how, files, pace);
                eprintln!(
                    "{} {} {}: {} emails, p99 {}",
                    handoff.name(),
                    pacing.name(),
                    how.name(),
                    outcome.mail.len(),
                    show(outcome.mail.percentile(99.0))
                );
                rows.push((handoff, pacing, how, outcome));
            }
        }
    }
    println!("Write → email handed off (outbox file appears / sink accepted DATA):\n");
    println!("| handoff | pacing | save | files | emails | p50 | p99 | max | missing | run took | daemon CPU |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (handoff, pacing, how, o) in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            handoff.name(),
            pacing.name(),
            how.name(),
            o.files,
            o.mail.len(),
            show(o.mail.median()),
            show(o.mail.percentile(99.0)),
            show(o.mail.max()),
            o.missing,
            show(o.span),
            show(o.cpu),
        );
    }
    println!(
        "\nWhere the time goes: write → change queued (daemon log), write → bob's local copy:\n"
    );
    println!(
        "| handoff | pacing | save | queued p50 | queued p99 | local p50 | local p99 | local max |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for (handoff, pacing, how, o) in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            handoff.name(),
            pacing.name(),
            how.name(),
            show(o.queued.median()),
            show(o.queued.percentile(99.0)),
            show(o.local.median()),
            show(o.local.percentile(99.0)),
            show(o.local.max()),
        );
    }
}
