//! Noticing changes: file-system events as hints, settled before they are acted on.
//!
//! notify (inotify) reports more than changes (reads), less than changes (queue
//! overflow) and changes in several pieces (an editor's write, rename, write again).
//! imipd therefore treats each event only as a hint of *where* to look: a file that may
//! have changed, a folder whose contents may have changed, or "look everywhere". The
//! [`Debouncer`] waits until a place has been quiet for the debounce time, so the pieces
//! of one save settle into one change; the daemon then processes what is due, and runs
//! a slow full scan anyway.
//!
//! One kind of event says more than "look here": a *finished* write, the close of a
//! file that was open for writing, or a file renamed into place (how Radicale and
//! careful clients save). The writer is done with that version, so an object file
//! finished this way is due after [`FINISHED_SETTLE`] instead of the whole debounce
//! time (which is what made a change take 150 ms before anything happened). A write
//! that starts again (any other event on the file) makes it wait the debounce time
//! again. Correctness does not rest on this: a file read while incomplete does not
//! parse and is skipped, and the complete version is processed when its own events
//! arrive; a file that changes while being processed is processed again.

use super::layout::Store;
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Where to look after an event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hint {
    /// One object file (its key).
    Object(String),
    /// Every object of one calendar folder (`user/calendar`).
    Folder(String),
    /// Everything: events were lost.
    Everything,
}

/// How long an object whose write finished waits for the other events of the same save
/// (a rename is reported twice, as "to" and as "both"), so that one save is processed
/// once. Never longer than the debounce time.
pub const FINISHED_SETTLE: Duration = Duration::from_millis(2);

/// What the watcher reports: changed paths, or that events were lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Noticed {
    /// These paths changed (map them with [`hints_for`] and the current store).
    Paths(Vec<std::path::PathBuf>),
    /// These paths were just written completely: closed after writing, or renamed into
    /// place. An object file among them need not wait the whole debounce time.
    Finished(Vec<std::path::PathBuf>),
    /// Events were lost: look everywhere.
    Lost,
}

impl Noticed {
    /// Whether the writer is done with these paths (see [`Noticed::Finished`]).
    pub fn is_finished(&self) -> bool {
        matches!(self, Noticed::Finished(_))
    }
}

/// What one file-system event tells: nothing (a read), paths to look at, or paths
/// whose write just finished.
pub fn noticed_of(event: Event) -> Option<Noticed> {
    if event.need_rescan() {
        return Some(Noticed::Lost);
    }
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
            Some(Noticed::Finished(event.paths))
        }
        // [from, to]: the old name was reported on its own ("from"); the new one is in
        // place now.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            Some(Noticed::Finished(event.paths.into_iter().skip(1).collect()))
        }
        EventKind::Access(_) => None,
        _ => Some(Noticed::Paths(event.paths)),
    }
}

/// Starts watching the folder that holds every user's folder; what it notices arrives
/// on the returned channel. Keep the watcher alive as long as events are wanted.
/// Paths are mapped to objects later, with the user map in force then (SIGHUP may
/// change it).
pub fn watch(
    store: &Store,
) -> notify::Result<(RecommendedWatcher, mpsc::UnboundedReceiver<Noticed>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<Event>| {
        let noticed = match result {
            Ok(event) => noticed_of(event),
            Err(_) => Some(Noticed::Lost),
        };
        if let Some(noticed) = noticed {
            let _ = tx.send(noticed);
        }
    })?;
    std::fs::create_dir_all(store.users_root()).ok();
    watcher.watch(store.users_root(), RecursiveMode::Recursive)?;
    Ok((watcher, rx))
}

/// The hints of what the watcher noticed, for the current store.
pub fn hints_for(store: &Store, noticed: &Noticed) -> Vec<Hint> {
    match noticed {
        Noticed::Lost => vec![Hint::Everything],
        Noticed::Paths(paths) | Noticed::Finished(paths) => paths
            .iter()
            .filter_map(|path| hint_for_path(store, path))
            .collect(),
    }
}

