//! What kind of collection a folder is, read from Radicale's `.Radicale.props`: a
//! calendar or an address book, and which components a calendar takes. One reader for
//! the store's listing (`layout`) and the invitation calendar rule (`calendars`);
//! a folder without props (vdir, or made by hand) is a calendar that takes everything.

use std::path::Path;

/// A collection's `.Radicale.props` (JSON); `None` for a folder without readable props
/// (a vdir folder, or a Radicale folder made by hand), which counts as a calendar that
/// takes everything.
fn props(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join(".Radicale.props")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Radicale records a collection's type as `"tag"`: `VCALENDAR` or `VADDRESSBOOK`.
fn tagged_calendar(props: &serde_json::Value) -> bool {
    props
        .get("tag")
        .and_then(|t| t.as_str())
        .is_none_or(|tag| tag.eq_ignore_ascii_case("VCALENDAR"))
}

/// Whether the collection at `dir` is a calendar (not an address book): the one test
/// of the store's listing (`Store::calendar_dirs`) and of [`takes`].
pub fn is_calendar(dir: &Path) -> bool {
    props(dir).is_none_or(|p| tagged_calendar(&p))
}

/// Whether the collection at `dir` is a calendar that takes `component` (`VEVENT`,
/// `VTODO`, `VJOURNAL`).
pub fn takes(dir: &Path, component: &str) -> bool {
    let Some(props) = props(dir) else {
        return true;
    };
    let components = props
        .get("C:supported-calendar-component-set")
        .and_then(|c| c.as_str());
    tagged_calendar(&props)
        && components.is_none_or(|set| {
            set.split(',')
                .any(|c| c.trim().eq_ignore_ascii_case(component))
        })
}
