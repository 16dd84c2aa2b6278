//! The scenario runner: executable iTIP stories, used by `imipd replay` and `cargo test`.
//!
//! A scenario plays users' calendars against the engine: accounts store objects
//! (`put`), delete them, receive messages (`send`, `itip`), and the file states what
//! must come out (`expect`, `get`). Every user lives in one in-memory world; the engine
//! is given one fixed "now" for the whole run. See `canonical` for how results are
//! compared, `script` for the file format and `departures` for the places where the
//! reference scenarios are translated to what the RFCs require, or listed as departing
//! (reported as departing, never silently passed).

pub mod canonical;
pub mod departures;
pub mod script;

use crate::itip::{
    self, method_name, CalAddress, Context, ItipError, ItipMessage, MessageSummary, ReplyDetails,
};
use calcard::icalendar::{ICalendar, ICalendarMethod, ICalendarProperty, ICalendarValue};
use canonical::{canonicalize, Node, Numbering};
use departures::{Departure, SentSequences};
use script::{Command, Step};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The "now" the engine sees during a replay: 1990-01-01T00:00:00Z, before every
/// scenario's events, so that no event counts as past.
pub const REPLAY_NOW: i64 = 631_152_000;

/// One step that did not do what the file says.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The file.
    pub file: PathBuf,
    /// 1-based line of the command.
    pub line: usize,
    /// The step's title (last comment before it).
    pub title: String,
    /// Expected text, normalised.
    pub expected: String,
    /// Actual text, normalised.
    pub actual: String,
}

/// A step that did what the RFC asks for where the file's reference expectation does
/// not (see [`departures`]).
#[derive(Debug, Clone)]
pub struct Departed {
    /// The file.
    pub file: PathBuf,
    /// 1-based line of the command.
    pub line: usize,
    /// The step's title (last comment before it).
    pub title: String,
    /// Which RFC rule the expectation was translated by.
    pub departure: Departure,
}

/// Totals over one or more files.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Steps that did what the file says.
    pub passed: usize,
    /// Steps that did what the RFC says where the file's reference expectation differs.
    pub departed: Vec<Departed>,
    /// Steps that did not.
    pub failures: Vec<Failure>,
    /// Every message the engine produced during the run, in order (for the tests
    /// that feed them to real client parsers).
    pub produced: Vec<ItipMessage>,
}

impl Report {
    /// Adds another report's counts.
    pub fn merge(&mut self, other: Report) {
        self.passed += other.passed;
        self.departed.extend(other.departed);
        self.failures.extend(other.failures);
        self.produced.extend(other.produced);
    }

    /// The human-readable report: every departure with its reason, every failure, then
    /// `N passed, D departed (RFC), M failed` (the middle part only when D > 0).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.departed {
            let _ = writeln!(
                out,
                "DEPARTS {}:{} {}\n  ({})",
                d.file.display(),
                d.line,
                d.title,
                d.departure.reason()
            );
        }
        for f in &self.failures {
            let _ = writeln!(out, "FAIL {}:{} {}", f.file.display(), f.line, f.title);
            let _ = writeln!(out, "--- expected");
            for line in f.expected.lines() {
                let _ = writeln!(out, "  {line}");
            }
            let _ = writeln!(out, "--- actual");
            for line in f.actual.lines() {
                let _ = writeln!(out, "  {line}");
            }
            let _ = writeln!(out);
        }
        let departed = match self.departed.len() {
            0 => String::new(),
            n => format!(", {n} departed (RFC)"),
        };
        let _ = writeln!(
            out,
            "{} passed{departed}, {} failed",
            self.passed,
            self.failures.len()
        );
        out
    }
}

/// What the last step produced: messages, or the reason there are none.
#[derive(Debug, Clone)]
enum Outcome {
    Messages(Vec<ItipMessage>),
    Error(ItipError),
}

/// All users' calendars and the run's DTSTAMP numbering.
struct World {
    /// Each account's objects as the user (or imipd) last wrote them: what `get` sees.
    calendars: BTreeMap<String, BTreeMap<String, ICalendar>>,
    /// The version the next change of each object is compared with: the last one the
    /// engine accepted. A refused edit (say, an attendee deleting their own line) stays
    /// in the user's calendar but does not become the base of the next comparison.
    baselines: BTreeMap<String, BTreeMap<String, ICalendar>>,
    last: Option<Outcome>,
    numbering: Numbering,
    reply_details: ReplyDetails,
    produced: Vec<ItipMessage>,
    /// The highest SEQUENCE each organizer sent per instance (see [`departures`]).
    sent: SentSequences,
    /// Set when the current step's expectation was translated by an RFC rule.
    departed: Option<Departure>,
}

