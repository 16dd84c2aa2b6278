//! The header that ties an outgoing mail to one (UID, recipient) pair.
//!
//! When a message bounces, the delivery status notification quotes the original
//! headers (RFC 3464 `text/rfc822-headers`). The `X-Imipd-Item` header lets the daemon
//! find which event and which attendee the bounce is about, and mark that attendee
//! with a SCHEDULE-STATUS, without keeping a table of sent Message-IDs. Its value is
//! `uid=<percent-encoded UID>; rcpt=<percent-encoded address>`; long values are broken
//! by spaces, which [`parse_item_ref`] ignores, so header folding cannot corrupt them.

use crate::itip::CalAddress;
use crate::text::decode_hex_escapes;

/// The name of the tracking header.
pub const TRACKING_HEADER: &str = "X-Imipd-Item";

/// Width after which a long encoded UID is broken by a space (folding point).
const CHUNK: usize = 60;

/// What a tracking header refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRef {
    /// The UID of the scheduled event or to-do.
    pub uid: String,
    /// The recipient the mail was built for.
    pub recipient: CalAddress,
}

/// The tracking header value for `uid` and `recipient`.
pub fn format_item_ref(uid: &str, recipient: &CalAddress) -> String {
    let uid = percent_encode(uid);
    let mut chunked = String::with_capacity(uid.len() + uid.len() / CHUNK);
    for (i, c) in uid.chars().enumerate() {
        if i > 0 && i % CHUNK == 0 {
            chunked.push(' ');
        }
        chunked.push(c);
    }
    format!("uid={chunked}; rcpt={}", percent_encode(recipient.as_str()))
}

/// Reads a tracking header value back (folded or unfolded); `None` if it is not one.
pub fn parse_item_ref(value: &str) -> Option<ItemRef> {
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    let mut uid = None;
    let mut recipient = None;
    for field in compact.split(';') {
        match field.split_once('=') {
            Some(("uid", v)) => uid = Some(decode_hex_escapes(v, b'%')?),
            Some(("rcpt", v)) => {
                recipient = Some(CalAddress::parse(&decode_hex_escapes(v, b'%')?)?)
            }
            _ => return None,
        }
    }
    Some(ItemRef {
        uid: uid.filter(|u| !u.is_empty())?,
        recipient: recipient?,
    })
}

/// Encodes every byte outside `A-Z a-z 0-9 - . _ ~ @ +` as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@+".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_awkward_uids() {
        let rcpt = CalAddress::parse("mailto:Bob@Example.net").unwrap();
        for uid in [
            "040000008200E00074C5B7101A82E008000000000A",
            "a; b=c % d",
            "Réunion-日本@example.com",
            &"x".repeat(300),
        ] {
            let value = format_item_ref(uid, &rcpt);
            assert!(value.is_ascii());
            let parsed = parse_item_ref(&value).unwrap();
            assert_eq!(parsed.uid, uid);
            assert_eq!(parsed.recipient, rcpt);
            // Folding as an MTA would do it still parses.
            let folded = value.replace(' ', "\r\n ");
            assert_eq!(parse_item_ref(&folded).unwrap().uid, uid);
        }
    }

    #[test]
    fn rejects_other_values() {
        for value in [
            "hello",
            "uid=abc",
            "uid=%ZZ; rcpt=a@b.c",
            "uid=; rcpt=a@b.c",
        ] {
            assert_eq!(parse_item_ref(value), None, "{value}");
        }
    }
}
