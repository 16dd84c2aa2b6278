//! Benchmark `reply_write`: a REPLY applied to the organizer's stored file, beside the
//! floor calcard sets (issue #17 item 4).
//!
//! For 10, 100 and 1,000 attendees, on a real vdir store and state database, it times:
//!
//! - **apply (CPU path):** what [`Applier::apply`] computes once the file and its
//!   record are read: hash and parse the file, run the engine, [`rewrite_copy`] (the
//!   line patch, the self-check that the patched bytes parse and say what the engine
//!   meant, the baseline, the answers to remember) and hash the bytes to write;
//! - **whole dry run:** [`Applier::apply_dry_run`], the same plus reading the file and
//!   the state records; nothing is written;
//! - **floor:** calcard parsing the stored object and serialising the result;
//! - **durable write:** the rest of [`Applier::apply`]: intent commit, temporary file,
//!   fsync, rename, commit. This is the disk's time; it is shown beside the ratio and
//!   not mixed into it.
//!
//! `cargo bench --bench reply_write` (optional: `REPLY_BUDGET_MS=…` per measurement,
//! `REPLY_SIZES=10,100,1000`, `REPLY_DIR=…` for the store's folder).

#[path = "common/mod.rs"]
mod common;

use calcard::icalendar::ICalendar;
use common::{sample, show, Samples};
use imipd::config::{Layout, StoreSection, User};
use imipd::itip::{self, CalAddress, Context, ReplyDetails};
use imipd::store::apply::{rewrite_copy, Applier};
use imipd::store::layout::Store;
use imipd::store::state::{content_hash, Batch, ObjectRecord, State};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// 2026-01-01T00:00:00Z: the event below is in 2027, so it is not "in the past".
const NOW: i64 = 1_767_225_600;
const ORGANIZER: &str = "organizer@example.org";
const KEY: &str = "olga/calendar/planning.ics";
const UID: &str = "bench-event-1@example.org";

/// The organizer's copy of an event with `n` attendees, as a client stores it.
fn event(n: usize) -> String {
    let mut ics = String::with_capacity(200 * n + 600);
    ics.push_str(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//imipd//bench//EN\r\nBEGIN:VEVENT\r\n\
         UID:bench-event-1@example.org\r\nDTSTAMP:20260101T000000Z\r\n\
         SEQUENCE:0\r\nDTSTART:20270301T090000Z\r\nDURATION:PT1H\r\n\
         SUMMARY:Quarterly planning\r\nLOCATION:Room 4\r\n\
         DESCRIPTION:Agenda: numbers\\, plans\\, questions.\r\n",
    );
    ics.push_str(&format!(
        "ORGANIZER;CN=Olga Organizer:mailto:{ORGANIZER}\r\n"
    ));
    for i in 0..n {
        ics.push_str(&format!(
            "ATTENDEE;CN=Attendee {i};ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:\
             mailto:attendee{i}@example.net\r\n"
        ));
    }
    ics.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
    ics
}

/// The REPLY attendee `i` sends to accept.
fn reply(i: usize) -> ICalendar {
    let text = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//other//client//EN\r\nMETHOD:REPLY\r\n\
         BEGIN:VEVENT\r\nUID:{UID}\r\nDTSTAMP:20260101T000000Z\r\n\
         SEQUENCE:0\r\nDTSTART:20270301T090000Z\r\n\
         ORGANIZER:mailto:{ORGANIZER}\r\n\
         ATTENDEE;CN=Attendee {i};PARTSTAT=ACCEPTED:mailto:attendee{i}@example.net\r\n\
         END:VEVENT\r\nEND:VCALENDAR\r\n"
    );
    ICalendar::parse(&text).expect("the benchmark's REPLY parses")
}

/// A store with one user, the organizer, and the event stored and recorded.
struct Setup {
    dir: PathBuf,
    store: Store,
    state: State,
    user: User,
    original: String,
}

impl Setup {
    fn new(base: &Path, n: usize) -> Setup {
        let dir = base.join(format!("imipd-reply-write-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/olga/calendar")).expect("store folder");
        let user = User {
            name: "olga".into(),
            addresses: vec![CalAddress::parse(ORGANIZER).expect("address")],
            invitations: Some("calendar".into()),
            language: None,
        };
        let section = StoreSection {
            layout: Layout::Vdir,
            root: dir.join("root"),
            max_object_size: 64 << 20,
            rescan_interval: 60,
            debounce_ms: 10,
        };
        let store = Store::new(&section, vec![user.clone()]);
        let state = State::open(&dir.join("state.redb")).expect("state database");
        let setup = Setup {
            dir,
            store,
            state,
            user,
            original: event(n),
        };
        setup.reset();
        setup
    }

    /// The stored file and its record as a client's save left them: nothing applied.
    fn reset(&self) {
        std::fs::write(self.store.path_for(KEY), &self.original).expect("stored file");
        let hash = content_hash(self.original.as_bytes());
        self.state
            .commit(Batch {
                objects: vec![(
                    KEY.to_string(),
                    Some(ObjectRecord {
                        user: "olga".into(),
                        uid: Some(UID.into()),
                        seen_hash: hash.clone(),
                        baseline: Some(self.original.clone()),
                        written_hash: Some(hash),
                        last_error: None,
                    }),
                )],
                answers: vec![(KEY.to_string(), Vec::new())],
                ..Batch::default()
            })
            .expect("record");
    }

