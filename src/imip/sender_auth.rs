//! Whether the From of an incoming mail is genuine: DKIM, SPF and DMARC.
//!
//! Anyone can write any From header, so before a mail may change a calendar its From
//! domain must be vouched for, by one of two sources, in this order:
//!
//! 1. a trusted `Authentication-Results` header (the topmost one of an authserv-id the
//!    site lists, within the MTA's own hop; read strictly by `identity`), unless its
//!    DKIM and DMARC results are all `temperror` (its DNS failed: it decided nothing),
//!    else
//! 2. imipd's own check with `mail-auth`: the topmost `lmtp.max_dkim_signatures` DKIM
//!    signatures (each costs a DNS query; the rest count as not verified), SPF for the envelope
//!    sender from the client address the MTA passed on (`XFORWARD ADDR`/`HELO`), and
//!    DMARC alignment of both with the From domain.
//!
//! The From is authenticated when DMARC passes, or when a valid DKIM signature's `d=`
//! is the From domain (or a parent of it). SPF alone never authenticates a From: it
//! speaks for the envelope sender. A DNS answer that does not come in time is a
//! temporary failure (the MTA is told 451 and retries), never a pass. This module
//! establishes facts; what a message may then change is decided in
//! `daemon::inbound`.

use super::identity::{aligned, identify, SenderIdentity};
use mail_auth::common::verify::VerifySignature;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimResult, DmarcResult, MessageAuthenticator, SpfOutput, SpfResult,
};
use mail_parser::{HeaderName, MessageParser};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What imipd established about the From of one incoming mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromCheck {
    /// The From domain is vouched for; `evidence` says by what, for the log.
    Authenticated {
        /// The From domain that passed.
        domain: String,
        /// E.g. `dkim=pass d=example.net (checked by imipd)`.
        evidence: String,
    },
    /// Nothing vouches for the From; the reason lists what was found.
    Unauthenticated {
        /// E.g. `dkim=pass d=evil.net (not the From domain example.net); dmarc=none`.
        reason: String,
    },
    /// DNS did not answer in time: nothing is decided, the MTA retries (451).
    TryLater {
        /// What did not answer.
        reason: String,
    },
    /// Not checked: `lmtp.insecure_trust_from_header` is set (closed test setups).
    Unchecked,
}

impl FromCheck {
    /// Whether the From may be believed (authenticated, or the insecure option is set).
    pub fn believed(&self) -> bool {
        matches!(self, FromCheck::Authenticated { .. } | FromCheck::Unchecked)
    }

    /// One line for the decision log and `imipd inject`.
    pub fn describe(&self) -> String {
        match self {
            FromCheck::Authenticated { evidence, .. } => {
                format!("sender authenticated: {evidence}")
            }
            FromCheck::Unauthenticated { reason } => format!("sender not authenticated: {reason}"),
            FromCheck::TryLater { reason } => format!("sender check failed for now: {reason}"),
            FromCheck::Unchecked => {
                "sender not checked (lmtp.insecure_trust_from_header is set)".to_string()
            }
        }
    }
}

/// The SMTP client that handed the mail to the site's MTA, as the MTA reports it with
/// `XFORWARD` (Postfix: `lmtp_send_xforward_command = yes`). SPF needs its address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectingClient {
    /// The client's IP address (`XFORWARD ADDR`).
    pub addr: Option<IpAddr>,
    /// The name it gave in HELO/EHLO (`XFORWARD HELO`).
    pub helo: Option<String>,
}

/// Settings of the sender check (from `[lmtp]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierSettings {
    /// authserv-ids whose Authentication-Results headers are believed.
    pub trusted_authserv_ids: Vec<String>,
    /// DNS servers to ask; empty: the system's.
    pub dns_servers: Vec<SocketAddr>,
    /// Longest wait for the whole check.
    pub timeout: Duration,
    /// This host's name, for SPF macros (`%{r}`).
    pub hostname: String,
    /// `lmtp.insecure_trust_from_header`: nothing is checked.
    pub insecure_trust_from_header: bool,
    /// `lmtp.max_dkim_signatures`: how many DKIM signatures are verified, topmost first.
    pub max_dkim_signatures: usize,
}

/// Default of `lmtp.max_dkim_signatures`. mailauth verifies the topmost 20 (the rest
/// `neutral`), Apache James jDKIM 32 (the rest `permerror`); mail through a list and
/// two relays carries three or four, so 10 leaves room and bounds the DNS queries one
/// message causes to about a dozen.
pub const DEFAULT_MAX_DKIM_SIGNATURES: usize = 10;

