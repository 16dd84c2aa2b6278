//! Arbitrary bytes as an email delivered to imipd, through to the scheduling engine.
//!
//! `parse_incoming` reads the raw message (MIME, encodings, calendar parts, sender
//! identity). When it finds an iTIP message, the engine applies it as the daemon
//! would: for each address the calendar names, with no stored copy (an import, then
//! the same message again on the imported copy, as a redelivery would do), and to two
//! fixed stored copies of the series `fuzz-fixed-1` (the organizer's, the attendee's),
//! with each resulting copy patched into the stored file. Nothing may panic; every
//! message and copy the engine builds must parse again (`imipd_fuzz::engine`).

#![no_main]

use calcard::icalendar::ICalendar;
use imipd::imip::{parse_incoming, IncomingOptions};
use imipd::itip::{receive, CalAddress};
use imipd_fuzz::engine::{
    address, addresses, check_messages, context, ensure_method, store_copy, ATTENDEE,
    ATTENDEE_COPY, ORGANIZER, ORGANIZER_COPY,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The fixed stored copies, parsed once, with the account each belongs to.
fn stored() -> &'static [(&'static str, ICalendar, CalAddress); 2] {
    static STORED: OnceLock<[(&'static str, ICalendar, CalAddress); 2]> = OnceLock::new();
    STORED.get_or_init(|| {
        let parse = |text| ICalendar::parse(text).expect("the fixed copies parse");
        [
            (ORGANIZER_COPY, parse(ORGANIZER_COPY), address(ORGANIZER)),
            (ATTENDEE_COPY, parse(ATTENDEE_COPY), address(ATTENDEE)),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let envelope_from = match data.len() % 3 {
        0 => None,
        1 => Some("org@example.com"),
        _ => Some("bounce+x@example.org"),
    };
    let options = IncomingOptions {
        max_message_size: 1 << 20,
        max_calendar_size: 256 * 1024,
        trusted_authserv_ids: vec!["mx.example.com".to_string()],
        ..IncomingOptions::default()
    };
    let Ok(incoming) = parse_incoming(data, envelope_from, &options) else {
        return;
    };
    // The daemon takes the sender from the From header and adds METHOD when only the
    // part's method= parameter gave it.
    let Some(sender) = incoming.sender.from.as_ref().map(|m| m.address.clone()) else {
        return;
    };
    let mut itip = incoming.calendar.clone();
    ensure_method(&mut itip, &incoming.method);
    let minimal = data.len().is_multiple_of(2);

    for account in addresses(&itip).into_iter().take(4) {
        let account = [account];
        let ctx = context(&account, minimal);
        let Ok(first) = receive(&itip, &sender, None, &ctx) else {
            continue;
        };
        check_messages(&first.responses);
        let Some(copy) = first.copy else { continue };
        let written = store_copy(None, &copy);
        let Ok(reread) = ICalendar::parse(&written) else {
            continue;
        };
        if let Ok(again) = receive(&itip, &sender, Some(&reread), &ctx) {
            check_messages(&again.responses);
            if let Some(copy) = again.copy {
                store_copy(Some(&written), &copy);
            }
        }
    }

    for (text, cal, owner) in stored() {
        let account = [owner.clone()];
        let ctx = context(&account, minimal);
        if let Ok(outcome) = receive(&itip, &sender, Some(cal), &ctx) {
            check_messages(&outcome.responses);
            if let Some(copy) = outcome.copy {
                store_copy(Some(text), &copy);
            }
        }
    }
});
