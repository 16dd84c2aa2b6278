//! The mail text says what the calendar data says.
//!
//! - "What changed" shows each time as the When line does: in the event's zone (no
//!   false `Z` on a Berlin wall time), dates as dates (an all-day End as its last
//!   day), Start before End.
//! - The base64 text/plain and text/html bodies end lines with CRLF (RFC 2046 §4.1.1),
//!   as every other part does.
//!
//! The updates are computed by the engine from two versions of a file, then built into
//! mail and read back with mail-parser, as a recipient's client would.

#[path = "data/imip/fixtures.rs"]
mod fixtures;

use calcard::icalendar::ICalendar;
use imipd::imip::{build_message, Language, OutgoingMail};
use imipd::itip::{self, CalAddress, Context, ItipMessage, MessageSummary, ReplyDetails};
use mail_parser::{MessageParser, MimeHeaders};

const NOW: i64 = 1_900_000_000;

fn lunch_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/events/lunch.ics");
    std::fs::read_to_string(path).expect("examples/events/lunch.ics")
}

/// The update the organizer (Alice) sends when `old` becomes `new`.
fn update(old: &str, new: &str) -> ItipMessage {
    let alice = [CalAddress::parse("alice@example.com").expect("address")];
    let ctx = Context {
        account: &alice,
        now: NOW,
        reply_details: ReplyDetails::Full,
    };
    let old = ICalendar::parse(old).expect("old version");
    let new = ICalendar::parse(new).expect("new version");
    let outcome = itip::schedule_change(Some(&old), &new, &ctx).expect("an update");
    outcome
        .messages
        .into_iter()
        .find(|m| matches!(m.summary, MessageSummary::Update { .. }))
        .expect("an updated invitation")
}

fn text_body(mail: &OutgoingMail) -> String {
    let message = MessageParser::default()
        .parse(&mail.bytes)
        .expect("mail parses");
    message
        .body_text(0)
        .expect("text body")
        .replace("\r\n", "\n")
}

fn mail_to_bob(msg: &ItipMessage) -> OutgoingMail {
    let bob = CalAddress::parse("bob@example.com").expect("address");
    build_message(
        msg,
        &bob,
        &fixtures::options(Language::En),
        &fixtures::stamp(),
    )
    .expect("mail")
}

/// The "What changed" lines of a text body.
fn change_lines(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("What changed"))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- "))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn what_changed_shows_berlin_wall_times_as_the_when_line_does_start_before_end() {
    let old = lunch_text();
    let new = old
        .replace("20300610T123000", "20300610T160000")
        .replace("20300610T133000", "20300610T170000");
    let mail = mail_to_bob(&update(&old, &new));
    let text = text_body(&mail);
    assert!(
        text.contains("When: Mon 10 Jun 2030 16:00–17:00 (Europe/Berlin)"),
        "{text}"
    );
    assert_eq!(
        change_lines(&text),
        vec![
            "- Start: Mon 10 Jun 2030 12:30 (Europe/Berlin) → Mon 10 Jun 2030 16:00 (Europe/Berlin)",
            "- End: Mon 10 Jun 2030 13:30 (Europe/Berlin) → Mon 10 Jun 2030 17:00 (Europe/Berlin)",
        ],
        "{text}"
    );
}

#[test]
fn what_changed_shows_an_all_day_move_as_dates() {
    let old = lunch_text()
        .replace(
            "DTSTART;TZID=Europe/Berlin:20300610T123000",
            "DTSTART;VALUE=DATE:20300610",
        )
        .replace(
            "DTEND;TZID=Europe/Berlin:20300610T133000",
            "DTEND;VALUE=DATE:20300611",
        );
    let new = old
        .replace("DATE:20300610", "DATE:20300612")
        .replace("DATE:20300611", "DATE:20300613");
    let text = text_body(&mail_to_bob(&update(&old, &new)));
    assert!(text.contains("When: Wed 12 Jun 2030\n"), "{text}");
    assert_eq!(
        change_lines(&text),
        vec![
            "- Start: Mon 10 Jun 2030 → Wed 12 Jun 2030",
            // DTEND is exclusive: the last day is shown, as in the When line.
            "- End: Mon 10 Jun 2030 → Wed 12 Jun 2030",
        ],
        "{text}"
    );
}

