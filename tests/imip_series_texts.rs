//! What the mail says about a series, as the engine's messages become mail (issue 22):
//!
//! - one moved occurrence: which one, and from when (also when it moves again, or to
//!   another day); one cancelled or changed occurrence: which one;
//! - the Repeats line ends the series: `10 times`, `until Tue 9 Feb 2027`;
//! - an invitation to a series that already started names its next occurrence in the
//!   subject and the When line, and says since when it repeats. "Now" is the time the
//!   engine was given (it becomes the message's DTSTAMP); the mail reads no clock.
//!
//! Each message is computed by `schedule_change` from two versions of the organizer's
//! file, built into mail and read back with mail-parser, as a recipient's client would.

#[path = "data/imip/fixtures.rs"]
mod fixtures;

use calcard::icalendar::ICalendar;
use fixtures::{addr, options, stamp};
use imipd::imip::{build_message, Language};
use imipd::itip::{schedule_change, Context, ItipMessage, MessageSummary, Method, ReplyDetails};
use mail_parser::MessageParser;

/// Mon 30 Nov 2026 12:00 UTC: before the series starts.
const BEFORE: i64 = 1_796_040_000;
/// Mon 7 Dec 2026 12:00 UTC: the series started on Tue 1 Dec.
const RUNNING: i64 = 1_796_644_800;

/// Alice's weekly sync from Tue 1 Dec 2026 10:00 Berlin time, with Bob (and Carol
/// when `carol`); `rule` is the RRULE's value, `extra` the lines after the master.
fn series(rule: &str, carol: bool, extra: &str) -> ICalendar {
    let carol = if carol {
        "ATTENDEE;CN=Carol;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:carol@example.org\r\n"
    } else {
        ""
    };
    ICalendar::parse(format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n\
         UID:weekly-sync\r\nSEQUENCE:0\r\nDTSTAMP:20261101T090000Z\r\n\
         DTSTART;TZID=Europe/Berlin:20261201T100000\r\n\
         DTEND;TZID=Europe/Berlin:20261201T110000\r\n\
         RRULE:{rule}\r\nSUMMARY:Weekly sync\r\n\
         ORGANIZER;CN=Alice:mailto:alice@example.com\r\n\
         ATTENDEE;CN=Alice;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
         ATTENDEE;CN=Bob;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@example.net\r\n\
         {carol}END:VEVENT\r\n{extra}END:VCALENDAR\r\n"
    ))
    .expect("parses")
}

const WEEKLY: &str = "FREQ=WEEKLY;COUNT=10";

/// An override of the week of `rid` (Berlin wall time) at `start`–`end`.
fn moved(rid: &str, start: &str, end: &str, sequence: u32) -> String {
    format!(
        "BEGIN:VEVENT\r\nUID:weekly-sync\r\nSEQUENCE:{sequence}\r\nDTSTAMP:20261101T090000Z\r\n\
         RECURRENCE-ID;TZID=Europe/Berlin:{rid}\r\n\
         DTSTART;TZID=Europe/Berlin:{start}\r\nDTEND;TZID=Europe/Berlin:{end}\r\n\
         SUMMARY:Weekly sync\r\nORGANIZER;CN=Alice:mailto:alice@example.com\r\n\
         ATTENDEE;CN=Alice;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
         ATTENDEE;CN=Bob;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@example.net\r\n\
         END:VEVENT\r\n"
    )
}

/// The messages Alice's imipd sends at `now` when her file goes from `old` to `new`.
fn messages(old: Option<&ICalendar>, new: &ICalendar, now: i64) -> Vec<ItipMessage> {
    let alice = [addr("alice@example.com")];
    let ctx = Context {
        account: &alice,
        now,
        reply_details: ReplyDetails::Full,
    };
    schedule_change(old, new, &ctx).expect("messages").messages
}

/// The one message of `method` that goes to `who`.
fn to(messages: &[ItipMessage], who: &str, method: Method) -> ItipMessage {
    let who = addr(who);
    let found: Vec<&ItipMessage> = messages
        .iter()
        .filter(|m| m.method == method && m.to.contains(&who))
        .collect();
    assert_eq!(found.len(), 1, "{messages:#?}");
    found[0].clone()
}

