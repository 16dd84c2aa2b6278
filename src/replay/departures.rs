//! Where imipd departs from the reference scenarios because an RFC says otherwise.
//!
//! The shared scenarios were recorded from a reference server. Where that server breaks
//! a rule of RFC 5546 or RFC 6638 that imipd follows, the runner translates the
//! reference's expectation into what the RFC asks for before comparing, and reports the
//! step as departing, with the reason, instead of hiding it among the passes. Each
//! translation is narrow: it rewrites only the values the RFC rule is about, and the
//! engine's output must still equal the translated expectation exactly. There are two
//! translations, and a short list of steps that no narrow translation can express:
//!
//! - [`Departure::ServerParameters`]: an expected *message* whose ORGANIZER or ATTENDEE
//!   lines carry SCHEDULE-STATUS, SCHEDULE-AGENT or SCHEDULE-FORCE-SEND (the reference's
//!   full CANCEL copies them). RFC 6638 §7.3 (and §7.1, §7.2): these never appear in a
//!   scheduling message. Stored copies (`get`) keep them and are not translated.
//! - [`Departure::SequenceBelowSent`]: an expected *organizer's copy* whose SEQUENCE is
//!   below one the organizer already sent for that instance (the reference does not
//!   store the SEQUENCE of a CANCEL sent to removed attendees). RFC 5546 §2.1.4: SEQUENCE
//!   never goes down, so the copy keeps the highest value sent, and the next message
//!   cannot go out below it. The expectation is raised to that value.
//! - [`Departure::Listed`]: a step named by file, line and title in [`LISTED`] (received
//!   messages for one occurrence: the reference stores stub overrides, accepts
//!   RECURRENCE-IDs that name no occurrence, and repeats the series' DTSTART in an EXDATE
//!   decline). It departs only when it fails as written *and* imipd's actual result shows
//!   what the RFC asks for (`shows`/`lacks`); a listed step that passes as written is a
//!   failure, so the list cannot go stale. The project scenario named by `pinned_by`
//!   pins imipd's whole behaviour there.
//!
//! Anything else that differs is a failure.

use super::canonical::Node;
use std::collections::BTreeMap;
use std::path::Path;

/// Why a step's expectation was translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// Server-only parameters removed from an expected message.
    ServerParameters,
    /// An organizer's copy expected with a SEQUENCE below one already sent.
    SequenceBelowSent,
    /// A listed step (see [`LISTED`]).
    Listed(&'static Listed),
}

impl Departure {
    /// The RFC reason, for reports.
    pub fn reason(self) -> &'static str {
        match self {
            Departure::ServerParameters => {
                "RFC 6638 7.3: SCHEDULE-STATUS, SCHEDULE-AGENT and SCHEDULE-FORCE-SEND are \
                 never sent in a scheduling message; the reference's CANCEL copies them"
            }
            Departure::SequenceBelowSent => {
                "RFC 5546 2.1.4: SEQUENCE never goes down; the organizer's copy keeps the \
                 SEQUENCE of the CANCEL it sent, which the reference does not store"
            }
            Departure::Listed(listed) => listed.reason,
        }
    }
}

/// Parameters that belong to the server holding a copy.
const SERVER_PARAMS: [&str; 3] = ["SCHEDULE-STATUS", "SCHEDULE-AGENT", "SCHEDULE-FORCE-SEND"];

/// Removes the server-only parameters from the ORGANIZER and ATTENDEE lines of an
/// expected message (canonical form). True when something was removed.
pub fn strip_server_params(node: &mut Node) -> bool {
    let mut changed = false;
    for line in node.properties.iter_mut() {
        let name = line.split([';', ':']).next().unwrap_or_default();
        if name != "ATTENDEE" && name != "ORGANIZER" {
            continue;
        }
        // Canonical lines are NAME;P=V;...:value with unquoted parameter values, which
        // may themselves hold ':' (DELEGATED-TO=mailto:...): the value starts at the
        // last ':' that follows the last parameter.
        let Some((head, value)) = split_value(line) else {
            continue;
        };
        let mut parts: Vec<&str> = head.split(';').collect();
        let before = parts.len();
        parts.retain(|p| {
            let pname = p.split('=').next().unwrap_or_default();
            !SERVER_PARAMS.contains(&pname)
        });
        if parts.len() != before {
            *line = format!("{}:{}", parts.join(";"), value);
            changed = true;
        }
    }
    if changed {
        node.properties.sort();
    }
    for child in node.children.iter_mut() {
        changed |= strip_server_params(child);
    }
    if changed {
        node.children.sort();
    }
    changed
}

/// Splits a canonical ORGANIZER/ATTENDEE line before its `mailto:` (or other) value.
fn split_value(line: &str) -> Option<(&str, &str)> {
    let lower = line.to_ascii_lowercase();
    // The value is the address; parameters never end in ":mailto:" + address + end.
    let at = lower.rfind(":mailto:").or_else(|| line.rfind(':'))?;
    Some((&line[..at], &line[at + 1..]))
}

