//! Writing a changed calendar object back without rewriting the user's file.
//!
//! calcard's serialiser is lossy for some values (URIs and X- values get TEXT escaping,
//! RRULE parts are reordered), so imipd never writes a user's file wholesale. It decides
//! with the parsed model, then [`patch`] changes only the content lines whose meaning
//! changed: every line that still says the same thing keeps its exact bytes (folding,
//! parameter order, line endings), unchanged components are copied verbatim, and new
//! lines are written in the file's own line-ending style. The result is parsed again and
//! must say exactly what the model says.

use calcard::common::IanaParse;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarEntry, ICalendarProperty,
};
use std::borrow::Cow;
use std::fmt::Write as _;
use thiserror::Error;

/// Why a file could not be patched.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PatchError {
    /// The original text is not a single well-nested VCALENDAR.
    #[error("the stored file is not a well-formed VCALENDAR: {0}")]
    Malformed(String),
    /// The patched text did not parse back to the intended calendar (a bug, reported
    /// rather than written).
    #[error("the patched file would not say what was intended")]
    Mismatch,
}

/// One content line of the original file, with its own parse.
struct RawLine<'a, 'e> {
    /// The exact bytes, folding and line ending included.
    text: &'a str,
    /// What calcard reads from this line alone (`None` for junk calcard skips):
    /// borrowed from the parse of the whole file where that maps line for line.
    entry: Option<Cow<'e, ICalendarEntry>>,
}

/// One component of the original file.
struct RawComponent<'a, 'e> {
    kind: ICalendarComponentType,
    /// The exact bytes from BEGIN to END, both included.
    whole: &'a str,
    begin: &'a str,
    end: &'a str,
    lines: Vec<RawLine<'a, 'e>>,
    children: Vec<RawComponent<'a, 'e>>,
}

/// The original text with `new`'s meaning: changed lines rewritten, the rest kept.
pub fn patch(original: &str, new: &ICalendar) -> Result<String, PatchError> {
    let (prefix, root, suffix) = parse_raw(original, None)?;
    patch_tree(original, prefix, &root, suffix, new)
}

/// [`patch`] for an original the caller has already parsed (`stored` is
/// `ICalendar::parse(original)`): each line's meaning is taken from that parse where
/// it maps line for line, instead of parsing the file a second time. The result is
/// checked exactly as [`patch`]'s; if the borrowed reading led to a mismatch, the
/// lines are read on their own and the patch made again.
pub fn patch_parsed(
    original: &str,
    stored: &ICalendar,
    new: &ICalendar,
) -> Result<String, PatchError> {
    let (prefix, root, suffix) = parse_raw(original, Some(stored))?;
    match patch_tree(original, prefix, &root, suffix, new) {
        Err(PatchError::Mismatch) => patch(original, new),
        done => done,
    }
}

/// The original text with `updated`'s meaning ([`patch_parsed`]), or `updated` in
/// full when the file cannot be patched (logged): what imipd writes back.
pub fn rewrite_parsed(original: &str, stored: &ICalendar, updated: &ICalendar) -> String {
    match patch_parsed(original, stored, updated) {
        Ok(text) => text,
        Err(err) => {
            tracing::warn!(error = %err, "could not patch in place; writing the object in full");
            updated.to_string()
        }
    }
}

fn patch_tree(
    original: &str,
    prefix: &str,
    root: &RawComponent<'_, '_>,
    suffix: &str,
    new: &ICalendar,
) -> Result<String, PatchError> {
    let newline = if original.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let new_root = new
        .components
        .first()
        .ok_or(PatchError::Malformed("empty calendar".into()))?;
    let mut out = String::with_capacity(original.len() + 256);
    out.push_str(prefix);
    emit_component(&mut out, root, new, new_root, newline);
    out.push_str(suffix);
    check(&out, new)?;
    Ok(out)
}

