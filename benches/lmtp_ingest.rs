//! Benchmark `lmtp_ingest`: incoming REPLYs per second over LMTP, each one applied
//! durably (organizer's file replaced and fsynced, redb record committed) before the
//! daemon answers 250; beside it, the floors of the same disk in the same folder.
//!
//! Setup: a vdir store of `LMTP_USERS` organizers, each with `LMTP_EVENTS` events of
//! `LMTP_ATTENDEES` external attendees (PARTSTAT=NEEDS-ACTION). The real `imipd serve`
//! binary baselines it, then a load generator in this process opens K connections to
//! its LMTP listener on 127.0.0.1 and sends REPLYs (LHLO once, then MAIL, RCPT and
//! DATA pipelined as Postfix does, then the message and its one reply). Every REPLY is
//! a distinct change: message i of a round answers for (organizer i mod U, event,
//! attendee), and each round uses another PARTSTAT than the previous one.
//!
//! Each round is bounded by a count (`LMTP_MESSAGES`) and a duration
//! (`LMTP_MAX_SECONDS`); each connection is closed and reopened every 300 messages,
//! as an MTA's connection cache does, and because the server allows 1000 commands per
//! session. Every reply must be 250 and say "applied"; after each round the files are
//! read back and every change of the round must be in its organizer's file.
//!
//! Floors, measured first in the same folder: redb commits/s (one small insert per
//! durable transaction) and "write temp file, fsync, rename, fsync folder" per second,
//! with 1 and 16 threads.
//!
//! Run: `cargo bench --bench lmtp_ingest` (about a minute). Environment:
//! `LMTP_K=1,4,16`, `LMTP_MESSAGES=3000`, `LMTP_MAX_SECONDS=20`, `LMTP_USERS=100`,
//! `LMTP_EVENTS=10`, `LMTP_ATTENDEES=8`, `LMTP_DIR` (a folder on the disk to measure;
//! default the system temp dir), `LMTP_KEEP=1` keeps the folder and the daemon log,
//! `LMTP_WRAP="valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out"` runs the
//! daemon under a profiler, `LMTP_RUST_LOG` sets its log level (default `info`).

#[path = "common/mod.rs"]
mod common;

use common::{env_or, show, Samples};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Messages per connection before the generator reconnects.
const PER_CONNECTION: usize = 300;
/// The PARTSTAT of each round, in turn: each differs from the one before.
const PARTSTATS: [&str; 3] = ["ACCEPTED", "DECLINED", "TENTATIVE"];

struct Shape {
    users: usize,
    events: usize,
    attendees: usize,
}

impl Shape {
    /// Message `i` of a round: (organizer, event, attendee), organizers round-robin so
    /// that concurrent messages mostly go to different organizers.
    fn target(&self, i: usize) -> (usize, usize, usize) {
        let u = i % self.users;
        let e = (i / self.users) % self.events;
        let a = (i / (self.users * self.events)) % self.attendees;
        (u, e, a)
    }

    fn changes(&self) -> usize {
        self.users * self.events * self.attendees
    }
}

fn event(u: usize, e: usize, attendees: usize) -> String {
    let mut text = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Bench//EN\r\nBEGIN:VEVENT\r\n\
         UID:ev-{u}-{e}@bench\r\nDTSTAMP:20300101T090000Z\r\nSEQUENCE:0\r\n\
         DTSTART:20300610T103000Z\r\nDTEND:20300610T113000Z\r\n\
         SUMMARY:Planning meeting {e} of organizer {u}\r\nLOCATION:Room {e}\r\n\
         DESCRIPTION:Agenda: review of last quarter\\, plans for the next one\\, and any\r\n \
         other business the attendees bring up.\r\n\
         ORGANIZER;CN=Organizer {u}:mailto:u{u}@example.com\r\n\
         ATTENDEE;CN=Organizer {u};PARTSTAT=ACCEPTED:mailto:u{u}@example.com\r\n"
    );
    for a in 0..attendees {
        text.push_str(&format!(
            "ATTENDEE;CN=Attendee {a};ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:a{a}@example.net\r\n"
        ));
    }
    text.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
    text
}

