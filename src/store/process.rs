//! From a file that changed to messages queued: the store side of scheduling.
//!
//! [`Processor::process`] looks at one object file, compares it with the version imipd
//! last accepted, asks the engine what follows, writes the organizer's updated copy back
//! (only if the file is still the version that was read), and commits the new baseline
//! together with the queued messages in one transaction. A crash before that commit
//! leaves nothing queued and the change unprocessed, so it is simply done again.

use super::answers;
use super::layout::{SkipReason, Store};
use super::patch::patch;
use super::state::{
    content_hash, Batch, ObjectRecord, QueueItem, Route, SentSequence, State, StateError,
    SummaryRecord,
};
use super::write::{write_then_commit, Expected, WriteError, WriteKind};
use crate::itip::history::{self, History, Writer};
use crate::itip::status::{DELIVERED, SENT};
use crate::itip::{self, CalAddress, Context, ItipMessage, MessageSummary, ReplyDetails};
use calcard::common::IanaString;
use calcard::icalendar::ICalendar;
use thiserror::Error;

/// What happened to one object, for the decision log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Same content as last time.
    Unchanged,
    /// Recorded without sending (first start on an existing store).
    Baseline,
    /// Not a calendar object imipd can read; logged once per version.
    Skipped(String),
    /// The change needs no message (with the engine's reason).
    NothingToSend(String),
    /// The change was refused; the user's file stays as it is.
    Refused(String),
    /// Messages were queued: (METHOD, recipient) pairs.
    Queued(Vec<(String, String)>),
    /// The file changed while being processed; it will be processed again.
    Retry,
    /// The object was deleted and imipd forgot it (messages queued, if any).
    Forgotten(Vec<(String, String)>),
}

/// Processing could not complete; nothing was half-done.
#[derive(Debug, Error)]
pub enum ProcessError {
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Writing the updated copy failed (full disk, permissions).
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Processes store changes for all local users.
pub struct Processor<'a> {
    /// The calendar store.
    pub store: &'a Store,
    /// imipd's state.
    pub state: &'a State,
    /// How REPLYs are written.
    pub reply_details: ReplyDetails,
    /// Who writes the objects when nothing more is known (the site's default: see
    /// [`crate::config::Config::writer`]).
    pub writer: Writer,
}

