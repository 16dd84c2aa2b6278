//! Reference steps imipd departs from on purpose, each with its RFC reason.
//!
//! The shared conformance suite is adapted from a CalDAV server that is wrong by the
//! RFCs in a few places (the "Do better" list of the shared rules). Where imipd follows
//! the RFC, such a step fails as written. It is listed here, by file name, line and
//! title, with the reason and the project scenario that pins what imipd does instead;
//! the runner reports it as "departs", never as passed, and only when imipd's actual
//! result shows what the RFC asks for (`shows`/`lacks`); otherwise, or when a listed
//! step passes as written, it is a failure, so the list cannot go stale silently.
//! Nothing is translated or compared more loosely: every other step is compared as
//! written.

use std::path::Path;

/// One reference step imipd deliberately does not follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Departure {
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

impl Departure {
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
pub const DEPARTURES: &[Departure] = &[
    Departure {
        file: "rfc5546_todo.txt",
        line: 437,
        title: "Reply to an instance of a recurring to-do",
        reason: NOT_AN_OCCURRENCE,
        pinned_by: "tests/scenarios/inbound_occurrences.txt",
        shows: Some("InvalidRecurrenceId"),
        lacks: None,
    },
    Departure {
        file: "rfc5546_todo.txt",
        line: 440,
        title: "Make sure \"A\" received the reply",
        reason: NOT_AN_OCCURRENCE,
        pinned_by: "tests/scenarios/inbound_occurrences.txt",
        shows: None,
        lacks: Some("RECURRENCE-ID"),
    },
    Departure {
        file: "rfc6638_recurring.txt",
        line: 228,
        title: "Organizer receives the response",
        reason: STUB_OVERRIDE,
        pinned_by: "tests/scenarios/recurring_occurrences.txt",
        shows: Some("DTSTART;TZID=America/Montreal:20090602T150000"),
        lacks: None,
    },
    Departure {
        file: "rfc6638_recurring.txt",
        line: 326,
        title: "Participant removes an instance of the recurring event",
        reason: EXDATE_DECLINE,
        pinned_by: "tests/scenarios/recurring_occurrences.txt",
        shows: Some("DTSTART;TZID=America/Montreal:20090603T150000"),
        lacks: Some("DTSTART;TZID=America/Montreal:20090601T150000"),
    },
    Departure {
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
pub fn find(file: &Path, line: usize, title: &str) -> Option<&'static Departure> {
    let name = file.file_name()?.to_str()?;
    DEPARTURES
        .iter()
        .find(|d| d.file == name && d.line == line && d.title == title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_departure_matches_only_its_own_step() {
        let file = Path::new("../shared/conformance/rfc6638_recurring.txt");
        assert!(find(file, 228, "Organizer receives the response").is_some());
        assert!(find(file, 229, "Organizer receives the response").is_none());
        assert!(find(file, 228, "Something else").is_none());
        let other = Path::new("tests/scenarios/rfc6638_recurring_copy.txt");
        assert!(find(other, 228, "Organizer receives the response").is_none());
    }

    /// A failing step only counts as a departure when imipd does what the RFC asks.
    #[test]
    fn a_departure_holds_only_for_the_rfc_behaviour() {
        let full = find(
            Path::new("rfc6638_recurring.txt"),
            228,
            "Organizer receives the response",
        )
        .expect("listed");
        assert!(full.holds_for("BEGIN:VEVENT\n  DTSTART;TZID=America/Montreal:20090602T150000\n"));
        assert!(!full
            .holds_for("BEGIN:VEVENT\n  RECURRENCE-ID;TZID=America/Montreal:20090602T150000\n"));
        let refused = find(
            Path::new("rfc5546_todo.txt"),
            440,
            "Make sure \"A\" received the reply",
        )
        .expect("listed");
        assert!(refused.holds_for("BEGIN:VTODO\nUID:x\nEND:VTODO\n"));
        assert!(!refused.holds_for("BEGIN:VTODO\nRECURRENCE-ID:19980101T170000Z\nEND:VTODO\n"));
    }
}
