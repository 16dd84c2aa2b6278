//! Writes the committed seed corpus of the fuzz targets into `fuzz/seeds/<target>/`.
//!
//! Run from `fuzz/`: `cargo run --example make_seeds` (stable is fine). Sources:
//! the payloads of `tests/scenarios/*.txt` (read with `imipd::replay::script::parse`,
//! as `tests/engine_robustness.rs` does), the real-world mails of
//! `tests/data/imip/inbound/`, hand-written iTIP mails about the fixed stored series of
//! `imipd_fuzz::engine`, and hand-written LMTP conversations. Rewrites only the
//! files it generates; reproducers added by hand (`crash-*`) are left alone.

use calcard::icalendar::ICalendar;
use imipd::itip::CalAddress;
use imipd::replay::script::{self, Command};
use imipd_fuzz::engine::{addresses, join_pair};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let repo = fuzz
        .parent()
        .expect("fuzz/ is inside the repository")
        .to_path_buf();
    let seeds = fuzz.join("seeds");
    let scenarios = scenario_steps(&repo.join("tests/scenarios"));

    let mut lmtp = lmtp_conversations();
    let google = fs::read(repo.join("tests/data/imip/inbound/google_invite.eml")).expect("eml");
    lmtp.push(("real-mail".into(), conversation_with(&google)));
    write_all(&seeds.join("lmtp_session"), &lmtp);

    let mut mails = Vec::new();
    let inbound = repo.join("tests/data/imip/inbound");
    for path in sorted_files(&inbound, "eml") {
        let name = format!("eml-{}", path.file_stem().unwrap().to_string_lossy());
        mails.push((name, fs::read(&path).expect("eml")));
    }
    for (name, method, from, to, cal) in fixed_series_messages() {
        mails.push((format!("fixed-{name}"), email(method, from, to, cal, false)));
    }
    for (i, s) in scenarios.iter().enumerate() {
        if let Command::Itip { from, to } = &s.command {
            let method = method_in(&s.payload).unwrap_or("REQUEST");
            let to = to.first().map(String::as_str).unwrap_or("o@example.com");
            let base64 = i % 3 == 0;
            mails.push((
                format!("scenario-{}-{:02}", s.file, s.index),
                email(method, from, to, &s.payload, base64),
            ));
        }
    }
    write_all(&seeds.join("inbound_mail"), &mails);

    let mut pairs = Vec::new();
    let mut latest: HashMap<(String, String), String> = HashMap::new();
    for s in &scenarios {
        let (account, key) = match &s.command {
            Command::Put { account, name } => (account.clone(), (account.clone(), name.clone())),
            Command::Itip { to, .. } => {
                let to = to.first().cloned().unwrap_or_default();
                let uid = uid_in(&s.payload);
                let key = latest
                    .keys()
                    .find(|(a, n)| *a == to && uid_in(&latest[&(a.clone(), n.clone())]) == uid)
                    .cloned()
                    .unwrap_or((to.clone(), String::new()));
                (to, key)
            }
            _ => continue,
        };
        let old = latest.get(&key).cloned();
        let selector = selector_for(&account, old.as_deref(), &s.payload);
        pairs.push((
            format!("scenario-{}-{:02}", s.file, s.index),
            join_pair(selector, old.as_deref(), &s.payload),
        ));
        if matches!(s.command, Command::Put { .. }) {
            latest.insert(key, s.payload.clone());
        }
    }
    write_all(&seeds.join("apply_itip"), &pairs);
}

/// One scenario step with a calendar payload.
struct Step {
    file: String,
    index: usize,
    command: Command,
    payload: String,
}

fn scenario_steps(dir: &Path) -> Vec<Step> {
    let mut out = Vec::new();
    for path in sorted_files(dir, "txt") {
        let file = path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .replace('_', "-");
        let text = fs::read_to_string(&path).expect("scenario");
        let steps = script::parse(&text).expect("valid scenario");
        for (index, step) in steps.into_iter().enumerate() {
            if matches!(step.command, Command::Put { .. } | Command::Itip { .. }) {
                out.push(Step {
                    file: file.clone(),
                    index,
                    command: step.command,
                    payload: step.payload,
                });
            }
        }
    }
    out
}

/// The `apply_itip` selector that makes `account` the acting account (its index among
/// the addresses the target collects; see `fuzz_targets/apply_itip.rs`) and adds
/// METHOD:REQUEST to a stored version without a METHOD.
fn selector_for(account: &str, old: Option<&str>, new: &str) -> u8 {
    let mut people = ICalendar::parse(new)
        .map(|c| addresses(&c))
        .unwrap_or_default();
    if let Some(old) = old.and_then(|o| ICalendar::parse(o).ok()) {
        for a in addresses(&old) {
            if !people.contains(&a) {
                people.push(a);
            }
        }
    }
    let wanted = CalAddress::parse(account);
    let index = people
        .iter()
        .position(|p| Some(p) == wanted.as_ref())
        .unwrap_or(people.len());
    (index.min(7) as u8) | (1 << 3)
}

