//! Incoming mail: from the bytes the MTA hands over to a decision per recipient.
//!
//! The MTA delivers over LMTP; this module decides. It extracts the iTIP message, takes
//! the [`FromCheck`] of its sender (see `imip::sender_auth`: DKIM/SPF/DMARC or a
//! trusted Authentication-Results header), applies it to each recipient's calendar
//! through the store, and answers each recipient with what the MTA should do: accepted
//! (applied, or deliberately ignored with the reason logged), try again later (store
//! busy, disk full, DNS down), or refused (when configured to bounce).
//!
//! The policy, secure by default: a message about an event the recipient already has
//! (an update, ADD, CANCEL or DECLINECOUNTER from the organizer; a REPLY, COUNTER or
//! REFRESH from an attendee) is applied only when its From is authenticated; the
//! engine then checks that this From is the ORGANIZER or ATTENDEE the message speaks
//! for. A new invitation follows `import_policy`.

use crate::config::{ImportPolicy, LmtpSection};
use crate::imip::sender_auth::{self, FromCheck};
use crate::imip::{self, IncomingOptions};
use crate::itip::status::FAILED;
use crate::itip::{validate, CalAddress, Method};
use crate::smtp::dsn::parse_dsn;
use crate::smtp::verp::{BounceAddress, BounceToken};
use crate::store::apply::{Applier, ApplyError, Writes};
use crate::store::layout::Store;
use crate::store::state::State;
use calcard::icalendar::{ICalendarEntry, ICalendarProperty, ICalendarValue};

/// What the MTA is told for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 250: applied, or deliberately ignored; the text says which and why.
    Accepted(String),
    /// 451: nothing was applied; try again later.
    TryLater(String),
    /// 5xx: refused for good (only when `bounce_refused` is set).
    Refused {
        /// SMTP reply code.
        code: u16,
        /// Enhanced status code.
        enhanced: &'static str,
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// The verdict with `; note` added to its text (e.g. a `method=` parameter that
    /// disagreed with the calendar's METHOD), so the decision log shows it.
    pub fn noted(self, note: Option<&str>) -> Verdict {
        let Some(note) = note else {
            return self;
        };
        match self {
            Verdict::Accepted(text) => Verdict::Accepted(format!("{text}; {note}")),
            Verdict::TryLater(text) => Verdict::TryLater(format!("{text}; {note}")),
            Verdict::Refused {
                code,
                enhanced,
                reason,
            } => Verdict::Refused {
                code,
                enhanced,
                reason: format!("{reason}; {note}"),
            },
        }
    }

    /// The LMTP reply line this verdict becomes, for logs and `imipd inject`.
    pub fn lmtp_reply(&self) -> String {
        match self {
            Verdict::Accepted(text) => format!("250 2.0.0 {text}"),
            Verdict::TryLater(text) => format!("451 4.3.0 {text}"),
            Verdict::Refused {
                code,
                enhanced,
                reason,
            } => format!("{code} {enhanced} {reason}"),
        }
    }
}

/// How [`Inbound::deliver_as`] serialises a change with other writers:
/// `lock(Some(user), apply)` runs `apply` while nobody else changes `user`'s calendars,
/// `lock(None, apply)` while nobody else changes any.
pub type StoreLock<'a> = dyn Fn(Option<&str>, &mut dyn FnMut()) + 'a;

/// Whether a RCPT is one imipd takes mail for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientCheck {
    /// A local user.
    User(String),
    /// A copy of a local user's mail (`[lmtp] copy_domain`): only calendar mail is
    /// acted on, and a copy is never bounced (the original was delivered).
    Copy(String),
    /// The bounce address (DSNs for messages imipd sent).
    Bounces,
    /// Nobody here: 550 5.1.1.
    Unknown,
}

/// The local user `rcpt` reaches, and whether it is a copy address (`[lmtp]
/// copy_domain`). A subaddress (`alice+team@`, with `subaddress_separator`) reaches
/// its user; the original address stays in the logs.
pub fn local_user<'s>(
    store: &'s Store,
    settings: &LmtpSection,
    rcpt: &str,
) -> Option<(&'s crate::config::User, bool)> {
    let address = CalAddress::parse(rcpt)?;
    let (local, domain) = address.as_str().rsplit_once('@')?;
    let local = match settings.subaddress_separator.as_deref() {
        Some(sep) if !sep.is_empty() => local.split(sep).next().unwrap_or(local),
        _ => local,
    };
    if let Some(copy_domain) = settings.copy_domain.as_deref() {
        if domain.eq_ignore_ascii_case(copy_domain) {
            if let Some(user) = store.user(local) {
                return Some((user, true));
            }
            let mut named = store.users().filter(|u| {
                u.addresses
                    .iter()
                    .any(|a| a.as_str().split('@').next() == Some(local))
            });
            return match (named.next(), named.next()) {
                (Some(user), None) => Some((user, true)),
                _ => None,
            };
        }
    }
    let plain = CalAddress::parse(&format!("{local}@{domain}"))?;
    store.user_for_address(&plain).map(|user| (user, false))
}

