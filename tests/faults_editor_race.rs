//! A user's client keeps rewriting a file while imipd writes incoming answers into it.
//!
//! The "client" is a thread that does what Radicale does for every PUT: take the
//! exclusive lock on `.Radicale.lock`, read the object, change it, write it, unlock.
//! Meanwhile 40 REPLYs are applied to the same object. Nobody's edit may be lost: at
//! the end the file holds the client's last counter and all 40 answers.

use calcard::icalendar::ICalendar;
use imipd::config::{Layout, User};
use imipd::itip::CalAddress;
use imipd::store::layout::Store;
use imipd::store::state::State;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "support/mod.rs"]
mod support;
use support::{fixture, TempDir};

const NOW: i64 = 1_900_000_000;
const ANSWERS: usize = 40;
const EDITS: usize = 200;

fn organizer_copy() -> String {
    let mut text = String::from(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\nUID:race-1\r\n\
         DTSTAMP:20300101T090000Z\r\nSEQUENCE:1\r\nDTSTART:20300410T120000Z\r\nDTEND:20300410T130000Z\r\n\
         SUMMARY:All hands\r\nX-EDIT-COUNT:0\r\nORGANIZER:mailto:alice@example.com\r\n",
    );
    for i in 0..ANSWERS {
        text.push_str(&format!("ATTENDEE;RSVP=TRUE:mailto:p{i}@example.net\r\n"));
    }
    text.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
    text
}

fn reply(i: usize) -> ICalendar {
    let text = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//P//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\nUID:race-1\r\n\
         DTSTAMP:20300102T090000Z\r\nSEQUENCE:1\r\nORGANIZER:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:p{i}@example.net\r\nREQUEST-STATUS:2.0;Success\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    );
    ICalendar::parse(&text).expect("reply")
}

/// The final file, its long lines unfolded.
fn unfolded(file: &Path) -> String {
    std::fs::read_to_string(file)
        .expect("final")
        .replace("\r\n ", "")
}

/// Whether `p<i>`'s acceptance is in the (unfolded) `text`.
fn answered(text: &str, i: usize) -> bool {
    text.lines()
        .any(|l| l.contains(&format!("mailto:p{i}@example.net")) && l.contains("PARTSTAT=ACCEPTED"))
}

/// Alice's copy in a store of `layout` at `root` under `dir` (for Radicale, the folder
/// that holds `collection-root`), and its baseline: the file, Alice, the store, the state.
fn organizers_store(dir: &Path, root: &str, layout: Layout) -> (PathBuf, User, Store, State) {
    let calendar = match layout {
        Layout::Radicale => dir.join(root).join("collection-root/alice/calendar"),
        Layout::Vdir => dir.join(root).join("alice/calendar"),
    };
    std::fs::create_dir_all(&calendar).expect("folders");
    let file = calendar.join("all-hands.ics");
    std::fs::write(&file, organizer_copy()).expect("event");
    let alice = fixture::user("alice");
    let store = fixture::store(&dir.join(root), layout, vec![alice.clone()]);
    let state = State::open(&dir.join("state.redb")).expect("state");
    fixture::baseline(&store, &state, NOW);
    (file, alice, store, state)
}

/// The `ANSWERS` REPLYs applied to Alice's copy. Like an MTA, a temporary failure (the
/// file kept changing) is tried again: how many attempts were deferred.
fn apply_all_answers(store: &Store, state: &State, alice: &User) -> usize {
    let applier = fixture::applier(store, state);
    let mut deferred = 0;
    for i in 0..ANSWERS {
        let sender = CalAddress::parse(&format!("p{i}@example.net")).expect("address");
        loop {
            match applier.apply(alice, &reply(i), &sender, NOW, false, None) {
                Ok(_) => break,
                Err(err) if err.is_temporary() => {
                    deferred += 1;
                    assert!(deferred < 10_000, "answer {i} never applied: {err}");
                }
                Err(err) => panic!("answer {i}: {err}"),
            }
        }
    }
    deferred
}