/// Subject and text body of the mail of `msg` to `who`, in `language`.
fn mail(msg: &ItipMessage, who: &str, language: Language) -> (String, String) {
    let built = build_message(msg, &addr(who), &options(language), &stamp()).expect("a mail");
    let parsed = MessageParser::default()
        .parse(&built.bytes)
        .expect("parses");
    let text = parsed
        .body_text(0)
        .expect("a text part")
        .replace("\r\n", "\n");
    (built.subject, text)
}

/// The series (Bob invited) with the week of `rid` moved to `start`–`end`.
fn with_move(rid: &str, start: &str, end: &str) -> ICalendar {
    series(WEEKLY, false, &moved(rid, start, end, 1))
}

/// The message of `method` Bob gets when Alice's file goes from `old` to `new` before
/// the series starts.
fn to_bob(old: &ICalendar, new: &ICalendar, method: Method) -> ItipMessage {
    to(&messages(Some(old), new, BEFORE), "bob@example.net", method)
}

/// Subject and text of the invitation Alice's imipd sends `who` at `now` for `cal`, a
/// new file.
fn invitation(cal: &ICalendar, now: i64, who: &str, language: Language) -> (String, String) {
    mail(
        &to(&messages(None, cal, now), who, Method::Request),
        who,
        language,
    )
}

fn line<'t>(text: &'t str, label: &str) -> &'t str {
    text.lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in\n{text}"))
}

fn intro(text: &str) -> &str {
    text.lines().next().expect("a first line")
}

/// The series with the week of 8 Dec moved from 10:00 to 11:00.
fn first_move() -> (ICalendar, ItipMessage) {
    let old = series(WEEKLY, false, "");
    let new = with_move("20261208T100000", "20261208T110000", "20261208T120000");
    let msg = to_bob(&old, &new, Method::Request);
    (new, msg)
}

#[test]
fn a_moved_occurrence_says_which_one_and_from_when_in_every_language() {
    let (_, msg) = first_move();
    let (subject, text) = mail(&msg, "bob@example.net", Language::En);
    assert_eq!(
        subject,
        "Updated invitation: Weekly sync @ Tue 8 Dec 2026 11:00–12:00 (Europe/Berlin)"
    );
    assert_eq!(
        intro(&text),
        "Alice has moved the occurrence of “Weekly sync” on Tue 8 Dec 2026 from 10:00 to 11:00."
    );
    assert_eq!(
        line(&text, "When:"),
        "When: Tue 8 Dec 2026 11:00–12:00 (Europe/Berlin)"
    );
    let (_, text) = mail(&msg, "bob@example.net", Language::De);
    assert_eq!(
        intro(&text),
        "Alice hat den Termin von „Weekly sync“ am Di. 8. Dez. 2026 von 10:00 auf 11:00 verschoben."
    );
    let (_, text) = mail(&msg, "bob@example.net", Language::Fr);
    assert_eq!(
        intro(&text),
        "Alice a déplacé l’occurrence de « Weekly sync » du mar. 8 déc. 2026 de 10:00 à 11:00."
    );
}

#[test]
fn moved_again_it_says_from_where_the_attendee_had_it_also_after_the_queue() {
    let (old, _) = first_move();
    let new = with_move("20261208T100000", "20261208T120000", "20261208T130000");
    let msg = to_bob(&old, &new, Method::Request);
    let want =
        "Alice has moved the occurrence of “Weekly sync” on Tue 8 Dec 2026 from 11:00 to 12:00.";
    assert_eq!(intro(&mail(&msg, "bob@example.net", Language::En).1), want);

    // The queue keeps the message as iCalendar text and the summary as a record.
    let rebuilt = fixtures::through_queue(&msg, "bob@example.net");
    assert_eq!(
        intro(&mail(&rebuilt, "bob@example.net", Language::En).1),
        want
    );
}

#[test]
fn an_occurrence_moved_to_another_day_names_both_days() {
    let old = series(WEEKLY, false, "");
    let new = with_move("20261208T100000", "20261209T090000", "20261209T100000");
    let msg = to_bob(&old, &new, Method::Request);
    let (_, text) = mail(&msg, "bob@example.net", Language::En);
    assert_eq!(
        intro(&text),
        "Alice has moved the occurrence of “Weekly sync” from Tue 8 Dec 2026 10:00 to \
         Wed 9 Dec 2026 09:00."
    );
    let (_, text) = mail(&msg, "bob@example.net", Language::De);
    assert_eq!(
        intro(&text),
        "Alice hat den Termin von „Weekly sync“ von Di. 8. Dez. 2026 10:00 auf \
         Mi. 9. Dez. 2026 09:00 verschoben."
    );
}

