//! imipd's own memory: what it has seen, accepted and promised to deliver.
//!
//! One redb file (copy-on-write B-trees, every commit fsynced) holds:
//! - for every calendar object, the version last accepted by the engine (the base the
//!   next change is compared with), the hash of the content last examined, and the hash
//!   of what imipd itself last wrote, so its own writes never schedule anything;
//! - an index from (user, UID) to the object, for incoming messages;
//! - the delivery queue, whose message texts are stored once each however many
//!   recipients share them (see [`super::bodies`]);
//! - the Message-IDs already applied, so a message delivered twice is applied once;
//! - write intents: before imipd writes a user's file, the hash it is about to write and
//!   the batch to commit once it is written, so that after a crash in between the file
//!   is recognised as imipd's own write (see [`crate::store::write::recover_intents`]);
//! - the answers imipd replaced in an organizer's copy when it applied a REPLY, so a
//!   client's stale save that puts one back is recognised (see [`crate::store::answers`]);
//! - the highest SEQUENCE imipd sent per UID and instance, so no message goes out below
//!   it whatever the file says later (kept after the object is deleted: an event
//!   written again, or a restored backup, still goes out above it).
//!
//! Changes go in as a [`Batch`] committed in one transaction: an object marked processed
//! and the messages its change produced are stored together or not at all.

use super::bodies::{self, BodyError, Interner, Resolver, BODIES, BODY_REFS};
pub use super::hash::content_hash;
pub use super::queue_item::{QueueItem, Route, SummaryRecord};
use super::supersede;
use crate::itip::history::SentSequences;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

use redb::{
    Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const UIDS: TableDefinition<&str, &str> = TableDefinition::new("uids");
const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const APPLIED: TableDefinition<&str, i64> = TableDefinition::new("applied_messages");
const SENT: TableDefinition<u64, &[u8]> = TableDefinition::new("sent");
const QUEUE_ORDER: TableDefinition<&str, u64> = TableDefinition::new("queue_by_uid_rcpt");
const INTENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("write_intents");
const ANSWERS: TableDefinition<&str, &[u8]> = TableDefinition::new("replaced_answers");
/// The highest SEQUENCE sent per (user, UID, instance); added in issue #22 as a new
/// table (no layout change: a state without it simply remembers nothing yet, and the
/// files' own SEQUENCEs are the floor as before).
const SENT_SEQUENCES: TableDefinition<&str, i64> = TableDefinition::new("sent_sequences");

const NEXT_QUEUE_ID: &str = "next_queue_id";
/// The layout version of the state, in META: 2 since queue texts are stored once
/// (issue #17); none in states written before.
const STATE_VERSION_KEY: &str = "state_version";
/// The layout this build writes.
pub const STATE_VERSION: u32 = 2;
const SUPERSEDED_TOTAL: &str = "superseded_total";

/// The state database could not be used.
#[derive(Debug, Error)]
pub enum StateError {
    /// Opening or creating the file failed.
    #[error(
        "state database {path}: {source} (check that the folder exists and is writable by imipd)"
    )]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        source: redb::DatabaseError,
    },
    /// A read or write failed (disk full, I/O error).
    #[error("state database: {0}")]
    Storage(String),
    /// The state was written by a newer imipd, whose layout this one does not know.
    #[error("state database {path} has layout version {found}, newer than this imipd's {STATE_VERSION}: run the imipd that wrote it, or restore a backup")]
    Newer {
        /// The database file.
        path: PathBuf,
        /// The version it records.
        found: u32,
    },
    /// A stored record could not be decoded (a newer or damaged database).
    #[error("state database record {key}: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What was wrong.
        reason: String,
    },
}

/// The database, writable or (for a dry run) read-only.
enum Db {
    /// The daemon's and the commands' normal mode.
    ReadWrite(Database),
    /// Opened by [`State::open_existing`]: reads only.
    ReadOnly(ReadOnlyDatabase),
}

impl Db {
    fn begin_read(&self) -> Result<ReadTransaction, redb::TransactionError> {
        match self {
            Db::ReadWrite(db) => db.begin_read(),
            Db::ReadOnly(db) => db.begin_read(),
        }
    }

    fn begin_write(&self) -> Result<WriteTransaction, StateError> {
        match self {
            Db::ReadWrite(db) => Ok(db.begin_write()?),
            Db::ReadOnly(_) => Err(StateError::Storage(
                "the state was opened read-only (dry run)".into(),
            )),
        }
    }
}

macro_rules! storage_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StateError {
            fn from(e: $t) -> Self {
                StateError::Storage(e.to_string())
            }
        }
    )*};
}
impl From<BodyError> for StateError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::Storage(e) => StateError::Storage(e.to_string()),
            BodyError::Corrupt { key, reason } => StateError::Corrupt { key, reason },
        }
    }
}

storage_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What imipd knows about one calendar object file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// The local user whose store holds the file.
    pub user: String,
    /// The object's UID, once it parsed.
    pub uid: Option<String>,
    /// Hash of the content last examined (processed, refused or skipped).
    pub seen_hash: String,
    /// The last version the engine accepted: the base of the next comparison.
    pub baseline: Option<String>,
    /// Hash of the content imipd itself last wrote to the file.
    pub written_hash: Option<String>,
    /// Why the last change sent nothing, when that was a refusal or an error.
    pub last_error: Option<String>,
}

/// An email handed to the next hop, remembered so that a bounce arriving later can be
/// matched to the organizer's object and the attendee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRecord {
    /// The queue id it had (the VERP token and ENVID carry it).
    pub id: u64,
    /// When it was handed over (UTC timestamp).
    pub at: i64,
    /// The UID of the event.
    pub uid: String,
    /// The recipient.
    pub rcpt: String,
    /// The organizer's object that records the delivery status.
    pub status_object: String,
}

