//! The 412 rule: a client's save on a version that imipd has since changed only for
//! its bookkeeping is not a conflict.
//!
//! RFC 6638 §3.2.10 gives servers the Schedule-Tag for this: it changes only when a
//! change matters to the attendee or organizer, not when the server records answers or
//! delivery status, and a client that saves with `If-Schedule-Tag-Match` gets its save
//! merged. Thunderbird 153 sends no `If-Schedule-Tag-Match` and reads no Schedule-Tag
//! (its CalDAV code has neither), only `If-Match` with the ETag. So the front applies
//! the same rule to ETags: when Radicale refuses a save with 412 and every write between
//! the version the client had and the version on disk was one of imipd's bookkeeping
//! writes ([`crate::store::provenance`]), the save is sent again against the current
//! version. The client's body lacks imipd's bookkeeping; imipd sees the save as a stale
//! save and merges its answers back, as it does for any client.
//!
//! The rule needs to know which content the client's ETag stood for: the front records
//! the ETag of every save it passes, with the content hash of the file that save wrote.
//! An ETag it never saw (a restart, a client that fetched the object some other way)
//! keeps its 412, as does any save over a version a person wrote.

use crate::store::layout::Store;
use crate::store::provenance::Provenance;
use crate::store::state::content_hash;

/// What the front does with a save Radicale refused with 412.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleSave {
    /// Every write since the client's version was imipd's bookkeeping: send it again
    /// against the current version.
    PassOn,
    /// The client's ETag was never seen by the front: the 412 stands.
    UnknownVersion,
    /// Something other than imipd's bookkeeping changed the object: the 412 stands.
    ChangedByOthers,
}

/// Decides about a save with `If-Match: stale_etag` over the version `current` (content
/// hash of the file now) of object `key`.
pub fn judge(provenance: &Provenance, key: &str, stale_etag: &str, current: &str) -> StaleSave {
    // Radicale's ETag of a version it wrote itself (a client's save) is the SHA-256 of
    // the file, the same hash imipd keeps; a version imipd wrote is known only by the
    // ETags the front saw for it.
    let Some(base) = provenance
        .version_of_etag(key, stale_etag)
        .or_else(|| radicale_content_hash(stale_etag))
    else {
        return StaleSave::UnknownVersion;
    };
    if provenance.only_bookkeeping_between(key, &base, current) {
        StaleSave::PassOn
    } else {
        StaleSave::ChangedByOthers
    }
}

/// The content hash an ETag of Radicale's names, when it has the form Radicale gives
/// the versions it writes itself: `"<sha256 of the file, hex>"`.
fn radicale_content_hash(etag: &str) -> Option<String> {
    let hex = etag.strip_prefix('"')?.strip_suffix('"')?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// The content hash of `key`'s file now, read under the store's lock, so it is never
/// taken in the middle of one of imipd's writes. `None`: no such file, or unreadable.
pub fn current_version(store: &Store, key: &str) -> Option<String> {
    let _lock = store.lock().ok()?;
    std::fs::read(store.path_for(key))
        .ok()
        .map(|bytes| content_hash(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_save_behind_imipds_bookkeeping_is_passed_on() {
        let p = Provenance::default();
        p.record_etag("alice/cal/ev.ics", "\"e1\"", "h1");
        assert_eq!(
            judge(&p, "alice/cal/ev.ics", "\"e1\"", "h2"),
            StaleSave::ChangedByOthers,
            "h2 was written by someone else"
        );
        p.record_bookkeeping("alice/cal/ev.ics", "h1", "h2");
        assert_eq!(
            judge(&p, "alice/cal/ev.ics", "\"e1\"", "h2"),
            StaleSave::PassOn
        );
        assert_eq!(
            judge(&p, "alice/cal/ev.ics", "\"e0\"", "h2"),
            StaleSave::UnknownVersion
        );
        // An ETag never seen, in Radicale's own form for a version it wrote: the hash.
        let h0 = "0".repeat(64);
        p.record_bookkeeping("alice/cal/ev.ics", &h0, "h4");
        assert_eq!(
            judge(&p, "alice/cal/ev.ics", &format!("\"{h0}\""), "h4"),
            StaleSave::PassOn
        );
        assert_eq!(
            judge(
                &p,
                "alice/cal/ev.ics",
                &format!("\"{}\"", "1".repeat(64)),
                "h4"
            ),
            StaleSave::ChangedByOthers
        );
        // Another client saved over imipd's write: a real conflict again.
        assert_eq!(
            judge(&p, "alice/cal/ev.ics", "\"e1\"", "h3"),
            StaleSave::ChangedByOthers
        );
    }
}
