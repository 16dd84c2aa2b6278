//! RSVP links: the signed token an Accept/Maybe/Decline link carries, the links in an
//! invitation, and the REPLY a pressed button stands for.
//!
//! A token names the local user (the organizer's account), the UID, the attendee and
//! an expiry, and is signed with HMAC-SHA256 under a key kept in imipd's state, so the
//! web listener needs no table of issued links: whatever verifies was issued by imipd
//! and names exactly one attendee of one event. The token does not name a SEQUENCE,
//! so a link from an older version answers the current one. This module does no I/O
//! and reads no clock: the caller passes `now`. Serving the page is
//! `daemon::web`'s job; the page itself is [`super::rsvp_page`].

use super::calendar;
use crate::itip::export::{set_param, without_server_params, ComponentTree, MessageCalendar};
use crate::itip::time::{utc_date_time, TimeResolver};
use crate::itip::{CalAddress, ItipMessage, Method};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarParameterName,
    ICalendarParameterValue, ICalendarParticipationStatus, ICalendarProperty, ICalendarValue,
};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// The longest token accepted, so a hostile URL cannot make the server decode megabytes.
pub const MAX_TOKEN_LEN: usize = 2048;

/// Why a token is not honoured; each gets its own page.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Not a token at all (truncated link, wrong characters).
    #[error("the link is incomplete or damaged")]
    Malformed,
    /// The signature does not match: someone changed the token.
    #[error("the link has been altered")]
    Altered,
    /// Signed by imipd, but past its expiry.
    #[error("the link has expired")]
    Expired,
}

/// What one RSVP link is good for: one attendee answering one event of one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RsvpToken {
    /// The local user whose calendar holds the organizer's copy.
    #[serde(rename = "u")]
    pub user: String,
    /// The event's UID.
    #[serde(rename = "i")]
    pub uid: String,
    /// The attendee the link was sent to (the only one it may answer for).
    #[serde(rename = "a")]
    pub attendee: String,
    /// UTC timestamp after which the link no longer answers.
    #[serde(rename = "e")]
    pub expires: i64,
}

impl RsvpToken {
    /// The token as it appears in a link: `base64url(payload).base64url(hmac)`.
    pub fn sign(&self, key: &[u8]) -> String {
        // Serialising four strings and a number cannot fail.
        let payload = serde_json::to_vec(self).unwrap_or_default();
        let body = URL_SAFE_NO_PAD.encode(&payload);
        let tag = mac(key, body.as_bytes()).finalize().into_bytes();
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Reads and checks a token from a link: signed with `key` and not expired at `now`.
    pub fn verify(text: &str, key: &[u8], now: i64) -> Result<RsvpToken, TokenError> {
        if text.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (body, tag) = text.split_once('.').ok_or(TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        // Constant-time comparison, done by the hmac crate.
        mac(key, body.as_bytes())
            .verify_slice(&tag)
            .map_err(|_| TokenError::Altered)?;
        let payload = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Malformed)?;
        let token: RsvpToken =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if token.expires < now {
            return Err(TokenError::Expired);
        }
        Ok(token)
    }
}

fn mac(key: &[u8], data: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as Mac>::new_from_slice(&[0u8; 32]).expect("fixed key"));
    mac.update(data);
    mac
}

/// The three answers a link offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// PARTSTAT=ACCEPTED.
    Accepted,
    /// PARTSTAT=TENTATIVE ("Maybe").
    Tentative,
    /// PARTSTAT=DECLINED.
    Declined,
}

impl Answer {
    /// All answers, in the order the buttons appear.
    pub const ALL: [Answer; 3] = [Answer::Accepted, Answer::Tentative, Answer::Declined];

    /// The word in links and forms (`answer=accepted`), also the lowercase PARTSTAT.
    pub fn key(self) -> &'static str {
        match self {
            Answer::Accepted => "accepted",
            Answer::Tentative => "tentative",
            Answer::Declined => "declined",
        }
    }

    /// Reads [`Self::key`] back.
    pub fn from_key(text: &str) -> Option<Answer> {
        Answer::ALL.into_iter().find(|a| a.key() == text)
    }

    fn partstat(self) -> ICalendarParticipationStatus {
        match self {
            Answer::Accepted => ICalendarParticipationStatus::Accepted,
            Answer::Tentative => ICalendarParticipationStatus::Tentative,
            Answer::Declined => ICalendarParticipationStatus::Declined,
        }
    }
}

/// The links an invitation carries for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsvpLinks {
    /// Opens the page with "Accept" chosen.
    pub accept: String,
    /// Opens the page with "Maybe" chosen.
    pub maybe: String,
    /// Opens the page with "Decline" chosen.
    pub decline: String,
}

