//! `imipd inject` with the daemon stopped: processes one email as if the MTA had
//! delivered it over LMTP, on the state directly; with `--dry-run` it only reports
//! what would change. (While the daemon runs, the control socket does the same.)

use crate::config::Config;
use crate::daemon::inbound::Inbound;
use crate::imip;
use crate::itip::{self, CalAddress, Context, ItipError};
use crate::store::layout::Store;
use crate::store::scan::user_keys;
use crate::store::state::State;
use calcard::icalendar::ICalendar;
use std::fmt::Write as _;

/// `imipd inject --rcpt ADDRESS [--dry-run]` with the daemon stopped: processes the
/// message `data` on the state directly. Returns the exit code
/// ([`crate::daemon::commands::exit`]) and the text to print.
pub fn inject_direct(
    config: &Config,
    rcpt: &str,
    data: &[u8],
    dry_run: bool,
    now: i64,
) -> Result<(u8, String), String> {
    use crate::daemon::commands::{exit, inject_exit};
    use crate::daemon::inbound::RecipientCheck;
    if dry_run {
        return self::dry_run(config, rcpt, data, now).map(|text| (exit::APPLIED, text));
    }
    let store = Store::new(&config.store, config.users().map_err(|e| e.to_string())?);
    let lmtp = config
        .lmtp
        .clone()
        .ok_or("the configuration has no [lmtp] section: imipd does not take mail")?;
    let state = State::open(&config.state).map_err(|e| e.to_string())?;
    let settings = crate::daemon::settings::queue_settings(config).map_err(|e| e.to_string())?;
    let key = crate::daemon::settings::bounce_key(&state).map_err(|e| e.to_string())?;
    let inbound = Inbound {
        store: &store,
        state: &state,
        settings: &lmtp,
        reply_details: config.reply_details(),
        bounces: &settings.bounces,
        bounce_key: &key,
    };
    if inbound.check_recipient(rcpt) == RecipientCheck::Unknown {
        return Ok((
            exit::UNKNOWN_USER,
            format!("{rcpt}: 550 5.1.1 no such user here\n"),
        ));
    }
    let sender = sender_check(config, &lmtp, data);
    let verdicts =
        inbound.deliver_locked("", &[rcpt.to_string()], data, now, &sender, &|_, apply| {
            apply()
        });
    let code = verdicts.first().map_or(exit::TEMPORARY, inject_exit);
    Ok((
        code,
        format!("{}\n", sender.describe())
            + &verdicts
                .iter()
                .map(|v| format!("{rcpt}: {}\n", v.lmtp_reply()))
                .collect::<String>(),
    ))
}

/// `imipd inject --dry-run`: what the message `data` would do, changing nothing. It
/// reads the user's folders, not the state, so it works while the daemon runs.
pub fn dry_run(config: &Config, rcpt: &str, data: &[u8], now: i64) -> Result<String, String> {
    let store = Store::new(&config.store, config.users().map_err(|e| e.to_string())?);
    let lmtp = config
        .lmtp
        .clone()
        .ok_or("the configuration has no [lmtp] section: imipd does not take mail")?;
    dry_run_inject(config, &store, &lmtp, rcpt, data, now)
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

fn dry_run_inject(
    config: &Config,
    store: &Store,
    lmtp: &crate::config::LmtpSection,
    rcpt: &str,
    data: &[u8],
    now: i64,
) -> Result<String, String> {
    let options = imip::IncomingOptions {
        max_message_size: lmtp.max_message_size,
        max_calendar_size: lmtp.max_calendar_size,
        trusted_authserv_ids: lmtp.trusted_authserv_ids.clone(),
        ..imip::IncomingOptions::default()
    };
    let incoming =
        imip::parse_incoming(data, None, &options).map_err(|e| format!("not applied: {e}"))?;
    CalAddress::parse(rcpt).ok_or_else(|| format!("{rcpt} is not an email address"))?;
    let (user, _copy) = crate::daemon::inbound::local_user(store, lmtp, rcpt)
        .ok_or_else(|| format!("{rcpt} is not a local user (550 5.1.1)"))?;
    let from = incoming
        .sender
        .from
        .as_ref()
        .map(|m| m.address.clone())
        .ok_or("the message has no usable From address")?;
    let uid = incoming
        .calendar
        .uids()
        .next()
        .unwrap_or_default()
        .to_string();
    // Find the user's copy by reading their folders (the state may be held by the daemon).
    let copy = user_keys(store, &user.name).into_iter().find_map(|key| {
        let (_, text) = store.read(&key).ok()??;
        let cal = ICalendar::parse(&text).ok()?;
        let matches = cal.uids().any(|u| u == uid);
        matches.then_some((key, cal))
    });
    let ctx = Context {
        account: &user.addresses,
        now,
        reply_details: config.reply_details(),
    };
    let sender = sender_check(config, lmtp, data);
    let mut out = format!(
        "message {} from {from} ({}), METHOD:{}, UID {uid}\n",
        incoming.message_id.as_deref().unwrap_or("(no Message-ID)"),
        sender.describe(),
        itip::method_name(&incoming.method)
    );
    if copy.is_some() && !sender.believed() {
        let _ = writeln!(
            out,
            "would not apply: a change to an existing event needs an authenticated sender"
        );
        out.push_str("(dry run: nothing was changed)\n");
        return Ok(out);
    }
    match itip::receive(
        &incoming.calendar,
        &from,
        copy.as_ref().map(|(_, c)| c),
        &ctx,
    ) {
        Ok(outcome) => {
            let target = copy
                .map(|(k, _)| k)
                .unwrap_or_else(|| store.import_key(user, &uid));
            let _ = writeln!(out, "would apply to {target}: {:?}", outcome.action);
            for response in &outcome.responses {
                let _ = writeln!(
                    out,
                    "would answer with {} to {:?}",
                    itip::method_name(&response.method),
                    response.to
                );
            }
        }
        Err(err) => {
            let _ = writeln!(out, "would not apply: {}", describe(&err));
        }
    }
    out.push_str("(dry run: nothing was changed)\n");
    Ok(out)
}

fn describe(err: &ItipError) -> String {
    format!("{}: {err}", err.name())
}
