//! `imipd inject --dry-run` gives the verdict the real `imipd inject` gives, by the
//! same path, and changes nothing: every inbound fixture is run both ways, against a
//! store where most of them meet an existing event.

#[path = "data/imip/fixtures.rs"]
mod fixtures;
mod support;

use imipd::config::Config;
use imipd::daemon::admin::scan;
use imipd::daemon::inject::inject_direct;
use imipd::imip::{build_message, Language, Stamp};
use std::collections::BTreeMap;
use std::path::Path;
use support::TempDir;

const NOW: i64 = 1_243_850_400; // 2009-06-01 10:00 UTC, the fixtures' time

/// Every file under `dir` with a digest of its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        for entry in std::fs::read_dir(&next).expect("folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("file");
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                std::hash::Hash::hash(&bytes, &mut hasher);
                let name = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                out.insert(name, std::hash::Hasher::finish(&hasher));
            }
        }
    }
    out
}

/// The verdict lines of an inject report (the sender line and the dry run's note set
/// aside).
fn verdicts(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.contains(": ") && l.contains('@'))
        .filter(|l| !l.starts_with("sender"))
        .collect()
}

#[test]
fn every_inbound_fixture_gets_the_same_verdict_and_exit_code_dry_and_real_and_the_dry_run_writes_nothing(
) {
    let dir = TempDir::new("inject-dry-run");
    let root = dir.path();
    for user in ["owner", "alice", "bob"] {
        std::fs::create_dir_all(root.join("stores").join(user).join("calendar")).expect("folders");
    }
    // Alice organizes the fixtures' event: replies, refreshes and counters meet it.
    let organizer_copy = fixtures::case("request-invite")
        .msg
        .calendar
        .to_string()
        .replace("METHOD:REQUEST\r\n", "");
    std::fs::write(root.join("stores/alice/calendar/lunch.ics"), organizer_copy).expect("copy");
    let path = root.join("imipd.toml");
    std::fs::write(
        &path,
        "state = \"state/imipd.redb\"\n[store]\nroot = \"stores\"\n\
         [[user]]\nname = \"owner\"\naddresses = [\"owner@example.org\"]\n\
         [[user]]\nname = \"alice\"\naddresses = [\"alice@example.com\"]\n\
         [[user]]\nname = \"bob\"\naddresses = [\"bob@example.net\"]\n\
         [mail]\ndomain = \"example.org\"\n[queue]\noutbox = \"outbox\"\n\
         [lmtp]\nlisten = \"127.0.0.1:2424\"\nimport_policy = \"everyone\"\n\
         insecure_trust_from_header = true\n",
    )
    .expect("configuration");
    let config = Config::load(&path).expect("configuration");
    std::fs::create_dir_all(root.join("state")).expect("state folder");
    scan(&config, NOW, true).expect("baseline");

    // (name, recipient, message): the fixtures' requests first, so later messages
    // about the same event meet the copy the real run made.
    let mut messages: Vec<(String, String, Vec<u8>)> = Vec::new();
    for file in support::files::with_extension(Path::new("tests/data/imip/inbound"), "eml") {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        messages.push((
            name,
            "owner@example.org".into(),
            std::fs::read(&file).expect("eml"),
        ));
    }
    for (n, case) in fixtures::all_cases().into_iter().enumerate() {
        let stamp = Stamp {
            unique: n as _,
            ..fixtures::stamp()
        };
        let mail = build_message(
            &case.msg,
            &case.recipient,
            &fixtures::options(Language::En),
            &stamp,
        )
        .expect("message");
        messages.push((
            case.name.to_string(),
            case.recipient.to_string(),
            mail.bytes,
        ));
    }
    assert!(messages.len() >= 20, "{}", messages.len());
    // A recipient nobody is, and a message that is no iMIP at all.
    messages.push((
        "unknown user".into(),
        "nobody@example.org".into(),
        messages[0].2.clone(),
    ));
    messages.push((
        "not imip".into(),
        "owner@example.org".into(),
        b"From: a@example.net\r\nTo: owner@example.org\r\nSubject: hi\r\n\r\nhello\r\n".to_vec(),
    ));

    let mut codes = BTreeMap::new();
    for (name, rcpt, data) in &messages {
        let before = snapshot(root);
        let (dry_code, dry) = inject_direct(&config, rcpt, data, true, NOW).expect("dry run");
        assert_eq!(
            before,
            snapshot(root),
            "{name}: the dry run changed a file:\n{dry}"
        );
        let (code, real) = inject_direct(&config, rcpt, data, false, NOW).expect("inject");
        assert_eq!(
            verdicts(&dry),
            verdicts(&real),
            "{name}:\ndry:\n{dry}\nreal:\n{real}"
        );
        assert!(!verdicts(&real).is_empty(), "{name}: {real}");
        assert_eq!(dry_code, code, "{name}:\ndry:\n{dry}\nreal:\n{real}");
        assert!(dry.contains("nothing was changed"), "{dry}");
        *codes.entry(code).or_insert(0) += 1;
    }
    // The run covers more than one verdict: applied, ignored and unknown user at least.
    for code in [0u8, 1, 67] {
        assert!(
            codes.contains_key(&code),
            "exit {code} never seen: {codes:?}"
        );
    }
}
