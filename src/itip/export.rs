//! Building the components and VCALENDARs of outgoing iTIP messages.
//!
//! Four shapes of component leave the engine: the organizer's copy of an instance
//! (REQUEST/ADD), a cancellation, an attendee's REPLY, and an attendee's decline. Each
//! function here builds one of them from a stored component; [`MessageCalendar`]
//! assembles them under a VCALENDAR with METHOD and the VTIMEZONEs they need.

use super::address::CalAddress;
use super::message::{ItipMessage, MessageSummary, Method};
use super::snapshot::{Attendee, Instance, Snapshot};
use super::time::utc_date_time;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarEntry, ICalendarMethod,
    ICalendarParameter, ICalendarParameterName, ICalendarParameterValue,
    ICalendarParticipationStatus, ICalendarProperty, ICalendarStatus, ICalendarValue, Uri,
};

/// PRODID written into every message imipd builds.
pub const PRODID: &str = concat!("-//imipd//imipd ", env!("CARGO_PKG_VERSION"), "//EN");

/// How much of the event an attendee's REPLY repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyDetails {
    /// SUMMARY, DTSTART and DTEND/DUE too: large hosted calendars match replies by them.
    #[default]
    Full,
    /// Only ORGANIZER, the answering ATTENDEE and REQUEST-STATUS (the RFC 6638 examples).
    Minimal,
}

/// A component with its sub-components, detached from any calendar.
#[derive(Debug, Clone)]
pub struct ComponentTree {
    /// The component; its `component_ids` are ignored.
    pub component: ICalendarComponent,
    /// Sub-components (VALARM, STANDARD/DAYLIGHT, ...).
    pub children: Vec<ComponentTree>,
}

impl ComponentTree {
    /// A component without children.
    pub fn leaf(component: ICalendarComponent) -> Self {
        ComponentTree {
            component,
            children: Vec::new(),
        }
    }

    /// `component` over copies of `source`'s sub-components in `cal` that `keep` accepts.
    pub fn with_children_of(
        component: ICalendarComponent,
        cal: &ICalendar,
        source: &ICalendarComponent,
        keep: impl Fn(&ComponentTree) -> bool,
    ) -> Self {
        let children = source
            .component_ids
            .iter()
            .filter_map(|id| Self::copy_from(cal, *id))
            .filter(|child| keep(child))
            .collect();
        ComponentTree {
            component,
            children,
        }
    }

    /// Copies component `id` of `cal` and everything below it. Bounded by the number of
    /// components, so a malformed (cyclic) id list cannot recurse forever.
    pub fn copy_from(cal: &ICalendar, id: u32) -> Option<Self> {
        Self::copy_bounded(cal, id, cal.components.len())
    }

    fn copy_bounded(cal: &ICalendar, id: u32, budget: usize) -> Option<Self> {
        let comp = cal.components.get(id as usize)?;
        let budget = budget.checked_sub(1)?;
        let children = comp
            .component_ids
            .iter()
            .filter_map(|child| Self::copy_bounded(cal, *child, budget))
            .collect();
        Some(ComponentTree {
            component: ICalendarComponent {
                component_type: comp.component_type.clone(),
                entries: comp.entries.clone(),
                component_ids: Vec::new(),
            },
            children,
        })
    }

    /// Removes SCHEDULE-STATUS, SCHEDULE-AGENT and SCHEDULE-FORCE-SEND from every
    /// ORGANIZER and ATTENDEE of the tree: they belong to the server holding a copy;
    /// and client bookkeeping properties ([`super::history::is_client_bookkeeping`]).
    pub fn strip_server_params(&mut self) {
        // Also a client's notes about its own copy (X-MOZ-*, X-EVOLUTION-*, ...): they
        // are no one else's business, and some would make the recipient's client act.
        self.component
            .entries
            .retain(|e| !super::history::is_client_bookkeeping(&e.name));
        for entry in self.component.entries.iter_mut() {
            if matches!(
                entry.name,
                ICalendarProperty::Organizer | ICalendarProperty::Attendee
            ) {
                entry.params.retain(|p| !SERVER_PARAMS.contains(&p.name));
            }
        }
        for child in self.children.iter_mut() {
            child.strip_server_params();
        }
    }

    fn uses_tzid(&self) -> bool {
        self.component
            .entries
            .iter()
            .any(|e| e.has_parameter(&ICalendarParameterName::Tzid))
            || self.children.iter().any(ComponentTree::uses_tzid)
    }
}

/// Which VTIMEZONEs of the source a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timezones {
    /// Every VTIMEZONE of the source (full requests).
    All,
    /// Every VTIMEZONE of the source, but only if some exported property has a TZID.
    IfUsed,
}

