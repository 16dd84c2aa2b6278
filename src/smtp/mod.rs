//! Mail transport: how iMIP mail leaves imipd and how mail comes back in.
//!
//! Out (queue → world): the delivery queue hands each message to a [`Transport`]:
//! the SMTP [`Relay`] (mail-send, one reused connection, DSN parameters asking for
//! matchable bounces) or the [`Outbox`] folder (one `.eml` file per message). Both
//! answer with a [`Handover`] or a [`SendError`] that says whether to retry; the
//! [`retry`] policy says when. The envelope sender is a VERP [`BounceAddress`], so a
//! bounce names its queue item.
//!
//! In (MTA → imipd): the MTA delivers to the [`LmtpServer`] (RFC 2033, TCP and/or
//! unix socket), which asks the daemon's [`LmtpHandler`] about each recipient and each
//! message and answers per recipient. Bounces arrive the same way, to the bounce
//! address; [`parse_dsn`] reads them.
//!
//! Layout: `transport` (trait, envelope, errors), `relay`, `outbox`, `retry`;
//! `lmtp` (listeners, connection limit, shutdown) runs `session` (one conversation;
//! both read `lmtp_config`, and `session` never calls `lmtp`)
//! over `framing` (bounded lines and DATA) and `reply` (well-formed reply lines),
//! calling `handler`; `dsn` and `verp` are pure parsing helpers. Nothing here touches
//! the calendar store or the queue's storage.

pub mod dsn;
mod framing;
pub mod handler;
pub mod lmtp;
mod lmtp_config;
pub mod outbox;
pub mod relay;
mod reply;
pub mod retry;
mod session;
pub mod transport;
pub mod verp;
pub mod xforward;

pub use dsn::{parse_dsn, DeliveryReport, DsnAction, DsnError, RecipientReport};
pub use handler::{LmtpHandler, ReceivedMessage, RecipientCheck, RecipientOutcome};
pub use lmtp::{LmtpConfig, LmtpError, LmtpServer};
pub use outbox::Outbox;
pub use relay::{Relay, RelayAuth, RelayConfig, RelayTls};
pub use retry::{Decision, GiveUpReason, RandomSource, RetryPolicy, SplitMix64};
pub use transport::{Envelope, Failure, Handover, SendError, SmtpReply, Transport};
pub use verp::{BounceAddress, BounceToken, VerpError};
