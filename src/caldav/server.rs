//! The front's listener: every request passed through to Radicale, every answer passed
//! back with the scheduling announcement; saves of objects go through the 412 rule.

use super::announce::announce;
use super::listing::etags;
use super::paths::{object_key, prefix};
use super::stale_save::{current_version, judge, StaleSave};
use super::upstream::{strip_hop_by_hop, Forward, Upstream, UpstreamError};
use crate::config::CaldavSection;
use crate::store::layout::Store;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Gives the current store (it is replaced when the user map is reloaded).
pub type StoreSource = Arc<dyn Fn() -> Arc<Store> + Send + Sync>;

/// What the handler needs.
struct Front {
    upstream: Upstream,
    store: StoreSource,
    max_body: usize,
    /// One save per object at a time through the front, so the version a save wrote is
    /// read back before another save of it starts.
    saving: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Binds the front's address; an error names it and what to check.
pub async fn bind(section: &CaldavSection) -> Result<TcpListener, String> {
    TcpListener::bind(section.listen).await.map_err(|e| {
        format!(
            "caldav.listen: cannot listen on {}: {e} (another program there, or a privileged port?)",
            section.listen
        )
    })
}

/// Serves the front on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    section: &CaldavSection,
    store: StoreSource,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let authority = section
        .upstream_authority()
        .map_err(|e| format!("caldav.upstream: {e}"))?;
    let front = Arc::new(Front {
        upstream: Upstream::new(authority),
        store,
        max_body: section.max_body,
        saving: Mutex::new(HashMap::new()),
    });
    let app = Router::new().fallback(handle).with_state(front);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("the CalDAV front stopped: {e}"))
}

async fn handle(State(front): State<Arc<Front>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, front.max_body).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body over caldav.max_body\n",
        )
            .into_response();
    };
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    let forward = Forward {
        method: parts.method,
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
        headers,
        body,
    };
    let store = (front.store)();
    let path = parts.uri.path();
    let answer = if forward.method == Method::PUT {
        match object_key(&store, path) {
            Some(key) => front.save(&key, &forward).await.map(to_client),
            None => front.upstream.send(&forward).await.map(to_client),
        }
    } else if is_listing(&forward.method) || forward.method == Method::GET {
        front.listing(prefix(&store, path), &forward).await
    } else {
        front.upstream.send(&forward).await.map(to_client)
    };
    match answer {
        Ok(response) => response,
        Err(err) => {
            tracing::warn!(error = %err, method = %forward.method, path = %parts.uri.path(), "CalDAV request not passed on");
            (StatusCode::BAD_GATEWAY, format!("{err}\n")).into_response()
        }
    }
}

/// PROPFIND and REPORT: the requests whose answers list objects with their ETags.
fn is_listing(method: &Method) -> bool {
    matches!(method.as_str(), "PROPFIND" | "REPORT")
}

/// Radicale's answer as the client gets it: announced, body streaming.
fn to_client(response: hyper::Response<Incoming>) -> Response {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    announce(&mut parts.headers);
    Response::from_parts(parts, Body::new(body))
}

