//! The long-running service: store watching, the scheduling engine, the delivery queue
//! and the LMTP server together, with graceful shutdown; `web` serves the RSVP page.

pub mod activity;
pub mod admin;
pub mod commands;
pub mod control;
pub mod inbound;
pub mod logging;
pub mod metrics;
pub mod preview;
pub mod queue;
pub mod serve;
pub mod spool;
pub mod status;
pub mod systemd;
pub mod web;

/// The local part of the envelope sender imipd uses, so bounces come back to it:
/// `imipd-bounces@<mail domain>` (with a `+tag` when VERP is used).
pub const BOUNCE_LOCAL_PART: &str = "imipd-bounces";
