//! Which store object a CalDAV request path names.
//!
//! Radicale serves `<users>/<user>/<calendar>/<item>.ics` as
//! `/<user>/<calendar>/<item>.ics`, each segment percent-encoded. Only paths that name
//! an object of a configured user map to a key; everything else (principals,
//! collections, other users' folders) is passed through without one.

use crate::store::layout::Store;
use percent_encoding::percent_decode_str;

/// The store prefix a request path covers: `alice/work/` for a calendar, the key for
/// an object, `alice/` for a user's home. `None` outside configured users.
pub fn prefix(store: &Store, path: &str) -> Option<String> {
    let segments = segments(path)?;
    let user = store.user(segments.first()?)?;
    match segments.len() {
        1 => Some(format!("{}/", user.name)),
        2 => Some(format!("{}/{}/", user.name, segments[1])),
        3 => object_key(store, path),
        _ => None,
    }
}

/// The decoded, non-empty segments of a path; `None` if one is unsafe.
fn segments(path: &str) -> Option<Vec<String>> {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        })
        .collect::<Option<_>>()?;
    if segments.iter().any(|s| {
        s.is_empty() || s == "." || s == ".." || s.contains(['/', '\0']) || s.starts_with('.')
    }) {
        return None;
    }
    Some(segments)
}

/// The object key (`alice/work/ev.ics`) of a request path, if it names one (a path
/// ending in `/` names a collection).
pub fn object_key(store: &Store, path: &str) -> Option<String> {
    if path.ends_with('/') {
        return None;
    }
    let segments = segments(path)?;
    if segments.len() != 3 {
        return None;
    }
    store.key_for(&store.users_root().join(segments.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Layout;
    use crate::store::layout::test_store;
    use std::path::Path;

    #[test]
    fn object_paths_map_to_keys_and_nothing_else_does() {
        let store = test_store(Path::new("/srv/radicale"), Layout::Radicale, 1000);
        let key = |p| object_key(&store, p);
        assert_eq!(
            key("/alice/0f2e9c1a-uuid/ev%201.ics").as_deref(),
            Some("alice/0f2e9c1a-uuid/ev 1.ics")
        );
        assert_eq!(key("/alice/cal/"), None);
        assert_eq!(key("/alice/"), None);
        assert_eq!(key("/bob/cal/ev.ics"), None, "not a configured user");
        assert_eq!(key("/alice/../alice/ev.ics"), None);
        assert_eq!(key("/alice/cal/%2e%2e"), None);
        assert_eq!(key("/alice/cal%2Fx/ev.ics"), None, "an encoded slash");
        assert_eq!(key("/alice/.Radicale.cache/ev.ics"), None);
        let prefix = |p| prefix(&store, p);
        assert_eq!(prefix("/alice/0f2e/").as_deref(), Some("alice/0f2e/"));
        assert_eq!(prefix("/alice/").as_deref(), Some("alice/"));
        assert_eq!(
            prefix("/alice/0f2e/ev.ics").as_deref(),
            Some("alice/0f2e/ev.ics")
        );
        assert_eq!(prefix("/bob/"), None);
        assert_eq!(prefix("/"), None);
    }
}
