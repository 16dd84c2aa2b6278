//! Which components an organizer's change reschedules, and resetting their answers.
//!
//! RFC 6638 §3.2.8: when the organizer reschedules an instance, the server resets the
//! answers of every attendee but the organizer to NEEDS-ACTION, so that nobody shows as
//! having accepted a time they never saw. A component is rescheduled when
//!
//! - its own DTSTART, DTEND, DURATION or DUE changed (compared as instants);
//! - it is the master and its recurrence gained instances: an RDATE added, an EXDATE
//!   lifted, an RRULE added or changed other than ending sooner (lower COUNT, earlier
//!   UNTIL);
//! - it is a new override that puts its occurrence at another start, or gives it
//!   another length, than the master does.
//!
//! Removing instances (EXDATE added, COUNT lowered, RRULE dropped) moves nothing and
//! keeps the answers. The reset sets PARTSTAT=NEEDS-ACTION and RSVP=TRUE on each
//! ATTENDEE that had answered; it leaves alone the organizer's own lines (every address
//! of the acting account), attendees with RSVP=FALSE (rooms and non-participants are
//! never asked to answer) and DELEGATED ones (their delegate answers for them). Pure
//! code: it edits a copy of the parsed calendar, nothing else.

use super::address::CalAddress;
use super::export::set_param;
use super::snapshot::{entry_address, Instance, InstanceId, Snapshot};
use super::time::TimeResolver;
use calcard::icalendar::{
    ICalendar, ICalendarParameterName, ICalendarParameterValue, ICalendarParticipationStatus,
    ICalendarProperty, ICalendarRecurrenceRule, ICalendarValue,
};
use std::collections::BTreeSet;

/// The properties that place an instance in time.
const TIMES: [ICalendarProperty; 4] = [
    ICalendarProperty::Dtstart,
    ICalendarProperty::Dtend,
    ICalendarProperty::Duration,
    ICalendarProperty::Due,
];

/// Component ids (in `new.cal`) of the instances `new` reschedules compared with `old`.
pub fn rescheduled(old: &Snapshot<'_>, new: &Snapshot<'_>) -> BTreeSet<u32> {
    let old_times = TimeResolver::new(old.cal);
    let new_times = TimeResolver::new(new.cal);
    new.instances
        .iter()
        .filter(|(id, n)| match old.instances.get(id) {
            Some(o) => {
                times_differ(o, n)
                    || (**id == InstanceId::Main && recurrence_grows(o, n, &old_times, &new_times))
            }
            None => match (id, new.main()) {
                (InstanceId::Recurrence { timestamp, .. }, Some(main)) => {
                    override_moves(n, *timestamp, main, &new_times)
                }
                _ => false,
            },
        })
        .map(|(_, n)| n.comp_id)
        .collect()
}

/// A copy of `cal` whose components `comps` have their attendees' answers reset (see
/// the module documentation for who is left alone).
pub fn reset_answers(cal: &ICalendar, comps: &BTreeSet<u32>, account: &[CalAddress]) -> ICalendar {
    let mut out = cal.clone();
    for id in comps {
        let Some(comp) = out.components.get_mut(*id as usize) else {
            continue;
        };
        for entry in comp.entries.iter_mut() {
            if entry.name != ICalendarProperty::Attendee {
                continue;
            }
            if entry_address(entry).is_none_or(|a| account.contains(&a)) {
                continue;
            }
            let rsvp_false = match entry.parameter(&ICalendarParameterName::Rsvp) {
                Some(ICalendarParameterValue::Bool(b)) => !b,
                Some(other) => other
                    .as_text()
                    .is_some_and(|t| t.eq_ignore_ascii_case("FALSE")),
                None => false,
            };
            let answered = match entry.parameter(&ICalendarParameterName::Partstat) {
                None => false,
                Some(ICalendarParameterValue::Partstat(
                    ICalendarParticipationStatus::NeedsAction
                    | ICalendarParticipationStatus::Delegated,
                )) => false,
                Some(_) => true,
            };
            if rsvp_false || !answered {
                continue;
            }
            set_param(
                entry,
                ICalendarParameterName::Partstat,
                vec![ICalendarParameterValue::Partstat(
                    ICalendarParticipationStatus::NeedsAction,
                )],
            );
            set_param(
                entry,
                ICalendarParameterName::Rsvp,
                vec![ICalendarParameterValue::Bool(true)],
            );
        }
    }
    out
}

