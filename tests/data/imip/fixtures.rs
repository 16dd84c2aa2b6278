//! iTIP messages for the imip tests: one per method and answer, built the way the
//! engine builds them (a complete VCALENDAR with METHOD, sender, recipient, summary).
//! Included by the `tests/imip_*.rs` files with `#[path]`.

#![allow(dead_code)]

use calcard::icalendar::{ICalendar, ICalendarParticipationStatus};
use chrono::{TimeZone, Utc};
use imipd::imip::{Language, OutgoingOptions, Stamp};
use imipd::itip::{CalAddress, FieldChange, ItipMessage, MessageSummary, Method};

pub const ALICE: &str = "alice@example.com";
pub const BOB: &str = "bob@example.net";
pub const CAROL: &str = "carol@example.net";

pub fn addr(s: &str) -> CalAddress {
    CalAddress::parse(s).expect("test address")
}

/// A fixed stamp: Mon 1 Jun 2009 12:00 UTC.
pub fn stamp() -> Stamp {
    Stamp {
        now: Utc
            .with_ymd_and_hms(2009, 6, 1, 12, 0, 0)
            .single()
            .expect("valid date"),
        unique: 42,
    }
}

pub fn options(language: Language) -> OutgoingOptions {
    OutgoingOptions {
        default_language: language,
        message_id_domain: "gw.example.com".into(),
        ..OutgoingOptions::default()
    }
}

/// One test case: a name for snapshots, the message and its recipient.
pub struct Case {
    pub name: &'static str,
    pub msg: ItipMessage,
    pub recipient: CalAddress,
}

const ORGANIZER: &str = "ORGANIZER;CN=Alice Organizer:mailto:alice@example.com";
const ALICE_ATTENDS: &str =
    "ATTENDEE;CN=Alice Organizer;PARTSTAT=ACCEPTED;ROLE=CHAIR:mailto:alice@example.com";
const BOB_INVITED: &str =
    "ATTENDEE;CN=Bob Attendee;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@example.net";

/// A VCALENDAR with `method` around one VEVENT made of `lines`.
pub fn calendar(method: &str, lines: &[&str]) -> ICalendar {
    let mut text = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//imipd//tests//EN\r\nMETHOD:{method}\r\n\
         BEGIN:VEVENT\r\nUID:lunch-42@example.com\r\nDTSTAMP:20090601T100000Z\r\n"
    );
    for line in lines {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
    ICalendar::parse(&text).expect("test calendar parses")
}

