//! imipd: calendar scheduling over email for file-based calendar stores.

pub mod itip;
pub mod imip;
