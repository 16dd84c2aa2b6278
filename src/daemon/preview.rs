//! `imipd preview`: what imipd would send, shown before it does it.
//!
//! It runs the engine on an old and a new version of an object as a given user and
//! writes the emails it would send, with the reason each attendee was included or
//! left out.

use crate::imip::{self, OutgoingOptions, Stamp};
use crate::itip::snapshot::Snapshot;
use crate::itip::{self, CalAddress, Context, ReplyDetails};
use calcard::icalendar::{ICalendar, ICalendarParticipationStatus};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Why an attendee does or does not get a message for this change.
fn reason_for(attendee: &crate::itip::snapshot::Attendee<'_>, included: bool) -> String {
    if included {
        return "included".into();
    }
    if attendee.is_local {
        return "skipped: that is the acting user".into();
    }
    if !attendee.server_scheduled {
        return "skipped: SCHEDULE-AGENT says their own client schedules".into();
    }
    if attendee.rsvp == Some(false) {
        return "skipped: RSVP=FALSE (a room or a non-participant)".into();
    }
    match &attendee.partstat {
        Some(ICalendarParticipationStatus::Declined) => {
            "skipped: declined (add SCHEDULE-FORCE-SEND to send anyway)".into()
        }
        Some(p) if *p != ICalendarParticipationStatus::NeedsAction => {
            "skipped: already answered, and nothing they need to hear about changed".into()
        }
        _ => "skipped: nothing changed that concerns them".into(),
    }
}

/// `imipd preview [--old OLD] NEW --as ADDRESS [--out DIR]`.
pub fn preview(
    old: Option<&Path>,
    new: &Path,
    acting: &CalAddress,
    out: Option<&Path>,
    now: i64,
    reply_details: ReplyDetails,
) -> Result<String, String> {
    let read = |p: &Path| -> Result<ICalendar, String> {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        ICalendar::parse(&text).map_err(|_| format!("{}: not valid iCalendar", p.display()))
    };
    let new_cal = read(new)?;
    let old_cal = old.map(read).transpose()?;
    let account = [acting.clone()];
    let ctx = Context {
        account: &account,
        now,
        reply_details,
    };
    let mut report = String::new();
    let outcome = itip::schedule_change(old_cal.as_ref(), &new_cal, &ctx);
    let messages = match &outcome {
        Ok(outcome) => outcome.messages.clone(),
        Err(err) => {
            let _ = writeln!(report, "no messages: {} ({err})", err.name());
            Vec::new()
        }
    };
    let recipients: BTreeMap<&CalAddress, Vec<&str>> =
        messages.iter().fold(BTreeMap::new(), |mut acc, m| {
            for to in &m.to {
                acc.entry(to)
                    .or_insert_with(Vec::new)
                    .push(itip::method_name(&m.method));
            }
            acc
        });
    if let Ok(snapshot) = Snapshot::new(&new_cal, &account) {
        let _ = writeln!(report, "attendees:");
        let mut seen = std::collections::BTreeSet::new();
        for attendee in snapshot.instances.values().flat_map(|i| i.attendees.iter()) {
            if !seen.insert(attendee.address.clone()) {
                continue;
            }
            let methods = recipients.get(&attendee.address);
            let reason = reason_for(attendee, methods.is_some());
            let _ = writeln!(
                report,
                "  {}: {}{}",
                attendee.address,
                reason,
                methods
                    .map(|m| format!(" ({})", m.join(", ")))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let options = OutgoingOptions::default();
    let mut n = 0;
    for message in &messages {
        for rcpt in &message.to {
            n += 1;
            let stamp = Stamp {
                now: chrono::DateTime::from_timestamp(now, 0).unwrap_or_default(),
                unique: n,
            };
            let mail =
                imip::build_message(message, rcpt, &options, &stamp).map_err(|e| e.to_string())?;
            let _ = write!(
                report,
                "{} from {} to {}: {}",
                itip::method_name(&message.method),
                message.from,
                rcpt,
                mail.subject
            );
            if let Some(dir) = out {
                let file = dir.join(format!(
                    "{n:02}-{}-{}.eml",
                    itip::method_name(&message.method),
                    rcpt
                ));
                std::fs::write(&file, &mail.bytes)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                let _ = write!(report, " -> {}", file.display());
            }
            report.push('\n');
        }
    }
    Ok(report)
}