#[test]
fn what_changed_keeps_utc_times_utc_and_converts_nothing_else() {
    let old = lunch_text()
        .replace(
            "DTSTART;TZID=Europe/Berlin:20300610T123000",
            "DTSTART:20300610T103000Z",
        )
        .replace(
            "DTEND;TZID=Europe/Berlin:20300610T133000",
            "DTEND:20300610T113000Z",
        );
    let new = old.replace("20300610T103000Z", "20300610T093000Z");
    let text = text_body(&mail_to_bob(&update(&old, &new)));
    assert_eq!(
        change_lines(&text),
        vec!["- Start: Mon 10 Jun 2030 10:30 (UTC) → Mon 10 Jun 2030 09:30 (UTC)"],
        "{text}"
    );
}

/// Lines in `bytes` that end in a bare LF.
fn bare_lf(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .enumerate()
        .filter(|(i, b)| **b == b'\n' && (*i == 0 || bytes[i - 1] != b'\r'))
        .count()
}

/// An invitation written almost entirely in Japanese: mail-builder picks base64 for
/// its bodies, where bare LF survives encoding (quoted-printable writes CRLF anyway).
fn japanese_invitation() -> fixtures::Case {
    let lines = [
        "SEQUENCE:0",
        "DTSTART:20090602T160000Z",
        "DTEND:20090602T170000Z",
        "SUMMARY:昼食会議と来期の計画についての打ち合わせ",
        "LOCATION:東京本社の第三会議室",
        "DESCRIPTION:来期の計画について話し合います。\\n資料を持参してください。\\n昼食は用意します。",
        "ORGANIZER;CN=山田太郎:mailto:alice@example.com",
        "ATTENDEE;CN=山田太郎;PARTSTAT=ACCEPTED:mailto:alice@example.com",
        "ATTENDEE;CN=鈴木花子;RSVP=TRUE:mailto:bob@example.net",
    ];
    fixtures::Case {
        name: "japanese-invite",
        msg: ItipMessage {
            method: imipd::itip::Method::Request,
            from: fixtures::addr(fixtures::ALICE),
            to: vec![fixtures::addr(fixtures::BOB)],
            calendar: fixtures::calendar("REQUEST", &lines),
            summary: MessageSummary::Invite,
        },
        recipient: fixtures::addr(fixtures::BOB),
    }
}

#[test]
fn text_and_html_bodies_end_their_lines_with_crlf() {
    let mut checked = 0;
    let mut base64 = 0;
    for language in Language::ALL {
        let mut cases = fixtures::all_cases();
        cases.push(japanese_invitation());
        for case in cases {
            let mail = build_message(
                &case.msg,
                &case.recipient,
                &fixtures::options(language),
                &fixtures::stamp(),
            )
            .expect("mail");
            let message = MessageParser::default()
                .parse(&mail.bytes)
                .expect("mail parses");
            for part in message.parts.iter() {
                let Some(ct) = part.content_type() else {
                    continue;
                };
                if ct.ctype() != "text" || !matches!(ct.subtype(), Some("plain" | "html")) {
                    continue;
                }
                if part.content_transfer_encoding() == Some("base64") {
                    base64 += 1;
                }
                let body = part.contents();
                assert!(body.contains(&b'\n'), "{} has lines", case.name);
                assert_eq!(
                    bare_lf(body),
                    0,
                    "{} ({language}) text/{:?} has bare LF line ends",
                    case.name,
                    ct.subtype()
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 18 * 3 * 2);
    assert!(base64 >= 2, "some bodies are base64 ({base64})");
}
