//! Arbitrary bytes as the client side of an LMTP conversation.
//!
//! The MTA in front of imipd relays whatever a remote sender wrote, so the session
//! must survive any input: it must never panic, must answer only with well-formed
//! reply lines (see `imipd_fuzz::lmtp::check_replies`), must hand the daemon only
//! messages within its limits and for recipients it accepted, and must behave the
//! same however the input is cut into reads (a TCP stream keeps no packet
//! boundaries), compared with the input delivered in one read.

#![no_main]

use imipd_fuzz::lmtp::{check_delivery, check_replies, converse, Chunking};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (whole, delivered) = converse(data, Chunking::Whole);
    if let Err(why) = check_replies(&whole) {
        panic!(
            "malformed reply stream: {why}\n--- output:\n{}",
            String::from_utf8_lossy(&whole)
        );
    }
    for message in &delivered {
        if let Err(why) = check_delivery(message) {
            panic!("bad delivery: {why}");
        }
    }
    let (pieces, delivered_in_pieces) = converse(data, Chunking::pieces_for(data));
    assert!(
        whole == pieces,
        "the replies depend on how the input was cut into reads\n--- in one read:\n{}\n--- in pieces:\n{}",
        String::from_utf8_lossy(&whole),
        String::from_utf8_lossy(&pieces)
    );
    assert!(
        delivered == delivered_in_pieces,
        "the delivered messages depend on how the input was cut into reads:\n{delivered:?}\n{delivered_in_pieces:?}"
    );
});
