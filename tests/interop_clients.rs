//! imipd's outgoing mail read by the parsers real clients use.
//!
//! Every message of the imip snapshot set, of every scenario run (the project's own,
//! and the shared conformance suite and seed when present) and of the example events
//! is built into an email as it would be sent. The `text/calendar` part goes to
//! - ical.js (npm `ical.js`, Thunderbird's parser), run by node: `tests/interop/icaljs.mjs`;
//! - libical (Debian `gir1.2-ical-3.0` + `python3-gi`, Evolution's library):
//!   `tests/interop/libical.py`.
//!
//! Asserted for each message: both parse it; every DTSTART/DTEND/DUE resolves to the
//! instant chrono-tz gives for its TZID (through calcard's `Tz`, which also maps Windows
//! zone names), so a TZID without VTIMEZONE (read as floating by ical.js) fails; libical's
//! iTIP restriction check (RFC 5546's tables) passes for the METHOD; no server-only
//! parameter (SCHEDULE-STATUS, -AGENT, -FORCE-SEND; RFC 6638 §7.3, which libical does not
//! check) is in it; and the mail's When line shows the day and wall time ical.js reads.
//! Complaints that are known and explained are listed in [`KNOWN`] and
//! [`KNOWN_SERVER_PARAMS`], each narrow and with its reason.
//!
//! The tools are installed by `scripts/test` (`npm ci` in `tests/interop/`, apt for libical).
//! Without them the test says SKIPPED loudly; with `CI=true` a missing tool fails it.

#[path = "data/imip/fixtures.rs"]
mod fixtures;
#[path = "support/mod.rs"]
mod support;

use calcard::common::timezone::Tz;
use calcard::icalendar::{
    ICalendar, ICalendarComponentType, ICalendarEntry, ICalendarProperty, ICalendarValue,
};
use chrono::TimeZone;
use imipd::imip::{build_message, Language};
use imipd::itip::{self, method_name, CalAddress, ItipMessage, ReplyDetails};
use imipd::replay::run_paths;
use mail_parser::MessageParser;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

/// A libical complaint about a message that is known and explained, kept narrow: the
/// METHOD (`*`: any), the text of libical's X-LIC-ERROR, and a text the message must
/// contain.
struct Known {
    method: &'static str,
    error: &'static str,
    message_contains: &'static str,
    why: &'static str,
}

/// Known libical complaints. Remove an entry when its fix is merged: with the shared
/// suites present, an entry that matches nothing fails the test.
const KNOWN: &[Known] = &[
    Known {
        method: "REPLY",
        error: "ATTENDEE property. Expected 1 instances of the property and got 2",
        message_contains: "DELEGATED-",
        why: "RFC 5546 §3.2.2.3 and §4.2.5: a delegation REPLY names delegator and \
              delegate (the conformance suite expects both); libical's table allows one",
    },
    Known {
        method: "DECLINECOUNTER",
        error: "Expected 0 instances of the property and got 1",
        message_contains: "METHOD:DECLINECOUNTER",
        why: "libical's DECLINECOUNTER table forbids ATTENDEE, SEQUENCE and SUMMARY, which \
              imipd's DECLINECOUNTER repeats (itip::decline_counter, engine-inbound's): to \
              be decided against RFC 5546 §3.2.8",
    },
    Known {
        method: "REQUEST",
        error: "Expected 1 instances of the property and got 0",
        message_contains: "BEGIN:VTODO",
        why: "the scenario's to-do has no DTSTART and no PRIORITY, which libical's VTODO \
              REQUEST table requires; imipd sends what the user wrote",
    },
    Known {
        method: "*",
        error: "Removing entire property: 19970701T2100000Z",
        message_contains: "19970701T2100000Z",
        why: "the shared conformance input copies RFC 5546's malformed DTEND \
              (7-digit time); imipd forwards it as received",
    },
];

/// Parameters only the server that holds a copy may use (RFC 6638 §7.3).
const SERVER_ONLY: [&str; 3] = ["SCHEDULE-STATUS", "SCHEDULE-AGENT", "SCHEDULE-FORCE-SEND"];

