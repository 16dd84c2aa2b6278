//! The RSVP web listener (`[web]`): the page behind the Accept/Maybe/Decline links of
//! an invitation, and the POST that answers.
//!
//! GET never changes anything: link scanners (Microsoft Safe Links and others) fetch
//! every URL in a mail, so a GET only shows the page with the pressed answer
//! pre-selected. Only the form's POST answers, and it answers exactly as the attendee's
//! own REPLY would: the REPLY is built ([`rsvp::reply_for`]) and applied with the same
//! [`Applier`] as an incoming REPLY, under the same per-user lock, with the attendee as
//! the authenticated sender (the signed token is the authentication). No cookies, no
//! sessions, no JavaScript, no external resources; every response carries a strict
//! Content-Security-Policy; requests are limited in size and rate (per link and per
//! client). The listener is meant to sit behind the admin's reverse proxy.

use super::metrics::metrics;
use super::shared::{now, DaemonError, Shared};
use crate::config::{Config, WebSection};
use crate::imip::rsvp::{self, Answer, LinkSettings, RsvpToken};
use crate::imip::rsvp_page::{self, EventView, Page, Problem, MAX_COMMENT_CHARS};
use crate::imip::Language;
use crate::itip::{CalAddress, InboundAction};
use crate::store::apply::{Applier, ApplyError};
use crate::store::layout::Store;
use crate::store::state::State;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use calcard::icalendar::ICalendar;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Largest request body taken (the form has an answer and a short comment).
const MAX_BODY: usize = 8 * 1024;
/// Requests per link per minute.
const PER_TOKEN_PER_MINUTE: u32 = 20;
/// Requests per client address per minute.
const PER_CLIENT_PER_MINUTE: u32 = 60;
/// The Content-Security-Policy of every page: nothing but the page itself and its
/// inline style; forms post only back to this site.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// The key that signs RSVP tokens: made once from the system's random source and kept
/// in the state, so links in mail already sent stay valid across restarts.
pub fn signing_key(state: &State) -> Result<Vec<u8>, DaemonError> {
    super::settings::stored_secret(state, "rsvp_key", "the RSVP key", |k| k.len() == 32)
}

/// The link settings for the queue, when `[web]` is configured.
pub fn link_settings(config: &Config, state: &State) -> Result<Option<LinkSettings>, DaemonError> {
    let Some(web) = &config.web else {
        return Ok(None);
    };
    Ok(Some(LinkSettings {
        public_url: web.public_url.trim_end_matches('/').to_string(),
        key: signing_key(state)?,
        max_lifetime: i64::try_from(web.max_link_days.saturating_mul(86_400)).unwrap_or(i64::MAX),
    }))
}

/// What a POST did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// The answer is now in the organizer's copy (`changed` false: it already was).
    Done {
        /// The event after the answer.
        event: EventView,
        /// Whether the organizer's copy changed.
        changed: bool,
    },
    /// Nothing was applied, and why.
    Refused(Problem),
}

/// Reads the organizer's copy named by a verified token.
fn stored_copy(store: &Store, state: &State, token: &RsvpToken) -> Result<ICalendar, Problem> {
    let user = store.user(&token.user).ok_or(Problem::Gone)?;
    let key = state
        .find_uid(&user.name, &token.uid)
        .map_err(|_| Problem::Busy)?
        .ok_or(Problem::Gone)?;
    let (_, text) = store
        .read(&key)
        .map_err(|_| Problem::Gone)?
        .ok_or(Problem::Gone)?;
    ICalendar::parse(&text).map_err(|_| Problem::Busy)
}

/// What the GET page shows for a verified token.
pub fn view(
    store: &Store,
    state: &State,
    token: &RsvpToken,
    language: Language,
) -> Result<EventView, Problem> {
    let stored = stored_copy(store, state, token)?;
    let attendee = CalAddress::parse(&token.attendee).ok_or(Problem::Malformed)?;
    rsvp_page::event_view(&stored, &attendee, language).map_err(|_| Problem::Busy)?
}

/// Applies `answer` from the token's attendee to the organizer's copy, as that
/// attendee's REPLY would be applied. The caller holds the user's store lock.
pub fn answer(
    applier: &Applier<'_>,
    token: &RsvpToken,
    answer: Answer,
    comment: Option<&str>,
    language: Language,
    now: i64,
) -> Result<Answered, ApplyError> {
    let (store, state) = (applier.store, applier.state);
    let refused = |p| Ok(Answered::Refused(p));
    let stored = match stored_copy(store, state, token) {
        Ok(stored) => stored,
        Err(problem) => return refused(problem),
    };
    let Some(attendee) = CalAddress::parse(&token.attendee) else {
        return refused(Problem::Malformed);
    };
    match rsvp_page::event_view(&stored, &attendee, language) {
        Ok(Ok(_)) => {}
        Ok(Err(problem)) => return refused(problem),
        Err(_) => return refused(Problem::Busy),
    }
    let Some(user) = store.user(&token.user) else {
        return refused(Problem::Gone);
    };
    let Some(reply) = rsvp::reply_for(&stored, &attendee, answer, comment, now) else {
        return refused(Problem::Removed);
    };
    // The token is the attendee's authentication; a REPLY never imports.
    let applied = applier.apply(user, &reply, &attendee, now, false, None)?;
    let event = match view(store, state, token, language) {
        Ok(event) => event,
        Err(problem) => return refused(problem),
    };
    Ok(Answered::Done {
        event,
        changed: applied.action != InboundAction::Unchanged,
    })
}

