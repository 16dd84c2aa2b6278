//! A received ADD: the organizer adds instances to a recurring item (RFC 5546 §3.2.4).
//!
//! Each component of an ADD is a new instance, "as if referenced by an RDATE": the
//! attendee's copy keeps its master, gains an RDATE at the new instance's start, and an
//! override when the new instance differs from what the master would give there (another
//! title, length, place, or the attendees' answers still open). An ADD repeated changes
//! nothing more. An ADD for an item the recipient does not hold cannot be applied: the
//! recipient asks the organizer for the whole item with a REFRESH.
//!
//! Components that carry a RECURRENCE-ID (which RFC 5546 does not allow in ADD, but the
//! reference server and older imipd send for a new override) are taken as that
//! override, if they name an occurrence of the series.
//!
//! [`inbound`](super::inbound) dispatches ADD here; this module edits the copy with the
//! shared helpers of [`edit`](super::edit) and never calls back into `inbound`.

use super::address::CalAddress;
use super::edit::{
    append_component, copy_missing_timezones, finish, is_x_property, push_tree, refusal,
};
use super::error::ItipError;
use super::export::{MessageCalendar, Timezones};
use super::message::{ItipMessage, MessageSummary};
use super::occurrence::{at_instant, instance_at, membership, Membership, Occurrences};
use super::snapshot::{Instance, InstanceId, Snapshot};
use super::time::{utc_date_time, TimeResolver};
use super::{Context, InboundAction, InboundOutcome};
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarEntry, ICalendarMethod, ICalendarProperty,
    ICalendarValue, Uri,
};

/// The organizer's ADD applied to an attendee's copy.
pub fn apply_add(local: &Snapshot<'_>, msg: &Snapshot<'_>) -> Result<InboundOutcome, ItipError> {
    let mut copy = local.cal.clone();
    let mut refused = Vec::new();
    let Some(main) = local.main() else {
        // A copy of single occurrences only: nothing to add an RDATE to.
        for (id, m) in &msg.instances {
            if !local.instances.contains_key(id) {
                append_component(&mut copy, m.comp.clone(), true);
            }
        }
        copy_missing_timezones(&mut copy, msg.cal);
        return finish(copy, local.cal, InboundAction::Updated, refused);
    };
    if msg.instances.values().any(|m| m.sequence < main.sequence) {
        return Err(ItipError::OutOfSequence);
    }
    copy_missing_timezones(&mut copy, msg.cal);
    let times = TimeResolver::new(msg.cal);
    let set = Occurrences::of(local.cal, &local.cal.components[main.comp_id as usize]);
    for (id, m) in &msg.instances {
        match id {
            InstanceId::Main => add_instance(&mut copy, main.comp_id, m, &times),
            InstanceId::Recurrence { timestamp, .. } => {
                if local.instances.contains_key(id) {
                    continue;
                }
                if set.membership(*timestamp) == Membership::NotAnOccurrence {
                    refused.push(refusal(m.comp));
                } else {
                    append_component(&mut copy, m.comp.clone(), true);
                }
            }
        }
    }
    if !refused.is_empty() && refused.len() == msg.instances.len() {
        return Err(ItipError::InvalidRecurrenceId);
    }
    // The series itself changed (a new RDATE): the master takes the ADD's SEQUENCE.
    let highest = msg.main().map(|m| m.sequence);
    if let Some(sequence) = highest.filter(|s| *s > main.sequence) {
        set_sequence(&mut copy.components[main.comp_id as usize], sequence);
    }
    finish(copy, local.cal, InboundAction::Updated, refused)
}

/// Adds the ADD's component `m` as an instance of the master `master_id` of `copy`.
fn add_instance(copy: &mut ICalendar, master_id: u32, m: &Instance<'_>, times: &TimeResolver<'_>) {
    let Some(start) = m
        .comp
        .property(&ICalendarProperty::Dtstart)
        .or_else(|| m.comp.property(&ICalendarProperty::Due))
    else {
        return;
    };
    let Some(timestamp) = times.entry_timestamp(start) else {
        return;
    };
    let master = copy.components[master_id as usize].clone();
    if membership(copy, &master, timestamp) != Membership::Occurrence {
        let resolver = copy.build_tz_resolver();
        let anchor = master
            .property(&ICalendarProperty::Dtstart)
            .or_else(|| master.property(&ICalendarProperty::Due));
        let Some(mut rdate) = anchor.and_then(|a| at_instant(a, timestamp, &resolver)) else {
            return;
        };
        rdate.name = ICalendarProperty::Rdate;
        copy.components[master_id as usize].entries.push(rdate);
    }
    let Some(instance) = instance_at(copy, master_id, timestamp) else {
        return;
    };
    let already = copy.components.iter().any(|c| {
        c.component_type == master.component_type
            && c.property(&ICalendarProperty::RecurrenceId)
                == instance
                    .component
                    .property(&ICalendarProperty::RecurrenceId)
    });
    if already || same_instance(&instance.component, copy, m.comp, times) {
        return;
    }
    let mut comp = m.comp.clone();
    comp.entries.retain(|e| !is_x_property(&e.name));
    comp.component_ids.clear();
    if let Some(rid) = instance
        .component
        .property(&ICalendarProperty::RecurrenceId)
    {
        comp.entries.push(rid.clone());
    }
    push_tree(copy, super::export::ComponentTree::leaf(comp));
}

