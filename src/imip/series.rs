//! What a mail says about a recurring item beyond its first instance.
//!
//! - A series that already started is shown by its next occurrence: the When line and
//!   the subject name the next date a person can attend, and the Repeats line says
//!   since when it repeats ([`next_occurrence`], [`repeats`]). "Now" is the DTSTAMP
//!   the engine wrote into the message (the injected clock of the change), so the
//!   text is the same whenever the queue sends it and no clock is read here.
//! - The Repeats line names the end of the series: `Every week, 10 times` (COUNT) or
//!   `Every week, until Tue 9 Feb 2027` (UNTIL, as a day in the event's zone).
//! - A message about one occurrence ([`single_occurrence`]) says which one, and for a
//!   move, from when: the occurrence is its RECURRENCE-ID; where it was before is the
//!   engine's DTSTART change when one describes this override, else the
//!   RECURRENCE-ID itself (the first move of that occurrence).
//!
//! Occurrences are expanded by calcard's `expand_dates` (RRULE, RDATE, EXDATE and the
//! overrides in the message); nothing here computes recurrences by hand.

use super::calendar;
use super::changes::parse_date_values;
use super::error::ImipError;
use super::i18n::{Arg, Catalogue, Language};
use super::when::{component_span, format_date, format_time, Moment};
use crate::itip::FieldChange;
use calcard::common::timezone::Tz;
use calcard::icalendar::timezone::TzResolver;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarFrequency, ICalendarProperty, ICalendarRecurrenceRule,
    ICalendarStatus, ICalendarValue,
};

/// How many occurrences are expanded at most to find the next one: 27 years of a
/// daily series. A series running longer is shown by its first date, as before.
const EXPANSION_LIMIT: usize = 10_000;

/// The moment the message was made: the DTSTAMP of `component`.
pub(crate) fn stamped_at(
    component: &ICalendarComponent,
    resolver: &TzResolver<&str>,
) -> Option<i64> {
    component
        .property(&ICalendarProperty::Dtstamp)
        .and_then(|e| Moment::from_entry(e, resolver))
        .map(|m| m.timestamp())
}

/// Start and end of the next occurrence of `master` (a component of `cal` with RRULE
/// or RDATE) at or after `now`, when the series started before `now`; `None` when it
/// has not started, does not recur, is over or cannot be expanded. Cancelled
/// overrides are skipped; an override is shown with its own times.
pub(crate) fn next_occurrence(
    cal: &ICalendar,
    master: &ICalendarComponent,
    resolver: &TzResolver<&str>,
    now: i64,
) -> Option<(Moment, Option<Moment>)> {
    let recurs = master.has_property(&ICalendarProperty::Rrule)
        || master.has_property(&ICalendarProperty::Rdate);
    if !recurs || master.has_property(&ICalendarProperty::RecurrenceId) {
        return None;
    }
    let (first, first_end) = component_span(master, resolver)?;
    if !has_started(&first, now) {
        return None;
    }
    let expanded = cal.expand_dates(Tz::UTC, EXPANSION_LIMIT);
    if !expanded.errors.is_empty() {
        return None;
    }
    let master_id = cal
        .components
        .iter()
        .position(|c| std::ptr::eq(c, master))?;
    // calcard puts an override in place of its occurrence only when both have the same
    // SEQUENCE; any other override is listed beside it. The occurrences an override
    // replaces are taken out here whatever its SEQUENCE.
    let overridden: Vec<i64> = calendar::scheduling_components(cal)
        .into_iter()
        .filter_map(|c| c.property(&ICalendarProperty::RecurrenceId))
        .filter_map(|e| Moment::from_entry(e, resolver))
        .map(|m| m.timestamp())
        .collect();
    let next = expanded
        .events
        .iter()
        .filter(|e| {
            let id = e.comp_id as usize;
            if id == master_id {
                // A cancelled master is the series a CANCEL is about: its dates stand.
                return !overridden.contains(&e.start.timestamp());
            }
            let comp = cal.components.get(id);
            comp.is_some_and(|c| !matches!(c.status(), Some(ICalendarStatus::Cancelled)))
        })
        .map(|e| (e.comp_id as usize, Moment::at_instant(&e.start, &first)))
        .filter(|(_, start)| !has_started(start, now))
        .min_by_key(|(_, start)| start.timestamp())?;
    match next {
        (id, start) if id == master_id => {
            let end =
                first_end.map(|end| start.shifted(end.local_in_zone_of(&first) - first.local()));
            Some((start, end))
        }
        (id, _) => component_span(cal.components.get(id)?, resolver),
    }
}

/// True when `moment` is before `now`: a date counts from its day (in UTC), so an
/// all-day occurrence today is still to come.
fn has_started(moment: &Moment, now: i64) -> bool {
    if moment.is_all_day() {
        let today = chrono::DateTime::from_timestamp(now, 0).map(|t| t.date_naive());
        today.is_some_and(|today| moment.local().date() < today)
    } else {
        moment.timestamp() < now
    }
}

