//! The spool loop: applies what `imipd deliver` spooled while the daemon was not
//! running, through the same path as LMTP ([`super::lmtp_handler::deliver_and_log`]).

use super::inbound::Verdict;
use super::lmtp_handler::{check_sender, deliver_and_log, sender_verifier};
use super::queue::QueueSettings;
use super::shared::{DaemonError, Shared};
use crate::imip::sender_auth::FromCheck;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch as signal_watch;

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
