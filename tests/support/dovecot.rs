//! A private Dovecot instance (LMTP only) with Pigeonhole Sieve, for one test.
//!
//! `Dovecot::start(users, sieve)` writes a `dovecot.conf` into a fresh temp folder and
//! runs `dovecot -F -c <conf>`: LMTP on a free port of 127.0.0.1, users from a
//! passwd-file, mail as Maildir under the folder, delivered as the system user
//! `nobody` (Dovecot refuses root for mail). With a Sieve script, it runs before every
//! delivery (`sieve_before`), with the extprograms plugin and `vnd.dovecot.pipe`
//! enabled; programs are looked up in [`Dovecot::pipe_dir`]. Stopped on drop.

use super::tools::{run_ok, spawn_logged};
use super::{free_port, TempDir};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DOVECOT: &str = "/usr/sbin/dovecot";

/// A running private Dovecot.
pub struct Dovecot {
    dir: TempDir,
    child: Option<Child>,
    port: u16,
}

impl Dovecot {
    /// Starts Dovecot for `users` (full addresses; the Maildir is named by the local
    /// part), running `sieve` (a script's text) before each delivery when given.
    pub fn start(users: &[&str], sieve: Option<&str>) -> Dovecot {
        assert!(
            Path::new(DOVECOT).exists(),
            "Dovecot is not installed: apt-get install dovecot-core dovecot-lmtpd dovecot-sieve (scripts/test does this)"
        );
        let dir = TempDir::new("dovecot");
        let port = free_port();
        let d = dir.path().to_path_buf();
        for sub in ["base", "mail", "pipe", "sieve"] {
            std::fs::create_dir_all(d.join(sub)).expect("dovecot folders");
        }
        // nobody writes the Maildirs and runs the pipe programs.
        let open = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("mode")
        };
        open(dir.path(), 0o755);
        open(&d.join("mail"), 0o777);
        open(&d.join("pipe"), 0o755);
        let users_file: String = users
            .iter()
            .map(|u| format!("{u}:{{PLAIN}}unused::::::\n"))
            .collect();
        std::fs::write(d.join("users"), users_file).expect("users");
        let mut plugin = String::new();
        let mut lmtp_plugins = "";
        if let Some(script) = sieve {
            std::fs::write(d.join("sieve/before.sieve"), script).expect("sieve script");
            lmtp_plugins = "mail_plugins = sieve";
            plugin = format!(
                "plugin {{\n  sieve_plugins = sieve_extprograms\n  sieve_global_extensions = +vnd.dovecot.pipe\n  \
                 sieve_pipe_bin_dir = {pipe}\n  sieve_before = {d}/sieve/before.sieve\n  sieve_pipe_exec_timeout = 30s\n}}\n",
                pipe = d.join("pipe").display(),
                d = d.display()
            );
        }
        let conf = format!(
            "base_dir = {d}/base\nstate_dir = {d}/base/state\nlog_path = {d}/dovecot.log\n\
             protocols = lmtp\nlisten = 127.0.0.1\nssl = no\n\
             mail_location = maildir:{d}/mail/%n\nfirst_valid_uid = 1\n\
             default_internal_user = nobody\ndefault_internal_group = nogroup\ndefault_login_user = nobody\n\
             passdb {{\n  driver = passwd-file\n  args = {d}/users\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = {d}/users\n  default_fields = uid=nobody gid=nogroup home={d}/mail/%n\n}}\n\
             service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n\
             protocol lmtp {{\n  {lmtp_plugins}\n}}\n{plugin}",
            d = d.display()
        );
        std::fs::write(d.join("dovecot.conf"), conf).expect("dovecot.conf");
        if sieve.is_some() {
            // A global script is compiled by the admin (the mail user may not write here).
            run_ok(
                Command::new("sievec")
                    .arg("-c")
                    .arg(d.join("dovecot.conf"))
                    .arg(d.join("sieve/before.sieve")),
                "sievec (dovecot-sieve) on the Sieve script",
            );
        }
        let child = spawn_logged(
            Command::new(DOVECOT)
                .args(["-F", "-c"])
                .arg(d.join("dovecot.conf")),
            &d,
            DOVECOT,
        );
        let mut dovecot = Dovecot {
            dir,
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(Ok(Some(status))) = dovecot.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "dovecot exited with {status}:\n{}\n{}",
                    dovecot.read("stderr"),
                    dovecot.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "dovecot did not start within 20 s:\n{}",
                dovecot.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        dovecot
    }

    /// The transport_maps next hop for Postfix: `lmtp:inet:127.0.0.1:PORT`.
    pub fn nexthop(&self) -> String {
        format!("lmtp:inet:127.0.0.1:{}", self.port)
    }

    /// The folder Sieve's `pipe` takes programs from: put executables here.
    pub fn pipe_dir(&self) -> PathBuf {
        self.dir.join("pipe")
    }

    /// Every message in `local_part`'s INBOX (new and cur), oldest first.
    pub fn inbox(&self, local_part: &str) -> Vec<Vec<u8>> {
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.dir.join("mail").join(local_part).join(sub))
            {
                files.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        }
        files.sort();
        files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
    }

    /// The instance's log so far.
    pub fn log(&self) -> String {
        self.read("dovecot.log")
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("doveadm")
            .arg("-c")
            .arg(self.dir.join("dovecot.conf"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
