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

use super::attendee_list::AttendeeList;
use super::calendar::{self, MethodProperty, People, Person};
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
    /// What the mail shows of the other attendees (`[mail] attendee_list`).
    pub attendee_list: AttendeeList,
}

impl Default for OutgoingOptions {
    fn default() -> Self {
        OutgoingOptions {
            default_language: Language::En,
            languages: BTreeMap::new(),
            system_senders: BTreeMap::new(),
            message_id_domain: "imipd.invalid".to_string(),
            attachment_name: "invite.ics".to_string(),
            attendee_list: AttendeeList::default(),
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
    PreparedMail::borrowed(msg, opts)?.build_for(recipient, opts, stamp, links)
}

/// One iTIP message's mail, with everything that is the same for all its recipients
/// done once: the iCalendar serialised and encoded (quoted-printable inline, base64
/// attached), the people indexed, the sender worked out, and the texts rendered once
/// per language and kind. [`Self::build_for`] then adds what differs per recipient:
/// the headers, the boundaries and RSVP links. The bytes are those
/// [`build_message_with_links`] gives for the same recipient, because it is built on
/// this.
#[derive(Debug)]
pub struct PreparedMail<'m> {
    msg: std::borrow::Cow<'m, ItipMessage>,
    method: &'static str,
    people: People,
    originator: sender::Originator,
    uid: Option<String>,
    /// The `text/calendar; method=…` part, headers and encoded body.
    calendar_part: Vec<u8>,
    /// The `application/ics` attachment, headers and encoded body.
    attachment_part: Vec<u8>,
    /// Subject and encoded text and HTML parts, by language and kind (without links).
    texts: Vec<(Language, MailKind, Texts)>,
    /// The ATTENDEE addresses, parsed once for every recipient's hidden-list copy.
    attendees: Option<super::attendee_list::AttendeeIndex>,
}

/// Subject and the encoded text/plain and text/html parts of one rendering.
#[derive(Debug, Clone)]
struct Texts {
    subject: String,
    text_part: Vec<u8>,
    html_part: Vec<u8>,
}

impl<'m> PreparedMail<'m> {
    /// Prepares the mail of `msg`, which it keeps; `opts` must be the options later
    /// given to [`Self::build_for`].
    pub fn new(
        msg: ItipMessage,
        opts: &OutgoingOptions,
    ) -> Result<PreparedMail<'static>, ImipError> {
        PreparedMail::prepare(std::borrow::Cow::Owned(msg), opts)
    }

    /// [`Self::new`] for a message the caller keeps.
    pub fn borrowed(msg: &'m ItipMessage, opts: &OutgoingOptions) -> Result<Self, ImipError> {
        PreparedMail::prepare(std::borrow::Cow::Borrowed(msg), opts)
    }

    fn prepare(
        msg: std::borrow::Cow<'m, ItipMessage>,
        opts: &OutgoingOptions,
    ) -> Result<Self, ImipError> {
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
        // Written by hand so `method=` appears unquoted, exactly as Outlook and
        // Google write it; some clients match the parameter literally.
        let calendar_part = encoded(MimePart::raw(ics.as_str()).header(
            "Content-Type",
            Raw::new(format!("text/calendar; method={method}; charset=utf-8")),
        ));
        let attachment_part = encoded(
            MimePart::new(
                ContentType::new("application/ics").attribute("name", opts.attachment_name.clone()),
                ics.into_bytes(),
            )
            .attachment(opts.attachment_name.clone()),
        );
        let originator = sender::originator(&msg, &opts.system_senders);
        let uid = calendar::uid(&msg.calendar).map(str::to_string);
        Ok(PreparedMail {
            people: People::of(&msg.calendar),
            msg,
            method,
            originator,
            uid,
            calendar_part,
            attachment_part,
            texts: Vec::new(),
            attendees: None,
        })
    }

    /// The message being sent.
    pub fn message(&self) -> &ItipMessage {
        &self.msg
    }

    /// Builds the email to `recipient`, with RSVP links when given. Under
    /// `[mail] attendee_list = "hidden"` an organizer's message is first cut down to
    /// what the recipient may see ([`super::attendee_list::hidden_for`]), which makes
    /// this mail's calendar its own.
    pub fn build_for(
        &mut self,
        recipient: &CalAddress,
        opts: &OutgoingOptions,
        stamp: &Stamp,
        links: Option<&super::rsvp::RsvpLinks>,
    ) -> Result<OutgoingMail, ImipError> {
        if opts.attendee_list == AttendeeList::Hidden {
            let msg = &self.msg;
            let index = (self.attendees)
                .get_or_insert_with(|| super::attendee_list::AttendeeIndex::of(msg));
            if let Some(own) = super::attendee_list::hidden_with(msg, index, recipient) {
                return PreparedMail::new(own, opts)?
                    .build_for_recipient(recipient, opts, stamp, links);
            }
        }
        self.build_for_recipient(recipient, opts, stamp, links)
    }

