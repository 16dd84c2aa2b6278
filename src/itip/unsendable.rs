//! Overrides that name no occurrence are not sent.
//!
//! An organizer's copy can hold an override whose RECURRENCE-ID is no instance of the
//! series (a THISANDFUTURE override dated before the series' DTSTART, a date the rule
//! skips). Every recipient, imipd included, refuses such a component
//! (`InvalidRecurrenceId`), and an attendee invited only to it would get nothing
//! usable. [`withhold`] takes them out of the messages a change produces (and the
//! recipients only they had), and marks their ATTENDEE lines in the organizer's copy
//! with SCHEDULE-STATUS [`NOT_AN_OCCURRENCE`], which the organizer's client shows.

use super::address::CalAddress;
use super::export::set_param;
use super::occurrence::{Membership, Occurrences};
use super::snapshot::{entry_address, InstanceId, Snapshot};
use super::{ChangeOutcome, Context};
use calcard::icalendar::{ICalendar, ICalendarParameterName, ICalendarProperty};
use std::collections::BTreeSet;

/// SCHEDULE-STATUS of an attendee of an override that was not sent because its
/// RECURRENCE-ID is no occurrence: RFC 5546 §3.6 "3.1 Invalid property value".
pub const NOT_AN_OCCURRENCE: &str = "3.1";

/// The RECURRENCE-ID timestamps of the overrides in `snapshot` that are no occurrence
/// of its series (empty when there is no recurring master, or the set cannot be told).
fn non_occurrences(snapshot: &Snapshot<'_>) -> BTreeSet<i64> {
    let Some(main) = snapshot.main() else {
        return BTreeSet::new();
    };
    let set = Occurrences::of(snapshot.cal, main.comp);
    snapshot
        .instances
        .keys()
        .filter_map(|id| match id {
            InstanceId::Recurrence { timestamp, .. } => Some(*timestamp),
            InstanceId::Main => None,
        })
        .filter(|t| set.membership(*t) == Membership::NotAnOccurrence)
        .collect()
}

/// The component ids of `cal`'s overrides at `timestamps`.
fn components_at(cal: &ICalendar, ctx: &Context<'_>, timestamps: &BTreeSet<i64>) -> Vec<u32> {
    let Ok(snapshot) = Snapshot::new(cal, ctx.account) else {
        return Vec::new();
    };
    snapshot
        .instances
        .iter()
        .filter(|(id, _)| {
            matches!(id, InstanceId::Recurrence { timestamp, .. } if timestamps.contains(timestamp))
        })
        .map(|(_, instance)| instance.comp_id)
        .collect()
}

