//! What every benchmark binary shares: timing samples and their percentiles, the
//! machine a figure was measured on, the peak memory and CPU time of child processes,
//! and when files appear in watched folders.
//!
//! Each benchmark prints Markdown tables that go into BENCHMARKS.md as they are.
#![allow(dead_code)]

use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Durations measured for one thing, kept so that percentiles can be read off.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    values: Vec<Duration>,
}

impl Samples {
    /// No samples yet.
    pub fn new() -> Self {
        Samples::default()
    }

    /// Adds one measurement.
    pub fn push(&mut self, d: Duration) {
        self.values.push(d);
    }

    /// How many measurements.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when nothing was measured.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The `p`-th percentile (0–100), nearest rank; zero when empty.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.values.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.values.clone();
        sorted.sort();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    /// The median.
    pub fn median(&self) -> Duration {
        self.percentile(50.0)
    }

    /// Every measurement, in the order taken (to merge samples of several threads).
    pub fn values(&self) -> &[Duration] {
        &self.values
    }

    /// The largest measurement.
    pub fn max(&self) -> Duration {
        self.values.iter().copied().max().unwrap_or_default()
    }
}

/// Runs `f` repeatedly, one sample per call, for at least `budget` and at least
/// `min_runs` calls (after one warm-up call).
pub fn sample(budget: Duration, min_runs: usize, mut f: impl FnMut()) -> Samples {
    f();
    let mut samples = Samples::new();
    let start = Instant::now();
    while samples.len() < min_runs || start.elapsed() < budget {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples
}

/// A duration in the unit that reads best: µs below 1 ms, ms below 10 s, else s.
pub fn show(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else if us < 10_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// One line naming the machine: CPU model, cores, memory, kernel, compiler.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem_gib:.0} GiB, Linux {kernel}, {rustc}")
}

/// The largest peak resident set size (KiB) among child processes waited for so far.
pub fn peak_rss_of_children_kib() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage into the pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    // SAFETY: initialised by the successful call above.
    let usage = unsafe { usage.assume_init() };
    usage.ru_maxrss.max(0) as u64
}

