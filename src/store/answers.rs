//! Stale saves of an organizer's copy: answers a client puts back without meaning to.
//!
//! When imipd applies an attendee's REPLY it changes that attendee's PARTSTAT in the
//! organizer's file. A client that read the file before that write and saves after it
//! writes the old answer back. The answer is the attendee's to change (RFC 6638
//! §3.2.1), not the organizer's, so imipd remembers each answer it replaced
//! ([`after_reply`]) and, when a later version of the organizer's copy carries exactly
//! the replaced PARTSTAT again, keeps the applied one on the user's version
//! ([`merge_stale`]): the user's other edits stay, and nothing is sent for the answer.
//!
//! What counts as stale is narrow: the very PARTSTAT parameter that was replaced (a
//! missing one stays missing), on a component whose SEQUENCE did not grow. A reset the
//! organizer makes on purpose (PARTSTAT=NEEDS-ACTION written where the attendee had
//! none, a different answer, or a reschedule with a higher SEQUENCE) stays, and the
//! record of that answer is dropped.

use super::state::ReplacedAnswer;
use crate::itip::export::set_param;
use crate::itip::snapshot::entry_address;
use crate::itip::CalAddress;
use calcard::common::{IanaParse, IanaString};
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarEntry, ICalendarMethod, ICalendarParameterName,
    ICalendarParameterValue, ICalendarParticipationStatus, ICalendarProperty, ICalendarValue,
};
use std::borrow::Cow;
use std::collections::HashMap;

/// At most this many answers are remembered per object (the newest).
const MAX_REMEMBERED: usize = 512;

/// The answers remembered for an object after imipd applied `itip` (turning the
/// organizer's copy `before` into `after`): `previous` plus every PARTSTAT the message
/// changed. `None` when `itip` is not a REPLY (nothing to remember).
pub fn after_reply(
    itip: &ICalendar,
    before: &ICalendar,
    after: &ICalendar,
    previous: Vec<ReplacedAnswer>,
) -> Option<Vec<ReplacedAnswer>> {
    if !is_reply(itip) {
        return None;
    }
    let mut out = previous;
    // Each component of `before` by its identity (the first of a key), and in each
    // the first ATTENDEE of an address: one pass over `before`, not one per attendee
    // of `after` (a REPLY to a 1,000-attendee meeting compared 500,000 pairs).
    let mut old_components: HashMap<String, &ICalendarComponent> = HashMap::new();
    for comp in scheduling_components(before) {
        old_components.entry(component_key(comp)).or_insert(comp);
    }
    for comp in scheduling_components(after) {
        let key = component_key(comp);
        let Some(old) = old_components.get(&key) else {
            continue;
        };
        let mut index: Option<OldAttendees<'_>> = None;
        for (position, entry) in attendees(comp).enumerate() {
            // Only an ATTENDEE with a PARTSTAT can have had its answer replaced.
            let Some(now) = partstat(entry) else { continue };
            let index = index.get_or_insert_with(|| OldAttendees::of(old));
            let Some(old_entry) = index.find(position, entry) else {
                continue;
            };
            let was = partstat(old_entry);
            if was.as_deref() == Some(now.as_ref()) {
                continue;
            }
            let Some(address) = entry_address(entry) else {
                continue;
            };
            out.retain(|a| !(a.component == key && a.attendee == address.as_str()));
            out.push(ReplacedAnswer {
                component: key.clone(),
                attendee: address.as_str().to_string(),
                before: was.map(Cow::into_owned),
                applied: now.into_owned(),
                sequence: sequence(comp),
            });
        }
    }
    if out.len() > MAX_REMEMBERED {
        out.drain(..out.len() - MAX_REMEMBERED);
    }
    Some(out)
}

/// Whether `itip` is a REPLY: only a REPLY's answers are remembered.
pub fn is_reply(itip: &ICalendar) -> bool {
    itip.components.iter().any(|c| {
        c.entries.iter().any(|e| {
            e.name == ICalendarProperty::Method
                && matches!(
                    e.values.first(),
                    Some(ICalendarValue::Method(ICalendarMethod::Reply))
                )
        })
    })
}