/// Known server-only parameters in outgoing messages: (METHOD, parameter, why). Remove
/// an entry when its fix is merged; with the shared suites present a stale one fails.
const KNOWN_SERVER_PARAMS: &[(&str, &str, &str)] = &[];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Fails in CI, says SKIPPED elsewhere.
fn missing(tool: &str, why: &str) {
    let text = format!(
        "{tool} is not available ({why}); `scripts/test` installs it (npm ci in tests/interop, \
         apt-get install gir1.2-ical-3.0 python3-gi)"
    );
    assert!(!in_ci(), "{text}");
    eprintln!("\n******** SKIPPED: {text} ********\n");
}

/// One outgoing message as a recipient gets it.
struct Sample {
    label: String,
    method: String,
    ics: String,
    text: String,
}

fn sample(label: String, msg: &ItipMessage) -> Option<Sample> {
    sample_with(label, msg, &fixtures::options(Language::En))
}

fn sample_with(
    label: String,
    msg: &ItipMessage,
    options: &imipd::imip::OutgoingOptions,
) -> Option<Sample> {
    let recipient = msg.to.first()?.clone();
    let mail = build_message(msg, &recipient, options, &fixtures::stamp())
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let parsed = MessageParser::default()
        .parse(&mail.bytes)
        .unwrap_or_else(|| panic!("{label}: mail does not parse"));
    let ics = support::files::calendar_part(&parsed)
        .unwrap_or_else(|| panic!("{label}: no text/calendar part"));
    let text = parsed
        .body_text(0)
        .map(|t| t.replace("\r\n", "\n"))
        .unwrap_or_default();
    Some(Sample {
        label,
        method: method_name(&msg.method).to_string(),
        ics,
        text,
    })
}

/// The snapshot set, every scenario run and the example events.
fn samples() -> Vec<Sample> {
    let mut out = Vec::new();
    for case in fixtures::all_cases() {
        out.extend(sample(format!("snapshot {}", case.name), &case.msg));
    }
    let mut runs: Vec<(PathBuf, ReplyDetails)> =
        vec![(root().join("tests/scenarios"), ReplyDetails::Full)];
    for (sub, details) in [
        ("conformance", ReplyDetails::Full),
        ("seed", ReplyDetails::Minimal),
    ] {
        let dir = root().join("../shared").join(sub);
        if dir.is_dir() {
            runs.push((dir, details));
        }
    }
    for (dir, details) in runs {
        let report = run_paths(std::slice::from_ref(&dir), details).expect("scenarios run");
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        for (i, msg) in report.produced.iter().enumerate() {
            let label = format!(
                "{} message {i} ({} {})",
                name.as_deref().unwrap_or("scenarios"),
                method_name(&msg.method),
                msg.uid().unwrap_or_default()
            );
            out.extend(sample(label, msg));
        }
    }
    // Under `attendee_list = "hidden"` each attendee's calendar is cut down to the
    // organizer and themselves: it must still read as the same event.
    let hidden = imipd::imip::OutgoingOptions {
        attendee_list: imipd::imip::AttendeeList::Hidden,
        ..fixtures::options(Language::En)
    };
    for (label, msg) in example_messages() {
        out.extend(sample(label.clone(), &msg));
        out.extend(sample_with(
            format!("{label}, attendee_list hidden"),
            &msg,
            &hidden,
        ));
    }
    out
}

