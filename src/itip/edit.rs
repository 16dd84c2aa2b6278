//! Edits of the recipient's copy that every incoming method shares: appending a
//! component or a component tree, taking in the message's missing VTIMEZONEs, the
//! refusal of a component that names no occurrence, and the outcome of the edit.
//!
//! Data flows one way here: [`inbound`](super::inbound) reads the message and
//! dispatches ADD to [`add`](super::add); both edit the copy with these helpers, and
//! neither this module nor `add` calls back into `inbound`.

use super::address::strip_prefix_ignore_case;
use super::error::ItipError;
use super::export::ComponentTree;
use super::{InboundAction, InboundOutcome, Refused};
use calcard::icalendar::{ICalendar, ICalendarComponent, ICalendarProperty};
use std::collections::BTreeSet;

/// Copies `comp` as a new top-level component of `cal` (no sub-components), optionally
/// without X- properties.
pub(super) fn append_component(cal: &mut ICalendar, mut comp: ICalendarComponent, strip_x: bool) {
    if strip_x {
        comp.entries.retain(|e| !is_x_property(&e.name));
    }
    comp.component_ids.clear();
    let id = cal.components.len() as u32;
    cal.components.push(comp);
    if let Some(root) = cal.components.first_mut() {
        root.component_ids.push(id);
    }
}

/// Whether `name` is an X- property (dropped from what an attendee's copy takes in).
pub(super) fn is_x_property(name: &ICalendarProperty) -> bool {
    matches!(name, ICalendarProperty::Other(n) if strip_prefix_ignore_case(n, "X-").is_some())
}

/// The refusal of one message component whose RECURRENCE-ID is no occurrence.
pub(super) fn refusal(comp: &ICalendarComponent) -> Refused {
    let mut written = String::new();
    if let Some(entry) = comp.property(&ICalendarProperty::RecurrenceId) {
        let _ = entry.write_to(&mut written);
    }
    let value = written
        .replace("\r\n ", "")
        .trim_end()
        .trim_start_matches("RECURRENCE-ID")
        .trim_start_matches([';', ':'])
        .to_string();
    Refused {
        recurrence_id: value,
        error: ItipError::InvalidRecurrenceId,
    }
}

/// The outcome of a message some of whose components may have been refused.
pub(super) fn finish(
    copy: ICalendar,
    original: &ICalendar,
    action: InboundAction,
    refused: Vec<Refused>,
) -> Result<InboundOutcome, ItipError> {
    let mut outcome = updated(copy, original, action);
    outcome.refused = refused;
    Ok(outcome)
}

/// Adds the message's VTIMEZONEs that the copy lacks, so every TZID stays resolvable.
pub(super) fn copy_missing_timezones(copy: &mut ICalendar, itip: &ICalendar) {
    let have: BTreeSet<String> = copy
        .components
        .iter()
        .filter_map(|c| c.timezone().map(|(name, _)| name.to_string()))
        .chain(copy.components.iter().filter_map(tzid_of))
        .collect();
    let mut builder_roots = Vec::new();
    for id in super::export::vtimezone_ids(itip) {
        let Some(comp) = itip.components.get(id as usize) else {
            continue;
        };
        if tzid_of(comp).is_some_and(|tzid| !have.contains(&tzid)) {
            if let Some(tree) = ComponentTree::copy_from(itip, id) {
                builder_roots.push(tree);
            }
        }
    }
    for tree in builder_roots {
        push_tree(copy, tree);
    }
}

fn tzid_of(comp: &ICalendarComponent) -> Option<String> {
    comp.property(&ICalendarProperty::Tzid)
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_text())
        .map(str::to_string)
}

/// Appends `tree` (a component and its sub-components) as a new top-level component.
pub(super) fn push_tree(cal: &mut ICalendar, tree: ComponentTree) {
    fn push(cal: &mut ICalendar, tree: ComponentTree) -> u32 {
        let id = cal.components.len() as u32;
        cal.components.push(tree.component);
        let ids = tree.children.into_iter().map(|c| push(cal, c)).collect();
        cal.components[id as usize].component_ids = ids;
        id
    }
    let id = push(cal, tree);
    if let Some(root) = cal.components.first_mut() {
        root.component_ids.push(id);
    }
}

/// The copy as the outcome of `action`, or [`InboundAction::Unchanged`] when it reads
/// as before.
fn updated(copy: ICalendar, original: &ICalendar, action: InboundAction) -> InboundOutcome {
    let changed = copy != *original;
    InboundOutcome {
        action: if changed {
            action
        } else {
            InboundAction::Unchanged
        },
        copy: changed.then_some(copy),
        responses: Vec::new(),
        refused: Vec::new(),
    }
}
