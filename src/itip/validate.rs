//! The RFC 5545 structure every calendar file must have, and the repairs with one
//! safe reading.
//!
//! A file that does not hold this structure may make the next client or parser that
//! reads it choke, so imipd never writes one it made worse (debug builds assert it
//! before every store write, see `store::write`), and received mail is repaired or
//! refused before it reaches a calendar ([`repair`]). [`problems`] checks:
//!
//! - VERSION and PRODID, once each, in the VCALENDAR (RFC 5545 §3.6);
//! - no METHOD in a stored object (RFC 4791 §4.1, RFC 6638: METHOD is for messages);
//! - one DTSTART per VEVENT (a message that creates nothing, such as a REPLY, may omit
//!   it), at most one in a VTODO or VJOURNAL;
//! - DTEND or DURATION in a VEVENT, DUE or DURATION in a VTODO, never both (§3.6.1,
//!   §3.6.2), each at most once;
//! - every DATE and DATE-TIME value readable (DTSTAMP, DTSTART, DTEND, DUE,
//!   RECURRENCE-ID, EXDATE, RDATE, CREATED, LAST-MODIFIED, COMPLETED);
//! - a VTIMEZONE for every TZID (§3.2.19).

use super::vtimezone::{add_missing_timezones, undefined_tzids};
use calcard::common::PartialDateTime;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarEntry, ICalendarProperty,
    ICalendarValue,
};
use chrono::NaiveDate;

/// What the calendar is: a stored object, or an iTIP message (which carries METHOD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A file in a user's store: no METHOD, every VEVENT has its DTSTART.
    Stored,
    /// A message that may create or replace a copy (REQUEST, ADD, PUBLISH): METHOD
    /// allowed, every VEVENT has its DTSTART.
    CreatingMessage,
    /// Any other message (REPLY, CANCEL, ...): METHOD allowed, DTSTART optional.
    Message,
}

/// A calendar that does not have the structure RFC 5545 requires, with every reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the calendar is not valid RFC 5545: {}", .problems.join("; "))]
pub struct Invalid {
    /// One line per problem, e.g. `VEVENT "x": DTSTART 20120732T100000Z is no date`.
    pub problems: Vec<String>,
}

/// Every way `cal` departs from the structure described in the module doc.
pub fn problems(cal: &ICalendar, kind: Kind) -> Vec<String> {
    let mut out = Vec::new();
    let Some(root) = cal
        .components
        .first()
        .filter(|c| c.component_type == ICalendarComponentType::VCalendar)
    else {
        return vec!["no VCALENDAR".to_string()];
    };
    for property in [ICalendarProperty::Version, ICalendarProperty::Prodid] {
        match count(root, &property) {
            1 => {}
            0 => out.push(format!("the VCALENDAR has no {}", property.as_str())),
            n => out.push(format!("the VCALENDAR has {n} {}", property.as_str())),
        }
    }
    if kind == Kind::Stored && count(root, &ICalendarProperty::Method) > 0 {
        out.push("a stored object carries METHOD".to_string());
    }
    for component in &cal.components {
        let name = component_name(component);
        let once = |property: ICalendarProperty, out: &mut Vec<String>| {
            let n = count(component, &property);
            if n > 1 {
                out.push(format!("{name}: {n} {}", property.as_str()));
            }
            n
        };
        // Per type: whether a DTSTART is required, and the end that excludes DURATION.
        let rule = match component.component_type {
            ICalendarComponentType::VEvent => {
                Some((kind != Kind::Message, Some(ICalendarProperty::Dtend)))
            }
            ICalendarComponentType::VTodo => Some((false, Some(ICalendarProperty::Due))),
            ICalendarComponentType::VJournal => Some((false, None)),
            _ => None,
        };
        if let Some((start_required, end)) = rule {
            let starts = once(ICalendarProperty::Dtstart, &mut out);
            if starts == 0 && start_required {
                out.push(format!("{name}: no DTSTART"));
            }
            if let Some(end) = end {
                let ends = once(end.clone(), &mut out);
                let durations = once(ICalendarProperty::Duration, &mut out);
                if ends > 0 && durations > 0 {
                    out.push(format!("{name}: both {} and DURATION", end.as_str()));
                }
            }
        }
        for entry in component
            .entries
            .iter()
            .filter(|e| is_date_property(&e.name))
        {
            for value in &entry.values {
                if !readable_date(value) {
                    out.push(format!(
                        "{name}: {} {} is not a DATE or DATE-TIME",
                        entry.name.as_str(),
                        shown(value)
                    ));
                }
            }
        }
    }
    for tzid in undefined_tzids(cal) {
        out.push(format!("TZID {tzid:?} has no VTIMEZONE"));
    }
    out
}

