//! The front's listener: every request passed through to Radicale, every answer passed
//! back with the scheduling announcement; saves of objects go through the 412 rule.

use super::announce::announce;
use super::paths::object_key;
use super::stale_save::{current_version, judge, StaleSave};
use super::upstream::{strip_hop_by_hop, Forward, Upstream, UpstreamError};
use crate::config::CaldavSection;
use crate::store::layout::Store;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
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
    let key = (forward.method == Method::PUT)
        .then(|| object_key(&(front.store)(), parts.uri.path()))
        .flatten();
    let answer = match key {
        Some(key) => front.save(&key, &forward).await,
        None => front.upstream.send(&forward).await,
    };
    match answer {
        Ok(response) => to_client(response),
        Err(err) => {
            tracing::warn!(error = %err, method = %forward.method, path = %parts.uri.path(), "CalDAV request not passed on");
            (StatusCode::BAD_GATEWAY, format!("{err}\n")).into_response()
        }
    }
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
                    "a client's save on an older version keeps its 412"
                );
                return Ok(None);
            }
        }
        // The current ETag, read between two looks at the file: if both looks agree,
        // the ETag is that version's.
        let fetch = Forward {
            method: Method::GET,
            headers: {
                let mut h = forward.headers.clone();
                for name in [
                    header::IF_MATCH,
                    header::IF_NONE_MATCH,
                    header::CONTENT_TYPE,
                    header::CONTENT_LENGTH,
                ] {
                    h.remove(name);
                }
                h
            },
            body: Default::default(),
            ..forward.clone()
        };
        let fetched = self.upstream.send(&fetch).await?;
        let etag = etag_of(&fetched).filter(|_| fetched.status() == StatusCode::OK);
        drop(fetched);
        let (Some(etag), Some(again)) = (etag, self.version(key).await) else {
            return Ok(None);
        };
        if again != current {
            tracing::info!(
                object = key,
                "the object changed while a stale save was checked; its 412 stands"
            );
            return Ok(None);
        }
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
