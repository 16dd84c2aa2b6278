//! Changing a user's calendar on the user's behalf: incoming messages and delivery
//! status.
//!
//! Whatever imipd changes (a REPLY applied to the organizer's copy, an invitation
//! imported, a SCHEDULE-STATUS recorded) is applied both to the file and to the
//! baseline imipd compares the next change with. If the user had edited the file and
//! imipd has not processed that edit yet, the edit stays pending: it is still the
//! difference between file and baseline. If the file changes while imipd writes, imipd
//! reads it again and re-applies, so a user's edit is never overwritten.

use super::answers;
use super::calendars::{scheduling_component, InvitationCalendar};
use super::layout::{SkipReason, Store};
use super::patch::rewrite_parsed;
use super::process::queue_items;
use super::state::{content_hash, Batch, ObjectRecord, ReplacedAnswer, State, StateError};
use super::write::{write_then_commit, Expected, WriteError, WriteKind};
use crate::config::User;
use crate::itip::{self, CalAddress, Context, InboundAction, ItipError, Refused, ReplyDetails};
use calcard::icalendar::ICalendar;
use thiserror::Error;

/// How often a write is recomputed when the user keeps changing the file.
const ATTEMPTS: usize = 5;

/// Why a message was not applied.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// The engine refused or ignored the message (not authorised, out of date, ...).
    #[error("{name}: {0}", name = .0.name())]
    Itip(ItipError),
    /// A new invitation from a sender the import policy does not allow.
    #[error("new invitations from this sender are not imported (lmtp.import_policy)")]
    ImportNotAllowed,
    /// The user's file could not be read.
    #[error("{key}: {reason}")]
    Unreadable {
        /// The object.
        key: String,
        /// Why.
        reason: SkipReason,
    },
    /// The file kept changing, or could not be written (full disk): try again later.
    #[error("{0}")]
    Busy(String),
    /// The state database failed: try again later.
    #[error(transparent)]
    State(#[from] StateError),
}

impl ApplyError {
    /// Whether the sender (the MTA) should retry later.
    pub fn is_temporary(&self) -> bool {
        matches!(self, ApplyError::Busy(_) | ApplyError::State(_))
    }
}

/// What applying did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// What the engine did.
    pub action: InboundAction,
    /// The object changed or created, if any.
    pub key: Option<String>,
    /// Answers queued (a REFRESH answered): their count.
    pub answers: usize,
    /// Components of the message refused while the rest applied (a RECURRENCE-ID that
    /// names no occurrence): the verdict names them.
    pub refused: Vec<Refused>,
}

impl Applied {
    /// The refused components for a verdict line, e.g.
    /// `; refused RECURRENCE-ID 20300111T090000Z (InvalidRecurrenceId)`; empty if none.
    pub fn refused_note(&self) -> String {
        self.refused
            .iter()
            .map(|r| {
                format!(
                    "; refused RECURRENCE-ID {} ({})",
                    r.recurrence_id,
                    r.error.name()
                )
            })
            .collect()
    }
}

/// Whether an application writes (the real run) or only computes (a dry run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Files are written, the state committed, answers queued.
    Yes,
    /// Everything is computed as for real; nothing is written.
    No,
}

/// Applies messages and statuses to local users' calendars.
pub struct Applier<'a> {
    /// The calendar store.
    pub store: &'a Store,
    /// imipd's state.
    pub state: &'a State,
    /// How answers are written.
    pub reply_details: ReplyDetails,
}

