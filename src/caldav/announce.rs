//! The DAV header of a calendar server that schedules (RFC 6638 §2).

use axum::http::{header::HeaderName, HeaderMap, HeaderValue};

/// The DAV compliance class a scheduling server announces.
pub const AUTO_SCHEDULE: &str = "calendar-auto-schedule";

/// The `DAV` response header.
pub static DAV: HeaderName = HeaderName::from_static("dav");

/// Adds `calendar-auto-schedule` to the DAV header of a calendar server's answer
/// (one that lists `calendar-access`), unless it is there already. Other answers are
/// left as they are: an address book or a plain WebDAV folder schedules nothing.
pub fn announce(headers: &mut HeaderMap) {
    let classes = super::headers::header_items(headers, &DAV);
    let has = |name: &str| classes.iter().any(|c| c.eq_ignore_ascii_case(name));
    if !has("calendar-access") || has(AUTO_SCHEDULE) {
        return;
    }
    let mut joined = classes.join(", ");
    joined.push_str(", ");
    joined.push_str(AUTO_SCHEDULE);
    if let Ok(value) = HeaderValue::from_str(&joined) {
        headers.remove(&DAV);
        headers.insert(DAV.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dav(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(DAV.clone(), HeaderValue::from_str(v).expect("value"));
        }
        headers
    }

    fn joined(headers: &HeaderMap) -> Vec<String> {
        headers
            .get_all(&DAV)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_string())
            .collect()
    }

    #[test]
    fn radicale_calendar_answers_gain_the_announcement() {
        // Radicale 3.9's header, as Thunderbird reads it.
        let mut h = dav(&["1, 2, 3, calendar-access, addressbook, extended-mkcol"]);
        announce(&mut h);
        assert_eq!(
            joined(&h),
            ["1, 2, 3, calendar-access, addressbook, extended-mkcol, calendar-auto-schedule"]
        );
    }

    #[test]
    fn split_headers_are_read_together_and_nothing_is_said_twice() {
        let mut h = dav(&["1, 2", "calendar-access"]);
        announce(&mut h);
        assert_eq!(
            joined(&h),
            ["1, 2, calendar-access, calendar-auto-schedule"]
        );
        let mut again = h.clone();
        announce(&mut again);
        assert_eq!(joined(&again), joined(&h));
    }

    #[test]
    fn answers_without_calendar_access_are_left_alone() {
        for values in [vec![], vec!["1, 2, addressbook"]] {
            let mut h = dav(&values);
            let before = joined(&h);
            announce(&mut h);
            assert_eq!(joined(&h), before);
        }
    }
}
