//! Full scans: the safety net under file-system events, and the first start.
//!
//! A scan compares every object file with imipd's state and processes what differs,
//! including files that vanished. The first time imipd sees a user's folder it only
//! records what is there (a *baseline*): last year's events must not produce a flood of
//! invitations. Baselines are committed in chunks, so a store of 100,000 objects costs
//! a few hundred database commits, not 100,000.

use super::layout::Store;
use super::process::{Decision, ProcessError, Processor};
use super::state::{content_hash, Batch, ObjectRecord};
use calcard::icalendar::ICalendar;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeSet;

/// Records per commit while taking a baseline.
const BASELINE_CHUNK: usize = 1000;

/// What a scan found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Users scanned.
    pub users: usize,
    /// Object files found.
    pub objects: usize,
    /// Objects recorded as baseline (nothing sent).
    pub baselined: usize,
    /// Objects whose change was processed.
    pub processed: usize,
    /// Messages queued.
    pub queued: usize,
    /// Objects skipped (unreadable, too large, not iCalendar).
    pub skipped: usize,
}

fn baseline_key(user: &str) -> String {
    format!("baseline:{user}")
}

/// Scans every user's folder; `progress` shows a bar on a terminal.
pub fn scan_all(
    processor: &Processor<'_>,
    now: i64,
    progress: bool,
) -> Result<ScanReport, ProcessError> {
    let mut report = ScanReport::default();
    let users: Vec<String> = processor.store.users().map(|u| u.name.clone()).collect();
    let bar = if progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {pos} objects ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    // Baselines of several users share commits (a site of 10,000 users with a few
    // events each would otherwise pay two durable commits per user). A user counts as
    // baselined only in the commit that holds the last of their records, or a later one.
    let mut baselines = Batch::default();
    for user in &users {
        bar.set_message(format!("scanning {user}:"));
        report.users += 1;
        let first_time = processor.state.meta(&baseline_key(user))?.is_none();
        let on_disk = user_keys(processor.store, user);
        report.objects += on_disk.len();
        if first_time {
            report.baselined += take_baseline(processor, user, &on_disk, &bar, &mut baselines)?;
            baselines.meta.push((baseline_key(user), now.to_string()));
            continue;
        }
        let known: BTreeSet<String> = processor
            .state
            .object_keys_with_prefix(&format!("{user}/"))?
            .into_iter()
            .collect();
        for key in on_disk.iter().chain(known.difference(&on_disk)) {
            bar.inc(1);
            match process_settled(processor, key, now)? {
                Decision::Unchanged => {}
                Decision::Skipped(_) => report.skipped += 1,
                Decision::Queued(sent) | Decision::Forgotten(sent) => {
                    report.processed += 1;
                    report.queued += sent.len();
                }
                _ => report.processed += 1,
            }
        }
    }
    if !baselines.is_empty() {
        processor.state.commit(baselines)?;
    }
    bar.finish_and_clear();
    Ok(report)
}

/// Processes one key, again while the file keeps changing under it (bounded).
pub fn process_settled(
    processor: &Processor<'_>,
    key: &str,
    now: i64,
) -> Result<Decision, ProcessError> {
    let mut decision = processor.process(key, now, false)?;
    for _ in 0..3 {
        if decision != Decision::Retry {
            break;
        }
        decision = processor.process(key, now, false)?;
    }
    Ok(decision)
}

/// [`process_settled`] for several objects ready together: processed as one group
/// ([`Processor::process_all`]: their commits shared), then those that met a user's
/// save again one by one. Each key's outcome, in order.
pub fn process_settled_all(
    processor: &Processor<'_>,
    keys: &[&str],
    now: i64,
) -> Vec<Result<Decision, ProcessError>> {
    let mut outcomes = processor.process_all(keys, now, false);
    for (key, outcome) in keys.iter().zip(outcomes.iter_mut()) {
        if matches!(outcome, Ok(Decision::Retry)) {
            *outcome = process_settled(processor, key, now);
        }
    }
    outcomes
}

