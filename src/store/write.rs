//! Replacing a user's file safely.
//!
//! Under the store lock (Radicale's; a vdir has none): write a dot-prefixed temporary
//! file in the same folder, fsync it, swap it in with `renameat2(RENAME_EXCHANGE)`,
//! check that what it displaced is the version the change was computed from (swap back
//! if not: a user's newer edit is never overwritten), fsync the folder. A crash leaves
//! either the old or the new file, never half of one; a temporary file a crash leaves
//! is removed at the next start.

use super::layout::Store;
use super::state::{content_hash, Batch, Intent, State, StateError};
use std::io::Write;
use std::path::Path;
use thiserror::Error;

/// What the file must be before it is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// It must not exist (a new invitation).
    Absent,
    /// Its content must have this hash.
    Hash(String),
}

/// A write that did not happen.
#[derive(Debug, Error)]
pub enum WriteError {
    /// The file changed (or appeared, or vanished) since it was read: compute again.
    #[error("{0} changed while imipd was updating it; the change will be made on the new version")]
    Conflict(String),
    /// The disk or folder refused (full disk, permissions, missing folder).
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The state database refused the intent or the commit after the write.
    #[error(transparent)]
    State(#[from] StateError),
}

impl WriteError {
    /// Whether trying again later can succeed (a full disk can; a conflict needs a
    /// fresh computation, which the caller does).
    pub fn is_temporary(&self) -> bool {
        match self {
            WriteError::Conflict(_) | WriteError::State(_) => true,
            WriteError::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound
            ),
        }
    }
}

/// Why imipd writes a user's file: recorded with the intent, shown in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// An attendee's REPLY applied to the organizer's copy.
    ReplyApplied,
    /// The organizer's own change written back (SEQUENCE, DTSTAMP).
    OrganizerWriteBack,
    /// A message delivered into a local attendee's copy.
    Delivery,
    /// A new invitation imported.
    Import,
    /// A delivery status (SCHEDULE-STATUS) recorded.
    DeliveryStatus,
    /// A stale save merged with the answers imipd had applied.
    StaleSaveMerged,
}

impl WriteKind {
    /// Whether a write of this kind only records what imipd derives from its state
    /// (answers, delivery status, the SEQUENCE it keeps), and so is put back by imipd
    /// after any client save that lacks it. Deliveries and imports carry the
    /// organizer's content and are not.
    pub fn is_bookkeeping(self) -> bool {
        match self {
            WriteKind::ReplyApplied
            | WriteKind::OrganizerWriteBack
            | WriteKind::DeliveryStatus
            | WriteKind::StaleSaveMerged => true,
            WriteKind::Delivery | WriteKind::Import => false,
        }
    }

    /// The name used in the state and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteKind::ReplyApplied => "reply applied",
            WriteKind::OrganizerWriteBack => "organizer write-back",
            WriteKind::Delivery => "local delivery",
            WriteKind::Import => "import",
            WriteKind::DeliveryStatus => "delivery status",
            WriteKind::StaleSaveMerged => "stale save merged",
        }
    }
}

/// Writes `content` to object `key` (if it is still as `expected`) and then commits
/// `then`, with the intent recorded in the state first: if imipd dies after the write
/// and before the commit, [`recover_intents`] finds the file holding exactly what the
/// intent says and commits `then` at the next start, so imipd's own write is never
/// taken for a user's edit. Returns the ids of the queue items `then` enqueued.
pub fn write_then_commit(
    store: &Store,
    state: &State,
    key: &str,
    expected: &Expected,
    content: &str,
    why: WriteKind,
    mut then: Batch,
) -> Result<Vec<u64>, WriteError> {
    let written = content_hash(content.as_bytes());
    state.commit(Batch {
        intents: vec![(key.to_string(), Some(intent(&written, why, &then)))],
        ..Batch::default()
    })?;
    replace(store, key, expected, content)?;
    note_written(store, key, why, expected, &written);
    if failpoint_after_write(why) {
        // Test hook: die exactly in the window the intent exists for.
        std::process::abort();
    }
    then.intents.push((key.to_string(), None));
    Ok(state.commit(then)?)
}

