//! imipd: calendar scheduling over email for file-based calendar stores.
//!
//! # Layout
//!
//! - [`itip`]: the scheduling engine (RFC 5546 under RFC 6638's rules); pure code.
//! - [`imip`]: iMIP mail: building outgoing messages, reading incoming ones, senders.
//! - [`smtp`]: the outbound queue's transports (relay, outbox) and the LMTP server.
//! - [`store`]: calendar stores (vdir, Radicale), the state database, watching, writes.
//! - [`caldav`]: the CalDAV front clients talk to, passing through to Radicale.
//! - [`daemon`]: the service loops, control socket and admin commands.
//! - [`replay`]: the scenario runner behind `imipd replay`.
//!
//! Two data paths, each one way: a store change → [`store::process`] → [`itip`] → a
//! local user's store ([`store::apply`]) or [`imip`] → [`smtp`]; and LMTP → [`imip`]
//! (sender authenticated) → [`itip`] → [`store::apply`].

pub mod caldav;
pub mod config;
pub mod daemon;
pub mod imip;
pub mod itip;
pub mod replay;
pub mod smtp;
pub mod store;
pub mod text;
pub mod threads;

/// What the unit tests of several modules share.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::PathBuf;

    /// An empty folder `imipd-<name>-<pid>` in the temporary folder, emptied of what an
    /// earlier run left.
    pub fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("imipd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        dir
    }
}
