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
