//! The occurrences of a recurring item, for messages that speak of one of them.
//!
//! A received REPLY, COUNTER, REFRESH, CANCEL, REQUEST or ADD may name a single
//! occurrence by RECURRENCE-ID. Two questions follow, answered here:
//!
//! - is that RECURRENCE-ID an occurrence of the series at all ([`membership`])? The
//!   recurrence set (DTSTART, RRULE, RDATE, EXDATE) is expanded by calcard's
//!   `expand_dates`; nothing here computes recurrences by hand;
//! - what does that occurrence look like when the copy has no override for it yet
//!   ([`instance_at`])? The master's instance: every property and sub-component of the
//!   master, DTSTART/DTEND/DUE moved to the occurrence in the master's own time zone,
//!   and no RRULE, RDATE or EXDATE (RFC 5545 §3.8.4.4, §3.6.1).
//!
//! It does not decide what a message changes in that instance: `inbound` does.

use super::export::{ComponentTree, MessageCalendar, Timezones};
use super::time::TimeResolver;
use calcard::common::timezone::Tz;
use calcard::common::PartialDateTime;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarEntry, ICalendarProperty, ICalendarValue,
};
use chrono::NaiveDateTime;
use std::collections::BTreeSet;

/// How many occurrences are expanded at most to find one: 27 years of a daily event.
/// Beyond that the answer is [`Membership::Undecided`], never a refusal.
const EXPANSION_LIMIT: usize = 10_000;

/// Whether a RECURRENCE-ID names an occurrence of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// The series has an occurrence starting at that instant.
    Occurrence,
    /// It has none: a non-recurring item, a day the rule skips, after COUNT or UNTIL,
    /// or an EXDATE.
    NotAnOccurrence,
    /// The series could not be expanded far enough (or at all) to tell: accepted, as
    /// refusing a real occurrence would lose someone's answer.
    Undecided,
}

/// The recurrence set of one master, expanded once and asked about many
/// RECURRENCE-IDs (a REPLY may decline fifty weeks in one message).
#[derive(Debug, Clone)]
pub struct Occurrences {
    /// Occurrence starts as UTC instants; `None` when the series cannot be expanded.
    starts: Option<BTreeSet<i64>>,
    /// False for a non-recurring item: no RECURRENCE-ID is an occurrence of it.
    recurs: bool,
    /// The expansion stopped at the limit: later instants are undecided.
    cut_short: bool,
}

impl Occurrences {
    /// Expands the master component `master` of `cal` (its own RRULE, RDATE, EXDATE).
    pub fn of(cal: &ICalendar, master: &ICalendarComponent) -> Self {
        let recurs = master.has_property(&ICalendarProperty::Rrule)
            || master.has_property(&ICalendarProperty::Rdate);
        if !recurs {
            return Occurrences {
                starts: Some(BTreeSet::new()),
                recurs,
                cut_short: false,
            };
        }
        // The master alone, with the time zones it may use: overrides would replace the
        // occurrences they move, and the question is about the recurrence set itself.
        let alone = ComponentTree::leaf(ICalendarComponent {
            component_type: master.component_type.clone(),
            entries: master.entries.clone(),
            component_ids: Vec::new(),
        });
        let series = MessageCalendar::build(None, vec![alone], cal, Timezones::All);
        let expanded = series.expand_dates(Tz::UTC, EXPANSION_LIMIT);
        if !expanded.errors.is_empty() {
            return Occurrences {
                starts: None,
                recurs,
                cut_short: false,
            };
        }
        let exdates: usize = master
            .properties(&ICalendarProperty::Exdate)
            .map(|e| e.values.len())
            .sum();
        Occurrences {
            cut_short: expanded.events.len() + exdates >= EXPANSION_LIMIT,
            starts: Some(
                expanded
                    .events
                    .iter()
                    .map(|e| e.start.timestamp())
                    .collect(),
            ),
            recurs,
        }
    }