/// Changes committed together, in one durable transaction.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Object records to store (`Some`) or forget (`None`), by key.
    pub objects: Vec<(String, Option<ObjectRecord>)>,
    /// New queue items; their `id` is assigned on commit. In a write intent each
    /// shared text is written once.
    #[serde(with = "bodies::in_intents")]
    pub enqueue: Vec<QueueItem>,
    /// Queue items to replace (after an attempt).
    pub requeue: Vec<QueueItem>,
    /// Queue items done (delivered or given up).
    pub dequeue: Vec<u64>,
    /// Messages now applied: (Message-ID and recipient key, when).
    pub applied: Vec<(String, i64)>,
    /// Settings to store.
    pub meta: Vec<(String, String)>,
    /// Settings to forget.
    pub forget_meta: Vec<String>,
    /// Emails handed over, for bounce matching.
    pub sent: Vec<SentRecord>,
    /// Sent records to forget (older than a bounce can be).
    pub forget_sent: Vec<u64>,
    /// Write intents to record (`Some`) or clear (`None`), by object key.
    #[serde(default)]
    pub intents: Vec<(String, Option<Intent>)>,
    /// Answers imipd replaced, by object key (an empty list forgets them).
    #[serde(default)]
    pub answers: Vec<(String, Vec<ReplacedAnswer>)>,
    /// SEQUENCEs sent: (user, UID, instance, SEQUENCE); the highest per instance stays.
    #[serde(default)]
    pub sequences: Vec<SentSequence>,
}

/// One instance's SEQUENCE in a message imipd queued (see [`State::sent_sequences`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentSequence {
    /// The organizer's local user.
    pub user: String,
    /// The event's UID.
    pub uid: String,
    /// The instance: `None` the master, `Some` a RECURRENCE-ID as a UTC timestamp.
    pub instance: Option<i64>,
    /// The SEQUENCE it carried.
    pub sequence: i64,
}

/// The key of one instance in [`SENT_SEQUENCES`]: user, UID, instance ("" the master).
fn sequence_key(user: &str, uid: &str, instance: Option<i64>) -> String {
    let instance = instance.map(|t| t.to_string()).unwrap_or_default();
    format!("{user}\u{0}{uid}\u{0}{instance}")
}

/// A write imipd is about to make to a user's file: what it will write, why, and what
/// to commit once it is written. Recorded (durably) before the write; cleared in the
/// transaction that commits `then`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Hash of the content about to be written.
    pub hash: String,
    /// Why imipd writes (REPLY applied, organizer write-back, delivery, import,
    /// delivery status), for the log.
    pub why: String,
    /// What the write's caller commits once the file is written.
    pub then: Batch,
}

/// An attendee's answer imipd replaced in an organizer's copy when it applied that
/// attendee's REPLY: a later save of the organizer's copy that carries exactly the
/// old answer again was made on a copy read before imipd's write (a stale save).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplacedAnswer {
    /// The component: its UID and RECURRENCE-ID (as calcard reads it; empty: the master).
    pub component: String,
    /// The attendee's calendar address.
    pub attendee: String,
    /// The PARTSTAT parameter before the REPLY (`None`: there was none).
    pub before: Option<String>,
    /// The PARTSTAT the REPLY set.
    pub applied: String,
    /// The component's SEQUENCE when the REPLY was applied: a higher one in a later
    /// version is a reschedule, whose answers are the organizer's to reset.
    pub sequence: i64,
}

impl Batch {
    /// True when committing would change nothing.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
            && self.enqueue.is_empty()
            && self.requeue.is_empty()
            && self.dequeue.is_empty()
            && self.applied.is_empty()
            && self.meta.is_empty()
            && self.forget_meta.is_empty()
            && self.sent.is_empty()
            && self.forget_sent.is_empty()
            && self.intents.is_empty()
            && self.answers.is_empty()
            && self.sequences.is_empty()
    }
}

/// The state database.
pub struct State {
    db: Db,
    /// Batches waiting for the next group commit (see [`State::commit`]).
    group: Mutex<Group>,
    /// Signalled when a group commit has finished.
    committed: Condvar,
    /// Write transactions committed so far, for tests and benchmarks of the sharing.
    transactions: std::sync::atomic::AtomicU64,
}

/// The queue-order index entry of item `id`: its order key, then the id (zero-padded,
/// so entries of one key sort by id).
fn order_index(key: &str, id: u64) -> String {
    format!("{key}\u{0}{id:020}")
}

