//! Runs the iTIP scenarios: the project's own (`tests/scenarios/`), the shared
//! conformance suite and seed (`../shared/`, when present), and any file or folder
//! named in `IMIP_SCENARIOS` (colon-separated).

use imipd::itip::ReplyDetails;
use imipd::replay::run_paths;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn assert_all_pass(paths: &[PathBuf], reply_details: ReplyDetails) -> imipd::replay::Report {
    let report = run_paths(paths, reply_details).unwrap_or_else(|e| panic!("{e}"));
    let text = report.render();
    assert!(report.failures.is_empty(), "{text}");
    println!("{}", text.trim_end());
    report
}

/// The shared folder lives beside the checkout; it is absent outside the workplace.
fn shared(sub: &str) -> Option<PathBuf> {
    let path = root().join("../shared").join(sub);
    path.is_dir().then_some(path)
}

#[test]
fn own_scenarios_pass() {
    let report = assert_all_pass(&[root().join("tests/scenarios")], ReplyDetails::Full);
    // The project's own files state the RFC behaviour directly: nothing to translate.
    assert!(
        report.departed.is_empty(),
        "own scenarios must not need the reference translations:\n{}",
        report.render()
    );
    let passed = report.passed;
    assert!(
        passed >= 60,
        "the project's own scenarios should hold at least 60 steps, found {passed}"
    );
}

#[test]
fn shared_conformance_suite_passes() {
    match shared("conformance") {
        Some(dir) => {
            assert_all_pass(&[dir], ReplyDetails::Full);
        }
        None => eprintln!("../shared/conformance not found: skipped"),
    }
}

#[test]
fn seed_scenario_passes_with_minimal_replies() {
    match shared("seed") {
        Some(dir) => {
            assert_all_pass(&[dir], ReplyDetails::Minimal);
        }
        None => eprintln!("../shared/seed not found: skipped"),
    }
}

#[test]
fn scenarios_named_in_environment_pass() {
    let Ok(list) = std::env::var("IMIP_SCENARIOS") else {
        return;
    };
    let paths: Vec<PathBuf> = list
        .split(':')
        .filter(|p| !p.is_empty())
        .map(|p| Path::new(p).to_path_buf())
        .collect();
    assert_all_pass(&paths, ReplyDetails::Full);
}