/// Decides about incoming mail.
pub struct Inbound<'a> {
    /// The calendar store.
    pub store: &'a Store,
    /// imipd's state.
    pub state: &'a State,
    /// `[lmtp]` settings.
    pub settings: &'a LmtpSection,
    /// How answers are written.
    pub reply_details: crate::itip::ReplyDetails,
    /// The bounce address family (`imipd-bounces+<item>@<domain>`).
    pub bounces: &'a BounceAddress,
    /// The secret that signs bounce tokens: only bounces naming a signed token count.
    pub bounce_key: &'a [u8],
}

impl Inbound<'_> {
    /// RCPT-time check.
    pub fn check_recipient(&self, rcpt: &str) -> RecipientCheck {
        if let Some((user, copy)) = local_user(self.store, self.settings, rcpt) {
            return if copy {
                RecipientCheck::Copy(user.name.clone())
            } else {
                RecipientCheck::User(user.name.clone())
            };
        }
        if self.bounces.matches(rcpt) {
            return RecipientCheck::Bounces;
        }
        RecipientCheck::Unknown
    }

    fn refuse_or_ignore(&self, enhanced: &'static str, reason: String) -> Verdict {
        if self.settings.bounce_refused {
            Verdict::Refused {
                code: 550,
                enhanced,
                reason,
            }
        } else {
            Verdict::Accepted(format!("ignored: {reason}"))
        }
    }

    /// Applies one message to each recipient's calendar; one verdict per recipient, in
    /// order. Recipients must have passed [`Self::check_recipient`]. The caller
    /// serialises this with other writers of the store.
    ///
    /// The sender is judged from the message alone (a trusted Authentication-Results
    /// header, or `insecure_trust_from_header`); the LMTP server, which can ask DNS,
    /// uses [`Self::deliver_as`] with the full check.
    pub fn deliver(
        &self,
        mail_from: &str,
        recipients: &[String],
        data: &[u8],
        now: i64,
    ) -> Vec<Verdict> {
        let check = sender_auth::check_headers_only(
            data,
            mail_from,
            &self.settings.trusted_authserv_ids,
            self.settings.insecure_trust_from_header,
        );
        self.deliver_as(
            Writes::Yes,
            mail_from,
            recipients,
            data,
            now,
            &check,
            &|_, apply| apply(),
        )
    }

    /// [`Self::deliver`], taking a lock around each recipient's change: `lock(user,
    /// apply)` must run `apply` while no other writer changes `user`'s calendars
    /// (`None`: the change may touch any user's calendar, e.g. a bounce). Parsing
    /// happens outside the lock, so deliveries to different users overlap. `sender` is
    /// what was established about the From (see `imip::sender_auth`). Writes nothing
    /// when `writes` is [`Writes::No`] (`imipd inject --dry-run`): the verdicts are
    /// those the real run would give now.
    #[allow(clippy::too_many_arguments)]
    pub fn deliver_as(
        &self,
        writes: Writes,
        mail_from: &str,
        recipients: &[String],
        data: &[u8],
        now: i64,
        sender: &FromCheck,
        lock: &StoreLock<'_>,
    ) -> Vec<Verdict> {
        let options = IncomingOptions {
            max_message_size: self.settings.max_message_size,
            max_calendar_size: self.settings.max_calendar_size,
            trusted_authserv_ids: self.settings.trusted_authserv_ids.clone(),
            ..IncomingOptions::default()
        };
        let envelope_from = (!mail_from.is_empty()).then_some(mail_from);
        let parsed = imip::parse_incoming(data, envelope_from, &options);
        let locked = |user: Option<&str>, decide: &dyn Fn() -> Verdict| {
            let mut verdict = None;
            lock(user, &mut || verdict = Some(decide()));
            verdict.unwrap_or_else(|| Verdict::TryLater("the store could not be locked".into()))
        };
        recipients
            .iter()
            .map(|rcpt| match self.check_recipient(rcpt) {
                RecipientCheck::Unknown => Verdict::Refused {
                    code: 550,
                    enhanced: "5.1.1",
                    reason: format!("{rcpt}: no such calendar user here"),
                },
                RecipientCheck::Bounces => locked(None, &|| self.note_bounce(writes, rcpt, data)),
                RecipientCheck::User(user) => match &parsed {
                    Err(err) => {
                        self.refuse_or_ignore("5.6.0", format!("not an iMIP message: {err}"))
                    }
                    Ok(incoming) => locked(Some(&user), &|| {
                        self.deliver_to(writes, &user, rcpt, incoming, sender, now)
                            .noted(incoming.method_note.as_deref())
                    }),
                },
                // The original went to the user's inbox: a copy is acted on when it is
                // calendar mail, and otherwise dropped at once, never bounced.
                RecipientCheck::Copy(user) => match &parsed {
                    Err(imip::ImipError::NoCalendarPart) => {
                        Verdict::Accepted(format!("dropped: not calendar mail (a copy for {user})"))
                    }
                    Err(err) => Verdict::Accepted(format!(
                        "ignored: not an iMIP message: {err} (a copy for {user})"
                    )),
                    Ok(incoming) => match locked(Some(&user), &|| {
                        self.deliver_to(writes, &user, rcpt, incoming, sender, now)
                            .noted(incoming.method_note.as_deref())
                    }) {
                        Verdict::Refused { reason, .. } => {
                            Verdict::Accepted(format!("ignored: {reason} (a copy for {user})"))
                        }
                        other => other,
                    },
                },
            })
            .collect()
    }

    fn deliver_to(
        &self,
        writes: Writes,
        user: &str,
        rcpt: &str,
        incoming: &imip::IncomingItip,
        sender: &FromCheck,
        now: i64,
    ) -> Verdict {
        let Some(user) = self.store.user(user) else {
            return Verdict::TryLater(format!("{rcpt}: user configuration changed, try again"));
        };
        let Some(from) = incoming.sender.from.as_ref().map(|m| m.address.clone()) else {
            return self.refuse_or_ignore("5.7.1", "the message has no usable From address".into());
        };
        if let FromCheck::TryLater { reason } = sender {
            return Verdict::TryLater(format!("sender of {from} not checked yet: {reason}"));
        }
        // The check was about the From header's domain; it vouches for this address.
        let authenticated = sender.believed();
        let uid = incoming.calendar.uids().next().map(str::to_string);
        let existing = match &uid {
            Some(uid) => match self.state.find_uid(&user.name, uid) {
                Ok(found) => found.is_some(),
                Err(e) => return Verdict::TryLater(e.to_string()),
            },
            None => false,
        };
        if existing && !authenticated {
            return self.refuse_or_ignore(
                "5.7.1",
                format!(
                    "{} from {from} about an existing event refused: {}",
                    crate::itip::method_name(&incoming.method),
                    sender.describe()
                ),
            );
        }
        let applied_key = incoming
            .message_id
            .as_ref()
            .map(|id| format!("{id}\u{0}{}", user.name));
        if let Some(key) = &applied_key {
            match self.state.was_applied(key) {
                Ok(true) => return Verdict::Accepted("already applied (same Message-ID)".into()),
                Ok(false) => {}
                Err(e) => return Verdict::TryLater(e.to_string()),
            }
        }
        let mut calendar = incoming.calendar.clone();
        // A secretary signs for the organizer or an attendee as their SENT-BY.
        let from = if authenticated {
            represented_by(&incoming.calendar, &from).unwrap_or(from)
        } else {
            from
        };
        // A Google group calendar's owner speaks for it, once DKIM/DMARC vouched for
        // the owner's address (never on the insecure option alone); the owner is
        // recorded as SENT-BY, and only that owner may change the event later.
        let from = match sender {
            FromCheck::Authenticated { .. } => {
                match crate::itip::alias::record_group_calendar_sender(&calendar, &from) {
                    Some((recorded, organizer)) => {
                        calendar = recorded;
                        organizer
                    }
                    None => from,
                }
            }
            _ => from,
        };
        let may_import = match self.settings.import_policy {
            ImportPolicy::Everyone => true,
            ImportPolicy::Authenticated => authenticated,
            ImportPolicy::Nobody => false,
        };
        ensure_method(&mut calendar, &incoming.method);
        // Nothing reaches a calendar file that does not have RFC 5545's structure:
        // what has one safe reading is repaired (and said), the rest refused.
        let kind = match incoming.method {
            Method::Request | Method::Add | Method::Publish => validate::Kind::CreatingMessage,
            _ => validate::Kind::Message,
        };
        let repaired = match validate::repair(&mut calendar, kind, now) {
            Ok(done) if done.is_empty() => None,
            Ok(done) => Some(format!("repaired: {}", done.join(", "))),
            Err(invalid) => {
                return self.refuse_or_ignore("5.6.0", format!("InvalidCalendar: {invalid}"))
            }
        };
        let applier = Applier {
            store: self.store,
            state: self.state,
            reply_details: self.reply_details,
        };
        let verdict = match applier.apply_as(
            writes,
            user,
            &calendar,
            &from,
            now,
            may_import,
            applied_key.as_deref(),
        ) {
            Ok(applied) => Verdict::Accepted(format!(
                "{} {}{}{}",
                crate::itip::method_name(&incoming.method),
                action_text(applied.action),
                applied
                    .key
                    .as_ref()
                    .map(|k| format!(" ({k})"))
                    .unwrap_or_default(),
                applied.refused_note()
            )),
            Err(err) if err.is_temporary() => Verdict::TryLater(err.to_string()),
            Err(ApplyError::ImportNotAllowed) => self.refuse_or_ignore(
                "5.7.1",
                format!("{}; {}", ApplyError::ImportNotAllowed, sender.describe()),
            ),
            Err(err @ ApplyError::Itip(_)) => self.refuse_or_ignore("5.7.1", err.to_string()),
            Err(err) => Verdict::Accepted(format!("ignored: {err}")),
        };
        verdict.noted(repaired.as_deref())
    }
}

