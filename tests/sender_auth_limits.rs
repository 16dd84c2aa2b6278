//! What one mail can make the sender check do (issue 23, item 7), counted on the wire:
//! the daemon's own LMTP handler asks a counting DNS relay on loopback, which passes
//! each query on to a dnsmasq serving the test domains' records (see
//! `support/dns.rs`). A REPLY carrying 200 DKIM signatures, each valid and with its own
//! selector, must not cost 200 key lookups: only the topmost `lmtp.max_dkim_signatures`
//! are verified. And a trusted Authentication-Results that says only `temperror`
//! decides nothing: imipd checks for itself.

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

const ALICE_COPY: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\n\
UID:budget-1\r\nDTSTAMP:20300101T090000Z\r\nSEQUENCE:1\r\nDTSTART:20300410T120000Z\r\n\
DTEND:20300410T130000Z\r\nSUMMARY:Budget\r\nORGANIZER:mailto:alice@example.com\r\n\
ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
ATTENDEE;RSVP=TRUE:mailto:carol@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

/// The mail relay's address (SPF of neither domain passes for it).
const RELAY: &str = "198.51.100.7";
/// How many signatures the many-signatures mail carries.
const SIGNATURES: usize = 200;
/// `lmtp.max_dkim_signatures` of the test site.
const LIMIT: usize = 5;

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

    fn count(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    fn reset(&self) {
        self.queries.store(0, Ordering::SeqCst);
    }
}

struct Site {
    dir: TempDir,
    _dns: Dns,
    relay: CountingRelay,
    handler: Arc<MailHandler>,
    example_net: DkimKey,
    lists_org: DkimKey,
}

impl Site {
    async fn new(label: &str) -> Site {
        let example_net = DkimKey::from_seed(1);
        let lists_org = DkimKey::from_seed(3);
        let mut records = vec![
            (
                "s1._domainkey.example.net".to_string(),
                example_net.dns_record(),
            ),
            (
                "example.net".to_string(),
                "v=spf1 ip4:192.0.2.10 -all".to_string(),
            ),
            (
                "_dmarc.example.net".to_string(),
                "v=DMARC1; p=reject".to_string(),
            ),
            ("lists.org".to_string(), "v=spf1 -all".to_string()),
        ];
        for i in 0..SIGNATURES {
            records.push((format!("s{i}._domainkey.lists.org"), lists_org.dns_record()));
        }
        let borrowed: Vec<(&str, String)> = records
            .iter()
            .map(|(name, text)| (name.as_str(), text.clone()))
            .collect();
        let dns = Dns::start(&borrowed);
        let relay = CountingRelay::start(dns.addr());
        let dir = TempDir::new(&format!("sender-limits-{label}"));
        let folder = dir.path().join("stores/alice/calendar");
        std::fs::create_dir_all(&folder).expect("store folder");
        std::fs::write(folder.join("budget.ics"), ALICE_COPY).expect("event");
        let config = format!(
            "state = \"state/imipd.redb\"\n[store]\nroot = \"stores\"\n\
             [[user]]\nname = \"alice\"\naddresses = [\"alice@example.com\"]\n\
             [mail]\ndomain = \"example.com\"\n[queue]\noutbox = \"outbox\"\n\
             [lmtp]\nlisten = \"127.0.0.1:0\"\ntrusted_authserv_ids = [\"mx.example.com\"]\n\
             dns_servers = [\"{}\"]\ndns_timeout = 5\nmax_dkim_signatures = {LIMIT}\n",
            relay.addr
        );
        std::fs::write(dir.path().join("imipd.toml"), config).expect("configuration");
        let shared = start(&dir.path().join("imipd.toml")).await.expect("start");
        let settings = Arc::new(queue_settings(&shared.config()).expect("settings"));
        let handler = Arc::new(MailHandler::new(shared, settings));
        Site {
            dir,
            _dns: dns,
            relay,
            handler,
            example_net,
            lists_org,
        }
    }

