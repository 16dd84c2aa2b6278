//! "When" as a person reads it: `Tue 2 Jun 2009 16:00–17:00 (Europe/Berlin)`.
//!
//! Times are shown in the event's own time zone (the TZID of DTSTART, resolved with
//! calcard's resolver, which also knows Windows zone names such as
//! `W. Europe Standard Time`), never in the server's. An end in another zone is
//! converted into the start's zone. Words and order come from the catalogue.

use super::error::ImipError;
use super::i18n::{Arg, Catalogue, Language};
use calcard::common::timezone::Tz;
use calcard::common::PartialDateTime;
use calcard::icalendar::timezone::TzResolver;
use calcard::icalendar::{ICalendarComponent, ICalendarEntry, ICalendarProperty, ICalendarValue};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, TimeZone};

/// A DTSTART-like value with the zone it is written in.
#[derive(Debug, Clone)]
pub(crate) struct Moment {
    /// Wall-clock time in `tz` (midnight for dates).
    local: NaiveDateTime,
    /// True for DATE values (all-day).
    all_day: bool,
    /// The zone, when it is known; `None` for floating times and unknown TZIDs.
    tz: Option<Tz>,
    /// What the reader sees after the time: `UTC`, `Europe/Berlin`, or the raw TZID.
    label: Option<String>,
}

impl Moment {
    /// Reads a date or date-time property.
    pub(crate) fn from_entry(entry: &ICalendarEntry, resolver: &TzResolver<&str>) -> Option<Self> {
        let value = entry.values.first()?.as_partial_date_time()?;
        Moment::from_value(value, entry.tz_id(), resolver)
    }

    /// Reads a date or date-time value written with `tz_id` (an RRULE's UNTIL has none).
    pub(crate) fn from_value(
        value: &PartialDateTime,
        tz_id: Option<&str>,
        resolver: &TzResolver<&str>,
    ) -> Option<Self> {
        let result = value.to_date_time()?;
        if !value.has_time() {
            return Some(Moment {
                local: result.date_time,
                all_day: true,
                tz: None,
                label: None,
            });
        }
        let (tz, label) = if let Some(offset) = result.offset {
            if offset.local_minus_utc() == 0 {
                (Some(Tz::UTC), Some("UTC".to_string()))
            } else {
                (Some(Tz::Fixed(offset)), Some(format!("UTC{offset}")))
            }
        } else if let Some(tzid) = tz_id {
            match resolver.resolve(tzid) {
                Some(tz) if tz.is_utc() => (Some(tz), Some("UTC".to_string())),
                Some(tz) => (
                    Some(tz),
                    Some(tz.name().map_or(tzid.to_string(), |n| n.into_owned())),
                ),
                None => (None, Some(tzid.to_string())),
            }
        } else {
            (None, None)
        };
        Some(Moment {
            local: result.date_time,
            all_day: false,
            tz,
            label,
        })
    }

    /// The day a person names as the end of an all-day DTEND: the day before it, since
    /// DTEND is exclusive (a one-day event on the 12th ends on the 13th). Times stay.
    pub(crate) fn into_last_day(self) -> Moment {
        if !self.all_day {
            return self;
        }
        Moment {
            local: self
                .local
                .checked_sub_signed(TimeDelta::days(1))
                .unwrap_or(self.local),
            ..self
        }
    }

    /// `instant` as a wall-clock time in `like`'s zone (as written, when that zone is
    /// unknown or floating), with `like`'s label: an occurrence of a series read in the
    /// series' own zone.
    pub(crate) fn at_instant(instant: &DateTime<Tz>, like: &Moment) -> Moment {
        let local = match like.tz {
            Some(tz) => instant.with_timezone(&tz).naive_local(),
            None => instant.naive_local(),
        };
        Moment {
            local,
            ..like.clone()
        }
    }

    /// This moment moved by `delta` of wall-clock time (an occurrence's end from its
    /// start and the series' length).
    pub(crate) fn shifted(&self, delta: TimeDelta) -> Moment {
        Moment {
            local: self.local.checked_add_signed(delta).unwrap_or(self.local),
            ..self.clone()
        }
    }

