//! Who may change a local calendar by email: each case is one email as the MTA would
//! deliver it, decided by the same code the LMTP server uses, against a real store,
//! with the default (secure) settings and `mx.example.com` as the site's MTA. Mail
//! whose From the MTA vouches for carries its Authentication-Results header (see
//! [`verified`]); the engine then checks that this From is the organizer or attendee
//! the message speaks for. Every refused case leaves the stored copy byte-for-byte
//! unchanged. DKIM/SPF/DMARC checked by imipd itself: `sender_auth_dns.rs`.

use imipd::config::LmtpSection;
use imipd::daemon::inbound::Verdict;

#[path = "support/mod.rs"]
mod support;
use support::fixture::{self, MailSite};

const NOW: i64 = 1_900_000_000;

/// Alice's and Bob's calendars, each with one event, under the secure defaults.
struct Site(MailSite);

support::deref_to!(Site => MailSite, 0);

const ORGANIZER_COPY: &str = support::events::budget_copy!(
    "ATTENDEE;RSVP=TRUE:mailto:carol@example.net\r\n",
    "ATTENDEE;RSVP=TRUE:mailto:dave@example.net\r\n",
    "RRULE:FREQ=WEEKLY;COUNT=3\r\n",
);

/// Bob's copy of an event Dave organizes.
const ATTENDEE_COPY: &str =
    support::events::review_copy!("ATTENDEE;RSVP=TRUE:mailto:carol@example.net\r\n");

impl Site {
    fn new(name: &str) -> Site {
        let settings = LmtpSection {
            trusted_authserv_ids: vec!["mx.example.com".into()],
            ..fixture::lmtp_settings_secure(true)
        };
        let site = MailSite::new(&format!("inbound-{name}"), &["alice", "bob"], settings);
        std::fs::write(
            site.dir.join("stores/alice/calendar/budget.ics"),
            ORGANIZER_COPY,
        )
        .expect("alice's event");
        std::fs::write(
            site.dir.join("stores/bob/calendar/review.ics"),
            ATTENDEE_COPY,
        )
        .expect("bob's event");
        fixture::baseline(&site.store, &site.state, NOW);
        Site(site)
    }

    fn deliver(&self, rcpt: &str, mail: &str) -> Verdict {
        self.0
            .deliver("sender@example.net", rcpt, mail.as_bytes(), NOW)
    }

    fn alice(&self) -> String {
        std::fs::read_to_string(self.dir.join("stores/alice/calendar/budget.ics"))
            .expect("alice's copy")
    }

    fn bob(&self) -> String {
        std::fs::read_to_string(self.dir.join("stores/bob/calendar/review.ics"))
            .expect("bob's copy")
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            fixture::assert_valid_files(&self.0.dir.join("stores"));
        }
    }
}

/// An iMIP email as a client would send it.
fn email(from: &str, message_id: &str, extra_headers: &str, method: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: someone@example.com\r\nSubject: iMIP\r\nMessage-ID: <{message_id}>\r\n{extra_headers}\
         MIME-Version: 1.0\r\nContent-Type: text/calendar; method={method}; charset=utf-8\r\n\r\n\
         BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Client//EN\r\nMETHOD:{method}\r\nBEGIN:VEVENT\r\n{body}END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// The site's MTA vouching for the From domain of `from` (DMARC passed).
fn verified(from: &str) -> String {
    let domain = from.rsplit_once('@').map_or(from, |(_, d)| d);
    format!("Authentication-Results: mx.example.com; dmarc=pass header.from={domain}\r\n")
}

fn reply_body(attendee: &str, partstat: &str) -> String {
    format!(
        "UID:budget-1\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:1\r\nORGANIZER:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT={partstat}:mailto:{attendee}\r\nREQUEST-STATUS:2.0;Success\r\n"
    )
}

fn refused(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Refused { code: 550, .. })
}

#[test]
fn an_attendees_reply_is_applied_once_even_when_delivered_twice() {
    let site = Site::new("replay");
    let mail = email(
        "carol@example.net",
        "r1@example.net",
        &verified("carol@example.net"),
        "REPLY",
        &reply_body("carol@example.net", "ACCEPTED"),
    );
    assert!(
        matches!(site.deliver("alice@example.com", &mail), Verdict::Accepted(t) if t.contains("applied"))
    );
    let after_first = site.alice();
    assert!(
        after_first
            .replace("\r\n ", "")
            .contains("PARTSTAT=ACCEPTED;SCHEDULE-STATUS=2.0:mailto:carol"),
        "{after_first}"
    );
    assert!(
        matches!(site.deliver("alice@example.com", &mail), Verdict::Accepted(t) if t.contains("already applied"))
    );
    assert_eq!(site.alice(), after_first);
}

