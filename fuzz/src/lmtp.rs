//! Harness for the LMTP session: an in-memory client, a handler with scripted
//! answers, and the checks on what the server wrote.
//!
//! The client sends the fuzz input and then closes its side; the server runs through
//! `imipd::smtp::lmtp::run_session` on a single-threaded runtime, so a run is
//! deterministic. [`Chunking`] decides how the input is cut into reads (all at once,
//! or in pieces derived from the input), because a TCP stream gives no guarantee
//! where a read ends. The handler's texts contain CR/LF and wrong status classes on
//! purpose: the server must still write well-formed replies.

use imipd::smtp::lmtp::run_session;
use imipd::smtp::{LmtpConfig, LmtpHandler, ReceivedMessage, RecipientCheck, RecipientOutcome};
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Small limits, so that fuzz input reaches them.
pub fn config() -> LmtpConfig {
    LmtpConfig {
        hostname: "lmtp.example.com".to_string(),
        max_message_size: 4096,
        max_line_length: 256,
        max_commands: 64,
        max_recipients: 4,
        max_errors: 8,
        // Never reached: the in-memory client never makes the server wait.
        idle_timeout: Duration::from_secs(3600),
        ..LmtpConfig::default()
    }
}

/// How the input reaches the server.
#[derive(Debug, Clone, Copy)]
pub enum Chunking {
    /// Everything in one read.
    Whole,
    /// Reads of varying small sizes, chosen by a generator with this seed.
    Pieces(u64),
}

impl Chunking {
    /// Pieces whose sizes depend on every byte of `input` (FNV-1a), so a mutation of
    /// the input also changes where the reads end.
    pub fn pieces_for(input: &[u8]) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in input {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        Chunking::Pieces(hash | 1)
    }
}

/// The client side: hands out the input read by read, records the replies.
struct Client<'a> {
    input: &'a [u8],
    chunking: Chunking,
    output: Vec<u8>,
}

impl Client<'_> {
    fn next_size(&mut self) -> usize {
        match &mut self.chunking {
            Chunking::Whole => usize::MAX,
            Chunking::Pieces(state) => {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                [1, 1, 2, 3, 5, 8, 13, 64, 255, 256, 257, 4096][(*state % 12) as usize]
            }
        }
    }
}

impl AsyncRead for Client<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // An empty read is the end of the stream: the client has closed its side.
        let n = this.next_size().min(buf.remaining()).min(this.input.len());
        buf.put_slice(&this.input[..n]);
        this.input = &this.input[n..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Client<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().output.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Answers by address, records deliveries.
///
/// At RCPT: `busy…` fails temporarily (with a reason that tries to smuggle in a second
/// reply line), other `@example.com` addresses are accepted, the rest are unknown.
/// After DATA: `reject…` is refused with a code of the wrong class, `later…` fails
/// temporarily with an enhanced code of the wrong class and no text, `lost…` ends the
/// list of outcomes early (as a buggy handler would), everyone else is delivered.
#[derive(Default)]
pub struct Handler {
    /// Every message handed to `deliver`, in order.
    pub delivered: Mutex<Vec<ReceivedMessage>>,
}

fn local_part(address: &str) -> String {
    address
        .split('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// True for the addresses [`Handler`] accepts at RCPT time.
pub fn accepted_at_rcpt(address: &str) -> bool {
    address.to_ascii_lowercase().ends_with("@example.com")
        && !local_part(address).starts_with("busy")
}

impl LmtpHandler for Handler {
    fn check_recipient(&self, recipient: &str) -> RecipientCheck {
        if local_part(recipient).starts_with("busy") {
            RecipientCheck::TempFail("store busy\r\n250 2.0.0 smuggled".to_string())
        } else if accepted_at_rcpt(recipient) {
            RecipientCheck::Accept
        } else {
            RecipientCheck::Unknown
        }
    }

    async fn deliver(&self, message: ReceivedMessage) -> Vec<RecipientOutcome> {
        let mut outcomes = Vec::new();
        for rcpt in &message.recipients {
            let local = local_part(rcpt);
            let outcome = if local.starts_with("reject") {
                RecipientOutcome::Rejected {
                    code: 250,
                    enhanced: "2.0.0".to_string(),
                    reason: "no\r\n.\r\n".to_string(),
                }
            } else if local.starts_with("later") {
                RecipientOutcome::TempFail {
                    enhanced: "5.1.1".to_string(),
                    reason: String::new(),
                }
            } else if local.starts_with("lost") {
                break;
            } else {
                RecipientOutcome::Accepted(format!("delivered {} bytes", message.data.len()))
            };
            outcomes.push(outcome);
        }
        self.delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message);
        outcomes
    }
}

/// The server's whole output and the messages it delivered, for one conversation.
pub fn converse(input: &[u8], chunking: Chunking) -> (Vec<u8>, Vec<ReceivedMessage>) {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime")
    });
    let config = config();
    let handler = Handler::default();
    let mut client = Client {
        input,
        chunking,
        output: Vec::new(),
    };
    runtime.block_on(run_session(&mut client, &config, &handler));
    let delivered = handler
        .delivered
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    (client.output, delivered)
}

