//! RSVP links, end to end: the real `imipd serve` binary with `[web]` on loopback, an
//! invitation in the outbox, and plain HTTP requests against the links it carries.
//!
//! What an organizer and an invited outsider check: a link scanner that fetches every
//! link changes nothing; the form's POST puts the answer (and comment) into the
//! organizer's copy; pressing again changes nothing; altered, expired, removed and
//! cancelled links each get their own page; a hostile SUMMARY stays text.

#[path = "support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::site::{write_event, Daemon};
use support::Site;

/// Alice's site (store, configuration, outbox) with the RSVP page on `port`.
struct Web {
    site: Site,
    port: u16,
}

support::deref_to!(Web => Site, site);

impl Web {
    fn new(name: &str) -> Web {
        let label = format!("rsvp-{name}");
        let (site, port) = Site::with_port(&label, &["alice"], "debounce_ms = 50\n", |port| {
            format!(
                "[queue]\noutbox = \"outbox\"\n\
                 [web]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n"
            )
        });
        Web { site, port }
    }

    fn outbox(&self) -> Vec<PathBuf> {
        self.files("outbox")
    }

    fn calendar(&self) -> PathBuf {
        self.site.calendar("alice")
    }

    /// Starts the daemon and waits until it runs.
    ///
    /// READY comes before the file watcher is set up, so a file saved at once could be
    /// missed until the next rescan: a warm-up file is saved until the daemon saw it.
    fn start(&self) -> Daemon {
        let daemon = self.site.start();
        let deadline = Instant::now() + Duration::from_secs(30);
        for round in 0.. {
            let note = format!(
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\n\
                 UID:warmup\r\nDTSTAMP:20300101T090000Z\r\nDTSTART:20300101T090000Z\r\n\
                 SUMMARY:warm-up {round}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
            );
            write_event(&self.calendar(), "warmup.ics", &note);
            std::thread::sleep(Duration::from_millis(150));
            if self.log().contains("warmup") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the watcher never saw a change:\n{}",
                self.log()
            );
        }
        daemon
    }

    /// Writes `text` as `name` into alice's calendar and waits for the `n`th email.
    fn save_and_wait(&self, name: &str, text: &str, emails: usize) {
        write_event(&self.calendar(), name, text);
        self.eventually("the email", || self.outbox().len() >= emails);
    }

    /// Alice's site running, with her meeting `uid` (`summary`, at [`LATER`]) saved as
    /// `name` and its two emails sent (to Carol, asked to answer, and to Dave).
    fn inviting(label: &str, name: &str, uid: &str, summary: &str) -> (Web, Daemon) {
        let site = Web::new(label);
        let daemon = site.start();
        site.save_and_wait(name, &event(uid, summary, LATER, ""), 2);
        (site, daemon)
    }

    /// The path of the `answer` link in Carol's invitation to `uid`.
    fn carols_link(&self, uid: &str, answer: &str) -> String {
        path_of(&link(&self.email_to("carol@example.net", uid), answer))
    }

    /// Writes `text` as `name` into alice's calendar and waits for `more` new emails.
    fn save_and_wait_more(&self, name: &str, text: &str, more: usize) {
        let sent = self.outbox().len();
        self.save_and_wait(name, text, sent + more);
    }

    /// One request to the RSVP page, which must answer `status`: the page.
    fn answers(&self, method: &str, path: &str, body: &str, status: u16) -> String {
        let (got, _, page) = http(self.port, method, path, body);
        assert_eq!(got, status, "{page}");
        page
    }

    /// The invitation (REQUEST) for `uid` to `rcpt`.
    fn email_to(&self, rcpt: &str, uid: &str) -> Vec<u8> {
        self.outbox()
            .iter()
            .map(|p| std::fs::read(p).expect("eml"))
            .filter(|bytes| {
                let text = String::from_utf8_lossy(bytes);
                text.contains(&format!("UID:{uid}\r\n")) && text.contains("METHOD:REQUEST")
            })
            .find(|bytes| {
                mail_parser::MessageParser::default()
                    .parse(bytes)
                    .and_then(|m| {
                        m.to()
                            .and_then(|a| a.first())
                            .and_then(|a| a.address())
                            .map(|a| a == rcpt)
                    })
                    .unwrap_or(false)
            })
            .unwrap_or_else(|| panic!("no email to {rcpt}"))
    }
}

