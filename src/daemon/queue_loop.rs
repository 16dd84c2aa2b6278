//! The queue loop: delivers due messages (locally under the store lock, or by mail
//! through the transport), settles each attempt and writes delivery statuses into the
//! organizers' copies.

use super::activity::activity;
use super::metrics::{metrics, Metrics};
use super::queue::{mail_attempt, Attempt, MailCache, QueueSettings, StatusNote, Worker};
use super::shared::{now, DaemonError, Shared};
use crate::config::RelaySection;
use crate::itip::status::SENT;
use crate::smtp::relay::{RelayAuth, RelayConfig, RelayTls};
use crate::smtp::retry::{RandomSource, SplitMix64};
use crate::smtp::transport::Transport;
use crate::store::state::{QueueItem, Route};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch as signal_watch;

/// The queue loop: delivers what is due, waits for new items or the next retry.
pub async fn queue_loop<T: Transport>(
    shared: Arc<Shared>,
    settings: Arc<QueueSettings>,
    out: T,
    mut shutdown: signal_watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let mut random = SplitMix64::from_entropy();
    // Delivery statuses of the items settled so far: written into the organizers'
    // copies (one write per copy) once SETTLE_BATCH gathered and the next item is
    // another change's, and before the loop waits or stops.
    let mut statuses: Vec<StatusNote> = Vec::new();
    // The mail of the change being delivered, prepared once for all its recipients.
    let mut mails = MailCache::default();
    // Attempts made but not yet recorded: emails handed off are recorded together,
    // up to SETTLE_BATCH or SETTLE_WAIT, one commit instead of one per email. A crash
    // in between sends those again with the same Message-ID (as a crash between a
    // handoff and its record always could); nothing is lost.
    let mut attempts = Settling::default();
    loop {
        let due = shared.with_worker(&settings, |worker| worker.due(now()))?;
        let mut due = due.into_iter().peekable();
        while let Some(first) = due.next() {
            // What waits is recorded before a local delivery changes a calendar, and
            // before the loop stops. Otherwise the attempts of several changes share
            // one commit (per SETTLE_BATCH or SETTLE_WAIT): `due` holds one item per
            // (UID, recipient), so none of them is ordered after another.
            let stopping = *shutdown.borrow();
            let local = matches!(first.route, Route::Local { .. });
            if stopping || local {
                attempts
                    .record(&shared, &settings, &out, &mut random, &mut statuses)
                    .await?;
            }
            if stopping {
                record_statuses(&shared, &settings, std::mem::take(&mut statuses)).await;
                return Ok(());
            }
            let run = match &first.route {
                Route::Local { user } => {
                    let (s, settings, user, item) = (
                        shared.clone(),
                        settings.clone(),
                        user.clone(),
                        first.clone(),
                    );
                    let attempt = tokio::task::spawn_blocking(move || {
                        s.with_worker(&settings, |worker| {
                            s.with_store_lock(|| worker.deliver_local(&item, &user, now()))
                        })
                    })
                    .await
                    .unwrap_or_else(|e| Attempt::Retry(format!("delivery stopped: {e}")));
                    vec![(first, attempt)]
                }
                Route::Mail => {
                    // The mail items that follow go out together, spread over the
                    // transport's connections. `due` holds one item per (UID,
                    // recipient), so no two of them are ordered against each other.
                    let mut items = vec![first];
                    while items.len() < MAIL_RUN {
                        match due.next_if(|i| matches!(i.route, Route::Mail)) {
                            Some(item) => items.push(item),
                            None => break,
                        }
                    }
                    let store = shared.store();
                    let worker = Worker {
                        store: &store,
                        state: &shared.state,
                        settings: &settings,
                    };
                    send_mails(&worker, items, &out, &mut mails).await
                }
            };
            let mut run = run.into_iter().peekable();
            while let Some((item, attempt)) = run.next() {
                let local = matches!(item.route, Route::Local { .. });
                log_attempt(&item, &attempt);
                attempts.push(item, attempt);
                // A local delivery changed a calendar: recorded at once, as before.
                if local || attempts.full() {
                    attempts
                        .record(&shared, &settings, &out, &mut random, &mut statuses)
                        .await?;
                }
                // Statuses are written once SETTLE_BATCH gathered and the next item is
                // another change's, so a change's copy is read and rewritten once, not
                // once per batch (a 1,000-attendee change: one pass over its file).
                let next = match run.peek() {
                    Some((next, _)) => Some(next),
                    None => due.peek(),
                };
                let next_change = statuses.last().is_some_and(|note| {
                    next.and_then(|i| i.status_object.as_deref()) != Some(note.object.as_str())
                });
                if statuses.len() >= SETTLE_BATCH && next_change {
                    record_statuses(&shared, &settings, std::mem::take(&mut statuses)).await;
                }
            }
        }
        attempts
            .record(&shared, &settings, &out, &mut random, &mut statuses)
            .await?;
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

/// Counts and logs one attempt.
fn log_attempt(item: &QueueItem, attempt: &Attempt) {
    let counters = metrics();
    match attempt {
        Attempt::Delivered(status) => {
            activity().delivery(now(), true);
            Metrics::inc(if *status == SENT {
                &counters.sent
            } else {
                &counters.delivered_locally
            });
            if let Some(changed) = item.changed_at_ms {
                counters.latency((chrono::Utc::now().timestamp_millis() - changed).max(0) as u64);
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
}

/// Builds the emails of `items` and hands them to `out` together; each item with
/// its attempt, in order.
async fn send_mails(
    worker: &Worker<'_>,
    items: Vec<QueueItem>,
    out: &impl Transport,
    mails: &mut MailCache,
) -> Vec<(QueueItem, Attempt)> {
    let mut built = Vec::with_capacity(items.len());
    let mut ready = Vec::with_capacity(items.len());
    for item in &items {
        match worker.prepare_mail(item, mails) {
            Ok(mail) => {
                built.push(None);
                ready.push(mail);
            }
            Err(attempt) => built.push(Some(attempt)),
        }
    }
    let mut sent = out.send_all(&ready).await.into_iter();
    items
        .into_iter()
        .zip(built)
        .map(|(item, attempt)| {
            let attempt = attempt.unwrap_or_else(|| match sent.next() {
                Some(result) => mail_attempt(result),
                None => Attempt::Retry("the transport did not answer for this email".into()),
            });
            (item, attempt)
        })
        .collect()
}

/// At most this many emails are handed to the transport together.
const MAIL_RUN: usize = 32;

/// At most this many attempts wait to be recorded together.
const SETTLE_BATCH: usize = 64;
/// And none of them longer than this.
const SETTLE_WAIT: Duration = Duration::from_millis(100);

/// Attempts made and not yet recorded.
#[derive(Default)]
struct Settling {
    attempts: Vec<(QueueItem, Attempt)>,
    since: Option<std::time::Instant>,
}

impl Settling {
    fn push(&mut self, item: QueueItem, attempt: Attempt) {
        self.since.get_or_insert_with(std::time::Instant::now);
        self.attempts.push((item, attempt));
    }

    /// True when the attempts should be recorded now.
    fn full(&self) -> bool {
        self.attempts.len() >= SETTLE_BATCH
            || self.since.is_some_and(|t| t.elapsed() >= SETTLE_WAIT)
    }

    /// Records the waiting attempts in one commit; their delivery statuses join
    /// `statuses`.
    async fn record(
        &mut self,
        shared: &Arc<Shared>,
        settings: &Arc<QueueSettings>,
        out: &impl Transport,
        random: &mut SplitMix64,
        statuses: &mut Vec<StatusNote>,
    ) -> Result<(), DaemonError> {
        if self.attempts.is_empty() {
            return Ok(());
        }
        let mut attempts = std::mem::take(&mut self.attempts);
        // What was handed over must be durable before it is recorded as sent; if it
        // cannot be made so, those emails are tried again (the outbox then finds its
        // own file and keeps it).
        if let Err(err) = out.flush().await {
            tracing::warn!(%err, "handed-off emails are not durable yet; trying them again");
            for (_, attempt) in attempts.iter_mut() {
                if *attempt == Attempt::Delivered(SENT) {
                    *attempt = Attempt::Retry(err.failure().to_string());
                }
            }
        }
        self.since = None;
        let (s, settings) = (shared.clone(), settings.clone());
        let mut r = SplitMix64::new(random.next_u64());
        let notes = tokio::task::spawn_blocking(move || {
            s.with_worker(&settings, |worker| {
                s.with_store_lock(|| worker.settle(&attempts, now(), &mut r))
            })
        })
        .await
        .map_err(|e| DaemonError::Setup(format!("recording a delivery stopped: {e}")))??;
        statuses.extend(notes);
        Ok(())
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

/// The relay connection of `[relay]`: TLS mode, timeout, HELO name and the password
/// read from `password_file`.
pub fn relay_config(
    relay: &RelaySection,
    settings: &QueueSettings,
) -> Result<RelayConfig, DaemonError> {
    let mut relay_config = RelayConfig::new(relay.host.clone(), relay.port);
    relay_config.tls = match relay.tls.as_str() {
        "none" => RelayTls::None,
        "tls" => RelayTls::Implicit,
        _ => RelayTls::StartTls,
    };
    relay_config.timeout = Duration::from_secs(relay.timeout.max(1));
    relay_config.connections = relay.connections.max(1);
    relay_config.helo_name = settings.mail.message_id_domain.clone();
    if let Some(username) = &relay.username {
        let password = match &relay.password_file {
            Some(file) => std::fs::read_to_string(file)
                .map_err(|e| {
                    DaemonError::Setup(format!("relay.password_file {}: {e}", file.display()))
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
    Ok(relay_config)
}