fn hint_for_path(store: &Store, path: &Path) -> Option<Hint> {
    if let Some(key) = store.key_for(path) {
        return Some(Hint::Object(key));
    }
    // A calendar folder made, renamed or removed: look at the whole folder; a user's
    // folder: look everywhere. Other files (a client's or imipd's own temporary file,
    // Radicale's cache) say nothing: the object they become is reported under its own
    // name when it is renamed into place, and a folder pass for each of them would
    // re-read every object of the folder on every save.
    let relative = path.strip_prefix(store.users_root()).ok()?;
    let parts: Vec<&str> = relative.iter().filter_map(|p| p.to_str()).collect();
    match parts.as_slice() {
        [] => Some(Hint::Everything),
        [user] if store.user(user).is_some() => Some(Hint::Everything),
        [user, calendar] if store.user(user).is_some() && !calendar.starts_with('.') => {
            Some(Hint::Folder(format!("{user}/{calendar}")))
        }
        _ => None,
    }
}

/// Holds hints until their place has been quiet for the debounce time, or, for an
/// object file whose write finished, for [`FINISHED_SETTLE`].
#[derive(Debug)]
pub struct Debouncer {
    quiet: Duration,
    settle: Duration,
    /// Each pending hint with the time it becomes due.
    pending: BTreeMap<Hint, Instant>,
}

impl Debouncer {
    /// A debouncer that waits `quiet` after the last event of a place.
    pub fn new(quiet: Duration) -> Self {
        Debouncer {
            quiet,
            settle: FINISHED_SETTLE.min(quiet),
            pending: BTreeMap::new(),
        }
    }

    /// Records a hint seen at `now`: it is due once its place has been quiet for the
    /// debounce time (an earlier finished write of it is being written again).
    pub fn add(&mut self, hint: Hint, now: Instant) {
        self.pending.insert(hint, now + self.quiet);
    }

    /// Records a hint whose write finished at `now`: an object is due after the short
    /// settle time; a folder or everything still waits the debounce time (a finished
    /// temporary file says nothing about the rest of its folder).
    pub fn add_finished(&mut self, hint: Hint, now: Instant) {
        let wait = match hint {
            Hint::Object(_) => self.settle,
            Hint::Folder(_) | Hint::Everything => self.quiet,
        };
        self.pending.insert(hint, now + wait);
    }

    /// Records what the watcher noticed, as hints for the current store.
    pub fn notice(&mut self, store: &Store, noticed: &Noticed, now: Instant) {
        for hint in hints_for(store, noticed) {
            if noticed.is_finished() {
                self.add_finished(hint, now);
            } else {
                self.add(hint, now);
            }
        }
    }

    /// The hints that are due at `now`; they are removed. A due `Everything` swallows
    /// the rest.
    pub fn due(&mut self, now: Instant) -> Vec<Hint> {
        let ready: Vec<Hint> = self
            .pending
            .iter()
            .filter(|(_, due)| **due <= now)
            .map(|(hint, _)| hint.clone())
            .collect();
        for hint in &ready {
            self.pending.remove(hint);
        }
        if ready.contains(&Hint::Everything) {
            self.pending.clear();
            return vec![Hint::Everything];
        }
        ready
    }

