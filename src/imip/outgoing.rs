//! iTIP message → RFC 6047 email, one per recipient.
//!
//! The layout is the one CalConnect recommends and Cyrus, Google and Outlook read:
//!
//! ```text
//! multipart/mixed
//! ├── multipart/alternative
//! │   ├── text/plain                                   (readable on its own)
//! │   ├── text/html
//! │   └── text/calendar; method=REQUEST; charset=utf-8 (what Outlook acts on)
//! └── application/ics; name="invite.ics"             (attachment, for the rest)
//! ```
//!
//! Both calendar parts carry the exact text of [`ItipMessage::to_ics`], and `method=`
//! is always the METHOD inside (a message where they differ is refused). Everything
//! that would vary between runs (date, Message-ID, MIME boundaries) comes from the
//! caller's [`Stamp`], so tests can pin the bytes. This module does not send mail or
//! change the calendar (adding VTIMEZONEs or an ORGANIZER is the engine's job).

use super::calendar::{self, MethodProperty};
use super::error::ImipError;
use super::i18n::Language;
use super::ids::digest;
use super::kind::MailKind;
use super::render::render_with_links;
use super::sender::{self, Mailbox};
use super::tracking::{format_item_ref, ItemRef, TRACKING_HEADER};
use crate::itip::{method_name, CalAddress, ItipMessage};
use chrono::{DateTime, Utc};
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;
use std::collections::BTreeMap;

/// Settings for building outgoing mail; built once from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingOptions {
    /// The language used when neither the recipient's LANGUAGE parameter nor
    /// [`languages`](Self::languages) says otherwise.
    pub default_language: Language,
    /// Preferred language per calendar user, looked up for the recipient first and
    /// then for the sender (a local user's setting for the mail they send).
    pub languages: BTreeMap<CalAddress, Language>,
    /// Sender domains the relay cannot send as, mapped to the system mailbox to send
    /// from instead (the user then goes into Reply-To). Keys are lowercase domains.
    pub system_senders: BTreeMap<String, Mailbox>,
    /// The right-hand side of generated Message-IDs, e.g. the gateway's host name.
    pub message_id_domain: String,
    /// File name of the `application/ics` attachment.
    pub attachment_name: String,
}

impl Default for OutgoingOptions {
    fn default() -> Self {
        OutgoingOptions {
            default_language: Language::En,
            languages: BTreeMap::new(),
            system_senders: BTreeMap::new(),
            message_id_domain: "imipd.invalid".to_string(),
            attachment_name: "invite.ics".to_string(),
        }
    }
}

/// What varies from one mail to the next, supplied by the caller so tests are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The Date header.
    pub now: DateTime<Utc>,
    /// Makes the Message-ID and boundaries unique: a random number or a counter in
    /// the daemon (never reuse one for the same UID, recipient and second), a
    /// constant in tests.
    pub unique: u64,
}

/// One email, ready to hand to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// The complete RFC 5322 message, CRLF line ends.
    pub bytes: Vec<u8>,
    /// The Message-ID, without angle brackets, to log and to match replies.
    pub message_id: String,
    /// The suggested SMTP MAIL FROM: the From header's address.
    pub envelope_from: CalAddress,
    /// The SMTP RCPT TO.
    pub recipient: CalAddress,
    /// The Subject as a person sees it (before RFC 2047 encoding).
    pub subject: String,
    /// The language the texts were written in.
    pub language: Language,
    /// What the tracking header says (absent only if the calendar has no UID).
    pub item: Option<ItemRef>,
}

/// Builds the email that carries `msg` to `recipient`.
pub fn build_message(
    msg: &ItipMessage,
    recipient: &CalAddress,
    opts: &OutgoingOptions,
    stamp: &Stamp,
) -> Result<OutgoingMail, ImipError> {
    build_message_with_links(msg, recipient, opts, stamp, None)
}

