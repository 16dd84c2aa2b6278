//! What the fuzz targets share: the engine harness (accounts read from a calendar,
//! fixed stored copies, the checks every engine result must pass) and the LMTP
//! harness (an in-memory client, a handler with scripted answers, the reply checks).
//!
//! The targets themselves (`fuzz_targets/`) only turn fuzz input into calls; the
//! properties they assert live here so the seed generator (`examples/make_seeds.rs`)
//! and the targets agree on how input is read. Nothing here is used by imipd itself.

pub mod engine;
pub mod lmtp;
