//! A VTIMEZONE for every TZID a calendar uses (RFC 5545 §3.2.19: it MUST be there).
//!
//! Files written by khal and by hand (`examples/events/lunch.ics`) name a TZID without
//! defining it. A reader without the definition (ical.js, Outlook) shows such a time as
//! floating: 12:30 Europe/Berlin becomes 12:30 wherever the reader is. Before a message
//! leaves or an invitation is stored, each such TZID gets a VTIMEZONE generated from the
//! tz database by calcard (yearly RRULE observances, the form Outlook reads). Windows zone
//! names (`W. Europe Standard Time`) resolve to their IANA zone and keep their name as
//! TZID, so every reference stays valid.
//!
//! calcard's own `ICalendar::add_missing_timezones` reads the wall clock to decide how far
//! an unbounded series reaches; the engine has no clock, so the span here ends at the
//! latest DTSTAMP instead (the engine stamps every message with its "now"), and
//! calcard's `ICalendar::add_timezone` builds the observances for that span.

use calcard::icalendar::{
    ICalendar, ICalendarComponentType, ICalendarFrequency, ICalendarParameterName, ICalendarPeriod,
    ICalendarProperty, ICalendarValue,
};
use chrono::NaiveDate;

/// Years of observances written past the last date the calendar uses, so that the
/// final rule is open-ended.
const YEARS_AFTER: i32 = 2;
/// No generated definition reaches further than this past the last DTSTAMP.
const MAX_YEARS_AHEAD: i32 = 100;

/// The span of years a calendar's dates cover, and whether some series has no end.
#[derive(Debug, Default)]
struct Span {
    first: Option<i32>,
    last: Option<i32>,
    stamped: Option<i32>,
    years_of_counted_series: i32,
    unbounded: bool,
}

impl Span {
    fn see(&mut self, year: Option<u16>) {
        let Some(year) = year.map(i32::from) else {
            return;
        };
        self.first = Some(self.first.map_or(year, |y| y.min(year)));
        self.last = Some(self.last.map_or(year, |y| y.max(year)));
    }

    /// First and last year to describe (inclusive start, exclusive end).
    fn years(&self) -> (i32, i32) {
        let stamped = self.stamped.or(self.last).unwrap_or(2000);
        let first = self.first.unwrap_or(stamped);
        let mut last = self
            .last
            .unwrap_or(stamped)
            .saturating_add(self.years_of_counted_series);
        if self.unbounded {
            last = last.max(stamped);
        }
        let end = last
            .saturating_add(YEARS_AFTER)
            .min(stamped.saturating_add(MAX_YEARS_AHEAD))
            .max(first.saturating_add(1));
        (first, end)
    }
}

/// Years a counted series can reach: COUNT × INTERVAL × the length of one step.
fn counted_years(freq: &ICalendarFrequency, count: u32, interval: Option<u16>) -> i32 {
    let steps = i64::from(count).saturating_mul(i64::from(interval.unwrap_or(1)));
    let per_year = match freq {
        ICalendarFrequency::Yearly => 1,
        ICalendarFrequency::Monthly => 12,
        ICalendarFrequency::Weekly => 52,
        ICalendarFrequency::Daily => 365,
        _ => 365 * 24,
    };
    i32::try_from(steps / per_year + 1)
        .unwrap_or(MAX_YEARS_AHEAD)
        .min(MAX_YEARS_AHEAD)
}

fn start_of_year(year: i32) -> i64 {
    NaiveDate::from_ymd_opt(year, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |d| d.and_utc().timestamp())
}

/// TZIDs used by `cal` outside VTIMEZONEs and not defined by one, in order of first use.
pub fn undefined_tzids(cal: &ICalendar) -> Vec<String> {
    let defined: Vec<&str> = cal
        .timezones()
        .filter_map(|tz| tz.property(&ICalendarProperty::Tzid))
        .filter_map(|e| e.values.first().and_then(ICalendarValue::as_text))
        .collect();
    let mut out: Vec<String> = Vec::new();
    for component in cal.components.iter().filter(|c| !is_timezone_part(c)) {
        for param in component.entries.iter().flat_map(|e| e.params.iter()) {
            if param.name != ICalendarParameterName::Tzid {
                continue;
            }
            if let Some(tzid) = param.value.as_text() {
                if !defined.contains(&tzid) && !out.iter().any(|t| t == tzid) {
                    out.push(tzid.to_string());
                }
            }
        }
    }
    out
}

fn is_timezone_part(c: &calcard::icalendar::ICalendarComponent) -> bool {
    matches!(
        c.component_type,
        ICalendarComponentType::VTimezone
            | ICalendarComponentType::Standard
            | ICalendarComponentType::Daylight
    )
}

