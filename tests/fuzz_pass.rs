//! A bounded fuzz pass, run in CI: every cargo-fuzz target (LMTP session, incoming
//! mail, applying iTIP) for `IMIPD_FUZZ_SECONDS` seconds (60 when `CI=true`), which must
//! find no crash. Elsewhere it runs only when `IMIPD_FUZZ_SECONDS` is set, since it
//! needs a nightly toolchain and cargo-fuzz (`fuzz/run.sh` says so if they are missing).

use std::process::Command;

#[test]
fn the_fuzz_targets_find_no_crash() {
    let seconds = match std::env::var("IMIPD_FUZZ_SECONDS") {
        Ok(seconds) => seconds,
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => "60".to_string(),
        Err(_) => {
            eprintln!("fuzz pass skipped: set IMIPD_FUZZ_SECONDS (CI runs it with 60)");
            return;
        }
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/run.sh");
    let output = Command::new("bash")
        .arg(script)
        .arg(&seconds)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("bash fuzz/run.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the fuzz pass failed:\n{stdout}\n{stderr}"
    );
}
