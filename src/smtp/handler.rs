//! The seam between the LMTP server and the daemon: [`LmtpHandler`].
//!
//! The server speaks the protocol; the daemon decides. It is asked twice per
//! message: at RCPT time whether an address is one it serves (so the MTA rejects
//! unknown recipients during its own SMTP dialogue instead of bouncing later), and
//! after DATA what became of the message for each accepted recipient. The server turns
//! the answers into LMTP replies (RFC 2033: one reply per recipient after DATA).

use std::future::Future;

/// The answer to "is this an address you deliver to?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientCheck {
    /// A local user or the bounce address: `250 2.1.5`.
    Accept,
    /// Not served here: `550 5.1.1`.
    Unknown,
    /// Cannot tell right now (configuration being reloaded…): `451 4.3.0` with this
    /// reason; the MTA tries again later.
    TempFail(String),
}

/// One received message, for the recipients that were accepted at RCPT time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The envelope sender (MAIL FROM), empty for bounces (`<>`).
    pub mail_from: String,
    /// Accepted recipients, in RCPT order; the outcomes must follow this order.
    pub recipients: Vec<String>,
    /// The message as received (dot-unstuffed, CRLF line ends as sent).
    pub data: Vec<u8>,
    /// The name the client gave in LHLO, for the log.
    pub lhlo: String,
    /// Who connected: `127.0.0.1:43210` or `unix:/run/imipd/lmtp.sock`.
    pub peer: String,
    /// The client the MTA received the mail from (`XFORWARD`; empty without it):
    /// SPF is checked against its address.
    pub client: super::xforward::ForwardedClient,
}

/// What became of the message for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientOutcome {
    /// Taken: `250 2.0.0 <text>`; the MTA considers it delivered.
    Accepted(String),
    /// Not now (store busy, disk full): `451 <enhanced> <reason>`; the MTA retries.
    /// `enhanced` should be a 4.x.x code, e.g. `4.3.0` or `4.3.1` (system full).
    TempFail {
        /// RFC 3463 code, class 4.
        enhanced: String,
        /// Why, for the MTA's log.
        reason: String,
    },
    /// Refused for good: the MTA bounces it to the sender.
    Rejected {
        /// A 5xx reply code, normally 550 (policy, `5.7.1`) or 554 (content, `5.6.0`).
        code: u16,
        /// RFC 3463 code, class 5.
        enhanced: String,
        /// Why, quoted in the bounce the sender receives.
        reason: String,
    },
}

/// What the daemon implements to receive mail over LMTP.
pub trait LmtpHandler: Send + Sync + 'static {
    /// RCPT-time check of one address (a local user's address, or the bounce address).
    fn check_recipient(&self, recipient: &str) -> RecipientCheck;

    /// Takes one message for its accepted recipients and says, for each of them in
    /// the same order, what became of it. A missing outcome is answered `451 4.3.0`
    /// (so the MTA retries rather than loses the message); extra ones are ignored.
    fn deliver(
        &self,
        message: ReceivedMessage,
    ) -> impl Future<Output = Vec<RecipientOutcome>> + Send;

    /// A connection was accepted and its session starts (for status counters).
    fn session_opened(&self) {}

    /// A session ended, however it ended.
    fn session_closed(&self) {}
}
