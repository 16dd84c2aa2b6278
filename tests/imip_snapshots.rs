//! Snapshots of what people read: subject, plain text and HTML of every kind of
//! message in every language, plus one complete email byte for byte.
//!
//! Snapshots live in `tests/data/imip/snapshots/`. After an intended change of
//! wording or layout, regenerate them with
//! `IMIPD_UPDATE_SNAPSHOTS=1 cargo test --test imip_snapshots` and review the diff.

#[path = "data/imip/fixtures.rs"]
mod fixtures;

/// Test names carry the `imip::` prefix so `cargo test imip` selects them.
mod imip {
    use super::fixtures;
    use fixtures::{all_cases, options, stamp};
    use imipd::imip::{build_message, Language};
    use mail_parser::MessageParser;
    use std::path::PathBuf;

    fn snapshot_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/imip/snapshots")
    }

    /// Compares `actual` with the stored snapshot `name`, or stores it when asked to.
    fn check(name: &str, actual: &[u8], failures: &mut Vec<String>) {
        let path = snapshot_dir().join(name);
        if std::env::var_os("IMIPD_UPDATE_SNAPSHOTS").is_some() {
            std::fs::create_dir_all(snapshot_dir()).unwrap();
            std::fs::write(&path, actual).unwrap();
            return;
        }
        match std::fs::read(&path) {
            Ok(expected) if expected == actual => {}
            Ok(_) => failures.push(format!(
                "{name} differs; actual output:\n{}",
                String::from_utf8_lossy(actual)
            )),
            Err(e) => failures.push(format!("{name}: {e} (run with IMIPD_UPDATE_SNAPSHOTS=1)")),
        }
    }

    #[test]
    fn every_message_kind_in_every_language_reads_as_recorded() {
        let mut failures = Vec::new();
        let mut count = 0;
        for language in Language::ALL {
            for case in all_cases() {
                let mail = build_message(&case.msg, &case.recipient, &options(language), &stamp())
                    .unwrap();
                let message = MessageParser::default().parse(&mail.bytes).unwrap();
                let text = message.body_text(0).unwrap().replace("\r\n", "\n");
                let html = message.body_html(0).unwrap().replace("\r\n", "\n");
                let rendered = format!(
                    "Subject: {}\n\n{}\n======== text/html ========\n{}",
                    mail.subject, text, html
                );
                check(
                    &format!("{}.{language}.txt", case.name),
                    rendered.as_bytes(),
                    &mut failures,
                );
                count += 1;
            }
        }
        assert_eq!(count, 17 * 3);
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }

    #[test]
    fn a_complete_invitation_is_byte_for_byte_stable() {
        let case = fixtures::case("request-invite");
        let mail =
            build_message(&case.msg, &case.recipient, &options(Language::En), &stamp()).unwrap();
        let mut failures = Vec::new();
        check("request-invite.en.eml", &mail.bytes, &mut failures);
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}
