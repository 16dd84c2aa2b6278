//! The configuration file (TOML), read once at start and again on SIGHUP.
//!
//! Every key is documented in `examples/imipd.toml`. Unknown keys are errors, so a typo
//! is reported (with its line) instead of silently ignored. Paths that are relative are
//! resolved against the folder of the configuration file, so an example folder can be
//! run from anywhere.

use crate::itip::{CalAddress, ReplyDetails};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A configuration that cannot be used, with what to fix.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a wrong type; the message names line and key.
    #[error("{path}: {message}")]
    Syntax {
        /// The configuration file.
        path: PathBuf,
        /// What toml said, with line, column and key.
        message: String,
    },
    /// A value that parses but cannot work.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// The offending key, e.g. `user.alice.addresses`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// How the calendar folders are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `<root>/<user>/<calendar>/<item>.ics` (vdirsyncer, khal).
    #[default]
    Vdir,
    /// Radicale's `filesystem_folder`: `<root>/collection-root/<user>/<calendar>/`.
    Radicale,
}

/// Who may put a new invitation from outside into a local calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ImportPolicy {
    /// Any sender (invitations still must be addressed to the user).
    Everyone,
    /// Only senders whose From is authenticated (DMARC, or a DKIM signature of the From
    /// domain: a trusted Authentication-Results header or imipd's own check).
    #[default]
    Authenticated,
    /// Never: only updates to events the user already has are applied.
    Nobody,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Folder layout.
    #[serde(default)]
    pub layout: Layout,
    /// The folder holding the users' folders (for Radicale: `filesystem_folder`).
    pub root: PathBuf,
    /// Files larger than this are skipped with a log line (bytes).
    #[serde(default = "default_max_object_size")]
    pub max_object_size: u64,
    /// Seconds between full rescans (file events are only hints).
    #[serde(default = "default_rescan")]
    pub rescan_interval: u64,
    /// Milliseconds a file must stay unchanged before it is processed (a finished
    /// write, a close or a rename into place, needs only 2 ms).
    #[serde(default = "default_debounce")]
    pub debounce_ms: u64,
}

/// `[[user]]`: one local calendar user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    /// The user's folder name under the store root.
    pub name: String,
    /// Every address of the user (aliases included), compared case-insensitively.
    pub addresses: Vec<String>,
    /// Calendar folder where new invitations land; unset: the user's default calendar
    /// found in the store (`crate::store::calendars`).
    #[serde(default)]
    pub invitations: Option<String>,
    /// Language of the emails this user sends (en, de, fr).
    pub language: Option<String>,
}

/// `[mail]`: how outgoing messages are written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MailSection {
    /// `full` (SUMMARY, DTSTART, DTEND in REPLYs) or `minimal`.
    #[serde(default)]
    pub reply_details: ReplyDetailsSetting,
    /// Language when neither the recipient nor the sender has one.
    pub default_language: Option<String>,
    /// Domain for Message-IDs and the bounce address.
    pub domain: Option<String>,
    /// Per sender domain, a system address to send as (with Reply-To set to the
    /// user), for domains the relay may not send as.
    #[serde(default)]
    pub system_sender: BTreeMap<String, String>,
    /// What an organizer's mail shows of the other attendees: `summary` (default: 20
    /// names and "and N others"), `full`, or `hidden` (each attendee's iCalendar
    /// carries only the organizer and that attendee).
    #[serde(default)]
    pub attendee_list: crate::imip::AttendeeList,
}

/// `reply_details` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReplyDetailsSetting {
    /// See [`ReplyDetails::Full`].
    #[default]
    Full,
    /// See [`ReplyDetails::Minimal`].
    Minimal,
}

