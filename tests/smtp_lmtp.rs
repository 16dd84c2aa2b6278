//! imipd's LMTP server, spoken to directly: by swaks (the tool mail admins test with)
//! and by a raw client for the exact replies an MTA's LMTP client acts on.

#[path = "support/mod.rs"]
mod support;

use imipd::smtp::{LmtpConfig, LmtpError, LmtpServer, RecipientOutcome};
use std::time::Duration;
use support::lmtp::{alice_handler, start_lmtp, test_config, unix_config, RecordingHandler};
use support::tools::{args, server_replies, swaks_async, Wire};
use support::TempDir;

const SECS: Duration = Duration::from_secs(10);

/// A handler with three users whose deliveries end differently.
fn three_users() -> std::sync::Arc<RecordingHandler> {
    let handler = RecordingHandler::new();
    handler
        .user("alice@imip.test")
        .user_with(
            "busy@imip.test",
            RecipientOutcome::TempFail {
                enhanced: "4.3.1".into(),
                reason: "calendar store is full".into(),
            },
        )
        .user_with(
            "refuses@imip.test",
            RecipientOutcome::Rejected {
                code: 550,
                enhanced: "5.7.1".into(),
                reason: "sender may not add events to this calendar".into(),
            },
        );
    handler
}

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: organizer@example.org\r\nTo: alice@imip.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@example.org>\r\n\r\n{body}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lhlo_advertises_pipelining_size_and_no_chunking() {
    let server = start_lmtp(test_config(), RecordingHandler::new()).await;
    let mut c = Wire::tcp(server.tcp()).await;
    let greeting = c.expect("220 ").await;
    assert_eq!(greeting, "220 lmtp.imipd.test LMTP imipd ready");
    c.send("EHLO client.test\r\n").await;
    c.expect("500 5.5.1").await;
    c.send("MAIL FROM:<a@b.test>\r\n").await;
    c.expect("503 5.5.1").await;
    c.send("LHLO client.test\r\n").await;
    let lhlo = c.reply().await;
    assert_eq!(
        lhlo,
        [
            "250-lmtp.imipd.test",
            "250-PIPELINING",
            "250-ENHANCEDSTATUSCODES",
            "250-8BITMIME",
            "250-XFORWARD NAME ADDR PROTO HELO SOURCE",
            "250 SIZE 65536"
        ]
    );
    c.send("QUIT\r\n").await;
    c.expect("221 2.0.0").await;
    assert!(c.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_transaction_gets_one_reply_per_recipient_in_rcpt_order() {
    let handler = three_users();
    let server = start_lmtp(test_config(), handler.clone()).await;
    let mut c = Wire::tcp(server.tcp()).await;
    c.expect("220 ").await;
    // The whole envelope in one write, as a pipelining client sends it.
    c.send(
        "LHLO mx.test\r\nMAIL FROM:<organizer@example.org> BODY=8BITMIME\r\n\
         RCPT TO:<alice@imip.test>\r\nRCPT TO:<nobody@imip.test>\r\n\
         RCPT TO:<busy@imip.test>\r\nRCPT TO:<refuses@imip.test>\r\nDATA\r\n",
    )
    .await;
    c.expect("250 SIZE").await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    let unknown = c.expect("550 5.1.1").await;
    assert!(unknown.contains("nobody@imip.test"), "{unknown}");
    c.expect("250 2.1.5").await;
    c.expect("250 2.1.5").await;
    c.expect("354 ").await;
    let body = message("three", "..leading dot\r\nnon-ASCII: \u{e9}t\u{e9}\r\n");
    c.send(format!("{}\r\n.\r\n", body.replace("\r\n..", "\r\n...")))
        .await;
    // RFC 2033: after DATA, one reply per accepted RCPT, in RCPT order.
    c.expect("250 2.0.0").await;
    let busy = c.expect("451 4.3.1").await;
    assert!(busy.contains("calendar store is full"), "{busy}");
    let refused = c.expect("550 5.7.1").await;
    assert!(refused.contains("may not add events"), "{refused}");
    c.send("QUIT\r\n").await;
    c.expect("221").await;

    let received = handler.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.mail_from, "organizer@example.org");
    assert_eq!(
        got.recipients,
        ["alice@imip.test", "busy@imip.test", "refuses@imip.test"]
    );
    assert_eq!(got.lhlo, "mx.test");
    assert!(got.peer.starts_with("127.0.0.1:"), "{}", got.peer);
    assert_eq!(
        String::from_utf8(got.data.clone()).unwrap(),
        format!("{}\r\n", body)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_pipelined_lmtp_sees_each_recipients_outcome() {
    let handler = three_users();
    let server = start_lmtp(test_config(), handler.clone()).await;
    let run = swaks_async(args(&[
        "--protocol",
        "LMTP",
        "--pipeline",
        "--server",
        &server.tcp().to_string(),
        "--helo",
        "swaks.test",
        "--from",
        "organizer@example.org",
        "--to",
        "alice@imip.test,busy@imip.test,refuses@imip.test",
        "--header",
        "Subject: swaks",
    ]))
    .await;
    let replies = server_replies(&run.transcript);
    let after_data: Vec<&String> = replies
        .iter()
        .skip_while(|r| !r.starts_with("354"))
        .skip(1)
        .collect();
    assert!(
        after_data.len() >= 3
            && after_data[0].starts_with("250 2.0.0")
            && after_data[1].starts_with("451 4.3.1")
            && after_data[2].starts_with("550 5.7.1"),
        "swaks transcript:\n{}",
        run.transcript
    );
    assert!(
        replies.iter().any(|r| r == "250-PIPELINING"),
        "{}",
        run.transcript
    );
    let received = handler.wait_for(1, SECS).await;
    let text = String::from_utf8_lossy(&received[0].data).into_owned();
    assert!(text.contains("Subject: swaks"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_unverifiable_recipients_are_refused_at_rcpt() {
    let handler = RecordingHandler::new();
    handler
        .user("alice@imip.test")
        .check_fails("bob@imip.test", "user list is being reloaded");
    let server = start_lmtp(test_config(), handler.clone()).await;
    let mut c = Wire::tcp(server.tcp()).await;
    c.expect("220").await;
    c.send("LHLO mx.test\r\n").await;
    c.expect("250 ").await;
    c.send("MAIL FROM:<>\r\n").await;
    c.expect("250 2.1.0").await;
    c.send("RCPT TO:<stranger@imip.test>\r\n").await;
    c.expect("550 5.1.1").await;
    c.send("RCPT TO:<bob@imip.test>\r\n").await;
    let temp = c.expect("451 4.3.0").await;
    assert!(temp.contains("being reloaded"), "{temp}");
    c.send("DATA\r\n").await;
    c.expect("503 5.5.1").await;
    c.send("RCPT TO:<ALICE@imip.test>\r\n").await;
    c.expect("250 2.1.5").await;
    c.send("DATA\r\n").await;
    c.expect("354").await;
    c.send("Subject: bounce\r\n\r\nx\r\n.\r\n").await;
    c.expect("250 2.0.0").await;
    assert_eq!(handler.received()[0].mail_from, "");
    assert_eq!(handler.received()[0].recipients, ["ALICE@imip.test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_get_552_and_the_session_stays_usable() {
    let handler = RecordingHandler::new();
    handler.user("alice@imip.test").user("bob@imip.test");
    let server = start_lmtp(test_config(), handler.clone()).await;
    let mut c = Wire::tcp(server.tcp()).await;
    c.expect("220").await;
    c.send("LHLO mx.test\r\n").await;
    c.expect("250 ").await;
    // Declared too big: refused at MAIL.
    c.send("MAIL FROM:<o@example.org> SIZE=70000\r\n").await;
    c.expect("552 5.3.4").await;
    // Not declared, but too big: one 552 per recipient after DATA.
    c.send("MAIL FROM:<o@example.org>\r\nRCPT TO:<alice@imip.test>\r\nRCPT TO:<bob@imip.test>\r\nDATA\r\n")
        .await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    c.expect("250 2.1.5").await;
    c.expect("354").await;
    let big = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n".repeat(2000);
    c.send(format!("Subject: big\r\n\r\n{big}.\r\n")).await;
    c.expect("552 5.3.4").await;
    c.expect("552 5.3.4").await;
    // Still in step: the next transaction works.
    c.send("NOOP\r\n").await;
    c.expect("250 2.0.0").await;
    c.send("MAIL FROM:<o@example.org> SIZE=40\r\nRCPT TO:<bob@imip.test>\r\nDATA\r\n")
        .await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    c.expect("354").await;
    c.send("Subject: small\r\n\r\nok\r\n.\r\n").await;
    c.expect("250 2.0.0").await;
    let received = handler.received();
    assert_eq!(
        received.len(),
        1,
        "the big message must not reach the handler"
    );
    assert_eq!(received[0].data, b"Subject: small\r\n\r\nok\r\n");
}

/// Deterministic pseudo-random bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_500_and_never_breaks_the_server() {
    let config = LmtpConfig {
        max_errors: 100_000,
        max_commands: 100_000,
        ..test_config()
    };
    let handler = alice_handler();
    let server = start_lmtp(config, handler.clone()).await;

    let mut c = Wire::tcp(server.tcp()).await;
    c.expect("220").await;
    c.send("\u{1}\u{2}hello there\r\n").await;
    c.expect("500 5.5.2").await;
    c.send(format!("NOOP {}\r\n", "x".repeat(5000))).await;
    c.expect("500 5.5.2").await;
    c.send("MAIL FROM:<unterminated\r\n").await;
    let bad = c.reply().await;
    assert!(
        bad[0].starts_with("501") || bad[0].starts_with("500"),
        "{bad:?}"
    );

    // Random bytes after command prefixes, one connection each, ended by QUIT: the
    // session must answer everything and say goodbye (a panic would just close it).
    let fragments: [&[u8]; 7] = [
        b"MAIL FROM:<",
        b"RCPT TO:<a@b> NOTIFY=",
        b"LHLO ",
        b"",
        b"\xff\xfe\x00",
        b"NOOP ",
        b"RSET\r\n",
    ];
    for round in 0..140u64 {
        let mut input = noise(round, (round as usize * 7) % 300);
        input.retain(|b| *b != b'\n');
        let mut line = fragments[(round % 7) as usize].to_vec();
        line.extend_from_slice(&input);
        line.extend_from_slice(b"\r\nQUIT\r\n");
        let mut w = Wire::tcp(server.tcp()).await;
        w.expect("220").await;
        w.send(&line).await;
        let mut last = String::new();
        while let Some(l) = w.line().await {
            last = l;
        }
        assert!(
            last.starts_with("221 2.0.0"),
            "round {round}: last reply {last:?}"
        );
    }
    // A fresh connection still delivers.
    let mut d = Wire::tcp(server.tcp()).await;
    d.expect("220").await;
    d.send("LHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@imip.test>\r\nDATA\r\n")
        .await;
    for prefix in ["250 ", "250 2.1.0", "250 2.1.5", "354"] {
        d.expect(prefix).await;
    }
    d.send("Subject: after noise\r\n\r\n.\r\n").await;
    d.expect("250 2.0.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_errors_or_commands_close_the_session() {
    let config = LmtpConfig {
        max_errors: 3,
        max_commands: 6,
        ..test_config()
    };
    let server = start_lmtp(config, RecordingHandler::new()).await;
    let mut c = Wire::tcp(server.tcp()).await;
    c.expect("220").await;
    c.send("x\r\ny\r\nz\r\nw\r\n").await;
    for _ in 0..4 {
        c.expect("500 5.5.2").await;
    }
    c.expect("421 4.7.0").await;
    assert!(c.closed().await);

    let mut d = Wire::tcp(server.tcp()).await;
    d.expect("220").await;
    d.send("NOOP\r\n".repeat(7)).await;
    for _ in 0..6 {
        d.expect("250").await;
    }
    d.expect("421 4.7.0").await;
    assert!(d.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_is_told_421_4_4_2_and_disconnected() {
    let config = LmtpConfig {
        idle_timeout: Duration::from_millis(300),
        ..test_config()
    };
    let server = start_lmtp(config, RecordingHandler::new()).await;
    let mut c = Wire::tcp(server.tcp()).await;
    c.expect("220").await;
    c.send("LHLO x\r\n").await;
    c.expect("250 ").await;
    let line = c.line().await.unwrap_or_default();
    assert!(line.starts_with("421 4.4.2"), "{line}");
    assert!(c.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_421_4_3_2() {
    let config = LmtpConfig {
        max_connections: 2,
        ..test_config()
    };
    let server = start_lmtp(config, RecordingHandler::new()).await;
    let mut a = Wire::tcp(server.tcp()).await;
    a.expect("220").await;
    let mut b = Wire::tcp(server.tcp()).await;
    b.expect("220").await;
    let mut c = Wire::tcp(server.tcp()).await;
    c.expect("421 4.3.2").await;
    assert!(c.closed().await);
    // A freed slot is usable again.
    a.send("QUIT\r\n").await;
    a.expect("221").await;
    assert!(a.closed().await);
    let mut greeted = false;
    for _ in 0..50 {
        let mut d = Wire::tcp(server.tcp()).await;
        if d.reply().await[0].starts_with("220") {
            greeted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(greeted, "a slot should free up after QUIT");
    b.send("NOOP\r\n").await;
    b.expect("250").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_delivery_finish_and_turns_idle_sessions_away() {
    let handler = RecordingHandler::new();
    handler
        .user("alice@imip.test")
        .slow(Duration::from_millis(700));
    let server = start_lmtp(test_config(), handler.clone()).await;
    let addr = server.tcp();

    let mut idle = Wire::tcp(addr).await;
    idle.expect("220").await;
    idle.send("LHLO idle\r\n").await;
    idle.expect("250 ").await;

    let mut busy = Wire::tcp(addr).await;
    busy.expect("220").await;
    busy.send("LHLO busy\r\nMAIL FROM:<o@example.org>\r\nRCPT TO:<alice@imip.test>\r\nDATA\r\n")
        .await;
    for prefix in ["250 ", "250 2.1.0", "250 2.1.5", "354"] {
        busy.expect(prefix).await;
    }
    busy.send("Subject: in flight\r\n\r\nx\r\n.\r\n").await;
    // The handler is now delivering (it takes 700 ms); shut down meanwhile.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = server.begin_shutdown();

    idle.expect("421 4.3.2").await;
    assert!(idle.closed().await);
    busy.expect("250 2.0.0").await;
    busy.send("NOOP\r\n").await;
    busy.expect("421 4.3.2").await;
    assert!(busy.closed().await);
    tokio::time::timeout(SECS, stopped)
        .await
        .expect("serve returns once sessions ended")
        .expect("server task");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
    assert_eq!(handler.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_replaces_a_stale_file_and_removes_it_on_shutdown() {
    let dir = TempDir::new("lmtp-sock");
    let path = dir.join("lmtp.sock");
    // A socket file left behind by a crashed server.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("stale socket"));
    assert!(path.exists());
    let config = unix_config(&path, 0o660);
    let handler = alice_handler();
    let server = start_lmtp(config.clone(), handler.clone()).await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);

    // A second server must not steal a live socket.
    match LmtpServer::bind(config, handler.clone()).await {
        Err(LmtpError::Unix { reason, .. }) => {
            assert!(reason.contains("already running"), "{reason}")
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a live socket was taken over"),
    }

    let run = swaks_async(args(&[
        "--protocol",
        "LMTP",
        "--socket",
        path.to_str().unwrap(),
        "--from",
        "o@example.org",
        "--to",
        "alice@imip.test",
        "--header",
        "Subject: over a unix socket",
    ]))
    .await;
    assert_eq!(run.status, 0, "{}", run.transcript);
    let received = handler.wait_for(1, SECS).await;
    assert!(
        received[0].peer.starts_with("unix:"),
        "{}",
        received[0].peer
    );
    server.shutdown().await;
    assert!(!path.exists(), "socket file removed on shutdown");
}

#[tokio::test]
async fn a_server_without_listeners_is_a_configuration_error() {
    let config = LmtpConfig {
        tcp: None,
        unix: None,
        ..test_config()
    };
    let err = LmtpServer::bind(config, RecordingHandler::new())
        .await
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("lmtp.listen"), "{err}");
}
