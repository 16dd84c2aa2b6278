//! The calendar store against a real Radicale server.
//!
//! Each test starts Radicale (pip `radicale`, as `scripts/test` installs it) on a free
//! loopback port with its own storage folder, talks CalDAV to it over HTTP like a client
//! would, and runs imipd's store processing on the same folder.

use calcard::icalendar::ICalendar;
use imipd::config::Layout;
use imipd::itip::CalAddress;
use imipd::store::layout::Store;
use imipd::store::scan::scan_all;
use imipd::store::state::{Route, State};
use std::path::PathBuf;

#[path = "support/mod.rs"]
mod support;
use support::fixture::{self, user};
use support::radicale::{attendee_line, Radicale};
use support::TempDir;

const NOW: i64 = 1_900_000_000; // 2030-03-17

/// imipd's view of a Radicale test server.
trait RadicaleStore {
    fn store(&self) -> Store;
    fn state_path(&self) -> PathBuf;
}

impl RadicaleStore for Radicale {
    fn store(&self) -> Store {
        fixture::store(
            &self.dir.join("collections"),
            Layout::Radicale,
            vec![user("alice"), user("bob")],
        )
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.redb")
    }
}

fn address(text: &str) -> CalAddress {
    CalAddress::parse(text).expect("address")
}

const INVITATION: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test client//EN\r\nBEGIN:VEVENT\r\n\
UID:lunch-1\r\nDTSTAMP:20300101T090000Z\r\nDTSTART:20300410T120000Z\r\nDTEND:20300410T130000Z\r\n\
SUMMARY:Lunch\r\nURL:https://example.com/menu?a=1,2\r\nORGANIZER;CN=Alice:mailto:alice@example.com\r\n\
ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\nATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\n\
ATTENDEE;RSVP=TRUE;CN=Carol:mailto:carol@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

/// Carol's REPLY with `partstat`, applied to Alice's copy as incoming mail is.
fn carol_answers(store: &Store, state: &State, partstat: &str) {
    fixture::applier(store, state)
        .apply(
            &user("alice"),
            &reply(partstat),
            &address("carol@example.net"),
            NOW,
            false,
            None,
        )
        .expect("reply applied");
}

fn reply(partstat: &str) -> ICalendar {
    let text = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Carol//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n\
         UID:lunch-1\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:1\r\nORGANIZER:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT={partstat}:mailto:carol@example.net\r\nREQUEST-STATUS:2.0;Success\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    );
    ICalendar::parse(&text).expect("reply parses")
}

#[test]
fn an_event_put_over_caldav_is_scheduled_and_a_reply_comes_back_through_the_store() {
    let radicale = Radicale::with_calendars("flow", &["alice", "bob"]);
    let store = radicale.store();
    let state = State::open(&radicale.state_path()).expect("state");
    let processor = fixture::processor(&store, &state);
    let first = scan_all(&processor, NOW, false).expect("baseline scan");
    assert_eq!((first.users, first.objects, first.queued), (2, 0, 0));

    // Alice's client PUTs an invitation.
    let (status, _, body) =
        radicale.request("PUT", "alice", "/alice/calendar/lunch.ics", INVITATION);
    assert_eq!(status, 201, "{body}");
    let report = scan_all(&processor, NOW, false).expect("scan");
    assert_eq!(report.queued, 2, "{report:?}");
    let queue = state.queue().expect("queue");
    let routes: Vec<(&str, &Route)> = queue.iter().map(|q| (q.rcpt.as_str(), &q.route)).collect();
    assert_eq!(
        routes,
        vec![
            ("bob@example.com", &Route::Local { user: "bob".into() }),
            ("carol@example.net", &Route::Mail)
        ]
    );
    assert!(queue
        .iter()
        .all(|q| q.method == "REQUEST" && q.itip.contains("SEQUENCE:1")));

    // The organizer's copy got SEQUENCE:1, and Radicale serves it without a restart.
    let (status, etag_before, body) =
        radicale.request("GET", "alice", "/alice/calendar/lunch.ics", "");
    assert_eq!(status, 200);
    assert!(body.contains("SEQUENCE:1"), "{body}");
    assert!(
        body.contains("URL:https://example.com/menu?a=1,2"),
        "the user's URL keeps its bytes: {body}"
    );

    // Carol's REPLY arrives and lands in Alice's copy; the client sees a new ETag.
    carol_answers(&store, &state, "ACCEPTED");
    let (_, etag_after, body) = radicale.request("GET", "alice", "/alice/calendar/lunch.ics", "");
    assert_ne!(etag_before, etag_after, "the ETag changes");
    let carol = attendee_line(&body, "carol@example.net");
    assert!(
        carol.contains("PARTSTAT=ACCEPTED") && carol.contains("SCHEDULE-STATUS=2.0"),
        "{body}"
    );

    // Applying the reply is not a change of Alice's: nothing is sent for it.
    let report = scan_all(&processor, NOW, false).expect("scan");
    assert_eq!(report.queued, 0, "{report:?}");

    // Restarting imipd finds nothing new to do.
    drop(state);
    let state = State::open(&radicale.state_path()).expect("reopen");
    let processor = fixture::processor(&store, &state);
    let report = scan_all(&processor, NOW, false).expect("scan after restart");
    assert_eq!((report.processed, report.queued), (0, 0), "{report:?}");
}

