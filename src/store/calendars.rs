//! Which of a user's calendars receives a new invitation.
//!
//! Updates never need this: they go where the user's copy is. A new invitation (or
//! task) goes, in this order, to
//!
//! 1. the folder configured as `invitations` for the user, if it exists and takes the
//!    component;
//! 2. a calendar folder named `calendar` that takes the component (vdir stores and the
//!    calendars many clients create are named so);
//! 3. of the user's other calendars that take the component, the one created first (the
//!    folder's birth time, where the file system records it; its name otherwise), ties
//!    broken by name: Radicale's web UI and CalDAV clients name calendars with UUIDs, and
//!    the first one a user made is the one they think of as theirs;
//! 4. as a last resort, a new calendar `calendar` (the configured name, if one is set),
//!    made as Radicale makes one (with `.Radicale.props`) in a Radicale store.
//!
//! A calendar *takes* a component when it is a calendar collection (Radicale's
//! `.Radicale.props` tag `VCALENDAR`; vdir folders have no props and are calendars)
//! and its `C:supported-calendar-component-set`, when set, lists the component.
//! Address books and subscriptions are never chosen.

use super::collection::takes;
use super::layout::Store;
use crate::config::{Layout, User};
use calcard::icalendar::{ICalendar, ICalendarComponentType};
use std::path::Path;
use std::time::SystemTime;

/// The default name of a calendar imipd has to make.
pub const DEFAULT_CALENDAR: &str = "calendar";

/// Where a user's new invitations of one component go, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvitationCalendar {
    /// The configured folder.
    Configured(String),
    /// The calendar named `calendar`.
    Named(String),
    /// The first-made of the user's calendars that take the component.
    FirstMade(String),
    /// None takes it: this one will be made.
    ToMake(String),
}

impl InvitationCalendar {
    /// The folder name.
    pub fn folder(&self) -> &str {
        match self {
            InvitationCalendar::Configured(f)
            | InvitationCalendar::Named(f)
            | InvitationCalendar::FirstMade(f)
            | InvitationCalendar::ToMake(f) => f,
        }
    }

    /// Why this folder, for logs and `check-config`.
    pub fn reason(&self) -> &'static str {
        match self {
            InvitationCalendar::Configured(_) => "configured",
            InvitationCalendar::Named(_) => "the calendar named calendar",
            InvitationCalendar::FirstMade(_) => "the first calendar the user made",
            InvitationCalendar::ToMake(_) => {
                "none of the user's calendars takes it: made at the first invitation"
            }
        }
    }
}

/// The scheduling component of an object (`VEVENT`, `VTODO` or `VJOURNAL`): what the
/// receiving calendar must take. Events when there is none.
pub fn scheduling_component(calendar: &ICalendar) -> &'static str {
    calendar
        .components
        .iter()
        .find_map(|c| match c.component_type {
            ICalendarComponentType::VEvent => Some("VEVENT"),
            ICalendarComponentType::VTodo => Some("VTODO"),
            ICalendarComponentType::VJournal => Some("VJOURNAL"),
            _ => None,
        })
        .unwrap_or("VEVENT")
}

impl Store {
    /// Where `user`'s new invitations of `component` go, by the rule of this module.
    pub fn invitation_calendar(&self, user: &User, component: &str) -> InvitationCalendar {
        let home = self.users_root().join(&user.name);
        if let Some(folder) = &user.invitations {
            let dir = home.join(folder);
            if dir.is_dir() && takes(&dir, component) {
                return InvitationCalendar::Configured(folder.clone());
            }
        }
        let calendars: Vec<_> = self
            .calendar_dirs(&user.name)
            .into_iter()
            .filter(|dir| takes(dir, component))
            .collect();
        let name_of = |dir: &Path| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        if let Some(named) = calendars.iter().find(|d| name_of(d) == DEFAULT_CALENDAR) {
            return InvitationCalendar::Named(name_of(named));
        }
        let born = |dir: &Path| {
            std::fs::metadata(dir)
                .and_then(|m| m.created())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        match calendars.iter().min_by_key(|dir| (born(dir), name_of(dir))) {
            Some(first) => InvitationCalendar::FirstMade(name_of(first)),
            None => InvitationCalendar::ToMake(
                user.invitations
                    .clone()
                    .unwrap_or_else(|| DEFAULT_CALENDAR.to_string()),
            ),
        }
    }

    /// Makes calendar `folder` for `user` (the last resort of the rule): the folder,
    /// and in a Radicale store the props Radicale gives a calendar made by a client.
    pub fn make_calendar(&self, user: &User, folder: &str) -> std::io::Result<()> {
        let home = self.users_root().join(&user.name);
        if !home.is_dir() {
            // Never make a user's folder: a typo in a name must not grow folders, and
            // Radicale makes it at the user's first login.
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} does not exist", home.display()),
            ));
        }
        let dir = home.join(folder);
        std::fs::create_dir_all(&dir)?;
        if self.layout() == Layout::Radicale && !dir.join(".Radicale.props").exists() {
            let props = serde_json::json!({
                "tag": "VCALENDAR",
                "C:supported-calendar-component-set": "VEVENT,VTODO,VJOURNAL",
                "D:displayname": "Invitations",
            });
            let temp = dir.join(".Radicale.props.imipd-tmp");
            std::fs::write(&temp, props.to_string())?;
            std::fs::rename(&temp, dir.join(".Radicale.props"))?;
        }
        super::write::sync_dir(&dir)?;
        super::write::sync_dir(&home)?;
        tracing::info!(user = %user.name, calendar = folder, "made a calendar for invitations: the user had none that takes them");
        Ok(())
    }

    /// What is wrong with where `user`'s invitations would go: `None` when they can
    /// land (in a calendar that exists, or one imipd can make in the user's folder).
    pub fn receiving_problem(&self, user: &User) -> Option<String> {
        let home = self.users_root().join(&user.name);
        if !home.is_dir() {
            return Some(format!(
                "user {}: {} does not exist, so invitations have nowhere to land (a Radicale \
                 user's folder appears at their first login; otherwise check the name)",
                user.name,
                home.display()
            ));
        }
        for component in ["VEVENT", "VTODO"] {
            if let InvitationCalendar::ToMake(folder) = self.invitation_calendar(user, component) {
                if !is_writable(&home) {
                    return Some(format!(
                        "user {}: no calendar takes {component} invitations, and {} cannot be \
                         made ({} is not writable by imipd): create a calendar for the user, \
                         or give imipd write access",
                        user.name,
                        home.join(folder).display(),
                        home.display()
                    ));
                }
            }
        }
        None
    }
}

