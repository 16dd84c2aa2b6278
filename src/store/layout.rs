//! Where users' calendar objects live on disk, and how imipd names them.
//!
//! Two layouts share one shape, `<users>/<user>/<calendar>/<item>.ics`: a vdir root
//! (vdirsyncer, khal) is `<users>` itself; Radicale's `filesystem_folder` keeps it under
//! `collection-root/` and serialises writers with `.Radicale.lock`. An object is named in
//! imipd's state by its *key*, the path below `<users>` (`alice/work/ev1.ics`). Dot files
//! and folders (`.Radicale.props`, `.Radicale.cache`, editors' temp files) are never
//! objects. Nothing outside the store root is ever read or written: symlinks that leave
//! it are skipped.

use super::provenance::Provenance;
use crate::config::{Layout, StoreSection, User};
use crate::itip::CalAddress;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Why a file is not read as a calendar object.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SkipReason {
    /// Over the configured size limit.
    #[error("{size} bytes, over the limit of {limit} (raise store.max_object_size to process it)")]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Not UTF-8 text.
    #[error("not UTF-8 text")]
    NotUtf8,
    /// A symlink pointing outside the store root.
    #[error("a symlink that leads outside the store root")]
    OutsideRoot,
    /// Not a regular file.
    #[error("not a regular file")]
    NotAFile,
    /// The file vanished between listing and reading.
    #[error("the file disappeared")]
    Gone,
    /// Some other I/O error.
    #[error("cannot be read: {0}")]
    Io(String),
}

/// The calendar store of all local users.
#[derive(Debug, Clone)]
pub struct Store {
    layout: Layout,
    root: PathBuf,
    users_root: PathBuf,
    max_object_size: u64,
    users: BTreeMap<String, User>,
    by_address: BTreeMap<CalAddress, String>,
    /// Recent writes and versions, shared by every copy of this store and kept across
    /// reloads of the user map ([`Store::keeping_provenance_of`]).
    provenance: Arc<Provenance>,
}

/// An exclusive lock on the store, held for milliseconds around a write.
pub struct StoreLock {
    _file: Option<File>,
}

impl Store {
    /// The store described by `[store]`, for `users`.
    pub fn new(section: &StoreSection, users: Vec<User>) -> Self {
        let users_root = match section.layout {
            Layout::Vdir => section.root.clone(),
            Layout::Radicale => section.root.join("collection-root"),
        };
        let by_address = users
            .iter()
            .flat_map(|u| u.addresses.iter().map(|a| (a.clone(), u.name.clone())))
            .collect();
        Store {
            layout: section.layout,
            root: section.root.clone(),
            users_root,
            max_object_size: section.max_object_size,
            users: users.into_iter().map(|u| (u.name.clone(), u)).collect(),
            by_address,
            provenance: Arc::default(),
        }
    }

    /// This store, remembering what `previous` remembered of recent writes (a reload of
    /// the configuration must not forget which versions imipd wrote).
    pub fn keeping_provenance_of(mut self, previous: &Store) -> Self {
        self.provenance = previous.provenance.clone();
        self
    }

    /// Who wrote which recent version of the store's files.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// The folder layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The folder holding the users' folders.
    pub fn users_root(&self) -> &Path {
        &self.users_root
    }

    /// Every configured user.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// A user by folder name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// The local user with this address, if any.
    pub fn user_for_address(&self, address: &CalAddress) -> Option<&User> {
        self.by_address
            .get(address)
            .and_then(|name| self.users.get(name))
    }

    /// The key of an object file, when `path` is `<users>/<user>/<calendar>/<item>.ics`
    /// for a configured user and no part is hidden.
    pub fn key_for(&self, path: &Path) -> Option<String> {
        let relative = path.strip_prefix(&self.users_root).ok()?;
        let parts: Vec<&str> = relative
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        match parts.as_slice() {
            [user, calendar, item]
                if self.users.contains_key(*user)
                    && !calendar.starts_with('.')
                    && !item.starts_with('.')
                    && item.ends_with(".ics") =>
            {
                Some(format!("{user}/{calendar}/{item}"))
            }
            _ => None,
        }
    }

    /// The file of an object key.
    pub fn path_for(&self, key: &str) -> PathBuf {
        self.users_root.join(key)
    }

    /// The user owning an object key.
    pub fn user_of_key(&self, key: &str) -> Option<&User> {
        key.split('/').next().and_then(|name| self.users.get(name))
    }