fn method_in(payload: &str) -> Option<&'static str> {
    let line = payload.lines().find(|l| l.starts_with("METHOD:"))?;
    [
        "REQUEST",
        "REPLY",
        "CANCEL",
        "ADD",
        "COUNTER",
        "REFRESH",
        "DECLINECOUNTER",
        "PUBLISH",
    ]
    .into_iter()
    .find(|m| line.trim_end() == format!("METHOD:{m}"))
}

fn uid_in(payload: &str) -> Option<String> {
    payload
        .lines()
        .find_map(|l| l.strip_prefix("UID:"))
        .map(|u| u.trim().to_string())
}

/// An iMIP mail as a client sends it: text and calendar alternatives, the calendar
/// either 8bit or base64, with a trusted DMARC verdict for the sender.
fn email(method: &str, from: &str, to: &str, calendar: &str, base64: bool) -> Vec<u8> {
    let domain = from.rsplit_once('@').map_or("example.net", |(_, d)| d);
    let calendar = crlf(calendar);
    let size = calendar.len();
    let (encoding, body) = if base64 {
        ("base64", wrap76(&encode_base64(calendar.as_bytes())))
    } else {
        ("8bit", calendar)
    };
    crlf(&format!(
        "Authentication-Results: mx.example.com; dmarc=pass header.from={domain}\n\
From: <{from}>\n\
To: <{to}>\n\
Subject: {method}\n\
Date: Mon, 6 Jan 2030 09:00:00 +0000\n\
Message-ID: <{method}.{}@{domain}>\n\
MIME-Version: 1.0\n\
Content-Type: multipart/alternative; boundary=\"b1\"\n\
\n\
--b1\n\
Content-Type: text/plain; charset=utf-8\n\
\n\
{method} from {from}\n\
--b1\n\
Content-Type: text/calendar; charset=utf-8; method={method}\n\
Content-Transfer-Encoding: {encoding}\n\
\n\
{body}\n\
--b1--\n",
        size
    ))
    .into_bytes()
}

fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

fn encode_base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn wrap76(text: &str) -> String {
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("ASCII"))
        .collect();
    lines.join("\r\n")
}

