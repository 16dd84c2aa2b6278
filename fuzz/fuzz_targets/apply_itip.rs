//! Two calendars from the fuzz input through every engine entry point and the
//! write-back.
//!
//! Input: one selector byte, then the previous version, a NUL byte and the new
//! version (without a NUL, there is no previous version); see
//! `imipd_fuzz::engine::split_pair`. The selector picks the acting account among the
//! addresses the calendars name, a METHOD for a new version that has none, the
//! sender of the new version read as a received message, and the REPLY detail level.
//!
//! Checked, for `schedule_change(old, new)`, `schedule_removal(new)` and
//! `receive(new, sender, old)`: nothing panics, every message parses again, every
//! updated copy parses again and is patched into the user's file or refused with a
//! typed error; and every message `schedule_change` sends is applied for each
//! recipient (with no copy and with `old` as theirs), with the same checks.

#![no_main]

use calcard::icalendar::{ICalendar, ICalendarMethod};
use imipd::itip::{receive, schedule_change, schedule_removal, CalAddress};
use imipd_fuzz::engine::{
    addresses, check_messages, context, ensure_method, method_of, split_pair, store_copy,
};
use libfuzzer_sys::fuzz_target;

const METHODS: [Option<ICalendarMethod>; 8] = [
    None,
    Some(ICalendarMethod::Request),
    Some(ICalendarMethod::Reply),
    Some(ICalendarMethod::Cancel),
    Some(ICalendarMethod::Add),
    Some(ICalendarMethod::Counter),
    Some(ICalendarMethod::Refresh),
    Some(ICalendarMethod::Declinecounter),
];

fuzz_target!(|data: &[u8]| {
    let Some((selector, old_text, new_text)) = split_pair(data) else {
        return;
    };
    let Ok(new) = ICalendar::parse(&new_text) else {
        return;
    };
    let old = old_text
        .as_deref()
        .and_then(|text| ICalendar::parse(text).ok());
    let old_text = old.as_ref().and(old_text.as_deref());

    let mut people = addresses(&new);
    if let Some(old) = &old {
        for a in addresses(old) {
            if !people.contains(&a) {
                people.push(a);
            }
        }
    }
    people.push(CalAddress::parse("stranger@example.org").expect("an address"));
    let account = [people[usize::from(selector & 0x07) % people.len()].clone()];
    let minimal = selector & 0x40 != 0;
    let ctx = context(&account, minimal);

    // The user stored `new` (over `old`).
    if let Ok(change) = schedule_change(old.as_ref(), &new, &ctx) {
        check_messages(&change.messages);
        if let Some(updated) = &change.updated {
            store_copy(Some(&new_text), updated);
        }
        // Each recipient receives what was sent.
        for message in change.messages.iter().take(4) {
            for rcpt in message.to.iter().take(3) {
                let rcpt = [rcpt.clone()];
                let rctx = context(&rcpt, minimal);
                if let Ok(got) = receive(&message.calendar, &message.from, None, &rctx) {
                    check_messages(&got.responses);
                    if let Some(copy) = got.copy {
                        store_copy(None, &copy);
                    }
                }
                if let Some(old) = &old {
                    if let Ok(got) = receive(&message.calendar, &message.from, Some(old), &rctx) {
                        check_messages(&got.responses);
                        if let Some(copy) = got.copy {
                            store_copy(old_text, &copy);
                        }
                    }
                }
            }
        }
    }

    // The user deleted `new`.
    if let Ok(removal) = schedule_removal(&new, &ctx) {
        check_messages(&removal.messages);
    }

    // `new` arrived as a message for the account, whose copy is `old`.
    let mut message = new;
    if method_of(&message).is_none() {
        match &METHODS[usize::from((selector >> 3) & 0x07)] {
            Some(method) => ensure_method(&mut message, method),
            None => return,
        }
    }
    let sender =
        &people[(usize::from(selector & 0x07) + 1 + usize::from(selector >> 7)) % people.len()];
    if let Ok(got) = receive(&message, sender, old.as_ref(), &ctx) {
        check_messages(&got.responses);
        if let Some(copy) = got.copy {
            store_copy(old_text, &copy);
        }
    }
});
