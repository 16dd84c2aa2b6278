//! Properties of the scheduling engine and of the write-back, on generated calendars.
//!
//! The calendars are what clients really write: an organizer, attendees with CN,
//! PARTSTAT, RSVP, SCHEDULE-AGENT and room variants, optional weekly or daily
//! recurrence with overrides (some cancelled), an optional VTIMEZONE with zoned times,
//! alarms, X- properties, long lines folded at varying widths (space or tab), and LF
//! or CRLF line ends. Three things a user relies on are checked:
//!
//! - **A message delivered twice changes nothing the second time**, not even the order
//!   of lines in the file (mail is redelivered after timeouts and crashes): the
//!   invitation, the answer, an update and the cancellation are each applied with
//!   `receive` and then applied again to the result.
//! - **SEQUENCE never goes down on the organizer's copy** across a series of edits
//!   (also when a client writes back a stale, lower SEQUENCE), and an attendee who
//!   receives every message never refuses one as out of sequence; nor does any
//!   message carry a lower SEQUENCE for an occurrence than one sent before (which
//!   other clients than imipd require), also when an occurrence is removed and added
//!   back.
//! - **Write-back changes only the intended lines**: `patch` of a small model edit
//!   (a SEQUENCE, an ATTENDEE parameter, an added or removed component) parses to the
//!   edited model, keeps every line whose meaning did not change byte-for-byte, and
//!   writes new lines in the file's own line-ending style.
//!
//! Each property runs 256 cases drawn from a fixed seed, so `cargo test` is
//! deterministic (see [`config`]); a failure is shrunk to a small calendar, printed,
//! and its seed saved in `tests/prop_scheduling.proptest-regressions`.

use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarEntry, ICalendarParameter,
    ICalendarParameterName, ICalendarParticipationStatus, ICalendarProperty, ICalendarValue,
};
use chrono::{Duration, NaiveDate, NaiveDateTime};
use imipd::itip::{
    self, snapshot::entry_address, CalAddress, Context, ItipError, ItipMessage, ReplyDetails,
};
use imipd::store::patch::patch;
use imipd::store::process::rewrite;
use proptest::prelude::*;
use proptest::sample::select;
use std::collections::BTreeMap;

/// The organizer of every generated event.
const ORGANIZER: &str = "org@example.com";
/// "Now" for the engine: 1990, so that no generated event (2030) is over.
const NOW: i64 = 631_152_000;
/// Attendees are drawn from these (the organizer is added separately).
const PEOPLE: [&str; 6] = [
    "a@example.net",
    "b@example.net",
    "c@example.org",
    "d@example.org",
    "room1@example.com",
    "e@example.net",
];

// ---------------------------------------------------------------------------------
// Generated calendars

/// One ATTENDEE line.
#[derive(Debug, Clone)]
struct Person {
    address: &'static str,
    cn: Option<&'static str>,
    partstat: Option<&'static str>,
    rsvp: Option<bool>,
    agent: Option<&'static str>,
    room: bool,
}

impl Person {
    /// Whether the organizer's server sends this attendee anything.
    fn server_scheduled(&self) -> bool {
        self.agent.is_none_or(|a| a == "SERVER") && self.rsvp != Some(false)
    }

    /// Whether a new event's invitation goes to this attendee (who has not answered).
    fn invited(&self) -> bool {
        self.server_scheduled() && self.partstat.is_none_or(|p| p == "NEEDS-ACTION")
    }
}

/// How the series repeats.
#[derive(Debug, Clone, Copy)]
enum Repeat {
    Weekly,
    EveryOtherDay,
}

impl Repeat {
    fn days(self) -> i64 {
        match self {
            Repeat::Weekly => 7,
            Repeat::EveryOtherDay => 2,
        }
    }

    fn rule(self, count: u32) -> String {
        match self {
            Repeat::Weekly => format!("FREQ=WEEKLY;COUNT={count}"),
            Repeat::EveryOtherDay => format!("FREQ=DAILY;INTERVAL=2;COUNT={count}"),
        }
    }
}

/// An override of one occurrence of the series.
#[derive(Debug, Clone)]
struct Override {
    /// Which occurrence (1-based; 0 would be the first, kept by the master).
    occurrence: u32,
    shift_hours: i64,
    cancelled: bool,
}

/// One event with everything a client may write.
#[derive(Debug, Clone)]
struct Event {
    uid: String,
    sequence: Option<u32>,
    start: NaiveDateTime,
    hours: i64,
    zoned: bool,
    summary: &'static str,
    location: Option<&'static str>,
    long_description: bool,
    organizer_cn: Option<&'static str>,
    organizer_attends: bool,
    attendees: Vec<Person>,
    repeat: Option<(Repeat, u32)>,
    overrides: Vec<Override>,
    alarm: bool,
    /// An X- property, written after the alarm when `x_after_alarm`.
    x_prop: bool,
    x_after_alarm: bool,
}

impl Event {
    fn occurrence(&self, k: u32) -> NaiveDateTime {
        let days = self.repeat.map_or(0, |(r, _)| r.days());
        self.start + Duration::days(days * i64::from(k))
    }

    /// `NAME` + `;TZID=…` or nothing, `:` and the time, in the event's time form.
    fn time(&self, name: &str, at: NaiveDateTime) -> String {
        if self.zoned {
            format!("{name};TZID=Europe/Berlin:{}", at.format("%Y%m%dT%H%M%S"))
        } else {
            format!("{name}:{}", at.format("%Y%m%dT%H%M%SZ"))
        }
    }

    /// The attendees a new event's invitation goes to.
    fn invited(&self) -> Vec<&'static str> {
        self.attendees
            .iter()
            .filter(|p| p.invited())
            .map(|p| p.address)
            .collect()
    }
}

/// How the file is written.
#[derive(Debug, Clone)]
struct Style {
    crlf: bool,
    /// Fold lines longer than this many octets, continuing with this character.
    fold: Option<(usize, char)>,
    mailto_caps: bool,
    /// Rotates the parameter order of ATTENDEE lines.
    param_rotation: usize,
}

/// Which component a line belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Calendar,
    Timezone,
    Master,
    Alarm,
    Override(usize),
}

/// One content line of a generated file: where it is, what it is, its exact text.
#[derive(Debug, Clone)]
struct RawLine {
    part: Part,
    /// Property name (`BEGIN`/`END` for component delimiters).
    name: String,
    /// For ATTENDEE lines, the attendee.
    address: Option<&'static str>,
    /// The exact bytes: folded, with the line end.
    text: String,
}

