//! `imipd inject` with the daemon stopped: processes one email as if the MTA had
//! delivered it over LMTP, on the state directly; with `--dry-run` it only reports
//! what would change, computed by the same path and writing nothing. (While the
//! daemon runs, the control socket does the same.)
//!
//! The [exit codes](exit) and the [report] live here and the control socket's
//! [`commands`](super::commands) uses them; this module never calls `commands`.

use crate::config::Config;
use crate::daemon::inbound::{Inbound, Verdict};
use crate::imip::FromCheck;
use crate::store::apply::Writes;
use crate::store::layout::Store;
use crate::store::state::State;
use std::fmt::Write as _;

/// Exit codes of `imipd inject`, documented in its `--help`.
pub mod exit {
    /// The message was applied.
    pub const APPLIED: u8 = 0;
    /// The message was accepted but deliberately not applied (the reason is printed).
    pub const IGNORED: u8 = 1;
    /// The message was refused (5xx).
    pub const REFUSED: u8 = 2;
    /// The recipient is not a local user (sysexits EX_NOUSER).
    pub const UNKNOWN_USER: u8 = 67;
    /// Try again later: store busy, disk full, a check temporarily impossible
    /// (sysexits EX_TEMPFAIL).
    pub const TEMPORARY: u8 = 75;
}

/// The exit code of `imipd inject` for a verdict.
pub fn inject_exit(verdict: &Verdict) -> u8 {
    match verdict {
        Verdict::Accepted(text) if text.starts_with("ignored") => exit::IGNORED,
        Verdict::Accepted(_) => exit::APPLIED,
        Verdict::TryLater(_) => exit::TEMPORARY,
        Verdict::Refused { .. } => exit::REFUSED,
    }
}

/// `imipd inject --rcpt ADDRESS [--dry-run]` with the daemon stopped: processes the
/// message `data` on the state directly. The dry run takes the same path
/// ([`Inbound::deliver_as`]) and writes nothing. Returns the exit code
/// ([`exit`]) and the text to print.
pub fn inject_direct(
    config: &Config,
    rcpt: &str,
    data: &[u8],
    dry_run: bool,
    now: i64,
) -> Result<(u8, String), String> {
    use crate::daemon::inbound::RecipientCheck;
    let store = Store::new(&config.store, config.users().map_err(|e| e.to_string())?);
    let lmtp = config
        .lmtp
        .clone()
        .ok_or("the configuration has no [lmtp] section: imipd does not take mail")?;
    let state = if dry_run {
        State::open_existing(&config.state)
    } else {
        State::open(&config.state)
    };
    let state = state.map_err(|e| e.to_string())?;
    let settings = crate::daemon::settings::queue_settings(config).map_err(|e| e.to_string())?;
    let (writes, key) = if dry_run {
        let key = crate::daemon::settings::existing_bounce_key(&state);
        (Writes::No, key.map_err(|e| e.to_string())?)
    } else {
        let key = crate::daemon::settings::bounce_key(&state);
        (Writes::Yes, key.map_err(|e| e.to_string())?)
    };
    let inbound = Inbound {
        store: &store,
        state: &state,
        settings: &lmtp,
        reply_details: config.reply_details(),
        bounces: &settings.bounces,
        bounce_key: &key,
    };
    if inbound.check_recipient(rcpt) == RecipientCheck::Unknown {
        let note = if dry_run {
            "(dry run: nothing was changed)\n"
        } else {
            ""
        };
        return Ok((
            exit::UNKNOWN_USER,
            format!("{rcpt}: 550 5.1.1 no such user here\n{note}"),
        ));
    }
    let sender = sender_check(config, &lmtp, data);
    let verdicts = inbound.deliver_as(
        writes,
        "",
        &[rcpt.to_string()],
        data,
        now,
        &sender,
        &|_, apply| apply(),
    );
    let code = verdicts.first().map_or(exit::TEMPORARY, inject_exit);
    Ok((code, report(&sender, rcpt, &verdicts, dry_run)))
}

/// What `imipd inject` prints: the sender check, then one verdict line per recipient
/// (the same lines for the dry run and the real one), then the dry run's note.
pub fn report(sender: &FromCheck, rcpt: &str, verdicts: &[Verdict], dry_run: bool) -> String {
    let mut out = format!("{}\n", sender.describe());
    for verdict in verdicts {
        let _ = writeln!(out, "{rcpt}: {}", verdict.lmtp_reply());
    }
    if dry_run {
        out.push_str("(dry run: nothing was changed)\n");
    }
    out
}

/// The same sender check the LMTP server makes (DNS included; the mail came from no
/// SMTP client, so SPF has no address to check and DKIM/DMARC decide).
fn sender_check(
    config: &Config,
    lmtp: &crate::config::LmtpSection,
    data: &[u8],
) -> crate::imip::FromCheck {
    use crate::imip::{ConnectingClient, FromCheck, SenderVerifier, VerifierSettings};
    let settings = VerifierSettings {
        trusted_authserv_ids: lmtp.trusted_authserv_ids.clone(),
        dns_servers: lmtp.dns_servers.clone(),
        timeout: std::time::Duration::from_secs(lmtp.dns_timeout.max(1)),
        hostname: config
            .mail
            .domain
            .clone()
            .unwrap_or_else(|| "localhost".into()),
        insecure_trust_from_header: lmtp.insecure_trust_from_header,
        max_dkim_signatures: lmtp.max_dkim_signatures,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match (SenderVerifier::new(settings), runtime) {
        (Ok(verifier), Ok(runtime)) => {
            runtime.block_on(verifier.check(data, "", &ConnectingClient::default()))
        }
        (Err(e), _) => FromCheck::TryLater {
            reason: e.to_string(),
        },
        (_, Err(e)) => FromCheck::TryLater {
            reason: format!("no runtime for DNS: {e}"),
        },
    }
}
