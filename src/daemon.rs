//! The long-running service: store watching, the scheduling engine, the delivery queue
//! and the LMTP server together, with graceful shutdown.

pub mod admin;
pub mod inbound;
pub mod logging;
pub mod systemd;
