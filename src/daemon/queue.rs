//! The delivery queue worker: every queued message reaches its recipient, once.
//!
//! Local recipients get the message applied to their calendar directly; everyone else
//! gets an email handed to the next hop (the outbox folder or the SMTP relay). A
//! temporary failure (relay down, 4xx, disk full) is retried with backoff until the
//! item is older than the maximum age; a permanent one (5xx) ends the item. Either
//! way the organizer's copy learns the outcome as SCHEDULE-STATUS on that attendee:
//! 1.2 delivered locally, 1.1 sent, 3.7 not an email address, 5.1 failed. (The change's
//! own write already recorded 1.2 or 1.1, see `store::process`: an outcome that says
//! the same writes nothing.) Each email
//! goes out with a VERP envelope sender naming its queue item, and is remembered for
//! the maximum age, so a bounce arriving days later still finds its attendee.

use crate::imip::{self, AttendeeList, OutgoingOptions, PreparedMail, Stamp};
use crate::itip::status::{DELIVERED, FAILED, INVALID_ADDRESS, SENT};
use crate::itip::{CalAddress, FieldChange, ItipMessage, MessageSummary, Method};
use crate::smtp::retry::{Decision, RandomSource, RetryPolicy};
use crate::smtp::transport::{Envelope, Handover, SendError, Transport};
use crate::smtp::verp::{BounceAddress, BounceToken};
use crate::store::apply::{Applier, ApplyError};
use crate::store::layout::Store;
use crate::store::state::{Batch, QueueItem, SentRecord, State, StateError, SummaryRecord};
use crate::store::supersede::order_key;
use calcard::common::IanaParse;
use calcard::icalendar::{
    ICalendar, ICalendarParticipationStatus, ICalendarProperty, ICalendarValue,
};
use std::collections::HashMap;
use std::time::Duration;

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
    /// Where bounces go: `imipd-bounces+<signed queue item>@<domain>`.
    pub bounces: BounceAddress,
    /// The secret that signs bounce tokens, so forged bounces are not believed.
    pub bounce_key: Vec<u8>,
    /// When to retry, and when to give up.
    pub retry: RetryPolicy,
    /// How answers are written.
    pub reply_details: crate::itip::ReplyDetails,
    /// RSVP links in invitations (`[web]`), when configured.
    pub rsvp: Option<crate::imip::rsvp::LinkSettings>,
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
            partstat: ICalendarParticipationStatus::parse(partstat.as_bytes())
                .unwrap_or(ICalendarParticipationStatus::NeedsAction),
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

/// The recipient's address as the calendar spells it (`phA-1-0@example.net`), for the
/// envelope: RFC 5321 §2.4 leaves a local part's case to the receiving host, so it is
/// kept as written; the normalised address (lowercase) is only for comparing people.
/// Falls back to the normalised address when no ATTENDEE or ORGANIZER spells it
/// plainly.
pub fn as_written(calendar: &ICalendar, rcpt: &CalAddress) -> String {
    Spellings::of(calendar).of_address(rcpt)
}

/// How the calendar spells each address it names plainly (see [`as_written`]), looked
/// up once per message rather than once per recipient.
#[derive(Debug, Default)]
pub struct Spellings(HashMap<CalAddress, String>);

impl Spellings {
    /// Every ATTENDEE and ORGANIZER value of `calendar`; the first plain spelling of
    /// an address wins.
    pub fn of(calendar: &ICalendar) -> Spellings {
        let mut spelled = HashMap::new();
        let values = calendar
            .components
            .iter()
            .flat_map(|c| c.entries.iter())
            .filter(|e| {
                matches!(
                    e.name,
                    ICalendarProperty::Attendee | ICalendarProperty::Organizer
                )
            })
            .filter_map(|e| e.values.first().and_then(|v| v.as_text()));
        for value in values {
            let Some(address) = CalAddress::parse(value) else {
                continue;
            };
            if spelled.contains_key(&address) {
                continue;
            }
            let bare = crate::itip::address::strip_prefix_ignore_case(value.trim(), "mailto:")
                .unwrap_or(value.trim());
            let plain =
                bare.len() == address.as_str().len() && bare.eq_ignore_ascii_case(address.as_str());
            if plain {
                let (local, domain) = bare.rsplit_once('@').unwrap_or((bare, ""));
                spelled.insert(address, format!("{local}@{}", domain.to_ascii_lowercase()));
            }
        }
        Spellings(spelled)
    }