/// Messages about the series `fuzz-fixed-1` of the fixed stored copies: (name,
/// method, from, to, calendar).
fn fixed_series_messages() -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
)> {
    vec![
        (
            "reply-tentative",
            "REPLY",
            "a@example.net",
            "org@example.com",
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Client//EN\nMETHOD:REPLY\nBEGIN:VEVENT\nUID:fuzz-fixed-1\nDTSTAMP:20300102T090000Z\nSEQUENCE:2\nDTSTART;TZID=Europe/Berlin:20300107T100000\nORGANIZER:mailto:org@example.com\nATTENDEE;PARTSTAT=TENTATIVE;CN=Anna:mailto:a@example.net\nREQUEST-STATUS:2.0;Success\nEND:VEVENT\nEND:VCALENDAR\n",
        ),
        (
            "reply-decline-occurrence",
            "REPLY",
            "b@example.net",
            "org@example.com",
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Client//EN\nMETHOD:REPLY\nBEGIN:VEVENT\nUID:fuzz-fixed-1\nRECURRENCE-ID;TZID=Europe/Berlin:20300121T100000\nDTSTAMP:20300102T090000Z\nSEQUENCE:2\nORGANIZER:mailto:org@example.com\nATTENDEE;PARTSTAT=DECLINED:mailto:b@example.net\nEND:VEVENT\nEND:VCALENDAR\n",
        ),
        (
            "reply-delegated",
            "REPLY",
            "b@example.net",
            "org@example.com",
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Client//EN\nMETHOD:REPLY\nBEGIN:VEVENT\nUID:fuzz-fixed-1\nDTSTAMP:20300102T090000Z\nSEQUENCE:2\nORGANIZER:mailto:org@example.com\nATTENDEE;PARTSTAT=DELEGATED;DELEGATED-TO=\"mailto:d@example.net\":mailto:b@example.net\nATTENDEE;PARTSTAT=NEEDS-ACTION;DELEGATED-FROM=\"mailto:b@example.net\":mailto:d@example.net\nEND:VEVENT\nEND:VCALENDAR\n",
        ),
        (
            "reply-exchange-no-organizer",
            "REPLY",
            "a@example.net",
            "org@example.com",
            "BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nPRODID:Microsoft Exchange Server 2016\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nATTENDEE;PARTSTAT=ACCEPTED;CN=Anna:MAILTO:A@EXAMPLE.NET\r\nUID:fuzz-fixed-1\r\nSEQUENCE:2\r\nDTSTAMP:20300102T090000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        ),
        (
            "request-moved",
            "REQUEST",
            "org@example.com",
            "b@example.net",
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//imipd//EN\nMETHOD:REQUEST\nBEGIN:VEVENT\nUID:fuzz-fixed-1\nDTSTAMP:20300102T090000Z\nSEQUENCE:3\nDTSTART:20300107T100000Z\nDTEND:20300107T110000Z\nRRULE:FREQ=WEEKLY;COUNT=12\nSUMMARY:Weekly planning\nORGANIZER;CN=\"Olga, organizer\":mailto:org@example.com\nATTENDEE;CN=Olga;PARTSTAT=ACCEPTED:mailto:org@example.com\nATTENDEE;CN=Anna;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:a@example.net\nATTENDEE;CN=Bert;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:b@example.net\nEND:VEVENT\nBEGIN:VEVENT\nUID:fuzz-fixed-1\nRECURRENCE-ID:20300114T090000Z\nDTSTAMP:20300102T090000Z\nSEQUENCE:3\nDTSTART:20300114T130000Z\nDTEND:20300114T140000Z\nSUMMARY:Weekly planning (moved)\nORGANIZER:mailto:org@example.com\nATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:b@example.net\nEND:VEVENT\nEND:VCALENDAR\n",
        ),
        (
            "cancel-occurrence",
            "CANCEL",
            "org@example.com",
            "b@example.net",
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//imipd//EN\nMETHOD:CANCEL\nBEGIN:VEVENT\nUID:fuzz-fixed-1\nRECURRENCE-ID:20300128T090000Z\nDTSTAMP:20300102T090000Z\nSEQUENCE:3\nSTATUS:CANCELLED\nORGANIZER:mailto:org@example.com\nATTENDEE:mailto:b@example.net\nEND:VEVENT\nEND:VCALENDAR\n",
        ),
        (
            "cancel-series-stale",
            "CANCEL",
            "org@example.com",
            "b@example.net",
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//imipd//EN\nMETHOD:CANCEL\nBEGIN:VEVENT\nUID:fuzz-fixed-1\nDTSTAMP:20300102T090000Z\nSEQUENCE:1\nSTATUS:CANCELLED\nORGANIZER:mailto:org@example.com\nATTENDEE:mailto:b@example.net\nEND:VEVENT\nEND:VCALENDAR\n",
        ),
        (
            "add-occurrence",
            "ADD",
            "org@example.com",
            "b@example.net",
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//imipd//EN\nMETHOD:ADD\nBEGIN:VEVENT\nUID:fuzz-fixed-1\nRECURRENCE-ID:20300401T090000Z\nDTSTAMP:20300102T090000Z\nSEQUENCE:3\nDTSTART:20300401T090000Z\nDTEND:20300401T100000Z\nSUMMARY:Extra planning\nORGANIZER:mailto:org@example.com\nATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:b@example.net\nEND:VEVENT\nEND:VCALENDAR\n",
        ),
        (
            "counter",
            "COUNTER",
            "b@example.net",
            "org@example.com",
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Client//EN\nMETHOD:COUNTER\nBEGIN:VEVENT\nUID:fuzz-fixed-1\nDTSTAMP:20300102T090000Z\nSEQUENCE:2\nDTSTART:20300107T120000Z\nDTEND:20300107T130000Z\nORGANIZER:mailto:org@example.com\nATTENDEE;PARTSTAT=TENTATIVE:mailto:b@example.net\nCOMMENT:Can we meet at noon?\nEND:VEVENT\nEND:VCALENDAR\n",
        ),
        (
            "declinecounter",
            "DECLINECOUNTER",
            "org@example.com",
            "b@example.net",
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//imipd//EN\nMETHOD:DECLINECOUNTER\nBEGIN:VEVENT\nUID:fuzz-fixed-1\nDTSTAMP:20300102T090000Z\nSEQUENCE:2\nORGANIZER:mailto:org@example.com\nATTENDEE:mailto:b@example.net\nEND:VEVENT\nEND:VCALENDAR\n",
        ),
        (
            "refresh",
            "REFRESH",
            "a@example.net",
            "org@example.com",
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Client//EN\nMETHOD:REFRESH\nBEGIN:VEVENT\nUID:fuzz-fixed-1\nDTSTAMP:20300102T090000Z\nORGANIZER:mailto:org@example.com\nATTENDEE:mailto:a@example.net\nEND:VEVENT\nEND:VCALENDAR\n",
        ),
    ]
}

/// Hand-written LMTP conversations (see `imipd_fuzz::lmtp::Handler` for what each
/// address does).
fn lmtp_conversations() -> Vec<(String, Vec<u8>)> {
    let small = "From: <a@example.net>\r\nSubject: hi\r\n\r\nhello\r\n";
    let c = |name: &str, text: String| (name.to_string(), text.into_bytes());
    vec![
        c(
            "one-delivery",
            format!("LHLO mx.example.com\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n{small}.\r\nQUIT\r\n"),
        ),
        c(
            "pipelined-recipients",
            format!("LHLO mx\r\nMAIL FROM:<a@example.net> BODY=8BITMIME SIZE=100\r\nRCPT TO:<alice@example.com>\r\nRCPT TO:<reject@example.com>\r\nRCPT TO:<later@example.com>\r\nRCPT TO:<busy@example.com>\r\nRCPT TO:<someone@elsewhere.org>\r\nRCPT TO:<lost@example.com>\r\nDATA\r\n{small}.\r\nRSET\r\nNOOP\r\nQUIT\r\n"),
        ),
        c(
            "too-many-recipients",
            format!("LHLO mx\r\nMAIL FROM:<>\r\nRCPT TO:<r1@example.com>\r\nRCPT TO:<r2@example.com>\r\nRCPT TO:<r3@example.com>\r\nRCPT TO:<r4@example.com>\r\nRCPT TO:<r5@example.com>\r\nDATA\r\n{small}.\r\nQUIT\r\n"),
        ),
        c(
            "dot-stuffing",
            "LHLO mx\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n..leading dot\r\n.\r\n..\r\n...\r\nnot the end .\r\n. not the end\r\n.\r\nMAIL FROM:<b@example.net>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n.\r\nQUIT\r\n".to_string(),
        ),
        c(
            "oversized",
            format!("LHLO mx\r\nMAIL FROM:<a@example.net> SIZE=999999\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n{}.\r\nNOOP\r\nQUIT\r\n", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\r\n".repeat(60)),
        ),
        c(
            "out-of-order",
            "RCPT TO:<bob@example.com>\r\nMAIL FROM:<a@example.net>\r\nDATA\r\nLHLO mx\r\nDATA\r\nRCPT TO:<bob@example.com>\r\nMAIL FROM:<a@example.net>\r\nMAIL FROM:<c@example.net>\r\nRSET\r\nDATA\r\nQUIT\r\n".to_string(),
        ),
        c(
            "other-verbs",
            "EHLO mx\r\nHELO mx\r\nLHLO\r\nLHLO mx\r\nVRFY bob\r\nEXPN list\r\nHELP\r\nSTARTTLS\r\nAUTH PLAIN AGJvYgBwdw==\r\nETRN example.com\r\nNOOP with text\r\nMAIL FROM:<a@example.net> RET=HDRS ENVID=x NOTIFY=NEVER\r\nRCPT TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.com\r\nBDAT 5 LAST\r\nhello".to_string(),
        ),
        c(
            "garbage",
            format!("\u{0}\u{1}\r\n\r\n \r\nlhlo lower\r\nmail from:<A@EXAMPLE.NET>\r\nrcpt to:<Bob@Example.COM>\r\nMAIL FROM:a@example.net\r\nRCPT TO:<bob@example.com\r\n{}\r\nbare LF\nbare CR\rQUIT\r\n", "x".repeat(300)),
        ),
        c(
            "error-flood",
            "LHLO mx\r\nX\r\nX\r\nX\r\nX\r\nX\r\nX\r\nX\r\nX\r\nX\r\nX\r\nNOOP\r\n".to_string(),
        ),
        c(
            "eof-in-data",
            "LHLO mx\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nFrom: <a@example.net>\r\n\r\nunfinished\r\n".to_string(),
        ),
    ]
}

/// One delivery of `mail` to alice, dot-stuffed, with CRLF line ends.
fn conversation_with(mail: &[u8]) -> Vec<u8> {
    let text = crlf(&String::from_utf8_lossy(mail));
    let stuffed: String = text
        .split_inclusive("\r\n")
        .map(|l| {
            if l.starts_with('.') {
                format!(".{l}")
            } else {
                l.to_string()
            }
        })
        .collect();
    format!("LHLO mx.example.com\r\nMAIL FROM:<sender@example.net>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n{stuffed}.\r\nQUIT\r\n").into_bytes()
}

fn sorted_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

/// Replaces the generated seeds of one target (files not starting with `crash-`).
fn write_all(dir: &Path, seeds: &[(String, Vec<u8>)]) {
    fs::create_dir_all(dir).expect("seed folder");
    for entry in fs::read_dir(dir).expect("seed folder").flatten() {
        if !entry.file_name().to_string_lossy().starts_with("crash-") {
            fs::remove_file(entry.path()).expect("old seed removed");
        }
    }
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes).expect("seed written");
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
}
