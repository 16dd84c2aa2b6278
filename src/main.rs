//! The `imipd` command line: argument parsing only; the work is in the library.

use clap::{Parser, Subcommand, ValueEnum};
use imipd::config::Config;
use imipd::daemon::{admin, logging, preview, serve};
use imipd::itip::{CalAddress, ReplyDetails};
use imipd::store::state::State;
use std::path::{Path, PathBuf};
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
    /// Run the daemon: watch the stores, send and receive scheduling mail.
    Serve {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file and what it points at.
    CheckConfig {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Scan the stores once (with the daemon stopped).
    Scan {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Record every object as it is now and send nothing.
        #[arg(long)]
        baseline: bool,
    },
    /// Look at or steer the delivery queue (with the daemon stopped).
    Queue {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Show the emails a change would send, and why each attendee is or is not included.
    Preview {
        /// The previous version of the object, if it is an update.
        #[arg(long)]
        old: Option<PathBuf>,
        /// The new version of the object.
        new: PathBuf,
        /// The calendar user making the change.
        #[arg(long = "as")]
        acting: String,
        /// Write the emails as .eml files into this folder.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Process one email as if the MTA had delivered it over LMTP.
    Inject {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The envelope recipient.
        #[arg(long)]
        rcpt: String,
        /// Only report what would happen.
        #[arg(long)]
        dry_run: bool,
        /// The email (.eml).
        message: PathBuf,
    },
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

#[derive(Subcommand)]
enum QueueAction {
    /// List queued messages.
    List,
    /// Try a message again now.
    Retry {
        /// The message id (see `queue list`).
        id: u64,
    },
    /// Give up on a message.
    Drop {
        /// The message id (see `queue list`).
        id: u64,
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

/// Prints a command's text, or its error with `imipd <command>:` in front.
fn finish(command: &str, result: Result<String, String>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("imipd {command}: {err}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> Result<Config, String> {
    Config::load(path).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let now = serve::now();
    match cli.command {
        Command::Serve { config } => {
            logging::init("info");
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(err) => {
                    return finish("serve", Err(format!("cannot start the runtime: {err}")))
                }
            };
            finish(
                "serve",
                runtime
                    .block_on(serve::run(&config))
                    .map(|()| String::new())
                    .map_err(|e| e.to_string()),
            )
        }
        Command::CheckConfig { config } => finish(
            "check-config",
            admin::check_config(&config).map_err(|e| e.to_string()),
        ),
        Command::Scan { config, baseline } => {
            logging::init("warn");
            let result = load(&config)
                .and_then(|c| admin::scan(&c, now, baseline).map_err(|e| e.to_string()));
            finish("scan", result)
        }
        Command::Queue { config, action } => {
            let result = load(&config).and_then(|c| {
                let state = State::open(&c.state)
                    .map_err(|e| format!("{e} (is the daemon running? stop it first)"))?;
                match action {
                    QueueAction::List => admin::queue_list(&state, now),
                    QueueAction::Retry { id } => admin::queue_retry(&state, id, now),
                    QueueAction::Drop { id } => admin::queue_drop(&state, id),
                }
                .map_err(|e| e.to_string())
            });
            finish("queue", result)
        }
        Command::Preview {
            old,
            new,
            acting,
            out,
        } => {
            let result = CalAddress::parse(&acting)
                .ok_or_else(|| format!("--as {acting:?} is not an email address"))
                .and_then(|acting| {
                    preview::preview(
                        old.as_deref(),
                        &new,
                        &acting,
                        out.as_deref(),
                        now,
                        ReplyDetails::Full,
                    )
                });
            finish("preview", result)
        }
        Command::Inject {
            config,
            rcpt,
            dry_run,
            message,
        } => {
            logging::init("warn");
            let result =
                load(&config).and_then(|c| preview::inject(&c, &rcpt, &message, dry_run, now));
            finish("inject", result)
        }
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
