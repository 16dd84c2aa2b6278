//! `[mail] attendee_list`: what an invitation shows of the other attendees.
//!
//! A person reading an invitation to a 25-person meeting sees 20 names and "and 5
//! others" by default, everyone with "full", and under "hidden" no one else at all:
//! not in the text, not in the HTML, not in either calendar part.

use imipd::imip::{build_message, AttendeeList, Language, OutgoingOptions, PreparedMail, Stamp};
use imipd::itip::{CalAddress, ItipMessage, MessageSummary, Method};
use mail_parser::{MessageParser, MimeHeaders};

fn address(a: &str) -> CalAddress {
    CalAddress::parse(a).expect("address")
}

fn attendee(i: usize) -> String {
    format!("person{i:02}@example.net")
}

/// A REQUEST to `n` attendees; attendee 1 delegated to attendee 2.
fn invitation(method: &str, n: usize) -> ItipMessage {
    let mut text = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//imipd//test//EN\r\nMETHOD:{method}\r\n\
         BEGIN:VEVENT\r\nUID:big@example.com\r\nDTSTAMP:20300101T090000Z\r\nSEQUENCE:0\r\n\
         DTSTART:20300115T100000Z\r\nDTEND:20300115T110000Z\r\nSUMMARY:All hands\r\n\
         ORGANIZER;CN=Alice Organizer:mailto:alice@example.com\r\n"
    );
    for i in 0..n {
        let params = match i {
            1 => format!(
                ";DELEGATED-TO=\"mailto:{}\";PARTSTAT=DELEGATED",
                attendee(2)
            ),
            2 => format!(
                ";DELEGATED-FROM=\"mailto:{}\";PARTSTAT=NEEDS-ACTION",
                attendee(1)
            ),
            _ => ";PARTSTAT=NEEDS-ACTION;RSVP=TRUE".to_string(),
        };
        text.push_str(&format!(
            "ATTENDEE;CN=Person {i:02}{params}:mailto:{}\r\n",
            attendee(i)
        ));
    }
    text.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
    ItipMessage {
        method: match method {
            "CANCEL" => Method::Cancel,
            _ => Method::Request,
        },
        from: address("alice@example.com"),
        to: (0..n).map(|i| address(&attendee(i))).collect(),
        calendar: calcard::icalendar::ICalendar::parse(&text).expect("calendar"),
        summary: if method == "CANCEL" {
            MessageSummary::Cancel
        } else {
            MessageSummary::Invite
        },
    }
}

fn options(list: AttendeeList) -> OutgoingOptions {
    OutgoingOptions {
        default_language: Language::En,
        attendee_list: list,
        ..OutgoingOptions::default()
    }
}

fn stamp() -> Stamp {
    Stamp {
        now: chrono::DateTime::from_timestamp(1_900_000_000, 0).expect("time"),
        unique: 7,
    }
}

/// The decoded text, HTML and every calendar part of a mail.
struct Read {
    text: String,
    html: String,
    calendars: Vec<String>,
}

fn read(bytes: &[u8]) -> Read {
    let message = MessageParser::default().parse(bytes).expect("mail");
    let calendars = message
        .parts
        .iter()
        .filter(|p| {
            p.content_type().is_some_and(|ct| {
                matches!(
                    (ct.ctype(), ct.subtype()),
                    ("text", Some("calendar")) | ("application", Some("ics"))
                )
            })
        })
        // Unfolded, so an address split over two lines is still found.
        .map(|p| String::from_utf8_lossy(p.contents()).replace("\r\n ", ""))
        .collect();
    Read {
        text: message.body_text(0).expect("text").into_owned(),
        html: message.body_html(0).expect("html").into_owned(),
        calendars,
    }
}

fn names_in(text: &str) -> usize {
    (0..25)
        .filter(|i| text.contains(&format!("Person {i:02}")))
        .count()
}

/// `msg` as mailed to its first attendee, listing the others as `list` says.
fn mail_to_first(msg: &ItipMessage, list: AttendeeList) -> imipd::imip::OutgoingMail {
    build_message(msg, &address(&attendee(0)), &options(list), &stamp()).expect("mail")
}

#[test]
fn by_default_the_texts_name_twenty_attendees_and_count_the_others() {
    let msg = invitation("REQUEST", 25);
    let mail = mail_to_first(&msg, AttendeeList::default());
    let read = read(&mail.bytes);
    assert_eq!(names_in(&read.text), 20, "{}", read.text);
    assert!(read.text.contains("  - and 5 others\r\n"), "{}", read.text);
    assert_eq!(names_in(&read.html), 20, "{}", read.html);
    assert!(
        read.html.contains("<br>\r\nand 5 others\r\n</td>"),
        "{}",
        read.html
    );
    // The calendar is the organizer's, with everyone in it.
    assert_eq!(read.calendars.len(), 2);
    for calendar in &read.calendars {
        assert_eq!(calendar.matches("ATTENDEE").count(), 25);
    }
}