/// The Repeats line of `rule` for a series starting at `start`: how often, since when
/// (`since`, for a series shown by its next occurrence) and until when.
pub(crate) fn repeats(
    catalogue: &Catalogue,
    language: Language,
    rule: &ICalendarRecurrenceRule,
    start: &Moment,
    since: bool,
    resolver: &TzResolver<&str>,
) -> Result<String, ImipError> {
    let freq = match rule.freq {
        ICalendarFrequency::Daily => "daily",
        ICalendarFrequency::Weekly => "weekly",
        ICalendarFrequency::Monthly => "monthly",
        ICalendarFrequency::Yearly => "yearly",
        _ => "other",
    };
    // "Every 2 weeks" is exact only without BY* parts beyond one plain weekday
    // (Outlook writes BYDAY for every weekly rule); otherwise show the rule.
    let plain_weekday = rule.byday.len() == 1
        && rule.byday.iter().all(|d| d.ordwk.is_none())
        && rule.freq == ICalendarFrequency::Weekly;
    let simple = freq != "other"
        && (rule.byday.is_empty() || plain_weekday)
        && rule.bymonthday.is_empty()
        && rule.bymonth.is_empty()
        && rule.byyearday.is_empty()
        && rule.byweekno.is_empty()
        && rule.bysetpos.is_empty();
    let mut text = catalogue.text(
        language,
        "repeat",
        &[
            ("freq", Arg::Str(if simple { freq } else { "other" })),
            ("interval", Arg::Num(i64::from(rule.interval.unwrap_or(1)))),
            ("rule", Arg::Str(&rule.to_string())),
        ],
    )?;
    if since {
        let date = format_date(catalogue, language, start.local().date())?;
        text = catalogue.text(
            language,
            "repeat-since",
            &[("repeat", Arg::Str(&text)), ("date", Arg::Str(&date))],
        )?;
    }
    // A rule shown as written already says its COUNT or UNTIL.
    if !simple {
        return Ok(text);
    }
    if let Some(count) = rule.count {
        return catalogue.text(
            language,
            "repeat-count",
            &[
                ("repeat", Arg::Str(&text)),
                ("count", Arg::Num(i64::from(count))),
            ],
        );
    }
    let until = rule
        .until
        .as_ref()
        .and_then(|until| Moment::from_value(until, None, resolver));
    match until {
        Some(until) => {
            // The last day as the event's zone has it (UNTIL is written in UTC).
            let date = format_date(catalogue, language, until.local_in_zone_of(start).date())?;
            catalogue.text(
                language,
                "repeat-until",
                &[("repeat", Arg::Str(&text)), ("date", Arg::Str(&date))],
            )
        }
        None => Ok(text),
    }
}

/// The first sentence of a message about one occurrence: its catalogue id (after
/// `intro-`) and the arguments that sentence takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OccurrenceIntro {
    /// `update-moved-time`, `update-moved-day`, `update-occurrence` or
    /// `cancel-occurrence`.
    pub key: &'static str,
    /// The occurrence's day (`Tue 8 Dec 2026`).
    pub date: String,
    /// Where a moved occurrence was: a time on the same day, else a date and time.
    pub from: String,
    /// Where it is now, written as `from` is.
    pub to: String,
}

/// What a message about exactly one occurrence of a series says first, or `None` for
/// any other message. `resolver` is `cal`'s; `kind` is the mail's kind key (`update`,
/// `cancel`); `changes` the engine's list of what changed.
pub(crate) fn single_occurrence(
    catalogue: &Catalogue,
    language: Language,
    cal: &ICalendar,
    resolver: &TzResolver<&str>,
    kind: &str,
    changes: &[FieldChange],
) -> Result<Option<OccurrenceIntro>, ImipError> {
    let components = calendar::scheduling_components(cal);
    let [only] = components.as_slice() else {
        return Ok(None);
    };
    let Some(rid) = only
        .property(&ICalendarProperty::RecurrenceId)
        .and_then(|e| Moment::from_entry(e, resolver))
    else {
        return Ok(None);
    };
    let Some((start, _)) = component_span(only, resolver) else {
        return Ok(None);
    };
    let date_of = |m: &Moment| format_date(catalogue, language, m.local_in_zone_of(&start).date());
    let plain = |key| -> Result<Option<OccurrenceIntro>, ImipError> {
        Ok(Some(OccurrenceIntro {
            key,
            date: date_of(&rid)?,
            from: String::new(),
            to: String::new(),
        }))
    };
    match kind {
        "cancel" => return plain("cancel-occurrence"),
        "update" => {}
        _ => return Ok(None),
    }
    let before = moved_from(changes, &start, resolver).unwrap_or(rid.clone());
    if before.timestamp() == start.timestamp() && before.is_all_day() == start.is_all_day() {
        return plain("update-occurrence");
    }
    let before_local = before.local_in_zone_of(&start);
    let same_day = before_local.date() == start.local().date();
    if same_day && !start.is_all_day() && !before.is_all_day() {
        return Ok(Some(OccurrenceIntro {
            key: "update-moved-time",
            date: date_of(&before)?,
            from: format_time(&before_local),
            to: format_time(&start.local()),
        }));
    }
    let full = |m: &Moment, local| -> Result<String, ImipError> {
        let date = format_date(catalogue, language, chrono::NaiveDateTime::date(&local))?;
        if m.is_all_day() {
            return Ok(date);
        }
        catalogue.text(
            language,
            "date-time",
            &[
                ("date", Arg::Str(&date)),
                ("time", Arg::Str(&format_time(&local))),
            ],
        )
    };
    Ok(Some(OccurrenceIntro {
        key: "update-moved-day",
        date: date_of(&before)?,
        from: full(&before, before_local)?,
        to: full(&start, start.local())?,
    }))
}

