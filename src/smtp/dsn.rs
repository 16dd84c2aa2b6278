//! Reading bounces: RFC 3464 delivery status notifications.
//!
//! A DSN is a `multipart/report; report-type=delivery-status` with a human-readable
//! part, a `message/delivery-status` part (one block of per-message fields, then one
//! block per recipient) and usually the returned message (`message/rfc822`) or just its
//! headers (`text/rfc822-headers`, what `RET=HDRS` asks for). [`parse_dsn`] extracts
//! the envelope id, each recipient's action and status, and the `X-Imipd-Item`
//! tracking header of the returned message, which names the event and attendee the
//! bounce is about. It does not decide what to do with the result (the daemon marks
//! the attendee's SCHEDULE-STATUS) and does not guess at free-text bounces: anything
//! that is not a delivery-status report is refused with [`DsnError`]; the VERP token
//! of the bounce address ([`BounceAddress`](super::BounceAddress)) still identifies
//! the queue item then.

use super::transport::xtext_decode;
use crate::imip::{parse_item_ref, ItemRef, TRACKING_HEADER};
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use std::fmt;

/// What the reporting MTA did for one recipient (RFC 3464 section 2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnAction {
    /// Could not be delivered and will not be retried.
    Failed,
    /// Not delivered yet; the MTA keeps trying.
    Delayed,
    /// Delivered to the recipient's mailbox.
    Delivered,
    /// Handed to a system that sends no DSNs.
    Relayed,
    /// Delivered and forwarded to several addresses.
    Expanded,
}

impl DsnAction {
    fn parse(value: &str) -> Option<Self> {
        let word = value.split_whitespace().next()?.to_ascii_lowercase();
        Some(match word.as_str() {
            "failed" => DsnAction::Failed,
            "delayed" => DsnAction::Delayed,
            "delivered" => DsnAction::Delivered,
            "relayed" => DsnAction::Relayed,
            "expanded" => DsnAction::Expanded,
            _ => return None,
        })
    }
}

impl fmt::Display for DsnAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DsnAction::Failed => "failed",
            DsnAction::Delayed => "delayed",
            DsnAction::Delivered => "delivered",
            DsnAction::Relayed => "relayed",
            DsnAction::Expanded => "expanded",
        })
    }
}

/// The report for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientReport {
    /// The address the report is about, without its `rfc822;` type.
    pub final_recipient: String,
    /// The address as originally given (ORCPT), when the MTA kept it.
    pub original_recipient: Option<String>,
    /// What happened.
    pub action: DsnAction,
    /// The RFC 3463 status, e.g. `5.1.1`.
    pub status: String,
    /// The remote server's reply, e.g. `smtp; 550 5.1.1 no such user`.
    pub diagnostic: Option<String>,
    /// The server that gave that reply.
    pub remote_mta: Option<String>,
}

impl RecipientReport {
    /// True for a final failure (action `failed`, or a 5.x.x status).
    pub fn is_permanent_failure(&self) -> bool {
        self.action == DsnAction::Failed || self.status.starts_with('5')
    }
}

/// Everything imipd needs from one DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The ENVID given at MAIL FROM (`Original-Envelope-Id`), decoded.
    pub envelope_id: Option<String>,
    /// The MTA that wrote the report.
    pub reporting_mta: Option<String>,
    /// One entry per recipient block, in report order.
    pub recipients: Vec<RecipientReport>,
    /// The tracking header of the returned message or headers.
    pub item: Option<ItemRef>,
    /// The returned message's Message-ID, for the log.
    pub original_message_id: Option<String>,
}

/// Why some bytes are not a usable DSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    /// Not parseable as an email at all.
    #[error("not an email message (no headers)")]
    NotAMessage,
    /// An ordinary message, or a report of another kind.
    #[error("not a delivery status notification: Content-Type is {0} (expected multipart/report; report-type=delivery-status)")]
    NotAReport(String),
    /// A multipart/report without its machine-readable part.
    #[error("delivery report has no message/delivery-status part")]
    NoStatusPart,
    /// The status part names no recipient with Final-Recipient, Action and Status.
    #[error(
        "delivery status part has no complete recipient block (Final-Recipient, Action, Status)"
    )]
    NoRecipients,
}

