//! Delivery feedback on the organizer's copy (RFC 6638 SCHEDULE-STATUS).
//!
//! After imipd hands a message over, the organizer's ATTENDEE line for that recipient
//! records the outcome: 1.1 sent, 1.2 delivered locally, 3.7 invalid address, 5.x
//! failed. Organizer clients show it next to the attendee.

use super::address::CalAddress;
use super::export::set_param;
use super::snapshot::entry_address;
use calcard::icalendar::{ICalendar, ICalendarParameterName, ICalendarProperty};

/// Pending: the message was sent (RFC 6638 9.2).
pub const SENT: &str = "1.1";
/// Delivered into a local user's calendar.
pub const DELIVERED: &str = "1.2";
/// The address is not valid (the relay said so, or it cannot be an email address).
pub const INVALID_ADDRESS: &str = "3.7";
/// Delivery failed for good.
pub const FAILED: &str = "5.1";

/// `cal` with SCHEDULE-STATUS=`status` on every ATTENDEE line of `attendee`, or `None`
/// when every such line already says so (or there is none).
pub fn with_schedule_status(
    cal: &ICalendar,
    attendee: &CalAddress,
    status: &str,
) -> Option<ICalendar> {
    with_schedule_statuses(cal, &[(attendee.clone(), status)])
}

/// [`with_schedule_status`] for many attendees in one pass (the statuses of a change
/// mailed to 1,000 attendees: one copy of the calendar, not 1,000). When an attendee
/// is named twice, the later status wins.
pub fn with_schedule_statuses(
    cal: &ICalendar,
    statuses: &[(CalAddress, &str)],
) -> Option<ICalendar> {
    let wanted: std::collections::HashMap<&CalAddress, &str> =
        statuses.iter().map(|(a, s)| (a, *s)).collect();
    let mut out = cal.clone();
    let mut changed = false;
    for comp in out
        .components
        .iter_mut()
        .filter(|c| c.component_type.is_scheduling_object())
    {
        for entry in comp.entries.iter_mut() {
            if entry.name != ICalendarProperty::Attendee {
                continue;
            }
            let Some(status) = entry_address(entry).and_then(|a| wanted.get(&a).copied()) else {
                continue;
            };
            let current: Vec<&str> = entry
                .parameters(&ICalendarParameterName::ScheduleStatus)
                .filter_map(|v| v.as_text())
                .collect();
            if current != [status] {
                set_param(
                    entry,
                    ICalendarParameterName::ScheduleStatus,
                    vec![status.to_string().into()],
                );
                changed = true;
            }
        }
    }
    changed.then_some(out)
}