const VTIMEZONE: [&str; 16] = [
    "BEGIN:VTIMEZONE",
    "TZID:Europe/Berlin",
    "BEGIN:DAYLIGHT",
    "TZOFFSETFROM:+0100",
    "TZOFFSETTO:+0200",
    "TZNAME:CEST",
    "DTSTART:19700329T020000",
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
    "END:DAYLIGHT",
    "BEGIN:STANDARD",
    "TZOFFSETFROM:+0200",
    "TZOFFSETTO:+0100",
    "TZNAME:CET",
    "DTSTART:19701025T030000",
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
    "END:STANDARD",
];

/// Writes `event` in `style`, line by line.
fn render(event: &Event, style: &Style) -> Vec<RawLine> {
    let mut out = Vec::new();
    let mut push = |part: Part, logical: String, address: Option<&'static str>| {
        let name = logical
            .split([':', ';'])
            .next()
            .unwrap_or_default()
            .to_string();
        out.push(RawLine {
            part,
            name,
            address,
            text: fold(&logical, style),
        });
    };
    push(Part::Calendar, "BEGIN:VCALENDAR".into(), None);
    push(Part::Calendar, "VERSION:2.0".into(), None);
    push(
        Part::Calendar,
        "PRODID:-//Generated//Client 1.0//EN".into(),
        None,
    );
    if event.zoned {
        for line in VTIMEZONE {
            push(Part::Timezone, line.to_string(), None);
        }
        push(Part::Timezone, "END:VTIMEZONE".into(), None);
    }
    let mailto = if style.mailto_caps {
        "MAILTO:"
    } else {
        "mailto:"
    };
    let organizer = match event.organizer_cn {
        Some(cn) => format!("ORGANIZER;CN={}:{mailto}{ORGANIZER}", param_value(cn)),
        None => format!("ORGANIZER:{mailto}{ORGANIZER}"),
    };
    let attendee_lines = |people: &[Person]| -> Vec<(String, &'static str)> {
        let mut lines = Vec::new();
        if event.organizer_attends {
            lines.push((
                format!("ATTENDEE;PARTSTAT=ACCEPTED:{mailto}{ORGANIZER}"),
                ORGANIZER,
            ));
        }
        for p in people {
            let mut params = Vec::new();
            if let Some(cn) = p.cn {
                params.push(format!("CN={}", param_value(cn)));
            }
            if p.room {
                params.push("CUTYPE=ROOM".to_string());
            }
            if let Some(partstat) = p.partstat {
                params.push(format!("PARTSTAT={partstat}"));
            }
            if let Some(rsvp) = p.rsvp {
                params.push(format!("RSVP={}", if rsvp { "TRUE" } else { "FALSE" }));
            }
            if let Some(agent) = p.agent {
                params.push(format!("SCHEDULE-AGENT={agent}"));
            }
            if !params.is_empty() {
                let n = style.param_rotation % params.len();
                params.rotate_left(n);
            }
            let params: String = params.iter().map(|p| format!(";{p}")).collect();
            lines.push((format!("ATTENDEE{params}:{mailto}{}", p.address), p.address));
        }
        lines
    };

    push(Part::Master, "BEGIN:VEVENT".into(), None);
    push(Part::Master, format!("UID:{}", event.uid), None);
    push(Part::Master, "DTSTAMP:20300101T080000Z".into(), None);
    if let Some(seq) = event.sequence {
        push(Part::Master, format!("SEQUENCE:{seq}"), None);
    }
    push(Part::Master, event.time("DTSTART", event.start), None);
    push(
        Part::Master,
        event.time("DTEND", event.start + Duration::hours(event.hours)),
        None,
    );
    if let Some((repeat, count)) = event.repeat {
        push(Part::Master, format!("RRULE:{}", repeat.rule(count)), None);
    }
    push(Part::Master, format!("SUMMARY:{}", event.summary), None);
    if let Some(location) = event.location {
        push(Part::Master, format!("LOCATION:{location}"), None);
    }
    if event.long_description {
        push(
            Part::Master,
            "DESCRIPTION:Agenda: 1) what happened since the last meeting\\, 2) what comes \
             next\\; 3) questions. Bring the numbers for Q3 — and the coffee ☕."
                .to_string(),
            None,
        );
    }
    push(Part::Master, organizer.clone(), None);
    for (line, address) in attendee_lines(&event.attendees) {
        push(Part::Master, line, Some(address));
    }
    if event.x_prop && !event.x_after_alarm {
        push(Part::Master, "X-CLIENT-COLOR:teal".into(), None);
    }
    if event.alarm {
        push(Part::Alarm, "BEGIN:VALARM".into(), None);
        push(Part::Alarm, "ACTION:DISPLAY".into(), None);
        push(Part::Alarm, "TRIGGER:-PT15M".into(), None);
        push(Part::Alarm, "DESCRIPTION:Reminder".into(), None);
        push(Part::Alarm, "END:VALARM".into(), None);
    }
    if event.x_prop && event.x_after_alarm {
        push(Part::Master, "X-CLIENT-COLOR:teal".into(), None);
    }
    push(Part::Master, "END:VEVENT".into(), None);

    for (i, o) in event.overrides.iter().enumerate() {
        let part = Part::Override(i);
        let at = event.occurrence(o.occurrence);
        push(part, "BEGIN:VEVENT".into(), None);
        push(part, format!("UID:{}", event.uid), None);
        push(part, event.time("RECURRENCE-ID", at), None);
        push(part, "DTSTAMP:20300101T080000Z".into(), None);
        if let Some(seq) = event.sequence {
            push(part, format!("SEQUENCE:{seq}"), None);
        }
        let moved = at + Duration::hours(o.shift_hours);
        push(part, event.time("DTSTART", moved), None);
        push(
            part,
            event.time("DTEND", moved + Duration::hours(event.hours)),
            None,
        );
        push(part, format!("SUMMARY:{} (moved)", event.summary), None);
        if o.cancelled {
            push(part, "STATUS:CANCELLED".into(), None);
        }
        push(part, organizer.clone(), None);
        for (line, address) in attendee_lines(&event.attendees) {
            push(part, line, Some(address));
        }
        push(part, "END:VEVENT".into(), None);
    }
    push(Part::Calendar, "END:VCALENDAR".into(), None);
    out
}

/// A parameter value, quoted when it must be.
fn param_value(value: &str) -> String {
    if value.contains([',', ';', ':']) {
        format!("\"{value}\"")
    } else {
        value.to_string()
    }
}

/// Folds a logical line as `style` says and adds the line end.
fn fold(logical: &str, style: &Style) -> String {
    let newline = if style.crlf { "\r\n" } else { "\n" };
    let mut out = String::new();
    match style.fold {
        Some((width, continuation)) if logical.len() > width => {
            let mut limit = width;
            let mut current = 0;
            for c in logical.chars() {
                if current + c.len_utf8() > limit {
                    out.push_str(newline);
                    out.push(continuation);
                    current = 1;
                    limit = width;
                }
                out.push(c);
                current += c.len_utf8();
            }
        }
        _ => out.push_str(logical),
    }
    out.push_str(newline);
    out
}

