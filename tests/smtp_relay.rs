//! imipd's SMTP relay client against real servers: a private Postfix as the relay
//! (plain, STARTTLS, implicit TLS) and a recording SMTP sink behind it or alone.
//!
//! What the queue relies on: the message arrives byte for byte with the envelope that
//! asks for matchable bounces; one connection carries several messages; and every
//! failure says whether a retry can help (4xx, timeouts, outages: temporary; 5xx for
//! this message: permanent) with the server's code, enhanced code and text.

#[path = "support/mod.rs"]
mod support;

#[path = "data/imip/fixtures.rs"]
mod fixtures;

use imipd::imip::{build_message, Language, OutgoingMail};
use imipd::smtp::{
    BounceAddress, BounceToken, Envelope, Relay, RelayConfig, RelayTls, SendError, Transport,
};
use std::net::SocketAddr;
use std::time::Duration;
use support::postfix::self_signed_cert;
use support::{Postfix, Sink, TempDir};

const WAIT: Duration = Duration::from_secs(20);

/// A real invitation as imipd builds it (to bob@example.net, with its tracking header).
fn invitation() -> OutgoingMail {
    let case = fixtures::case("request-invite");
    build_message(
        &case.msg,
        &case.recipient,
        &fixtures::options(Language::En),
        &fixtures::stamp(),
    )
    .expect("invitation builds")
}

fn envelope(mail: &OutgoingMail, queue_id: u64) -> Envelope {
    let bounces = BounceAddress::new("imipd-bounces", "imip.test").expect("bounce address");
    Envelope {
        mail_from: bounces.address(&BounceToken::for_queue_item(queue_id)),
        recipient: mail
            .recipient
            .as_str()
            .trim_start_matches("mailto:")
            .to_string(),
        envelope_id: Some(format!("q{queue_id}.1")),
    }
}

fn plain_relay(addr: SocketAddr) -> Relay {
    Relay::new(RelayConfig {
        tls: RelayTls::None,
        timeout: Duration::from_secs(5),
        helo_name: "gw.imipd.test".into(),
        ..RelayConfig::new(addr.ip().to_string(), addr.port())
    })
}