    /// The wall-clock time this moment shows (midnight for dates).
    pub(crate) fn local(&self) -> NaiveDateTime {
        self.local
    }

    /// True for a date without a time (all-day).
    pub(crate) fn is_all_day(&self) -> bool {
        self.all_day
    }

    /// Seconds since the epoch; floating times and unknown zones are read as UTC.
    pub(crate) fn timestamp(&self) -> i64 {
        self.tz
            .and_then(|tz| tz.from_local_datetime(&self.local).earliest())
            .map_or_else(|| self.local.and_utc().timestamp(), |t| t.timestamp())
    }

    /// This moment's wall-clock time in `other`'s zone, when both zones are known.
    pub(crate) fn local_in_zone_of(&self, other: &Moment) -> NaiveDateTime {
        if self.label == other.label {
            return self.local;
        }
        match (self.tz, other.tz) {
            (Some(from), Some(to)) => from
                .from_local_datetime(&self.local)
                .earliest()
                .map(|instant| instant.with_timezone(&to).naive_local())
                .unwrap_or(self.local),
            _ => self.local,
        }
    }
}

/// Start and end of a component, ready for [`format_span`].
pub(crate) fn component_span(
    component: &ICalendarComponent,
    resolver: &TzResolver<&str>,
) -> Option<(Moment, Option<Moment>)> {
    let start_entry = component
        .property(&ICalendarProperty::Dtstart)
        .or_else(|| component.property(&ICalendarProperty::RecurrenceId))?;
    let start = Moment::from_entry(start_entry, resolver)?;
    let end = component
        .property(&ICalendarProperty::Dtend)
        .or_else(|| component.property(&ICalendarProperty::Due))
        .and_then(|e| Moment::from_entry(e, resolver))
        .or_else(|| {
            let duration = component
                .property(&ICalendarProperty::Duration)
                .and_then(|e| e.values.first())
                .and_then(|v| match v {
                    ICalendarValue::Duration(d) => d.to_time_delta(),
                    _ => None,
                })?;
            Some(Moment {
                local: start.local.checked_add_signed(duration)?,
                ..start.clone()
            })
        });
    Some((start, end))
}

/// Formats a start (and optional end) for `language`.
pub(crate) fn format_span(
    catalogue: &Catalogue,
    language: Language,
    start: &Moment,
    end: Option<&Moment>,
) -> Result<String, ImipError> {
    let date = |d: NaiveDate| format_date(catalogue, language, d);
    let time = format_time;
    if start.all_day {
        let last_day = end
            .and_then(|e| e.local.date().checked_sub_signed(TimeDelta::days(1)))
            .filter(|last| *last > start.local.date());
        return match last_day {
            Some(last) => catalogue.text(
                language,
                "range",
                &[
                    ("start", Arg::Str(&date(start.local.date())?)),
                    ("end", Arg::Str(&date(last)?)),
                ],
            ),
            None => date(start.local.date()),
        };
    }
    let start_date = date(start.local.date())?;
    let date_time = |d: &str, t: &NaiveDateTime| {
        catalogue.text(
            language,
            "date-time",
            &[("date", Arg::Str(d)), ("time", Arg::Str(&time(t)))],
        )
    };
    let span = match end.map(|e| e.local_in_zone_of(start)) {
        Some(end) if end.date() == start.local.date() => catalogue.text(
            language,
            "range-same-day",
            &[
                ("date", Arg::Str(&start_date)),
                ("start", Arg::Str(&time(&start.local))),
                ("end", Arg::Str(&time(&end))),
            ],
        )?,
        Some(end) if end > start.local => catalogue.text(
            language,
            "range",
            &[
                ("start", Arg::Str(&date_time(&start_date, &start.local)?)),
                ("end", Arg::Str(&date_time(&date(end.date())?, &end)?)),
            ],
        )?,
        _ => date_time(&start_date, &start.local)?,
    };
    match &start.label {
        Some(zone) => catalogue.text(
            language,
            "with-zone",
            &[("when", Arg::Str(&span)), ("zone", Arg::Str(zone))],
        ),
        None => Ok(span),
    }
}

