//! The LMTP server's settings: where it listens and the limits each session enforces.
//!
//! Its own module so that both users read it without reading each other: the server
//! ([`lmtp`](super::lmtp), listeners and shutdown) runs sessions
//! ([`session`](super::session), one conversation), never the other way round.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of the LMTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmtpConfig {
    /// TCP address to listen on (loopback, e.g. `127.0.0.1:2424`); `None` for none.
    pub tcp: Option<SocketAddr>,
    /// Unix socket path to listen on; `None` for none. A stale socket file left by a
    /// crash is replaced; one a running server answers on is not.
    pub unix: Option<PathBuf>,
    /// Permissions of the unix socket (e.g. `0o660` with the MTA's user in the
    /// group); `None` leaves what the umask gives.
    pub unix_mode: Option<u32>,
    /// The name in the greeting and the LHLO reply.
    pub hostname: String,
    /// Largest message accepted, in bytes; advertised as `SIZE`.
    pub max_message_size: usize,
    /// Connections served at once; more are answered `421 4.3.2`.
    pub max_connections: usize,
    /// How long the client may stay silent (per command, per DATA read).
    pub idle_timeout: Duration,
    /// Longest command line, CRLF included (RFC 5321 asks for at least 512).
    pub max_line_length: usize,
    /// Commands per session before the server closes it.
    pub max_commands: usize,
    /// Recipients per transaction; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// Error replies per session before the server closes it (stops garbage floods).
    pub max_errors: usize,
    /// How long shutdown waits for sessions to finish their transaction.
    pub shutdown_grace: Duration,
}

impl Default for LmtpConfig {
    fn default() -> Self {
        LmtpConfig {
            tcp: None,
            unix: None,
            unix_mode: None,
            hostname: "localhost".to_string(),
            max_message_size: 10 * 1024 * 1024,
            max_connections: 20,
            idle_timeout: Duration::from_secs(300),
            max_line_length: 2048,
            max_commands: 1000,
            max_recipients: 100,
            max_errors: 20,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}
