//! Who wrote which version of a calendar file, remembered for a while in memory.
//!
//! Two writers share a Radicale store: clients, through Radicale (and through imipd's
//! CalDAV front, `crate::caldav`), and imipd itself. A client that saves with
//! `If-Match` on a version imipd has since rewritten only to record answers or
//! delivery status gets HTTP 412 from Radicale, and Thunderbird then shows a frightening
//! "changed on the server" dialog, although nothing the user wrote was touched. What
//! this module remembers lets the front tell that case apart from a real conflict:
//!
//! - imipd's own *bookkeeping* writes (answers, SCHEDULE-STATUS, the SEQUENCE it keeps,
//!   a stale save merged with answers), each as the content hash it replaced and the one
//!   it wrote: everything in them is derived from imipd's state and is put back by imipd
//!   after any save that lacks it;
//! - the ETag Radicale gave each version a client saved or fetched through the front,
//!   with the content hash of that version;
//! - which versions a client wrote through the front, that is, a client that was told
//!   that imipd schedules for it.
//!
//! Nothing here is durable: after a restart the front just passes 412s on, as Radicale
//! alone would. Memory is bounded: each table keeps its newest entries only.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// How many objects each table remembers before it forgets the oldest.
const MAX_KEYS: usize = 20_000;
/// How many versions of one object are remembered per table.
const PER_KEY: usize = 8;

/// One of imipd's own writes that only recorded what imipd derives from its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookkeepingWrite {
    /// Content hash of the version the write replaced.
    pub before: String,
    /// Content hash of the version it wrote.
    pub after: String,
}

/// The versions of one object seen through the front: (ETag, content hash).
type Versions = VecDeque<(String, String)>;

/// Recent writes and versions of the store's files; shared by the store's writers and
/// the CalDAV front, kept across configuration reloads.
#[derive(Debug, Default)]
pub struct Provenance {
    bookkeeping: Mutex<Table<BookkeepingWrite>>,
    etags: Mutex<Table<(String, String)>>,
    client_writes: Mutex<Table<String>>,
}

/// Per object key, its newest entries; the oldest keys are forgotten first.
#[derive(Debug)]
struct Table<T> {
    entries: HashMap<String, (u64, VecDeque<T>)>,
    clock: u64,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            entries: HashMap::new(),
            clock: 0,
        }
    }
}

impl<T: PartialEq> Table<T> {
    fn push(&mut self, key: &str, value: T) {
        self.clock += 1;
        let clock = self.clock;
        let (stamp, list) = self.entries.entry(key.to_string()).or_default();
        *stamp = clock;
        list.retain(|v| *v != value);
        list.push_back(value);
        while list.len() > PER_KEY {
            list.pop_front();
        }
        if self.entries.len() > MAX_KEYS {
            // Forget the older half at once, so this runs rarely.
            let mut stamps: Vec<u64> = self.entries.values().map(|(s, _)| *s).collect();
            stamps.sort_unstable();
            let cut = stamps[stamps.len() / 2];
            self.entries.retain(|_, (s, _)| *s > cut);
        }
    }

