//! What the engine is told beyond the two versions of a change: the SEQUENCEs imipd
//! already sent for the UID, and what the writing client knew and did.
//!
//! The daemon keeps these in its state and passes them in ([`History`]); the engine
//! stays pure. A SEQUENCE sent is a promise to the attendees: no later message for that
//! instance goes out below it, whatever the file says (no SEQUENCE, a lower one, a
//! restored backup). Client bookkeeping properties ([`is_client_bookkeeping`]) are one
//! client's notes about its own copy and never reach anyone else.

use super::message::ItipMessage;
use super::snapshot::InstanceId;
use super::time::TimeResolver;
use calcard::icalendar::{
    ICalendar, ICalendarEntry, ICalendarMethod, ICalendarParameterName, ICalendarProperty,
    ICalendarValue,
};
use std::collections::BTreeMap;

/// An instance of one UID: `None` is the master, `Some` an override's RECURRENCE-ID as a
/// UTC timestamp (read as the snapshot reads it).
pub type InstanceKey = Option<i64>;

/// The highest SEQUENCE imipd sent, per instance of one UID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentSequences(BTreeMap<InstanceKey, i64>);

impl SentSequences {
    /// Remembers that `instance` went out with `sequence` (the highest stays).
    pub fn record(&mut self, instance: InstanceKey, sequence: i64) {
        let entry = self.0.entry(instance).or_insert(sequence);
        *entry = (*entry).max(sequence);
    }

    /// The highest SEQUENCE sent for `instance`.
    pub fn get(&self, instance: InstanceKey) -> Option<i64> {
        self.0.get(&instance).copied()
    }

    /// The highest SEQUENCE sent for any instance: a series CANCEL goes above it.
    pub fn highest(&self) -> Option<i64> {
        self.0.values().copied().max()
    }

    /// Every (instance, highest SEQUENCE) pair.
    pub fn iter(&self) -> impl Iterator<Item = (InstanceKey, i64)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }

    /// The SEQUENCE sent for the snapshot's instance `id`.
    pub(crate) fn of(&self, id: &InstanceId) -> Option<i64> {
        self.get(key_of(id))
    }
}

/// The state's key of a snapshot instance.
pub(crate) fn key_of(id: &InstanceId) -> InstanceKey {
    match id {
        InstanceId::Main => None,
        InstanceId::Recurrence { timestamp, .. } => Some(*timestamp),
    }
}

/// Who last wrote the object, as far as scheduling is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Writer {
    /// A client that was not told the server schedules (no `calendar-auto-schedule` in
    /// DAV): it mails its own invitations and answers, and says so with
    /// SCHEDULE-AGENT=CLIENT or its own markers.
    #[default]
    NotTold,
    /// A client that was told imipd schedules (through imipd's CalDAV front): it relies
    /// on imipd for every message.
    ToldImipdSchedules,
}

/// What the engine is told beyond the two versions (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The highest SEQUENCE imipd already sent per instance of this UID.
    pub sent: SentSequences,
    /// Who wrote the new version.
    pub writer: Writer,
}

/// The SEQUENCE each instance carried in the organizer messages (REQUEST, ADD,
/// CANCEL) of `messages`: (UID, instance, SEQUENCE), for the state to remember.
pub fn sequences_sent(messages: &[ItipMessage]) -> Vec<(String, InstanceKey, i64)> {
    let mut out = Vec::new();
    for message in messages {
        if !matches!(
            message.method,
            ICalendarMethod::Request | ICalendarMethod::Add | ICalendarMethod::Cancel
        ) {
            continue;
        }
        let times = TimeResolver::new(&message.calendar);
        for comp in message
            .calendar
            .components
            .iter()
            .filter(|c| c.component_type.is_scheduling_object())
        {
            let Some(uid) = comp.uid() else { continue };
            let instance = match comp.property(&ICalendarProperty::RecurrenceId) {
                Some(rid) => match times.entry_timestamp(rid) {
                    Some(ts) => Some(ts),
                    None => continue,
                },
                None => None,
            };
            let sequence = comp
                .property(&ICalendarProperty::Sequence)
                .and_then(|e| e.values.first())
                .and_then(|v| v.as_integer())
                .unwrap_or(0);
            out.push((uid.to_string(), instance, sequence));
        }
    }
    out
}