/// Is a new override only the master's occurrence at `recurrence_id` with other
/// answers: same start and length, the same tracked values apart from time and
/// recurrence, the same attendees (PARTSTAT aside)? Then it records answers and
/// changes nothing anyone must hear of.
pub fn is_master_instance(
    instance: &Instance<'_>,
    recurrence_id: i64,
    main: &Instance<'_>,
    cal: &ICalendar,
) -> bool {
    let times = TimeResolver::new(cal);
    let Some(start) = start_of(instance, &times) else {
        return false;
    };
    if start != recurrence_id || override_moves(instance, recurrence_id, main, &times) {
        return false;
    }
    let descriptive = |i: &Instance<'_>| -> BTreeSet<(String, String)> {
        i.tracked
            .iter()
            .filter(|t| {
                !TIMES.contains(&t.property)
                    && !matches!(
                        t.property,
                        ICalendarProperty::Rrule
                            | ICalendarProperty::Rdate
                            | ICalendarProperty::Exdate
                    )
            })
            .map(|t| (t.property.as_str().to_string(), t.value.clone()))
            .collect()
    };
    descriptive(instance) == descriptive(main)
        && instance.attendee_keys_without_answers() == main.attendee_keys_without_answers()
}

fn tracked_values<'a>(instance: &'a Instance<'_>, property: &ICalendarProperty) -> Vec<&'a str> {
    instance
        .tracked
        .iter()
        .filter(|t| &t.property == property)
        .map(|t| t.value.as_str())
        .collect()
}

fn times_differ(old: &Instance<'_>, new: &Instance<'_>) -> bool {
    TIMES
        .iter()
        .any(|p| tracked_values(old, p) != tracked_values(new, p))
}

/// Does the master's recurrence set gain instances?
fn recurrence_grows(
    old: &Instance<'_>,
    new: &Instance<'_>,
    old_times: &TimeResolver<'_>,
    new_times: &TimeResolver<'_>,
) -> bool {
    let old_rdates = tracked_values(old, &ICalendarProperty::Rdate);
    if tracked_values(new, &ICalendarProperty::Rdate)
        .iter()
        .any(|v| !old_rdates.contains(v))
    {
        return true;
    }
    let new_exdates = tracked_values(new, &ICalendarProperty::Exdate);
    if tracked_values(old, &ICalendarProperty::Exdate)
        .iter()
        .any(|v| !new_exdates.contains(v))
    {
        return true;
    }
    match (rule_of(old), rule_of(new)) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(o), Some(n)) => !ends_sooner_or_same(o, n, old_times, new_times),
    }
}

fn rule_of<'a>(instance: &'a Instance<'_>) -> Option<&'a ICalendarRecurrenceRule> {
    instance
        .comp
        .property(&ICalendarProperty::Rrule)
        .and_then(|e| match e.values.first() {
            Some(ICalendarValue::RecurrenceRule(rule)) => Some(rule.as_ref()),
            _ => None,
        })
}

/// True when `new` is `old` with the same or an earlier end (COUNT or UNTIL).
fn ends_sooner_or_same(
    old: &ICalendarRecurrenceRule,
    new: &ICalendarRecurrenceRule,
    old_times: &TimeResolver<'_>,
    new_times: &TimeResolver<'_>,
) -> bool {
    let shape = |rule: &ICalendarRecurrenceRule| {
        let mut rule = rule.clone();
        rule.count = None;
        rule.until = None;
        if rule.interval == Some(1) {
            rule.interval = None;
        }
        rule
    };
    if shape(old) != shape(new) {
        return false;
    }
    match ((old.count, &old.until), (new.count, &new.until)) {
        // The old rule never ended: any end is sooner.
        ((None, None), _) => true,
        ((Some(o), None), (Some(n), None)) => n <= o,
        ((None, Some(o)), (None, Some(n))) => {
            match (old_times.timestamp(o, None), new_times.timestamp(n, None)) {
                (Some(o), Some(n)) => n <= o,
                _ => false,
            }
        }
        _ => false,
    }
}

