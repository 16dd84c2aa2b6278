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
    /// `dmarc=pass` for the From domain.
    pub dmarc_pass: bool,
    /// `dkim=pass` with `header.d` (or the domain of `header.i`) equal to the From domain.
    pub dkim_from_pass: bool,
    /// `spf=pass` with `smtp.mailfrom` in the envelope sender's domain.
    pub spf_pass: bool,
    /// How many headers were trusted; 0 means nothing was verified (or not by us).
    pub trusted_headers: usize,
    /// How many headers were ignored because their authserv-id is not trusted.
    pub ignored_headers: usize,
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
    for header in message.root_part().headers() {
        if header.name != HeaderName::AuthenticationResults {
            continue;
        }
        let value = raw
            .get(header.offset_start as usize..header.offset_end as usize)
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let Some((authserv_id, results)) = auth_results::parse(&value) else {
            continue;
        };
        if !trusted.iter().any(|t| t.eq_ignore_ascii_case(&authserv_id)) {
            auth.ignored_headers += 1;
            continue;
        }
        auth.trusted_headers += 1;
        for result in results.iter().filter(|r| r.result == "pass") {
            match result.method.as_str() {
                "dmarc" => {
                    let domain = result.property("header.from");
                    auth.dmarc_pass |= from_domain.is_some()
                        && domain.is_none_or(|d| same_domain(Some(d), from_domain.as_deref()));
                }
                "dkim" => {
                    let d = result.property("header.d");
                    let i = result.property("header.i").map(domain_of);
                    auth.dkim_from_pass |= same_domain(d, from_domain.as_deref())
                        || same_domain(i, from_domain.as_deref());
                }
                "spf" => {
                    let mailfrom = result.property("smtp.mailfrom").map(domain_of);
                    auth.spf_pass |= same_domain(mailfrom, envelope_domain.as_deref());
                }
                _ => {}
            }
        }
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