#[test]
fn a_reply_from_someone_not_invited_is_refused() {
    let site = Site::new("stranger");
    let mail = email(
        "mallory@example.org",
        "m1@example.org",
        &verified("mallory@example.org"),
        "REPLY",
        &reply_body("mallory@example.org", "ACCEPTED"),
    );
    assert!(refused(&site.deliver("alice@example.com", &mail)));
    assert_eq!(site.alice(), ORGANIZER_COPY);
}

#[test]
fn a_reply_whose_from_is_not_the_attendee_is_refused() {
    let site = Site::new("impersonation");
    let mail = email(
        "mallory@example.org",
        "m2@example.org",
        &verified("mallory@example.org"),
        "REPLY",
        &reply_body("carol@example.net", "DECLINED"),
    );
    assert!(refused(&site.deliver("alice@example.com", &mail)));
    assert_eq!(site.alice(), ORGANIZER_COPY);
}

#[test]
fn a_cancel_or_request_not_from_the_organizer_is_refused() {
    let site = Site::new("not-organizer");
    let cancel = email(
        "carol@example.net",
        "c1@example.net",
        &verified("carol@example.net"),
        "CANCEL",
        "UID:review-1\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:3\r\nSTATUS:CANCELLED\r\nORGANIZER:mailto:dave@example.net\r\n\
         ATTENDEE:mailto:bob@example.com\r\nATTENDEE:mailto:carol@example.net\r\n",
    );
    assert!(refused(&site.deliver("bob@example.com", &cancel)));
    let request = email(
        "carol@example.net",
        "c2@example.net",
        &verified("carol@example.net"),
        "REQUEST",
        "UID:review-1\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:3\r\nDTSTART:20300412T120000Z\r\nDTEND:20300412T130000Z\r\n\
         SUMMARY:Review (moved)\r\nORGANIZER:mailto:dave@example.net\r\nATTENDEE:mailto:bob@example.com\r\nATTENDEE:mailto:carol@example.net\r\n",
    );
    assert!(refused(&site.deliver("bob@example.com", &request)));
    assert_eq!(site.bob(), ATTENDEE_COPY);
}

#[test]
fn a_refresh_from_a_stranger_gets_nothing() {
    let site = Site::new("refresh");
    let mail = email(
        "mallory@example.org",
        "m3@example.org",
        &verified("mallory@example.org"),
        "REFRESH",
        "UID:budget-1\r\nDTSTAMP:20300102T090000Z\r\nORGANIZER:mailto:alice@example.com\r\nATTENDEE:mailto:mallory@example.org\r\n",
    );
    assert!(refused(&site.deliver("alice@example.com", &mail)));
    assert!(
        site.state.queue().expect("queue").is_empty(),
        "no answer is queued"
    );
    assert_eq!(site.alice(), ORGANIZER_COPY);
}

#[test]
fn a_forged_from_without_an_authenticated_verdict_is_refused_by_default() {
    let site = Site::new("forged");
    let forged = email(
        "carol@example.net",
        "f1@example.net",
        "",
        "REPLY",
        &reply_body("carol@example.net", "DECLINED"),
    );
    assert!(refused(&site.deliver("alice@example.com", &forged)));
    assert_eq!(site.alice(), ORGANIZER_COPY);
    // An Authentication-Results header from an MTA we do not trust changes nothing.
    let untrusted = email(
        "carol@example.net",
        "f2@example.net",
        "Authentication-Results: evil.example.org; dmarc=pass header.from=example.net\r\n",
        "REPLY",
        &reply_body("carol@example.net", "DECLINED"),
    );
    assert!(refused(&site.deliver("alice@example.com", &untrusted)));
    assert_eq!(site.alice(), ORGANIZER_COPY);
    // Our own MTA's verdict is believed.
    let trusted = email(
        "carol@example.net",
        "f3@example.net",
        "Authentication-Results: mx.example.com; dmarc=pass header.from=example.net\r\n",
        "REPLY",
        &reply_body("carol@example.net", "DECLINED"),
    );
    assert!(matches!(
        site.deliver("alice@example.com", &trusted),
        Verdict::Accepted(_)
    ));
    assert!(site.alice().contains("PARTSTAT=DECLINED"));
}

