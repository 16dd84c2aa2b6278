//! Benchmark `scan`: the baseline scan of a store, and the periodic rescan after it,
//! at 1,000 to 100,000 events spread over 1 to 10,000 users.
//!
//! For each size it writes a vdir store of events (each organised by its user, with
//! three attendees), then runs the real `imipd scan --config …` twice as a child
//! process:
//!
//! - **baseline**: the first scan, which records every object and sends nothing (what
//!   `imipd serve` does on its first start);
//! - **rescan**: the same scan again with everything known (what the daemon does every
//!   `store.rescan_interval` seconds).
//!
//! Each is reported with its wall time and the child's peak resident set size
//! (from `wait4`'s rusage, so each figure belongs to that one process).
//!
//! `cargo bench --bench scan` (optional: `SCAN_SIZES=1000x1,10000x100,…` as
//! events×users; `SCAN_DIR=/path` for where the stores are written, default the
//! system temp dir; `SCAN_COLD=1` empties the page cache before each scan, as root,
//! so the files are read from the disk as after a reboot).

#[path = "common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The default grid: every event count with one user, a few, and many.
const DEFAULT_SIZES: &str =
    "1000x1,1000x10,1000x1000,10000x1,10000x100,10000x10000,100000x1,100000x100,100000x10000";

/// One event of `user`, about 900 bytes like a typical client's.
fn event(user: &str, n: usize) -> String {
    let mut ics = String::with_capacity(1024);
    let _ = write!(
        ics,
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//imipd//bench//EN\r\n\
         BEGIN:VEVENT\r\nUID:{user}-{n}@bench.example.org\r\nDTSTAMP:20260101T000000Z\r\n\
         SEQUENCE:0\r\nDTSTART:20270301T{h:02}0000Z\r\nDURATION:PT1H\r\n\
         SUMMARY:Meeting number {n} of {user}\r\nLOCATION:Room {r}\r\n\
         DESCRIPTION:Agenda for meeting {n}: review\\, plans\\, questions.\r\n\
         ORGANIZER;CN={user}:mailto:{user}@bench.example.org\r\n",
        h = n % 10 + 8,
        r = n % 40
    );
    for a in 0..3 {
        let _ = write!(
            ics,
            "ATTENDEE;CN=Guest {a};ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:\
             mailto:guest{a}-{n}@elsewhere.example.net\r\n"
        );
    }
    ics.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
    ics
}

/// Writes the store and the configuration; returns the configuration's path.
fn prepare(dir: &Path, events: usize, users: usize) -> PathBuf {
    let root = dir.join("stores");
    let mut config = format!(
        "state = \"{}\"\n\n[store]\nlayout = \"vdir\"\nroot = \"{}\"\n\n\
         [queue]\noutbox = \"{}\"\n\n[mail]\ndomain = \"bench.example.org\"\n",
        dir.join("state.redb").display(),
        root.display(),
        dir.join("outbox").display()
    );
    for u in 0..users {
        let user = format!("user{u}");
        let _ = write!(
            config,
            "\n[[user]]\nname = \"{user}\"\naddresses = [\"{user}@bench.example.org\"]\n"
        );
        let folder = root.join(&user).join("calendar");
        std::fs::create_dir_all(&folder).expect("create a calendar folder");
        // Events are dealt round-robin, so users differ by at most one event.
        for n in (u..events).step_by(users) {
            std::fs::write(folder.join(format!("{n}.ics")), event(&user, n))
                .expect("write an event");
        }
    }
    let path = dir.join("imipd.toml");
    std::fs::write(&path, config).expect("write the configuration");
    path
}

/// Empties the kernel's page cache (root only), so a scan reads from the disk; false
/// when that is not allowed here.
fn drop_page_cache() -> bool {
    let synced = Command::new("sync").status().is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Wall time and peak RSS (KiB) of one `imipd scan`; panics with its stderr on failure.
/// With `cold`, the page cache is emptied first.
fn run_scan(config: &Path, cold: bool) -> (Duration, u64, String) {
    if cold && !drop_page_cache() {
        eprintln!("  cannot empty the page cache (not root?): this scan runs warm");
    }
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_imipd"))
        .arg("scan")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start imipd scan");
    let pid = child.id() as libc::pid_t;
    let output = std::thread::spawn(move || {
        use std::io::Read;
        let (mut out, mut err) = (String::new(), String::new());
        let mut child = child;
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        // The child is reaped by wait4 below, not here.
        std::mem::forget(child);
        (out, err)
    });
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: wait4 fills `status` and `usage` for the child we started.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()) };
    let elapsed = start.elapsed();
    assert_eq!(rc, pid, "wait4 on imipd scan");
    // SAFETY: filled by the successful wait4 above.
    let usage = unsafe { usage.assume_init() };
    let (out, err) = output.join().expect("read the scan's output");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "imipd scan failed: {err}"
    );
    (
        elapsed,
        usage.ru_maxrss.max(0) as u64,
        out.trim().to_string(),
    )
}

fn main() {
    let sizes: Vec<(usize, usize)> = std::env::var("SCAN_SIZES")
        .unwrap_or_else(|_| DEFAULT_SIZES.into())
        .split(',')
        .filter_map(|s| {
            let (e, u) = s.trim().split_once('x')?;
            Some((e.parse().ok()?, u.parse().ok()?))
        })
        .collect();
    let base = std::env::var_os("SCAN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let cold = std::env::var_os("SCAN_COLD").is_some();
    let mut rows = Vec::new();
    for (events, users) in sizes {
        let users = users.clamp(1, events.max(1));
        let dir = base.join(format!(
            "imipd-bench-scan-{}-{events}x{users}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the bench folder");
        eprintln!("{events} events over {users} users: writing the store");
        let written = Instant::now();
        let config = prepare(&dir, events, users);
        let write_time = written.elapsed();
        eprintln!(
            "  written in {:.1} s; baseline scan",
            write_time.as_secs_f64()
        );
        let (baseline, baseline_rss, report) = run_scan(&config, cold);
        assert!(
            report.contains(&format!("{events} recorded as baseline")),
            "every event is recorded: {report}"
        );
        eprintln!("  {report}");
        eprintln!("  rescan");
        let (rescan, rescan_rss, report) = run_scan(&config, cold);
        assert!(
            report.contains("0 messages queued"),
            "a rescan of an unchanged store sends nothing: {report}"
        );
        let state_bytes = std::fs::metadata(dir.join("state.redb"))
            .map(|m| m.len())
            .unwrap_or(0);
        rows.push((
            events,
            users,
            baseline,
            baseline_rss,
            rescan,
            rescan_rss,
            state_bytes,
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    println!("Machine: {}", common::machine());
    println!(
        "Command: `{}cargo bench --bench scan`; one run per size, stores in {}, page cache {}\n",
        if cold { "SCAN_COLD=1 " } else { "" },
        base.display(),
        if cold {
            "emptied before each scan"
        } else {
            "warm (the files were just written)"
        }
    );
    println!("| events | users | baseline scan | peak RSS | per event | rescan | peak RSS | state file |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (events, users, baseline, b_rss, rescan, r_rss, state) in rows {
        println!(
            "| {events} | {users} | {:.2} s | {} MiB | {} | {:.2} s | {} MiB | {} MiB |",
            baseline.as_secs_f64(),
            b_rss / 1024,
            common::show(baseline / events as u32),
            rescan.as_secs_f64(),
            r_rss / 1024,
            state / (1024 * 1024),
        );
    }
}
