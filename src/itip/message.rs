//! The engine's output: iTIP messages, addressed and explained.
//!
//! An [`ItipMessage`] is what RFC 5546 calls a scheduling message: a VCALENDAR with a
//! METHOD, a sender and recipients. It is transport-neutral: the daemon delivers it to a
//! local store or hands it to `imip` to become an email. [`MessageSummary`] says what the
//! message means for a person (invitation, update with its changes, an answer), so that
//! the mail layer can write a subject and body without re-deriving the rules.

use super::address::CalAddress;
use calcard::icalendar::{ICalendar, ICalendarMethod, ICalendarParticipationStatus};

/// The iTIP methods of RFC 5546 (PUBLISH is carried but never generated).
pub type Method = ICalendarMethod;

/// The text of a METHOD, e.g. `REQUEST`.
pub fn method_name(method: &Method) -> &'static str {
    match method {
        ICalendarMethod::Publish => "PUBLISH",
        ICalendarMethod::Request => "REQUEST",
        ICalendarMethod::Reply => "REPLY",
        ICalendarMethod::Add => "ADD",
        ICalendarMethod::Cancel => "CANCEL",
        ICalendarMethod::Refresh => "REFRESH",
        ICalendarMethod::Counter => "COUNTER",
        ICalendarMethod::Declinecounter => "DECLINECOUNTER",
    }
}

/// One scheduling message from one calendar user to one or more others.
#[derive(Debug, Clone, PartialEq)]
pub struct ItipMessage {
    /// The METHOD inside `calendar`, kept here so routing never re-parses it.
    pub method: Method,
    /// Who the message is from: the organizer, or the attendee who answers.
    pub from: CalAddress,
    /// Recipients, sorted and without duplicates.
    pub to: Vec<CalAddress>,
    /// The complete VCALENDAR, METHOD included.
    pub calendar: ICalendar,
    /// What the message means to a person reading it.
    pub summary: MessageSummary,
}

impl ItipMessage {
    /// The UID of the scheduled item (every component of one message shares it).
    pub fn uid(&self) -> Option<&str> {
        self.calendar.uids().next()
    }

    /// The iCalendar text of the message (CRLF, folded at 75 octets).
    pub fn to_ics(&self) -> String {
        self.calendar.to_string()
    }
}

/// What a message says, for subjects, bodies and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageSummary {
    /// A first invitation (or an invitation to a delegate, or an answer to REFRESH).
    Invite,
    /// An update to an invitation; `changes` lists what a person would notice.
    Update {
        /// Fields that changed in the main instance (or the first changed instance).
        changes: Vec<FieldChange>,
    },
    /// The organizer cancelled the event, or some instances of it.
    Cancel,
    /// An attendee's answer.
    Reply {
        /// The participation status the attendee gave.
        partstat: ICalendarParticipationStatus,
    },
    /// An attendee proposes a change (COUNTER).
    Counter,
    /// The organizer turned down a COUNTER.
    DeclineCounter,
    /// An attendee asks for the current version (REFRESH).
    Refresh,
}

/// One visible change between the previous and the new version of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// The iCalendar property name, e.g. `DTSTART` or `LOCATION`.
    pub property: String,
    /// The previous value as iCalendar text, if there was one.
    pub old: Option<String>,
    /// The new value as iCalendar text, if there is one.
    pub new: Option<String>,
}
