//! Damaged and hostile calendars never crash the scheduling engine.
//!
//! Every calendar in the scenario files is mutated many times (lines dropped,
//! duplicated, swapped or truncated, values replaced by hostile ones, properties
//! renamed) and fed to every entry point of the engine, as a new version, as an old
//! version, as a deletion and as a received message. The engine may refuse any of them;
//! it must not panic. The mutations are pseudo-random with a fixed seed, so a failure
//! reproduces.

use calcard::icalendar::ICalendar;
use imipd::itip::{self, CalAddress};
use imipd::replay::script::Command;
use std::path::PathBuf;

#[path = "support/mod.rs"]
mod support;
use support::fixture;

/// The engine's clock in these tests (1990-01-01).
const NOW: i64 = 631_152_000;

/// A small deterministic generator (xorshift64*), enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const HOSTILE_VALUES: [&str; 16] = [
    "",
    "../../etc/passwd",
    "a/b\u{0}c",
    "mailto:",
    "MAILTO:ü@ü",
    "mailtö:x@y.z",
    "99999999T999999Z",
    "20300101",
    "-1",
    "9223372036854775807",
    "FREQ=SECONDLY;INTERVAL=0",
    "FREQ=YEARLY;BYSETPOS=-366;COUNT=2147483647",
    "\"unterminated",
    ";;;:::,,,",
    "\u{feff}\u{202e}rtl",
    "P99999999W",
];

const PROPERTY_NAMES: [&str; 10] = [
    "ORGANIZER",
    "ATTENDEE",
    "RECURRENCE-ID",
    "SEQUENCE",
    "DTSTART",
    "UID",
    "METHOD",
    "BEGIN",
    "END",
    "EXDATE",
];

fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return String::new();
    }
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        let i = rng.below(lines.len());
        match rng.below(8) {
            0 if lines.len() > 1 => {
                lines.remove(i);
            }
            1 => {
                let line = lines[i].clone();
                lines.insert(i, line);
            }
            2 => {
                let j = rng.below(lines.len());
                lines.swap(i, j);
            }
            3 => {
                let line = &lines[i];
                let cut = rng.below(line.len() + 1);
                let cut = (0..=cut)
                    .rev()
                    .find(|c| line.is_char_boundary(*c))
                    .unwrap_or(0);
                lines[i] = line[..cut].to_string();
            }
            4 => {
                if let Some((head, _)) = lines[i].split_once(':') {
                    let value = HOSTILE_VALUES[rng.below(HOSTILE_VALUES.len())];
                    lines[i] = format!("{head}:{value}");
                }
            }
            5 => {
                if let Some((_, tail)) = lines[i].split_once([':', ';']) {
                    let name = PROPERTY_NAMES[rng.below(PROPERTY_NAMES.len())];
                    lines[i] = format!("{name}:{tail}");
                }
            }
            6 => {
                let line = lines[i].clone();
                lines.insert(rng.below(lines.len()), line.replace("VEVENT", "VTODO"));
            }
            _ => {
                lines.truncate(i.max(1));
            }
        }
    }
    lines.join("\r\n")
}

/// Every iCalendar payload of the scenario files.
fn payloads() -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("tests/scenarios")];
    let shared = root.join("../shared/conformance");
    if shared.is_dir() {
        dirs.push(shared);
    }
    let mut out = Vec::new();
    for dir in dirs {
        for file in support::files::with_extension(&dir, "txt") {
            let text = std::fs::read_to_string(&file).expect("readable scenario");
            let steps = imipd::replay::script::parse(&text).expect("valid scenario");
            for step in steps {
                if matches!(step.command, Command::Put { .. } | Command::Itip { .. }) {
                    out.push(step.payload);
                }
            }
        }
    }
    out
}

fn exercise(
    original: &ICalendar,
    damaged: &ICalendar,
    account: &[CalAddress],
    sender: &CalAddress,
) {
    let ctx = fixture::context(account, NOW);
    let _ = itip::schedule_change(None, damaged, &ctx);
    let _ = itip::schedule_change(Some(original), damaged, &ctx);
    let _ = itip::schedule_change(Some(damaged), original, &ctx);
    let _ = itip::schedule_removal(damaged, &ctx);
    let _ = itip::receive(damaged, sender, None, &ctx);
    let _ = itip::receive(damaged, sender, Some(original), &ctx);
    let _ = itip::receive(original, sender, Some(damaged), &ctx);
    if let Ok(out) = itip::schedule_change(Some(original), damaged, &ctx) {
        for message in out.messages {
            // Whatever the engine builds must serialise and parse again.
            let text = message.to_ics();
            assert!(
                ICalendar::parse(&text).is_ok(),
                "unparsable message:\n{text}"
            );
        }
    }
}

#[test]
fn damaged_calendars_never_panic_the_engine() {
    let payloads = payloads();
    assert!(
        payloads.len() >= 20,
        "expected the scenario payloads, found {}",
        payloads.len()
    );
    let accounts: Vec<CalAddress> = [
        "a@example.com",
        "o@example.com",
        "b@example.net",
        "cyrus@example.com",
    ]
    .iter()
    .filter_map(|a| CalAddress::parse(a))
    .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut tried = 0usize;
    for payload in &payloads {
        let Ok(original) = ICalendar::parse(payload) else {
            continue;
        };
        for _ in 0..40 {
            let damaged_text = mutate(payload, &mut rng);
            let Ok(damaged) = ICalendar::parse(&damaged_text) else {
                continue;
            };
            let account = &accounts[rng.below(accounts.len())..][..1];
            let sender = &accounts[rng.below(accounts.len())];
            exercise(&original, &damaged, account, sender);
            tried += 1;
        }
    }
    assert!(
        tried > 1000,
        "too few parsable mutations were tried: {tried}"
    );
    println!("engine robustness: {tried} damaged calendars, each through 8 engine calls, no panic");
}

#[test]
fn a_huge_attendee_list_is_handled() {
    let mut text = String::from(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//T//EN\r\nBEGIN:VEVENT\r\nUID:big\r\nDTSTAMP:20300101T000000Z\r\nDTSTART:20300101T100000Z\r\nORGANIZER:mailto:o@example.com\r\n",
    );
    for i in 0..5000 {
        text.push_str(&format!("ATTENDEE:mailto:p{i}@example.net\r\n"));
    }
    text.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
    let cal = ICalendar::parse(&text).expect("valid");
    let me = [CalAddress::parse("o@example.com").expect("address")];
    let ctx = fixture::context(&me, NOW);
    let out = itip::schedule_change(None, &cal, &ctx).expect("an invitation");
    assert_eq!(out.messages.len(), 1);
    assert_eq!(out.messages[0].to.len(), 5000);
}

#[test]
fn an_object_whose_root_is_not_a_vcalendar_is_refused() {
    // Found by the apply_itip fuzzer: calcard accepts any outer component, and an
    // updated copy of such an object would not parse again.
    let text = "BEGIN:\":\nBEGIN:VEVENT\nUID:a\nORGANIZER:m@m\nATTENDEE:a@e\nEND:VEVENT\nEND:\":\n";
    let cal = ICalendar::parse(text).expect("calcard accepts any outer component");
    let me = [CalAddress::parse("m@m").expect("address")];
    let ctx = fixture::context(&me, NOW);
    let err = itip::schedule_change(None, &cal, &ctx).expect_err("refused");
    assert_eq!(err.name(), "ICalendarParseError");
    assert!(itip::schedule_removal(&cal, &ctx).is_err());
}
