//! The real Thunderbird against Radicale and imipd (issue 22): every recipient gets
//! exactly one message per action, and Thunderbird shows the answers.
//!
//! The work is done by `tests/thunderbird/harness.py`: Debian's `thunderbird` (ESR),
//! headless, driven over Marionette (PyPI `marionette_driver`) through Thunderbird's own
//! calendar code, Radicale with htpasswd users, `imipd serve` with its CalDAV front, and
//! an SMTP sink, all on 127.0.0.1 (a trap proxy fails the test on any other request).
//! This test runs it with the imipd binary under test and fails with its words. Without
//! Thunderbird or marionette_driver it skips loudly, unless `CI=true`, where a missing
//! one fails (`.ci/run` installs both).

use std::path::Path;
use std::process::Command;

/// Whether Thunderbird and marionette_driver are installed; with `CI=true` a missing one
/// fails the test.
fn thunderbird_available() -> bool {
    let thunderbird = Command::new("thunderbird")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let marionette = Command::new("python3")
        .args(["-c", "import marionette_driver, aiosmtpd, radicale"])
        .status()
        .is_ok_and(|s| s.success());
    if thunderbird && marionette {
        return true;
    }
    let missing = format!(
        "thunderbird: {thunderbird}, marionette_driver/aiosmtpd/radicale: {marionette} \
         (apt-get install thunderbird; pip install marionette_driver aiosmtpd radicale; see .ci/run)"
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the real-Thunderbird test needs Thunderbird in CI: {missing}"
    );
    eprintln!("SKIPPED: the real-Thunderbird test found no Thunderbird: {missing}");
    false
}

#[test]
fn real_thunderbird_sends_each_recipient_exactly_one_message_per_action() {
    if !thunderbird_available() {
        return;
    }
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-thunderbird");
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/thunderbird/harness.py");
    let mut command = Command::new("python3");
    command
        .arg(&harness)
        .arg("--imipd")
        .arg(env!("CARGO_BIN_EXE_imipd"))
        .arg("--work")
        .arg(&work);
    // Development only: a stand-in for imipd's [caldav] front (see harness.py --help).
    if let Some(front) = std::env::var_os("IMIPD_TB_DEV_FRONT") {
        command.arg("--dev-front").arg(front);
    }
    let output = command.output().expect("python3");
    let said = String::from_utf8_lossy(&output.stderr);
    let report = String::from_utf8_lossy(&output.stdout);
    eprintln!("{said}");
    eprintln!("report: {}", report.lines().last().unwrap_or(""));
    assert!(
        output.status.success(),
        "the real-Thunderbird run failed (profiles, stores, mails and logs in {}):\n{said}",
        work.display()
    );
}
