//! Mail from the calendar services people use, shaped as they send it (issue 23):
//! iCloud's token organizers with their `EMAIL=` (RFC 7986 §6.2), Google secondary and
//! group calendars (an organizer that is a calendar, mail from its owner), and a
//! `method=` parameter that disagrees with the calendar's METHOD (Google's "propose a
//! new time", Cyrus's test mail). Each mail is decided by the code the LMTP server
//! uses, against a real store, with the secure defaults and `mx.example.com` as the
//! site's MTA; every sender check still holds, and whatever is refused leaves the
//! stored copy byte for byte as it was.

use imipd::config::{Layout, LmtpSection};
use imipd::daemon::inbound::Verdict;
use imipd::store::layout::Store;
use imipd::store::state::State;

#[path = "support/mod.rs"]
mod support;
use support::{fixture, TempDir};

const NOW: i64 = 1_900_000_000;

/// Alice organizes; Carol (a Gmail user) is invited.
const ALICE_COPY: &str =
    support::events::budget_copy!("ATTENDEE;RSVP=TRUE:mailto:carol@gmail.com\r\n");

const ICLOUD_TOKEN: &str =
    "2_haytenjygm2dsnjuhe4dcmzzgq3tqmzygm2doojwhf3w4y3ugqytgmzwgqzdsnrvguytcnbvgnt@imip.me.com";

struct Site {
    dir: TempDir,
    store: Store,
    state: State,
    settings: LmtpSection,
}

impl Site {
    /// The secure defaults: only authenticated senders change or create anything.
    fn new(label: &str) -> Site {
        Site::with(label, fixture::lmtp_settings_secure(false))
    }

    fn with(label: &str, settings: LmtpSection) -> Site {
        let dir = TempDir::new(&format!("calendar-senders-{label}"));
        for user in ["alice", "bob"] {
            let folder = dir.path().join("stores").join(user).join("calendar");
            std::fs::create_dir_all(&folder).expect("store folder");
        }
        std::fs::write(
            dir.path().join("stores/alice/calendar/budget.ics"),
            ALICE_COPY,
        )
        .expect("Alice's event");
        let users = vec![fixture::user("alice"), fixture::user("bob")];
        let store = fixture::store(&dir.path().join("stores"), Layout::Vdir, users);
        let state = State::open(&dir.path().join("state.redb")).expect("state");
        fixture::baseline(&store, &state, NOW);
        Site {
            dir,
            store,
            state,
            settings: LmtpSection {
                trusted_authserv_ids: vec!["mx.example.com".into()],
                ..settings
            },
        }
    }

    /// Delivers `mail` to `rcpt`: ignored, its sender not being the organizer.
    fn refuses_not_organizer(&self, rcpt: &str, mail: &str) {
        let verdict = self.deliver(rcpt, mail);
        assert!(
            ignored(&verdict).contains("SenderIsNotOrganizer"),
            "{verdict:?}"
        );
    }

    fn deliver(&self, rcpt: &str, mail: &str) -> Verdict {
        fixture::deliver(
            &self.store,
            &self.state,
            &self.settings,
            rcpt,
            mail.as_bytes(),
            NOW,
        )
    }

    /// Every file in a user's calendar folder, sorted by name, with its text.
    fn files(&self, user: &str) -> Vec<(String, String)> {
        let folder = self.dir.path().join("stores").join(user).join("calendar");
        let mut files: Vec<(String, String)> = std::fs::read_dir(folder)
            .expect("folder")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "ics"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).expect("file");
                (p.file_name().unwrap().to_string_lossy().into_owned(), text)
            })
            .collect();
        files.sort();
        files
    }

    /// The one file of `user` holding `uid`, with folded lines joined.
    fn copy_of(&self, user: &str, uid: &str) -> Option<String> {
        self.files(user)
            .into_iter()
            .map(|(_, text)| text.replace("\r\n ", ""))
            .find(|text| text.contains(&format!("UID:{uid}")))
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            fixture::assert_valid_files(&self.dir.path().join("stores"));
        }
    }
}

