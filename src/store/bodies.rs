//! The queue's message texts, stored once each.
//!
//! One change of a 1,000-attendee event queues 1,000 items that carry the same
//! iCalendar text (140 KB). Stored with every item, that is 140 MB in the state and
//! as much again in the write intent; stored here, it is one copy, found by its
//! SHA-256 and counted by how many queued items refer to it. The last item to leave
//! the queue (delivered, failed, superseded, dropped) removes it. In memory the items
//! of one change share one `Arc<str>`, so hashing is done once per text, not once
//! per recipient.
//!
//! Items written before this table existed carry their text inline; the state
//! migrates them when it opens (see [`super::state::State::open`]), and reads
//! either form.
//!
//! The state calls this module, never the other way round: it reads queue items from
//! [`queue_item`](super::queue_item) and answers with its own [`BodyError`], which the
//! state turns into its error.

use super::hash::content_hash;
use super::queue_item::QueueItem;
use redb::{ReadableTable, Table, TableDefinition};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::sync::Arc;

/// Why a queued item's text could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    /// A read or write of the tables failed.
    #[error("state database: {0}")]
    Storage(#[from] redb::StorageError),
    /// An item refers to a text that is not there.
    #[error("state database record {key}: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What was wrong.
        reason: String,
    },
}

/// Text by hash.
pub(super) const BODIES: TableDefinition<&str, &[u8]> = TableDefinition::new("queue_bodies");
/// How many queued items refer to each text.
pub(super) const BODY_REFS: TableDefinition<&str, u64> = TableDefinition::new("queue_body_refs");

/// Takes references to texts in one transaction, hashing each shared text once.
#[derive(Default)]
pub(super) struct Interner {
    /// Texts hashed so far in this transaction, by identity.
    known: Vec<(Arc<str>, String)>,
}

impl Interner {
    /// Counts one more item referring to `text`, storing the text when it is new;
    /// returns its hash.
    pub(super) fn hold(
        &mut self,
        bodies: &mut Table<&str, &[u8]>,
        refs: &mut Table<&str, u64>,
        text: &Arc<str>,
    ) -> Result<String, BodyError> {
        let hash = match self.known.iter().find(|(t, _)| Arc::ptr_eq(t, text)) {
            Some((_, hash)) => hash.clone(),
            None => {
                let hash = content_hash(text.as_bytes());
                self.known.push((text.clone(), hash.clone()));
                hash
            }
        };
        let count = refs.get(hash.as_str())?.map_or(0, |v| v.value());
        if count == 0 {
            bodies.insert(hash.as_str(), text.as_bytes())?;
        }
        refs.insert(hash.as_str(), count + 1)?;
        Ok(hash)
    }
}

/// Counts one item fewer referring to `hash`; the text goes with the last one.
pub(super) fn release(
    bodies: &mut Table<&str, &[u8]>,
    refs: &mut Table<&str, u64>,
    hash: &str,
) -> Result<(), BodyError> {
    let count = refs.get(hash)?.map_or(0, |v| v.value());
    if count <= 1 {
        refs.remove(hash)?;
        bodies.remove(hash)?;
    } else {
        refs.insert(hash, count - 1)?;
    }
    Ok(())
}

/// The form an item is stored in: its text replaced by the text's hash.
pub(super) fn stored_form(item: &QueueItem, hash: String) -> QueueItem {
    QueueItem {
        itip: Arc::from(""),
        body: Some(hash),
        ..item.clone()
    }
}

/// Fills in the text of items read from the queue, reading each text once.
#[derive(Default)]
pub(super) struct Resolver {
    loaded: HashMap<String, Arc<str>>,
}

impl Resolver {
    /// `item` with its text, from `bodies` when it is stored there.
    pub(super) fn resolve(
        &mut self,
        bodies: Option<&impl ReadableTable<&'static str, &'static [u8]>>,
        mut item: QueueItem,
    ) -> Result<QueueItem, BodyError> {
        let Some(hash) = &item.body else {
            return Ok(item);
        };
        let Some(bodies) = bodies else {
            return Err(BodyError::Corrupt {
                key: format!("queue item {}", item.id),
                reason: "it refers to a shared text, but the state has no table of them".into(),
            });
        };
        if let Some(text) = self.loaded.get(hash) {
            item.itip = text.clone();
            return Ok(item);
        }
        let text = bodies
            .get(hash.as_str())?
            .ok_or_else(|| BodyError::Corrupt {
                key: format!("queue item {}", item.id),
                reason: format!("its message text {hash} is missing"),
            })?;
        let text: Arc<str> = Arc::from(String::from_utf8_lossy(text.value()).as_ref());
        self.loaded.insert(hash.clone(), text.clone());
        item.itip = text;
        Ok(item)
    }
}

/// How a batch's new items are written in a write intent: each distinct text once,
/// and every item with the index of its text. Intents written before this form (a
/// plain list of items) are still read.
pub(super) mod in_intents {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Shared {
        texts: Vec<Arc<str>>,
        items: Vec<(usize, QueueItem)>,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Shared(Shared),
        Plain(Vec<QueueItem>),
    }

    /// Serialises `items` with each shared text once.
    pub(in crate::store) fn serialize<S: Serializer>(
        items: &[QueueItem],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut shared = Shared {
            texts: Vec::new(),
            items: Vec::with_capacity(items.len()),
        };
        for item in items {
            let at = match shared
                .texts
                .iter()
                .position(|t| Arc::ptr_eq(t, &item.itip) || **t == *item.itip)
            {
                Some(at) => at,
                None => {
                    shared.texts.push(item.itip.clone());
                    shared.texts.len() - 1
                }
            };
            let bare = QueueItem {
                itip: Arc::from(""),
                ..item.clone()
            };
            shared.items.push((at, bare));
        }
        shared.serialize(serializer)
    }

    /// Reads either form back, the items of one text sharing it again.
    pub(in crate::store) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<QueueItem>, D::Error> {
        Ok(match Either::deserialize(deserializer)? {
            Either::Plain(items) => items,
            Either::Shared(shared) => shared
                .items
                .into_iter()
                .map(|(at, mut item)| {
                    if let Some(text) = shared.texts.get(at) {
                        item.itip = text.clone();
                    }
                    item
                })
                .collect(),
        })
    }
}
