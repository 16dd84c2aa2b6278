//! What the running daemon does for each request on its [control socket](super::control).
//!
//! Each command calls the same function the command line calls when the daemon is
//! stopped (`admin::queue_list`, `scan_all`, the LMTP delivery path), but on the
//! daemon's own state and under its store locks, so an admin can look at and steer a
//! running service as `mailq` and `postqueue -f` do for Postfix.
//!
//! `inject` through the socket reports and exits as [`inject`](super::inject) does with
//! the daemon stopped: this module uses that one's report and exit codes, and
//! `inject` never calls back here.

use super::admin;
use super::control::{Commands, Request, Response};
use super::inbound::RecipientCheck;
use super::lmtp_handler::{
    check_sender, deliver_and_log, deliver_with_locks, sender_verifier, with_inbound,
};
use super::queue::QueueSettings;
use super::shared::{now, Shared};
use super::status::StatusReport;
use crate::imip::FromCheck;
use crate::store::apply::Writes;
use crate::store::scan::scan_all;
use std::sync::Arc;

pub use super::inject::{exit, inject_exit};

/// The daemon side of the control socket.
pub struct DaemonCommands {
    /// The service's shared state.
    pub shared: Arc<Shared>,
    /// Delivery settings (bounce address and key, for incoming mail).
    pub settings: Arc<QueueSettings>,
}

impl DaemonCommands {
    fn blocking(&self, request: Request, payload: Vec<u8>, sender: Option<FromCheck>) -> Response {
        let shared = &self.shared;
        let done = |result: Result<String, admin::AdminError>| match result {
            Ok(text) => Response::ok(text),
            Err(err) => Response::failed(err.to_string()),
        };
        match request {
            Request::Status => {
                let store = shared.store();
                let users = store.users().count();
                match StatusReport::gather(&shared.state, users, now()) {
                    Ok(mut report) => {
                        // A user with nowhere to receive invitations needs the admin.
                        report.problems.extend(admin::receiving(&store).0);
                        Response::with_exit(report.exit_code(), report.render())
                    }
                    Err(err) => Response::failed(format!("cannot read the state: {err}")),
                }
            }
            Request::QueueList => done(admin::queue_list(&shared.state, now())),
            Request::QueueRetry { id } => {
                let answer = done(admin::queue_retry(&shared.state, id, now()));
                shared.queue_wake.notify_one();
                answer
            }
            Request::QueueDrop { id } => done(admin::queue_drop(&shared.state, id)),
            Request::Scan => {
                let report = shared.with_processor(|processor| {
                    shared.with_store_lock(|| scan_all(processor, now(), false))
                });
                match report {
                    Ok(report) => {
                        shared.queue_wake.notify_one();
                        Response::ok(format!(
                            "{} users, {} objects: {} recorded as baseline (nothing sent), {} changes processed, {} messages queued, {} skipped\n",
                            report.users, report.objects, report.baselined, report.processed, report.queued, report.skipped
                        ))
                    }
                    Err(err) => Response::failed(err.to_string()),
                }
            }
            Request::Inject {
                rcpt,
                dry_run,
                mail_from,
                ..
            } => {
                match self.check(&rcpt) {
                    Some(RecipientCheck::Unknown) => {
                        return Response::with_exit(
                            exit::UNKNOWN_USER,
                            format!("{rcpt}: 550 5.1.1 no such user here\n"),
                        )
                    }
                    None => {
                        return Response::with_exit(
                            exit::TEMPORARY,
                            format!(
                            "{rcpt}: 451 4.3.0 the daemon takes no mail now (no [lmtp] section)\n"
                        ),
                        )
                    }
                    Some(_) => {}
                }
                let recipients = [rcpt.clone()];
                let sender = sender.unwrap_or(FromCheck::TryLater {
                    reason: "the sender was not checked".into(),
                });
                if dry_run {
                    // The same path as below, writing nothing, logging nothing.
                    let Some(verdicts) = deliver_with_locks(
                        shared,
                        &self.settings,
                        Writes::No,
                        &mail_from,
                        &recipients,
                        &payload,
                        &sender,
                    ) else {
                        return Response::with_exit(exit::TEMPORARY, String::new());
                    };
                    let code = verdicts.first().map_or(exit::TEMPORARY, inject_exit);
                    return Response::with_exit(
                        code,
                        super::inject::report(&sender, &rcpt, &verdicts, true),
                    );
                }
                match deliver_and_log(
                    shared,
                    &self.settings,
                    "control socket",
                    &mail_from,
                    &recipients,
                    &payload,
                    &sender,
                ) {
                    Some(verdicts) => {
                        shared.queue_wake.notify_one();
                        let code = verdicts.first().map_or(exit::TEMPORARY, inject_exit);
                        Response::with_exit(
                            code,
                            super::inject::report(&sender, &rcpt, &verdicts, false),
                        )
                    }
                    None => Response::with_exit(
                        exit::TEMPORARY,
                        format!("{rcpt}: 451 4.3.0 the daemon is being reconfigured\n"),
                    ),
                }
            }
        }
    }

    fn check(&self, rcpt: &str) -> Option<RecipientCheck> {
        with_inbound(&self.shared, &self.settings, |inbound| {
            inbound.check_recipient(rcpt)
        })
    }
}

impl Commands for DaemonCommands {
    fn state_path(&self) -> std::path::PathBuf {
        self.shared.config().state.clone()
    }

    async fn run(&self, request: Request, payload: Vec<u8>) -> Response {
        let this = DaemonCommands {
            shared: self.shared.clone(),
            settings: self.settings.clone(),
        };
        // The sender check asks DNS: done here, before the blocking part.
        let sender = match &request {
            Request::Inject { mail_from, .. } => {
                let verifier = sender_verifier(&self.shared.config(), &self.settings);
                Some(check_sender(&verifier, &payload, mail_from).await)
            }
            _ => None,
        };
        tokio::task::spawn_blocking(move || this.blocking(request, payload, sender))
            .await
            .unwrap_or_else(|e| Response::failed(format!("the command stopped: {e}")))
    }
}
