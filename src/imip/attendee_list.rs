//! Which attendees an invitation shows: all of them, the first few, or only the
//! recipient.
//!
//! An event with 1,000 attendees listed in full makes every one of its 1,000 mails
//! carry 1,000 names twice (plain and HTML), so the event's mail grows with the square
//! of its size, and everyone learns who else was invited. `[mail] attendee_list`
//! picks the policy:
//!
//! - `summary` (default): the texts list the first [`SUMMARY_LIMIT`] attendees and
//!   "and N others"; the iCalendar is the organizer's, with everyone.
//! - `full`: the texts list everyone.
//! - `hidden`: each attendee's iCalendar carries only the organizer, that attendee and
//!   whoever delegated to or from them (the privacy option Nextcloud users asked for,
//!   nextcloud/calendar#4179), and the texts list no attendees. An event's mail is then
//!   O(attendees), not O(attendees²). Answers (REPLY, COUNTER, REFRESH) go to the
//!   organizer and are never trimmed.

use crate::itip::{CalAddress, ItipMessage, Method};
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarParameterName, ICalendarProperty,
};
use serde::Deserialize;

/// How many attendees the texts name under [`AttendeeList::Summary`].
pub const SUMMARY_LIMIT: usize = 20;

/// What an organizer's mail shows of the other attendees (`[mail] attendee_list`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttendeeList {
    /// Every attendee in the texts.
    Full,
    /// The first [`SUMMARY_LIMIT`] attendees and "and N others".
    #[default]
    Summary,
    /// Only the recipient, in the iCalendar too.
    Hidden,
}

impl AttendeeList {
    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            AttendeeList::Full => "full",
            AttendeeList::Summary => "summary",
            AttendeeList::Hidden => "hidden",
        }
    }

    /// How many attendees the texts may name, of `total`.
    pub(crate) fn shown(self, total: usize) -> usize {
        match self {
            AttendeeList::Full => total,
            AttendeeList::Summary => total.min(SUMMARY_LIMIT),
            AttendeeList::Hidden => 0,
        }
    }
}

/// True when `msg` is the organizer's message to attendees, whose other attendees
/// [`AttendeeList::Hidden`] takes out.
pub fn is_organizer_message(msg: &ItipMessage) -> bool {
    matches!(
        msg.method,
        Method::Request | Method::Add | Method::Cancel | Method::Declinecounter
    )
}

/// `msg` as `recipient` may see it under [`AttendeeList::Hidden`]: every ATTENDEE
/// line other than the recipient's and those of the people they delegated to or from
/// is removed. `None` when nothing is to be removed (not an organizer's message, or
/// no other attendee), so the caller keeps the shared message.
pub fn hidden_for(msg: &ItipMessage, recipient: &CalAddress) -> Option<ItipMessage> {
    hidden_with(msg, &AttendeeIndex::of(msg), recipient)
}

/// The ATTENDEE addresses of a message, parsed once: a change mailed to its 1,000
/// attendees under [`AttendeeList::Hidden`] cuts the message down 1,000 times, and
/// parsing every line's address each time made that quadratic in parses.
#[derive(Debug, Clone)]
pub struct AttendeeIndex {
    /// Per component, per entry: the address of an ATTENDEE line, if it has one.
    addresses: Vec<Vec<Option<CalAddress>>>,
}

impl AttendeeIndex {
    /// Indexes the ATTENDEE lines of `msg`.
    pub fn of(msg: &ItipMessage) -> Self {
        let addresses = msg
            .calendar
            .components
            .iter()
            .map(|component| {
                (component.entries.iter())
                    .map(|entry| {
                        (entry.name == ICalendarProperty::Attendee)
                            .then(|| super::calendar::entry_address(entry))
                            .flatten()
                    })
                    .collect()
            })
            .collect();
        AttendeeIndex { addresses }
    }
}

/// [`hidden_for`] with the message's [`AttendeeIndex`] (which must be of `msg`),
/// copying only the lines that stay.
pub fn hidden_with(
    msg: &ItipMessage,
    index: &AttendeeIndex,
    recipient: &CalAddress,
) -> Option<ItipMessage> {
    if !is_organizer_message(msg) {
        return None;
    }
    let address_of = |c: usize, e: usize| {
        (index.addresses.get(c))
            .and_then(|entries| entries.get(e))
            .and_then(Option::as_ref)
    };
    let mut keep: Vec<CalAddress> = vec![recipient.clone()];
    for (c, component) in msg.calendar.components.iter().enumerate() {
        for (e, entry) in component.entries.iter().enumerate() {
            if address_of(c, e) != Some(recipient) {
                continue;
            }
            for name in [
                ICalendarParameterName::DelegatedTo,
                ICalendarParameterName::DelegatedFrom,
            ] {
                for value in entry.parameters(&name) {
                    if let Some(address) = value.as_text().and_then(CalAddress::parse) {
                        keep.push(address);
                    }
                }
            }
        }
    }
    let mut removed = false;
    let components = (msg.calendar.components.iter().enumerate())
        .map(|(c, component)| {
            let entries = (component.entries.iter().enumerate())
                .filter(|(e, entry)| {
                    let other = entry.name == ICalendarProperty::Attendee
                        && !address_of(c, *e).is_some_and(|a| keep.contains(a));
                    removed |= other;
                    !other
                })
                .map(|(_, entry)| entry.clone())
                .collect();
            ICalendarComponent {
                component_type: component.component_type.clone(),
                entries,
                component_ids: component.component_ids.clone(),
            }
        })
        .collect();
    removed.then(|| ItipMessage {
        method: msg.method.clone(),
        from: msg.from.clone(),
        to: vec![recipient.clone()],
        calendar: ICalendar { components },
        summary: msg.summary.clone(),
    })
}