/// Runs every scenario in `files` (files, or folders of `*.txt`).
pub fn run_paths(paths: &[PathBuf], reply_details: ReplyDetails) -> Result<Report, String> {
    let mut report = Report::default();
    for file in scenario_files(paths)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
        report.merge(run_text(&text, &file, reply_details)?);
    }
    Ok(report)
}

/// Expands folders into their `*.txt` files, sorted.
pub fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "txt"))
                .collect();
            files.sort();
            out.extend(files);
        } else if path.is_file() {
            out.push(path.clone());
        } else {
            return Err(format!("{}: no such file or folder", path.display()));
        }
    }
    Ok(out)
}

/// Runs one scenario text; `file` names it in reports.
pub fn run_text(text: &str, file: &Path, reply_details: ReplyDetails) -> Result<Report, String> {
    let steps = script::parse(text).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut world = World {
        calendars: BTreeMap::new(),
        baselines: BTreeMap::new(),
        last: None,
        numbering: Numbering::default(),
        reply_details,
        produced: Vec::new(),
        sent: SentSequences::default(),
        departed: None,
    };
    let mut report = Report::default();
    for step in &steps {
        world.departed = None;
        let listed = departures::listed(file, step.line, &step.title);
        match (world.run(step), listed) {
            (Ok(()), Some(listed)) => report.failures.push(Failure {
                file: file.to_path_buf(),
                line: step.line,
                title: step.title.clone(),
                expected: format!("a listed departure ({})", listed.reason),
                actual: "the step passes as written: remove it from replay::departures::LISTED"
                    .into(),
            }),
            (Ok(()), None) => match world.departed.take() {
                Some(departure) => report.departed.push(Departed {
                    file: file.to_path_buf(),
                    line: step.line,
                    title: step.title.clone(),
                    departure,
                }),
                None => report.passed += 1,
            },
            (Err((_, actual)), Some(listed)) if listed.holds_for(&actual) => {
                report.departed.push(Departed {
                    file: file.to_path_buf(),
                    line: step.line,
                    title: step.title.clone(),
                    departure: Departure::Listed(listed),
                })
            }
            (Err((expected, actual)), _) => report.failures.push(Failure {
                file: file.to_path_buf(),
                line: step.line,
                title: step.title.clone(),
                expected,
                actual,
            }),
        }
    }
    report.produced = world.produced;
    Ok(report)
}

type StepResult = Result<(), (String, String)>;

fn address(text: &str) -> Result<CalAddress, (String, String)> {
    CalAddress::parse(text)
        .ok_or_else(|| (format!("a calendar address, not {text:?}"), String::new()))
}