/// `new` (a version of the organizer's copy the user saved) with every answer it puts
/// back stale replaced by the answer imipd applied, or `None` if it puts none back;
/// and the answers still worth remembering.
pub fn merge_stale(
    new: &ICalendar,
    remembered: &[ReplacedAnswer],
) -> (Option<ICalendar>, Vec<ReplacedAnswer>) {
    let mut merged = new.clone();
    let mut changed = false;
    let mut keep = Vec::new();
    for answer in remembered {
        let Some(comp) = merged
            .components
            .iter_mut()
            .filter(|c| c.component_type.is_scheduling_object())
            .find(|c| component_key(c) == answer.component)
        else {
            continue;
        };
        if sequence(comp) > answer.sequence {
            // Rescheduled: resetting answers is the organizer's to do.
            continue;
        }
        let Some(address) = CalAddress::parse(&answer.attendee) else {
            continue;
        };
        let mut still = false;
        for entry in comp.entries.iter_mut().filter(|e| {
            e.name == ICalendarProperty::Attendee && entry_address(e).as_ref() == Some(&address)
        }) {
            let now = partstat(entry);
            if now.as_deref() == Some(answer.applied.as_str()) {
                still = true;
            } else if now.as_deref() == answer.before.as_deref() {
                set_param(
                    entry,
                    ICalendarParameterName::Partstat,
                    vec![partstat_value(&answer.applied)],
                );
                changed = true;
                still = true;
            }
        }
        if still {
            keep.push(answer.clone());
        }
    }
    (changed.then_some(merged), keep)
}

/// The ATTENDEEs of a component of `before`, found by address: the first of each
/// address, as a search from the top finds it.
struct OldAttendees<'a> {
    entries: Vec<&'a ICalendarEntry>,
    /// Each entry's [`address_key`].
    keys: Vec<Option<Cow<'a, str>>>,
    /// For each entry, the position of the first entry with its key.
    first: Vec<usize>,
    by_key: HashMap<Cow<'a, str>, usize>,
}

impl<'a> OldAttendees<'a> {
    fn of(comp: &'a ICalendarComponent) -> Self {
        let entries: Vec<&ICalendarEntry> = attendees(comp).collect();
        let keys: Vec<Option<Cow<'a, str>>> = entries.iter().map(|e| address_key(e)).collect();
        let mut by_key = HashMap::with_capacity(entries.len());
        let mut first = Vec::with_capacity(entries.len());
        for (i, key) in keys.iter().enumerate() {
            first.push(match key {
                Some(k) => *by_key.entry(k.clone()).or_insert(i),
                None => i,
            });
        }
        OldAttendees {
            entries,
            keys,
            first,
            by_key,
        }
    }

    /// The first old ATTENDEE whose address may be that of `entry`, the ATTENDEE at
    /// `position` among the ATTENDEEs of `after` (the caller confirms with
    /// [`entry_address`] before recording anything). A line whose value is written as
    /// the old line at the same position is not looked at again.
    fn find(&self, position: usize, entry: &ICalendarEntry) -> Option<&'a ICalendarEntry> {
        let same_value = self
            .entries
            .get(position)
            .is_some_and(|old| old.values.first() == entry.values.first());
        if same_value {
            self.keys[position].as_ref()?;
            return Some(self.entries[self.first[position]]);
        }
        let first = *self.by_key.get(&address_key(entry)?)?;
        Some(self.entries[first])
    }
}

/// A key two ATTENDEE values share exactly when [`entry_address`] reads the same
/// address from both, or (for a value [`entry_address`] rejects) the same text. A value
/// already in normal form (`mailto:` and then only lowercase ASCII letters, digits and
/// `.-_+@`) is its own key, without being parsed: for it, normalising changes nothing,
/// so its address is that text if it is one at all. Any other value is parsed.
fn address_key(entry: &ICalendarEntry) -> Option<Cow<'_, str>> {
    let text = entry.values.first()?.as_text()?;
    if let Some(rest) = text.strip_prefix("mailto:") {
        let normal =
            |b: u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'+' | b'@');
        if !rest.is_empty() && rest.bytes().all(normal) {
            return Some(Cow::Borrowed(rest));
        }
    }
    CalAddress::parse(text).map(|a| Cow::Owned(a.as_str().to_string()))
}

fn scheduling_components(cal: &ICalendar) -> impl Iterator<Item = &ICalendarComponent> {
    cal.components
        .iter()
        .filter(|c| c.component_type.is_scheduling_object())
}

fn attendees(comp: &ICalendarComponent) -> impl Iterator<Item = &ICalendarEntry> {
    comp.entries
        .iter()
        .filter(|e| e.name == ICalendarProperty::Attendee)
}

/// A component's identity within an object: its UID and RECURRENCE-ID.
fn component_key(comp: &ICalendarComponent) -> String {
    let value = |name: ICalendarProperty| {
        comp.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| format!("{:?}", e.values))
            .unwrap_or_default()
    };
    format!(
        "{}\u{0}{}",
        value(ICalendarProperty::Uid),
        value(ICalendarProperty::RecurrenceId)
    )
}

fn sequence(comp: &ICalendarComponent) -> i64 {
    comp.entries
        .iter()
        .find(|e| e.name == ICalendarProperty::Sequence)
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_integer())
        .unwrap_or(0)
}