/// The highest SEQUENCE each organizer sent, per UID and RECURRENCE-ID.
#[derive(Debug, Default)]
pub struct SentSequences {
    highest: BTreeMap<(String, String, Option<String>), i64>,
}

impl SentSequences {
    /// Records the components of a message `from` an organizer sent.
    pub fn record(&mut self, from: &str, message: &Node) {
        for (uid, rid, sequence) in components(message) {
            let key = (from.to_string(), uid, rid);
            let entry = self.highest.entry(key).or_insert(sequence);
            *entry = (*entry).max(sequence);
        }
    }

    /// Forgets everything (the `reset` command).
    pub fn clear(&mut self) {
        self.highest.clear();
    }

    /// Raises the SEQUENCE of each component of `account`'s expected copy to the
    /// highest `account` sent for it. True when a value was raised.
    pub fn raise_expected(&self, account: &str, copy: &mut Node) -> bool {
        let mut changed = false;
        for child in copy.children.iter_mut() {
            let Some((uid, rid, sequence)) = component(child) else {
                continue;
            };
            let key = (account.to_string(), uid, rid);
            let Some(&sent) = self.highest.get(&key) else {
                continue;
            };
            if sent > sequence {
                for line in child.properties.iter_mut() {
                    if line.starts_with("SEQUENCE:") {
                        *line = format!("SEQUENCE:{sent}");
                    }
                }
                child.properties.sort();
                changed = true;
            }
        }
        if changed {
            copy.children.sort();
        }
        changed
    }
}

fn components(node: &Node) -> Vec<(String, Option<String>, i64)> {
    node.children.iter().filter_map(component).collect()
}

/// UID, RECURRENCE-ID line and SEQUENCE of a scheduling component that has all of
/// UID and SEQUENCE.
fn component(node: &Node) -> Option<(String, Option<String>, i64)> {
    if !matches!(node.name.as_str(), "VEVENT" | "VTODO" | "VJOURNAL") {
        return None;
    }
    let value = |name: &str| {
        node.properties
            .iter()
            .find(|p| p.split([';', ':']).next() == Some(name))
    };
    let uid = value("UID")?.split_once(':')?.1.to_string();
    let sequence = value("SEQUENCE")?.split_once(':')?.1.trim().parse().ok()?;
    let rid = value("RECURRENCE-ID").cloned();
    Some((uid, rid, sequence))
}

/// One reference step imipd deliberately does not follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// The scenario file's name (without folder), e.g. `rfc6638_recurring.txt`.
    pub file: &'static str,
    /// The 1-based line of the step's command.
    pub line: usize,
    /// The step's title, checked too so that a shifted file does not match.
    pub title: &'static str,
    /// Why imipd does otherwise, with the RFC section.
    pub reason: &'static str,
    /// The project scenario that pins imipd's own behaviour for this case.
    pub pinned_by: &'static str,
    /// A line imipd's actual result must show (what the RFC asks for).
    pub shows: Option<&'static str>,
    /// Text imipd's actual result must not show (what the RFC forbids).
    pub lacks: Option<&'static str>,
}

impl Listed {
    /// True when `actual` (the step's rendered result) is what imipd does instead.
    pub fn holds_for(&self, actual: &str) -> bool {
        self.shows
            .is_none_or(|s| actual.lines().any(|l| l.trim() == s))
            && self.lacks.is_none_or(|l| !actual.contains(l))
    }
}

const STUB_OVERRIDE: &str = "a REPLY for an occurrence without an override is stored as the \
     master's instance (with DTSTART, RFC 5545 3.6.1; every attendee), not as a stub \
     override with only the answering attendee";
const EXDATE_DECLINE: &str = "a REPLY declining one occurrence by EXDATE carries that \
     occurrence's DTSTART and DTEND (RFC 5545 3.8.4.4: with a RECURRENCE-ID, DTSTART is the \
     instance's start; the series' first DTSTART would read as the occurrence moved, and \
     the mail's When line follows the data)";
const NOT_AN_OCCURRENCE: &str = "RECURRENCE-ID 19980101T170000Z is no occurrence of \
     DTSTART 19980101T100000Z + FREQ=MONTHLY;BYDAY=1FR (RFC 5545 3.8.4.4, 3.8.5.3): the \
     REPLY is refused with InvalidRecurrenceId instead of adding an override";

