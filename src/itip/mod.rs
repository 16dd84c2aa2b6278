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
pub mod alias;
mod attendee;
mod edit;
pub mod error;
pub mod export;
pub mod history;
mod inbound;
pub mod message;
mod occurrence;
mod organizer;
pub mod range;
mod reschedule;
pub mod snapshot;
pub mod status;
pub mod time;
mod unsendable;
pub mod validate;
pub mod vtimezone;

pub use address::CalAddress;
pub use error::ItipError;
pub use export::ReplyDetails;
pub use inbound::{decline_counter, receive};
pub use message::{method_name, FieldChange, ItipMessage, MessageSummary, Method};

use calcard::icalendar::ICalendar;
use history::History;
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
/// Nothing is known beyond the two versions: see [`schedule_change_with`].
pub fn schedule_change(
    old: Option<&ICalendar>,
    new: &ICalendar,
    ctx: &Context<'_>,
) -> Result<ChangeOutcome, ItipError> {
    schedule_change_with(old, new, ctx, &History::default())
}

/// [`schedule_change`] with what the daemon remembers and knows about the writer
/// (see [`history`]): no message goes out below a SEQUENCE already sent, and an
/// answer a client told imipd schedules left to the server is sent.
pub fn schedule_change_with(
    old: Option<&ICalendar>,
    new: &ICalendar,
    ctx: &Context<'_>,
    history: &History,
) -> Result<ChangeOutcome, ItipError> {
    // Thunderbird's iMIP bar marks the organizer SCHEDULE-AGENT=CLIENT and then sends
    // nothing on a server that schedules: imipd answers for it (docs/scheduling.md,
    // "Answers a client leaves to the server").
    let left_to_server = history::client_left_reply_to_server(new, history.writer);
    let server_view;
    let (old_view, new) = if left_to_server {
        server_view = (
            old.map(history::organizer_scheduled_by_server),
            history::organizer_scheduled_by_server(new),
        );
        (server_view.0.as_ref(), &server_view.1)
    } else {
        (old, new)
    };
    let old = old_view;
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
    let new_snapshot = match new_snapshot {
        Ok(new) => new,
        // Not a scheduling object (any more): only an organizer's copy that lost its
        // attendees has something to send. Nothing of it is withheld: a copy that is
        // no scheduling object has no override to judge.
        Err(err) => {
            return match (old, err) {
                (None, err) => Err(err),
                (
                    Some(old),
                    ItipError::NoSchedulingInfo
                    | ItipError::NotOrganizer
                    | ItipError::NotOrganizerNorAttendee
                    | ItipError::OtherSchedulingAgent,
                ) => {
                    if old.organizer.is_local {
                        // The organizer took the attendees away: they must hear it's off.
                        organizer::cancel(&old, ctx, &history.sent)
                    } else {
                        Err(ItipError::CannotModifyAddress)
                    }
                }
                (Some(_), other) => Err(other),
            };
        }
    };
    let outcome = match old {
        // An invitation imipd never imported, accepted in the client: its first
        // answer goes to the organizer.
        None if left_to_server && !new_snapshot.organizer.is_local => {
            attendee::first_answer(&new_snapshot, ctx)
        }
        None => organizer::create(&new_snapshot, ctx, &history.sent),
        Some(old) if old.organizer.is_local => {
            organizer::update(&old, &new_snapshot, ctx, &history.sent)
        }
        Some(old) => attendee::update(&old, &new_snapshot, ctx),
    }?;
    // What every recipient would refuse (an override that is no occurrence) stays home.
    Ok(unsendable::withhold(&new_snapshot, outcome, ctx))
}

/// A user deleted `old`: the organizer cancels, an attendee declines.
pub fn schedule_removal(old: &ICalendar, ctx: &Context<'_>) -> Result<ChangeOutcome, ItipError> {
    schedule_removal_with(old, ctx, &History::default())
}

/// [`schedule_removal`] with what the daemon remembers: a series CANCEL goes out above
/// every SEQUENCE sent for any instance.
pub fn schedule_removal_with(
    old: &ICalendar,
    ctx: &Context<'_>,
    history: &History,
) -> Result<ChangeOutcome, ItipError> {
    let server_view;
    let old = if history::client_left_reply_to_server(old, history.writer) {
        server_view = history::organizer_scheduled_by_server(old);
        &server_view
    } else {
        old
    };
    let old = Snapshot::new(old, ctx.account)?;
    if range::is_over(&old, ctx.now) {
        return Err(ItipError::EventInPast);
    }
    if old.organizer.is_local {
        organizer::cancel(&old, ctx, &history.sent)
    } else {
        attendee::decline(&old, ctx)
    }
}
