//! Bounces: a real delivery status notification from Postfix, routed back to imipd
//! over LMTP, and hand-written ones in the shapes other MTAs send (Exim, Exchange
//! Online, a Postfix delay warning), plus things that look like bounces but are not
//! delivery status notifications.

#[path = "support/mod.rs"]
mod support;

#[path = "data/imip/fixtures.rs"]
mod fixtures;

use imipd::imip::{build_message, ItemRef, Language};
use imipd::itip::CalAddress;
use imipd::smtp::{
    parse_dsn, BounceAddress, BounceToken, DsnAction, DsnError, Envelope, Relay, RelayConfig,
    RelayTls, Transport,
};
use std::time::Duration;
use support::lmtp::{start_lmtp, test_config, RecordingHandler};
use support::{Postfix, Sink};

const WAIT: Duration = Duration::from_secs(20);

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/smtp/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn item(uid: &str, rcpt: &str) -> ItemRef {
    ItemRef {
        uid: uid.to_string(),
        recipient: CalAddress::parse(rcpt).expect("address"),
    }
}

/// The whole loop a bounce takes in production: imipd relays an invitation through
/// Postfix with a VERP sender; the next hop refuses the recipient (550 5.1.1); Postfix
/// writes a DSN to the VERP address, whose domain `transport_maps` routes back to
/// imipd's LMTP server; the DSN names the status, the ENVID and the tracking header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_postfix_bounce_names_the_item_and_status() {
    let handler = RecordingHandler::new();
    handler.domain("imip.test");
    let lmtp = start_lmtp(test_config(), handler.clone()).await;
    let sink = Sink::start();
    sink.reply_to_rcpt(
        "bob@example.net",
        Some("550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown"),
    );
    let postfix = Postfix::builder()
        .relayhost(sink.addr())
        .route("imip.test", &format!("lmtp:inet:{}", lmtp.tcp()))
        .start();

    let case = fixtures::case("request-invite");
    let mail = build_message(
        &case.msg,
        &case.recipient,
        &fixtures::options(Language::En),
        &fixtures::stamp(),
    )
    .expect("invitation");
    let bounces = BounceAddress::new("imipd-bounces", "imip.test").expect("bounce family");
    let envelope = Envelope {
        mail_from: bounces.address(&BounceToken::for_queue_item(42)),
        recipient: "bob@example.net".into(),
        envelope_id: Some("q42.1".into()),
    };
    let relay = Relay::new(RelayConfig {
        tls: RelayTls::None,
        timeout: Duration::from_secs(5),
        ..RelayConfig::new("127.0.0.1", postfix.smtp_addr().port())
    });
    relay
        .send(&envelope, &mail.bytes)
        .await
        .expect("Postfix takes it");

    let received = handler.wait_for(1, WAIT).await;
    let bounce = &received[0];
    assert_eq!(bounce.mail_from, "", "DSNs have a null sender");
    assert_eq!(bounce.recipients, ["imipd-bounces+q42@imip.test"]);
    let token = bounces.token_of(&bounce.recipients[0]).expect("VERP token");
    assert_eq!(token.queue_item(), Some(42));

    let report = parse_dsn(&bounce.data).expect("Postfix bounce is a DSN");
    assert_eq!(report.envelope_id.as_deref(), Some("q42.1"));
    assert_eq!(report.reporting_mta.as_deref(), Some("mx.postfix.test"));
    assert_eq!(report.recipients.len(), 1);
    let r = &report.recipients[0];
    assert_eq!(r.final_recipient, "bob@example.net");
    assert_eq!(r.original_recipient.as_deref(), Some("bob@example.net"));
    assert_eq!(r.action, DsnAction::Failed);
    assert_eq!(r.status, "5.1.1");
    assert!(r.is_permanent_failure());
    let diagnostic = r.diagnostic.clone().unwrap_or_default();
    assert!(diagnostic.contains("550 5.1.1"), "{diagnostic}");
    assert_eq!(report.item, mail.item);
    assert_eq!(
        report.item,
        Some(item("lunch-42@example.com", "mailto:bob@example.net"))
    );
    assert_eq!(
        report.original_message_id.as_deref(),
        Some(mail.message_id.as_str())
    );
    // RET=HDRS: the headers came back, the invitation's body did not.
    let text = String::from_utf8_lossy(&bounce.data);
    assert!(text.contains("text/rfc822-headers"), "{text}");
    assert!(!text.contains("BEGIN:VCALENDAR"), "{text}");
}

