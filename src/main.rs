//! The `imipd` command line: argument parsing only; the work is in the library.

use clap::{Parser, Subcommand, ValueEnum};
use imipd::config::Config;
use imipd::daemon::{admin, commands, control, inject, logging, preview, serve, spool, status};
use imipd::itip::{CalAddress, ReplyDetails};
use imipd::store::state::State;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// imipd: calendar scheduling over email for file-based calendar stores.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The configuration file (also from IMIPD_CONFIG), for every command.
    #[arg(
        long,
        short,
        global = true,
        env = "IMIPD_CONFIG",
        default_value = "/etc/imipd/imipd.toml"
    )]
    config: PathBuf,
    /// Log lines as text or JSON; `auto`: text on a terminal, JSON otherwise
    /// (also from IMIPD_LOG_FORMAT).
    #[arg(long, global = true, env = "IMIPD_LOG_FORMAT", value_enum, default_value_t = logging::LogFormat::Auto)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: watch the stores, send and receive scheduling mail.
    Serve,
    /// Check a configuration file and what it points at.
    CheckConfig,
    /// Scan the stores once (through the running daemon, or directly when it is stopped).
    Scan {
        /// Record every object as it is now and send nothing (daemon stopped).
        #[arg(long)]
        baseline: bool,
    },
    /// Look at or steer the delivery queue (running daemon or stopped).
    Queue {
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
    /// Is the daemon running and healthy? Exit 0 healthy, 1 degraded, 3 not running.
    Status,
    /// Process one email as if the MTA had delivered it over LMTP.
    ///
    /// Exit codes: 0 applied, 1 accepted but ignored (the reason is printed), 2 refused,
    /// 67 not a local user, 75 temporary (store busy, disk full, a check impossible now:
    /// try again). With the daemon running the message goes through it; otherwise it is
    /// applied to the state directly.
    Inject {
        /// The envelope recipient.
        #[arg(long)]
        rcpt: String,
        /// Only report what would happen.
        #[arg(long)]
        dry_run: bool,
        /// The email (.eml); `-` reads it from standard input.
        message: PathBuf,
    },
    /// Local delivery agent: hand one message on standard input to the running daemon.
    ///
    /// For a Dovecot Sieve `pipe :copy`, Postfix `mailbox_command` or a pipe transport,
    /// and Exim pipe transports. Exit codes (sysexits): 0 applied, or accepted and
    /// deliberately not applied (the reason goes to the log); 65 not a mail message,
    /// or malformed iMIP refused; 67 not a local user; 77 refused by policy
    /// (unauthenticated sender, with bounce_refused); 75 try again later: the daemon is
    /// not running (without [deliver] spool), the disk is full, or a check is
    /// temporarily impossible. With [deliver] spool set, a message arriving while the
    /// daemon is stopped is spooled (exit 0) and applied when it runs.
    Deliver {
        /// The envelope recipient (a local user's address).
        #[arg(long)]
        rcpt: String,
        /// The envelope sender, if the caller knows it.
        #[arg(long, short = 'f', default_value = "")]
        from: String,
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

/// Puts `request` to the running daemon. `None` when it is not running (the caller
/// then works on the state itself); otherwise the daemon's answer, printed.
fn via_daemon(
    command: &str,
    config: &Config,
    request: &control::Request,
    payload: &[u8],
) -> Option<ExitCode> {
    match control::request(
        &config.control.socket,
        Some(&config.state),
        request,
        payload,
    ) {
        Ok(answer) => {
            if let Some(text) = &answer.text {
                print!("{text}");
            }
            if let Some(error) = &answer.error {
                eprintln!("imipd {command}: {error}");
            }
            Some(ExitCode::from(answer.exit))
        }
        Err(control::ControlError::NotRunning(_)) => None,
        Err(err) => {
            eprintln!("imipd {command}: {err}");
            Some(ExitCode::FAILURE)
        }
    }
}

/// Opens the state for a command run while the daemon is stopped.
fn open_state(config: &Config) -> Result<State, String> {
    State::open(&config.state).map_err(|e| {
        format!(
            "{e} (the daemon seems to run without its control socket {}: stop it, or check [control] socket)",
            config.control.socket.display()
        )
    })
}

/// sysexits(3) codes `imipd deliver` exits with.
mod sysexits {
    pub const OK: u8 = 0;
    pub const DATAERR: u8 = 65;
    pub const NOUSER: u8 = 67;
    pub const TEMPFAIL: u8 = 75;
    pub const NOPERM: u8 = 77;
}

/// `imipd deliver`: one message from stdin to the daemon; returns the sysexits code.
fn deliver(config_path: &Path, rcpt: &str, from: &str) -> u8 {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imipd deliver: {e}");
            return sysexits::TEMPFAIL;
        }
    };
    let mut data = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut data) {
        eprintln!("imipd deliver: cannot read the message: {e}");
        return sysexits::TEMPFAIL;
    }
    if !data.windows(2).any(|w| w == b"\n\n") && !data.windows(4).any(|w| w == b"\r\n\r\n") {
        eprintln!("imipd deliver: standard input is not a mail message (no header and body)");
        return sysexits::DATAERR;
    }
    let request = control::Request::Inject {
        rcpt: rcpt.to_string(),
        dry_run: false,
        mail_from: from.to_string(),
        length: data.len(),
    };
    match control::request(&config.control.socket, Some(&config.state), &request, &data) {
        Ok(answer) => {
            let text = answer
                .text
                .clone()
                .or(answer.error.clone())
                .unwrap_or_default();
            eprint!("imipd deliver: {text}");
            match answer.exit {
                commands::exit::APPLIED | commands::exit::IGNORED => sysexits::OK,
                commands::exit::UNKNOWN_USER => sysexits::NOUSER,
                commands::exit::REFUSED if text.contains(" 5.6.") => sysexits::DATAERR,
                commands::exit::REFUSED => sysexits::NOPERM,
                _ => sysexits::TEMPFAIL,
            }
        }
        Err(control::ControlError::NotRunning(socket)) => match &config.deliver.spool {
            Some(dir) => {
                let envelope = spool::SpoolEnvelope {
                    rcpt: rcpt.to_string(),
                    mail_from: from.to_string(),
                };
                match spool::put(dir, &envelope, &data) {
                    Ok(file) => {
                        eprintln!(
                            "imipd deliver: the daemon is not running; spooled as {} (applied when it runs)",
                            file.display()
                        );
                        sysexits::OK
                    }
                    Err(e) => {
                        eprintln!(
                            "imipd deliver: the daemon is not running and the spool {} cannot take the message: {e}",
                            dir.display()
                        );
                        sysexits::TEMPFAIL
                    }
                }
            }
            None => {
                eprintln!(
                    "imipd deliver: the daemon is not running (nothing listens on {}): try again later",
                    socket.display()
                );
                sysexits::TEMPFAIL
            }
        },
        Err(err) => {
            eprintln!("imipd deliver: {err}");
            sysexits::TEMPFAIL
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let now = serve::now();
    let config_path = cli.config;
    let log_format = cli.log_format;
    match cli.command {
        Command::Serve => {
            logging::init("info", log_format);
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
                    .block_on(serve::run(&config_path))
                    .map(|()| String::new())
                    .map_err(|e| e.to_string()),
            )
        }
        Command::CheckConfig => finish(
            "check-config",
            admin::check_config(&config_path).map_err(|e| e.to_string()),
        ),
        Command::Scan { baseline } => {
            logging::init("warn", log_format);
            let config = match load(&config_path) {
                Ok(c) => c,
                Err(e) => return finish("scan", Err(e)),
            };
            if !baseline {
                if let Some(code) = via_daemon("scan", &config, &control::Request::Scan, b"") {
                    return code;
                }
            } else if control::request(
                &config.control.socket,
                Some(&config.state),
                &control::Request::Status,
                b"",
            )
            .is_ok()
            {
                return finish(
                    "scan",
                    Err("--baseline forgets what imipd knew: stop the daemon first".into()),
                );
            }
            finish(
                "scan",
                admin::scan(&config, now, baseline).map_err(|e| e.to_string()),
            )
        }
        Command::Queue { action } => {
            let config = match load(&config_path) {
                Ok(c) => c,
                Err(e) => return finish("queue", Err(e)),
            };
            let request = match action {
                QueueAction::List => control::Request::QueueList,
                QueueAction::Retry { id } => control::Request::QueueRetry { id },
                QueueAction::Drop { id } => control::Request::QueueDrop { id },
            };
            if let Some(code) = via_daemon("queue", &config, &request, b"") {
                return code;
            }
            let result = open_state(&config).and_then(|state| {
                match request {
                    control::Request::QueueRetry { id } => admin::queue_retry(&state, id, now),
                    control::Request::QueueDrop { id } => admin::queue_drop(&state, id),
                    _ => admin::queue_list(&state, now),
                }
                .map_err(|e| e.to_string())
            });
            finish("queue", result)
        }
        Command::Status => {
            let config = match load(&config_path) {
                Ok(c) => c,
                Err(e) => return finish("status", Err(e)),
            };
            via_daemon("status", &config, &control::Request::Status, b"").unwrap_or_else(|| {
                println!(
                    "imipd is not running (no daemon on {})",
                    config.control.socket.display()
                );
                ExitCode::from(status::EXIT_NOT_RUNNING)
            })
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
            rcpt,
            dry_run,
            message,
        } => {
            logging::init("warn", log_format);
            let config = match load(&config_path) {
                Ok(c) => c,
                Err(e) => return finish("inject", Err(e)),
            };
            let data = if message.as_os_str() == "-" {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut data).map(|_| data)
            } else {
                std::fs::read(&message)
            };
            let data = match data {
                Ok(data) => data,
                Err(e) => {
                    eprintln!("imipd inject: {}: {e}", message.display());
                    return ExitCode::from(commands::exit::TEMPORARY);
                }
            };
            let request = control::Request::Inject {
                rcpt: rcpt.clone(),
                dry_run,
                mail_from: String::new(),
                length: data.len(),
            };
            if let Some(code) = via_daemon("inject", &config, &request, &data) {
                return code;
            }
            match inject::inject_direct(&config, &rcpt, &data, dry_run, now) {
                Ok((code, text)) => {
                    print!("{text}");
                    ExitCode::from(code)
                }
                Err(err) => {
                    eprintln!("imipd inject: {err}");
                    ExitCode::from(commands::exit::TEMPORARY)
                }
            }
        }
        Command::Deliver { rcpt, from } => ExitCode::from(deliver(&config_path, &rcpt, &from)),
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