/// `16:00`: a time of day as every language here writes it.
pub(crate) fn format_time(time: &NaiveDateTime) -> String {
    time.format("%H:%M").to_string()
}

/// `Tue 2 Jun 2009` in `language`.
pub(crate) fn format_date(
    catalogue: &Catalogue,
    language: Language,
    date: NaiveDate,
) -> Result<String, ImipError> {
    let weekday = catalogue.text(
        language,
        "weekday",
        &[(
            "n",
            Arg::Num(i64::from(date.weekday().number_from_monday())),
        )],
    )?;
    let month = catalogue.text(
        language,
        "month",
        &[("n", Arg::Num(i64::from(date.month())))],
    )?;
    catalogue.text(
        language,
        "date",
        &[
            ("weekday", Arg::Str(&weekday)),
            ("day", Arg::Str(&date.day().to_string())),
            ("month", Arg::Str(&month)),
            ("year", Arg::Str(&date.year().to_string())),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use calcard::icalendar::ICalendar;

    fn when(event_lines: &str, language: Language) -> String {
        let text = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\n\
             BEGIN:STANDARD\r\nDTSTART:16010101T030000\r\nTZOFFSETFROM:+0200\r\n\
             TZOFFSETTO:+0100\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT\r\nUID:x\r\n\
             {event_lines}END:VEVENT\r\nEND:VCALENDAR\r\n"
        );
        let cal = ICalendar::parse(&text).unwrap();
        let resolver = cal.build_tz_resolver();
        let component = crate::imip::calendar::main_component(&cal).unwrap();
        let (start, end) = component_span(component, &resolver).unwrap();
        format_span(Catalogue::get().unwrap(), language, &start, end.as_ref()).unwrap()
    }

    /// Each row: the event's time lines, the language, what the "when" line says. A UTC
    /// event on one day in every language; a Windows zone name resolved and shown as
    /// IANA; an end in another zone shown in the start's; all-day and multi-day events;
    /// a DURATION across midnight (floating); an unknown zone named as written.
    #[test]
    fn when_lines() {
        let cases = [
            (
                "DTSTART:20090602T160000Z\r\nDTEND:20090602T170000Z\r\n",
                Language::En,
                "Tue 2 Jun 2009 16:00–17:00 (UTC)",
            ),
            (
                "DTSTART:20090602T160000Z\r\nDTEND:20090602T170000Z\r\n",
                Language::De,
                "Di. 2. Juni 2009 16:00–17:00 (UTC)",
            ),
            (
                "DTSTART:20090602T160000Z\r\nDTEND:20090602T170000Z\r\n",
                Language::Fr,
                "mar. 2 juin 2009 16:00–17:00 (UTC)",
            ),
            (
                "DTSTART;TZID=W. Europe Standard Time:20240115T090000\r\n\
                 DTEND;TZID=W. Europe Standard Time:20240115T100000\r\n",
                Language::En,
                "Mon 15 Jan 2024 09:00–10:00 (Europe/Berlin)",
            ),
            (
                "DTSTART;TZID=Europe/Paris:20240715T090000\r\nDTEND:20240715T090000Z\r\n",
                Language::En,
                "Mon 15 Jul 2024 09:00–11:00 (Europe/Paris)",
            ),
            (
                "DTSTART;VALUE=DATE:20240101\r\nDTEND;VALUE=DATE:20240102\r\n",
                Language::En,
                "Mon 1 Jan 2024",
            ),
            (
                "DTSTART;VALUE=DATE:20240101\r\nDTEND;VALUE=DATE:20240104\r\n",
                Language::De,
                "Mo. 1. Jan. 2024 – Mi. 3. Jan. 2024",
            ),
            (
                "DTSTART:20240101T220000\r\nDURATION:PT3H\r\n",
                Language::Fr,
                "lun. 1 janv. 2024 22:00 – mar. 2 janv. 2024 01:00",
            ),
            (
                "DTSTART;TZID=Mars/Olympus:20240101T100000\r\n",
                Language::En,
                "Mon 1 Jan 2024 10:00 (Mars/Olympus)",
            ),
        ];
        for (lines, language, expected) in cases {
            assert_eq!(when(lines, language), expected, "{lines}");
        }
    }
}
