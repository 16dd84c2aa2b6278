//! Mail into imipd the way production gets it: a client speaks SMTP to Postfix, and
//! Postfix's `transport_maps` routes the gateway's domain over LMTP to imipd.
//!
//! The Postfix side is what a mail admin would configure (see [`gateway_postfix`]):
//!
//! ```text
//! relay_domains = imip.test
//! transport_maps = inline:{ imip.test=lmtp:inet:127.0.0.1:<port> }   # or lmtp:unix:<path>
//! smtpd_recipient_restrictions =
//!     check_recipient_access inline:{ imip.test=reject_unverified_recipient }
//! unverified_recipient_reject_code = 550
//! ```
//!
//! Recipient verification asks imipd itself (a probe over LMTP that stops after RCPT),
//! so an unknown address is refused during the sender's SMTP dialogue instead of
//! being accepted and bounced later (backscatter); it is scoped to the gateway domain
//! so outbound mail is not probed. Postfix's default reject code for unverified
//! recipients is 450 (a safe start); 550 is the setting once the gateway is trusted.

#[path = "support/mod.rs"]
mod support;

use imipd::smtp::{parse_dsn, DsnAction};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use support::lmtp::{
    alice_handler, start_lmtp, test_config, unix_config, RecordingHandler, RunningLmtp,
};
use support::tools::{args, server_replies, swaks_async};
use support::{Postfix, TempDir};

const WAIT: Duration = Duration::from_secs(20);

/// The Postfix configuration of the module docs, routing `imip.test` (and
/// `bounces.test`, where test senders receive their bounces) to `nexthop`.
fn gateway_postfix(nexthop: &str) -> Postfix {
    Postfix::builder()
        .route("imip.test", nexthop)
        .route("bounces.test", nexthop)
        .set(
            "smtpd_recipient_restrictions",
            "check_recipient_access inline:{ imip.test=reject_unverified_recipient }",
        )
        .set("unverified_recipient_reject_code", "550")
        .start()
}

/// imipd's LMTP server for `handler` on loopback TCP, and the gateway Postfix routing
/// to it.
async fn gateway(handler: &Arc<RecordingHandler>) -> (RunningLmtp, Postfix) {
    let lmtp = start_lmtp(test_config(), handler.clone()).await;
    let postfix = gateway_postfix(&format!("lmtp:inet:{}", lmtp.tcp()));
    (lmtp, postfix)
}

/// `text` as the file `name` in a new folder for `label` (removed on drop).
fn message_file(label: &str, name: &str, text: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(label);
    let file = dir.join(name);
    std::fs::write(&file, text).expect("message file");
    (dir, file)
}

/// An iMIP-like message with awkward bytes: a dot line, 8-bit text, a long line.
fn invitation() -> String {
    format!(
        "From: Organizer <organizer@bounces.test>\r\nTo: alice@imip.test\r\n\
         Subject: Invitation: review\r\nMessage-ID: <inv-1@bounces.test>\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n\
         BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:review-1@bounces.test\r\n\
         SUMMARY:Caf\u{e9} review\r\nDESCRIPTION:{}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n.\r\n..\r\nend\r\n",
        "x".repeat(900)
    )
}