/// Every departure, in file order.
pub const LISTED: &[Listed] = &[
    Listed {
        file: "rfc5546_todo.txt",
        line: 437,
        title: "Reply to an instance of a recurring to-do",
        reason: NOT_AN_OCCURRENCE,
        pinned_by: "tests/scenarios/inbound_occurrences.txt",
        shows: Some("InvalidRecurrenceId"),
        lacks: None,
    },
    Listed {
        file: "rfc5546_todo.txt",
        line: 440,
        title: "Make sure \"A\" received the reply",
        reason: NOT_AN_OCCURRENCE,
        pinned_by: "tests/scenarios/inbound_occurrences.txt",
        shows: None,
        lacks: Some("RECURRENCE-ID"),
    },
    Listed {
        file: "rfc6638_recurring.txt",
        line: 228,
        title: "Organizer receives the response",
        reason: STUB_OVERRIDE,
        pinned_by: "tests/scenarios/recurring_occurrences.txt",
        shows: Some("DTSTART;TZID=America/Montreal:20090602T150000"),
        lacks: None,
    },
    Listed {
        file: "rfc6638_recurring.txt",
        line: 326,
        title: "Participant removes an instance of the recurring event",
        reason: EXDATE_DECLINE,
        pinned_by: "tests/scenarios/recurring_occurrences.txt",
        shows: Some("DTSTART;TZID=America/Montreal:20090603T150000"),
        lacks: Some("DTSTART;TZID=America/Montreal:20090601T150000"),
    },
    Listed {
        file: "rfc6638_recurring.txt",
        line: 367,
        title: "Organizer receives the response",
        reason: STUB_OVERRIDE,
        pinned_by: "tests/scenarios/recurring_occurrences.txt",
        shows: Some("DTSTART;TZID=America/Montreal:20090603T150000"),
        lacks: None,
    },
];

/// The departure listed for the step at `line` of `file` titled `title`, if any.
pub fn listed(file: &Path, line: usize, title: &str) -> Option<&'static Listed> {
    let name = file.file_name()?.to_str()?;
    LISTED
        .iter()
        .find(|d| d.file == name && d.line == line && d.title == title)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::canonical::canon as node;

    #[test]
    fn only_server_parameters_of_addresses_are_removed() {
        let mut expected = node(
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\n\
             ATTENDEE;PARTSTAT=DELEGATED;DELEGATED-TO=\"mailto:e@x.com\";SCHEDULE-STATUS=2.0:mailto:c@x.com\n\
             ORGANIZER;SCHEDULE-AGENT=SERVER:mailto:a@x.com\n\
             X-THING;SCHEDULE-STATUS=2.0:kept\nEND:VEVENT\nEND:VCALENDAR\n",
        );
        assert!(strip_server_params(&mut expected));
        let clean = node(
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\n\
             ATTENDEE;PARTSTAT=DELEGATED;DELEGATED-TO=\"mailto:e@x.com\":mailto:c@x.com\n\
             ORGANIZER:mailto:a@x.com\n\
             X-THING;SCHEDULE-STATUS=2.0:kept\nEND:VEVENT\nEND:VCALENDAR\n",
        );
        assert_eq!(expected, clean);
        let mut again = clean.clone();
        assert!(!strip_server_params(&mut again), "nothing left to remove");
    }

    #[test]
    fn an_expected_copy_is_raised_only_to_what_its_organizer_sent() {
        let sent =
            node("BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:u\nSEQUENCE:2\nEND:VEVENT\nEND:VCALENDAR\n");
        let mut sequences = SentSequences::default();
        sequences.record("a@x.com", &sent);
        let copy = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:u\nSEQUENCE:1\nEND:VEVENT\nEND:VCALENDAR\n";
        let mut other = node(copy);
        assert!(!sequences.raise_expected("b@x.com", &mut other));
        let mut own = node(copy);
        assert!(sequences.raise_expected("a@x.com", &mut own));
        assert_eq!(own, sent);
        let mut higher =
            node("BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:u\nSEQUENCE:3\nEND:VEVENT\nEND:VCALENDAR\n");
        assert!(!sequences.raise_expected("a@x.com", &mut higher));
    }

    #[test]
    fn a_departure_matches_only_its_own_step() {
        let file = Path::new("../shared/conformance/rfc6638_recurring.txt");
        assert!(listed(file, 228, "Organizer receives the response").is_some());
        assert!(listed(file, 229, "Organizer receives the response").is_none());
        assert!(listed(file, 228, "Something else").is_none());
        let other = Path::new("tests/scenarios/rfc6638_recurring_copy.txt");
        assert!(listed(other, 228, "Organizer receives the response").is_none());
    }

    /// The listed departure of step `title` at `line` of `file`.
    fn listed_in(file: &str, line: usize, title: &str) -> &'static Listed {
        listed(Path::new(file), line, title).expect("listed")
    }

    /// A failing step only counts as a departure when imipd does what the RFC asks.
    #[test]
    fn a_departure_holds_only_for_the_rfc_behaviour() {
        let full = listed_in(
            "rfc6638_recurring.txt",
            228,
            "Organizer receives the response",
        );
        assert!(full.holds_for("BEGIN:VEVENT\n  DTSTART;TZID=America/Montreal:20090602T150000\n"));
        assert!(!full
            .holds_for("BEGIN:VEVENT\n  RECURRENCE-ID;TZID=America/Montreal:20090602T150000\n"));
        let refused = listed_in(
            "rfc5546_todo.txt",
            440,
            "Make sure \"A\" received the reply",
        );
        assert!(refused.holds_for("BEGIN:VTODO\nUID:x\nEND:VTODO\n"));
        assert!(!refused.holds_for("BEGIN:VTODO\nRECURRENCE-ID:19980101T170000Z\nEND:VTODO\n"));
    }
}
