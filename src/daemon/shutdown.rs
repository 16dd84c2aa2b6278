//! Signals while running: SIGTERM/SIGINT end [`wait_for_shutdown`], SIGHUP reloads the
//! user map, and the systemd watchdog is fed meanwhile. The stop itself (the stop
//! channel and the drain) is in [`super::serve::run`].

use super::shared::{DaemonError, Shared};
use super::systemd;
use std::time::Duration;

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
