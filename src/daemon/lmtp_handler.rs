//! The daemon's LMTP side: [`MailHandler`] (recipient checks and deliveries), the
//! sender check ([`sender_verifier`], [`check_sender`]), [`deliver_and_log`] which the
//! LMTP server, the spool and `imipd inject` share, and [`bind_lmtp`].

use super::activity::activity;
use super::inbound::{Inbound, RecipientCheck as InboundCheck, Verdict};
use super::metrics::metrics;
use super::queue::QueueSettings;
use super::shared::{now, DaemonError, Shared};
use crate::config::Config;
use crate::imip::sender_auth::{ConnectingClient, FromCheck, SenderVerifier, VerifierSettings};
use crate::smtp::{
    LmtpConfig, LmtpHandler, LmtpServer, ReceivedMessage, RecipientCheck, RecipientOutcome,
};
use crate::store::apply::Writes;
use std::sync::Arc;
use std::time::Duration;

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
        let check = with_inbound(&self.shared, &self.settings, |inbound| {
            inbound.check_recipient(recipient)
        });
        match check {
            None => RecipientCheck::TempFail("LMTP is being reconfigured".into()),
            Some(InboundCheck::User(_) | InboundCheck::Copy(_) | InboundCheck::Bounces) => {
                RecipientCheck::Accept
            }
            Some(InboundCheck::Unknown) => RecipientCheck::Unknown,
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
            max_dkim_signatures: lmtp.max_dkim_signatures,
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

/// Runs `f` with the inbound path over the daemon's current config, store and state and
/// the queue's bounce settings; `None` while `[lmtp]` is not configured (reconfiguring).
pub fn with_inbound<T>(
    shared: &Shared,
    settings: &QueueSettings,
    f: impl FnOnce(&Inbound<'_>) -> T,
) -> Option<T> {
    let config = shared.config();
    let store = shared.store();
    let lmtp = config.lmtp.as_ref()?;
    let inbound = Inbound {
        store: &store,
        state: &shared.state,
        settings: lmtp,
        reply_details: config.reply_details(),
        bounces: &settings.bounces,
        bounce_key: &settings.bounce_key,
    };
    Some(f(&inbound))
}

/// Delivers one message to `recipients` through [`with_inbound`], each recipient's
/// change under that user's lock; `None` while `[lmtp]` is not configured.
pub fn deliver_with_locks(
    shared: &Shared,
    settings: &QueueSettings,
    writes: Writes,
    mail_from: &str,
    recipients: &[String],
    data: &[u8],
    sender: &FromCheck,
) -> Option<Vec<Verdict>> {
    let lock = |user: Option<&str>, apply: &mut dyn FnMut()| shared.with_lock_for(user, apply);
    with_inbound(shared, settings, |inbound| {
        inbound.deliver_as(writes, mail_from, recipients, data, now(), sender, &lock)
    })
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
    // Each recipient's change under that user's lock: deliveries to different users
    // overlap (and share their commit, see State::commit).
    let verdicts = deliver_with_locks(
        shared,
        settings,
        Writes::Yes,
        mail_from,
        recipients,
        data,
        sender,
    )?;
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
