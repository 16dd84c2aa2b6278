//! `imipd serve`: the running service, read top to bottom.
//!
//! 1. [`open`] the configuration, the state and the store; start the file watcher
//!    (before the scan and before "ready", so no save after start is missed); the
//!    [`first_scan`] (a baseline for users seen for the first time). Tests use
//!    [`start`], which opens and scans without a watcher.
//! 2. [`run`]: start the loops, each in its own file: the **store loop**
//!    ([`super::store_loop`]) turns file events into processed changes, the **queue
//!    loop** ([`super::queue_loop`]) delivers queued messages, the **LMTP server**
//!    ([`super::lmtp_handler`]) and the **spool loop** ([`super::spool_loop`]) apply
//!    incoming mail, the control socket, metrics and RSVP listeners answer. Store
//!    writes go through the locks of [`super::shared::Shared`], so each object's file
//!    and its baseline always change together.
//! 3. Tell systemd we are ready; wait for a signal ([`super::shutdown`]). SIGHUP
//!    reloads the user map; SIGTERM or SIGINT sends the stop to every loop, lets work
//!    in flight finish (the drain, below in [`run`]), and exits.

use super::activity::activity;
use super::queue_loop::{queue_loop, relay_config};
use super::shutdown::wait_for_shutdown;
use super::spool_loop::spool_loop;
use super::store_loop::{store_loop, watch_store};
use super::systemd;
use crate::config::Config;
use crate::store::layout::Store;
use crate::store::scan::scan_all;
use crate::store::state::State;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch as signal_watch;

// The paths tests and other modules have used since everything lived here.
pub use super::lmtp_handler::{
    bind_lmtp, check_sender, deliver_and_log, sender_verifier, MailHandler,
};
pub use super::settings::{bounce_key, queue_settings};
pub use super::shared::{now, DaemonError, Shared};

/// Opens everything and takes the first scan; returns the shared state.
pub async fn start(config_path: &Path) -> Result<Arc<Shared>, DaemonError> {
    let shared = open(config_path).await?;
    first_scan(&shared).await?;
    Ok(shared)
}

/// Opens the configuration, the state and the store, and cleans up after an
/// interrupted run; no scan yet.
pub async fn open(config_path: &Path) -> Result<Arc<Shared>, DaemonError> {
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
    Ok(Arc::new(Shared::new(
        config_path.to_path_buf(),
        config,
        store,
        state,
    )))
}

/// The first scan: users seen for the first time get a baseline, changes made while
/// imipd was stopped are processed.
pub async fn first_scan(shared: &Arc<Shared>) -> Result<(), DaemonError> {
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
    Ok(())
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config_path: &Path) -> Result<(), DaemonError> {
    use crate::smtp::outbox::Outbox;
    use crate::smtp::relay::Relay;
    let shared = open(config_path).await?;
    // Watching starts before the first scan: whatever is saved from now on is either
    // seen by the scan or reported by the watcher, and "ready" below is true.
    let watching = watch_store(shared.store()).await?;
    first_scan(&shared).await?;
    // What check-config would say about where invitations land, said at start too.
    let (problems, notes) = super::admin::receiving(&shared.store());
    for problem in problems {
        tracing::warn!("{problem}");
    }
    for note in notes {
        tracing::info!("{note}");
    }
    let config = shared.config();
    let mut settings = queue_settings(&config)?;
    settings.bounce_key = bounce_key(&shared.state)?;
    settings.rsvp = super::web::link_settings(&config, &shared.state)?;
    let settings = Arc::new(settings);
    let (stop_tx, stop_rx) = signal_watch::channel(false);

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(store_loop(shared.clone(), watching, stop_rx.clone()));
    match &config.relay {
        Some(relay) => {
            let relay_config = relay_config(relay, &settings)?;
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
    if let Some(section) = config.caldav.clone() {
        // Started after the first scan and with the store loop running: from the first
        // answer that announces scheduling on, imipd does schedule.
        let listener = crate::caldav::bind(&section)
            .await
            .map_err(DaemonError::Setup)?;
        tracing::info!(listen = %section.listen, upstream = %section.upstream, "CalDAV front listening: clients are told that imipd schedules (calendar-auto-schedule)");
        let (front_shared, mut stop) = (shared.clone(), stop_rx.clone());
        let store: crate::caldav::server::StoreSource = Arc::new(move || front_shared.store());
        tasks.spawn(async move {
            crate::caldav::serve(listener, &section, store, async move {
                let _ = stop.changed().await;
            })
            .await
            .map_err(DaemonError::Setup)
        });
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