#[test]
fn a_client_rewriting_under_radicales_lock_and_imipd_lose_nothing() {
    let temp = TempDir::new("editor-race");
    let dir = temp.path();
    let (file, alice, store, state) = organizers_store(dir, "collections", Layout::Radicale);

    let lock_path = dir.join("collections/.Radicale.lock");
    let editor_file = file.clone();
    let editor = std::thread::spawn(move || {
        for n in 1..=EDITS {
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .expect("lock file");
            lock.lock().expect("flock");
            let text = std::fs::read_to_string(&editor_file).expect("read");
            let edited = text.replace(
                &format!("X-EDIT-COUNT:{}", n - 1),
                &format!("X-EDIT-COUNT:{n}"),
            );
            assert_ne!(
                text, edited,
                "edit {n}: the previous edit was lost:\n{text}"
            );
            std::fs::write(&editor_file, edited).expect("write");
            drop(lock);
            std::thread::sleep(Duration::from_micros(300));
        }
    });

    let deferred = apply_all_answers(&store, &state, &alice);
    editor
        .join()
        .expect("the client's edits all found their predecessor");

    let text = unfolded(&file);
    assert!(
        text.contains(&format!("X-EDIT-COUNT:{EDITS}")),
        "the client's last edit is there"
    );
    for i in 0..ANSWERS {
        assert!(answered(&text, i), "answer {i} is there:\n{text}");
    }
    println!("editor race: {EDITS} client edits, {ANSWERS} answers, {deferred} deferred attempts, nothing lost");
}

/// How a vdir client saves a file.
#[derive(Clone, Copy, Debug)]
enum Writer {
    /// Write a temporary file next to it and rename it over (vdirsyncer, khal).
    TempAndRename,
    /// Open the file with truncation and write it (editors that save in place).
    InPlace,
}

/// Counts of one vdir race.
struct Race {
    /// Client edits whose result was gone when the client next read the file.
    edits_lost: usize,
    /// Answers not in the file after imipd processed the client's last save.
    answers_lost: usize,
    deferred: usize,
}

