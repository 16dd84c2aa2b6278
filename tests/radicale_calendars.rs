//! Invitations land in whatever calendar the user has, on a real Radicale whose
//! calendars were made as its web UI makes them (MKCOL, UUID names), with two calendars
//! per user; `serve` and `status` say so when a user has nowhere to receive.

use std::path::PathBuf;
use std::time::Duration;

#[path = "support/mod.rs"]
mod support;
use support::radicale::{edit, http, Radicale};
use support::Site;

/// Bob's calendars: made in this order, and named so that name order and creation order
/// disagree.
const BOB_FIRST: &str = "f3a1c9e2-7b4d-4e0a-9c1f-2d8e6b5a4c31";
const BOB_SECOND: &str = "0b7e2d4f-1a3c-4f6e-8d9b-5c2a1e7f3b60";
const ALICE_CAL: &str = "5d0c8a7e-3f2b-4a19-b6e4-9a1d7c3e2f08";

/// The MKCOL body of Radicale's web UI (`create_edit_collection`) for a calendar
/// that takes events, journals and tasks.
fn web_ui_calendar(name: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><mkcol xmlns=\"DAV:\" \
         xmlns:C=\"urn:ietf:params:xml:ns:caldav\" xmlns:CS=\"http://calendarserver.org/ns/\" \
         xmlns:ICAL=\"http://apple.com/ns/ical/\"><set><prop><resourcetype><collection />\
         <C:calendar /></resourcetype><C:supported-calendar-component-set><C:comp name=\"VEVENT\" />\
         <C:comp name=\"VJOURNAL\" /><C:comp name=\"VTODO\" /></C:supported-calendar-component-set>\
         <displayname>{name}</displayname><ICAL:calendar-color>#a0a0a0ff</ICAL:calendar-color>\
         </prop></set></mkcol>"
    )
}

fn mkcol(radicale: &Radicale, user: &str, uuid: &str) {
    let made = http(
        radicale.port,
        "MKCOL",
        user,
        &format!("/{user}/{uuid}/"),
        &[],
        &web_ui_calendar(uuid),
    );
    assert_eq!(made.status, 201, "MKCOL /{user}/{uuid}/: {made:?}");
    // Birth times of folders made within one clock tick can tie.
    std::thread::sleep(Duration::from_millis(30));
}

/// Radicale with web-UI calendars, and a site whose imipd runs on its folder.
struct UuidSite {
    radicale: Radicale,
    site: Site,
}

support::deref_to!(UuidSite => Site, site);

impl UuidSite {
    fn new() -> UuidSite {
        let radicale = Radicale::start("uuid-calendars");
        mkcol(&radicale, "alice", ALICE_CAL);
        mkcol(&radicale, "bob", BOB_FIRST);
        mkcol(&radicale, "bob", BOB_SECOND);
        let site = Site::new("uuid-calendars", &[]);
        // No `invitations` key: the calendars are found in the store. Dave is
        // configured but has never logged in to Radicale: no folder.
        site.write_config(&radicale.imipd_config(&["alice", "bob", "dave"], ""));
        UuidSite { radicale, site }
    }

    fn calendar(&self, user: &str, name: &str) -> PathBuf {
        self.radicale.collection(user, name)
    }

    /// The texts of the objects in a calendar folder.
    fn objects(&self, user: &str, name: &str) -> Vec<String> {
        std::fs::read_dir(self.calendar(user, name))
            .map(|e| {
                e.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "ics"))
                    .filter_map(|p| std::fs::read_to_string(p).ok())
                    .map(|t| t.replace("\r\n ", ""))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether an object in a calendar folder contains `text`.
    fn holds(&self, user: &str, name: &str, text: &str) -> bool {
        self.objects(user, name).iter().any(|t| t.contains(text))
    }
}

fn meeting(start: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test client//EN\r\nBEGIN:VEVENT\r\n\
         UID:uuid-cal-1\r\nDTSTAMP:20300101T090000Z\r\nDTSTART:{start}\r\nDURATION:PT1H\r\n\
         SUMMARY:Roadmap\r\nORGANIZER;CN=Alice:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
         ATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\n\
         ATTENDEE;RSVP=TRUE:mailto:carol@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

#[test]
fn invitations_land_in_uuid_named_calendars_and_updates_follow_the_copy() {
    let site = UuidSite::new();
    // Which of Bob's two calendars is "the first he made": by birth time where the
    // file system records it, by name otherwise (the documented rule).
    let birth_times = std::fs::metadata(site.calendar("bob", BOB_FIRST))
        .and_then(|m| m.created())
        .is_ok();
    let (bobs, other) = if birth_times {
        (BOB_FIRST, BOB_SECOND)
    } else {
        (BOB_SECOND, BOB_FIRST)
    };
    let check = site.imipd(&["check-config"]);
    let said = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(
        said.contains("dave") && said.contains("nowhere to land"),
        "check-config names the user with nowhere to receive: {said}"
    );
    let daemon = site.start();
    // serve says at start what check-config says.
    assert!(
        site.log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("dave") && l.contains("nowhere to land")),
        "{}",
        site.log()
    );
    let status = site.imipd(&["status"]);
    let status_text = String::from_utf8_lossy(&status.stdout).to_string();
    assert_eq!(status.status.code(), Some(1), "degraded: {status_text}");
    assert!(status_text.contains("dave"), "{status_text}");

    let path = format!("/alice/{ALICE_CAL}/roadmap.ics");
    let created = http(
        site.radicale.port,
        "PUT",
        "alice",
        &path,
        &[],
        &meeting("20300610T100000Z"),
    );
    assert_eq!(created.status, 201, "{created:?}");
    site.eventually("Bob's invitation in his first calendar", || {
        site.holds("bob", bobs, "UID:uuid-cal-1")
    });
    assert!(site.objects("bob", other).is_empty());
    site.eventually("Alice's copy records the local delivery", || {
        site.objects("alice", ALICE_CAL).iter().any(|t| {
            t.lines()
                .any(|l| l.contains("bob@example.com") && l.contains("SCHEDULE-STATUS=1.2"))
        })
    });
    site.eventually("Carol's invitation by mail", || {
        site.files("outbox").len() == 1
    });

    // Bob makes a calendar named "calendar": new invitations would now go there, but
    // the update of this event follows his copy.
    let made = http(
        site.radicale.port,
        "MKCALENDAR",
        "bob",
        "/bob/calendar/",
        &[],
        "",
    );
    assert_eq!(made.status, 201, "{made:?}");
    edit(
        site.radicale.port,
        "alice",
        &path,
        "DTSTART:20300610T100000Z",
        "DTSTART:20300611T140000Z",
    );
    site.eventually("Bob's copy moved where it is", || {
        site.holds("bob", bobs, "DTSTART:20300611T140000Z")
    });
    assert!(
        site.objects("bob", "calendar").is_empty(),
        "the update went to the copy, not to the new default"
    );

    // Alice deletes it: the cancellation reaches Bob's copy, where it is.
    let deleted = http(site.radicale.port, "DELETE", "alice", &path, &[], "");
    assert!(matches!(deleted.status, 200 | 204), "{deleted:?}");
    site.eventually("the cancellation in Bob's copy", || {
        site.holds("bob", bobs, "STATUS:CANCELLED")
    });
    assert!(
        !site.log().contains("\"ERROR\""),
        "no delivery failed: {}",
        site.log()
    );
    daemon.stop();
}
