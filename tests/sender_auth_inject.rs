//! `imipd inject` makes the same sender check as the LMTP server (DNS included) and
//! shows its reason: a forged REPLY is refused and says why, a signed one is applied.
//! A dnsmasq on loopback serves example.net's DKIM key and DMARC record.

use imipd::config::Config;
use imipd::daemon::admin::scan;
use imipd::daemon::inject::inject_direct;
use std::path::Path;

/// `imipd inject` with the daemon stopped: the text it prints.
fn inject(
    config: &Config,
    rcpt: &str,
    message: &Path,
    dry_run: bool,
    now: i64,
) -> Result<String, String> {
    let data = std::fs::read(message).map_err(|e| e.to_string())?;
    inject_direct(config, rcpt, &data, dry_run, now).map(|(_, text)| text)
}

#[path = "support/mod.rs"]
mod support;
use support::dns::{DkimKey, Dns};
use support::TempDir;

const NOW: i64 = 1_900_000_000;

const ALICE_COPY: &str =
    support::events::budget_copy!("ATTENDEE;RSVP=TRUE:mailto:carol@example.net\r\n");

const REPLY: &str = "From: carol@example.net\r\nTo: alice@example.com\r\nSubject: Declined\r\n\
Message-ID: <inject-1@example.net>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/calendar; method=REPLY; charset=utf-8\r\n\r\n\
BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Client//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n\
UID:budget-1\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:1\r\nORGANIZER:mailto:alice@example.com\r\n\
ATTENDEE;PARTSTAT=DECLINED:mailto:carol@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

#[test]
fn inject_refuses_a_forged_reply_with_its_reason_and_applies_a_signed_one() {
    let key = DkimKey::from_seed(3);
    let dns = Dns::start(&[
        ("s1._domainkey.example.net", key.dns_record()),
        ("_dmarc.example.net", "v=DMARC1; p=reject".to_string()),
    ]);
    let dir = TempDir::new("sender-auth-inject");
    let folder = dir.path().join("stores/alice/calendar");
    std::fs::create_dir_all(&folder).expect("store");
    std::fs::write(folder.join("budget.ics"), ALICE_COPY).expect("event");
    let path = dir.path().join("imipd.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nroot = \"stores\"\n[[user]]\nname = \"alice\"\naddresses = [\"alice@example.com\"]\n\
             [mail]\ndomain = \"example.com\"\n\
             [lmtp]\nlisten = \"127.0.0.1:2424\"\ndns_servers = [\"{}\"]\ndns_timeout = 5\n",
            dns.addr()
        ),
    )
    .expect("configuration");
    let config = Config::load(&path).expect("configuration");
    scan(&config, NOW, true).expect("baseline");

    let forged = dir.path().join("forged.eml");
    std::fs::write(&forged, REPLY).expect("mail");
    let dry = inject(&config, "alice@example.com", &forged, true, NOW).expect("dry run");
    assert!(dry.contains("sender not authenticated: dkim=none"), "{dry}");
    // The dry run's verdict is the real one's, word for word.
    assert!(
        dry.contains("250 2.0.0 ignored: REPLY from carol@example.net about an existing event refused: sender not authenticated"),
        "{dry}"
    );
    assert!(dry.contains("nothing was changed"), "{dry}");
    let out = inject(&config, "alice@example.com", &forged, false, NOW).expect("inject");
    assert!(
        out.contains("250 2.0.0 ignored: REPLY from carol@example.net about an existing event refused: sender not authenticated"),
        "{out}"
    );
    let read = || std::fs::read_to_string(folder.join("budget.ics")).expect("alice's copy");
    assert_eq!(read(), ALICE_COPY);

    let signed = dir.path().join("signed.eml");
    std::fs::write(&signed, key.sign("example.net", "s1", REPLY)).expect("mail");
    let out = inject(&config, "alice@example.com", &signed, false, NOW).expect("inject");
    assert!(
        out.contains("sender authenticated: dkim=pass d=example.net"),
        "{out}"
    );
    assert!(out.contains("REPLY applied"), "{out}");
    assert!(
        read().contains("PARTSTAT=DECLINED:mailto:carol@example.net"),
        "{}",
        read()
    );
}
