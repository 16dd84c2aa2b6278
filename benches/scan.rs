//! Benchmark `scan`: being written.

#[path = "common/mod.rs"]
mod common;

fn main() {
    println!("{}", common::machine());
}