/// [`problems`] as a result.
pub fn check(cal: &ICalendar, kind: Kind) -> Result<(), Invalid> {
    let problems = problems(cal, kind);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Invalid { problems })
    }
}

/// Parses `text` and checks it as a stored object: what the stores' test helpers and
/// the debug assertion before every write call.
pub fn check_text(text: &str) -> Result<(), Invalid> {
    let cal = ICalendar::parse(text).map_err(|_| Invalid {
        problems: vec!["not parseable as iCalendar".to_string()],
    })?;
    check(&cal, Kind::Stored)
}

/// Repairs in `cal` what has one safe reading, then checks it: `Ok` lists what was
/// repaired (for the verdict), `Err` what remains wrong. `now` (the receive time)
/// replaces an unreadable DTSTAMP.
///
/// - no VERSION or PRODID: `VERSION:2.0`, `PRODID:-//imipd//repaired//EN` are added;
/// - DTEND (DUE) and DURATION both: DTEND (DUE) is kept, DURATION dropped: the end a
///   client shows as such is the one written as an end;
/// - an unreadable DTSTAMP: the receive time (it only orders messages, and this one
///   was received now);
/// - an unreadable CREATED or LAST-MODIFIED: dropped (informational, optional);
/// - a TZID without VTIMEZONE that names a known zone: its VTIMEZONE is generated.
///
/// An unreadable DTSTART, DTEND, DUE, RECURRENCE-ID, EXDATE or RDATE, a missing
/// DTSTART, or a TZID nobody knows has no safe reading: refused.
pub fn repair(cal: &mut ICalendar, kind: Kind, now: i64) -> Result<Vec<String>, Invalid> {
    let mut done = Vec::new();
    if let Some(root) = cal
        .components
        .first_mut()
        .filter(|c| c.component_type == ICalendarComponentType::VCalendar)
    {
        if count(root, &ICalendarProperty::Version) == 0 {
            root.entries.insert(
                0,
                ICalendarEntry::new(ICalendarProperty::Version)
                    .with_value(ICalendarValue::Text("2.0".into())),
            );
            done.push("added VERSION:2.0".to_string());
        }
        if count(root, &ICalendarProperty::Prodid) == 0 {
            root.entries.insert(
                1.min(root.entries.len()),
                ICalendarEntry::new(ICalendarProperty::Prodid)
                    .with_value(ICalendarValue::Text("-//imipd//repaired//EN".into())),
            );
            done.push("added PRODID".to_string());
        }
    }
    let stamp = utc_stamp(now);
    for component in cal.components.iter_mut() {
        let name = component_name(component);
        let end = match component.component_type {
            ICalendarComponentType::VEvent => Some(ICalendarProperty::Dtend),
            ICalendarComponentType::VTodo => Some(ICalendarProperty::Due),
            _ => None,
        };
        if let Some(end) = end {
            if count(component, &end) > 0 && count(component, &ICalendarProperty::Duration) > 0 {
                component
                    .entries
                    .retain(|e| e.name != ICalendarProperty::Duration);
                done.push(format!(
                    "{name}: kept {} and dropped DURATION (only one may be given)",
                    end.as_str()
                ));
            }
        }
        let before = component.entries.len();
        component.entries.retain(|e| {
            !matches!(
                e.name,
                ICalendarProperty::Created | ICalendarProperty::LastModified
            ) || e.values.iter().all(readable_date)
        });
        if component.entries.len() < before {
            done.push(format!(
                "{name}: dropped an unreadable CREATED or LAST-MODIFIED"
            ));
        }
        if let Some(stamp) = &stamp {
            for entry in component.entries.iter_mut().filter(|e| {
                e.name == ICalendarProperty::Dtstamp && !e.values.iter().all(readable_date)
            }) {
                done.push(format!(
                    "{name}: DTSTAMP {} replaced by the receive time",
                    entry.values.first().map(shown).unwrap_or_default()
                ));
                entry.params.clear();
                entry.values = vec![ICalendarValue::PartialDateTime(Box::new(stamp.clone()))];
            }
        }
    }
    if add_missing_timezones(cal) > 0 {
        done.push("added the VTIMEZONEs of known zones".to_string());
    }
    check(cal, kind).map(|()| done)
}

