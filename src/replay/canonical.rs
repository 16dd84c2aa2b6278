//! Comparing iCalendar by meaning.
//!
//! Scenario files compare what a calendar says, not how it is spelled: folding, line
//! endings, the order of components, properties and parameters, the case of parameter
//! names, enumerated values and `mailto:`, quoting, RRULE part order and PRODID do not
//! matter. DTSTAMP values become small integers in order of first appearance over a run
//! ([`Numbering`]), since the engine stamps every message with the same fixed "now".

use std::collections::HashMap;

/// DTSTAMP value → its number, in order of first appearance.
#[derive(Debug, Default)]
pub struct Numbering {
    seen: HashMap<String, usize>,
}

impl Numbering {
    fn number(&mut self, value: &str) -> String {
        let value = value.trim();
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) && value.len() < 6 {
            // Already a number (the expected side).
            return format!("#{value}");
        }
        let next = self.seen.len();
        let n = *self.seen.entry(value.to_string()).or_insert(next);
        format!("#{n}")
    }

    /// Forgets every number (the `reset` command).
    pub fn clear(&mut self) {
        self.seen.clear();
    }
}

/// A component in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Node {
    /// Component name, e.g. `VEVENT`.
    pub name: String,
    /// Canonical property lines, sorted.
    pub properties: Vec<String>,
    /// Sub-components, sorted.
    pub children: Vec<Node>,
}

impl Node {
    /// Renders the node as readable text (one property per line).
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        out.push_str(&format!("BEGIN:{}\n", self.name));
        for p in &self.properties {
            out.push_str(p);
            out.push('\n');
        }
        for c in &self.children {
            c.render_into(out);
        }
        out.push_str(&format!("END:{}\n", self.name));
    }

    /// Values of the property `name` in this node and below (e.g. RECURRENCE-ID).
    pub fn values_of(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .properties
            .iter()
            .filter(|p| property_name(p) == name)
            .cloned()
            .collect();
        for c in &self.children {
            out.extend(c.values_of(name));
        }
        out.sort();
        out
    }

    /// The METHOD of a VCALENDAR, if any.
    pub fn method(&self) -> Option<String> {
        self.properties
            .iter()
            .find(|p| property_name(p) == "METHOD")
            .and_then(|p| p.split_once(':').map(|(_, v)| v.to_ascii_uppercase()))
    }
}

fn property_name(line: &str) -> &str {
    let end = line.find([';', ':']).unwrap_or(line.len());
    &line[..end]
}

/// Parameters whose values are enumerations (compared case-insensitively).
const ENUM_PARAMS: [&str; 12] = [
    "PARTSTAT",
    "ROLE",
    "CUTYPE",
    "RSVP",
    "SCHEDULE-AGENT",
    "SCHEDULE-FORCE-SEND",
    "VALUE",
    "RANGE",
    "RELATED",
    "FBTYPE",
    "RELTYPE",
    "ENCODING",
];

/// Parameters whose values are calendar addresses.
const ADDRESS_PARAMS: [&str; 4] = ["DELEGATED-TO", "DELEGATED-FROM", "SENT-BY", "MEMBER"];

/// Parses iCalendar text into canonical form.
pub fn canonicalize(text: &str, numbering: &mut Numbering) -> Result<Node, String> {
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    for line in unfold(text) {
        if line.trim().is_empty() {
            continue;
        }
        let (name, params, value) =
            split_line(&line).ok_or_else(|| format!("not a content line: {line:?}"))?;
        match name.as_str() {
            "BEGIN" => stack.push(Node {
                name: value.trim().to_ascii_uppercase(),
                properties: Vec::new(),
                children: Vec::new(),
            }),
            "END" => {
                let mut node = stack
                    .pop()
                    .ok_or_else(|| format!("END without BEGIN: {line:?}"))?;
                if node.name != value.trim().to_ascii_uppercase() {
                    return Err(format!("END:{} closes BEGIN:{}", value.trim(), node.name));
                }
                node.properties.sort();
                node.children.sort();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            "PRODID" => {}
            _ => {
                let current = stack
                    .last_mut()
                    .ok_or_else(|| format!("property outside a component: {line:?}"))?;
                current
                    .properties
                    .push(canonical_property(&name, &params, &value, numbering));
            }
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("BEGIN:{} is never closed", open.name));
    }
    root.ok_or_else(|| "no BEGIN:VCALENDAR".to_string())
}

fn unfold(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = raw.strip_prefix([' ', '\t']) {
            if let Some(last) = lines.last_mut() {
                last.push_str(rest);
                continue;
            }
        }
        lines.push(raw.to_string());
    }
    lines
}

/// A content line split into name, parameters (name, raw value) and value.
type ContentLine = (String, Vec<(String, String)>, String);

/// Splits a content line into its parts.
fn split_line(line: &str) -> Option<ContentLine> {
    let mut in_quotes = false;
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut value = None;
    for (i, c) in line.char_indices() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                current.push(c);
            }
            ';' if !in_quotes => parts.push(std::mem::take(&mut current)),
            ':' if !in_quotes => {
                parts.push(std::mem::take(&mut current));
                value = Some(line[i + 1..].to_string());
                break;
            }
            _ => current.push(c),
        }
    }
    let value = value?;
    let mut parts = parts.into_iter();
    let name = parts.next()?.trim().to_ascii_uppercase();
    let params = parts
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n.trim().to_ascii_uppercase(), v.to_string()),
            None => (p.trim().to_ascii_uppercase(), String::new()),
        })
        .collect();
    Some((name, params, value))
}

