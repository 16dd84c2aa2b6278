//! A calendar store for tests that drive imipd's library directly (no daemon): users,
//! the store section they all use, LMTP settings, the first scan, and a [`MailSite`]
//! that decides incoming mail with the LMTP server's own code.

use super::TempDir;
use imipd::config::{ImportPolicy, Layout, LmtpSection, StoreSection, User};
use imipd::daemon::inbound::{Inbound, Verdict};
use imipd::itip::{CalAddress, Context, ReplyDetails};
use imipd::smtp::verp::BounceAddress;
use imipd::store::apply::Applier;
use imipd::store::layout::Store;
use imipd::store::process::Processor;
use imipd::store::scan::scan_all;
use imipd::store::state::State;
use std::path::Path;

/// A user whose folder is `name` and whose one address is `<name>@example.com`.
pub fn user(name: &str) -> User {
    User {
        name: name.into(),
        addresses: vec![CalAddress::parse(&format!("{name}@example.com")).expect("address")],
        invitations: Some("calendar".into()),
        language: None,
    }
}

/// A store of `layout` at `root` (for Radicale, the folder that holds
/// `collection-root`) for `users`: objects up to 1 MiB, 10 ms debounce.
pub fn store(root: &Path, layout: Layout, users: Vec<User>) -> Store {
    let section = StoreSection {
        layout,
        root: root.to_path_buf(),
        max_object_size: 1 << 20,
        rescan_interval: 60,
        debounce_ms: 10,
    };
    Store::new(&section, users)
}

/// `[lmtp]` settings for tests about other things than sender authentication (a
/// CLOSED TEST SETUP): 1 MiB messages, invitations from everyone, and every From
/// believed without proof (`insecure_trust_from_header`), so unsigned test mail is
/// applied; refusals bounced as `bounce_refused` says. Tests about who may change a
/// calendar use [`lmtp_settings_secure`].
pub fn lmtp_settings(bounce_refused: bool) -> LmtpSection {
    LmtpSection {
        insecure_trust_from_header: true,
        import_policy: ImportPolicy::Everyone,
        ..lmtp_settings_secure(bounce_refused)
    }
}

/// `[lmtp]` settings as a real site has them (the secure defaults: changes only from
/// authenticated senders, invitations from authenticated senders), with 1 MiB
/// messages and refusals bounced as `bounce_refused` says.
pub fn lmtp_settings_secure(bounce_refused: bool) -> LmtpSection {
    LmtpSection {
        listen: None,
        socket: None,
        max_message_size: 1 << 20,
        max_calendar_size: 512 * 1024,
        max_connections: 5,
        idle_timeout: 30,
        import_policy: ImportPolicy::Authenticated,
        trusted_authserv_ids: Vec::new(),
        insecure_trust_from_header: false,
        dns_servers: Vec::new(),
        dns_timeout: 5,
        max_dkim_signatures: 10,
        bounce_refused,
        subaddress_separator: None,
        copy_domain: None,
    }
}

/// The engine's context for `account` at `now`, writing full REPLYs.
pub fn context(account: &[CalAddress], now: i64) -> Context<'_> {
    Context {
        account,
        now,
        reply_details: ReplyDetails::Full,
    }
}

/// What looks at the store's changes, as the daemon has it by default: full REPLYs,
/// changes counted as the site's default writer's.
pub fn processor<'a>(store: &'a Store, state: &'a State) -> Processor<'a> {
    Processor {
        store,
        state,
        reply_details: ReplyDetails::Full,
        writer: Default::default(),
    }
}

/// What applies incoming iTIP messages to the store, writing full REPLY details.
pub fn applier<'a>(store: &'a Store, state: &'a State) -> Applier<'a> {
    Applier {
        store,
        state,
        reply_details: ReplyDetails::Full,
    }
}

/// The first scan: everything in the store becomes the baseline, nothing is sent.
pub fn baseline(store: &Store, state: &State, now: i64) {
    scan_all(&processor(store, state), now, false).expect("baseline");
}

/// Every `.ics` file under `root` (a store), checked by imipd's RFC 5545 validator: the
/// tests that call it promise that every file they and imipd wrote validates.
pub fn assert_valid_files(root: &Path) {
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|x| x == "ics") {
                let text = std::fs::read_to_string(&path).expect("readable file");
                if let Err(invalid) = imipd::itip::validate::check_text(&text) {
                    panic!("{}: {invalid}\n{text}", path.display());
                }
            }
        }
    }
}

/// One mail to `rcpt`, decided as the LMTP server decides (envelope sender
/// `sender@example.net`, the sender judged from the message's headers alone), with the
/// site's bounce address `imipd-bounces@example.com`: the verdict.
pub fn deliver(
    store: &Store,
    state: &State,
    settings: &LmtpSection,
    rcpt: &str,
    mail: &[u8],
    now: i64,
) -> Verdict {
    let inbound = Inbound {
        store,
        state,
        settings,
        reply_details: ReplyDetails::Full,
        bounces: &BounceAddress::new("imipd-bounces", "example.com").expect("bounce address"),
        bounce_key: b"test key",
    };
    inbound
        .deliver("sender@example.net", &[rcpt.to_string()], mail, now)
        .remove(0)
}

/// Users' vdir stores (`stores/<user>/calendar`) and a state in a fresh folder, with
/// mail decided by the same code the LMTP server runs ([`Inbound`]), no daemon.
pub struct MailSite {
    /// The folder: `stores/`, `state.redb`.
    pub dir: TempDir,
    /// The users' store.
    pub store: Store,
    /// The state (baselines, queue, refusals).
    pub state: State,
    /// The `[lmtp]` settings mail is decided under.
    pub settings: LmtpSection,
}

impl MailSite {
    /// Empty calendar folders for `users` (each `<user>@example.com`) under `settings`.
    pub fn new(label: &str, users: &[&str], settings: LmtpSection) -> MailSite {
        let dir = TempDir::new(label);
        for name in users {
            std::fs::create_dir_all(dir.path().join("stores").join(name).join("calendar"))
                .expect("folders");
        }
        let store = store(
            &dir.join("stores"),
            Layout::Vdir,
            users.iter().map(|name| user(name)).collect(),
        );
        let state = State::open(&dir.join("state.redb")).expect("state");
        MailSite {
            dir,
            store,
            state,
            settings,
        }
    }

    /// Decides `data` from `sender` to `rcpt` at `now` as the LMTP server would.
    pub fn deliver(&self, sender: &str, rcpt: &str, data: &[u8], now: i64) -> Verdict {
        let bounces = BounceAddress::new("imipd-bounces", "example.com").expect("bounces");
        let inbound = Inbound {
            store: &self.store,
            state: &self.state,
            settings: &self.settings,
            reply_details: ReplyDetails::Full,
            bounces: &bounces,
            bounce_key: b"test key",
        };
        let mut verdicts = inbound.deliver(sender, &[rcpt.to_string()], data, now);
        assert_eq!(verdicts.len(), 1, "one verdict per recipient");
        verdicts.remove(0)
    }
}
