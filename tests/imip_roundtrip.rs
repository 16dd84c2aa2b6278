//! Every mail imipd builds reads back as the same iTIP message: with imipd's own
//! parser, and with an independent one (Python's standard `email` package).

#[path = "data/imip/fixtures.rs"]
mod fixtures;

/// Test names carry the `imip::` prefix so `cargo test imip` selects them.
mod imip {
    use super::fixtures;
    use calcard::icalendar::ICalendar;
    use fixtures::{addr, all_cases, options, stamp, Case, BOB};
    use imipd::imip::{build_message, parse_incoming, IncomingOptions, Language};
    use std::path::PathBuf;
    use std::process::Command;

    fn non_ascii_case() -> Case {
        let msg = fixtures::juergens_request(
            [
                "DTSTART;TZID=Europe/Berlin:20090602T160000",
                "DTEND;TZID=Europe/Berlin:20090602T170000",
            ],
            "équipe 日本語のテキスト, a line long enough to be folded",
            &["ATTENDEE;CN=Jürgen Müller;PARTSTAT=ACCEPTED:mailto:juergen@example.com"],
        );
        Case {
            name: "non-ascii",
            msg,
            recipient: addr(BOB),
        }
    }

    fn every_case() -> Vec<Case> {
        let mut cases = all_cases();
        cases.push(non_ascii_case());
        cases
    }

    #[test]
    fn every_built_message_parses_back_into_the_same_itip() {
        let mut checked = 0;
        for language in Language::ALL {
            for case in every_case() {
                let mail = build_message(&case.msg, &case.recipient, &options(language), &stamp())
                    .unwrap();
                let incoming = parse_incoming(
                    &mail.bytes,
                    Some(mail.envelope_from.as_str()),
                    &IncomingOptions::default(),
                )
                .unwrap_or_else(|e| panic!("{} {language}: {e}", case.name));
                assert_eq!(incoming.method, case.msg.method, "{} {language}", case.name);
                assert_eq!(
                    incoming.calendar_text,
                    case.msg.to_ics(),
                    "{} {language}: calendar bytes",
                    case.name
                );
                assert_eq!(
                    incoming.calendar,
                    ICalendar::parse(case.msg.to_ics()).unwrap(),
                    "{} {language}",
                    case.name
                );
                let from = incoming.sender.from.as_ref().unwrap();
                assert_eq!(from.address, case.msg.from, "{} {language}", case.name);
                assert_eq!(
                    incoming.message_id.as_deref(),
                    Some(mail.message_id.as_str())
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 3 * 18);
    }

    #[test]
    fn a_non_ascii_organizer_and_title_survive_byte_for_byte() {
        let case = non_ascii_case();
        let mail =
            build_message(&case.msg, &case.recipient, &options(Language::De), &stamp()).unwrap();
        let incoming = parse_incoming(&mail.bytes, None, &IncomingOptions::default()).unwrap();
        assert_eq!(
            incoming.calendar_text.as_bytes(),
            case.msg.to_ics().as_bytes()
        );
        assert!(incoming
            .calendar_text
            .contains("SUMMARY:Réunion d'équipe — 日本"));
        assert!(incoming.calendar_text.contains("Jürgen Müller"));
        assert_eq!(
            incoming.sender.from.unwrap().name.as_deref(),
            Some("Jürgen Müller")
        );
        assert_eq!(
            mail.subject,
            "Einladung: Réunion d'équipe — 日本 @ Di. 2. Juni 2009 16:00–17:00 (Europe/Berlin)"
        );
    }

    /// Python reads the mail with the standard `email` package and reports what a
    /// client would see; the expected calendar text is passed in a file.
    const PYTHON_CHECK: &str = r#"
import sys, email
from email import policy
raw = open(sys.argv[1], 'rb').read()
expected = open(sys.argv[2], 'rb').read()
msg = email.message_from_bytes(raw, policy=policy.default)
def tree(part):
    ct = part.get_content_type()
    if ct == 'text/calendar':
        ct += ';method=' + str(part.get_param('method'))
    if part.is_multipart():
        return ct + '[' + ','.join(tree(p) for p in part.iter_parts()) + ']'
    return ct
print('tree=' + tree(msg))
print('subject=' + str(msg['subject']))
print('from=' + str(msg['from']))
for part in msg.walk():
    ct = part.get_content_type()
    if ct == 'text/calendar':
        print('calendar_charset=' + str(part.get_content_charset()))
        print('calendar_equal=' + str(part.get_payload(decode=True) == expected))
    elif ct == 'application/ics':
        print('attachment_filename=' + str(part.get_filename()))
        print('attachment_equal=' + str(part.get_payload(decode=True) == expected))
    elif ct == 'text/plain':
        print('plain_decodes=' + str(len(part.get_content()) > 0))
print('defects=' + str(sum(len(p.defects) for p in msg.walk())))
"#;

    fn python() -> Option<&'static str> {
        ["python3", "python"].into_iter().find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    }

    #[test]
    fn pythons_email_package_sees_the_same_layout_and_calendar() {
        let Some(python) = python() else {
            eprintln!(
                "SKIPPED: python3 is not installed, so the independent MIME check cannot run"
            );
            return;
        };
        let dir = std::env::temp_dir().join(format!("imipd-imip-python-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for case in every_case() {
            let mail = build_message(&case.msg, &case.recipient, &options(Language::Fr), &stamp())
                .unwrap();
            let eml: PathBuf = dir.join(format!("{}.eml", case.name));
            let ics: PathBuf = dir.join(format!("{}.ics", case.name));
            std::fs::write(&eml, &mail.bytes).unwrap();
            std::fs::write(&ics, case.msg.to_ics()).unwrap();
            let out = Command::new(python)
                .args(["-c", PYTHON_CHECK])
                .arg(&eml)
                .arg(&ics)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}: {}",
                case.name,
                String::from_utf8_lossy(&out.stderr)
            );
            let method = imipd::itip::method_name(&case.msg.method);
            let expected_lines = [
            format!(
                "tree=multipart/mixed[multipart/alternative[text/plain,text/html,text/calendar;method={method}],application/ics]"
            ),
            format!("subject={}", mail.subject),
            "calendar_charset=utf-8".to_string(),
            "calendar_equal=True".to_string(),
            "attachment_filename=invite.ics".to_string(),
            "attachment_equal=True".to_string(),
            "plain_decodes=True".to_string(),
            "defects=0".to_string(),
        ];
            for line in expected_lines {
                assert!(
                    stdout.lines().any(|l| l == line),
                    "{}: expected {line:?} in\n{stdout}",
                    case.name
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
