//! The `imipd` command line: argument parsing only; the work is in the library.

use clap::{Parser, Subcommand, ValueEnum};
use imipd::itip::ReplyDetails;
use std::path::PathBuf;
use std::process::ExitCode;

/// imipd: calendar scheduling over email for file-based calendar stores.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run iTIP scenario files against the scheduling engine and report failing steps.
    Replay {
        /// How much of the event a REPLY repeats.
        #[arg(long, value_enum, default_value_t = ReplyDetailsArg::Full)]
        reply_details: ReplyDetailsArg,
        /// Scenario files, or folders of *.txt scenarios.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `--reply-details` values.
#[derive(Clone, Copy, ValueEnum)]
enum ReplyDetailsArg {
    /// SUMMARY, DTSTART and DTEND/DUE too (what large hosted calendars need).
    Full,
    /// Only ORGANIZER, the answering ATTENDEE and REQUEST-STATUS.
    Minimal,
}

impl From<ReplyDetailsArg> for ReplyDetails {
    fn from(arg: ReplyDetailsArg) -> Self {
        match arg {
            ReplyDetailsArg::Full => ReplyDetails::Full,
            ReplyDetailsArg::Minimal => ReplyDetails::Minimal,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay {
            reply_details,
            files,
        } => match imipd::replay::run_paths(&files, reply_details.into()) {
            Ok(report) => {
                print!("{}", report.render());
                if report.failures.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(err) => {
                eprintln!("imipd replay: {err}");
                ExitCode::from(2)
            }
        },
    }
}