/// Where links point and how long they last; from `[web]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSettings {
    /// The public address of the web listener, without a trailing slash.
    pub public_url: String,
    /// The signing key (kept in the state).
    pub key: Vec<u8>,
    /// How long a link to an endless series lasts, in seconds.
    pub max_lifetime: i64,
}

/// The path of the page for `token`, below the public URL.
pub fn page_path(token: &str) -> String {
    format!("/rsvp/{token}")
}

impl LinkSettings {
    /// The links for `recipient` in `msg`, sent from `user`'s calendar at `now`: only a
    /// REQUEST that asks this attendee for an answer (RSVP=TRUE) gets them.
    pub fn links_for(
        &self,
        msg: &ItipMessage,
        recipient: &CalAddress,
        user: &str,
        now: i64,
    ) -> Option<RsvpLinks> {
        if msg.method != Method::Request || !asks_for_answer(&msg.calendar, recipient) {
            return None;
        }
        let uid = calendar::uid(&msg.calendar)?;
        let token = RsvpToken {
            user: user.to_string(),
            uid: uid.to_string(),
            attendee: recipient.to_string(),
            expires: expiry(&msg.calendar, now, self.max_lifetime),
        }
        .sign(&self.key);
        let base = format!(
            "{}{}",
            self.public_url.trim_end_matches('/'),
            page_path(&token)
        );
        let link = |a: Answer| format!("{base}?answer={}", a.key());
        Some(RsvpLinks {
            accept: link(Answer::Accepted),
            maybe: link(Answer::Tentative),
            decline: link(Answer::Declined),
        })
    }
}

/// Whether `recipient` is an ATTENDEE with RSVP=TRUE in some component of `cal`.
pub fn asks_for_answer(cal: &ICalendar, recipient: &CalAddress) -> bool {
    calendar::scheduling_components(cal).iter().any(|c| {
        c.properties(&ICalendarProperty::Attendee).any(|e| {
            calendar::entry_address(e).as_ref() == Some(recipient)
                && e.parameter(&ICalendarParameterName::Rsvp)
                    .is_some_and(|v| matches!(v, ICalendarParameterValue::Bool(true)))
        })
    })
}

/// When a link stops answering: the end of the last occurrence, or `now + max_lifetime`
/// when the series has no end that can be read without expanding it.
pub fn expiry(cal: &ICalendar, now: i64, max_lifetime: i64) -> i64 {
    let times = TimeResolver::new(cal);
    let ends: Option<Vec<i64>> = calendar::scheduling_components(cal)
        .iter()
        .map(|c| crate::itip::range::end_of(c, &times))
        .collect();
    match ends.and_then(|e| e.into_iter().max()) {
        Some(end) => end,
        None => now.saturating_add(max_lifetime),
    }
}

/// The main component of the organizer's copy: the master, else the first one.
pub fn main_event(cal: &ICalendar) -> Option<&ICalendarComponent> {
    calendar::main_component(cal)
}

/// Whether the organizer's copy says the event is cancelled.
pub fn is_cancelled(cal: &ICalendar) -> bool {
    main_event(cal).is_some_and(|c| {
        matches!(
            c.property(&ICalendarProperty::Status)
                .and_then(|e| e.values.first()),
            Some(ICalendarValue::Status(
                calcard::icalendar::ICalendarStatus::Cancelled
            ))
        )
    })
}

/// The attendee's current PARTSTAT in the organizer's copy (lowercase), or `None` when
/// they are no longer invited.
pub fn current_partstat(cal: &ICalendar, attendee: &CalAddress) -> Option<String> {
    let main = main_event(cal)?;
    main.properties(&ICalendarProperty::Attendee)
        .find(|e| calendar::entry_address(e).as_ref() == Some(attendee))
        .map(|e| calendar::Person::from_entry(e).partstat)
}