    /// `rcpt` as written, else normalised.
    pub fn of_address(&self, rcpt: &CalAddress) -> String {
        self.0
            .get(rcpt)
            .cloned()
            .unwrap_or_else(|| rcpt.to_string())
    }
}

/// The mail of the message the queue is working through, prepared once for all its
/// recipients: the items of one change are queued together and share their text, so
/// the text is parsed, serialised, encoded and rendered once, not once per item.
#[derive(Default)]
pub struct MailCache {
    current: Option<CachedMail>,
}

struct CachedMail {
    /// What the items it serves share: their stored text (or the text itself), sender
    /// and summary.
    key: (String, String, SummaryRecord),
    mail: PreparedMail<'static>,
    spellings: Spellings,
}

impl MailCache {
    /// The prepared mail of `item`, made when the item differs from the last one.
    fn prepared(
        &mut self,
        item: &QueueItem,
        opts: &OutgoingOptions,
    ) -> Result<&mut CachedMail, Attempt> {
        let key = (
            item.body.clone().unwrap_or_else(|| item.itip.to_string()),
            item.from.clone(),
            item.summary.clone(),
        );
        let fresh = self.current.as_ref().is_none_or(|c| c.key != key);
        if fresh {
            self.current = None;
            let message = itip_message(item).ok_or_else(|| {
                Attempt::Failed(FAILED, "the queued message no longer parses".into())
            })?;
            let spellings = Spellings::of(&message.calendar);
            let mail = PreparedMail::new(message, opts)
                .map_err(|err| Attempt::Failed(FAILED, format!("cannot build the email: {err}")))?;
            self.current = Some(CachedMail {
                key,
                mail,
                spellings,
            });
        }
        self.current
            .as_mut()
            .ok_or_else(|| Attempt::Retry("the prepared mail went missing".into()))
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
    /// Items due at `now`, oldest first; of one (UID, recipient) only the oldest item
    /// still queued, due or not: a recipient never gets a message after a newer one
    /// (a CANCEL overtaken by the REQUESTs before it would leave a deleted meeting).
    pub fn due(&self, now: i64) -> Result<Vec<QueueItem>, StateError> {
        let mut seen = std::collections::HashSet::new();
        Ok(self
            .state
            .queue()?
            .into_iter()
            .filter(|i| seen.insert(order_key(i)))
            .filter(|i| i.next_attempt <= now)
            .collect())
    }

    /// The earliest time any item is due, if the queue is not empty.
    pub fn next_due(&self) -> Result<Option<i64>, StateError> {
        // Only the items `due` may return: one waiting behind an older one of its
        // (UID, recipient) is not due, whatever its time says.
        let mut seen = std::collections::HashSet::new();
        Ok(self
            .state
            .queue()?
            .iter()
            .filter(|i| seen.insert(order_key(i)))
            .map(|i| i.next_attempt)
            .min())
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
        // Under `attendee_list = "hidden"` a local attendee's copy names no one else
        // either, as their mail would not.
        let message = match self.settings.mail.attendee_list {
            AttendeeList::Hidden => CalAddress::parse(&item.rcpt)
                .and_then(|rcpt| imip::attendee_list::hidden_for(&message, &rcpt))
                .unwrap_or(message),
            _ => message,
        };
        // A local sender is trusted: its message came from its own calendar.
        match applier.apply(user, &message.calendar, &sender, now, true, None) {
            Ok(_) => Attempt::Delivered(DELIVERED),
            Err(err) if err.is_temporary() => Attempt::Retry(err.to_string()),
            Err(err @ ApplyError::Itip(_)) => Attempt::Failed(FAILED, err.to_string()),
            Err(err) => Attempt::Failed(FAILED, err.to_string()),
        }
    }

    /// Builds the email for a mail item and hands it to the transport. `cache` keeps
    /// the prepared mail from one item to the next, so a change's 1,000 recipients
    /// cost one serialisation of its text.
    pub async fn deliver_mail(
        &self,
        item: &QueueItem,
        out: &impl Transport,
        cache: &mut MailCache,
    ) -> Attempt {
        match self.prepare_mail(item, cache) {
            Ok((envelope, bytes)) => mail_attempt(out.send(&envelope, &bytes).await),
            Err(attempt) => attempt,
        }
    }

    /// The envelope and bytes of a mail item's email, for [`Transport::send_all`];
    /// the attempt's end when no email can be built for it.
    pub fn prepare_mail(
        &self,
        item: &QueueItem,
        cache: &mut MailCache,
    ) -> Result<(Envelope, Vec<u8>), Attempt> {
        let Some(rcpt) = CalAddress::parse(&item.rcpt) else {
            return Err(Attempt::Failed(
                INVALID_ADDRESS,
                format!("{} is not an email address", item.rcpt),
            ));
        };
        let prepared = cache.prepared(item, &self.settings.mail)?;
        // A message's identity is fixed when it is queued: every attempt builds the
        // same bytes and Message-ID, so a retry after a crash is recognised as the same
        // email (the outbox keeps one file; receivers de-duplicate by Message-ID).
        let stamp = Stamp {
            now: chrono::DateTime::from_timestamp(item.created, 0).unwrap_or_default(),
            unique: item.id,
        };
        // RSVP links name the organizer's account; fixed by the queue time like the rest.
        let message = prepared.mail.message();
        let links = self.settings.rsvp.as_ref().and_then(|rsvp| {
            let user = self.store.user_for_address(&message.from)?;
            rsvp.links_for(message, &rcpt, &user.name, item.created)
        });
        let mail = match prepared
            .mail
            .build_for(&rcpt, &self.settings.mail, &stamp, links.as_ref())
        {
            Ok(mail) => mail,
            Err(err) => {
                return Err(Attempt::Failed(
                    FAILED,
                    format!("cannot build the email: {err}"),
                ))
            }
        };
        let token = BounceToken::signed(item.id, &self.settings.bounce_key);
        let envelope = Envelope {
            mail_from: self.settings.bounces.address(&token),
            recipient: prepared.spellings.of_address(&rcpt),
            envelope_id: Some(format!("imipd.{token}")),
        };
        Ok((envelope, mail.bytes))
    }

    /// Records attempts durably, in one commit: each item leaves the queue or waits
    /// for its next try. Returns the delivery statuses the organizers' copies are to
    /// get, for [`Self::record_statuses`]: the statuses of one change's deliveries
    /// are written together, one rewrite of the organizer's file instead of one per
    /// attendee. (A status is information for the organizer; a crash before it is
    /// written loses the status, never a message.)
    pub fn settle(
        &self,
        attempts: &[(QueueItem, Attempt)],
        now: i64,
        random: &mut impl RandomSource,
    ) -> Result<Vec<StatusNote>, StateError> {
        let mut batch = Batch::default();
        let mut notes = Vec::new();
        for (item, attempt) in attempts {
            let status = match attempt {
                Attempt::Delivered(status) => {
                    if let (true, Some(object)) = (*status == SENT, &item.status_object) {
                        batch.sent.push(SentRecord {
                            id: item.id,
                            at: now,
                            uid: item.uid.clone(),
                            rcpt: item.rcpt.clone(),
                            status_object: object.clone(),
                        });
                    }
                    batch.dequeue.push(item.id);
                    Some(*status)
                }
                Attempt::Failed(status, _) => {
                    batch.dequeue.push(item.id);
                    Some(*status)
                }
                Attempt::Retry(reason) => {
                    let age = Duration::from_secs((now - item.created).max(0) as u64);
                    match self.settings.retry.after_temporary_failure(
                        item.attempts + 1,
                        age,
                        random,
                    ) {
                        Decision::RetryAfter(delay) => {
                            let mut next = item.clone();
                            next.attempts += 1;
                            next.next_attempt = now + delay.as_secs().max(1) as i64;
                            next.last_error = Some(reason.clone());
                            batch.requeue.push(next);
                            None
                        }
                        Decision::GiveUp(_) => {
                            tracing::warn!(id = item.id, rcpt = %item.rcpt, %reason, "giving up: undeliverable for too long");
                            batch.dequeue.push(item.id);
                            Some(FAILED)
                        }
                    }
                }
            };
            if let (Some(status), Some(object)) = (status, &item.status_object) {
                notes.extend(CalAddress::parse(&item.rcpt).map(|rcpt| StatusNote {
                    object: object.clone(),
                    rcpt,
                    status,
                }));
            }
        }
        // Sent records older than a bounce can be are forgotten as new ones come.
        let horizon = now - self.settings.retry.max_age.as_secs() as i64 - 86_400;
        if !batch.sent.is_empty() {
            batch.forget_sent = self.state.sent_before(horizon)?;
        }
        self.state.commit(batch)?;
        Ok(notes)
    }

    /// Writes delivery statuses into the organizers' copies, one write per object.
    /// Failures are logged: the messages are delivered either way.
    pub fn record_statuses(&self, notes: &[StatusNote]) {
        let applier = Applier {
            store: self.store,
            state: self.state,
            reply_details: self.settings.reply_details,
        };
        let mut objects: Vec<&str> = notes.iter().map(|n| n.object.as_str()).collect();
        objects.sort_unstable();
        objects.dedup();
        for object in objects {
            let statuses: Vec<(CalAddress, &str)> = notes
                .iter()
                .filter(|n| n.object == object)
                .map(|n| (n.rcpt.clone(), n.status))
                .collect();
            if let Err(err) = applier.record_statuses(object, &statuses) {
                tracing::warn!(object, recipients = statuses.len(), %err, "could not record the delivery status");
            }
        }
    }
}

/// What a transport's answer to one email means for its queue item.
pub fn mail_attempt(sent: Result<Handover, SendError>) -> Attempt {
    match sent {
        Ok(_) => Attempt::Delivered(SENT),
        Err(err @ SendError::Temporary(_)) => Attempt::Retry(err.failure().to_string()),
        Err(err @ SendError::Permanent(_)) => Attempt::Failed(FAILED, err.failure().to_string()),
    }
}

/// A delivery status still to be written into the organizer's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusNote {
    /// The organizer's object.
    pub object: String,
    /// The attendee it is about.
    pub rcpt: CalAddress,
    /// SCHEDULE-STATUS to record (1.1 sent, 1.2 delivered, 3.7, 5.1).
    pub status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every email handed to it; refuses the first attempt to `refuse`.
    struct Recording {
        sent: std::sync::Mutex<Vec<(String, Vec<u8>)>>,
        refuse: std::sync::Mutex<Option<String>>,
    }