/// `[relay]`: the SMTP relay for outgoing mail. Without it, mail goes to the outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySection {
    /// Relay host name or address.
    pub host: String,
    /// Relay port.
    #[serde(default = "default_relay_port")]
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    #[serde(default = "default_tls")]
    pub tls: String,
    /// AUTH user name.
    pub username: Option<String>,
    /// File holding the AUTH password (kept out of the configuration).
    pub password_file: Option<PathBuf>,
    /// Seconds before a relay conversation step times out.
    #[serde(default = "default_relay_timeout")]
    pub timeout: u64,
    /// Connections to the relay open at once (1–100): a change's mails are spread
    /// over them.
    #[serde(default = "default_relay_connections")]
    pub connections: usize,
}

/// `[queue]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSection {
    /// Folder for `.eml` files when there is no relay.
    #[serde(default = "default_outbox")]
    pub outbox: PathBuf,
    /// Hours after which an undeliverable message fails for good.
    #[serde(default = "default_max_age_hours")]
    pub max_age_hours: u64,
    /// Seconds before the first retry of a failed delivery (then doubling).
    #[serde(default = "default_first_retry")]
    pub first_retry_delay: u64,
    /// Longest wait between two retries, in seconds.
    #[serde(default = "default_max_retry")]
    pub max_retry_delay: u64,
}

impl Default for QueueSection {
    fn default() -> Self {
        QueueSection {
            outbox: default_outbox(),
            max_age_hours: default_max_age_hours(),
            first_retry_delay: default_first_retry(),
            max_retry_delay: default_max_retry(),
        }
    }
}

/// `[lmtp]`: the server the MTA delivers incoming iMIP mail to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmtpSection {
    /// TCP address, e.g. `127.0.0.1:2424`.
    pub listen: Option<SocketAddr>,
    /// Unix socket path.
    pub socket: Option<PathBuf>,
    /// Largest accepted message (bytes).
    #[serde(default = "default_max_message")]
    pub max_message_size: usize,
    /// Largest calendar part (bytes).
    #[serde(default = "default_max_calendar")]
    pub max_calendar_size: usize,
    /// Concurrent connections.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a connection may stay silent.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: u64,
    /// Who may add new invitations: everyone, authenticated, nobody.
    #[serde(default)]
    pub import_policy: ImportPolicy,
    /// authserv-ids of your own MTA, whose Authentication-Results are trusted (the
    /// topmost one, directly above or below the MTA's own Received line); without one,
    /// imipd checks DKIM, SPF and DMARC itself.
    #[serde(default)]
    pub trusted_authserv_ids: Vec<String>,
    /// INSECURE, for closed test setups only: believe every From header without any
    /// proof, so anyone who can send mail here can cancel or change any meeting.
    /// `check-config` warns while it is set.
    #[serde(default)]
    pub insecure_trust_from_header: bool,
    /// DNS servers (`ip:port`) for imipd's own DKIM, SPF and DMARC lookups; empty: the
    /// system's (`/etc/resolv.conf`). Tests point this at a server on loopback.
    #[serde(default)]
    pub dns_servers: Vec<SocketAddr>,
    /// Seconds the sender check may wait for DNS; longer is a temporary failure (451),
    /// never a pass.
    #[serde(default = "default_dns_timeout")]
    pub dns_timeout: u64,
    /// Most DKIM signatures imipd verifies itself per message, the topmost first (each
    /// costs a DNS query); the rest count as not verified. Real mail carries one to
    /// three; a bound keeps one message from making imipd ask DNS hundreds of times.
    #[serde(default = "default_max_dkim_signatures")]
    pub max_dkim_signatures: usize,
    /// Refuse (5xx) unauthorised or invalid iMIP instead of accepting and logging it.
    #[serde(default)]
    pub bounce_refused: bool,
    /// The separator of subaddresses (`"+"`: `alice+team@example.com` reaches alice);
    /// off unless set.
    pub subaddress_separator: Option<String>,
    /// A domain only imipd handles, for copies of users' mail (Postfix
    /// `recipient_bcc_maps`): `NAME@<copy_domain>` is the user whose folder is NAME, or
    /// whose address has the local part NAME. Non-calendar copies are dropped at once.
    pub copy_domain: Option<String>,
}

