//! A user's client keeps rewriting a file while imipd writes incoming answers into it.
//!
//! The "client" is a thread that does what Radicale does for every PUT: take the
//! exclusive lock on `.Radicale.lock`, read the object, change it, write it, unlock.
//! Meanwhile 40 REPLYs are applied to the same object. Nobody's edit may be lost: at
//! the end the file holds the client's last counter and all 40 answers.

use calcard::icalendar::ICalendar;
use imipd::config::Layout;
use imipd::itip::{CalAddress, ReplyDetails};
use imipd::store::apply::Applier;
use imipd::store::state::State;
use std::time::Duration;

#[path = "support/mod.rs"]
mod support;
use support::fixture;

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

#[test]
fn a_client_rewriting_under_radicales_lock_and_imipd_lose_nothing() {
    let dir = std::env::temp_dir().join(format!("imipd-editor-race-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let calendar = dir.join("collections/collection-root/alice/calendar");
    std::fs::create_dir_all(&calendar).expect("folders");
    let file = calendar.join("all-hands.ics");
    std::fs::write(&file, organizer_copy()).expect("event");
    let alice = fixture::user("alice");
    let store = fixture::store(
        &dir.join("collections"),
        Layout::Radicale,
        vec![alice.clone()],
    );
    let state = State::open(&dir.join("state.redb")).expect("state");
    fixture::baseline(&store, &state, NOW);

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

    let applier = Applier {
        store: &store,
        state: &state,
        reply_details: ReplyDetails::Full,
    };
    let mut deferred = 0;
    for i in 0..ANSWERS {
        let sender = CalAddress::parse(&format!("p{i}@example.net")).expect("address");
        // Like an MTA: a temporary failure (the file kept changing) is tried again.
        loop {
            match applier.apply(&alice, &reply(i), &sender, NOW, false, None) {
                Ok(_) => break,
                Err(err) if err.is_temporary() => {
                    deferred += 1;
                    assert!(deferred < 10_000, "answer {i} never applied: {err}");
                }
                Err(err) => panic!("answer {i}: {err}"),
            }
        }
    }
    editor
        .join()
        .expect("the client's edits all found their predecessor");

    let text = std::fs::read_to_string(&file)
        .expect("final")
        .replace("\r\n ", "");
    assert!(
        text.contains(&format!("X-EDIT-COUNT:{EDITS}")),
        "the client's last edit is there"
    );
    for i in 0..ANSWERS {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("mailto:p{i}@example.net"))
                    && l.contains("PARTSTAT=ACCEPTED")),
            "answer {i} is there:\n{text}"
        );
    }
    println!("editor race: {EDITS} client edits, {ANSWERS} answers, {deferred} deferred attempts, nothing lost");
    let _ = std::fs::remove_dir_all(&dir);
}
