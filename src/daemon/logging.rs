//! Log output: one line per decision. Readable lines on a terminal, JSON lines when
//! stderr is a pipe or journald (log shippers read them), or as `--log-format` says.
//!
//! `RUST_LOG` chooses the filter when set. Otherwise imipd's own lines are shown from
//! the given level, and the libraries it uses only from `warn`: the notify crate, for
//! one, logs at info for every watch Radicale's own writes remove, which would drown
//! the decisions on a Radicale store.

use clap::ValueEnum;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    #[default]
    Auto,
    /// Plain readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The filter used when `RUST_LOG` is not set: imipd from `level`, everything else
/// from `warn` (or from `level`, if that is stricter).
pub fn default_directives(level: &str) -> String {
    let others = match level {
        "error" | "off" => level,
        _ => "warn",
    };
    format!("{others},imipd={level}")
}

/// Installs the global log subscriber once; later calls do nothing.
pub fn init(default_level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_directives(default_level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = match format {
        LogFormat::Auto => !std::io::stderr().is_terminal(),
        LogFormat::Text => false,
        LogFormat::Json => true,
    };
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder
            .compact()
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    // Already installed (tests, or a second call): keep the first.
    let _ = result;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_log_only_warnings_unless_asked() {
        assert_eq!(default_directives("info"), "warn,imipd=info");
        assert_eq!(default_directives("debug"), "warn,imipd=debug");
        assert_eq!(default_directives("error"), "error,imipd=error");
        // Each directive parses, so the filter is not silently replaced.
        for level in ["info", "warn", "debug", "error"] {
            EnvFilter::try_new(default_directives(level)).expect("valid filter");
        }
    }
}
