//! The Debian package: `cargo deb` builds it, it holds what an admin needs, and its
//! systemd unit passes `systemd-analyze verify` once installed.
//!
//! The package is built from the binary this test run already built (`--no-build`), so
//! the test checks the packaging, not a second compile; `cargo deb` alone builds the
//! release binary first. Installing it changes the machine (a package, a system user),
//! so that part runs only in CI (`CI=true`, a throwaway machine) or with
//! `IMIPD_TEST_INSTALL=1`; the contents are checked everywhere cargo-deb is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("the command runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

/// Builds the .deb into a scratch folder and returns its path, or `None` (outside CI)
/// when cargo-deb is not installed.
fn build_deb(scratch: &Path) -> Option<PathBuf> {
    let has_cargo_deb = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_deb {
        assert!(!in_ci(), "cargo-deb is missing: scripts/test installs it");
        eprintln!("SKIPPED: cargo-deb is not installed (cargo install cargo-deb)");
        return None;
    }
    // cargo-deb takes target/release/imipd from the target folder it is given.
    let target = scratch.join("target");
    std::fs::create_dir_all(target.join("release")).expect("target folder");
    std::fs::copy(env!("CARGO_BIN_EXE_imipd"), target.join("release/imipd")).expect("binary");
    let out = scratch.join("imipd.deb");
    run(Command::new("cargo")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["deb", "--no-build", "--fast", "--output"])
        .arg(&out)
        .env("CARGO_TARGET_DIR", &target));
    Some(out)
}

#[test]
fn the_package_holds_binary_unit_configuration_docs_and_creates_its_user() {
    let scratch = std::env::temp_dir().join(format!("imipd-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch");
    let Some(deb) = build_deb(&scratch) else {
        return;
    };
    let listing = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for path in [
        "./usr/bin/imipd",
        "./usr/lib/systemd/system/imipd.service",
        "./etc/imipd/imipd.toml",
        "./usr/share/doc/imipd/README.md",
        "./usr/share/doc/imipd/examples/imipd.toml",
        "./usr/share/doc/imipd/contrib/postfix/README.md",
    ] {
        assert!(
            listing.contains(path),
            "{path} is not in the package:\n{listing}"
        );
    }
    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    assert!(
        info.contains("conffiles") && info.contains("postinst"),
        "{info}"
    );
    assert!(
        info.contains("adduser"),
        "the postinst needs adduser: {info}"
    );

    // The unit's documentation is what the package installs, not a placeholder URL.
    let unit_dir = scratch.join("unpacked");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unit_dir));
    let unit = std::fs::read_to_string(unit_dir.join("usr/lib/systemd/system/imipd.service"))
        .expect("unit");
    let docs = unit
        .lines()
        .find_map(|l| l.strip_prefix("Documentation=file://"))
        .expect("a file:// Documentation= line");
    assert!(
        unit_dir.join(docs.trim_start_matches('/')).is_file(),
        "Documentation= names {docs}, which the package does not install"
    );

    if !(in_ci() || std::env::var("IMIPD_TEST_INSTALL").is_ok_and(|v| v == "1")) {
        eprintln!("SKIPPED: installing the package (set IMIPD_TEST_INSTALL=1, or CI=true)");
        let _ = std::fs::remove_dir_all(&scratch);
        return;
    }
    run(Command::new("dpkg").arg("-i").arg(&deb));
    let verify = Command::new("systemd-analyze")
        .args(["verify", "/usr/lib/systemd/system/imipd.service"])
        .output()
        .expect("systemd-analyze");
    let user = Command::new("getent")
        .args(["passwd", "imipd"])
        .output()
        .expect("getent");
    let check = Command::new("/usr/bin/imipd")
        .args(["check-config"])
        .output()
        .expect("installed imipd");
    run(Command::new("dpkg").args(["--purge", "imipd"]));
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        user.status.success(),
        "the package creates the system user imipd"
    );
    // The default --config is /etc/imipd/imipd.toml, and it parses: check-config says
    // OK, or (where Radicale's store is not there) names the missing folder, never a
    // syntax error (which names a line).
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        said.contains("/etc/imipd/imipd.toml") && !said.contains("line "),
        "check-config of the packaged file: {said}"
    );
}