/// `[metrics]`: Prometheus metrics over HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address to serve metrics on, e.g. `127.0.0.1:9425`.
    pub listen: SocketAddr,
}

/// `[web]`: the RSVP page (Accept/Maybe/Decline links in invitations), served behind
/// the admin's reverse proxy. Off unless configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    /// Address the listener binds, e.g. `127.0.0.1:8425` (the proxy forwards to it).
    pub listen: SocketAddr,
    /// The address people open, e.g. `https://calendar.example.com`: links in mail
    /// start with it.
    pub public_url: String,
    /// How long links to a series without an end stay valid, in days.
    #[serde(default = "default_max_link_days")]
    pub max_link_days: u64,
}

fn default_max_link_days() -> u64 {
    365
}

impl WebSection {
    /// `public_url` must be an absolute http(s) address without query or fragment:
    /// every link in every invitation starts with it.
    pub fn check_public_url(&self) -> Result<(), String> {
        let url = self.public_url.as_str();
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                format!("{url:?}: give the address people open, e.g. https://calendar.example.com")
            })?;
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(format!("{url:?}: no host name after the scheme"));
        }
        if url.contains(['?', '#']) || url.contains(char::is_whitespace) {
            return Err(format!(
                "{url:?}: no query, fragment or spaces (links are built by appending /rsvp/...)"
            ));
        }
        Ok(())
    }
}

/// `[caldav]`: the CalDAV front (`crate::caldav`). Clients talk to it instead of to
/// Radicale; it passes every request through and tells them that the server schedules
/// (`calendar-auto-schedule`), so they leave the mailing to imipd. Off unless configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaldavSection {
    /// Address the front binds, e.g. `127.0.0.1:5233` (the site's TLS proxy forwards to
    /// it, where it forwarded to Radicale before).
    pub listen: SocketAddr,
    /// Radicale's own address: `http://host:port`.
    pub upstream: String,
    /// Largest request body passed on (bytes); Radicale's own default limit is 100 MB.
    #[serde(default = "default_caldav_max_body")]
    pub max_body: usize,
}

fn default_caldav_max_body() -> usize {
    100_000_000
}

impl CaldavSection {
    /// The upstream's `host:port`, from `http://host:port` (with an optional `/`).
    pub fn upstream_authority(&self) -> Result<String, String> {
        let rest = self.upstream.strip_prefix("http://").ok_or_else(|| {
            format!(
                "{:?}: give Radicale's own address, e.g. http://127.0.0.1:5232 \
                 (plain HTTP on this host; TLS belongs to the proxy in front of imipd)",
                self.upstream
            )
        })?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{:?}: only http://host:port; Radicale behind a path prefix is not supported",
                self.upstream
            ));
        }
        if !authority.contains(':') {
            return Ok(format!("{authority}:80"));
        }
        Ok(authority.to_string())
    }
}

/// `[control]`: the local socket admin commands use to talk to the running daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// Unix socket path. Default: `/run/imipd/control.sock`.
    #[serde(default = "default_control_socket")]
    pub socket: PathBuf,
    /// Group that may use the socket (mode 0660); default: the daemon's own group.
    pub group: Option<String>,
}

impl Default for ControlSection {
    fn default() -> Self {
        ControlSection {
            socket: default_control_socket(),
            group: None,
        }
    }
}

/// `[deliver]`: `imipd deliver`, the local delivery agent for Sieve pipes and MTAs.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeliverSection {
    /// Drop folder for messages handed to `imipd deliver` while the daemon is not
    /// running (applied when it runs). Without it, `deliver` exits 75 then.
    pub spool: Option<PathBuf>,
}

/// Where the users come from besides `[[user]]` blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UsersFrom {
    /// Only the `[[user]]` blocks.
    #[default]
    Config,
    /// Every user folder of the store is a user too.
    Store,
}

