//! Benchmark `engine`: the scheduling engine beside the floor calcard sets.
//!
//! For each operation and attendee count it times, on the same objects:
//!
//! - **imipd**: parse the input objects, run the engine, serialise every output
//!   (messages and the updated copy): what the daemon does per change, bytes to bytes;
//! - **engine only**: the engine call on already-parsed objects;
//! - **floor**: calcard parsing the same inputs and serialising the same outputs,
//!   with no scheduling logic in between.
//!
//! The ratio imipd / floor is the figure issue #8 sets a target for (at most 2×).
//! The row "organizer update, with its emails" adds what the queue does with the
//! update's REQUEST (the mail prepared once, one email per recipient) to the imipd
//! figure, against the same floor: issue #24 item 4 (at most 2.5× at 10 attendees).
//!
//! `cargo bench --bench engine` (optional: `ENGINE_BUDGET_MS=…` per measurement,
//! `ENGINE_SIZES=10,100,1000`, `ENGINE_ONLY=<part of an operation's name>`).

#[path = "common/mod.rs"]
mod common;

use calcard::icalendar::ICalendar;
use common::{sample, show, Samples};
use imipd::itip::{self, CalAddress, Context, ReplyDetails};
use std::hint::black_box;
use std::time::Duration;

/// 2026-01-01T00:00:00Z: the events below are in 2027, so none is "in the past".
const NOW: i64 = 1_767_225_600;
const ORGANIZER: &str = "organizer@example.org";

/// An event organised by [`ORGANIZER`] with `n` attendees, as a client would store it.
fn event(n: usize, sequence: u32, start: &str, partstat_of_first: &str) -> String {
    let mut ics = String::with_capacity(200 * n + 600);
    ics.push_str(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//imipd//bench//EN\r\nBEGIN:VEVENT\r\n\
         UID:bench-event-1@example.org\r\nDTSTAMP:20260101T000000Z\r\n",
    );
    ics.push_str(&format!(
        "SEQUENCE:{sequence}\r\nDTSTART:{start}\r\nDURATION:PT1H\r\n\
         SUMMARY:Quarterly planning\r\nLOCATION:Room 4\r\n\
         DESCRIPTION:Agenda: numbers\\, plans\\, questions.\r\n\
         ORGANIZER;CN=Olga Organizer:mailto:{ORGANIZER}\r\n"
    ));
    for i in 0..n {
        let partstat = if i == 0 {
            partstat_of_first
        } else {
            "NEEDS-ACTION"
        };
        ics.push_str(&format!(
            "ATTENDEE;CN=Attendee {i};ROLE=REQ-PARTICIPANT;PARTSTAT={partstat};RSVP=TRUE:\
             mailto:attendee{i}@example.net\r\n"
        ));
    }
    ics.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
    ics
}

/// The REPLY attendee 0 sends to accept.
fn reply() -> String {
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//other//client//EN\r\nMETHOD:REPLY\r\n\
     BEGIN:VEVENT\r\nUID:bench-event-1@example.org\r\nDTSTAMP:20260101T000000Z\r\n\
     SEQUENCE:0\r\nDTSTART:20270301T090000Z\r\n\
     ORGANIZER:mailto:organizer@example.org\r\n\
     ATTENDEE;CN=Attendee 0;PARTSTAT=ACCEPTED:mailto:attendee0@example.net\r\n\
     END:VEVENT\r\nEND:VCALENDAR\r\n"
        .to_string()
}

fn parse(text: &str) -> ICalendar {
    ICalendar::parse(text).expect("the benchmark's own iCalendar parses")
}

/// One benchmarked operation: inputs as text, and how to run it on parsed inputs.
struct Case {
    name: &'static str,
    inputs: Vec<String>,
    /// Runs the engine on parsed inputs; returns every object it produced.
    run: fn(&[ICalendar]) -> Vec<ICalendar>,
    /// Also build every recipient's email in the imipd figure (issue #24 item 4: the
    /// daemon's CPU per change is the engine and the mails, against the same floor).
    mail: bool,
}

/// Every email of an organizer's update, built as the queue does: the message
/// prepared once, then one email per recipient; total bytes with the updated copy.
fn organizer_update_mails(cals: &[ICalendar]) -> usize {
    let account = [CalAddress::parse(ORGANIZER).expect("address")];
    let outcome = itip::schedule_change(Some(&cals[0]), &cals[1], &context(&account))
        .expect("the organizer's update schedules");
    let copy = outcome.updated.map_or(0, |c| c.to_string().len());
    copy + common::build_emails(outcome.messages, NOW)
}

fn context(account: &[CalAddress]) -> Context<'_> {
    Context {
        account,
        now: NOW,
        reply_details: ReplyDetails::Full,
    }
}

fn outputs_of_change(outcome: itip::ChangeOutcome) -> Vec<ICalendar> {
    let mut out: Vec<ICalendar> = outcome.messages.into_iter().map(|m| m.calendar).collect();
    out.extend(outcome.updated);
    out
}

/// The organizer moves the event: a REQUEST to every attendee, SEQUENCE raised.
fn organizer_update(cals: &[ICalendar]) -> Vec<ICalendar> {
    let account = [CalAddress::parse(ORGANIZER).expect("address")];
    let outcome = itip::schedule_change(Some(&cals[0]), &cals[1], &context(&account))
        .expect("the organizer's update schedules");
    assert!(!outcome.messages.is_empty(), "an update sends REQUESTs");
    outputs_of_change(outcome)
}

