//! What the delivery queue holds: one message for one recipient ([`QueueItem`]), where
//! it goes ([`Route`]) and what it means ([`SummaryRecord`]).
//!
//! Its own module so that the state ([`state`](super::state)), which stores items, and
//! the helpers it uses on them ([`bodies`](super::bodies), [`supersede`](super::supersede))
//! all read the type without importing one another: data flows from `state` into those
//! helpers, never back.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where a queued message goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Route {
    /// Straight into a local user's store.
    Local {
        /// The local user.
        user: String,
    },
    /// By email.
    Mail,
}

/// One message for one recipient, waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueItem {
    /// Queue identifier, increasing.
    pub id: u64,
    /// When it was queued (UTC timestamp).
    pub created: i64,
    /// Not before this time (UTC timestamp).
    pub next_attempt: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Local store or email.
    pub route: Route,
    /// Sender's calendar address.
    pub from: String,
    /// Recipient's calendar address.
    pub rcpt: String,
    /// The METHOD, for logs and listings.
    pub method: String,
    /// The UID, for logs, listings and bounce matching.
    pub uid: String,
    /// The iTIP calendar text. The items of one change share it: one allocation in
    /// memory, one copy in the state ([`super::bodies`]).
    #[serde(default = "no_text", skip_serializing_if = "is_no_text")]
    pub itip: Arc<str>,
    /// The hash under which the state keeps `itip`; set by the state when it stores
    /// the item (`None` in items not yet stored, and in items stored inline before
    /// state version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// What the message means (subject and body of the email).
    pub summary: SummaryRecord,
    /// The organizer's object that receives SCHEDULE-STATUS for this recipient, when the
    /// sender is a local organizer.
    pub status_object: Option<String>,
    /// The last failure, for `queue list`.
    pub last_error: Option<String>,
    /// When the user saved the change that caused this message (ms since the epoch),
    /// for the change → handoff latency metric.
    #[serde(default)]
    pub changed_at_ms: Option<i64>,
}

fn no_text() -> Arc<str> {
    Arc::from("")
}

fn is_no_text(text: &Arc<str>) -> bool {
    text.is_empty()
}

/// A storable form of [`crate::itip::MessageSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SummaryRecord {
    /// See [`crate::itip::MessageSummary::Invite`].
    Invite,
    /// See [`crate::itip::MessageSummary::Update`]: (property, old, new).
    Update(Vec<(String, Option<String>, Option<String>)>),
    /// See [`crate::itip::MessageSummary::Cancel`].
    Cancel,
    /// See [`crate::itip::MessageSummary::Reply`]: the PARTSTAT text.
    Reply(String),
    /// See [`crate::itip::MessageSummary::Counter`].
    Counter,
    /// See [`crate::itip::MessageSummary::DeclineCounter`].
    DeclineCounter,
    /// See [`crate::itip::MessageSummary::Refresh`].
    Refresh,
}
