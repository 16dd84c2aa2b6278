//! Second addresses of a calendar user: the `EMAIL=` parameter (RFC 7986 §6.2).
//!
//! iCloud writes its organizers as a token address (`mailto:2_…@imip.me.com`) with the
//! person's real address in `EMAIL=`; the mail comes from the real address, and a later
//! CANCEL may name the real address as ORGANIZER. Before the rules compare people,
//! [`resolve`] maps such an alias onto the address it stands for:
//!
//! - the sender, when it is the `EMAIL=` of the ORGANIZER (or of an ATTENDEE) of the
//!   reference copy: the stored copy when there is one, else the invitation itself;
//! - the message's ORGANIZER, when it names the stored organizer's `EMAIL=` (itself, or
//!   in its own `EMAIL=`): it is rewritten to the stored address.
//!
//! Only the stored copy's aliases count for an existing event, so a message cannot
//! declare a new alias for an organizer it does not already speak for; whether the
//! sender is authenticated is checked before the engine is called, as for any address.
//!
//! Google's secondary and group calendars are organizers without a mailbox
//! (`…@group.calendar.google.com`): their mail comes from the owner's own address and
//! names no SENT-BY. [`record_group_calendar_sender`] lets the caller, once it has
//! authenticated the From, write that From as the ORGANIZER's SENT-BY; the stored copy
//! then remembers who spoke for the calendar, and [`check_recorded_sender`] accepts
//! later changes only from that same sender.

use super::address::CalAddress;
use super::error::ItipError;
use super::snapshot::{entry_address, param_address};
use calcard::icalendar::{
    ICalendar, ICalendarEntry, ICalendarParameterName, ICalendarProperty, ICalendarValue, Uri,
};
use calcard::icalendar::{ICalendarParameter, ICalendarParameterValue};
use std::borrow::Cow;

/// Domains of organizers that are calendars, not people: their invitations come from
/// an owner's address with no SENT-BY (Google secondary and group calendars).
pub const GROUP_CALENDAR_DOMAINS: [&str; 1] = ["group.calendar.google.com"];

fn is_group_calendar(address: &CalAddress) -> bool {
    GROUP_CALENDAR_DOMAINS
        .iter()
        .any(|d| address.domain().eq_ignore_ascii_case(d))
}

/// The SENT-BY of an ORGANIZER or ATTENDEE line, when it is an address.
fn sent_by(entry: &ICalendarEntry) -> Option<CalAddress> {
    entry
        .params
        .iter()
        .find(|p| p.name == ICalendarParameterName::SentBy)
        .and_then(|p| param_address(&p.value))
}

/// The ORGANIZER lines of `cal`.
fn organizer_lines(cal: &ICalendar) -> impl Iterator<Item = &ICalendarEntry> {
    cal.components
        .iter()
        .flat_map(|c| c.entries.iter())
        .filter(|e| e.name == ICalendarProperty::Organizer)
}

/// For a message whose ORGANIZER is a group calendar with no SENT-BY, sent by
/// `authenticated_from` (who is not the organizer): the message with `SENT-BY` set to
/// that sender on every ORGANIZER line, and the organizer's address, which the sender
/// now speaks for. `None` for every other message. Call it only for a From whose
/// domain was authenticated (DKIM/DMARC): the recorded SENT-BY is what later changes
/// are checked against.
pub fn record_group_calendar_sender(
    itip: &ICalendar,
    authenticated_from: &CalAddress,
) -> Option<(ICalendar, CalAddress)> {
    let line = organizer_lines(itip).next()?;
    let organizer = entry_address(line)?;
    let all_plain = organizer_lines(itip)
        .all(|e| entry_address(e).as_ref() == Some(&organizer) && sent_by(e).is_none());
    if !is_group_calendar(&organizer) || !all_plain || organizer == *authenticated_from {
        return None;
    }
    let out = with_each_organizer(itip, |entry| {
        entry.params.push(ICalendarParameter {
            name: ICalendarParameterName::SentBy,
            value: ICalendarParameterValue::Uri(Uri::Location(authenticated_from.to_mailto())),
        });
    });
    Some((out, organizer))
}

/// A change to a copy whose organizer is a group calendar must come from the sender
/// recorded as its SENT-BY when the invitation was imported
/// ([`record_group_calendar_sender`]): another owner, or anyone else, is refused.
pub(super) fn check_recorded_sender(
    stored: &ICalendar,
    itip: &ICalendar,
    sender: &CalAddress,
) -> Result<(), ItipError> {
    let Some(line) = organizer_lines(stored).next() else {
        return Ok(());
    };
    let (Some(organizer), Some(recorded)) = (entry_address(line), sent_by(line)) else {
        return Ok(());
    };
    if !is_group_calendar(&organizer) {
        return Ok(());
    }
    let speaks = organizer_lines(itip).all(|e| sent_by(e).as_ref() == Some(&recorded));
    if speaks {
        Ok(())
    } else {
        Err(ItipError::SenderIsNotOrganizer(sender.clone()))
    }
}

/// The `EMAIL=` of an ORGANIZER or ATTENDEE line, when it is an address.
pub(super) fn email_param(entry: &ICalendarEntry) -> Option<CalAddress> {
    entry
        .params
        .iter()
        .find(|p| p.name == ICalendarParameterName::Email)
        .and_then(|p| param_address(&p.value))
}

/// Every (address, EMAIL=) pair of `property` lines in `cal` whose alias differs.
fn aliases(cal: &ICalendar, property: &ICalendarProperty) -> Vec<(CalAddress, CalAddress)> {
    cal.components
        .iter()
        .flat_map(|c| c.entries.iter())
        .filter(|e| e.name == *property)
        .filter_map(|e| Some((entry_address(e)?, email_param(e)?)))
        .filter(|(address, alias)| address != alias)
        .collect()
}

