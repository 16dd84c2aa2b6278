//! imipd's CalDAV front between clients and a real Radicale.
//!
//! What a client behind the front sees: the server announces scheduling
//! (`calendar-auto-schedule`), so it leaves the mailing to imipd; the announcement is
//! gone the moment imipd stops; and a save on a version imipd has since changed only
//! to record answers or delivery status is not a conflict, while a save over another
//! client's edit still is.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;
use support::radicale::{http, Radicale};

/// Radicale, imipd on its folder with the front, and the outbox.
struct Site {
    radicale: Radicale,
    dir: PathBuf,
    front: u16,
}

impl Site {
    fn new(name: &str) -> Site {
        let radicale = Radicale::start(&format!("front-{name}"));
        radicale.mkcalendar("alice");
        radicale.mkcalendar("bob");
        let dir = radicale.dir.join("imipd");
        std::fs::create_dir_all(&dir).expect("imipd folder");
        let front = support::ports::free_port();
        std::fs::write(
            dir.join("imipd.toml"),
            format!(
                "state = \"state/imipd.redb\"\n[control]\nsocket = \"control.sock\"\n\
                 [store]\nlayout = \"radicale\"\nroot = \"{}\"\ndebounce_ms = 50\n\
                 [[user]]\nname = \"alice\"\naddresses = [\"alice@example.com\"]\n\
                 [[user]]\nname = \"bob\"\naddresses = [\"bob@example.com\"]\n\
                 [mail]\ndomain = \"example.com\"\n[queue]\noutbox = \"outbox\"\n\
                 [caldav]\nlisten = \"127.0.0.1:{front}\"\nupstream = \"http://127.0.0.1:{}\"\n",
                radicale.dir.join("collections").display(),
                radicale.port
            ),
        )
        .expect("configuration");
        Site {
            radicale,
            dir,
            front,
        }
    }