    /// The calendar folders of `user` (hidden folders excluded, and Radicale
    /// collections whose `.Radicale.props` say they are address books).
    pub fn calendar_dirs(&self, user: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.users_root.join(user)) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .filter(|p| p.is_dir() && self.inside_root(p) && super::collection::is_calendar(p))
            .collect();
        out.sort();
        out
    }

    /// The object files of a calendar folder, sorted.
    pub fn object_files(&self, calendar_dir: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(calendar_dir) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| self.key_for(p).is_some())
            .collect();
        out.sort();
        out
    }

    /// Every object key in the store, for a full scan.
    pub fn all_keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        for user in self.users.keys() {
            for dir in self.calendar_dirs(user) {
                out.extend(
                    self.object_files(&dir)
                        .iter()
                        .filter_map(|p| self.key_for(p)),
                );
            }
        }
        out
    }

    fn inside_root(&self, path: &Path) -> bool {
        match (path.canonicalize(), self.users_root.canonicalize()) {
            (Ok(real), Ok(root)) => real.starts_with(root),
            _ => false,
        }
    }

    /// Reads an object file: within the size limit, UTF-8, inside the root.
    /// `Ok(None)` when it does not exist.
    pub fn read(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, SkipReason> {
        let path = self.path_for(key);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SkipReason::Io(e.to_string())),
        };
        if meta.file_type().is_symlink() && !self.inside_root(&path) {
            return Err(SkipReason::OutsideRoot);
        }
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SkipReason::Io(e.to_string())),
        };
        let meta = file.metadata().map_err(|e| SkipReason::Io(e.to_string()))?;
        if !meta.is_file() {
            return Err(SkipReason::NotAFile);
        }
        if meta.len() > self.max_object_size {
            return Err(SkipReason::TooLarge {
                size: meta.len(),
                limit: self.max_object_size,
            });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        // Read at most one byte past the limit, in case the file grew meanwhile.
        (&mut file)
            .take(self.max_object_size + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| SkipReason::Io(e.to_string()))?;
        if bytes.len() as u64 > self.max_object_size {
            return Err(SkipReason::TooLarge {
                size: bytes.len() as u64,
                limit: self.max_object_size,
            });
        }
        let text = String::from_utf8(bytes.clone()).map_err(|_| SkipReason::NotUtf8)?;
        Ok(Some((bytes, text)))
    }

    /// Takes the store's write lock: Radicale's `.Radicale.lock` (the same flock
    /// Radicale takes, so it waits for us and we for it); a vdir has none.
    pub fn lock(&self) -> std::io::Result<StoreLock> {
        match self.layout {
            Layout::Vdir => Ok(StoreLock { _file: None }),
            Layout::Radicale => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(self.root.join(".Radicale.lock"))?;
                file.lock()?;
                Ok(StoreLock { _file: Some(file) })
            }
        }
    }

    /// The key for an invitation imported into `user`'s calendar `folder` (see
    /// [`super::calendars`]): the file name is derived from the UID by hashing, never
    /// the UID itself (which may hold `/`, `..` or NUL).
    pub fn import_key(&self, user: &User, folder: &str, uid: &str) -> String {
        let hash = super::state::content_hash(uid.as_bytes());
        format!("{}/{}/imipd-{}.ics", user.name, folder, &hash[..32])
    }
}

/// A store of one user, alice@example.com, for the unit tests of the store modules.
#[cfg(test)]
pub(crate) fn test_store(root: &Path, layout: Layout, max_object_size: u64) -> Store {
    let section = StoreSection {
        layout,
        root: root.to_path_buf(),
        max_object_size,
        rescan_interval: 60,
        debounce_ms: 10,
    };
    let users = vec![User {
        name: "alice".into(),
        addresses: vec![CalAddress::parse("alice@example.com").expect("address")],
        invitations: Some("calendar".into()),
        language: None,
    }];
    Store::new(&section, users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(root: &Path) -> Store {
        test_store(root, Layout::Vdir, 100)
    }

    #[test]
    fn keys_only_for_objects_of_known_users() {
        let s = store(Path::new("/srv/cal"));
        assert_eq!(
            s.key_for(Path::new("/srv/cal/alice/work/a.ics")).as_deref(),
            Some("alice/work/a.ics")
        );
        assert_eq!(s.key_for(Path::new("/srv/cal/bob/work/a.ics")), None);
        assert_eq!(
            s.key_for(Path::new("/srv/cal/alice/.Radicale.cache/a.ics")),
            None
        );
        assert_eq!(s.key_for(Path::new("/srv/cal/alice/work/.a.ics.swp")), None);
        assert_eq!(s.key_for(Path::new("/srv/cal/alice/work/a.txt")), None);
        assert_eq!(s.key_for(Path::new("/srv/cal/alice/work/../x/a.ics")), None);
    }

    #[test]
    fn radicale_address_books_are_not_calendars() {
        let dir = crate::test_support::fresh_dir("props");
        for (name, props) in [
            ("cal", r#"{"tag": "VCALENDAR"}"#),
            ("contacts", r#"{"tag": "VADDRESSBOOK"}"#),
        ] {
            std::fs::create_dir_all(dir.join("alice").join(name)).expect("dirs");
            std::fs::write(dir.join("alice").join(name).join(".Radicale.props"), props)
                .expect("props");
        }
        std::fs::create_dir_all(dir.join("alice/plain")).expect("dirs");
        let s = store(&dir);
        let names: Vec<String> = s
            .calendar_dirs("alice")
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(names, vec!["cal", "plain"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn imported_names_never_carry_the_uid() {
        let s = store(Path::new("/srv/cal"));
        let user = s.user("alice").expect("user").clone();
        let key = s.import_key(&user, "calendar", "../../etc/passwd\0");
        assert!(
            key.starts_with("alice/calendar/imipd-") && key.ends_with(".ics"),
            "{key}"
        );
        assert!(!key.contains(".."));
    }

    #[test]
    fn reading_refuses_large_binary_and_escaping_files() {
        let dir = crate::test_support::fresh_dir("layout");
        let cal = dir.join("alice/work");
        std::fs::create_dir_all(&cal).expect("dirs");
        std::fs::write(cal.join("big.ics"), vec![b'x'; 200]).expect("write");
        std::fs::write(cal.join("bin.ics"), [0xff, 0xfe, 0x00]).expect("write");
        let outside =
            std::env::temp_dir().join(format!("imipd-outside-{}.ics", std::process::id()));
        std::fs::write(&outside, "secret").expect("write");
        std::os::unix::fs::symlink(&outside, cal.join("link.ics")).expect("symlink");
        let s = store(&dir);
        assert!(matches!(
            s.read("alice/work/big.ics"),
            Err(SkipReason::TooLarge { size: 200, .. })
        ));
        assert_eq!(s.read("alice/work/bin.ics"), Err(SkipReason::NotUtf8));
        assert_eq!(s.read("alice/work/link.ics"), Err(SkipReason::OutsideRoot));
        assert_eq!(s.read("alice/work/none.ics"), Ok(None));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&outside);
    }
}
