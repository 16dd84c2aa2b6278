//! Mail built once per change is the mail built once per recipient.
//!
//! Issue #17 moved the work that is the same for every recipient (serialising and
//! encoding the iCalendar, rendering the texts) out of the per-recipient path. The
//! emails in `tests/data/imip/before_17/` were written by the per-recipient builder
//! before that change (commit 13b55d3) for every attendee of a 10-attendee event: a
//! first invitation, an update, a cancellation, and an invitation with RSVP links.
//! The new path must give the same bytes: with 10 attendees the default attendee
//! list ("summary", at most 20 names) shows everyone, so nothing was meant to change.
//!
//! `IMIPD_WRITE_BEFORE_17=1` rewrote the files; it is kept only to document how they
//! were made and must not be used after the change.

use chrono::{TimeZone, Utc};
use imipd::imip::rsvp::RsvpLinks;
use imipd::imip::{build_message_with_links, Language, OutgoingOptions, PreparedMail, Stamp};
use imipd::itip::{CalAddress, FieldChange, ItipMessage, MessageSummary, Method};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/imip/before_17")
}

/// The 10 attendees: names with accents, one German speaker, one delegate.
fn attendee_lines() -> Vec<String> {
    (0..10)
        .map(|i| match i {
            3 => "ATTENDEE;CN=Jürgen Müller;LANGUAGE=de;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:juergen@example.de".to_string(),
            7 => "ATTENDEE;CN=Dana Delegate;DELEGATED-FROM=\"mailto:att6@example.net\";PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:dana@example.net".to_string(),
            6 => "ATTENDEE;CN=Attendee 6;DELEGATED-TO=\"mailto:dana@example.net\";PARTSTAT=DELEGATED:mailto:att6@example.net".to_string(),
            1 => "ATTENDEE;CN=Bob Accepted;PARTSTAT=ACCEPTED:mailto:bob@example.org".to_string(),
            i => format!("ATTENDEE;CN=Attendee {i};PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:att{i}@example.net"),
        })
        .collect()
}

fn calendar(method: &str, sequence: u32, start: &str) -> String {
    let mut text = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//imipd//test//EN\r\nMETHOD:{method}\r\n\
         BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n\
         RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n\
         END:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\n\
         RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n\
         END:DAYLIGHT\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT\r\nUID:large-10@example.com\r\n\
         DTSTAMP:20300101T090000Z\r\nSEQUENCE:{sequence}\r\n\
         DTSTART;TZID=Europe/Berlin:{start}\r\nDURATION:PT1H\r\n\
         SUMMARY:Réunion d'équipe — quarterly planning\r\nLOCATION:Room 4\r\n\
         DESCRIPTION:Agenda:\\n1. Numbers\\n2. Plans\r\n\
         ORGANIZER;CN=Alice Organizer:mailto:alice@example.com\r\n"
    );
    for line in attendee_lines() {
        text.push_str(&line);
        text.push_str("\r\n");
    }
    text.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
    text
}

struct Case {
    name: &'static str,
    msg: ItipMessage,
    links: bool,
}

fn address(a: &str) -> CalAddress {
    CalAddress::parse(a).expect("address")
}

fn recipients() -> Vec<CalAddress> {
    attendee_lines()
        .iter()
        .filter_map(|l| l.rsplit_once("mailto:").map(|(_, a)| address(a)))
        .collect()
}

fn message(method: Method, text: &str, summary: MessageSummary) -> ItipMessage {
    ItipMessage {
        method,
        from: address("alice@example.com"),
        to: recipients(),
        calendar: calcard::icalendar::ICalendar::parse(text).expect("calendar"),
        summary,
    }
}

fn cases() -> Vec<Case> {
    let moved = MessageSummary::Update {
        changes: vec![FieldChange {
            property: "DTSTART".into(),
            old: Some("20300115T100000".into()),
            new: Some("20300116T110000".into()),
        }],
    };
    vec![
        Case {
            name: "invite",
            msg: message(
                Method::Request,
                &calendar("REQUEST", 0, "20300115T100000"),
                MessageSummary::Invite,
            ),
            links: false,
        },
        Case {
            name: "update",
            msg: message(
                Method::Request,
                &calendar("REQUEST", 1, "20300116T110000"),
                moved,
            ),
            links: false,
        },
        Case {
            name: "cancel",
            msg: message(
                Method::Cancel,
                &calendar("CANCEL", 2, "20300116T110000"),
                MessageSummary::Cancel,
            ),
            links: false,
        },
        Case {
            name: "invite-links",
            msg: message(
                Method::Request,
                &calendar("REQUEST", 0, "20300115T100000"),
                MessageSummary::Invite,
            ),
            links: true,
        },
    ]
}

fn options() -> OutgoingOptions {
    OutgoingOptions {
        default_language: Language::En,
        message_id_domain: "gw.example.com".into(),
        ..OutgoingOptions::default()
    }
}

fn stamp(i: usize) -> Stamp {
    Stamp {
        now: Utc
            .with_ymd_and_hms(2030, 1, 1, 9, 0, 0)
            .single()
            .expect("valid date"),
        unique: 1000 + i as u64,
    }
}

fn links_for(rcpt: &CalAddress) -> RsvpLinks {
    let base = format!(
        "https://cal.example.com/rsvp/{}",
        rcpt.as_str().replace('@', ".")
    );
    RsvpLinks {
        accept: format!("{base}?a=accepted"),
        maybe: format!("{base}?a=tentative"),
        decline: format!("{base}?a=declined"),
    }
}

#[test]
fn write_the_mails_of_the_per_recipient_builder() {
    if std::env::var_os("IMIPD_WRITE_BEFORE_17").is_none() {
        return;
    }
    std::fs::create_dir_all(dir()).expect("dir");
    for case in cases() {
        for (i, rcpt) in recipients().iter().enumerate() {
            let links = case.links.then(|| links_for(rcpt));
            let mail =
                build_message_with_links(&case.msg, rcpt, &options(), &stamp(i), links.as_ref())
                    .expect("mail");
            std::fs::write(dir().join(format!("{}.{i}.eml", case.name)), &mail.bytes)
                .expect("write");
        }
    }
}

#[test]
fn mail_prepared_once_for_ten_attendees_is_byte_identical_to_the_mail_built_per_recipient() {
    let mut compared = 0;
    for case in cases() {
        let mut prepared = PreparedMail::borrowed(&case.msg, &options()).expect("prepared");
        for (i, rcpt) in recipients().iter().enumerate() {
            let links = case.links.then(|| links_for(rcpt));
            let mail = prepared
                .build_for(rcpt, &options(), &stamp(i), links.as_ref())
                .expect("mail");
            let path = dir().join(format!("{}.{i}.eml", case.name));
            let before = std::fs::read(&path).expect("the mail written before the change");
            assert!(
                mail.bytes == before,
                "{} differs from the mail built before the change:\n{}",
                path.display(),
                String::from_utf8_lossy(&mail.bytes)
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 40);
}
