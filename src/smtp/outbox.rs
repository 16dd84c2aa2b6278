//! The outbox transport: each outgoing message becomes one `.eml` file in a folder.
//!
//! Used when no relay is configured: another program (a mail client, a script running
//! `sendmail`, an admin) picks the files up. A file appears whole or not at all: the
//! bytes go to a dot-prefixed temporary file in the same folder, are fsynced, then the
//! file is renamed to its final name with `RENAME_NOREPLACE` (which fails instead of
//! overwriting) and the folder is fsynced: by [`Outbox::write`] at once, and for
//! messages handed over with [`Transport::send`] once per batch, by
//! [`Transport::flush`], before the queue records them as sent. Names come from the Message-ID, reduced to safe characters; a
//! name already taken by a different message gets a `-2`, `-3`… suffix, while the very
//! same bytes already there count as delivered (a retry after a crash does not
//! duplicate). The file holds the message exactly as built; the envelope is not
//! written (the To header names the recipient). Every failure is temporary: the queue
//! keeps the message until the admin fixes the folder.

use super::transport::{Envelope, Handover, SendError, Transport};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest file name stem taken from a Message-ID (file systems allow 255 bytes).
const MAX_STEM: usize = 120;

/// Distinguishes temporary files of concurrent sends within this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes messages as `.eml` files into one folder.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// The folder; it must exist (imipd does not create it, so a typo is noticed).
    dir: PathBuf,
    /// Whether a file was named through [`Transport::send`] since the folder was last
    /// synced: [`Transport::flush`] syncs it once for all of them.
    unsynced: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Outbox {
    /// An outbox writing into `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Outbox {
            dir: dir.into(),
            unsynced: Default::default(),
        }
    }

    /// The folder messages are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `message` durably (the file and its name) and returns the path of the
    /// file, blocking.
    pub fn write(&self, message: &[u8]) -> Result<PathBuf, SendError> {
        let target = self.write_file(message)?;
        self.sync_folder()?;
        Ok(target)
    }

    /// Syncs the folder, so the names given since are durable.
    fn sync_folder(&self) -> Result<(), SendError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| failure("sync folder", &self.dir, e))
    }

    /// Writes `message` to its file (synced) and names it; the name is durable once
    /// the folder is synced.
    fn write_file(&self, message: &[u8]) -> Result<PathBuf, SendError> {
        let stem = file_stem(message);
        let temp = self.dir.join(format!(
            ".tmp-{}-{}-{stem}.eml",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            write_synced(&temp, message).map_err(|e| failure("write", &temp, e))?;
            for n in 1u32.. {
                let name = if n == 1 {
                    format!("{stem}.eml")
                } else {
                    format!("{stem}-{n}.eml")
                };
                let target = self.dir.join(name);
                match move_no_replace(&temp, &target) {
                    Ok(()) => return Ok(target),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        if fs::read(&target).is_ok_and(|existing| existing == message) {
                            let _ = fs::remove_file(&temp);
                            return Ok(target);
                        }
                    }
                    Err(e) => return Err(failure("create", &target, e)),
                }
            }
            Err(SendError::temporary(format!(
                "outbox: no free file name for {stem} in {}",
                self.dir.display()
            )))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

/// At most this many files of a batch are written at the same time.
const PARALLEL_FILES: usize = 8;

impl Outbox {
    /// Writes `messages` side by side (their fsyncs in flight together) off the async
    /// threads; each one's handover, in order. The folder is synced by
    /// [`Transport::flush`].
    async fn write_batch(&self, messages: Vec<Vec<u8>>) -> Vec<Result<Handover, SendError>> {
        let outbox = self.clone();
        let count = messages.len();
        let written = tokio::task::spawn_blocking(move || {
            let stopped =
                |_: &Vec<u8>| Err(SendError::temporary("outbox: the writer thread stopped"));
            let paths = crate::threads::map_in_threads(
                &messages,
                PARALLEL_FILES,
                |m| outbox.write_file(m),
                stopped,
            );
            if paths.iter().any(Result::is_ok) {
                outbox.unsynced.store(true, Ordering::SeqCst);
            }
            paths
        })
        .await;
        match written {
            Ok(paths) => paths
                .into_iter()
                .map(|p| {
                    p.map(|path| Handover {
                        detail: format!("written to {}", path.display()),
                    })
                })
                .collect(),
            Err(e) => (0..count)
                .map(|_| {
                    Err(SendError::temporary(format!(
                        "outbox: writer task failed: {e}"
                    )))
                })
                .collect(),
        }
    }
}

impl Transport for Outbox {
    async fn send(&self, _envelope: &Envelope, message: &[u8]) -> Result<Handover, SendError> {
        let mut results = self.write_batch(vec![message.to_vec()]).await;
        results
            .pop()
            .unwrap_or_else(|| Err(SendError::temporary("outbox: the message was not written")))
    }

    /// The files of a batch written side by side; the folder is synced once for all
    /// of them by [`Transport::flush`].
    fn send_all<'a>(
        &'a self,
        mails: &'a [(Envelope, Vec<u8>)],
    ) -> impl Future<Output = Vec<Result<Handover, SendError>>> + Send + 'a {
        self.write_batch(mails.iter().map(|(_, m)| m.clone()).collect())
    }

    /// One sync of the folder for every file named since the last one.
    fn flush(&self) -> impl Future<Output = Result<(), SendError>> + Send + '_ {
        let outbox = self.clone();
        async move {
            if !outbox.unsynced.swap(false, Ordering::SeqCst) {
                return Ok(());
            }
            let synced = tokio::task::spawn_blocking({
                let outbox = outbox.clone();
                move || outbox.sync_folder()
            })
            .await
            .map_err(|e| SendError::temporary(format!("outbox: sync task failed: {e}")))?;
            if synced.is_err() {
                outbox.unsynced.store(true, Ordering::SeqCst);
            }
            synced
        }
    }
}