/// The sender check could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SenderAuthError {
    /// The system's resolver configuration could not be read.
    #[error("cannot set up DNS for sender checks: {0} (set lmtp.dns_servers)")]
    Resolver(String),
}

/// Checks the From of incoming mail; one per daemon (its DNS resolver is shared).
pub struct SenderVerifier {
    settings: VerifierSettings,
    /// `None` when nothing is checked (insecure option): no resolver is needed.
    authenticator: Option<MessageAuthenticator>,
}

impl SenderVerifier {
    /// A verifier asking `settings.dns_servers` (or the system's servers).
    pub fn new(settings: VerifierSettings) -> Result<Self, SenderAuthError> {
        if settings.insecure_trust_from_header {
            return Ok(SenderVerifier {
                settings,
                authenticator: None,
            });
        }
        let mut opts = ResolverOpts::default();
        // One try per server within the overall timeout; a timeout is a 451 anyway.
        opts.timeout = settings.timeout.min(Duration::from_secs(5));
        opts.attempts = 1;
        let authenticator = if settings.dns_servers.is_empty() {
            let (config, mut system) = mail_auth::hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| SenderAuthError::Resolver(e.to_string()))?;
            system.timeout = opts.timeout;
            system.attempts = 1;
            MessageAuthenticator::new(config, system)
        } else {
            let servers = settings
                .dns_servers
                .iter()
                .map(|addr| {
                    let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                    for connection in &mut server.connections {
                        connection.port = addr.port();
                    }
                    server
                })
                .collect();
            MessageAuthenticator::new(ResolverConfig::from_parts(None, vec![], servers), opts)
        }
        .map_err(|e| SenderAuthError::Resolver(e.to_string()))?;
        Ok(SenderVerifier {
            settings,
            authenticator: Some(authenticator),
        })
    }

    /// Establishes whether the From of `raw` is genuine. `mail_from` is the envelope
    /// sender as received (empty for `<>`).
    pub async fn check(&self, raw: &[u8], mail_from: &str, client: &ConnectingClient) -> FromCheck {
        let Some(authenticator) = &self.authenticator else {
            return FromCheck::Unchecked;
        };
        let domain = match from_headers(raw, mail_from, &self.settings.trusted_authserv_ids) {
            Ok(domain) => domain,
            Err(verdict) => return verdict,
        };
        let own = own_check(
            authenticator,
            raw,
            mail_from,
            client,
            &domain,
            &self.settings.hostname,
            self.settings.max_dkim_signatures,
        );
        match tokio::time::timeout(self.settings.timeout, own).await {
            Ok(check) => check,
            Err(_) => FromCheck::TryLater {
                reason: format!(
                    "DNS did not answer within {} s (DKIM/SPF/DMARC of {domain})",
                    self.settings.timeout.as_secs()
                ),
            },
        }
    }
}

/// The sender check without DNS: a trusted Authentication-Results header, else not
/// authenticated (or [`FromCheck::Unchecked`] with `insecure_trust_from_header`). For
/// callers that cannot ask DNS; the LMTP server uses [`SenderVerifier::check`].
pub fn check_headers_only(
    raw: &[u8],
    mail_from: &str,
    trusted_authserv_ids: &[String],
    insecure_trust_from_header: bool,
) -> FromCheck {
    if insecure_trust_from_header {
        return FromCheck::Unchecked;
    }
    match from_headers(raw, mail_from, trusted_authserv_ids) {
        Err(verdict) => verdict,
        Ok(domain) => FromCheck::Unauthenticated {
            reason: format!(
                "no trusted Authentication-Results header vouches for {domain}, and DKIM/SPF/DMARC \
                 were not checked here"
            ),
        },
    }
}

/// What the headers alone decide: `Err` is a final verdict (no single usable From, or
/// a trusted Authentication-Results header's word); `Ok` is the From domain, for DNS.
fn from_headers(raw: &[u8], mail_from: &str, trusted: &[String]) -> Result<String, FromCheck> {
    let unauthenticated = |reason: &str| FromCheck::Unauthenticated {
        reason: reason.to_string(),
    };
    let envelope = (!mail_from.is_empty()).then_some(mail_from);
    let message = MessageParser::default()
        .parse(raw)
        .filter(|m| !m.root_part().headers().is_empty())
        .ok_or_else(|| unauthenticated("the message has no readable header"))?;
    // Two From headers: which one a reader shows is anyone's guess (DMARC skips them).
    let froms = message
        .root_part()
        .headers()
        .iter()
        .filter(|h| h.name == HeaderName::From)
        .count();
    if froms > 1 {
        return Err(unauthenticated("the message has more than one From header"));
    }
    let identity = identify(&message, envelope, trusted);
    let from = identity
        .from
        .as_ref()
        .ok_or_else(|| unauthenticated("the message has no usable From address"))?;
    let domain = from.address.domain().to_ascii_lowercase();
    match from_trusted_header(&identity, &domain) {
        Some(verdict) => Err(verdict),
        None => Ok(domain),
    }
}