impl Inbound<'_> {
    /// A delivery report for an email imipd sent: the attendee it failed for gets
    /// SCHEDULE-STATUS 5.1 on the organizer's copy. Matched by the signed VERP token of
    /// the bounce address, else the signed ENVID; anything else is ignored (anyone can
    /// mail the bounce address, and UIDs and recipients are no secret).
    fn note_bounce(&self, writes: Writes, rcpt: &str, data: &[u8]) -> Verdict {
        let report = match parse_dsn(data) {
            Ok(report) => report,
            Err(err) => return Verdict::Accepted(format!("ignored at the bounce address: {err}")),
        };
        // Only a token imipd signed names a message: from the bounce address it came
        // to, or from the ENVID the MTA returned.
        let id = self
            .bounces
            .token_of(rcpt)
            .and_then(|t| t.verified_queue_item(self.bounce_key))
            .or_else(|| {
                let token = report.envelope_id.as_deref()?.strip_prefix("imipd.")?;
                BounceToken::new(token)
                    .ok()?
                    .verified_queue_item(self.bounce_key)
            });
        let sent = match id.map(|id| self.state.sent(id)).transpose() {
            Ok(found) => found.flatten(),
            Err(err) => return Verdict::TryLater(err.to_string()),
        };
        let Some(sent) = sent else {
            return Verdict::Accepted(
                "ignored: a bounce that names no message imipd signed and remembers".into(),
            );
        };
        let failed: Vec<&str> = report
            .recipients
            .iter()
            .filter(|r| r.is_permanent_failure())
            .map(|r| r.status.as_str())
            .collect();
        let Some(status) = failed.first() else {
            return Verdict::Accepted(format!("delay notice for {} noted", sent.rcpt));
        };
        let Some(attendee) = CalAddress::parse(&sent.rcpt) else {
            return Verdict::Accepted("ignored: the bounced recipient is not an address".into());
        };
        let applier = Applier {
            store: self.store,
            state: self.state,
            reply_details: self.reply_details,
        };
        let recorded = match writes {
            Writes::Yes => applier.record_status(&sent.status_object, &attendee, FAILED),
            Writes::No => Ok(false),
        };
        match recorded {
            Ok(_) => Verdict::Accepted(format!(
                "bounce ({status}) for {attendee}: SCHEDULE-STATUS {FAILED} recorded on {}",
                sent.status_object
            )),
            Err(err) if err.is_temporary() => Verdict::TryLater(err.to_string()),
            Err(err) => Verdict::Accepted(format!("bounce for {attendee} not recorded: {err}")),
        }
    }
}