/// The start the occurrence had before, from the engine's DTSTART change when its new
/// value is this occurrence's start (a change of another instance says nothing here).
fn moved_from(
    changes: &[FieldChange],
    start: &Moment,
    resolver: &TzResolver<&str>,
) -> Option<Moment> {
    let change = changes
        .iter()
        .find(|c| c.property.eq_ignore_ascii_case("DTSTART"))?;
    let parse = |v: &Option<String>| {
        parse_date_values("DTSTART", v.as_deref()?.trim(), resolver)?
            .into_iter()
            .next()
    };
    let new = parse(&change.new)?;
    (new.timestamp() == start.timestamp()).then(|| parse(&change.old))?
}

/// The RRULE of `component`, if it has one.
pub(crate) fn rule_of(component: &ICalendarComponent) -> Option<&ICalendarRecurrenceRule> {
    match component
        .property(&ICalendarProperty::Rrule)
        .and_then(|e| e.values.first())
    {
        Some(ICalendarValue::RecurrenceRule(rule)) => Some(rule),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imip::when::format_span;

    fn cal(lines: &str) -> ICalendar {
        ICalendar::parse(format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x\r\n{lines}END:VEVENT\r\n\
             END:VCALENDAR\r\n"
        ))
        .unwrap()
    }

    /// The When line and the Repeats line of the series in `lines` at its DTSTAMP.
    fn texts(lines: &str) -> (String, String) {
        let cal = cal(lines);
        let resolver = cal.build_tz_resolver();
        let main = calendar::main_component(&cal).unwrap();
        let catalogue = Catalogue::get().unwrap();
        let now = stamped_at(main, &resolver).unwrap();
        let next = next_occurrence(&cal, main, &resolver, now);
        let (first, first_end) = component_span(main, &resolver).unwrap();
        let (start, end) = next.clone().unwrap_or((first.clone(), first_end));
        let when = format_span(catalogue, Language::En, &start, end.as_ref()).unwrap();
        let rule = rule_of(main).unwrap();
        let repeats = repeats(
            catalogue,
            Language::En,
            rule,
            &first,
            next.is_some(),
            &resolver,
        )
        .unwrap();
        (when, repeats)
    }

    #[test]
    fn an_all_day_occurrence_today_is_still_the_next_one() {
        let (when, repeats) = texts(
            "DTSTAMP:20261208T150000Z\r\nDTSTART;VALUE=DATE:20261201\r\n\
             RRULE:FREQ=WEEKLY;UNTIL=20270105\r\n",
        );
        assert_eq!(when, "Tue 8 Dec 2026");
        assert_eq!(
            repeats,
            "Every week since Tue 1 Dec 2026, until Tue 5 Jan 2027"
        );
    }

    #[test]
    fn a_floating_series_keeps_its_wall_time() {
        let (when, repeats) = texts(
            "DTSTAMP:20261203T000000Z\r\nDTSTART:20261201T093000\r\nDURATION:PT30M\r\n\
             RRULE:FREQ=DAILY;INTERVAL=2;COUNT=1\r\n",
        );
        // COUNT=1: the only occurrence is over, so the first one is shown.
        assert_eq!(when, "Tue 1 Dec 2026 09:30–10:00");
        assert_eq!(repeats, "Every 2 days, once");
        let (when, _) = texts(
            "DTSTAMP:20261203T000000Z\r\nDTSTART:20261201T093000\r\nDURATION:PT30M\r\n\
             RRULE:FREQ=DAILY;INTERVAL=2\r\n",
        );
        assert_eq!(when, "Thu 3 Dec 2026 09:30–10:00");
    }

    #[test]
    fn a_rule_shown_as_written_says_since_when_but_no_end_twice() {
        let (_, repeats) = texts(
            "DTSTAMP:20261210T000000Z\r\nDTSTART:20261201T090000Z\r\n\
             RRULE:FREQ=MONTHLY;BYDAY=1TU;COUNT=3\r\n",
        );
        assert_eq!(
            repeats,
            "FREQ=MONTHLY;COUNT=3;BYDAY=1TU since Tue 1 Dec 2026"
        );
    }
}