/// The message and the sender as the rules must see them: aliases of the reference copy
/// (`stored`, else `itip`) replaced by the addresses they stand for.
pub(super) fn resolve<'a>(
    itip: &'a ICalendar,
    sender: &CalAddress,
    stored: Option<&ICalendar>,
) -> (Cow<'a, ICalendar>, CalAddress) {
    let reference = stored.unwrap_or(itip);
    let organizers = aliases(reference, &ICalendarProperty::Organizer);
    let mut itip = Cow::Borrowed(itip);
    if stored.is_some() {
        if let Some(stored_address) = renamed_organizer(&itip, &organizers) {
            itip = Cow::Owned(with_organizer(&itip, &stored_address));
        }
    }
    let named = |address: &CalAddress, property: &ICalendarProperty| {
        reference
            .components
            .iter()
            .flat_map(|c| c.entries.iter())
            .filter(|e| e.name == *property)
            .any(|e| entry_address(e).as_ref() == Some(address))
    };
    // A sender that is itself the organizer or an attendee stays who it is.
    if named(sender, &ICalendarProperty::Organizer) || named(sender, &ICalendarProperty::Attendee) {
        return (itip, sender.clone());
    }
    let attendees = aliases(reference, &ICalendarProperty::Attendee);
    let sender = organizers
        .iter()
        .chain(attendees.iter())
        .find(|(_, alias)| alias == sender)
        .map_or_else(|| sender.clone(), |(address, _)| address.clone());
    (itip, sender)
}

/// The stored organizer's address when the message's ORGANIZER is another address
/// that names the stored organizer's alias (as its value or as its own `EMAIL=`).
fn renamed_organizer(
    itip: &ICalendar,
    stored_organizers: &[(CalAddress, CalAddress)],
) -> Option<CalAddress> {
    let line = itip
        .components
        .iter()
        .flat_map(|c| c.entries.iter())
        .find(|e| e.name == ICalendarProperty::Organizer)?;
    let address = entry_address(line)?;
    let own_alias = email_param(line);
    stored_organizers
        .iter()
        .find(|(stored, alias)| {
            *stored != address && (*alias == address || own_alias.as_ref() == Some(alias))
        })
        .map(|(stored, _)| stored.clone())
}

/// `itip` with every ORGANIZER value replaced by `address` (parameters kept).
fn with_organizer(itip: &ICalendar, address: &CalAddress) -> ICalendar {
    with_each_organizer(itip, |entry| {
        entry.values = vec![ICalendarValue::Uri(Uri::Location(address.to_mailto()))];
    })
}

/// A copy of `itip` with `change` made to every ORGANIZER line.
fn with_each_organizer(itip: &ICalendar, change: impl Fn(&mut ICalendarEntry)) -> ICalendar {
    let mut out = itip.clone();
    out.components
        .iter_mut()
        .flat_map(|c| c.entries.iter_mut())
        .filter(|e| e.name == ICalendarProperty::Organizer)
        .for_each(change);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str =
        "2_haytenjygm2dsnjuhe4dcmzzgq3tqmzygm2doojwhf3w4y3ugqytgmzwgqzdsnrvguytcnbvgnt";

    fn calendar(organizer: &str) -> ICalendar {
        ICalendar::parse(format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//T//EN\r\nBEGIN:VEVENT\r\nUID:u\r\n\
             DTSTAMP:20300101T000000Z\r\nDTSTART:20300102T100000Z\r\n{organizer}\r\n\
             ATTENDEE:mailto:bob@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        ))
        .expect("calendar")
    }

    fn addr(s: &str) -> CalAddress {
        CalAddress::parse(s).expect("address")
    }

    #[test]
    fn the_email_parameter_speaks_for_the_token_address() {
        let token = format!("{TOKEN}@imip.me.com");
        let invite = calendar(&format!(
            "ORGANIZER;CN=Jane;EMAIL=jane@icloud.com:mailto:{token}"
        ));
        let (_, sender) = resolve(&invite, &addr("jane@icloud.com"), None);
        assert_eq!(sender, addr(&token));
        // A stranger stays a stranger.
        let (_, sender) = resolve(&invite, &addr("mallory@example.org"), None);
        assert_eq!(sender, addr("mallory@example.org"));
    }

    #[test]
    fn a_cancel_naming_the_real_address_is_mapped_to_the_stored_token() {
        let token = format!("{TOKEN}@imip.me.com");
        let stored = calendar(&format!(
            "ORGANIZER;CN=Jane;EMAIL=jane@icloud.com:mailto:{token}"
        ));
        let cancel = calendar("ORGANIZER;CN=Jane;EMAIL=jane@icloud.com:mailto:jane@icloud.com");
        let (message, sender) = resolve(&cancel, &addr("jane@icloud.com"), Some(&stored));
        assert_eq!(sender, addr(&token));
        let organizer = message
            .components
            .iter()
            .flat_map(|c| c.entries.iter())
            .find(|e| e.name == ICalendarProperty::Organizer)
            .and_then(entry_address);
        assert_eq!(organizer, Some(addr(&token)));
        // Without an alias on the stored copy, nothing is renamed.
        let plain = calendar(&format!("ORGANIZER:mailto:{token}"));
        let (message, sender) = resolve(&cancel, &addr("jane@icloud.com"), Some(&plain));
        assert!(matches!(message, Cow::Borrowed(_)));
        assert_eq!(sender, addr("jane@icloud.com"));
    }
}
