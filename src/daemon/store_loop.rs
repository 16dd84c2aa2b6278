//! The store loop: file events from the watcher, settled by the debouncer, processed
//! under the users' locks; a full scan every `rescan_interval`. The objects that are
//! due at the same moment (up to [`GROUP`]) are processed as one group: their write
//! intents share one commit, and what follows their writes (records and queue items)
//! shares another, so a burst of saves costs two disk flushes of the state per group
//! instead of two per change. A single save is not held back for company.

use super::activity::activity;
use super::metrics::{metrics, Metrics};
use super::shared::{now, DaemonError, Shared};
use crate::store::layout::Store;
use crate::store::process::{Decision, Processor};
use crate::store::scan::{process_settled, process_settled_all, scan_all};
use crate::store::watch::Noticed;
use crate::store::watch::{folder_keys, watch, Debouncer, Hint};
use notify::RecommendedWatcher;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch as signal_watch;

/// Processes one hint's objects; returns how many messages were queued.
fn process_hint(shared: &Shared, hint: &Hint) -> Result<usize, DaemonError> {
    shared.with_processor(|processor| process_hint_with(shared, processor, hint))
}

fn process_hint_with(
    shared: &Shared,
    processor: &Processor<'_>,
    hint: &Hint,
) -> Result<usize, DaemonError> {
    // A user imipd has never scanned (added by SIGHUP) gets a baseline first, so their
    // existing events are not mistaken for new ones.
    let user = match hint {
        Hint::Object(key) | Hint::Folder(key) => key.split('/').next(),
        Hint::Everything => None,
    };
    let hint = match user {
        Some(user) if shared.state.meta(&format!("baseline:{user}"))?.is_none() => {
            &Hint::Everything
        }
        _ => hint,
    };
    let keys = match hint {
        Hint::Object(key) => vec![key.clone()],
        Hint::Folder(folder) => {
            let known = shared
                .state
                .object_keys_with_prefix(&format!("{folder}/"))?
                .into_iter();
            folder_keys(processor.store, known, folder)
        }
        Hint::Everything => {
            let report = shared.with_store_lock(|| scan_all(processor, now(), false))?;
            if report.baselined > 0 {
                tracing::info!(
                    baselined = report.baselined,
                    "newly configured users: {} existing objects recorded as baseline, nothing sent for them",
                    report.baselined
                );
            }
            return Ok(report.queued);
        }
    };
    let mut queued = 0;
    for key in keys {
        // One object changes only its own user's files and records.
        let user = processor.store.user_of_key(&key).map(|u| u.name.as_str());
        let decision = shared.with_lock_for(user, || process_settled(processor, &key, now()))?;
        queued += log_decision(&key, &decision);
    }
    Ok(queued)
}

/// At most this many objects are processed as one group.
const GROUP: usize = 32;

/// Processes the changed objects `keys` (all different) as one group under their
/// users' locks; returns how many messages were queued. An object of a user never
/// scanned, or outside every user's folder, goes the single way.
fn process_objects(shared: &Shared, keys: &[String]) -> Result<usize, DaemonError> {
    shared.with_processor(|processor| {
        let mut queued = 0;
        let mut grouped: Vec<(&str, &str)> = Vec::new();
        for key in keys {
            let user = processor.store.user_of_key(key).map(|u| u.name.as_str());
            match user {
                Some(user) if shared.state.meta(&format!("baseline:{user}"))?.is_some() => {
                    grouped.push((user, key))
                }
                _ => queued += process_hint_with(shared, processor, &Hint::Object(key.clone()))?,
            }
        }
        let (users, keys): (Vec<&str>, Vec<&str>) = grouped.into_iter().unzip();
        if keys.is_empty() {
            return Ok(queued);
        }
        let outcomes =
            shared.with_user_locks(&users, || process_settled_all(processor, &keys, now()));
        for (key, outcome) in keys.iter().zip(outcomes) {
            match outcome {
                Ok(decision) => queued += log_decision(key, &decision),
                Err(err) => {
                    tracing::error!(object = key, %err, "processing failed; it will be retried on the next scan")
                }
            }
        }
        Ok(queued)
    })
}

/// One step of the store loop: a group of objects, or a folder pass or scan.
enum Work {
    Objects(Vec<String>),
    Hint(Hint),
}

/// The due hints as steps: the objects first, in groups of at most [`GROUP`] (each
/// once), then folder passes and scans one by one.
fn work_of(due: Vec<Hint>) -> Vec<Work> {
    let mut keys: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut others = Vec::new();
    for hint in due {
        match hint {
            Hint::Object(key) => {
                if seen.insert(key.clone()) {
                    keys.push(key);
                }
            }
            other => others.push(Work::Hint(other)),
        }
    }
    let mut work: Vec<Work> = Vec::new();
    while !keys.is_empty() {
        let rest = keys.split_off(keys.len().min(GROUP));
        work.push(Work::Objects(std::mem::replace(&mut keys, rest)));
    }
    work.extend(others);
    work
}

