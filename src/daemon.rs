//! The long-running service and its commands, one concern per file:
//!
//! - `serve`: `start` and `run`, the service read top to bottom (stop and drain there).
//! - `shared`: what every loop shares (config, store, state, write locks, reload).
//! - `settings`: delivery settings and the bounce key derived from the configuration.
//! - `store_loop`: file events and rescans turned into processed changes.
//! - `queue_loop`: delivery of queued messages and their statuses.
//! - `spool_loop`: mail spooled by `imipd deliver`, applied while running.
//! - `lmtp_handler`: the LMTP side (recipient checks, sender checks, deliveries).
//! - `shutdown`: signals (SIGTERM/SIGINT stop, SIGHUP reload, watchdog).
//! - `inbound`: the decision on one incoming message per recipient.
//! - `queue`, `spool`: the queue worker and the spool files.
//! - `control`, `commands`, `status`, `activity`: the control socket and its commands.
//! - `admin`: queue and state commands with the daemon stopped.
//! - `preview`: `imipd preview`; `inject`: `imipd inject` with the daemon stopped.
//! - `metrics`, `web`, `logging`, `systemd`: counters, the RSVP page, logs, sd_notify.

pub mod activity;
pub mod admin;
pub mod commands;
pub mod control;
pub mod inbound;
pub mod inject;
pub mod lmtp_handler;
pub mod logging;
pub mod metrics;
pub mod preview;
pub mod queue;
pub mod queue_loop;
pub mod serve;
pub mod settings;
pub mod shared;
pub mod shutdown;
pub mod spool;
pub mod spool_loop;
pub mod status;
pub mod store_loop;
pub mod systemd;
pub mod web;

/// The local part of the envelope sender imipd uses, so bounces come back to it:
/// `imipd-bounces@<mail domain>` (with a `+tag` when VERP is used).
pub const BOUNCE_LOCAL_PART: &str = "imipd-bounces";