/// Properties that do not tell two instances apart: identity, stamps, the series' rules
/// and (compared as instants, separately) the times.
fn ignored(name: &ICalendarProperty) -> bool {
    matches!(
        name,
        ICalendarProperty::Dtstamp
            | ICalendarProperty::Sequence
            | ICalendarProperty::Uid
            | ICalendarProperty::RecurrenceId
            | ICalendarProperty::Rrule
            | ICalendarProperty::Rdate
            | ICalendarProperty::Exdate
            | ICalendarProperty::Dtstart
            | ICalendarProperty::Dtend
            | ICalendarProperty::Due
            | ICalendarProperty::Duration
    ) || is_x_property(name)
}

/// True when the ADD's component says what the master's instance already says.
fn same_instance(
    instance: &ICalendarComponent,
    copy: &ICalendar,
    added: &ICalendarComponent,
    added_times: &TimeResolver<'_>,
) -> bool {
    let lines = |c: &ICalendarComponent| {
        let mut out: Vec<String> = c
            .entries
            .iter()
            .filter(|e| !ignored(&e.name))
            .map(|e| {
                let mut s = String::new();
                let _ = e.write_to(&mut s);
                s
            })
            .collect();
        out.sort();
        out
    };
    let copy_times = TimeResolver::new(copy);
    lines(instance) == lines(added) && span(instance, &copy_times) == span(added, added_times)
}

/// Start and end of a component as instants.
fn span(comp: &ICalendarComponent, times: &TimeResolver<'_>) -> Option<(i64, i64)> {
    let at = |p: ICalendarProperty| comp.property(&p).and_then(|e| times.entry_timestamp(e));
    let start = at(ICalendarProperty::Dtstart).or_else(|| at(ICalendarProperty::Due))?;
    let end = at(ICalendarProperty::Dtend)
        .or_else(|| at(ICalendarProperty::Due))
        .or_else(|| {
            comp.property(&ICalendarProperty::Duration)
                .and_then(|e| match e.values.first() {
                    Some(ICalendarValue::Duration(d)) => Some(start + d.as_seconds()),
                    _ => None,
                })
        })
        .unwrap_or(start);
    Some((start, end))
}

fn set_sequence(comp: &mut ICalendarComponent, sequence: i64) {
    comp.entries
        .retain(|e| e.name != ICalendarProperty::Sequence);
    comp.entries.push(
        ICalendarEntry::new(ICalendarProperty::Sequence)
            .with_value(ICalendarValue::Integer(sequence)),
    );
}

/// An ADD for an item the recipient does not hold: a REFRESH asking the organizer for
/// it (RFC 5546 §3.2.4), from the recipient's address in the message.
pub fn refresh_for_unknown(
    msg: &Snapshot<'_>,
    sender: &CalAddress,
    ctx: &Context<'_>,
) -> Result<InboundOutcome, ItipError> {
    if msg.organizer.is_local {
        return Err(ItipError::OrganizerIsLocalAddress);
    }
    if msg.organizer.address != *sender {
        return Err(ItipError::SenderIsNotOrganizer(sender.clone()));
    }
    let me = msg
        .instances
        .values()
        .flat_map(|i| i.attendees.iter())
        .find(|a| a.is_local && a.server_scheduled)
        .map(|a| a.address.clone())
        .ok_or(ItipError::NotOrganizerNorAttendee)?;
    // RFC 5546 §3.2.6: ATTENDEE, DTSTAMP, ORGANIZER and UID, nothing else.
    let mut comp = ICalendarComponent::new(msg.component_type.clone());
    comp.entries.push(
        ICalendarEntry::new(ICalendarProperty::Attendee).with_value(Uri::Location(me.to_mailto())),
    );
    comp.add_dtstamp(utc_date_time(ctx.now));
    comp.entries.push(
        ICalendarEntry::new(ICalendarProperty::Organizer)
            .with_value(Uri::Location(msg.organizer.address.to_mailto())),
    );
    comp.add_uid(&msg.uid);
    let refresh = ItipMessage {
        calendar: MessageCalendar::build(
            Some(&ICalendarMethod::Refresh),
            vec![super::export::ComponentTree::leaf(comp)],
            msg.cal,
            Timezones::IfUsed,
        ),
        method: ICalendarMethod::Refresh,
        from: me,
        to: vec![msg.organizer.address.clone()],
        summary: MessageSummary::Refresh,
    };
    Ok(InboundOutcome {
        action: InboundAction::RefreshRequested,
        copy: None,
        responses: vec![refresh],
        refused: Vec::new(),
    })
}