#[test]
fn a_changed_or_cancelled_occurrence_says_which_one() {
    let old = series(WEEKLY, false, "");
    let renamed = moved("20261215T100000", "20261215T100000", "20261215T110000", 1).replace(
        "SUMMARY:Weekly sync",
        "SUMMARY:Weekly sync\r\nLOCATION:Room 2",
    );
    let new = series(WEEKLY, false, &renamed);
    let msg = to_bob(&old, &new, Method::Request);
    let (_, text) = mail(&msg, "bob@example.net", Language::En);
    assert_eq!(
        intro(&text),
        "Alice has updated the occurrence of “Weekly sync” on Tue 15 Dec 2026."
    );

    // The occurrence cancelled in its override (Thunderbird's "delete this occurrence"
    // writes an EXDATE instead: the whole series goes out, with its Excluded dates).
    let cancelled = moved("20261215T100000", "20261215T100000", "20261215T110000", 1).replace(
        "SUMMARY:Weekly sync",
        "SUMMARY:Weekly sync\r\nSTATUS:CANCELLED",
    );
    let new = series(WEEKLY, false, &cancelled);
    let msg = to_bob(&old, &new, Method::Cancel);
    assert!(matches!(msg.summary, MessageSummary::Cancel));
    let (subject, text) = mail(&msg, "bob@example.net", Language::En);
    assert_eq!(
        subject,
        "Cancelled: Weekly sync @ Tue 15 Dec 2026 10:00–11:00 (Europe/Berlin)"
    );
    assert_eq!(
        intro(&text),
        "Alice has cancelled the occurrence of “Weekly sync” on Tue 15 Dec 2026."
    );
    let (_, text) = mail(&msg, "bob@example.net", Language::Fr);
    assert_eq!(
        intro(&text),
        "Alice a annulé l’occurrence de « Weekly sync » du mar. 15 déc. 2026."
    );
}

#[test]
fn the_repeats_line_names_the_end_of_the_series() {
    let invite = |rule: &str| {
        let msgs = messages(None, &series(rule, false, ""), BEFORE);
        let msg = to(&msgs, "bob@example.net", Method::Request);
        Language::ALL.map(|l| {
            let (_, text) = mail(&msg, "bob@example.net", l);
            text.lines()
                .find(|t| {
                    t.starts_with("Repeats:")
                        || t.starts_with("Wiederholung:")
                        || t.starts_with("Répétition")
                })
                .unwrap_or_else(|| panic!("no Repeats line in\n{text}"))
                .to_string()
        })
    };
    assert_eq!(
        invite(WEEKLY),
        [
            "Repeats: Every week, 10 times",
            "Wiederholung: Wöchentlich, 10-mal",
            "Répétition : Toutes les semaines, 10 fois",
        ]
    );
    // Thunderbird writes UNTIL as the last occurrence's start in UTC.
    assert_eq!(
        invite("FREQ=WEEKLY;UNTIL=20270209T090000Z"),
        [
            "Repeats: Every week, until Tue 9 Feb 2027",
            "Wiederholung: Wöchentlich, bis Di. 9. Feb. 2027",
            "Répétition : Toutes les semaines, jusqu’au mar. 9 févr. 2027",
        ]
    );
    // Google writes the end of the last day, in UTC: still that day in Berlin.
    assert_eq!(
        invite("FREQ=DAILY;INTERVAL=2;UNTIL=20270209T225959Z")[0],
        "Repeats: Every 2 days, until Tue 9 Feb 2027"
    );
    // Without an end the line is as it was; a rule shown as written says its own end.
    assert_eq!(invite("FREQ=WEEKLY")[0], "Repeats: Every week");
    assert_eq!(
        invite("FREQ=MONTHLY;BYDAY=1TU;COUNT=3")[0],
        "Repeats: FREQ=MONTHLY;COUNT=3;BYDAY=1TU"
    );
}