fn count(component: &ICalendarComponent, property: &ICalendarProperty) -> usize {
    component
        .entries
        .iter()
        .filter(|e| e.name == *property)
        .count()
}

/// `VEVENT "uid"` (with the RECURRENCE-ID of an override), or the component's name.
fn component_name(component: &ICalendarComponent) -> String {
    let text = |p: ICalendarProperty| {
        component
            .entries
            .iter()
            .find(|e| e.name == p)
            .and_then(|e| e.values.first())
            .map(shown)
    };
    let kind = component.component_type.as_str();
    match (
        text(ICalendarProperty::Uid),
        text(ICalendarProperty::RecurrenceId),
    ) {
        (Some(uid), Some(rid)) => format!("{kind} {uid:?} at {rid}"),
        (Some(uid), None) => format!("{kind} {uid:?}"),
        _ => kind.to_string(),
    }
}

fn is_date_property(name: &ICalendarProperty) -> bool {
    matches!(
        name,
        ICalendarProperty::Dtstamp
            | ICalendarProperty::Dtstart
            | ICalendarProperty::Dtend
            | ICalendarProperty::Due
            | ICalendarProperty::RecurrenceId
            | ICalendarProperty::Exdate
            | ICalendarProperty::Rdate
            | ICalendarProperty::Created
            | ICalendarProperty::LastModified
            | ICalendarProperty::Completed
    )
}

/// A DATE, a DATE-TIME, or (RDATE) a PERIOD, each with fields in range.
fn readable_date(value: &ICalendarValue) -> bool {
    match value {
        ICalendarValue::PartialDateTime(dt) => valid_date_time(dt),
        ICalendarValue::Period(_) => true,
        _ => false,
    }
}

fn valid_date_time(dt: &PartialDateTime) -> bool {
    let (Some(year), Some(month), Some(day)) = (dt.year, dt.month, dt.day) else {
        return false;
    };
    if NaiveDate::from_ymd_opt(i32::from(year), u32::from(month), u32::from(day)).is_none() {
        return false;
    }
    match (dt.hour, dt.minute, dt.second) {
        (None, None, None) => true,
        // RFC 5545 §3.3.12 allows a leap second (60).
        (Some(h), Some(m), Some(s)) => h < 24 && m < 60 && s <= 60,
        _ => false,
    }
}

/// A value as written, for messages.
fn shown(value: &ICalendarValue) -> String {
    match value {
        ICalendarValue::Text(t) => t.clone(),
        ICalendarValue::PartialDateTime(dt) => {
            let two = |v: Option<u8>| v.map_or("??".to_string(), |v| format!("{v:02}"));
            let mut s = format!(
                "{:04}{}{}",
                dt.year.unwrap_or(0),
                two(dt.month),
                two(dt.day)
            );
            if dt.hour.is_some() {
                s.push_str(&format!(
                    "T{}{}{}",
                    two(dt.hour),
                    two(dt.minute),
                    two(dt.second)
                ));
            }
            s
        }
        other => format!("{other:?}"),
    }
}

