//! The outbox transport: what an admin finds in the folder when imipd has no relay.

#[path = "support/mod.rs"]
mod support;

use imipd::smtp::{Envelope, Outbox, SendError, Transport};
use std::path::PathBuf;
use support::TempDir;

fn envelope() -> Envelope {
    Envelope {
        mail_from: "imipd-bounces+q1@imip.test".into(),
        recipient: "bob@example.net".into(),
        envelope_id: None,
    }
}

fn message(id: &str, body: &str) -> Vec<u8> {
    format!("Message-ID: <{id}>\r\nSubject: test\r\n\r\n{body}\r\n").into_bytes()
}

/// An outbox in a new folder for `label` (removed on drop).
fn outbox_in(label: &str) -> (TempDir, Outbox) {
    let dir = TempDir::new(label);
    let outbox = Outbox::new(dir.path());
    (dir, outbox)
}

/// Visible files (what a pick-up script would see), sorted.
fn files(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("outbox folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn each_message_becomes_one_complete_eml_file_named_by_message_id() {
    let (dir, outbox) = outbox_in("outbox");
    let bytes = message("a1b2@gw.example.com", "hello");
    let handover = outbox.send(&envelope(), &bytes).await.expect("written");
    assert!(
        handover.detail.contains("a1b2@gw.example.com.eml"),
        "{}",
        handover.detail
    );
    assert_eq!(
        files(&dir),
        ["a1b2@gw.example.com.eml"],
        "no temporary files left"
    );
    assert_eq!(
        std::fs::read(dir.join("a1b2@gw.example.com.eml")).unwrap(),
        bytes
    );
}

#[tokio::test]
async fn the_same_message_twice_is_one_file_and_a_different_one_gets_a_new_name() {
    let (dir, outbox) = outbox_in("outbox-dup");
    let first = message("same@gw", "first");
    outbox.send(&envelope(), &first).await.expect("written");
    // A retry after a crash between writing and recording: no duplicate.
    outbox
        .send(&envelope(), &first)
        .await
        .expect("written again");
    assert_eq!(files(&dir), ["same@gw.eml"]);
    // Another message that happens to carry the same Message-ID is kept too.
    let second = message("same@gw", "second");
    outbox.send(&envelope(), &second).await.expect("written");
    assert_eq!(files(&dir), ["same@gw-2.eml", "same@gw.eml"]);
    assert_eq!(std::fs::read(dir.join("same@gw-2.eml")).unwrap(), second);
}

#[tokio::test]
async fn hostile_message_ids_cannot_leave_the_folder() {
    let dir = TempDir::new("outbox-hostile");
    let outbox = Outbox::new(dir.join("out"));
    std::fs::create_dir(dir.join("out")).unwrap();
    for id in ["../../escape@x", "/etc/passwd", ".hidden@x", "a\u{0}b@x"] {
        outbox
            .send(&envelope(), &message(id, "x"))
            .await
            .expect("written");
    }
    let names: Vec<String> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    for name in &names {
        assert!(!name.starts_with('.'), "{name}");
        assert!(name.ends_with(".eml"), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-+@".contains(c)),
            "{name}"
        );
    }
    assert_eq!(files(&dir), ["out"], "nothing written outside the outbox");
    // Without any Message-ID the name comes from the content.
    let outbox = Outbox::new(dir.join("out"));
    outbox
        .send(&envelope(), b"Subject: no id\r\n\r\nx\r\n")
        .await
        .expect("written");
    assert!(std::fs::read_dir(dir.join("out"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("nomsgid-")));
}

#[tokio::test]
async fn concurrent_sends_all_land() {
    let dir = TempDir::new("outbox-many");
    let outbox = std::sync::Arc::new(Outbox::new(dir.path()));
    let mut tasks = Vec::new();
    for n in 0..20 {
        let outbox = outbox.clone();
        tasks.push(tokio::spawn(async move {
            outbox
                .send(&envelope(), &message(&format!("m{n}@gw"), "x"))
                .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("written");
    }
    assert_eq!(files(&dir).len(), 20);
}

#[tokio::test]
async fn a_missing_folder_is_a_temporary_failure_that_says_what_to_do() {
    let dir = TempDir::new("outbox-missing");
    let missing: PathBuf = dir.join("not-there");
    let outbox = Outbox::new(&missing);
    match outbox.send(&envelope(), &message("x@gw", "x")).await {
        Err(SendError::Temporary(f)) => {
            assert!(
                f.message.contains(&missing.display().to_string()),
                "{}",
                f.message
            );
            assert!(f.message.contains("create the folder"), "{}", f.message);
        }
        other => panic!("expected a temporary failure, got {other:?}"),
    }
}

#[tokio::test]
async fn names_given_by_send_are_made_durable_by_one_flush_which_reports_a_failure() {
    let dir = TempDir::new("outbox-flush");
    let folder = dir.join("out");
    std::fs::create_dir_all(&folder).expect("folder");
    let outbox = Outbox::new(&folder);
    outbox.flush().await.expect("nothing to sync");
    for i in 0..3 {
        let bytes = message(&format!("m{i}@gw"), "x");
        outbox.send(&envelope(), &bytes).await.expect("written");
    }
    outbox.flush().await.expect("one sync for the three");
    // A folder that cannot be synced is a temporary failure, so the queue tries the
    // emails again rather than record them as sent.
    outbox
        .send(&envelope(), &message("m3@gw", "x"))
        .await
        .expect("written");
    std::fs::remove_dir_all(&folder).expect("gone");
    match outbox.flush().await {
        Err(SendError::Temporary(failure)) => {
            assert!(failure.to_string().contains("sync folder"), "{failure}")
        }
        other => panic!("expected a temporary failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_batch_becomes_one_file_per_message_and_answers_in_order() {
    let (dir, outbox) = outbox_in("outbox-batch");
    let mut mails: Vec<(Envelope, Vec<u8>)> = (0..20)
        .map(|i| {
            (
                envelope(),
                message(&format!("m{i:02}@gw"), &format!("body {i}")),
            )
        })
        .collect();
    // The same message twice in one batch (a retry racing its first try): one file.
    mails.push((envelope(), message("m03@gw", "body 3")));
    let results = outbox.send_all(&mails).await;
    assert_eq!(results.len(), 21);
    for (i, result) in results.iter().enumerate() {
        let detail = &result.as_ref().expect("written").detail;
        let id = if i == 20 { 3 } else { i };
        assert!(
            detail.contains(&format!("m{id:02}@gw.eml")),
            "{i}: {detail}"
        );
    }
    outbox.flush().await.expect("the folder syncs");
    let expected: Vec<String> = (0..20).map(|i| format!("m{i:02}@gw.eml")).collect();
    assert_eq!(
        files(&dir),
        expected,
        "one whole file each, no temporary files"
    );
    for i in 0..20 {
        assert_eq!(
            std::fs::read(dir.join(&format!("m{i:02}@gw.eml"))).expect("file"),
            message(&format!("m{i:02}@gw"), &format!("body {i}"))
        );
    }
}
