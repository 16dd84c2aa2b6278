//! The CalDAV front (`[caldav]`): what calendar clients talk to instead of Radicale.
//!
//! A CalDAV client schedules by email itself unless the server says it schedules
//! (RFC 6638 §2: `calendar-auto-schedule` in the DAV header). Radicale does not say
//! so, so Thunderbird and Evolution mail every invitation themselves, and with imipd
//! watching the same store everyone got each message twice. The front passes every
//! request through to Radicale unchanged and adds `calendar-auto-schedule` to the DAV
//! header of the answers: clients then leave scheduling to imipd. The announcement
//! lives in imipd's own process, so it cannot outlive imipd: while imipd is down, the
//! front is down and no client believes that someone schedules for it.
//!
//! One thing more, because imipd writes into the store behind the clients' backs: a
//! client that saves on a version imipd has since rewritten only for its bookkeeping
//! (answers, delivery status, SEQUENCE) would get HTTP 412 from Radicale and show its
//! user a "changed on the server" dialog. Thunderbird ignores RFC 6638's Schedule-Tag,
//! which exists for this, so the front gives the same meaning to plain ETags: such a
//! save is passed on against the current version, and imipd puts its bookkeeping back
//! ([`stale_save`]). A save over anything a person wrote still gets its 412.
//!
//! - [`announce`]: the DAV header with the announcement (pure).
//! - [`headers`]: reading the DAV and Connection list headers (pure).
//! - [`listing`]: the ETags a multistatus answer gives (pure).
//! - [`paths`]: which store object a request path names (pure).
//! - [`upstream`]: one HTTP/1 request to Radicale.
//! - [`stale_save`]: the 412 rule, over [`crate::store::provenance`].
//! - [`server`]: the listener, the pass-through and its logging.
//!
//! It does not parse or change calendar data: every body passes through untouched.

pub mod announce;
pub mod headers;
pub mod listing;
pub mod paths;
pub mod server;
pub mod stale_save;
pub mod upstream;

pub use server::{bind, serve};