/// Checks that `output` is a well-formed LMTP reply stream (RFC 5321 4.2, RFC 2034):
/// a 220 greeting first; CRLF-terminated lines of at most 512 octets with a code in
/// 200..=599, a space or (for continuation lines) a hyphen, and text; continuation
/// lines followed by a line with the same code; every single-line reply except the
/// greeting and 354 carrying an enhanced status code of its own class; nothing after
/// a 221 or 421.
pub fn check_replies(output: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(output).map_err(|e| format!("not UTF-8: {e}"))?;
    if !text.starts_with("220 ") {
        return Err("no 220 greeting first".into());
    }
    if !text.ends_with("\r\n") {
        return Err("the last reply line is not ended by CRLF".into());
    }
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    for (i, line) in lines.iter().enumerate() {
        let bytes = line.as_bytes();
        let bad = |why: &str| Err(format!("line {i} {line:?}: {why}"));
        if bytes.contains(&b'\r') || bytes.contains(&b'\n') {
            return bad("bare CR or LF");
        }
        if line.len() + 2 > 512 {
            return bad("longer than 512 octets");
        }
        if bytes.len() < 5 || !bytes[..3].iter().all(u8::is_ascii_digit) {
            return bad("no three-digit code and text");
        }
        let code: u16 = line[..3].parse().map_err(|_| format!("line {i}: code"))?;
        if !(200..=599).contains(&code) {
            return bad("code out of range");
        }
        if i > 0 && code == 220 {
            return bad("a second greeting");
        }
        match bytes[3] {
            b'-' => {
                if lines
                    .get(i + 1)
                    .is_none_or(|next| !next.starts_with(&line[..3]))
                {
                    return bad("continuation line not followed by the same code");
                }
            }
            b' ' => {
                let single = i == 0 || !lines[i - 1].starts_with(&format!("{code}-"));
                if single && code != 220 && code != 354 {
                    let enhanced = line[4..].split(' ').next().unwrap_or_default();
                    let parts: Vec<&str> = enhanced.split('.').collect();
                    let ok = parts.len() == 3
                        && parts[0] == (code / 100).to_string()
                        && parts[1..].iter().all(|p| {
                            (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())
                        });
                    if !ok {
                        return bad("no enhanced status code of the reply's class");
                    }
                }
                if (code == 221 || code == 421) && i + 1 != lines.len() {
                    return bad("replies after the connection was closed");
                }
            }
            _ => return bad("neither space nor hyphen after the code"),
        }
    }
    Ok(())
}

/// Checks one delivery against the handler's rules and the configured limits.
pub fn check_delivery(message: &ReceivedMessage) -> Result<(), String> {
    let config = config();
    if message.recipients.is_empty() {
        return Err("a message was delivered to nobody".into());
    }
    if message.recipients.len() > config.max_recipients {
        return Err(format!(
            "{} recipients, over the limit of {}",
            message.recipients.len(),
            config.max_recipients
        ));
    }
    if let Some(r) = message.recipients.iter().find(|r| !accepted_at_rcpt(r)) {
        return Err(format!("delivered to {r:?}, which was refused at RCPT"));
    }
    if message.data.len() > config.max_message_size {
        return Err(format!(
            "{} bytes delivered, over the limit of {}",
            message.data.len(),
            config.max_message_size
        ));
    }
    Ok(())
}