fn reply(round: usize, i: usize, (u, e, a): (usize, usize, usize), partstat: &str) -> Vec<u8> {
    format!(
        "From: Attendee {a} <a{a}@example.net>\r\nTo: u{u}@example.com\r\n\
         Subject: {partstat}: Planning meeting {e}\r\nMessage-ID: <bench-{round}-{i}@example.net>\r\n\
         Date: Mon, 1 Jan 2030 09:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/calendar; method=REPLY; charset=utf-8\r\n\r\n\
         BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Client//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n\
         UID:ev-{u}-{e}@bench\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:0\r\n\
         ORGANIZER:mailto:u{u}@example.com\r\n\
         ATTENDEE;PARTSTAT={partstat}:mailto:a{a}@example.net\r\n\
         END:VEVENT\r\nEND:VCALENDAR\r\n.\r\n"
    )
    .into_bytes()
}

/// The bench folder: store, configuration, state, log.
struct Site {
    dir: PathBuf,
    port: u16,
    metrics_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Site {
    fn new(base: &Path, shape: &Shape) -> Site {
        let dir = base.join(format!("imipd-bench-lmtp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (port, metrics_port) = (free_port(), free_port());
        let mut config = String::from(
            "state = \"state/imipd.redb\"\n[control]\nsocket = \"control.sock\"\n[store]\nroot = \"stores\"\nrescan_interval = 3600\n",
        );
        for u in 0..shape.users {
            let folder = dir.join(format!("stores/u{u}/calendar"));
            std::fs::create_dir_all(&folder).expect("store folder");
            for e in 0..shape.events {
                std::fs::write(
                    folder.join(format!("ev{e}.ics")),
                    event(u, e, shape.attendees),
                )
                .expect("event file");
            }
            config.push_str(&format!(
                "[[user]]\nname = \"u{u}\"\naddresses = [\"u{u}@example.com\"]\n"
            ));
        }
        // A closed benchmark setup: unsigned mail, its From believed without DNS checks.
        config.push_str(&format!(
            "[mail]\ndomain = \"example.com\"\n[queue]\noutbox = \"outbox\"\n\
             [lmtp]\nlisten = \"127.0.0.1:{port}\"\nmax_connections = 64\n\
             import_policy = \"nobody\"\n\
             insecure_trust_from_header = true\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
        ));
        std::fs::write(dir.join("imipd.toml"), config).expect("configuration");
        Site {
            dir,
            port,
            metrics_port,
        }
    }

    /// Starts `imipd serve` (under `LMTP_WRAP`, e.g. "valgrind --tool=callgrind") and
    /// waits (at most 120 s) until it has baselined the store.
    fn serve(&self) -> Child {
        let level = std::env::var("LMTP_RUST_LOG").unwrap_or("info".into());
        common::start_daemon(
            &self.dir.join("imipd.toml"),
            &self.dir.join("serve.log"),
            "LMTP_WRAP",
            &level,
            Duration::from_secs(120),
        )
    }

    /// The PARTSTAT attendee `a` has in organizer `u`'s event `e`.
    fn partstat(&self, (u, e, a): (usize, usize, usize)) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("stores/u{u}/calendar/ev{e}.ics")))
                .expect("organizer's file");
        let unfolded = text.replace("\r\n ", "");
        let line = unfolded
            .lines()
            .find(|l| {
                l.starts_with("ATTENDEE") && l.ends_with(&format!(":mailto:a{a}@example.net"))
            })
            .expect("the attendee's line");
        line.split(';')
            .find_map(|p| p.strip_prefix("PARTSTAT="))
            .map(|p| p.split(':').next().unwrap_or(p).to_string())
            .unwrap_or_default()
    }