fn event(extra: &[&'static str]) -> Vec<&'static str> {
    let mut lines = vec![
        "DTSTART:20090602T160000Z",
        "DTEND:20090602T170000Z",
        "SUMMARY:Lunch",
        "LOCATION:Cafe Rouge",
        "DESCRIPTION:Let's talk about the roadmap.\\nBring ideas.",
    ];
    lines.extend_from_slice(extra);
    lines
}

fn message(
    method: Method,
    method_text: &str,
    from: &str,
    to: &str,
    lines: &[&str],
    summary: MessageSummary,
) -> (ItipMessage, CalAddress) {
    let recipient = addr(to);
    let msg = ItipMessage {
        method,
        from: addr(from),
        to: vec![recipient.clone()],
        calendar: calendar(method_text, lines),
        summary,
    };
    (msg, recipient)
}

fn reply(
    partstat: ICalendarParticipationStatus,
    bob_line: &'static str,
) -> (ItipMessage, CalAddress) {
    let mut lines = event(&["SEQUENCE:0", ORGANIZER, bob_line]);
    if partstat == ICalendarParticipationStatus::Delegated {
        lines.push("ATTENDEE;CN=Carol Delegate;DELEGATED-FROM=\"mailto:bob@example.net\":mailto:carol@example.net");
    }
    message(
        Method::Reply,
        "REPLY",
        BOB,
        ALICE,
        &lines,
        MessageSummary::Reply { partstat },
    )
}

/// Every kind of message the engine produces.
pub fn all_cases() -> Vec<Case> {
    use ICalendarParticipationStatus as P;
    let case = |name, (msg, recipient)| Case {
        name,
        msg,
        recipient,
    };
    vec![
        case(
            "request-invite",
            message(
                Method::Request,
                "REQUEST",
                ALICE,
                BOB,
                &event(&["SEQUENCE:0", ORGANIZER, ALICE_ATTENDS, BOB_INVITED]),
                MessageSummary::Invite,
            ),
        ),
        case(
            "request-update",
            message(
                Method::Request,
                "REQUEST",
                ALICE,
                BOB,
                &event(&["SEQUENCE:1", ORGANIZER, ALICE_ATTENDS, BOB_INVITED]),
                MessageSummary::Update {
                    changes: vec![
                        FieldChange {
                            property: "DTSTART".into(),
                            old: Some("20090602T150000Z".into()),
                            new: Some("20090602T160000Z".into()),
                        },
                        FieldChange {
                            property: "LOCATION".into(),
                            old: Some("Canteen".into()),
                            new: Some("Cafe Rouge".into()),
                        },
                    ],
                },
            ),
        ),
        case(
            "request-delegated",
            message(
                Method::Request,
                "REQUEST",
                ALICE,
                CAROL,
                &event(&[
                    "SEQUENCE:0",
                    ORGANIZER,
                    ALICE_ATTENDS,
                    "ATTENDEE;CN=Bob Attendee;PARTSTAT=DELEGATED;DELEGATED-TO=\"mailto:carol@example.net\":mailto:bob@example.net",
                    "ATTENDEE;CN=Carol Delegate;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;DELEGATED-FROM=\"mailto:bob@example.net\":mailto:carol@example.net",
                ]),
                MessageSummary::Invite,
            ),
        ),
        case(
            "request-refresh-answer",
            message(
                Method::Request,
                "REQUEST",
                ALICE,
                BOB,
                &event(&[
                    "SEQUENCE:2",
                    ORGANIZER,
                    ALICE_ATTENDS,
                    "ATTENDEE;CN=Bob Attendee;PARTSTAT=TENTATIVE:mailto:bob@example.net",
                ]),
                MessageSummary::Invite,
            ),
        ),
        // Issue 22: the week of 2 Jun moved by an hour (an override, sent alone).
        case(
            "request-occurrence-moved",
            message(
                Method::Request,
                "REQUEST",
                ALICE,
                BOB,
                &[
                    "RECURRENCE-ID:20090602T160000Z",
                    "DTSTART:20090602T170000Z",
                    "DTEND:20090602T180000Z",
                    "SUMMARY:Lunch",
                    "SEQUENCE:1",
                    ORGANIZER,
                    ALICE_ATTENDS,
                    BOB_INVITED,
                ],
                MessageSummary::Update {
                    changes: Vec::new(),
                },
            ),
        ),
        // A weekly series that began on 12 May, invited to on 1 Jun (the DTSTAMP).
        case(
            "request-series-running",
            message(
                Method::Request,
                "REQUEST",
                ALICE,
                BOB,
                &[
                    "DTSTART:20090512T160000Z",
                    "DTEND:20090512T170000Z",
                    "RRULE:FREQ=WEEKLY;COUNT=10",
                    "SUMMARY:Lunch",
                    "SEQUENCE:0",
                    ORGANIZER,
                    ALICE_ATTENDS,
                    BOB_INVITED,
                ],
                MessageSummary::Invite,
            ),
        ),
        case(
            "reply-accepted",
            reply(P::Accepted, "ATTENDEE;CN=Bob Attendee;PARTSTAT=ACCEPTED:mailto:bob@example.net"),
        ),
        case(
            "reply-declined",
            reply(P::Declined, "ATTENDEE;CN=Bob Attendee;PARTSTAT=DECLINED:mailto:bob@example.net"),
        ),
        case(
            "reply-tentative",
            reply(P::Tentative, "ATTENDEE;CN=Bob Attendee;PARTSTAT=TENTATIVE:mailto:bob@example.net"),
        ),
        case(
            "reply-delegated",
            reply(
                P::Delegated,
                "ATTENDEE;CN=Bob Attendee;PARTSTAT=DELEGATED;DELEGATED-TO=\"mailto:carol@example.net\":mailto:bob@example.net",
            ),
        ),
        case(
            "reply-needs-action",
            reply(P::NeedsAction, "ATTENDEE;CN=Bob Attendee;PARTSTAT=NEEDS-ACTION:mailto:bob@example.net"),
        ),
        case(
            "cancel",
            message(
                Method::Cancel,
                "CANCEL",
                ALICE,
                BOB,
                &event(&["SEQUENCE:3", "STATUS:CANCELLED", ORGANIZER, BOB_INVITED]),
                MessageSummary::Cancel,
            ),
        ),
        case(
            "cancel-occurrence",
            message(
                Method::Cancel,
                "CANCEL",
                ALICE,
                BOB,
                &[
                    "RECURRENCE-ID:20090609T160000Z",
                    "DTSTART:20090609T160000Z",
                    "DTEND:20090609T170000Z",
                    "SUMMARY:Lunch",
                    "SEQUENCE:1",
                    "STATUS:CANCELLED",
                    ORGANIZER,
                    BOB_INVITED,
                ],
                MessageSummary::Cancel,
            ),
        ),
        case(
            "add",
            message(
                Method::Add,
                "ADD",
                ALICE,
                BOB,
                &[
                    "DTSTART:20090609T160000Z",
                    "DTEND:20090609T170000Z",
                    "SUMMARY:Lunch",
                    "SEQUENCE:4",
                    ORGANIZER,
                    BOB_INVITED,
                ],
                MessageSummary::Invite,
            ),
        ),
        case(
            "refresh",
            message(
                Method::Refresh,
                "REFRESH",
                BOB,
                ALICE,
                &[ORGANIZER, "ATTENDEE;CN=Bob Attendee:mailto:bob@example.net"],
                MessageSummary::Refresh,
            ),
        ),
        case(
            "counter",
            message(
                Method::Counter,
                "COUNTER",
                BOB,
                ALICE,
                &[
                    "DTSTART:20090602T170000Z",
                    "DTEND:20090602T180000Z",
                    "SUMMARY:Lunch",
                    "SEQUENCE:0",
                    "COMMENT:Can we make it an hour later?",
                    ORGANIZER,
                    "ATTENDEE;CN=Bob Attendee;PARTSTAT=TENTATIVE:mailto:bob@example.net",
                ],
                MessageSummary::Counter,
            ),
        ),
        case(
            "declinecounter",
            message(
                Method::Declinecounter,
                "DECLINECOUNTER",
                ALICE,
                BOB,
                &[
                    "SUMMARY:Lunch",
                    "SEQUENCE:0",
                    "COMMENT:Sorry, 16:00 is fixed.",
                    ORGANIZER,
                    "ATTENDEE;CN=Bob Attendee:mailto:bob@example.net",
                ],
                MessageSummary::DeclineCounter,
            ),
        ),
    ]
}

/// `msg` after a trip through the delivery queue to `rcpt`: stored as the daemon stores
/// it (iCalendar text and a summary record, as JSON) and rebuilt for sending.
pub fn through_queue(msg: &ItipMessage, rcpt: &str) -> ItipMessage {
    use imipd::store::state::{QueueItem, Route};
    let item = QueueItem {
        id: 1,
        created: 0,
        next_attempt: 0,
        attempts: 0,
        route: Route::Mail,
        from: msg.from.to_string(),
        rcpt: rcpt.into(),
        method: imipd::itip::method_name(&msg.method).into(),
        uid: msg.uid().unwrap_or_default().into(),
        itip: msg.to_ics().into(),
        body: None,
        summary: imipd::store::process::summary_record(&msg.summary),
        status_object: None,
        last_error: None,
        changed_at_ms: None,
    };
    let stored = serde_json::to_string(&item).expect("stored");
    let item: QueueItem = serde_json::from_str(&stored).expect("read back");
    imipd::daemon::queue::itip_message(&item).expect("rebuilt")
}

/// The case called `name`.
pub fn case(name: &str) -> Case {
    all_cases()
        .into_iter()
        .find(|c| c.name == name)
        .expect("known case")
}

/// Jürgen's invitation to Bob with non-ASCII everywhere (names, title, place, a long
/// description that must be folded), at `times` (DTSTART and DTEND lines), with
/// `description` and the `attendees` lines before Bob's.
pub fn juergens_request(times: [&str; 2], description: &str, attendees: &[&str]) -> ItipMessage {
    let mut msg = case("request-invite").msg;
    msg.from = addr("juergen@example.com");
    let description = format!("DESCRIPTION:Ordre du jour : budget\\, planning\\; {description}");
    let mut lines = vec![
        times[0],
        times[1],
        "SUMMARY:Réunion d'équipe — 日本",
        "LOCATION:Salle « Fleurs »",
        &description,
        "ORGANIZER;CN=Jürgen Müller:mailto:juergen@example.com",
    ];
    lines.extend(attendees);
    lines.push("ATTENDEE;CN=Bob Attendee;PARTSTAT=NEEDS-ACTION:mailto:bob@example.net");
    msg.calendar = calendar("REQUEST", &lines);
    msg
}
