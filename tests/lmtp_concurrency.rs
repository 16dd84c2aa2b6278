//! Concurrent incoming mail: deliveries to different users overlap (per-user locks
//! under a shared store lock, one group commit for several messages), and that must
//! never lose a change. Each case runs the daemon's own LMTP handler over a real store.

use imipd::daemon::serve::{queue_settings, start, MailHandler, Shared};
use imipd::smtp::{LmtpHandler, ReceivedMessage, RecipientOutcome};
use imipd::store::state::content_hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const ATTENDEES: usize = 12;

#[path = "support/mod.rs"]
mod support;
use support::site::{self, Site};

/// Alice and Bob each organize one meeting with the same outside attendees.
fn new_site(name: &str) -> Site {
    let site = Site::new(&format!("concurrency-{name}"), &["alice", "bob"]);
    for user in ["alice", "bob"] {
        std::fs::write(site.calendar(user).join("meeting.ics"), event(user)).expect("event");
    }
    site.write_config(&site::config(
        &["alice", "bob"],
        "",
        "[queue]\noutbox = \"outbox\"\n\
         [lmtp]\nlisten = \"127.0.0.1:0\"\nimport_policy = \"nobody\"\n\
         insecure_trust_from_header = true\n",
    ));
    site
}

/// `user`'s meeting as stored.
fn meeting(site: &Site, user: &str) -> String {
    std::fs::read_to_string(site.calendar(user).join("meeting.ics")).expect("organizer's file")
}

fn event(user: &str) -> String {
    let mut text = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\nUID:meeting-{user}\r\n\
         DTSTAMP:20300101T090000Z\r\nDTSTART:20300610T103000Z\r\nDTEND:20300610T113000Z\r\n\
         SUMMARY:Meeting\r\nORGANIZER:mailto:{user}@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:{user}@example.com\r\n"
    );
    for a in 0..ATTENDEES {
        text.push_str(&format!(
            "ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:a{a}@example.net\r\n"
        ));
    }
    text.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
    text
}

fn reply(organizer: &str, a: usize) -> ReceivedMessage {
    let data = format!(
        "From: a{a}@example.net\r\nTo: {organizer}@example.com\r\nSubject: Accepted\r\n\
         Message-ID: <r-{organizer}-{a}@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/calendar; method=REPLY; charset=utf-8\r\n\r\n\
         BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Client//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n\
         UID:meeting-{organizer}\r\nDTSTAMP:20300102T090000Z\r\nORGANIZER:mailto:{organizer}@example.com\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:a{a}@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    );
    ReceivedMessage {
        mail_from: format!("a{a}@example.net"),
        recipients: vec![format!("{organizer}@example.com")],
        data: data.into_bytes(),
        lhlo: "test".into(),
        peer: "127.0.0.1:1".into(),
        client: Default::default(),
    }
}

async fn daemon(site: &Site) -> (Arc<Shared>, Arc<MailHandler>) {
    let shared = start(&site.config()).await.expect("start");
    let settings = Arc::new(queue_settings(&shared.config()).expect("settings"));
    let handler = Arc::new(MailHandler::new(shared.clone(), settings));
    (shared, handler)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_replies_to_one_event_all_land_in_the_file_and_its_baseline() {
    let site = new_site("same-event");
    let (shared, handler) = daemon(&site).await;
    let mut tasks = tokio::task::JoinSet::new();
    for a in 0..ATTENDEES {
        for organizer in ["alice", "bob"] {
            let handler = handler.clone();
            tasks.spawn(async move { handler.deliver(reply(organizer, a)).await });
        }
    }
    while let Some(outcomes) = tasks.join_next().await {
        let outcomes = outcomes.expect("delivery task");
        assert!(
            matches!(outcomes.as_slice(), [RecipientOutcome::Accepted(text)] if text.contains("applied")),
            "{outcomes:?}"
        );
    }
    for user in ["alice", "bob"] {
        let file = meeting(&site, user).replace("\r\n ", "");
        for a in 0..ATTENDEES {
            assert!(
                file.lines().any(|l| l.contains("PARTSTAT=ACCEPTED")
                    && l.ends_with(&format!(":mailto:a{a}@example.net"))),
                "a{a}'s answer is missing from {user}'s file:\n{file}"
            );
        }
        // The file and its record changed together: the baseline is the file, and
        // imipd knows the file as its own write (nothing will be sent for it).
        let key = format!("{user}/calendar/meeting.ics");
        let record = shared.state.object(&key).expect("state").expect("record");
        let file = meeting(&site, user);
        assert_eq!(record.baseline.as_deref(), Some(file.as_str()));
        assert_eq!(
            record.written_hash.as_deref(),
            Some(content_hash(file.as_bytes()).as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_lock_excludes_every_user_lock() {
    let site = new_site("exclusive");
    let (shared, _handler) = daemon(&site).await;
    let inside = Arc::new(AtomicBool::new(false));
    let (s, flag) = (shared.clone(), inside.clone());
    tokio::task::spawn_blocking(move || {
        s.with_store_lock(|| {
            flag.store(true, Ordering::SeqCst);
            let (s2, flag2) = (s.clone(), flag.clone());
            // A user-lock holder started now must wait until the store lock is free.
            let waiter = std::thread::spawn(move || {
                s2.with_user_lock("alice", || flag2.load(Ordering::SeqCst))
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            flag.store(false, Ordering::SeqCst);
            waiter
        })
        .join()
        .map(|saw_store_lock_held| {
            assert!(
                !saw_store_lock_held,
                "a user lock was taken while the store lock was held"
            )
        })
        .expect("waiter thread");
    })
    .await
    .expect("blocking task");
}
