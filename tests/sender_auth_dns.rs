//! Sender authentication with real signatures and real DNS: every case is one email
//! handed to the daemon's own LMTP handler (the same sender check and decision as a
//! delivery from Postfix), with the default policy, against a real store. A dnsmasq
//! on loopback serves the test domains' DKIM keys, SPF and DMARC records; the keys are
//! made by the test and mails are signed with mail-auth's signer. Wherever nothing may
//! change, the stored copy is checked byte for byte.
//!
//! Where a test counts DNS queries, a [`CountingRelay`] on loopback passes each query on
//! to dnsmasq.
//!
//! The domains: `example.net` (Carol, an attendee of Alice's meeting; Dave, who
//! organizes Bob's) signs with selector `s1`, sends from 192.0.2.10 (SPF) and asks for
//! `p=reject`; `evil.net` signs with its own key and sends from 203.0.113.66.

use imipd::daemon::serve::{queue_settings, start, MailHandler};
use imipd::smtp::xforward::ForwardedClient;
use imipd::smtp::{LmtpHandler, ReceivedMessage, RecipientOutcome};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[path = "support/mod.rs"]
mod support;
use support::dns::{DkimKey, Dns};
use support::TempDir;

/// Alice organizes; Carol and Dave are invited.
const ALICE_COPY: &str = support::events::budget_copy!(
    "ATTENDEE;RSVP=TRUE:mailto:carol@example.net\r\n",
    "ATTENDEE;RSVP=TRUE:mailto:dave@example.net\r\n",
);

/// Bob's copy of a meeting Dave organizes.
const BOB_COPY: &str = support::events::review_copy!();

const GOOD_SERVER: &str = "192.0.2.10";
const ATTACKER: &str = "203.0.113.66";

struct Site {
    dir: TempDir,
    dns: Dns,
    /// Counts the DNS queries, when the test asked for it.
    relay: Option<CountingRelay>,
    handler: Arc<MailHandler>,
    example_net: DkimKey,
    evil_net: DkimKey,
}

impl Site {
    async fn new(label: &str) -> Site {
        Site::with(label, Vec::new(), "").await
    }

    /// The site, with more TXT records, more `[lmtp]` settings, and its DNS queries
    /// counted when `extra_lmtp` is not empty (a [`CountingRelay`] in front of dnsmasq).
    async fn with(label: &str, extra_records: Vec<(String, String)>, extra_lmtp: &str) -> Site {
        let example_net = DkimKey::from_seed(1);
        let evil_net = DkimKey::from_seed(2);
        let mut records = vec![
            (
                "s1._domainkey.example.net".to_string(),
                example_net.dns_record(),
            ),
            (
                "example.net".to_string(),
                format!("v=spf1 ip4:{GOOD_SERVER} -all"),
            ),
            (
                "_dmarc.example.net".to_string(),
                "v=DMARC1; p=reject".to_string(),
            ),
            ("s1._domainkey.evil.net".to_string(), evil_net.dns_record()),
            (
                "evil.net".to_string(),
                format!("v=spf1 ip4:{ATTACKER} -all"),
            ),
            (
                "_dmarc.evil.net".to_string(),
                "v=DMARC1; p=none".to_string(),
            ),
        ];
        records.extend(extra_records);
        let borrowed: Vec<(&str, String)> = records
            .iter()
            .map(|(name, text)| (name.as_str(), text.clone()))
            .collect();
        let dns = Dns::start(&borrowed);
        let relay = (!extra_lmtp.is_empty()).then(|| CountingRelay::start(dns.addr()));
        let dns_addr = relay.as_ref().map_or(dns.addr(), |r| r.addr);
        let dir = TempDir::new(&format!("sender-auth-{label}"));
        for (user, file, text) in [
            ("alice", "budget.ics", ALICE_COPY),
            ("bob", "review.ics", BOB_COPY),
        ] {
            let folder = dir.path().join("stores").join(user).join("calendar");
            std::fs::create_dir_all(&folder).expect("store folder");
            std::fs::write(folder.join(file), text).expect("event");
        }
        // The defaults, except where the site's MTA and DNS are.
        let config = format!(
            "state = \"state/imipd.redb\"\n[store]\nroot = \"stores\"\n\
             [[user]]\nname = \"alice\"\naddresses = [\"alice@example.com\"]\n\
             [[user]]\nname = \"bob\"\naddresses = [\"bob@example.com\"]\n\
             [mail]\ndomain = \"example.com\"\n[queue]\noutbox = \"outbox\"\n\
             [lmtp]\nlisten = \"127.0.0.1:0\"\ntrusted_authserv_ids = [\"mx.example.com\"]\n\
             dns_servers = [\"{dns_addr}\"]\ndns_timeout = 5\n{extra_lmtp}",
        );
        std::fs::write(dir.path().join("imipd.toml"), config).expect("configuration");
        let shared = start(&dir.path().join("imipd.toml")).await.expect("start");
        let settings = Arc::new(queue_settings(&shared.config()).expect("settings"));
        let handler = Arc::new(MailHandler::new(shared, settings));
        Site {
            dir,
            dns,
            relay,
            handler,
            example_net,
            evil_net,
        }
    }