/// Attendee 0 accepts in their copy: a REPLY to the organizer.
fn attendee_reply(cals: &[ICalendar]) -> Vec<ICalendar> {
    let account = [CalAddress::parse("attendee0@example.net").expect("address")];
    let outcome = itip::schedule_change(Some(&cals[0]), &cals[1], &context(&account))
        .expect("the attendee's answer schedules");
    assert!(!outcome.messages.is_empty(), "an answer sends a REPLY");
    outputs_of_change(outcome)
}

/// The organizer's copy receives attendee 0's REPLY.
fn inbound_reply(cals: &[ICalendar]) -> Vec<ICalendar> {
    let account = [CalAddress::parse(ORGANIZER).expect("address")];
    let sender = CalAddress::parse("attendee0@example.net").expect("address");
    let outcome = itip::receive(&cals[0], &sender, Some(&cals[1]), &context(&account))
        .expect("the REPLY applies");
    let copy = outcome
        .copy
        .expect("the REPLY changes the organizer's copy");
    let mut out = vec![copy];
    out.extend(outcome.responses.into_iter().map(|m| m.calendar));
    out
}

impl Case {
    /// A case whose imipd figure is the engine's objects only (no emails).
    fn new(
        name: &'static str,
        inputs: Vec<String>,
        run: fn(&[ICalendar]) -> Vec<ICalendar>,
    ) -> Self {
        Case {
            name,
            inputs,
            run,
            mail: false,
        }
    }
}

fn cases(n: usize) -> Vec<Case> {
    const NINE: &str = "20270301T090000Z";
    let waiting = |attendees: usize, start: &str| event(attendees, 0, start, "NEEDS-ACTION");
    // The organizer moves the event by an hour.
    let moved = || vec![waiting(n, NINE), waiting(n, "20270301T100000Z")];
    vec![
        Case::new("organizer update", moved(), organizer_update),
        Case {
            mail: true,
            ..Case::new(
                "organizer update, with its emails",
                moved(),
                organizer_update,
            )
        },
        Case::new(
            "organizer adds an attendee",
            vec![waiting(n, NINE), waiting(n + 1, NINE)],
            organizer_update,
        ),
        Case::new(
            "attendee reply",
            vec![waiting(n, NINE), event(n, 0, NINE, "ACCEPTED")],
            attendee_reply,
        ),
        Case::new(
            "inbound REPLY applied",
            vec![reply(), waiting(n, NINE)],
            inbound_reply,
        ),
    ]
}

/// Timings of one case at one size.
struct Row {
    name: &'static str,
    attendees: usize,
    out_objects: usize,
    out_bytes: usize,
    imipd: Samples,
    engine: Samples,
    floor: Samples,
}

fn measure(case: &Case, attendees: usize, budget: Duration) -> Row {
    let parsed: Vec<ICalendar> = case.inputs.iter().map(|t| parse(t)).collect();
    let outputs = (case.run)(&parsed);
    let out_bytes = outputs.iter().map(|c| c.to_string().len()).sum();

    let imipd = sample(budget, 20, || {
        let cals: Vec<ICalendar> = case.inputs.iter().map(|t| parse(t)).collect();
        if case.mail {
            black_box(organizer_update_mails(&cals));
            return;
        }
        let out = (case.run)(&cals);
        let bytes: usize = out.iter().map(|c| c.to_string().len()).sum();
        black_box(bytes);
    });
    let engine = sample(budget, 20, || {
        black_box((case.run)(black_box(&parsed)));
    });
    let floor = sample(budget, 20, || {
        let cals: Vec<ICalendar> = case.inputs.iter().map(|t| parse(t)).collect();
        black_box(&cals);
        let bytes: usize = outputs.iter().map(|c| c.to_string().len()).sum();
        black_box(bytes);
    });
    Row {
        name: case.name,
        attendees,
        out_objects: outputs.len(),
        out_bytes,
        imipd,
        engine,
        floor,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let budget = Duration::from_millis(common::env_or("ENGINE_BUDGET_MS", 1500));
    let sizes: Vec<usize> = std::env::var("ENGINE_SIZES")
        .unwrap_or_else(|_| "10,100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    // ENGINE_ONLY: run only the operations whose name contains it (for a profiler).
    let only = std::env::var("ENGINE_ONLY").unwrap_or_default();
    let mut rows = Vec::new();
    for &n in &sizes {
        for case in cases(n)
            .into_iter()
            .filter(|c| c.name.contains(only.as_str()))
        {
            eprintln!("measuring {} with {n} attendees", case.name);
            rows.push(measure(&case, n, budget));
        }
    }

    println!("Machine: {}", common::machine());
    println!(
        "Command: `cargo bench --bench engine`; medians of ≥ 20 runs, {} ms per measurement\n",
        budget.as_millis()
    );
    println!("| operation | attendees | outputs | output bytes | imipd (parse + engine + serialise) | engine only | calcard floor (parse + serialise) | imipd / floor | imipd per attendee |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let (imipd, engine, floor) = (r.imipd.median(), r.engine.median(), r.floor.median());
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2}× | {} |",
            r.name,
            r.attendees,
            r.out_objects,
            r.out_bytes,
            show(imipd),
            show(engine),
            show(floor),
            imipd.as_secs_f64() / floor.as_secs_f64(),
            show(imipd / r.attendees as u32),
        );
    }
}
