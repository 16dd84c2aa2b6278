//! The delivery queue worker: every queued message reaches its recipient, once.
//!
//! Local recipients get the message applied to their calendar directly; everyone else
//! gets an email handed to the next hop (the outbox folder or the SMTP relay). A
//! temporary failure (relay down, 4xx, disk full) is retried with backoff until the
//! item is older than the maximum age; a permanent one (5xx) ends the item. Either
//! way the organizer's copy learns the outcome as SCHEDULE-STATUS on that attendee:
//! 1.2 delivered locally, 1.1 sent, 3.7 invalid address, 5.1 failed.

use crate::imip::{self, OutgoingMail, OutgoingOptions, Stamp};
use crate::itip::status::{DELIVERED, FAILED, INVALID_ADDRESS, SENT};
use crate::itip::{CalAddress, FieldChange, ItipMessage, MessageSummary, Method};
use crate::store::apply::{Applier, ApplyError};
use crate::store::layout::Store;
use crate::store::state::{Batch, QueueItem, Route, State, StateError, SummaryRecord};
use calcard::icalendar::{
    ICalendar, ICalendarParticipationStatus, ICalendarProperty, ICalendarValue,
};
use std::future::Future;

/// Why handing an email over failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoverError {
    /// Try again later (4xx, timeout, relay down, disk full).
    Temporary(String),
    /// Give up (5xx). `enhanced` is the enhanced status code, e.g. `5.1.1`.
    Permanent {
        /// Enhanced status code from the server.
        enhanced: String,
        /// What the server said.
        text: String,
    },
}

/// Gives a built email to the next hop: the daemon's view of a transport.
pub trait Handover {
    /// Sends `mail` with the given envelope sender and envelope id.
    fn hand_over(
        &mut self,
        mail: &OutgoingMail,
        envelope_from: &str,
        envid: &str,
    ) -> impl Future<Output = Result<(), HandoverError>> + Send;
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Done; the status to record on the organizer's copy.
    Delivered(&'static str),
    /// Try again at the given time.
    Retry(String),
    /// Given up; the status to record.
    Failed(&'static str, String),
}

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// How emails are written.
    pub mail: OutgoingOptions,
    /// The envelope sender for bounces, e.g. `imipd-bounces@example.com`.
    pub bounce_address: String,
    /// Seconds after which an undelivered item fails.
    pub max_age: i64,
    /// How answers are written.
    pub reply_details: crate::itip::ReplyDetails,
}

/// The delay before attempt number `attempts + 1`: one minute, doubling, at most an
/// hour, with up to a quarter of jitter (from `jitter`, 0..=1) so retries spread out.
pub fn retry_delay(attempts: u32, jitter: f64) -> i64 {
    let base = 60i64.saturating_mul(1i64 << attempts.min(6)).min(3600);
    base + (base as f64 * 0.25 * jitter.clamp(0.0, 1.0)) as i64
}

/// Rebuilds the engine's message from a queue item.
pub fn itip_message(item: &QueueItem) -> Option<ItipMessage> {
    let calendar = ICalendar::parse(&item.itip).ok()?;
    let method: Method = calendar
        .components
        .first()?
        .property(&ICalendarProperty::Method)
        .and_then(|e| match e.values.first() {
            Some(ICalendarValue::Method(m)) => Some(m.clone()),
            _ => None,
        })?;
    let summary = match &item.summary {
        SummaryRecord::Invite => MessageSummary::Invite,
        SummaryRecord::Update(changes) => MessageSummary::Update {
            changes: changes
                .iter()
                .map(|(property, old, new)| FieldChange {
                    property: property.clone(),
                    old: old.clone(),
                    new: new.clone(),
                })
                .collect(),
        },
        SummaryRecord::Cancel => MessageSummary::Cancel,
        SummaryRecord::Reply(partstat) => MessageSummary::Reply {
            partstat: partstat_of(partstat),
        },
        SummaryRecord::Counter => MessageSummary::Counter,
        SummaryRecord::DeclineCounter => MessageSummary::DeclineCounter,
        SummaryRecord::Refresh => MessageSummary::Refresh,
    };
    Some(ItipMessage {
        method,
        from: CalAddress::parse(&item.from)?,
        to: vec![CalAddress::parse(&item.rcpt)?],
        calendar,
        summary,
    })
}

fn partstat_of(text: &str) -> ICalendarParticipationStatus {
    match text.to_ascii_uppercase().as_str() {
        "ACCEPTED" => ICalendarParticipationStatus::Accepted,
        "DECLINED" => ICalendarParticipationStatus::Declined,
        "TENTATIVE" => ICalendarParticipationStatus::Tentative,
        "DELEGATED" => ICalendarParticipationStatus::Delegated,
        "COMPLETED" => ICalendarParticipationStatus::Completed,
        "IN-PROCESS" => ICalendarParticipationStatus::InProcess,
        "FAILED" => ICalendarParticipationStatus::Failed,
        _ => ICalendarParticipationStatus::NeedsAction,
    }
}

/// Works through the queue.
pub struct Worker<'a> {
    /// The calendar store.
    pub store: &'a Store,
    /// imipd's state.
    pub state: &'a State,
    /// Delivery settings.
    pub settings: &'a QueueSettings,
}