async fn send_via_postfix(
    postfix: &Postfix,
    from: &str,
    to: &str,
    data_file: &std::path::Path,
) -> support::tools::SwaksRun {
    swaks_async(args(&[
        "--server",
        &postfix.smtp_addr().to_string(),
        "--helo",
        "client.test",
        "--from",
        from,
        "--to",
        to,
        "--data",
        data_file.to_str().unwrap_or_default(),
    ]))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_for_the_gateway_domain_arrives_over_lmtp_intact() {
    let handler = alice_handler();
    let (_lmtp, postfix) = gateway(&handler).await;
    let (_dir, file) = message_file("inbound", "invitation.eml", &invitation());

    let run = send_via_postfix(&postfix, "organizer@bounces.test", "alice@imip.test", &file).await;
    assert_eq!(run.status, 0, "{}", run.transcript);
    let received = handler.wait_for(1, WAIT).await;
    let got = &received[0];
    assert_eq!(got.mail_from, "organizer@bounces.test");
    assert_eq!(got.recipients, ["alice@imip.test"]);
    // Postfix prepends its trace header; everything the sender wrote follows unchanged
    // (a message without Date or Message-ID would get one from Postfix's cleanup).
    let data = String::from_utf8(got.data.clone()).expect("8-bit text kept");
    let original = invitation();
    let start = data.find("From: Organizer").expect("original headers");
    assert!(
        data[..start].contains("Received: from client.test"),
        "{data}"
    );
    assert!(data[start..].starts_with(&original), "{data}");
    let line = postfix.wait_for_log(&["to=<alice@imip.test>", "status=sent"], WAIT);
    assert!(line.contains("250 2.0.0"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_recipient_is_refused_during_the_senders_smtp_dialogue() {
    let handler = alice_handler();
    let (_lmtp, postfix) = gateway(&handler).await;
    let (_dir, file) = message_file("inbound-unknown", "m.eml", "Subject: hello\r\n\r\nhi\r\n");

    let run = send_via_postfix(
        &postfix,
        "organizer@bounces.test",
        "nobody@imip.test",
        &file,
    )
    .await;
    let rcpt_reply = server_replies(&run.transcript)
        .into_iter()
        .find(|r| r.starts_with("550"))
        .unwrap_or_default();
    assert!(
        rcpt_reply.starts_with("550 5.1.1 <nobody@imip.test>: Recipient address rejected"),
        "{}",
        run.transcript
    );
    assert_ne!(run.status, 0);
    // imipd's own answer to the probe is what Postfix quotes.
    assert!(
        rcpt_reply.contains("recipient address unknown"),
        "{rcpt_reply}"
    );

    // A known user passes the same check and is delivered.
    let run = send_via_postfix(&postfix, "organizer@bounces.test", "alice@imip.test", &file).await;
    assert_eq!(run.status, 0, "{}", run.transcript);
    let received = handler.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].recipients, ["alice@imip.test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_refused_by_imipd_and_bounced_to_the_sender() {
    // Postfix accepts up to its own message_size_limit (10 MB by default); imipd's
    // limit is 64 KiB here and its LHLO reply says so (SIZE 65536). Postfix's LMTP
    // client honours that before sending MAIL and returns the message to its sender
    // with status 5.3.4 (imipd's own 552 5.3.4 answers to clients that do not look
    // are covered in smtp_lmtp.rs). In production, set Postfix's message_size_limit
    // no higher than imipd's, so the refusal happens in the sender's SMTP dialogue.
    let handler = alice_handler();
    handler.domain("bounces.test");
    let (_lmtp, postfix) = gateway(&handler).await;
    let body = "0123456789".repeat(10).repeat(1000);
    let (_dir, file) = message_file(
        "inbound-big",
        "big.eml",
        &format!("Subject: big\r\nMessage-ID: <big-1@bounces.test>\r\n\r\n{body}\r\n"),
    );

    let run = send_via_postfix(&postfix, "sender@bounces.test", "alice@imip.test", &file).await;
    assert_eq!(
        run.status, 0,
        "Postfix itself accepts it: {}",
        run.transcript
    );
    let line = postfix.wait_for_log(&["to=<alice@imip.test>", "status=bounced"], WAIT);
    assert!(line.contains("dsn=5.3.4"), "{line}");
    assert!(
        line.contains("exceeds size limit 65536 of server"),
        "{line}"
    );

    // The bounce comes back over LMTP to the sender's domain; the message never did.
    let received = handler.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].recipients, ["sender@bounces.test"]);
    assert_eq!(received[0].mail_from, "", "bounces have a null sender");
    let report = parse_dsn(&received[0].data).expect("Postfix bounce is a DSN");
    assert_eq!(report.recipients.len(), 1);
    let rcpt = &report.recipients[0];
    assert_eq!(rcpt.final_recipient, "alice@imip.test");
    assert_eq!(rcpt.action, DsnAction::Failed);
    assert_eq!(rcpt.status, "5.3.4");
    assert_eq!(
        report.original_message_id.as_deref(),
        Some("big-1@bounces.test")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_delivers_over_a_unix_socket() {
    // The socket must be writable by Postfix's lmtp client (user postfix): here mode
    // 0666 in a world-traversable folder; in production 0660 with a shared group.
    let dir = TempDir::new("inbound-sock");
    let socket = dir.join("lmtp.sock");
    let handler = alice_handler();
    let _lmtp = start_lmtp(unix_config(&socket, 0o666), handler.clone()).await;
    let postfix = gateway_postfix(&format!("lmtp:unix:{}", socket.display()));
    let file = dir.join("m.eml");
    std::fs::write(&file, "Subject: via socket\r\n\r\nhello\r\n").unwrap();

    let run = send_via_postfix(&postfix, "organizer@bounces.test", "alice@imip.test", &file).await;
    assert_eq!(run.status, 0, "{}", run.transcript);
    let received = handler.wait_for(1, WAIT).await;
    assert!(String::from_utf8_lossy(&received[0].data).contains("Subject: via socket"));
    assert!(
        received[0].peer.starts_with("unix:"),
        "{}",
        received[0].peer
    );
}
