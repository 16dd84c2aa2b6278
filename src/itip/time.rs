//! Date-time values as instants.
//!
//! Scheduling compares times by meaning: `DTSTART;TZID=Europe/Berlin:20240101T100000` and
//! `DTSTART:20240101T090000Z` are the same start. These helpers turn iCalendar date values
//! into UTC timestamps, resolving TZIDs through the object's own VTIMEZONEs (or the IANA
//! and Windows names calcard knows); floating times are read as UTC.

use calcard::common::timezone::Tz;
use calcard::common::PartialDateTime;
use calcard::icalendar::timezone::TzResolver;
use calcard::icalendar::{ICalendar, ICalendarEntry, ICalendarValue};
use chrono::TimeZone;

/// Resolves the TZIDs of one calendar object.
pub struct TimeResolver<'a> {
    resolver: TzResolver<&'a str>,
}

impl<'a> TimeResolver<'a> {
    /// Builds a resolver from the VTIMEZONEs of `cal`.
    pub fn new(cal: &'a ICalendar) -> Self {
        TimeResolver {
            resolver: cal.build_tz_resolver(),
        }
    }

    /// The UTC timestamp of a date or date-time written with an optional TZID.
    pub fn timestamp(&self, dt: &PartialDateTime, tz_id: Option<&str>) -> Option<i64> {
        let result = dt.to_date_time()?;
        if result.offset.is_some() {
            return result.to_date_time_with_tz(Tz::UTC).map(|d| d.timestamp());
        }
        let tz = self.resolver.resolve_or_default(tz_id);
        match tz.from_local_datetime(&result.date_time).earliest() {
            Some(local) => Some(local.timestamp()),
            // A local time inside a DST gap: fall back to the wall-clock reading.
            None => Some(result.date_time.and_utc().timestamp()),
        }
    }

    /// The timestamp of the first value of `entry`, if it is a date or date-time.
    pub fn entry_timestamp(&self, entry: &ICalendarEntry) -> Option<i64> {
        match entry.values.first()? {
            ICalendarValue::PartialDateTime(dt) => self.timestamp(dt, entry.tz_id()),
            _ => None,
        }
    }
}

/// A UTC timestamp as an iCalendar UTC date-time (`20240101T090000Z`), for DTSTAMP.
pub fn utc_date_time(timestamp: i64) -> PartialDateTime {
    PartialDateTime::from_utc_timestamp(timestamp)
}

/// Parses `YYYYMMDDTHHMMSSZ` into a timestamp; used by the CLI and scenario runner.
pub fn parse_utc_date_time(text: &str) -> Option<i64> {
    let dt = chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y%m%dT%H%M%SZ").ok()?;
    Some(dt.and_utc().timestamp())
}