/// `outcome` of a change to the copy `snapshot` was taken of, without the overrides
/// that name no occurrence when the copy is the organizer's (see the module doc);
/// otherwise as it was. The caller's snapshot is reused: taking it again would cost
/// as much as the rest of a small organizer update.
pub(super) fn withhold(
    snapshot: &Snapshot<'_>,
    mut outcome: ChangeOutcome,
    ctx: &Context<'_>,
) -> ChangeOutcome {
    // Only the organizer's messages: an attendee's answer about such an override is
    // the organizer's to judge (the shared suite pins a REPLY for one), and
    // SCHEDULE-STATUS is the organizer's record of its attendees (RFC 6638 §3.2.9).
    if !snapshot.organizer.is_local {
        return outcome;
    }
    let bad = non_occurrences(snapshot);
    if bad.is_empty() {
        return outcome;
    }
    let copy = snapshot.cal;
    for message in &mut outcome.messages {
        let drop = components_at(&message.calendar, ctx, &bad);
        if drop.is_empty() {
            continue;
        }
        message.calendar.remove_component_ids(&drop);
        let named: BTreeSet<CalAddress> = message
            .calendar
            .components
            .iter()
            .filter(|c| c.component_type.is_scheduling_object())
            .flat_map(|c| c.entries.iter())
            .filter(|e| e.name == ICalendarProperty::Attendee)
            .filter_map(entry_address)
            .collect();
        message.to.retain(|to| named.contains(to));
    }
    outcome.messages.retain(|m| {
        !m.to.is_empty()
            && m.calendar
                .components
                .iter()
                .any(|c| c.component_type.is_scheduling_object())
    });
    let mut updated = outcome.updated.clone().unwrap_or_else(|| copy.clone());
    let mut changed = false;
    for id in components_at(&updated, ctx, &bad) {
        let Some(component) = updated.components.get_mut(id as usize) else {
            continue;
        };
        for entry in component
            .entries
            .iter_mut()
            .filter(|e| e.name == ICalendarProperty::Attendee)
        {
            let current: Vec<&str> = entry
                .parameters(&ICalendarParameterName::ScheduleStatus)
                .filter_map(|v| v.as_text())
                .collect();
            // The organizer's own line is no recipient.
            let own = entry_address(entry).is_some_and(|a| ctx.account.contains(&a));
            if !own && current != [NOT_AN_OCCURRENCE] {
                set_param(
                    entry,
                    ICalendarParameterName::ScheduleStatus,
                    vec![NOT_AN_OCCURRENCE.to_string().into()],
                );
                changed = true;
            }
        }
    }
    if changed {
        outcome.updated = Some(updated);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use crate::itip::{schedule_change, CalAddress, Context, ReplyDetails};
    use calcard::icalendar::ICalendar;

    /// A weekly series from 10 April 2030, and an override "from 3 April on" that only
    /// Eve is invited to: 3 April is before the series starts, so it is no occurrence.
    const COPY: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n\
        BEGIN:VEVENT\r\nUID:weekly\r\nDTSTAMP:20300101T090000Z\r\nDTSTART:20300410T120000Z\r\n\
        DTEND:20300410T130000Z\r\nRRULE:FREQ=WEEKLY;COUNT=5\r\nSUMMARY:Weekly\r\n\
        ORGANIZER:mailto:o@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:o@example.com\r\n\
        ATTENDEE;RSVP=TRUE:mailto:a@example.net\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:weekly\r\nDTSTAMP:20300101T090000Z\r\n\
        RECURRENCE-ID;RANGE=THISANDFUTURE:20300403T120000Z\r\nDTSTART:20300403T140000Z\r\n\
        DTEND:20300403T150000Z\r\nSUMMARY:Weekly (later)\r\nORGANIZER:mailto:o@example.com\r\n\
        ATTENDEE;PARTSTAT=ACCEPTED:mailto:o@example.com\r\nATTENDEE;RSVP=TRUE:mailto:eve@example.org\r\n\
        END:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn an_override_that_is_no_occurrence_is_not_sent_and_the_copy_says_why() {
        let me = [CalAddress::parse("o@example.com").expect("address")];
        let ctx = Context {
            account: &me,
            now: 1_800_000_000,
            reply_details: ReplyDetails::Full,
        };
        let copy = ICalendar::parse(COPY).expect("parses");
        let outcome = schedule_change(None, &copy, &ctx).expect("the series is sent");
        let eve = CalAddress::parse("eve@example.org").expect("address");
        for message in &outcome.messages {
            assert!(
                !message.to.contains(&eve),
                "Eve gets nothing she would refuse"
            );
            assert!(!message.calendar.to_string().contains("20300403"));
        }
        assert!(outcome.messages.iter().any(|m| m
            .to
            .contains(&CalAddress::parse("a@example.net").expect("address"))));
        let updated = outcome.updated.expect("the copy records why").to_string();
        let unfolded = updated.replace("\r\n ", "");
        assert!(
            unfolded.contains("SCHEDULE-STATUS=3.1:mailto:eve@example.org"),
            "{unfolded}"
        );
        assert!(!unfolded.contains("SCHEDULE-STATUS=3.1:mailto:a@example.net"));
    }
}