/// One log line per processed change; returns the number of messages queued.
fn log_decision(key: &str, decision: &Decision) -> usize {
    let counters = metrics();
    if !matches!(
        decision,
        Decision::Unchanged | Decision::Baseline | Decision::Retry
    ) {
        Metrics::inc(&counters.changes);
    }
    if let Decision::Queued(sent) | Decision::Forgotten(sent) = decision {
        counters
            .queued
            .fetch_add(sent.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
    match decision {
        Decision::Unchanged | Decision::Baseline => 0,
        Decision::Skipped(reason) => {
            tracing::warn!(object = key, %reason, "skipped");
            0
        }
        Decision::NothingToSend(reason) => {
            tracing::info!(object = key, %reason, "change processed, nothing to send");
            0
        }
        Decision::Refused(reason) => {
            activity().refused(now(), key, format!("change not scheduled: {reason}"));
            tracing::warn!(object = key, %reason, "change not scheduled; the file stays as the user wrote it");
            0
        }
        Decision::Retry => {
            tracing::info!(
                object = key,
                "the file changed while processing; processing the new version"
            );
            0
        }
        Decision::Queued(sent) | Decision::Forgotten(sent) => {
            let what: Vec<String> = sent.iter().map(|(m, r)| format!("{m} to {r}")).collect();
            let verb = if matches!(decision, Decision::Forgotten(_)) {
                "deleted"
            } else {
                "changed"
            };
            tracing::info!(
                object = key,
                messages = sent.len(),
                "{verb}: queued {}",
                what.join(", ")
            );
            sent.len()
        }
    }
}

/// The file watcher over every user's folder and what it has noticed so far: made
/// before the first scan and before "ready", so a save at any moment after start
/// reaches the store loop.
pub struct StoreWatch {
    /// Watching stops when this is dropped.
    _watcher: RecommendedWatcher,
    /// What the watcher noticed, in order.
    hints: tokio::sync::mpsc::UnboundedReceiver<Noticed>,
}

/// Starts watching `store`'s folders (recursively: one watch per folder, which takes
/// a while on a large store, so off the async threads).
pub async fn watch_store(store: Arc<Store>) -> Result<StoreWatch, DaemonError> {
    tokio::task::spawn_blocking(move || {
        watch(&store)
            .map(|(_watcher, hints)| StoreWatch { _watcher, hints })
            .map_err(|e| {
                DaemonError::Setup(format!(
                    "cannot watch {}: {e}",
                    store.users_root().display()
                ))
            })
    })
    .await
    .map_err(|e| DaemonError::Setup(format!("setting up the file watcher stopped: {e}")))?
}

/// The store loop: file events, settled, then processed; a full scan every
/// `rescan_interval` seconds anyway.
/// `watching` is made by [`watch_store`] before the daemon says it is ready, so no
/// save after that is missed.
pub async fn store_loop(
    shared: Arc<Shared>,
    watching: StoreWatch,
    mut shutdown: signal_watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let StoreWatch {
        _watcher,
        mut hints,
    } = watching;
    let config = shared.config();
    let mut debouncer = Debouncer::new(Duration::from_millis(config.store.debounce_ms));
    let rescan = Duration::from_secs(config.store.rescan_interval.max(1));
    let mut next_scan = Instant::now() + rescan;
    loop {
        let wake_at = debouncer.next_due().unwrap_or(next_scan).min(next_scan);
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            noticed = hints.recv() => match noticed {
                Some(noticed) => {
                    // Take every event already waiting, so the pieces of one save
                    // (a rename is reported twice) count once.
                    let store = shared.store();
                    debouncer.notice(&store, &noticed, Instant::now());
                    while let Ok(noticed) = hints.try_recv() {
                        debouncer.notice(&store, &noticed, Instant::now());
                    }
                }
                None => return Err(DaemonError::Setup("the file watcher stopped".into())),
            },
            _ = tokio::time::sleep_until(wake_at.into()) => {}
        }
        let mut due = debouncer.due(Instant::now());
        if Instant::now() >= next_scan {
            due = vec![Hint::Everything];
            next_scan = Instant::now() + rescan;
        }
        for step in work_of(due) {
            let worker = shared.clone();
            let result = tokio::task::spawn_blocking(move || match step {
                Work::Objects(keys) => process_objects(&worker, &keys),
                Work::Hint(hint) => process_hint(&worker, &hint),
            })
            .await;
            match result {
                Ok(Ok(queued)) if queued > 0 => shared.queue_wake.notify_one(),
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    tracing::error!(%err, "processing failed; it will be retried on the next scan")
                }
                Err(err) => tracing::error!(%err, "processing stopped unexpectedly"),
            }
        }
    }
}