impl Applier<'_> {
    /// Applies the iTIP message `itip` from `sender` to `user`'s calendar. `may_import`
    /// says whether a new invitation may create an object; `applied_key` (Message-ID and
    /// recipient) is recorded in the same transaction, so the message is applied once.
    pub fn apply(
        &self,
        user: &User,
        itip: &ICalendar,
        sender: &CalAddress,
        now: i64,
        may_import: bool,
        applied_key: Option<&str>,
    ) -> Result<Applied, ApplyError> {
        self.apply_as(
            Writes::Yes,
            user,
            itip,
            sender,
            now,
            may_import,
            applied_key,
        )
    }

    /// [`Self::apply`] computed exactly as for real but writing nothing (no file, no
    /// state, nothing queued): what `imipd inject --dry-run` reports.
    pub fn apply_dry_run(
        &self,
        user: &User,
        itip: &ICalendar,
        sender: &CalAddress,
        now: i64,
        may_import: bool,
        applied_key: Option<&str>,
    ) -> Result<Applied, ApplyError> {
        self.apply_as(Writes::No, user, itip, sender, now, may_import, applied_key)
    }

    /// [`Self::apply`] with or without writing.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_as(
        &self,
        writes: Writes,
        user: &User,
        itip: &ICalendar,
        sender: &CalAddress,
        now: i64,
        may_import: bool,
        applied_key: Option<&str>,
    ) -> Result<Applied, ApplyError> {
        let uid = itip
            .uids()
            .next()
            .ok_or(ApplyError::Itip(ItipError::MissingUid))?
            .to_string();
        let ctx = Context {
            account: &user.addresses,
            now,
            reply_details: self.reply_details,
        };
        let mut unparsable = None;
        for _ in 0..ATTEMPTS {
            let key = self.state.find_uid(&user.name, &uid)?;
            let current = match &key {
                Some(key) => match self.store.read(key) {
                    Ok(found) => {
                        found.map(|(bytes, text)| (key.clone(), content_hash(&bytes), text))
                    }
                    Err(reason) => {
                        return Err(ApplyError::Unreadable {
                            key: key.clone(),
                            reason,
                        })
                    }
                },
                None => None,
            };
            let Some((key, hash, text)) = current else {
                return self.import(
                    writes,
                    user,
                    itip,
                    sender,
                    &ctx,
                    &uid,
                    may_import,
                    applied_key,
                );
            };
            let Ok(stored) = ICalendar::parse(&text) else {
                // A client may be writing the file in place right now: look again in a
                // moment. If it stays broken, the sender is asked to try again later.
                unparsable = Some(key.clone());
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            };
            let outcome =
                itip::receive(itip, sender, Some(&stored), &ctx).map_err(ApplyError::Itip)?;
            let answers = queue_items(self.store, &outcome.responses, None, now, None);
            let count = answers.len();
            let Some(copy) = outcome.copy else {
                self.commit_if(
                    writes,
                    Batch {
                        enqueue: answers,
                        applied: applied(applied_key, now),
                        ..Batch::default()
                    },
                )?;
                return Ok(Applied {
                    action: outcome.action,
                    key: Some(key),
                    answers: count,
                    refused: outcome.refused,
                });
            };
            let record = self.state.object(&key)?;
            let Rewritten {
                written,
                baseline,
                answers: answers_now,
            } = rewrite_copy(
                itip,
                sender,
                &ctx,
                &text,
                &stored,
                &copy,
                record.as_ref().and_then(|r| r.baseline.clone()),
                || self.state.answers(&key),
            )?;
            let written_hash = content_hash(written.as_bytes());
            let seen_hash = match &record {
                Some(r) if r.seen_hash != hash => r.seen_hash.clone(),
                _ => written_hash.clone(),
            };
            let why = if answers_now.is_some() {
                WriteKind::ReplyApplied
            } else {
                WriteKind::Delivery
            };
            let record = ObjectRecord {
                user: user.name.clone(),
                uid: Some(uid.clone()),
                seen_hash,
                baseline: baseline.or(Some(written.clone())),
                written_hash: Some(written_hash),
                last_error: record.and_then(|r| r.last_error),
            };
            let then = Batch {
                objects: vec![(key.clone(), Some(record))],
                enqueue: answers,
                applied: applied(applied_key, now),
                answers: answers_now
                    .map(|a| vec![(key.clone(), a)])
                    .unwrap_or_default(),
                ..Batch::default()
            };
            if writes == Writes::No {
                // Everything above was computed as for real; the write is left out.
            } else {
                match write_then_commit(
                    self.store,
                    self.state,
                    &key,
                    &Expected::Hash(hash.clone()),
                    &written,
                    why,
                    then,
                ) {
                    Ok(_) => {}
                    Err(WriteError::Conflict(_)) => continue,
                    Err(e) => return Err(ApplyError::Busy(e.to_string())),
                }
            }
            return Ok(Applied {
                action: outcome.action,
                key: Some(key),
                answers: count,
                refused: outcome.refused,
            });
        }
        Err(ApplyError::Busy(match unparsable {
            Some(key) => format!(
                "{key} is not valid iCalendar right now (being written, or broken); try again later"
            ),
            None => format!("the copy of {uid} kept changing while imipd updated it"),
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn import(
        &self,
        writes: Writes,
        user: &User,
        itip: &ICalendar,
        sender: &CalAddress,
        ctx: &Context<'_>,
        uid: &str,
        may_import: bool,
        applied_key: Option<&str>,
    ) -> Result<Applied, ApplyError> {
        let outcome = itip::receive(itip, sender, None, ctx).map_err(ApplyError::Itip)?;
        let Some(copy) = outcome.copy else {
            if outcome.responses.is_empty() {
                return Ok(Applied {
                    action: outcome.action,
                    key: None,
                    answers: 0,
                    refused: outcome.refused,
                });
            }
            // An ADD for an unknown event asks the organizer for the whole event: only
            // where the invitation that answers it would be imported, so a stranger's
            // ADD gets no sign of life from the recipient.
            if !may_import {
                return Err(ApplyError::ImportNotAllowed);
            }
            let answers = queue_items(self.store, &outcome.responses, None, ctx.now, None);
            let count = answers.len();
            self.commit_if(
                writes,
                Batch {
                    enqueue: answers,
                    applied: applied(applied_key, ctx.now),
                    ..Batch::default()
                },
            )?;
            return Ok(Applied {
                action: outcome.action,
                key: None,
                answers: count,
                refused: outcome.refused,
            });
        };
        if !may_import {
            return Err(ApplyError::ImportNotAllowed);
        }
        // A new invitation lands in the calendar the user has (store::calendars).
        let calendar = self
            .store
            .invitation_calendar(user, scheduling_component(&copy));
        if let (Writes::Yes, InvitationCalendar::ToMake(folder)) = (writes, &calendar) {
            self.store.make_calendar(user, folder).map_err(|e| {
                ApplyError::Busy(format!(
                    "{} has no calendar that takes this invitation, and imipd cannot make {folder}: {e} \
                     (create a calendar for the user, or give imipd write access)",
                    user.name
                ))
            })?;
        }
        let key = self.store.import_key(user, calendar.folder(), uid);
        // RFC 5545 §3.2.19: the stored invitation defines every TZID it uses.
        let mut copy = copy;
        itip::vtimezone::add_missing_timezones(&mut copy);
        let text = copy.to_string();
        let record_for = |text: String| {
            let hash = content_hash(text.as_bytes());
            Batch {
                objects: vec![(
                    key.clone(),
                    Some(ObjectRecord {
                        user: user.name.clone(),
                        uid: Some(uid.to_string()),
                        seen_hash: hash.clone(),
                        baseline: Some(text),
                        written_hash: Some(hash),
                        last_error: None,
                    }),
                )],
                applied: applied(applied_key, ctx.now),
                ..Batch::default()
            }
        };
        let then = record_for(text.clone());
        let written = match writes {
            Writes::Yes => write_then_commit(
                self.store,
                self.state,
                &key,
                &Expected::Absent,
                &text,
                WriteKind::Import,
                then,
            ),
            // What the write would meet: a file already there is a conflict.
            Writes::No => match self.store.read(&key) {
                Ok(None) => Ok(Default::default()),
                Ok(Some(_)) => Err(WriteError::Conflict(key.clone())),
                Err(reason) => Err(WriteError::Conflict(format!("{key}: {reason}"))),
            },
        };
        match written {
            Ok(_) => {}
            Err(WriteError::Conflict(_)) => match self.adopt(&key, uid) {
                // imipd wrote this file but stopped before recording it: take it as
                // the copy (applying the message again is the caller's next attempt).
                Some(existing) => self.commit_if(writes, record_for(existing))?,
                None => {
                    return Err(ApplyError::Busy(format!(
                        "{key} exists, is not this event, and imipd has no record of it"
                    )))
                }
            },
            Err(e) => return Err(ApplyError::Busy(e.to_string())),
        }
        Ok(Applied {
            action: outcome.action,
            key: Some(key),
            answers: 0,
            refused: outcome.refused,
        })
    }

    /// The text of an invitation file imipd named for `uid` but did not record, if it
    /// holds that event.
    fn adopt(&self, key: &str, uid: &str) -> Option<String> {
        let (_, text) = self.store.read(key).ok()??;
        let cal = ICalendar::parse(&text).ok()?;
        let same = cal.uids().any(|u| u == uid);
        same.then_some(text)
    }

    /// Records SCHEDULE-STATUS `status` for `attendee` on the organizer's object `key`.
    /// Returns whether the file changed (`false` when the object is gone or already says so).
    pub fn record_status(
        &self,
        key: &str,
        attendee: &CalAddress,
        status: &str,
    ) -> Result<bool, ApplyError> {
        self.record_statuses(key, &[(attendee.clone(), status)])
    }

    /// Records the SCHEDULE-STATUS of several attendees on the organizer's object `key`
    /// in one write: a change mailed to many attendees rewrites the file once, not
    /// once per attendee. Returns whether the file changed.
    pub fn record_statuses(
        &self,
        key: &str,
        statuses: &[(CalAddress, &str)],
    ) -> Result<bool, ApplyError> {
        let with_all = |cal: &ICalendar| itip::status::with_schedule_statuses(cal, statuses);
        for _ in 0..ATTEMPTS {
            let (bytes, text) = match self.store.read(key) {
                Ok(Some(found)) => found,
                Ok(None) => return Ok(false),
                Err(reason) => {
                    return Err(ApplyError::Unreadable {
                        key: key.to_string(),
                        reason,
                    })
                }
            };
            let hash = content_hash(&bytes);
            let Ok(cal) = ICalendar::parse(&text) else {
                // Possibly being written in place right now: look again in a moment.
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            };
            let Some(updated) = with_all(&cal) else {
                return Ok(false);
            };
            let written = rewrite_parsed(&text, &cal, &updated);
            let written_hash = content_hash(written.as_bytes());
            let record = self.state.object(key)?.map(|mut r| {
                if let Some(base) = r.baseline.as_deref() {
                    let updated_base = ICalendar::parse(base).ok().and_then(|parsed| {
                        with_all(&parsed).map(|cal| rewrite_parsed(base, &parsed, &cal))
                    });
                    if let Some(b) = updated_base {
                        r.baseline = Some(b);
                    }
                }
                if r.seen_hash == hash {
                    r.seen_hash = written_hash.clone();
                }
                r.written_hash = Some(written_hash.clone());
                r
            });
            let then = Batch {
                objects: record
                    .map(|r| vec![(key.to_string(), Some(r))])
                    .unwrap_or_default(),
                ..Batch::default()
            };
            match write_then_commit(
                self.store,
                self.state,
                key,
                &Expected::Hash(hash.clone()),
                &written,
                WriteKind::DeliveryStatus,
                then,
            ) {
                Ok(_) => {}
                Err(WriteError::Conflict(_)) => continue,
                Err(e) => return Err(ApplyError::Busy(e.to_string())),
            }
            return Ok(true);
        }
        Err(ApplyError::Busy(format!(
            "{key} kept changing while imipd recorded a delivery status"
        )))
    }

    fn commit_if(&self, writes: Writes, batch: Batch) -> Result<(), StateError> {
        match writes {
            Writes::Yes => self.commit(batch),
            Writes::No => Ok(()),
        }
    }

    fn commit(&self, batch: Batch) -> Result<(), StateError> {
        if !batch.is_empty() {
            self.state.commit(batch)?;
        }
        Ok(())
    }
}

/// What a message changes in a stored copy, as text: computed before anything is
/// written (and the whole CPU cost of an answer's write path, which
/// `benches/reply_write.rs` measures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The file's new text: its own lines where they still say the same, checked to
    /// parse back to `copy`.
    pub written: String,
    /// The new baseline, when there was one: the message applied to it too, so a
    /// user's pending edit stays the only difference.
    pub baseline: Option<String>,
    /// The answers to remember (a REPLY applied), `None` for other messages.
    pub answers: Option<Vec<ReplacedAnswer>>,
}

/// Computes [`Rewritten`] for the stored `text` (parsed: `stored`), which the engine
/// turned into `copy` on receiving `itip` from `sender`; `baseline` is the recorded
/// baseline, `previous` the answers remembered so far (read only for a REPLY).
#[allow(clippy::too_many_arguments)]
pub fn rewrite_copy<E>(
    itip: &ICalendar,
    sender: &CalAddress,
    ctx: &Context<'_>,
    text: &str,
    stored: &ICalendar,
    copy: &ICalendar,
    baseline: Option<String>,
    previous: impl FnOnce() -> Result<Vec<ReplacedAnswer>, E>,
) -> Result<Rewritten, E> {
    let written = rewrite_parsed(text, stored, copy);
    let baseline = baseline.map(|base| {
        if base == text {
            written.clone()
        } else {
            // The user's pending edit stays pending: apply the message to the
            // baseline too, so only the edit remains between the two.
            let copy_of = |b: &ICalendar| {
                let copy = itip::receive(itip, sender, Some(b), ctx).ok()?.copy?;
                Some(rewrite_parsed(&base, b, &copy))
            };
            match ICalendar::parse(&base).ok().and_then(|b| copy_of(&b)) {
                Some(rewritten) => rewritten,
                None => base,
            }
        }
    });
    let answers = if answers::is_reply(itip) {
        answers::after_reply(itip, stored, copy, previous()?)
    } else {
        None
    };
    Ok(Rewritten {
        written,
        baseline,
        answers,
    })
}

fn applied(key: Option<&str>, now: i64) -> Vec<(String, i64)> {
    key.map(|k| vec![(k.to_string(), now)]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Layout;
    use crate::store::layout::test_store;

    /// Several attendees' statuses land in one write, and writing them again changes
    /// nothing.
    #[test]
    fn statuses_of_several_attendees_are_written_together() {
        let dir = crate::test_support::fresh_dir("statuses");
        let folder = dir.join("root/alice/calendar");
        std::fs::create_dir_all(&folder).expect("folder");
        let original = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n\
            BEGIN:VEVENT\r\nUID:u1\r\nDTSTAMP:20260101T000000Z\r\n\
            DTSTART:20270101T090000Z\r\nSUMMARY:x\r\n\
            ORGANIZER:mailto:alice@example.com\r\n\
            ATTENDEE:mailto:a@example.net\r\nATTENDEE:mailto:b@example.net\r\n\
            ATTENDEE:mailto:c@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        std::fs::write(folder.join("e.ics"), original).expect("write");
        let store = test_store(&dir.join("root"), Layout::Vdir, 1 << 20);
        let state = State::open(&dir.join("state.redb")).expect("state");
        let applier = Applier {
            store: &store,
            state: &state,
            reply_details: ReplyDetails::Full,
        };
        let address = |a: &str| CalAddress::parse(a).expect("address");
        let statuses = [
            (address("a@example.net"), "1.1"),
            (address("b@example.net"), "1.2"),
            (address("c@example.net"), "5.1"),
        ];
        let key = "alice/calendar/e.ics";
        assert!(applier.record_statuses(key, &statuses).expect("written"));
        let text = std::fs::read_to_string(folder.join("e.ics")).expect("read");
        for (who, status) in [("a", "1.1"), ("b", "1.2"), ("c", "5.1")] {
            let line = text
                .lines()
                .find(|l| l.contains(&format!("{who}@example.net")))
                .expect("attendee line");
            assert!(
                line.contains(&format!("SCHEDULE-STATUS={status}")),
                "{line}"
            );
        }
        assert!(!applier.record_statuses(key, &statuses).expect("looked at"));
        assert_eq!(
            std::fs::read_to_string(folder.join("e.ics")).expect("read"),
            text
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An ADD for an event alice does not hold asks the organizer for it, once queued,
    /// and only where the import policy would take the invitation that answers it.
    #[test]
    fn add_for_an_unknown_event_queues_a_refresh_to_the_organizer() {
        let dir = crate::test_support::fresh_dir("add-refresh");
        std::fs::create_dir_all(dir.join("root/alice/calendar")).expect("folder");
        let store = test_store(&dir.join("root"), Layout::Vdir, 1 << 20);
        let state = State::open(&dir.join("state.redb")).expect("state");
        let applier = Applier {
            store: &store,
            state: &state,
            reply_details: ReplyDetails::Full,
        };
        let add = ICalendar::parse(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nMETHOD:ADD\r\n\
             BEGIN:VEVENT\r\nUID:u-add\r\nDTSTAMP:20300101T000000Z\r\nSEQUENCE:2\r\n\
             DTSTART:20300110T090000Z\r\nSUMMARY:Extra\r\n\
             ORGANIZER:mailto:olga@example.org\r\n\
             ATTENDEE;RSVP=TRUE:mailto:alice@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        )
        .expect("parses");
        let user = store.user("alice").expect("alice").clone();
        let olga = CalAddress::parse("olga@example.org").expect("address");
        let refused = applier.apply(&user, &add, &olga, 1_900_000_000, false, None);
        assert!(
            matches!(refused, Err(ApplyError::ImportNotAllowed)),
            "{refused:?}"
        );
        let applied = applier
            .apply(
                &user,
                &add,
                &olga,
                1_900_000_000,
                true,
                Some("m1\u{0}alice"),
            )
            .expect("answered");
        assert_eq!(applied.action, InboundAction::RefreshRequested);
        assert_eq!(applied.answers, 1);
        assert_eq!(applied.key, None, "nothing is stored for the unknown event");
        let queued = state.queue().expect("queue");
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].rcpt, "olga@example.org");
        assert!(
            queued[0].itip.contains("METHOD:REFRESH"),
            "{}",
            queued[0].itip
        );
        assert!(state.was_applied("m1\u{0}alice").expect("state"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A REPLY for a real and a made-up occurrence: the file records the real one, and
    /// the verdict the daemon logs names the one refused.
    #[test]
    fn a_partly_refused_reply_is_written_and_named_in_the_verdict() {
        let dir = crate::test_support::fresh_dir("partly");
        let folder = dir.join("root/alice/calendar");
        std::fs::create_dir_all(&folder).expect("folder");
        std::fs::write(
            folder.join("w.ics"),
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n\
             BEGIN:VEVENT\r\nUID:w\r\nDTSTAMP:20300101T000000Z\r\nSEQUENCE:1\r\n\
             DTSTART:20300103T090000Z\r\nDTEND:20300103T100000Z\r\nRRULE:FREQ=WEEKLY\r\n\
             SUMMARY:Weekly\r\nORGANIZER:mailto:alice@example.com\r\n\
             ATTENDEE;RSVP=TRUE:mailto:bob@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        )
        .expect("write");
        let store = test_store(&dir.join("root"), Layout::Vdir, 1 << 20);
        let state = State::open(&dir.join("state.redb")).expect("state");
        let key = "alice/calendar/w.ics";
        state
            .commit(Batch {
                objects: vec![(
                    key.to_string(),
                    Some(ObjectRecord {
                        user: "alice".into(),
                        uid: Some("w".into()),
                        seen_hash: String::new(),
                        baseline: None,
                        written_hash: None,
                        last_error: None,
                    }),
                )],
                ..Batch::default()
            })
            .expect("indexed");
        let applier = Applier {
            store: &store,
            state: &state,
            reply_details: ReplyDetails::Full,
        };
        let component = |rid: &str| {
            format!(
                "BEGIN:VEVENT\r\nUID:w\r\nDTSTAMP:20300102T000000Z\r\nSEQUENCE:1\r\n\
                 RECURRENCE-ID:{rid}\r\nORGANIZER:mailto:alice@example.com\r\n\
                 ATTENDEE;PARTSTAT=DECLINED:mailto:bob@example.net\r\nEND:VEVENT\r\n"
            )
        };
        let reply = ICalendar::parse(format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nMETHOD:REPLY\r\n{}{}\
             END:VCALENDAR\r\n",
            component("20300110T090000Z"),
            component("20300111T090000Z")
        ))
        .expect("parses");
        let user = store.user("alice").expect("alice").clone();
        let bob = CalAddress::parse("bob@example.net").expect("address");
        let applied = applier
            .apply(&user, &reply, &bob, 1_900_000_000, false, None)
            .expect("applied");
        assert_eq!(applied.action, InboundAction::Updated);
        assert_eq!(
            applied.refused_note(),
            "; refused RECURRENCE-ID 20300111T090000Z (InvalidRecurrenceId)"
        );
        let text = std::fs::read_to_string(folder.join("w.ics")).expect("read");
        assert!(text.contains("RECURRENCE-ID:20300110T090000Z"), "{text}");
        assert!(text.contains("DTSTART:20300110T090000Z"), "{text}");
        assert!(!text.contains("20300111T090000Z"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