fn uid_key(user: &str, uid: &str) -> String {
    format!("{user}\u{0}{uid}")
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain data structs to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// The state database's page cache.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

impl State {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        // redb caches up to 1 GiB by default, so memory would grow with the store
        // (a 100,000-event state is ~140 MB); a bounded cache keeps RSS flat.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|source| StateError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let db = Db::ReadWrite(db);
        // Create every table up front, so readers never meet a missing one.
        let txn = db.begin_write()?;
        txn.open_table(OBJECTS)?;
        txn.open_table(UIDS)?;
        txn.open_table(QUEUE)?;
        txn.open_table(META)?;
        txn.open_table(APPLIED)?;
        txn.open_table(SENT)?;
        txn.open_table(INTENTS)?;
        txn.open_table(ANSWERS)?;
        txn.open_table(SENT_SEQUENCES)?;
        txn.open_table(QUEUE_ORDER)?;
        txn.open_table(BODIES)?;
        txn.open_table(BODY_REFS)?;
        migrate(&txn, path)?;
        txn.commit()?;
        Ok(State {
            db,
            group: Mutex::new(Group::default()),
            committed: Condvar::new(),
            transactions: Default::default(),
        })
    }

    /// Opens an existing state read-only (redb's read-only mode: no byte is written,
    /// a commit fails): for a dry run, which must leave every byte as it was. A state that does not exist yet is
    /// created as by [`Self::open`].
    pub fn open_existing(path: &Path) -> Result<Self, StateError> {
        if !path.exists() {
            return Self::open(path);
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .open_read_only(path)
            .map_err(|source| StateError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let db = Db::ReadOnly(db);
        Ok(State {
            db,
            group: Mutex::new(Group::default()),
            committed: Condvar::new(),
            transactions: Default::default(),
        })
    }

    /// The record of the object file `key` (its path relative to the store root).
    pub fn object(&self, key: &str) -> Result<Option<ObjectRecord>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OBJECTS)?;
        match table.get(key)? {
            Some(value) => Ok(Some(decode(key, value.value())?)),
            None => Ok(None),
        }
    }

    /// The key of every object whose key starts with `prefix` (e.g. one user's
    /// folder). Keys only: a scan must not hold 100,000 baselines in memory at once.
    pub fn object_keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OBJECTS)?;
        let mut out = Vec::new();
        for item in table.range(prefix..)? {
            let (key, _) = item?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            out.push(key.to_string());
        }
        Ok(out)
    }

    /// The object of `user` with this UID, if imipd knows one.
    pub fn find_uid(&self, user: &str, uid: &str) -> Result<Option<String>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(UIDS)?;
        Ok(table
            .get(uid_key(user, uid).as_str())?
            .map(|v| v.value().to_string()))
    }

    /// A stored setting.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        Ok(table.get(key)?.map(|v| v.value().to_string()))
    }

    /// Whether a message (Message-ID and recipient key) was already applied.
    pub fn was_applied(&self, key: &str) -> Result<bool, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(APPLIED)?;
        Ok(table.get(key)?.is_some())
    }

    /// Every queued item, oldest first.
    pub fn queue(&self) -> Result<Vec<QueueItem>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(QUEUE)?;
        let texts = texts_of(&txn)?;
        let mut resolver = Resolver::default();
        let mut out = Vec::new();
        for item in table.iter()? {
            let (key, value) = item?;
            let item = decode(&key.value().to_string(), value.value())?;
            out.push(resolver.resolve(texts.as_ref(), item)?);
        }
        Ok(out)
    }

    /// One queued item.
    pub fn queue_item(&self, id: u64) -> Result<Option<QueueItem>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(QUEUE)?;
        let texts = texts_of(&txn)?;
        match table.get(id)? {
            Some(value) => {
                let item = decode(&id.to_string(), value.value())?;
                Ok(Some(Resolver::default().resolve(texts.as_ref(), item)?))
            }
            None => Ok(None),
        }
    }

    /// How many distinct message texts the queue holds, and their bytes: for
    /// `status` and the tests of sharing.
    pub fn queue_texts(&self) -> Result<(u64, u64), StateError> {
        let txn = self.db.begin_read()?;
        let Some(texts) = texts_of(&txn)? else {
            return Ok((0, 0));
        };
        let mut count = 0;
        let mut bytes = 0;
        for entry in texts.iter()? {
            let (_, value) = entry?;
            count += 1;
            bytes += value.value().len() as u64;
        }
        Ok((count, bytes))
    }

    /// The email that had queue id `id`, if it was handed over and not yet forgotten.
    pub fn sent(&self, id: u64) -> Result<Option<SentRecord>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SENT)?;
        match table.get(id)? {
            Some(value) => Ok(Some(decode(&id.to_string(), value.value())?)),
            None => Ok(None),
        }
    }

    /// The ids of remembered emails handed over before `horizon`, read in queue order
    /// up to the first younger one. Queue order is nearly hand-over order (a retried
    /// item can be handed over after younger ones, and then holds the rest back until
    /// it is old enough itself), so this reads the few records due to be forgotten,
    /// not every record, on every delivery.
    pub fn sent_before(&self, horizon: i64) -> Result<Vec<u64>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SENT)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (key, value) = item?;
            let record: SentRecord = decode(&key.value().to_string(), value.value())?;
            if record.at >= horizon {
                break;
            }
            out.push(record.id);
        }
        Ok(out)
    }

    /// How many queued messages a newer one for the same UID, recipient and instances
    /// has superseded (dropped undelivered), ever.
    pub fn superseded_total(&self) -> Result<u64, StateError> {
        Ok(self
            .meta(SUPERSEDED_TOTAL)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Every write intent still recorded: writes that were started and whose commit
    /// did not follow (a crash in between), or that met a conflict.
    pub fn intents(&self) -> Result<Vec<(String, Intent)>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INTENTS)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (key, value) = item?;
            let key = key.value().to_string();
            let intent = decode(&key, value.value())?;
            out.push((key, intent));
        }
        Ok(out)
    }

    /// The answers imipd replaced in object `key` (see [`ReplacedAnswer`]).
    pub fn answers(&self, key: &str) -> Result<Vec<ReplacedAnswer>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ANSWERS)?;
        match table.get(key)? {
            Some(value) => decode(key, value.value()),
            None => Ok(Vec::new()),
        }
    }

    /// The highest SEQUENCE imipd sent for each instance of `uid` organized by `user`.
    pub fn sent_sequences(&self, user: &str, uid: &str) -> Result<SentSequences, StateError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(SENT_SEQUENCES) {
            Ok(table) => table,
            // A state from before the table, opened read-only (a dry run).
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(SentSequences::default()),
            Err(e) => return Err(e.into()),
        };
        let prefix = format!("{user}\u{0}{uid}\u{0}");
        let end = format!("{user}\u{0}{uid}\u{1}");
        let mut out = SentSequences::default();
        for entry in table.range(prefix.as_str()..end.as_str())? {
            let (key, value) = entry?;
            let instance = &key.value()[prefix.len()..];
            let instance = if instance.is_empty() {
                None
            } else {
                Some(instance.parse().map_err(|_| StateError::Corrupt {
                    key: key.value().to_string(),
                    reason: "not an instance timestamp".into(),
                })?)
            };
            out.record(instance, value.value());
        }
        Ok(out)
    }

    /// Commits `batch` durably; returns the ids given to new items.
    ///
    /// Group commit: a caller that finds another commit in progress waits, and the
    /// batches that gathered meanwhile are committed together in one transaction (one
    /// fsync) by the next caller to go. Every caller returns only after the transaction
    /// holding its batch is durable, so concurrent writers (LMTP deliveries for
    /// different users) share the cost of the disk flush instead of queueing for one
    /// flush each. A batch is applied exactly as if committed alone, in arrival order;
    /// if a combined transaction fails, each batch of it is retried on its own so that
    /// one bad batch fails only its own caller.
    pub fn commit(&self, batch: Batch) -> Result<Vec<u64>, StateError> {
        self.commit_all(vec![batch])
            .pop()
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Commits `batches` as [`Self::commit`] does each of them, all in the same group
    /// (one transaction, unless it fails and they are retried one by one): the changes
    /// that the store loop made ready together share one disk flush. Each batch's
    /// outcome, in order.
    pub fn commit_all(&self, batches: Vec<Batch>) -> Vec<Result<Vec<u64>, StateError>> {
        let mut group = self.group.lock().unwrap_or_else(PoisonError::into_inner);
        let mut tickets = Vec::with_capacity(batches.len());
        for batch in batches {
            let ticket = group.next_ticket;
            group.next_ticket += 1;
            group.waiting.push((ticket, batch));
            tickets.push(ticket);
        }
        let mut outcomes: Vec<Option<Result<Vec<u64>, StateError>>> =
            tickets.iter().map(|_| None).collect();
        loop {
            for (ticket, outcome) in tickets.iter().zip(outcomes.iter_mut()) {
                if outcome.is_none() {
                    *outcome = group.results.remove(ticket);
                }
            }
            if outcomes.iter().all(Option::is_some) {
                return outcomes.into_iter().flatten().collect();
            }
            if group.committing {
                group = self
                    .committed
                    .wait(group)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            group.committing = true;
            let batches = std::mem::take(&mut group.waiting);
            drop(group);
            let mut leader = Leader {
                state: self,
                tickets: batches.iter().map(|(t, _)| *t).collect(),
                done: false,
            };
            let results = self.commit_together(batches);
            leader.done = true;
            group = self.group.lock().unwrap_or_else(PoisonError::into_inner);
            group.results.extend(results);
            group.committing = false;
            self.committed.notify_all();
        }
    }

    /// Write transactions committed since the state was opened: how many disk
    /// flushes the commits took.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Commits `batches` in one transaction; if that fails, each on its own.
    fn commit_together(
        &self,
        batches: Vec<(u64, Batch)>,
    ) -> Vec<(u64, Result<Vec<u64>, StateError>)> {
        if batches.len() > 1 {
            let together = (|| {
                let txn = self.db.begin_write()?;
                let mut ids = Vec::with_capacity(batches.len());
                for (_, batch) in &batches {
                    ids.push(write_batch(&txn, batch)?);
                }
                txn.commit()?;
                self.transactions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok::<_, StateError>(ids)
            })();
            if let Ok(ids) = together {
                return batches
                    .iter()
                    .map(|(t, _)| *t)
                    .zip(ids.into_iter().map(Ok))
                    .collect();
            }
        }
        batches
            .into_iter()
            .map(|(ticket, batch)| {
                let result = (|| {
                    let txn = self.db.begin_write()?;
                    let ids = write_batch(&txn, &batch)?;
                    txn.commit()?;
                    self.transactions
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Ok(ids)
                })();
                (ticket, result)
            })
            .collect()
    }
}

/// The callers waiting for a group commit, whatever happens to the one committing.
#[derive(Default)]
struct Group {
    /// Batches not yet taken by a committer, in arrival order.
    waiting: Vec<(u64, Batch)>,
    /// Outcomes not yet collected by their caller.
    results: HashMap<u64, Result<Vec<u64>, StateError>>,
    next_ticket: u64,
    /// Whether a caller is committing right now.
    committing: bool,
}

/// Hands the batches of a commit that panicked back to their callers as an error, so
/// they do not wait forever.
struct Leader<'a> {
    state: &'a State,
    tickets: Vec<u64>,
    done: bool,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut group = self
            .state
            .group
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for ticket in &self.tickets {
            group.results.insert(
                *ticket,
                Err(StateError::Storage(
                    "the commit stopped unexpectedly".into(),
                )),
            );
        }
        group.committing = false;
        self.state.committed.notify_all();
    }
}

