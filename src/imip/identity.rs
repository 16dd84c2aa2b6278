//! Who an incoming iMIP mail claims to come from, and what vouches for the claim.
//!
//! The engine decides whether a REPLY may change an attendee's answer; to do so it
//! needs the From address *and* evidence that the From is genuine. [`SenderIdentity`]
//! gathers From, Sender, the envelope MAIL FROM and the verdicts of trusted
//! `Authentication-Results` headers into [`AuthVerdict`]. It reports; it does not
//! decide what to trust beyond the authserv-id filter.

use super::auth_results;
use super::sender::Mailbox;
use crate::itip::CalAddress;
use mail_parser::{Address, HeaderName, Message};

/// The claimed origin of an incoming mail.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenderIdentity {
    /// The first From address; `None` when missing or not an email address.
    pub from: Option<Mailbox>,
    /// The Sender header (someone sending on behalf of From), if any.
    pub sender: Option<Mailbox>,
    /// The SMTP MAIL FROM given by the caller; `None` for the null sender `<>`.
    pub envelope_from: Option<CalAddress>,
    /// What the trusted MTA verified.
    pub auth: AuthVerdict,
}

impl SenderIdentity {
    /// The From address, only if DMARC passed or a DKIM signature of the From domain
    /// verified: the address a REPLY may be trusted to speak for.
    pub fn authenticated_from(&self) -> Option<&CalAddress> {
        self.from
            .as_ref()
            .map(|m| &m.address)
            .filter(|_| self.auth.dmarc_pass || self.auth.dkim_from_pass)
    }
}

/// Verdicts read from `Authentication-Results` headers of trusted authserv-ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthVerdict {
    /// `dmarc=pass` with `header.from` equal to the From domain.
    pub dmarc_pass: bool,
    /// `dkim=pass` with `header.d` equal to the From domain or a parent of it.
    pub dkim_from_pass: bool,
    /// `spf=pass` with `smtp.mailfrom` in the envelope sender's domain.
    pub spf_pass: bool,
    /// How many headers were trusted; 0 means nothing was verified (or not by us).
    pub trusted_headers: usize,
    /// How many headers were ignored: an authserv-id that is not trusted, a second
    /// header of a trusted one, or one below the MTA's own hop.
    pub ignored_headers: usize,
    /// The authserv-id of the header that was believed, if any.
    pub authserv_id: Option<String>,
    /// Its results in short (`dkim=pass dmarc=fail`), for the decision log.
    pub results: String,
}

/// Reads the identity of `message`; `trusted` are lowercase authserv-ids.
pub(crate) fn identify(
    message: &Message<'_>,
    envelope_from: Option<&str>,
    trusted: &[String],
) -> SenderIdentity {
    let from = first_mailbox(message.from());
    let sender = first_mailbox(message.sender());
    let envelope_from = envelope_from
        .map(|e| e.trim().trim_start_matches('<').trim_end_matches('>'))
        .filter(|e| !e.is_empty())
        .and_then(CalAddress::parse);
    let from_domain = from.as_ref().map(|m| m.address.domain().to_string());
    let envelope_domain = envelope_from.as_ref().map(|e| e.domain().to_string());

    let mut auth = AuthVerdict::default();
    let raw = message.raw_message();
    // Headers are read top-down: the MTA's own Received line is the topmost one, and
    // its Authentication-Results sits directly above it (prepended) or directly below
    // it (milters such as OpenDKIM insert at index 1). Anything under a second
    // Received line came with the message from elsewhere.
    let mut received_above = 0usize;
    for header in message.root_part().headers() {
        match header.name {
            HeaderName::Received => {
                received_above += 1;
                continue;
            }
            HeaderName::AuthenticationResults => {}
            _ => continue,
        }
        let value = raw
            .get(header.offset_start as usize..header.offset_end as usize)
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let Some((authserv_id, results)) = auth_results::parse(&value) else {
            continue;
        };
        let trusted_id = trusted.iter().any(|t| t.eq_ignore_ascii_case(&authserv_id));
        // Only the topmost header of a trusted id counts, and only within the MTA's
        // own hop: a copy further down was written by the sender.
        if !trusted_id || auth.trusted_headers > 0 || received_above > 1 {
            auth.ignored_headers += 1;
            continue;
        }
        auth.trusted_headers += 1;
        auth.authserv_id = Some(authserv_id);
        let mut seen = Vec::new();
        for result in &results {
            seen.push(format!("{}={}", result.method, result.result));
            if result.result != "pass" {
                continue;
            }
            match result.method.as_str() {
                // A DMARC pass says which From domain it was for; one that does not
                // say, or names another domain, vouches for nothing here.
                "dmarc" => {
                    auth.dmarc_pass |=
                        same_domain(result.property("header.from"), from_domain.as_deref());
                }
                // The signing domain (d=) must align with the From domain; the i=
                // identity alone is the signer's claim, not what was verified.
                "dkim" => {
                    auth.dkim_from_pass |=
                        aligned(result.property("header.d"), from_domain.as_deref());
                }
                "spf" => {
                    let mailfrom = result.property("smtp.mailfrom").map(domain_of);
                    auth.spf_pass |= same_domain(mailfrom, envelope_domain.as_deref());
                }
                _ => {}
            }
        }
        auth.results = seen.join(" ");
    }
    SenderIdentity {
        from,
        sender,
        envelope_from,
        auth,
    }
}

fn first_mailbox(address: Option<&Address<'_>>) -> Option<Mailbox> {
    let addr = address?.first()?;
    Some(Mailbox {
        name: addr
            .name()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        address: CalAddress::parse(addr.address()?)?,
    })
}

/// The domain of `user@domain`, `@domain` or a bare `domain`.
fn domain_of(value: &str) -> &str {
    value.rsplit_once('@').map_or(value, |(_, d)| d)
}

/// Whether a DKIM signing domain `d` vouches for `from_domain`: the same domain, or a
/// parent of it (whoever controls `example.org` controls `mail.example.org`).
pub(super) fn aligned(d: Option<&str>, from_domain: Option<&str>) -> bool {
    match (d, from_domain) {
        (Some(d), Some(from)) => {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            let from = from.trim().trim_end_matches('.').to_ascii_lowercase();
            d.contains('.') && (from == d || from.ends_with(&format!(".{d}")))
        }
        _ => false,
    }
}

fn same_domain(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            let a = a.trim().trim_end_matches('.');
            let b = b.trim().trim_end_matches('.');
            !a.is_empty() && a.eq_ignore_ascii_case(b)
        }
        _ => false,
    }
}