fn text_of(lines: &[RawLine]) -> String {
    lines.iter().map(|l| l.text.as_str()).collect()
}

prop_compose! {
    fn person(address: &'static str)(
        cn in prop::option::of(select(vec!["Anna", "Doe, Jane", "Jürgen Groß", "B"])),
        partstat in prop::option::of(select(vec![
            "NEEDS-ACTION", "ACCEPTED", "DECLINED", "TENTATIVE",
        ])),
        rsvp in prop::option::of(any::<bool>()),
        agent in prop_oneof![
            6 => Just(None),
            1 => Just(Some("SERVER")),
            1 => Just(Some("CLIENT")),
            1 => Just(Some("NONE")),
        ],
    ) -> Person {
        let room = address.starts_with("room");
        Person {
            address,
            cn,
            partstat,
            rsvp: if room { Some(false) } else { rsvp },
            agent,
            room,
        }
    }
}

fn attendees() -> impl Strategy<Value = Vec<Person>> {
    prop::sample::subsequence(PEOPLE.to_vec(), 1..=5)
        .prop_flat_map(|addresses| addresses.into_iter().map(person).collect::<Vec<_>>())
}

prop_compose! {
    fn repetition()(
        repeat in prop::option::of((
            prop_oneof![Just(Repeat::Weekly), Just(Repeat::EveryOtherDay)],
            3u32..12,
        )),
        overrides in prop::collection::vec((1u32..11, -3i64..4, prop::bool::weighted(0.3)), 0..3),
    ) -> (Option<(Repeat, u32)>, Vec<Override>) {
        let mut kept: Vec<Override> = Vec::new();
        if let Some((_, count)) = repeat {
            for (occurrence, shift_hours, cancelled) in overrides {
                let occurrence = 1 + (occurrence - 1) % (count - 1);
                if kept.iter().all(|o| o.occurrence != occurrence) {
                    kept.push(Override { occurrence, shift_hours, cancelled });
                }
            }
        }
        (repeat, kept)
    }
}

prop_compose! {
    fn event()(
        uid in "[a-z0-9]{6,12}",
        sequence in prop::option::of(0u32..5),
        day in 0i64..300,
        hour in 7u32..18,
        hours in 1i64..3,
        zoned in any::<bool>(),
        summary in select(vec!["Planning", "Weekly planning and review of the numbers", "Café ☕"]),
        location in prop::option::of(select(vec!["Room 1", "Berlin, Alexanderplatz 1"])),
        long_description in any::<bool>(),
        organizer_cn in prop::option::of(select(vec!["Olga", "Olga, organizer"])),
        organizer_attends in any::<bool>(),
        attendees in attendees(),
        (repeat, overrides) in repetition(),
        (alarm, x_prop, x_after_alarm) in (any::<bool>(), any::<bool>(), any::<bool>()),
    ) -> Event {
        let start = NaiveDate::from_ymd_opt(2030, 1, 7)
            .expect("a date")
            .and_hms_opt(hour, 0, 0)
            .expect("a time")
            + Duration::days(day);
        Event {
            uid: format!("{uid}@generated"),
            sequence,
            start,
            hours,
            zoned,
            summary,
            location,
            long_description,
            organizer_cn,
            organizer_attends,
            attendees,
            repeat,
            overrides,
            alarm,
            x_prop,
            x_after_alarm,
        }
    }
}

prop_compose! {
    fn style()(
        crlf in any::<bool>(),
        fold in prop::option::of((30usize..=75, prop_oneof![Just(' '), Just('\t')])),
        mailto_caps in prop::bool::weighted(0.2),
        param_rotation in 0usize..4,
    ) -> Style {
        Style { crlf, fold, mailto_caps, param_rotation }
    }
}

// ---------------------------------------------------------------------------------
// Engine helpers

fn address(text: &str) -> CalAddress {
    CalAddress::parse(text).expect("a valid address")
}

fn context(account: &[CalAddress]) -> Context<'_> {
    Context {
        account,
        now: NOW,
        reply_details: ReplyDetails::Full,
    }
}

fn parse(text: &str) -> ICalendar {
    ICalendar::parse(text).unwrap_or_else(|_| panic!("generated text does not parse:\n{text}"))
}

/// The scheduling components (events), each with its RECURRENCE-ID (as text, `None`
/// for the master) and SEQUENCE (0 when absent).
fn sequences(cal: &ICalendar) -> BTreeMap<Option<String>, i64> {
    let mut out = BTreeMap::new();
    for comp in cal
        .components
        .iter()
        .filter(|c| c.component_type == ICalendarComponentType::VEvent)
    {
        let rid = comp
            .entries
            .iter()
            .find(|e| e.name == ICalendarProperty::RecurrenceId)
            .map(|e| format!("{:?}", e.values));
        let seq = comp
            .entries
            .iter()
            .find(|e| e.name == ICalendarProperty::Sequence)
            .and_then(|e| match e.values.first() {
                Some(ICalendarValue::Integer(n)) => Some(*n),
                _ => None,
            })
            .unwrap_or(0);
        out.insert(rid, seq);
    }
    out
}

/// What a calendar says, independent of the order of properties and components
/// (which carries no meaning in iCalendar): each component as its sorted content
/// lines and its sorted sub-components.
fn canonical(cal: &ICalendar) -> String {
    fn component(cal: &ICalendar, index: usize, depth: usize) -> String {
        let Some(comp) = cal.components.get(index).filter(|_| depth < 16) else {
            return String::new();
        };
        let mut lines: Vec<String> = comp
            .entries
            .iter()
            .map(|e| {
                let mut line = String::new();
                let _ = e.write_to(&mut line);
                line
            })
            .collect();
        lines.sort();
        let mut children: Vec<String> = comp
            .component_ids
            .iter()
            .map(|id| component(cal, *id as usize, depth + 1))
            .collect();
        children.sort();
        format!(
            "BEGIN:{0}\r\n{1}{2}END:{0}\r\n",
            comp.component_type.as_str(),
            lines.concat(),
            children.concat()
        )
    }
    component(cal, 0, 0)
}