#[test]
fn the_count_of_others_is_in_the_recipients_language() {
    let msg = invitation("REQUEST", 22);
    for (language, words) in [
        (Language::De, "und 2 weitere Personen"),
        (Language::Fr, "et 2 autres personnes"),
    ] {
        let opts = OutgoingOptions {
            default_language: language,
            ..options(AttendeeList::Summary)
        };
        let mail = build_message(&msg, &address(&attendee(0)), &opts, &stamp()).expect("mail");
        assert!(read(&mail.bytes).text.contains(words), "{language}");
    }
    let msg = invitation("REQUEST", 21);
    let mail = mail_to_first(&msg, AttendeeList::Summary);
    assert!(read(&mail.bytes).text.contains("  - and 1 other\r\n"));
}

#[test]
fn full_names_every_attendee() {
    let msg = invitation("REQUEST", 25);
    let mail = mail_to_first(&msg, AttendeeList::Full);
    let read = read(&mail.bytes);
    assert_eq!(names_in(&read.text), 25);
    assert_eq!(names_in(&read.html), 25);
    assert!(!read.text.contains("others"));
}

#[test]
fn hidden_shows_each_attendee_only_the_organizer_and_themselves() {
    for method in ["REQUEST", "CANCEL"] {
        let msg = invitation(method, 25);
        let opts = options(AttendeeList::Hidden);
        let mut prepared = PreparedMail::borrowed(&msg, &opts).expect("prepared");
        for i in [0usize, 7, 24] {
            let rcpt = address(&attendee(i));
            let mail = prepared
                .build_for(&rcpt, &opts, &stamp(), None)
                .expect("mail");
            let read = read(&mail.bytes);
            for other in (0..25).filter(|j| *j != i).map(attendee) {
                let everywhere = [&read.text, &read.html]
                    .into_iter()
                    .chain(read.calendars.iter());
                for (part, text) in everywhere.enumerate() {
                    assert!(
                        !text.contains(&other),
                        "{method} to {rcpt}: part {part} names {other}:\n{text}"
                    );
                }
            }
            assert_eq!(read.calendars.len(), 2);
            for calendar in &read.calendars {
                assert_eq!(calendar.matches("ATTENDEE").count(), 1, "{calendar}");
                assert!(calendar.contains(&format!("mailto:{}", attendee(i))));
                assert!(calendar.contains("mailto:alice@example.com"), "{calendar}");
                assert!(calendar.contains(&format!("METHOD:{method}")));
            }
            assert!(!read.text.contains("Attendees"), "{}", read.text);
        }
    }
}

#[test]
fn hidden_keeps_the_people_a_delegation_is_between() {
    let msg = invitation("REQUEST", 25);
    let opts = options(AttendeeList::Hidden);
    let mail = build_message(&msg, &address(&attendee(2)), &opts, &stamp()).expect("mail");
    let read = read(&mail.bytes);
    for calendar in &read.calendars {
        assert_eq!(calendar.matches("ATTENDEE").count(), 2, "{calendar}");
        assert!(calendar.contains(&attendee(1)) && calendar.contains(&attendee(2)));
    }
}

#[test]
fn hidden_leaves_an_answer_to_the_organizer_as_it_is() {
    let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//imipd//test//EN\r\nMETHOD:REPLY\r\n\
                BEGIN:VEVENT\r\nUID:big@example.com\r\nDTSTAMP:20300101T090000Z\r\n\
                DTSTART:20300115T100000Z\r\nSUMMARY:All hands\r\n\
                ORGANIZER:mailto:alice@example.com\r\n\
                ATTENDEE;PARTSTAT=ACCEPTED:mailto:person03@example.net\r\n\
                END:VEVENT\r\nEND:VCALENDAR\r\n";
    let msg = ItipMessage {
        method: Method::Reply,
        from: address("person03@example.net"),
        to: vec![address("alice@example.com")],
        calendar: calcard::icalendar::ICalendar::parse(text).expect("calendar"),
        summary: MessageSummary::Reply {
            partstat: calcard::icalendar::ICalendarParticipationStatus::Accepted,
        },
    };
    let organizer = address("alice@example.com");
    let hidden =
        build_message(&msg, &organizer, &options(AttendeeList::Hidden), &stamp()).expect("mail");
    let full =
        build_message(&msg, &organizer, &options(AttendeeList::Full), &stamp()).expect("mail");
    assert_eq!(read(&hidden.bytes).calendars, read(&full.bytes).calendars);
}
