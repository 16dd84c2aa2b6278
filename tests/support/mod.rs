//! Test helpers for the mail-transport tests, reusable by any integration test with
//!
//! ```text
//! #[path = "support/mod.rs"]
//! mod support;
//! ```
//!
//! - [`TempDir`]: a folder under the system temp dir, removed on drop.
//! - [`free_port`]: a loopback TCP port no other test of this process was given.
//! - [`Postfix`]: a private Postfix instance (`postfix -c <dir> start-fg`) on a
//!   loopback port, with its own queue, log file and routing; stopped on drop.
//! - [`Sink`]: a small SMTP server that records what it accepts and can be told to
//!   answer 4xx/5xx or to be down.
//! - [`lmtp`]: a recording [`LmtpHandler`](imipd::smtp::LmtpHandler) and a running
//!   imipd LMTP server for it.
//! - [`tools`]: swaks and a raw line client.
//! - [`radicale`]: a real Radicale server and a minimal CalDAV (HTTP) client.
//! - [`dns`]: a real DNS server (dnsmasq) serving DKIM/SPF/DMARC records, and DKIM keys.
//! - [`dovecot`]: a private Dovecot (LMTP, Sieve with pipe) delivering to Maildirs.
//! - [`site`]: the site under test: stores, configuration and the real `imipd serve`
//!   (start, wait until, log, stop).
//! - [`events`]: the organizer's and attendee's copies the sender-authentication
//!   tests protect.
//! - [`files`]: the files of one kind in a folder, the calendar part of an email.
//! - [`fixture`]: users, a store, LMTP settings and a first scan, for tests that call
//!   imipd's library directly.
//!
//! Everything listens on 127.0.0.1 only. Each test binary uses only some helpers.
#![allow(dead_code, unused_imports)]

pub mod dns;
pub mod dovecot;
pub mod events;
pub mod files;
pub mod fixture;
pub mod lmtp;
pub mod ports;
pub mod postfix;
pub mod radicale;
pub mod sink;
pub mod site;
pub mod tempdir;
pub mod tools;

pub use ports::free_port;
pub use postfix::Postfix;
pub use sink::Sink;
pub use site::{Daemon, Site};
pub use tempdir::TempDir;

/// Lets a test's own site type, a struct that holds a helper (`$field`: the [`Site`],
/// a [`fixture::MailSite`]) next to what else the test runs, be used as that helper.
#[allow(unused_macros)]
macro_rules! deref_to {
    ($outer:ty => $inner:ty, $field:tt) => {
        impl std::ops::Deref for $outer {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.$field
            }
        }
    };
}
pub(crate) use deref_to;