#[test]
fn a_client_edit_that_races_an_incoming_reply_is_not_lost() {
    let radicale = Radicale::with_calendars("race", &["alice"]);
    let store = radicale.store();
    let state = State::open(&radicale.state_path()).expect("state");
    let processor = fixture::processor(&store, &state);
    scan_all(&processor, NOW, false).expect("baseline");
    radicale.request("PUT", "alice", "/alice/calendar/lunch.ics", INVITATION);
    scan_all(&processor, NOW, false).expect("invitation processed");
    let queued_before = state.queue().expect("queue").len();

    // The client moves the lunch to another room; imipd has not looked yet...
    let (_, _, current) = radicale.request("GET", "alice", "/alice/calendar/lunch.ics", "");
    let edited = current.replace("SUMMARY:Lunch", "SUMMARY:Lunch\r\nLOCATION:Room 7");
    let (status, _, body) = radicale.request("PUT", "alice", "/alice/calendar/lunch.ics", &edited);
    assert!(status == 201 || status == 204, "{status} {body}");

    // ...when Carol's answer arrives.
    carol_answers(&store, &state, "TENTATIVE");
    let (_, _, body) = radicale.request("GET", "alice", "/alice/calendar/lunch.ics", "");
    assert!(
        body.contains("LOCATION:Room 7"),
        "the client's edit survives: {body}"
    );
    assert!(
        attendee_line(&body, "carol@example.net").contains("PARTSTAT=TENTATIVE"),
        "{body}"
    );

    // The edit is still pending, and is sent as an update with the new room.
    let report = scan_all(&processor, NOW, false).expect("scan");
    let queue = state.queue().expect("queue");
    let new: Vec<_> = queue[queued_before..].iter().collect();
    assert_eq!(report.queued, 2, "{report:?}");
    assert!(
        new.iter()
            .all(|q| q.method == "REQUEST" && q.itip.contains("LOCATION:Room 7")),
        "{new:?}"
    );
    assert!(
        new.iter().all(|q| q.itip.contains("SEQUENCE:2")),
        "a new location is a new version"
    );
}

#[test]
fn a_baseline_of_ten_thousand_objects_sends_nothing() {
    let temp = TempDir::new("baseline");
    let dir = temp.path();
    let calendar = dir.join("collections/collection-root/alice/calendar");
    std::fs::create_dir_all(&calendar).expect("dirs");
    for i in 0..10_000 {
        let text = INVITATION.replace("lunch-1", &format!("ev-{i}"));
        std::fs::write(calendar.join(format!("ev-{i}.ics")), text).expect("write");
    }
    let store = fixture::store(
        &dir.join("collections"),
        Layout::Radicale,
        vec![user("alice")],
    );
    let state = State::open(&dir.join("state.redb")).expect("state");
    let processor = fixture::processor(&store, &state);
    let report = scan_all(&processor, NOW, false).expect("baseline");
    assert_eq!(
        (report.objects, report.baselined, report.queued),
        (10_000, 10_000, 0)
    );
    assert!(state.queue().expect("queue").is_empty());
    assert!(state.find_uid("alice", "ev-9999").expect("index").is_some());
    // A later edit of one of them is a normal change.
    let one = calendar.join("ev-42.ics");
    let text = std::fs::read_to_string(&one)
        .expect("read")
        .replace("SUMMARY:Lunch", "SUMMARY:Long lunch");
    std::fs::write(&one, text).expect("edit");
    let report = scan_all(&processor, NOW, false).expect("scan");
    assert_eq!(report.queued, 2, "{report:?}");
    drop(state);
}