/// Assembles a VCALENDAR from component trees.
pub struct MessageCalendar {
    cal: ICalendar,
}

impl MessageCalendar {
    /// An empty VCALENDAR with VERSION, PRODID and, for messages, METHOD.
    pub fn new(method: Option<&Method>) -> Self {
        let mut root = ICalendarComponent::new(ICalendarComponentType::VCalendar);
        root.add_property(
            ICalendarProperty::Version,
            ICalendarValue::Text("2.0".into()),
        );
        root.add_property(
            ICalendarProperty::Prodid,
            ICalendarValue::Text(PRODID.into()),
        );
        if let Some(method) = method {
            root.add_property(
                ICalendarProperty::Method,
                ICalendarValue::Method(method.clone()),
            );
        }
        MessageCalendar {
            cal: ICalendar {
                components: vec![root],
            },
        }
    }

    /// Appends a tree under the root.
    pub fn push(&mut self, tree: ComponentTree) {
        let id = self.push_tree(tree);
        self.cal.components[0].component_ids.push(id);
    }

    fn push_tree(&mut self, tree: ComponentTree) -> u32 {
        let id = self.cal.components.len() as u32;
        self.cal.components.push(tree.component);
        let mut child_ids = Vec::with_capacity(tree.children.len());
        for child in tree.children {
            child_ids.push(self.push_tree(child));
        }
        self.cal.components[id as usize].component_ids = child_ids;
        id
    }

    /// Builds the calendar: the source's VTIMEZONEs as `timezones` says, then `trees`.
    /// A TZID the source uses without defining gets a VTIMEZONE generated from the tz
    /// database (RFC 5545 §3.2.19), so no reader sees a zoned time as floating.
    /// VTIMEZONEs come first, as most clients write them. A message (`method` given)
    /// never carries a server-only parameter on ORGANIZER or ATTENDEE (RFC 6638 §7.3),
    /// whichever component shape it holds.
    pub fn build(
        method: Option<&Method>,
        trees: Vec<ComponentTree>,
        source: &ICalendar,
        timezones: Timezones,
    ) -> ICalendar {
        let with_tz = timezones == Timezones::All || trees.iter().any(ComponentTree::uses_tzid);
        let mut out = MessageCalendar::new(method);
        if with_tz {
            for id in vtimezone_ids(source) {
                if let Some(tree) = ComponentTree::copy_from(source, id) {
                    out.push(tree);
                }
            }
        }
        for mut tree in trees {
            if method.is_some() {
                tree.strip_server_params();
            }
            out.push(tree);
        }
        super::vtimezone::add_missing_timezones(&mut out.cal);
        out.cal
    }
}

/// Indices of the VTIMEZONE components of `cal`.
pub fn vtimezone_ids(cal: &ICalendar) -> Vec<u32> {
    cal.components
        .iter()
        .enumerate()
        .filter(|(_, c)| c.component_type == ICalendarComponentType::VTimezone)
        .map(|(i, _)| i as u32)
        .collect()
}

/// Parameters that only make sense on the server that holds the copy.
const SERVER_PARAMS: [ICalendarParameterName; 3] = [
    ICalendarParameterName::ScheduleStatus,
    ICalendarParameterName::ScheduleAgent,
    ICalendarParameterName::ScheduleForceSend,
];

/// A copy of `entry` without SCHEDULE-STATUS, SCHEDULE-AGENT and SCHEDULE-FORCE-SEND.
pub fn without_server_params(entry: &ICalendarEntry) -> ICalendarEntry {
    let mut entry = entry.clone();
    entry.params.retain(|p| !SERVER_PARAMS.contains(&p.name));
    entry
}

fn stamp_sequence_uid(comp: &mut ICalendarComponent, now: i64, sequence: i64, uid: &str) {
    comp.add_dtstamp(utc_date_time(now));
    comp.add_sequence(sequence);
    comp.add_uid(uid);
}

/// The whole object as a REQUEST from `from` to `to`: every instance with attendees at
/// its own SEQUENCE, with every time zone. A refresh's answer and a delegation's
/// invitation send the object as it stands.
pub fn whole_request(
    snap: &Snapshot<'_>,
    from: CalAddress,
    to: Vec<CalAddress>,
    now: i64,
) -> ItipMessage {
    let trees = snap
        .instances
        .values()
        .filter(|i| !i.attendees.is_empty())
        .map(|i| organizer_component(snap.cal, i, &snap.uid, i.sequence, now, false))
        .collect();
    ItipMessage {
        calendar: MessageCalendar::build(
            Some(&ICalendarMethod::Request),
            trees,
            snap.cal,
            Timezones::All,
        ),
        method: ICalendarMethod::Request,
        from,
        to,
        summary: MessageSummary::Invite,
    }
}

