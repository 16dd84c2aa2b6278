//! Replacing a user's file safely.
//!
//! Under the store lock: re-read the file and check it is still the version the change
//! was computed from (a user's newer edit is never overwritten), write a dot-prefixed
//! temporary file in the same folder, fsync it, rename it over the target, fsync the
//! folder, unlock. A crash leaves either the old or the new file, never half of one.

use super::layout::Store;
use super::state::content_hash;
use std::io::Write;
use std::path::Path;
use thiserror::Error;

/// What the file must be before it is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// It must not exist (a new invitation).
    Absent,
    /// Its content must have this hash.
    Hash(String),
}

/// A write that did not happen.
#[derive(Debug, Error)]
pub enum WriteError {
    /// The file changed (or appeared, or vanished) since it was read: compute again.
    #[error("{0} changed while imipd was updating it; the change will be made on the new version")]
    Conflict(String),
    /// The disk or folder refused (full disk, permissions, missing folder).
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl WriteError {
    /// Whether trying again later can succeed (a full disk can; a conflict needs a
    /// fresh computation, which the caller does).
    pub fn is_temporary(&self) -> bool {
        match self {
            WriteError::Conflict(_) => true,
            WriteError::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound
            ),
        }
    }
}

/// Replaces (or creates) the object `key` with `content` if it is still as `expected`.
pub fn replace(
    store: &Store,
    key: &str,
    expected: &Expected,
    content: &str,
) -> Result<(), WriteError> {
    let path = store.path_for(key);
    let io = |source: std::io::Error| WriteError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = path
        .parent()
        .ok_or_else(|| io(std::io::Error::other("no parent folder")))?;
    let _lock = store.lock().map_err(io)?;

    let current = match std::fs::read(&path) {
        Ok(bytes) => Some(content_hash(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let matches = match (expected, &current) {
        (Expected::Absent, None) => true,
        (Expected::Hash(want), Some(have)) => want == have,
        _ => false,
    };
    if !matches {
        return Err(WriteError::Conflict(key.to_string()));
    }

    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("object.ics");
    let temp = dir.join(format!(".{name}.imipd-{}.tmp", std::process::id()));
    let result = write_and_sync(&temp, content.as_bytes())
        .and_then(|()| std::fs::rename(&temp, &path))
        .and_then(|()| sync_dir(dir));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(io)
}

fn write_and_sync(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a rename durable: fsync the folder that holds the entry.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Layout;

    fn store(root: &Path, layout: Layout) -> Store {
        crate::store::layout::test_store(root, layout, 1 << 20)
    }

    #[test]
    fn writes_only_over_the_expected_version() {
        let dir = std::env::temp_dir().join(format!("imipd-write-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("collection-root/alice/cal")).expect("dirs");
        let s = store(&dir, Layout::Radicale);
        let key = "alice/cal/a.ics";
        replace(&s, key, &Expected::Absent, "v1").expect("create");
        assert!(matches!(
            replace(&s, key, &Expected::Absent, "again"),
            Err(WriteError::Conflict(_))
        ));
        let stale = Expected::Hash(content_hash(b"v0"));
        assert!(matches!(
            replace(&s, key, &stale, "v2"),
            Err(WriteError::Conflict(_))
        ));
        replace(&s, key, &Expected::Hash(content_hash(b"v1")), "v2").expect("replace");
        assert_eq!(
            std::fs::read_to_string(s.path_for(key)).expect("read"),
            "v2"
        );
        assert!(
            dir.join(".Radicale.lock").exists(),
            "Radicale's lock file is used"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("collection-root/alice/cal"))
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "no temporary files left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_file() {
        let s = store(Path::new("/nonexistent-imipd"), Layout::Vdir);
        let err = replace(&s, "alice/cal/a.ics", &Expected::Absent, "x").expect_err("no folder");
        assert!(
            err.to_string()
                .contains("/nonexistent-imipd/alice/cal/a.ics"),
            "{err}"
        );
    }
}
