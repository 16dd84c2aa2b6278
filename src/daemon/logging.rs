//! Log output: readable lines on a terminal, JSON lines otherwise (journald and log
//! shippers read them). `RUST_LOG` (or `--log`) chooses the level, default `info`.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global log subscriber once; later calls do nothing.
pub fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::io::stderr().is_terminal() {
        builder.compact().try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    };
    // Already installed (tests, or a second call): keep the first.
    let _ = result;
}