impl Worker<'_> {
    /// Items due at `now`, oldest first.
    pub fn due(&self, now: i64) -> Result<Vec<QueueItem>, StateError> {
        Ok(self
            .state
            .queue()?
            .into_iter()
            .filter(|i| i.next_attempt <= now)
            .collect())
    }

    /// The earliest time any item is due, if the queue is not empty.
    pub fn next_due(&self) -> Result<Option<i64>, StateError> {
        Ok(self.state.queue()?.iter().map(|i| i.next_attempt).min())
    }

    /// Delivers a local item into the recipient's calendar.
    pub fn deliver_local(&self, item: &QueueItem, user: &str, now: i64) -> Attempt {
        let (Some(user), Some(message), Some(sender)) = (
            self.store.user(user),
            itip_message(item),
            CalAddress::parse(&item.from),
        ) else {
            return Attempt::Failed(
                FAILED,
                "the recipient or the message is no longer valid".into(),
            );
        };
        let applier = Applier {
            store: self.store,
            state: self.state,
            reply_details: self.settings.reply_details,
        };
        // A local sender is trusted: its message came from its own calendar.
        match applier.apply(user, &message.calendar, &sender, now, true, None) {
            Ok(_) => Attempt::Delivered(DELIVERED),
            Err(err) if err.is_temporary() => Attempt::Retry(err.to_string()),
            Err(err @ ApplyError::Itip(_)) => Attempt::Failed(FAILED, err.to_string()),
            Err(err) => Attempt::Failed(FAILED, err.to_string()),
        }
    }

    /// Builds the email for a mail item and hands it over.
    pub async fn deliver_mail(
        &self,
        item: &QueueItem,
        out: &mut impl Handover,
        now: i64,
    ) -> Attempt {
        let Some(message) = itip_message(item) else {
            return Attempt::Failed(FAILED, "the queued message no longer parses".into());
        };
        let Some(rcpt) = CalAddress::parse(&item.rcpt) else {
            return Attempt::Failed(
                INVALID_ADDRESS,
                format!("{} is not an email address", item.rcpt),
            );
        };
        let stamp = Stamp {
            now: chrono::DateTime::from_timestamp(now, 0).unwrap_or_default(),
            unique: item.id,
        };
        let mail = match imip::build_message(&message, &rcpt, &self.settings.mail, &stamp) {
            Ok(mail) => mail,
            Err(err) => return Attempt::Failed(FAILED, format!("cannot build the email: {err}")),
        };
        let envid = format!("imipd.{}", item.id);
        match out
            .hand_over(&mail, &self.settings.bounce_address, &envid)
            .await
        {
            Ok(()) => Attempt::Delivered(SENT),
            Err(HandoverError::Temporary(reason)) => Attempt::Retry(reason),
            Err(HandoverError::Permanent { enhanced, text }) => {
                let status = if enhanced.starts_with("5.1.") {
                    INVALID_ADDRESS
                } else {
                    FAILED
                };
                Attempt::Failed(status, format!("{enhanced} {text}"))
            }
        }
    }

    /// Records an attempt: the item leaves the queue or waits for its next try, and
    /// the organizer's copy gets the delivery status.
    pub fn settle(
        &self,
        item: &QueueItem,
        attempt: &Attempt,
        now: i64,
        jitter: f64,
    ) -> Result<(), StateError> {
        let (status, done) = match attempt {
            Attempt::Delivered(status) => (Some(*status), true),
            Attempt::Failed(status, _) => (Some(*status), true),
            Attempt::Retry(reason) => {
                if now - item.created >= self.settings.max_age {
                    tracing::warn!(id = item.id, rcpt = %item.rcpt, %reason, "giving up: too old");
                    (Some(FAILED), true)
                } else {
                    let mut next = item.clone();
                    next.attempts += 1;
                    next.next_attempt = now + retry_delay(item.attempts, jitter);
                    next.last_error = Some(reason.clone());
                    self.state.commit(Batch {
                        requeue: vec![next],
                        ..Batch::default()
                    })?;
                    (None, false)
                }
            }
        };
        if done {
            self.state.commit(Batch {
                dequeue: vec![item.id],
                ..Batch::default()
            })?;
        }
        if let (Some(status), Some(object), Some(rcpt)) =
            (status, &item.status_object, CalAddress::parse(&item.rcpt))
        {
            let applier = Applier {
                store: self.store,
                state: self.state,
                reply_details: self.settings.reply_details,
            };
            if let Err(err) = applier.record_status(object, &rcpt, status) {
                tracing::warn!(object = %object, rcpt = %rcpt, %err, "could not record the delivery status");
            }
        }
        Ok(())
    }

    /// The route of an item, for dispatch.
    pub fn route(item: &QueueItem) -> &Route {
        &item.route
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_an_hour_with_bounded_jitter() {
        assert_eq!(retry_delay(0, 0.0), 60);
        assert_eq!(retry_delay(1, 0.0), 120);
        assert_eq!(retry_delay(5, 0.0), 1920);
        assert_eq!(retry_delay(6, 0.0), 3600);
        assert_eq!(retry_delay(40, 0.0), 3600);
        assert_eq!(retry_delay(0, 1.0), 75);
        assert_eq!(retry_delay(0, 7.0), 75, "jitter is clamped");
    }
}