/// Invitations, a two-hour move and cancellations for each file in `examples/events/`,
/// as its organizer's imipd sends them, and for variants a user might write: a Windows
/// zone name, a weekly series in another zone.
fn example_messages() -> Vec<(String, ItipMessage)> {
    let dir = root().join("examples/events");
    let mut out = Vec::new();
    for file in support::files::with_extension(&dir, "ics") {
        let text = std::fs::read_to_string(&file).expect("example");
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        let variants = [
            (name.clone(), text.clone()),
            (
                format!("{name} in a Windows zone"),
                text.replace("TZID=Europe/Berlin", "TZID=W. Europe Standard Time"),
            ),
            (
                format!("{name} weekly in New York"),
                text.replace("TZID=Europe/Berlin", "TZID=America/New_York")
                    .replace("SUMMARY:", "RRULE:FREQ=WEEKLY;COUNT=30\r\nSUMMARY:"),
            ),
        ];
        for (label, text) in variants {
            let Ok(cal) = ICalendar::parse(&text) else {
                panic!("{label} does not parse");
            };
            let Some(organizer) = organizer_of(&cal) else {
                continue;
            };
            let account = [organizer];
            let ctx = support::fixture::context(&account, 1_900_000_000);
            let invite = itip::schedule_change(None, &cal, &ctx).expect("invitations");
            // Two hours later: an update whose What-changed lines are in the zone too.
            let moved = text
                .replace("T123000", "T143000")
                .replace("T133000", "T153000");
            let moved = ICalendar::parse(&moved).expect("moved version");
            let update = itip::schedule_change(Some(&cal), &moved, &ctx).expect("update");
            let cancel = itip::schedule_removal(&cal, &ctx).expect("cancel");
            let all = invite.messages.into_iter().chain(update.messages);
            for msg in all.chain(cancel.messages) {
                out.push((format!("example {label}"), msg));
            }
        }
    }
    out
}

fn organizer_of(cal: &ICalendar) -> Option<CalAddress> {
    cal.components
        .iter()
        .find_map(|c| c.property(&ICalendarProperty::Organizer))
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_text())
        .and_then(CalAddress::parse)
}

/// What a date property means: an instant (with the zone named), a date, or floating.
#[derive(Debug, Clone, PartialEq)]
enum Meaning {
    Instant { unix: i64, zone: String },
    Date,
    Floating,
    UnknownZone,
}

fn meaning(entry: &ICalendarEntry) -> Option<Meaning> {
    let Some(ICalendarValue::PartialDateTime(dt)) = entry.values.first() else {
        return None;
    };
    if !dt.has_time() {
        return Some(Meaning::Date);
    }
    let result = dt.to_date_time()?;
    if let Some(offset) = result.offset {
        let unix = result.date_time.and_utc().timestamp() - i64::from(offset.local_minus_utc());
        return Some(Meaning::Instant {
            unix,
            zone: "UTC".into(),
        });
    }
    let Some(tzid) = entry.tz_id() else {
        return Some(Meaning::Floating);
    };
    let Ok(tz) = Tz::from_str(tzid) else {
        return Some(Meaning::UnknownZone);
    };
    let local = tz.from_local_datetime(&result.date_time).earliest()?;
    Some(Meaning::Instant {
        unix: local.timestamp(),
        zone: tz.name().map_or(tzid.to_string(), |n| n.into_owned()),
    })
}

/// Per VEVENT/VTODO, in file order: DTSTART/DTEND/DUE meanings.
fn expected(ics: &str) -> Vec<BTreeMap<&'static str, Meaning>> {
    let cal = ICalendar::parse(ics).expect("imipd's own output parses");
    cal.components
        .iter()
        .filter(|c| {
            matches!(
                c.component_type,
                ICalendarComponentType::VEvent | ICalendarComponentType::VTodo
            )
        })
        .map(|c| {
            [
                ("dtstart", ICalendarProperty::Dtstart),
                ("dtend", ICalendarProperty::Dtend),
                ("due", ICalendarProperty::Due),
            ]
            .into_iter()
            .filter_map(|(key, p)| Some((key, meaning(c.property(&p)?)?)))
            .collect()
        })
        .collect()
}

/// The strings of a JSON array (missing or other values: none).
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Each sample as a file `NNNN.ics` (its index) in a new folder for `label`.
fn write_samples(label: &str, samples: &[Sample]) -> support::TempDir {
    let dir = support::TempDir::new(label);
    for (i, s) in samples.iter().enumerate() {
        std::fs::write(dir.join(&format!("{i:04}.ics")), &s.ics).expect("write");
    }
    dir
}

/// What `reader` (run as `command` on `dir`, written by [`write_samples`]) printed for
/// each sample; a sample it printed nothing for is a failure.
fn read_each<'a>(
    command: Command,
    dir: &Path,
    reader: &str,
    samples: &'a [Sample],
    failures: &mut Vec<String>,
) -> Vec<(&'a Sample, Value)> {
    let mut results = run_reader(command, dir, reader);
    let mut out = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        match results.remove(&format!("{i:04}.ics")) {
            Some(got) => out.push((s, got)),
            None => failures.push(format!("{}: {reader} printed nothing", s.label)),
        }
    }
    out
}