/// The intent recorded before imipd writes the version `written` for `why`: the
/// batch `then` is committed with the write (at the next start, if imipd dies between).
fn intent(written: &str, why: WriteKind, then: &Batch) -> Intent {
    Intent {
        hash: written.to_string(),
        why: why.as_str().to_string(),
        then: then.clone(),
    }
}

/// What follows each write imipd made: the debug line, and a bookkeeping write's
/// provenance (the CalDAV front's 412 rule reads it).
fn note_written(store: &Store, key: &str, why: WriteKind, expected: &Expected, written: &str) {
    tracing::debug!(object = key, why = why.as_str(), expected = ?expected, written = %written, "written");
    if let (true, Expected::Hash(before)) = (why.is_bookkeeping(), expected) {
        store.provenance().record_bookkeeping(key, before, written);
    }
}

/// One object's part of [`write_then_commit_all`]: the file to write first, if any,
/// and what to commit once it is in place.
#[derive(Debug)]
pub struct Change {
    /// The file to write first, if any.
    pub write: Option<PlannedWrite>,
    /// Committed once the write is in place (or at once, without one).
    pub then: Batch,
}

/// The write of a [`Change`], as [`write_then_commit`] takes it.
#[derive(Debug)]
pub struct PlannedWrite {
    /// The object.
    pub key: String,
    /// What the file must still hold.
    pub expected: Expected,
    /// The new content.
    pub content: String,
    /// Why imipd writes.
    pub why: WriteKind,
}

/// [`write_then_commit`] for several objects at once (group commit): one commit for
/// all their intents, each file written, one commit for everything that follows (and
/// for the changes without a file to write). Each object still gets its write and its
/// batch, or neither: a crash between the two commits leaves intents that
/// [`recover_intents`] settles one by one, as after a single write. Each change's
/// outcome, in order; a write that meets a user's save is a [`WriteError::Conflict`]
/// and commits nothing of its change.
pub fn write_then_commit_all(
    store: &Store,
    state: &State,
    changes: Vec<Change>,
) -> Vec<Result<(), WriteError>> {
    // Each written version's hash, in the order of the writes: named by its intent,
    // then noted once the file holds it.
    let hashes: Vec<String> = changes
        .iter()
        .filter_map(|change| change.write.as_ref())
        .map(|write| content_hash(write.content.as_bytes()))
        .collect();
    let intents: Vec<(String, Option<Intent>)> = changes
        .iter()
        .filter_map(|change| Some((change.write.as_ref()?, &change.then)))
        .zip(&hashes)
        .map(|((write, then), hash)| (write.key.clone(), Some(intent(hash, write.why, then))))
        .collect();
    if !intents.is_empty() {
        if let Err(err) = state.commit(Batch {
            intents,
            ..Batch::default()
        }) {
            // Nothing was written: each change tries alone and gets its own error.
            tracing::debug!(%err, "the shared intents did not commit; one change at a time");
            return changes
                .into_iter()
                .map(|change| match change.write {
                    Some(w) => write_then_commit(
                        store,
                        state,
                        &w.key,
                        &w.expected,
                        &w.content,
                        w.why,
                        change.then,
                    )
                    .map(|_| ()),
                    None => state.commit(change.then).map(|_| ()).map_err(Into::into),
                })
                .collect();
        }
    }
    let writes: Vec<&PlannedWrite> = changes.iter().filter_map(|c| c.write.as_ref()).collect();
    let mut written = replace_all(store, &writes).into_iter();
    let mut hashes = hashes.iter();
    let mut outcomes: Vec<Option<Result<(), WriteError>>> = Vec::with_capacity(changes.len());
    let mut batches = Vec::with_capacity(changes.len());
    for Change { write, mut then } in changes {
        if let Some(w) = write {
            // As in write_then_commit, a failed write leaves its intent for the next
            // start to drop (the file does not hold what it names).
            let hash = hashes.next();
            if let Some(Err(err)) = written.next() {
                outcomes.push(Some(Err(err)));
                continue;
            }
            if let Some(hash) = hash {
                note_written(store, &w.key, w.why, &w.expected, hash);
            }
            then.intents.push((w.key, None));
        }
        outcomes.push(None);
        batches.push(then);
    }
    let mut committed = state.commit_all(batches).into_iter();
    outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Some(failed) => failed,
            None => match committed.next() {
                Some(result) => result.map(|_| ()).map_err(Into::into),
                None => Ok(()),
            },
        })
        .collect()
}