fn span_of(cal: &ICalendar) -> Span {
    let mut span = Span::default();
    for component in cal.components.iter().filter(|c| !is_timezone_part(c)) {
        for entry in &component.entries {
            match &entry.name {
                ICalendarProperty::Dtstamp => {
                    for value in &entry.values {
                        if let ICalendarValue::PartialDateTime(dt) = value {
                            if let Some(year) = dt.year.map(i32::from) {
                                span.stamped = Some(span.stamped.map_or(year, |y| y.max(year)));
                            }
                        }
                    }
                }
                ICalendarProperty::Rrule => {
                    for value in &entry.values {
                        if let ICalendarValue::RecurrenceRule(rule) = value {
                            match (&rule.until, rule.count) {
                                (Some(until), _) => span.see(until.year),
                                (None, Some(count)) => {
                                    span.years_of_counted_series = span
                                        .years_of_counted_series
                                        .max(counted_years(&rule.freq, count, rule.interval));
                                }
                                (None, None) => span.unbounded = true,
                            }
                        }
                    }
                }
                ICalendarProperty::Dtstart
                | ICalendarProperty::Dtend
                | ICalendarProperty::Due
                | ICalendarProperty::RecurrenceId
                | ICalendarProperty::Exdate
                | ICalendarProperty::Rdate => {
                    for value in &entry.values {
                        match value {
                            ICalendarValue::PartialDateTime(dt) => span.see(dt.year),
                            ICalendarValue::Period(ICalendarPeriod::Range { start, end }) => {
                                span.see(start.year);
                                span.see(end.year);
                            }
                            ICalendarValue::Period(ICalendarPeriod::Duration { start, .. }) => {
                                span.see(start.year);
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    span
}

/// Adds a generated VTIMEZONE, before the other components, for each TZID `cal` uses
/// without defining it and that names a known zone. Returns how many were added.
pub fn add_missing_timezones(cal: &mut ICalendar) -> usize {
    let missing = undefined_tzids(cal);
    if missing.is_empty() {
        return 0;
    }
    let (first, end) = span_of(cal).years();
    // One day of margin so the first observance covers a date on 1 January.
    let from = start_of_year(first).saturating_sub(86_400);
    let to = start_of_year(end);
    missing
        .iter()
        .filter(|tzid| cal.add_timezone(tzid, from, to).is_some())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar(lines: &str) -> ICalendar {
        ICalendar::parse(format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n\
             UID:u\r\nDTSTAMP:20300101T090000Z\r\n{lines}END:VEVENT\r\nEND:VCALENDAR\r\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_berlin_lunch_without_vtimezone_gets_one_that_says_utc_plus_two_in_june() {
        let mut cal = calendar(
            "DTSTART;TZID=Europe/Berlin:20300610T123000\r\n\
             DTEND;TZID=Europe/Berlin:20300610T133000\r\n",
        );
        assert_eq!(add_missing_timezones(&mut cal), 1);
        assert!(undefined_tzids(&cal).is_empty());
        let text = cal.to_string();
        let vtimezone = text.find("BEGIN:VTIMEZONE").unwrap();
        assert!(vtimezone < text.find("BEGIN:VEVENT").unwrap(), "{text}");
        assert!(text.contains("TZOFFSETTO:+0200"), "{text}");
        assert!(text.contains("RRULE:FREQ=YEARLY"), "{text}");
        // Adding again adds nothing.
        assert_eq!(add_missing_timezones(&mut cal), 0);
    }

    #[test]
    fn a_windows_zone_name_keeps_its_name_and_gets_the_iana_rules() {
        let mut cal = calendar("DTSTART;TZID=W. Europe Standard Time:20300610T123000\r\n");
        assert_eq!(add_missing_timezones(&mut cal), 1);
        let text = cal.to_string();
        assert!(text.contains("TZID:W. Europe Standard Time"), "{text}");
        assert!(text.contains("TZOFFSETFROM:+0100"), "{text}");
        assert!(text.contains("TZOFFSETTO:+0200"), "{text}");
    }

    #[test]
    fn defined_floating_utc_and_unknown_zones_get_nothing() {
        let mut cal = calendar(
            "DTSTART:20300610T123000\r\nDTEND:20300610T133000Z\r\n\
             EXDATE;TZID=Nowhere/Special:20300617T123000\r\n",
        );
        assert_eq!(add_missing_timezones(&mut cal), 0);
        assert!(!cal.to_string().contains("VTIMEZONE"));
    }

    #[test]
    fn the_same_calendar_always_gets_the_same_definition() {
        let lines = "DTSTART;TZID=America/New_York:20300610T123000\r\nRRULE:FREQ=WEEKLY\r\n";
        let mut a = calendar(lines);
        let mut b = calendar(lines);
        add_missing_timezones(&mut a);
        add_missing_timezones(&mut b);
        assert_eq!(a.to_string(), b.to_string());
    }
}