/// `[users]`: users taken from the store's folders, for stores with thousands of users.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UsersSection {
    /// `config` (only `[[user]]`) or `store` (every user folder of the store too).
    #[serde(default)]
    pub from: UsersFrom,
    /// Address of a folder's user: `{user}` is replaced by the folder name, e.g.
    /// `"{user}@example.com"`. Required with `from = "store"`.
    pub address: Option<String>,
    /// A map file in Postfix's `virtual` format (`alias@domain  user`, `#` comments):
    /// more addresses for store users.
    pub aliases: Option<PathBuf>,
    /// A map file in the same format (`user  de`): the language of a user's emails.
    pub languages: Option<PathBuf>,
    /// Calendar folder for new invitations of store users; unset: each user's default
    /// calendar found in the store (`crate::store::calendars`).
    #[serde(default)]
    pub invitations: Option<String>,
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The state database file.
    #[serde(default = "default_state")]
    pub state: PathBuf,
    /// Calendar folders.
    pub store: StoreSection,
    /// Local users.
    #[serde(rename = "user", default)]
    pub users: Vec<UserSection>,
    /// Outgoing mail.
    #[serde(default)]
    pub mail: MailSection,
    /// SMTP relay.
    pub relay: Option<RelaySection>,
    /// Delivery queue.
    #[serde(default)]
    pub queue: QueueSection,
    /// LMTP server.
    pub lmtp: Option<LmtpSection>,
    /// Prometheus metrics.
    pub metrics: Option<MetricsSection>,
    /// RSVP links and their page.
    pub web: Option<WebSection>,
    /// The CalDAV front that tells clients imipd schedules.
    pub caldav: Option<CaldavSection>,
    /// The control socket of the running daemon.
    #[serde(default)]
    pub control: ControlSection,
    /// Users taken from the store's folders.
    #[serde(default, rename = "users")]
    pub users_from: UsersSection,
    /// `imipd deliver`.
    #[serde(default)]
    pub deliver: DeliverSection,
}

