//! The SMTP client that hands outgoing iMIP mail to the configured relay (smarthost).
//!
//! Built on mail-send 0.7, the one SMTP client in the project. Up to
//! [`RelayConfig::connections`] connections are kept and reused for the next message
//! while they are fresh: before reuse the relay gets a `RSET`, which both clears any
//! half-finished transaction and proves the connection is still alive; a connection
//! that fails, answers 421, or sat idle longer than [`RelayConfig::reuse_for`] is
//! dropped and a new one opened. One transaction runs on a connection at a time;
//! [`Transport::send_all`] spreads a batch over the connections (a large change's
//! 1,000 mails go out over all of them at once). Where the relay offers PIPELINING
//! (RFC 2920), `RSET`, `MAIL`, `RCPT` and `DATA` go out in one write and their replies
//! are read together: one round trip before the message instead of four. A kept
//! connection the relay closed in the meantime is noticed before any of the message
//! was sent, and the message goes out on a fresh connection at once.
//!
//! The envelope asks for bounces that can be matched: `MAIL FROM:<verp> RET=HDRS
//! ENVID=<id>` and `RCPT TO:<rcpt> NOTIFY=FAILURE,DELAY ORCPT=rfc822;<rcpt>` when the
//! relay advertises DSN (RFC 3461); without DSN the relay still bounces to the VERP
//! address. Failures are classified for the queue: a 5xx reply to MAIL, RCPT or DATA
//! is [`SendError::Permanent`]; everything else (4xx, timeouts, refused or dropped
//! connections, TLS and login problems, which no retry of this message can fix but
//! an admin can) is [`SendError::Temporary`]. This module does not retry by itself.

use super::transport::{
    xtext_encode, Envelope, Failure, Handover, SendError, SmtpReply, Transport,
};
use mail_send::smtp::message::Parameters;
use mail_send::{Credentials, SmtpClient, SmtpClientBuilder};
use smtp_proto::{
    EhloResponse, Response, EXT_8BIT_MIME, EXT_DSN, EXT_PIPELINING, EXT_SIZE, EXT_SMTP_UTF8,
};
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTls {
    /// Plain SMTP: only for a relay on the same machine or a trusted network.
    None,
    /// Plain connection upgraded with STARTTLS (port 587); refused if not offered.
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
}

/// AUTH credentials for the relay.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayAuth {
    /// The login name.
    pub username: String,
    /// The password (never printed by `Debug`).
    pub password: String,
}

impl fmt::Debug for RelayAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where and how to reach the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Host name or IP address of the relay.
    pub host: String,
    /// TCP port (587 for submission with STARTTLS, 465 for implicit TLS, 25).
    pub port: u16,
    /// Transport security.
    pub tls: RelayTls,
    /// Login, when the relay wants one.
    pub auth: Option<RelayAuth>,
    /// How long one step of the conversation (connect, a command, the message) may
    /// take before the attempt counts as a temporary failure.
    pub timeout: Duration,
    /// The name imipd gives in EHLO: the gateway's host name.
    pub helo_name: String,
    /// Accept any TLS certificate. For tests against a self-signed relay only.
    pub accept_invalid_certs: bool,
    /// An idle connection older than this is closed instead of reused, staying under
    /// the relay's own idle timeout (Postfix: 300 s).
    pub reuse_for: Duration,
    /// How many connections to the relay may be open at once (at least 1): a batch
    /// of mails is spread over them.
    pub connections: usize,
}

/// Connections to the relay when `[relay] connections` is not set: enough to keep a
/// loopback or LAN relay busy while imipd builds the next mails, few enough that no
/// relay's per-client limit (Postfix: 50) comes near.
pub const DEFAULT_CONNECTIONS: usize = 4;

impl RelayConfig {
    /// A configuration for `host:port` with STARTTLS, no login, 60 s timeout.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        RelayConfig {
            host: host.into(),
            port,
            tls: RelayTls::StartTls,
            auth: None,
            timeout: Duration::from_secs(60),
            helo_name: "localhost".to_string(),
            accept_invalid_certs: false,
            reuse_for: Duration::from_secs(60),
            connections: DEFAULT_CONNECTIONS,
        }
    }
}

