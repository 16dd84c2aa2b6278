//! Harness for the scheduling engine (`imipd::itip`) and the write-back (`patch`).
//!
//! Fuzz input is turned into calendars; this module picks the acting account from
//! the addresses a calendar names, holds two realistic stored copies (an organizer's
//! and an attendee's, same UID), and checks what the engine returns the way the
//! daemon uses it: every message must serialise to iCalendar that parses again, and
//! every copy to store must parse again and be patched into the user's file or
//! refused with a typed [`PatchError`](imipd::store::patch::PatchError), never a panic.

use calcard::icalendar::{
    ICalendar, ICalendarEntry, ICalendarMethod, ICalendarProperty, ICalendarValue,
};
use imipd::itip::{snapshot::entry_address, CalAddress, Context, ItipMessage, ReplyDetails};
use imipd::store::patch::patch;

/// "Now" for every engine call: 1990, so that the 2030 events of the seeds are not
/// over (an event that is over sends nothing and would hide the interesting paths).
pub const NOW: i64 = 631_152_000;

/// An organizer's stored copy: a weekly series with an override, a time zone, folded
/// lines, a room, a client-scheduled attendee, an alarm, LF line ends.
pub const ORGANIZER_COPY: &str = "BEGIN:VCALENDAR\n\
VERSION:2.0\n\
PRODID:-//imipd fuzz//EN\n\
BEGIN:VTIMEZONE\n\
TZID:Europe/Berlin\n\
BEGIN:STANDARD\n\
DTSTART:19701025T030000\n\
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\n\
TZOFFSETFROM:+0200\n\
TZOFFSETTO:+0100\n\
END:STANDARD\n\
BEGIN:DAYLIGHT\n\
DTSTART:19700329T020000\n\
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\n\
TZOFFSETFROM:+0100\n\
TZOFFSETTO:+0200\n\
END:DAYLIGHT\n\
END:VTIMEZONE\n\
BEGIN:VEVENT\n\
UID:fuzz-fixed-1\n\
DTSTAMP:20300101T090000Z\n\
SEQUENCE:2\n\
DTSTART;TZID=Europe/Berlin:20300107T100000\n\
DTEND;TZID=Europe/Berlin:20300107T110000\n\
RRULE:FREQ=WEEKLY;COUNT=10\n\
SUMMARY:Weekly planning\n\
DESCRIPTION:A long description that a client folded because it is longer than\n seventy-five octets\\, with an escaped comma.\n\
ORGANIZER;CN=\"Olga, organizer\":mailto:org@example.com\n\
ATTENDEE;CN=Olga;PARTSTAT=ACCEPTED:mailto:org@example.com\n\
ATTENDEE;CN=Anna;PARTSTAT=ACCEPTED;SCHEDULE-STATUS=1.1:mailto:a@example.net\n\
ATTENDEE;RSVP=TRUE;PARTSTAT=NEEDS-ACTION;CN=Bert:MAILTO:B@Example.NET\n\
ATTENDEE;SCHEDULE-AGENT=CLIENT:mailto:c@example.net\n\
ATTENDEE;CUTYPE=ROOM;RSVP=FALSE:mailto:room@example.com\n\
X-CLIENT-PRIVATE:kept as is\n\
BEGIN:VALARM\n\
ACTION:DISPLAY\n\
TRIGGER:-PT15M\n\
DESCRIPTION:Reminder\n\
END:VALARM\n\
END:VEVENT\n\
BEGIN:VEVENT\n\
UID:fuzz-fixed-1\n\
RECURRENCE-ID;TZID=Europe/Berlin:20300114T100000\n\
DTSTAMP:20300101T090000Z\n\
SEQUENCE:2\n\
DTSTART;TZID=Europe/Berlin:20300114T140000\n\
DTEND;TZID=Europe/Berlin:20300114T150000\n\
SUMMARY:Weekly planning (moved)\n\
ORGANIZER;CN=\"Olga, organizer\":mailto:org@example.com\n\
ATTENDEE;PARTSTAT=ACCEPTED:mailto:org@example.com\n\
ATTENDEE;PARTSTAT=DECLINED:mailto:a@example.net\n\
ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:b@example.net\n\
END:VEVENT\n\
END:VCALENDAR\n";

/// The organizer of both stored copies, the account of [`ORGANIZER_COPY`].
pub const ORGANIZER: &str = "org@example.com";

