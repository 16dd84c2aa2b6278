//! The sender policy as an admin sees it: `imipd check-config` says how senders are
//! judged, and warns loudly while the closed-test-setup option is on; the defaults are
//! the secure ones.

use imipd::config::{Config, ImportPolicy};
use imipd::daemon::admin::check_config;

#[path = "support/mod.rs"]
mod support;
use support::TempDir;

fn site(lmtp_extra: &str) -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new("sender-auth-config");
    std::fs::create_dir_all(dir.path().join("stores/alice/calendar")).expect("store");
    let path = dir.path().join("imipd.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nroot = \"stores\"\n[[user]]\nname = \"alice\"\naddresses = [\"alice@example.com\"]\n\
             [lmtp]\nlisten = \"127.0.0.1:2424\"\n{lmtp_extra}"
        ),
    )
    .expect("configuration");
    (dir, path)
}

#[test]
fn the_defaults_accept_changes_only_from_authenticated_senders() {
    let (_dir, path) = site("");
    let config = Config::load(&path).expect("valid");
    let lmtp = config.lmtp.expect("[lmtp]");
    assert!(!lmtp.insecure_trust_from_header);
    assert_eq!(lmtp.import_policy, ImportPolicy::Authenticated);
    let report = check_config(&path).expect("check-config");
    assert!(!report.contains("WARNING"), "{report}");
    assert!(
        report.contains(
            "senders: changes to existing events only from authenticated senders \
             (DKIM/SPF/DMARC checked by imipd); new invitations from authenticated senders"
        ),
        "{report}"
    );
}

#[test]
fn check_config_warns_while_every_from_is_believed() {
    let (_dir, path) = site("insecure_trust_from_header = true\n");
    let report = check_config(&path).expect("check-config");
    assert!(
        report.contains("WARNING: lmtp.insecure_trust_from_header is set"),
        "{report}"
    );
    assert!(
        report.contains("anyone who can mail this host can cancel"),
        "{report}"
    );
}

#[test]
fn the_old_switch_is_gone_rather_than_silently_ignored() {
    // `require_authenticated` was the opt-in; authentication is now the default, and a
    // configuration still naming the old key is told so instead of running open.
    let (_dir, path) = site("require_authenticated = false\n");
    let err = Config::load(&path).expect_err("unknown key").to_string();
    assert!(err.contains("require_authenticated is gone"), "{err}");
}
