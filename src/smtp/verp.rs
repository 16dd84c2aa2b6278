//! VERP bounce addresses: `imipd-bounces+<token>@<domain>`, one per queue item.
//!
//! Outgoing mail uses such an address as its envelope sender (MAIL FROM). Whatever
//! bounces it, a DSN or a hand-written "could not deliver" note, goes back to that
//! address, and the token names the queue item even when the bounce quotes none of
//! the original headers. Tokens use lowercase letters, digits, `-` and `_` only, so
//! they survive MTAs that lowercase local parts and need no quoting. This module only
//! builds and reads addresses; routing `<domain>` to imipd's LMTP server is the MTA's
//! job (Postfix `transport_maps`).
//!
//! Anyone can send mail to a bounce address, so the daemon uses *signed* tokens
//! ([`BounceToken::signed`]): the queue item plus a MAC under a site secret. A bounce
//! whose token does not verify is not believed, so nobody can mark someone else's
//! invitation as failed by mailing the bounce address.

use std::fmt;

/// Separates the fixed local part from the token.
const DELIMITER: char = '+';

/// Longest token accepted; local parts may be 64 octets in total.
const MAX_TOKEN: usize = 40;

/// Why a bounce address or token could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerpError {
    /// The fixed local part has characters that would need quoting.
    #[error("bounce address local part {0:?} must be lowercase letters, digits, '.', '-' or '_'")]
    BadLocalPart(String),
    /// The domain is not a plain host name.
    #[error("bounce address domain {0:?} is not a host name")]
    BadDomain(String),
    /// The token has characters outside the safe set or is too long.
    #[error("bounce token {0:?} must be 1 to 40 lowercase letters, digits, '-' or '_'")]
    BadToken(String),
}

/// The variable part of a bounce address; carries a queue reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BounceToken(String);

