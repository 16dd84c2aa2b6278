//! One HTTP/1 request to the upstream CalDAV server (Radicale), over a fresh loopback
//! connection: simple, and cheap next to what Radicale does per request.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::TcpStream;

/// The upstream could not be asked.
#[derive(Debug, Error)]
pub enum UpstreamError {
    /// No connection (Radicale down, wrong address).
    #[error("cannot connect to the CalDAV server at {authority}: {source} (is Radicale running there? see [caldav] upstream)")]
    Connect {
        /// `host:port`.
        authority: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("the CalDAV server at {authority} did not answer: {source}")]
    Http {
        /// `host:port`.
        authority: String,
        /// hyper's error.
        source: hyper::Error,
    },
}

/// Headers that belong to one connection and are not passed on (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop headers, and those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = super::headers::header_items(headers, &header::CONNECTION)
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

/// The upstream server.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port`.
    authority: String,
}

/// A request to send upstream: everything needed to send it again (a stale save is
/// retried with another `If-Match`).
#[derive(Debug, Clone)]
pub struct Forward {
    /// The method.
    pub method: Method,
    /// Path and query, as the client sent them.
    pub path_and_query: String,
    /// The client's headers, hop-by-hop ones removed.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Upstream {
    /// The server at `authority` (`host:port`).
    pub fn new(authority: String) -> Self {
        Upstream { authority }
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Sends `forward` and returns the answer, its body still streaming.
    pub async fn send(&self, forward: &Forward) -> Result<Response<Incoming>, UpstreamError> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|source| UpstreamError::Connect {
                authority: self.authority.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let http = |source| UpstreamError::Http {
            authority: self.authority.clone(),
            source,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(async move {
            // Ends when the answer has been read or the client went away.
            let _ = connection.await;
        });
        let uri: Uri = forward
            .path_and_query
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
        let mut request = Request::builder()
            .method(forward.method.clone())
            .uri(uri)
            .body(Full::new(forward.body.clone()))
            .expect("method, origin-form URI and body make a request");
        *request.headers_mut() = forward.headers.clone();
        if !request.headers().contains_key(header::HOST) {
            if let Ok(host) = HeaderValue::from_str(&self.authority) {
                request.headers_mut().insert(header::HOST, host);
            }
        }
        sender.send_request(request).await.map_err(http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_headers_are_not_passed_on() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("authorization", HeaderValue::from_static("Basic YTpi"));
        h.insert("if-match", HeaderValue::from_static("\"e1\""));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["authorization", "if-match"]);
    }
}