/// Bert's copy of the same series (CRLF line ends, no alarm, no override).
pub const ATTENDEE_COPY: &str = "BEGIN:VCALENDAR\r\n\
VERSION:2.0\r\n\
PRODID:-//imipd fuzz//EN\r\n\
BEGIN:VEVENT\r\n\
UID:fuzz-fixed-1\r\n\
DTSTAMP:20300101T090000Z\r\n\
SEQUENCE:2\r\n\
DTSTART:20300107T090000Z\r\n\
DTEND:20300107T100000Z\r\n\
RRULE:FREQ=WEEKLY;COUNT=10\r\n\
SUMMARY:Weekly planning\r\n\
ORGANIZER;CN=\"Olga, organizer\":mailto:org@example.com\r\n\
ATTENDEE;CN=Olga;PARTSTAT=ACCEPTED:mailto:org@example.com\r\n\
ATTENDEE;CN=Anna;PARTSTAT=ACCEPTED:mailto:a@example.net\r\n\
ATTENDEE;RSVP=TRUE;PARTSTAT=TENTATIVE;CN=Bert:mailto:b@example.net\r\n\
END:VEVENT\r\n\
END:VCALENDAR\r\n";

/// The attendee whose copy [`ATTENDEE_COPY`] is.
pub const ATTENDEE: &str = "b@example.net";

/// Most addresses taken from one calendar (keeps each run short).
const MAX_ADDRESSES: usize = 8;

/// The addresses a calendar names: organizers first, then attendees, in order of
/// appearance, normalised and without repeats.
pub fn addresses(cal: &ICalendar) -> Vec<CalAddress> {
    let mut out: Vec<CalAddress> = Vec::new();
    for wanted in [ICalendarProperty::Organizer, ICalendarProperty::Attendee] {
        for comp in &cal.components {
            for entry in comp.entries.iter().filter(|e| e.name == wanted) {
                if let Some(address) = entry_address(entry) {
                    if !out.contains(&address) && out.len() < MAX_ADDRESSES {
                        out.push(address);
                    }
                }
            }
        }
    }
    out
}

/// A parsed address that is known to be valid.
pub fn address(text: &str) -> CalAddress {
    CalAddress::parse(text).expect("a valid address")
}

/// The engine's view of the world for `account`.
pub fn context(account: &[CalAddress], minimal: bool) -> Context<'_> {
    Context {
        account,
        now: NOW,
        reply_details: if minimal {
            ReplyDetails::Minimal
        } else {
            ReplyDetails::Full
        },
    }
}

/// The METHOD of a calendar, if its root has one.
pub fn method_of(cal: &ICalendar) -> Option<ICalendarMethod> {
    cal.components.first()?.entries.iter().find_map(|e| {
        match (e.name == ICalendarProperty::Method, e.values.first()) {
            (true, Some(ICalendarValue::Method(m))) => Some(m.clone()),
            _ => None,
        }
    })
}

/// Adds METHOD to a calendar without one, as the daemon does when only the MIME
/// part's `method=` parameter named it.
pub fn ensure_method(cal: &mut ICalendar, method: &ICalendarMethod) {
    if let Some(root) = cal.components.first_mut() {
        if !root.has_property(&ICalendarProperty::Method) {
            root.entries.push(
                ICalendarEntry::new(ICalendarProperty::Method)
                    .with_value(ICalendarValue::Method(method.clone())),
            );
        }
    }
}

/// Every message the engine builds is sent as iCalendar text: it must parse again
/// (a recipient that cannot read it would never learn of the change).
pub fn check_messages(messages: &[ItipMessage]) {
    for message in messages {
        let text = message.to_ics();
        assert!(
            ICalendar::parse(&text).is_ok(),
            "the engine built a {:?} message that does not parse again:\n{text}",
            message.method
        );
    }
}

/// Stores `copy` the way the daemon does: patched into the user's file `original`
/// (any typed refusal falls back to calcard's text), or written new. The copy must
/// parse again, since the next message is applied to what was written. Returns the
/// text written.
pub fn store_copy(original: Option<&str>, copy: &ICalendar) -> String {
    let full = copy.to_string();
    assert!(
        ICalendar::parse(&full).is_ok(),
        "the engine returned a copy that does not parse again:\n{full}"
    );
    match original.map(|original| patch(original, copy)) {
        Some(Ok(patched)) => patched,
        Some(Err(_)) | None => full,
    }
}

/// Reads an `apply_itip` input: a selector byte, then the previous version's text, a
/// NUL byte and the new version's text; without a NUL, all of it is the new version
/// and there is no previous one. `None` for empty input.
pub fn split_pair(data: &[u8]) -> Option<(u8, Option<String>, String)> {
    let (&selector, rest) = data.split_first()?;
    Some(match rest.iter().position(|b| *b == 0) {
        Some(nul) => (
            selector,
            Some(String::from_utf8_lossy(&rest[..nul]).into_owned()),
            String::from_utf8_lossy(&rest[nul + 1..]).into_owned(),
        ),
        None => (selector, None, String::from_utf8_lossy(rest).into_owned()),
    })
}

/// Builds an `apply_itip` input (the inverse of [`split_pair`]).
pub fn join_pair(selector: u8, old: Option<&str>, new: &str) -> Vec<u8> {
    let mut out = vec![selector];
    if let Some(old) = old {
        out.extend_from_slice(old.as_bytes());
        out.push(0);
    }
    out.extend_from_slice(new.as_bytes());
    out
}
