//! The mail an attendee's answer for one occurrence becomes: its subject names that
//! occurrence, not the series' first day, also after a trip through the queue. The
//! REPLY's own data says the declined occurrence's times, and the mail text follows it.

#[path = "data/imip/fixtures.rs"]
mod fixtures;

use calcard::icalendar::ICalendar;
use fixtures::{addr, options, stamp};
use imipd::imip::{build_message, Language};
use imipd::itip::{schedule_change, Context, ItipMessage, ReplyDetails};
use mail_parser::MessageParser;

fn series(extra: &str) -> ICalendar {
    ICalendar::parse(format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n\
         UID:weekly-1\r\nSEQUENCE:1\r\nDTSTAMP:20300101T090000Z\r\n\
         DTSTART:20300107T100000Z\r\nDTEND:20300107T110000Z\r\n\
         RRULE:FREQ=WEEKLY;COUNT=4\r\n{extra}SUMMARY:Weekly sync\r\n\
         ORGANIZER:mailto:o@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:o@example.com\r\n\
         ATTENDEE;RSVP=TRUE;PARTSTAT=ACCEPTED:mailto:a@example.net\r\n\
         END:VEVENT\r\nEND:VCALENDAR\r\n"
    ))
    .expect("parses")
}

/// A excludes the third week (EXDATE) of a series she accepted.
fn exdate_decline() -> ItipMessage {
    let me = [addr("a@example.net")];
    let ctx = Context {
        account: &me,
        now: 1_800_000_000,
        reply_details: ReplyDetails::Full,
    };
    let outcome = schedule_change(
        Some(&series("")),
        &series("EXDATE:20300121T100000Z\r\n"),
        &ctx,
    )
    .expect("a REPLY");
    assert_eq!(outcome.messages.len(), 1);
    outcome.messages[0].clone()
}

fn subject(msg: &ItipMessage) -> String {
    let mail = build_message(
        msg,
        &addr("o@example.com"),
        &options(Language::En),
        &stamp(),
    )
    .expect("a mail");
    let parsed = MessageParser::default().parse(&mail.bytes).expect("parses");
    parsed.subject().expect("a subject").to_string()
}

#[test]
fn declining_one_week_by_exdate_names_that_week_in_the_subject() {
    let msg = exdate_decline();
    let ics = msg.to_ics();
    assert!(ics.contains("RECURRENCE-ID:20300121T100000Z"), "{ics}");
    assert!(ics.contains("DTSTART:20300121T100000Z"), "{ics}");
    assert!(ics.contains("DTEND:20300121T110000Z"), "{ics}");
    let subject = subject(&msg);
    assert!(subject.starts_with("Declined: Weekly sync"), "{subject}");
    assert!(subject.contains("21 Jan 2030 10:00"), "{subject}");
    assert!(!subject.contains(" 7 Jan 2030"), "{subject}");
}

#[test]
fn the_declined_week_survives_the_queue() {
    let rebuilt = fixtures::through_queue(&exdate_decline(), "o@example.com");
    let subject = subject(&rebuilt);
    assert!(subject.contains("21 Jan 2030 10:00"), "{subject}");
}