#[test]
fn a_reply_that_tries_to_add_an_occurrence_for_a_stranger_is_refused() {
    let site = Site::new("add-instance");
    let mail = email(
        "mallory@example.org",
        "m4@example.org",
        &verified("mallory@example.org"),
        "REPLY",
        "UID:budget-1\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:1\r\nRECURRENCE-ID:20300417T120000Z\r\n\
         ORGANIZER:mailto:alice@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:mallory@example.org\r\n",
    );
    assert!(refused(&site.deliver("alice@example.com", &mail)));
    assert_eq!(site.alice(), ORGANIZER_COPY);
}

#[test]
fn an_old_request_arriving_late_is_refused() {
    let site = Site::new("stale");
    let mail = email(
        "dave@example.net",
        "d1@example.net",
        &verified("dave@example.net"),
        "REQUEST",
        "UID:review-1\r\nDTSTAMP:20291201T090000Z\r\nSEQUENCE:1\r\nDTSTART:20300409T120000Z\r\nDTEND:20300409T130000Z\r\n\
         SUMMARY:Review (old time)\r\nORGANIZER:mailto:dave@example.net\r\nATTENDEE:mailto:bob@example.com\r\n",
    );
    assert!(refused(&site.deliver("bob@example.com", &mail)));
    assert_eq!(site.bob(), ATTENDEE_COPY);
}

#[test]
fn unknown_recipients_and_mail_without_a_calendar_get_clear_answers() {
    let site = Site::new("rcpt");
    let mail = email(
        "carol@example.net",
        "x1@example.net",
        "",
        "REPLY",
        &reply_body("carol@example.net", "ACCEPTED"),
    );
    match site.deliver("nobody@example.com", &mail) {
        Verdict::Refused { code, enhanced, .. } => assert_eq!((code, enhanced), (550, "5.1.1")),
        other => panic!("{other:?}"),
    }
    let plain =
        "From: carol@example.net\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nJust text.\r\n";
    match site.deliver("alice@example.com", plain) {
        Verdict::Refused { reason, .. } => {
            assert!(reason.contains("not an iMIP message"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(site.alice(), ORGANIZER_COPY);
}

fn bounce(to: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.com\r\nTo: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         Message-ID: <bounce-{to}@mx.example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nThe message could not be delivered.\r\n\
         --b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n\
         Final-Recipient: rfc822; carol@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n--b1--\r\n"
    )
}

#[test]
fn a_forged_bounce_is_ignored_and_a_signed_one_is_recorded() {
    use imipd::smtp::verp::BounceToken;
    use imipd::store::state::{Batch, SentRecord};
    let site = Site::new("bounce");
    site.state
        .commit(Batch {
            sent: vec![SentRecord {
                id: 7,
                at: NOW,
                uid: "budget-1".into(),
                rcpt: "carol@example.net".into(),
                status_object: "alice/calendar/budget.ics".into(),
            }],
            ..Batch::default()
        })
        .expect("sent record");
    // Anyone can write to the bounce address, guessing the plain queue number.
    match site.deliver(
        "imipd-bounces+q7@example.com",
        &bounce("imipd-bounces+q7@example.com"),
    ) {
        Verdict::Accepted(text) => assert!(text.starts_with("ignored"), "{text}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        site.alice(),
        ORGANIZER_COPY,
        "a forged bounce changes nothing"
    );
    // A bounce to the address imipd really used is believed.
    let signed = format!(
        "imipd-bounces+{}@example.com",
        BounceToken::signed(7, b"test key")
    );
    match site.deliver(&signed, &bounce(&signed)) {
        Verdict::Accepted(text) => assert!(text.contains("SCHEDULE-STATUS 5.1"), "{text}"),
        other => panic!("{other:?}"),
    }
    let unfolded = site.alice().replace("\r\n ", "");
    assert!(
        unfolded
            .lines()
            .any(|l| l.contains("mailto:carol@example.net") && l.contains("SCHEDULE-STATUS=5.1")),
        "{unfolded}"
    );
}