    /// Is `timestamp` (a RECURRENCE-ID as a UTC instant) one of the occurrences?
    pub fn membership(&self, timestamp: i64) -> Membership {
        if !self.recurs {
            return Membership::NotAnOccurrence;
        }
        let Some(starts) = &self.starts else {
            return Membership::Undecided;
        };
        if starts.contains(&timestamp) {
            return Membership::Occurrence;
        }
        let beyond = starts.last().is_none_or(|last| timestamp > *last);
        if self.cut_short && beyond {
            Membership::Undecided
        } else {
            Membership::NotAnOccurrence
        }
    }
}

/// Is `timestamp` (a RECURRENCE-ID as a UTC instant) an occurrence of `master`, the
/// master component of `cal`? (One question; [`Occurrences`] for several.)
pub fn membership(cal: &ICalendar, master: &ICalendarComponent, timestamp: i64) -> Membership {
    Occurrences::of(cal, master).membership(timestamp)
}

/// The master's instance at `timestamp`, as an override for the copy `cal`, whose
/// component `master_id` is the master. `None` when the master has no start to move.
pub fn instance_at(cal: &ICalendar, master_id: u32, timestamp: i64) -> Option<ComponentTree> {
    let master = cal.components.get(master_id as usize)?;
    let times = TimeResolver::new(cal);
    let resolver = cal.build_tz_resolver();
    let anchor = master
        .property(&ICalendarProperty::Dtstart)
        .or_else(|| master.property(&ICalendarProperty::Due))?;
    let anchor_ts = times.entry_timestamp(anchor)?;
    let anchor_local = local_of(anchor)?;
    let new_anchor = at_instant(anchor, timestamp, &resolver)?;
    let new_anchor_local = local_of(&new_anchor)?;

    let moved = |entry: &ICalendarEntry| -> Option<ICalendarEntry> {
        if std::ptr::eq(entry, anchor) {
            return Some(new_anchor.clone());
        }
        if same_form(entry, anchor) {
            // Same zone: keep the wall-clock length (a 10:00–11:00 meeting stays so
            // across a DST change).
            let local = local_of(entry)?;
            let shifted = new_anchor_local.checked_add_signed(local - anchor_local)?;
            Some(with_local(entry, shifted))
        } else {
            let end = times.entry_timestamp(entry)?;
            at_instant(entry, timestamp + (end - anchor_ts), &resolver)
        }
    };

    let mut comp = ICalendarComponent::new(master.component_type.clone());
    for entry in &master.entries {
        match entry.name {
            ICalendarProperty::Rrule
            | ICalendarProperty::Rdate
            | ICalendarProperty::Exdate
            | ICalendarProperty::Exrule
            | ICalendarProperty::RecurrenceId => {}
            ICalendarProperty::Dtstart | ICalendarProperty::Dtend | ICalendarProperty::Due => {
                comp.entries.push(moved(entry)?);
                if std::ptr::eq(entry, anchor) {
                    let mut rid = new_anchor.clone();
                    rid.name = ICalendarProperty::RecurrenceId;
                    comp.entries.push(rid);
                }
            }
            _ => comp.entries.push(entry.clone()),
        }
    }
    Some(ComponentTree::with_children_of(comp, cal, master, |_| true))
}

/// `entry` (a date or date-time) rewritten to say `timestamp`, in its own form: UTC
/// stays UTC, a TZID keeps its zone, a date stays a date, floating stays floating.
pub fn at_instant(
    entry: &ICalendarEntry,
    timestamp: i64,
    resolver: &calcard::icalendar::timezone::TzResolver<&str>,
) -> Option<ICalendarEntry> {
    let ICalendarValue::PartialDateTime(dt) = entry.values.first()? else {
        return None;
    };
    let instant = chrono::DateTime::from_timestamp(timestamp, 0)?;
    let local = if !dt.has_time() || dt.to_date_time()?.offset.is_some() {
        instant.naive_utc()
    } else {
        let tz = resolver.resolve_or_default(entry.tz_id());
        instant.with_timezone(&tz).naive_local()
    };
    Some(with_local(entry, local))
}

