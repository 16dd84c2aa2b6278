//! Is an event over? Nobody is told about changes to events that ended before now.
//!
//! The end of a recurring event is found without expanding it: a rule without COUNT or
//! UNTIL never ends; UNTIL bounds it; COUNT bounds it by COUNT periods of the rule's
//! frequency when no BYxxx part can stretch the periods. Whatever cannot be bounded this
//! way counts as not over, so the rule errs on the side of sending.

use super::snapshot::Snapshot;
use super::time::TimeResolver;
use calcard::icalendar::{
    ICalendarComponent, ICalendarFrequency, ICalendarProperty, ICalendarRecurrenceRule,
    ICalendarValue,
};

/// True when every instance of the item ended before `now`.
pub fn is_over(snapshot: &Snapshot<'_>, now: i64) -> bool {
    let times = TimeResolver::new(snapshot.cal);
    snapshot
        .instances
        .values()
        .all(|instance| end_of(instance.comp, &times).is_some_and(|end| end < now))
}

/// The last moment of a component, or `None` when it is unbounded or unknown (also how
/// long an RSVP link lasts, see `imip::rsvp`).
pub fn end_of(comp: &ICalendarComponent, times: &TimeResolver<'_>) -> Option<i64> {
    let first_value = |property: ICalendarProperty| {
        comp.property(&property)
            .and_then(|entry| times.entry_timestamp(entry).map(|ts| (ts, entry)))
    };
    let start = first_value(ICalendarProperty::Dtstart);
    let due = first_value(ICalendarProperty::Due);
    let (start, is_date) = match (start, due) {
        (Some((ts, entry)), _) => (ts, !has_time(entry)),
        (None, Some((ts, _))) => (ts, false),
        (None, None) => return None,
    };
    let duration = match (first_value(ICalendarProperty::Dtend), due) {
        (Some((end, _)), _) | (None, Some((end, _))) => (end - start).max(0),
        (None, None) => comp
            .property(&ICalendarProperty::Duration)
            .and_then(|e| match e.values.first() {
                Some(ICalendarValue::Duration(d)) => Some(d.as_seconds().max(0)),
                _ => None,
            })
            .unwrap_or(if is_date { 86_400 } else { 0 }),
    };

    let mut last_start = start;
    for entry in comp.properties(&ICalendarProperty::Rdate) {
        for value in &entry.values {
            match value {
                ICalendarValue::PartialDateTime(dt) => {
                    last_start = last_start.max(times.timestamp(dt, entry.tz_id())?)
                }
                // A PERIOD value: its own end is hard to read here, so be generous.
                _ => return None,
            }
        }
    }
    if let Some(entry) = comp.property(&ICalendarProperty::Rrule) {
        let Some(ICalendarValue::RecurrenceRule(rule)) = entry.values.first() else {
            return None;
        };
        last_start = last_start.max(rule_last_start(rule, start, times)?);
    }
    last_start.checked_add(duration)
}

fn has_time(entry: &calcard::icalendar::ICalendarEntry) -> bool {
    matches!(entry.values.first(), Some(ICalendarValue::PartialDateTime(dt)) if dt.has_time())
}

/// An upper bound for the start of the last occurrence of `rule`.
fn rule_last_start(
    rule: &ICalendarRecurrenceRule,
    start: i64,
    times: &TimeResolver<'_>,
) -> Option<i64> {
    if let Some(until) = &rule.until {
        return times.timestamp(until, None);
    }
    let count = i64::from(rule.count?);
    let stretched = !rule.bymonth.is_empty()
        || !rule.byweekno.is_empty()
        || !rule.byyearday.is_empty()
        || !rule.bymonthday.is_empty()
        || !rule.byday.is_empty()
        || !rule.byhour.is_empty()
        || !rule.byminute.is_empty()
        || !rule.bysecond.is_empty()
        || !rule.bysetpos.is_empty()
        || rule.rscale.is_some();
    if stretched {
        return None;
    }
    let period: i64 = match rule.freq {
        ICalendarFrequency::Secondly => 1,
        ICalendarFrequency::Minutely => 60,
        ICalendarFrequency::Hourly => 3_600,
        ICalendarFrequency::Daily => 86_400,
        ICalendarFrequency::Weekly => 7 * 86_400,
        ICalendarFrequency::Monthly => 31 * 86_400,
        ICalendarFrequency::Yearly => 366 * 86_400,
    };
    let interval = i64::from(rule.interval.unwrap_or(1).max(1));
    count
        .checked_mul(interval)?
        .checked_mul(period)?
        .checked_add(start)
}