/// A client saving the organizer's vdir file without any lock, `EDITS` times, each
/// time reading the file and raising its counter, while imipd applies 40 REPLYs; then
/// imipd processes the client's last save as the daemon would.
fn vdir_race(writer: Writer) -> Race {
    let temp = TempDir::new(&format!("vdir-race-{writer:?}"));
    let dir = temp.path();
    let (file, alice, store, state) = organizers_store(dir, "vdir", Layout::Vdir);

    let editor_file = file.clone();
    let editor = std::thread::spawn(move || {
        let mut lost = 0;
        let temp = editor_file.with_file_name(".all-hands.ics.client-tmp");
        for n in 1..=EDITS {
            let text = loop {
                // An in-place save of our own can be caught half-written by nobody
                // but us; imipd's writes are atomic. Read until it parses.
                let text = std::fs::read_to_string(&editor_file).expect("read");
                if text.ends_with("END:VCALENDAR\r\n") {
                    break text;
                }
            };
            let counter = text
                .lines()
                .find_map(|l| l.strip_prefix("X-EDIT-COUNT:"))
                .and_then(|c| c.trim().parse::<usize>().ok())
                .expect("counter");
            if counter != n - 1 {
                lost += 1;
            }
            let edited = text.replace(
                &format!("X-EDIT-COUNT:{counter}\r\n"),
                &format!("X-EDIT-COUNT:{n}\r\n"),
            );
            match writer {
                Writer::TempAndRename => {
                    std::fs::write(&temp, edited).expect("write temp");
                    std::fs::rename(&temp, &editor_file).expect("rename");
                }
                Writer::InPlace => {
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .truncate(true)
                        .open(&editor_file)
                        .expect("open");
                    f.write_all(edited.as_bytes()).expect("write");
                }
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        lost
    });

    let deferred = apply_all_answers(&store, &state, &alice);
    let edits_lost = editor.join().expect("client");
    let processor = fixture::processor(&store, &state);
    let key = "alice/calendar/all-hands.ics";
    let decision = processor.process(key, NOW + 1, false).expect("process");
    let text = unfolded(&file);
    assert!(
        text.contains(&format!("X-EDIT-COUNT:{EDITS}\r\n")),
        "the client's last save is there ({decision:?}):\n{text}"
    );
    let answers_lost = (0..ANSWERS).filter(|&i| !answered(&text, i)).count();
    Race {
        edits_lost,
        answers_lost,
        deferred,
    }
}

/// [`vdir_race`] with `writer` (named `name` in the printed counts): nothing lost.
fn assert_vdir_race_loses_nothing(writer: Writer, name: &str) {
    let race = vdir_race(writer);
    println!(
        "vdir race, {name} writer: {EDITS} edits, {} lost; {ANSWERS} answers, {} lost; {} deferred",
        race.edits_lost, race.answers_lost, race.deferred
    );
    assert_eq!(race.edits_lost, 0, "client edits overwritten by imipd");
    assert_eq!(race.answers_lost, 0, "answers put back by a stale save");
}

#[test]
fn a_vdir_client_saving_by_rename_loses_no_edit_and_no_answer() {
    assert_vdir_race_loses_nothing(Writer::TempAndRename, "temp+rename");
}

#[test]
fn a_vdir_client_saving_in_place_loses_no_edit_and_no_answer() {
    assert_vdir_race_loses_nothing(Writer::InPlace, "in-place");
}

/// The organizer's vdir copy after answer `p0` was applied, saved by a client that had
/// read it before: the old answer comes back with the client's edit.
fn stale_save_setup(label: &str) -> (PathBuf, Store, State) {
    let dir = std::env::temp_dir().join(format!("imipd-stale-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (_, alice, store, state) = organizers_store(&dir, "vdir", Layout::Vdir);
    let sender = CalAddress::parse("p0@example.net").expect("address");
    fixture::applier(&store, &state)
        .apply(&alice, &reply(0), &sender, NOW, false, None)
        .expect("answer applied");
    (dir, store, state)
}

#[test]
fn a_save_from_a_copy_read_before_an_answer_keeps_the_answer_and_sends_nothing() {
    let (dir, store, state) = stale_save_setup("keep");
    let file = dir.join("vdir/alice/calendar/all-hands.ics");
    let applied = std::fs::read_to_string(&file).expect("read");
    assert!(applied.contains("PARTSTAT=ACCEPTED"), "{applied}");
    // The client read the file before the answer and saves its edit now.
    let stale = organizer_copy().replace("X-EDIT-COUNT:0", "X-EDIT-COUNT:1");
    std::fs::write(&file, stale).expect("stale save");
    let processor = fixture::processor(&store, &state);
    let decision = processor
        .process("alice/calendar/all-hands.ics", NOW + 1, false)
        .expect("process");
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(
        text.contains("X-EDIT-COUNT:1\r\n"),
        "the edit stays:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("p0@example.net") && l.contains("PARTSTAT=ACCEPTED")),
        "the applied answer stays ({decision:?}):\n{text}"
    );
    assert!(
        state.queue().expect("queue").is_empty(),
        "nothing is sent for a stale answer ({decision:?})"
    );
    // Processing the merged file again changes nothing more.
    let again = processor
        .process("alice/calendar/all-hands.ics", NOW + 2, false)
        .expect("process");
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        text,
        "{again:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_organizer_resetting_an_answer_on_purpose_keeps_the_reset() {
    let (dir, store, state) = stale_save_setup("reset");
    let file = dir.join("vdir/alice/calendar/all-hands.ics");
    let reset = std::fs::read_to_string(&file)
        .expect("read")
        .replace("PARTSTAT=ACCEPTED", "PARTSTAT=NEEDS-ACTION");
    std::fs::write(&file, &reset).expect("reset");
    let processor = fixture::processor(&store, &state);
    processor
        .process("alice/calendar/all-hands.ics", NOW + 1, false)
        .expect("process");
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(
        text.lines()
            .any(|l| l.contains("p0@example.net") && l.contains("PARTSTAT=NEEDS-ACTION")),
        "a deliberate reset stays:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