    fn applier(&self) -> Applier<'_> {
        Applier {
            store: &self.store,
            state: &self.state,
            reply_details: ReplyDetails::Full,
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Row {
    /// One SHA-256 of the stored file (the CPU path takes two: the version read, the
    /// version to write).
    hash: Samples,
    attendees: usize,
    file_bytes: usize,
    apply: Samples,
    dry_run: Samples,
    floor: Samples,
    write: Samples,
}

fn measure(base: &Path, n: usize, budget: Duration) -> Row {
    let setup = Setup::new(base, n);
    let sender = CalAddress::parse("attendee0@example.net").expect("address");
    let message = reply(0);
    let applier = setup.applier();
    let applied = applier
        .apply_dry_run(&setup.user, &message, &sender, NOW, false, None)
        .expect("the REPLY applies");
    assert_eq!(applied.key.as_deref(), Some(KEY), "{applied:?}");

    // The result the floor serialises: the engine's updated copy.
    let account = [CalAddress::parse(ORGANIZER).expect("address")];
    let ctx = Context {
        account: &account,
        now: NOW,
        reply_details: ReplyDetails::Full,
    };
    let stored = ICalendar::parse(&setup.original).expect("stored parses");
    let copy = itip::receive(&message, &sender, Some(&stored), &ctx)
        .expect("the REPLY applies")
        .copy
        .expect("the REPLY changes the copy");

    // The CPU path, as `Applier::apply_as` runs it once the file and the record are
    // read: parse, engine, patch with its self-check, answers to remember, hashes.
    let baseline = Some(setup.original.clone());
    let apply = sample(budget, 20, || {
        let text = black_box(&setup.original);
        let hash = content_hash(text.as_bytes());
        let stored = ICalendar::parse(text).expect("parses");
        let copy = itip::receive(&message, &sender, Some(&stored), &ctx)
            .expect("applies")
            .copy
            .expect("changes the copy");
        let rewritten = rewrite_copy(
            &message,
            &sender,
            &ctx,
            text,
            &stored,
            &copy,
            baseline.clone(),
            || Ok::<_, ()>(Vec::new()),
        )
        .expect("rewritten");
        let written_hash = content_hash(rewritten.written.as_bytes());
        black_box((hash, written_hash, rewritten));
    });
    let dry_run = sample(budget, 20, || {
        let applied = applier.apply_dry_run(&setup.user, &message, &sender, NOW, false, None);
        black_box(applied.expect("applies"));
    });
    let floor = sample(budget, 20, || {
        let parsed = ICalendar::parse(black_box(&setup.original)).expect("parses");
        black_box(&parsed);
        black_box(copy.to_string().len());
    });
    // The real write: each run starts from the unapplied file (reset, untimed), so
    // every apply writes; its time minus the dry run's is the write's.
    let mut whole = Samples::new();
    let started = Instant::now();
    while whole.len() < 10 || (started.elapsed() < budget && whole.len() < 200) {
        setup.reset();
        let t = Instant::now();
        let applied = applier.apply(&setup.user, &message, &sender, NOW, false, None);
        whole.push(t.elapsed());
        applied.expect("applies");
    }
    let written = std::fs::read_to_string(setup.store.path_for(KEY)).expect("written");
    assert!(
        written.contains("PARTSTAT=ACCEPTED"),
        "the REPLY was written"
    );
    let mut write = Samples::new();
    let cpu = dry_run.median();
    for d in whole.values() {
        write.push(d.saturating_sub(cpu));
    }
    let hash = sample(budget / 4, 20, || {
        black_box(content_hash(black_box(setup.original.as_bytes())));
    });
    Row {
        hash,
        attendees: n,
        file_bytes: setup.original.len(),
        apply,
        dry_run,
        floor,
        write,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let budget = Duration::from_millis(common::env_or("REPLY_BUDGET_MS", 1500));
    let sizes: Vec<usize> = std::env::var("REPLY_SIZES")
        .unwrap_or_else(|_| "10,100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let base = std::env::var_os("REPLY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let mut rows = Vec::new();
    for &n in &sizes {
        eprintln!("measuring a REPLY applied with {n} attendees");
        rows.push(measure(&base, n, budget));
    }

    println!("Machine: {}", common::machine());
    println!(
        "Command: `cargo bench --bench reply_write`; medians of ≥ 20 runs ({} ms per \
         measurement; the write: ≥ 10 runs)\n",
        budget.as_millis()
    );
    println!("| attendees | file bytes | apply, CPU path (parse + engine + patch + self-check + hashes) | calcard floor (parse + serialise) | apply / floor | whole dry run (+ file and state reads) | durable write (intent, fsync, rename, commit), beside |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let (apply, floor) = (r.apply.median(), r.floor.median());
        println!(
            "| {} | {} | {} | {} | {:.2}× | {} | {} |",
            r.attendees,
            r.file_bytes,
            show(apply),
            show(floor),
            apply.as_secs_f64() / floor.as_secs_f64(),
            show(r.dry_run.median()),
            show(r.write.median()),
        );
    }
    println!();
    for r in &rows {
        println!(
            "SHA-256 of the {}-attendee file, once: {} (the CPU path hashes twice)",
            r.attendees,
            show(r.hash.median())
        );
    }
}