/// Properties one client keeps about its own copy (Thunderbird's `X-MOZ-*`, Evolution's
/// `X-EVOLUTION-*`, libical's `X-LIC-ERROR` notes, Radicale's `X-RADICALE-NAME`): they
/// say nothing to anyone else, and some (`X-MOZ-SEND-INVITATIONS`) would make the
/// recipient's client act as if it had mailed the event itself.
pub fn is_client_bookkeeping(property: &ICalendarProperty) -> bool {
    const PREFIXES: [&str; 4] = ["X-MOZ-", "X-EVOLUTION-", "X-LIC-", "X-RADICALE-"];
    match property {
        // Compared as bytes: a property name from outside may hold any character, and
        // slicing a string inside one panics.
        ICalendarProperty::Other(name) => PREFIXES.iter().any(|p| {
            name.as_bytes()
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p.as_bytes()))
        }),
        _ => false,
    }
}

/// Whether some component says `name:TRUE` (case-insensitive), as Thunderbird writes it.
fn says_true(cal: &ICalendar, name: &str) -> bool {
    cal.components
        .iter()
        .filter(|c| c.component_type.is_scheduling_object())
        .flat_map(|c| c.entries.iter())
        .filter(|e| matches!(&e.name, ICalendarProperty::Other(n) if n.eq_ignore_ascii_case(name)))
        .any(|e| {
            e.values
                .first()
                .and_then(ICalendarValue::as_text)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("TRUE"))
        })
}

/// The client mailed this change itself: Thunderbird's event dialog sets
/// `X-MOZ-SEND-INVITATIONS:TRUE` only when its "notify attendees" box was enabled and
/// checked, and then sends every invitation, update and cancellation of the item by
/// email. (Evolution keeps no such mark in the object: it asks at each save and
/// decides by the server's capabilities.)
pub fn mailed_by_client(cal: &ICalendar) -> bool {
    says_true(cal, "X-MOZ-SEND-INVITATIONS")
}

/// Thunderbird's iMIP bar accepted this copy from an invitation email
/// (`setReceivedInfo` adds `X-MOZ-RECEIVED-SEQUENCE` / `X-MOZ-RECEIVED-DTSTAMP`) and
/// marked the organizer `SCHEDULE-AGENT=CLIENT` (`addScheduleAgentClient`), on a
/// calendar whose server said it schedules. Thunderbird then sends nothing itself
/// (it mails a CLIENT recipient only for a received REPLY): unless imipd answers, the
/// organizer never hears it. Only a client told imipd schedules is taken at this
/// word; one that was not told mails its own answer.
pub fn client_left_reply_to_server(cal: &ICalendar, writer: Writer) -> bool {
    if writer != Writer::ToldImipdSchedules {
        return false;
    }
    let comps = || {
        cal.components
            .iter()
            .filter(|c| c.component_type.is_scheduling_object())
    };
    let received_by_imip_bar = comps().flat_map(|c| c.entries.iter()).any(|e| {
        matches!(&e.name, ICalendarProperty::Other(n)
            if n.eq_ignore_ascii_case("X-MOZ-RECEIVED-SEQUENCE")
                || n.eq_ignore_ascii_case("X-MOZ-RECEIVED-DTSTAMP"))
    });
    let organizer_client = comps()
        .flat_map(|c| c.entries.iter())
        .filter(|e| e.name == ICalendarProperty::Organizer)
        .any(|e| !super::snapshot::is_server_scheduled(e));
    received_by_imip_bar && organizer_client
}