/// Runs `program args… dir` and reads one JSON object per line, by file name.
fn run_reader(mut command: Command, dir: &Path, what: &str) -> BTreeMap<String, Value> {
    let output = support::tools::run_ok(command.arg(dir), what);
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"));
            let file = value["file"].as_str().unwrap_or_default().to_string();
            (file, value)
        })
        .collect()
}

/// ical.js and libical, whichever are installed; `None` when neither is (the test then
/// has nothing to run).
fn parsers() -> Option<(Option<Command>, Option<Command>)> {
    let (icaljs, libical) = (node(), libical());
    (icaljs.is_some() || libical.is_some()).then_some((icaljs, libical))
}

fn node() -> Option<Command> {
    let module = root().join("tests/interop/node_modules/ical.js/package.json");
    if !module.is_file() {
        missing(
            "ical.js",
            "tests/interop/node_modules/ical.js not installed",
        );
        return None;
    }
    let works = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        missing("node", "no node on PATH");
        return None;
    }
    let mut command = Command::new("node");
    command.arg(root().join("tests/interop/icaljs.mjs"));
    Some(command)
}

fn libical() -> Option<Command> {
    // Debian's python3-gi is for Debian's python; a pyenv `python3` may not see it.
    let probe = "import gi; gi.require_version('ICalGLib', '3.0'); \
                 from gi.repository import ICalGLib";
    for python in ["/usr/bin/python3", "python3"] {
        let works = Command::new(python)
            .args(["-c", probe])
            .output()
            .is_ok_and(|o| o.status.success());
        if works {
            let mut command = Command::new(python);
            command.arg(root().join("tests/interop/libical.py"));
            return Some(command);
        }
    }
    missing("libical (ICalGLib 3.0)", "python3 cannot import it");
    None
}

/// The wall time ical.js read, as the When line writes it: `10 Jun 2030` and `12:30`.
fn wall_time(local: &str) -> Option<(String, Option<String>)> {
    let date = chrono::NaiveDate::parse_from_str(local.get(..10)?, "%Y-%m-%d").ok()?;
    let day = date.format("%-d %b %Y").to_string();
    let time = local.get(11..16).map(str::to_string);
    Some((day, time))
}

/// The When (or Proposed time) line of an English text body.
fn when_line(text: &str) -> Option<&str> {
    text.lines()
        .find(|l| l.starts_with("When: ") || l.starts_with("Proposed time: "))
}

fn check_instants(
    failures: &mut Vec<String>,
    reader: &str,
    sample: &Sample,
    want: &[BTreeMap<&'static str, Meaning>],
    got: &Value,
) {
    let components = got["components"].as_array().cloned().unwrap_or_default();
    if components.len() != want.len() {
        failures.push(format!(
            "{}: {reader} sees {} components, imipd wrote {}",
            sample.label,
            components.len(),
            want.len()
        ));
        return;
    }
    for (i, (want, got)) in want.iter().zip(&components).enumerate() {
        for (key, meaning) in want {
            let seen = &got[*key];
            match meaning {
                Meaning::Instant { unix, .. } => {
                    if seen["unix"].as_i64() != Some(*unix) {
                        failures.push(format!(
                            "{}: component {i} {key}: {reader} reads {} (zone {}), the real \
                             instant is {unix}\n{}",
                            sample.label, seen["unix"], seen["zone"], sample.ics
                        ));
                    }
                }
                Meaning::Date => {
                    if seen["is_date"].as_bool() != Some(true) {
                        failures.push(format!(
                            "{}: component {i} {key}: {reader} does not read a date",
                            sample.label
                        ));
                    }
                }
                Meaning::Floating | Meaning::UnknownZone => {}
            }
        }
    }
}

/// True when `text` holds a machine timestamp such as `2030-06-10T10:00:00Z`.
fn has_iso_timestamp(text: &str) -> bool {
    let shape = b"dd-ddTdd:dd";
    text.as_bytes().windows(shape.len()).any(|w| {
        w.iter().zip(shape).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            other => c == other,
        })
    })
}

