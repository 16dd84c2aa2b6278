//! The administrator's commands that work on the configuration and state without the
//! daemon: checking a configuration, scanning once, and looking at or steering the
//! delivery queue. Each returns the text to print, so it can be tested as it reads.

use crate::config::{Config, Layout};
use crate::store::layout::Store;
use crate::store::process::Processor;
use crate::store::scan::scan_all;
use crate::store::state::{Batch, Route, State};
use std::fmt::Write as _;
use std::path::Path;
use thiserror::Error;

/// A command that could not do its work.
#[derive(Debug, Error)]
pub enum AdminError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The state database is unusable.
    #[error(transparent)]
    State(#[from] crate::store::state::StateError),
    /// Processing the store failed.
    #[error(transparent)]
    Process(#[from] crate::store::process::ProcessError),
    /// A problem found by `check-config`, with what to do.
    #[error("{0}")]
    Check(String),
    /// No queue item with that id.
    #[error("no queued message with id {0} (see `imipd queue list`)")]
    NoSuchItem(u64),
}

/// `imipd check-config`: reads the file, then checks what it points at.
pub fn check_config(path: &Path) -> Result<String, AdminError> {
    let config = Config::load(path)?;
    let users = config.users()?;
    let mut problems = Vec::new();
    let store = Store::new(&config.store, users.clone());
    if !config.store.root.is_dir() {
        problems.push(format!(
            "store.root: {} is not a folder (create it, or point store.root at your calendar folders)",
            config.store.root.display()
        ));
    } else if config.store.layout == Layout::Radicale && !store.users_root().is_dir() {
        problems.push(format!(
            "store.root: {} has no collection-root/ folder: is it Radicale's filesystem_folder?",
            config.store.root.display()
        ));
    }
    let (user_problems, notes) = receiving(&store);
    problems.extend(user_problems);
    match config.state.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => problems.push(format!(
            "state: folder {} does not exist (create it, writable by imipd)",
            dir.display()
        )),
        _ => {}
    }
    if let Some(relay) = &config.relay {
        if let Some(file) = &relay.password_file {
            if std::fs::read_to_string(file).is_err() {
                problems.push(format!(
                    "relay.password_file: {} cannot be read",
                    file.display()
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(AdminError::Check(format!(
            "{}:\n  {}",
            path.display(),
            problems.join("\n  ")
        )));
    }
    let mut out = String::new();
    let _ = writeln!(out, "{}: OK", path.display());
    let _ = writeln!(
        out,
        "  store: {} ({:?} layout), {} users",
        config.store.root.display(),
        config.store.layout,
        users.len()
    );
    for user in &users {
        let addresses: Vec<&str> = user.addresses.iter().map(|a| a.as_str()).collect();
        let calendar = store.invitation_calendar(user, "VEVENT");
        let _ = writeln!(
            out,
            "    {}: {}; invitations into {} ({})",
            user.name,
            addresses.join(", "),
            calendar.folder(),
            calendar.reason()
        );
    }
    for note in &notes {
        let _ = writeln!(out, "  note: {note}");
    }
    let _ = writeln!(out, "  state: {}", config.state.display());
    let outgoing = match &config.relay {
        Some(relay) => format!("SMTP relay {}:{} ({})", relay.host, relay.port, relay.tls),
        None => format!("written to {} (no [relay])", config.queue.outbox.display()),
    };
    let incoming = match &config.lmtp {
        Some(lmtp) => {
            let mut places = Vec::new();
            if let Some(addr) = lmtp.listen {
                places.push(addr.to_string());
            }
            if let Some(socket) = &lmtp.socket {
                places.push(socket.display().to_string());
            }
            format!(
                "LMTP on {}\n  senders: {}",
                places.join(" and "),
                sender_policy(lmtp)
            )
        }
        None => "off (no [lmtp])".to_string(),
    };
    let rsvp = match &config.web {
        Some(web) => format!(
            "{}/rsvp/..., page served on {} (put the reverse proxy in front)",
            web.public_url.trim_end_matches('/'),
            web.listen
        ),
        None => "off (no [web])".to_string(),
    };
    let caldav = match &config.caldav {
        Some(front) => format!(
            "clients on {}, passed on to {} (tells them imipd schedules)",
            front.listen, front.upstream
        ),
        None => "off (no [caldav]); clients that talk to the calendar server directly mail \
                 their invitations themselves"
            .to_string(),
    };
    for (what, how) in [
        ("outgoing mail", outgoing),
        ("incoming mail", incoming),
        ("RSVP links", rsvp),
        ("CalDAV front", caldav),
    ] {
        let _ = writeln!(out, "  {what}: {how}");
    }
    Ok(out)
}

/// Where each user's invitations land: the problems (a user whose folder is missing, or
/// who has nowhere to receive) and notes (a configured folder that is not there, so the
/// rule of `store::calendars` chose another). `check-config` prints them, `serve` logs
/// them at start, `status` shows the problems.
pub fn receiving(store: &Store) -> (Vec<String>, Vec<String>) {
    let (mut problems, mut notes) = (Vec::new(), Vec::new());
    for user in store.users() {
        let folder = store.users_root().join(&user.name);
        if let Some(problem) = store.receiving_problem(user) {
            problems.push(problem);
        }
        if let Some(configured) = &user.invitations {
            let chosen = store.invitation_calendar(user, "VEVENT");
            if chosen.folder() != configured {
                notes.push(format!(
                    "user.{}.invitations: {} is not a calendar that takes events; invitations \
                     go to {} ({})",
                    user.name,
                    folder.join(configured).display(),
                    chosen.folder(),
                    chosen.reason()
                ));
            }
        }
    }
    (problems, notes)
}

/// How incoming senders are judged, in one line; a loud warning when nothing is checked.
fn sender_policy(lmtp: &crate::config::LmtpSection) -> String {
    if lmtp.insecure_trust_from_header {
        return "WARNING: lmtp.insecure_trust_from_header is set: every From header is \
                believed without proof, so anyone who can mail this host can cancel or change \
                any meeting. Use it only in a closed test setup."
            .to_string();
    }
    let source = if lmtp.trusted_authserv_ids.is_empty() {
        "DKIM/SPF/DMARC checked by imipd".to_string()
    } else {
        format!(
            "Authentication-Results of {}, else DKIM/SPF/DMARC checked by imipd",
            lmtp.trusted_authserv_ids.join(", ")
        )
    };
    let imports = match lmtp.import_policy {
        crate::config::ImportPolicy::Everyone => "everyone",
        crate::config::ImportPolicy::Authenticated => "authenticated senders",
        crate::config::ImportPolicy::Nobody => "nobody",
    };
    format!(
        "changes to existing events only from authenticated senders ({source}); new \
         invitations from {imports}"
    )
}

/// `imipd scan`: one full scan; with `baseline`, records every object as it is now
/// and sends nothing.
pub fn scan(config: &Config, now: i64, baseline: bool) -> Result<String, AdminError> {
    let store = Store::new(&config.store, config.users()?);
    let state = State::open(&config.state)?;
    if baseline {
        // Forget what imipd knew, and that it had seen these users: the scan below then
        // records every object as it is now, and sends nothing.
        let mut batch = Batch::default();
        for user in store.users() {
            batch.objects.extend(
                state
                    .object_keys_with_prefix(&format!("{}/", user.name))?
                    .into_iter()
                    .map(|key| (key, None)),
            );
            batch.forget_meta.push(format!("baseline:{}", user.name));
        }
        state.commit(batch)?;
    }
    let processor = Processor {
        store: &store,
        state: &state,
        reply_details: config.reply_details(),
        writer: config.writer(),
    };
    let report = scan_all(
        &processor,
        now,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    )?;
    Ok(format!(
        "{} users, {} objects: {} recorded as baseline (nothing sent), {} changes processed, {} messages queued, {} skipped\n",
        report.users, report.objects, report.baselined, report.processed, report.queued, report.skipped
    ))
}

/// `imipd queue list`.
pub fn queue_list(state: &State, now: i64) -> Result<String, AdminError> {
    let items = state.queue()?;
    if items.is_empty() {
        return Ok("the queue is empty\n".into());
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6}  {:<7} {:<14} {:<30} {:>8} {:>9}  uid / last error",
        "id", "method", "route", "recipient", "attempts", "next"
    );
    for item in &items {
        let route = match &item.route {
            Route::Local { user } => format!("local:{user}"),
            Route::Mail => "mail".into(),
        };
        let wait = (item.next_attempt - now).max(0);
        let _ = writeln!(
            out,
            "{:>6}  {:<7} {:<14} {:<30} {:>8} {:>8}s  {}{}",
            item.id,
            item.method,
            route,
            item.rcpt,
            item.attempts,
            wait,
            item.uid,
            item.last_error
                .as_ref()
                .map(|e| format!(" — {e}"))
                .unwrap_or_default()
        );
    }
    let oldest = items.iter().map(|i| i.created).min().unwrap_or(now);
    let _ = writeln!(
        out,
        "{} messages, oldest queued {}s ago",
        items.len(),
        (now - oldest).max(0)
    );
    Ok(out)
}

/// `imipd queue retry ID`: try again now.
pub fn queue_retry(state: &State, id: u64, now: i64) -> Result<String, AdminError> {
    let mut item = state.queue_item(id)?.ok_or(AdminError::NoSuchItem(id))?;
    item.next_attempt = now;
    state.commit(Batch {
        requeue: vec![item.clone()],
        ..Batch::default()
    })?;
    Ok(format!(
        "{id}: {} to {} will be tried again now\n",
        item.method, item.rcpt
    ))
}

/// `imipd queue drop ID`: give up on a message.
pub fn queue_drop(state: &State, id: u64) -> Result<String, AdminError> {
    let item = state.queue_item(id)?.ok_or(AdminError::NoSuchItem(id))?;
    state.commit(Batch {
        dequeue: vec![id],
        ..Batch::default()
    })?;
    Ok(format!(
        "{id}: {} to {} dropped, it will not be sent\n",
        item.method, item.rcpt
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines after the users: the state, and each way mail goes in and out.
    fn summary(sections: &str) -> String {
        let dir = crate::test_support::fresh_dir(&format!("admin-{}", sections.len()));
        std::fs::create_dir_all(dir.join("stores/alice")).expect("store");
        let path = dir.join("imipd.toml");
        let text = format!(
            "state = \"state.redb\"\n[store]\nroot = \"stores\"\n[[user]]\nname = \"alice\"\n\
             addresses = [\"alice@example.com\"]\n{sections}"
        );
        std::fs::write(&path, text).expect("config");
        let out = check_config(&path).expect("a valid configuration");
        let _ = std::fs::remove_dir_all(&dir);
        let from = out.find("  state: ").expect("the state line");
        let (_, rest) = out[from..].split_once('\n').expect("lines after the state");
        rest.to_string()
    }

    #[test]
    fn check_config_says_what_is_off() {
        assert_eq!(
            summary("[queue]\noutbox = \"/srv/imipd/outbox\"\n"),
            "  outgoing mail: written to /srv/imipd/outbox (no [relay])\n  \
             incoming mail: off (no [lmtp])\n  RSVP links: off (no [web])\n  \
             CalDAV front: off (no [caldav]); clients that talk to the calendar server \
             directly mail their invitations themselves\n"
        );
    }

    #[test]
    fn check_config_says_where_mail_goes_in_and_out() {
        let sections = "[relay]\nhost = \"mx.example.com\"\n\
            [lmtp]\nlisten = \"127.0.0.1:2424\"\nsocket = \"/run/imipd/lmtp\"\n\
            [web]\nlisten = \"127.0.0.1:8080\"\npublic_url = \"https://cal.example.com/\"\n\
            [caldav]\nlisten = \"127.0.0.1:5233\"\nupstream = \"http://127.0.0.1:5232\"\n";
        assert_eq!(
            summary(sections),
            "  outgoing mail: SMTP relay mx.example.com:587 (starttls)\n  \
             incoming mail: LMTP on 127.0.0.1:2424 and /run/imipd/lmtp\n  \
             senders: changes to existing events only from authenticated senders \
             (DKIM/SPF/DMARC checked by imipd); new invitations from authenticated senders\n  \
             RSVP links: https://cal.example.com/rsvp/..., page served on 127.0.0.1:8080 \
             (put the reverse proxy in front)\n  \
             CalDAV front: clients on 127.0.0.1:5233, passed on to http://127.0.0.1:5232 \
             (tells them imipd schedules)\n"
        );
    }
}
