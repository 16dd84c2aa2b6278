//! Every TZID a message or a stored invitation uses comes with its VTIMEZONE.
//!
//! RFC 5545 §3.2.19: a VTIMEZONE MUST be present for each TZID. khal and people writing
//! by hand (`examples/events/lunch.ics`) leave it out; ical.js (Thunderbird) then reads
//! 12:30 Europe/Berlin as floating 12:30. These tests run the engine and the store's
//! import on such files and read the result back as text, as a client would.

use calcard::icalendar::{ICalendar, ICalendarComponentType};
use imipd::config::Layout;
use imipd::itip::{self, CalAddress, Context};
use imipd::store::state::State;

#[path = "support/mod.rs"]
mod support;
use support::fixture;

const NOW: i64 = 1_900_000_000;

fn lunch_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/events/lunch.ics");
    let text = std::fs::read_to_string(path).expect("examples/events/lunch.ics");
    assert!(
        !text.contains("VTIMEZONE"),
        "the example stays as a user writes it"
    );
    text
}

fn lunch() -> ICalendar {
    ICalendar::parse(lunch_text()).expect("lunch.ics parses")
}

/// The TZIDs the text defines, and where its first VTIMEZONE and first VEVENT begin.
fn defined_tzids(text: &str) -> Vec<String> {
    let cal = ICalendar::parse(text).expect("output parses");
    cal.timezones()
        .filter_map(|c| c.timezone().map(|(name, _)| name.to_string()))
        .collect()
}

/// The text defines Europe/Berlin, and no other zone.
fn assert_defines_berlin(text: &str) {
    assert_eq!(
        defined_tzids(text),
        vec!["Europe/Berlin".to_string()],
        "{text}"
    );
}

fn assert_zone_first(text: &str) {
    let zone = text.find("BEGIN:VTIMEZONE").expect("a VTIMEZONE");
    let event = text.find("BEGIN:VEVENT").expect("a VEVENT");
    assert!(zone < event, "VTIMEZONE comes before the event:\n{text}");
}

#[test]
fn an_invitation_from_a_file_without_vtimezone_carries_the_berlin_definition() {
    let alice = [CalAddress::parse("alice@example.com").expect("address")];
    let ctx = fixture::context(&alice, NOW);
    let outcome = itip::schedule_change(None, &lunch(), &ctx).expect("invitations");
    assert!(!outcome.messages.is_empty());
    for message in &outcome.messages {
        let text = message.to_ics();
        assert_defines_berlin(&text);
        assert_zone_first(&text);
        // June in Berlin is UTC+2, from a yearly rule a client can extend.
        assert!(text.contains("TZOFFSETTO:+0200"), "{text}");
    }
}

#[test]
fn a_reply_and_a_cancel_for_a_zoned_event_carry_the_definition_too() {
    let alice = [CalAddress::parse("alice@example.com").expect("address")];
    let ctx = fixture::context(&alice, NOW);
    let cal = lunch();
    let cancel = itip::schedule_removal(&cal, &ctx).expect("cancel");
    let bob = [CalAddress::parse("bob@example.com").expect("address")];
    let bob_ctx = Context {
        account: &bob,
        ..ctx
    };
    let accepted = ICalendar::parse(lunch_text().replace(
        "ATTENDEE;CN=Bob Attendee;RSVP=TRUE",
        "ATTENDEE;CN=Bob Attendee;PARTSTAT=ACCEPTED;RSVP=TRUE",
    ))
    .expect("bob's copy");
    let reply = itip::schedule_change(Some(&cal), &accepted, &bob_ctx).expect("reply");
    let messages: Vec<_> = cancel.messages.iter().chain(&reply.messages).collect();
    assert!(messages.len() >= 2);
    for message in messages {
        let text = message.to_ics();
        assert_defines_berlin(&text);
        assert_zone_first(&text);
    }
}

#[test]
fn an_imported_invitation_without_vtimezone_is_stored_with_one() {
    let dir = support::TempDir::new("imipd-import-vtimezone");
    let bob = fixture::user("bob");
    let store = fixture::store(dir.path(), Layout::Vdir, vec![bob.clone()]);
    std::fs::create_dir_all(dir.path().join("bob/calendar")).expect("folder");
    let state = State::open(&dir.path().join("state.redb")).expect("state");
    fixture::baseline(&store, &state, NOW);

    // A REQUEST as khal-based senders write it: TZID, no VTIMEZONE.
    let request = lunch()
        .to_string()
        .replace("VERSION:2.0\r\n", "VERSION:2.0\r\nMETHOD:REQUEST\r\n");
    let request = ICalendar::parse(&request).expect("request");
    let sender = CalAddress::parse("alice@example.com").expect("address");
    let applied = fixture::applier(&store, &state)
        .apply(&bob, &request, &sender, NOW, true, None)
        .expect("imported");
    let key = applied.key.expect("stored");
    let (_, text) = store.read(&key).expect("readable").expect("present");
    assert_defines_berlin(&text);
    let cal = ICalendar::parse(&text).expect("stored parses");
    assert!(cal
        .components
        .iter()
        .any(|c| c.component_type == ICalendarComponentType::VEvent));
}
