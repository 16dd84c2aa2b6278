//! imipd: calendar scheduling over email for file-based calendar stores.

pub mod caldav;
pub mod config;
pub mod daemon;
pub mod imip;
pub mod itip;
pub mod replay;
pub mod smtp;
pub mod store;