/// The organizer's export of one instance (REQUEST, ADD): new DTSTAMP, the given
/// SEQUENCE, every other property in source order, SCHEDULE-* parameters removed and
/// PARTSTAT=NEEDS-ACTION added where an attendee who may answer has none. VALARMs go
/// only into a first invitation.
pub fn organizer_component(
    cal: &ICalendar,
    instance: &Instance<'_>,
    uid: &str,
    sequence: i64,
    now: i64,
    with_alarms: bool,
) -> ComponentTree {
    let source = instance.comp;
    let mut comp = ICalendarComponent::new(source.component_type.clone());
    stamp_sequence_uid(&mut comp, now, sequence, uid);
    for entry in &source.entries {
        match entry.name {
            ICalendarProperty::Dtstamp
            | ICalendarProperty::Sequence
            | ICalendarProperty::Uid
            | ICalendarProperty::RequestStatus => {}
            ICalendarProperty::Organizer => comp.entries.push(without_server_params(entry)),
            ICalendarProperty::Attendee => {
                let mut entry = without_server_params(entry);
                let rsvp_false = matches!(
                    entry.parameter(&ICalendarParameterName::Rsvp),
                    Some(ICalendarParameterValue::Bool(false))
                );
                if !rsvp_false && !entry.has_parameter(&ICalendarParameterName::Partstat) {
                    entry.params.push(ICalendarParameter::partstat(
                        ICalendarParticipationStatus::NeedsAction,
                    ));
                }
                comp.entries.push(entry);
            }
            _ => comp.entries.push(entry.clone()),
        }
    }
    ComponentTree::with_children_of(comp, cal, source, |child| {
        with_alarms || child.component.component_type != ICalendarComponentType::VAlarm
    })
}

/// Properties a cancellation repeats so that the recipient recognises the event.
const CANCEL_COPIED: [ICalendarProperty; 11] = [
    ICalendarProperty::Uid,
    ICalendarProperty::Summary,
    ICalendarProperty::Dtstart,
    ICalendarProperty::Dtend,
    ICalendarProperty::Duration,
    ICalendarProperty::Due,
    ICalendarProperty::RecurrenceId,
    ICalendarProperty::Created,
    ICalendarProperty::LastModified,
    ICalendarProperty::Description,
    ICalendarProperty::Location,
];

/// A CANCEL component: STATUS:CANCELLED, identifying properties, and the ATTENDEE lines
/// of the people cancelled (`only`), or all of them when `only` is `None`, without the
/// server-only parameters (RFC 6638 §7.3: SCHEDULE-STATUS is never sent).
pub fn cancel_component(
    source: &ICalendarComponent,
    sequence: i64,
    now: i64,
    only: Option<&[CalAddress]>,
) -> ComponentTree {
    let mut comp = ICalendarComponent::new(source.component_type.clone());
    comp.add_property(
        ICalendarProperty::Status,
        ICalendarValue::Status(ICalendarStatus::Cancelled),
    );
    comp.add_dtstamp(utc_date_time(now));
    comp.add_sequence(sequence);
    for entry in &source.entries {
        match &entry.name {
            ICalendarProperty::Organizer => comp.entries.push(without_server_params(entry)),
            ICalendarProperty::Attendee => {
                let keep = match only {
                    None => true,
                    Some(list) => super::snapshot::entry_address(entry)
                        .is_some_and(|address| list.contains(&address)),
                };
                if keep {
                    comp.entries.push(without_server_params(entry));
                }
            }
            name if CANCEL_COPIED.contains(name) => comp.entries.push(entry.clone()),
            _ => {}
        }
    }
    ComponentTree::leaf(comp)
}

/// Properties a full-detail REPLY repeats (after RECURRENCE-ID).
const REPLY_DETAILS: [ICalendarProperty; 6] = [
    ICalendarProperty::Dtstart,
    ICalendarProperty::Dtend,
    ICalendarProperty::Duration,
    ICalendarProperty::Due,
    ICalendarProperty::Description,
    ICalendarProperty::Summary,
];

/// To-do properties that carry an assignee's progress.
pub const TODO_PROGRESS: [ICalendarProperty; 3] = [
    ICalendarProperty::Status,
    ICalendarProperty::PercentComplete,
    ICalendarProperty::Completed,
];