/// Counts requests per key in one-minute windows.
#[derive(Default)]
struct Limiter {
    /// key → (minute, requests in that minute).
    hits: Mutex<HashMap<String, (i64, u32)>>,
}

impl Limiter {
    /// Whether one more request for `key` at `now` is within `limit` per minute.
    fn allow(&self, key: &str, limit: u32, now: i64) -> bool {
        let minute = now.div_euclid(60);
        let mut hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        if hits.len() > 100_000 {
            hits.retain(|_, (m, _)| *m == minute);
        }
        let entry = hits.entry(key.to_string()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        entry.1 <= limit
    }
}

/// What the handlers share.
struct Web {
    shared: Arc<Shared>,
    key: Vec<u8>,
    limits: Limiter,
}

impl Web {
    fn language(
        &self,
        headers: &HeaderMap,
        stored: Option<&ICalendar>,
        who: Option<&CalAddress>,
    ) -> Language {
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        let default = self
            .shared
            .config()
            .mail
            .default_language
            .as_deref()
            .and_then(Language::from_tag)
            .unwrap_or_default();
        rsvp_page::page_language(stored, who, accept, default)
    }

    /// Checks the rate limits and the token. Behind the reverse proxy on loopback the
    /// client is the last address the proxy put into `X-Forwarded-For`.
    fn admit(&self, token: &str, peer: IpAddr, headers: &HeaderMap) -> Result<RsvpToken, Problem> {
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        let client = match forwarded {
            Some(forwarded) if peer.is_loopback() => forwarded,
            _ => peer,
        };
        let now = now();
        if !self
            .limits
            .allow(&format!("client {client}"), PER_CLIENT_PER_MINUTE, now)
            || !self
                .limits
                .allow(&format!("token {token}"), PER_TOKEN_PER_MINUTE, now)
        {
            return Err(Problem::Limited);
        }
        Ok(RsvpToken::verify(token, &self.key, now)?)
    }
}

/// A page with the headers every response carries.
fn page(status: u16, html: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn render(p: &Page, language: Language) -> Response {
    let status = match p {
        Page::Problem(problem) => problem.status(),
        _ => 200,
    };
    match rsvp_page::render_page(p, language) {
        Ok(html) => page(status, html),
        Err(err) => {
            tracing::error!(%err, "cannot render the RSVP page");
            page(
                500,
                "<!DOCTYPE html><title>Error</title><p>Internal error.</p>".into(),
            )
        }
    }
}

/// `?answer=` of a link.
#[derive(Debug, Deserialize)]
struct LinkQuery {
    answer: Option<String>,
}

/// The posted form.
#[derive(Debug, Deserialize)]
struct AnswerForm {
    answer: Option<String>,
    comment: Option<String>,
}

async fn show(
    AxumState(web): AxumState<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    query: Result<Query<LinkQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let token = match web.admit(&token, peer.ip(), &headers) {
        Ok(token) => token,
        Err(problem) => return render(&Page::Problem(problem), web.language(&headers, None, None)),
    };
    let chosen = query
        .ok()
        .and_then(|Query(q)| q.answer)
        .and_then(|a| Answer::from_key(&a));
    let web2 = web.clone();
    let shown = tokio::task::spawn_blocking(move || {
        let store = web2.shared.store();
        let attendee = CalAddress::parse(&token.attendee);
        let stored = stored_copy(&store, &web2.shared.state, &token).ok();
        let language = web2.language(&headers, stored.as_ref(), attendee.as_ref());
        let page = match view(&store, &web2.shared.state, &token, language) {
            Ok(event) => Page::Form { event, chosen },
            Err(problem) => Page::Problem(problem),
        };
        (page, language)
    })
    .await;
    match shown {
        Ok((p, language)) => render(&p, language),
        Err(_) => render(&Page::Problem(Problem::Busy), Language::En),
    }
}

async fn submit(
    AxumState(web): AxumState<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
    form: Result<Form<AnswerForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let token = match web.admit(&token, peer.ip(), &headers) {
        Ok(token) => token,
        Err(problem) => return render(&Page::Problem(problem), web.language(&headers, None, None)),
    };
    let (chosen, comment) = match form {
        Ok(Form(form)) => (
            form.answer.as_deref().and_then(Answer::from_key),
            form.comment,
        ),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let language = web.language(&headers, None, None);
            return render(&Page::Problem(Problem::TooLarge), language);
        }
        Err(_) => (None, None),
    };
    let too_long = comment
        .as_deref()
        .is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS);
    let Some(chosen) = chosen.filter(|_| !too_long) else {
        return render(
            &Page::Problem(Problem::Form),
            web.language(&headers, None, None),
        );
    };
    let web2 = web.clone();
    let answered = tokio::task::spawn_blocking(move || {
        let shared = &web2.shared;
        let store = shared.store();
        let config = shared.config();
        let attendee = CalAddress::parse(&token.attendee);
        let stored = stored_copy(&store, &shared.state, &token).ok();
        let language = web2.language(&headers, stored.as_ref(), attendee.as_ref());
        let result = shared.with_user_lock(&token.user, || {
            let applier = Applier {
                store: &store,
                state: &shared.state,
                reply_details: config.reply_details(),
            };
            answer(
                &applier,
                &token,
                chosen,
                comment.as_deref(),
                language,
                now(),
            )
        });
        log_answer(&token, chosen, &result);
        (result, language)
    })
    .await;
    let (result, language) = match answered {
        Ok(answered) => answered,
        Err(_) => return render(&Page::Problem(Problem::Busy), Language::En),
    };
    let p = match result {
        Ok(Answered::Done { event, changed }) => Page::Done {
            event,
            answer: chosen,
            changed,
        },
        Ok(Answered::Refused(problem)) => Page::Problem(problem),
        Err(err) if err.is_temporary() => Page::Problem(Problem::Busy),
        Err(_) => Page::Problem(Problem::Gone),
    };
    render(&p, language)
}

