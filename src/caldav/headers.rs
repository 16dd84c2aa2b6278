//! Reading HTTP list headers (`DAV`, `Connection`): one reader for the announcement
//! and the hop-by-hop filter, so both split the lists the same way.

use axum::http::{header::HeaderName, HeaderMap};

/// The comma-separated items of every `name` header (a list header such as `DAV` or
/// `Connection`), trimmed, empty ones left out.
pub fn header_items(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}