impl Processor<'_> {
    /// Looks at object `key` now; with `baseline`, only records it. The change counts
    /// as written by the site's default writer.
    pub fn process(&self, key: &str, now: i64, baseline: bool) -> Result<Decision, ProcessError> {
        self.process_written_by(key, now, baseline, self.writer)
    }

    /// [`Self::process`] for a change whose writer is known (the CalDAV front knows
    /// whether the client that wrote it was told imipd schedules).
    pub fn process_written_by(
        &self,
        key: &str,
        now: i64,
        baseline: bool,
        writer: Writer,
    ) -> Result<Decision, ProcessError> {
        let Some(user) = self.store.user_of_key(key) else {
            return Ok(Decision::Skipped(
                "not in a configured user's folder".into(),
            ));
        };
        let record = self.state.object(key)?;
        let (bytes, text) = match self.store.read(key) {
            Ok(Some(found)) => found,
            Ok(None) => return self.forget(key, record, now, baseline),
            Err(SkipReason::Gone) => return self.forget(key, record, now, baseline),
            Err(reason) => {
                let message = reason.to_string();
                if record.as_ref().and_then(|r| r.last_error.as_deref()) == Some(message.as_str()) {
                    return Ok(Decision::Unchanged);
                }
                let record = ObjectRecord {
                    user: user.name.clone(),
                    uid: record.as_ref().and_then(|r| r.uid.clone()),
                    seen_hash: String::new(),
                    baseline: record.as_ref().and_then(|r| r.baseline.clone()),
                    written_hash: record.as_ref().and_then(|r| r.written_hash.clone()),
                    last_error: Some(message.clone()),
                };
                self.commit_record(key, record, Vec::new())?;
                return Ok(Decision::Skipped(message));
            }
        };
        let hash = content_hash(&bytes);
        if record.as_ref().is_some_and(|r| r.seen_hash == hash) {
            return Ok(Decision::Unchanged);
        }
        let new = match ICalendar::parse(&text) {
            Ok(cal) => cal,
            Err(_) => {
                let record = ObjectRecord {
                    user: user.name.clone(),
                    uid: record.as_ref().and_then(|r| r.uid.clone()),
                    seen_hash: hash,
                    baseline: record.as_ref().and_then(|r| r.baseline.clone()),
                    written_hash: record.as_ref().and_then(|r| r.written_hash.clone()),
                    last_error: Some("not valid iCalendar".into()),
                };
                self.commit_record(key, record, Vec::new())?;
                return Ok(Decision::Skipped("not valid iCalendar".into()));
            }
        };
        let uid = new.uids().next().map(str::to_string);
        if baseline {
            let next = ObjectRecord {
                user: user.name.clone(),
                uid,
                seen_hash: hash,
                baseline: Some(text),
                written_hash: record.as_ref().and_then(|r| r.written_hash.clone()),
                last_error: None,
            };
            self.commit_record(key, next, Vec::new())?;
            return Ok(Decision::Baseline);
        }

        // A save made on a copy read before imipd applied an answer puts the old answer
        // back: keep the applied one on the user's version (see store::answers).
        let remembered = self.state.answers(key)?;
        let (merged, keep) = if remembered.is_empty() {
            (None, Vec::new())
        } else {
            answers::merge_stale(&new, &remembered)
        };
        let answers_update = if keep != remembered {
            vec![(key.to_string(), keep)]
        } else {
            Vec::new()
        };
        let (new, text, stale_merged) = match merged {
            Some(merged) => {
                let merged_text = rewrite(&text, &merged);
                match ICalendar::parse(&merged_text) {
                    Ok(cal) => (cal, merged_text, true),
                    Err(_) => (new, text, false),
                }
            }
            None => (new, text, false),
        };
        let mut next = ObjectRecord {
            user: user.name.clone(),
            uid,
            seen_hash: hash.clone(),
            baseline: Some(text.clone()),
            written_hash: record.as_ref().and_then(|r| r.written_hash.clone()),
            last_error: None,
        };

        let old = record
            .as_ref()
            .and_then(|r| r.baseline.as_deref())
            .and_then(|b| ICalendar::parse(b).ok());
        let ctx = Context {
            account: &user.addresses,
            now,
            reply_details: self.reply_details,
        };
        let history = History {
            sent: match next.uid.as_deref() {
                Some(uid) => self.state.sent_sequences(&user.name, uid)?,
                None => Default::default(),
            },
            writer,
        };
        match itip::schedule_change_with(old.as_ref(), &new, &ctx, &history) {
            Ok(outcome) => {
                let changed_at = modified_ms(&self.store.path_for(key));
                let mut items =
                    queue_items(self.store, &outcome.messages, Some(key), now, changed_at);
                let mailed_by_client = history::mailed_by_client(&new);
                if mailed_by_client {
                    // The client mailed this change itself (docs/scheduling.md, "Objects
                    // the client mailed"): local attendees still get it, nobody a second
                    // email.
                    items.retain(|i| !(i.status_object.is_some() && i.route == Route::Mail));
                }
                let sequences = sequences_sent(&user.name, &outcome.messages);
                let sent: Vec<(String, String)> = items
                    .iter()
                    .map(|i| (i.method.clone(), i.rcpt.clone()))
                    .collect();
                // One write of the organizer's copy: the new SEQUENCE and what is known of
                // each delivery now (1.2 local, 1.1 queued for mail or mailed by the
                // client), see RELIABILITY.md.
                let statuses = first_statuses(self.store, &outcome.messages);
                let copy = outcome.updated.as_ref().unwrap_or(&new);
                let with_statuses = itip::status::with_schedule_statuses(copy, &statuses);
                let written = match (&outcome.updated, with_statuses) {
                    (_, Some(both)) => Some(rewrite(&text, &both)),
                    (Some(updated), None) => Some(rewrite(&text, updated)),
                    (None, None) => stale_merged.then(|| text.clone()),
                };
                match written {
                    Some(written) => {
                        let written_hash = content_hash(written.as_bytes());
                        next.seen_hash = written_hash.clone();
                        next.written_hash = Some(written_hash);
                        next.baseline = Some(written.clone());
                        let why =
                            if stale_merged && outcome.updated.is_none() && statuses.is_empty() {
                                WriteKind::StaleSaveMerged
                            } else {
                                WriteKind::OrganizerWriteBack
                            };
                        let then = Batch {
                            objects: vec![(key.to_string(), Some(next))],
                            enqueue: items,
                            answers: answers_update,
                            sequences,
                            ..Batch::default()
                        };
                        match write_then_commit(
                            self.store,
                            self.state,
                            key,
                            &Expected::Hash(hash),
                            &written,
                            why,
                            then,
                        ) {
                            Ok(_) => {}
                            Err(WriteError::Conflict(_)) => return Ok(Decision::Retry),
                            Err(e) => return Err(e.into()),
                        }
                    }
                    None => {
                        self.state.commit(Batch {
                            objects: vec![(key.to_string(), Some(next))],
                            enqueue: items,
                            answers: answers_update,
                            sequences,
                            ..Batch::default()
                        })?;
                    }
                }
                if sent.is_empty() && mailed_by_client && !outcome.messages.is_empty() {
                    return Ok(Decision::NothingToSend(
                        "the client mailed this change itself (X-MOZ-SEND-INVITATIONS); no local attendee to deliver to".into(),
                    ));
                }
                if sent.is_empty() {
                    return Ok(Decision::NothingToSend(if stale_merged {
                        "a save made on an older copy put back answers imipd had applied; the applied answers stay, nothing to send".into()
                    } else {
                        "the copy was corrected (a SEQUENCE raised back to what the attendees \
                         hold, or answers reset for a new time); nothing to send"
                            .into()
                    }));
                }
                Ok(Decision::Queued(sent))
            }
            Err(err) => {
                let decision = if err.is_refusal() {
                    // The user's file stays; the next change is compared with the last
                    // version that was accepted.
                    next.baseline = record.as_ref().and_then(|r| r.baseline.clone());
                    next.last_error = Some(err.to_string());
                    Decision::Refused(format!("{}: {err}", err.name()))
                } else {
                    Decision::NothingToSend(format!("{}: {err}", err.name()))
                };
                if stale_merged && !err.is_refusal() {
                    // Nothing to send, but the applied answers go back into the file.
                    let written_hash = content_hash(text.as_bytes());
                    next.seen_hash = written_hash.clone();
                    next.written_hash = Some(written_hash);
                    let then = Batch {
                        objects: vec![(key.to_string(), Some(next))],
                        answers: answers_update,
                        ..Batch::default()
                    };
                    return match write_then_commit(
                        self.store,
                        self.state,
                        key,
                        &Expected::Hash(hash),
                        &text,
                        WriteKind::StaleSaveMerged,
                        then,
                    ) {
                        Ok(_) => Ok(Decision::NothingToSend(
                            "a save made on an older copy put back answers imipd had applied; the applied answers stay, nothing to send".into(),
                        )),
                        Err(WriteError::Conflict(_)) => Ok(Decision::Retry),
                        Err(e) => Err(e.into()),
                    };
                }
                self.state.commit(Batch {
                    objects: vec![(key.to_string(), Some(next))],
                    answers: answers_update,
                    ..Batch::default()
                })?;
                Ok(decision)
            }
        }
    }

    /// The object file is gone: the organizer cancels, an attendee declines.
    fn forget(
        &self,
        key: &str,
        record: Option<ObjectRecord>,
        now: i64,
        baseline: bool,
    ) -> Result<Decision, ProcessError> {
        let Some(record) = record else {
            return Ok(Decision::Unchanged);
        };
        // A file counts as deleted only if its calendar folder is still there. A
        // vanished folder (an unmounted share, a folder moved away) must not cancel
        // every meeting in it: keep the records and wait for the folder to return.
        let folder_present = self
            .store
            .path_for(key)
            .parent()
            .is_some_and(|dir| std::fs::read_dir(dir).is_ok());
        if !folder_present {
            let reason = "its calendar folder is missing; not treated as a deletion (nothing sent)";
            if record.last_error.as_deref() == Some(reason) {
                return Ok(Decision::Unchanged);
            }
            let record = ObjectRecord {
                last_error: Some(reason.to_string()),
                ..record
            };
            self.commit_record(key, record, Vec::new())?;
            return Ok(Decision::Skipped(reason.into()));
        }
        let mut items = Vec::new();
        let mut sequences = Vec::new();
        if !baseline {
            if let (Some(user), Some(old)) = (
                self.store.user_of_key(key),
                record
                    .baseline
                    .as_deref()
                    .and_then(|b| ICalendar::parse(b).ok()),
            ) {
                let ctx = Context {
                    account: &user.addresses,
                    now,
                    reply_details: self.reply_details,
                };
                let history = History {
                    sent: match record.uid.as_deref() {
                        Some(uid) => self.state.sent_sequences(&user.name, uid)?,
                        None => Default::default(),
                    },
                    writer: self.writer,
                };
                if let Ok(outcome) = itip::schedule_removal_with(&old, &ctx, &history) {
                    items = queue_items(self.store, &outcome.messages, None, now, Some(now * 1000));
                    if history::mailed_by_client(&old) {
                        // The client mails its own cancellation of an item it mailed.
                        items.retain(|i| {
                            !(i.route == Route::Mail && is_organizer_method(&i.method))
                        });
                    }
                    sequences = sequences_sent(&user.name, &outcome.messages);
                }
            }
        }
        let sent = items
            .iter()
            .map(|i| (i.method.clone(), i.rcpt.clone()))
            .collect();
        self.state.commit(Batch {
            objects: vec![(key.to_string(), None)],
            enqueue: items,
            sequences,
            ..Batch::default()
        })?;
        Ok(Decision::Forgotten(sent))
    }

    fn commit_record(
        &self,
        key: &str,
        record: ObjectRecord,
        items: Vec<QueueItem>,
    ) -> Result<(), StateError> {
        self.state.commit(Batch {
            objects: vec![(key.to_string(), Some(record))],
            enqueue: items,
            ..Batch::default()
        })?;
        Ok(())
    }
}