/// A failure of the outbox folder, always temporary, with what the admin can do.
fn failure(what: &str, path: &Path, e: io::Error) -> SendError {
    let hint = match e.kind() {
        io::ErrorKind::NotFound => " (create the folder or fix queue.outbox)",
        io::ErrorKind::PermissionDenied => " (let the imipd user write there)",
        io::ErrorKind::StorageFull => " (free some space)",
        _ => "",
    };
    SendError::temporary(format!(
        "outbox: cannot {what} {}: {e}{hint}",
        path.display()
    ))
}

/// Gives `temp` the name `target` unless that name exists (`AlreadyExists` then):
/// `renameat2(RENAME_NOREPLACE)`, which leaves no file to delete afterwards (on ext4
/// every deleted inode makes the next file creations slower); a file system without
/// it gets a hard link and an unlink, which mean the same.
fn move_no_replace(temp: &Path, target: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
    };
    let (from, to) = (c(temp)?, c(target)?);
    // SAFETY: both are valid NUL-terminated paths; renameat2 only reads them.
    let done = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if done == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            fs::hard_link(temp, target)?;
            let _ = fs::remove_file(temp);
            Ok(())
        }
        _ => Err(err),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A file name stem from the message's Message-ID: letters, digits and `. _ - + @`
/// only, starting with a letter or digit; a digest of the bytes when there is no
/// usable Message-ID.
fn file_stem(message: &[u8]) -> String {
    let id = mail_parser::MessageParser::new()
        .parse_headers(message)
        .and_then(|m| m.message_id().map(str::to_string))
        .unwrap_or_default();
    let mut stem: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_STEM)
        .collect();
    if !stem.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        stem.insert(0, 'm');
    }
    if !id.chars().any(|c| c.is_ascii_alphanumeric()) {
        let digest = Sha256::digest(message);
        stem = format!(
            "nomsgid-{}",
            digest
                .iter()
                .take(12)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
    }
    stem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_safe() {
        let msg = |id: &str| format!("Message-ID: <{id}>\r\nSubject: x\r\n\r\nbody\r\n");
        assert_eq!(
            file_stem(msg("abc.1@example.org").as_bytes()),
            "abc.1@example.org"
        );
        assert_eq!(
            file_stem(msg("../../etc/passwd").as_bytes()),
            "m.._.._etc_passwd"
        );
        assert_eq!(file_stem(msg(".hidden@x").as_bytes()), "m.hidden@x");
        let long = file_stem(msg(&"x".repeat(500)).as_bytes());
        assert_eq!(long.len(), MAX_STEM);
        assert!(file_stem(b"Subject: none\r\n\r\nbody\r\n").starts_with("nomsgid-"));
    }
}