impl BounceToken {
    /// A token from text already in the safe alphabet.
    pub fn new(token: &str) -> Result<Self, VerpError> {
        let ok = !token.is_empty()
            && token.len() <= MAX_TOKEN
            && token
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(BounceToken(token.to_string()))
        } else {
            Err(VerpError::BadToken(token.to_string()))
        }
    }

    /// The token for queue item `id`: `q<id>`.
    pub fn for_queue_item(id: u64) -> Self {
        BounceToken(format!("q{id}"))
    }

    /// The queue item id, when the token was made by [`for_queue_item`](Self::for_queue_item).
    pub fn queue_item(&self) -> Option<u64> {
        let digits = self.0.strip_prefix('q')?;
        if digits.starts_with('0') && digits.len() > 1 {
            return None;
        }
        digits.parse().ok()
    }

    /// The signed token for queue item `id`: `q<id>-<mac>`, where the MAC is the first
    /// 12 hex digits of SHA-256(key ‖ id). Only whoever holds `key` can make one.
    pub fn signed(id: u64, key: &[u8]) -> Self {
        BounceToken(format!("q{id}-{}", mac(id, key)))
    }

    /// The queue item of a signed token, if its MAC verifies under `key`.
    pub fn verified_queue_item(&self, key: &[u8]) -> Option<u64> {
        let (item, tag) = self.0.split_once('-')?;
        let id = BounceToken(item.to_string()).queue_item()?;
        (tag == mac(id, key)).then_some(id)
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn mac(id: u64, key: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(key);
    hasher.update(id.to_be_bytes());
    hasher
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl fmt::Display for BounceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The gateway's bounce address family: a fixed local part and domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceAddress {
    /// The part before the `+`, e.g. `imipd-bounces`.
    local: String,
    /// The domain routed to imipd's LMTP server.
    domain: String,
}

impl BounceAddress {
    /// The family `local+<token>@domain`; both parts are lowercased.
    pub fn new(local: &str, domain: &str) -> Result<Self, VerpError> {
        let local = local.to_ascii_lowercase();
        let domain = domain.to_ascii_lowercase();
        let local_ok = !local.is_empty()
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !local_ok {
            return Err(VerpError::BadLocalPart(local));
        }
        let domain_ok = !domain.is_empty()
            && domain.len() <= 253
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !domain_ok {
            return Err(VerpError::BadDomain(domain));
        }
        Ok(BounceAddress { local, domain })
    }

    /// The envelope sender for one queue item: `local+token@domain`.
    pub fn address(&self, token: &BounceToken) -> String {
        format!("{}{DELIMITER}{}@{}", self.local, token, self.domain)
    }

    /// The address without a token (for mail whose bounces need no matching).
    pub fn plain(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }

    /// Whether `address` belongs to this family (with or without a token): what the
    /// LMTP server's recipient check accepts besides local users.
    pub fn matches(&self, address: &str) -> bool {
        self.split(address).is_some()
    }

    /// The token of `address`, if it is this family's address with a valid token.
    pub fn token_of(&self, address: &str) -> Option<BounceToken> {
        BounceToken::new(self.split(address)??).ok()
    }

    /// `Some(None)` for the plain address, `Some(Some(token text))` for a tokened one.
    fn split<'a>(&self, address: &'a str) -> Option<Option<&'a str>> {
        let address = address.trim().trim_start_matches('<').trim_end_matches('>');
        let (local, domain) = address.rsplit_once('@')?;
        if !domain.eq_ignore_ascii_case(&self.domain) {
            return None;
        }
        match local.split_once(DELIMITER) {
            None if local.eq_ignore_ascii_case(&self.local) => Some(None),
            Some((base, token)) if base.eq_ignore_ascii_case(&self.local) => Some(Some(token)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_only_with_the_key() {
        let token = BounceToken::signed(42, b"site secret");
        assert!(token.as_str().starts_with("q42-"));
        assert_eq!(token.verified_queue_item(b"site secret"), Some(42));
        assert_eq!(token.verified_queue_item(b"another secret"), None);
        assert_eq!(
            BounceToken::for_queue_item(42).verified_queue_item(b"site secret"),
            None
        );
        let forged = BounceToken::new(&token.as_str().replace("q42", "q43")).expect("token");
        assert_eq!(forged.verified_queue_item(b"site secret"), None);
        assert!(token.as_str().len() <= MAX_TOKEN);
    }

    #[test]
    fn round_trip() {
        let family = BounceAddress::new("imipd-bounces", "Imip.Example.org").unwrap();
        let token = BounceToken::for_queue_item(42);
        let address = family.address(&token);
        assert_eq!(address, "imipd-bounces+q42@imip.example.org");
        assert_eq!(family.token_of(&address), Some(token.clone()));
        assert_eq!(family.token_of(&address).unwrap().queue_item(), Some(42));
        // MTAs may change case; the token alphabet is lowercase, so lowercasing is lossless.
        let shouted = "IMIPD-BOUNCES+Q42@IMIP.EXAMPLE.ORG";
        assert_eq!(family.token_of(&shouted.to_ascii_lowercase()), Some(token));
        assert!(family.matches(shouted));
        assert!(family.matches("<imipd-bounces@imip.example.org>"));
        assert_eq!(family.token_of("imipd-bounces@imip.example.org"), None);
    }

    #[test]
    fn refuses_foreign_and_unsafe() {
        let family = BounceAddress::new("imipd-bounces", "imip.example.org").unwrap();
        assert!(!family.matches("alice@imip.example.org"));
        assert!(!family.matches("imipd-bounces+q1@other.example.org"));
        assert_eq!(
            family.token_of("imipd-bounces+q1/../x@imip.example.org"),
            None
        );
        assert_eq!(family.token_of("imipd-bounces+@imip.example.org"), None);
        assert!(BounceToken::new("Q1").is_err());
        assert!(BounceToken::new(&"a".repeat(41)).is_err());
        assert_eq!(BounceToken::new("q007").unwrap().queue_item(), None);
        assert_eq!(BounceToken::new("q0").unwrap().queue_item(), Some(0));
        assert!(BounceAddress::new("a b", "x.org").is_err());
        assert!(BounceAddress::new("bounces", "x..org").is_err());
        assert!(BounceAddress::new("bounces", "-x.org").is_err());
    }
}
