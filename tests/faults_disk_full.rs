//! A full disk during write-back: nothing is corrupted, nothing is half-done, and the
//! work is done once there is room again.
//!
//! The calendar store lives on a small tmpfs (mounted by the test; it needs root, as CI
//! has) that is then filled up. The state database stays on the normal disk.

use imipd::config::Layout;
use imipd::daemon::inbound::{Inbound, Verdict};
use imipd::itip::ReplyDetails;
use imipd::smtp::verp::BounceAddress;
use imipd::store::layout::Store;
use imipd::store::process::Decision;
use imipd::store::scan::scan_all;
use imipd::store::state::State;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/mod.rs"]
mod support;
use support::fixture;

const NOW: i64 = 1_900_000_000;

/// A small tmpfs, unmounted on drop.
struct SmallDisk {
    mount: PathBuf,
    base: PathBuf,
}

impl SmallDisk {
    fn mount(name: &str) -> Option<SmallDisk> {
        let base = std::env::temp_dir().join(format!("imipd-full-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let mount = base.join("disk");
        std::fs::create_dir_all(&mount).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(&mount)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("cannot mount a tmpfs (not root?): the full-disk test needs root, as in CI");
            let _ = std::fs::remove_dir_all(&base);
            return None;
        }
        Some(SmallDisk { mount, base })
    }

    /// Fills the disk with a file, leaving less than `room` bytes.
    fn fill(&self, room: u64) -> PathBuf {
        let filler = self.mount.join(".filler");
        let chunk = vec![b'x'; 1024];
        let mut file = std::fs::File::create(&filler).expect("filler");
        use std::io::Write;
        while file.write_all(&chunk).is_ok() {}
        drop(file);
        // Give back a little, so tiny writes succeed but a calendar file does not fit.
        let len = std::fs::metadata(&filler).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .and_then(|f| f.set_len(len.saturating_sub(room)));
        filler
    }

    /// [`SmallDisk::mount`] with Alice's calendar folder on it: the disk, that folder,
    /// her store and the state (on the normal disk).
    fn with_alice(name: &str) -> Option<(SmallDisk, PathBuf, Store, State)> {
        let disk = SmallDisk::mount(name)?;
        let calendar = disk.mount.join("alice/calendar");
        std::fs::create_dir_all(&calendar).expect("folders");
        let store = fixture::store(&disk.mount, Layout::Vdir, vec![fixture::user("alice")]);
        let state = State::open(&disk.base.join("state.redb")).expect("state");
        Some((disk, calendar, store, state))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

const ORGANIZER_COPY: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\n\
UID:full-1\r\nDTSTAMP:20300101T090000Z\r\nSEQUENCE:1\r\nDTSTART:20300410T120000Z\r\nDTEND:20300410T130000Z\r\n\
SUMMARY:Budget\r\nDESCRIPTION:A long description that makes the file larger than the little room left on the disk, \
so that writing a new version of it fails with ENOSPC while the old version stays whole.\r\n\
ORGANIZER:mailto:alice@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
ATTENDEE;RSVP=TRUE:mailto:carol@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

const REPLY: &str = "From: carol@example.net\r\nTo: alice@example.com\r\nSubject: Accepted\r\n\
Message-ID: <full-reply@example.net>\r\nMIME-Version: 1.0\r\nContent-Type: text/calendar; method=REPLY; charset=utf-8\r\n\r\n\
BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Carol//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\nUID:full-1\r\n\
DTSTAMP:20300102T090000Z\r\nSEQUENCE:1\r\nORGANIZER:mailto:alice@example.com\r\n\
ATTENDEE;PARTSTAT=ACCEPTED:mailto:carol@example.net\r\nREQUEST-STATUS:2.0;Success\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

fn no_temp_files(dir: &Path) {
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .expect("folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".imipd-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

#[test]
fn a_reply_on_a_full_disk_is_deferred_and_applied_later() {
    let Some((disk, calendar, store, state)) = SmallDisk::with_alice("reply") else {
        return;
    };
    std::fs::write(calendar.join("budget.ics"), ORGANIZER_COPY).expect("event");
    fixture::baseline(&store, &state, NOW);
    let filler = disk.fill(200);
    let settings = fixture::lmtp_settings(false);
    let bounces = BounceAddress::new("imipd-bounces", "example.com").expect("bounces");
    let inbound = Inbound {
        store: &store,
        state: &state,
        settings: &settings,
        reply_details: ReplyDetails::Full,
        bounces: &bounces,
        bounce_key: b"key",
    };

    let verdict = inbound.deliver(
        "carol@example.net",
        &["alice@example.com".into()],
        REPLY.as_bytes(),
        NOW,
    );
    match &verdict[0] {
        Verdict::TryLater(reason) => assert!(
            reason.contains("No space") || reason.contains("space"),
            "{reason}"
        ),
        other => panic!("a full disk must defer the message (451), got {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(calendar.join("budget.ics")).expect("intact"),
        ORGANIZER_COPY
    );
    no_temp_files(&calendar);

    // Room again: the MTA's retry applies it.
    std::fs::remove_file(filler).expect("free space");
    let verdict = inbound.deliver(
        "carol@example.net",
        &["alice@example.com".into()],
        REPLY.as_bytes(),
        NOW,
    );
    assert!(
        matches!(&verdict[0], Verdict::Accepted(t) if t.contains("applied")),
        "{verdict:?}"
    );
    let text = std::fs::read_to_string(calendar.join("budget.ics"))
        .expect("updated")
        .replace("\r\n ", "");
    assert!(
        text.contains("PARTSTAT=ACCEPTED;SCHEDULE-STATUS=2.0:mailto:carol"),
        "{text}"
    );
}

#[test]
fn an_organizer_change_on_a_full_disk_sends_nothing_until_it_can_be_written() {
    let Some((disk, calendar, store, state)) = SmallDisk::with_alice("change") else {
        return;
    };
    let processor = fixture::processor(&store, &state);
    scan_all(&processor, NOW, false).expect("baseline of the empty store");
    // A new event written just before the disk filled up: its SEQUENCE cannot be
    // written back, so nothing may be queued yet.
    let invitation = ORGANIZER_COPY.replace("SEQUENCE:1", "SEQUENCE:0");
    std::fs::write(calendar.join("budget.ics"), &invitation).expect("event");
    let filler = disk.fill(200);
    let result = processor.process("alice/calendar/budget.ics", NOW, false);
    assert!(result.is_err(), "the write-back fails: {result:?}");
    assert!(
        state.queue().expect("queue").is_empty(),
        "nothing queued for a change not written back"
    );
    assert_eq!(
        std::fs::read_to_string(calendar.join("budget.ics")).expect("intact"),
        invitation
    );
    no_temp_files(&calendar);

    std::fs::remove_file(filler).expect("free space");
    let decision = processor
        .process("alice/calendar/budget.ics", NOW, false)
        .expect("processed");
    assert!(
        matches!(decision, Decision::Queued(ref sent) if sent.len() == 1),
        "{decision:?}"
    );
    assert!(std::fs::read_to_string(calendar.join("budget.ics"))
        .expect("file")
        .contains("SEQUENCE:1"));
}