/// At most this many files of a group are written at the same time: a disk completes
/// several fsyncs in flight together in about the time of one (the journal commits
/// them together), so a group's writes cost a few flushes, not one or two per file.
const PARALLEL_WRITES: usize = 8;

/// [`replace`] for each of `writes` (different objects), several at a time; each
/// outcome, in order. The crash tests' failpoint fires right after the first write
/// that finishes, with the others of the group unwritten or half-written (their
/// temporary files are removed at the next start).
fn replace_all(store: &Store, writes: &[&PlannedWrite]) -> Vec<Result<(), WriteError>> {
    let one = |w: &PlannedWrite| {
        let result = replace(store, &w.key, &w.expected, &w.content);
        if result.is_ok() && failpoint_after_write(w.why) {
            // Test hook: die right after a write of the group, before its commit.
            std::process::abort();
        }
        result
    };
    let stopped = |w: &&PlannedWrite| {
        Err(WriteError::Io {
            path: store.path_for(&w.key).display().to_string(),
            source: std::io::Error::other("the write stopped unexpectedly"),
        })
    };
    crate::threads::map_in_threads(writes, PARALLEL_WRITES, |w| one(w), stopped)
}

/// Whether the crash tests asked this process to die right after a write of `why`
/// (environment `IMIPD_FAILPOINT_AFTER_WRITE`, e.g. `reply applied`), before its commit.
fn failpoint_after_write(why: WriteKind) -> bool {
    static FAILPOINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    FAILPOINT
        .get_or_init(|| std::env::var("IMIPD_FAILPOINT_AFTER_WRITE").ok())
        .as_deref()
        == Some(why.as_str())
}

/// At start, before anything is scanned: settles the writes a crash interrupted. A
/// file that holds exactly what an intent was about to write is imipd's own write, and
/// the intent's batch is committed now; otherwise the write never happened (or the
/// user saved since) and the intent is dropped. Returns (committed, dropped).
pub fn recover_intents(store: &Store, state: &State) -> Result<(usize, usize), StateError> {
    let mut committed = 0;
    let mut dropped = 0;
    for (key, intent) in state.intents()? {
        let on_disk = match store.read(&key) {
            Ok(Some((bytes, _))) => Some(content_hash(&bytes)),
            _ => None,
        };
        let mut batch = if on_disk.as_deref() == Some(intent.hash.as_str()) {
            tracing::info!(object = %key, why = %intent.why, "a write interrupted by a stop is recognised as imipd's own");
            committed += 1;
            intent.then
        } else {
            dropped += 1;
            Batch::default()
        };
        batch.intents.push((key, None));
        state.commit(batch)?;
    }
    Ok((committed, dropped))
}