/// Attendees tied to `me` by delegation that the organizer must hear about: my delegates
/// and my delegator (when they are not local).
pub fn delegation_partners<'a, 'b>(
    instance: &'b Instance<'a>,
    me: &'b CalAddress,
) -> impl Iterator<Item = &'b Attendee<'a>> + 'b {
    instance.attendees.iter().filter(move |a| {
        !a.is_local && (a.delegated_from.contains(me) || a.delegated_to.contains(me))
    })
}

/// An attendee's REPLY for one instance.
pub fn reply_component(
    instance: &Instance<'_>,
    me: &Attendee<'_>,
    uid: &str,
    now: i64,
    details: ReplyDetails,
) -> ComponentTree {
    let source = instance.comp;
    let mut comp = ICalendarComponent::new(source.component_type.clone());
    stamp_sequence_uid(&mut comp, now, instance.sequence, uid);
    let is_todo = source.component_type == ICalendarComponentType::VTodo;
    for entry in &source.entries {
        let keep = match &entry.name {
            ICalendarProperty::Organizer => {
                comp.entries.push(without_server_params(entry));
                false
            }
            ICalendarProperty::RecurrenceId => true,
            name if is_todo && TODO_PROGRESS.contains(name) => true,
            name => details == ReplyDetails::Full && REPLY_DETAILS.contains(name),
        };
        if keep {
            comp.entries.push(entry.clone());
        }
    }
    comp.entries.push(without_server_params(me.entry));
    for partner in delegation_partners(instance, &me.address) {
        comp.entries.push(without_server_params(partner.entry));
    }
    comp.entries.push(
        ICalendarEntry::new(ICalendarProperty::RequestStatus).with_values(vec![
            ICalendarValue::Text("2.0".into()),
            ICalendarValue::Text("Success".into()),
        ]),
    );
    ComponentTree::leaf(comp)
}

/// An attendee's decline of one instance: a minimal REPLY with PARTSTAT=DECLINED.
///
/// `source` gives the descriptive properties (for an EXDATE decline this is the master,
/// as the reference does); `recurrence_id` is written when the decline is for one
/// occurrence.
#[allow(clippy::too_many_arguments)]
pub fn decline_component(
    source: &ICalendarComponent,
    organizer: &CalAddress,
    me: &CalAddress,
    delegator: Option<&ICalendarEntry>,
    uid: &str,
    sequence: i64,
    now: i64,
    recurrence_id: Option<ICalendarEntry>,
    details: ReplyDetails,
) -> ComponentTree {
    let mut comp = ICalendarComponent::new(source.component_type.clone());
    comp.entries.push(
        ICalendarEntry::new(ICalendarProperty::Organizer)
            .with_value(Uri::Location(organizer.to_mailto())),
    );
    comp.entries.push(
        ICalendarEntry::new(ICalendarProperty::Attendee)
            .with_param(ICalendarParameter::partstat(
                ICalendarParticipationStatus::Declined,
            ))
            .with_value(Uri::Location(me.to_mailto())),
    );
    stamp_sequence_uid(&mut comp, now, sequence, uid);
    if details == ReplyDetails::Full {
        for entry in &source.entries {
            if REPLY_DETAILS.contains(&entry.name) {
                comp.entries.push(entry.clone());
            }
        }
    }
    match recurrence_id {
        Some(rid) => comp.entries.push(rid),
        None => {
            if let Some(rid) = source.property(&ICalendarProperty::RecurrenceId) {
                comp.entries.push(rid.clone());
            }
        }
    }
    if let Some(delegator) = delegator {
        comp.entries.push(without_server_params(delegator));
    }
    ComponentTree::leaf(comp)
}

/// Sets parameter `name` to `values`, in place of any existing ones (keeping the
/// position of the first), or removes it when `values` is empty.
pub fn set_param(
    entry: &mut ICalendarEntry,
    name: ICalendarParameterName,
    values: Vec<ICalendarParameterValue>,
) {
    let position = entry.params.iter().position(|p| p.name == name);
    entry.params.retain(|p| p.name != name);
    let new_params = values.into_iter().map(|value| ICalendarParameter {
        name: name.clone(),
        value,
    });
    match position {
        Some(at) => {
            let at = at.min(entry.params.len());
            let tail = entry.params.split_off(at);
            entry.params.extend(new_params);
            entry.params.extend(tail);
        }
        None => entry.params.extend(new_params),
    }
}

/// The values of parameter `name` on `entry`.
pub fn param_values(
    entry: &ICalendarEntry,
    name: &ICalendarParameterName,
) -> Vec<ICalendarParameterValue> {
    entry.parameters(name).cloned().collect()
}