/// The table of shared queue texts; `None` in a state of version 1 opened read-only
/// (a dry run), which has not been migrated and keeps every text inline.
fn texts_of(
    txn: &ReadTransaction,
) -> Result<Option<redb::ReadOnlyTable<&'static str, &'static [u8]>>, StateError> {
    match txn.open_table(BODIES) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Brings a state written by an older imipd to [`STATE_VERSION`], in the transaction
/// that opens it: queue items that carry their text inline (version 1) are stored
/// with their text in [`BODIES`], once per distinct text.
fn migrate(txn: &WriteTransaction, path: &Path) -> Result<(), StateError> {
    let mut meta = txn.open_table(META)?;
    let found: u32 = match meta.get(STATE_VERSION_KEY)? {
        Some(v) => v.value().parse().map_err(|_| StateError::Corrupt {
            key: STATE_VERSION_KEY.into(),
            reason: format!("not a version number: {:?}", v.value()),
        })?,
        None => 1,
    };
    if found > STATE_VERSION {
        return Err(StateError::Newer {
            path: path.to_path_buf(),
            found,
        });
    }
    if found == STATE_VERSION {
        return Ok(());
    }
    let mut queue = txn.open_table(QUEUE)?;
    let mut texts = txn.open_table(BODIES)?;
    let mut refs = txn.open_table(BODY_REFS)?;
    let mut inline = Vec::new();
    for entry in queue.iter()? {
        let (key, value) = entry?;
        let item: QueueItem = decode(&key.value().to_string(), value.value())?;
        if item.body.is_none() {
            inline.push(item);
        }
    }
    // Items of one change had equal texts: share them, so each is stored once.
    let mut shared: HashMap<Arc<str>, Arc<str>> = HashMap::new();
    let mut interner = Interner::default();
    let moved = inline.len();
    for mut item in inline {
        item.itip = shared
            .entry(item.itip.clone())
            .or_insert_with(|| item.itip.clone())
            .clone();
        let hash = interner.hold(&mut texts, &mut refs, &item.itip)?;
        queue.insert(
            item.id,
            encode(&bodies::stored_form(&item, hash)).as_slice(),
        )?;
    }
    meta.insert(STATE_VERSION_KEY, STATE_VERSION.to_string().as_str())?;
    if moved > 0 {
        tracing::info!(
            items = moved,
            texts = shared.len(),
            "state migrated to version {STATE_VERSION}: queued messages now share their texts"
        );
    }
    Ok(())
}

/// Writes `batch` into the open transaction `txn`; returns the ids given to new items.
fn write_batch(txn: &WriteTransaction, batch: &Batch) -> Result<Vec<u64>, StateError> {
    let mut ids = Vec::with_capacity(batch.enqueue.len());
    {
        let mut objects = txn.open_table(OBJECTS)?;
        let mut uids = txn.open_table(UIDS)?;
        for (key, record) in &batch.objects {
            let previous: Option<ObjectRecord> = match objects.get(key.as_str())? {
                Some(value) => Some(decode(key, value.value())?),
                None => None,
            };
            if let Some(ObjectRecord {
                user,
                uid: Some(uid),
                ..
            }) = &previous
            {
                let index = uid_key(user, uid);
                let points_here = uids.get(index.as_str())?.is_some_and(|v| v.value() == key);
                if points_here {
                    uids.remove(index.as_str())?;
                }
            }
            match record {
                Some(record) => {
                    objects.insert(key.as_str(), encode(record).as_slice())?;
                    if let Some(uid) = &record.uid {
                        uids.insert(uid_key(&record.user, uid).as_str(), key.as_str())?;
                    }
                }
                None => {
                    objects.remove(key.as_str())?;
                }
            }
        }

        let mut meta = txn.open_table(META)?;
        let mut queue = txn.open_table(QUEUE)?;
        let mut order = txn.open_table(QUEUE_ORDER)?;
        let mut texts = txn.open_table(BODIES)?;
        let mut refs = txn.open_table(BODY_REFS)?;
        let mut interner = Interner::default();
        if !batch.enqueue.is_empty() {
            // The instances each text is about, worked out once per text.
            let mut instances: HashMap<String, Option<std::collections::BTreeSet<String>>> =
                HashMap::new();
            let mut resolver = Resolver::default();
            let first: u64 = meta
                .get(NEXT_QUEUE_ID)?
                .and_then(|v| v.value().parse().ok())
                .unwrap_or(1);
            let mut next = first;
            let mut superseded = 0u64;
            for new in &batch.enqueue {
                let hash = interner.hold(&mut texts, &mut refs, &new.itip)?;
                let mut item = bodies::stored_form(new, hash.clone());
                item.id = next;
                let key = supersede::order_key(&item);
                let new_instances = instances
                    .entry(hash)
                    .or_insert_with(|| supersede::instances(&new.itip))
                    .clone();
                // Older undelivered messages of an earlier change that this one makes
                // pointless (messages of one change never supersede each other).
                let prefix = format!("{key}\u{0}");
                let mut older = Vec::new();
                for entry in order.range(prefix.as_str()..)? {
                    let (index, id) = entry?;
                    if !index.value().starts_with(&prefix) {
                        break;
                    }
                    if id.value() < first {
                        older.push((index.value().to_string(), id.value()));
                    }
                }
                for (index, id) in older {
                    let Some(value) = queue.get(id)?.map(|v| v.value().to_vec()) else {
                        order.remove(index.as_str())?;
                        continue;
                    };
                    let Ok(old) = decode::<QueueItem>(&id.to_string(), &value) else {
                        continue;
                    };
                    let old_instances = match &old.body {
                        Some(hash) => match instances.get(hash) {
                            Some(known) => known.clone(),
                            None => {
                                let text = resolver.resolve(Some(&texts), old.clone())?.itip;
                                let found = supersede::instances(&text);
                                instances.insert(hash.clone(), found.clone());
                                found
                            }
                        },
                        None => supersede::instances(&old.itip),
                    };
                    if supersede::covers(
                        &item,
                        new_instances.as_ref(),
                        &old,
                        old_instances.as_ref(),
                    ) {
                        tracing::info!(
                            superseded = id,
                            by = next,
                            uid = %old.uid,
                            rcpt = %old.rcpt,
                            method = %old.method,
                            "superseded: an undelivered message replaced by a newer one for the same instances"
                        );
                        queue.remove(id)?;
                        order.remove(index.as_str())?;
                        if let Some(hash) = &old.body {
                            bodies::release(&mut texts, &mut refs, hash)?;
                        }
                        superseded += 1;
                    }
                }
                queue.insert(next, encode(&item).as_slice())?;
                order.insert(order_index(&key, next).as_str(), next)?;
                ids.push(next);
                next += 1;
            }
            meta.insert(NEXT_QUEUE_ID, next.to_string().as_str())?;
            if superseded > 0 {
                let total: u64 = meta
                    .get(SUPERSEDED_TOTAL)?
                    .and_then(|v| v.value().parse().ok())
                    .unwrap_or(0);
                meta.insert(SUPERSEDED_TOTAL, (total + superseded).to_string().as_str())?;
            }
        }
        for item in &batch.requeue {
            // An item superseded or dropped since it was read stays gone.
            let Some(stored) = queue.get(item.id)?.map(|v| v.value().to_vec()) else {
                continue;
            };
            let stored: QueueItem = decode(&item.id.to_string(), &stored)?;
            let hash = match stored.body {
                Some(hash) => hash,
                None => interner.hold(&mut texts, &mut refs, &item.itip)?,
            };
            queue.insert(item.id, encode(&bodies::stored_form(item, hash)).as_slice())?;
        }
        for id in &batch.dequeue {
            let removed = queue.remove(id)?.map(|v| v.value().to_vec());
            if let Some(Ok(item)) = removed.map(|v| decode::<QueueItem>(&id.to_string(), &v)) {
                order.remove(order_index(&supersede::order_key(&item), *id).as_str())?;
                if let Some(hash) = &item.body {
                    bodies::release(&mut texts, &mut refs, hash)?;
                }
            }
        }
        for (key, value) in &batch.meta {
            meta.insert(key.as_str(), value.as_str())?;
        }
        for key in &batch.forget_meta {
            meta.remove(key.as_str())?;
        }
        let mut applied = txn.open_table(APPLIED)?;
        for (key, when) in &batch.applied {
            applied.insert(key.as_str(), when)?;
        }
        let mut sent = txn.open_table(SENT)?;
        for record in &batch.sent {
            sent.insert(record.id, encode(record).as_slice())?;
        }
        for id in &batch.forget_sent {
            sent.remove(id)?;
        }
        let mut intents = txn.open_table(INTENTS)?;
        let mut answers = txn.open_table(ANSWERS)?;
        for (key, record) in &batch.objects {
            if record.is_none() {
                intents.remove(key.as_str())?;
                answers.remove(key.as_str())?;
            }
        }
        for (key, intent) in &batch.intents {
            match intent {
                Some(intent) => intents.insert(key.as_str(), encode(intent).as_slice())?,
                None => intents.remove(key.as_str())?,
            };
        }
        for (key, list) in &batch.answers {
            if list.is_empty() {
                answers.remove(key.as_str())?;
            } else {
                answers.insert(key.as_str(), encode(list).as_slice())?;
            }
        }
        let mut sequences = txn.open_table(SENT_SEQUENCES)?;
        for sent in &batch.sequences {
            let key = sequence_key(&sent.user, &sent.uid, sent.instance);
            let held = sequences.get(key.as_str())?.map(|v| v.value());
            if held.is_none_or(|h| h < sent.sequence) {
                sequences.insert(key.as_str(), sent.sequence)?;
            }
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user: &str, uid: &str, baseline: &str) -> ObjectRecord {
        ObjectRecord {
            user: user.into(),
            uid: Some(uid.into()),
            seen_hash: content_hash(baseline.as_bytes()),
            baseline: Some(baseline.into()),
            written_hash: None,
            last_error: None,
        }
    }

    fn item(rcpt: &str) -> QueueItem {
        QueueItem {
            id: 0,
            created: 1,
            next_attempt: 1,
            attempts: 0,
            route: Route::Mail,
            from: "o@example.com".into(),
            rcpt: rcpt.into(),
            method: "REQUEST".into(),
            uid: "u1".into(),
            itip: "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n".into(),
            body: None,
            summary: SummaryRecord::Invite,
            status_object: None,
            last_error: None,
            changed_at_ms: None,
        }
    }

    #[test]
    fn records_uid_index_and_queue_survive_reopening() {
        let (dir, path) = temp_state("reopen");
        {
            let state = State::open(&path).expect("open");
            let ids = state
                .commit(Batch {
                    objects: vec![("alice/cal/a.ics".into(), Some(record("alice", "u1", "v1")))],
                    enqueue: vec![item("b@example.net"), item("c@example.net")],
                    ..Batch::default()
                })
                .expect("commit");
            assert_eq!(ids, vec![1, 2]);
        }
        let state = State::open(&path).expect("reopen");
        assert_eq!(
            state.object("alice/cal/a.ics").expect("read"),
            Some(record("alice", "u1", "v1"))
        );
        assert_eq!(
            state.find_uid("alice", "u1").expect("read").as_deref(),
            Some("alice/cal/a.ics")
        );
        assert_eq!(state.find_uid("bob", "u1").expect("read"), None);
        let queue = state.queue().expect("queue");
        assert_eq!(
            queue.iter().map(|q| q.rcpt.as_str()).collect::<Vec<_>>(),
            vec!["b@example.net", "c@example.net"]
        );

        // Renaming the UID moves the index; forgetting the object removes it.
        state
            .commit(Batch {
                objects: vec![("alice/cal/a.ics".into(), Some(record("alice", "u2", "v2")))],
                dequeue: vec![1],
                ..Batch::default()
            })
            .expect("commit");
        assert_eq!(state.find_uid("alice", "u1").expect("read"), None);
        assert!(state.find_uid("alice", "u2").expect("read").is_some());
        assert_eq!(state.queue().expect("queue").len(), 1);
        state
            .commit(Batch {
                objects: vec![("alice/cal/a.ics".into(), None)],
                enqueue: vec![item("d@example.net")],
                ..Batch::default()
            })
            .expect("commit");
        assert_eq!(state.find_uid("alice", "u2").expect("read"), None);
        assert_eq!(
            state.object_keys_with_prefix("alice/").expect("scan").len(),
            0
        );
        // Queue ids keep increasing after items are removed.
        assert_eq!(state.queue().expect("queue").last().map(|q| q.id), Some(3));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn temp_state(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("imipd-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("state.redb");
        (dir, path)
    }

    /// A 140 KB-ish text shared by `n` items, as one change of a large event queues it.
    fn one_change(n: usize, text: &str) -> Vec<QueueItem> {
        let shared: Arc<str> = Arc::from(text);
        (0..n)
            .map(|i| QueueItem {
                itip: shared.clone(),
                ..item(&format!("a{i}@example.net"))
            })
            .collect()
    }

    #[test]
    fn the_items_of_one_change_store_their_text_once_until_the_last_leaves() {
        let (dir, path) = temp_state("bodies");
        let state = State::open(&path).expect("open");
        let text = format!(
            "BEGIN:VCALENDAR\r\n{}END:VCALENDAR\r\n",
            "X-PAD:0123456789\r\n".repeat(5_000)
        );
        let ids = state
            .commit(Batch {
                enqueue: one_change(200, &text),
                ..Batch::default()
            })
            .expect("commit");
        assert_eq!(state.queue_texts().expect("texts"), (1, text.len() as u64));
        // Every item reads back with the whole text.
        let queue = state.queue().expect("queue");
        assert_eq!(queue.len(), 200);
        assert!(queue.iter().all(|i| *i.itip == *text && i.body.is_some()));
        assert_eq!(
            state
                .queue_item(ids[7])
                .expect("read")
                .map(|i| i.itip.len()),
            Some(text.len())
        );
        // A retry keeps the text; all but one delivered keep it too.
        let mut retried = queue[0].clone();
        retried.attempts = 1;
        state
            .commit(Batch {
                requeue: vec![retried],
                dequeue: ids[1..].to_vec(),
                ..Batch::default()
            })
            .expect("commit");
        assert_eq!(state.queue_texts().expect("texts").0, 1);
        assert_eq!(state.queue().expect("queue")[0].attempts, 1);
        assert_eq!(*state.queue().expect("queue")[0].itip, *text);
        state
            .commit(Batch {
                dequeue: vec![ids[0]],
                ..Batch::default()
            })
            .expect("commit");
        assert_eq!(state.queue_texts().expect("texts"), (0, 0));
        // A retry recorded after the item was dropped does not bring it back.
        let late = QueueItem {
            attempts: 2,
            ..queue[0].clone()
        };
        state
            .commit(Batch {
                requeue: vec![late],
                ..Batch::default()
            })
            .expect("commit");
        assert!(state.queue().expect("queue").is_empty());
        assert_eq!(state.queue_texts().expect("texts"), (0, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_superseded_change_takes_its_text_with_it() {
        let (dir, path) = temp_state("bodies-superseded");
        let state = State::open(&path).expect("open");
        let request = |sequence: u32| {
            format!(
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nMETHOD:REQUEST\r\n\
                 BEGIN:VEVENT\r\nUID:u1\r\nSEQUENCE:{sequence}\r\nDTSTAMP:20300101T000000Z\r\n\
                 END:VEVENT\r\nEND:VCALENDAR\r\n"
            )
        };
        for sequence in 0..3 {
            state
                .commit(Batch {
                    enqueue: one_change(50, &request(sequence)),
                    ..Batch::default()
                })
                .expect("commit");
        }
        // Each change replaced the undelivered one before it, text and all.
        assert_eq!(state.queue().expect("queue").len(), 50);
        assert_eq!(state.queue_texts().expect("texts").0, 1);
        assert_eq!(state.superseded_total().expect("count"), 100);
        assert!(state
            .queue()
            .expect("queue")
            .iter()
            .all(|i| i.itip.contains("SEQUENCE:2")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_write_intent_holds_a_shared_text_once_and_reads_back_the_same_items() {
        let text = format!(
            "BEGIN:VCALENDAR\r\n{}END:VCALENDAR\r\n",
            "X-PAD:0123456789\r\n".repeat(1_000)
        );
        let batch = Batch {
            enqueue: one_change(100, &text),
            ..Batch::default()
        };
        let json = encode(&batch);
        assert!(json.len() < text.len() + 100 * 400, "{} bytes", json.len());
        let back: Batch = decode("intent", &json).expect("decode");
        assert_eq!(back, batch);
        // An intent written by an older imipd (each item with its text) still reads.
        let old = serde_json::json!({
            "objects": [], "enqueue": [serde_json::to_value(&batch.enqueue[0]).expect("item")],
            "requeue": [], "dequeue": [], "applied": [], "meta": [], "forget_meta": [],
            "sent": [], "forget_sent": []
        });
        let back: Batch = serde_json::from_value(old).expect("old intent");
        assert_eq!(back.enqueue, batch.enqueue[..1]);
    }

    #[test]
    fn a_queue_written_before_shared_texts_is_migrated_when_opened() {
        let (dir, path) = temp_state("migrate");
        let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nX-OLD:1\r\nEND:VCALENDAR\r\n";
        {
            // The layout of version 1: items with their text inline, no version key.
            let db = Database::create(&path).expect("create");
            let txn = db.begin_write().expect("write");
            {
                let mut queue = txn.open_table(QUEUE).expect("queue");
                for id in 1..=3u64 {
                    let mut old = serde_json::to_value(QueueItem {
                        id,
                        ..item(&format!("r{id}@example.net"))
                    })
                    .expect("item");
                    old["itip"] = serde_json::Value::from(text);
                    queue
                        .insert(id, serde_json::to_vec(&old).expect("json").as_slice())
                        .expect("insert");
                }
            }
            txn.commit().expect("commit");
        }
        // A dry run opens it read-only: nothing is migrated, the texts read inline.
        {
            let dry = State::open_existing(&path).expect("read-only");
            let queue = dry.queue().expect("queue");
            assert_eq!(queue.len(), 3);
            assert!(queue.iter().all(|i| &*i.itip == text && i.body.is_none()));
            assert_eq!(dry.queue_texts().expect("texts"), (0, 0));
        }
        let state = State::open(&path).expect("open migrates");
        assert_eq!(
            state.meta(STATE_VERSION_KEY).expect("meta").as_deref(),
            Some("2")
        );
        assert_eq!(state.queue_texts().expect("texts"), (1, text.len() as u64));
        let queue = state.queue().expect("queue");
        assert_eq!(queue.len(), 3);
        assert!(queue.iter().all(|i| &*i.itip == text && i.body.is_some()));
        // Delivering them all removes the migrated text.
        state
            .commit(Batch {
                dequeue: vec![1, 2, 3],
                ..Batch::default()
            })
            .expect("commit");
        assert_eq!(state.queue_texts().expect("texts"), (0, 0));
        drop(state);
        // A state from a newer imipd is refused with what to do.
        {
            let db = Database::create(&path).expect("open");
            let txn = db.begin_write().expect("write");
            txn.open_table(META)
                .expect("meta")
                .insert(STATE_VERSION_KEY, "9")
                .expect("insert");
            txn.commit().expect("commit");
        }
        let err = State::open(&path).err().expect("refused").to_string();
        assert!(
            err.contains("layout version 9, newer than this imipd's 2"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_newer_message_drops_the_undelivered_older_one_and_counts_it() {
        let (dir, path) = temp_state("supersede");
        let state = State::open(&path).expect("open");
        let with_method = |rcpt: &str, method: &str| {
            QueueItem {
            method: method.into(),
            itip: format!(
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nMETHOD:{method}\r\n\
                 BEGIN:VEVENT\r\nUID:u1\r\nDTSTAMP:20300101T000000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
            )
            .into(),
            ..item(rcpt)
        }
        };
        // One change: two messages for one recipient do not supersede each other.
        state
            .commit(Batch {
                enqueue: vec![
                    with_method("b@example.net", "REQUEST"),
                    with_method("b@example.net", "REQUEST"),
                    with_method("c@example.net", "REQUEST"),
                ],
                ..Batch::default()
            })
            .expect("commit");
        state
            .commit(Batch {
                enqueue: vec![with_method("b@example.net", "CANCEL")],
                ..Batch::default()
            })
            .expect("commit");
        let left: Vec<(u64, String, String)> = state
            .queue()
            .expect("queue")
            .into_iter()
            .map(|i| (i.id, i.rcpt, i.method))
            .collect();
        assert_eq!(
            left,
            vec![
                (3, "c@example.net".into(), "REQUEST".into()),
                (4, "b@example.net".into(), "CANCEL".into())
            ]
        );
        assert_eq!(state.superseded_total().expect("count"), 2);
        // Delivered items leave the order index too: a later message finds nothing.
        state
            .commit(Batch {
                dequeue: vec![4],
                ..Batch::default()
            })
            .expect("commit");
        state
            .commit(Batch {
                enqueue: vec![with_method("b@example.net", "REQUEST")],
                ..Batch::default()
            })
            .expect("commit");
        assert_eq!(state.superseded_total().expect("count"), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn content_hash_is_lowercase_hex_sha256() {
        assert_eq!(
            content_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn concurrent_commits_all_land_with_distinct_queue_ids() {
        let (dir, path) = temp_state("group");
        let state = State::open(&path).expect("open");
        let ids: Vec<u64> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let state = &state;
                    scope.spawn(move || {
                        let mut ids = Vec::new();
                        for n in 0..20 {
                            let key = format!("u{t}/cal/{n}.ics");
                            let got = state
                                .commit(Batch {
                                    objects: vec![(
                                        key,
                                        Some(record(&format!("u{t}"), &n.to_string(), "v")),
                                    )],
                                    enqueue: vec![item("b@example.net")],
                                    ..Batch::default()
                                })
                                .expect("commit");
                            assert_eq!(got.len(), 1);
                            ids.extend(got);
                        }
                        ids
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().expect("thread"))
                .collect()
        });
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=160).collect::<Vec<u64>>());
        assert_eq!(state.queue().expect("queue").len(), 160);
        for t in 0..8 {
            assert_eq!(
                state
                    .object_keys_with_prefix(&format!("u{t}/"))
                    .expect("scan")
                    .len(),
                20
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failing_batch_in_a_group_fails_only_its_own_caller() {
        let (dir, path) = temp_state("bad");
        let state = State::open(&path).expect("open");
        // A damaged record: replacing it fails (its old UID index cannot be read).
        let txn = state.db.begin_write().expect("write");
        txn.open_table(OBJECTS)
            .expect("table")
            .insert("bad/cal/x.ics", b"not json".as_slice())
            .expect("insert");
        txn.commit().expect("commit");
        let good = |key: &str| Batch {
            objects: vec![(key.to_string(), Some(record("u", key, "v")))],
            ..Batch::default()
        };
        let results = state.commit_together(vec![
            (1, good("u/cal/1.ics")),
            (2, good("bad/cal/x.ics")),
            (3, good("u/cal/3.ics")),
        ]);
        let ok: Vec<(u64, bool)> = results.iter().map(|(t, r)| (*t, r.is_ok())).collect();
        assert_eq!(ok, vec![(1, true), (2, false), (3, true)]);
        assert!(state.object("u/cal/1.ics").expect("read").is_some());
        assert!(state.object("u/cal/3.ics").expect("read").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_location_is_a_clear_error() {
        let err = State::open(Path::new("/nonexistent-dir/state.redb"))
            .err()
            .expect("must fail");
        assert!(
            err.to_string().contains("/nonexistent-dir/state.redb"),
            "{err}"
        );
    }

    #[test]
    fn old_sent_records_are_found_in_queue_order_up_to_the_first_young_one() {
        let (dir, path) = temp_state("sent");
        let state = State::open(&path).expect("open");
        let sent = |id: u64, at: i64| SentRecord {
            id,
            at,
            uid: "u1".into(),
            rcpt: "b@example.net".into(),
            status_object: "alice/cal/a.ics".into(),
        };
        state
            .commit(Batch {
                sent: vec![sent(1, 10), sent(2, 20), sent(3, 40), sent(4, 15)],
                ..Batch::default()
            })
            .expect("commit");
        assert_eq!(state.sent_before(5).expect("read"), Vec::<u64>::new());
        // 4 is old too, but waits behind the younger 3 until that one is old enough.
        assert_eq!(state.sent_before(30).expect("read"), vec![1, 2]);
        assert_eq!(state.sent_before(50).expect("read"), vec![1, 2, 3, 4]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_highest_sequence_sent_stays_per_instance_and_survives_forgetting_the_object() {
        let (dir, path) = temp_state("sequences");
        let state = State::open(&path).expect("open");
        let sent = |uid: &str, instance, sequence| SentSequence {
            user: "alice".into(),
            uid: uid.into(),
            instance,
            sequence,
        };
        state
            .commit(Batch {
                sequences: vec![sent("a", None, 3), sent("a", Some(1_900_000_000), 4)],
                ..Batch::default()
            })
            .expect("commit");
        // A lower one later (a stale file) does not lower what was sent; another UID
        // sharing a prefix is another event.
        state
            .commit(Batch {
                sequences: vec![sent("a", None, 1), sent("ab", None, 9)],
                objects: vec![("alice/calendar/a.ics".into(), None)],
                ..Batch::default()
            })
            .expect("commit");
        let held = state.sent_sequences("alice", "a").expect("read");
        assert_eq!(held.get(None), Some(3));
        assert_eq!(held.get(Some(1_900_000_000)), Some(4));
        assert_eq!(held.highest(), Some(4));
        assert_eq!(
            state.sent_sequences("bob", "a").expect("read").highest(),
            None
        );
        drop(state);
        let reopened = State::open(&path).expect("reopen");
        assert_eq!(
            reopened
                .sent_sequences("alice", "ab")
                .expect("read")
                .get(None),
            Some(9)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