    /// `imipd_lmtp_messages_total{outcome="accepted",reason="applied"}` from /metrics.
    fn applied_metric(&self) -> u64 {
        use std::io::Read;
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)) else {
            return 0;
        };
        let _ = stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text.lines()
            .find_map(|l| {
                l.strip_prefix(
                    "imipd_lmtp_messages_total{outcome=\"accepted\",reason=\"applied\"} ",
                )
            })
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// CPU time (user, system) of process `pid` so far.
fn cpu_of(pid: u32) -> (Duration, Duration) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let at = |i: usize| Duration::from_millis(fields.get(i).copied().unwrap_or(0) * 1000 / hz);
    (at(11), at(12))
}

/// What one round of the load generator saw.
#[derive(Default)]
struct Round {
    sent: usize,
    ok: usize,
    applied: usize,
    other: Vec<String>,
    latency: Samples,
    connections: usize,
    elapsed: Duration,
}

async fn read_reply(reader: &mut BufReader<TcpStream>) -> String {
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(60), reader.read_line(&mut line))
            .await
            .expect("the daemon answers within 60 s")
            .expect("reading a reply");
        assert!(n > 0, "the daemon closed the connection");
        let more = line.as_bytes().get(3) == Some(&b'-');
        if !more {
            return line.trim_end().to_string();
        }
    }
}

async fn connect(port: u16) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the LMTP listener");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut reader = BufReader::new(stream);
    let greeting = read_reply(&mut reader).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    reader
        .get_mut()
        .write_all(b"LHLO bench.example.net\r\n")
        .await
        .expect("LHLO");
    let lhlo = read_reply(&mut reader).await;
    assert!(lhlo.starts_with("250"), "{lhlo}");
    reader
}

/// One connection's share of a round: takes message numbers from `next` until
/// `count` are taken or `deadline` has passed.
async fn connection(
    port: u16,
    round: usize,
    shape: Arc<Shape>,
    next: Arc<AtomicUsize>,
    count: usize,
    deadline: Instant,
) -> Round {
    let partstat = PARTSTATS[round % PARTSTATS.len()];
    let mut seen = Round::default();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut on_this = 0;
    loop {
        if Instant::now() >= deadline {
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= count {
            break;
        }
        if on_this == PER_CONNECTION {
            if let Some(mut old) = conn.take() {
                let _ = old.get_mut().write_all(b"QUIT\r\n").await;
                let _ = read_reply(&mut old).await;
            }
            on_this = 0;
        }
        let reader = match &mut conn {
            Some(reader) => reader,
            None => {
                seen.connections += 1;
                conn.insert(connect(port).await)
            }
        };
        let (u, e, a) = shape.target(i);
        let start = Instant::now();
        let envelope =
            format!("MAIL FROM:<a{a}@example.net>\r\nRCPT TO:<u{u}@example.com>\r\nDATA\r\n");
        let stream = reader.get_mut();
        stream
            .write_all(envelope.as_bytes())
            .await
            .expect("envelope");
        for want in ["250", "250", "354"] {
            let got = read_reply(reader).await;
            assert!(got.starts_with(want), "expected {want}, got {got}");
        }
        let data = reply(round, i, (u, e, a), partstat);
        reader.get_mut().write_all(&data).await.expect("message");
        let answer = read_reply(reader).await;
        seen.latency.push(start.elapsed());
        seen.sent += 1;
        on_this += 1;
        if answer.starts_with("250") {
            seen.ok += 1;
            if answer.contains("REPLY applied") {
                seen.applied += 1;
            } else if seen.other.len() < 5 {
                seen.other.push(answer);
            }
        } else if seen.other.len() < 5 {
            seen.other.push(answer);
        }
    }
    if let Some(mut old) = conn {
        let _ = old.get_mut().write_all(b"QUIT\r\n").await;
    }
    seen
}

fn run_round(
    port: u16,
    round: usize,
    shape: &Arc<Shape>,
    k: usize,
    count: usize,
    cap: Duration,
) -> Round {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let deadline = start + cap;
        let tasks: Vec<_> = (0..k)
            .map(|_| {
                tokio::spawn(connection(
                    port,
                    round,
                    shape.clone(),
                    next.clone(),
                    count,
                    deadline,
                ))
            })
            .collect();
        let mut total = Round::default();
        for task in tasks {
            let part = task.await.expect("a connection task");
            total.sent += part.sent;
            total.ok += part.ok;
            total.applied += part.applied;
            total.connections += part.connections;
            total.other.extend(part.other);
            for d in part.latency.values() {
                total.latency.push(*d);
            }
        }
        total.elapsed = start.elapsed();
        total
    })
}

