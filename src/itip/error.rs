//! Why the engine produced no scheduling message.
//!
//! Some variants are refusals (a stale SEQUENCE, a stranger's REPLY); others only say
//! that a change needs no message (`NothingToSend`). [`ItipError::is_refusal`] tells them
//! apart so the daemon can log the first as warnings and the second as plain decisions.
//! [`ItipError::name`] gives the stable names used by the scenario files.

use super::address::CalAddress;
use thiserror::Error;

/// Every reason the scheduling engine declines to produce or apply a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ItipError {
    /// No scheduling component carries an ORGANIZER: a private event.
    #[error("no ORGANIZER in any event or to-do: a private item, nothing to schedule")]
    NoSchedulingInfo,
    /// The ORGANIZER says another agent (the client, or nobody) does the scheduling.
    #[error("the ORGANIZER has SCHEDULE-AGENT=CLIENT or NONE: the calendar client schedules this item itself")]
    OtherSchedulingAgent,
    /// A new item whose organizer is not this account: the account only holds a copy.
    #[error("this account is not the organizer of the new item, so it sends no invitations")]
    NotOrganizer,
    /// The account appears neither as ORGANIZER nor as a server-scheduled ATTENDEE.
    #[error("this account is neither the organizer nor an attendee of the item")]
    NotOrganizerNorAttendee,
    /// The change is real but nobody needs to hear about it.
    #[error("no recipient needs a message for this change")]
    NothingToSend,
    /// No UID anywhere in the item.
    #[error("the item has no UID")]
    MissingUid,
    /// Two components disagree on the UID.
    #[error("the components of the item carry different UIDs")]
    MultipleUid,
    /// Two components name different organizers.
    #[error("the components of the item name different organizers")]
    MultipleOrganizer,
    /// VEVENT and VTODO (or others) mixed in one object.
    #[error("the item mixes component types (for example VEVENT and VTODO)")]
    MultipleObjectTypes,
    /// Two masters, or two overrides with the same RECURRENCE-ID.
    #[error("two components describe the same instance (duplicate RECURRENCE-ID or two masters)")]
    MultipleObjectInstances,
    /// A RECURRENCE-ID that is not a date or date-time, or names no occurrence of the
    /// stored event (a non-recurring event, a day the rule skips, an EXDATE).
    #[error("a RECURRENCE-ID is not a valid date or names no occurrence of the event")]
    InvalidRecurrenceId,
    /// An attendee changed a property only the organizer may change.
    #[error("an attendee may not add or remove {0}: only the organizer can change it")]
    CannotModifyProperty(String),
    /// The master instance appeared or vanished, or an attendee added or removed an
    /// instance that does not involve them.
    #[error("the set of instances changed in a way this role may not change it")]
    CannotModifyInstance,
    /// The attendee's own ATTENDEE line is gone or changed address.
    #[error("the attendee's own ATTENDEE line was removed or its address changed")]
    CannotModifyAddress,
    /// RFC 6638 forbids replacing the organizer, and inbound messages must come from
    /// the organizer of the stored copy.
    #[error("the organizer differs from the organizer of the stored copy")]
    OrganizerMismatch,
    /// Inbound iCalendar without METHOD.
    #[error("the iTIP message has no METHOD")]
    MissingMethod,
    /// A component type that iTIP cannot carry here.
    #[error("the component type cannot be scheduled")]
    InvalidComponentType,
    /// An inbound REQUEST or CANCEL older than the stored copy.
    #[error("the message has a lower SEQUENCE than the stored copy: it is out of date")]
    OutOfSequence,
    /// A message to the organizer's own copy that claims to come from the organizer.
    #[error("the message claims to come from the organizer, who is a local user: refused")]
    OrganizerIsLocalAddress,
    /// The sender is not the organizer of, nor an attendee in, the message.
    #[error("the sender {0} is neither the organizer nor an attendee")]
    SenderIsNotOrganizerNorAttendee(CalAddress),
    /// A change (REQUEST, ADD, CANCEL) that does not come from the event's organizer.
    #[error("the sender {0} is not the organizer of this event, so it may not change it")]
    SenderIsNotOrganizer(CalAddress),
    /// The sender is not an attendee of the stored item (a party crasher).
    #[error("the sender {0} is not an attendee of this event")]
    SenderIsNotParticipant(CalAddress),
    /// A participant the stored copy does not know.
    #[error("unknown participant {0}")]
    UnknownParticipant(CalAddress),
    /// A METHOD this role does not accept (e.g. a REQUEST sent to the organizer).
    #[error("METHOD:{0} is not accepted for this recipient's role")]
    UnsupportedMethod(String),
    /// The iCalendar text could not be parsed.
    #[error("the calendar data could not be parsed: {0}")]
    ICalendarParseError(String),
    /// An update, cancellation or reply for an item the recipient does not have.
    #[error("the recipient has no copy of this event, and only a REQUEST can create one")]
    EventNotFound,
    /// The merged item would exceed the size limit.
    #[error("the resulting calendar object is larger than the configured limit")]
    EventTooLarge,
    /// The item lies entirely in the past; nobody is told about it.
    #[error("the event ended before now: no messages are sent for past events")]
    EventInPast,
}

