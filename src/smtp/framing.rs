//! Byte-level I/O of one LMTP connection: command lines and DATA, both bounded.
//!
//! [`Framed`] keeps one input buffer, so pipelined commands (several in one packet)
//! are taken one line at a time and whatever follows the end of DATA stays for the
//! next command. Replies are queued and written in one go when the server would
//! otherwise wait for input, which is how pipelining expects them. Each read waits at
//! most the idle timeout; a command line longer than the cap is swallowed up to its
//! end and reported as [`Line::TooLong`]; DATA is dot-unstuffed by smtp-proto's
//! receiver and stops being stored once it passes the size cap (the rest is read and
//! discarded so the session stays in step). Nothing here interprets commands.

use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read per system call.
const READ_CHUNK: usize = 16 * 1024;

/// One command line from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A complete line, ending in LF.
    Command(Vec<u8>),
    /// A line over the length cap (already discarded up to its LF).
    TooLong,
}

/// The message body after DATA.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Data {
    /// The whole message, dot-unstuffed, without the final `.` line.
    Complete(Vec<u8>),
    /// Larger than the cap; read to its end and dropped.
    TooBig,
}

/// Why input stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Nothing arrived within the idle timeout.
    Idle,
    /// The client closed the connection.
    Closed,
    /// The socket failed.
    Io(io::Error),
}

/// A connection with its input buffer and pending replies.
pub(crate) struct Framed<S> {
    stream: S,
    /// Received, not yet consumed bytes.
    input: Vec<u8>,
    /// Replies not yet written.
    output: Vec<u8>,
    /// Longest command line accepted, LF included.
    max_line: usize,
    /// How long a read may wait.
    idle: Duration,
    /// Set while skipping the rest of an over-long line.
    discarding: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    /// Wraps `stream`.
    pub fn new(stream: S, max_line: usize, idle: Duration) -> Self {
        Framed {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            max_line: max_line.max(16),
            idle,
            discarding: false,
        }
    }

    /// Queues bytes to send (a formatted reply).
    pub fn queue(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// True when a complete command is already buffered: the client is pipelining,
    /// so replies can wait until the batch is answered.
    pub fn has_buffered_line(&self) -> bool {
        self.input.contains(&b'\n')
    }

    /// Writes the queued replies (within the idle timeout: a client that does not
    /// read cannot hold the session forever).
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.output);
        let write = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.idle, write).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client did not read its replies",
            )),
        }
    }

    /// The next command line. Does not flush; cancel-safe (input read before a
    /// cancellation stays buffered).
    pub async fn read_line(&mut self) -> Result<Line, ReadError> {
        loop {
            if let Some(pos) = self.input.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=pos).collect();
                if self.discarding || line.len() > self.max_line {
                    self.discarding = false;
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Command(line));
            }
            if self.input.len() > self.max_line {
                self.input.clear();
                self.discarding = true;
            }
            self.fill().await?;
        }
    }

    /// The message after a `354`: up to `max` bytes kept, the rest discarded.
    pub async fn read_data(&mut self, max: usize) -> Result<Data, ReadError> {
        let mut receiver = DataReceiver::new();
        // The receiver only recognises "." after CRLF; the DATA line's own CRLF came
        // before, so prime it with one (stored into a scratch buffer, then dropped).
        let mut scratch = Vec::new();
        receiver.ingest(&mut b"\r\n".iter(), &mut scratch);
        let mut data = Vec::new();
        let mut discard: Option<DummyDataReceiver> = None;
        loop {
            if !self.input.is_empty() {
                let mut rest = self.input.iter();
                let done = match discard.as_mut() {
                    Some(d) => d.ingest(&mut rest),
                    None => receiver.ingest(&mut rest, &mut data),
                };
                let consumed = self.input.len() - rest.as_slice().len();
                self.input.drain(..consumed);
                if discard.is_none() && data.len() > max {
                    discard = Some(DummyDataReceiver::new_data(&receiver));
                    data = Vec::new();
                }
                if done {
                    return Ok(match discard {
                        Some(_) => Data::TooBig,
                        None => Data::Complete(data),
                    });
                }
            }
            self.fill().await?;
        }
    }

    /// Reads more input, waiting at most the idle timeout.
    async fn fill(&mut self) -> Result<(), ReadError> {
        let mut chunk = [0u8; READ_CHUNK];
        let n = tokio::time::timeout(self.idle, self.stream.read(&mut chunk))
            .await
            .map_err(|_| ReadError::Idle)?
            .map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        self.input.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn framed_with(input: &[u8], max_line: usize) -> Framed<tokio::io::DuplexStream> {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut client = client;
        client.write_all(input).await.unwrap();
        // Keep the client half alive for the duration of the test by leaking it into
        // a task that never finishes reading.
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink).await;
        });
        Framed::new(server, max_line, Duration::from_millis(200))
    }

    #[tokio::test]
    async fn pipelined_lines_and_long_lines() {
        let long = format!("NOOP {}\r\n", "x".repeat(100));
        let input = format!("LHLO a\r\n{long}RSET\r\n");
        let mut f = framed_with(input.as_bytes(), 64).await;
        assert_eq!(
            f.read_line().await.unwrap(),
            Line::Command(b"LHLO a\r\n".to_vec())
        );
        assert!(f.has_buffered_line());
        assert_eq!(f.read_line().await.unwrap(), Line::TooLong);
        assert_eq!(
            f.read_line().await.unwrap(),
            Line::Command(b"RSET\r\n".to_vec())
        );
        assert!(matches!(f.read_line().await, Err(ReadError::Idle)));
    }

    #[tokio::test]
    async fn data_is_unstuffed_and_leaves_the_next_command() {
        let mut f = framed_with(b"..dot\r\nbody\r\n.\r\nQUIT\r\n", 64).await;
        assert_eq!(
            f.read_data(1000).await.unwrap(),
            Data::Complete(b".dot\r\nbody\r\n".to_vec())
        );
        assert_eq!(
            f.read_line().await.unwrap(),
            Line::Command(b"QUIT\r\n".to_vec())
        );
        let mut f = framed_with(b".\r\nQUIT\r\n", 64).await;
        assert_eq!(f.read_data(1000).await.unwrap(), Data::Complete(Vec::new()));
    }

    #[tokio::test]
    async fn oversized_data_is_discarded_to_its_end() {
        let body = "line of text\r\n".repeat(1000);
        let input = format!("{body}.\r\nNOOP\r\n");
        let mut f = framed_with(input.as_bytes(), 64).await;
        assert_eq!(f.read_data(100).await.unwrap(), Data::TooBig);
        assert_eq!(
            f.read_line().await.unwrap(),
            Line::Command(b"NOOP\r\n".to_vec())
        );
    }
}