/// The decision log line and counter of an answer, like those of an incoming REPLY.
fn log_answer(token: &RsvpToken, chosen: Answer, result: &Result<Answered, ApplyError>) {
    let (outcome, reason) = match result {
        Ok(Answered::Done { changed: true, .. }) => ("accepted", "rsvp-applied"),
        Ok(Answered::Done { changed: false, .. }) => ("accepted", "rsvp-unchanged"),
        Ok(Answered::Refused(_)) => ("rejected", "rsvp-refused"),
        Err(err) if err.is_temporary() => ("deferred", "busy"),
        Err(_) => ("rejected", "rsvp-refused"),
    };
    metrics().lmtp(outcome, reason);
    match result {
        Ok(Answered::Done { changed, .. }) => tracing::info!(
            via = "rsvp page", user = %token.user, uid = %token.uid, from = %token.attendee,
            answer = chosen.key(), changed, "incoming message"
        ),
        Ok(Answered::Refused(problem)) => tracing::warn!(
            via = "rsvp page", user = %token.user, uid = %token.uid, from = %token.attendee,
            ?problem, "incoming message not applied"
        ),
        Err(err) => tracing::warn!(
            via = "rsvp page", user = %token.user, uid = %token.uid, from = %token.attendee,
            %err, "incoming message not applied"
        ),
    }
}

async fn no_token(AxumState(web): AxumState<Arc<Web>>, headers: HeaderMap) -> Response {
    render(
        &Page::Problem(Problem::Malformed),
        web.language(&headers, None, None),
    )
}

async fn not_found(AxumState(web): AxumState<Arc<Web>>, headers: HeaderMap) -> Response {
    render(
        &Page::Problem(Problem::NotFound),
        web.language(&headers, None, None),
    )
}

/// Binds the listener of `[web] listen`.
pub async fn bind(section: &WebSection) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(section.listen).await.map_err(|e| {
        DaemonError::Setup(format!(
            "web.listen: cannot listen on {}: {e} (is another program using the port?)",
            section.listen
        ))
    })
}

/// Serves the RSVP page on `listener` until `stop` completes.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    key: Vec<u8>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let web = Arc::new(Web {
        shared,
        key,
        limits: Limiter::default(),
    });
    let app = Router::new()
        .route("/rsvp/{token}", get(show).post(submit))
        .route("/rsvp", get(no_token).post(no_token))
        .route("/rsvp/", get(no_token).post(no_token))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(web);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop)
    .await
    .map_err(|e| DaemonError::Setup(format!("web listener: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(web: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_text(
            &format!("[store]\nroot = \"/tmp\"\n[web]\n{web}"),
            std::path::Path::new("imipd.toml"),
        )
    }

    #[test]
    fn check_config_names_a_bad_public_url_or_listen_address() {
        let good =
            config("listen = \"127.0.0.1:8425\"\npublic_url = \"https://cal.example.com\"\n");
        assert_eq!(good.expect("valid").web.map(|w| w.max_link_days), Some(365));
        for bad in [
            "cal.example.com",
            "https://",
            "https://cal.example.com/?x=1",
            "ftp://x",
        ] {
            let err = config(&format!(
                "listen = \"127.0.0.1:8425\"\npublic_url = \"{bad}\"\n"
            ))
            .expect_err(bad)
            .to_string();
            assert!(err.contains("web.public_url"), "{bad}: {err}");
        }
        let err = config("listen = \"localhost\"\npublic_url = \"https://cal.example.com\"\n")
            .expect_err("no port")
            .to_string();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn the_limiter_counts_per_key_and_minute() {
        let limits = Limiter::default();
        assert!((0..3).all(|_| limits.allow("a", 3, 120)));
        assert!(!limits.allow("a", 3, 130));
        assert!(limits.allow("b", 3, 130));
        assert!(limits.allow("a", 3, 180));
    }
}