/// The value of `entry` as written (wall-clock for a TZID, UTC for `Z`).
fn local_of(entry: &ICalendarEntry) -> Option<NaiveDateTime> {
    match entry.values.first()? {
        ICalendarValue::PartialDateTime(dt) => Some(dt.to_date_time()?.date_time),
        _ => None,
    }
}

/// True when both values are written alike: same TZID, both UTC, both floating or
/// both dates.
fn same_form(a: &ICalendarEntry, b: &ICalendarEntry) -> bool {
    let form = |e: &ICalendarEntry| match e.values.first() {
        Some(ICalendarValue::PartialDateTime(dt)) => Some((
            dt.has_time(),
            dt.to_date_time().is_some_and(|d| d.offset.is_some()),
            e.tz_id().map(str::to_string),
        )),
        _ => None,
    };
    form(a).is_some() && form(a) == form(b)
}

/// `entry` with its value replaced by `local`, written in the entry's form.
fn with_local(entry: &ICalendarEntry, local: NaiveDateTime) -> ICalendarEntry {
    let mut out = entry.clone();
    if let Some(ICalendarValue::PartialDateTime(dt)) = entry.values.first() {
        let seconds = local.and_utc().timestamp();
        let value = if !dt.has_time() {
            PartialDateTime::from_date_timestamp(seconds)
        } else if dt.to_date_time().is_some_and(|d| d.offset.is_some()) {
            PartialDateTime::from_utc_timestamp(seconds)
        } else {
            PartialDateTime::from_naive_timestamp(seconds)
        };
        out.values = vec![ICalendarValue::PartialDateTime(Box::new(value))];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(event: &str) -> ICalendar {
        ICalendar::parse(format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n{event}END:VCALENDAR\r\n"
        ))
        .expect("parses")
    }

    fn utc(text: &str) -> i64 {
        super::super::time::parse_utc_date_time(text).expect("a UTC date-time")
    }

    const THURSDAYS: &str = "BEGIN:VEVENT\r\nUID:t\r\nDTSTAMP:20300101T000000Z\r\n\
        DTSTART;TZID=Europe/Berlin:20300103T100000\r\nDTEND;TZID=Europe/Berlin:20300103T110000\r\n\
        RRULE:FREQ=WEEKLY;BYDAY=TH;COUNT=20\r\nEXDATE;TZID=Europe/Berlin:20300117T100000\r\n\
        SUMMARY:Thursdays\r\nORGANIZER:mailto:o@example.com\r\nEND:VEVENT\r\n";

    fn master(cal: &ICalendar) -> &ICalendarComponent {
        &cal.components[1]
    }

    /// An event from 2030-01-03 10:00 UTC with `recurrence` (RRULE or RDATE lines).
    fn from_jan_3(recurrence: &str) -> String {
        format!(
            "BEGIN:VEVENT\r\nUID:t\r\nDTSTART:20300103T100000Z\r\n{recurrence}\
             ORGANIZER:mailto:o@example.com\r\nEND:VEVENT\r\n"
        )
    }

    /// Thursdays of a Thursday series across DST (2030-01-10 10:00 Berlin is 09:00 UTC,
    /// 2030-04-11 10:00 Berlin is 08:00) are occurrences; a Friday, an EXDATE, a day after
    /// COUNT or UNTIL and a non-recurring event's start are not; an RDATE is; an
    /// unbounded series beyond the expansion is undecided.
    #[test]
    fn membership_follows_the_recurrence() {
        let until = from_jan_3("RRULE:FREQ=DAILY;UNTIL=20300110T100000Z\r\n");
        let rdate = from_jan_3("RDATE:20300301T140000Z\r\n");
        let single = from_jan_3("");
        let hourly = from_jan_3("RRULE:FREQ=HOURLY\r\n");
        let (yes, no) = (Membership::Occurrence, Membership::NotAnOccurrence);
        let cases = [
            (THURSDAYS, "20300110T090000Z", yes),
            (THURSDAYS, "20300411T080000Z", yes),
            (THURSDAYS, "20300111T090000Z", no),
            (THURSDAYS, "20300117T090000Z", no),
            (THURSDAYS, "20300523T080000Z", no),
            (&until, "20300110T100000Z", yes),
            (&until, "20300111T100000Z", no),
            (&rdate, "20300301T140000Z", yes),
            (&rdate, "20300302T140000Z", no),
            (&single, "20300103T100000Z", no),
            (&hourly, "20900103T100000Z", Membership::Undecided),
        ];
        for (event, at, expected) in cases {
            let c = cal(event);
            assert_eq!(
                membership(&c, master(&c), utc(at)),
                expected,
                "{at} in {event}"
            );
        }
    }

    /// Asserts that the instance of the series in `c` at `at` (UTC) has each of `lines`.
    fn assert_instance_has(c: &ICalendar, at: &str, lines: &[&str]) {
        let tree = instance_at(c, 1, utc(at)).expect("instance");
        let text: String = tree
            .component
            .entries
            .iter()
            .map(|e| {
                let mut s = String::new();
                let _ = e.write_to(&mut s);
                s
            })
            .collect();
        for line in lines {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn an_all_day_instance_stays_all_day() {
        let c = cal("BEGIN:VEVENT\r\nUID:t\r\nDTSTART;VALUE=DATE:20300103\r\n\
             DTEND;VALUE=DATE:20300104\r\nRRULE:FREQ=WEEKLY\r\n\
             ORGANIZER:mailto:o@example.com\r\nEND:VEVENT\r\n");
        assert_eq!(
            membership(&c, master(&c), utc("20300110T000000Z")),
            Membership::Occurrence
        );
        assert_instance_has(
            &c,
            "20300110T000000Z",
            &[
                "DTSTART;VALUE=DATE:20300110",
                "DTEND;VALUE=DATE:20300111",
                "RECURRENCE-ID;VALUE=DATE:20300110",
            ],
        );
    }

    #[test]
    fn a_floating_instance_stays_floating() {
        let c = cal("BEGIN:VEVENT\r\nUID:t\r\nDTSTART:20300103T100000\r\n\
             DURATION:PT1H\r\nRRULE:FREQ=DAILY;COUNT=3\r\n\
             ORGANIZER:mailto:o@example.com\r\nEND:VEVENT\r\n");
        assert_instance_has(
            &c,
            "20300104T100000Z",
            &[
                "DTSTART:20300104T100000\r\n",
                "RECURRENCE-ID:20300104T100000\r\n",
                "DURATION:PT1H",
            ],
        );
    }

    /// The instance keeps the master's zone and wall-clock times across a DST change.
    #[test]
    fn the_instance_is_the_master_moved_to_the_occurrence() {
        let c = cal(THURSDAYS);
        let tree = instance_at(&c, 1, utc("20300411T080000Z")).expect("an instance");
        let text = ICalendar {
            components: vec![
                ICalendarComponent::new(calcard::icalendar::ICalendarComponentType::VCalendar),
                tree.component,
            ],
        }
        .components[1]
            .entries
            .iter()
            .map(|e| {
                let mut s = String::new();
                let _ = e.write_to(&mut s);
                s
            })
            .collect::<String>();
        assert!(
            text.contains("DTSTART;TZID=Europe/Berlin:20300411T100000"),
            "{text}"
        );
        assert!(
            text.contains("RECURRENCE-ID;TZID=Europe/Berlin:20300411T100000"),
            "{text}"
        );
        assert!(
            text.contains("DTEND;TZID=Europe/Berlin:20300411T110000"),
            "{text}"
        );
        assert!(text.contains("SUMMARY:Thursdays"), "{text}");
        assert!(
            !text.contains("RRULE") && !text.contains("EXDATE"),
            "{text}"
        );
    }
}