impl Front {
    fn save_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut saving = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        saving.retain(|_, lock| Arc::strong_count(lock) > 1);
        saving.entry(key.to_string()).or_default().clone()
    }

    /// Reads the content hash of `key` now, off the async threads (it takes the lock
    /// Radicale takes).
    async fn version(&self, key: &str) -> Option<String> {
        let (store, key) = ((self.store)(), key.to_string());
        tokio::task::spawn_blocking(move || current_version(&store, &key))
            .await
            .ok()
            .flatten()
    }

    /// A listing (PROPFIND, REPORT) or GET of `prefix`: passed on; the ETags it gives for
    /// objects imipd recently wrote are remembered with their content, so that a client
    /// that saves on a version it synced (not one it saved) is judged by the 412 rule
    /// too. Each such file is hashed before and after the request; only an ETag whose
    /// file did not change meanwhile is taken. Other listings stream through untouched.
    async fn listing(
        &self,
        prefix: Option<String>,
        forward: &Forward,
    ) -> Result<Response, UpstreamError> {
        let store = (self.store)();
        let candidates = prefix
            .map(|p| store.provenance().recent_keys_under(&p))
            .unwrap_or_default();
        tracing::debug!(method = %forward.method, path = %forward.path_and_query, ?candidates, "listing");
        if candidates.is_empty() {
            return self.upstream.send(forward).await.map(to_client);
        }
        let before = self.versions(&candidates).await;
        // Read here, so asked for uncompressed (Radicale gzips for clients that accept
        // it, Thunderbird among them).
        let mut plain = forward.clone();
        plain.headers.remove(header::ACCEPT_ENCODING);
        let response = self.upstream.send(&plain).await?;
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(source) => {
                return Err(UpstreamError::Http {
                    authority: self.upstream.authority().to_string(),
                    source,
                })
            }
        };
        let after = self.versions(&candidates).await;
        let mut listed = std::str::from_utf8(&body).map(etags).unwrap_or_default();
        if let (false, Some(etag)) = (is_listing(&forward.method), parts.headers.get(header::ETAG))
        {
            // A GET of one object: its ETag is in the header.
            let path = forward.path_and_query.split('?').next().unwrap_or("/");
            if let Ok(etag) = etag.to_str() {
                listed.push((path.to_string(), etag.to_string()));
            }
        }
        for (path, etag) in listed {
            let Some(key) = object_key(&store, &path) else {
                continue;
            };
            tracing::debug!(object = %key, %etag, before = ?before.get(&key), after = ?after.get(&key), "listed");
            match (before.get(&key), after.get(&key)) {
                (Some(Some(was)), Some(Some(is))) if was == is => {
                    store.provenance().record_etag(&key, &etag, is);
                }
                // It changed while Radicale listed it (imipd wrote meanwhile): the
                // client may hold the new version's ETag; learn it now.
                // A failure here only means the ETag stays unknown: the client's own
                // listing is answered all the same.
                (Some(_), Some(Some(_))) => {
                    let _ = self.current_etag(&key, &path, forward, None).await;
                }
                _ => {}
            }
        }
        let mut parts = parts;
        strip_hop_by_hop(&mut parts.headers);
        announce(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::from(body)))
    }

    /// The ETag Radicale gives object `key` (at `path`) now, read between two looks at
    /// the file: only if both looks agree (and match `expected`, when given) is the ETag
    /// that version's; it is then remembered with it. The client's credentials are used.
    async fn current_etag(
        &self,
        key: &str,
        path: &str,
        forward: &Forward,
        expected: Option<&str>,
    ) -> Result<Option<String>, UpstreamError> {
        let Some(before) = self.version(key).await else {
            return Ok(None);
        };
        if expected.is_some_and(|e| e != before) {
            return Ok(None);
        }
        let mut headers = forward.headers.clone();
        for name in [
            "if-match",
            "if-none-match",
            "content-type",
            "content-length",
            "depth",
        ] {
            headers.remove(name);
        }
        let fetch = Forward {
            method: Method::GET,
            path_and_query: path.to_string(),
            headers,
            body: Default::default(),
        };
        let fetched = self.upstream.send(&fetch).await?;
        let etag = etag_of(&fetched).filter(|_| fetched.status() == StatusCode::OK);
        drop(fetched);
        let (Some(etag), Some(after)) = (etag, self.version(key).await) else {
            return Ok(None);
        };
        if after != before {
            return Ok(None);
        }
        (self.store)().provenance().record_etag(key, &etag, &after);
        Ok(Some(etag))
    }

    /// The content hashes of `keys` now.
    async fn versions(&self, keys: &[String]) -> HashMap<String, Option<String>> {
        let (store, keys) = ((self.store)(), keys.to_vec());
        tokio::task::spawn_blocking(move || {
            keys.into_iter()
                .map(|k| {
                    let v = current_version(&store, &k);
                    (k, v)
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    /// A client's save of object `key`: passed on; a 412 over imipd's bookkeeping
    /// alone is sent again against the current version; what the save wrote is
    /// remembered with its ETag.
    async fn save(
        &self,
        key: &str,
        forward: &Forward,
    ) -> Result<hyper::Response<Incoming>, UpstreamError> {
        let lock = self.save_lock(key);
        let _one_at_a_time = lock.lock().await;
        let mut response = self.upstream.send(forward).await?;
        if response.status() == StatusCode::PRECONDITION_FAILED {
            if let Some(retried) = self.retry_stale_save(key, forward).await? {
                response = retried;
            }
        }
        if response.status().is_success() {
            let store = (self.store)();
            if let Some(written) = self.version(key).await {
                // If imipd already recorded its bookkeeping over it, the client's
                // version is the one before.
                let client_version = store.provenance().before_bookkeeping(key, &written);
                store.provenance().record_client_write(key, &client_version);
                if let Some(etag) = etag_of(&response) {
                    store.provenance().record_etag(key, &etag, &client_version);
                }
            }
        }
        Ok(response)
    }

    /// The 412 rule ([`super::stale_save`]): `Some` answer when the save was sent again.
    async fn retry_stale_save(
        &self,
        key: &str,
        forward: &Forward,
    ) -> Result<Option<hyper::Response<Incoming>>, UpstreamError> {
        let Some(stale) = forward
            .headers
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
        else {
            return Ok(None);
        };
        let Some(current) = self.version(key).await else {
            return Ok(None);
        };
        let store = (self.store)();
        match judge(store.provenance(), key, &stale, &current) {
            StaleSave::PassOn => {}
            verdict => {
                tracing::info!(
                    object = key,
                    ?verdict,
                    if_match = %stale,
                    on_disk = %current,
                    "a client's save on an older version keeps its 412"
                );
                return Ok(None);
            }
        }
        let path = forward.path_and_query.split('?').next().unwrap_or("/");
        let Some(etag) = self
            .current_etag(key, path, forward, Some(&current))
            .await?
        else {
            tracing::info!(
                object = key,
                "the object changed while a stale save was checked; its 412 stands"
            );
            return Ok(None);
        };
        let Ok(value) = HeaderValue::from_str(&etag) else {
            return Ok(None);
        };
        let mut retry = forward.clone();
        retry.headers.insert(header::IF_MATCH, value);
        tracing::info!(
            object = key,
            "a client saved on a version imipd had only annotated (answers, delivery status): \
             passed on without a conflict; imipd puts its annotations back"
        );
        Ok(Some(self.upstream.send(&retry).await?))
    }
}

fn etag_of<B>(response: &hyper::Response<B>) -> Option<String> {
    response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
