//! A private Postfix instance for one test.
//!
//! `Postfix::builder()...start()` writes a `main.cf` and `master.cf` into a fresh
//! temp folder and runs `postfix -c <folder>/conf start-fg` (as root; Postfix refuses
//! otherwise). The instance has its own queue and data directories, logs to
//! `<folder>/maillog` (through postlogd, no syslog needed), listens with smtpd on a
//! free port of 127.0.0.1 only, delivers nothing locally, routes the domains given to
//! [`PostfixBuilder::route`] by `transport_maps` (e.g. to imipd's LMTP server), and
//! sends everything else to [`PostfixBuilder::relayhost`] (e.g. a [`Sink`]) or
//! nowhere. Retry and poll timers are short so tests are quick. The instance is
//! stopped with `postfix -c <dir> stop` by [`Postfix::stop`] or on drop.
//!
//! [`Sink`]: super::Sink

use super::tools::{run_ok, spawn_logged};
use super::{free_port, TempDir};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const POSTFIX: &str = "/usr/sbin/postfix";

/// The services this instance runs; chroot off, so nothing needs copying into a jail.
const MASTER_CF: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
";

/// What the instance should do; see [`Postfix::builder`].
#[derive(Debug, Default, Clone)]
pub struct PostfixBuilder {
    routes: Vec<(String, String)>,
    relayhost: Option<SocketAddr>,
    params: Vec<(String, String)>,
    tls: Option<(PathBuf, PathBuf)>,
    services: Vec<String>,
}

impl PostfixBuilder {
    /// Accept mail for `domain` (it joins `relay_domains`) and deliver it to
    /// `nexthop`, a transport_maps value such as `lmtp:inet:127.0.0.1:2424` or
    /// `lmtp:unix:/path/lmtp.sock`.
    pub fn route(mut self, domain: &str, nexthop: &str) -> Self {
        self.routes.push((domain.to_string(), nexthop.to_string()));
        self
    }

    /// Send all other mail to this SMTP server (`relayhost = [ip]:port`).
    pub fn relayhost(mut self, addr: SocketAddr) -> Self {
        self.relayhost = Some(addr);
        self
    }

    /// Sets any `main.cf` parameter (after the defaults, so it wins).
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.params.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds a `master.cf` service line (and its `-o`/argument continuation lines),
    /// e.g. a `pipe` transport.
    pub fn service(mut self, entry: &str) -> Self {
        self.services.push(entry.to_string());
        self
    }

    /// Offer STARTTLS on the smtpd port and listen for implicit TLS
    /// ([`Postfix::smtps_addr`]) with this certificate and key (PEM files).
    pub fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.tls = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// Writes the configuration and starts Postfix; panics with Postfix's own
    /// messages if it does not come up.
    pub fn start(self) -> Postfix {
        Postfix::start(self)
    }
}

/// A running private Postfix instance.
pub struct Postfix {
    dir: TempDir,
    child: Option<Child>,
    port: u16,
    /// The implicit-TLS port, when TLS is configured.
    smtps_port: Option<u16>,
}

impl Postfix {
    /// A builder for an instance with no routes and no relayhost.
    pub fn builder() -> PostfixBuilder {
        PostfixBuilder::default()
    }

