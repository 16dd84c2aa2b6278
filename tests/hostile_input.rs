//! Hostile mail and calendars: each gets a clear answer, no panic, and nothing outside
//! the recipient's calendar folder is touched. Each case goes through the same decision
//! code the LMTP server uses, against a real store.

use imipd::daemon::inbound::Verdict;

#[path = "support/mod.rs"]
mod support;
use support::fixture::{self, MailSite};

const NOW: i64 = 1_900_000_000;

/// Bob's calendar, with mail believed from its From (a closed test setup).
struct Site(MailSite);

impl Site {
    fn new(name: &str) -> Site {
        Site(MailSite::new(
            &format!("hostile-{name}"),
            &["bob"],
            fixture::lmtp_settings(true),
        ))
    }

    fn deliver(&self, data: &[u8]) -> Verdict {
        self.0
            .deliver("dave@example.net", "bob@example.com", data, NOW)
    }

    /// Every file under the site folder, relative to it.
    fn files(&self) -> Vec<String> {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else if let Ok(rel) = path.strip_prefix(base) {
                    out.push(rel.display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        let dir = self.0.dir.path();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }
}

/// Each message gets its own Message-ID (the same one twice is applied once).
static MESSAGES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn invitation(uid: &str, extra: &str) -> Vec<u8> {
    let n = MESSAGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "From: dave@example.net\r\nTo: bob@example.com\r\nSubject: Invitation\r\nMessage-ID: <{}@example.net>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\r\n\
         BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Dave//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
         DTSTAMP:20300101T090000Z\r\nSEQUENCE:1\r\nDTSTART:20300410T120000Z\r\nDTEND:20300410T130000Z\r\n{extra}\
         ORGANIZER:mailto:dave@example.net\r\nATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\n\
         END:VEVENT\r\nEND:VCALENDAR\r\n",
        n
    )
    .into_bytes()
}

fn accepted(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Accepted(text) if text.contains("imported"))
}

fn refused(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Refused { .. })
}

#[test]
fn uids_that_look_like_paths_never_become_paths() {
    let site = Site::new("uids");
    for uid in [
        "../../etc/passwd",
        "/etc/shadow",
        "a/b/c",
        "x\u{0}y",
        "..",
        "con:prn",
    ] {
        let verdict = site.deliver(&invitation(uid, ""));
        assert!(
            accepted(&verdict) || refused(&verdict),
            "{uid:?}: {verdict:?}"
        );
    }
    for file in site.files() {
        assert!(
            file == "state.redb"
                || (file.starts_with("stores/bob/calendar/imipd-") && file.ends_with(".ics")),
            "a file outside the invitations folder, or named after a UID: {file}"
        );
    }
}

#[test]
fn oversized_and_long_lined_input_is_refused_or_handled() {
    let site = Site::new("size");
    // A 10 MB body: over the message size limit.
    let mut huge = invitation("big-1", "");
    huge.extend(std::iter::repeat_n(b'a', 10 * 1024 * 1024));
    assert!(refused(&site.deliver(&huge)), "a 10 MB message is refused");
    // A calendar part over the calendar size limit (but under the message limit).
    let long_description = format!("DESCRIPTION:{}\r\n", "x".repeat(600 * 1024));
    let verdict = site.deliver(&invitation("big-2", &long_description));
    assert!(refused(&verdict), "{verdict:?}");
    // One very long (but allowed) line is just a long line.
    let long_line = format!("SUMMARY:{}\r\n", "y".repeat(100 * 1024));
    assert!(accepted(
        &site.deliver(&invitation("long-line", &long_line))
    ));
}

#[test]
fn broken_mime_and_encodings_get_clear_refusals() {
    let site = Site::new("mime");
    let mut nested =
        String::from("From: dave@example.net\r\nTo: bob@example.com\r\nMIME-Version: 1.0\r\n");
    for i in 0..200 {
        nested.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    nested.push_str("Content-Type: text/plain\r\n\r\nhello\r\n");
    match site.deliver(nested.as_bytes()) {
        Verdict::Refused { reason, .. } => {
            assert!(reason.contains("not an iMIP message"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let bad_base64 = "From: dave@example.net\r\nTo: bob@example.com\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/calendar; method=REQUEST\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64 at all***\r\n";
    assert!(refused(&site.deliver(bad_base64.as_bytes())));
    let mut latin = invitation("latin-1", "SUMMARY:Caf\u{e9}\r\n");
    // Invalid UTF-8 inside a part that claims UTF-8.
    let at = latin
        .windows(4)
        .position(|w| w == b"Caf\xc3")
        .expect("summary");
    latin[at + 3] = 0xff;
    let verdict = site.deliver(&latin);
    assert!(accepted(&verdict) || refused(&verdict), "{verdict:?}");
}

#[test]
fn bogus_dates_and_endless_rules_are_bounded() {
    let site = Site::new("dates");
    let cases = [
        "RRULE:FREQ=SECONDLY;INTERVAL=1\r\n",
        "RRULE:FREQ=YEARLY;BYSETPOS=-366;COUNT=2147483647\r\n",
        "RRULE:FREQ=MINUTELY;UNTIL=99991231T235959Z\r\n",
        "RDATE:99999999T999999Z\r\n",
        "EXDATE:00000000T000000Z\r\n",
        "RECURRENCE-ID:not-a-date\r\n",
        "DURATION:P99999999W\r\n",
    ];
    for (i, extra) in cases.iter().enumerate() {
        let started = std::time::Instant::now();
        let verdict = site.deliver(&invitation(&format!("rule-{i}"), extra));
        assert!(
            accepted(&verdict) || refused(&verdict),
            "{extra}: {verdict:?}"
        );
        // Not a speed test: a guard against expanding a rule forever.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{extra} took too long"
        );
    }
}
