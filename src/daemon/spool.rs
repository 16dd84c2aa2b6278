//! The drop folder of `imipd deliver`: messages handed over while the daemon was not
//! running, applied when it runs again.
//!
//! An MTA that calls `imipd deliver` as a pipe retries on exit 75, but a Dovecot Sieve
//! `pipe :copy` does not: the mail lands in the INBOX and the copy for imipd would be
//! gone. With `[deliver] spool` set, `deliver` writes such a message into the folder
//! instead (a temporary file, fsynced, renamed into place: a message is there whole or
//! not at all) and exits 0; the daemon applies every spooled message at start and then
//! every few seconds, through the same path as LMTP, and removes it once no recipient
//! needs a retry. The folder is a drop box: mode 1733 lets the mail user write into it
//! without reading what others wrote.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Suffix of a complete spooled message.
const SUFFIX: &str = ".msg";

/// The envelope stored before the message, as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolEnvelope {
    /// The envelope recipient.
    pub rcpt: String,
    /// The envelope sender ("" when unknown).
    #[serde(default)]
    pub mail_from: String,
}

/// One spooled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    /// Its file, removed once applied.
    pub path: PathBuf,
    /// Its envelope.
    pub envelope: SpoolEnvelope,
    /// The message.
    pub data: Vec<u8>,
}

/// Writes one message into `dir` durably; returns its file.
pub fn put(dir: &Path, envelope: &SpoolEnvelope, data: &[u8]) -> std::io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let name = format!("{nanos}-{}", std::process::id());
    let temp = dir.join(format!(".{name}.tmp"));
    let done = dir.join(format!("{name}{SUFFIX}"));
    let line = serde_json::to_string(envelope).map_err(std::io::Error::other)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)?;
    let written = file
        .write_all(line.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.write_all(data))
        .and_then(|()| file.sync_all());
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(err);
    }
    std::fs::rename(&temp, &done)?;
    if let Ok(folder) = std::fs::File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(done)
}

/// The complete messages waiting in `dir`, oldest first. A file that cannot be read
/// or has no envelope line is reported by name and left alone.
pub fn list(dir: &Path) -> (Vec<Spooled>, Vec<String>) {
    let mut names: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(SUFFIX) && !n.starts_with('.'))
            })
            .collect(),
        Err(_) => return (Vec::new(), Vec::new()),
    };
    names.sort();
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for path in names {
        let Ok(bytes) = std::fs::read(&path) else {
            bad.push(format!("{}: cannot be read", path.display()));
            continue;
        };
        let Some(newline) = bytes.iter().position(|b| *b == b'\n') else {
            bad.push(format!("{}: no envelope line", path.display()));
            continue;
        };
        match serde_json::from_slice::<SpoolEnvelope>(&bytes[..newline]) {
            Ok(envelope) => out.push(Spooled {
                path,
                envelope,
                data: bytes[newline + 1..].to_vec(),
            }),
            Err(e) => bad.push(format!("{}: bad envelope line: {e}", path.display())),
        }
    }
    (out, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spooled_message_comes_back_whole_with_its_envelope() {
        let dir = crate::test_support::fresh_dir("spool");
        let envelope = SpoolEnvelope {
            rcpt: "alice@example.com".into(),
            mail_from: "carol@example.net".into(),
        };
        let data = b"From: carol@example.net\r\n\r\nbody\n\nwith lines\r\n";
        let first = put(&dir, &envelope, data).expect("put");
        std::fs::write(dir.join(".half-written.tmp"), b"partial").expect("temp");
        std::fs::write(dir.join("broken.msg"), b"no envelope").expect("broken");
        let (found, bad) = list(&dir);
        assert_eq!(found.len(), 1, "temporary files are not messages");
        assert_eq!(found[0].path, first);
        assert_eq!(found[0].envelope, envelope);
        assert_eq!(found[0].data, data);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].contains("broken.msg"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
