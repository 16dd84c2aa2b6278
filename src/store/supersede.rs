//! Which queued message a newer one makes pointless.
//!
//! Per (UID, recipient), a recipient must never get a message after a newer one: a
//! CANCEL overtaken by the REQUESTs before it leaves a deleted meeting in the
//! attendee's calendar. The queue delivers one (UID, recipient) in queue order (see
//! `daemon::queue`), and a new REQUEST or CANCEL drops the older undelivered
//! REQUEST, ADD or CANCEL for the same instances ([`supersedes`]): the newer one
//! carries the event's whole current state for them.
//!
//! The state calls this module when it queues an item; this module reads only the
//! item ([`queue_item`](super::queue_item)) and never the state.

use super::queue_item::QueueItem;
use calcard::icalendar::{ICalendar, ICalendarProperty};
use std::collections::BTreeSet;

/// The key the queue orders by: the UID and the recipient (compared as addresses).
pub fn order_key(item: &QueueItem) -> String {
    let rcpt = crate::itip::CalAddress::parse(&item.rcpt)
        .map(|a| a.as_str().to_string())
        .unwrap_or_else(|| item.rcpt.to_ascii_lowercase());
    format!("{}\u{0}{rcpt}", item.uid)
}

/// Whether `newer` makes the undelivered `older` (same UID and recipient) pointless:
/// both come from the organizer (REQUEST or CANCEL after REQUEST, ADD or CANCEL), and
/// `newer` covers every instance `older` is about (the whole event covers all).
pub fn supersedes(newer: &QueueItem, older: &QueueItem) -> bool {
    covers(
        newer,
        instances(&newer.itip).as_ref(),
        older,
        instances(&older.itip).as_ref(),
    )
}

/// [`supersedes`], with each message's [`instances`] already worked out: the items of
/// one change share their text, so a commit works them out once per text.
pub fn covers(
    newer: &QueueItem,
    new: Option<&BTreeSet<String>>,
    older: &QueueItem,
    old: Option<&BTreeSet<String>>,
) -> bool {
    if order_key(newer) != order_key(older)
        || !matches!(newer.method.as_str(), "REQUEST" | "CANCEL")
        || !matches!(older.method.as_str(), "REQUEST" | "ADD" | "CANCEL")
    {
        return false;
    }
    let (Some(new), Some(old)) = (new, old) else {
        return false;
    };
    new.contains("") || (!old.contains("") && old.is_subset(new))
}

/// The instances a message is about: each component's RECURRENCE-ID (as calcard reads
/// it), `""` for the master.
pub fn instances(itip: &str) -> Option<BTreeSet<String>> {
    let cal = ICalendar::parse(itip).ok()?;
    let set: BTreeSet<String> = cal
        .components
        .iter()
        .filter(|c| c.component_type.is_scheduling_object())
        .map(|c| {
            c.entries
                .iter()
                .find(|e| e.name == ICalendarProperty::RecurrenceId)
                .map(|e| format!("{:?}", e.values))
                .unwrap_or_default()
        })
        .collect();
    (!set.is_empty()).then_some(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::queue_item::{Route, SummaryRecord};

    fn item(method: &str, rcpt: &str, recurrence: Option<&str>) -> QueueItem {
        let rid = recurrence
            .map(|r| format!("RECURRENCE-ID:{r}\r\n"))
            .unwrap_or_default();
        QueueItem {
            id: 0,
            created: 1,
            next_attempt: 1,
            attempts: 0,
            route: Route::Mail,
            from: "alice@example.com".into(),
            rcpt: rcpt.into(),
            method: method.into(),
            uid: "u1".into(),
            itip: format!(
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nMETHOD:{method}\r\n\
                 BEGIN:VEVENT\r\nUID:u1\r\n{rid}DTSTAMP:20300101T000000Z\r\n\
                 DTSTART:20300102T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
            )
            .into(),
            body: None,
            summary: SummaryRecord::Invite,
            status_object: None,
            last_error: None,
            changed_at_ms: None,
        }
    }

    #[test]
    fn a_newer_message_for_the_same_instances_supersedes_an_older_one() {
        let whole = |m| item(m, "b@example.net", None);
        let one = |m| item(m, "B@Example.net", Some("20300109T100000Z"));
        assert!(supersedes(&whole("CANCEL"), &whole("REQUEST")));
        assert!(supersedes(&whole("REQUEST"), &whole("REQUEST")));
        assert!(
            supersedes(&whole("REQUEST"), &one("CANCEL")),
            "the whole event covers one"
        );
        assert!(
            !supersedes(&one("CANCEL"), &whole("REQUEST")),
            "one does not cover all"
        );
        assert!(supersedes(&one("REQUEST"), &one("CANCEL")));
        assert!(!supersedes(&whole("REPLY"), &whole("REQUEST")));
        assert!(!supersedes(
            &whole("CANCEL"),
            &item("REQUEST", "c@example.net", None)
        ));
    }
}
