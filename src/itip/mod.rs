//! The scheduling engine: iTIP (RFC 5546) under the rules of RFC 6638.
//!
//! Pure code: no files, sockets, clock or randomness. Callers pass the acting account's
//! addresses and "now" in a [`Context`]; the engine answers with the messages to send and
//! the updated copy to store, or an [`ItipError`] that says why not.
//!
//! - [`schedule_change`]: a user created or edited an item (organizer or attendee).
//! - [`schedule_removal`]: a user deleted an item (CANCEL, or a decline).
//! - [`receive`]: a message arrived for a user (REQUEST, REPLY, CANCEL, ...).
//!
//! The rules, and where imipd departs from the reference server, are described in
//! `docs/itip-rules.md` of the shared material and in the scenarios under
//! `tests/scenarios/`.

mod add;
pub mod address;
mod attendee;
mod edit;
pub mod error;
pub mod export;
mod inbound;
pub mod message;
mod occurrence;
mod organizer;
pub mod range;
mod reschedule;
pub mod snapshot;
pub mod status;
pub mod time;
pub mod vtimezone;

pub use address::CalAddress;
pub use error::ItipError;
pub use export::ReplyDetails;
pub use inbound::{decline_counter, receive};
pub use message::{method_name, FieldChange, ItipMessage, MessageSummary, Method};

use calcard::icalendar::ICalendar;
use snapshot::Snapshot;

/// What the engine needs to know about the world.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Every address of the acting account (aliases included), normalised.
    pub account: &'a [CalAddress],
    /// The current time as a UTC timestamp: becomes DTSTAMP of every message.
    pub now: i64,
    /// How much of the event a REPLY repeats.
    pub reply_details: ReplyDetails,
}

/// The result of a user's change: messages to deliver and the copy to store back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChangeOutcome {
    /// Messages to send, each with its sender and recipients.
    pub messages: Vec<ItipMessage>,
    /// The user's copy as it must be stored after sending (SEQUENCE raised,
    /// SCHEDULE-FORCE-SEND removed); `None` when it stays as the user wrote it.
    pub updated: Option<ICalendar>,
}

/// What a received message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundAction {
    /// A new invitation became the recipient's copy.
    Imported,
    /// The recipient's copy was changed (REQUEST, ADD, REPLY).
    Updated,
    /// The recipient's copy was marked cancelled.
    Cancelled,
    /// The message repeated what the copy already says.
    Unchanged,
    /// A REFRESH was answered with the current event.
    RefreshAnswered,
    /// An attendee proposed a change; the organizer decides, nothing was changed.
    CounterProposed,
    /// The organizer turned down this attendee's proposal; nothing was changed.
    CounterDeclined,
    /// An ADD for an event the recipient does not hold: answered with a REFRESH to the
    /// organizer, asking for the whole event (RFC 5546 §3.2.4).
    RefreshRequested,
}

/// One component of a received message that was not applied, while the others were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The component's RECURRENCE-ID as written (e.g. `20300111T090000Z`).
    pub recurrence_id: String,
    /// Why it was refused (e.g. [`ItipError::InvalidRecurrenceId`]).
    pub error: ItipError,
}

/// The result of applying a received message.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundOutcome {
    /// What happened, for the decision log.
    pub action: InboundAction,
    /// The recipient's new copy, when it changed (or was created).
    pub copy: Option<ICalendar>,
    /// Messages sent in answer (the current event for a REFRESH).
    pub responses: Vec<ItipMessage>,
    /// Components of the message that were refused while the rest applied: the
    /// verdict names them.
    pub refused: Vec<Refused>,
}

/// A user stored `new` (replacing `old`, the last version imipd processed, if any).
///
/// The user's role (organizer or attendee) is read from the object and `ctx.account`.
pub fn schedule_change(
    old: Option<&ICalendar>,
    new: &ICalendar,
    ctx: &Context<'_>,
) -> Result<ChangeOutcome, ItipError> {
    // A previous version that was not a scheduling object (or not ours) counts as absent.
    let old = old.and_then(|old| Snapshot::new(old, ctx.account).ok());
    let new_snapshot = Snapshot::new(new, ctx.account);
    let over = match (&old, &new_snapshot) {
        (_, Ok(new)) => range::is_over(new, ctx.now),
        (Some(old), Err(_)) => range::is_over(old, ctx.now),
        (None, Err(_)) => false,
    };
    if over {
        return Err(ItipError::EventInPast);
    }
    match (old, new_snapshot) {
        (None, Ok(new)) => organizer::create(&new, ctx),
        (None, Err(err)) => Err(err),
        (Some(old), Ok(new)) if old.organizer.is_local => organizer::update(&old, &new, ctx),
        (Some(old), Ok(new)) => attendee::update(&old, &new, ctx),
        (Some(old), Err(err)) => match err {
            ItipError::NoSchedulingInfo
            | ItipError::NotOrganizer
            | ItipError::NotOrganizerNorAttendee
            | ItipError::OtherSchedulingAgent => {
                if old.organizer.is_local {
                    // The organizer took the attendees away: they must hear it's off.
                    organizer::cancel(&old, ctx)
                } else {
                    Err(ItipError::CannotModifyAddress)
                }
            }
            other => Err(other),
        },
    }
}

/// A user deleted `old`: the organizer cancels, an attendee declines.
pub fn schedule_removal(old: &ICalendar, ctx: &Context<'_>) -> Result<ChangeOutcome, ItipError> {
    let old = Snapshot::new(old, ctx.account)?;
    if range::is_over(&old, ctx.now) {
        return Err(ItipError::EventInPast);
    }
    if old.organizer.is_local {
        organizer::cancel(&old, ctx)
    } else {
        attendee::decline(&old, ctx)
    }
}