/// The self-check: `text` (what is about to be written) parses, and says exactly what
/// `meant` says: the same component tree, and in each component the same entries in
/// the same order, each equal or serialising to the same line. This is what comparing
/// the two serialisations proved, without serialising the whole calendar twice.
pub fn check(text: &str, meant: &ICalendar) -> Result<(), PatchError> {
    let written = ICalendar::parse(text).map_err(|_| PatchError::Mismatch)?;
    if same_tree(&written, 0, meant, 0, 0) {
        Ok(())
    } else {
        Err(PatchError::Mismatch)
    }
}

/// Whether component `a` of `ca` and component `b` of `cb` serialise alike, children
/// included.
fn same_tree(ca: &ICalendar, a: u32, cb: &ICalendar, b: u32, depth: usize) -> bool {
    let (Some(x), Some(y)) = (ca.components.get(a as usize), cb.components.get(b as usize)) else {
        return false;
    };
    depth <= 64
        && x.component_type.as_str() == y.component_type.as_str()
        && x.entries.len() == y.entries.len()
        && x.entries
            .iter()
            .zip(&y.entries)
            .all(|(e, f)| e == f || serialised(e) == serialised(f))
        && x.component_ids.len() == y.component_ids.len()
        && x.component_ids
            .iter()
            .zip(&y.component_ids)
            .all(|(i, j)| same_tree(ca, *i, cb, *j, depth + 1))
}

fn serialised(entry: &ICalendarEntry) -> Option<String> {
    let mut line = String::new();
    entry.write_to(&mut line).ok().map(|_| line)
}

fn emit_component(
    out: &mut String,
    raw: &RawComponent<'_, '_>,
    new_cal: &ICalendar,
    new: &ICalendarComponent,
    newline: &str,
) {
    let mut body = String::with_capacity(raw.whole.len() + 256);
    merge_lines(&mut body, &raw.lines, &new.entries, newline);
    let new_children: Vec<&ICalendarComponent> = new
        .component_ids
        .iter()
        .filter_map(|id| new_cal.components.get(*id as usize))
        .collect();
    let mut used = vec![false; raw.children.len()];
    for (position, child) in new_children.iter().enumerate() {
        match match_child(&raw.children, &used, child, position, &new_children) {
            Some(index) => {
                used[index] = true;
                emit_component(&mut body, &raw.children[index], new_cal, child, newline);
            }
            None => write_component(&mut body, new_cal, child, newline, 0),
        }
    }
    // A component whose every line and child survived keeps its exact bytes (even
    // properties written after a sub-component stay where they were).
    let unchanged = used.iter().all(|u| *u)
        && raw.lines.iter().filter(|l| l.entry.is_some()).count() == new.entries.len()
        && body.len() == raw.whole.len() - raw.begin.len() - raw.end.len();
    if unchanged && same_lines(raw, &body) {
        out.push_str(raw.whole);
    } else {
        out.push_str(raw.begin);
        out.push_str(&body);
        out.push_str(raw.end);
    }
}