/// Durable redb commits per second, one small insert each, for about `budget`.
fn redb_floor(dir: &Path, budget: Duration) -> f64 {
    const TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("floor");
    let path = dir.join("floor.redb");
    let db = redb::Database::create(&path).expect("a redb file");
    let value = [7u8; 200];
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        let txn = db.begin_write().expect("write transaction");
        {
            let mut table = txn.open_table(TABLE).expect("table");
            table.insert(n, value.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(db);
    let _ = std::fs::remove_file(&path);
    rate
}

/// "Write a temp file, fsync, rename over the target, fsync the folder" per second,
/// with `threads` threads each in its own folder, for about `budget`.
fn file_floor(dir: &Path, threads: usize, budget: Duration) -> f64 {
    let body = event(0, 0, 8).into_bytes();
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let folder = dir.join(format!("floor-{t}"));
            let body = body.clone();
            std::thread::spawn(move || {
                std::fs::create_dir_all(&folder).expect("floor folder");
                let (temp, target) = (folder.join(".ev.ics.tmp"), folder.join("ev.ics"));
                let mut n = 0u64;
                let start = Instant::now();
                while start.elapsed() < budget {
                    let mut f = std::fs::File::create(&temp).expect("temp file");
                    f.write_all(&body).expect("write");
                    f.sync_all().expect("fsync");
                    std::fs::rename(&temp, &target).expect("rename");
                    std::fs::File::open(&folder)
                        .and_then(|d| d.sync_all())
                        .expect("fsync folder");
                    n += 1;
                }
                let _ = std::fs::remove_dir_all(&folder);
                n
            })
        })
        .collect();
    let total: u64 = handles
        .into_iter()
        .map(|h| h.join().expect("floor thread"))
        .sum();
    total as f64 / start.elapsed().as_secs_f64()
}

