//! One LMTP conversation (RFC 2033), from greeting to QUIT.
//!
//! Commands are parsed by smtp-proto's request parser; this module keeps the
//! transaction state (LHLO name, sender, accepted recipients), applies the limits
//! (SIZE, recipients, commands, errors, idle time), asks the [`LmtpHandler`] about
//! recipients and messages, and writes exactly one reply per command, plus one reply
//! per accepted recipient after DATA, in RCPT order. The LHLO and 354 replies are
//! written here rather than by smtp-proto (its EHLO writer prints a fixed greeting and
//! its 354 an odd enhanced code). It never panics on input: every byte sequence ends
//! in a reply or a closed connection. Accepting connections and shutdown live in
//! [`lmtp`](super::lmtp), which runs this module; this module never calls back into it
//! (the settings both read are in [`lmtp_config`](super::lmtp_config)).

use super::framing::{Data, Framed, Line, ReadError};
use super::handler::{LmtpHandler, ReceivedMessage, RecipientCheck, RecipientOutcome};
use super::lmtp_config::LmtpConfig;
use super::reply::{write_multiline, Reply};
use super::xforward::{self, ForwardedClient};
use smtp_proto::{Error as ParseError, Request};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// Whether the conversation goes on.
enum Flow {
    Continue,
    Close,
}

/// State of one connection.
struct Session<'a, S, H> {
    io: Framed<S>,
    config: &'a LmtpConfig,
    handler: &'a H,
    peer: String,
    /// The LHLO name; `None` until the client has said LHLO.
    lhlo: Option<String>,
    /// The current transaction's sender; `None` outside a transaction.
    mail_from: Option<String>,
    /// Recipients accepted in the current transaction, in RCPT order.
    recipients: Vec<String>,
    /// The MTA's own client, from `XFORWARD`, for the next transaction.
    client: ForwardedClient,
    commands: usize,
    errors: usize,
}

/// Runs one session on `stream` until QUIT, an error, a limit, or shutdown (which
/// lets a transaction in progress finish first).
pub(crate) async fn run<S, H>(
    stream: S,
    peer: String,
    config: &LmtpConfig,
    handler: &H,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    H: LmtpHandler,
{
    let mut session = Session {
        io: Framed::new(stream, config.max_line_length, config.idle_timeout),
        config,
        handler,
        peer,
        lhlo: None,
        mail_from: None,
        recipients: Vec::new(),
        client: ForwardedClient::default(),
        commands: 0,
        errors: 0,
    };
    tracing::debug!(peer = %session.peer, "LMTP session started");
    session.reply(Reply::bare(
        220,
        format!("{} LMTP imipd ready", config.hostname),
    ));
    loop {
        if !session.io.has_buffered_line() && session.io.flush().await.is_err() {
            break;
        }
        let idle_between_transactions = session.mail_from.is_none();
        if idle_between_transactions && *shutdown.borrow() {
            session
                .close_with(421, "4.3.2", "shutting down, try again later")
                .await;
            break;
        }
        let line = if idle_between_transactions {
            tokio::select! {
                biased;
                line = session.io.read_line() => line,
                () = shutdown_signalled(&mut shutdown) => {
                    session.close_with(421, "4.3.2", "shutting down, try again later").await;
                    break;
                }
            }
        } else {
            session.io.read_line().await
        };
        let flow = match line {
            Ok(line) => session.command(line).await,
            Err(ReadError::Idle) => {
                session
                    .close_with(421, "4.4.2", "idle too long, closing connection")
                    .await;
                Flow::Close
            }
            Err(ReadError::Closed) => Flow::Close,
            Err(ReadError::Io(e)) => {
                tracing::debug!(peer = %session.peer, error = %e, "LMTP connection failed");
                Flow::Close
            }
        };
        if let Flow::Close = flow {
            let _ = session.io.flush().await;
            break;
        }
    }
    tracing::debug!(peer = %session.peer, commands = session.commands, "LMTP session ended");
}

/// The arguments of an `XFORWARD` command line, if it is one.
fn xforward_arguments(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line)
        .ok()?
        .trim_end_matches(['\r', '\n']);
    let verb = text.get(..8)?;
    if !verb.eq_ignore_ascii_case("XFORWARD") {
        return None;
    }
    let rest = &text[8..];
    (rest.is_empty() || rest.starts_with(' ')).then(|| rest.trim().to_string())
}