/// True when `body` holds the same lines as the raw component between BEGIN and END.
fn same_lines(raw: &RawComponent<'_, '_>, body: &str) -> bool {
    let inner = &raw.whole[raw.begin.len()..raw.whole.len() - raw.end.len()];
    let mut a: Vec<&str> = inner.split_inclusive('\n').collect();
    let mut b: Vec<&str> = body.split_inclusive('\n').collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// Emits `new` entries in order, reusing the raw line of each entry that did not change.
fn merge_lines(out: &mut String, raw: &[RawLine<'_, '_>], new: &[ICalendarEntry], newline: &str) {
    let mut cursor = 0;
    for entry in new {
        let found = (cursor..raw.len()).find(|j| raw[*j].entry.as_deref() == Some(entry));
        match found {
            Some(j) => {
                // Keep lines calcard ignores (they are the user's) where they were.
                for skipped in &raw[cursor..j] {
                    if skipped.entry.is_none() {
                        out.push_str(skipped.text);
                    }
                }
                out.push_str(raw[j].text);
                cursor = j + 1;
            }
            None => write_entry(out, entry, newline),
        }
    }
    for rest in &raw[cursor.min(raw.len())..] {
        if rest.entry.is_none() {
            out.push_str(rest.text);
        }
    }
}

/// Which raw child corresponds to new child `position`: same type and identity (UID and
/// RECURRENCE-ID for events and to-dos, TZID for time zones), else the same type at the
/// same rank among its siblings.
fn match_child(
    raw: &[RawComponent<'_, '_>],
    used: &[bool],
    child: &ICalendarComponent,
    position: usize,
    siblings: &[&ICalendarComponent],
) -> Option<usize> {
    let identity = identity_of_model(child);
    if identity.is_some() {
        return (0..raw.len()).find(|i| {
            !used[*i]
                && raw[*i].kind == child.component_type
                && identity_of_raw(&raw[*i]) == identity
        });
    }
    let rank = siblings[..position]
        .iter()
        .filter(|s| s.component_type == child.component_type)
        .count();
    raw.iter()
        .enumerate()
        .filter(|(_, r)| r.kind == child.component_type)
        .nth(rank)
        .map(|(i, _)| i)
        .filter(|i| !used[*i])
}

type Identity = (Option<ICalendarEntry>, Option<ICalendarEntry>);

fn identity_from(entries: &mut dyn Iterator<Item = &ICalendarEntry>) -> Option<Identity> {
    let mut uid = None;
    let mut rid = None;
    let mut tzid = None;
    for e in entries {
        match e.name {
            ICalendarProperty::Uid => uid = Some(e.clone()),
            ICalendarProperty::RecurrenceId => rid = Some(e.clone()),
            ICalendarProperty::Tzid => tzid = Some(e.clone()),
            _ => {}
        }
    }
    if uid.is_some() {
        Some((uid, rid))
    } else {
        tzid.map(|t| (Some(t), None))
    }
}

fn identity_of_model(comp: &ICalendarComponent) -> Option<Identity> {
    identity_from(&mut comp.entries.iter())
}

fn identity_of_raw(comp: &RawComponent<'_, '_>) -> Option<Identity> {
    identity_from(&mut comp.lines.iter().filter_map(|l| l.entry.as_deref()))
}

fn write_entry(out: &mut String, entry: &ICalendarEntry, newline: &str) {
    let mut line = String::new();
    if entry.write_to(&mut line).is_ok() {
        if newline == "\n" {
            line = line.replace("\r\n", "\n");
        }
        out.push_str(&line);
    }
}

/// Writes a component the original file did not have, and everything below it.
fn write_component(
    out: &mut String,
    cal: &ICalendar,
    comp: &ICalendarComponent,
    newline: &str,
    depth: usize,
) {
    if depth > 16 {
        return;
    }
    let _ = write!(out, "BEGIN:{}{newline}", comp.component_type.as_str());
    for entry in &comp.entries {
        write_entry(out, entry, newline);
    }
    for id in &comp.component_ids {
        if let Some(child) = cal.components.get(*id as usize) {
            write_component(out, cal, child, newline, depth + 1);
        }
    }
    let _ = write!(out, "END:{}{newline}", comp.component_type.as_str());
}

/// Splits the original into text before BEGIN:VCALENDAR, the component tree, and text
/// after END:VCALENDAR. With `stored` (the parse of `text`), a component whose parse
/// has one entry per raw line and one child per raw child borrows those entries;
/// any other component's lines are parsed here.
fn parse_raw<'a, 'e>(
    text: &'a str,
    stored: Option<&'e ICalendar>,
) -> Result<(&'a str, RawComponent<'a, 'e>, &'a str), PatchError> {
    struct Open<'a, 'e> {
        kind: ICalendarComponentType,
        begin_at: usize,
        begin: &'a str,
        /// Raw lines with their unfolded text, parsed when the component closes.
        lines: Vec<(&'a str, Cow<'a, str>)>,
        children: Vec<RawComponent<'a, 'e>>,
        /// The same component in `stored`, if it lines up so far.
        parsed: Option<&'e ICalendarComponent>,
    }
    let mut stack: Vec<Open<'_, '_>> = Vec::new();
    let mut prefix_end = 0;
    for (s, e) in content_lines(text) {
        let raw = &text[s..e];
        let unfolded = unfold(raw);
        let trimmed = unfolded.trim();
        if let Some(name) = strip_ci(trimmed, "BEGIN:") {
            if stack.len() > 32 {
                return Err(PatchError::Malformed("components nested too deeply".into()));
            }
            if stack.is_empty() {
                prefix_end = s;
            }
            let kind = component_type(name);
            let parsed = match stack.last() {
                None => stored.and_then(|cal| cal.components.first()),
                Some(parent) => parent.parsed.and_then(|p| {
                    let id = p.component_ids.get(parent.children.len())?;
                    stored?.components.get(*id as usize)
                }),
            }
            .filter(|p| p.component_type == kind);
            stack.push(Open {
                kind,
                begin_at: s,
                begin: raw,
                lines: Vec::new(),
                children: Vec::new(),
                parsed,
            });
        } else if let Some(name) = strip_ci(trimmed, "END:") {
            let open = stack
                .pop()
                .ok_or_else(|| PatchError::Malformed("END without BEGIN".into()))?;
            if open.kind != component_type(name) {
                return Err(PatchError::Malformed(format!(
                    "END:{name} closes another component"
                )));
            }
            let borrowed = open.parsed.filter(|p| {
                p.entries.len() == open.lines.len() && p.component_ids.len() == open.children.len()
            });
            let entries: Vec<Option<Cow<'_, ICalendarEntry>>> = match borrowed {
                Some(p) => p.entries.iter().map(|e| Some(Cow::Borrowed(e))).collect(),
                None => {
                    let mut chain: Vec<ICalendarComponentType> =
                        stack.iter().map(|o| o.kind.clone()).collect();
                    chain.push(open.kind.clone());
                    let unfolded: Vec<&str> = open.lines.iter().map(|(_, u)| u.as_ref()).collect();
                    parse_lines(&chain, &unfolded)
                        .into_iter()
                        .map(|e| e.map(Cow::Owned))
                        .collect()
                }
            };
            let lines = open
                .lines
                .iter()
                .zip(entries)
                .map(|((text, _), entry)| RawLine { text, entry })
                .collect();
            let done = RawComponent {
                kind: open.kind,
                whole: &text[open.begin_at..e],
                begin: open.begin,
                end: raw,
                lines,
                children: open.children,
            };
            match stack.last_mut() {
                Some(parent) => parent.children.push(done),
                None => {
                    if done.kind != ICalendarComponentType::VCalendar {
                        return Err(PatchError::Malformed(
                            "the outer component is not VCALENDAR".into(),
                        ));
                    }
                    return Ok((&text[..prefix_end], done, &text[e..]));
                }
            }
        } else if let Some(open) = stack.last_mut() {
            open.lines.push((raw, unfolded));
        }
    }
    Err(PatchError::Malformed(if stack.is_empty() {
        "no VCALENDAR".into()
    } else {
        "a component is never closed".into()
    }))
}

