//! Why an email could not be read as iMIP, or an iTIP message could not become an email.
//!
//! Incoming refusals (`NoCalendarPart`, `OnlyTnef`, `MethodMismatch`, ...) describe a
//! problem with the mail someone sent; they are expected in normal operation and the
//! daemon logs them with the sender. Outgoing errors (`OutgoingMethodMismatch`,
//! `Template`, ...) are bugs or configuration mistakes on this side.

use thiserror::Error;

/// Every reason the iMIP layer refuses a message, in either direction.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImipError {
    /// The whole email is larger than the configured limit, checked before parsing.
    #[error(
        "the email is {size} bytes, over the {limit}-byte limit for incoming iMIP mail \
         (raise imip.max_message_size if such mail is expected)"
    )]
    MessageTooLarge {
        /// Size of the raw email.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The bytes do not form an RFC 5322 message (no header section at all).
    #[error("the data is not an email message: no RFC 5322 header section was found")]
    NotAnEmail,
    /// MIME multiparts nested deeper than the configured cap (hostile or broken mail).
    #[error(
        "the email nests MIME multiparts more than {limit} levels deep; refusing to look \
         further (no mail client does this: the message is broken or hostile)"
    )]
    NestingTooDeep {
        /// The configured depth limit.
        limit: usize,
    },
    /// More MIME parts, or more calendar parts, than any iMIP message has: refused
    /// before they are parsed, so one mail's memory stays bounded.
    #[error(
        "the email has more than {limit} {what}; refusing to examine it (no mail client \
         sends this: the message is broken or hostile)"
    )]
    TooManyParts {
        /// "MIME parts" or "calendar parts".
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Nothing in the email looks like calendar data.
    #[error(
        "the email has no calendar part (text/calendar or application/ics): it is not an \
         iMIP scheduling message"
    )]
    NoCalendarPart,
    /// The only candidate is a Microsoft TNEF blob, which this gateway cannot read.
    #[error(
        "the email carries its calendar data only inside a Microsoft TNEF attachment \
         (winmail.dat / application/ms-tnef), which cannot be read: the sender's Outlook or \
         Exchange must send iCalendar (disable \"rich text\"/TNEF for this recipient)"
    )]
    OnlyTnef,
    /// More than one distinct VCALENDAR: iMIP carries exactly one iTIP message per email.
    #[error(
        "the email carries {count} different calendars; iMIP allows exactly one \
         scheduling message per email (the same calendar repeated as an attachment is fine)"
    )]
    MultipleCalendars {
        /// How many distinct calendars were found.
        count: usize,
    },
    /// The Content-Type `method=` parameter and the METHOD property disagree.
    #[error(
        "the calendar part's Content-Type says method={param} but the calendar inside says \
         METHOD:{inside}; the sender's mail is inconsistent, so it is not acted upon"
    )]
    MethodMismatch {
        /// The `method=` parameter (or the first of two disagreeing ones).
        param: String,
        /// The METHOD property (or the second disagreeing method).
        inside: String,
    },
    /// A method name that is not one of RFC 5546's.
    #[error("{0:?} is not an iTIP method (expected REQUEST, REPLY, CANCEL, ADD, REFRESH, COUNTER, DECLINECOUNTER or PUBLISH)")]
    UnknownMethod(String),
    /// A calendar part larger than the configured limit.
    #[error(
        "the calendar part is {size} bytes, over the {limit}-byte limit \
         (raise imip.max_calendar_size if such invitations are expected)"
    )]
    CalendarTooLarge {
        /// Size of the part (encoded or decoded, whichever was checked first).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The calendar part is not valid iCalendar.
    #[error("the calendar part is not valid iCalendar: {0}")]
    InvalidICalendar(String),
    /// Neither a METHOD property nor a `method=` parameter: a plain calendar file.
    #[error(
        "the calendar has no METHOD and its Content-Type has no method= parameter: it is a \
         plain calendar file, not a scheduling message"
    )]
    MissingMethod,
    /// The engine handed over a message whose METHOD differs from the calendar's.
    #[error(
        "the iTIP message is for METHOD {expected} but its calendar says {found}: \
         refusing to send an email whose method= parameter would contradict its content"
    )]
    OutgoingMethodMismatch {
        /// The method of the `ItipMessage`.
        expected: String,
        /// The METHOD found in the calendar, or "no METHOD".
        found: String,
    },
    /// The translation catalogue or a template is broken (a bug in this build).
    #[error(
        "cannot write the email text ({0}); this is a bug in imipd's templates or translations"
    )]
    Template(String),
}