fn fs_type(dir: &Path) -> String {
    Command::new("df")
        .args(["--output=fstype,source"])
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" on "))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let ks: Vec<usize> = std::env::var("LMTP_K")
        .unwrap_or_else(|_| "1,4,16".into())
        .split(',')
        .filter_map(|k| k.trim().parse().ok())
        .collect();
    let count: usize = env_or("LMTP_MESSAGES", 3000);
    let cap = Duration::from_secs(env_or("LMTP_MAX_SECONDS", 20));
    let shape = Arc::new(Shape {
        users: env_or("LMTP_USERS", 100),
        events: env_or("LMTP_EVENTS", 10),
        attendees: env_or("LMTP_ATTENDEES", 8),
    });
    let count = count.min(shape.changes());
    let base = std::env::var_os("LMTP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);

    let site = Site::new(&base, &shape);
    println!("## LMTP ingest\n");
    println!("Machine: {}", common::machine());
    println!("Disk: {} ({})", fs_type(&site.dir), site.dir.display());
    println!(
        "Command: `LMTP_K={} LMTP_MESSAGES={count} LMTP_MAX_SECONDS={} LMTP_USERS={} LMTP_EVENTS={} LMTP_ATTENDEES={} cargo bench --bench lmtp_ingest`\n",
        ks.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(","),
        cap.as_secs(),
        shape.users,
        shape.events,
        shape.attendees
    );

    // Floors first, before the daemon runs, on the same disk.
    let floor_budget = Duration::from_secs(2);
    let redb_rate = redb_floor(&site.dir, floor_budget);
    let file_rate = file_floor(&site.dir, 1, floor_budget);
    let file_rate_16 = file_floor(&site.dir, 16, floor_budget);
    let serial = 1.0 / (1.0 / redb_rate + 1.0 / file_rate);
    // Issue #24's floor: a client's durable saves (write, fsync, rename) of event-sized
    // files, one thread, as the other daemon benches measure it.
    let texts: Vec<String> = (0..600)
        .map(|i| format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//floor//EN\r\nBEGIN:VEVENT\r\nUID:floor-{i}\r\nDTSTAMP:20300101T000000Z\r\nDTSTART:20300102T100000Z\r\nSUMMARY:{}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n", "x".repeat(900)))
        .collect();
    let saves_rate = common::client_saves_per_second(&site.dir.join("floor-saves"), &texts);
    let mut k_rates = Vec::new();

    let started = Instant::now();
    let child = site.serve();
    let pid = child.id();
    eprintln!(
        "imipd baselined {} objects in {}",
        shape.users * shape.events,
        show(started.elapsed())
    );

    println!("| K connections | REPLYs sent | 250 | applied | seconds | REPLYs/s | p50 | p99 | daemon CPU per REPLY, user | and system |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut problems = Vec::new();
    for (round, &k) in ks.iter().enumerate() {
        let applied_before = site.applied_metric();
        let cpu_before = cpu_of(pid);
        let seen = run_round(site.port, round, &shape, k, count, cap);
        let cpu_after = cpu_of(pid);
        let user = cpu_after.0.saturating_sub(cpu_before.0);
        let sys = cpu_after.1.saturating_sub(cpu_before.1);
        let applied_metric = site.applied_metric() - applied_before;
        // Every change of the round must be in its organizer's file.
        let partstat = PARTSTATS[round % PARTSTATS.len()];
        let missing = (0..seen.sent)
            .filter(|&i| site.partstat(shape.target(i)) != partstat)
            .count();
        if missing > 0 {
            problems.push(format!("K={k}: {missing} changes missing from the files"));
        }
        if seen.ok != seen.sent || seen.applied != seen.sent || applied_metric != seen.sent as u64 {
            problems.push(format!(
                "K={k}: {} sent, {} answered 250, {} said applied, metric says {applied_metric}; e.g. {:?}",
                seen.sent, seen.ok, seen.applied, seen.other
            ));
        }
        let secs = seen.elapsed.as_secs_f64();
        k_rates.push((k, seen.sent as f64 / secs));
        println!(
            "| {k} | {} | {} | {} | {secs:.2} | {:.0} | {} | {} | {} | {} |",
            seen.sent,
            seen.ok,
            seen.applied,
            seen.sent as f64 / secs,
            show(seen.latency.percentile(50.0)),
            show(seen.latency.percentile(99.0)),
            show(user / seen.sent.max(1) as u32),
            show(sys / seen.sent.max(1) as u32),
        );
    }
    common::stop_daemon(child);

    println!("\nFloors on the same disk, same folder, measured just before (2 s each):\n");
    println!("| floor | per second |");
    println!("|---|---:|");
    println!("| redb durable commits, one small insert each (1 thread) | {redb_rate:.0} |");
    println!(
        "| file replace: write temp, fsync, rename, fsync folder (1 thread) | {file_rate:.0} |"
    );
    println!("| file replace, 16 threads in 16 folders | {file_rate_16:.0} |");
    println!("| one file replace then one redb commit, in series | {serial:.0} |");
    println!(
        "| a client's durable saves: write, fsync, rename (1 thread, 600 files) | {saves_rate:.0} |"
    );
    for (k, rate) in &k_rates {
        println!(
            "\nK = {k}: {rate:.0} REPLYs/s = {:.2} × a client's durable saves on this disk.",
            rate / saves_rate.max(1e-9)
        );
    }
    println!(
        "\nEach round: at most {count} REPLYs or {} s; {} organizers × {} events × {} attendees; \
         a new connection every {PER_CONNECTION} messages.",
        cap.as_secs(),
        shape.users,
        shape.events,
        shape.attendees
    );

    if std::env::var_os("LMTP_KEEP").is_some() {
        eprintln!("kept {}", site.dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&site.dir);
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("PROBLEM: {p}");
        }
        std::process::exit(1);
    }
}