    /// Delivers `mail` from the SMTP client `client_ip` with envelope `mail_from`, as
    /// Postfix would over LMTP with XFORWARD.
    async fn deliver(
        &self,
        rcpt: &str,
        mail_from: &str,
        client_ip: &str,
        mail: &str,
    ) -> RecipientOutcome {
        let mut outcomes = self
            .handler
            .deliver(ReceivedMessage {
                mail_from: mail_from.into(),
                recipients: vec![rcpt.into()],
                data: mail.as_bytes().to_vec(),
                lhlo: "mx.example.com".into(),
                peer: "127.0.0.1:10025".into(),
                client: ForwardedClient {
                    addr: Some(client_ip.parse().expect("ip")),
                    helo: Some("client.example".into()),
                    name: None,
                },
            })
            .await;
        assert_eq!(outcomes.len(), 1);
        outcomes.remove(0)
    }

    /// Delivers `mail` to `rcpt` (Alice or Bob): refused, the reason naming
    /// `reason`, and that copy byte for byte unchanged.
    async fn refuses(
        &self,
        rcpt: &str,
        mail_from: &str,
        client_ip: &str,
        mail: &str,
        reason: &str,
    ) {
        let outcome = self.deliver(rcpt, mail_from, client_ip, mail).await;
        assert_refused(&outcome, reason);
        self.assert_unchanged(rcpt);
    }

    /// [`Site::refuses`] for mail to Alice from the attacker's server and envelope.
    async fn refuses_from_attacker(&self, mail: &str, reason: &str) {
        self.refuses(
            "alice@example.com",
            "attacker@evil.net",
            ATTACKER,
            mail,
            reason,
        )
        .await;
    }

    /// Delivers `mail` to `rcpt` (Alice or Bob): accepted, ignored, that copy byte for
    /// byte unchanged.
    async fn ignores(&self, rcpt: &str, mail_from: &str, client_ip: &str, mail: &str) {
        let outcome = self.deliver(rcpt, mail_from, client_ip, mail).await;
        match &outcome {
            RecipientOutcome::Accepted(text) => assert!(text.starts_with("ignored"), "{text}"),
            other => panic!("{other:?}"),
        }
        self.assert_unchanged(rcpt);
    }

    fn assert_unchanged(&self, rcpt: &str) {
        match rcpt {
            "alice@example.com" => assert_eq!(self.alice(), ALICE_COPY),
            "bob@example.com" => assert_eq!(self.bob(), BOB_COPY),
            other => panic!("no copy kept for {other}"),
        }
    }

    fn alice(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stores/alice/calendar/budget.ics"))
            .expect("alice's copy")
    }

    fn bob(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stores/bob/calendar/review.ics"))
            .expect("bob's copy")
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            support::fixture::assert_valid_files(&self.dir.path().join("stores"));
        }
    }
}

