//! Who an outgoing mail says it is from.
//!
//! iMIP mail should come from the calendar user it speaks for: the organizer, or the
//! attendee who answers, with the CN from their ORGANIZER/ATTENDEE line as display
//! name, so the recipient's client can match the From address to the calendar data.
//! Some relays cannot send as every domain (SPF/DMARC of a hosted domain). For those
//! domains the options name a system sender: the mail then comes from the system
//! address, still shows the user's name, and carries `Reply-To: user`, so answers
//! typed by hand reach the person.

use super::calendar;
use crate::itip::{CalAddress, ItipMessage};
use std::collections::BTreeMap;

/// A display name and an address: one RFC 5322 mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The display name (a CN, or a From phrase), if any.
    pub name: Option<String>,
    /// The address.
    pub address: CalAddress,
}

impl Mailbox {
    /// A mailbox without display name.
    pub fn new(address: CalAddress) -> Self {
        Mailbox {
            name: None,
            address,
        }
    }

    /// A mailbox with a display name.
    pub fn named(name: impl Into<String>, address: CalAddress) -> Self {
        Mailbox {
            name: Some(name.into()),
            address,
        }
    }
}

/// The From and Reply-To of one mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Originator {
    /// The From header.
    pub from: Mailbox,
    /// Reply-To, set only when `from` is a system sender.
    pub reply_to: Option<Mailbox>,
}

/// Picks From/Reply-To for `msg` under the per-domain `system_senders` policy.
pub(crate) fn originator(
    msg: &ItipMessage,
    system_senders: &BTreeMap<String, Mailbox>,
) -> Originator {
    let name = calendar::find_person(&msg.calendar, &msg.from).and_then(|p| display_name(p.name));
    let user = Mailbox {
        name,
        address: msg.from.clone(),
    };
    match system_senders.get(&msg.from.domain().to_ascii_lowercase()) {
        Some(system) => Originator {
            from: Mailbox {
                name: user.name.clone().or_else(|| system.name.clone()),
                address: system.address.clone(),
            },
            reply_to: Some(user),
        },
        None => Originator {
            from: user,
            reply_to: None,
        },
    }
}

/// The display name for a recipient, from their line in the calendar (`person`).
pub(crate) fn recipient_mailbox(
    person: Option<&calendar::Person>,
    recipient: &CalAddress,
) -> Mailbox {
    Mailbox {
        name: person.and_then(|p| display_name(p.name.clone())),
        address: recipient.clone(),
    }
}

/// A CN made safe for a header phrase: line breaks and other control characters
/// become single spaces, so no calendar content can start a new header line.
fn display_name(cn: Option<String>) -> Option<String> {
    let cleaned = cn?
        .split(char::is_control)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    (!cleaned.is_empty()).then_some(cleaned)
}