/// The PARTSTAT of an ATTENDEE line as written (upper case), if it has one; not
/// copied when calcard knows the value.
fn partstat(entry: &ICalendarEntry) -> Option<Cow<'_, str>> {
    entry
        .params
        .iter()
        .find(|p| p.name == ICalendarParameterName::Partstat)
        .and_then(|p| match &p.value {
            ICalendarParameterValue::Partstat(status) => Some(Cow::Borrowed(status.as_str())),
            other => other.as_text().map(|t| Cow::Owned(t.to_ascii_uppercase())),
        })
}

fn partstat_value(text: &str) -> ICalendarParameterValue {
    match ICalendarParticipationStatus::parse(text.as_bytes()) {
        Some(status) => ICalendarParameterValue::Partstat(status),
        None => ICalendarParameterValue::Text(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(partstat: &str, sequence: u32) -> ICalendar {
        let text = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:u1\r\n\
             DTSTAMP:20300101T000000Z\r\nSEQUENCE:{sequence}\r\nDTSTART:20300102T100000Z\r\n\
             ORGANIZER:mailto:alice@example.com\r\nATTENDEE;RSVP=TRUE{partstat}:mailto:bob@example.net\r\n\
             END:VEVENT\r\nEND:VCALENDAR\r\n"
        );
        ICalendar::parse(&text).expect("calendar")
    }

    fn reply() -> ICalendar {
        ICalendar::parse(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n\
             UID:u1\r\nDTSTAMP:20300101T000000Z\r\nORGANIZER:mailto:alice@example.com\r\n\
             ATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        )
        .expect("reply")
    }

    fn remembered() -> Vec<ReplacedAnswer> {
        after_reply(
            &reply(),
            &cal("", 1),
            &cal(";PARTSTAT=ACCEPTED", 1),
            Vec::new(),
        )
        .expect("a reply")
    }

    #[test]
    fn a_reply_remembers_the_answer_it_replaced() {
        let list = remembered();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].before, None);
        assert_eq!(list[0].applied, "ACCEPTED");
        assert_eq!(list[0].attendee, "bob@example.net");
    }

    #[test]
    fn a_save_putting_the_old_answer_back_gets_the_applied_one() {
        let (merged, keep) = merge_stale(&cal("", 1), &remembered());
        let merged = merged.expect("stale save merged");
        assert!(merged.to_string().contains("PARTSTAT=ACCEPTED"), "{merged}");
        assert_eq!(keep.len(), 1);
    }

    #[test]
    fn a_deliberate_reset_or_a_reschedule_stays() {
        let (merged, keep) = merge_stale(&cal(";PARTSTAT=NEEDS-ACTION", 1), &remembered());
        assert!(
            merged.is_none(),
            "an explicit NEEDS-ACTION is the organizer's"
        );
        assert!(keep.is_empty());
        let (merged, keep) = merge_stale(&cal("", 2), &remembered());
        assert!(merged.is_none(), "a reschedule resets answers");
        assert!(keep.is_empty());
        let (merged, keep) = merge_stale(&cal(";PARTSTAT=ACCEPTED", 1), &remembered());
        assert!(merged.is_none());
        assert_eq!(keep.len(), 1, "still remembered while the copy has it");
    }

    /// An address listed twice (spelled differently) is compared with its first line,
    /// as a search from the top finds it, for changed and unchanged lines alike.
    #[test]
    fn an_address_listed_twice_is_compared_with_its_first_line() {
        let version = |first: &str| {
            ICalendar::parse(format!(
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:u1\r\n\
                 DTSTAMP:20300101T000000Z\r\nSEQUENCE:1\r\nDTSTART:20300102T100000Z\r\n\
                 ORGANIZER:mailto:alice@example.com\r\n\
                 ATTENDEE;PARTSTAT={first}:mailto:bob@example.net\r\n\
                 ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:carol@example.net\r\n\
                 ATTENDEE;PARTSTAT=ACCEPTED:MAILTO:Bob@Example.NET\r\n\
                 END:VEVENT\r\nEND:VCALENDAR\r\n"
            ))
            .expect("calendar")
        };
        let list = after_reply(
            &reply(),
            &version("NEEDS-ACTION"),
            &version("DECLINED"),
            Vec::new(),
        )
        .expect("a reply");
        // bob's first line went NEEDS-ACTION → DECLINED; his second line says
        // ACCEPTED against that first line's NEEDS-ACTION, and is the one kept.
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].attendee, "bob@example.net");
        assert_eq!(list[0].before.as_deref(), Some("NEEDS-ACTION"));
        assert_eq!(list[0].applied, "ACCEPTED");
        let unchanged = after_reply(
            &reply(),
            &version("ACCEPTED"),
            &version("ACCEPTED"),
            Vec::new(),
        )
        .expect("a reply");
        assert!(unchanged.is_empty(), "{unchanged:?}");
    }
}