/// Applies `message` for `recipient` (whose copy is `stored`), then applies it again to
/// the result, and checks that the second delivery changes nothing. Returns the
/// recipient's copy after the first delivery, or the engine's refusal.
fn apply_twice(
    message: &ItipMessage,
    recipient: &CalAddress,
    stored: Option<&ICalendar>,
) -> Result<Option<ICalendar>, TestCaseError> {
    let account = [recipient.clone()];
    let ctx = context(&account);
    let Ok(first) = itip::receive(&message.calendar, &message.from, stored, &ctx) else {
        return Ok(stored.cloned());
    };
    let once = first.copy.or_else(|| stored.cloned());
    let second = itip::receive(&message.calendar, &message.from, once.as_ref(), &ctx);
    let second = match second {
        Ok(second) => second,
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "{:?} from {} applied once for {recipient}, but a second delivery is refused: \
                 {e:?}\n{}",
                message.method,
                message.from,
                message.to_ics()
            )))
        }
    };
    prop_assert!(
        second.copy.is_none(),
        "{:?} from {} for {}: the second delivery would rewrite the copy (action {:?})",
        message.method,
        message.from,
        recipient,
        second.action
    );
    let twice = second.copy.or_else(|| once.clone());
    prop_assert_eq!(
        twice.as_ref().map(canonical),
        once.as_ref().map(canonical),
        "{:?} from {} for {}: the second delivery changed the copy; message:\n{}",
        message.method,
        message.from,
        recipient,
        message.to_ics()
    );
    Ok(once)
}