    fn serve(&self) -> Child {
        let child = Command::new(env!("CARGO_BIN_EXE_imipd"))
            .args(["serve", "--config"])
            .arg(self.dir.join("imipd.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("serve.log")).expect("log file"))
            .spawn()
            .expect("imipd binary");
        self.eventually("the front listens", || {
            std::net::TcpStream::connect(("127.0.0.1", self.front)).is_ok()
        });
        child
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    fn object(&self, user: &str, name: &str) -> PathBuf {
        self.radicale
            .dir
            .join("collections/collection-root")
            .join(user)
            .join("calendar")
            .join(name)
    }

    /// The files in `user`'s calendar.
    fn objects(&self, user: &str) -> Vec<PathBuf> {
        let folder = self.object(user, "");
        let mut out: Vec<PathBuf> = std::fs::read_dir(folder)
            .map(|e| e.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        out.retain(|p| p.extension().is_some_and(|e| e == "ics"));
        out
    }

    /// Waits (bounded) until `check` holds; the bound is a deadlock guard.
    fn eventually(&self, what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check() {
            assert!(
                Instant::now() < deadline,
                "{what} did not happen; daemon log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("imipd did not stop within 20 s of SIGTERM");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .replace("\r\n ", "")
}

fn meeting(summary: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test client//EN\r\nBEGIN:VEVENT\r\n\
         UID:front-1\r\nDTSTAMP:20300101T090000Z\r\nDTSTART:20300610T103000Z\r\n\
         DTEND:20300610T113000Z\r\nSUMMARY:{summary}\r\n\
         ORGANIZER;CN=Alice:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
         ATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\n\
         ATTENDEE;RSVP=TRUE:mailto:carol@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

fn dav(port: u16) -> String {
    http(port, "OPTIONS", "alice", "/alice/calendar/", &[], "")
        .header("dav")
        .unwrap_or_default()
}

#[test]
fn clients_are_told_imipd_schedules_only_while_it_runs() {
    let site = Site::new("announce");
    assert!(
        !dav(site.radicale.port).contains("calendar-auto-schedule"),
        "Radicale alone announces no scheduling: {}",
        dav(site.radicale.port)
    );
    let daemon = site.serve();
    let announced = dav(site.front);
    assert!(
        announced.contains("calendar-access") && announced.contains("calendar-auto-schedule"),
        "through the front: {announced}"
    );
    // Everything else passes through: a PROPFIND gets Radicale's multistatus.
    let listing = http(
        site.front,
        "PROPFIND",
        "alice",
        "/alice/",
        &[("Depth", "1")],
        "",
    );
    assert_eq!(listing.status, 207, "{listing:?}");
    assert!(
        listing.body.contains("/alice/calendar/"),
        "{}",
        listing.body
    );
    stop(daemon);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", site.front)).is_err(),
        "with imipd stopped, nothing answers on the front"
    );
}

#[test]
fn a_save_behind_imipds_bookkeeping_is_no_conflict_but_a_save_behind_another_client_is() {
    let site = Site::new("stale");
    let daemon = site.serve();
    let path = "/alice/calendar/front-1.ics";
    let created = http(
        site.front,
        "PUT",
        "alice",
        path,
        &[("If-None-Match", "*")],
        &meeting("Planning"),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let first_etag = created.header("etag").expect("Radicale gives an ETag");
    let alice_file = site.object("alice", "front-1.ics");
    // imipd schedules: Bob's copy arrives, Alice's copy records the deliveries.
    site.eventually("Bob's copy and Alice's delivery status", || {
        site.objects("bob").len() == 1 && read(&alice_file).contains("SCHEDULE-STATUS")
    });
    // Bob accepts in his client, through the front; imipd records it in Alice's copy.
    let bob_path = format!(
        "/bob/calendar/{}",
        site.objects("bob")[0]
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
    );
    let bob_copy = http(site.front, "GET", "bob", &bob_path, &[], "");
    let bob_etag = bob_copy.header("etag").expect("etag");
    let accepted = bob_copy
        .body
        .replace("\r\n ", "")
        .lines()
        .map(|l| {
            if l.starts_with("ATTENDEE") && l.contains("bob@example.com") {
                l.replace("PARTSTAT=NEEDS-ACTION", "PARTSTAT=ACCEPTED")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    let answered = http(
        site.front,
        "PUT",
        "bob",
        &bob_path,
        &[("If-Match", &bob_etag)],
        &accepted,
    );
    assert!(matches!(answered.status, 201 | 204), "{answered:?}");
    site.eventually("Bob's answer in Alice's copy", || {
        read(&alice_file)
            .lines()
            .any(|l| l.contains("bob@example.com") && l.contains("PARTSTAT=ACCEPTED"))
    });

    // Alice edits on the version she saved: imipd changed it since, but only to record
    // delivery and Bob's answer. Without the front this is Radicale's 412.
    let direct = http(
        site.radicale.port,
        "PUT",
        "alice",
        path,
        &[("If-Match", &first_etag)],
        &meeting("Planning (room 2)"),
    );
    assert_eq!(direct.status, 412, "Radicale alone refuses the stale save");
    let edited = http(
        site.front,
        "PUT",
        "alice",
        path,
        &[("If-Match", &first_etag)],
        &meeting("Planning (room 2)"),
    );
    assert!(
        matches!(edited.status, 201 | 204),
        "the save behind imipd's bookkeeping passes: {edited:?}\n{}",
        site.log()
    );
    // Her edit is kept, and imipd puts Bob's answer back.
    site.eventually("Alice's edit with Bob's answer", || {
        let text = read(&alice_file);
        text.contains("SUMMARY:Planning (room 2)")
            && text
                .lines()
                .any(|l| l.contains("bob@example.com") && l.contains("PARTSTAT=ACCEPTED"))
    });
    let after_edit = edited.header("etag").expect("etag of the edit");

    // A second client of Alice's changes the event; the first one, still on the
    // version of its own save, must be told: that is a real conflict.
    let current = http(site.front, "GET", "alice", path, &[], "");
    let other = http(
        site.front,
        "PUT",
        "alice",
        path,
        &[("If-Match", &current.header("etag").expect("etag"))],
        &current.body.replace(
            "SUMMARY:Planning (room 2)",
            "SUMMARY:Planning (moved by phone)",
        ),
    );
    assert!(matches!(other.status, 201 | 204), "{other:?}");
    let stale = http(
        site.front,
        "PUT",
        "alice",
        path,
        &[("If-Match", &after_edit)],
        &meeting("Planning (room 3)"),
    );
    assert_eq!(
        stale.status, 412,
        "a save over another client's edit keeps its conflict"
    );
    site.eventually("the phone's edit kept", || {
        read(&alice_file).contains("SUMMARY:Planning (moved by phone)")
    });
    stop(daemon);
}