/// Resolves once shutdown is requested (or the server is gone).
async fn shutdown_signalled(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

impl<S, H> Session<'_, S, H>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: LmtpHandler,
{
    fn reply(&mut self, reply: Reply) {
        reply.write_to(self.io.queue());
    }

    /// An error reply; too many of them end the session.
    fn error(&mut self, code: u16, enhanced: &str, text: impl AsRef<str>) -> Flow {
        self.reply(Reply::new(code, enhanced, text));
        self.errors += 1;
        if self.errors > self.config.max_errors {
            return self.too_many("errors");
        }
        Flow::Continue
    }

    /// Ends the session after too many `what` (errors, commands).
    fn too_many(&mut self, what: &str) -> Flow {
        let text = format!(
            "{} too many {what}, closing connection",
            self.config.hostname
        );
        self.reply(Reply::new(421, "4.7.0", text));
        Flow::Close
    }

    async fn close_with(&mut self, code: u16, enhanced: &str, text: &str) {
        let text = format!("{} {text}", self.config.hostname);
        self.reply(Reply::new(code, enhanced, text));
        let _ = self.io.flush().await;
    }

    fn reset(&mut self) {
        self.mail_from = None;
        self.recipients.clear();
        self.client = ForwardedClient::default();
    }

    /// `XFORWARD attr=value ...`: smtp-proto does not know it; see [`xforward`].
    fn xforward(&mut self, arguments: &str) -> Flow {
        if self.lhlo.is_none() {
            return self.error(503, "5.5.1", "say LHLO first");
        }
        if self.mail_from.is_some() {
            return self.error(503, "5.5.1", "XFORWARD inside a transaction");
        }
        match self.client.apply(arguments) {
            Ok(()) => {
                self.reply(Reply::new(250, "2.0.0", "ok"));
                Flow::Continue
            }
            Err(reason) => self.error(501, "5.5.4", reason),
        }
    }

    async fn command(&mut self, line: Line) -> Flow {
        self.commands += 1;
        if self.commands > self.config.max_commands {
            return self.too_many("commands");
        }
        let bytes = match line {
            Line::Command(bytes) => bytes,
            Line::TooLong => return self.error(500, "5.5.2", "line too long"),
        };
        if let Some(arguments) = xforward_arguments(&bytes) {
            return self.xforward(&arguments);
        }
        let request = match Request::parse(&mut bytes.iter()) {
            Ok(request) => request.into_owned(),
            Err(e) => return self.parse_error(e),
        };
        match request {
            Request::Lhlo { host } => {
                self.reset();
                self.lhlo = Some(host);
                let lines = [
                    self.config.hostname.clone(),
                    "PIPELINING".to_string(),
                    "ENHANCEDSTATUSCODES".to_string(),
                    "8BITMIME".to_string(),
                    xforward::OFFERED.to_string(),
                    format!("SIZE {}", self.config.max_message_size),
                ];
                write_multiline(self.io.queue(), 250, &lines);
                Flow::Continue
            }
            Request::Ehlo { .. } | Request::Helo { .. } => {
                self.error(500, "5.5.1", "this is an LMTP server: say LHLO")
            }
            Request::Mail { from } => {
                if self.lhlo.is_none() {
                    return self.error(503, "5.5.1", "say LHLO first");
                }
                if self.mail_from.is_some() {
                    return self.error(503, "5.5.1", "nested MAIL command");
                }
                if from.size > self.config.max_message_size {
                    return self.error(
                        552,
                        "5.3.4",
                        format!(
                            "message size exceeds fixed maximum message size ({} bytes)",
                            self.config.max_message_size
                        ),
                    );
                }
                self.mail_from = Some(from.address);
                self.recipients.clear();
                self.reply(Reply::new(250, "2.1.0", "sender ok"));
                Flow::Continue
            }
            Request::Rcpt { to } => {
                if self.mail_from.is_none() {
                    return self.error(503, "5.5.1", "need MAIL before RCPT");
                }
                if self.recipients.len() >= self.config.max_recipients {
                    self.reply(Reply::new(452, "4.5.3", "too many recipients"));
                    return Flow::Continue;
                }
                match self.handler.check_recipient(&to.address) {
                    RecipientCheck::Accept => {
                        self.recipients.push(to.address);
                        self.reply(Reply::new(250, "2.1.5", "recipient ok"));
                        Flow::Continue
                    }
                    RecipientCheck::Unknown => self.error(
                        550,
                        "5.1.1",
                        format!("<{}>: recipient address unknown", to.address),
                    ),
                    RecipientCheck::TempFail(reason) => {
                        self.reply(Reply::new(451, "4.3.0", reason));
                        Flow::Continue
                    }
                }
            }
            Request::Data => self.data().await,
            Request::Rset => {
                self.reset();
                self.reply(Reply::new(250, "2.0.0", "ok"));
                Flow::Continue
            }
            Request::Noop { .. } => {
                self.reply(Reply::new(250, "2.0.0", "ok"));
                Flow::Continue
            }
            Request::Quit => {
                let text = format!("{} closing connection", self.config.hostname);
                self.reply(Reply::new(221, "2.0.0", text));
                Flow::Close
            }
            Request::Bdat { .. } => {
                // The chunk's bytes follow at once and would be read as commands.
                self.reply(Reply::new(
                    421,
                    "4.5.0",
                    "BDAT not supported (CHUNKING is not advertised), closing connection",
                ));
                Flow::Close
            }
            other => {
                let name = other.name();
                self.error(502, "5.5.1", format!("{name} not implemented"))
            }
        }
    }

    fn parse_error(&mut self, error: ParseError) -> Flow {
        match error {
            ParseError::SyntaxError { syntax } => {
                self.error(501, "5.5.4", format!("syntax: {syntax}"))
            }
            ParseError::InvalidSenderAddress => {
                self.error(501, "5.1.7", "bad sender address syntax")
            }
            ParseError::InvalidRecipientAddress => {
                self.error(501, "5.1.3", "bad recipient address syntax")
            }
            ParseError::InvalidParameter { param } => {
                self.error(501, "5.5.4", format!("invalid parameter {param}"))
            }
            ParseError::UnsupportedParameter { param } => {
                self.error(555, "5.5.4", format!("unsupported parameter {param}"))
            }
            ParseError::UnknownCommand
            | ParseError::NeedsMoreData { .. }
            | ParseError::ResponseTooLong
            | ParseError::InvalidResponse { .. } => {
                self.error(500, "5.5.2", "command not recognized")
            }
        }
    }

    async fn data(&mut self) -> Flow {
        let Some(mail_from) = self.mail_from.clone() else {
            return self.error(503, "5.5.1", "need MAIL before DATA");
        };
        if self.recipients.is_empty() {
            return self.error(503, "5.5.1", "no valid recipients");
        }
        self.reply(Reply::new(
            354,
            "",
            "start mail input; end with <CRLF>.<CRLF>",
        ));
        if self.io.flush().await.is_err() {
            return Flow::Close;
        }
        let recipients = std::mem::take(&mut self.recipients);
        let client = std::mem::take(&mut self.client);
        self.reset();
        let data = match self.io.read_data(self.config.max_message_size).await {
            Ok(Data::Complete(data)) => data,
            Ok(Data::TooBig) => {
                let text = format!(
                    "message size exceeds fixed maximum message size ({} bytes)",
                    self.config.max_message_size
                );
                for _ in &recipients {
                    self.reply(Reply::new(552, "5.3.4", &text));
                }
                return Flow::Continue;
            }
            Err(ReadError::Idle) => {
                self.close_with(421, "4.4.2", "idle too long in DATA, closing connection")
                    .await;
                return Flow::Close;
            }
            Err(_) => return Flow::Close,
        };
        let size = data.len();
        let message = ReceivedMessage {
            mail_from: mail_from.clone(),
            recipients: recipients.clone(),
            data,
            lhlo: self.lhlo.clone().unwrap_or_default(),
            peer: self.peer.clone(),
            client,
        };
        let outcomes = self.handler.deliver(message).await;
        if outcomes.len() != recipients.len() {
            tracing::warn!(
                peer = %self.peer,
                expected = recipients.len(),
                got = outcomes.len(),
                "LMTP handler returned the wrong number of outcomes; missing ones are answered 451"
            );
        }
        for (i, rcpt) in recipients.iter().enumerate() {
            let reply = match outcomes.get(i) {
                Some(RecipientOutcome::Accepted(text)) => Reply::new(250, "2.0.0", text),
                Some(RecipientOutcome::TempFail { enhanced, reason }) => {
                    Reply::new(451, enhanced, reason)
                }
                Some(RecipientOutcome::Rejected {
                    code,
                    enhanced,
                    reason,
                }) => {
                    let code = if (500..600).contains(code) {
                        *code
                    } else {
                        554
                    };
                    Reply::new(code, enhanced, reason)
                }
                None => Reply::new(451, "4.3.0", "delivery outcome unknown, try again later"),
            };
            tracing::info!(
                peer = %self.peer,
                from = %mail_from,
                rcpt = %rcpt,
                size,
                reply = reply.code,
                "LMTP delivery"
            );
            self.reply(reply);
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::handler::ReceivedMessage;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Everyone;

    impl LmtpHandler for Everyone {
        fn check_recipient(&self, recipient: &str) -> RecipientCheck {
            if recipient.len().is_multiple_of(2) {
                RecipientCheck::Accept
            } else {
                RecipientCheck::Unknown
            }
        }

        async fn deliver(&self, message: ReceivedMessage) -> Vec<RecipientOutcome> {
            // Deliberately one outcome short: the server must fill the gap.
            let n = message.recipients.len().saturating_sub(1);
            vec![RecipientOutcome::Accepted("ok\r\n250 injected".into()); n]
        }
    }

    /// Runs a session over `input` and returns everything it wrote.
    async fn converse(input: Vec<u8>) -> String {
        let config = LmtpConfig {
            idle_timeout: Duration::from_millis(50),
            max_message_size: 200,
            max_line_length: 100,
            ..LmtpConfig::default()
        };
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let writer = tokio::spawn(async move {
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
            out
        });
        run(server, "test".into(), &config, &Everyone, stop_rx).await;
        String::from_utf8(writer.await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn random_conversations_get_well_formed_replies() {
        let tokens: [&[u8]; 16] = [
            b"LHLO x\r\n",
            b"MAIL FROM:<a@b.c>\r\n",
            b"MAIL FROM:<a@b.c> SIZE=999999\r\n",
            b"RCPT TO:<ab@c.d>\r\n",
            b"RCPT TO:<a@c.d>\r\n",
            b"DATA\r\n",
            b"BDAT 10 LAST\r\n",
            b"RSET\r\n",
            b"NOOP\r\n",
            b".\r\n",
            b"..\r\n",
            b"\r\n",
            b"\xff\x00\xfe",
            b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            b"\r",
            b"QUIT\r\n",
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut replies = 0;
        for _ in 0..300 {
            let mut input = Vec::new();
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                input.extend_from_slice(tokens[(x % 16) as usize]);
            }
            let output = converse(input.clone()).await;
            assert!(output.starts_with("220 "), "{output}");
            for line in output.split_terminator("\r\n") {
                let ok = line.len() >= 4
                    && line.as_bytes()[..3].iter().all(u8::is_ascii_digit)
                    && matches!(line.as_bytes()[3], b' ' | b'-');
                assert!(ok, "malformed reply line {line:?} for input {input:?}");
                replies += 1;
            }
        }
        assert!(
            replies > 600,
            "the conversations should go somewhere: {replies}"
        );
    }

    #[tokio::test]
    async fn missing_outcomes_are_answered_451() {
        let output = converse(
            b"LHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<ab@c.d>\r\nRCPT TO:<cd@c.d>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n"
                .to_vec(),
        )
        .await;
        let after_data: Vec<&str> = output
            .split_terminator("\r\n")
            .skip_while(|l| !l.starts_with("354"))
            .skip(1)
            .collect();
        assert_eq!(
            after_data,
            [
                "250 2.0.0 ok 250 injected",
                "451 4.3.0 delivery outcome unknown, try again later",
                "221 2.0.0 localhost closing connection"
            ]
        );
    }
}