    impl Transport for Recording {
        fn send<'a>(
            &'a self,
            envelope: &'a Envelope,
            message: &'a [u8],
        ) -> impl std::future::Future<Output = Result<crate::smtp::transport::Handover, SendError>>
               + Send
               + 'a {
            let refused = {
                let mut refuse = self.refuse.lock().expect("lock");
                let hit = refuse.as_deref() == Some(envelope.recipient.as_str());
                if hit {
                    *refuse = None;
                }
                hit
            };
            if !refused {
                self.sent
                    .lock()
                    .expect("lock")
                    .push((envelope.recipient.clone(), message.to_vec()));
            }
            async move {
                match refused {
                    true => Err(SendError::temporary("451 try again")),
                    false => Ok(crate::smtp::transport::Handover {
                        detail: "250 ok".into(),
                    }),
                }
            }
        }
    }

    #[test]
    fn the_emails_of_one_change_are_those_built_one_by_one_and_a_retry_sends_the_same_bytes() {
        let dir = std::env::temp_dir().join(format!("imipd-queue-mails-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("users")).expect("dir");
        let store = crate::store::layout::test_store(
            &dir.join("users"),
            crate::config::Layout::Vdir,
            1 << 20,
        );
        let state = State::open(&dir.join("state.redb")).expect("state");
        let mut text = String::from(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n\
             UID:big\r\nDTSTAMP:20300101T000000Z\r\nDTSTART:20300102T100000Z\r\nSUMMARY:All\r\n\
             ORGANIZER;CN=Alice:mailto:alice@example.com\r\n",
        );
        let rcpts: Vec<String> = (0..30).map(|i| format!("P{i}@example.net")).collect();
        for r in &rcpts {
            text.push_str(&format!("ATTENDEE;RSVP=TRUE:mailto:{r}\r\n"));
        }
        text.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
        let shared: std::sync::Arc<str> = text.into();
        let items: Vec<QueueItem> = rcpts
            .iter()
            .map(|r| QueueItem {
                id: 0,
                created: 1_900_000_000,
                next_attempt: 0,
                attempts: 0,
                route: crate::store::state::Route::Mail,
                from: "alice@example.com".into(),
                rcpt: r.to_ascii_lowercase(),
                method: "REQUEST".into(),
                uid: "big".into(),
                itip: shared.clone(),
                body: None,
                summary: SummaryRecord::Invite,
                status_object: None,
                last_error: None,
                changed_at_ms: None,
            })
            .collect();
        state
            .commit(Batch {
                enqueue: items,
                ..Batch::default()
            })
            .expect("queued");
        let settings = QueueSettings {
            mail: OutgoingOptions::default(),
            bounces: BounceAddress::new("imipd-bounces", "example.com").expect("bounces"),
            bounce_key: vec![7; 32],
            retry: crate::smtp::retry::RetryPolicy::default(),
            reply_details: crate::itip::ReplyDetails::Full,
            rsvp: None,
        };
        let worker = Worker {
            store: &store,
            state: &state,
            settings: &settings,
        };
        let out = Recording {
            sent: Default::default(),
            refuse: std::sync::Mutex::new(Some("P7@example.net".into())),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut cache = MailCache::default();
        let mut random = crate::smtp::retry::SplitMix64::new(1);
        let mut first = Vec::new();
        for item in worker.due(1_900_000_010).expect("due") {
            let attempt = runtime.block_on(worker.deliver_mail(&item, &out, &mut cache));
            first.push((item.clone(), attempt.clone()));
            // Each email is the one the one-shot builder makes for that item.
            if attempt == Attempt::Delivered(SENT) {
                let message = itip_message(&item).expect("message");
                let alone = imip::build_message(
                    &message,
                    &CalAddress::parse(&item.rcpt).expect("rcpt"),
                    &settings.mail,
                    &Stamp {
                        now: chrono::DateTime::from_timestamp(item.created, 0).unwrap_or_default(),
                        unique: item.id,
                    },
                )
                .expect("mail");
                let sent = out.sent.lock().expect("lock");
                assert!(sent.last().is_some_and(|(_, b)| *b == alone.bytes));
            }
        }
        assert_eq!(first.len(), 30);
        worker
            .settle(&first, 1_900_000_010, &mut random)
            .expect("settled");
        // The refused one waits for its retry, with the text still stored once.
        let left = state.queue().expect("queue");
        assert_eq!(left.len(), 1);
        assert_eq!(state.queue_texts().expect("texts").0, 1);
        let refused_bytes = |sent: &[(String, Vec<u8>)], who: &str| {
            sent.iter().find(|(r, _)| r == who).map(|(_, b)| b.clone())
        };
        // The retry, from a fresh cache as after a restart, sends the bytes the first
        // attempt would have: those the one-shot builder makes.
        let mut cache = MailCache::default();
        let attempt = runtime.block_on(worker.deliver_mail(&left[0], &out, &mut cache));
        assert_eq!(attempt, Attempt::Delivered(SENT));
        let message = itip_message(&left[0]).expect("message");
        let alone = imip::build_message(
            &message,
            &CalAddress::parse("p7@example.net").expect("rcpt"),
            &settings.mail,
            &Stamp {
                now: chrono::DateTime::from_timestamp(left[0].created, 0).unwrap_or_default(),
                unique: left[0].id,
            },
        )
        .expect("mail");
        let sent = out.sent.lock().expect("lock");
        assert_eq!(sent.len(), 30);
        // The envelope keeps the calendar's spelling of the local part.
        assert_eq!(refused_bytes(&sent, "P7@example.net"), Some(alone.bytes));
        drop(sent);
        worker
            .settle(&[(left[0].clone(), attempt)], 1_900_000_010, &mut random)
            .expect("settled");
        assert_eq!(state.queue_texts().expect("texts"), (0, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_envelope_recipient_keeps_the_local_part_as_written() {
        let calendar = ICalendar::parse(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n\
             UID:u1\r\nDTSTAMP:20300101T000000Z\r\nDTSTART:20300102T100000Z\r\n\
             ORGANIZER:mailto:alice@example.com\r\nATTENDEE:MAILTO:phA-1-0@Example.NET\r\n\
             ATTENDEE:mailto:%70q@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        )
        .expect("calendar");
        let address = |a: &str| CalAddress::parse(a).expect("address");
        assert_eq!(
            as_written(&calendar, &address("pha-1-0@example.net")),
            "phA-1-0@example.net"
        );
        // Spelled with escapes: the normalised address.
        assert_eq!(
            as_written(&calendar, &address("pq@example.net")),
            "pq@example.net"
        );
        assert_eq!(
            as_written(&calendar, &address("x@example.net")),
            "x@example.net"
        );
    }
}