/// The ORGANIZER or ATTENDEE whose SENT-BY is `from`, when it is in `from`'s own domain
/// (the domain that was authenticated vouches for its own mailboxes; a SENT-BY of
/// another domain is only the message's claim, and is not taken).
fn represented_by(
    calendar: &calcard::icalendar::ICalendar,
    from: &CalAddress,
) -> Option<CalAddress> {
    use crate::itip::snapshot::{entry_address, param_address};
    use calcard::icalendar::ICalendarParameterName;
    calendar
        .components
        .iter()
        .flat_map(|component| component.entries.iter())
        .filter(|entry| {
            matches!(
                entry.name,
                ICalendarProperty::Organizer | ICalendarProperty::Attendee
            )
        })
        .filter(|entry| {
            entry
                .params
                .iter()
                .filter(|p| p.name == ICalendarParameterName::SentBy)
                .any(|p| param_address(&p.value).as_ref() == Some(from))
        })
        .filter_map(entry_address)
        .find(|address| address != from && address.domain().eq_ignore_ascii_case(from.domain()))
}

/// Google and others send `method=` on the MIME part but no METHOD inside: add it.
fn ensure_method(calendar: &mut calcard::icalendar::ICalendar, method: &crate::itip::Method) {
    if let Some(root) = calendar.components.first_mut() {
        if !root.has_property(&ICalendarProperty::Method) {
            root.entries.push(
                ICalendarEntry::new(ICalendarProperty::Method)
                    .with_value(ICalendarValue::Method(method.clone())),
            );
        }
    }
}