fn default_max_object_size() -> u64 {
    1024 * 1024
}
fn default_rescan() -> u64 {
    300
}
fn default_debounce() -> u64 {
    150
}
/// A folder name that stays inside the user's folder.
fn is_plain_folder(name: &str) -> bool {
    !(name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']))
}
fn default_relay_port() -> u16 {
    587
}
fn default_tls() -> String {
    "starttls".into()
}
fn default_relay_timeout() -> u64 {
    60
}
fn default_relay_connections() -> usize {
    crate::smtp::relay::DEFAULT_CONNECTIONS
}
fn default_outbox() -> PathBuf {
    PathBuf::from("outbox")
}
fn default_max_age_hours() -> u64 {
    5 * 24
}
fn default_first_retry() -> u64 {
    60
}
fn default_max_retry() -> u64 {
    3600
}
fn default_max_message() -> usize {
    10 * 1024 * 1024
}
fn default_max_calendar() -> usize {
    512 * 1024
}
fn default_max_connections() -> usize {
    50
}
fn default_idle_timeout() -> u64 {
    300
}
fn default_dns_timeout() -> u64 {
    10
}
fn default_max_dkim_signatures() -> usize {
    crate::imip::sender_auth::DEFAULT_MAX_DKIM_SIGNATURES
}
fn default_control_socket() -> PathBuf {
    PathBuf::from("/run/imipd/control.sock")
}
fn default_state() -> PathBuf {
    PathBuf::from("state.redb")
}

/// A local user, checked and ready to use.
#[derive(Debug, Clone)]
pub struct User {
    /// Folder name under the store root.
    pub name: String,
    /// Normalised addresses, first one primary.
    pub addresses: Vec<CalAddress>,
    /// Calendar folder for new invitations, when configured; otherwise the user's
    /// default calendar is found in the store.
    pub invitations: Option<String>,
    /// Preferred language code, if set.
    pub language: Option<String>,
}

impl Config {
    /// Reads and checks the configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_text(&text, path)
    }

    /// Parses configuration text; `path` names it in errors and anchors relative paths.
    pub fn from_text(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let mut message = e.to_string().trim_end().to_string();
            if message.contains("require_authenticated") {
                message.push_str(
                    "\n(lmtp.require_authenticated is gone: only authenticated senders \
                     change events by default; remove the line)",
                );
            }
            ConfigError::Syntax {
                path: path.to_path_buf(),
                message,
            }
        })?;
        // Absolute paths: file events name absolute paths, and the daemon may chdir.
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut config.state);
        resolve(&mut config.store.root);
        resolve(&mut config.queue.outbox);
        if let Some(relay) = &mut config.relay {
            if let Some(p) = &mut relay.password_file {
                resolve(p);
            }
        }
        if let Some(lmtp) = &mut config.lmtp {
            if let Some(p) = &mut lmtp.socket {
                resolve(p);
            }
        }
        resolve(&mut config.control.socket);
        if let Some(p) = &mut config.deliver.spool {
            resolve(p);
        }
        for p in [
            &mut config.users_from.aliases,
            &mut config.users_from.languages,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
        // Name this file in the errors about users.
        config.users().map_err(|err| match err {
            ConfigError::Invalid { key, message, .. } => ConfigError::Invalid {
                path: path.to_path_buf(),
                key,
                message,
            },
            other => other,
        })?;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.into(),
            message,
        };
        if let Some(relay) = &config.relay {
            if !["none", "starttls", "tls"].contains(&relay.tls.as_str()) {
                return Err(invalid(
                    "relay.tls",
                    format!("{:?}: use none, starttls or tls", relay.tls),
                ));
            }
            if !(1..=100).contains(&relay.connections) {
                return Err(invalid(
                    "relay.connections",
                    format!("{}: use 1 to 100", relay.connections),
                ));
            }
        }
        if let Some(web) = &config.web {
            web.check_public_url()
                .map_err(|message| invalid("web.public_url", message))?;
        }
        if let Some(caldav) = &config.caldav {
            caldav
                .upstream_authority()
                .map_err(|message| invalid("caldav.upstream", message))?;
        }
        if let Some(lmtp) = &config.lmtp {
            if lmtp.listen.is_none() && lmtp.socket.is_none() {
                return Err(invalid(
                    "lmtp",
                    "give `listen` (host:port) or `socket` (a path), or remove [lmtp]".into(),
                ));
            }
        }
        Ok(config)
    }

    /// The local users with normalised addresses; errors name the user and value.
    pub fn users(&self) -> Result<Vec<User>, ConfigError> {
        let mut seen = BTreeMap::new();
        let mut out = Vec::new();
        for user in &self.users {
            let key = format!("user.{}", user.name);
            let invalid = |message: String| ConfigError::Invalid {
                path: PathBuf::from("configuration"),
                key: key.clone(),
                message,
            };
            if user.name.is_empty()
                || user.name.starts_with('.')
                || user.name.contains(['/', '\\', '\0'])
            {
                return Err(invalid(format!(
                    "name {:?} must be a plain folder name",
                    user.name
                )));
            }
            if user.addresses.is_empty() {
                return Err(invalid("addresses: give at least one email address".into()));
            }
            let mut addresses = Vec::new();
            for raw in &user.addresses {
                let address = CalAddress::parse(raw).ok_or_else(|| {
                    invalid(format!("addresses: {raw:?} is not an email address"))
                })?;
                if let Some(other) = seen.insert(address.clone(), user.name.clone()) {
                    return Err(invalid(format!(
                        "addresses: {address} is also an address of user {other}"
                    )));
                }
                addresses.push(address);
            }
            if let Some(folder) = user.invitations.as_deref().filter(|f| !is_plain_folder(f)) {
                return Err(invalid(format!(
                    "invitations {folder:?} must be a plain folder name"
                )));
            }
            out.push(User {
                name: user.name.clone(),
                addresses,
                invitations: user.invitations.clone(),
                language: user.language.clone(),
            });
        }
        if self.users_from.from == UsersFrom::Store {
            self.store_users(&mut out, &mut seen)?;
        }
        Ok(out)
    }

    /// The folder holding one folder per user (Radicale: `collection-root`).
    pub fn users_root(&self) -> PathBuf {
        match self.store.layout {
            Layout::Vdir => self.store.root.clone(),
            Layout::Radicale => self.store.root.join("collection-root"),
        }
    }

    /// Adds a user for every folder of the store not named by a `[[user]]` block, then
    /// the aliases and languages of the map files (for any user).
    fn store_users(
        &self,
        out: &mut Vec<User>,
        seen: &mut BTreeMap<CalAddress, String>,
    ) -> Result<(), ConfigError> {
        let section = &self.users_from;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: PathBuf::from("configuration"),
            key: key.into(),
            message,
        };
        if let Some(folder) = section
            .invitations
            .as_deref()
            .filter(|f| !is_plain_folder(f))
        {
            return Err(invalid(
                "users.invitations",
                format!("{folder:?} must be a plain folder name"),
            ));
        }
        let template = section.address.as_deref().ok_or_else(|| {
            invalid(
                "users.address",
                "with from = \"store\", give the address template, e.g. \"{user}@example.com\""
                    .into(),
            )
        })?;
        if !template.contains("{user}") {
            return Err(invalid(
                "users.address",
                format!("{template:?} has no {{user}} placeholder"),
            ));
        }
        let root = self.users_root();
        let mut names: Vec<String> = match std::fs::read_dir(&root) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect(),
            // A store that does not exist yet has no users; check-config says so.
            Err(_) => Vec::new(),
        };
        names.sort();
        let configured: std::collections::BTreeSet<String> =
            out.iter().map(|u| u.name.clone()).collect();
        for name in names.into_iter().filter(|n| !configured.contains(n)) {
            let raw = template.replace("{user}", &name);
            let Some(address) = CalAddress::parse(&raw) else {
                // A folder whose name cannot be an address is not a calendar user.
                continue;
            };
            if let Some(other) = seen.insert(address.clone(), name.clone()) {
                return Err(invalid(
                    &format!("users: folder {name}"),
                    format!("its address {address} is also an address of user {other}"),
                ));
            }
            out.push(User {
                name,
                addresses: vec![address],
                invitations: section.invitations.clone(),
                language: None,
            });
        }
        if let Some(file) = &section.aliases {
            for (line, alias, user) in read_map(file, "users.aliases")? {
                let key = format!("users.aliases: {} line {line}", file.display());
                let address = CalAddress::parse(&alias)
                    .ok_or_else(|| invalid(&key, format!("{alias:?} is not an email address")))?;
                let Some(index) = out.iter().position(|u| u.name == user) else {
                    return Err(invalid(&key, format!("no user {user:?} for {alias}")));
                };
                if let Some(other) = seen.insert(address.clone(), user.clone()) {
                    if other != user {
                        return Err(invalid(
                            &key,
                            format!("{address} is also an address of user {other}"),
                        ));
                    }
                    continue;
                }
                out[index].addresses.push(address);
            }
        }
        if let Some(file) = &section.languages {
            for (line, user, language) in read_map(file, "users.languages")? {
                let key = format!("users.languages: {} line {line}", file.display());
                let Some(found) = out.iter_mut().find(|u| u.name == user) else {
                    return Err(invalid(&key, format!("no user {user:?}")));
                };
                found.language = Some(language);
            }
        }
        Ok(())
    }

    /// Who may have written the store's objects, as far as scheduling goes: with a
    /// CalDAV front configured, clients can have been told imipd schedules (the
    /// processing then asks the front's record which write came through it); without
    /// one, none was.
    pub fn writer(&self) -> crate::itip::history::Writer {
        match self.caldav {
            Some(_) => crate::itip::history::Writer::ToldImipdSchedules,
            None => crate::itip::history::Writer::NotTold,
        }
    }

    /// The REPLY detail setting as the engine's type.
    pub fn reply_details(&self) -> ReplyDetails {
        match self.mail.reply_details {
            ReplyDetailsSetting::Full => ReplyDetails::Full,
            ReplyDetailsSetting::Minimal => ReplyDetails::Minimal,
        }
    }
}