#[test]
fn an_invitation_to_a_running_series_shows_its_next_occurrence() {
    // Alice invites on Mon 7 Dec to the series that began on Tue 1 Dec.
    let new = series(WEEKLY, true, "");
    let carol = "carol@example.org";
    let (_, text) = invitation(&new, RUNNING, carol, Language::En);
    assert_eq!(
        line(&text, "When:"),
        "When: Tue 8 Dec 2026 10:00–11:00 (Europe/Berlin)"
    );
    for (language, subject, repeats) in [
        (
            Language::En,
            "Invitation: Weekly sync @ Tue 8 Dec 2026 10:00–11:00 (Europe/Berlin)",
            "Repeats: Every week since Tue 1 Dec 2026, 10 times",
        ),
        (
            Language::De,
            "Einladung: Weekly sync @ Di. 8. Dez. 2026 10:00–11:00 (Europe/Berlin)",
            "Wiederholung: Wöchentlich seit Di. 1. Dez. 2026, 10-mal",
        ),
        (
            Language::Fr,
            "Invitation : Weekly sync @ mar. 8 déc. 2026 10:00–11:00 (Europe/Berlin)",
            "Répétition : Toutes les semaines depuis le mar. 1 déc. 2026, 10 fois",
        ),
    ] {
        let (got, text) = invitation(&new, RUNNING, carol, language);
        assert_eq!(got, subject);
        assert!(text.lines().any(|l| l == repeats), "{repeats:?} in\n{text}");
    }

    // Invited before the series starts, the first date is the next one.
    let (subject, text) = invitation(&new, BEFORE, carol, Language::En);
    assert_eq!(
        subject,
        "Invitation: Weekly sync @ Tue 1 Dec 2026 10:00–11:00 (Europe/Berlin)"
    );
    assert_eq!(line(&text, "Repeats:"), "Repeats: Every week, 10 times");
}

#[test]
fn the_next_occurrence_is_the_moved_one_and_skips_excluded_weeks() {
    // Week 2 (8 Dec) moved to 11:00, week 3 (15 Dec) excluded; invited on 7 Dec.
    let with = |carol| {
        let cal = series(
            WEEKLY,
            carol,
            &moved("20261208T100000", "20261208T110000", "20261208T120000", 1),
        );
        ICalendar::parse(cal.to_string().replace(
            "RRULE:FREQ=WEEKLY;COUNT=10\r\n",
            "RRULE:FREQ=WEEKLY;COUNT=10\r\nEXDATE;TZID=Europe/Berlin:20261215T100000\r\n",
        ))
        .expect("parses")
    };
    let cal = with(true);
    let (subject, _) = invitation(&cal, RUNNING, "carol@example.org", Language::En);
    assert_eq!(
        subject,
        "Invitation: Weekly sync @ Tue 8 Dec 2026 11:00–12:00 (Europe/Berlin)"
    );
    // On Wed 9 Dec, the next week is the 22nd: the 15th is excluded.
    let later = RUNNING + 2 * 86_400;
    let (subject, _) = invitation(&cal, later, "carol@example.org", Language::En);
    assert_eq!(
        subject,
        "Invitation: Weekly sync @ Tue 22 Dec 2026 10:00–11:00 (Europe/Berlin)"
    );
}

/// The engine's CANCEL of a whole series carries no RRULE (RFC 5546 §3.2.5 does not ask
/// for one), so its mail names the first day. A CANCEL that does carry the rule is about
/// the whole running series: it names the next occurrence that will not take place.
#[test]
fn a_cancel_with_its_rule_names_the_next_occurrence_of_the_running_series() {
    let cal = ICalendar::parse(
        series(WEEKLY, false, "")
            .to_string()
            .replace(
                "BEGIN:VEVENT\r\n",
                "METHOD:CANCEL\r\nBEGIN:VEVENT\r\nSTATUS:CANCELLED\r\n",
            )
            .replace("DTSTAMP:20261101T090000Z", "DTSTAMP:20261207T120000Z"),
    )
    .expect("parses");
    let msg = ItipMessage {
        method: Method::Cancel,
        from: addr("alice@example.com"),
        to: vec![addr("bob@example.net")],
        calendar: cal,
        summary: MessageSummary::Cancel,
    };
    let (subject, text) = mail(&msg, "bob@example.net", Language::En);
    assert_eq!(
        subject,
        "Cancelled: Weekly sync @ Tue 8 Dec 2026 10:00–11:00 (Europe/Berlin)"
    );
    assert_eq!(intro(&text), "Alice has cancelled “Weekly sync”.");
    assert_eq!(
        line(&text, "Repeats:"),
        "Repeats: Every week since Tue 1 Dec 2026, 10 times"
    );
}