/// The REPLY `attendee` would send to answer `stored` (the organizer's copy) with
/// `answer` and an optional comment: the master component (or the first one) with
/// UID, SEQUENCE, ORGANIZER and the attendee's own line, as RFC 5546 §3.2.3 asks.
/// `None` when the attendee is not (or no longer) on the event.
pub fn reply_for(
    stored: &ICalendar,
    attendee: &CalAddress,
    answer: Answer,
    comment: Option<&str>,
    now: i64,
) -> Option<ICalendar> {
    let main = main_event(stored)?;
    let me = main
        .properties(&ICalendarProperty::Attendee)
        .find(|e| calendar::entry_address(e).as_ref() == Some(attendee))?;
    let mut comp = ICalendarComponent::new(main.component_type.clone());
    if main.component_type != ICalendarComponentType::VEvent
        && main.component_type != ICalendarComponentType::VTodo
    {
        return None;
    }
    for property in [
        ICalendarProperty::Uid,
        ICalendarProperty::Sequence,
        ICalendarProperty::RecurrenceId,
    ] {
        if let Some(entry) = main.property(&property) {
            comp.entries.push(entry.clone());
        }
    }
    comp.add_property(
        ICalendarProperty::Dtstamp,
        ICalendarValue::PartialDateTime(Box::new(utc_date_time(now))),
    );
    if let Some(organizer) = main.property(&ICalendarProperty::Organizer) {
        comp.entries.push(without_server_params(organizer));
    }
    let mut line = without_server_params(me);
    set_param(
        &mut line,
        ICalendarParameterName::Partstat,
        vec![ICalendarParameterValue::Partstat(answer.partstat())],
    );
    // RSVP stays as the organizer wrote it, so later updates still ask for an answer.
    comp.entries.push(line);
    comp.entries.push(
        calcard::icalendar::ICalendarEntry::new(ICalendarProperty::RequestStatus).with_values(
            vec![
                ICalendarValue::Text("2.0".into()),
                ICalendarValue::Text("Success".into()),
            ],
        ),
    );
    if let Some(comment) = comment.map(str::trim).filter(|c| !c.is_empty()) {
        comp.add_property(
            ICalendarProperty::Comment,
            ICalendarValue::Text(comment.to_string()),
        );
    }
    Some(MessageCalendar::build(
        Some(&Method::Reply),
        vec![ComponentTree::leaf(comp)],
        stored,
        crate::itip::export::Timezones::IfUsed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn token() -> RsvpToken {
        RsvpToken {
            user: "alice".into(),
            uid: "lunch@example.com".into(),
            attendee: "mailto:bob@outside.example".into(),
            expires: 2_000,
        }
    }

    /// Why `text` is refused at `now`.
    fn refusal(text: &str, now: i64) -> TokenError {
        RsvpToken::verify(text, KEY, now).unwrap_err()
    }

    #[test]
    fn a_signed_token_reads_back_before_its_expiry() {
        let text = token().sign(KEY);
        assert_eq!(RsvpToken::verify(&text, KEY, 1_000), Ok(token()));
        assert_eq!(RsvpToken::verify(&text, KEY, 2_000), Ok(token()));
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let text = token().sign(KEY);
        assert_eq!(refusal(&text, 2_001), TokenError::Expired);
    }

    #[test]
    fn a_token_with_another_attendee_swapped_in_is_refused_as_altered() {
        let text = token().sign(KEY);
        let (_, tag) = text.split_once('.').unwrap();
        let forged = RsvpToken {
            attendee: "mailto:mallory@outside.example".into(),
            ..token()
        };
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            refusal(&format!("{body}.{tag}"), 1_000),
            TokenError::Altered
        );
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused_as_altered() {
        let text = token().sign(b"another key");
        assert_eq!(refusal(&text, 1_000), TokenError::Altered);
    }

    #[test]
    fn a_truncated_or_oversized_token_is_malformed() {
        let text = token().sign(KEY);
        let (body, _) = text.split_once('.').unwrap();
        assert_eq!(refusal(body, 1_000), TokenError::Malformed);
        assert_eq!(refusal(&format!("{body}.!!"), 1_000), TokenError::Malformed);
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(refusal(&long, 1_000), TokenError::Malformed);
    }

    fn request(rsvp: &str, rrule: &str) -> ItipMessage {
        let text = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nMETHOD:REQUEST\r\n\
             BEGIN:VEVENT\r\nUID:lunch@example.com\r\nDTSTAMP:20300101T000000Z\r\n\
             DTSTART:20300102T120000Z\r\nDTEND:20300102T130000Z\r\n{rrule}SUMMARY:Lunch\r\n\
             ORGANIZER:mailto:alice@example.com\r\n\
             ATTENDEE;PARTSTAT=NEEDS-ACTION{rsvp}:mailto:bob@outside.example\r\n\
             END:VEVENT\r\nEND:VCALENDAR\r\n"
        );
        ItipMessage {
            method: Method::Request,
            from: CalAddress::parse("mailto:alice@example.com").unwrap(),
            to: vec![CalAddress::parse("mailto:bob@outside.example").unwrap()],
            calendar: ICalendar::parse(&text).unwrap(),
            summary: crate::itip::MessageSummary::Invite,
        }
    }

    fn settings() -> LinkSettings {
        LinkSettings {
            public_url: "https://cal.example.com/".into(),
            key: KEY.to_vec(),
            max_lifetime: 1_000_000,
        }
    }

    #[test]
    fn links_go_only_to_attendees_asked_to_answer() {
        let bob = CalAddress::parse("mailto:bob@outside.example").unwrap();
        let asked = settings().links_for(&request(";RSVP=TRUE", ""), &bob, "alice", 0);
        let links = asked.expect("RSVP=TRUE gets links");
        assert!(links.accept.starts_with("https://cal.example.com/rsvp/"));
        assert!(links.accept.ends_with("?answer=accepted"));
        assert!(links.maybe.ends_with("?answer=tentative"));
        assert!(links.decline.ends_with("?answer=declined"));
        assert_eq!(
            settings().links_for(&request("", ""), &bob, "alice", 0),
            None
        );
        assert_eq!(
            settings().links_for(&request(";RSVP=FALSE", ""), &bob, "alice", 0),
            None
        );
    }

    #[test]
    fn a_link_lasts_until_the_event_ends_or_the_maximum_for_endless_series() {
        let once = request(";RSVP=TRUE", "");
        // 2030-01-02T13:00:00Z
        assert_eq!(expiry(&once.calendar, 0, 1_000_000), 1_893_589_200);
        let endless = request(";RSVP=TRUE", "RRULE:FREQ=WEEKLY\r\n");
        assert_eq!(expiry(&endless.calendar, 500, 1_000_000), 1_000_500);
    }

    #[test]
    fn invitations_show_the_links_in_the_recipients_language_and_keep_the_calendar_part() {
        let bob = CalAddress::parse("mailto:bob@outside.example").unwrap();
        let msg = request(";RSVP=TRUE;LANGUAGE=de", "");
        let links = settings().links_for(&msg, &bob, "alice", 0).unwrap();
        let opts = crate::imip::OutgoingOptions::default();
        let stamp = crate::imip::Stamp {
            now: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            unique: 1,
        };
        let with =
            crate::imip::build_message_with_links(&msg, &bob, &opts, &stamp, Some(&links)).unwrap();
        let without = crate::imip::build_message(&msg, &bob, &opts, &stamp).unwrap();
        use mail_parser::MimeHeaders;
        let parse = |bytes: &[u8]| {
            let mail = mail_parser::MessageParser::default().parse(bytes).unwrap();
            let text = mail.body_text(0).unwrap().into_owned();
            let html = mail.body_html(0).unwrap().into_owned();
            let ics: Vec<String> = mail
                .parts
                .iter()
                .filter(|p| {
                    p.content_type().is_some_and(|c| {
                        c.subtype().unwrap_or_default().contains("calendar")
                            || c.subtype() == Some("ics")
                    })
                })
                .map(|p| String::from_utf8_lossy(p.contents()).into_owned())
                .collect();
            (text, html, ics)
        };
        let (text, html, ics) = parse(&with.bytes);
        assert!(
            text.contains("Antworten aus jedem E-Mail-Programm:"),
            "{text}"
        );
        assert!(
            text.contains(&format!("Zusagen: {}", links.accept)),
            "{text}"
        );
        assert!(
            text.contains(&format!("Absagen: {}", links.decline)),
            "{text}"
        );
        assert!(html.contains(">Vielleicht</a>"), "{html}");
        let (plain_text, _, plain_ics) = parse(&without.bytes);
        assert!(!plain_text.contains("/rsvp/"), "{plain_text}");
        assert_eq!(ics.len(), 2);
        assert_eq!(ics, plain_ics, "the calendar parts differ");
    }

    #[test]
    fn the_reply_carries_the_answer_and_comment_for_that_attendee_only() {
        let bob = CalAddress::parse("mailto:bob@outside.example").unwrap();
        let stored = request(";RSVP=TRUE", "").calendar;
        let reply = reply_for(&stored, &bob, Answer::Accepted, Some("See you"), 0).unwrap();
        let text = reply.to_string();
        assert!(text.contains("METHOD:REPLY"), "{text}");
        assert!(text.contains("PARTSTAT=ACCEPTED"), "{text}");
        assert!(text.contains("RSVP=TRUE"), "{text}");
        assert!(text.contains("COMMENT:See you"), "{text}");
        assert!(text.contains("UID:lunch@example.com"), "{text}");
        let carol = CalAddress::parse("mailto:carol@outside.example").unwrap();
        assert!(reply_for(&stored, &carol, Answer::Accepted, None, 0).is_none());
    }
}