/// A simple message to `rcpt`.
fn note(n: u32) -> Vec<u8> {
    format!(
        "From: a@imip.test\r\nTo: x@external.test\r\nSubject: note {n}\r\n\
         Message-ID: <note-{n}@imip.test>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

fn to(rcpt: &str) -> Envelope {
    Envelope {
        mail_from: "imipd-bounces+q1@imip.test".into(),
        recipient: rcpt.into(),
        envelope_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_relayed_through_postfix_arrives_intact_with_dsn_envelope() {
    let sink = Sink::start();
    let postfix = Postfix::builder().relayhost(sink.addr()).start();
    let relay = plain_relay(postfix.smtp_addr());
    let mail = invitation();
    let env = envelope(&mail, 42);

    let handover = relay
        .send(&env, &mail.bytes)
        .await
        .expect("Postfix accepts");
    assert!(
        handover.detail.contains("250 2.0.0 Ok: queued as"),
        "{}",
        handover.detail
    );

    let got = &sink.wait_for_messages(1, WAIT)[0];
    assert_eq!(got.mail_from, "imipd-bounces+q42@imip.test");
    assert_eq!(got.rcpts.len(), 1);
    assert_eq!(got.rcpts[0].0, "bob@example.net");
    // DSN parameters survive the hop (Postfix passes them on to a DSN-capable server).
    assert!(got.mail_params.contains("RET=HDRS"), "{}", got.mail_params);
    assert!(
        got.mail_params.contains("ENVID=q42.1"),
        "{}",
        got.mail_params
    );
    assert!(
        got.rcpts[0].1.contains("NOTIFY=FAILURE,DELAY"),
        "{}",
        got.rcpts[0].1
    );
    assert!(
        got.rcpts[0].1.contains("ORCPT=rfc822;bob@example.net"),
        "{}",
        got.rcpts[0].1
    );
    // Byte for byte after Postfix's Received header.
    let (trace, rest) = got.data.split_at(got.data.len() - mail.bytes.len());
    assert_eq!(rest, &mail.bytes[..], "message changed on the way");
    assert!(String::from_utf8_lossy(trace).starts_with("Received: from gw.imipd.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_messages_share_one_connection_and_survive_a_server_hangup() {
    let sink = Sink::start();
    let relay = plain_relay(sink.addr());
    for n in 0..3 {
        sent(&relay, "x@external.test", n, "sent").await;
    }
    assert_eq!(sink.messages().len(), 3);
    assert_eq!(sink.connections(), 1, "one connection for three messages");
    let rsets = sink.commands().iter().filter(|c| *c == "RSET").count();
    assert_eq!(rsets, 2, "RSET before each reuse");

    // The server closes idle connections; the next message reconnects by itself.
    sink.drop_connections();
    tokio::time::sleep(Duration::from_millis(150)).await;
    sent(&relay, "x@external.test", 3, "sent after hangup").await;
    assert_eq!(sink.connections(), 2);
    let messages = sink.messages();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[3].connection, 2);
    assert_eq!(messages[3].data, note(3));
    relay.close().await;
    assert_eq!(sink.commands().last().map(String::as_str), Some("QUIT"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_spread_over_the_configured_connections_each_kept_for_the_next() {
    let sink = Sink::start();
    let relay = Relay::new(RelayConfig {
        connections: 3,
        ..plain_relay(sink.addr()).config().clone()
    });
    let batch = |from: u32| -> Vec<(Envelope, Vec<u8>)> {
        (from..from + 9)
            .map(|n| (to(&format!("r{n}@external.test")), note(n)))
            .collect()
    };
    let first = batch(0);
    let results = relay.send_all(&first).await;
    assert_eq!(results.len(), 9);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(sink.connections(), 3, "three connections at once");
    // The next batch reuses them: no new connection.
    let second = batch(9);
    assert!(relay.send_all(&second).await.iter().all(Result::is_ok));
    assert_eq!(sink.connections(), 3);
    let messages = sink.messages();
    assert_eq!(messages.len(), 18);
    for n in 0..18u32 {
        let got: Vec<_> = messages
            .iter()
            .filter(|m| m.rcpts[0].0 == format!("r{n}@external.test"))
            .collect();
        assert_eq!(got.len(), 1, "r{n} got one message");
        assert_eq!(got[0].data, note(n), "r{n} got its own message");
    }
    // RSET, MAIL, RCPT and DATA went out together, not one reply at a time.
    assert!(sink.pipelined_commands() > 0);
    relay.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pipelining_commands_wait_for_their_replies_and_failures_keep_their_stage() {
    let sink = Sink::start();
    sink.offer_pipelining(false);
    let relay = plain_relay(sink.addr());
    for n in 0..3 {
        sent(&relay, "x@external.test", n, "sent").await;
    }
    sink.reply_to_rcpt("full@external.test", Some("452 4.2.2 mailbox full"));
    let failure = temporary(relay.send(&to("full@external.test"), &note(9)).await);
    assert_says(&failure, "refused recipient <full@external.test>");
    assert_eq!(failure.reply.as_ref().map(|r| r.code), Some(452));
    assert_eq!(sink.messages().len(), 3);
    assert_eq!(sink.connections(), 1);
    assert_eq!(sink.pipelined_commands(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_sees_one_smtp_session_for_several_messages() {
    let sink = Sink::start();
    let postfix = Postfix::builder().relayhost(sink.addr()).start();
    let relay = plain_relay(postfix.smtp_addr());
    for n in 0..3 {
        sent(&relay, "x@external.test", n, "sent").await;
    }
    relay.close().await;
    sink.wait_for_messages(3, WAIT);
    // Postfix's own summary of the session: three MAIL, RCPT and DATA, RSET between.
    let line = postfix.wait_for_log(&["disconnect from", " mail=3 "], WAIT);
    assert!(
        line.contains("ehlo=1 mail=3 rcpt=3 data=3 rset=2 quit=1"),
        "{line}"
    );
    // Every line before that disconnect is in the log by now: the only other
    // session is the start-up probe of the test helper.
    let connects = postfix
        .log()
        .lines()
        .filter(|l| l.contains("smtpd[") && l.contains(": connect from"))
        .count();
    assert_eq!(
        connects, 2,
        "one session for the relay plus the start-up probe"
    );
}

/// Sends note `n` to `rcpt` through `relay`: it must be accepted (`what` if not).
async fn sent(relay: &Relay, rcpt: &str, n: u32, what: &str) {
    relay.send(&to(rcpt), &note(n)).await.expect(what);
}

/// The failure's message says `text`.
fn assert_says(failure: &imipd::smtp::Failure, text: &str) {
    assert!(failure.message.contains(text), "{}", failure.message);
}

fn temporary(result: Result<imipd::smtp::Handover, SendError>) -> imipd::smtp::Failure {
    match result {
        Err(SendError::Temporary(f)) => f,
        other => panic!("expected a temporary failure, got {other:?}"),
    }
}

fn permanent(result: Result<imipd::smtp::Handover, SendError>) -> imipd::smtp::Failure {
    match result {
        Err(SendError::Permanent(f)) => f,
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_4xx_are_temporary_with_code_and_text() {
    let sink = Sink::start();
    let relay = plain_relay(sink.addr());

    sink.reply_to_mail(Some("451 4.3.0 queue file write error"));
    let f = temporary(relay.send(&to("x@external.test"), &note(1)).await);
    let reply = f.reply.clone().expect("server reply kept");
    assert_eq!(
        (reply.code, reply.enhanced.as_deref()),
        (451, Some("4.3.0"))
    );
    assert_eq!(reply.text, "queue file write error");
    assert_says(&f, "refused sender <imipd-bounces+q1@imip.test>");
    sink.reply_to_mail(None);

    sink.reply_to_rcpt("full@external.test", Some("452 4.2.2 mailbox full"));
    let f = temporary(relay.send(&to("full@external.test"), &note(2)).await);
    assert_eq!(f.reply.as_ref().map(|r| r.code), Some(452));
    assert_says(&f, "refused recipient <full@external.test>");

    // RFC 5321 4.5.3.1.10: 552 to RCPT ("too many recipients") is the temporary 452.
    sink.reply_to_rcpt("crowd@external.test", Some("552 5.5.3 too many recipients"));
    let f = temporary(relay.send(&to("crowd@external.test"), &note(5)).await);
    assert_eq!(f.reply.as_ref().map(|r| r.code), Some(552));

    sink.reply_to_data(Some("451 4.7.1 greylisted, try again later"));
    let f = temporary(relay.send(&to("x@external.test"), &note(3)).await);
    assert_eq!(
        f.reply.as_ref().and_then(|r| r.enhanced.clone()).as_deref(),
        Some("4.7.1")
    );
    sink.reply_to_data(None);

    // The same connection carried all of that and still works.
    sent(&relay, "x@external.test", 4, "sent").await;
    assert_eq!(sink.connections(), 1);
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_5xx_are_permanent_and_name_the_recipient() {
    let sink = Sink::start();
    let relay = plain_relay(sink.addr());
    sink.reply_to_rcpt(
        "ghost@external.test",
        Some("550 5.1.1 <ghost@external.test>: no such user"),
    );
    let result = relay.send(&to("ghost@external.test"), &note(1)).await;
    let err = result.as_ref().err().cloned().expect("refused");
    assert_eq!(err.enhanced_status(), Some("5.1.1"));
    let f = permanent(result);
    assert_says(&f, "refused recipient <ghost@external.test>");
    assert_says(&f, "550 5.1.1");

    sink.reply_to_data(Some("554 5.6.0 message content rejected"));
    let f = permanent(relay.send(&to("x@external.test"), &note(2)).await);
    assert_eq!(f.reply.as_ref().map(|r| r.code), Some(554));
    assert_says(&f, "refused the message");
    sink.reply_to_data(None);
    sent(&relay, "x@external.test", 3, "next one goes").await;
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_policy_rejections_are_classified() {
    let sink = Sink::start();
    let postfix = Postfix::builder()
        .relayhost(sink.addr())
        .set(
            "smtpd_recipient_restrictions",
            "check_recipient_access inline:{ { busy@external.test = 450 4.2.1 try again later }, \
             { gone@external.test = 550 5.1.6 moved away } }",
        )
        .start();
    let relay = plain_relay(postfix.smtp_addr());
    let f = temporary(relay.send(&to("busy@external.test"), &note(1)).await);
    let reply = f.reply.expect("reply");
    assert_eq!(
        (reply.code, reply.enhanced.as_deref()),
        (450, Some("4.2.1"))
    );
    assert!(
        reply
            .text
            .contains("Recipient address rejected: try again later"),
        "{}",
        reply.text
    );
    let f = permanent(relay.send(&to("gone@external.test"), &note(2)).await);
    let reply = f.reply.expect("reply");
    assert_eq!(
        (reply.code, reply.enhanced.as_deref()),
        (550, Some("5.1.6"))
    );
    sent(&relay, "fine@external.test", 3, "accepted").await;
    sink.wait_for_messages(1, WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_outage_is_temporary_until_it_comes_back() {
    let sink = Sink::start();
    let relay = plain_relay(sink.addr());
    sent(&relay, "x@external.test", 1, "up").await;
    sink.set_down(true);
    let f = temporary(relay.send(&to("x@external.test"), &note(2)).await);
    assert_eq!(
        f.message,
        format!(
            "relay {} refused the connection: is it running?",
            sink.addr()
        )
    );
    assert!(f.reply.is_none());
    sink.set_down(false);
    sent(&relay, "x@external.test", 3, "back up").await;
    assert_eq!(sink.messages().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_times_out_as_temporary() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accepts, then says nothing.
    let holder = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let relay = Relay::new(RelayConfig {
        tls: RelayTls::None,
        timeout: Duration::from_millis(300),
        ..RelayConfig::new("127.0.0.1", addr.port())
    });
    let f = temporary(relay.send(&to("x@external.test"), &note(1)).await);
    assert_says(&f, "did not answer within");
    drop(holder.join());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_required_when_configured() {
    let sink = Sink::start();
    let relay = Relay::new(RelayConfig {
        tls: RelayTls::StartTls,
        timeout: Duration::from_secs(5),
        ..RelayConfig::new("127.0.0.1", sink.addr().port())
    });
    let f = temporary(relay.send(&to("x@external.test"), &note(1)).await);
    assert_says(&f, "does not offer STARTTLS");
    assert!(sink.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postfix_with_starttls_and_implicit_tls() {
    let dir = TempDir::new("relay-tls");
    let (cert, key) = self_signed_cert(dir.path());
    let sink = Sink::start();
    let postfix = Postfix::builder()
        .relayhost(sink.addr())
        .tls(&cert, &key)
        .start();
    let tls_relay = |addr: SocketAddr, tls, accept_invalid_certs| {
        Relay::new(RelayConfig {
            tls,
            accept_invalid_certs,
            timeout: Duration::from_secs(5),
            helo_name: "gw.imipd.test".into(),
            ..RelayConfig::new("127.0.0.1", addr.port())
        })
    };
    let starttls = tls_relay(postfix.smtp_addr(), RelayTls::StartTls, true);
    sent(&starttls, "x@external.test", 1, "STARTTLS").await;
    let implicit = tls_relay(postfix.smtps_addr(), RelayTls::Implicit, true);
    sent(&implicit, "x@external.test", 2, "implicit TLS").await;
    let got = sink.wait_for_messages(2, WAIT);
    for m in &got {
        let text = String::from_utf8_lossy(&m.data);
        assert!(
            text.contains("with ESMTPS"),
            "Postfix should record TLS: {text}"
        );
    }
    // A self-signed certificate is refused unless the configuration says otherwise.
    let strict = tls_relay(postfix.smtp_addr(), RelayTls::StartTls, false);
    let f = temporary(strict.send(&to("x@external.test"), &note(3)).await);
    assert_says(&f, "TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_that_would_inject_commands_are_refused_before_connecting() {
    let sink = Sink::start();
    let relay = plain_relay(sink.addr());
    let f = permanent(
        relay
            .send(
                &to("bob@example.net>\r\nRCPT TO:<evil@external.test"),
                &note(1),
            )
            .await,
    );
    assert_says(&f, "cannot be used in SMTP");
    assert_eq!(sink.connections(), 0);
}