fn action_text(action: crate::itip::InboundAction) -> &'static str {
    use crate::itip::InboundAction::*;
    match action {
        Imported => "imported",
        Updated => "applied",
        Cancelled => "applied (event cancelled)",
        Unchanged => "already up to date",
        RefreshAnswered => "answered with the current event",
        CounterProposed => "noted: a proposal for the organizer, nothing changed",
        CounterDeclined => "noted: the organizer declined the proposal",
        RefreshRequested => "unknown event: asked the organizer for it (REFRESH)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn site(lmtp_extra: &str) -> (Store, LmtpSection) {
        let text = format!(
            "[store]\nroot = \"/nonexistent\"\n\
             [[user]]\nname = \"alice\"\naddresses = [\"alice@example.com\"]\n\
             [[user]]\nname = \"bob\"\naddresses = [\"Bob.Smith@example.org\"]\n\
             [lmtp]\nlisten = \"127.0.0.1:2424\"\n{lmtp_extra}"
        );
        let config = Config::from_text(&text, Path::new("/etc/imipd/imipd.toml")).expect("config");
        let store = Store::new(&config.store, config.users().expect("users"));
        (store, config.lmtp.expect("lmtp"))
    }

    fn reached(store: &Store, lmtp: &LmtpSection, rcpt: &str) -> Option<(String, bool)> {
        local_user(store, lmtp, rcpt).map(|(u, copy)| (u.name.clone(), copy))
    }

    /// Asserts whom each recipient reaches (user name, and whether as a copy address).
    fn assert_reached(settings: &str, cases: &[(&str, Option<(&str, bool)>)]) {
        let (store, lmtp) = site(settings);
        for (rcpt, expected) in cases {
            let expected = expected.map(|(name, copy)| (name.to_string(), copy));
            assert_eq!(reached(&store, &lmtp, rcpt), expected, "{rcpt}");
        }
    }

    #[test]
    fn subaddresses_reach_their_user_only_when_a_separator_is_configured() {
        assert_reached("", &[("alice+team@example.com", None)]);
        assert_reached(
            "subaddress_separator = \"+\"\n",
            &[
                ("Alice+Team@Example.com", Some(("alice", false))),
                ("alice@example.com", Some(("alice", false))),
                ("carol+x@example.com", None),
            ],
        );
    }

    /// By folder name or by the local part of the user's address; the user's own
    /// address is no copy.
    #[test]
    fn a_copy_address_maps_back_to_its_user_by_folder_or_local_part() {
        assert_reached(
            "copy_domain = \"imipd.invalid\"\n",
            &[
                ("alice@imipd.invalid", Some(("alice", true))),
                ("bob.smith@imipd.invalid", Some(("bob", true))),
                ("mallory@imipd.invalid", None),
                ("alice@example.com", Some(("alice", false))),
            ],
        );
    }
}