fn fixture_mail(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/imip/inbound")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `mail` as if `from` (whose domain the site's MTA vouched for) had sent it.
fn sent_by(mail: &str, old_from: &str, from: &str) -> String {
    let old_domain = old_from
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or_default();
    let domain = from.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    mail.replace(&format!("<{old_from}>"), &format!("<{from}>"))
        .replace(
            &format!("header.from={old_domain}"),
            &format!("header.from={domain}"),
        )
        .replace(
            &format!("header.d={old_domain} "),
            &format!("header.d={domain} "),
        )
        .replace("Message-ID: <", "Message-ID: <other-")
        .replace("Message-Id: <", "Message-Id: <other-")
}

fn accepted(verdict: &Verdict) -> &str {
    match verdict {
        Verdict::Accepted(text) if !text.starts_with("ignored") => text,
        other => panic!("expected the mail to be applied, got {other:?}"),
    }
}

fn ignored(verdict: &Verdict) -> &str {
    match verdict {
        Verdict::Accepted(text) if text.starts_with("ignored") => text,
        other => panic!("expected the mail to be refused, got {other:?}"),
    }
}

#[test]
fn an_icloud_invitation_from_a_token_organizer_is_imported_and_its_cancel_applies() {
    let site = Site::new("icloud");
    let verdict = site.deliver("bob@example.com", &fixture_mail("icloud_invite.eml"));
    assert!(accepted(&verdict).contains("imported"), "{verdict:?}");
    let copy = site
        .copy_of("bob", "8F3C1A2B-4D5E-4F60-9A7B-1C2D3E4F5A6B")
        .expect("the invitation is in Bob's calendar");
    assert!(
        copy.contains(ICLOUD_TOKEN),
        "the organizer is kept as sent: {copy}"
    );
    assert!(copy.contains("EMAIL=jane.appleseed@icloud.com"));

    // Someone else at icloud.com, authenticated, cannot cancel it in Jane's name.
    let cancel = fixture_mail("icloud_cancel.eml");
    let forged = sent_by(&cancel, "jane.appleseed@icloud.com", "mallory@icloud.com");
    ignored(&site.deliver("bob@example.com", &forged));
    assert_eq!(
        site.copy_of("bob", "8F3C1A2B-4D5E-4F60-9A7B-1C2D3E4F5A6B")
            .as_deref(),
        Some(copy.as_str())
    );

    // Jane's CANCEL names her real address where the invitation had the token.
    let verdict = site.deliver("bob@example.com", &cancel);
    assert!(accepted(&verdict).contains("cancel"), "{verdict:?}");
    let cancelled = site
        .copy_of("bob", "8F3C1A2B-4D5E-4F60-9A7B-1C2D3E4F5A6B")
        .expect("the copy");
    assert!(cancelled.contains("STATUS:CANCELLED"), "{cancelled}");
    assert!(
        cancelled.contains(ICLOUD_TOKEN),
        "the organizer stays the token Bob's answers go to: {cancelled}"
    );
}

#[test]
fn an_icloud_invitation_from_someone_not_named_in_email_is_refused() {
    let site = Site::new("icloud-stranger");
    let mail = sent_by(
        &fixture_mail("icloud_invite.eml"),
        "jane.appleseed@icloud.com",
        "mallory@icloud.com",
    );
    site.refuses_not_organizer("bob@example.com", &mail);
    assert!(site.files("bob").is_empty(), "nothing imported");
}

#[test]
fn a_google_group_calendar_invitation_is_imported_and_only_its_sender_may_change_it() {
    let site = Site::new("google-group");
    let uid = "3q9v1b5n7m2k4j6h8g0f2d4s6a@google.com";
    let verdict = site.deliver("bob@example.com", &fixture_mail("google_group_invite.eml"));
    assert!(accepted(&verdict).contains("imported"), "{verdict:?}");
    let copy = site.copy_of("bob", uid).expect("imported");
    assert!(
        copy.contains("group.calendar.google.com") && copy.contains("SENT-BY="),
        "the owner is recorded as the calendar's SENT-BY: {copy}"
    );
    assert!(copy.contains("mailto:jane.doe@gmail.com"));

    // Another Gmail user, authenticated, may not cancel the group calendar's event.
    let cancel = fixture_mail("google_group_cancel.eml");
    let forged = sent_by(&cancel, "jane.doe@gmail.com", "mallory@gmail.com");
    site.refuses_not_organizer("bob@example.com", &forged);
    assert_eq!(site.copy_of("bob", uid).as_deref(), Some(copy.as_str()));

    // The owner who sent the invitation cancels it.
    let verdict = site.deliver("bob@example.com", &cancel);
    assert!(accepted(&verdict).contains("cancel"), "{verdict:?}");
    assert!(site
        .copy_of("bob", uid)
        .expect("copy")
        .contains("STATUS:CANCELLED"));
}

#[test]
fn a_google_group_calendar_invitation_needs_an_authenticated_sender() {
    // Without the MTA's verdict, and with a site that imports from everyone.
    let unauthenticated: String = fixture_mail("google_group_invite.eml")
        .lines()
        .skip_while(|l| !l.starts_with("MIME-Version"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let site = Site::with(
        "google-group-unauthenticated",
        LmtpSection {
            import_policy: imipd::config::ImportPolicy::Everyone,
            ..fixture::lmtp_settings_secure(false)
        },
    );
    site.refuses_not_organizer("bob@example.com", &unauthenticated);
    // The insecure option believes the From, but does not authenticate it: the rule for
    // group calendars still needs DKIM/DMARC.
    let site = Site::with("google-group-insecure", fixture::lmtp_settings(false));
    site.refuses_not_organizer("bob@example.com", &unauthenticated);
    assert!(site.files("bob").is_empty(), "nothing imported");
}

#[test]
fn googles_time_proposal_is_read_as_the_counter_its_calendar_says() {
    let site = Site::new("google-counter");
    let verdict = site.deliver("alice@example.com", &fixture_mail("google_counter.eml"));
    let text = accepted(&verdict);
    assert!(text.contains("COUNTER"), "{text}");
    assert!(
        text.contains("method=REPLY") && text.contains("METHOD:COUNTER"),
        "the disagreement is logged: {text}"
    );
    assert_eq!(
        site.files("alice")[0].1,
        ALICE_COPY,
        "a proposal changes nothing"
    );
    // The sender checks still hold: the same proposal from someone not invited.
    let stranger = sent_by(
        &fixture_mail("google_counter.eml"),
        "carol@gmail.com",
        "mallory@gmail.com",
    );
    ignored(&site.deliver("alice@example.com", &stranger));
}

/// Dave's review meeting for Bob, as a REQUEST under a `method=` parameter of choice.
fn daves_review(id: &str, param: &str, sequence: u32, summary: &str) -> String {
    format!(
        "Authentication-Results: mx.example.com; dmarc=pass header.from=example.net\r\n\
         From: dave@example.net\r\nTo: bob@example.com\r\nSubject: {summary}\r\n\
         Message-ID: <{id}@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/calendar; method={param}; charset=utf-8\r\n\r\n\
         BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//CyrusIMAP.org/Cyrus 3.8//EN\r\nMETHOD:REQUEST\r\n\
         BEGIN:VEVENT\r\nUID:review-1\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:{sequence}\r\n\
         DTSTART:20300412T120000Z\r\nDTEND:20300412T130000Z\r\nSUMMARY:{summary}\r\n\
         ORGANIZER:mailto:dave@example.net\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:dave@example.net\r\n\
         ATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

#[test]
fn a_request_under_a_method_cancel_parameter_is_applied_as_the_request_it_is() {
    let site = Site::new("cyrus-method");
    let invitation = daves_review("cyrus-0", "REQUEST", 2, "Review");
    accepted(&site.deliver("bob@example.com", &invitation));
    let mail = daves_review("cyrus-1", "CANCEL", 3, "Review (moved)");
    let verdict = site.deliver("bob@example.com", &mail);
    let text = accepted(&verdict);
    assert!(
        text.contains("REQUEST") && text.contains("method=CANCEL"),
        "{text}"
    );
    let copy = site.copy_of("bob", "review-1").expect("copy");
    assert!(copy.contains("Review (moved)") && !copy.contains("STATUS:CANCELLED"));
    // From anyone but the organizer it is still refused.
    let forged = daves_review("cyrus-2", "CANCEL", 4, "Review (forged)")
        .replace("From: dave@example.net", "From: carol@example.net");
    ignored(&site.deliver("bob@example.com", &forged));
    assert_eq!(site.copy_of("bob", "review-1"), Some(copy));
}

/// An invitation as an old client wrote it: no VERSION or PRODID, DTEND and a DURATION
/// that disagrees, a DTSTAMP with seven digits of time.
fn malformed_invitation(uid: &str, dtstart: &str) -> String {
    format!(
        "Authentication-Results: mx.example.com; dmarc=pass header.from=example.net\r\n\
         From: dave@example.net\r\nTo: bob@example.com\r\nSubject: Planning\r\n\
         Message-ID: <{uid}@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\r\n\
         BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
         DTSTAMP:20120713T1254140\r\nDTSTART:{dtstart}\r\nDTEND:20300412T130000Z\r\n\
         DURATION:PT3H\r\nSUMMARY:Planning\r\nORGANIZER:mailto:dave@example.net\r\n\
         ATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// [`malformed_invitation`] delivered to Bob: the verdict.
fn bob_gets_malformed(site: &Site, uid: &str, dtstart: &str) -> Verdict {
    site.deliver("bob@example.com", &malformed_invitation(uid, dtstart))
}

#[test]
fn a_malformed_invitation_is_repaired_before_it_is_stored_and_the_verdict_says_how() {
    let site = Site::new("malformed");
    let verdict = bob_gets_malformed(&site, "plan-1", "20300412T120000Z");
    let text = accepted(&verdict);
    assert!(text.contains("imported"), "{text}");
    assert!(
        text.contains("added VERSION:2.0")
            && text.contains("kept DTEND and dropped DURATION")
            && text.contains("DTSTAMP 20120713T1254140 replaced by the receive time"),
        "the verdict says what was repaired: {text}"
    );
    let copy = site.copy_of("bob", "plan-1").expect("imported");
    assert!(
        copy.contains("VERSION:2.0\r\n") && copy.contains("PRODID:"),
        "{copy}"
    );
    assert!(copy.contains("DTEND:20300412T130000Z") && !copy.contains("DURATION"));
    assert!(copy.contains("DTSTAMP:20300317T174640Z"), "{copy}");
    imipd::itip::validate::check_text(&copy).expect("the stored copy validates");
}

#[test]
fn a_malformed_invitation_without_a_safe_reading_is_refused_and_stores_nothing() {
    let site = Site::new("unreadable");
    // 30 February: no date, and nothing to replace it with.
    let verdict = bob_gets_malformed(&site, "plan-2", "20300230T120000Z");
    let text = ignored(&verdict);
    assert!(
        text.contains("InvalidCalendar") && text.contains("DTSTART 20300230T120000"),
        "{text}"
    );
    assert!(site.files("bob").is_empty(), "nothing imported");
}

/// Dave's weekly review, and one occurrence Bob is invited to as a guest.
fn weekly_with_a_guest(method: &str, body_end: &str) -> String {
    format!(
        "Authentication-Results: mx.example.com; dmarc=pass header.from=example.net\r\n\
         From: dave@example.net\r\nTo: bob@example.com\r\nSubject: Weekly\r\n\
         Message-ID: <weekly-{method}@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/calendar; method={method}; charset=utf-8\r\n\r\n\
         BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Example//EN\r\nMETHOD:{method}\r\n{body_end}END:VCALENDAR\r\n"
    )
}

const GUEST_OVERRIDE: &str =
    "BEGIN:VEVENT\r\nUID:weekly-9\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:0\r\n\
    RECURRENCE-ID:20300417T120000Z\r\nDTSTART:20300417T120000Z\r\nDTEND:20300417T130000Z\r\n\
    SUMMARY:Weekly (with a guest)\r\nORGANIZER:mailto:dave@example.net\r\n\
    ATTENDEE;PARTSTAT=ACCEPTED:mailto:dave@example.net\r\nATTENDEE:mailto:carol@example.net\r\n\
    ATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\nEND:VEVENT\r\n";

#[test]
fn a_guest_of_one_occurrence_stores_only_that_occurrence_and_its_cancel_applies() {
    let site = Site::new("guest");
    let master = "BEGIN:VEVENT\r\nUID:weekly-9\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:0\r\n\
        DTSTART:20300410T120000Z\r\nDTEND:20300410T130000Z\r\nRRULE:FREQ=WEEKLY;COUNT=4\r\n\
        SUMMARY:Weekly\r\nORGANIZER:mailto:dave@example.net\r\n\
        ATTENDEE;PARTSTAT=ACCEPTED:mailto:dave@example.net\r\nATTENDEE:mailto:carol@example.net\r\n\
        END:VEVENT\r\n";
    let verdict = site.deliver(
        "bob@example.com",
        &weekly_with_a_guest("REQUEST", &format!("{master}{GUEST_OVERRIDE}")),
    );
    assert!(accepted(&verdict).contains("imported"), "{verdict:?}");
    let copy = site.copy_of("bob", "weekly-9").expect("imported");
    assert!(
        !copy.contains("RRULE") && copy.contains("RECURRENCE-ID:20300417T120000Z"),
        "Bob's copy holds the occurrence he is invited to, not the series: {copy}"
    );
    let cancel = GUEST_OVERRIDE
        .replace("SEQUENCE:0", "SEQUENCE:1\r\nSTATUS:CANCELLED")
        .replace("DTSTAMP:20300102T090000Z", "DTSTAMP:20300103T090000Z");
    let verdict = site.deliver("bob@example.com", &weekly_with_a_guest("CANCEL", &cancel));
    assert!(accepted(&verdict).contains("cancel"), "{verdict:?}");
    assert!(site
        .copy_of("bob", "weekly-9")
        .expect("copy")
        .contains("STATUS:CANCELLED"));
}
