//! imipd's CalDAV front between clients and a real Radicale.
//!
//! What a client behind the front sees: the server announces scheduling
//! (`calendar-auto-schedule`), so it leaves the mailing to imipd; the announcement is
//! gone the moment imipd stops; and a save on a version imipd has since changed only
//! to record answers or delivery status is not a conflict, while a save over another
//! client's edit still is.

use std::path::{Path, PathBuf};

#[path = "support/mod.rs"]
mod support;
use support::radicale::{edit, http, put_on, HttpAnswer, Radicale};
use support::Site;

/// Radicale, and a site whose imipd runs on its folder with the front on `front`.
struct FrontSite {
    radicale: Radicale,
    site: Site,
    front: u16,
}

support::deref_to!(FrontSite => Site, site);

impl FrontSite {
    fn new(name: &str) -> FrontSite {
        let radicale = Radicale::with_calendars(&format!("front-{name}"), &["alice", "bob"]);
        let site = Site::new(&format!("front-{name}"), &[]);
        let front = support::free_port();
        site.write_config(&radicale.imipd_config(
            &["alice", "bob"],
            &format!(
                "[caldav]\nlisten = \"127.0.0.1:{front}\"\nupstream = \"http://127.0.0.1:{}\"\n",
                radicale.port
            ),
        ));
        FrontSite {
            radicale,
            site,
            front,
        }
    }

    /// Alice saves `body` through the front on `etag`, a version imipd has changed since
    /// only to record deliveries and answers: the save passes, and her copy ends with
    /// her title and Bob's answer `partstat` (`what`). The save's answer.
    fn save_behind_bookkeeping(
        &self,
        etag: &str,
        body: &str,
        what: &str,
        partstat: &str,
    ) -> HttpAnswer {
        let path = "/alice/calendar/front-1.ics";
        let saved = put_on(self.front, "alice", path, etag, body);
        assert!(
            matches!(saved.status, 201 | 204),
            "a save behind imipd's bookkeeping passes ({what}): {saved:?}\n{}",
            self.log()
        );
        let summary = body
            .lines()
            .find(|l| l.starts_with("SUMMARY:"))
            .expect("a title")
            .to_string();
        let file = self.object("alice", "front-1.ics");
        self.eventually(what, || {
            let text = read(&file);
            text.contains(&summary) && bob_answered(&text, partstat)
        });
        saved
    }

    fn object(&self, user: &str, name: &str) -> PathBuf {
        self.radicale.collection(user, "calendar").join(name)
    }

    /// The files in `user`'s calendar.
    fn objects(&self, user: &str) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(self.object(user, ""))
            .map(|e| e.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        out.retain(|p| p.extension().is_some_and(|e| e == "ics"));
        out
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .replace("\r\n ", "")
}

/// Whether Bob's answer in `text` (unfolded) is `partstat`.
fn bob_answered(text: &str, partstat: &str) -> bool {
    let answer = format!("PARTSTAT={partstat}");
    text.lines()
        .any(|l| l.contains("bob@example.com") && l.contains(&answer))
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

/// Alice's edit of the title, on the text she has (her answers as they were).
fn listing_free_edit(text: &str, summary: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("SUMMARY:") {
                format!("SUMMARY:{summary}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Alice's client lists `path` (PROPFIND, Depth 1) asking for `props` (empty: all).
fn list(port: u16, path: &str, props: &str) -> HttpAnswer {
    http(port, "PROPFIND", "alice", path, &[("Depth", "1")], props)
}

fn dav(port: u16) -> String {
    http(port, "OPTIONS", "alice", "/alice/calendar/", &[], "")
        .header("dav")
        .unwrap_or_default()
}

#[test]
fn clients_are_told_imipd_schedules_only_while_it_runs() {
    let site = FrontSite::new("announce");
    assert!(
        !dav(site.radicale.port).contains("calendar-auto-schedule"),
        "Radicale alone announces no scheduling: {}",
        dav(site.radicale.port)
    );
    let daemon = site.start();
    let announced = dav(site.front);
    assert!(
        announced.contains("calendar-access") && announced.contains("calendar-auto-schedule"),
        "through the front: {announced}"
    );
    // Everything else passes through: a PROPFIND gets Radicale's multistatus.
    let listing = list(site.front, "/alice/", "");
    assert_eq!(listing.status, 207, "{listing:?}");
    assert!(
        listing.body.contains("/alice/calendar/"),
        "{}",
        listing.body
    );
    daemon.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", site.front)).is_err(),
        "with imipd stopped, nothing answers on the front"
    );
}

#[test]
fn a_save_behind_imipds_bookkeeping_is_no_conflict_but_a_save_behind_another_client_is() {
    let site = FrontSite::new("stale");
    let daemon = site.start();
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
    let answered = put_on(site.front, "bob", &bob_path, &bob_etag, &accepted);
    assert!(matches!(answered.status, 201 | 204), "{answered:?}");
    site.eventually("Bob's answer in Alice's copy", || {
        bob_answered(&read(&alice_file), "ACCEPTED")
    });

    // Alice edits on the version she saved: imipd changed it since, but only to record
    // delivery and Bob's answer. Without the front this is Radicale's 412.
    let direct = put_on(
        site.radicale.port,
        "alice",
        path,
        &first_etag,
        &meeting("Planning (room 2)"),
    );
    assert_eq!(direct.status, 412, "Radicale alone refuses the stale save");
    // Her edit is kept, and imipd puts Bob's answer back.
    let edited = site.save_behind_bookkeeping(
        &first_etag,
        &meeting("Planning (room 2)"),
        "Alice's edit with Bob's answer",
        "ACCEPTED",
    );
    let after_edit = edited.header("etag").expect("etag of the edit");

    // Clients mostly know ETags from a sync, not from their own save: Alice's client
    // lists the calendar, then Bob changes his answer (imipd records it again), then
    // Alice saves on the version she synced.
    let listing = list(
        site.front,
        "/alice/calendar/",
        "<?xml version=\"1.0\"?><propfind xmlns=\"DAV:\"><prop><getetag/></prop></propfind>",
    );
    let synced = support::radicale::listed_etag(&listing.body, path).expect("listed etag");
    edit(
        site.front,
        "bob",
        &bob_path,
        "PARTSTAT=ACCEPTED",
        "PARTSTAT=TENTATIVE",
    );
    site.eventually("Bob's new answer in Alice's copy", || {
        bob_answered(&read(&alice_file), "TENTATIVE")
    });
    site.save_behind_bookkeeping(
        &synced,
        &listing_free_edit(&read(&alice_file), "Planning (room 2b)"),
        "the synced edit with Bob's latest answer",
        "TENTATIVE",
    );

    // A second client of Alice's changes the event; the first one, still on the
    // version of its own save, must be told: that is a real conflict.
    edit(
        site.front,
        "alice",
        path,
        "SUMMARY:Planning (room 2b)",
        "SUMMARY:Planning (moved by phone)",
    );
    let stale = put_on(
        site.front,
        "alice",
        path,
        &after_edit,
        &meeting("Planning (room 3)"),
    );
    assert_eq!(
        stale.status, 412,
        "a save over another client's edit keeps its conflict"
    );
    site.eventually("the phone's edit kept", || {
        read(&alice_file).contains("SUMMARY:Planning (moved by phone)")
    });
    daemon.stop();
}
