//! iMIP (RFC 6047): iTIP scheduling messages carried by email.
//!
//! Two directions, no I/O in either (one exception, named below: the sender check
//! asks DNS):
//!
//! - **Outgoing** ([`build_message`]): an [`ItipMessage`](crate::itip::ItipMessage)
//!   from the engine and one recipient become the bytes of an email in the layout all
//!   major clients recognise, with subject and bodies in the recipient's language.
//!   Sending it is the SMTP layer's job.
//! - **Incoming** ([`parse_incoming`]): the raw bytes of a received email become the
//!   one iTIP message it carries ([`IncomingItip`]) plus who sent it
//!   ([`SenderIdentity`]), or a typed refusal ([`ImipError`]). Applying it is the
//!   engine's job.
//!
//! Layout: `outgoing` (MIME assembly) uses `render` (minijinja templates in
//! `templates/`) which uses `i18n` (Fluent catalogues in `locales/`), `when`
//! (dates), `series` (next occurrence, end of a series, one occurrence), `changes`
//! (update lines) and `kind` (what the mail is); `sender` picks
//! From/Reply-To; `tracking` is the bounce-matching header; `ids` makes Message-IDs.
//! `incoming` uses `parts` (MIME walk), `identity` and `auth_results` (sender
//! evidence). `sender_auth` decides whether the From is genuine: a trusted
//! Authentication-Results header, else DKIM, SPF and DMARC checked over DNS with
//! `mail-auth` (the only I/O in this module). `calendar` holds read-only helpers over
//! calcard shared by both sides.
//! `rsvp` (signed link tokens, the REPLY a link stands for) and `rsvp_page` (the
//! answer page) serve the Accept/Maybe/Decline links of `daemon::web`.

pub mod attendee_list;
mod auth_results;
mod calendar;
mod changes;
pub mod error;
pub mod i18n;
mod identity;
mod ids;
pub mod incoming;
mod kind;
pub mod outgoing;
mod parts;
mod render;
pub mod rsvp;
pub mod rsvp_page;
pub mod sender;
pub mod sender_auth;
mod series;
pub mod tracking;
mod when;

pub use attendee_list::AttendeeList;
pub use error::ImipError;
pub use i18n::Language;
pub use identity::{AuthVerdict, SenderIdentity};
pub use incoming::{parse_incoming, IncomingItip, IncomingOptions};
pub use outgoing::{
    build_message, build_message_with_links, recipient_language, OutgoingMail, OutgoingOptions,
    PreparedMail, Stamp,
};
pub use sender::Mailbox;
pub use sender_auth::{ConnectingClient, FromCheck, SenderVerifier, VerifierSettings};
pub use tracking::{format_item_ref, parse_item_ref, ItemRef, TRACKING_HEADER};