    fn start(builder: PostfixBuilder) -> Postfix {
        if !Path::new(POSTFIX).exists() {
            panic!(
                "Postfix is not installed ({POSTFIX} is missing): install it with \
                 `apt-get install postfix swaks` (scripts/test does this)"
            );
        }
        let dir = TempDir::new("postfix");
        let port = free_port();
        let conf = dir.join("conf");
        for sub in ["conf", "queue", "data"] {
            std::fs::create_dir_all(dir.join(sub)).expect("postfix folders");
        }
        if let Some(uid) = account_id("/etc/passwd", "postfix") {
            let _ = std::os::unix::fs::chown(dir.join("data"), Some(uid), None);
        }
        prepare_queue(&dir.join("queue"));
        std::fs::write(conf.join("main.cf"), main_cf(dir.path(), &builder)).expect("main.cf");
        let mut master = format!("127.0.0.1:{port} inet n - n - - smtpd\n");
        let smtps_port = builder.tls.as_ref().map(|_| free_port());
        if let Some(p) = smtps_port {
            master.push_str(&format!(
                "127.0.0.1:{p} inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes\n"
            ));
        }
        master.push_str(MASTER_CF);
        for entry in &builder.services {
            master.push_str(entry);
            master.push('\n');
        }
        std::fs::write(conf.join("master.cf"), master).expect("master.cf");
        // Postfix re-reads a configuration file modified within the last second until
        // it is older (300 ms naps, 1.5 s in all): date the files back instead.
        for name in ["main.cf", "master.cf"] {
            let past = std::time::SystemTime::now() - Duration::from_secs(60);
            let _ = std::fs::File::options()
                .write(true)
                .open(conf.join(name))
                .and_then(|f| f.set_modified(past));
        }
        let child = spawn_logged(
            Command::new(POSTFIX).arg("-c").arg(&conf).arg("start-fg"),
            dir.path(),
            POSTFIX,
        );
        let mut postfix = Postfix {
            dir,
            child: Some(child),
            port,
            smtps_port,
        };
        postfix.wait_ready();
        postfix
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "postfix start-fg exited with {status} (it must run as root)\n\
                         stderr: {}\nmaillog: {}",
                        self.read("stderr"),
                        self.log()
                    );
                }
            }
            if smtp_banner(self.smtp_addr()).is_some() {
                return;
            }
            if Instant::now() > deadline {
                panic!("postfix did not start within 20 s\nmaillog: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where its smtpd listens.
    pub fn smtp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Where its implicit-TLS smtpd listens; panics unless built with
    /// [`PostfixBuilder::tls`].
    pub fn smtps_addr(&self) -> SocketAddr {
        let port = self
            .smtps_port
            .expect("this Postfix was built without tls()");
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Its configuration folder (for `postfix -c`, `postconf -c`).
    pub fn conf_dir(&self) -> PathBuf {
        self.dir.join("conf")
    }

    /// The instance's whole mail log so far.
    pub fn log(&self) -> String {
        self.read("maillog")
    }

    /// Waits until the mail log has a line containing every one of `needles`, and
    /// returns that line; panics with the log after `timeout`.
    pub fn wait_for_log(&self, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_string();
            }
            if Instant::now() > deadline {
                panic!("no maillog line with {needles:?} within {timeout:?}; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks Postfix to attempt deferred mail now (`postfix flush`).
    pub fn flush(&self) {
        let _ = Command::new(POSTFIX)
            .arg("-c")
            .arg(self.conf_dir())
            .arg("flush")
            .output();
    }

    /// Stops the instance and waits for its processes to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new(POSTFIX)
            .arg("-c")
            .arg(self.conf_dir())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Still running: kill the master (its children follow) and the wrapper.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("queue/pid/master.pid")) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn main_cf(dir: &Path, b: &PostfixBuilder) -> String {
    let d = dir.display();
    let tmp = std::env::temp_dir();
    let mut cf = format!(
        "\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.postfix.test
mydomain = postfix.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = {d}/maillog
maillog_file_prefixes = {tmp}
smtp_dns_support_level = disabled
biff = no
append_dot_mydomain = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
delay_warning_time = 0h
in_flow_delay = 0s
smtpd_error_sleep_time = 0s
smtp_connect_timeout = 5s
lmtp_connect_timeout = 5s
address_verify_map =
address_verify_poll_delay = 1s
",
        tmp = tmp.display()
    );
    let domains: Vec<&str> = b.routes.iter().map(|(d, _)| d.as_str()).collect();
    cf.push_str(&format!("relay_domains = {}\n", domains.join(", ")));
    if !b.routes.is_empty() {
        let entries: Vec<String> = b.routes.iter().map(|(d, n)| format!("{d}={n}")).collect();
        cf.push_str(&format!(
            "transport_maps = inline:{{ {} }}\n",
            entries.join(", ")
        ));
    }
    match b.relayhost {
        Some(addr) => cf.push_str(&format!("relayhost = [{}]:{}\n", addr.ip(), addr.port())),
        None => cf.push_str("default_transport = error:this test Postfix sends no outbound mail\n"),
    }
    if let Some((cert, key)) = &b.tls {
        cf.push_str(&format!(
            "smtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\nsmtpd_tls_security_level = may\n",
            cert.display(),
            key.display()
        ));
    }
    for (name, value) in &b.params {
        cf.push_str(&format!("{name} = {value}\n"));
    }
    cf
}

/// The numeric id of `name` in `/etc/passwd` or `/etc/group`.
fn account_id(file: &str, name: &str) -> Option<u32> {
    let table = std::fs::read_to_string(file).ok()?;
    table
        .lines()
        .find(|l| l.split(':').next() == Some(name))?
        .split(':')
        .nth(2)?
        .parse()
        .ok()
}

/// Creates the queue subdirectories with the owners and modes `postfix` itself would
/// give them and marks the queue `quick-start`, so `start-fg` skips its integrity
/// check (`post-install create-missing` and friends take about two seconds). If the
/// accounts are missing, nothing is prepared and Postfix does the work itself.
fn prepare_queue(queue: &Path) {
    use std::os::unix::fs::{chown, PermissionsExt};
    let (Some(postfix), Some(postdrop)) = (
        account_id("/etc/passwd", "postfix"),
        account_id("/etc/group", "postdrop"),
    ) else {
        return;
    };
    let dirs: [(&str, u32, Option<u32>, u32); 14] = [
        ("active", postfix, Some(0), 0o700),
        ("bounce", postfix, Some(0), 0o700),
        ("corrupt", postfix, Some(0), 0o700),
        ("defer", postfix, Some(0), 0o700),
        ("deferred", postfix, Some(0), 0o700),
        ("flush", postfix, Some(0), 0o700),
        ("hold", postfix, Some(0), 0o700),
        ("incoming", postfix, Some(0), 0o700),
        ("private", postfix, Some(0), 0o700),
        ("saved", postfix, Some(0), 0o700),
        ("trace", postfix, Some(0), 0o700),
        ("maildrop", postfix, Some(postdrop), 0o730),
        ("public", postfix, Some(postdrop), 0o710),
        ("pid", 0, Some(0), 0o755),
    ];
    for (name, uid, gid, mode) in dirs {
        let path = queue.join(name);
        let ok = std::fs::create_dir_all(&path).is_ok()
            && chown(&path, Some(uid), gid).is_ok()
            && std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).is_ok();
        if !ok {
            return;
        }
    }
    let _ = std::fs::write(queue.join("quick-start"), "");
}

/// The greeting of the SMTP server at `addr` (then QUIT), or `None` if it is not up.
fn smtp_banner(addr: SocketAddr) -> Option<String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut stream = stream;
    let _ = stream.write_all(b"QUIT\r\n");
    let _ = reader.read_line(&mut String::new());
    line.starts_with("220").then_some(line)
}

/// Creates a self-signed certificate for `mx.postfix.test` in `dir` with the openssl
/// command; returns (certificate, key) paths.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    run_ok(
        Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:prime256v1")
            .args(["-days", "2", "-subj", "/CN=mx.postfix.test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        "openssl",
    );
    (cert, key)
}