/// An iMIP email as a client writes it; `headers` go on top (trace headers).
fn email(headers: &str, from: &str, id: &str, method: &str, body: &str) -> String {
    format!(
        "{headers}From: {from}\r\nTo: someone@example.com\r\nSubject: iMIP\r\nMessage-ID: <{id}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/calendar; method={method}; charset=utf-8\r\n\r\n\
         BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Client//EN\r\nMETHOD:{method}\r\nBEGIN:VEVENT\r\n\
         {body}END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// Carol's answer (`partstat`) to Alice's meeting as written by `from`, with
/// `headers` on top and Message-ID `id`.
fn carols_answer(headers: &str, from: &str, id: &str, partstat: &str) -> String {
    email(headers, from, id, "REPLY", &carols_reply(partstat))
}

fn carols_reply(partstat: &str) -> String {
    format!(
        "UID:budget-1\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:1\r\nORGANIZER:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT={partstat}:mailto:carol@example.net\r\n"
    )
}

const DAVES_CANCEL: &str =
    "UID:review-1\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:3\r\nSTATUS:CANCELLED\r\n\
ORGANIZER:mailto:dave@example.net\r\nATTENDEE:mailto:bob@example.com\r\n";

const DAVES_RESCHEDULE: &str = "UID:review-1\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:3\r\n\
DTSTART:20300412T070000Z\r\nDTEND:20300412T080000Z\r\nSUMMARY:Review (moved)\r\n\
ORGANIZER:mailto:dave@example.net\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:dave@example.net\r\n\
ATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\n";

/// Refused under the default policy: accepted by LMTP (bounce_refused is off), nothing
/// applied, and the reason names the failed authentication.
fn assert_refused(outcome: &RecipientOutcome, expected: &str) {
    match outcome {
        RecipientOutcome::Accepted(text) => {
            assert!(text.starts_with("ignored"), "not refused: {text}");
            assert!(
                text.contains("not authenticated") && text.contains(expected),
                "the reason should say why ({expected}): {text}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn assert_applied(outcome: &RecipientOutcome) {
    assert!(
        matches!(outcome, RecipientOutcome::Accepted(text) if text.contains("applied")),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_organizer_cancel_is_refused() {
    let site = Site::new("forged-cancel").await;
    let mail = email(
        "",
        "dave@example.net",
        "c1@evil.net",
        "CANCEL",
        DAVES_CANCEL,
    );
    site.refuses(
        "bob@example.com",
        "attacker@evil.net",
        ATTACKER,
        &mail,
        "dkim=none",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_reschedule_is_refused() {
    let site = Site::new("forged-reschedule").await;
    let mail = email(
        "",
        "Dave <dave@example.net>",
        "m1@evil.net",
        "REQUEST",
        DAVES_RESCHEDULE,
    );
    // Even with Dave's own domain as envelope sender: SPF fails from this client.
    site.refuses(
        "bob@example.com",
        "dave@example.net",
        ATTACKER,
        &mail,
        "spf=fail",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_attendee_reply_is_refused() {
    let site = Site::new("forged-reply").await;
    let mail = carols_answer("", "carol@example.net", "r1@evil.net", "DECLINED");
    site.refuses_from_attacker(&mail, "dmarc=fail").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_signed_by_another_domain_is_refused() {
    let site = Site::new("other-domain").await;
    let mail = carols_answer("", "carol@example.net", "r2@evil.net", "DECLINED");
    // A valid signature, and SPF passes for evil.net: neither is about example.net.
    let signed = site.evil_net.sign("evil.net", "s1", &mail);
    site.refuses(
        "alice@example.com",
        "bounce@evil.net",
        ATTACKER,
        &signed,
        "d=evil.net (not aligned",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_dmarc_pass_without_header_from_is_refused() {
    let site = Site::new("dmarc-no-from").await;
    let mail = carols_answer(
        "Authentication-Results: mx.example.com; dmarc=pass\r\n",
        "carol@example.net",
        "r3@evil.net",
        "DECLINED",
    );
    site.refuses_from_attacker(&mail, "Authentication-Results of mx.example.com")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_dkim_pass_for_another_signing_domain_is_refused() {
    let site = Site::new("dkim-identity").await;
    let mail = carols_answer("Authentication-Results: mx.example.com; dkim=pass header.d=evil.net header.i=@example.net\r\n", "carol@example.net", "r4@evil.net", "DECLINED");
    site.refuses_from_attacker(&mail, "dkim=pass").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authentication_results_header_the_sender_put_below_the_mtas_is_ignored() {
    let site = Site::new("below").await;
    // What the MTA wrote on top (its Received line, then its own verdict), and the
    // sender's forged copy under it.
    let headers = "Received: from client.example ([203.0.113.66]) by mx.example.com (Postfix) with ESMTP id 1\r\n\
         \tfor <alice@example.com>; Mon, 1 Apr 2030 10:00:00 +0000\r\n\
         Authentication-Results: mx.example.com; dkim=none; dmarc=fail header.from=example.net\r\n\
         Authentication-Results: mx.example.com; dmarc=pass header.from=example.net\r\n";
    let mail = carols_answer(headers, "carol@example.net", "r5@evil.net", "DECLINED");
    site.refuses_from_attacker(&mail, "dmarc=fail").await;

    // With no verdict of its own, a copy under a second Received line is the sender's:
    // imipd checks for itself, and the mail is unsigned.
    let headers = "Received: from client.example ([203.0.113.66]) by mx.example.com (Postfix); Mon, 1 Apr 2030 10:00:00 +0000\r\n\
         Received: from laptop by client.example; Mon, 1 Apr 2030 09:59:00 +0000\r\n\
         Authentication-Results: mx.example.com; dmarc=pass header.from=example.net\r\n";
    let deeper = carols_answer(headers, "carol@example.net", "r6@evil.net", "DECLINED");
    site.refuses_from_attacker(
        &deeper,
        "dkim=none (no signature); spf=pass (evil.net); dmarc=fail (checked by imipd)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_signature_on_a_body_altered_after_signing_is_refused() {
    let site = Site::new("altered").await;
    let mail = carols_answer("", "carol@example.net", "r7@example.net", "ACCEPTED");
    let signed = site.example_net.sign("example.net", "s1", &mail);
    let altered = signed.replace("PARTSTAT=ACCEPTED", "PARTSTAT=DECLINED");
    assert_ne!(altered, signed);
    site.refuses(
        "alice@example.com",
        "carol@example.net",
        ATTACKER,
        &altered,
        "dkim=neutral d=example.net (calculated body hash does not match",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_dns_down_a_signed_reply_is_deferred_and_applied_once_dns_is_back() {
    let mut site = Site::new("dns-down").await;
    let mail = carols_answer("", "carol@example.net", "r8@example.net", "ACCEPTED");
    let signed = site.example_net.sign("example.net", "s1", &mail);
    site.dns.stop();
    let outcome = site
        .deliver(
            "alice@example.com",
            "carol@example.net",
            GOOD_SERVER,
            &signed,
        )
        .await;
    match &outcome {
        RecipientOutcome::TempFail { reason, .. } => {
            assert!(reason.contains("DNS"), "{reason}")
        }
        other => panic!("expected 451, got {other:?}"),
    }
    assert_eq!(site.alice(), ALICE_COPY);
    site.dns.resume();
    let outcome = site
        .deliver(
            "alice@example.com",
            "carol@example.net",
            GOOD_SERVER,
            &signed,
        )
        .await;
    assert_applied(&outcome);
    let alice = site.alice();
    assert!(
        alice.contains("\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:carol@example.net\r\n"),
        "{alice}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correctly_signed_aligned_reply_is_applied() {
    let site = Site::new("signed").await;
    let mail = carols_answer(
        "",
        "Carol <carol@example.net>",
        "r9@example.net",
        "DECLINED",
    );
    let signed = site.example_net.sign("example.net", "s1", &mail);
    // Relayed by a mailing list's server: SPF is not example.net's, DKIM carries it.
    let outcome = site
        .deliver("alice@example.com", "bounces@evil.net", ATTACKER, &signed)
        .await;
    assert_applied(&outcome);
    let alice = site.alice();
    assert!(
        alice.contains("\r\nATTENDEE;PARTSTAT=DECLINED:mailto:carol@example.net\r\n"),
        "{alice}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_reply_from_the_domains_own_server_passes_dmarc_through_spf() {
    let site = Site::new("spf").await;
    let mail = carols_answer("", "carol@example.net", "r10@example.net", "TENTATIVE");
    // The client address comes from XFORWARD: the server example.net's SPF names.
    let outcome = site
        .deliver("alice@example.com", "carol@example.net", GOOD_SERVER, &mail)
        .await;
    assert_applied(&outcome);
    assert!(site.alice().contains("PARTSTAT=TENTATIVE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_reply_speaking_for_another_attendee_is_refused_even_when_signed() {
    let site = Site::new("speaks-for").await;
    // Dave is authenticated, but answers for Carol.
    let mail = carols_answer("", "dave@example.net", "r11@example.net", "DECLINED");
    let signed = site.example_net.sign("example.net", "s1", &mail);
    site.ignores(
        "alice@example.com",
        "dave@example.net",
        GOOD_SERVER,
        &signed,
    )
    .await;
}

const NEW_INVITATION: &str = "UID:offsite-7\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:0\r\n\
DTSTART:20300501T090000Z\r\nDTEND:20300501T170000Z\r\nSUMMARY:Offsite\r\n\
ORGANIZER:mailto:dave@example.net\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:dave@example.net\r\n\
ATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\n";

fn bobs_files(site: &Site) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(site.dir.path().join("stores/bob/calendar"))
        .expect("bob's calendar")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ics"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_invitation_is_imported_only_from_an_authenticated_sender() {
    let site = Site::new("import").await;
    let mail = email(
        "",
        "dave@example.net",
        "i1@example.net",
        "REQUEST",
        NEW_INVITATION,
    );
    // import_policy = "authenticated" (the default): a forged invitation stays out.
    let outcome = site
        .deliver("bob@example.com", "attacker@evil.net", ATTACKER, &mail)
        .await;
    match &outcome {
        RecipientOutcome::Accepted(text) => {
            assert!(text.starts_with("ignored: new invitations"), "{text}");
            assert!(text.contains("not authenticated"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(bobs_files(&site), ["review.ics"]);
    let signed = site.example_net.sign(
        "example.net",
        "s1",
        &mail.replace("i1@example.net", "i2@example.net"),
    );
    let outcome = site
        .deliver("bob@example.com", "dave@example.net", ATTACKER, &signed)
        .await;
    assert!(
        matches!(&outcome, RecipientOutcome::Accepted(text) if text.contains("imported")),
        "{outcome:?}"
    );
    assert_eq!(bobs_files(&site).len(), 2, "{:?}", bobs_files(&site));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secretary_of_the_organizers_domain_may_cancel_as_sent_by() {
    let site = Site::new("sent-by").await;
    let cancel = DAVES_CANCEL.replace(
        "ORGANIZER:mailto:dave@example.net",
        "ORGANIZER;SENT-BY=\"mailto:assistant@example.net\":mailto:dave@example.net",
    );
    let mail = email(
        "",
        "assistant@example.net",
        "c2@example.net",
        "CANCEL",
        &cancel,
    );
    let signed = site.example_net.sign("example.net", "s1", &mail);
    let outcome = site
        .deliver(
            "bob@example.com",
            "assistant@example.net",
            ATTACKER,
            &signed,
        )
        .await;
    assert_applied(&outcome);
    assert!(site.bob().contains("STATUS:CANCELLED"), "{}", site.bob());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_by_of_another_domain_is_not_taken_even_when_signed() {
    let site = Site::new("sent-by-elsewhere").await;
    let cancel = DAVES_CANCEL.replace(
        "ORGANIZER:mailto:dave@example.net",
        "ORGANIZER;SENT-BY=\"mailto:mallory@evil.net\":mailto:dave@example.net",
    );
    let mail = email("", "mallory@evil.net", "c3@evil.net", "CANCEL", &cancel);
    let signed = site.evil_net.sign("evil.net", "s1", &mail);
    site.ignores("bob@example.com", "mallory@evil.net", ATTACKER, &signed)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_mail_with_a_second_from_header_is_refused() {
    let site = Site::new("two-froms").await;
    let mail = carols_answer(
        "From: mallory@evil.net\r\n",
        "carol@example.net",
        "r12@example.net",
        "DECLINED",
    );
    // example.net's valid signature, but a reader may show either From.
    let signed = site.example_net.sign("example.net", "s1", &mail);
    site.refuses(
        "alice@example.com",
        "carol@example.net",
        GOOD_SERVER,
        &signed,
        "more than one From header",
    )
    .await;
}

/// A UDP DNS relay that counts the queries it passes on to `upstream`.
struct CountingRelay {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
}

impl CountingRelay {
    fn start(upstream: SocketAddr) -> CountingRelay {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("relay socket");
        let addr = socket.local_addr().expect("relay address");
        let queries = Arc::new(AtomicUsize::new(0));
        let counted = queries.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok((len, client)) = socket.recv_from(&mut buf) {
                counted.fetch_add(1, Ordering::SeqCst);
                let Ok(out) = UdpSocket::bind("127.0.0.1:0") else {
                    continue;
                };
                let _ = out.set_read_timeout(Some(Duration::from_secs(5)));
                if out.send_to(&buf[..len], upstream).is_err() {
                    continue;
                }
                let mut answer = [0u8; 4096];
                if let Ok(n) = out.recv(&mut answer) {
                    let _ = socket.send_to(&answer[..n], client);
                }
            }
        });
        CountingRelay { addr, queries }
    }

    /// Queries relayed since the last call.
    fn take(&self) -> usize {
        self.queries.swap(0, Ordering::SeqCst)
    }
}

/// How many signatures of a mailing list's domain the many-signatures mail carries,
/// each with its own selector, and the site's `lmtp.max_dkim_signatures`.
const LIST_SIGNATURES: usize = 200;
const DKIM_LIMIT: usize = 5;
/// The mailing list's server (SPF passes for neither domain).
const LIST_SERVER: &str = "198.51.100.7";

/// A site whose DNS queries are counted, knowing lists.org's 200 selectors.
async fn counted_site(label: &str) -> (Site, DkimKey) {
    let lists_org = DkimKey::from_seed(3);
    let mut records = vec![("lists.org".to_string(), "v=spf1 -all".to_string())];
    for i in 0..LIST_SIGNATURES {
        records.push((format!("s{i}._domainkey.lists.org"), lists_org.dns_record()));
    }
    let site = Site::with(
        label,
        records,
        &format!("max_dkim_signatures = {DKIM_LIMIT}\n"),
    )
    .await;
    (site, lists_org)
}

/// `mail` with `count` signatures of lists.org on top, each its own selector.
fn with_list_signatures(lists_org: &DkimKey, mail: &str, count: usize) -> String {
    (0..count).fold(mail.to_string(), |signed, i| {
        lists_org.sign("lists.org", &format!("s{i}"), &signed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_dkim_signatures_cost_a_handful_of_dns_queries() {
    let (site, lists_org) = counted_site("many-signatures").await;
    let relay = site.relay.as_ref().expect("counted");
    let reply = |id: &str, partstat: &str| {
        email(
            "",
            "Carol <carol@example.net>",
            id,
            "REPLY",
            &carols_reply(partstat),
        )
    };
    // Carol's own signature on top of 200 others: verified, the mail is applied.
    let mail = with_list_signatures(
        &lists_org,
        &reply("m1@example.net", "DECLINED"),
        LIST_SIGNATURES,
    );
    let mail = site.example_net.sign("example.net", "s1", &mail);
    relay.take();
    let outcome = site
        .deliver("alice@example.com", "bounces@lists.org", LIST_SERVER, &mail)
        .await;
    let queries = relay.take();
    assert_applied(&outcome);
    // DKIM_LIMIT keys, SPF of the envelope domain, DMARC of the From and the signing
    // domains (each with its organizational domain): a handful, not 200.
    assert!(
        queries <= DKIM_LIMIT + 5,
        "{queries} DNS queries for one mail with {} signatures",
        LIST_SIGNATURES + 1
    );

    // The same signature under the 200 is past the limit: not verified, refused.
    let mail = site
        .example_net
        .sign("example.net", "s1", &reply("m2@example.net", "TENTATIVE"));
    let mail = with_list_signatures(&lists_org, &mail, LIST_SIGNATURES);
    let outcome = site
        .deliver("alice@example.com", "bounces@lists.org", LIST_SERVER, &mail)
        .await;
    let queries = relay.take();
    assert_refused(
        &outcome,
        &format!("{} more signatures", LIST_SIGNATURES + 1 - DKIM_LIMIT),
    );
    assert!(queries <= DKIM_LIMIT + 5, "{queries} DNS queries");
    assert!(!site.alice().contains("PARTSTAT=TENTATIVE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_verdict_of_only_temperror_falls_back_to_imipds_own_check() {
    let site = Site::new("temperror").await;
    let signed = |id: &str, partstat: &str| {
        let mail = email(
            "",
            "Carol <carol@example.net>",
            id,
            "REPLY",
            &carols_reply(partstat),
        );
        site.example_net.sign("example.net", "s1", &mail)
    };
    let mail = format!(
        "Authentication-Results: mx.example.com; dkim=temperror header.d=example.net; \
         dmarc=temperror header.from=example.net\r\n{}",
        signed("t1@example.net", "DECLINED")
    );
    let outcome = site
        .deliver("alice@example.com", "bounces@lists.org", LIST_SERVER, &mail)
        .await;
    assert_applied(&outcome);
    assert!(site.alice().contains("PARTSTAT=DECLINED"));

    // A definite verdict is still the MTA's word: a fail is not checked again.
    let failed = format!(
        "Authentication-Results: mx.example.com; dkim=fail header.d=example.net; \
         dmarc=fail header.from=example.net\r\n{}",
        signed("t2@example.net", "TENTATIVE")
    );
    let outcome = site
        .deliver(
            "alice@example.com",
            "bounces@lists.org",
            LIST_SERVER,
            &failed,
        )
        .await;
    assert_refused(&outcome, "dmarc=fail");
    assert!(!site.alice().contains("PARTSTAT=TENTATIVE"));
}