/// The verdict of a trusted Authentication-Results header, if the mail carries one.
/// A header that says only `temperror` (its MTA's DNS failed) decides nothing: imipd
/// checks for itself.
fn from_trusted_header(identity: &SenderIdentity, domain: &str) -> Option<FromCheck> {
    let auth = &identity.auth;
    let id = auth.authserv_id.as_deref()?;
    if only_temporary_errors(&auth.results) {
        return None;
    }
    Some(if auth.dmarc_pass || auth.dkim_from_pass {
        let how = if auth.dmarc_pass {
            "dmarc=pass"
        } else {
            "dkim=pass"
        };
        FromCheck::Authenticated {
            domain: domain.to_string(),
            evidence: format!("{how} for {domain} (Authentication-Results of {id})"),
        }
    } else {
        FromCheck::Unauthenticated {
            reason: format!(
                "Authentication-Results of {id} confirm no DMARC pass and no DKIM pass aligned \
                 with {domain} (it says: {})",
                if auth.results.is_empty() {
                    "nothing"
                } else {
                    &auth.results
                }
            ),
        }
    })
}

/// DKIM, SPF and DMARC checked here.
async fn own_check(
    authenticator: &MessageAuthenticator,
    raw: &[u8],
    mail_from: &str,
    client: &ConnectingClient,
    domain: &str,
    hostname: &str,
    max_dkim_signatures: usize,
) -> FromCheck {
    let Some(mut message) = AuthenticatedMessage::parse(raw) else {
        return FromCheck::Unauthenticated {
            reason: "mail-auth cannot read the message".into(),
        };
    };
    // Each signature costs a DNS query for its key: only the topmost ones are verified
    // (RFC 6376 §6.1 lets a verifier limit them); the rest count as not verified, for
    // DMARC too. Headers are in message order, so the first ones are the topmost.
    let unverified = message
        .dkim_headers
        .len()
        .saturating_sub(max_dkim_signatures);
    message.dkim_headers.truncate(max_dkim_signatures);
    let dkim = authenticator.verify_dkim(&message).await;
    let helo = client.helo.as_deref().unwrap_or("unknown");
    // A bounce (<>) is checked as postmaster@HELO, as RFC 7208 section 2.4 says.
    let envelope = if mail_from.is_empty() {
        format!("postmaster@{helo}")
    } else {
        mail_from.to_string()
    };
    let envelope_domain = envelope
        .rsplit_once('@')
        .map_or(helo, |(_, d)| d)
        .to_ascii_lowercase();
    let spf = match client.addr {
        Some(ip) => {
            authenticator
                .verify_spf(SpfParameters::verify_mail_from(
                    ip, helo, hostname, &envelope,
                ))
                .await
        }
        // Without the client address there is nothing to check SPF against.
        None => SpfOutput::new(envelope_domain.clone()),
    };
    let dmarc = authenticator
        .verify_dmarc(DmarcParameters::new(
            &message,
            &dkim,
            &envelope_domain,
            &spf,
        ))
        .await;

    let mut notes = Vec::new();
    let mut aligned_dkim = None;
    let mut temporary = Vec::new();
    for output in &dkim {
        let d = output.signature().map(|s| s.domain().to_ascii_lowercase());
        let d_text = d.as_deref().unwrap_or("?");
        match output.result() {
            DkimResult::Pass => {
                if aligned(d.as_deref(), Some(domain)) {
                    aligned_dkim = Some(d_text.to_string());
                    notes.push(format!("dkim=pass d={d_text}"));
                } else {
                    notes.push(format!(
                        "dkim=pass d={d_text} (not aligned with the From domain {domain})"
                    ));
                }
            }
            DkimResult::TempError(err) => {
                // Only a signature that could vouch for the From is worth waiting for.
                if d.as_deref().is_none_or(|d| related(d, domain)) {
                    temporary.push(format!("DKIM key of {d_text}: {err}"));
                }
                notes.push(format!("dkim=temperror d={d_text}"));
            }
            DkimResult::Neutral(err) | DkimResult::Fail(err) | DkimResult::PermError(err) => notes
                .push(format!(
                    "dkim={} d={d_text} ({})",
                    short(&output.result().to_string()),
                    err.to_string().to_lowercase()
                )),
            DkimResult::None => notes.push(format!("dkim=none d={d_text}")),
        }
    }
    if dkim.is_empty() && unverified == 0 {
        notes.push("dkim=none (no signature)".into());
    }
    if unverified > 0 {
        notes.push(format!(
            "dkim=neutral for {unverified} more signatures (not verified: only the topmost \
             {max_dkim_signatures} are, lmtp.max_dkim_signatures)"
        ));
    }
    match spf.result() {
        SpfResult::TempError => {
            if related(&envelope_domain, domain) {
                temporary.push(format!("SPF of {envelope_domain}"));
            }
            notes.push(format!("spf=temperror ({envelope_domain})"));
        }
        result => notes.push(format!(
            "spf={} ({envelope_domain}{})",
            result.to_string().to_ascii_lowercase(),
            if client.addr.is_none() {
                ", client address unknown: enable XFORWARD"
            } else {
                ""
            }
        )),
    }
    let dmarc_pass = dmarc.domain().eq_ignore_ascii_case(domain)
        && (matches!(dmarc.dkim_result(), DmarcResult::Pass)
            || matches!(dmarc.spf_result(), DmarcResult::Pass));
    let dmarc_temp = matches!(dmarc.dkim_result(), DmarcResult::TempError(_))
        || matches!(dmarc.spf_result(), DmarcResult::TempError(_));
    notes.push(format!(
        "dmarc={}",
        if dmarc_pass {
            "pass"
        } else if dmarc_temp {
            "temperror"
        } else if dmarc.dmarc_record().is_none() {
            "none"
        } else {
            "fail"
        }
    ));
    let summary = notes.join("; ");
    if dmarc_pass || aligned_dkim.is_some() {
        return FromCheck::Authenticated {
            domain: domain.to_string(),
            evidence: format!("{summary} (checked by imipd)"),
        };
    }
    if dmarc_temp {
        temporary.push(format!("DMARC record of {domain}"));
    }
    if !temporary.is_empty() {
        return FromCheck::TryLater {
            reason: format!("DNS failed: {} ({summary})", temporary.join(", ")),
        };
    }
    FromCheck::Unauthenticated {
        reason: format!("{summary} (checked by imipd)"),
    }
}

