//! `imipd serve`: the running service, read top to bottom.
//!
//! 1. Read the configuration, open the state, scan the stores (a baseline for users
//!    seen for the first time).
//! 2. Start three loops: the **store loop** turns file events into processed changes,
//!    the **queue loop** delivers queued messages, the **LMTP server** applies incoming
//!    mail. Store writes from all three go through one lock, so each object's file and
//!    its baseline always change together: scans, local delivery and delivery status
//!    take it exclusively; an incoming message and the processing of one object take
//!    it shared plus a lock for that user, so different users' changes overlap.
//! 3. Tell systemd we are ready; wait for a signal. SIGHUP reloads the user map;
//!    SIGTERM or SIGINT closes the listeners, lets work in flight finish, and exits.

use super::activity::activity;
use super::inbound::{Inbound, RecipientCheck as InboundCheck, Verdict};
use super::metrics::{metrics, Metrics};
use super::queue::{Attempt, QueueSettings, StatusNote, Worker};
use super::systemd;
use crate::config::{Config, ConfigError};
use crate::imip::sender_auth::{ConnectingClient, FromCheck, SenderVerifier, VerifierSettings};
use crate::itip::status::SENT;
use crate::smtp::retry::{RandomSource, RetryPolicy, SplitMix64};
use crate::smtp::transport::Transport;
use crate::smtp::verp::BounceAddress;
use crate::smtp::{
    LmtpConfig, LmtpHandler, LmtpServer, ReceivedMessage, RecipientCheck, RecipientOutcome,
};
use crate::store::layout::Store;
use crate::store::process::{Decision, ProcessError, Processor};
use crate::store::scan::{process_settled, scan_all};
use crate::store::state::{Route, State, StateError};
use crate::store::watch::{folder_keys, watch, Debouncer, Hint};
use std::collections::HashMap;
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
    /// baseline must change together. Taken exclusively by [`Shared::with_store_lock`]
    /// (scans, local delivery, delivery status), shared by [`Shared::with_user_lock`]
    /// (which adds a per-user lock), so changes to different users' calendars overlap
    /// and their disk flushes are shared.
    pub store_writes: RwLock<()>,
    /// One lock per user, taken under a shared `store_writes`: a user's files and their
    /// records are changed by one writer at a time.
    user_writes: Mutex<HashMap<String, Arc<Mutex<()>>>>,
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

    /// Runs `f` with a change processor over the current store and configuration.
    pub fn with_processor<T>(&self, f: impl FnOnce(&Processor<'_>) -> T) -> T {
        let store = self.store();
        let config = self.config();
        f(&Processor {
            store: &store,
            state: &self.state,
            reply_details: config.reply_details(),
        })
    }

    /// Runs `f` with a queue worker over the current store.
    pub fn with_worker<T>(&self, settings: &QueueSettings, f: impl FnOnce(&Worker<'_>) -> T) -> T {
        let store = self.store();
        f(&Worker {
            store: &store,
            state: &self.state,
            settings,
        })
    }

    /// Runs `f` while holding the store write lock: no other writer changes any file.
    pub fn with_store_lock<T>(&self, f: impl FnOnce() -> T) -> T {
        let _guard = self.store_writes.write().unwrap_or_else(|p| p.into_inner());
        f()
    }

    /// Runs `f` while no other writer changes `user`'s files: writers of other users'
    /// files may run meanwhile, [`Self::with_store_lock`] may not. `f` must change only
    /// files (and records) of `user`.
    pub fn with_user_lock<T>(&self, user: &str, f: impl FnOnce() -> T) -> T {
        let _shared = self.store_writes.read().unwrap_or_else(|p| p.into_inner());
        let lock = {
            let mut locks = self.user_writes.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(user.to_string()).or_default().clone()
        };
        let _user = lock.lock().unwrap_or_else(|p| p.into_inner());
        f()
    }

    /// Runs `f` under [`Self::with_user_lock`] for `user`, or under
    /// [`Self::with_store_lock`] when the change is not known to stay within one user.
    pub fn with_lock_for<T>(&self, user: Option<&str>, f: impl FnOnce() -> T) -> T {
        match user {
            Some(user) => self.with_user_lock(user, f),
            None => self.with_store_lock(f),
        }
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
    // Before the first scan: a stop in the middle of a write leaves a temporary file
    // and possibly a written file whose commit did not follow.
    let removed = crate::store::write::remove_temp_files(&store);
    let (recognised, dropped) = crate::store::write::recover_intents(&store, &state)?;
    if removed + recognised + dropped > 0 {
        tracing::info!(
            temp_files_removed = removed,
            writes_recognised = recognised,
            intents_dropped = dropped,
            "cleaned up after an interrupted run"
        );
    }
    let shared = Arc::new(Shared {
        config_path: config_path.to_path_buf(),
        config: RwLock::new(Arc::new(config)),
        store: RwLock::new(Arc::new(store)),
        state,
        store_writes: RwLock::new(()),
        user_writes: Mutex::new(HashMap::new()),
        queue_wake: Notify::new(),
    });
    let scan_shared = shared.clone();
    let report = tokio::task::spawn_blocking(move || {
        let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        scan_shared.with_processor(|processor| {
            scan_shared.with_store_lock(|| scan_all(processor, now(), progress))
        })
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
pub async fn queue_loop<T: Transport>(
    shared: Arc<Shared>,
    settings: Arc<QueueSettings>,
    out: T,
    mut shutdown: signal_watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let mut random = SplitMix64::from_entropy();
    // Delivery statuses of the items settled so far that belong to one change (its
    // items are queued together): written into the organizer's copy in one go when
    // the next item belongs to another object, and before the loop waits.
    let mut statuses: Vec<StatusNote> = Vec::new();
    loop {
        let due = shared.with_worker(&settings, |worker| worker.due(now()))?;
        for item in due {
            let other_object = statuses
                .last()
                .is_some_and(|n| item.status_object.as_deref() != Some(n.object.as_str()));
            if *shutdown.borrow() || other_object {
                record_statuses(&shared, &settings, std::mem::take(&mut statuses)).await;
            }
            if *shutdown.borrow() {
                return Ok(());
            }
            let attempt = match &item.route {
                Route::Local { user } => {
                    let (s, settings, user, item) =
                        (shared.clone(), settings.clone(), user.clone(), item.clone());
                    tokio::task::spawn_blocking(move || {
                        s.with_worker(&settings, |worker| {
                            s.with_store_lock(|| worker.deliver_local(&item, &user, now()))
                        })
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
                    worker.deliver_mail(&item, &out).await
                }
            };
            let counters = metrics();
            match &attempt {
                Attempt::Delivered(status) => {
                    activity().delivery(now(), true);
                    Metrics::inc(if *status == SENT {
                        &counters.sent
                    } else {
                        &counters.delivered_locally
                    });
                    if let Some(changed) = item.changed_at_ms {
                        counters.latency(
                            (chrono::Utc::now().timestamp_millis() - changed).max(0) as u64
                        );
                    }
                    tracing::info!(id = item.id, method = %item.method, rcpt = %item.rcpt, uid = %item.uid, status, "delivered")
                }
                Attempt::Retry(reason) => {
                    Metrics::inc(&counters.retried);
                    tracing::warn!(id = item.id, method = %item.method, rcpt = %item.rcpt, %reason, attempts = item.attempts + 1, "delivery failed, will retry")
                }
                Attempt::Failed(status, reason) => {
                    activity().delivery(now(), false);
                    Metrics::inc(&counters.failed);
                    tracing::warn!(id = item.id, method = %item.method, rcpt = %item.rcpt, status, %reason, "delivery failed for good")
                }
            }
            let (s, settings, item) = (shared.clone(), settings.clone(), item.clone());
            let mut r = SplitMix64::new(random.next_u64());
            let status = tokio::task::spawn_blocking(move || {
                s.with_worker(&settings, |worker| {
                    s.with_store_lock(|| worker.settle(&item, &attempt, now(), &mut r))
                })
            })
            .await
            .map_err(|e| DaemonError::Setup(format!("recording a delivery stopped: {e}")))??;
            statuses.extend(status);
        }
        record_statuses(&shared, &settings, std::mem::take(&mut statuses)).await;
        let next = shared.with_worker(&settings, |worker| worker.next_due())?;
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

/// Writes delivery statuses into the organizers' copies, under the store lock.
async fn record_statuses(
    shared: &Arc<Shared>,
    settings: &Arc<QueueSettings>,
    notes: Vec<StatusNote>,
) {
    if notes.is_empty() {
        return;
    }
    let (s, settings) = (shared.clone(), settings.clone());
    let written = tokio::task::spawn_blocking(move || {
        s.with_worker(&settings, |worker| {
            s.with_store_lock(|| worker.record_statuses(&notes))
        })
    })
    .await;
    if let Err(err) = written {
        tracing::error!(%err, "recording delivery statuses stopped unexpectedly");
    }
}

/// How often the spool of `imipd deliver` is looked at.
const SPOOL_INTERVAL: Duration = Duration::from_secs(2);

/// The spool loop: applies what `imipd deliver` spooled while the daemon was not
/// running, at start and then every [`SPOOL_INTERVAL`]; a message stays until no
/// recipient needs a retry.
pub async fn spool_loop(
    shared: Arc<Shared>,
    settings: Arc<QueueSettings>,
    dir: PathBuf,
    mut shutdown: signal_watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let mut reported = std::collections::BTreeSet::new();
    let verifier = sender_verifier(&shared.config(), &settings);
    loop {
        let (messages, bad) = super::spool::list(&dir);
        let mut checked = Vec::with_capacity(messages.len());
        for message in messages {
            let sender = check_sender(&verifier, &message.data, &message.envelope.mail_from).await;
            checked.push((message, sender));
        }
        let (s, settings_now) = (shared.clone(), settings.clone());
        tokio::task::spawn_blocking(move || drain_spool(&s, &settings_now, checked))
            .await
            .unwrap_or_default();
        for problem in bad {
            if reported.insert(problem.clone()) {
                tracing::error!(%problem, "spooled file left alone");
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            _ = tokio::time::sleep(SPOOL_INTERVAL) => {}
        }
    }
}

fn drain_spool(
    shared: &Shared,
    settings: &QueueSettings,
    messages: Vec<(super::spool::Spooled, FromCheck)>,
) {
    let mut applied = false;
    for (message, sender) in messages {
        let recipients = [message.envelope.rcpt.clone()];
        let Some(verdicts) = deliver_and_log(
            shared,
            settings,
            "spool",
            &message.envelope.mail_from,
            &recipients,
            &message.data,
            &sender,
        ) else {
            return;
        };
        if verdicts.iter().any(|v| matches!(v, Verdict::TryLater(_))) {
            continue;
        }
        applied = true;
        if let Err(err) = std::fs::remove_file(&message.path) {
            tracing::error!(file = %message.path.display(), %err, "applied, but the spooled file cannot be removed: it would be applied again (and found a duplicate)");
        }
    }
    if applied {
        shared.queue_wake.notify_one();
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

/// Delivery settings from the configuration.
pub fn queue_settings(config: &Config) -> Result<QueueSettings, ConfigError> {
    use crate::imip::{Language, Mailbox, OutgoingOptions};
    let users = config.users()?;
    let domain = config
        .mail
        .domain
        .clone()
        .or_else(|| {
            users
                .first()
                .and_then(|u| u.addresses.first())
                .map(|a| a.domain().to_string())
        })
        .unwrap_or_else(|| "localhost".to_string());
    let mut mail = OutgoingOptions {
        default_language: config
            .mail
            .default_language
            .as_deref()
            .and_then(Language::from_tag)
            .unwrap_or_default(),
        message_id_domain: domain.clone(),
        ..OutgoingOptions::default()
    };
    for user in &users {
        if let Some(language) = user.language.as_deref().and_then(Language::from_tag) {
            for address in &user.addresses {
                mail.languages.insert(address.clone(), language);
            }
        }
    }
    for (sender_domain, system) in &config.mail.system_sender {
        let address =
            crate::itip::CalAddress::parse(system).ok_or_else(|| ConfigError::Invalid {
                path: PathBuf::from("configuration"),
                key: format!("mail.system_sender.{sender_domain}"),
                message: format!("{system:?} is not an email address"),
            })?;
        mail.system_senders.insert(
            sender_domain.to_ascii_lowercase(),
            Mailbox {
                name: None,
                address,
            },
        );
    }
    let bounces = BounceAddress::new(super::BOUNCE_LOCAL_PART, &domain).map_err(|e| {
        ConfigError::Invalid {
            path: PathBuf::from("configuration"),
            key: "mail.domain".into(),
            message: format!("{domain:?} cannot be the domain of the bounce address: {e}"),
        }
    })?;
    Ok(QueueSettings {
        mail,
        bounces,
        bounce_key: Vec::new(),
        rsvp: None,
        retry: RetryPolicy {
            first_delay: Duration::from_secs(config.queue.first_retry_delay.max(1)),
            max_delay: Duration::from_secs(
                config
                    .queue
                    .max_retry_delay
                    .max(config.queue.first_retry_delay)
                    .max(1),
            ),
            max_age: Duration::from_secs(config.queue.max_age_hours.saturating_mul(3600)),
            ..RetryPolicy::default()
        },
        reply_details: config.reply_details(),
    })
}

/// The secret that signs bounce tokens: made once from the system's random source and
/// kept in the state, so tokens stay valid across restarts.
pub fn bounce_key(state: &State) -> Result<Vec<u8>, DaemonError> {
    const KEY: &str = "bounce_key";
    if let Some(hex) = state.meta(KEY)? {
        if let Some(key) = from_hex(&hex) {
            return Ok(key);
        }
    }
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))
        .map_err(|e| {
            DaemonError::Setup(format!("cannot read /dev/urandom for the bounce key: {e}"))
        })?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    state.commit(crate::store::state::Batch {
        meta: vec![(KEY.to_string(), hex)],
        ..Default::default()
    })?;
    Ok(key.to_vec())
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config_path: &Path) -> Result<(), DaemonError> {
    use crate::smtp::outbox::Outbox;
    use crate::smtp::relay::{Relay, RelayAuth, RelayConfig, RelayTls};
    let shared = start(config_path).await?;
    let config = shared.config();
    let mut settings = queue_settings(&config)?;
    settings.bounce_key = bounce_key(&shared.state)?;
    settings.rsvp = super::web::link_settings(&config, &shared.state)?;
    let settings = Arc::new(settings);
    let (stop_tx, stop_rx) = signal_watch::channel(false);

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(store_loop(shared.clone(), stop_rx.clone()));
    match &config.relay {
        Some(relay) => {
            let mut relay_config = RelayConfig::new(relay.host.clone(), relay.port);
            relay_config.tls = match relay.tls.as_str() {
                "none" => RelayTls::None,
                "tls" => RelayTls::Implicit,
                _ => RelayTls::StartTls,
            };
            relay_config.timeout = Duration::from_secs(relay.timeout.max(1));
            relay_config.helo_name = settings.mail.message_id_domain.clone();
            if let Some(username) = &relay.username {
                let password = match &relay.password_file {
                    Some(file) => std::fs::read_to_string(file)
                        .map_err(|e| {
                            DaemonError::Setup(format!(
                                "relay.password_file {}: {e}",
                                file.display()
                            ))
                        })?
                        .trim_end()
                        .to_string(),
                    None => String::new(),
                };
                relay_config.auth = Some(RelayAuth {
                    username: username.clone(),
                    password,
                });
            }
            tracing::info!(relay = %format!("{}:{}", relay.host, relay.port), "outgoing mail goes through the relay");
            tasks.spawn(queue_loop(
                shared.clone(),
                settings.clone(),
                Relay::new(relay_config),
                stop_rx.clone(),
            ));
        }
        None => {
            tracing::info!(outbox = %config.queue.outbox.display(), "no [relay]: outgoing mail is written to the outbox folder");
            tasks.spawn(queue_loop(
                shared.clone(),
                settings.clone(),
                Outbox::new(config.queue.outbox.clone()),
                stop_rx.clone(),
            ));
        }
    }
    if let Some(server) = bind_lmtp(shared.clone(), settings.clone()).await? {
        let places: Vec<String> = server
            .tcp_addr()
            .map(|a| a.to_string())
            .into_iter()
            .chain(server.unix_path().map(|p| p.display().to_string()))
            .collect();
        tracing::info!(listen = %places.join(", "), "LMTP server listening");
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            server
                .serve(async move {
                    let _ = stop.changed().await;
                })
                .await;
            Ok(())
        });
    }
    if let Some(section) = &config.metrics {
        let listener = super::metrics::bind(section.listen)
            .await
            .map_err(DaemonError::Setup)?;
        tracing::info!(listen = %section.listen, "metrics served over HTTP");
        let (state, mut stop) = (shared.state.clone(), stop_rx.clone());
        tasks.spawn(async move {
            super::metrics::serve(listener, state, async move {
                let _ = stop.changed().await;
            })
            .await;
            Ok(())
        });
    }
    if let (Some(section), Some(links)) = (&config.web, &settings.rsvp) {
        let listener = super::web::bind(section).await?;
        tracing::info!(listen = %section.listen, public_url = %section.public_url, "RSVP page served over HTTP");
        let (key, mut stop) = (links.key.clone(), stop_rx.clone());
        tasks.spawn(super::web::serve(
            listener,
            shared.clone(),
            key,
            async move {
                let _ = stop.changed().await;
            },
        ));
    }
    {
        let control = &config.control;
        let listener = super::control::bind(&control.socket, control.group.as_deref())
            .map_err(DaemonError::Setup)?;
        tracing::info!(socket = %control.socket.display(), "control socket listening (imipd status, queue, scan, inject)");
        let commands = Arc::new(super::commands::DaemonCommands {
            shared: shared.clone(),
            settings: settings.clone(),
        });
        let (socket, mut stop) = (control.socket.clone(), stop_rx.clone());
        tasks.spawn(async move {
            super::control::serve(listener, socket, commands, async move {
                let _ = stop.changed().await;
            })
            .await;
            Ok(())
        });
    }
    if let Some(dir) = config.deliver.spool.clone() {
        tracing::info!(spool = %dir.display(), "messages spooled by `imipd deliver` are applied from here");
        tasks.spawn(spool_loop(
            shared.clone(),
            settings.clone(),
            dir,
            stop_rx.clone(),
        ));
    }
    activity().started(now());
    // Anything left from before a restart is delivered now.
    shared.queue_wake.notify_one();

    systemd::notify("READY=1");
    tracing::info!("imipd is running");
    let result = tokio::select! {
        signal = wait_for_shutdown(&shared) => signal,
        Some(ended) = tasks.join_next() => match ended {
            Ok(Ok(())) => Err(DaemonError::Setup("a service loop ended unexpectedly".into())),
            Ok(Err(err)) => Err(err),
            Err(err) => Err(DaemonError::Setup(format!("a service loop stopped: {err}"))),
        },
    };
    systemd::notify("STOPPING=1");
    let _ = stop_tx.send(true);
    // Work in flight finishes; loops return at their next check.
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(20), drain)
        .await
        .is_err()
    {
        tracing::warn!("some work did not finish within 20 s; it will be redone after restart");
    }
    tracing::info!("imipd stopped");
    result
}

/// The daemon's side of the LMTP conversation: recipient checks and deliveries, decided
/// by [`super::inbound::Inbound`] under the store lock.
pub struct MailHandler {
    shared: Arc<Shared>,
    settings: Arc<QueueSettings>,
    /// Checks each sender's From (DKIM/SPF/DMARC); `Err` when DNS could not be set up,
    /// which `bind_lmtp` reports at start-up.
    verifier: Result<Arc<SenderVerifier>, String>,
}

impl MailHandler {
    /// A handler over the daemon's shared state, with the sender check of `[lmtp]`.
    pub fn new(shared: Arc<Shared>, settings: Arc<QueueSettings>) -> Self {
        let verifier = sender_verifier(&shared.config(), &settings);
        MailHandler {
            shared,
            settings,
            verifier,
        }
    }
}

impl LmtpHandler for MailHandler {
    fn session_opened(&self) {
        activity().lmtp_opened();
    }

    fn session_closed(&self) {
        activity().lmtp_closed();
    }

    fn check_recipient(&self, recipient: &str) -> RecipientCheck {
        let config = self.shared.config();
        let store = self.shared.store();
        let Some(lmtp) = &config.lmtp else {
            return RecipientCheck::TempFail("LMTP is being reconfigured".into());
        };
        let inbound = Inbound {
            store: &store,
            state: &self.shared.state,
            settings: lmtp,
            reply_details: config.reply_details(),
            bounces: &self.settings.bounces,
            bounce_key: &self.settings.bounce_key,
        };
        match inbound.check_recipient(recipient) {
            InboundCheck::User(_) | InboundCheck::Copy(_) | InboundCheck::Bounces => {
                RecipientCheck::Accept
            }
            InboundCheck::Unknown => RecipientCheck::Unknown,
        }
    }

    fn deliver(
        &self,
        message: ReceivedMessage,
    ) -> impl std::future::Future<Output = Vec<RecipientOutcome>> + Send {
        let shared = self.shared.clone();
        let settings = self.settings.clone();
        let verifier = self.verifier.clone();
        async move {
            let count = message.recipients.len();
            // The sender check asks DNS: done here, before the blocking part.
            let sender = match &verifier {
                Ok(verifier) => {
                    let client = ConnectingClient {
                        addr: message.client.addr,
                        helo: message.client.helo.clone(),
                    };
                    verifier
                        .check(&message.data, &message.mail_from, &client)
                        .await
                }
                Err(reason) => FromCheck::TryLater {
                    reason: reason.clone(),
                },
            };
            let decided = tokio::task::spawn_blocking(move || {
                deliver_and_log(
                    &shared,
                    &settings,
                    &message.peer,
                    &message.mail_from,
                    &message.recipients,
                    &message.data,
                    &sender,
                )
            })
            .await;
            match decided {
                Ok(Some(verdicts)) => {
                    // An answer may have been queued (REFRESH): send it now.
                    self.shared.queue_wake.notify_one();
                    verdicts.into_iter().map(outcome_of).collect()
                }
                _ => vec![
                    RecipientOutcome::TempFail {
                        enhanced: "4.3.0".into(),
                        reason: "imipd could not process the message now".into(),
                    };
                    count
                ],
            }
        }
    }
}

/// The sender check of `[lmtp]` (DKIM/SPF/DMARC over DNS, or a trusted
/// Authentication-Results header); `Err` when DNS cannot be set up.
pub fn sender_verifier(
    config: &Config,
    settings: &QueueSettings,
) -> Result<Arc<SenderVerifier>, String> {
    match &config.lmtp {
        Some(lmtp) => SenderVerifier::new(VerifierSettings {
            trusted_authserv_ids: lmtp.trusted_authserv_ids.clone(),
            dns_servers: lmtp.dns_servers.clone(),
            timeout: Duration::from_secs(lmtp.dns_timeout.max(1)),
            hostname: settings.mail.message_id_domain.clone(),
            insecure_trust_from_header: lmtp.insecure_trust_from_header,
        })
        .map(Arc::new)
        .map_err(|e| e.to_string()),
        None => Err("no [lmtp] section".to_string()),
    }
}

/// Checks the sender of a message that came from no SMTP client (the control socket,
/// the spool): SPF has no address to check, DKIM and DMARC decide.
pub async fn check_sender(
    verifier: &Result<Arc<SenderVerifier>, String>,
    data: &[u8],
    mail_from: &str,
) -> FromCheck {
    match verifier {
        Ok(verifier) => {
            verifier
                .check(data, mail_from, &ConnectingClient::default())
                .await
        }
        Err(reason) => FromCheck::TryLater {
            reason: reason.clone(),
        },
    }
}

/// Applies one incoming message for its recipients exactly as the LMTP server does
/// (each recipient's change under that user's lock), logs one line per recipient and
/// records refusals for `imipd status`. `None` when LMTP is being reconfigured.
/// Used by the LMTP handler and by `imipd inject` through the control socket.
pub fn deliver_and_log(
    shared: &Shared,
    settings: &QueueSettings,
    peer: &str,
    mail_from: &str,
    recipients: &[String],
    data: &[u8],
    sender: &FromCheck,
) -> Option<Vec<Verdict>> {
    let config = shared.config();
    let store = shared.store();
    let lmtp = config.lmtp.clone()?;
    let inbound = Inbound {
        store: &store,
        state: &shared.state,
        settings: &lmtp,
        reply_details: config.reply_details(),
        bounces: &settings.bounces,
        bounce_key: &settings.bounce_key,
    };
    // Each recipient's change under that user's lock: deliveries to different users
    // overlap (and share their commit, see State::commit).
    let lock = |user: Option<&str>, apply: &mut dyn FnMut()| shared.with_lock_for(user, apply);
    let verdicts = inbound.deliver_locked(mail_from, recipients, data, now(), sender, &lock);
    let sender_check = sender.describe();
    for (rcpt, verdict) in recipients.iter().zip(&verdicts) {
        let answer = verdict.lmtp_reply();
        let (outcome, reason) = match verdict {
            Verdict::Accepted(text) if text.starts_with("ignored") => ("accepted", "ignored"),
            Verdict::Accepted(text) if text.starts_with("already") => ("accepted", "duplicate"),
            Verdict::Accepted(text) if text.starts_with("bounce") => ("accepted", "bounce"),
            Verdict::Accepted(_) => ("accepted", "applied"),
            Verdict::TryLater(text) if text.starts_with("sender") => ("deferred", "sender_check"),
            Verdict::TryLater(_) => ("deferred", "busy"),
            Verdict::Refused { enhanced, .. } => ("rejected", *enhanced),
        };
        metrics().lmtp(outcome, reason);
        if matches!(reason, "ignored") || outcome == "rejected" {
            activity().refused(now(), format!("mail to {rcpt}"), answer.clone());
        }
        match verdict {
            Verdict::Accepted(_) => {
                tracing::info!(%peer, from = %mail_from, %rcpt, %answer, sender = %sender_check, "incoming message")
            }
            _ => {
                tracing::warn!(%peer, from = %mail_from, %rcpt, %answer, sender = %sender_check, "incoming message not applied")
            }
        }
    }
    Some(verdicts)
}

fn outcome_of(verdict: Verdict) -> RecipientOutcome {
    match verdict {
        Verdict::Accepted(text) => RecipientOutcome::Accepted(text),
        Verdict::TryLater(reason) => RecipientOutcome::TempFail {
            enhanced: if reason.contains("No space") {
                "4.3.1".into()
            } else {
                "4.3.0".into()
            },
            reason,
        },
        Verdict::Refused {
            code,
            enhanced,
            reason,
        } => RecipientOutcome::Rejected {
            code,
            enhanced: enhanced.into(),
            reason,
        },
    }
}

/// Binds the LMTP server of `[lmtp]`.
pub async fn bind_lmtp(
    shared: Arc<Shared>,
    settings: Arc<QueueSettings>,
) -> Result<Option<LmtpServer<MailHandler>>, DaemonError> {
    let config = shared.config();
    let Some(lmtp) = &config.lmtp else {
        return Ok(None);
    };
    let server_config = LmtpConfig {
        tcp: lmtp.listen,
        unix: lmtp.socket.clone(),
        hostname: settings.mail.message_id_domain.clone(),
        max_message_size: lmtp.max_message_size,
        max_connections: lmtp.max_connections.max(1),
        idle_timeout: Duration::from_secs(lmtp.idle_timeout.max(1)),
        ..LmtpConfig::default()
    };
    let handler = MailHandler::new(shared, settings);
    if let Err(reason) = &handler.verifier {
        return Err(DaemonError::Setup(reason.clone()));
    }
    let server = LmtpServer::bind(server_config, Arc::new(handler))
        .await
        .map_err(|e| DaemonError::Setup(e.to_string()))?;
    Ok(Some(server))
}