impl ItipError {
    /// The stable name of the variant, as written in scenario files.
    pub fn name(&self) -> &'static str {
        match self {
            ItipError::NoSchedulingInfo => "NoSchedulingInfo",
            ItipError::OtherSchedulingAgent => "OtherSchedulingAgent",
            ItipError::NotOrganizer => "NotOrganizer",
            ItipError::NotOrganizerNorAttendee => "NotOrganizerNorAttendee",
            ItipError::NothingToSend => "NothingToSend",
            ItipError::MissingUid => "MissingUid",
            ItipError::MultipleUid => "MultipleUid",
            ItipError::MultipleOrganizer => "MultipleOrganizer",
            ItipError::MultipleObjectTypes => "MultipleObjectTypes",
            ItipError::MultipleObjectInstances => "MultipleObjectInstances",
            ItipError::InvalidRecurrenceId => "InvalidRecurrenceId",
            ItipError::CannotModifyProperty(_) => "CannotModifyProperty",
            ItipError::CannotModifyInstance => "CannotModifyInstance",
            ItipError::CannotModifyAddress => "CannotModifyAddress",
            ItipError::OrganizerMismatch => "OrganizerMismatch",
            ItipError::MissingMethod => "MissingMethod",
            ItipError::InvalidComponentType => "InvalidComponentType",
            ItipError::OutOfSequence => "OutOfSequence",
            ItipError::OrganizerIsLocalAddress => "OrganizerIsLocalAddress",
            ItipError::SenderIsNotOrganizerNorAttendee(_) => "SenderIsNotOrganizerNorAttendee",
            ItipError::SenderIsNotOrganizer(_) => "SenderIsNotOrganizer",
            ItipError::SenderIsNotParticipant(_) => "SenderIsNotParticipant",
            ItipError::UnknownParticipant(_) => "UnknownParticipant",
            ItipError::UnsupportedMethod(_) => "UnsupportedMethod",
            ItipError::ICalendarParseError(_) => "ICalendarParseError",
            ItipError::EventNotFound => "EventNotFound",
            ItipError::EventTooLarge => "EventTooLarge",
            ItipError::EventInPast => "EventInPast",
        }
    }

    /// True when the input was wrong or unauthorised, as opposed to a change that
    /// simply needs no message (private item, nothing to send, client-scheduled).
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            ItipError::NoSchedulingInfo
                | ItipError::OtherSchedulingAgent
                | ItipError::NotOrganizer
                | ItipError::NothingToSend
                | ItipError::EventInPast
        )
    }
}