    fn build_for_recipient(
        &mut self,
        recipient: &CalAddress,
        opts: &OutgoingOptions,
        stamp: &Stamp,
        links: Option<&super::rsvp::RsvpLinks>,
    ) -> Result<OutgoingMail, ImipError> {
        let msg: &ItipMessage = &self.msg;
        let person = self.people.find(recipient);
        let language = language_of(msg, person, recipient, opts);
        let kind = MailKind::of(msg, recipient, &self.people);
        let to = sender::recipient_mailbox(person, recipient);
        let rendered;
        let texts = match links {
            // Links are the recipient's own: these texts are rendered for them alone.
            Some(_) => {
                rendered = texts_of(msg, &kind, language, links, opts.attendee_list)?;
                &rendered
            }
            None => {
                let at = match self
                    .texts
                    .iter()
                    .position(|(l, k, _)| *l == language && *k == kind)
                {
                    Some(at) => at,
                    None => {
                        let texts = texts_of(msg, &kind, language, None, opts.attendee_list)?;
                        self.texts.push((language, kind, texts));
                        self.texts.len() - 1
                    }
                };
                &self.texts[at].2
            }
        };

        let method = self.method;
        let id = digest(&[
            self.uid.as_deref().unwrap_or_default().as_bytes(),
            recipient.as_str().as_bytes(),
            method.as_bytes(),
            &stamp.now.timestamp_micros().to_be_bytes(),
            &stamp.unique.to_be_bytes(),
        ]);
        let message_id = format!("{id}@{}", opts.message_id_domain);
        let boundary =
            |role: &str| format!("imipd.{role}.{}", digest(&[role.as_bytes(), id.as_bytes()]));

        // The parts were encoded when prepared; a part without headers is written as
        // it is.
        let alternative = MimePart::new(
            ContentType::new("multipart/alternative").attribute("boundary", boundary("alt")),
            vec![
                MimePart::raw(texts.text_part.as_slice()),
                MimePart::raw(texts.html_part.as_slice()),
                MimePart::raw(self.calendar_part.as_slice()),
            ],
        );
        let body = MimePart::new(
            ContentType::new("multipart/mixed").attribute("boundary", boundary("mixed")),
            vec![alternative, MimePart::raw(self.attachment_part.as_slice())],
        );

        let item = self.uid.clone().map(|uid| ItemRef {
            uid,
            recipient: recipient.clone(),
        });
        let originator = &self.originator;
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
            envelope_from: originator.from.address.clone(),
            recipient: recipient.clone(),
            subject: texts.subject.clone(),
            language,
            item,
        })
    }
}

/// Renders and encodes the texts of one mail.
fn texts_of(
    msg: &ItipMessage,
    kind: &MailKind,
    language: Language,
    links: Option<&super::rsvp::RsvpLinks>,
    list: AttendeeList,
) -> Result<Texts, ImipError> {
    let texts = render_with_links(msg, kind, language, links, list)?;
    Ok(Texts {
        text_part: encoded(MimePart::new(
            ContentType::new("text/plain").attribute("charset", "utf-8"),
            texts.text,
        )),
        html_part: encoded(MimePart::new(
            ContentType::new("text/html").attribute("charset", "utf-8"),
            texts.html,
        )),
        subject: texts.subject,
    })
}

/// A leaf part as mail-builder writes it inside a multipart: headers, a blank line
/// and the transfer-encoded body.
fn encoded(part: MimePart<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(part.size() * 4 / 3 + 256);
    part.write_part(&mut out);
    out
}

/// The language of mail to `recipient`: their LANGUAGE parameter, else the
/// configured preference of the recipient, then of the sender, else the default.
pub fn recipient_language(
    msg: &ItipMessage,
    recipient: &CalAddress,
    opts: &OutgoingOptions,
) -> Language {
    let person = calendar::find_person(&msg.calendar, recipient);
    language_of(msg, person.as_ref(), recipient, opts)
}

/// [`recipient_language`] for a recipient already looked up.
fn language_of(
    msg: &ItipMessage,
    person: Option<&Person>,
    recipient: &CalAddress,
    opts: &OutgoingOptions,
) -> Language {
    person
        .and_then(|p| p.language.as_deref())
        .and_then(Language::from_tag)
        .or_else(|| opts.languages.get(recipient).copied())
        .or_else(|| opts.languages.get(&msg.from).copied())
        .unwrap_or(opts.default_language)
}

fn address(mailbox: &Mailbox) -> Address<'static> {
    Address::new_address(mailbox.name.clone(), mailbox.address.to_string())
}