/// Does a new override put its occurrence elsewhere in time than the master does?
fn override_moves(
    instance: &Instance<'_>,
    recurrence_id: i64,
    main: &Instance<'_>,
    times: &TimeResolver<'_>,
) -> bool {
    let Some(start) = start_of(instance, times) else {
        return false;
    };
    if start != recurrence_id {
        return true;
    }
    match (length_of(instance, times), length_of(main, times)) {
        (Some(own), Some(series)) => own != series,
        _ => false,
    }
}

fn start_of(instance: &Instance<'_>, times: &TimeResolver<'_>) -> Option<i64> {
    instance
        .comp
        .property(&ICalendarProperty::Dtstart)
        .and_then(|e| times.entry_timestamp(e))
}

/// DTEND (or DUE) minus DTSTART, or DURATION, in seconds.
fn length_of(instance: &Instance<'_>, times: &TimeResolver<'_>) -> Option<i64> {
    let comp = instance.comp;
    let start = start_of(instance, times)?;
    let end = comp
        .property(&ICalendarProperty::Dtend)
        .or_else(|| comp.property(&ICalendarProperty::Due))
        .and_then(|e| times.entry_timestamp(e));
    if let Some(end) = end {
        return Some(end - start);
    }
    comp.property(&ICalendarProperty::Duration)
        .and_then(|e| match e.values.first() {
            Some(ICalendarValue::Duration(d)) => Some(d.as_seconds()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORGANIZER: &str = "o@example.com";

    fn series(master: &str, overrides: &str) -> ICalendar {
        let text = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\n\
             BEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nTZOFFSETFROM:+0200\r\n\
             TZOFFSETTO:+0100\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\n\
             BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nTZOFFSETFROM:+0100\r\n\
             TZOFFSETTO:+0200\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\n\
             END:VTIMEZONE\r\nBEGIN:VEVENT\r\nUID:u\r\nDTSTAMP:20300101T000000Z\r\n\
             ORGANIZER:mailto:{ORGANIZER}\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:a@example.net\r\n\
             {master}END:VEVENT\r\n{overrides}END:VCALENDAR\r\n"
        );
        ICalendar::parse(&text).expect("parses")
    }

    fn moved(old: &ICalendar, new: &ICalendar) -> usize {
        let me = [CalAddress::parse(ORGANIZER).expect("address")];
        let old = Snapshot::new(old, &me).expect("old snapshot");
        let new = Snapshot::new(new, &me).expect("new snapshot");
        rescheduled(&old, &new).len()
    }

    const WEEKLY: &str = "DTSTART:20300107T100000Z\r\nDTEND:20300107T110000Z\r\n\
                          RRULE:FREQ=WEEKLY;COUNT=6\r\n";

    #[test]
    fn ending_a_series_sooner_or_excluding_a_week_moves_nothing() {
        let old = series(WEEKLY, "");
        let shorter = series(
            "DTSTART:20300107T100000Z\r\nDTEND:20300107T110000Z\r\nRRULE:FREQ=WEEKLY;COUNT=3\r\n",
            "",
        );
        assert_eq!(moved(&old, &shorter), 0);
        let excluded = series(&format!("{WEEKLY}EXDATE:20300114T100000Z\r\n"), "");
        assert_eq!(moved(&old, &excluded), 0);
        // The same instant in another zone is no change either.
        let zoned = series(
            "DTSTART;TZID=Europe/Berlin:20300107T110000\r\n\
             DTEND;TZID=Europe/Berlin:20300107T120000\r\nRRULE:FREQ=WEEKLY;COUNT=6\r\n",
            "",
        );
        assert_eq!(moved(&old, &zoned), 0);
    }

    #[test]
    fn a_longer_series_another_rule_or_a_lifted_exclusion_reschedules_the_master() {
        let old = series(&format!("{WEEKLY}EXDATE:20300114T100000Z\r\n"), "");
        let longer = series(
            "DTSTART:20300107T100000Z\r\nDTEND:20300107T110000Z\r\nRRULE:FREQ=WEEKLY;COUNT=9\r\n\
             EXDATE:20300114T100000Z\r\n",
            "",
        );
        assert_eq!(moved(&old, &longer), 1);
        let daily = series(
            "DTSTART:20300107T100000Z\r\nDTEND:20300107T110000Z\r\nRRULE:FREQ=DAILY;COUNT=6\r\n\
             EXDATE:20300114T100000Z\r\n",
            "",
        );
        assert_eq!(moved(&old, &daily), 1);
        let lifted = series(WEEKLY, "");
        assert_eq!(moved(&old, &lifted), 1);
    }

    #[test]
    fn a_new_override_reschedules_only_when_it_moves_or_stretches_its_occurrence() {
        let old = series(WEEKLY, "");
        let retitled = series(
            WEEKLY,
            "BEGIN:VEVENT\r\nUID:u\r\nRECURRENCE-ID:20300114T100000Z\r\n\
             DTSTART:20300114T100000Z\r\nDTEND:20300114T110000Z\r\nSUMMARY:Demo\r\n\
             ORGANIZER:mailto:o@example.com\r\nEND:VEVENT\r\n",
        );
        assert_eq!(moved(&old, &retitled), 0);
        let longer = series(
            WEEKLY,
            "BEGIN:VEVENT\r\nUID:u\r\nRECURRENCE-ID:20300114T100000Z\r\n\
             DTSTART:20300114T100000Z\r\nDTEND:20300114T120000Z\r\n\
             ORGANIZER:mailto:o@example.com\r\nEND:VEVENT\r\n",
        );
        assert_eq!(moved(&old, &longer), 1);
    }

    #[test]
    fn the_reset_spares_the_organizer_rooms_delegators_and_the_unanswered() {
        let cal = ICalendar::parse(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:u\r\n\
             DTSTART:20300107T100000Z\r\nORGANIZER:mailto:o@example.com\r\n\
             ATTENDEE;PARTSTAT=ACCEPTED:mailto:o@example.com\r\n\
             ATTENDEE;PARTSTAT=TENTATIVE:mailto:a@example.net\r\n\
             ATTENDEE;PARTSTAT=DECLINED;RSVP=FALSE:mailto:a-list@example.net\r\n\
             ATTENDEE;CUTYPE=ROOM;RSVP=FALSE;PARTSTAT=ACCEPTED:mailto:room@example.com\r\n\
             ATTENDEE;PARTSTAT=DELEGATED;DELEGATED-TO=\"mailto:e@example.net\":mailto:c@example.net\r\n\
             ATTENDEE;PARTSTAT=DECLINED;DELEGATED-FROM=\"mailto:c@example.net\":mailto:e@example.net\r\n\
             ATTENDEE:mailto:n@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        )
        .expect("parses");
        let me = [CalAddress::parse(ORGANIZER).expect("address")];
        let reset = reset_answers(&cal, &BTreeSet::from([1]), &me);
        let lines: Vec<String> = reset.components[1]
            .entries
            .iter()
            .filter(|e| e.name == ICalendarProperty::Attendee)
            .map(|e| {
                let mut one = ICalendar {
                    components: vec![reset.components[1].clone()],
                };
                one.components[0].entries = vec![e.clone()];
                one.components[0].component_ids.clear();
                one.to_string()
                    .replace("\r\n ", "")
                    .lines()
                    .find(|l| l.starts_with("ATTENDEE"))
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        assert_eq!(
            lines,
            vec![
                "ATTENDEE;PARTSTAT=ACCEPTED:mailto:o@example.com",
                "ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:a@example.net",
                "ATTENDEE;PARTSTAT=DECLINED;RSVP=FALSE:mailto:a-list@example.net",
                "ATTENDEE;CUTYPE=ROOM;RSVP=FALSE;PARTSTAT=ACCEPTED:mailto:room@example.com",
                "ATTENDEE;PARTSTAT=DELEGATED;DELEGATED-TO=\"mailto:e@example.net\":mailto:c@example.net",
                "ATTENDEE;PARTSTAT=NEEDS-ACTION;DELEGATED-FROM=\"mailto:c@example.net\";RSVP=TRUE:mailto:e@example.net",
                "ATTENDEE:mailto:n@example.net",
            ]
        );
    }
}