/// Byte ranges of content lines: a physical line plus its folded continuations, each
/// with its line ending.
fn content_lines(text: &str) -> Vec<(usize, usize)> {
    let mut lines = Vec::with_capacity(text.len() / 40 + 1);
    let mut start = 0;
    for (i, _) in text.match_indices('\n') {
        let next = i + 1;
        if !text[next..].starts_with([' ', '\t']) {
            lines.push((start, next));
            start = next;
        }
    }
    if start < text.len() {
        lines.push((start, text.len()));
    }
    lines
}

/// Marks where one original line ends when a component's lines are parsed together.
const SEPARATOR: &str = "X-IMIPD-PATCH-LINE";

/// What calcard reads from each content line inside the given component chain.
///
/// All lines are parsed in one go, a numbered [`SEPARATOR`] line after each, so the
/// entries can be told apart (one parse per component instead of one per line: the
/// cost of applying a REPLY to a big meeting). Whenever the result does not map back
/// one-to-one (a junk line that swallowed its neighbour, a user's own line that looks
/// like a separator), each line is parsed on its own instead.
fn parse_lines(chain: &[ICalendarComponentType], lines: &[&str]) -> Vec<Option<ICalendarEntry>> {
    parse_lines_together(chain, lines)
        .unwrap_or_else(|| lines.iter().map(|line| parse_line(chain, line)).collect())
}