/// [`build_message`], with Accept/Maybe/Decline links (`imip::rsvp`) in the plain and
/// HTML parts when `links` is given; the calendar parts are the same either way.
pub fn build_message_with_links(
    msg: &ItipMessage,
    recipient: &CalAddress,
    opts: &OutgoingOptions,
    stamp: &Stamp,
    links: Option<&super::rsvp::RsvpLinks>,
) -> Result<OutgoingMail, ImipError> {
    let method = method_name(&msg.method);
    match calendar::method_property(&msg.calendar) {
        Some(MethodProperty::Known(m)) if m == msg.method => {}
        other => {
            return Err(ImipError::OutgoingMethodMismatch {
                expected: method.to_string(),
                found: other.map_or_else(|| "no METHOD".to_string(), |m| m.name()),
            })
        }
    }
    let ics = msg.to_ics();
    let language = recipient_language(msg, recipient, opts);
    let kind = MailKind::of(msg, recipient);
    let texts = render_with_links(msg, &kind, language, links)?;
    let originator = sender::originator(msg, &opts.system_senders);
    let to = sender::recipient_mailbox(msg, recipient);

    let uid = calendar::uid(&msg.calendar).map(str::to_string);
    let id = digest(&[
        uid.as_deref().unwrap_or_default().as_bytes(),
        recipient.as_str().as_bytes(),
        method.as_bytes(),
        &stamp.now.timestamp_micros().to_be_bytes(),
        &stamp.unique.to_be_bytes(),
    ]);
    let message_id = format!("{id}@{}", opts.message_id_domain);
    let boundary =
        |role: &str| format!("imipd.{role}.{}", digest(&[role.as_bytes(), id.as_bytes()]));

    let alternative = MimePart::new(
        ContentType::new("multipart/alternative").attribute("boundary", boundary("alt")),
        vec![
            MimePart::new(
                ContentType::new("text/plain").attribute("charset", "utf-8"),
                texts.text,
            ),
            MimePart::new(
                ContentType::new("text/html").attribute("charset", "utf-8"),
                texts.html,
            ),
            // Written by hand so `method=` appears unquoted, exactly as Outlook and
            // Google write it; some clients match the parameter literally.
            MimePart::raw(ics.clone()).header(
                "Content-Type",
                Raw::new(format!("text/calendar; method={method}; charset=utf-8")),
            ),
        ],
    );
    let attachment = MimePart::new(
        ContentType::new("application/ics").attribute("name", opts.attachment_name.clone()),
        ics.into_bytes(),
    )
    .attachment(opts.attachment_name.clone());
    let body = MimePart::new(
        ContentType::new("multipart/mixed").attribute("boundary", boundary("mixed")),
        vec![alternative, attachment],
    );

    let item = uid.map(|uid| ItemRef {
        uid,
        recipient: recipient.clone(),
    });
    let mut builder = MessageBuilder::new()
        .from(address(&originator.from))
        .to(address(&to))
        .subject(texts.subject.clone())
        .date(Date::new(stamp.now.timestamp()))
        .message_id(message_id.clone())
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .header("X-Auto-Response-Suppress", Raw::new("OOF, AutoReply"))
        .header("Content-Language", Raw::new(language.tag()));
    if let Some(reply_to) = &originator.reply_to {
        builder = builder.reply_to(address(reply_to));
    }
    if let Some(item) = &item {
        builder = builder.header(
            TRACKING_HEADER,
            Raw::new(format_item_ref(&item.uid, &item.recipient)),
        );
    }
    let bytes = builder
        .body(body)
        .write_to_vec()
        .map_err(|e| ImipError::Template(format!("serialising the email: {e}")))?;

    Ok(OutgoingMail {
        bytes,
        message_id,
        envelope_from: originator.from.address,
        recipient: recipient.clone(),
        subject: texts.subject,
        language,
        item,
    })
}

/// The language of mail to `recipient`: their LANGUAGE parameter, else the
/// configured preference of the recipient, then of the sender, else the default.
pub fn recipient_language(
    msg: &ItipMessage,
    recipient: &CalAddress,
    opts: &OutgoingOptions,
) -> Language {
    calendar::find_person(&msg.calendar, recipient)
        .and_then(|p| p.language)
        .and_then(|tag| Language::from_tag(&tag))
        .or_else(|| opts.languages.get(recipient).copied())
        .or_else(|| opts.languages.get(&msg.from).copied())
        .unwrap_or(opts.default_language)
}

fn address(mailbox: &Mailbox) -> Address<'static> {
    Address::new_address(mailbox.name.clone(), mailbox.address.to_string())
}
