//! `imipd serve`: the running service, read top to bottom.
//!
//! 1. Read the configuration, open the state, scan the stores (a baseline for users
//!    seen for the first time).
//! 2. Start three loops: the **store loop** turns file events into processed changes,
//!    the **queue loop** delivers queued messages, the **LMTP server** applies incoming
//!    mail. Store writes from all three go through one lock, so each object's file and
//!    its baseline always change together.
//! 3. Tell systemd we are ready; wait for a signal. SIGHUP reloads the user map;
//!    SIGTERM or SIGINT closes the listeners, lets work in flight finish, and exits.

use super::queue::{Attempt, Handover, QueueSettings, Worker};
use super::systemd;
use crate::config::{Config, ConfigError};
use crate::store::layout::Store;
use crate::store::process::{Decision, ProcessError, Processor};
use crate::store::scan::{process_settled, scan_all};
use crate::store::state::{Route, State, StateError};
use crate::store::watch::{folder_keys, watch, Debouncer, Hint};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{watch as signal_watch, Notify};

/// Why the daemon could not start or had to stop.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state database is unusable.
    #[error(transparent)]
    State(#[from] StateError),
    /// The store could not be processed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A folder or listener could not be set up.
    #[error("{0}")]
    Setup(String),
}

/// What every loop shares.
pub struct Shared {
    /// Where the configuration came from, for SIGHUP.
    pub config_path: PathBuf,
    /// The current configuration.
    pub config: RwLock<Arc<Config>>,
    /// The calendar store with the current user map.
    pub store: RwLock<Arc<Store>>,
    /// imipd's state.
    pub state: Arc<State>,
    /// Held while any loop changes a calendar file and its record: a file and its
    /// baseline must change together.
    pub store_writes: Mutex<()>,
    /// Wakes the queue loop when something was queued.
    pub queue_wake: Notify,
}