fn parse_lines_together(
    chain: &[ICalendarComponentType],
    lines: &[&str],
) -> Option<Vec<Option<ICalendarEntry>>> {
    let size: usize = lines.iter().map(|l| l.len() + SEPARATOR.len() + 12).sum();
    let mut text = String::with_capacity(size + 64 * chain.len());
    for kind in chain {
        let _ = write!(text, "BEGIN:{}\r\n", kind.as_str());
    }
    for (i, line) in lines.iter().enumerate() {
        text.push_str(line.trim_end_matches(['\r', '\n']));
        let _ = write!(text, "\r\n{SEPARATOR}:{i}\r\n");
    }
    for kind in chain.iter().rev() {
        let _ = write!(text, "END:{}\r\n", kind.as_str());
    }
    let mut cal = ICalendar::parse(&text).ok()?;
    let depth = chain.len().checked_sub(1)?;
    let entries = std::mem::take(&mut cal.components.get_mut(depth)?.entries);
    let mut out = Vec::with_capacity(lines.len());
    let mut current = None;
    for entry in entries {
        if entry.name.as_str() == SEPARATOR {
            let index: usize = entry.values.first()?.as_text()?.parse().ok()?;
            if index != out.len() {
                return None;
            }
            out.push(current.take());
        } else if current.replace(entry).is_some() {
            // Two entries from one line: the lines did not parse apart.
            return None;
        }
    }
    (out.len() == lines.len() && current.is_none()).then_some(out)
}

/// What calcard reads from one content line inside the given component chain.
fn parse_line(chain: &[ICalendarComponentType], line: &str) -> Option<ICalendarEntry> {
    let mut text = String::with_capacity(line.len() + 64);
    for kind in chain {
        let _ = write!(text, "BEGIN:{}\r\n", kind.as_str());
    }
    text.push_str(line.trim_end_matches(['\r', '\n']));
    text.push_str("\r\n");
    for kind in chain.iter().rev() {
        let _ = write!(text, "END:{}\r\n", kind.as_str());
    }
    let cal = ICalendar::parse(&text).ok()?;
    let depth = chain.len().checked_sub(1)?;
    cal.components.get(depth)?.entries.first().cloned()
}

/// The line without its folding (RFC 5545 §3.1); borrowed when it is not folded.
fn unfold(raw: &str) -> Cow<'_, str> {
    let folded = raw.trim_end_matches(['\r', '\n']).contains(['\r', '\n']);
    if !folded {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(
        raw.replace("\r\n ", "")
            .replace("\r\n\t", "")
            .replace("\n ", "")
            .replace("\n\t", ""),
    )
}

fn strip_ci<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    crate::itip::address::strip_prefix_ignore_case(line, prefix).map(str::trim)
}