/// The stream types mail-send hands back (plain TCP or a rustls stream), boxed so one
/// connection type serves every [`RelayTls`] mode.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One open, greeted (and logged-in) connection to the relay.
struct Connection {
    client: SmtpClient<Box<dyn Stream>>,
    /// What the relay offered in EHLO (DSN, SIZE, 8BITMIME, SMTPUTF8).
    capabilities: EhloResponse<String>,
    /// When the last transaction on it finished, for [`RelayConfig::reuse_for`].
    idle_since: Instant,
    /// Messages sent over it, for the log.
    messages: u64,
}

/// The conversation step a failure happened in; decides the wording and whether a 5xx
/// is about this message (permanent) or about the relay (temporary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connect,
    /// The RSET before reusing a kept connection.
    Reset,
    Ehlo,
    Auth,
    MailFrom,
    RcptTo,
    Data,
}

impl Stage {
    fn describe(self) -> &'static str {
        match self {
            Stage::Connect => "connecting",
            Stage::Reset => "RSET",
            Stage::Ehlo => "EHLO",
            Stage::Auth => "AUTH",
            Stage::MailFrom => "MAIL FROM",
            Stage::RcptTo => "RCPT TO",
            Stage::Data => "DATA",
        }
    }

    /// Whether a 5xx reply at this step condemns the message rather than the setup.
    fn is_about_message(self) -> bool {
        matches!(self, Stage::MailFrom | Stage::RcptTo | Stage::Data)
    }
}

/// The SMTP relay transport: a few reused connections to one relay.
pub struct Relay {
    config: RelayConfig,
    /// One permit per connection that may be open: a send holds one for its
    /// transaction, so no more than [`RelayConfig::connections`] run at once.
    slots: Semaphore,
    /// The connections not in use, the most recently used last.
    idle: std::sync::Mutex<Vec<Connection>>,
}

