//! Memory under hostile mail: 16 mails of 25,000 small calendar parts each, at once.
//!
//! Each mail is about 7.7 MB, within the default 10 MiB message limit. The real
//! daemon receives all 16 over LMTP at the same time; its peak resident memory
//! (`VmHWM`) must stay under 300 MB and, once they are answered, its resident memory
//! (`VmRSS`) must come back under 100 MB. Before the bounds, one such mail peaked at
//! 159 MB and 16 reached 1.98 GB, 1.87 GB of it held afterwards.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;
use support::site::Daemon;
use support::Site;

const MAILS: usize = 16;
const PARTS: usize = 25_000;

/// A multipart mail of `PARTS` tiny `text/calendar` parts.
fn hostile_mail(n: usize) -> String {
    let mut mail = format!(
        "From: mallory@example.net\r\nTo: alice@example.com\r\nSubject: parts\r\n\
         Message-ID: <parts-{n}@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
    );
    for i in 0..PARTS {
        mail.push_str(&format!(
            "--b\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\n\
             BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:p{i}\r\n\
             DTSTAMP:20300101T000000Z\r\nDTSTART:20300102T100000Z\r\n\
             SUMMARY:one small part of a very large mail of twenty-five thousand parts\r\n\
             ORGANIZER:mailto:mallory@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        ));
    }
    mail.push_str("--b--\r\n");
    mail
}

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One LMTP delivery; the final reply line.
fn deliver(port: u16, data: &str) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut reply = || {
        let mut last = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return last;
            }
            last = line.trim_end().to_string();
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return last;
            }
        }
    };
    reply();
    for command in [
        "LHLO test\r\n",
        "MAIL FROM:<mallory@example.net>\r\n",
        "RCPT TO:<alice@example.com>\r\n",
        "DATA\r\n",
    ] {
        writer.write_all(command.as_bytes()).expect("send");
        reply();
    }
    writer.write_all(data.as_bytes()).expect("data");
    writer.write_all(b".\r\n").expect("dot");
    reply()
}

#[test]
fn sixteen_mails_of_25000_calendar_parts_stay_within_bounded_memory() {
    let (site, port) = Site::with_port("memory", &["alice"], "", |port| {
        format!(
            "[queue]\noutbox = \"outbox\"\n\
             [lmtp]\nlisten = \"127.0.0.1:{port}\"\nimport_policy = \"everyone\"\n"
        )
    });
    let daemon = Daemon::new(site.serve_appending(&[("RUST_LOG", "warn")]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "imipd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = daemon.id();
    let idle_kb = status_kb(pid, "VmRSS:");
    let mails: Vec<String> = (0..MAILS).map(hostile_mail).collect();
    let size = mails[0].len();
    let answers: Vec<String> = std::thread::scope(|scope| {
        let threads: Vec<_> = mails
            .iter()
            .map(|mail| scope.spawn(move || deliver(port, mail)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("client"))
            .collect()
    });
    std::thread::sleep(Duration::from_millis(500));
    let peak_kb = status_kb(pid, "VmHWM:");
    let after_kb = status_kb(pid, "VmRSS:");
    println!(
        "{MAILS} mails of {PARTS} calendar parts ({:.1} MB each): peak RSS {} MB, {} MB afterwards (idle before: {} MB); answers: {:?}",
        size as f64 / 1e6,
        peak_kb / 1024,
        after_kb / 1024,
        idle_kb / 1024,
        answers.first()
    );
    for answer in &answers {
        assert!(
            answer.starts_with('5') || answer.starts_with('2'),
            "every mail gets a final answer: {answer}"
        );
    }
    assert!(peak_kb < 300 * 1024, "peak {} MB", peak_kb / 1024);
    assert!(after_kb < 100 * 1024, "afterwards {} MB", after_kb / 1024);
}