    /// When the next hint will be due, if any is pending.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().min().copied()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// The files to process for a folder hint: on disk now, or known to the state.
pub fn folder_keys(
    store: &Store,
    known: impl IntoIterator<Item = String>,
    folder: &str,
) -> Vec<String> {
    let mut keys: Vec<String> = store
        .object_files(&store.users_root().join(folder))
        .iter()
        .filter_map(|p| store.key_for(p))
        .collect();
    let prefix = format!("{folder}/");
    keys.extend(known.into_iter().filter(|k| k.starts_with(&prefix)));
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_one_save_settle_into_one_change() {
        let start = Instant::now();
        let mut d = Debouncer::new(Duration::from_millis(100));
        let key = Hint::Object("alice/cal/a.ics".into());
        d.add(key.clone(), start);
        d.add(key.clone(), start + Duration::from_millis(60));
        assert!(
            d.due(start + Duration::from_millis(120)).is_empty(),
            "still settling"
        );
        assert_eq!(d.due(start + Duration::from_millis(170)), vec![key]);
        assert!(d.is_empty());
    }

    #[test]
    fn a_finished_write_of_an_object_is_due_without_the_debounce_wait() {
        let start = Instant::now();
        let mut d = Debouncer::new(Duration::from_millis(150));
        let key = Hint::Object("alice/cal/a.ics".into());
        let folder = Hint::Folder("alice/cal".into());
        // Created, written, closed: the close makes it due after the short settle.
        d.add(key.clone(), start);
        d.add(folder.clone(), start);
        d.add_finished(key.clone(), start + Duration::from_millis(1));
        d.add_finished(folder.clone(), start + Duration::from_millis(1));
        assert!(d.due(start).is_empty(), "not before its write finished");
        let settled = start + Duration::from_millis(1) + FINISHED_SETTLE;
        assert_eq!(d.next_due(), Some(settled));
        assert_eq!(d.due(settled), vec![key.clone()], "the folder still waits");
        assert!(d.due(start + Duration::from_millis(100)).is_empty());
        assert_eq!(d.due(start + Duration::from_millis(151)), vec![folder]);

        // Finished, then written again before it was processed: wait again.
        d.add_finished(key.clone(), start);
        d.add(key.clone(), start + Duration::from_millis(1));
        assert!(d.due(start + Duration::from_millis(100)).is_empty());
        assert_eq!(d.due(start + Duration::from_millis(151)), vec![key]);
        assert!(d.is_empty());
    }

    #[test]
    fn a_close_after_writing_or_a_rename_into_place_is_a_finished_write() {
        use notify::event::{CreateKind, DataChange};
        let path = |p: &str| std::path::PathBuf::from(p);
        let event = |kind, paths: &[&str]| {
            let mut e = Event::new(kind);
            for p in paths {
                e = e.add_path(path(p));
            }
            e
        };
        let close = event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            &["/s/a.ics"],
        );
        assert_eq!(
            noticed_of(close),
            Some(Noticed::Finished(vec![path("/s/a.ics")]))
        );
        let both = event(
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            &["/s/.a.tmp", "/s/a.ics"],
        );
        assert_eq!(
            noticed_of(both),
            Some(Noticed::Finished(vec![path("/s/a.ics")]))
        );
        let read = event(
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            &["/s/a.ics"],
        );
        assert_eq!(noticed_of(read), None);
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
        ] {
            assert_eq!(
                noticed_of(event(kind, &["/s/a.ics"])),
                Some(Noticed::Paths(vec![path("/s/a.ics")])),
                "{kind:?} is not the end of a write"
            );
        }
    }

    #[test]
    fn temporary_files_are_no_hint_but_folders_and_objects_are() {
        let store = crate::store::layout::test_store(
            Path::new("/srv/cal"),
            crate::config::Layout::Vdir,
            1 << 20,
        );
        let hints = |p: &str| hints_for(&store, &Noticed::Paths(vec![std::path::PathBuf::from(p)]));
        assert_eq!(
            hints("/srv/cal/alice/work/a.ics"),
            vec![Hint::Object("alice/work/a.ics".into())]
        );
        assert_eq!(
            hints("/srv/cal/alice/work"),
            vec![Hint::Folder("alice/work".into())]
        );
        assert_eq!(hints("/srv/cal/alice"), vec![Hint::Everything]);
        for quiet in [
            "/srv/cal/alice/work/.a.ics.tmp-1234",
            "/srv/cal/alice/work/.Radicale.cache/item/a.ics",
            "/srv/cal/alice/.hidden",
            "/srv/cal/bob/work/a.ics",
        ] {
            assert!(hints(quiet).is_empty(), "{quiet} is no hint");
        }
    }

    #[test]
    fn lost_events_mean_look_everywhere() {
        let start = Instant::now();
        let mut d = Debouncer::new(Duration::from_millis(10));
        d.add(Hint::Object("alice/cal/a.ics".into()), start);
        d.add(Hint::Everything, start);
        assert_eq!(
            d.due(start + Duration::from_millis(20)),
            vec![Hint::Everything]
        );
        assert_eq!(d.next_due(), None);
    }
}
