//! Sender authentication the way production gets mail: an outside client speaks SMTP
//! to a real Postfix, which routes the gateway's domain over LMTP to imipd's own
//! LMTP server (the daemon's handler, default policy), passing the client on with
//! `XFORWARD` (`lmtp_send_xforward_command = yes`). A dnsmasq on loopback serves the
//! senders' DKIM keys, SPF and DMARC records.
//!
//! - `example.net` (Carol) signs its mail; its SPF names 192.0.2.10 only.
//! - `example.org` (Dave) does not sign; its SPF names 127.0.0.1, the address the
//!   test's SMTP client connects from, so its mail passes DMARC through SPF, which
//!   imipd can check only because Postfix told it the client's address.

use imipd::daemon::serve::{bind_lmtp, queue_settings, start};
use std::time::Duration;

#[path = "support/mod.rs"]
mod support;
use support::dns::{DkimKey, Dns};
use support::tools::{args, swaks_async};
use support::{Postfix, TempDir};

const WAIT: Duration = Duration::from_secs(20);

const ALICE_COPY: &str = support::events::budget_copy!(
    "ATTENDEE;RSVP=TRUE:mailto:carol@example.net\r\n",
    "ATTENDEE;RSVP=TRUE:mailto:dave@example.org\r\n",
);

fn reply(from: &str, id: &str, partstat: &str) -> String {
    format!(
        "From: {from}\r\nTo: alice@example.com\r\nSubject: Reply\r\nMessage-ID: <{id}>\r\n\
         Date: Mon, 01 Apr 2030 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/calendar; method=REPLY; charset=utf-8\r\n\r\n\
         BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Client//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n\
         UID:budget-1\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:1\r\nORGANIZER:mailto:alice@example.com\r\n\
         ATTENDEE;PARTSTAT={partstat}:mailto:{from}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_postfix_a_signed_reply_is_applied_and_a_forged_one_refused() {
    let carol_key = DkimKey::from_seed(7);
    let dns = Dns::start(&[
        ("s1._domainkey.example.net", carol_key.dns_record()),
        ("example.net", "v=spf1 ip4:192.0.2.10 -all".to_string()),
        ("_dmarc.example.net", "v=DMARC1; p=reject".to_string()),
        ("example.org", "v=spf1 ip4:127.0.0.1 -all".to_string()),
        ("_dmarc.example.org", "v=DMARC1; p=reject".to_string()),
    ]);
    let dir = TempDir::new("sender-auth-postfix");
    let folder = dir.path().join("stores/alice/calendar");
    std::fs::create_dir_all(&folder).expect("store");
    std::fs::write(folder.join("budget.ics"), ALICE_COPY).expect("event");
    std::fs::write(
        dir.path().join("imipd.toml"),
        format!(
            "state = \"state/imipd.redb\"\n[store]\nroot = \"stores\"\n\
             [[user]]\nname = \"alice\"\naddresses = [\"alice@example.com\"]\n\
             [mail]\ndomain = \"example.com\"\n[queue]\noutbox = \"outbox\"\n\
             [lmtp]\nlisten = \"127.0.0.1:0\"\ndns_servers = [\"{}\"]\ndns_timeout = 5\n",
            dns.addr()
        ),
    )
    .expect("configuration");
    let shared = start(&dir.path().join("imipd.toml")).await.expect("start");
    let settings = std::sync::Arc::new(queue_settings(&shared.config()).expect("settings"));
    let server = bind_lmtp(shared.clone(), settings)
        .await
        .expect("bind")
        .expect("an LMTP server");
    let lmtp = server.tcp_addr().expect("LMTP address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let postfix = Postfix::builder()
        .route("example.com", &format!("lmtp:inet:{lmtp}"))
        .set("lmtp_send_xforward_command", "yes")
        .start();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("mail file");
        path
    };
    let send = |from: &'static str, path: std::path::PathBuf| {
        let smtp = postfix.smtp_addr().to_string();
        async move {
            let run = swaks_async(args(&[
                "--server",
                &smtp,
                "--helo",
                "client.example.net",
                "--from",
                from,
                "--to",
                "alice@example.com",
                "--data",
                path.to_str().unwrap_or_default(),
            ]))
            .await;
            assert_eq!(run.status, 0, "{}", run.transcript);
        }
    };
    let alice = || std::fs::read_to_string(folder.join("budget.ics")).expect("alice's copy");

    // Forged: Carol's address, no signature, sent from a client her SPF does not name.
    send(
        "attacker@evil.example",
        file(
            "forged.eml",
            &reply("carol@example.net", "f1@evil.example", "DECLINED"),
        ),
    )
    .await;
    let line = postfix.wait_for_log(&["to=<alice@example.com>", "status=sent"], WAIT);
    assert!(line.contains("ignored"), "{line}");
    assert!(line.contains("not authenticated"), "{line}");
    assert_eq!(alice(), ALICE_COPY, "the forged reply changed nothing");

    // Signed by example.net: DKIM aligned with From.
    let signed = carol_key.sign(
        "example.net",
        "s1",
        &reply("carol@example.net", "s1@example.net", "ACCEPTED"),
    );
    send("carol@example.net", file("signed.eml", &signed)).await;
    wait_until(|| alice().contains("PARTSTAT=ACCEPTED:mailto:carol@example.net")).await;

    // Unsigned but from the client example.org's SPF names: DMARC passes through SPF
    // because Postfix passed the client's address on (XFORWARD ADDR).
    send(
        "dave@example.org",
        file(
            "spf.eml",
            &reply("dave@example.org", "d1@example.org", "TENTATIVE"),
        ),
    )
    .await;
    wait_until(|| alice().contains("PARTSTAT=TENTATIVE:mailto:dave@example.org")).await;
    assert!(
        alice().contains("PARTSTAT=ACCEPTED:mailto:carol@example.net"),
        "{}",
        alice()
    );

    let _ = stop.send(());
    let _ = serving.await;
    postfix.stop();
}

async fn wait_until(done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not applied within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
