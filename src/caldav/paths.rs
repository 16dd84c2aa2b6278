//! Which store object a CalDAV request path names.
//!
//! Radicale serves `<users>/<user>/<calendar>/<item>.ics` as
//! `/<user>/<calendar>/<item>.ics`, each segment percent-encoded. Only paths that name
//! an object of a configured user map to a key; everything else (principals,
//! collections, other users' folders) is passed through without one.

use crate::store::layout::Store;
use percent_encoding::percent_decode_str;

/// The object key (`alice/work/ev.ics`) of a request path, if it names one.
pub fn object_key(store: &Store, path: &str) -> Option<String> {
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        })
        .collect::<Option<_>>()?;
    if segments.len() != 3
        || segments
            .iter()
            .any(|s| s.is_empty() || s == "." || s == ".." || s.contains(['/', '\0']))
    {
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
    }
}