/// `cal` with SCHEDULE-AGENT taken off every ORGANIZER line: the copy as imipd
/// schedules it when [`client_left_reply_to_server`] holds.
pub fn organizer_scheduled_by_server(cal: &ICalendar) -> ICalendar {
    with_lines(cal, ICalendarProperty::Organizer, |entry| {
        entry
            .params
            .retain(|p| p.name != ICalendarParameterName::ScheduleAgent)
    })
}

/// A copy of `cal` with `change` applied to every `name` line of its scheduling
/// components.
pub(crate) fn with_lines(
    cal: &ICalendar,
    name: ICalendarProperty,
    mut change: impl FnMut(&mut ICalendarEntry),
) -> ICalendar {
    let mut out = cal.clone();
    out.components
        .iter_mut()
        .filter(|c| c.component_type.is_scheduling_object())
        .flat_map(|c| c.entries.iter_mut())
        .filter(|e| e.name == name)
        .for_each(&mut change);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_names_with_any_character_are_judged_without_a_panic() {
        // Found by the fuzz pass: a name whose prefix length ends inside a character.
        let name = |n: &str| ICalendarProperty::Other(n.to_string());
        assert!(!is_client_bookkeeping(&name("X-MO\u{FFFD}Z")));
        assert!(!is_client_bookkeeping(&name("X-\u{e9}")));
        assert!(is_client_bookkeeping(&name("x-moz-generation")));
        assert!(!is_client_bookkeeping(&name("X-MICROSOFT-CDO-OWNERAPPTID")));
    }

    fn parse(text: &str) -> ICalendar {
        ICalendar::parse(text.replace('\n', "\r\n")).expect("calendar")
    }

    const ACCEPTED: &str = "BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:x\n\
        DTSTART:20300101T100000Z\nORGANIZER;SCHEDULE-AGENT=CLIENT:mailto:dave@example.net\n\
        ATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@example.com\nX-MOZ-RECEIVED-SEQUENCE:0\n\
        END:VEVENT\nEND:VCALENDAR\n";

    #[test]
    fn only_thunderbirds_imip_bar_copy_written_by_a_told_client_is_answered_for() {
        let cal = parse(ACCEPTED);
        assert!(client_left_reply_to_server(
            &cal,
            Writer::ToldImipdSchedules
        ));
        assert!(!client_left_reply_to_server(&cal, Writer::NotTold));
        let own_choice = parse(&ACCEPTED.replace("X-MOZ-RECEIVED-SEQUENCE:0\n", ""));
        assert!(!client_left_reply_to_server(
            &own_choice,
            Writer::ToldImipdSchedules
        ));
        let served = organizer_scheduled_by_server(&cal);
        assert!(!served.to_string().contains("SCHEDULE-AGENT"));
    }

    #[test]
    fn client_bookkeeping_is_recognised_by_prefix_and_nothing_else() {
        let other = |n: &str| ICalendarProperty::Other(n.to_string());
        for name in [
            "X-MOZ-GENERATION",
            "x-moz-lastack",
            "X-EVOLUTION-CALDAV-ETAG",
            "X-LIC-ERROR",
            "X-RADICALE-NAME",
        ] {
            assert!(is_client_bookkeeping(&other(name)), "{name}");
        }
        for name in [
            "X-MICROSOFT-CDO-BUSYSTATUS",
            "X-APPLE-STRUCTURED-LOCATION",
            "X-MO",
        ] {
            assert!(!is_client_bookkeeping(&other(name)), "{name}");
        }
        assert!(!is_client_bookkeeping(&ICalendarProperty::Summary));
        assert!(mailed_by_client(&parse(&ACCEPTED.replace(
            "X-MOZ-RECEIVED-SEQUENCE:0",
            "X-MOZ-SEND-INVITATIONS:TRUE"
        ))));
        assert!(!mailed_by_client(&parse(ACCEPTED)));
    }
}