/// Replaces (or creates) the object `key` with `content` if it is still as `expected`.
///
/// A compare-and-swap, not a check followed by a rename: a client saving between the
/// check and the rename would otherwise be overwritten. The new file is swapped in
/// with `renameat2(RENAME_EXCHANGE)`, which hands back exactly what was at the path;
/// if that is not the expected version (a save landed meanwhile, by rename or in
/// place), it is swapped back and the caller computes again on the user's version.
/// A new object is created with `link`, which fails if a file appeared meanwhile.
pub fn replace(
    store: &Store,
    key: &str,
    expected: &Expected,
    content: &str,
) -> Result<(), WriteError> {
    let path = store.path_for(key);
    let io = |source: std::io::Error| WriteError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = path
        .parent()
        .ok_or_else(|| io(std::io::Error::other("no parent folder")))?;
    let _lock = store.lock().map_err(io)?;

    // A cheap look first: most conflicts are seen here, before anything is written.
    let current_bytes = match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let current = current_bytes.as_deref().map(content_hash);
    if !expected.matches(current.as_deref()) {
        return Err(WriteError::Conflict(key.to_string()));
    }
    #[cfg(debug_assertions)]
    assert_no_new_problems(key, current_bytes.as_deref(), content);

    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("object.ics");
    let temp = dir.join(temp_name(name));
    if let Err(e) = write_and_sync(&temp, content.as_bytes()) {
        let _ = std::fs::remove_file(&temp);
        return Err(io(e));
    }
    // Look again right before the swap: writing and syncing took milliseconds, and a
    // save seen now is refused without ever showing imipd's version at the path.
    let swapped = match std::fs::read(&path) {
        Ok(bytes) if !expected.matches(Some(&content_hash(&bytes))) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && *expected != Expected::Absent => {
            Ok(false)
        }
        _ => match expected {
            Expected::Absent => create_new(&temp, &path),
            Expected::Hash(want) => swap_in(&temp, &path, want, &content_hash(content.as_bytes())),
        },
    };
    let _ = std::fs::remove_file(&temp);
    match swapped {
        // A swap already made the folder durable (its second look comes after that).
        Ok(true) if matches!(expected, Expected::Hash(_)) => Ok(()),
        Ok(true) => sync_dir(dir).map_err(io),
        Ok(false) => Err(WriteError::Conflict(key.to_string())),
        Err(e) => Err(io(e)),
    }
}

/// Debug builds, before every write: imipd never writes a file with an RFC 5545
/// problem (see `itip::validate`) that the file it replaces did not already have (a
/// user's own file may have one; imipd leaves it as it found it). A new file must
/// have none.
#[cfg(debug_assertions)]
fn assert_no_new_problems(key: &str, before: Option<&[u8]>, content: &str) {
    use crate::itip::validate::check_text;
    let Err(after) = check_text(content) else {
        return;
    };
    let before = before
        .map(String::from_utf8_lossy)
        .and_then(|text| check_text(&text).err())
        .map(|invalid| invalid.problems)
        .unwrap_or_default();
    let new: Vec<&String> = after
        .problems
        .iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(
        new.is_empty(),
        "imipd was about to write {key} with RFC 5545 problems it did not read: {new:?}\n{content}"
    );
}

impl Expected {
    /// Whether a file whose content has hash `current` (`None`: no file) is as expected.
    fn matches(&self, current: Option<&str>) -> bool {
        match (self, current) {
            (Expected::Absent, None) => true,
            (Expected::Hash(want), Some(have)) => want == have,
            _ => false,
        }
    }
}

/// The prefix and suffix of every temporary file imipd writes in a calendar folder:
/// `.<name>.imipd-<pid>-<n>.tmp`. A SIGKILL can leave one behind; [`remove_temp_files`]
/// removes exactly these at start.
const TEMP_MARK: &str = ".imipd-";
const TEMP_SUFFIX: &str = ".tmp";

fn temp_name(name: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(".{name}{TEMP_MARK}{}-{n}{TEMP_SUFFIX}", std::process::id())
}

/// Whether `file_name` is one of imipd's temporary files (and nothing else: a user's
/// or a client's own dot files never match).
pub fn is_own_temp_file(file_name: &str) -> bool {
    let Some(rest) = file_name.strip_prefix('.') else {
        return false;
    };
    let Some(rest) = rest.strip_suffix(TEMP_SUFFIX) else {
        return false;
    };
    let Some(at) = rest.rfind(TEMP_MARK) else {
        return false;
    };
    let (object, tail) = (&rest[..at], &rest[at + TEMP_MARK.len()..]);
    let mut numbers = tail.split('-');
    let digits =
        |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    object.ends_with(".ics")
        && digits(numbers.next())
        && digits(numbers.next())
        && numbers.next().is_none()
}