/// Reads a map file in Postfix's format: `key value` per line, `#` comments, blank
/// lines ignored. Returns (line number, key, value).
fn read_map(file: &Path, key: &str) -> Result<Vec<(usize, String, String)>, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Invalid {
        path: PathBuf::from("configuration"),
        key: key.into(),
        message: format!("{}: {e}", file.display()),
    })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (Some(k), Some(v), None) => out.push((n + 1, k.to_string(), v.to_string())),
            _ => {
                return Err(ConfigError::Invalid {
                    path: PathBuf::from("configuration"),
                    key: format!("{key}: {} line {}", file.display(), n + 1),
                    message: format!("{line:?}: expected two fields, `key value`"),
                })
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_file_gets_defaults_and_resolved_paths() {
        let text = "[store]\nroot = \"stores\"\n\n[[user]]\nname = \"alice\"\naddresses = [\"Alice@Example.com\"]\n";
        let config = Config::from_text(text, Path::new("/etc/imipd/imipd.toml")).expect("valid");
        assert_eq!(config.store.root, PathBuf::from("/etc/imipd/stores"));
        assert_eq!(config.state, PathBuf::from("/etc/imipd/state.redb"));
        let users = config.users().expect("users");
        assert_eq!(users[0].addresses[0].as_str(), "alice@example.com");
        assert_eq!(
            users[0].invitations, None,
            "found in the store unless configured"
        );
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/imipd.toml");
        let config = Config::load(&path).expect("examples/imipd.toml must stay valid");
        assert_eq!(config.users().expect("users").len(), 2);
        assert!(config.relay.is_none(), "the demo writes mail to the outbox");
        assert!(config.queue.outbox.ends_with("examples/outbox"));
        assert!(config.store.root.is_absolute(), "store paths are absolute");
        let lmtp = config.lmtp.expect("the demo takes mail");
        assert!(
            lmtp.insecure_trust_from_header,
            "the demo's unsigned sample mail has no DNS to be checked against, and says so"
        );
    }

    #[test]
    fn the_packaged_configuration_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/debian/imipd.toml");
        let config = Config::load(&path).expect("contrib/debian/imipd.toml must stay valid");
        assert_eq!(config.store.layout, Layout::Radicale);
        assert_eq!(config.users_from.from, UsersFrom::Store);
        assert_eq!(
            config.control.socket,
            PathBuf::from("/run/imipd/control.sock")
        );
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let typo = "[store]\nroot = \"s\"\nrescan_intervall = 5\n";
        let err = Config::from_text(typo, Path::new("imipd.toml"))
            .expect_err("unknown key")
            .to_string();
        assert!(
            err.contains("rescan_intervall") && err.contains("line 3"),
            "{err}"
        );

        let bad_address =
            "[store]\nroot = \"s\"\n[[user]]\nname = \"bob\"\naddresses = [\"not an address\"]\n";
        let err = Config::from_text(bad_address, Path::new("imipd.toml"))
            .expect_err("bad address")
            .to_string();
        assert!(
            err.contains("user.bob") && err.contains("not an address"),
            "{err}"
        );
        assert!(err.starts_with("imipd.toml:"), "the file is named: {err}");

        let shared = "[store]\nroot = \"s\"\n[[user]]\nname = \"a\"\naddresses = [\"x@y.z\"]\n[[user]]\nname = \"b\"\naddresses = [\"X@Y.Z\"]\n";
        let err = Config::from_text(shared, Path::new("imipd.toml"))
            .expect_err("duplicate")
            .to_string();
        assert!(err.contains("also an address of user a"), "{err}");

        let escape =
            "[store]\nroot = \"s\"\n[[user]]\nname = \"../etc\"\naddresses = [\"x@y.z\"]\n";
        assert!(Config::from_text(escape, Path::new("imipd.toml")).is_err());
    }

    fn scratch(name: &str) -> PathBuf {
        crate::test_support::fresh_dir(&format!("config-{name}"))
    }

    #[test]
    fn every_store_folder_is_a_user_with_aliases_and_languages_from_map_files() {
        let dir = scratch("store-users");
        for name in ["alice", "bob", ".hidden"] {
            std::fs::create_dir_all(dir.join("stores").join(name)).expect("user folder");
        }
        std::fs::write(dir.join("stores/not-a-folder.ics"), "").expect("file");
        std::fs::write(
            dir.join("virtual"),
            "# aliases\nrobert@example.com  bob\n\nboss@example.com alice # the boss\n",
        )
        .expect("virtual");
        std::fs::write(dir.join("languages"), "bob de\n").expect("languages");
        let text = "[store]\nroot = \"stores\"\n[users]\nfrom = \"store\"\naddress = \"{user}@example.com\"\naliases = \"virtual\"\nlanguages = \"languages\"\n";
        let config = Config::from_text(text, &dir.join("imipd.toml")).expect("valid");
        let users = config.users().expect("users");
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(
            names,
            ["alice", "bob"],
            "hidden folders and files are no users"
        );
        let bob = &users[1];
        let addresses: Vec<&str> = bob.addresses.iter().map(|a| a.as_str()).collect();
        assert_eq!(addresses, ["bob@example.com", "robert@example.com"]);
        assert_eq!(bob.language.as_deref(), Some("de"));
        assert_eq!(users[0].addresses[1].as_str(), "boss@example.com");
    }

    #[test]
    fn a_clash_between_a_configured_user_and_a_store_alias_names_both() {
        let dir = scratch("store-clash");
        for name in ["alice", "bob"] {
            std::fs::create_dir_all(dir.join("stores").join(name)).expect("user folder");
        }
        std::fs::write(dir.join("virtual"), "alice@example.com bob\n").expect("virtual");
        let text = "[store]\nroot = \"stores\"\n[users]\nfrom = \"store\"\naddress = \"{user}@example.com\"\naliases = \"virtual\"\n";
        let err = Config::from_text(text, &dir.join("imipd.toml"))
            .expect_err("clash")
            .to_string();
        assert!(
            err.contains("alice@example.com is also an address of user alice")
                && err.contains("line 1"),
            "{err}"
        );
        let no_template = "[store]\nroot = \"stores\"\n[users]\nfrom = \"store\"\n";
        let err = Config::from_text(no_template, &dir.join("imipd.toml"))
            .expect_err("template")
            .to_string();
        assert!(err.contains("users.address"), "{err}");
    }

    #[test]
    fn a_store_of_five_thousand_users_loads() {
        let dir = scratch("store-5000");
        for i in 0..5000 {
            std::fs::create_dir_all(dir.join("stores").join(format!("user{i:04}")))
                .expect("user folder");
        }
        let text = "[store]\nroot = \"stores\"\n[users]\nfrom = \"store\"\naddress = \"{user}@example.com\"\n";
        let started = std::time::Instant::now();
        let config = Config::from_text(text, &dir.join("imipd.toml")).expect("valid");
        let users = config.users().expect("users");
        eprintln!("5,000 store users loaded in {:?}", started.elapsed());
        assert_eq!(users.len(), 5000);
        assert_eq!(users[4999].addresses[0].as_str(), "user4999@example.com");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
