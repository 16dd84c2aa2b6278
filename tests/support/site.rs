//! The site under test: a folder with users' calendar stores, an `imipd.toml`, and the
//! real `imipd serve` binary running on it, with its log in `serve.log`.
//!
//! A test makes a [`Site`], writes its configuration (most start from [`config`]),
//! starts the daemon ([`Site::serve`] or [`Site::start`]), waits for what a user would
//! see ([`Site::eventually`], [`Site::files`]) and stops it ([`stop`], or the
//! [`Daemon`] guard). The folder is removed when the site is dropped.

use super::TempDir;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long [`Site::eventually`] waits: a guard against a hung daemon, not a speed test.
pub const PATIENCE: Duration = Duration::from_secs(40);

/// The configuration most daemon tests start from: state and control socket in the
/// site, vdir stores under `stores` with the `[store]` keys in `store` (e.g.
/// `debounce_ms = 50\n`), `users` as `<user>@example.com`, mail domain example.com;
/// `rest` follows (`[queue]`, `[lmtp]`, `[relay]` …).
pub fn config(users: &[&str], store: &str, rest: &str) -> String {
    let mut text = format!(
        "state = \"state/imipd.redb\"\n[control]\nsocket = \"control.sock\"\n\
         [store]\nroot = \"stores\"\n{store}"
    );
    text.push_str(&users_and_mail(users));
    text.push_str(rest);
    text
}

/// The `[[user]]` sections of `users` (each `<user>@example.com`) and the `[mail]`
/// section (domain example.com) that every test site has.
pub fn users_and_mail(users: &[&str]) -> String {
    let mut text = String::new();
    for user in users {
        text.push_str(&format!(
            "[[user]]\nname = \"{user}\"\naddresses = [\"{user}@example.com\"]\n"
        ));
    }
    text.push_str("[mail]\ndomain = \"example.com\"\n");
    text
}

/// A folder with stores, configuration, state and log for one test.
pub struct Site {
    /// The site's folder (`imipd.toml`, `stores/`, `serve.log`, …).
    pub dir: PathBuf,
    _temp: TempDir,
}

impl Site {
    /// An empty site named after the test, with a calendar folder for each of `users`
    /// (`stores/<user>/calendar`); the configuration is written by the test.
    pub fn new(label: &str, users: &[&str]) -> Site {
        let temp = TempDir::new(label);
        let dir = temp.path().to_path_buf();
        let site = Site { dir, _temp: temp };
        for user in users {
            std::fs::create_dir_all(site.calendar(user)).expect("store folders");
        }
        site
    }

    /// A site for `users` whose configuration ([`config`] with `store`) has a listener
    /// (LMTP, the RSVP page …) on a free port: `rest` makes the sections after `[mail]`
    /// from that port. The site and the port.
    pub fn with_port(
        label: &str,
        users: &[&str],
        store: &str,
        rest: impl FnOnce(u16) -> String,
    ) -> (Site, u16) {
        let site = Site::new(label, users);
        let port = super::free_port();
        site.write_config(&config(users, store, &rest(port)));
        (site, port)
    }

    /// `user`'s calendar folder.
    pub fn calendar(&self, user: &str) -> PathBuf {
        self.dir.join("stores").join(user).join("calendar")
    }

    /// The configuration file.
    pub fn config(&self) -> PathBuf {
        self.dir.join("imipd.toml")
    }

    /// Writes the configuration file.
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config(), text).expect("configuration");
    }

    /// Adds `text` at the end of the configuration (a new section).
    pub fn add_config(&self, text: &str) {
        let mut config = std::fs::read_to_string(self.config()).expect("config");
        config.push_str(text);
        self.write_config(&config);
    }

    /// Changes the configuration: `from` (which must be there) becomes `to`.
    pub fn replace_in_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config()).expect("config");
        assert!(text.contains(from), "the configuration has no {from:?}");
        self.write_config(&text.replace(from, to));
    }

    /// Starts `imipd serve` (RUST_LOG=info) with a fresh log: what the log says is
    /// about this run only.
    pub fn serve(&self) -> Child {
        let log = std::fs::File::create(self.log_path()).expect("log file");
        self.spawn(&[], log)
    }

    /// Starts `imipd serve` with extra environment (`RUST_LOG` in it wins), adding to
    /// the log of the earlier runs.
    pub fn serve_appending(&self, env: &[(&str, &str)]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        self.spawn(env, log)
    }

    fn spawn(&self, env: &[(&str, &str)], log: std::fs::File) -> Child {
        Command::new(env!("CARGO_BIN_EXE_imipd"))
            .args(["serve", "--config"])
            .arg(self.config())
            .current_dir(&self.dir)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("imipd binary")
    }

    /// [`Site::serve`], then waits until the daemon says it runs; stopped on drop.
    pub fn start(&self) -> Daemon {
        let daemon = Daemon::new(self.serve());
        self.eventually("startup", || self.log().contains("imipd is running"));
        daemon
    }

    /// Runs `imipd ARGS --config CONFIG` to its end (IMIPD_CONFIG unset).
    pub fn imipd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_imipd"))
            .args(args)
            .arg("--config")
            .arg(self.config())
            .env_remove("IMIPD_CONFIG")
            .output()
            .expect("imipd binary")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("serve.log")
    }

    /// What the daemon logged (empty before it started).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until `check` holds; after [`PATIENCE`] fails with `what` and the log.
    pub fn eventually(&self, what: &str, check: impl Fn() -> bool) {
        eventually(what, || self.log(), check);
    }

    /// The files in `folder` (relative to the site), sorted, without hidden ones
    /// (a client's temporary files, the outbox's partial writes).
    pub fn files(&self, folder: &str) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(self.dir.join(folder))
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        out.retain(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        });
        out.sort();
        out
    }
}

/// Waits until `check` holds; after [`PATIENCE`] fails with `what` and `log()`.
pub fn eventually(what: &str, log: impl Fn() -> String, check: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Sends SIGTERM and waits for the daemon to exit; whether it did within 20 s.
fn terminate(child: &mut Child) -> bool {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Stops the daemon with SIGTERM, as an init system does; fails the test if it does
/// not exit within 20 s.
pub fn stop(mut child: Child) {
    assert!(
        terminate(&mut child),
        "imipd did not stop within 20 s of SIGTERM"
    );
}

/// Kills the daemon with SIGKILL (a crash) and reaps it.
pub fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A running daemon, stopped with SIGTERM when dropped (also when a test fails).
pub struct Daemon(Option<Child>);

impl Daemon {
    /// Guards `child`.
    pub fn new(child: Child) -> Daemon {
        Daemon(Some(child))
    }

    /// The daemon's process id (for reading its /proc entries).
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Stops it now, failing the test if it does not exit within 20 s.
    pub fn stop(mut self) {
        if let Some(child) = self.0.take() {
            stop(child);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            terminate(&mut child);
        }
    }
}

/// Writes like a careful client: a temporary (hidden) file renamed into place.
pub fn write_event(dir: &Path, name: &str, text: &str) {
    let temp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, text).expect("write");
    std::fs::rename(&temp, dir.join(name)).expect("rename");
}