/// Whether this process may create entries in `dir`.
fn is_writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::layout::test_store;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = crate::test_support::fresh_dir(&format!("cals-{name}"));
        std::fs::create_dir_all(dir.join("collection-root/alice")).expect("dirs");
        dir
    }

    /// A Radicale store in `temp(name)`, and its user alice with no invitations folder
    /// configured.
    fn radicale_alice(name: &str) -> (std::path::PathBuf, Store, User) {
        let root = temp(name);
        let store = test_store(&root, Layout::Radicale, 1000);
        let mut alice = store.user("alice").expect("user").clone();
        alice.invitations = None;
        (root, store, alice)
    }

    fn calendar(root: &Path, name: &str, props: Option<&str>) {
        let dir = root.join("collection-root/alice").join(name);
        std::fs::create_dir_all(&dir).expect("calendar");
        if let Some(props) = props {
            std::fs::write(dir.join(".Radicale.props"), props).expect("props");
        }
        // Birth times of folders made within the same clock tick can tie.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    #[test]
    fn components_and_collection_types_decide_what_a_calendar_takes() {
        let root = temp("takes");
        calendar(
            &root,
            "tasks",
            Some(r#"{"tag": "VCALENDAR", "C:supported-calendar-component-set": "VTODO"}"#),
        );
        calendar(&root, "contacts", Some(r#"{"tag": "VADDRESSBOOK"}"#));
        calendar(&root, "plain", None);
        let at = |n: &str| root.join("collection-root/alice").join(n);
        assert!(takes(&at("tasks"), "VTODO"));
        assert!(!takes(&at("tasks"), "VEVENT"));
        assert!(!takes(&at("contacts"), "VEVENT"));
        assert!(takes(&at("plain"), "VEVENT"));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn uuid_named_calendars_receive_by_the_documented_rule() {
        let (root, store, mut alice) = radicale_alice("rule");
        assert_eq!(
            store.invitation_calendar(&alice, "VEVENT"),
            InvitationCalendar::ToMake("calendar".into())
        );
        calendar(
            &root,
            "tasks-only",
            Some(r#"{"tag": "VCALENDAR", "C:supported-calendar-component-set": "VTODO"}"#),
        );
        calendar(
            &root,
            "f7c1-second",
            Some(r#"{"tag": "VCALENDAR", "C:supported-calendar-component-set": "VEVENT,VTODO"}"#),
        );
        calendar(&root, "0a3e-third", Some(r#"{"tag": "VCALENDAR"}"#));
        let events = store.invitation_calendar(&alice, "VEVENT");
        let birth_times = std::fs::metadata(&root).and_then(|m| m.created()).is_ok();
        if birth_times {
            assert_eq!(events, InvitationCalendar::FirstMade("f7c1-second".into()));
        } else {
            assert_eq!(events, InvitationCalendar::FirstMade("0a3e-third".into()));
        }
        assert_eq!(
            store.invitation_calendar(&alice, "VTODO"),
            InvitationCalendar::FirstMade(
                if birth_times {
                    "tasks-only"
                } else {
                    "0a3e-third"
                }
                .into()
            )
        );
        calendar(&root, "calendar", None);
        assert_eq!(
            store.invitation_calendar(&alice, "VEVENT"),
            InvitationCalendar::Named("calendar".into())
        );
        alice.invitations = Some("f7c1-second".into());
        assert_eq!(
            store.invitation_calendar(&alice, "VEVENT"),
            InvitationCalendar::Configured("f7c1-second".into())
        );
        // A configured folder that does not take tasks is passed over for them.
        alice.invitations = Some("tasks-only".into());
        assert_eq!(
            store.invitation_calendar(&alice, "VEVENT"),
            InvitationCalendar::Named("calendar".into())
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_last_resort_makes_a_calendar_radicale_lists() {
        let (root, store, alice) = radicale_alice("make");
        assert_eq!(store.receiving_problem(&alice), None);
        store.make_calendar(&alice, "calendar").expect("made");
        let dir = root.join("collection-root/alice/calendar");
        assert!(takes(&dir, "VEVENT") && takes(&dir, "VTODO"));
        assert_eq!(
            store.invitation_calendar(&alice, "VEVENT"),
            InvitationCalendar::Named("calendar".into())
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