/// The SEQUENCE of every instance in the organizer messages of one change, for the
/// state to remember (see [`crate::itip::history`]).
fn sequences_sent(user: &str, messages: &[ItipMessage]) -> Vec<SentSequence> {
    history::sequences_sent(messages)
        .into_iter()
        .map(|(uid, instance, sequence)| SentSequence {
            user: user.to_string(),
            uid,
            instance,
            sequence,
        })
        .collect()
}

/// Whether `method` is one a local organizer sends (and a client may have mailed).
fn is_organizer_method(method: &str) -> bool {
    matches!(method, "REQUEST" | "ADD" | "CANCEL")
}

/// The SCHEDULE-STATUS each recipient of an organizer's message gets in the same write
/// as the new SEQUENCE: 1.2 for a local attendee (delivered from the queue at once),
/// 1.1 for an email (in imipd's durable queue, retried until it is handed over or
/// given up; or mailed by the client itself). A later failure replaces it (5.1, 3.7).
fn first_statuses(store: &Store, messages: &[ItipMessage]) -> Vec<(CalAddress, &'static str)> {
    messages
        .iter()
        .filter(|m| is_organizer_method(itip::method_name(&m.method)))
        .flat_map(|m| m.to.iter())
        .map(|rcpt| {
            let status = match store.user_for_address(rcpt) {
                Some(_) => DELIVERED,
                None => SENT,
            };
            (rcpt.clone(), status)
        })
        .collect()
}

