//! The scheduling engine: iTIP (RFC 5546) under the rules of RFC 6638.
//!
//! Pure code: no files, sockets, clock or randomness. Callers pass the acting account's
//! addresses and "now" in a [`Context`]; the engine answers with messages to send and the
//! updated copy to store, or an [`ItipError`] that says why not.

pub mod address;
pub mod error;
pub mod message;

pub use address::CalAddress;
pub use error::ItipError;
pub use message::{method_name, FieldChange, ItipMessage, MessageSummary, Method};