    fn get(&self, key: &str) -> Option<&VecDeque<T>> {
        self.entries.get(key).map(|(_, list)| list)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Provenance {
    /// Records that imipd replaced version `before` of `key` by `after`, a write whose
    /// content imipd derives from its state (answers, delivery status, SEQUENCE).
    pub fn record_bookkeeping(&self, key: &str, before: &str, after: &str) {
        lock(&self.bookkeeping).push(
            key,
            BookkeepingWrite {
                before: before.to_string(),
                after: after.to_string(),
            },
        );
    }

    /// Whether version `from` of `key` becomes version `to` through imipd's bookkeeping
    /// writes alone (at least one of them): a client holding `from` lost nothing it
    /// wrote if its save replaces `to`, since imipd puts its bookkeeping back.
    pub fn only_bookkeeping_between(&self, key: &str, from: &str, to: &str) -> bool {
        let table = lock(&self.bookkeeping);
        let Some(writes) = table.get(key) else {
            return false;
        };
        let mut at = from;
        // Follow the chain; each step must be a recorded write, and it cannot be
        // longer than what is remembered.
        for _ in 0..writes.len() {
            match writes.iter().rev().find(|w| w.before == at) {
                Some(write) => {
                    at = &write.after;
                    if at == to {
                        return true;
                    }
                }
                None => return false,
            }
        }
        false
    }

    /// The version of `key` that imipd's bookkeeping writes started from to reach
    /// `content_hash`: `content_hash` itself when imipd did not write it. A save read
    /// back a moment late (imipd recorded an answer meanwhile) is known by this.
    pub fn before_bookkeeping(&self, key: &str, content_hash: &str) -> String {
        let table = lock(&self.bookkeeping);
        let mut at = content_hash;
        if let Some(writes) = table.get(key) {
            for _ in 0..writes.len() {
                match writes.iter().rev().find(|w| w.after == at) {
                    Some(write) => at = &write.before,
                    None => break,
                }
            }
        }
        at.to_string()
    }

    /// The objects under `prefix` (`alice/work/`) that imipd recently wrote as
    /// bookkeeping or a client recently saved through the front: the only ones whose
    /// ETags the front needs to learn from listings (a client takes its `If-Match`
    /// from the listing that follows its own save, or from a later refresh).
    pub fn recent_keys_under(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = lock(&self.bookkeeping)
            .entries
            .keys()
            .chain(lock(&self.client_writes).entries.keys())
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Whether `content_hash` of `key` was written by imipd as bookkeeping.
    pub fn is_bookkeeping_version(&self, key: &str, content_hash: &str) -> bool {
        lock(&self.bookkeeping)
            .get(key)
            .is_some_and(|w| w.iter().any(|w| w.after == content_hash))
    }

    /// Records that Radicale served (or answered a save of) version `content_hash` of
    /// `key` under `etag`.
    pub fn record_etag(&self, key: &str, etag: &str, content_hash: &str) {
        lock(&self.etags).push(key, (etag.to_string(), content_hash.to_string()));
    }

    /// The content hash of the version of `key` that had `etag`, if it was seen.
    pub fn version_of_etag(&self, key: &str, etag: &str) -> Option<String> {
        lock(&self.etags)
            .get(key)
            .and_then(|v: &Versions| v.iter().rev().find(|(e, _)| e == etag))
            .map(|(_, hash)| hash.clone())
    }

    /// Records that a client told that imipd schedules for it (through the CalDAV
    /// front) wrote version `content_hash` of `key`.
    pub fn record_client_write(&self, key: &str, content_hash: &str) {
        lock(&self.client_writes).push(key, content_hash.to_string());
    }

    /// Whether version `content_hash` of `key` was written by a client through the
    /// front, i.e. by a client that was told imipd schedules for it.
    pub fn written_through_front(&self, key: &str, content_hash: &str) -> bool {
        lock(&self.client_writes)
            .get(key)
            .is_some_and(|v| v.iter().any(|h| h == content_hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Provenance where imipd's bookkeeping wrote each version of `key` in `versions`
    /// over the one before.
    fn bookkeeping_chain(key: &str, versions: &[&str]) -> Provenance {
        let p = Provenance::default();
        for pair in versions.windows(2) {
            p.record_bookkeeping(key, pair[0], pair[1]);
        }
        p
    }

    #[test]
    fn a_chain_of_bookkeeping_writes_connects_two_versions() {
        let p = bookkeeping_chain("a/c/x.ics", &["h1", "h2", "h3"]);
        assert!(p.only_bookkeeping_between("a/c/x.ics", "h1", "h2"));
        assert!(p.only_bookkeeping_between("a/c/x.ics", "h1", "h3"));
        assert!(p.only_bookkeeping_between("a/c/x.ics", "h2", "h3"));
        // No write at all between a version and itself, and none backwards.
        assert!(!p.only_bookkeeping_between("a/c/x.ics", "h3", "h3"));
        assert!(!p.only_bookkeeping_between("a/c/x.ics", "h3", "h1"));
        // A version written by someone else breaks the chain.
        assert!(!p.only_bookkeeping_between("a/c/x.ics", "h0", "h3"));
        assert!(!p.only_bookkeeping_between("a/c/y.ics", "h1", "h2"));
    }

    #[test]
    fn a_version_is_traced_back_to_before_imipds_writes() {
        let p = bookkeeping_chain("k", &["h1", "h2", "h3"]);
        assert_eq!(p.before_bookkeeping("k", "h3"), "h1");
        assert_eq!(p.before_bookkeeping("k", "h1"), "h1");
        assert_eq!(p.before_bookkeeping("j", "h3"), "h3");
    }

    #[test]
    fn a_cycle_of_writes_ends() {
        let p = bookkeeping_chain("k", &["h1", "h2", "h1"]);
        assert!(!p.only_bookkeeping_between("k", "h1", "h9"));
    }

    #[test]
    fn etags_and_client_writes_are_per_object() {
        let p = Provenance::default();
        p.record_etag("k", "\"e1\"", "h1");
        p.record_etag("k", "\"e2\"", "h2");
        assert_eq!(p.version_of_etag("k", "\"e1\"").as_deref(), Some("h1"));
        assert_eq!(p.version_of_etag("j", "\"e1\""), None);
        p.record_client_write("k", "h2");
        assert!(p.written_through_front("k", "h2"));
        assert!(!p.written_through_front("k", "h1"));
    }

    #[test]
    fn memory_is_bounded() {
        let mut table: Table<u32> = Table::default();
        for i in 0..(MAX_KEYS + 10) {
            table.push(&format!("k{i}"), 1);
        }
        assert!(table.entries.len() <= MAX_KEYS);
        assert!(table.get(&format!("k{}", MAX_KEYS + 9)).is_some());
        for v in 0..20 {
            table.push("one", v);
        }
        assert_eq!(table.get("one").map(|l| l.len()), Some(PER_KEY));
    }
}