/// Parses the raw bytes of a bounce.
pub fn parse_dsn(raw: &[u8]) -> Result<DeliveryReport, DsnError> {
    let message = MessageParser::new()
        .parse(raw)
        .filter(|m| !m.headers().is_empty())
        .ok_or(DsnError::NotAMessage)?;
    let root = message.root_part();
    let content_type = root.content_type();
    let is_report = content_type.is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"))
    });
    if !is_report {
        let shown = content_type.map_or_else(
            || "text/plain (none given)".to_string(),
            |ct| {
                let mut s = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""));
                if let Some(t) = ct.attribute("report-type") {
                    s.push_str(&format!("; report-type={t}"));
                }
                s
            },
        );
        return Err(DsnError::NotAReport(shown));
    }

    let mut status_body = None;
    let mut item = None;
    let mut original_message_id = None;
    for part in message.parts.iter().skip(1) {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let full = format!(
            "{}/{}",
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase()
        );
        match full.as_str() {
            "message/delivery-status" | "message/global-delivery-status"
                if status_body.is_none() =>
            {
                status_body = Some(String::from_utf8_lossy(part.contents()).into_owned());
            }
            "message/rfc822"
            | "message/global"
            | "text/rfc822-headers"
            | "message/global-headers"
                if item.is_none() =>
            {
                let returned = match &part.body {
                    PartType::Message(m) => returned_fields(m),
                    _ => MessageParser::new()
                        .parse_headers(part.contents())
                        .map(|m| returned_fields(&m))
                        .unwrap_or_default(),
                };
                item = returned.0;
                original_message_id = original_message_id.or(returned.1);
            }
            _ => {}
        }
    }
    let body = status_body.ok_or(DsnError::NoStatusPart)?;
    let mut groups = field_groups(&body).into_iter();
    let per_message = groups.next().unwrap_or_default();
    let recipients: Vec<RecipientReport> = groups.filter_map(|g| recipient_report(&g)).collect();
    if recipients.is_empty() {
        return Err(DsnError::NoRecipients);
    }
    Ok(DeliveryReport {
        envelope_id: field(&per_message, "original-envelope-id").map(|v| xtext_decode(v.trim())),
        reporting_mta: field(&per_message, "reporting-mta").map(strip_type),
        recipients,
        item,
        original_message_id,
    })
}

/// The tracking header and Message-ID of a returned message or header block.
fn returned_fields(message: &Message<'_>) -> (Option<ItemRef>, Option<String>) {
    let item = message.header_raw(TRACKING_HEADER).and_then(parse_item_ref);
    (item, message.message_id().map(str::to_string))
}

/// A block of `Name: value` fields (names lowercased, folded lines joined).
type Fields = Vec<(String, String)>;

/// Splits a delivery-status body into blocks separated by blank lines.
fn field_groups(body: &str) -> Vec<Fields> {
    let mut groups = Vec::new();
    let mut current: Fields = Vec::new();
    for line in body.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            current.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `rfc822; bob@example.org` → `bob@example.org` (the type is optional in practice).
fn strip_type(value: &str) -> String {
    let value = value.split_once(';').map_or(value, |(_, v)| v);
    value
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

fn recipient_report(fields: &Fields) -> Option<RecipientReport> {
    let final_recipient = strip_type(field(fields, "final-recipient")?);
    let action = DsnAction::parse(field(fields, "action")?)?;
    let status = field(fields, "status")?
        .split_whitespace()
        .next()?
        .to_string();
    if final_recipient.is_empty() || !valid_status(&status) {
        return None;
    }
    Some(RecipientReport {
        final_recipient,
        original_recipient: field(fields, "original-recipient")
            .map(|v| xtext_decode(&strip_type(v))),
        action,
        status,
        diagnostic: field(fields, "diagnostic-code").map(str::to_string),
        remote_mta: field(fields, "remote-mta").map(strip_type),
    })
}

/// `class.subject.detail` with class 2, 4 or 5 and up to three digits each after it.
fn valid_status(status: &str) -> bool {
    let mut parts = status.split('.');
    let class_ok = matches!(parts.next(), Some("2" | "4" | "5"));
    let rest: Vec<&str> = parts.collect();
    class_ok
        && rest.len() == 2
        && rest
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        for (status, valid) in [
            ("5.1.1", true),
            ("4.7.26", true),
            ("3.1.1", false),
            ("5.1", false),
            ("5.1.1.1", false),
            ("5.x.1", false),
        ] {
            assert_eq!(valid_status(status), valid, "{status}");
        }
    }

    #[test]
    fn folded_fields_and_types() {
        let groups = field_groups(
            "Reporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822;\r\n bob@example.org\r\nAction: Failed (bad)\r\nStatus: 5.1.1 (no such user)\r\n",
        );
        assert_eq!(groups.len(), 2);
        let r = recipient_report(&groups[1]).unwrap();
        assert_eq!(r.final_recipient, "bob@example.org");
        assert_eq!(r.action, DsnAction::Failed);
        assert_eq!(r.status, "5.1.1");
    }
}