impl World {
    fn context<'a>(&self, account: &'a [CalAddress]) -> Context<'a> {
        Context {
            account,
            now: REPLAY_NOW,
            reply_details: self.reply_details,
        }
    }

    fn run(&mut self, step: &Step) -> StepResult {
        match &step.command {
            Command::Put { account, name } => self.put(account, name, &step.payload),
            Command::Get { account, name } => self.get(account, name, &step.payload),
            Command::Delete { account, name } => self.delete(account, name),
            Command::Expect => {
                let last = self.last.clone();
                self.compare_outcome(last, &step.payload)
            }
            Command::Send => self.send(&step.payload),
            Command::Itip { from, to } => self.itip(from, to, &step.payload),
            Command::Reset => {
                self.calendars.clear();
                self.baselines.clear();
                self.numbering.clear();
                self.sent.clear();
                self.last = None;
                Ok(())
            }
        }
    }

    /// `payload` parsed; when it does not parse, the parse error becomes the step's
    /// outcome and `None` is returned.
    fn parse_or_record(&mut self, payload: &str) -> Option<ICalendar> {
        match ICalendar::parse(payload) {
            Ok(cal) => Some(cal),
            Err(err) => {
                self.last = Some(Outcome::Error(ItipError::ICalendarParseError(format!(
                    "{err:?}"
                ))));
                None
            }
        }
    }

    fn put(&mut self, account: &str, name: &str, payload: &str) -> StepResult {
        let me = [address(account)?];
        let Some(new) = self.parse_or_record(payload) else {
            return Ok(());
        };
        let key = account.to_ascii_lowercase();
        let old = self.baselines.get(&key).and_then(|c| c.get(name)).cloned();
        let ctx = self.context(&me);
        let (outcome, stored, accepted) = match itip::schedule_change(old.as_ref(), &new, &ctx) {
            // A change that only repairs the stored copy (a stale, lower SEQUENCE put
            // back) sends nothing: for the scenario that is NothingToSend.
            Ok(result) if result.messages.is_empty() => (
                Outcome::Error(ItipError::NothingToSend),
                result.updated.unwrap_or(new),
                true,
            ),
            Ok(result) => (
                {
                    self.produced.extend(result.messages.iter().cloned());
                    Outcome::Messages(result.messages)
                },
                result.updated.unwrap_or(new),
                true,
            ),
            // The user's write stands; it just sends nothing.
            Err(err) => {
                let accepted = !err.is_refusal();
                (Outcome::Error(err), new, accepted)
            }
        };
        if accepted {
            let baselines = self.baselines.entry(key.clone()).or_default();
            baselines.insert(name.to_string(), stored.clone());
        }
        self.calendars
            .entry(key)
            .or_default()
            .insert(name.to_string(), stored);
        self.record_sent(&outcome);
        self.last = Some(outcome);
        Ok(())
    }

    fn get(&mut self, account: &str, name: &str, payload: &str) -> StepResult {
        let stored = self
            .calendars
            .get(&account.to_ascii_lowercase())
            .and_then(|c| c.get(name))
            .map(|cal| cal.to_string());
        let mut expected = canonicalize(payload, &mut self.numbering)
            .map_err(|e| (format!("unreadable expected calendar: {e}"), String::new()))?;
        if self
            .sent
            .raise_expected(&account.to_ascii_lowercase(), &mut expected)
        {
            self.departed = Some(Departure::SequenceBelowSent);
        }
        let expected = expected.render();
        let Some(stored) = stored else {
            return Err((expected, format!("{account} has no object named {name}")));
        };
        let actual = canonicalize(&stored, &mut self.numbering)
            .map(|n| n.render())
            .unwrap_or_else(|e| format!("unreadable stored calendar: {e}\n{stored}"));
        if expected == actual {
            Ok(())
        } else {
            Err((expected, actual))
        }
    }

    fn delete(&mut self, account: &str, name: &str) -> StepResult {
        let me = [address(account)?];
        let key = account.to_ascii_lowercase();
        let removed = self.calendars.get_mut(&key).and_then(|c| c.remove(name));
        let baseline = self.baselines.get_mut(&key).and_then(|c| c.remove(name));
        let Some(old) = baseline.or(removed) else {
            return Err((format!("{account} to have {name}"), "no such object".into()));
        };
        let ctx = self.context(&me);
        let outcome = match itip::schedule_removal(&old, &ctx) {
            Ok(result) => {
                self.produced.extend(result.messages.iter().cloned());
                Outcome::Messages(result.messages)
            }
            Err(err) => Outcome::Error(err),
        };
        self.record_sent(&outcome);
        self.last = Some(outcome);
        Ok(())
    }

    fn itip(&mut self, from: &str, to: &[String], payload: &str) -> StepResult {
        let from = address(from)?;
        let to = to
            .iter()
            .map(|t| address(t))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(calendar) = self.parse_or_record(payload) else {
            return Ok(());
        };
        let method = calendar
            .components
            .first()
            .and_then(|root| root.property(&ICalendarProperty::Method))
            .and_then(|e| match e.values.first() {
                Some(ICalendarValue::Method(m)) => Some(m.clone()),
                _ => None,
            })
            .unwrap_or(ICalendarMethod::Publish);
        self.last = Some(Outcome::Messages(vec![ItipMessage {
            method,
            from,
            to,
            calendar,
            summary: MessageSummary::Invite,
        }]));
        Ok(())
    }

    /// Delivers every message of the last outcome to each recipient's calendar.
    fn send(&mut self, payload: &str) -> StepResult {
        let messages = match self.last.take() {
            Some(Outcome::Messages(m)) => m,
            Some(Outcome::Error(e)) => {
                return Err((
                    payload.to_string(),
                    format!("nothing to send: last outcome was {}", e.name()),
                ))
            }
            None => Vec::new(),
        };
        let mut answers = Vec::new();
        let mut errors = Vec::new();
        for message in &messages {
            for rcpt in &message.to {
                match self.deliver(message, rcpt) {
                    Ok(responses) => {
                        self.produced.extend(responses.iter().cloned());
                        answers.extend(responses);
                    }
                    Err(err) => errors.push(err),
                }
            }
        }
        let actual = match (answers.is_empty(), errors.is_empty()) {
            (true, true) => None,
            (false, _) => Some(Outcome::Messages(answers)),
            (true, false) => Some(Outcome::Error(errors.remove(0))),
        };
        if payload.trim().is_empty() {
            return match actual {
                None => Ok(()),
                Some(outcome) => Err(("(nothing)".into(), self.render_outcome(&outcome))),
            };
        }
        self.compare_outcome(actual, payload)
    }

    fn deliver(
        &mut self,
        message: &ItipMessage,
        rcpt: &CalAddress,
    ) -> Result<Vec<ItipMessage>, ItipError> {
        let uid = message.uid().unwrap_or_default().to_string();
        let key = rcpt.as_str().to_string();
        let existing = self.calendars.get(&key).and_then(|cal| {
            cal.iter()
                .find(|(_, c)| c.uids().any(|u| u == uid))
                .map(|(name, c)| (name.clone(), c.clone()))
        });
        let me = [rcpt.clone()];
        let ctx = self.context(&me);
        let outcome = itip::receive(
            &message.calendar,
            &message.from,
            existing.as_ref().map(|(_, c)| c),
            &ctx,
        )?;
        if let Some(copy) = outcome.copy {
            let name = existing.map(|(name, _)| name).unwrap_or(uid);
            self.baselines
                .entry(key.clone())
                .or_default()
                .insert(name.clone(), copy.clone());
            self.calendars.entry(key).or_default().insert(name, copy);
        }
        Ok(outcome.responses)
    }

    /// Remembers the SEQUENCEs an organizer's messages carried (REQUEST, ADD, CANCEL,
    /// DECLINECOUNTER), for [`Departure::SequenceBelowSent`].
    fn record_sent(&mut self, outcome: &Outcome) {
        let Outcome::Messages(messages) = outcome else {
            return;
        };
        for message in messages {
            if !matches!(
                message.method,
                ICalendarMethod::Request
                    | ICalendarMethod::Add
                    | ICalendarMethod::Cancel
                    | ICalendarMethod::Declinecounter
            ) {
                continue;
            }
            // A numbering of its own: DTSTAMPs are not looked at here, and the run's
            // numbering must follow the order the file checks things in.
            if let Ok(node) = canonicalize(&message.to_ics(), &mut Numbering::default()) {
                self.sent.record(message.from.as_str(), &node);
            }
        }
    }

    fn render_outcome(&mut self, outcome: &Outcome) -> String {
        match outcome {
            Outcome::Error(e) => e.name().to_string(),
            Outcome::Messages(messages) => messages
                .iter()
                .map(|m| self.render_message(m))
                .collect::<Vec<_>>()
                .join("================================\n"),
        }
    }

    fn render_message(&mut self, message: &ItipMessage) -> String {
        let to: Vec<&str> = message.to.iter().map(|a| a.as_str()).collect();
        let body = canonicalize(&message.to_ics(), &mut self.numbering)
            .map(|n| n.render())
            .unwrap_or_else(|e| format!("unreadable message: {e}"));
        format!("from: {}\nto: {}\n{}", message.from, to.join(", "), body)
    }

    /// Compares an outcome with an `expect`/`send` payload.
    fn compare_outcome(&mut self, actual: Option<Outcome>, payload: &str) -> StepResult {
        let expected = parse_expected(payload, &mut self.numbering, &mut self.departed)
            .map_err(|e| (e, String::new()))?;
        let actual = match actual {
            None => return Err((render_expected(&expected), "(nothing)".into())),
            Some(a) => a,
        };
        match (&expected, &actual) {
            (Expected::Error(name), Outcome::Error(err)) => {
                if name == err.name() {
                    Ok(())
                } else {
                    Err((name.clone(), format!("{}: {}", err.name(), err)))
                }
            }
            (Expected::Messages(exp), Outcome::Messages(act)) => self.compare_messages(exp, act),
            (_, Outcome::Error(err)) => Err((
                render_expected(&expected),
                format!("{}: {}", err.name(), err),
            )),
            (_, Outcome::Messages(_)) => {
                let actual = self.render_outcome(&actual);
                Err((render_expected(&expected), actual))
            }
        }
    }

    fn compare_messages(
        &mut self,
        expected: &[ExpectedMessage],
        actual: &[ItipMessage],
    ) -> StepResult {
        // Canonicalise actual messages in the order they are matched to the expected
        // ones, so DTSTAMP numbering follows the file.
        let mut remaining: Vec<(usize, &ItipMessage)> = actual.iter().enumerate().collect();
        let mut pairs = Vec::new();
        let mut unmatched_expected = Vec::new();
        for exp in expected {
            let key = |m: &ItipMessage| {
                m.from.as_str() == exp.from
                    && m.to
                        .iter()
                        .map(|a| a.as_str().to_string())
                        .collect::<Vec<_>>()
                        == exp.to
                    && Some(method_name(&m.method).to_string()) == exp.body.method()
            };
            let rids = exp.body.values_of("RECURRENCE-ID");
            let position = remaining
                .iter()
                .position(|(_, m)| key(m) && rid_values(m) == rids)
                .or_else(|| remaining.iter().position(|(_, m)| key(m)));
            match position {
                Some(p) => pairs.push((exp, remaining.remove(p).1)),
                None => unmatched_expected.push(exp),
            }
        }
        let mut ok = unmatched_expected.is_empty() && remaining.is_empty();
        let mut expected_text = Vec::new();
        let mut actual_text = Vec::new();
        for (exp, act) in pairs {
            let rendered = self.render_message(act);
            let exp_rendered = exp.render();
            if rendered != exp_rendered {
                ok = false;
            }
            expected_text.push(exp_rendered);
            actual_text.push(rendered);
        }
        for exp in unmatched_expected {
            expected_text.push(exp.render());
        }
        for (_, act) in remaining {
            actual_text.push(self.render_message(act));
        }
        if ok {
            Ok(())
        } else {
            let sep = "================================\n";
            Err((expected_text.join(sep), actual_text.join(sep)))
        }
    }
}