impl Relay {
    /// A relay transport; nothing is connected until the first send.
    pub fn new(config: RelayConfig) -> Self {
        let slots = Semaphore::new(config.connections.max(1));
        Relay {
            config,
            slots,
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Says QUIT on the kept connections, if any (daemon shutdown).
    pub async fn close(&self) {
        let kept = std::mem::take(&mut *self.idle());
        for connection in kept {
            self.quit(connection).await;
        }
    }

    fn address(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port)
    }

    async fn quit(&self, connection: Connection) {
        let limit = self.config.timeout.min(Duration::from_secs(5));
        let _ = tokio::time::timeout(limit, connection.client.quit()).await;
    }

    async fn send_message(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Handover, SendError> {
        check_address("sender", &envelope.mail_from, true)?;
        check_address("recipient", &envelope.recipient, false)?;
        // The semaphore is never closed; without a permit the send still runs alone
        // on a connection of its own.
        let _slot = self.slots.acquire().await.ok();
        let kept = loop {
            let Some(kept) = self.idle().pop() else {
                break None;
            };
            if kept.idle_since.elapsed() > self.config.reuse_for {
                tracing::debug!(relay = %self.address(), "closing idle relay connection");
                self.quit(kept).await;
            } else {
                break Some(kept);
            }
        };
        let (mut connection, mut result) = match kept {
            Some(mut kept) => {
                let result = self.transaction(&mut kept, envelope, message, true).await;
                (kept, result)
            }
            None => {
                let mut fresh = self.connect().await?;
                let result = self.transaction(&mut fresh, envelope, message, false).await;
                (fresh, result)
            }
        };
        if let Err((Stage::Reset, error)) = &result {
            // The kept connection is gone (the relay closed it while idle): nothing
            // of this message was sent, so it goes out on a fresh one.
            tracing::debug!(relay = %self.address(), %error, "kept relay connection is gone, reconnecting");
            connection = self.connect().await?;
            result = self
                .transaction(&mut connection, envelope, message, false)
                .await;
        }
        match result {
            Ok(reply) => {
                connection.idle_since = Instant::now();
                connection.messages += 1;
                self.idle().push(connection);
                Ok(Handover {
                    detail: format!("relay {} accepted it: {}", self.address(), reply_of(&reply)),
                })
            }
            Err((stage, error)) => {
                // A rejected command leaves the conversation in step (RSET fixes the
                // rest); anything else, or 421, means the connection is unusable.
                let in_step =
                    matches!(&error, mail_send::Error::UnexpectedReply(r) if r.code != 421);
                if in_step {
                    connection.idle_since = Instant::now();
                    self.idle().push(connection);
                }
                Err(self.classify(stage, error, envelope))
            }
        }
    }

    /// Sends `mails` over up to [`RelayConfig::connections`] connections at once,
    /// each connection taking every n-th mail in turn; the results in input order.
    async fn send_spread(&self, mails: &[(Envelope, Vec<u8>)]) -> Vec<Result<Handover, SendError>> {
        let lanes = self.config.connections.clamp(1, mails.len().max(1));
        let lane = |first: usize| async move {
            let mut results = Vec::new();
            for at in (first..mails.len()).step_by(lanes) {
                let (envelope, message) = &mails[at];
                results.push((at, self.send_message(envelope, message).await));
            }
            results
        };
        let mut results: Vec<(usize, Result<Handover, SendError>)> =
            join_all((0..lanes).map(lane).collect())
                .await
                .into_iter()
                .flatten()
                .collect();
        results.sort_by_key(|(at, _)| *at);
        results.into_iter().map(|(_, result)| result).collect()
    }

    async fn connect(&self) -> Result<Connection, SendError> {
        let cfg = &self.config;
        let fail = |stage, e| self.classify_setup(stage, e);
        let mut client: SmtpClient<Box<dyn Stream>> = match cfg.tls {
            RelayTls::None => {
                let stream = tokio::time::timeout(
                    cfg.timeout,
                    TcpStream::connect((cfg.host.as_str(), cfg.port)),
                )
                .await
                .map_err(|_| fail(Stage::Connect, mail_send::Error::Timeout))?
                .map_err(|e| fail(Stage::Connect, mail_send::Error::Io(e)))?;
                no_delay(&stream);
                let mut client = SmtpClient {
                    stream: Box::new(stream) as Box<dyn Stream>,
                    timeout: cfg.timeout,
                };
                let greeting = tokio::time::timeout(cfg.timeout, client.read())
                    .await
                    .map_err(|_| fail(Stage::Connect, mail_send::Error::Timeout))?
                    .map_err(|e| fail(Stage::Connect, e))?;
                if !(200..300).contains(&greeting.code) {
                    return Err(fail(
                        Stage::Connect,
                        mail_send::Error::UnexpectedReply(greeting),
                    ));
                }
                client
            }
            RelayTls::StartTls | RelayTls::Implicit => {
                let mut builder =
                    SmtpClientBuilder::new(cfg.host.clone(), cfg.port).map_err(|e| {
                        SendError::temporary(format!(
                            "cannot set up TLS for relay {}: {e}",
                            self.address()
                        ))
                    })?;
                if cfg.accept_invalid_certs {
                    builder = builder.allow_invalid_certs();
                }
                let client = builder
                    .implicit_tls(cfg.tls == RelayTls::Implicit)
                    .helo_host(cfg.helo_name.clone())
                    .timeout(cfg.timeout)
                    .say_ehlo(false)
                    .connect()
                    .await
                    .map_err(|e| fail(Stage::Connect, e))?;
                no_delay(client.stream.get_ref().0);
                SmtpClient {
                    stream: Box::new(client.stream) as Box<dyn Stream>,
                    timeout: client.timeout,
                }
            }
        };
        let capabilities = client
            .ehlo(&cfg.helo_name)
            .await
            .map_err(|e| fail(Stage::Ehlo, e))?;
        if let Some(auth) = &cfg.auth {
            let credentials = Credentials::new(auth.username.clone(), auth.password.clone());
            client
                .authenticate(&credentials, &capabilities)
                .await
                .map_err(|e| fail(Stage::Auth, e))?;
        }
        tracing::debug!(relay = %self.address(), "connected to relay");
        Ok(Connection {
            client,
            capabilities,
            idle_since: Instant::now(),
            messages: 0,
        })
    }

    /// MAIL, RCPT, DATA on an open connection (after RSET when `reused`); the error
    /// names the failed step. [`Stage::Reset`] means the connection was found dead
    /// before any of the message was sent.
    async fn transaction(
        &self,
        connection: &mut Connection,
        envelope: &Envelope,
        message: &[u8],
        reused: bool,
    ) -> Result<Response<String>, (Stage, mail_send::Error)> {
        let caps = &connection.capabilities;
        let dsn = caps.has_capability(EXT_DSN);
        let mut mail_params = Parameters::new();
        if caps.has_capability(EXT_SIZE) {
            mail_params.add(("SIZE".to_string(), message.len().to_string()));
        }
        if caps.has_capability(EXT_8BIT_MIME) && !message.is_ascii() {
            mail_params.add(("BODY".to_string(), "8BITMIME".to_string()));
        }
        if caps.has_capability(EXT_SMTP_UTF8)
            && !(envelope.mail_from.is_ascii() && envelope.recipient.is_ascii())
        {
            mail_params.add("SMTPUTF8".to_string());
        }
        if dsn {
            mail_params.add(("RET".to_string(), "HDRS".to_string()));
            if let Some(id) = &envelope.envelope_id {
                mail_params.add(("ENVID".to_string(), xtext_encode(id)));
            }
        }
        let mut rcpt_params = Parameters::new();
        if dsn {
            rcpt_params.add(("NOTIFY".to_string(), "FAILURE,DELAY".to_string()));
            rcpt_params.add((
                "ORCPT".to_string(),
                format!("rfc822;{}", xtext_encode(&envelope.recipient)),
            ));
        }
        let mail_from = format!("MAIL FROM:<{}>{mail_params}\r\n", envelope.mail_from);
        let rcpt_to = format!("RCPT TO:<{}>{rcpt_params}\r\n", envelope.recipient);
        let pipelining = caps.has_capability(EXT_PIPELINING);
        let client = &mut connection.client;
        if pipelining {
            let mut group = Vec::with_capacity(mail_from.len() + rcpt_to.len() + 12);
            if reused {
                group.extend_from_slice(b"RSET\r\n");
            }
            group.extend_from_slice(mail_from.as_bytes());
            group.extend_from_slice(rcpt_to.as_bytes());
            group.extend_from_slice(b"DATA\r\n");
            let first = if reused {
                Stage::Reset
            } else {
                Stage::MailFrom
            };
            let replies = send_group(client, &group, if reused { 4 } else { 3 })
                .await
                .map_err(|e| (first, e))?;
            let mut replies = replies.into_iter();
            if reused {
                let reset = replies
                    .next()
                    .ok_or((Stage::Reset, mail_send::Error::UnparseableReply))?;
                if !(200..300).contains(&reset.code) {
                    return Err((Stage::Reset, mail_send::Error::UnexpectedReply(reset)));
                }
            }
            let mut failed = None;
            for (stage, reply) in [Stage::MailFrom, Stage::RcptTo, Stage::Data]
                .into_iter()
                .zip(replies)
            {
                let ok = match stage {
                    Stage::Data => reply.code == 354,
                    _ => (200..300).contains(&reply.code),
                };
                if stage == Stage::Data && ok && failed.is_some() {
                    // The relay wants a message after all: an empty one ends it.
                    let _ = client.cmd(b".\r\n").await;
                }
                if !ok && failed.is_none() {
                    failed = Some((stage, mail_send::Error::UnexpectedReply(reply)));
                }
            }
            if let Some(failed) = failed {
                return Err(failed);
            }
            return send_body(client, message)
                .await
                .map_err(|e| (Stage::Data, e));
        }
        if reused {
            client.rset().await.map_err(|e| (Stage::Reset, e))?;
        }
        client
            .mail_from(&envelope.mail_from, &mail_params)
            .await
            .map_err(|e| (Stage::MailFrom, e))?;
        client
            .rcpt_to(&envelope.recipient, &rcpt_params)
            .await
            .map_err(|e| (Stage::RcptTo, e))?;
        send_data(client, message)
            .await
            .map_err(|e| (Stage::Data, e))
    }

    /// A failure before any message-specific command: always temporary.
    fn classify_setup(&self, stage: Stage, error: mail_send::Error) -> SendError {
        match self.classify_inner(stage, error, None) {
            SendError::Permanent(f) | SendError::Temporary(f) => SendError::Temporary(f),
        }
    }

    fn classify(&self, stage: Stage, error: mail_send::Error, envelope: &Envelope) -> SendError {
        self.classify_inner(stage, error, Some(envelope))
    }

    fn classify_inner(
        &self,
        stage: Stage,
        error: mail_send::Error,
        envelope: Option<&Envelope>,
    ) -> SendError {
        let relay = self.address();
        let secs = self.config.timeout.as_secs();
        let (message, reply) = match error {
            mail_send::Error::UnexpectedReply(r) | mail_send::Error::AuthenticationFailed(r) => {
                let reply = smtp_reply(&r);
                let what = match (stage, envelope) {
                    (Stage::MailFrom, Some(env)) => {
                        format!("relay {relay} refused sender <{}>", env.mail_from)
                    }
                    (Stage::RcptTo, Some(env)) => {
                        format!("relay {relay} refused recipient <{}>", env.recipient)
                    }
                    (Stage::Data, _) => format!("relay {relay} refused the message"),
                    (Stage::Connect, _) => format!("relay {relay} is not accepting mail now"),
                    (Stage::Auth, _) => format!(
                        "relay {relay} rejected the login of {:?} (check the relay user name and password)",
                        self.config.auth.as_ref().map(|a| a.username.as_str()).unwrap_or("")
                    ),
                    (stage, _) => format!("relay {relay} rejected {}", stage.describe()),
                };
                (format!("{what}: {reply}"), Some(reply))
            }
            mail_send::Error::Io(e) if stage == Stage::Connect => {
                let hint = match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        format!("relay {relay} refused the connection: is it running?")
                    }
                    _ => format!("cannot connect to relay {relay}: {e}"),
                };
                (hint, None)
            }
            mail_send::Error::Io(e) => (
                format!(
                    "connection to relay {relay} failed during {}: {e}",
                    stage.describe()
                ),
                None,
            ),
            mail_send::Error::Tls(e) => (
                format!(
                    "TLS with relay {relay} failed: {e} (check its certificate and the tls setting)"
                ),
                None,
            ),
            mail_send::Error::Timeout => (
                format!(
                    "relay {relay} did not answer within {secs} s during {}",
                    stage.describe()
                ),
                None,
            ),
            mail_send::Error::UnparseableReply => (
                format!(
                    "relay {relay} closed the connection (or sent an unreadable reply) during {}",
                    stage.describe()
                ),
                None,
            ),
            mail_send::Error::MissingStartTls => (
                format!(
                    "relay {relay} does not offer STARTTLS (use tls = \"tls\" for port 465, or \"none\" only for a relay on this machine)"
                ),
                None,
            ),
            mail_send::Error::UnsupportedAuthMechanism => (
                format!("relay {relay} offers no login method imipd supports (PLAIN or LOGIN)"),
                None,
            ),
            mail_send::Error::InvalidTLSName => (
                format!(
                    "relay host name {:?} cannot be checked against a TLS certificate",
                    self.config.host
                ),
                None,
            ),
            other => (format!("relay {relay}: {other}"), None),
        };
        let failure = Failure { message, reply };
        // RFC 5321 4.5.3.1.10: a 552 to RCPT means "too many recipients" and is to be
        // treated as the temporary 452.
        let permanent = stage.is_about_message()
            && failure.reply.as_ref().is_some_and(|r| {
                (500..600).contains(&r.code) && !(stage == Stage::RcptTo && r.code == 552)
            });
        if permanent {
            SendError::Permanent(failure)
        } else {
            SendError::Temporary(failure)
        }
    }
}