/// Each occurrence ical.js lays out for a zoned series is at the instant chrono-tz gives
/// its wall time: the VTIMEZONE's rules agree with the tz database across DST changes.
/// Returns how many occurrences were compared.
fn check_occurrences(failures: &mut Vec<String>, sample: &Sample, icaljs: &Value) -> usize {
    let cal = ICalendar::parse(&sample.ics).expect("imipd's own output parses");
    let components: Vec<_> = cal
        .components
        .iter()
        .filter(|c| {
            matches!(
                c.component_type,
                ICalendarComponentType::VEvent | ICalendarComponentType::VTodo
            )
        })
        .collect();
    let seen = icaljs["components"].as_array().cloned().unwrap_or_default();
    let mut compared = 0;
    for (component, seen) in components.iter().zip(&seen) {
        let Some(tz) = component
            .property(&ICalendarProperty::Dtstart)
            .and_then(|e| e.tz_id())
            .and_then(|tzid| Tz::from_str(tzid).ok())
        else {
            continue;
        };
        for occurrence in seen["occurrences"].as_array().into_iter().flatten() {
            let local = occurrence["local"].as_str().unwrap_or_default();
            let Ok(wall) = chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M:%S") else {
                continue;
            };
            let Some(real) = tz.from_local_datetime(&wall).earliest() else {
                continue;
            };
            compared += 1;
            if occurrence["unix"].as_i64() != Some(real.timestamp()) {
                failures.push(format!(
                    "{}: ical.js puts the occurrence at {local} at {}, the real instant is {}",
                    sample.label,
                    occurrence["unix"],
                    real.timestamp()
                ));
            }
        }
    }
    compared
}

/// The first occurrence of the series `components[main]` at or after its DTSTAMP (a day
/// from the DTSTAMP's day, for all-day series), as ical.js's `dtstart` shape with the
/// occurrence's wall time and the series' zone (the override's start, when the message
/// has one for it); `None` when the series had not begun.
fn next_occurrence(components: &[Value], main: usize) -> Option<Value> {
    let series = &components[main];
    let start = &series["dtstart"];
    let stamp = &series["dtstamp"];
    let stamp_unix = stamp["unix"].as_i64()?;
    let all_day = start["is_date"].as_bool() == Some(true);
    let stamp_day = stamp["local"].as_str()?.get(..10)?.to_string();
    let begun = |o: &Value| -> Option<bool> {
        Some(if all_day {
            o["local"].as_str()?.get(..10)? < stamp_day.as_str()
        } else {
            o["unix"].as_i64()? < stamp_unix
        })
    };
    if !begun(start)? {
        return None;
    }
    let next = series["occurrences"]
        .as_array()?
        .iter()
        .find(|o| begun(o) == Some(false))?;
    let overridden = components
        .iter()
        .find(|c| c["recurrence_id"].as_str() == next["local"].as_str());
    if let Some(instance) = overridden {
        return Some(instance["dtstart"].clone());
    }
    let mut shown = start.clone();
    shown["local"] = next["local"].clone();
    shown["unix"] = next["unix"].clone();
    Some(shown)
}