/// Sets `recipient`'s PARTSTAT on every ATTENDEE line of theirs (or only in the
/// override with `only_override`, when there is one) in the unfolded `text`.
fn answer(text: &str, recipient: &str, partstat: &str, only_override: bool) -> String {
    let unfolded = text
        .replace("\r\n ", "")
        .replace("\r\n\t", "")
        .replace("\n ", "")
        .replace("\n\t", "");
    let has_override = unfolded.contains("RECURRENCE-ID");
    let mut in_override = false;
    let mut out = String::new();
    for line in unfolded.lines() {
        if line.starts_with("BEGIN:VEVENT") {
            in_override = false;
        }
        if line.starts_with("RECURRENCE-ID") {
            in_override = true;
        }
        let mine = line.starts_with("ATTENDEE")
            && line
                .to_ascii_lowercase()
                .ends_with(&format!(":mailto:{recipient}"));
        let wanted = !only_override || !has_override || in_override;
        if mine && wanted {
            let (head, value) = line.split_once(":mailto:").unwrap_or((line, ""));
            let head = head
                .split(';')
                .filter(|p| !p.to_ascii_uppercase().starts_with("PARTSTAT="))
                .collect::<Vec<_>>()
                .join(";");
            out.push_str(&format!("{head};PARTSTAT={partstat}:mailto:{value}\r\n"));
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// Organizer edits, applied to the text of the stored copy as a client would

/// One edit an organizer's client makes to the stored copy.
#[derive(Debug, Clone)]
enum Edit {
    /// New start (and end) for a single event; a new end for a series.
    Reschedule(i64),
    Retitle(&'static str),
    Relocate(&'static str),
    Invite(&'static str),
    /// Removes the n-th invited attendee (of the generated list).
    Uninvite(usize),
    /// The client raises SEQUENCE itself.
    ClientBumpsSequence,
    /// The client writes a SEQUENCE two below the stored one (a stale copy).
    StaleSequence,
    /// An override for occurrence n (with an hour's shift).
    MoveOccurrence(u32),
    /// An EXDATE for occurrence n.
    DropOccurrence(u32),
    /// Cancels the n-th override (STATUS:CANCELLED).
    CancelOverride(usize),
    /// Removes the n-th override.
    RemoveOverride(usize),
    /// A new COUNT for the series.
    Recount(u32),
    /// SCHEDULE-FORCE-SEND=REQUEST on the n-th attendee.
    ForceSend(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (-48i64..48).prop_map(Edit::Reschedule),
        select(vec!["Planning (new)", "Review"]).prop_map(Edit::Retitle),
        select(vec!["Room 2", "Online"]).prop_map(Edit::Relocate),
        select(PEOPLE.to_vec()).prop_map(Edit::Invite),
        (0usize..5).prop_map(Edit::Uninvite),
        Just(Edit::ClientBumpsSequence),
        (1u32..11).prop_map(Edit::MoveOccurrence),
        (1u32..11).prop_map(Edit::DropOccurrence),
        (0usize..3).prop_map(Edit::CancelOverride),
        (0usize..3).prop_map(Edit::RemoveOverride),
        (2u32..14).prop_map(Edit::Recount),
        (0usize..5).prop_map(Edit::ForceSend),
    ]
}

/// Unfolded content lines of `text`.
fn unfolded_lines(text: &str) -> Vec<String> {
    text.replace("\r\n", "\n")
        .replace("\n ", "")
        .replace("\n\t", "")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Index ranges (BEGIN..=END) of the VEVENTs in `lines`: the master first.
fn events(lines: &[String]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, line) in lines.iter().enumerate() {
        if line == "BEGIN:VEVENT" {
            start = Some(i);
        } else if line == "END:VEVENT" {
            if let Some(s) = start.take() {
                out.push((s, i));
            }
        }
    }
    out.sort_by_key(|(s, e)| {
        lines[*s..=*e]
            .iter()
            .any(|l| l.starts_with("RECURRENCE-ID"))
    });
    out
}

fn prop_name(line: &str) -> &str {
    line.split([':', ';']).next().unwrap_or_default()
}

/// Applies `edit` to the stored copy's text (`event` says how the series was
/// generated; its master start never moves for a series). `None` when the edit does
/// not apply to this event.
fn apply_edit(text: &str, event: &Event, edit: &Edit) -> Option<String> {
    let mut lines = unfolded_lines(text);
    let evs = events(&lines);
    let (ms, me) = *evs.first()?;
    let overrides = &evs[1..];
    let set = |lines: &mut Vec<String>, range: (usize, usize), name: &str, new: String| match (range
        .0
        ..=range.1)
        .find(|i| prop_name(&lines[*i]) == name)
    {
        Some(i) => lines[i] = new,
        None => lines.insert(range.1, new),
    };
    let count = lines[ms..=me]
        .iter()
        .find(|l| l.starts_with("RRULE:"))
        .and_then(|l| l.split("COUNT=").nth(1))
        .and_then(|c| c.split(';').next()?.parse::<u32>().ok());
    match edit {
        Edit::Reschedule(hours) => {
            if *hours == 0 {
                return None;
            }
            let start = event.start + Duration::hours(*hours);
            if event.repeat.is_none() {
                set(
                    &mut lines,
                    (ms, me),
                    "DTSTART",
                    event.time("DTSTART", start),
                );
            }
            let end = start + Duration::hours(event.hours);
            set(&mut lines, (ms, me), "DTEND", event.time("DTEND", end));
        }
        Edit::Retitle(s) => set(&mut lines, (ms, me), "SUMMARY", format!("SUMMARY:{s}")),
        Edit::Relocate(s) => set(&mut lines, (ms, me), "LOCATION", format!("LOCATION:{s}")),
        Edit::Invite(who) => {
            if text.to_ascii_lowercase().contains(&format!("mailto:{who}")) {
                return None;
            }
            lines.insert(me, format!("ATTENDEE;RSVP=TRUE:mailto:{who}"));
        }
        Edit::Uninvite(n) => {
            let who = event.attendees.get(*n)?.address;
            let before = lines.len();
            lines.retain(|l| !(l.starts_with("ATTENDEE") && l.to_ascii_lowercase().ends_with(who)));
            if lines.len() == before {
                return None;
            }
        }
        Edit::ClientBumpsSequence | Edit::StaleSequence => {
            let seq = sequences(&ICalendar::parse(text).ok()?)
                .get(&None)
                .copied()
                .unwrap_or(0);
            let seq = match edit {
                Edit::StaleSequence => seq.checked_sub(2).filter(|s| *s >= 0)?,
                _ => seq + 1,
            };
            set(&mut lines, (ms, me), "SEQUENCE", format!("SEQUENCE:{seq}"));
        }
        Edit::MoveOccurrence(k) | Edit::DropOccurrence(k) => {
            let count = count?;
            let k = 1 + (k - 1) % count.checked_sub(1).filter(|c| *c > 0)?;
            let at = event.occurrence(k);
            let rid = event.time("RECURRENCE-ID", at);
            if lines.contains(&rid) {
                return None;
            }
            if let Edit::DropOccurrence(_) = edit {
                lines.insert(me, event.time("EXDATE", at));
            } else {
                let master: Vec<String> = lines[ms + 1..me]
                    .iter()
                    .filter(|l| {
                        matches!(
                            prop_name(l),
                            "UID" | "DTSTAMP" | "SEQUENCE" | "SUMMARY" | "ORGANIZER" | "ATTENDEE"
                        )
                    })
                    .cloned()
                    .collect();
                let moved = at + Duration::hours(1);
                let mut block = vec!["BEGIN:VEVENT".to_string(), rid];
                block.extend(master);
                block.push(event.time("DTSTART", moved));
                block.push(event.time("DTEND", moved + Duration::hours(event.hours)));
                block.push("END:VEVENT".to_string());
                let end = lines.iter().rposition(|l| l == "END:VCALENDAR")?;
                lines.splice(end..end, block);
            }
        }
        Edit::CancelOverride(n) => {
            let range = *overrides.get(*n)?;
            set(&mut lines, range, "STATUS", "STATUS:CANCELLED".to_string());
        }
        Edit::RemoveOverride(n) => {
            let (s, e) = *overrides.get(*n)?;
            lines.drain(s..=e);
        }
        Edit::Recount(n) => {
            count?;
            let repeat = event.repeat?.0;
            set(
                &mut lines,
                (ms, me),
                "RRULE",
                format!("RRULE:{}", repeat.rule(*n)),
            );
        }
        Edit::ForceSend(n) => {
            let who = event.attendees.get(*n)?.address;
            let i = (ms..me).find(|i| {
                lines[*i].starts_with("ATTENDEE") && lines[*i].to_ascii_lowercase().ends_with(who)
            })?;
            lines[i] = lines[i].replacen("ATTENDEE", "ATTENDEE;SCHEDULE-FORCE-SEND=REQUEST", 1);
        }
    }
    Some(lines.iter().map(|l| format!("{l}\r\n")).collect())
}

// ---------------------------------------------------------------------------------
// Write-back edits, applied to the parsed model as the engine does

/// One small change of the model of a file.
#[derive(Debug, Clone)]
enum ModelEdit {
    /// SEQUENCE of the master (or of override n) set to this.
    Sequence(Option<usize>, i64),
    /// PARTSTAT of the n-th invited attendee, on every line of theirs.
    Partstat(usize, &'static str),
    /// SCHEDULE-STATUS of the n-th invited attendee, as delivery feedback writes it.
    ScheduleStatus(usize, &'static str),
    /// Removes RSVP from the n-th invited attendee's lines.
    DropRsvp(usize),
    /// A new override for occurrence n.
    AddOverride(u32),
    /// Removes the n-th override.
    RemoveOverride(usize),
    /// Removes the alarm.
    RemoveAlarm,
    /// Adds an alarm to the master.
    AddAlarm,
}

fn model_edit() -> impl Strategy<Value = ModelEdit> {
    prop_oneof![
        (prop::option::of(0usize..3), 0i64..20).prop_map(|(c, n)| ModelEdit::Sequence(c, n)),
        (
            0usize..5,
            select(vec!["ACCEPTED", "DECLINED", "TENTATIVE", "NEEDS-ACTION"])
        )
            .prop_map(|(n, p)| ModelEdit::Partstat(n, p)),
        (0usize..5, select(vec!["1.1", "1.2", "3.7", "5.1"]))
            .prop_map(|(n, s)| ModelEdit::ScheduleStatus(n, s)),
        (0usize..5).prop_map(ModelEdit::DropRsvp),
        (1u32..11).prop_map(ModelEdit::AddOverride),
        (0usize..3).prop_map(ModelEdit::RemoveOverride),
        Just(ModelEdit::RemoveAlarm),
        Just(ModelEdit::AddAlarm),
    ]
}

/// Index of the VEVENT for `part` in `cal.components`.
fn component_index(cal: &ICalendar, part: Part) -> Option<usize> {
    let mut overrides = 0;
    for (i, comp) in cal.components.iter().enumerate() {
        match comp.component_type {
            ICalendarComponentType::VEvent => {
                let is_override = comp.has_property(&ICalendarProperty::RecurrenceId);
                if !is_override && part == Part::Master {
                    return Some(i);
                }
                if is_override {
                    if part == Part::Override(overrides) {
                        return Some(i);
                    }
                    overrides += 1;
                }
            }
            ICalendarComponentType::VAlarm if part == Part::Alarm => return Some(i),
            _ => {}
        }
    }
    None
}

fn is_attendee_line(entry: &ICalendarEntry, who: &CalAddress) -> bool {
    entry.name == ICalendarProperty::Attendee && entry_address(entry).as_ref() == Some(who)
}

/// `edit` made to fit `event`: indices taken modulo what there is, and an edit of
/// something the event lacks (no override, no alarm, no RSVP, no recurrence) turned
/// into one of the same family that applies, so that no case is rejected.
fn fitted(edit: &ModelEdit, event: &Event) -> ModelEdit {
    let overrides = event.overrides.len();
    let people = event.attendees.len();
    let free_occurrence = |k: u32| {
        let (_, count) = event.repeat?;
        (0..count - 1)
            .map(|step| 1 + (k - 1 + step) % (count - 1))
            .find(|k| event.overrides.iter().all(|o| o.occurrence != *k))
    };
    let remove_something = |n: usize| match (overrides, event.alarm) {
        (0, true) => ModelEdit::RemoveAlarm,
        (0, false) => ModelEdit::AddAlarm,
        (_, _) => ModelEdit::RemoveOverride(n % overrides),
    };
    match edit.clone() {
        ModelEdit::Sequence(Some(n), value) if overrides > 0 => {
            ModelEdit::Sequence(Some(n % overrides), value)
        }
        ModelEdit::Sequence(_, value) => ModelEdit::Sequence(None, value),
        ModelEdit::Partstat(n, p) => ModelEdit::Partstat(n % people, p),
        ModelEdit::ScheduleStatus(n, s) => ModelEdit::ScheduleStatus(n % people, s),
        ModelEdit::DropRsvp(n) => match (0..people)
            .map(|i| (n + i) % people)
            .find(|i| event.attendees[*i].rsvp.is_some())
        {
            Some(i) => ModelEdit::DropRsvp(i),
            None => ModelEdit::Partstat(n % people, "DECLINED"),
        },
        ModelEdit::AddOverride(k) => match free_occurrence(k) {
            Some(k) => ModelEdit::AddOverride(k),
            None if event.alarm => ModelEdit::RemoveAlarm,
            None => ModelEdit::AddAlarm,
        },
        ModelEdit::RemoveOverride(n) => remove_something(n),
        ModelEdit::RemoveAlarm if !event.alarm => remove_something(0),
        other => other,
    }
}

/// Applies `edit` (as [`fitted`] to the event) to `cal`, and says which lines of the
/// file it means to change.
fn apply_model_edit(
    cal: &mut ICalendar,
    event: &Event,
    edit: &ModelEdit,
) -> Box<dyn Fn(&RawLine) -> bool> {
    let root = 0;
    let component = |cal: &ICalendar, part: Part| {
        component_index(cal, part).expect("the generated component is in the model")
    };
    let attendee_lines =
        |address: &CalAddress, cal: &mut ICalendar, f: &dyn Fn(&mut ICalendarEntry)| {
            for comp in cal.components.iter_mut() {
                for entry in comp
                    .entries
                    .iter_mut()
                    .filter(|e| is_attendee_line(e, address))
                {
                    f(entry);
                }
            }
        };
    match edit.clone() {
        ModelEdit::Sequence(target, n) => {
            let part = target.map_or(Part::Master, Part::Override);
            let i = component(cal, part);
            let comp = &mut cal.components[i];
            match comp
                .entries
                .iter_mut()
                .find(|e| e.name == ICalendarProperty::Sequence)
            {
                Some(entry) => entry.values = vec![ICalendarValue::Integer(n)],
                None => comp.entries.push(
                    ICalendarEntry::new(ICalendarProperty::Sequence)
                        .with_value(ICalendarValue::Integer(n)),
                ),
            }
            Box::new(move |l: &RawLine| l.part == part && l.name == "SEQUENCE")
        }
        ModelEdit::Partstat(n, partstat) => {
            let who = event.attendees[n].address;
            let value = match partstat {
                "ACCEPTED" => ICalendarParticipationStatus::Accepted,
                "DECLINED" => ICalendarParticipationStatus::Declined,
                "TENTATIVE" => ICalendarParticipationStatus::Tentative,
                _ => ICalendarParticipationStatus::NeedsAction,
            };
            attendee_lines(&address(who), cal, &|entry| {
                entry
                    .params
                    .retain(|p| p.name != ICalendarParameterName::Partstat);
                entry
                    .params
                    .push(ICalendarParameter::partstat(value.clone()));
            });
            Box::new(move |l: &RawLine| l.address == Some(who))
        }
        ModelEdit::ScheduleStatus(n, status) => {
            let who = event.attendees[n].address;
            if let Some(updated) = itip::status::with_schedule_status(cal, &address(who), status) {
                *cal = updated;
            }
            Box::new(move |l: &RawLine| l.address == Some(who))
        }
        ModelEdit::DropRsvp(n) => {
            let who = event.attendees[n].address;
            attendee_lines(&address(who), cal, &|entry| {
                entry
                    .params
                    .retain(|p| p.name != ICalendarParameterName::Rsvp);
            });
            Box::new(move |l: &RawLine| l.address == Some(who))
        }
        ModelEdit::AddOverride(k) => {
            let at = event.occurrence(k);
            let text = format!(
                "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:{}\r\n{}\r\n{}\r\nSUMMARY:Added\r\n\
                 ORGANIZER:mailto:{ORGANIZER}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
                event.uid,
                event.time("RECURRENCE-ID", at),
                event.time("DTSTART", at + Duration::hours(2)),
            );
            let added: ICalendarComponent = parse(&text).components[1].clone();
            let id = u32::try_from(cal.components.len()).expect("few components");
            cal.components.push(added);
            cal.components[root].component_ids.push(id);
            Box::new(|_: &RawLine| false)
        }
        ModelEdit::AddAlarm => {
            let text = "BEGIN:VCALENDAR\r\nBEGIN:VALARM\r\nACTION:AUDIO\r\nTRIGGER:-PT5M\r\n\
                        END:VALARM\r\nEND:VCALENDAR\r\n";
            let added: ICalendarComponent = parse(text).components[1].clone();
            let id = u32::try_from(cal.components.len()).expect("few components");
            cal.components.push(added);
            let master = component(cal, Part::Master);
            cal.components[master].component_ids.push(id);
            Box::new(|_: &RawLine| false)
        }
        ModelEdit::RemoveOverride(n) => {
            let i = u32::try_from(component(cal, Part::Override(n))).expect("few components");
            cal.components[root].component_ids.retain(|id| *id != i);
            Box::new(move |l: &RawLine| l.part == Part::Override(n))
        }
        ModelEdit::RemoveAlarm => {
            let i = u32::try_from(component(cal, Part::Alarm)).expect("few components");
            for comp in cal.components.iter_mut() {
                comp.component_ids.retain(|id| *id != i);
            }
            Box::new(|l: &RawLine| l.part == Part::Alarm)
        }
    }
}

/// Content lines of `text` (a physical line and its folded continuations), exactly.
fn content_lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in text.match_indices('\n') {
        if !text[i + 1..].starts_with([' ', '\t']) {
            out.push(&text[start..=i]);
            start = i + 1;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Whether [`organizer_edit_chain`] also checks the SEQUENCE of every message sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Messages {
    /// Only what the attendee's engine accepts.
    Accepted,
    /// Also: no message carries a lower SEQUENCE for an occurrence than one before.
    NeverLower,
}

/// Runs `edits` as an organizer's client would (each on the file as the daemon left
/// it), processing every version as the daemon does, and checks that SEQUENCE never
/// goes down: on the accepted copies, for an invited attendee who receives every
/// message (who must never refuse one as out of sequence), and, with
/// [`Messages::NeverLower`], in the messages themselves.
fn organizer_edit_chain(
    event: &Event,
    style: &Style,
    edits: &[Edit],
    check: Messages,
) -> Result<(), TestCaseError> {
    let org = [address(ORGANIZER)];
    let ctx = context(&org);
    let watcher = event.invited().first().map(|a| address(a));
    let watcher_account: Vec<CalAddress> = watcher.iter().cloned().collect();
    let mut watcher_copy: Option<ICalendar> = None;
    let mut sent: BTreeMap<Option<String>, i64> = BTreeMap::new();

    let deliver = |messages: &[ItipMessage],
                   sent: &mut BTreeMap<Option<String>, i64>,
                   copy: &mut Option<ICalendar>|
     -> Result<(), TestCaseError> {
        for message in messages {
            for (rid, seq) in sequences(&message.calendar) {
                let before = sent.get(&rid).copied().unwrap_or(i64::MIN);
                prop_assert!(
                    seq >= before || check == Messages::Accepted,
                    "{:?} sent SEQUENCE {seq} for {rid:?} after {before}:\n{}",
                    message.method,
                    message.to_ics()
                );
                sent.insert(rid, seq);
            }
            let Some(who) = watcher_account.first() else {
                continue;
            };
            if !message.to.contains(who) {
                continue;
            }
            match itip::receive(
                &message.calendar,
                &message.from,
                copy.as_ref(),
                &context(&watcher_account),
            ) {
                Ok(got) => {
                    if got.copy.is_some() {
                        *copy = got.copy;
                    }
                }
                Err(ItipError::OutOfSequence) => {
                    return Err(TestCaseError::fail(format!(
                        "{who} refused a {:?} as out of sequence:\n{}\ncopy:\n{}",
                        message.method,
                        message.to_ics(),
                        copy.as_ref().map(ToString::to_string).unwrap_or_default()
                    )))
                }
                Err(_) => {}
            }
        }
        Ok(())
    };

    // The daemon's bookkeeping: the user's file, and the last version the engine
    // accepted (what the next change is compared with).
    let mut file = text_of(&render(event, style));
    let mut baseline: Option<ICalendar> = None;
    let mut edits = edits.iter().map(Some).collect::<Vec<_>>();
    edits.insert(0, None);
    for edit in edits {
        if let Some(edit) = edit {
            match apply_edit(&file, event, edit) {
                Some(edited) => file = edited,
                None => continue,
            }
        }
        let new = parse(&file);
        let accepted = match itip::schedule_change(baseline.as_ref(), &new, &ctx) {
            Ok(out) => {
                deliver(&out.messages, &mut sent, &mut watcher_copy)?;
                if let Some(updated) = &out.updated {
                    file = rewrite(&file, updated);
                }
                parse(&file)
            }
            Err(e) if e.is_refusal() => continue,
            Err(_) => new,
        };
        if let Some(before) = baseline.as_ref().map(sequences) {
            for (rid, seq) in sequences(&accepted) {
                if let Some(old) = before.get(&rid) {
                    prop_assert!(
                        seq >= *old,
                        "after {edit:?} the organizer's copy has SEQUENCE {seq} for \
                         {rid:?}, was {old}:\n{file}"
                    );
                }
            }
        }
        baseline = Some(accepted);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The properties

/// The seed every `cargo test` run draws its cases from: CI explores nothing new, so a
/// run fails only when the code changed. Random exploration is a separate command
/// (RELIABILITY.md): `PROPTEST_RNG_SEED=<any u64> PROPTEST_CASES=<n>`.
const FIXED_SEED: u64 = 0x1A1B_2026_0013;

/// 256 cases from [`FIXED_SEED`] (`PROPTEST_CASES` and `PROPTEST_RNG_SEED` override
/// them). A failure's seed is saved in `tests/prop_scheduling.proptest-regressions`,
/// which is kept in the repository: every later run replays it first.
fn config() -> ProptestConfig {
    let from_env = ProptestConfig::default();
    let seed = if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
        from_env.rng_seed
    } else {
        proptest::test_runner::RngSeed::Fixed(FIXED_SEED)
    };
    ProptestConfig {
        rng_seed: seed,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..from_env
    }
}

proptest! {
    #![proptest_config(config())]

    /// Invitation, answer, update and cancellation, each delivered twice: the second
    /// delivery leaves the recipient's copy as the first one left it.
    #[test]
    fn a_message_delivered_twice_changes_nothing_more(
        event in event(),
        style in style(),
        pick in any::<prop::sample::Index>(),
        partstat in select(vec!["ACCEPTED", "DECLINED", "TENTATIVE"]),
        only_override in any::<bool>(),
        change in edit(),
    ) {
        // The attendee followed through the story is one the invitation goes to.
        let mut event = event;
        let followed = pick.index(event.attendees.len());
        let person = &mut event.attendees[followed];
        person.room = false;
        person.agent = None;
        person.partstat = person.partstat.filter(|p| *p == "NEEDS-ACTION");
        person.rsvp = person.rsvp.filter(|r| *r);
        let who = person.address;
        let attendee = address(who);
        let org = [address(ORGANIZER)];
        let me = [attendee.clone()];

        // The organizer creates the event: the invitation, imported, then redelivered.
        let text = text_of(&render(&event, &style));
        let created = parse(&text);
        let out = itip::schedule_change(None, &created, &context(&org))
            .map_err(|e| TestCaseError::fail(format!("no invitation: {e:?}\n{text}")))?;
        let organizer_copy = out.updated.unwrap_or(created);
        let invitation = out
            .messages
            .iter()
            .find(|m| m.to.contains(&attendee))
            .ok_or_else(|| TestCaseError::fail(format!("{who} was not invited\n{text}")))?;
        let copy = apply_twice(invitation, &attendee, None)?;
        let copy = copy.ok_or_else(|| {
            TestCaseError::fail(format!("{who} did not import the invitation"))
        })?;

        // The attendee answers: the REPLY reaches the organizer twice.
        let answered = parse(&answer(&copy.to_string(), who, partstat, only_override));
        let mut organizer_copy = organizer_copy;
        if let Ok(out) = itip::schedule_change(Some(&copy), &answered, &context(&me)) {
            for reply in out.messages.iter().filter(|m| m.to.contains(&org[0])) {
                if let Some(updated) = apply_twice(reply, &org[0], Some(&organizer_copy))? {
                    organizer_copy = updated;
                }
            }
        }

        // The organizer edits the event: each message reaches the attendee twice.
        let mut copy = copy;
        if let Some(edited) = apply_edit(&organizer_copy.to_string(), &event, &change) {
            let edited = parse(&edited);
            if let Ok(out) =
                itip::schedule_change(Some(&organizer_copy), &edited, &context(&org))
            {
                for message in out.messages.iter().filter(|m| m.to.contains(&attendee)) {
                    if let Some(updated) = apply_twice(message, &attendee, Some(&copy))? {
                        copy = updated;
                    }
                }
                organizer_copy = out.updated.unwrap_or(edited);
            }
        }

        // The organizer deletes the event: the cancellation reaches the attendee twice.
        if let Ok(out) = itip::schedule_removal(&organizer_copy, &context(&org)) {
            for message in out.messages.iter().filter(|m| m.to.contains(&attendee)) {
                apply_twice(message, &attendee, Some(&copy))?;
            }
        }
    }

    /// A series of organizer edits never lowers SEQUENCE on the stored copy, and an
    /// invited attendee who receives every message never refuses one as out of
    /// sequence.
    #[test]
    fn sequence_never_decreases_across_organizer_edits(
        event in event(),
        style in style(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        organizer_edit_chain(&event, &style, &edits, Messages::Accepted)?;
    }

    /// The same with a client that sometimes writes a stale, lower SEQUENCE (a second
    /// device, an old cache): the engine must not pass it on.
    #[test]
    fn sequence_never_decreases_with_a_stale_client(
        event in event(),
        style in style(),
        edits in prop::collection::vec(
            prop_oneof![4 => edit(), 1 => Just(Edit::StaleSequence)],
            1..8,
        ),
    ) {
        organizer_edit_chain(&event, &style, &edits, Messages::Accepted)?;
    }

    /// Stricter: no message carries a lower SEQUENCE for an occurrence than one sent
    /// before for it (other clients than imipd refuse such a message as stale).
    #[test]
    fn messages_never_lower_the_sequence_of_an_occurrence(
        event in event(),
        style in style(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        organizer_edit_chain(&event, &style, &edits, Messages::NeverLower)?;
    }

    /// Patching a small model edit into a generated file parses to the edited model,
    /// keeps every line whose meaning did not change byte-for-byte, and writes new
    /// lines in the file's own line-ending style. An unedited model gives the file back
    /// unchanged.
    #[test]
    fn write_back_changes_only_the_intended_lines(
        event in event(),
        style in style(),
        change in model_edit(),
    ) {
        let lines = render(&event, &style);
        let original = text_of(&lines);
        let mut cal = parse(&original);
        let unchanged = patch(&original, &cal);
        prop_assert_eq!(
            unchanged.as_deref(),
            Ok(original.as_str()),
            "an unchanged model must give the file back byte for byte"
        );

        let change = fitted(&change, &event);
        let touched = apply_model_edit(&mut cal, &event, &change);
        let patched = patch(&original, &cal).map_err(|e| {
            TestCaseError::fail(format!("{change:?} not patched: {e}\n{original}"))
        })?;

        let reparsed = parse(&patched);
        prop_assert_eq!(
            reparsed.to_string(),
            cal.to_string(),
            "the patched file does not say what the model says:\n{}",
            patched
        );

        let mut available: BTreeMap<&str, usize> = BTreeMap::new();
        for line in content_lines(&patched) {
            *available.entry(line).or_default() += 1;
        }
        for line in lines.iter().filter(|l| !touched(l)) {
            let left = available.get_mut(line.text.as_str()).filter(|n| **n > 0);
            prop_assert!(
                left.is_some(),
                "{change:?} lost or rewrote the line {:?}\n--- original:\n{original}\n--- patched:\n{patched}",
                line.text
            );
            if let Some(n) = left {
                *n -= 1;
            }
        }

        if style.crlf {
            prop_assert_eq!(
                patched.matches('\n').count(),
                patched.matches("\r\n").count(),
                "a CRLF file got LF-only lines:\n{}",
                patched
            );
        } else {
            prop_assert!(!patched.contains('\r'), "an LF file got CR:\n{}", patched);
        }
    }
}

/// The shrunk case of `messages_never_lower_the_sequence_of_an_occurrence`: a series
/// (only a room at first, so nothing is sent), an attendee invited, an override added
/// for occurrence 4 (ADD), removed again (CANCEL, SEQUENCE 3), and added again: the
/// second ADD went out with SEQUENCE 2, below the CANCEL.
#[test]
fn re_adding_a_removed_occurrence_keeps_its_sequence() {
    let event = Event {
        uid: "readd@generated".to_string(),
        sequence: None,
        start: NaiveDate::from_ymd_opt(2030, 1, 7)
            .and_then(|d| d.and_hms_opt(7, 0, 0))
            .expect("a time"),
        hours: 1,
        zoned: false,
        summary: "Planning",
        location: None,
        long_description: false,
        organizer_cn: None,
        organizer_attends: false,
        attendees: vec![Person {
            address: "room1@example.com",
            cn: None,
            partstat: None,
            rsvp: Some(false),
            agent: None,
            room: true,
        }],
        repeat: Some((Repeat::Weekly, 5)),
        overrides: vec![Override {
            occurrence: 1,
            shift_hours: 0,
            cancelled: false,
        }],
        alarm: false,
        x_prop: false,
        x_after_alarm: false,
    };
    let style = Style {
        crlf: false,
        fold: None,
        mailto_caps: false,
        param_rotation: 0,
    };
    let edits = [
        Edit::Invite("a@example.net"),
        Edit::MoveOccurrence(4),
        Edit::RemoveOverride(1),
        Edit::MoveOccurrence(4),
    ];
    if let Err(e) = organizer_edit_chain(&event, &style, &edits, Messages::NeverLower) {
        panic!("{e}");
    }
}

/// The case `messages_never_lower_the_sequence_of_an_occurrence` found on a fresh
/// clone: an event whose only other attendee has declined; the invited attendee is
/// removed (a CANCEL with SEQUENCE 2, and no REQUEST to anyone else, so the organizer's
/// copy kept SEQUENCE 1), SCHEDULE-FORCE-SEND is put on the declined attendee, and a
/// new title then went out as a REQUEST with SEQUENCE 1, below the CANCEL.
#[test]
fn an_update_after_removing_an_attendee_never_goes_out_below_the_cancel() {
    let person = |address: &'static str, partstat: Option<&'static str>| Person {
        address,
        cn: None,
        partstat,
        rsvp: None,
        agent: None,
        room: false,
    };
    let event = Event {
        uid: "uninvite@generated".to_string(),
        sequence: None,
        start: NaiveDate::from_ymd_opt(2030, 1, 7)
            .and_then(|d| d.and_hms_opt(7, 0, 0))
            .expect("a time"),
        hours: 1,
        zoned: false,
        summary: "Planning",
        location: None,
        long_description: false,
        organizer_cn: None,
        organizer_attends: false,
        attendees: vec![
            person("d@example.org", Some("DECLINED")),
            person("a@example.net", None),
        ],
        repeat: None,
        overrides: Vec::new(),
        alarm: false,
        x_prop: false,
        x_after_alarm: false,
    };
    let style = Style {
        crlf: false,
        fold: None,
        mailto_caps: false,
        param_rotation: 0,
    };
    let edits = [
        Edit::Uninvite(1),
        Edit::ForceSend(0),
        Edit::Retitle("Review"),
    ];
    if let Err(e) = organizer_edit_chain(&event, &style, &edits, Messages::NeverLower) {
        panic!("{e}");
    }
}