/// Removes imipd's own temporary files (left by a process killed mid-write) from
/// the calendar folders of every user; returns how many were removed. Nothing else
/// is touched: other dot files are clients' and Radicale's.
pub fn remove_temp_files(store: &Store) -> usize {
    let mut removed = 0;
    for user in store.users() {
        for dir in store.calendar_dirs(&user.name) {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.filter_map(|e| e.ok()) {
                let name = entry.file_name();
                let is_file = entry.file_type().is_ok_and(|t| t.is_file());
                if is_file
                    && name.to_str().is_some_and(is_own_temp_file)
                    && std::fs::remove_file(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
    }
    removed
}

/// Puts `temp` at `path` only if nothing is there: `link` fails if a file appeared.
fn create_new(temp: &Path, path: &Path) -> std::io::Result<bool> {
    match std::fs::hard_link(temp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Swaps `temp` (content hash `ours`) in at `path` if what was there has hash `want`.
/// `Ok(false)`: it had not, and the user's file is back where it was.
fn swap_in(temp: &Path, path: &Path, want: &str, ours: &str) -> std::io::Result<bool> {
    match exchange(temp, path) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
            // A file system without RENAME_EXCHANGE: check and rename, as close as
            // this file system allows.
            let now = std::fs::read(path).map(|b| content_hash(&b)).ok();
            if now.as_deref() != Some(want) {
                return Ok(false);
            }
            std::fs::rename(temp, path)?;
            sync_dir(path.parent().unwrap_or(Path::new(".")))?;
            return Ok(true);
        }
        Err(e) => return Err(e),
    }
    // `temp` now names what was at the path. Keep it open: a client writing in place
    // into it after this look is seen by the second look below.
    let mut displaced = std::fs::File::open(temp)?;
    let first = read_hash(&mut displaced)?;
    if first != want {
        restore(temp, path, &first, ours)?;
        return Ok(false);
    }
    // The second look, after the folder is made durable (milliseconds later): an
    // in-place save that had opened the old file before the swap has shown by now.
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    let second = read_hash(&mut displaced)?;
    if second != want {
        restore(temp, path, &second, ours)?;
        return Ok(false);
    }
    Ok(true)
}

/// Puts the user's file (now at `temp`, content hash `theirs`) back at `path`, where
/// imipd's (hash `ours`) is. A save landing on `path` meanwhile is newer than both and
/// is what stays: every swap hands back what it displaced, so nothing is dropped.
fn restore(temp: &Path, path: &Path, theirs: &str, ours: &str) -> std::io::Result<()> {
    let mut placing = theirs.to_string();
    let mut expect_back = ours.to_string();
    for _ in 0..16 {
        exchange(temp, path)?;
        let back = read_hash(&mut std::fs::File::open(temp)?)?;
        if back == expect_back {
            return Ok(());
        }
        // A newer save was at the path: it goes back there, and what was just placed
        // is what the next swap should hand back.
        expect_back = std::mem::replace(&mut placing, back);
    }
    // Never reached in practice (16 saves within microseconds). What `temp` holds now
    // may be a user's version: keep it under a name no scan or clean-up takes.
    let kept = temp.with_extension("imipd-kept");
    let _ = std::fs::rename(temp, &kept);
    Err(std::io::Error::other(format!(
        "the file kept being replaced while imipd put the user's version back; a version is kept as {}",
        kept.display()
    )))
}

fn read_hash(file: &mut std::fs::File) -> std::io::Result<String> {
    use std::io::{Read, Seek};
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(content_hash(&bytes))
}

/// `renameat2(a, b, RENAME_EXCHANGE)`: both names stay, their files trade places.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let b = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths; renameat2 only reads them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn write_and_sync(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a rename durable: fsync the folder that holds the entry.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Layout;

    fn store(root: &Path, layout: Layout) -> Store {
        crate::store::layout::test_store(root, layout, 1 << 20)
    }

    /// A valid calendar object (every file a test writes must validate) titled `name`.
    fn object(name: &str) -> String {
        format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:u1\r\n\
             DTSTAMP:20300101T000000Z\r\nDTSTART:20300102T100000Z\r\nSUMMARY:{name}\r\n\
             END:VEVENT\r\nEND:VCALENDAR\r\n"
        )
    }

    #[test]
    fn writes_only_over_the_expected_version() {
        let dir = std::env::temp_dir().join(format!("imipd-write-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("collection-root/alice/cal")).expect("dirs");
        let s = store(&dir, Layout::Radicale);
        let key = "alice/cal/a.ics";
        replace(&s, key, &Expected::Absent, &object("v1")).expect("create");
        assert!(matches!(
            replace(&s, key, &Expected::Absent, &object("again")),
            Err(WriteError::Conflict(_))
        ));
        let stale = Expected::Hash(content_hash(object("v0").as_bytes()));
        assert!(matches!(
            replace(&s, key, &stale, &object("v2")),
            Err(WriteError::Conflict(_))
        ));
        replace(
            &s,
            key,
            &Expected::Hash(content_hash(object("v1").as_bytes())),
            &object("v2"),
        )
        .expect("replace");
        assert_eq!(
            std::fs::read_to_string(s.path_for(key)).expect("read"),
            object("v2")
        );
        assert!(
            dir.join(".Radicale.lock").exists(),
            "Radicale's lock file is used"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("collection-root/alice/cal"))
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "no temporary files left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_imipds_own_temporary_files_count_as_its_own() {
        assert!(is_own_temp_file(".a.ics.imipd-123-0.tmp"));
        assert!(is_own_temp_file(&temp_name("ev 1.ics")));
        for other in [
            ".a.ics.swp",
            ".a.ics.tmp",
            "a.ics.imipd-1-0.tmp",
            ".a.ics.imipd-x-0.tmp",
            ".a.ics.imipd-1-0.tmp.bak",
            ".Radicale.lock",
            ".a.txt.imipd-1-0.tmp",
        ] {
            assert!(!is_own_temp_file(other), "{other}");
        }
    }

    #[test]
    fn an_intent_whose_file_was_written_is_committed_at_start_and_others_dropped() {
        use crate::store::state::ObjectRecord;
        let dir = std::env::temp_dir().join(format!("imipd-intents-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/alice/cal")).expect("dirs");
        let s = store(&dir.join("root"), Layout::Vdir);
        let state = State::open(&dir.join("state.redb")).expect("state");
        let record = |text: &str| ObjectRecord {
            user: "alice".into(),
            uid: Some("u1".into()),
            seen_hash: content_hash(text.as_bytes()),
            baseline: Some(text.into()),
            written_hash: Some(content_hash(text.as_bytes())),
            last_error: None,
        };
        let intent = |key: &str, text: &str| {
            (
                key.to_string(),
                Some(Intent {
                    hash: content_hash(text.as_bytes()),
                    why: WriteKind::ReplyApplied.as_str().into(),
                    then: Batch {
                        objects: vec![(key.to_string(), Some(record(text)))],
                        ..Batch::default()
                    },
                }),
            )
        };
        // As a crash leaves them: both intents recorded, only the first file written.
        state
            .commit(Batch {
                intents: vec![
                    intent("alice/cal/a.ics", &object("written")),
                    intent("alice/cal/b.ics", "never"),
                ],
                ..Batch::default()
            })
            .expect("intents");
        replace(&s, "alice/cal/a.ics", &Expected::Absent, &object("written")).expect("write");
        std::fs::write(dir.join("root/alice/cal/b.ics"), "the user's").expect("user");
        assert_eq!(recover_intents(&s, &state).expect("recover"), (1, 1));
        assert_eq!(
            state.object("alice/cal/a.ics").expect("read"),
            Some(record(&object("written")))
        );
        assert_eq!(state.object("alice/cal/b.ics").expect("read"), None);
        assert!(state.intents().expect("read").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_file() {
        let s = store(Path::new("/nonexistent-imipd"), Layout::Vdir);
        let err =
            replace(&s, "alice/cal/a.ics", &Expected::Absent, &object("x")).expect_err("no folder");
        assert!(
            err.to_string()
                .contains("/nonexistent-imipd/alice/cal/a.ics"),
            "{err}"
        );
    }
}