fn event(uid: &str, summary: &str, times: &str, extra: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
         DTSTAMP:20300101T090000Z\r\n{times}SUMMARY:{summary}\r\nLOCATION:Room 4\r\n{extra}\
         ORGANIZER;CN=Alice:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
         ATTENDEE;RSVP=TRUE;CN=Carol:mailto:carol@example.net\r\n\
         ATTENDEE:mailto:dave@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

const LATER: &str = "DTSTART:20300610T103000Z\r\nDTEND:20300610T113000Z\r\n";

/// The plain and HTML bodies of an email.
fn bodies(bytes: &[u8]) -> (String, String) {
    let mail = mail_parser::MessageParser::default()
        .parse(bytes)
        .expect("a parsable email");
    (
        mail.body_text(0)
            .map(|t| t.into_owned())
            .unwrap_or_default(),
        mail.body_html(0)
            .map(|t| t.into_owned())
            .unwrap_or_default(),
    )
}

/// The RSVP link of `answer` in the plain part.
fn link(bytes: &[u8], answer: &str) -> String {
    let (text, _) = bodies(bytes);
    text.split_whitespace()
        .find(|w| w.contains("/rsvp/") && w.ends_with(&format!("?answer={answer}")))
        .unwrap_or_else(|| panic!("no {answer} link in:\n{text}"))
        .to_string()
}

/// The path and query of a link (the test talks to the listener directly).
fn path_of(link: &str) -> String {
    let rest = link.split_once("://").map_or(link, |(_, r)| r);
    rest.find('/').map_or("/".into(), |i| rest[i..].to_string())
}

/// One HTTP/1.1 exchange: (status, headers, body).
fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("web listener");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// Carol's ATTENDEE line in `calendar` (unfolded).
fn carols_line(calendar: &str) -> &str {
    calendar
        .lines()
        .find(|l| l.contains("mailto:carol@example.net"))
        .expect("carol's line")
}

fn unfolded(path: &Path) -> String {
    std::fs::read_to_string(path)
        .expect("organizer's copy")
        .replace("\r\n ", "")
}

#[test]
fn a_link_scanner_changes_nothing_and_only_the_post_answers_once() {
    let (site, _daemon) = Web::inviting("scanner", "lunch.ics", "lunch-1", "Lunch");
    let invitation = site.email_to("carol@example.net", "lunch-1");
    let copy = site.calendar().join("lunch.ics");
    site.eventually("delivery status on the organizer's copy", || {
        unfolded(&copy).contains("SCHEDULE-STATUS=1.1")
    });
    let before = std::fs::read(&copy).expect("copy");

    // A scanner fetches all three links: pages, but no answer.
    for answer in ["accepted", "tentative", "declined"] {
        let (status, head, page) = http(site.port, "GET", &path_of(&link(&invitation, answer)), "");
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Lunch") && page.contains("Room 4"), "{page}");
        assert!(
            page.contains(&format!(r#"value="{answer}" id="answer-{answer}" checked"#)),
            "{page}"
        );
        assert!(
            head.contains("content-security-policy: default-src 'none'"),
            "{head}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read(&copy).expect("copy"),
        before,
        "a GET changed the copy"
    );

    // The form's POST answers, with the comment.
    let accept = path_of(&link(&invitation, "accepted"));
    site.answers(
        "POST",
        &accept,
        "answer=accepted&comment=See+you+there",
        200,
    );
    let after = unfolded(&copy);
    let carol = carols_line(&after);
    assert!(carol.contains("PARTSTAT=ACCEPTED"), "{after}");
    assert!(
        carol.contains("X-RESPONSE-COMMENT=\"See you there\""),
        "{after}"
    );
    assert!(
        site.log().contains(r#""via":"rsvp page""#),
        "{}",
        site.log()
    );

    // Pressing again changes nothing.
    let answered = std::fs::read(&copy).expect("copy");
    let page = site.answers(
        "POST",
        &accept,
        "answer=accepted&comment=See+you+there",
        200,
    );
    assert!(page.contains("nothing changed"), "{page}");
    assert_eq!(std::fs::read(&copy).expect("copy"), answered);
}

#[test]
fn invitations_carry_links_only_for_attendees_asked_to_answer() {
    let (site, _daemon) = Web::inviting("links", "lunch.ics", "lunch-2", "Lunch");
    let (text, html) = bodies(&site.email_to("carol@example.net", "lunch-2"));
    assert!(text.contains("Answer from any mail program:"), "{text}");
    assert!(
        html.contains(">Accept</a>") && html.contains(">Decline</a>"),
        "{html}"
    );
    assert!(html.contains("rsvp"), "{html}");
    let raw = String::from_utf8_lossy(&site.email_to("carol@example.net", "lunch-2")).to_string();
    let calendar_part = raw
        .split("BEGIN:VCALENDAR")
        .nth(1)
        .expect("a calendar part");
    assert!(!calendar_part.contains("/rsvp/"), "{calendar_part}");
    let (dave_text, dave_html) = bodies(&site.email_to("dave@example.net", "lunch-2"));
    assert!(!dave_text.contains("/rsvp/"), "{dave_text}");
    assert!(!dave_html.contains("rsvp"), "{dave_html}");
}

#[test]
fn altered_expired_removed_and_cancelled_links_each_get_their_own_page() {
    // Altered: one character of the signature changed.
    let (site, _daemon) = Web::inviting("refusals", "a.ics", "a", "Lunch");
    let good = site.carols_link("a", "accepted");
    let (path, query) = good.split_once('?').expect("query");
    // A character inside the signature: all six of its bits are data (the last one of
    // an unpadded base64 text carries padding bits, which a flip may leave unchanged).
    let at = path.len() - 5;
    let flipped = match path.as_bytes()[at] {
        b'A' => 'B',
        _ => 'A',
    };
    let altered = format!("{}{flipped}{}?{query}", &path[..at], &path[at + 1..]);
    let page = site.answers("GET", &altered, "", 403);
    assert!(page.contains("altered"), "{page}");
    site.answers("POST", &altered, "answer=accepted", 403);

    // No token at all.
    let page = site.answers("POST", "/rsvp", "answer=accepted", 400);
    assert!(page.contains("incomplete"), "{page}");

    // A POST without an answer changes nothing.
    site.answers("POST", path, "comment=hello", 400);
    assert!(!unfolded(&site.calendar().join("a.ics")).contains("hello"));

    // Removed: the organizer takes Carol off the event.
    let without_carol = event("a", "Lunch", LATER, "SEQUENCE:1\r\n").replace(
        "ATTENDEE;RSVP=TRUE;CN=Carol:mailto:carol@example.net\r\n",
        "",
    );
    site.save_and_wait_more("a.ics", &without_carol, 1);
    let page = site.answers("GET", &good, "", 403);
    assert!(page.contains("no longer on the guest list"), "{page}");
    site.answers("POST", &good, "answer=accepted", 403);
    assert!(!unfolded(&site.calendar().join("a.ics")).contains("carol"));

    // Cancelled: the organizer cancels the event.
    site.save_and_wait_more("b.ics", &event("b", "Dinner", LATER, ""), 2);
    let dinner = site.carols_link("b", "declined");
    let cancelled = event("b", "Dinner", LATER, "SEQUENCE:1\r\nSTATUS:CANCELLED\r\n");
    site.save_and_wait_more("b.ics", &cancelled, 1);
    let page = site.answers("GET", &dinner, "", 410);
    assert!(page.contains("cancelled"), "{page}");

    // Expired: a link lasts until the event ends.
    let end = chrono::Utc::now() + chrono::Duration::seconds(3);
    let start = end - chrono::Duration::minutes(30);
    let times = format!(
        "DTSTART:{}\r\nDTEND:{}\r\n",
        start.format("%Y%m%dT%H%M%SZ"),
        end.format("%Y%m%dT%H%M%SZ")
    );
    site.save_and_wait_more("c.ics", &event("c", "Coffee", &times, ""), 2);
    let coffee = site.carols_link("c", "accepted");
    while chrono::Utc::now() <= end + chrono::Duration::seconds(1) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = site.answers("GET", &coffee, "", 410);
    assert!(page.contains("expired"), "{page}");
}

/// A title that would run script and load an image if a page put it in as HTML.
const HOSTILE: &str = "<script>alert(1)</script><img src=x>";

#[test]
fn a_hostile_summary_is_text_and_floods_are_turned_away() {
    let (site, _daemon) = Web::inviting("hostile", "x.ics", "x", HOSTILE);
    let path = site.carols_link("x", "accepted");
    let page = site.answers("GET", &path, "", 200);
    assert!(
        !page.contains("<script>") && !page.contains("<img"),
        "{page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{page}"
    );

    // Oversized requests and floods are turned away, and change nothing.
    site.eventually("delivery status on the organizer's copy", || {
        unfolded(&site.calendar().join("x.ics")).contains("SCHEDULE-STATUS=1.1")
    });
    let before = std::fs::read(site.calendar().join("x.ics")).expect("copy");
    let huge = format!("answer=accepted&comment={}", "a".repeat(20_000));
    let (status, _, _) = http(site.port, "POST", &path, &huge);
    assert_eq!(status, 413);
    let statuses: Vec<u16> = (0..45)
        .map(|_| http(site.port, "GET", &path, "").0)
        .collect();
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let page = site.answers("POST", &path, "answer=accepted", 429);
    assert!(page.contains("Too many"), "{page}");
    assert_eq!(
        std::fs::read(site.calendar().join("x.ics")).expect("copy"),
        before
    );
}

/// Whether headless Chromium, its driver and Selenium are installed. With `CI=true`
/// a missing browser fails the test; elsewhere the test says loudly that it skipped.
fn browser_available() -> bool {
    let chromium = Path::new("/usr/bin/chromium").exists();
    let driver = Path::new("/usr/bin/chromedriver").exists();
    let selenium = Command::new("python3")
        .args(["-c", "import selenium"])
        .status()
        .is_ok_and(|s| s.success());
    if chromium && driver && selenium {
        return true;
    }
    let missing = format!(
        "chromium: {chromium}, chromium-driver: {driver}, selenium: {selenium} \
         (apt-get install chromium chromium-driver; pip install selenium; see scripts/test)"
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the browser test needs a browser in CI: {missing}"
    );
    eprintln!("SKIPPED: the RSVP browser test found no browser: {missing}");
    false
}

/// The href of the `label` button in the HTML part, entities decoded.
fn html_link(bytes: &[u8], label: &str) -> String {
    let (_, html) = bodies(bytes);
    let end = html
        .find(&format!(">{label}</a>"))
        .unwrap_or_else(|| panic!("no {label} button in:\n{html}"));
    let start = html[..end].rfind("href=\"").expect("an href") + "href=\"".len();
    let href = &html[start..];
    href[..href.find('"').expect("closing quote")]
        .replace("&#x2f;", "/")
        .replace("&#x3d;", "=")
        .replace("&#x3f;", "?")
        .replace("&amp;", "&")
}

#[test]
fn a_person_presses_accept_in_a_real_browser_and_the_organizer_sees_it() {
    if !browser_available() {
        return;
    }
    let (site, _daemon) = Web::inviting("browser", "lunch.ics", "lunch-b", "Team lunch");
    let invitation = site.email_to("carol@example.net", "lunch-b");
    let accept = html_link(&invitation, "Accept");
    assert!(accept.ends_with("?answer=accepted"), "{accept}");
    let copy = site.calendar().join("lunch.ics");
    let before = std::fs::read(&copy).expect("copy");

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rsvp-browser");
    std::fs::create_dir_all(&artifacts).expect("artifact folder");
    let (form_png, done_png) = (
        artifacts.join("rsvp-page.png"),
        artifacts.join("rsvp-done.png"),
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/rsvp_press.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(&accept)
        .arg(&form_png)
        .arg(&done_png)
        .arg("Looking forward to it")
        .output()
        .expect("python3");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser run failed: {said}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        site.log()
    );
    assert!(said.contains("Thank you"), "{said}");
    assert!(
        std::fs::metadata(&form_png).is_ok_and(|m| m.len() > 1000),
        "no screenshot at {}",
        form_png.display()
    );
    eprintln!("screenshots: {} {}", form_png.display(), done_png.display());

    let after = unfolded(&copy);
    assert_ne!(std::fs::read(&copy).expect("copy"), before);
    let carol = carols_line(&after);
    assert!(carol.contains("PARTSTAT=ACCEPTED"), "{after}");
    assert!(carol.contains("Looking forward to it"), "{after}");
}

#[test]
fn a_link_from_an_older_version_answers_the_current_one() {
    let (site, _daemon) = Web::inviting("sequence", "m.ics", "m", "Planning");
    let old_link = site.carols_link("m", "tentative");
    let moved = event(
        "m",
        "Planning (moved)",
        "DTSTART:20300611T140000Z\r\nDTEND:20300611T150000Z\r\n",
        "SEQUENCE:2\r\n",
    );
    site.save_and_wait_more("m.ics", &moved, 2);

    let page = site.answers("GET", &old_link, "", 200);
    assert!(page.contains("Planning (moved)"), "{page}");
    assert!(page.contains("11 Jun 2030 14:00"), "{page}");
    site.answers("POST", &old_link, "answer=tentative", 200);
    let after = unfolded(&site.calendar().join("m.ics"));
    assert!(after.contains("SUMMARY:Planning (moved)"), "{after}");
    let carol = carols_line(&after);
    assert!(carol.contains("PARTSTAT=TENTATIVE"), "{after}");
}