impl Shared {
    /// The current store.
    pub fn store(&self) -> Arc<Store> {
        self.store
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Runs `f` while holding the store write lock.
    pub fn with_store_lock<T>(&self, f: impl FnOnce() -> T) -> T {
        let _guard = self.store_writes.lock().unwrap_or_else(|p| p.into_inner());
        f()
    }

    /// Re-reads the configuration's user map (SIGHUP). Other settings need a restart.
    pub fn reload(&self) -> Result<usize, ConfigError> {
        let config = Config::load(&self.config_path)?;
        let store = Store::new(&config.store, config.users()?);
        let users = store.users().count();
        if let Ok(mut slot) = self.store.write() {
            *slot = Arc::new(store);
        }
        if let Ok(mut slot) = self.config.write() {
            *slot = Arc::new(config);
        }
        Ok(users)
    }
}

/// The current time as a UTC timestamp.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Opens everything and takes the first scan; returns the shared state.
pub async fn start(config_path: &Path) -> Result<Arc<Shared>, DaemonError> {
    let config = Config::load(config_path)?;
    for dir in [config.state.parent(), Some(config.queue.outbox.as_path())]
        .into_iter()
        .flatten()
    {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|e| DaemonError::Setup(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    let state = Arc::new(State::open(&config.state)?);
    let store = Store::new(&config.store, config.users()?);
    let shared = Arc::new(Shared {
        config_path: config_path.to_path_buf(),
        config: RwLock::new(Arc::new(config)),
        store: RwLock::new(Arc::new(store)),
        state,
        store_writes: Mutex::new(()),
        queue_wake: Notify::new(),
    });
    let scan_shared = shared.clone();
    let report = tokio::task::spawn_blocking(move || {
        let store = scan_shared.store();
        let config = scan_shared.config();
        let processor = Processor {
            store: &store,
            state: &scan_shared.state,
            reply_details: config.reply_details(),
        };
        let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        scan_shared.with_store_lock(|| scan_all(&processor, now(), progress))
    })
    .await
    .map_err(|e| DaemonError::Setup(format!("the first scan stopped: {e}")))??;
    tracing::info!(
        users = report.users,
        objects = report.objects,
        baselined = report.baselined,
        queued = report.queued,
        skipped = report.skipped,
        "store scanned: {} users, {} objects ({} recorded as baseline, nothing sent for them)",
        report.users,
        report.objects,
        report.baselined
    );
    Ok(shared)
}

/// Processes one hint's objects; returns how many messages were queued.
fn process_hint(shared: &Shared, hint: &Hint) -> Result<usize, DaemonError> {
    let store = shared.store();
    let config = shared.config();
    let processor = Processor {
        store: &store,
        state: &shared.state,
        reply_details: config.reply_details(),
    };
    let keys = match hint {
        Hint::Object(key) => vec![key.clone()],
        Hint::Folder(folder) => {
            let known = shared
                .state
                .objects_with_prefix(&format!("{folder}/"))?
                .into_iter()
                .map(|(k, _)| k);
            folder_keys(&store, known, folder)
        }
        Hint::Everything => {
            let report = shared.with_store_lock(|| scan_all(&processor, now(), false))?;
            return Ok(report.queued);
        }
    };
    let mut queued = 0;
    for key in keys {
        let decision = shared.with_store_lock(|| process_settled(&processor, &key, now()))?;
        queued += log_decision(&key, &decision);
    }
    Ok(queued)
}

/// One log line per processed change; returns the number of messages queued.
fn log_decision(key: &str, decision: &Decision) -> usize {
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

/// The store loop: file events, settled, then processed; a full scan every
/// `rescan_interval` seconds anyway.
pub async fn store_loop(
    shared: Arc<Shared>,
    mut shutdown: signal_watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let store = shared.store();
    let (_watcher, mut hints) = watch(&store).map_err(|e| {
        DaemonError::Setup(format!(
            "cannot watch {}: {e}",
            store.users_root().display()
        ))
    })?;
    let config = shared.config();
    let mut debouncer = Debouncer::new(Duration::from_millis(config.store.debounce_ms));
    let rescan = Duration::from_secs(config.store.rescan_interval.max(1));
    let mut next_scan = Instant::now() + rescan;
    loop {
        let wake_at = debouncer.next_due().unwrap_or(next_scan).min(next_scan);
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            hint = hints.recv() => match hint {
                Some(hint) => debouncer.add(hint, Instant::now()),
                None => return Err(DaemonError::Setup("the file watcher stopped".into())),
            },
            _ = tokio::time::sleep_until(wake_at.into()) => {}
        }
        let mut due = debouncer.due(Instant::now());
        if Instant::now() >= next_scan {
            due = vec![Hint::Everything];
            next_scan = Instant::now() + rescan;
        }
        for hint in due {
            let worker = shared.clone();
            let result = tokio::task::spawn_blocking(move || process_hint(&worker, &hint)).await;
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

/// The queue loop: delivers what is due, waits for new items or the next retry.
pub async fn queue_loop<H: Handover + Send>(
    shared: Arc<Shared>,
    settings: Arc<QueueSettings>,
    mut out: H,
    mut shutdown: signal_watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let mut jitter = Jitter::seeded();
    loop {
        let due = {
            let store = shared.store();
            let worker = Worker {
                store: &store,
                state: &shared.state,
                settings: &settings,
            };
            worker.due(now())?
        };
        for item in due {
            if *shutdown.borrow() {
                return Ok(());
            }
            let attempt = match &item.route {
                Route::Local { user } => {
                    let (s, settings, user, item) =
                        (shared.clone(), settings.clone(), user.clone(), item.clone());
                    tokio::task::spawn_blocking(move || {
                        let store = s.store();
                        let worker = Worker {
                            store: &store,
                            state: &s.state,
                            settings: &settings,
                        };
                        s.with_store_lock(|| worker.deliver_local(&item, &user, now()))
                    })
                    .await
                    .unwrap_or_else(|e| Attempt::Retry(format!("delivery stopped: {e}")))
                }
                Route::Mail => {
                    let store = shared.store();
                    let worker = Worker {
                        store: &store,
                        state: &shared.state,
                        settings: &settings,
                    };
                    worker.deliver_mail(&item, &mut out, now()).await
                }
            };
            match &attempt {
                Attempt::Delivered(status) => {
                    tracing::info!(id = item.id, method = %item.method, rcpt = %item.rcpt, uid = %item.uid, status, "delivered")
                }
                Attempt::Retry(reason) => {
                    tracing::warn!(id = item.id, method = %item.method, rcpt = %item.rcpt, %reason, attempts = item.attempts + 1, "delivery failed, will retry")
                }
                Attempt::Failed(status, reason) => {
                    tracing::warn!(id = item.id, method = %item.method, rcpt = %item.rcpt, status, %reason, "delivery failed for good")
                }
            }
            let (s, settings, item, r) = (
                shared.clone(),
                settings.clone(),
                item.clone(),
                jitter.next(),
            );
            tokio::task::spawn_blocking(move || {
                let store = s.store();
                let worker = Worker {
                    store: &store,
                    state: &s.state,
                    settings: &settings,
                };
                s.with_store_lock(|| worker.settle(&item, &attempt, now(), r))
            })
            .await
            .map_err(|e| DaemonError::Setup(format!("recording a delivery stopped: {e}")))??;
        }
        let next = {
            let store = shared.store();
            let worker = Worker {
                store: &store,
                state: &shared.state,
                settings: &settings,
            };
            worker.next_due()?
        };
        let wait = match next {
            Some(at) => Duration::from_secs((at - now()).clamp(0, 60) as u64),
            None => Duration::from_secs(60),
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            _ = shared.queue_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Spreads retries: a small xorshift generator seeded from the clock.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9)
            | 1;
        Jitter(seed)
    }

    /// A number in 0..=1.
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 10_000) as f64 / 10_000.0
    }
}

/// Waits for SIGTERM/SIGINT (returns) and handles SIGHUP (reload) meanwhile.
pub async fn wait_for_shutdown(shared: &Shared) -> Result<(), DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let setup = |e: std::io::Error| DaemonError::Setup(format!("cannot handle signals: {e}"));
    let mut term = signal(SignalKind::terminate()).map_err(setup)?;
    let mut int = signal(SignalKind::interrupt()).map_err(setup)?;
    let mut hup = signal(SignalKind::hangup()).map_err(setup)?;
    let watchdog = systemd::watchdog_interval();
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(()); }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(()); }
            _ = hup.recv() => match shared.reload() {
                Ok(users) => tracing::info!(users, "SIGHUP: user map reloaded"),
                Err(err) => tracing::error!(%err, "SIGHUP: configuration not reloaded, keeping the old one"),
            },
            _ = tokio::time::sleep(watchdog.unwrap_or(Duration::from_secs(3600))) => {
                if watchdog.is_some() {
                    systemd::notify("WATCHDOG=1");
                }
            }
        }
    }
}