fn canonical_property(
    name: &str,
    params: &[(String, String)],
    value: &str,
    numbering: &mut Numbering,
) -> String {
    let mut params: Vec<String> = params
        .iter()
        .map(|(pname, pvalue)| {
            let values: Vec<String> = split_unquoted(pvalue, ',')
                .into_iter()
                .map(|v| {
                    let v = v.trim().trim_matches('"').to_string();
                    if ENUM_PARAMS.contains(&pname.as_str()) {
                        v.to_ascii_uppercase()
                    } else if ADDRESS_PARAMS.contains(&pname.as_str()) {
                        lower_mailto(&v)
                    } else {
                        v
                    }
                })
                .collect();
            format!("{pname}={}", values.join(","))
        })
        .collect();
    params.sort();
    let value = match name {
        "ATTENDEE" | "ORGANIZER" => lower_mailto(value),
        "RRULE" | "EXRULE" => {
            let mut parts: Vec<String> = value
                .split(';')
                .map(|part| match part.split_once('=') {
                    Some((k, v)) => {
                        format!("{}={}", k.to_ascii_uppercase(), v.to_ascii_uppercase())
                    }
                    None => part.to_ascii_uppercase(),
                })
                .collect();
            parts.sort();
            parts.join(";")
        }
        "DTSTAMP" => numbering.number(value),
        "METHOD" | "STATUS" => value.to_ascii_uppercase(),
        _ => value.to_string(),
    };
    let mut out = name.to_string();
    for p in params {
        out.push(';');
        out.push_str(&p);
    }
    out.push(':');
    out.push_str(&value);
    out
}

fn lower_mailto(value: &str) -> String {
    match crate::itip::address::strip_prefix_ignore_case(value, "mailto:") {
        Some(rest) => format!("mailto:{rest}"),
        None => value.to_string(),
    }
}

fn split_unquoted(value: &str, sep: char) -> Vec<String> {
    crate::text::split_outside_quotes(value, |c| c == sep)
}

/// `text` in canonical form with a fresh numbering (for unit tests).
#[cfg(test)]
pub(crate) fn canon(text: &str) -> Node {
    canonicalize(text, &mut Numbering::default()).expect("valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_case_folding_and_quotes_do_not_matter() {
        let a = "BEGIN:VCALENDAR\r\nPRODID:a\r\nBEGIN:VEVENT\r\nATTENDEE;RSVP=TRUE;CN=\"B\";PARTSTAT=accepted:MAILTO:b@x.com\r\nRRULE:FREQ=DAILY;INTERVAL=1;COUNT=5\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let b = "BEGIN:VCALENDAR\nPRODID:other\nBEGIN:VEVENT\nRRULE:FREQ=DAILY;COUNT=5;INTERVAL=1\nATTENDEE;PARTSTAT=ACCEPTED;CN=B;RSVP=TRUE:mailto:b@x.c\n om\nEND:VEVENT\nEND:VCALENDAR\n";
        assert_eq!(canon(a), canon(b));
    }

    #[test]
    fn values_and_parameters_still_matter() {
        let a = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:Lunch\nEND:VEVENT\nEND:VCALENDAR\n";
        let b = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:lunch\nEND:VEVENT\nEND:VCALENDAR\n";
        assert_ne!(canon(a), canon(b));
        let c = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nATTENDEE;RSVP=TRUE:mailto:b@x.com\nEND:VEVENT\nEND:VCALENDAR\n";
        let d =
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nATTENDEE:mailto:b@x.com\nEND:VEVENT\nEND:VCALENDAR\n";
        assert_ne!(canon(c), canon(d));
    }

    #[test]
    fn dtstamps_are_numbered_in_order_of_appearance() {
        let mut numbering = Numbering::default();
        let first = canonicalize(
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTAMP:20200101T000000Z\nEND:VEVENT\nEND:VCALENDAR\n",
            &mut numbering,
        )
        .expect("valid");
        let second = canonicalize(
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTAMP:19990101T000000Z\nEND:VEVENT\nEND:VCALENDAR\n",
            &mut numbering,
        )
        .expect("valid");
        assert_eq!(first.children[0].properties, vec!["DTSTAMP:#0"]);
        assert_eq!(second.children[0].properties, vec!["DTSTAMP:#1"]);
        let expected = canonicalize(
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTAMP:1\nEND:VEVENT\nEND:VCALENDAR\n",
            &mut numbering,
        )
        .expect("valid");
        assert_eq!(expected, second);
    }

    #[test]
    fn broken_text_is_an_error() {
        assert!(canonicalize("BEGIN:VCALENDAR\n", &mut Numbering::default()).is_err());
        assert!(canonicalize("END:VEVENT\n", &mut Numbering::default()).is_err());
        assert!(canonicalize("hello", &mut Numbering::default()).is_err());
    }
}