impl Transport for Relay {
    fn send<'a>(
        &'a self,
        envelope: &'a Envelope,
        message: &'a [u8],
    ) -> impl Future<Output = Result<Handover, SendError>> + Send + 'a {
        self.send_message(envelope, message)
    }

    fn send_all<'a>(
        &'a self,
        mails: &'a [(Envelope, Vec<u8>)],
    ) -> impl Future<Output = Vec<Result<Handover, SendError>>> + Send + 'a {
        self.send_spread(mails)
    }
}

/// Runs `futures` at once on the calling task and returns their outputs in order
/// (the relay's lanes: one task, several connections waiting on the relay together).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(done) => *output = Some(done),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Turns off Nagle's algorithm on the relay connection. mail-send writes a message in
/// pieces (the body, then CRLF "." CRLF); with Nagle the last small piece waits for the
/// relay's acknowledgement of the body, which the relay delays (up to 40 ms on Linux)
/// because it is waiting for that very piece. Every command is flushed and answered
/// before the next, so nothing is gained by coalescing.
fn no_delay(stream: &TcpStream) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, "cannot turn off Nagle's algorithm on the relay connection");
    }
}

/// Refuses envelope addresses that would break the SMTP command line they go into
/// (a calendar can name any attendee; CR LF in one must not become a command).
fn check_address(role: &str, address: &str, may_be_empty: bool) -> Result<(), SendError> {
    let bad = (address.is_empty() && !may_be_empty)
        || address.len() > 320
        || address
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>');
    if bad {
        return Err(SendError::Permanent(Failure {
            message: format!("the {role} address {address:?} cannot be used in SMTP"),
            reply: None,
        }));
    }
    Ok(())
}