/// The peak resident set size (KiB) of this process so far.
pub fn peak_rss_of_self_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Reads `NAME` from the environment as a number, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts `imipd serve --config CONFIG` with its log (at `RUST_LOG=level`) in `log`,
/// and waits (at most `timeout`) until it says it is running. When the environment
/// variable `wrap_var` names a tool (e.g. `valgrind --tool=callgrind …`), the daemon
/// runs under it. The daemon gets its own process group, so that [`stop_daemon`]
/// stops a wrapper and the daemon together.
pub fn start_daemon(
    config: &std::path::Path,
    log: &std::path::Path,
    wrap_var: &str,
    level: &str,
    timeout: Duration,
) -> std::process::Child {
    use std::process::{Command, Stdio};
    let wrap = std::env::var(wrap_var).unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut command = match words.next() {
        Some(tool) => {
            let mut c = Command::new(tool);
            c.args(words).arg(env!("CARGO_BIN_EXE_imipd"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_imipd")),
    };
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", level)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("the daemon's log file"))
        .spawn()
        .expect("the imipd binary starts");
    let read_log = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + timeout;
    while !read_log().contains("imipd is running") {
        assert!(
            Instant::now() < deadline,
            "imipd did not start within {} s:\n{}",
            timeout.as_secs(),
            read_log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// Stops a daemon from [`start_daemon`]: SIGTERM to its process group, a bounded wait,
/// then SIGKILL.
pub fn stop_daemon(mut child: std::process::Child) {
    let group = i32::try_from(child.id()).ok();
    let signal_group = |signal| {
        if let Some(pid) = group {
            // SAFETY: sends a signal to the process group of our own child.
            unsafe { libc::kill(-pid, signal) };
        }
    };
    signal_group(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    signal_group(libc::SIGKILL);
    let _ = child.wait();
}

/// The peak resident set size (KiB, VmHWM) of process `pid` so far; zero if unreadable.
pub fn peak_rss_of_pid_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time of process `pid` so far (from /proc; zero if unreadable).
pub fn cpu_time_of_pid(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// First-seen instants of files appearing in watched folders.
pub type Arrivals = Arc<Mutex<HashMap<PathBuf, Instant>>>;

/// Watches `dirs` (not recursively) and records when each non-hidden file first appears.
pub fn watch_arrivals(dirs: &[&Path]) -> (notify::RecommendedWatcher, Arrivals) {
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let at = Instant::now();
        let Ok(event) = event else { return };
        let path = match event.kind {
            EventKind::Create(_) => event.paths.first(),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => event.paths.first(),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => event.paths.get(1),
            _ => None,
        };
        let Some(path) = path else { return };
        let hidden = path
            .file_name()
            .is_none_or(|n| n.to_string_lossy().starts_with('.'));
        if !hidden {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.entry(path.clone()).or_insert(at);
        }
    })
    .expect("an inotify watcher");
    for dir in dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .expect("watch a folder");
    }
    (watcher, arrivals)
}

/// Postfix's `smtp-sink` (a C SMTP server that accepts and discards) on a free
/// loopback port, as the relay of a daemon bench: it keeps up with far more messages
/// per second than the daemon sends, which Python's sinks and tests/support's
/// thread-per-connection sink do not. Its `-c` counter line, printed on every
/// message, gives the instant each one was accepted (as read by this process).
pub struct SmtpSink {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl SmtpSink {
    /// Starts `/usr/sbin/smtp-sink` (package postfix) and waits until it accepts
    /// connections; panics with a hint when it is not installed.
    pub fn start() -> SmtpSink {
        use std::io::Read;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let mut command = std::process::Command::new("/usr/sbin/smtp-sink");
        // SAFETY: geteuid only reads the process's user id.
        if unsafe { libc::geteuid() } == 0 {
            // smtp-sink refuses to run as root without a user to switch to.
            command.args(["-u", "nobody"]);
        }
        let mut child = command
            .args(["-c", &addr.to_string(), "256"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("/usr/sbin/smtp-sink runs (apt-get install postfix)");
        let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let mut out = child.stdout.take().expect("smtp-sink's output");
        let seen = arrivals.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut line = Vec::new();
            let mut last = 0usize;
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let at = Instant::now();
                for &b in &buf[..n] {
                    if b != b'\r' && b != b'\n' {
                        line.push(b);
                        continue;
                    }
                    // "sess=1 quit=0 mesg=3": the running count of messages.
                    let text = String::from_utf8_lossy(&line);
                    let count = text
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("mesg="))
                        .and_then(|c| c.parse::<usize>().ok());
                    if let Some(count) = count.filter(|&c| c > last) {
                        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                        seen.extend(std::iter::repeat_n(at, count - last));
                        last = count;
                    }
                    line.clear();
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "smtp-sink did not start on {addr}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        SmtpSink {
            child,
            addr,
            arrivals,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// When each message accepted so far was counted, in order.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Messages accepted so far.
    pub fn count(&self) -> usize {
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Saves `text` as `dir/name` the way a careful client does, durably: a hidden
/// temporary file written and fsynced, then renamed into place. Returns the instant
/// after the rename.
pub fn save_durable(dir: &Path, name: &str, text: &str) -> Instant {
    use std::io::Write;
    let temp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&temp).expect("create the temporary file");
    file.write_all(text.as_bytes())
        .expect("write the temporary file");
    file.sync_all().expect("fsync the temporary file");
    drop(file);
    std::fs::rename(&temp, dir.join(name)).expect("rename into place");
    Instant::now()
}

/// The disk's floor for a client: `texts` saved with [`save_durable`] into a fresh
/// folder `dir` as fast as one thread can, in saves per second.
pub fn client_saves_per_second(dir: &Path, texts: &[String]) -> f64 {
    std::fs::create_dir_all(dir).expect("the floor's folder");
    let start = Instant::now();
    for (k, text) in texts.iter().enumerate() {
        save_durable(dir, &format!("floor-{k}.ics"), text);
    }
    let rate = texts.len() as f64 / start.elapsed().as_secs_f64().max(1e-9);
    let _ = std::fs::remove_dir_all(dir);
    rate
}

/// Every email of `messages`, built as the queue builds them (each message prepared
/// once, then one email per recipient, stamped at `now`); the total bytes of the
/// emails and of each message's iCalendar text.
pub fn build_emails(messages: Vec<imipd::itip::ItipMessage>, now: i64) -> usize {
    let options = imipd::imip::OutgoingOptions::default();
    let mut total = 0;
    for message in messages {
        total += message.to_ics().len();
        let recipients = message.to.clone();
        let mut mail = imipd::imip::PreparedMail::new(message, &options).expect("the mail builds");
        for (i, rcpt) in recipients.iter().enumerate() {
            let stamp = imipd::imip::Stamp {
                now: chrono::DateTime::from_timestamp(now, 0).unwrap_or_default(),
                unique: i as u64,
            };
            total += mail
                .build_for(rcpt, &options, &stamp, None)
                .expect("the mail builds")
                .bytes
                .len();
        }
    }
    total
}
