//! imipd: calendar scheduling over email for file-based calendar stores.

pub mod imip;
pub mod itip;
pub mod replay;
pub mod store;
pub mod smtp;