fn smtp_reply(r: &Response<String>) -> SmtpReply {
    let [class, subject, detail] = r.esc;
    SmtpReply {
        code: r.code,
        enhanced: (class != 0).then(|| format!("{class}.{subject}.{detail}")),
        text: r.message.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

fn reply_of(r: &Response<String>) -> String {
    smtp_reply(r).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_addresses_cannot_inject_commands() {
        assert!(check_address("recipient", "bob@example.org", false).is_ok());
        assert!(check_address("sender", "", true).is_ok());
        for bad in ["", "bob@example.org>\r\nRCPT TO:<evil@x", "a b@c", "a<b@c"] {
            let err = check_address("recipient", bad, false).unwrap_err();
            assert!(!err.is_temporary(), "{bad:?}");
        }
    }

    /// A stream that keeps what each write call carried (the TCP sends, with Nagle's
    /// algorithm off).
    struct Writes {
        inner: tokio::io::DuplexStream,
        seen: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    }

    impl AsyncRead for Writes {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let done = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
            if let std::task::Poll::Ready(Ok(n)) = &done {
                self.seen.lock().expect("lock").push(buf[..*n].to_vec());
            }
            done
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// Reads from the relay's side until `end`.
    async fn read_until(relay: &mut tokio::io::DuplexStream, end: &[u8]) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(end) {
            let n = relay.read(&mut buf).await.expect("read");
            assert!(n > 0, "the client closed early: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    #[tokio::test]
    async fn a_pipelined_group_goes_out_in_one_send() {
        use tokio::io::AsyncWriteExt;
        let (ours, mut relay) = tokio::io::duplex(1 << 16);
        let seen = std::sync::Arc::default();
        let stream: Box<dyn Stream> = Box::new(Writes {
            inner: ours,
            seen: std::sync::Arc::clone(&seen),
        });
        let mut capabilities = EhloResponse::new("relay.test".to_string());
        capabilities.capabilities = EXT_PIPELINING;
        let mut connection = Connection {
            client: SmtpClient {
                stream,
                timeout: Duration::from_secs(10),
            },
            capabilities,
            idle_since: Instant::now(),
            messages: 1,
        };
        let server = tokio::spawn(async move {
            read_until(&mut relay, b"DATA\r\n").await;
            relay
                .write_all(b"250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n")
                .await
                .expect("write");
            read_until(&mut relay, b"\r\n.\r\n").await;
            relay
                .write_all(b"250 2.0.0 queued\r\n")
                .await
                .expect("write");
        });
        let envelope = Envelope {
            mail_from: "imipd@example.org".into(),
            recipient: "bob@example.net".into(),
            envelope_id: None,
        };
        let relay = Relay::new(RelayConfig::new("relay.test", 25));
        let reply = relay
            .transaction(
                &mut connection,
                &envelope,
                b"Subject: x\r\n\r\nhello\r\n",
                true,
            )
            .await
            .expect("the relay takes the message");
        assert_eq!(reply.code, 250);
        server.await.expect("the relay side ends");
        let writes = seen.lock().expect("lock").clone();
        assert_eq!(
            String::from_utf8_lossy(&writes[0]),
            "RSET\r\nMAIL FROM:<imipd@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n",
            "RSET, MAIL, RCPT and DATA in one send (RFC 2920); all sends: {writes:?}"
        );
    }

    #[test]
    fn debug_hides_password() {
        let auth = RelayAuth {
            username: "imipd".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }
}

/// DATA: the message dot-stuffed in one pass and written in one piece, then the
/// reply. (mail-send's own `data` stuffs byte by byte inside its future, a quarter of
/// the daemon's CPU when a 1,000-attendee change sends 280 MB.)
async fn send_data<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
    message: &[u8],
) -> mail_send::Result<Response<String>> {
    mail_send::smtp::AssertReply::assert_code(client.cmd(b"DATA\r\n").await?, 354)?;
    send_body(client, message).await
}

/// Sends a pipelined group of commands in one write and reads their `replies`.
/// RFC 2920 defines PIPELINING as several commands in a single TCP send. Written one
/// by one (as mail-send's `cmds` does) on a connection without Nagle's algorithm, each
/// command went out as a segment of its own, and Postfix's smtp-sink then took 3-7
/// times longer per message than with PIPELINING turned off (600 10-attendee updates:
/// 36-58/s handed off against 183/s; in one send: 250-282/s, BENCHMARKS.md section 6).
async fn send_group<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
    group: &[u8],
    replies: usize,
) -> mail_send::Result<Vec<Response<String>>> {
    use tokio::io::AsyncWriteExt;
    let timeout = client.timeout;
    tokio::time::timeout(timeout, async {
        client.stream.write_all(group).await?;
        client.stream.flush().await?;
        client.read_many(replies).await
    })
    .await
    .map_err(|_| mail_send::Error::Timeout)?
}

/// The message after the relay's 354: dot-stuffed, written in one piece, the final
/// dot line, then the relay's reply.
async fn send_body<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
    message: &[u8],
) -> mail_send::Result<Response<String>> {
    use mail_send::smtp::AssertReply;
    use tokio::io::AsyncWriteExt;
    let stuffed = dot_stuffed(message);
    let timeout = client.timeout;
    tokio::time::timeout(timeout, async {
        client.stream.write_all(&stuffed).await?;
        // The message ends with CRLF; the terminator adds only the dot line.
        let end: &[u8] = if stuffed.ends_with(b"\r\n") {
            b".\r\n"
        } else {
            b"\r\n.\r\n"
        };
        client.stream.write_all(end).await?;
        client.stream.flush().await?;
        client.read().await
    })
    .await
    .map_err(|_| mail_send::Error::Timeout)??
    .into_positive_completion()
}

/// `message` with a dot added before every line that starts with one (RFC 5321
/// §4.5.2), so no line of it can end the DATA early.
fn dot_stuffed(message: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let starts = message.first() == Some(&b'.');
    let mut lines = memchr::memmem::find_iter(message, b"\n.").peekable();
    if !starts && lines.peek().is_none() {
        return std::borrow::Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len() + 64);
    if starts {
        out.push(b'.');
    }
    let mut from = 0;
    for at in lines {
        out.extend_from_slice(&message[from..=at]);
        out.push(b'.');
        from = at + 1;
    }
    out.extend_from_slice(&message[from..]);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod data_tests {
    use super::dot_stuffed;

    #[test]
    fn every_line_that_starts_with_a_dot_gets_another() {
        assert_eq!(&*dot_stuffed(b"a\r\nb\r\n"), b"a\r\nb\r\n");
        assert_eq!(
            &*dot_stuffed(b".a\r\n.\r\n..b\r\nc.d\r\n"),
            b"..a\r\n..\r\n...b\r\nc.d\r\n"
        );
    }
}