fn rid_values(message: &ItipMessage) -> Vec<String> {
    canonicalize(&message.to_ics(), &mut Numbering::default())
        .map(|n| n.values_of("RECURRENCE-ID"))
        .unwrap_or_default()
}

/// An expected message of an `expect` payload.
struct ExpectedMessage {
    from: String,
    to: Vec<String>,
    body: Node,
}

impl ExpectedMessage {
    fn render(&self) -> String {
        format!(
            "from: {}\nto: {}\n{}",
            self.from,
            self.to.join(", "),
            self.body.render()
        )
    }
}

enum Expected {
    Error(String),
    Messages(Vec<ExpectedMessage>),
}

fn render_expected(expected: &Expected) -> String {
    match expected {
        Expected::Error(name) => name.clone(),
        Expected::Messages(m) => m
            .iter()
            .map(ExpectedMessage::render)
            .collect::<Vec<_>>()
            .join("================================\n"),
    }
}

fn parse_expected(
    payload: &str,
    numbering: &mut Numbering,
    departed: &mut Option<Departure>,
) -> Result<Expected, String> {
    let trimmed = payload.trim();
    if !trimmed.contains('\n') && !trimmed.contains(':') {
        return Ok(Expected::Error(trimmed.to_string()));
    }
    let mut messages = Vec::new();
    let mut block = Vec::new();
    let mut blocks = Vec::new();
    for line in payload.lines() {
        if line.trim() == "=".repeat(32) {
            blocks.push(std::mem::take(&mut block));
        } else {
            block.push(line);
        }
    }
    blocks.push(block);
    for block in blocks {
        let mut from = None;
        let mut to = Vec::new();
        let mut body = Vec::new();
        for line in block {
            if !body.is_empty() || line.starts_with("BEGIN:") {
                body.push(line);
            } else if let Some(v) = line.strip_prefix("from:") {
                from = Some(v.trim().to_ascii_lowercase());
            } else if let Some(v) = line.strip_prefix("to:") {
                to = v
                    .split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect();
                to.sort();
            }
            // Other header lines (e.g. "changes:") describe the reference server's
            // internal summary and are not compared.
        }
        let from = from.ok_or("an expected message without a from: line")?;
        let mut body = canonicalize(&body.join("\n"), numbering)?;
        if departures::strip_server_params(&mut body) {
            *departed = Some(Departure::ServerParameters);
        }
        messages.push(ExpectedMessage { from, to, body });
    }
    Ok(Expected::Messages(messages))
}
