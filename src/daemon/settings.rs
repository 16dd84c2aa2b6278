//! Settings the loops derive from the configuration at start: the delivery settings
//! ([`queue_settings`]) and the bounce-token key kept in the state ([`bounce_key`]).

use super::queue::QueueSettings;
use super::shared::DaemonError;
use crate::config::{Config, ConfigError};
use crate::smtp::retry::RetryPolicy;
use crate::smtp::verp::BounceAddress;
use crate::store::state::State;
use std::path::PathBuf;
use std::time::Duration;

/// Delivery settings from the configuration.
pub fn queue_settings(config: &Config) -> Result<QueueSettings, ConfigError> {
    use crate::imip::{Language, Mailbox, OutgoingOptions};
    let users = config.users()?;
    let domain = config
        .mail
        .domain
        .clone()
        .or_else(|| {
            users
                .first()
                .and_then(|u| u.addresses.first())
                .map(|a| a.domain().to_string())
        })
        .unwrap_or_else(|| "localhost".to_string());
    let mut mail = OutgoingOptions {
        default_language: config
            .mail
            .default_language
            .as_deref()
            .and_then(Language::from_tag)
            .unwrap_or_default(),
        message_id_domain: domain.clone(),
        attendee_list: config.mail.attendee_list,
        ..OutgoingOptions::default()
    };
    for user in &users {
        if let Some(language) = user.language.as_deref().and_then(Language::from_tag) {
            for address in &user.addresses {
                mail.languages.insert(address.clone(), language);
            }
        }
    }
    for (sender_domain, system) in &config.mail.system_sender {
        let address =
            crate::itip::CalAddress::parse(system).ok_or_else(|| ConfigError::Invalid {
                path: PathBuf::from("configuration"),
                key: format!("mail.system_sender.{sender_domain}"),
                message: format!("{system:?} is not an email address"),
            })?;
        mail.system_senders.insert(
            sender_domain.to_ascii_lowercase(),
            Mailbox {
                name: None,
                address,
            },
        );
    }
    let bounces = BounceAddress::new(super::BOUNCE_LOCAL_PART, &domain).map_err(|e| {
        ConfigError::Invalid {
            path: PathBuf::from("configuration"),
            key: "mail.domain".into(),
            message: format!("{domain:?} cannot be the domain of the bounce address: {e}"),
        }
    })?;
    Ok(QueueSettings {
        mail,
        bounces,
        bounce_key: Vec::new(),
        rsvp: None,
        retry: RetryPolicy {
            first_delay: Duration::from_secs(config.queue.first_retry_delay.max(1)),
            max_delay: Duration::from_secs(
                config
                    .queue
                    .max_retry_delay
                    .max(config.queue.first_retry_delay)
                    .max(1),
            ),
            max_age: Duration::from_secs(config.queue.max_age_hours.saturating_mul(3600)),
            ..RetryPolicy::default()
        },
        reply_details: config.reply_details(),
    })
}

/// Where the bounce key is kept in the state.
const BOUNCE_KEY: &str = "bounce_key";

/// The secret that signs bounce tokens: made once from the system's random source and
/// kept in the state, so tokens stay valid across restarts.
pub fn bounce_key(state: &State) -> Result<Vec<u8>, DaemonError> {
    stored_secret(state, BOUNCE_KEY, "the bounce key", |_| true)
}

/// A 32-byte secret kept in the state under `meta_key`: the stored one when it decodes
/// and `accept` takes it, else a new one from the system's random source, stored.
/// `what` names it in errors.
pub fn stored_secret(
    state: &State,
    meta_key: &str,
    what: &str,
    accept: fn(&[u8]) -> bool,
) -> Result<Vec<u8>, DaemonError> {
    if let Some(hex) = state.meta(meta_key)? {
        if let Some(key) = from_hex(&hex).filter(|k| accept(k)) {
            return Ok(key);
        }
    }
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))
        .map_err(|e| DaemonError::Setup(format!("cannot read /dev/urandom for {what}: {e}")))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    state.commit(crate::store::state::Batch {
        meta: vec![(meta_key.to_string(), hex)],
        ..Default::default()
    })?;
    Ok(key.to_vec())
}

/// The bounce key if one was made, else none (an empty key, which verifies no token
/// imipd signed): for a dry run, which must not write one.
pub fn existing_bounce_key(state: &State) -> Result<Vec<u8>, DaemonError> {
    Ok(state
        .meta(BOUNCE_KEY)?
        .and_then(|hex| from_hex(&hex))
        .unwrap_or_default())
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
