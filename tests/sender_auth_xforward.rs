//! Postfix's XFORWARD over imipd's LMTP server: offered in the LHLO reply, read before
//! MAIL FROM, handed to the handler with the message (SPF is checked against that
//! address, not the MTA's), cleared after the transaction, refused inside one.

use std::time::Duration;

#[path = "support/mod.rs"]
mod support;
use support::lmtp::{start_lmtp, test_config, RecordingHandler};
use support::tools::Wire;

#[tokio::test]
async fn the_client_postfix_names_reaches_the_handler_for_one_transaction() {
    let handler = RecordingHandler::new();
    handler.user("alice@example.com");
    let lmtp = start_lmtp(test_config(), handler.clone()).await;
    let mut wire = Wire::tcp(lmtp.tcp()).await;
    wire.expect("220").await;
    wire.send("LHLO mx.example.com\r\n").await;
    let lhlo = wire.reply().await;
    assert!(
        lhlo.iter()
            .any(|l| l.ends_with("XFORWARD NAME ADDR PROTO HELO SOURCE")),
        "{lhlo:?}"
    );
    wire.send("XFORWARD NAME=mail.example.net ADDR=192.0.2.10 PROTO=ESMTP\r\n")
        .await;
    wire.expect("250").await;
    wire.send("XFORWARD HELO=mail.example.net SOURCE=REMOTE\r\n")
        .await;
    wire.expect("250").await;
    wire.send("XFORWARD COLOUR=red\r\n").await;
    wire.expect("501").await;
    for (n, id) in ["one", "two"].iter().enumerate() {
        wire.send("MAIL FROM:<carol@example.net>\r\n").await;
        wire.expect("250").await;
        if n == 0 {
            // Attributes belong before MAIL FROM.
            wire.send("XFORWARD ADDR=203.0.113.66\r\n").await;
            wire.expect("503").await;
        }
        wire.send("RCPT TO:<alice@example.com>\r\n").await;
        wire.expect("250").await;
        wire.send("DATA\r\n").await;
        wire.expect("354").await;
        wire.send(format!("Subject: {id}\r\n\r\nbody\r\n.\r\n"))
            .await;
        wire.expect("250").await;
    }
    let received = handler.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(
        received[0].client.addr,
        Some("192.0.2.10".parse().expect("ip"))
    );
    assert_eq!(received[0].client.helo.as_deref(), Some("mail.example.net"));
    assert_eq!(received[0].client.name.as_deref(), Some("mail.example.net"));
    // The next transaction had no XFORWARD of its own: nothing carries over.
    assert_eq!(received[1].client, Default::default());
    lmtp.shutdown().await;
}