/// Whether an Authentication-Results summary (`dkim=temperror dmarc=temperror`) has
/// DKIM or DMARC results, the ones that can vouch for a From, and every one of them is
/// `temperror`: the MTA could not ask DNS, so it found nothing either way.
fn only_temporary_errors(results: &str) -> bool {
    let mut verdicts = results
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter(|(method, _)| {
            method.eq_ignore_ascii_case("dkim") || method.eq_ignore_ascii_case("dmarc")
        })
        .peekable();
    verdicts.peek().is_some() && verdicts.all(|(_, r)| r.eq_ignore_ascii_case("temperror"))
}

/// Whether a result for domain `a` could count for the From domain `b` under DMARC's
/// relaxed alignment: same last two labels. Errs on the side of "related" (e.g. two
/// `.co.uk` domains), which only means waiting for DNS, never a pass.
fn related(a: &str, b: &str) -> bool {
    let tail = |d: &str| {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        let labels: Vec<&str> = d.rsplit('.').take(2).collect();
        labels.join(".")
    };
    tail(a) == tail(b)
}

/// `fail; Signature has expired` → `fail`: the verdict word of a mail-auth result.
fn short(result: &str) -> String {
    let word = result.split(';').next().unwrap_or(result).trim();
    word.replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signing_domain_aligns_with_itself_and_its_subdomains_only() {
        let aligned = |d: &str, from: &str| aligned(Some(d), Some(from));
        assert!(aligned("example.net", "example.net"));
        assert!(aligned("Example.NET", "mail.example.net"));
        assert!(!aligned("evil.net", "example.net"));
        assert!(!aligned("ample.net", "example.net"));
        assert!(!aligned("mail.example.net", "example.net"));
        assert!(!aligned("net", "example.net"));
    }

    #[test]
    fn a_header_that_says_only_temperror_decides_nothing() {
        for (header, only) in [
            ("dkim=temperror dmarc=temperror", true),
            ("dkim=TEMPERROR spf=pass", true),
            ("spf=temperror", false),
            ("", false),
            ("dkim=temperror dmarc=fail", false),
            ("dkim=pass", false),
        ] {
            assert_eq!(only_temporary_errors(header), only, "{header}");
        }
    }

    #[test]
    fn a_dns_failure_matters_only_for_domains_that_could_align() {
        assert!(related("mail.example.net", "example.net"));
        assert!(related("example.net", "lists.example.net"));
        assert!(!related("evil.example", "example.net"));
    }
}
