//! What the delivery queue hands a message to: the [`Transport`] trait, the SMTP
//! envelope, and the typed outcome ([`Handover`] or [`SendError`]).
//!
//! Both transports (the SMTP [`Relay`](super::Relay) and the [`Outbox`](super::Outbox)
//! folder) implement [`Transport`], so the queue worker is written once. The error
//! says whether trying again can help ([`SendError::Temporary`]) or not
//! ([`SendError::Permanent`]), and carries the server's reply when there was one, so
//! the queue can record an RFC 6638 SCHEDULE-STATUS and the admin can read why. This
//! module does no I/O; retry timing lives in [`retry`](super::retry).

use std::fmt;
use std::future::Future;

/// The SMTP envelope of one outgoing message: one sender, one recipient.
///
/// imipd builds one email per recipient (each carries its own tracking header), so
/// the envelope has exactly one RCPT; a failure is then always about that recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// MAIL FROM: where bounces go. Normally a VERP bounce address
    /// ([`BounceAddress`](super::BounceAddress)), so a bounce names its queue item.
    pub mail_from: String,
    /// RCPT TO: the recipient's email address (no `mailto:`).
    pub recipient: String,
    /// DSN envelope identifier (RFC 3461 ENVID), returned in the bounce's
    /// `Original-Envelope-Id`; `None` sends no ENVID.
    pub envelope_id: Option<String>,
}

/// A successful handover: the message is now someone else's responsibility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// What took it, for the log: the relay's final reply (with its queue ID), or the
    /// outbox file written.
    pub detail: String,
}

/// A reply from the SMTP server, kept whole so the admin sees what the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    /// The three-digit reply code, e.g. 550.
    pub code: u16,
    /// The RFC 3463 enhanced status code, e.g. `5.1.1`, when the server sent one.
    pub enhanced: Option<String>,
    /// The server's text, lines joined by spaces.
    pub text: String,
}

impl fmt::Display for SmtpReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(enhanced) = &self.enhanced {
            write!(f, " {enhanced}")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// Why a send failed: what was being done, and the server reply if one came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// A sentence for the admin, naming the relay or folder and, where there is one,
    /// the fix: "relay 127.0.0.1:2525 refused the connection: is it running?".
    pub message: String,
    /// The SMTP reply that caused the failure; `None` for network, TLS and file errors.
    pub reply: Option<SmtpReply>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A failed send, classified by what the queue should do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later: a 4xx reply, a timeout, a refused or dropped connection, a
    /// TLS or login problem, a full disk.
    #[error("temporary failure: {0}")]
    Temporary(Failure),
    /// Do not try again: the server answered 5xx for this message or recipient.
    #[error("permanent failure: {0}")]
    Permanent(Failure),
}

impl SendError {
    /// A temporary failure without a server reply.
    pub fn temporary(message: impl Into<String>) -> Self {
        SendError::Temporary(Failure {
            message: message.into(),
            reply: None,
        })
    }

    /// True when retrying may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, SendError::Temporary(_))
    }

    /// The failure details.
    pub fn failure(&self) -> &Failure {
        match self {
            SendError::Temporary(f) | SendError::Permanent(f) => f,
        }
    }

    /// The server's reply, if the failure was an SMTP reply.
    pub fn reply(&self) -> Option<&SmtpReply> {
        self.failure().reply.as_ref()
    }

    /// The enhanced status code (`5.1.1`), if the server sent one: what
    /// SCHEDULE-STATUS and the bounce log should show.
    pub fn enhanced_status(&self) -> Option<&str> {
        self.reply().and_then(|r| r.enhanced.as_deref())
    }
}

/// Something that takes an outgoing message off the queue's hands.
///
/// Implemented by the SMTP [`Relay`](super::Relay) and the [`Outbox`](super::Outbox),
/// so the queue worker can use either. `send` may be called concurrently; a transport
/// that keeps connections runs one transaction per connection at a time.
pub trait Transport: Send + Sync {
    /// Hands over `message` (complete RFC 5322 bytes, CRLF line ends) for `envelope`.
    fn send<'a>(
        &'a self,
        envelope: &'a Envelope,
        message: &'a [u8],
    ) -> impl Future<Output = Result<Handover, SendError>> + Send + 'a;

    /// Hands over every mail of `mails`; the results in the same order. The mails
    /// must not depend on each other's order (the queue passes at most one per
    /// recipient and UID), so a transport with several connections may send them at
    /// once; this default sends them one after the other.
    fn send_all<'a>(
        &'a self,
        mails: &'a [(Envelope, Vec<u8>)],
    ) -> impl Future<Output = Vec<Result<Handover, SendError>>> + Send + 'a {
        async move {
            let mut results = Vec::with_capacity(mails.len());
            for (envelope, message) in mails {
                results.push(self.send(envelope, message).await);
            }
            results
        }
    }

    /// Makes every message handed over since the last call durable, where [`send`]
    /// leaves part of that for later (the outbox syncs its folder once for a batch);
    /// the queue calls it before it records messages as sent. A relay's 250 is
    /// durable already: nothing to do.
    ///
    /// [`send`]: Transport::send
    fn flush(&self) -> impl Future<Output = Result<(), SendError>> + Send + '_ {
        std::future::ready(Ok(()))
    }
}

/// RFC 3461 xtext: printable ASCII except `+` and `=` as is, everything else `+XX`.
pub(crate) fn xtext_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (33..=126).contains(&byte) && byte != b'+' && byte != b'=' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("+{byte:02X}"));
        }
    }
    out
}

/// Reverses [`xtext_encode`]; malformed `+` sequences are kept literally (a report
/// from a sloppy MTA still yields something to log).
pub(crate) fn xtext_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (byte, hex) {
            (b'+', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_round_trip() {
        for text in ["plain", "a+b=c", "sp ace", "q42.1@imipd", "é"] {
            let encoded = xtext_encode(text);
            assert!(encoded.bytes().all(|b| (33..=126).contains(&b)));
            assert!(!encoded.contains('='));
            assert_eq!(xtext_decode(&encoded), text);
        }
        assert_eq!(xtext_encode("a+b"), "a+2Bb");
        assert_eq!(xtext_decode("bad+zz"), "bad+zz");
    }

    #[test]
    fn reply_display() {
        let reply = SmtpReply {
            code: 550,
            enhanced: Some("5.1.1".into()),
            text: "no such user".into(),
        };
        assert_eq!(reply.to_string(), "550 5.1.1 no such user");
    }
}