/// The When line shows the day, wall time and zone of the main component's start as
/// ical.js reads it (and the end time, when it ends the same day in the same zone);
/// no line of the text shows a raw timestamp.
fn check_when_line(
    failures: &mut Vec<String>,
    sample: &Sample,
    want: &[BTreeMap<&'static str, Meaning>],
    icaljs: &Value,
) -> bool {
    if has_iso_timestamp(&sample.text) {
        failures.push(format!(
            "{}: the mail text shows a raw timestamp\n{}",
            sample.label, sample.text
        ));
    }
    let components = icaljs["components"].as_array().cloned().unwrap_or_default();
    let main = components
        .iter()
        .position(|c| c["recurrence_id"].is_null())
        .or((!components.is_empty()).then_some(0));
    let Some(main) = main else {
        return false;
    };
    // A series that began before the message was made (its DTSTAMP) is shown by its
    // next occurrence as ical.js lays them out (an occurrence with an override of its
    // own in the message is the override's).
    let next = next_occurrence(&components, main);
    let shifted = next.is_some();
    let start = next.as_ref().unwrap_or(&components[main]["dtstart"]);
    let Some((day, time)) = start["local"].as_str().and_then(wall_time) else {
        return false;
    };
    let Some(line) = when_line(&sample.text) else {
        failures.push(format!(
            "{}: the mail has no When line but the event starts {}\n{}",
            sample.label, start["local"], sample.text
        ));
        return false;
    };
    let mut wrong = Vec::new();
    if !line.contains(&day) {
        wrong.push(format!("the day {day}"));
    }
    if start["is_date"].as_bool() != Some(true) {
        if let Some(time) = time.filter(|t| !line.contains(t.as_str())) {
            wrong.push(format!("the time {time}"));
        }
        // The zone as imipd names it (chrono-tz's name) or as ical.js does (the TZID).
        let named = match want.get(main).and_then(|w| w.get("dtstart")) {
            Some(Meaning::Instant { zone, .. }) => Some(zone.clone()),
            _ => None,
        };
        let icaljs_zone = start["zone"].as_str().map(str::to_string);
        let zones: Vec<String> = named.into_iter().chain(icaljs_zone).collect();
        if !zones.is_empty() && !zones.iter().any(|z| line.contains(&format!("({z})"))) {
            wrong.push(format!("the zone {zones:?}"));
        }
        let end = &components[main]["dtend"];
        let same_zone = end["zone"] == start["zone"] && !shifted;
        if let Some((end_day, Some(end_time))) = end["local"].as_str().and_then(wall_time) {
            if same_zone && end_day == day && !line.contains(&end_time) {
                wrong.push(format!("the end {end_time}"));
            }
        }
    }
    if !wrong.is_empty() {
        failures.push(format!(
            "{}: the When line {line:?} lacks {}, as ical.js reads the start {} ({})",
            sample.label,
            wrong.join(", "),
            start["local"],
            start["zone"]
        ));
    }
    true
}

#[test]
fn every_outgoing_message_reads_right_in_thunderbird_and_evolution_parsers() {
    let Some((icaljs, libical)) = parsers() else {
        return;
    };
    let samples = samples();
    assert!(
        samples.len() >= 40,
        "expected the snapshot set, the scenarios and the examples, found {}",
        samples.len()
    );
    let dir = write_samples("imipd-interop-clients", &samples);

    let mut failures = Vec::new();
    let mut counts = BTreeMap::<&str, usize>::new();
    let mut known_used = vec![false; KNOWN.len()];
    let mut known_server_used = vec![false; KNOWN_SERVER_PARAMS.len()];

    // libical's check does not look at parameters: RFC 6638 §7.3 keeps the server-only
    // ones out of every scheduling message. Checked here on the unfolded text.
    for s in &samples {
        let unfolded = s.ics.replace("\r\n ", "");
        for param in SERVER_ONLY {
            if unfolded.lines().any(|l| l.contains(&format!(";{param}="))) {
                let known = KNOWN_SERVER_PARAMS
                    .iter()
                    .position(|(m, p, _)| *m == s.method && *p == param);
                match known {
                    Some(k) => known_server_used[k] = true,
                    None => failures.push(format!(
                        "{}: {} carries {param} (RFC 6638 §7.3)\n{}",
                        s.label, s.method, s.ics
                    )),
                }
            }
        }
    }

    // Outside the workplace the shared suites are absent and some known entries have
    // nothing to match; with them, an unused entry is stale.
    let full_run = root().join("../shared/conformance").is_dir();
    for (used, (method, param, why)) in known_server_used.iter().zip(KNOWN_SERVER_PARAMS) {
        if !used && full_run {
            failures.push(format!(
                "known {param} in {method} no longer seen ({why}): remove it from \
                 KNOWN_SERVER_PARAMS"
            ));
        }
    }

    if let Some(command) = icaljs {
        for (s, got) in read_each(command, dir.path(), "ical.js", &samples, &mut failures) {
            let got = &got;
            if got["ok"].as_bool() != Some(true) {
                failures.push(format!(
                    "{}: ical.js cannot parse it: {}\n{}",
                    s.label, got["error"], s.ics
                ));
                continue;
            }
            *counts.entry("ical.js parsed").or_default() += 1;
            let want = expected(&s.ics);
            check_instants(&mut failures, "ical.js", s, &want, got);
            if check_when_line(&mut failures, s, &want, got) {
                *counts.entry("When lines checked").or_default() += 1;
            }
            *counts.entry("ical.js occurrences checked").or_default() +=
                check_occurrences(&mut failures, s, got);
        }
    }
    if let Some(command) = libical {
        for (s, got) in read_each(command, dir.path(), "libical", &samples, &mut failures) {
            let got = &got;
            let mut explain = |errors: &[String]| -> Vec<String> {
                errors
                    .iter()
                    .filter(|e| {
                        let known = KNOWN.iter().position(|k| {
                            (k.method == "*" || k.method == s.method)
                                && e.contains(k.error)
                                && s.ics.contains(k.message_contains)
                        });
                        if let Some(k) = known {
                            known_used[k] = true;
                        }
                        known.is_none()
                    })
                    .cloned()
                    .collect()
            };
            if got["ok"].as_bool() != Some(true) {
                let errors = strings(&got["parse_errors"]);
                let unexplained = explain(&errors);
                if errors.is_empty() || !unexplained.is_empty() {
                    failures.push(format!(
                        "{}: libical cannot parse it: {} {unexplained:?}\n{}",
                        s.label, got["error"], s.ics
                    ));
                } else {
                    *counts.entry("libical known complaints").or_default() += 1;
                }
                continue;
            }
            *counts.entry("libical parsed").or_default() += 1;
            check_instants(&mut failures, "libical", s, &expected(&s.ics), got);
            let errors = strings(&got["restriction_errors"]);
            if got["restriction_ok"].as_bool() == Some(true) && errors.is_empty() {
                *counts
                    .entry("libical restriction check passed")
                    .or_default() += 1;
                continue;
            }
            let unexplained = explain(&errors);
            if unexplained.is_empty() && !errors.is_empty() {
                *counts.entry("libical known complaints").or_default() += 1;
            } else {
                failures.push(format!(
                    "{}: libical's iTIP restriction check fails for {}: {unexplained:?}\n{}",
                    s.label, s.method, s.ics
                ));
            }
        }
        for (used, k) in known_used.iter().zip(KNOWN) {
            if !used {
                let text = format!(
                    "known libical complaint no longer seen ({} {:?}: {}): remove it from KNOWN",
                    k.method, k.error, k.why
                );
                if full_run {
                    failures.push(text);
                } else {
                    eprintln!("{text}");
                }
            }
        }
    }
    println!("{} messages: {counts:?}", samples.len());
    assert!(
        failures.is_empty(),
        "{} problems:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// What imipd stores, as files a client reads: every invitation of [`samples`] imported
/// by the engine for its first attendee (after the repairs the LMTP path makes), and
/// real mail (iCloud, Google, Outlook with a
/// zone named `Sarajevo, Skopje, Warsaw, Zagreb`) delivered into a store through the
/// LMTP path, each file as it lies in the store.
fn stored_files() -> Vec<Sample> {
    let mut out = Vec::new();
    for s in samples().iter().filter(|s| s.method == "REQUEST") {
        let Ok(mut cal) = ICalendar::parse(&s.ics) else {
            continue;
        };
        // As the LMTP path does: repaired, or refused (a scenario's DTEND
        // `19970701T2100000Z` has no reading, and is never stored).
        let kind = itip::validate::Kind::CreatingMessage;
        if itip::validate::repair(&mut cal, kind, 1_900_000_000).is_err() {
            continue;
        }
        let Some(organizer) = organizer_of(&cal) else {
            continue;
        };
        let attendee = cal
            .components
            .iter()
            .flat_map(|c| c.entries.iter())
            .filter(|e| e.name == ICalendarProperty::Attendee)
            .filter_map(|e| e.values.first()?.as_text().and_then(CalAddress::parse))
            .find(|a| *a != organizer);
        let Some(attendee) = attendee else {
            continue;
        };
        let account = [attendee];
        let ctx = support::fixture::context(&account, 1_900_000_000);
        if let Ok(outcome) = itip::receive(&cal, &organizer, None, &ctx) {
            if let Some(copy) = outcome.copy {
                out.push(Sample {
                    label: format!("{}, as stored by the attendee", s.label),
                    method: "stored".into(),
                    ics: copy.to_string(),
                    text: String::new(),
                });
            }
        }
    }
    out.extend(delivered_files());
    out
}

/// Real mail delivered to Bob through the LMTP path, and his store's files afterwards.
fn delivered_files() -> Vec<Sample> {
    use imipd::config::{Layout, LmtpSection};
    use imipd::daemon::inbound::Verdict;
    use imipd::store::state::State;
    use support::fixture;
    let dir = support::TempDir::new("imipd-interop-stored");
    let folder = dir.path().join("stores/bob/calendar");
    std::fs::create_dir_all(&folder).expect("store folder");
    let store = fixture::store(
        &dir.path().join("stores"),
        Layout::Vdir,
        vec![fixture::user("bob")],
    );
    let state = State::open(&dir.path().join("state.redb")).expect("state");
    let settings = LmtpSection {
        trusted_authserv_ids: vec!["mx.example.com".into()],
        ..fixture::lmtp_settings_secure(false)
    };
    for name in [
        "icloud_invite.eml",
        "google_group_invite.eml",
        "outlook_sarajevo_invite.eml",
    ] {
        let mail = std::fs::read(root().join("tests/data/imip/inbound").join(name)).expect(name);
        let verdict = fixture::deliver(
            &store,
            &state,
            &settings,
            "bob@example.com",
            &mail,
            1_900_000_000,
        );
        assert!(
            matches!(&verdict, Verdict::Accepted(t) if t.contains("imported")),
            "{name}: {verdict:?}"
        );
    }
    fixture::assert_valid_files(&dir.path().join("stores"));
    support::files::with_extension(&folder, "ics")
        .into_iter()
        .map(|path| Sample {
            label: format!("Bob's stored {}", path.display()),
            method: "stored".into(),
            ics: std::fs::read_to_string(&path).expect("stored file"),
            text: String::new(),
        })
        .collect()
}

#[test]
fn every_stored_file_reads_right_in_thunderbird_and_evolution_parsers() {
    let Some((icaljs, libical)) = parsers() else {
        return;
    };
    let files = stored_files();
    assert!(files.len() >= 20, "found only {} stored files", files.len());
    let dir = write_samples("imipd-interop-stored-files", &files);
    let mut failures = Vec::new();
    let mut sarajevo = 0;
    let readers = [("ical.js", icaljs), ("libical", libical)];
    for (reader, command) in readers {
        let Some(command) = command else { continue };
        for (s, got) in read_each(command, dir.path(), reader, &files, &mut failures) {
            let got = &got;
            if got["ok"].as_bool() != Some(true) {
                failures.push(format!(
                    "{}: {reader} cannot parse it: {} {:?}\n{}",
                    s.label,
                    got["error"],
                    strings(&got["parse_errors"]),
                    s.ics
                ));
                continue;
            }
            check_instants(&mut failures, reader, s, &expected(&s.ics), got);
            // Outlook's zone name has commas: the VTIMEZONE's TZID is TEXT and written
            // escaped (`Sarajevo\, Skopje…`), the parameter quoted. Both readers must
            // find the zone for the parameter: 10:00 in June there is 08:00 UTC.
            if s.ics
                .contains("TZID:Sarajevo\\, Skopje\\, Warsaw\\, Zagreb")
            {
                sarajevo += 1;
                let start = &got["components"][0]["dtstart"];
                if start["zone"].as_str() != Some("Sarajevo, Skopje, Warsaw, Zagreb")
                    || start["unix"].as_i64() != Some(1_907_308_800)
                {
                    failures.push(format!(
                        "{}: {reader} reads DTSTART as {start}\n{}",
                        s.label, s.ics
                    ));
                }
            }
        }
    }
    assert!(sarajevo > 0, "the Outlook invitation was not stored");
    assert!(
        failures.is_empty(),
        "{} problems:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