#[test]
fn exim_bounce_with_returned_headers() {
    let report = parse_dsn(&fixture("exim-failed.eml")).expect("DSN");
    assert_eq!(report.envelope_id.as_deref(), Some("q7.2"));
    assert_eq!(report.reporting_mta.as_deref(), Some("mail.example.net"));
    let r = &report.recipients[0];
    assert_eq!(
        (r.final_recipient.as_str(), r.action, r.status.as_str()),
        ("carol@example.net", DsnAction::Failed, "5.0.0")
    );
    assert_eq!(r.remote_mta.as_deref(), Some("mx.example.net"));
    assert!(r
        .diagnostic
        .as_deref()
        .unwrap_or_default()
        .contains("User unknown"));
    // The tracking header was folded by the MTA; it still reads back.
    assert_eq!(
        report.item,
        Some(item(
            "planning-2026-11-24@example.org",
            "mailto:carol@example.net"
        ))
    );
    assert_eq!(
        report.original_message_id.as_deref(),
        Some("7f3a9c0d11e2@gw.example.org")
    );
}

#[test]
fn exchange_online_bounce_nested_in_alternative_parts() {
    let report = parse_dsn(&fixture("exchange-failed.eml")).expect("DSN");
    assert_eq!(report.envelope_id.as_deref(), Some("q1234.3"));
    let r = &report.recipients[0];
    assert_eq!(r.status, "5.1.10");
    assert_eq!(r.action, DsnAction::Failed);
    // A folded Diagnostic-Code is unfolded.
    assert_eq!(
        r.diagnostic.as_deref(),
        Some("smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup")
    );
    assert_eq!(
        report.item,
        Some(item(
            "040000008200E00074C5B7101A82E0080000000010 board",
            "mailto:dave@contoso.example"
        ))
    );
}

#[test]
fn postfix_delay_warning_is_not_a_failure() {
    let report = parse_dsn(&fixture("postfix-delayed.eml")).expect("DSN");
    let r = &report.recipients[0];
    assert_eq!(r.action, DsnAction::Delayed);
    assert_eq!(r.status, "4.4.1");
    assert!(!r.is_permanent_failure());
    assert_eq!(report.envelope_id.as_deref(), Some("q55.1"));
    assert_eq!(
        report.item,
        Some(item("offsite-1@example.org", "mailto:erin@slow.example"))
    );
}

#[test]
fn things_that_are_not_delivery_status_notifications_are_refused() {
    match parse_dsn(&fixture("not-dsn-plain-bounce.eml")) {
        Err(DsnError::NotAReport(ct)) => assert!(ct.starts_with("text/plain"), "{ct}"),
        other => panic!("{other:?}"),
    }
    match parse_dsn(&fixture("not-dsn-read-receipt.eml")) {
        Err(e @ DsnError::NotAReport(_)) => {
            assert!(
                e.to_string()
                    .contains("report-type=disposition-notification"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse_dsn(&fixture("not-dsn-report-without-status.eml")),
        Err(DsnError::NoStatusPart)
    );
    assert_eq!(
        parse_dsn(&fixture("not-dsn-no-recipient-blocks.eml")),
        Err(DsnError::NoRecipients)
    );
    assert_eq!(parse_dsn(b""), Err(DsnError::NotAMessage));
    assert!(matches!(
        parse_dsn(b"\x00\xff\xfe garbage"),
        Err(DsnError::NotAMessage | DsnError::NotAReport(_))
    ));
    // An iMIP invitation is not a bounce either.
    let invite = fixture("exim-failed.eml");
    let forwarded = [b"Content-Type: message/rfc822\r\n\r\n".as_slice(), &invite].concat();
    assert!(matches!(
        parse_dsn(&forwarded),
        Err(DsnError::NotAReport(_))
    ));
}