/// `now` as a UTC DATE-TIME value.
fn utc_stamp(now: i64) -> Option<PartialDateTime> {
    use chrono::{Datelike, Timelike};
    let t = chrono::DateTime::from_timestamp(now, 0)?;
    Some(PartialDateTime {
        year: u16::try_from(t.year()).ok(),
        month: u8::try_from(t.month()).ok(),
        day: u8::try_from(t.day()).ok(),
        hour: u8::try_from(t.hour()).ok(),
        minute: u8::try_from(t.minute()).ok(),
        second: u8::try_from(t.second()).ok(),
        tz_hour: Some(0),
        tz_minute: Some(0),
        tz_minus: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ICalendar {
        ICalendar::parse(text).expect("parses")
    }

    const NOW: i64 = 1_900_000_000; // 2030-03-17T17:46:40Z

    #[test]
    fn a_complete_object_has_no_problem() {
        let cal = parse(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//T//EN\r\nBEGIN:VEVENT\r\nUID:a\r\n\
             DTSTAMP:20300101T000000Z\r\nDTSTART;VALUE=DATE:20300102\r\nRDATE;VALUE=PERIOD:\
             20300105T100000Z/PT1H\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        );
        assert_eq!(problems(&cal, Kind::Stored), Vec::<String>::new());
    }

    #[test]
    fn each_rule_is_checked() {
        let cal = parse(
            "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:a\r\n\
             DTSTAMP:20120713T1254140\r\nDTSTART;TZID=Nowhere/Else:20120732T100000\r\n\
             DTEND:20120801T100000Z\r\nDURATION:PT1H\r\nEND:VEVENT\r\nBEGIN:VTODO\r\nUID:b\r\n\
             DTSTAMP:20300101T000000Z\r\nDUE:20300101T000000Z\r\nDURATION:PT1H\r\nEND:VTODO\r\n\
             END:VCALENDAR\r\n",
        );
        let found = problems(&cal, Kind::Stored).join("\n");
        for expected in [
            "no VERSION",
            "no PRODID",
            "carries METHOD",
            "both DTEND and DURATION",
            "both DUE and DURATION",
            "DTSTAMP 20120713T1254140 is not",
            "DTSTART 20120732T100000 is not",
            "TZID \"Nowhere/Else\" has no VTIMEZONE",
        ] {
            assert!(found.contains(expected), "{expected} missing in:\n{found}");
        }
        // A message may carry METHOD; only messages that create need DTSTART.
        let reply = parse(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//T//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n\
             UID:a\r\nDTSTAMP:20300101T000000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        );
        assert!(check(&reply, Kind::Message).is_ok());
        assert!(check(&reply, Kind::CreatingMessage).is_err());
    }

    #[test]
    fn what_has_one_reading_is_repaired_and_said() {
        let mut cal = parse(
            "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:a\r\n\
             DTSTAMP:20120713T1254140\r\nDTSTART:20300101T100000Z\r\nDTEND:20300101T110000Z\r\n\
             DURATION:PT2H\r\nCREATED:yesterday\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        );
        let done = repair(&mut cal, Kind::CreatingMessage, NOW).expect("repaired");
        let said = done.join("\n");
        assert!(
            said.contains("VERSION") && said.contains("PRODID"),
            "{said}"
        );
        assert!(said.contains("kept DTEND and dropped DURATION"), "{said}");
        assert!(said.contains("DTSTAMP 20120713T1254140 replaced"), "{said}");
        let text = cal.to_string();
        assert!(text.contains("DTSTAMP:20300317T174640Z"), "{text}");
        assert!(text.contains("DTEND:20300101T110000Z") && !text.contains("DURATION"));
        assert!(!text.contains("CREATED"));
        assert!(check_text(&text.replace("METHOD:REQUEST\r\n", "")).is_ok());
    }

    #[test]
    fn what_has_no_safe_reading_is_refused() {
        let mut cal = parse(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//T//EN\r\nBEGIN:VEVENT\r\nUID:a\r\n\
             DTSTAMP:20300101T000000Z\r\nDTSTART:20300230T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        );
        let err = repair(&mut cal, Kind::CreatingMessage, NOW).expect_err("refused");
        assert!(err.to_string().contains("DTSTART 20300230T100000"), "{err}");
    }
}
