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
use super::write::{write_then_commit_all, Change, Expected, PlannedWrite, WriteError, WriteKind};
use crate::itip::history::{self, History, Writer};
use crate::itip::status::{DELIVERED, SENT};
use crate::itip::{self, CalAddress, Context, ItipMessage, MessageSummary, ReplyDetails};
use calcard::common::IanaString;
use calcard::icalendar::ICalendar;
use std::collections::HashSet;
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

/// What processing one object comes to before anything is made durable: the
/// decision, and the write and commit that carry it out (none when nothing changed).
struct Plan {
    decision: Decision,
    change: Option<Change>,
    /// The (user, UID) whose sent SEQUENCEs the engine was given: a change planned
    /// after another of the same group that sends for the same event must see what
    /// that one sent, so it waits for the group's commit (see [`Processor::process_all`]).
    read_history: Option<(String, String)>,
}

impl Plan {
    /// Nothing to write or commit.
    fn done(decision: Decision) -> Self {
        Plan {
            decision,
            change: None,
            read_history: None,
        }
    }

    /// A commit without a file write.
    fn commit(decision: Decision, then: Batch) -> Self {
        Plan {
            decision,
            change: Some(Change { write: None, then }),
            read_history: None,
        }
    }
}

/// The batch that records `record` for `key` and nothing else.
fn record_batch(key: &str, record: ObjectRecord) -> Batch {
    Batch {
        objects: vec![(key.to_string(), Some(record))],
        ..Batch::default()
    }
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
        self.process_all_written_by(std::slice::from_ref(&key), now, baseline, writer)
            .pop()
            .unwrap_or(Ok(Decision::Unchanged))
    }

    /// [`Self::process`] for several objects whose changes are ready together (group
    /// commit): each is computed on its own, then their write intents share one
    /// commit, their files are written, and what follows them shares one more commit
    /// (see [`write_then_commit_all`]). A change that sends for an event another
    /// change of the group already sends for is computed after that one is committed,
    /// so it sees the SEQUENCE sent. The keys must differ. Each object's decision, in
    /// order; a write that met a user's save is [`Decision::Retry`].
    pub fn process_all(
        &self,
        keys: &[&str],
        now: i64,
        baseline: bool,
    ) -> Vec<Result<Decision, ProcessError>> {
        self.process_all_written_by(keys, now, baseline, self.writer)
    }

    fn process_all_written_by(
        &self,
        keys: &[&str],
        now: i64,
        baseline: bool,
        writer: Writer,
    ) -> Vec<Result<Decision, ProcessError>> {
        let mut outcomes: Vec<Option<Result<Decision, ProcessError>>> =
            keys.iter().map(|_| None).collect();
        let mut pending: Vec<(usize, Decision, Change)> = Vec::new();
        let mut sending: HashSet<(String, String)> = HashSet::new();
        for (index, key) in keys.iter().enumerate() {
            let mut plan = self.plan(key, now, baseline, writer);
            let waits = matches!(&plan, Ok(Plan { read_history: Some(event), .. }) if sending.contains(event));
            if waits {
                self.commit_group(std::mem::take(&mut pending), &mut outcomes);
                sending.clear();
                plan = self.plan(key, now, baseline, writer);
            }
            outcomes[index] = match plan {
                Err(err) => Some(Err(err)),
                Ok(Plan {
                    decision,
                    change: None,
                    ..
                }) => Some(Ok(decision)),
                Ok(Plan {
                    decision,
                    change: Some(change),
                    ..
                }) => {
                    sending.extend(
                        (change.then.sequences.iter()).map(|s| (s.user.clone(), s.uid.clone())),
                    );
                    pending.push((index, decision, change));
                    None
                }
            };
        }
        self.commit_group(pending, &mut outcomes);
        outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or(Ok(Decision::Unchanged)))
            .collect()
    }

    /// Writes and commits the planned changes together; fills in their outcomes.
    fn commit_group(
        &self,
        pending: Vec<(usize, Decision, Change)>,
        outcomes: &mut [Option<Result<Decision, ProcessError>>],
    ) {
        let (planned, changes): (Vec<(usize, Decision)>, Vec<Change>) = pending
            .into_iter()
            .map(|(index, decision, change)| ((index, decision), change))
            .unzip();
        let done = write_then_commit_all(self.store, self.state, changes);
        for ((index, decision), result) in planned.into_iter().zip(done) {
            outcomes[index] = Some(match result {
                Ok(()) => Ok(decision),
                Err(WriteError::Conflict(_)) => Ok(Decision::Retry),
                Err(WriteError::State(err)) => Err(err.into()),
                Err(err) => Err(err.into()),
            });
        }
    }

    /// What processing `key` now comes to, with nothing written or committed yet.
    fn plan(
        &self,
        key: &str,
        now: i64,
        baseline: bool,
        writer: Writer,
    ) -> Result<Plan, ProcessError> {
        let Some(user) = self.store.user_of_key(key) else {
            return Ok(Plan::done(Decision::Skipped(
                "not in a configured user's folder".into(),
            )));
        };
        let record = self.state.object(key)?;
        let (bytes, text) = match self.store.read(key) {
            Ok(Some(found)) => found,
            Ok(None) => return self.forget(key, record, now, baseline),
            Err(SkipReason::Gone) => return self.forget(key, record, now, baseline),
            Err(reason) => {
                let message = reason.to_string();
                if record.as_ref().and_then(|r| r.last_error.as_deref()) == Some(message.as_str()) {
                    return Ok(Plan::done(Decision::Unchanged));
                }
                let record = ObjectRecord {
                    user: user.name.clone(),
                    uid: record.as_ref().and_then(|r| r.uid.clone()),
                    seen_hash: String::new(),
                    baseline: record.as_ref().and_then(|r| r.baseline.clone()),
                    written_hash: record.as_ref().and_then(|r| r.written_hash.clone()),
                    last_error: Some(message.clone()),
                };
                return Ok(Plan::commit(
                    Decision::Skipped(message),
                    record_batch(key, record),
                ));
            }
        };
        let hash = content_hash(&bytes);
        if record.as_ref().is_some_and(|r| r.seen_hash == hash) {
            return Ok(Plan::done(Decision::Unchanged));
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
                return Ok(Plan::commit(
                    Decision::Skipped("not valid iCalendar".into()),
                    record_batch(key, record),
                ));
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
            return Ok(Plan::commit(Decision::Baseline, record_batch(key, next)));
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
        let read_history = next.uid.clone().map(|uid| (user.name.clone(), uid));
        let history = History {
            sent: match &read_history {
                Some((user, uid)) => self.state.sent_sequences(user, uid)?,
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
                let decision = if sent.is_empty()
                    && mailed_by_client
                    && !outcome.messages.is_empty()
                {
                    Decision::NothingToSend(
                        "the client mailed this change itself (X-MOZ-SEND-INVITATIONS); no local attendee to deliver to".into(),
                    )
                } else if sent.is_empty() {
                    Decision::NothingToSend(if stale_merged {
                        STALE_MERGED.into()
                    } else {
                        "the copy was corrected (a SEQUENCE raised back to what the attendees \
                         hold, or answers reset for a new time); nothing to send"
                            .into()
                    })
                } else {
                    Decision::Queued(sent)
                };
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
                let mut plan = match written {
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
                        Plan {
                            decision,
                            change: Some(Change {
                                write: Some(PlannedWrite {
                                    key: key.to_string(),
                                    expected: Expected::Hash(hash),
                                    content: written,
                                    why,
                                }),
                                then: Batch {
                                    objects: vec![(key.to_string(), Some(next))],
                                    enqueue: items,
                                    answers: answers_update,
                                    sequences,
                                    ..Batch::default()
                                },
                            }),
                            read_history: None,
                        }
                    }
                    None => Plan::commit(
                        decision,
                        Batch {
                            objects: vec![(key.to_string(), Some(next))],
                            enqueue: items,
                            answers: answers_update,
                            sequences,
                            ..Batch::default()
                        },
                    ),
                };
                plan.read_history = read_history;
                Ok(plan)
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
                    return Ok(Plan {
                        decision: Decision::NothingToSend(STALE_MERGED.into()),
                        change: Some(Change {
                            write: Some(PlannedWrite {
                                key: key.to_string(),
                                expected: Expected::Hash(hash),
                                content: text,
                                why: WriteKind::StaleSaveMerged,
                            }),
                            then: Batch {
                                objects: vec![(key.to_string(), Some(next))],
                                answers: answers_update,
                                ..Batch::default()
                            },
                        }),
                        read_history,
                    });
                }
                Ok(Plan {
                    read_history,
                    ..Plan::commit(
                        decision,
                        Batch {
                            objects: vec![(key.to_string(), Some(next))],
                            answers: answers_update,
                            ..Batch::default()
                        },
                    )
                })
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
    ) -> Result<Plan, ProcessError> {
        let Some(record) = record else {
            return Ok(Plan::done(Decision::Unchanged));
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
                return Ok(Plan::done(Decision::Unchanged));
            }
            let record = ObjectRecord {
                last_error: Some(reason.to_string()),
                ..record
            };
            return Ok(Plan::commit(
                Decision::Skipped(reason.into()),
                record_batch(key, record),
            ));
        }
        let mut items = Vec::new();
        let mut sequences = Vec::new();
        let mut read_history = None;
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
                read_history = record.uid.clone().map(|uid| (user.name.clone(), uid));
                let history = History {
                    sent: match &read_history {
                        Some((user, uid)) => self.state.sent_sequences(user, uid)?,
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
        Ok(Plan {
            read_history,
            ..Plan::commit(
                Decision::Forgotten(sent),
                Batch {
                    objects: vec![(key.to_string(), None)],
                    enqueue: items,
                    sequences,
                    ..Batch::default()
                },
            )
        })
    }
}

/// Why nothing is sent when a stale save was merged with the applied answers.
const STALE_MERGED: &str = "a save made on an older copy put back answers imipd had applied; the applied answers stay, nothing to send";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Layout;
    use crate::store::layout::test_store;

    fn invitation(uid: &str, sequence: Option<u32>, i: usize) -> String {
        let sequence = sequence.map_or(String::new(), |s| format!("SEQUENCE:{s}\r\n"));
        format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
             DTSTAMP:20300101T090000Z\r\nDTSTART:20300610T103000Z\r\nDTEND:20300610T113000Z\r\n\
             {sequence}SUMMARY:Meeting {i}\r\nORGANIZER:mailto:alice@example.com\r\n\
             ATTENDEE;RSVP=TRUE:mailto:x{i}@example.net\r\nATTENDEE;RSVP=TRUE:mailto:y{i}@example.net\r\n\
             END:VEVENT\r\nEND:VCALENDAR\r\n"
        )
    }

    /// A store of alice with an empty calendar folder, and a state, in a fresh folder.
    fn site(name: &str) -> (std::path::PathBuf, Store, State) {
        let dir = std::env::temp_dir().join(format!("imipd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("users/alice/calendar")).expect("folder");
        let store = test_store(&dir.join("users"), Layout::Vdir, 1 << 20);
        let state = State::open(&dir.join("state.redb")).expect("state");
        (dir, store, state)
    }

    fn processor<'a>(store: &'a Store, state: &'a State) -> Processor<'a> {
        Processor {
            store,
            state,
            reply_details: ReplyDetails::Full,
            writer: Writer::default(),
        }
    }

    #[test]
    fn changes_processed_together_share_two_commits_and_each_gets_its_own_outcome() {
        let (dir, store, state) = site("group");
        let processor = processor(&store, &state);
        let keys: Vec<String> = (0..10)
            .map(|i| format!("alice/calendar/ev-{i}.ics"))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            let text = invitation(&format!("group-{i}"), None, i);
            std::fs::write(store.path_for(key), text).expect("save");
        }
        // One more key whose file is not a calendar: its own outcome, the group's
        // commits are not disturbed.
        let broken = "alice/calendar/broken.ics".to_string();
        std::fs::write(store.path_for(&broken), "not a calendar").expect("save");
        let mut all: Vec<&str> = keys.iter().map(String::as_str).collect();
        all.push(&broken);

        let before = state.transactions();
        let outcomes = processor.process_all(&all, 1_900_000_000, false);
        let transactions = state.transactions() - before;

        for outcome in &outcomes[..10] {
            match outcome {
                Ok(Decision::Queued(sent)) => assert_eq!(sent.len(), 2, "{sent:?}"),
                other => panic!("expected two messages queued, got {other:?}"),
            }
        }
        assert!(
            matches!(outcomes[10], Ok(Decision::Skipped(_))),
            "{:?}",
            outcomes[10]
        );
        assert_eq!(state.queue().expect("queue").len(), 20);
        // Each organizer's copy was written once, with its delivery statuses.
        for key in &keys {
            let text = std::fs::read_to_string(store.path_for(key)).expect("read");
            assert_eq!(text.matches("SCHEDULE-STATUS=1.1").count(), 2, "{text}");
        }
        // Eleven changes, alone at least twenty-one commits; together one for the
        // intents of the writes and one for everything after them.
        assert!(transactions <= 2, "{transactions} commits for 11 changes");
        // Every record is there: processing again changes nothing.
        let again = processor.process_all(&all, 1_900_000_000, false);
        assert!(
            again.iter().all(|o| matches!(o, Ok(Decision::Unchanged))),
            "{again:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Two copies of one event (same UID) due together: the second is computed after
    /// the first is committed, so it never goes out below the SEQUENCE the first sent.
    #[test]
    fn a_change_for_an_event_the_group_already_sends_sees_its_sequence() {
        let (dir, store, state) = site("group-uid");
        let processor = processor(&store, &state);
        let first = "alice/calendar/a.ics";
        let second = "alice/calendar/b.ics";
        std::fs::write(store.path_for(first), invitation("same", Some(3), 0)).expect("save");
        std::fs::write(store.path_for(second), invitation("same", None, 1)).expect("save");

        let outcomes = processor.process_all(&[first, second], 1_900_000_000, false);
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Ok(Decision::Queued(_)))),
            "{outcomes:?}"
        );
        let queue = state.queue().expect("queue");
        let to_second: Vec<_> = queue.iter().filter(|i| i.rcpt.contains("x1@")).collect();
        assert_eq!(to_second.len(), 1, "{queue:?}");
        let sequence = to_second[0]
            .itip
            .lines()
            .find_map(|l| l.strip_prefix("SEQUENCE:"))
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        assert!(
            sequence >= 3,
            "sent below SEQUENCE 3: {}",
            to_second[0].itip
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