    async fn deliver(&self, mail: &str) -> RecipientOutcome {
        let mut outcomes = self
            .handler
            .deliver(ReceivedMessage {
                mail_from: "bounces@lists.org".into(),
                recipients: vec!["alice@example.com".into()],
                data: mail.as_bytes().to_vec(),
                lhlo: "mx.example.com".into(),
                peer: "127.0.0.1:10025".into(),
                client: ForwardedClient {
                    addr: Some(RELAY.parse().expect("ip")),
                    helo: Some("relay.lists.org".into()),
                    name: None,
                },
            })
            .await;
        outcomes.remove(0)
    }

    fn alice(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stores/alice/calendar/budget.ics"))
            .expect("alice's copy")
    }

    /// `mail` with `count` signatures of lists.org on top, each its own selector.
    fn with_list_signatures(&self, mail: &str, count: usize) -> String {
        (0..count).fold(mail.to_string(), |signed, i| {
            self.lists_org.sign("lists.org", &format!("s{i}"), &signed)
        })
    }
}

fn carols_reply(id: &str, partstat: &str) -> String {
    format!(
        "From: Carol <carol@example.net>\r\nTo: alice@example.com\r\nSubject: Re: Budget\r\n\
         Message-ID: <{id}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/calendar; method=REPLY; charset=utf-8\r\n\r\n\
         BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Client//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n\
         UID:budget-1\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:1\r\nORGANIZER:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT={partstat}:mailto:carol@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

fn text(outcome: &RecipientOutcome) -> &str {
    match outcome {
        RecipientOutcome::Accepted(text) => text,
        other => panic!("expected a final answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_dkim_signatures_cost_a_handful_of_dns_queries() {
    let site = Site::new("many").await;
    // Carol's own signature on top: verified, the mail is applied.
    let mail = site.with_list_signatures(&carols_reply("m1@example.net", "DECLINED"), SIGNATURES);
    let mail = site.example_net.sign("example.net", "s1", &mail);
    site.relay.reset();
    let outcome = site.deliver(&mail).await;
    let queries = site.relay.count();
    assert!(text(&outcome).contains("applied"), "{outcome:?}");
    assert!(site.alice().contains("PARTSTAT=DECLINED"));
    // LIMIT keys, SPF of the envelope domain, DMARC of the From and the signing
    // domains (each with its organizational domain): a handful, not 200.
    assert!(
        queries <= LIMIT + 5,
        "{queries} DNS queries for one mail with {} signatures",
        SIGNATURES + 1
    );

    // The same signature under 200 others is past the limit: not verified, refused.
    let mail = site.example_net.sign(
        "example.net",
        "s1",
        &carols_reply("m2@example.net", "TENTATIVE"),
    );
    let mail = site.with_list_signatures(&mail, SIGNATURES);
    site.relay.reset();
    let outcome = site.deliver(&mail).await;
    let queries = site.relay.count();
    let said = text(&outcome);
    assert!(said.starts_with("ignored"), "{said}");
    assert!(
        said.contains(&format!("{} more signatures", SIGNATURES + 1 - LIMIT)),
        "the verdict says what was not verified: {said}"
    );
    assert!(queries <= LIMIT + 5, "{queries} DNS queries");
    assert!(!site.alice().contains("PARTSTAT=TENTATIVE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_verdict_of_only_temperror_falls_back_to_imipds_own_check() {
    let site = Site::new("temperror").await;
    let mail = carols_reply("t1@example.net", "DECLINED");
    let signed = site.example_net.sign("example.net", "s1", &mail);
    let with_verdict = format!(
        "Authentication-Results: mx.example.com; dkim=temperror header.d=example.net; \
         dmarc=temperror header.from=example.net\r\n{signed}"
    );
    let outcome = site.deliver(&with_verdict).await;
    assert!(text(&outcome).contains("applied"), "{outcome:?}");
    assert!(site.alice().contains("PARTSTAT=DECLINED"));

    // A definite verdict is still the MTA's word: a fail is not re-checked.
    let failed = format!(
        "Authentication-Results: mx.example.com; dkim=fail header.d=example.net; \
         dmarc=fail header.from=example.net\r\n{}",
        site.example_net.sign(
            "example.net",
            "s1",
            &carols_reply("t2@example.net", "TENTATIVE")
        )
    );
    let outcome = site.deliver(&failed).await;
    assert!(text(&outcome).starts_with("ignored"), "{outcome:?}");
    assert!(!site.alice().contains("PARTSTAT=TENTATIVE"));
}
