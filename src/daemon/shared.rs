//! What every loop shares: the configuration, the store with its user map, the state,
//! the store write locks (one exclusive lock, one per user under it), the queue's wake
//! signal, and the SIGHUP reload of the user map; plus [`DaemonError`] and [`now`].

use super::queue::{QueueSettings, Worker};
use crate::config::{Config, ConfigError};
use crate::store::layout::Store;
use crate::store::process::{ProcessError, Processor};
use crate::store::state::{State, StateError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use thiserror::Error;
use tokio::sync::Notify;

/// Why the daemon could not start or had to stop.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state database is unusable.
    #[error(transparent)]
    State(#[from] StateError),
    /// The store could not be processed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A folder or listener could not be set up.
    #[error("{0}")]
    Setup(String),
}

/// What every loop shares.
pub struct Shared {
    /// Where the configuration came from, for SIGHUP.
    pub config_path: PathBuf,
    /// The current configuration.
    pub config: RwLock<Arc<Config>>,
    /// The calendar store with the current user map.
    pub store: RwLock<Arc<Store>>,
    /// imipd's state.
    pub state: Arc<State>,
    /// Held while any loop changes a calendar file and its record: a file and its
    /// baseline must change together. Taken exclusively by [`Shared::with_store_lock`]
    /// (scans, local delivery, delivery status), shared by [`Shared::with_user_lock`]
    /// (which adds a per-user lock), so changes to different users' calendars overlap
    /// and their disk flushes are shared.
    pub store_writes: RwLock<()>,
    /// One lock per user, taken under a shared `store_writes`: a user's files and their
    /// records are changed by one writer at a time.
    user_writes: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Wakes the queue loop when something was queued.
    pub queue_wake: Notify,
}

impl Shared {
    /// Shared state over an opened configuration, store and state, with no lock held.
    pub fn new(config_path: PathBuf, config: Config, store: Store, state: Arc<State>) -> Self {
        Shared {
            config_path,
            config: RwLock::new(Arc::new(config)),
            store: RwLock::new(Arc::new(store)),
            state,
            store_writes: RwLock::new(()),
            user_writes: Mutex::new(HashMap::new()),
            queue_wake: Notify::new(),
        }
    }

    /// The current store.
    pub fn store(&self) -> Arc<Store> {
        self.store
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Runs `f` with a change processor over the current store and configuration.
    pub fn with_processor<T>(&self, f: impl FnOnce(&Processor<'_>) -> T) -> T {
        let store = self.store();
        let config = self.config();
        f(&Processor {
            store: &store,
            state: &self.state,
            reply_details: config.reply_details(),
            writer: config.writer(),
        })
    }

    /// Runs `f` with a queue worker over the current store.
    pub fn with_worker<T>(&self, settings: &QueueSettings, f: impl FnOnce(&Worker<'_>) -> T) -> T {
        let store = self.store();
        f(&Worker {
            store: &store,
            state: &self.state,
            settings,
        })
    }

    /// Runs `f` while holding the store write lock: no other writer changes any file.
    pub fn with_store_lock<T>(&self, f: impl FnOnce() -> T) -> T {
        let _guard = self.store_writes.write().unwrap_or_else(|p| p.into_inner());
        f()
    }

    /// [`Self::with_user_lock`] for several users at once (taken in name order, so two
    /// callers never wait on each other): for a group of changes to their files.
    pub fn with_user_locks<T>(&self, users: &[&str], f: impl FnOnce() -> T) -> T {
        let _shared = self.store_writes.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<&str> = users.to_vec();
        names.sort_unstable();
        names.dedup();
        let locks: Vec<Arc<Mutex<()>>> = {
            let mut locks = self.user_writes.lock().unwrap_or_else(|p| p.into_inner());
            names
                .iter()
                .map(|user| locks.entry(user.to_string()).or_default().clone())
                .collect()
        };
        let _held: Vec<_> = locks
            .iter()
            .map(|lock| lock.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        f()
    }

    /// Runs `f` while no other writer changes `user`'s files: writers of other users'
    /// files may run meanwhile, [`Self::with_store_lock`] may not. `f` must change only
    /// files (and records) of `user`.
    pub fn with_user_lock<T>(&self, user: &str, f: impl FnOnce() -> T) -> T {
        self.with_user_locks(&[user], f)
    }

    /// Runs `f` under [`Self::with_user_lock`] for `user`, or under
    /// [`Self::with_store_lock`] when the change is not known to stay within one user.
    pub fn with_lock_for<T>(&self, user: Option<&str>, f: impl FnOnce() -> T) -> T {
        match user {
            Some(user) => self.with_user_lock(user, f),
            None => self.with_store_lock(f),
        }
    }

    /// Re-reads the configuration's user map (SIGHUP). Other settings need a restart.
    pub fn reload(&self) -> Result<usize, ConfigError> {
        let config = Config::load(&self.config_path)?;
        let store = Store::new(&config.store, config.users()?).keeping_provenance_of(&self.store());
        let users = store.users().count();
        if let Ok(mut slot) = self.store.write() {
            *slot = Arc::new(store);
        }
        if let Ok(mut slot) = self.config.write() {
            *slot = Arc::new(config);
        }
        Ok(users)
    }
}

/// The current time as a UTC timestamp.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
