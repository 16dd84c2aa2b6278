//! Queue order under a greylisting relay: per (UID, recipient), never a message after
//! a newer one.
//!
//! The real daemon on a vdir store, with a loopback SMTP sink as its relay. The relay
//! answers 451 for one recipient while the organizer creates, reschedules and deletes
//! an event; the other recipient gets all three messages as they happen. When the
//! relay lets the first recipient through, that recipient must never get an older
//! REQUEST after the CANCEL: the undelivered older REQUESTs are superseded (dropped,
//! logged, counted) by the newer message for the same instances.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;
use support::site::{write_event, Daemon};
use support::{Sink, Site};

/// Alice's site with `relay` as the relay (retries after 1 s), and its daemon running.
fn start(relay: std::net::SocketAddr) -> (Site, Daemon) {
    let (site, _) = Site::with_port("queue-order", &["alice"], "debounce_ms = 30\n", |lmtp| {
        format!(
            "[queue]\nfirst_retry_delay = 1\nmax_retry_delay = 1\n\
             [relay]\nhost = \"{}\"\nport = {}\ntls = \"none\"\ntimeout = 10\n\
             [lmtp]\nlisten = \"127.0.0.1:{lmtp}\"\n",
            relay.ip(),
            relay.port()
        )
    });
    let daemon = site.start();
    (site, daemon)
}

fn event(sequence: u32, start: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\nUID:order-1\r\n\
         DTSTAMP:20300101T090000Z\r\nSEQUENCE:{sequence}\r\nDTSTART:{start}\r\nDURATION:PT1H\r\nSUMMARY:Planning\r\n\
         ORGANIZER:mailto:alice@example.com\r\n\
         ATTENDEE;RSVP=TRUE:mailto:grey@example.net\r\n\
         ATTENDEE;RSVP=TRUE:mailto:Kept.Case@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// (METHOD, SEQUENCE) of each message the sink accepted for `rcpt`, in arrival order.
fn received(sink: &Sink, rcpt: &str) -> Vec<(String, i64)> {
    sink.messages()
        .iter()
        .filter(|m| m.rcpts.iter().any(|(a, _)| a.eq_ignore_ascii_case(rcpt)))
        .map(|m| {
            let text = String::from_utf8_lossy(&m.data).replace("\r\n ", "");
            let method = text
                .lines()
                .find_map(|l| l.strip_prefix("METHOD:"))
                .unwrap_or_default()
                .to_string();
            let sequence = text
                .lines()
                .find_map(|l| l.strip_prefix("SEQUENCE:"))
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            (method, sequence)
        })
        .collect()
}

#[test]
fn a_greylisted_recipient_never_gets_an_older_request_after_the_cancel() {
    let sink = Sink::start();
    sink.reply_to_rcpt(
        "grey@example.net",
        Some("451 4.7.1 greylisted, try again later"),
    );
    let (site, _daemon) = start(sink.addr());
    let calendar = site.calendar("alice");

    write_event(&calendar, "planning.ics", &event(0, "20300610T100000Z"));
    site.eventually("the invitation", || {
        received(&sink, "Kept.Case@example.net").len() == 1
    });
    write_event(&calendar, "planning.ics", &event(1, "20300611T100000Z"));
    site.eventually("the reschedule", || {
        received(&sink, "Kept.Case@example.net").len() == 2
    });
    std::fs::remove_file(calendar.join("planning.ics")).expect("delete");
    site.eventually("the cancellation", || {
        received(&sink, "Kept.Case@example.net").len() == 3
    });
    let other = received(&sink, "Kept.Case@example.net");
    assert_eq!(other[2].0, "CANCEL", "{other:?}");

    // The relay lets the greylisted recipient through now.
    sink.reply_to_rcpt("grey@example.net", None);
    site.eventually("the greylisted recipient's delivery", || {
        received(&sink, "grey@example.net")
            .last()
            .is_some_and(|(m, _)| m == "CANCEL")
    });
    // Long enough for any older item's retry (1 s) to come due and be sent, if kept.
    std::thread::sleep(Duration::from_millis(2500));
    let grey = received(&sink, "grey@example.net");
    println!("greylisted recipient received {grey:?}; the other {other:?}");
    assert_eq!(
        grey.last().map(|(m, _)| m.as_str()),
        Some("CANCEL"),
        "the newest message is the last one delivered: {grey:?}"
    );
    assert_eq!(
        grey.len(),
        1,
        "the undelivered older REQUESTs were superseded by the CANCEL: {grey:?}"
    );
    for pair in grey.windows(2) {
        assert!(
            pair[0].1 < pair[1].1,
            "never an older message after a newer one: {grey:?}"
        );
    }
    let log = site.log();
    assert!(
        log.contains("superseded"),
        "the dropped messages are logged:\n{log}"
    );

    // The envelope keeps the local part as the calendar spells it (RFC 5321 §2.4).
    let rcpts: Vec<String> = sink
        .messages()
        .iter()
        .flat_map(|m| m.rcpts.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>())
        .collect();
    assert!(
        rcpts.iter().any(|r| r == "Kept.Case@example.net"),
        "{rcpts:?}"
    );
}