/// The object keys in `user`'s folders.
pub fn user_keys(store: &Store, user: &str) -> BTreeSet<String> {
    store
        .calendar_dirs(user)
        .iter()
        .flat_map(|dir| store.object_files(dir))
        .filter_map(|path| store.key_for(&path))
        .collect()
}

/// Records every object of `user` as seen and accepted, sending nothing: adds the
/// records to `batch`, committing it whenever it holds a chunk.
fn take_baseline(
    processor: &Processor<'_>,
    user: &str,
    keys: &BTreeSet<String>,
    bar: &ProgressBar,
    batch: &mut Batch,
) -> Result<usize, ProcessError> {
    let mut count = 0;
    for key in keys {
        bar.inc(1);
        let Ok(Some((bytes, text))) = processor.store.read(key) else {
            continue;
        };
        let cal = ICalendar::parse(&text).ok();
        let record = ObjectRecord {
            user: user.to_string(),
            uid: cal
                .as_ref()
                .and_then(|c| c.uids().next().map(str::to_string)),
            seen_hash: content_hash(&bytes),
            last_error: cal.is_none().then(|| "not valid iCalendar".to_string()),
            baseline: cal.is_some().then_some(text),
            written_hash: None,
        };
        batch.objects.push((key.clone(), Some(record)));
        count += 1;
        if batch.objects.len() >= BASELINE_CHUNK {
            processor.state.commit(std::mem::take(batch))?;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Layout, StoreSection, User};
    use crate::itip::{CalAddress, ReplyDetails};
    use crate::store::state::State;

    fn event(user: &str, n: usize, attendees: usize) -> String {
        let mut ics = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n\
             UID:{user}-{n}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20270101T090000Z\r\n\
             SUMMARY:x\r\nORGANIZER:mailto:{user}@example.com\r\n"
        );
        for a in 0..attendees {
            ics.push_str(&format!("ATTENDEE:mailto:guest{a}@example.net\r\n"));
        }
        ics + "END:VEVENT\r\nEND:VCALENDAR\r\n"
    }

    /// Baselines of several users share commits; every user must still end up known
    /// (a later change is processed, not baselined again) and nothing may be sent.
    #[test]
    fn baselines_spanning_users_and_chunks_record_every_user() {
        let dir = std::env::temp_dir().join(format!("imipd-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let names = ["ann", "bea", "cid"];
        // 1,300 + 1 + 900 objects: chunks end inside a user and between users.
        let counts = [1300, 1, 900];
        for (name, count) in names.iter().zip(counts) {
            let folder = dir.join("root").join(name).join("calendar");
            std::fs::create_dir_all(&folder).expect("folder");
            for n in 0..count {
                std::fs::write(folder.join(format!("{n}.ics")), event(name, n, 2)).expect("write");
            }
        }
        let section = StoreSection {
            layout: Layout::Vdir,
            root: dir.join("root"),
            max_object_size: 1 << 20,
            rescan_interval: 60,
            debounce_ms: 10,
        };
        let users = names
            .iter()
            .map(|name| User {
                name: (*name).into(),
                addresses: vec![CalAddress::parse(&format!("{name}@example.com")).expect("a")],
                invitations: Some("calendar".into()),
                language: None,
            })
            .collect();
        let store = Store::new(&section, users);
        let state = State::open(&dir.join("state.redb")).expect("state");
        let processor = Processor {
            store: &store,
            state: &state,
            reply_details: ReplyDetails::Full,
            writer: Default::default(),
        };
        let now = 1_767_225_600;
        let first = scan_all(&processor, now, false).expect("first scan");
        assert_eq!((first.baselined, first.queued), (2201, 0));
        for name in names {
            assert!(state.meta(&baseline_key(name)).expect("meta").is_some());
        }
        assert_eq!(
            state
                .object_keys_with_prefix("cid/")
                .expect("objects")
                .len(),
            900
        );

        // The last user's change is a change, not a new baseline.
        std::fs::write(dir.join("root/cid/calendar/0.ics"), event("cid", 0, 3)).expect("edit");
        let second = scan_all(&processor, now, false).expect("second scan");
        assert_eq!((second.baselined, second.processed), (0, 1));
        assert!(second.queued > 0, "the new attendee is invited");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