/// When a file was last modified, in ms since the epoch.
fn modified_ms(path: &std::path::Path) -> Option<i64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

/// One queue item per message and recipient; local recipients are delivered into their
/// store, everyone else by email. `status_object` is the organizer's copy that records
/// each recipient's delivery status; `changed_at_ms` is when the user saved the change.
pub fn queue_items(
    store: &Store,
    messages: &[ItipMessage],
    status_object: Option<&str>,
    now: i64,
    changed_at_ms: Option<i64>,
) -> Vec<QueueItem> {
    let mut items = Vec::new();
    for message in messages {
        // One text for all recipients: shared in memory and stored once.
        let itip: std::sync::Arc<str> = message.to_ics().into();
        let from_local_organizer = matches!(
            message.method,
            calcard::icalendar::ICalendarMethod::Request
                | calcard::icalendar::ICalendarMethod::Add
                | calcard::icalendar::ICalendarMethod::Cancel
        );
        for rcpt in &message.to {
            let route = match store.user_for_address(rcpt) {
                Some(user) => Route::Local {
                    user: user.name.clone(),
                },
                None => Route::Mail,
            };
            items.push(QueueItem {
                id: 0,
                created: now,
                next_attempt: now,
                attempts: 0,
                route,
                from: message.from.to_string(),
                rcpt: rcpt.to_string(),
                method: itip::method_name(&message.method).to_string(),
                uid: message.uid().unwrap_or_default().to_string(),
                itip: itip.clone(),
                body: None,
                summary: summary_record(&message.summary),
                status_object: status_object
                    .filter(|_| from_local_organizer)
                    .map(str::to_string),
                last_error: None,
                changed_at_ms,
            });
        }
    }
    items
}

/// The stored form of a message summary.
pub fn summary_record(summary: &MessageSummary) -> SummaryRecord {
    match summary {
        MessageSummary::Invite => SummaryRecord::Invite,
        MessageSummary::Update { changes } => SummaryRecord::Update(
            changes
                .iter()
                .map(|c| (c.property.clone(), c.old.clone(), c.new.clone()))
                .collect(),
        ),
        MessageSummary::Cancel => SummaryRecord::Cancel,
        MessageSummary::Reply { partstat } => SummaryRecord::Reply(partstat.as_str().to_string()),
        MessageSummary::Counter => SummaryRecord::Counter,
        MessageSummary::DeclineCounter => SummaryRecord::DeclineCounter,
        MessageSummary::Refresh => SummaryRecord::Refresh,
    }
}

/// The user's text changed to say what `updated` says: patched line by line, or, if
/// the file defeats patching, written in full by calcard (still the same meaning).
pub fn rewrite(original: &str, updated: &ICalendar) -> String {
    match patch(original, updated) {
        Ok(text) => text,
        Err(err) => {
            tracing::warn!(error = %err, "could not patch in place; writing the object in full");
            updated.to_string()
        }
    }
}