fn component_type(name: &str) -> ICalendarComponentType {
    ICalendarComponentType::parse(name.trim().as_bytes())
        .unwrap_or_else(|| ICalendarComponentType::Other(name.trim().to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use calcard::icalendar::{ICalendarParameter, ICalendarParticipationStatus, ICalendarValue};

    /// A file as a real client writes it: LF endings, folding, values calcard would
    /// re-escape, a line calcard ignores, and properties after the alarm.
    const ORIGINAL: &str = "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Client//EN\nBEGIN:VEVENT\nUID:u1\nSEQUENCE:3\nDTSTAMP:20300101T000000Z\nDTSTART;TZID=Europe/Berlin:20300110T100000\nSUMMARY:Lunch\nURL:https://example.com/a,b?x=1;y=2\nX-APPLE-STRUCTURED-LOCATION;VALUE=URI;X-TITLE=Cafe:geo:52.5,13.4\nthis line has no colon\nORGANIZER;CN=\"Olga, the organizer\":mailto:o@example.com\nATTENDEE;RSVP=TRUE;CN=Bob;X-NUM-GUESTS=0:mailto:b@example\n .net\nBEGIN:VALARM\nACTION:DISPLAY\nTRIGGER:-PT15M\nEND:VALARM\nX-AFTER-ALARM:kept, as is\nEND:VEVENT\nEND:VCALENDAR\n";

    fn changed_lines(a: &str, b: &str) -> Vec<String> {
        let a: Vec<&str> = a.lines().collect();
        let b: Vec<&str> = b.lines().collect();
        let mut out = Vec::new();
        for line in &b {
            if !a.contains(line) {
                out.push(format!("+{line}"));
            }
        }
        for line in &a {
            if !b.contains(line) {
                out.push(format!("-{line}"));
            }
        }
        out
    }

    fn event_mut(cal: &mut ICalendar) -> &mut ICalendarComponent {
        cal.components
            .iter_mut()
            .find(|c| c.component_type == ICalendarComponentType::VEvent)
            .expect("an event")
    }

    #[test]
    fn an_unchanged_calendar_is_byte_identical() {
        let cal = ICalendar::parse(ORIGINAL).expect("parses");
        assert_eq!(patch(ORIGINAL, &cal).expect("patches"), ORIGINAL);
    }

    #[test]
    fn a_new_sequence_changes_only_that_line() {
        let mut cal = ICalendar::parse(ORIGINAL).expect("parses");
        for entry in event_mut(&mut cal).entries.iter_mut() {
            if entry.name == ICalendarProperty::Sequence {
                entry.values = vec![ICalendarValue::Integer(4)];
            }
        }
        let out = patch(ORIGINAL, &cal).expect("patches");
        assert_eq!(
            changed_lines(ORIGINAL, &out),
            vec!["+SEQUENCE:4", "-SEQUENCE:3"]
        );
        assert!(!out.contains('\r'), "the file's LF line endings are kept");
    }

    #[test]
    fn an_answer_changes_only_the_attendee_line() {
        let mut cal = ICalendar::parse(ORIGINAL).expect("parses");
        for entry in event_mut(&mut cal).entries.iter_mut() {
            if entry.name == ICalendarProperty::Attendee {
                entry.params.push(ICalendarParameter::partstat(
                    ICalendarParticipationStatus::Accepted,
                ));
            }
        }
        let out = patch(ORIGINAL, &cal).expect("patches");
        let changes = changed_lines(ORIGINAL, &out);
        assert!(
            changes
                .iter()
                .any(|l| l.starts_with("+ATTENDEE;") && l.contains("PARTSTAT=ACCEPTED")),
            "{changes:?}"
        );
        assert!(
            changes
                .iter()
                .all(|l| l.contains("ATTENDEE") || l.starts_with("- .net") || l.starts_with("+ ")),
            "{changes:?}"
        );
        for kept in [
            "URL:https://example.com/a,b?x=1;y=2",
            "this line has no colon",
            "X-AFTER-ALARM:kept, as is",
            "geo:52.5,13.4",
        ] {
            assert!(out.contains(kept), "{kept} must survive");
        }
    }

    #[test]
    fn a_new_override_is_added_and_everything_else_kept() {
        let mut cal = ICalendar::parse(ORIGINAL).expect("parses");
        let mut comp = ICalendarComponent::new(ICalendarComponentType::VEvent);
        comp.add_uid("u1");
        comp.add_property(
            ICalendarProperty::Summary,
            ICalendarValue::Text("Override".into()),
        );
        let id = cal.components.len() as u32;
        cal.components.push(comp);
        cal.components[0].component_ids.push(id);
        let out = patch(ORIGINAL, &cal).expect("patches");
        assert!(out.starts_with(&ORIGINAL[..ORIGINAL.len() - "END:VCALENDAR\n".len()]));
        assert!(
            out.ends_with("BEGIN:VEVENT\nUID:u1\nSUMMARY:Override\nEND:VEVENT\nEND:VCALENDAR\n"),
            "{out}"
        );
    }

    #[test]
    fn a_removed_alarm_goes_and_nothing_else() {
        let mut cal = ICalendar::parse(ORIGINAL).expect("parses");
        event_mut(&mut cal).component_ids.clear();
        let out = patch(ORIGINAL, &cal).expect("patches");
        assert_eq!(
            changed_lines(ORIGINAL, &out),
            vec![
                "-BEGIN:VALARM",
                "-ACTION:DISPLAY",
                "-TRIGGER:-PT15M",
                "-END:VALARM"
            ]
        );
    }

    #[test]
    fn broken_files_are_refused() {
        let cal = ICalendar::parse(ORIGINAL).expect("parses");
        assert!(patch("BEGIN:VCALENDAR\nBEGIN:VEVENT\nEND:VCALENDAR\n", &cal).is_err());
        assert!(patch("no calendar here", &cal).is_err());
        assert!(patch("BEGIN:VEVENT\nEND:VEVENT\n", &cal).is_err());
    }

    /// Parsing a component's lines together must read exactly what parsing each line
    /// alone reads, junk lines and look-alike separators included.
    #[test]
    fn lines_parsed_together_read_as_lines_parsed_alone() {
        let chain = [
            ICalendarComponentType::VCalendar,
            ICalendarComponentType::VEvent,
        ];
        let lines = [
            "UID:u1",
            "this line has no colon",
            "SUMMARY:Lunch\\, with \"quotes\"",
            "ATTENDEE;CN=\"Unclosed;PARTSTAT=ACCEPTED:mailto:a@example.net",
            "URL:https://example.com/a,b?x=1;y=2",
            "X-IMIPD-PATCH-LINE:9",
            ";:",
            "DTSTART;TZID=Europe/Berlin:20300110T100000",
        ];
        let alone: Vec<Option<ICalendarEntry>> =
            lines.iter().map(|l| parse_line(&chain, l)).collect();
        assert_eq!(parse_lines(&chain, &lines), alone);
        // Without the look-alike, the tricky lines parse together to the same entries.
        let tricky: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| !l.starts_with("X-"))
            .collect();
        let alone: Vec<Option<ICalendarEntry>> =
            tricky.iter().map(|l| parse_line(&chain, l)).collect();
        let together = parse_lines_together(&chain, &tricky).expect("parsed together");
        assert_eq!(together, alone);
        let plain = ["UID:u1", "this line has no colon", "SUMMARY:Lunch"];
        let together = parse_lines_together(&chain, &plain).expect("parsed together");
        let alone: Vec<Option<ICalendarEntry>> =
            plain.iter().map(|l| parse_line(&chain, l)).collect();
        assert_eq!(together, alone);
        assert!(together[1].is_none(), "the junk line reads as nothing");
        // A user's line that looks like a separator makes it fall back.
        assert!(parse_lines_together(&chain, &["X-IMIPD-PATCH-LINE:5", "UID:u"]).is_none());
    }

    /// Every fixture patched with the stored file's own parse gives the same bytes as
    /// patching with each line parsed on its own (the junk line makes the event's
    /// lines fall back; the calendar's and the alarm's are borrowed).
    #[test]
    fn patching_with_the_stored_parse_writes_the_same_bytes() {
        let stored = ICalendar::parse(ORIGINAL).expect("parses");
        let mut answered = stored.clone();
        for entry in event_mut(&mut answered).entries.iter_mut() {
            if entry.name == ICalendarProperty::Attendee {
                entry.params.push(ICalendarParameter::partstat(
                    ICalendarParticipationStatus::Accepted,
                ));
            }
        }
        let mut no_alarm = stored.clone();
        event_mut(&mut no_alarm).component_ids.clear();
        let clean = ORIGINAL.replace("this line has no colon\n", "");
        let clean_stored = ICalendar::parse(&clean).expect("parses");
        let mut clean_answered = clean_stored.clone();
        for entry in event_mut(&mut clean_answered).entries.iter_mut() {
            if entry.name == ICalendarProperty::Attendee {
                entry.params.push(ICalendarParameter::partstat(
                    ICalendarParticipationStatus::Declined,
                ));
            }
        }
        for (original, parsed, new) in [
            (ORIGINAL, &stored, &stored),
            (ORIGINAL, &stored, &answered),
            (ORIGINAL, &stored, &no_alarm),
            (clean.as_str(), &clean_stored, &clean_answered),
        ] {
            assert_eq!(
                patch_parsed(original, parsed, new),
                patch(original, new),
                "{original}"
            );
        }
        let out = patch_parsed(&clean, &clean_stored, &clean_answered).expect("patches");
        assert!(out.contains("PARTSTAT=DECLINED"), "{out}");
    }

    /// The self-check refuses bytes that do not parse or do not say what was meant:
    /// one answer different, a line missing or added, a component moved.
    #[test]
    fn the_self_check_refuses_bytes_that_say_something_else() {
        let meant = ICalendar::parse(ORIGINAL).expect("parses");
        assert_eq!(check(ORIGINAL, &meant), Ok(()));
        let wrong = [
            ORIGINAL.replace("RSVP=TRUE;", "RSVP=TRUE;PARTSTAT=ACCEPTED;"),
            ORIGINAL.replace("SUMMARY:Lunch\n", ""),
            ORIGINAL.replace("SUMMARY:Lunch\n", "SUMMARY:Lunch\nLOCATION:Cafe\n"),
            ORIGINAL.replace("SEQUENCE:3", "SEQUENCE:4"),
            ORIGINAL
                .replace(
                    "BEGIN:VALARM\nACTION:DISPLAY\nTRIGGER:-PT15M\nEND:VALARM\n",
                    "",
                )
                .replace(
                    "END:VEVENT\n",
                    "END:VEVENT\nBEGIN:VALARM\nACTION:DISPLAY\nTRIGGER:-PT15M\nEND:VALARM\n",
                ),
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\n".to_string(),
        ];
        for text in &wrong {
            assert_eq!(check(text, &meant), Err(PatchError::Mismatch), "{text}");
        }
    }

    /// A change the line patch cannot write (the calendar's own BEGIN and END lines
    /// are kept) is refused rather than written wrong.
    #[test]
    fn a_patch_that_would_not_say_what_was_meant_is_refused() {
        let mut meant = ICalendar::parse(ORIGINAL).expect("parses");
        meant.components[0].component_type =
            ICalendarComponentType::Other("X-NOT-A-CALENDAR".into());
        assert_eq!(patch(ORIGINAL, &meant), Err(PatchError::Mismatch));
        let stored = ICalendar::parse(ORIGINAL).expect("parses");
        assert_eq!(
            patch_parsed(ORIGINAL, &stored, &meant),
            Err(PatchError::Mismatch)
        );
    }
}
