//! "What changed" lines for updated invitations: `Start: old → new`.
//!
//! The engine reports each change as a property name with the old and new value as
//! iCalendar text ([`FieldChange`]; dates with their TZID or VALUE=DATE, one property
//! line per text line). Dates are shown the way the "When" line shows them: in the
//! event's zone and the reader's language, all-day values as dates, an all-day End as
//! its last day. Start comes before End. Text values are unescaped; anything else is
//! shown as written. Deciding what counts as a change is the engine's job.

use super::error::ImipError;
use super::i18n::{Arg, Catalogue, Language};
use super::when::{format_span, Moment};
use crate::itip::FieldChange;
use calcard::icalendar::timezone::TzResolver;
use calcard::icalendar::ICalendar;

/// One change, ready for the templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangeLine {
    /// The field's name in the reader's language.
    pub field: String,
    /// The old value, or the catalogue's "(none)".
    pub old: String,
    /// The new value, or the catalogue's "(none)".
    pub new: String,
}

/// Properties whose values are dates or date-times.
const DATE_PROPERTIES: [&str; 6] = [
    "DTSTART",
    "DTEND",
    "DUE",
    "RECURRENCE-ID",
    "EXDATE",
    "RDATE",
];

/// Describes `changes` for a reader of `language`; `cal` supplies the VTIMEZONEs.
pub(crate) fn describe(
    catalogue: &Catalogue,
    language: Language,
    cal: &ICalendar,
    changes: &[FieldChange],
) -> Result<Vec<ChangeLine>, ImipError> {
    let resolver = cal.build_tz_resolver();
    let none = catalogue.text(language, "no-value", &[])?;
    let mut changes: Vec<&FieldChange> = changes.iter().collect();
    changes.sort_by_key(|c| reading_order(&c.property));
    changes
        .into_iter()
        .map(|change| {
            let property = change.property.to_ascii_uppercase();
            let value = |v: &Option<String>| -> Result<String, ImipError> {
                match v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                    None => Ok(none.clone()),
                    Some(v) => format_value(catalogue, language, &resolver, &property, v),
                }
            };
            Ok(ChangeLine {
                field: catalogue.text(language, "field", &[("property", Arg::Str(&property))])?,
                old: value(&change.old)?,
                new: value(&change.new)?,
            })
        })
        .collect()
}

/// Where a property's line goes in "What changed": Start before End, the times first
/// (as the When line reads), everything else after them in the engine's order.
fn reading_order(property: &str) -> usize {
    const ORDER: [&str; 8] = [
        "DTSTART",
        "DTEND",
        "DUE",
        "DURATION",
        "RRULE",
        "RDATE",
        "EXDATE",
        "RECURRENCE-ID",
    ];
    ORDER
        .iter()
        .position(|p| p.eq_ignore_ascii_case(property))
        .unwrap_or(ORDER.len())
}

fn format_value(
    catalogue: &Catalogue,
    language: Language,
    resolver: &TzResolver<&str>,
    property: &str,
    value: &str,
) -> Result<String, ImipError> {
    if !DATE_PROPERTIES.contains(&property) {
        return Ok(unescape_text(value));
    }
    // One property line per text line (several EXDATE lines), each with its values.
    let mut shown = Vec::new();
    for line in value.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match parse_date_values(property, line, resolver) {
            Some(moments) => {
                for moment in moments {
                    // An all-day End is shown as its last day, as the When line does.
                    let moment = if property == "DTEND" {
                        moment.into_last_day()
                    } else {
                        moment
                    };
                    shown.push(format_span(catalogue, language, &moment, None)?);
                }
            }
            None => shown.push(unescape_text(line)),
        }
    }
    Ok(shown.join(", "))
}

/// Parses `20090602T160000Z`, `TZID=Europe/Berlin:20090602T160000,20090603T160000`
/// or `VALUE=DATE:20090602` as the value of one `property` line.
pub(crate) fn parse_date_values(
    property: &str,
    value: &str,
    resolver: &TzResolver<&str>,
) -> Option<Vec<Moment>> {
    let value = value.trim_start_matches(';');
    let line = match value.rsplit_once(':') {
        Some((params, _)) if params.contains('=') => format!("{property};{value}"),
        _ => format!("{property}:{value}"),
    };
    if line.contains(['\r', '\n']) {
        return None;
    }
    let text =
        format!("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n{line}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n");
    let cal = ICalendar::parse(&text).ok()?;
    let event = cal.components.get(1)?;
    let entry = event.entries.first()?;
    let moments: Option<Vec<Moment>> = entry
        .values
        .iter()
        .map(|v| {
            let mut single = entry.clone();
            single.values = vec![v.clone()];
            Moment::from_entry(&single, resolver)
        })
        .collect();
    moments.filter(|m| !m.is_empty())
}

/// Undoes iCalendar TEXT escaping (`\n`, `\,`, `\;`, `\\`).
fn unescape_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'N') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(property: &str, old: Option<&str>, new: Option<&str>) -> FieldChange {
        FieldChange {
            property: property.into(),
            old: old.map(Into::into),
            new: new.map(Into::into),
        }
    }

    /// The lines describing `changes` of an empty calendar in `language`.
    fn describe_in(language: Language, changes: &[FieldChange]) -> Vec<ChangeLine> {
        let cal = ICalendar::parse("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n").unwrap();
        describe(Catalogue::get().unwrap(), language, &cal, changes).unwrap()
    }

    #[test]
    fn dates_text_and_missing_values() {
        let lines = describe_in(
            Language::En,
            &[
                change(
                    "DTSTART",
                    Some("20090602T160000Z"),
                    Some("TZID=Europe/Berlin:20090603T090000"),
                ),
                change("LOCATION", Some("Room 1\\, 2nd floor"), None),
                change("X-FOO", None, Some("bar")),
            ],
        );
        assert_eq!(
            lines[0],
            ChangeLine {
                field: "Start".into(),
                old: "Tue 2 Jun 2009 16:00 (UTC)".into(),
                new: "Wed 3 Jun 2009 09:00 (Europe/Berlin)".into(),
            }
        );
        assert_eq!(lines[1].old, "Room 1, 2nd floor");
        assert_eq!(lines[1].new, "(none)");
        assert_eq!(lines[2].field, "X-FOO");
    }

    #[test]
    fn several_exdate_lines_and_values_are_each_shown_in_their_zone_start_first() {
        let lines = describe_in(
            Language::En,
            &[
                change(
                    "EXDATE",
                    None,
                    Some("TZID=Europe/Berlin:20300617T123000,20300624T123000\nVALUE=DATE:20300701"),
                ),
                change(
                    "DTEND",
                    Some("VALUE=DATE:20300611"),
                    Some("VALUE=DATE:20300613"),
                ),
                change(
                    "DTSTART",
                    Some("VALUE=DATE:20300610"),
                    Some("VALUE=DATE:20300612"),
                ),
            ],
        );
        let fields: Vec<&str> = lines.iter().map(|l| l.field.as_str()).collect();
        assert_eq!(fields[..2], ["Start", "End"]);
        assert_eq!(lines[1].old, "Mon 10 Jun 2030");
        assert_eq!(lines[1].new, "Wed 12 Jun 2030");
        assert_eq!(
            lines[2].new,
            "Mon 17 Jun 2030 12:30 (Europe/Berlin), Mon 24 Jun 2030 12:30 (Europe/Berlin), \
             Mon 1 Jul 2030"
        );
    }

    #[test]
    fn field_names_are_translated() {
        let lines = describe_in(Language::Fr, &[change("location", Some("A"), Some("B"))]);
        assert_eq!(lines[0].field, "Lieu");
    }
}
