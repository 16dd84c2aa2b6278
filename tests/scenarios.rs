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

/// Runs the shared folder `sub` with `reply_details`: it lives beside the checkout, and
/// is absent outside the workplace (then the test says it skipped).
fn shared_passes(sub: &str, reply_details: ReplyDetails) {
    let path = root().join("../shared").join(sub);
    if path.is_dir() {
        assert_all_pass(&[path], reply_details);
    } else {
        eprintln!("../shared/{sub} not found: skipped");
    }
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
    shared_passes("conformance", ReplyDetails::Full);
}

#[test]
fn seed_scenario_passes_with_minimal_replies() {
    shared_passes("seed", ReplyDetails::Minimal);
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
