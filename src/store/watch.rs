//! Noticing changes: file-system events as hints, settled before they are acted on.
//!
//! notify (inotify) reports more than changes (reads), less than changes (queue
//! overflow) and changes in several pieces (an editor's write, rename, write again).
//! imipd therefore treats each event only as a hint of *where* to look: a file that may
//! have changed, a folder whose contents may have changed, or "look everywhere". The
//! [`Debouncer`] waits until a place has been quiet for the debounce time, so the pieces
//! of one save settle into one change; the daemon then processes what is due, and runs
//! a slow full scan anyway.

use super::layout::Store;
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

/// What the watcher reports: changed paths, or that events were lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Noticed {
    /// These paths changed (map them with [`hints_for`] and the current store).
    Paths(Vec<std::path::PathBuf>),
    /// Events were lost: look everywhere.
    Lost,
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
            Ok(event) if event.need_rescan() => Some(Noticed::Lost),
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => None,
            Ok(event) => Some(Noticed::Paths(event.paths)),
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
        Noticed::Paths(paths) => paths
            .iter()
            .filter_map(|path| hint_for_path(store, path))
            .collect(),
    }
}

fn hint_for_path(store: &Store, path: &Path) -> Option<Hint> {
    if let Some(key) = store.key_for(path) {
        return Some(Hint::Object(key));
    }
    // A temporary file, a renamed folder or a user folder: look at the whole folder.
    let relative = path.strip_prefix(store.users_root()).ok()?;
    let parts: Vec<&str> = relative.iter().filter_map(|p| p.to_str()).collect();
    match parts.as_slice() {
        [] => Some(Hint::Everything),
        [user] if store.user(user).is_some() => Some(Hint::Everything),
        [user, calendar, ..] if store.user(user).is_some() && !calendar.starts_with('.') => {
            Some(Hint::Folder(format!("{user}/{calendar}")))
        }
        _ => None,
    }
}

/// Holds hints until their place has been quiet for the debounce time.
#[derive(Debug)]
pub struct Debouncer {
    quiet: Duration,
    pending: BTreeMap<Hint, Instant>,
}

impl Debouncer {
    /// A debouncer that waits `quiet` after the last event of a place.
    pub fn new(quiet: Duration) -> Self {
        Debouncer {
            quiet,
            pending: BTreeMap::new(),
        }
    }

    /// Records a hint seen at `now`.
    pub fn add(&mut self, hint: Hint, now: Instant) {
        self.pending.insert(hint, now);
    }

    /// The hints whose place has been quiet long enough; they are removed. A pending
    /// `Everything` swallows the rest.
    pub fn due(&mut self, now: Instant) -> Vec<Hint> {
        let ready: Vec<Hint> = self
            .pending
            .iter()
            .filter(|(_, seen)| now.duration_since(**seen) >= self.quiet)
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
        self.pending.values().min().map(|seen| *seen + self.quiet)
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
