//! Applying a received iTIP message to the recipient's copy.
//!
//! Authorisation is checked against the stored copy, not only the message: changes
//! (REQUEST, ADD, CANCEL) must come from the organizer of the stored copy, answers
//! (REPLY, COUNTER, REFRESH) from one of its attendees. A stale SEQUENCE is refused.
//! A COUNTER never changes the organizer's copy: it is a proposal for a person.
//!
//! ADD is handed to [`add`](super::add); both edit the copy through
//! [`edit`](super::edit), and neither calls back into this module.

use super::address::CalAddress;
use super::edit::{append_component, copy_missing_timezones, finish, push_tree, refusal};
use super::error::ItipError;
use super::export::{
    organizer_component, set_param, whole_request, MessageCalendar, Timezones, TODO_PROGRESS,
};
use super::message::{method_name, ItipMessage, MessageSummary, Method};
use super::occurrence::{instance_at, Membership, Occurrences};
use super::snapshot::{entry_address, Attendee, Instance, InstanceId, Snapshot};
use super::{Context, InboundAction, InboundOutcome, Refused};
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarEntry, ICalendarMethod,
    ICalendarParameterName, ICalendarProperty, ICalendarStatus, ICalendarValue, Uri,
};

/// A message `itip` from `sender` arrived for the account in `ctx`, whose copy of the
/// same UID is `stored` (or none): what it changes, and what it answers.
pub fn receive(
    itip: &ICalendar,
    sender: &CalAddress,
    stored: Option<&ICalendar>,
    ctx: &Context<'_>,
) -> Result<InboundOutcome, ItipError> {
    let root = itip
        .components
        .first()
        .filter(|c| {
            c.component_type == ICalendarComponentType::VCalendar && itip.components.len() >= 2
        })
        .ok_or_else(|| ItipError::ICalendarParseError("not a VCALENDAR with components".into()))?;
    let method = root
        .entries
        .iter()
        .find(|e| e.name == ICalendarProperty::Method)
        .and_then(|e| match e.values.first() {
            Some(ICalendarValue::Method(m)) => Some(m.clone()),
            _ => None,
        })
        .ok_or(ItipError::MissingMethod)?;

    // Outlook.com and Exchange send REPLYs without ORGANIZER: the recipient is the
    // organizer of the event being answered.
    let patched;
    let itip = if is_attendee_to_organizer(&method) {
        patched = with_missing_organizer(itip, ctx);
        patched.as_ref().unwrap_or(itip)
    } else {
        itip
    };

    // iCloud's token organizers: the EMAIL= alias is the same person.
    let (resolved, sender) = super::alias::resolve(itip, sender, stored);
    let itip = resolved.as_ref();
    let sender = &sender;

    let msg = Snapshot::new(itip, ctx.account)?;
    let in_message = msg.organizer.address == *sender
        || msg.instances.values().any(|i| i.attendee(sender).is_some());
    if !in_message {
        return Err(ItipError::SenderIsNotOrganizerNorAttendee(sender.clone()));
    }

    let Some(stored) = stored else {
        if method == ICalendarMethod::Add {
            return super::add::refresh_for_unknown(&msg, sender, ctx);
        }
        return import(itip, &msg, &method, sender);
    };
    let local = Snapshot::new(stored, ctx.account)?;
    if local.organizer.address != msg.organizer.address {
        return Err(ItipError::OrganizerMismatch);
    }
    if !local.organizer.is_local && !is_attendee_to_organizer(&method) {
        super::alias::check_recorded_sender(stored, itip, sender)?;
    }
    if local.organizer.is_local {
        to_organizer(&local, &msg, &method, sender, ctx)
    } else {
        to_attendee(&local, &msg, &method, sender)
    }
}

fn is_attendee_to_organizer(method: &Method) -> bool {
    matches!(
        method,
        ICalendarMethod::Reply | ICalendarMethod::Refresh | ICalendarMethod::Counter
    )
}

/// Adds `ORGANIZER:mailto:<recipient>` to components that have attendees but no organizer.
fn with_missing_organizer(itip: &ICalendar, ctx: &Context<'_>) -> Option<ICalendar> {
    let recipient = ctx.account.first()?;
    let needs = |c: &ICalendarComponent| {
        c.component_type.is_scheduling_object()
            && c.has_property(&ICalendarProperty::Attendee)
            && !c.has_property(&ICalendarProperty::Organizer)
    };
    if !itip.components.iter().any(needs) {
        return None;
    }
    let mut out = itip.clone();
    for comp in out.components.iter_mut().filter(|c| needs(c)) {
        comp.entries.push(
            ICalendarEntry::new(ICalendarProperty::Organizer)
                .with_value(Uri::Location(recipient.to_mailto())),
        );
    }
    Some(out)
}

/// A message for a UID the recipient does not have: only an invitation creates a copy.
fn import(
    itip: &ICalendar,
    msg: &Snapshot<'_>,
    method: &Method,
    sender: &CalAddress,
) -> Result<InboundOutcome, ItipError> {
    if *method != ICalendarMethod::Request {
        return Err(ItipError::EventNotFound);
    }
    if msg.organizer.is_local {
        return Err(ItipError::OrganizerIsLocalAddress);
    }
    // From the organizer, or from an attendee who delegated to the recipient.
    let delegated_by_sender = msg
        .instances
        .values()
        .flat_map(|i| i.attendees.iter())
        .any(|a| a.is_local && a.delegated_from.contains(sender));
    if msg.organizer.address != *sender && !delegated_by_sender {
        return Err(ItipError::SenderIsNotOrganizer(sender.clone()));
    }
    let mut copy = itip.clone();
    if let Some(root) = copy.components.first_mut() {
        root.entries.retain(|e| e.name != ICalendarProperty::Method);
    }
    // Overrides of occurrences the invitation's own series does not have stay out.
    let set = msg
        .main()
        .filter(|_| msg.instances.len() > 1)
        .map(|main| Occurrences::of(msg.cal, main.comp));
    let mut refused = Vec::new();
    let mut drop = Vec::new();
    for (id, m) in &msg.instances {
        if let (Some(set), InstanceId::Recurrence { timestamp, .. }) = (&set, id) {
            if set.membership(*timestamp) == Membership::NotAnOccurrence {
                refused.push(refusal(m.comp));
                drop.push(m.comp_id);
            }
        }
    }
    // The copy holds only what the recipient is invited to: an attendee of one
    // override does not get the series (RFC 6638 §3.2.6), nor its later CANCELs wrong.
    let invited: Vec<u32> = msg
        .instances
        .values()
        .filter(|m| !drop.contains(&m.comp_id))
        .filter(|m| m.attendees.iter().any(|a| a.is_local))
        .map(|m| m.comp_id)
        .collect();
    if !invited.is_empty() {
        let uninvited: Vec<u32> = msg
            .instances
            .values()
            .map(|m| m.comp_id)
            .filter(|id| !invited.contains(id) && !drop.contains(id))
            .collect();
        drop.extend(uninvited);
    }
    copy.remove_component_ids(&drop);
    Ok(InboundOutcome {
        action: InboundAction::Imported,
        copy: Some(copy),
        responses: Vec::new(),
        refused,
    })
}

/// A message to the organizer's own copy: answers from attendees.
fn to_organizer(
    local: &Snapshot<'_>,
    msg: &Snapshot<'_>,
    method: &Method,
    sender: &CalAddress,
    ctx: &Context<'_>,
) -> Result<InboundOutcome, ItipError> {
    if *sender == local.organizer.address {
        return Err(ItipError::OrganizerIsLocalAddress);
    }
    match method {
        ICalendarMethod::Reply => apply_reply(local, msg, sender),
        ICalendarMethod::Refresh => {
            let attendee = local
                .instances
                .values()
                .flat_map(|i| i.attendees.iter())
                .find(|a| &a.address == sender)
                .ok_or_else(|| ItipError::SenderIsNotParticipant(sender.clone()))?;
            let set = occurrences(local, local, msg);
            let refused = occurrence_refusals(set.as_ref(), local, msg)?;
            if attendee.is_local {
                return Err(ItipError::NothingToSend);
            }
            let response = whole_request(
                local,
                local.organizer.address.clone(),
                vec![sender.clone()],
                ctx.now,
            );
            Ok(InboundOutcome {
                action: InboundAction::RefreshAnswered,
                copy: None,
                responses: vec![response],
                refused,
            })
        }
        ICalendarMethod::Counter => {
            let is_attendee = local
                .instances
                .values()
                .any(|i| i.attendee(sender).is_some());
            if !is_attendee {
                return Err(ItipError::SenderIsNotParticipant(sender.clone()));
            }
            let set = occurrences(local, local, msg);
            let refused = occurrence_refusals(set.as_ref(), local, msg)?;
            Ok(InboundOutcome {
                action: InboundAction::CounterProposed,
                copy: None,
                responses: Vec::new(),
                refused,
            })
        }
        other => Err(ItipError::UnsupportedMethod(method_name(other).into())),
    }
}

/// A message to an attendee's copy: changes from the organizer, or a delegate's answer.
fn to_attendee(
    local: &Snapshot<'_>,
    msg: &Snapshot<'_>,
    method: &Method,
    sender: &CalAddress,
) -> Result<InboundOutcome, ItipError> {
    let from_organizer = *sender == local.organizer.address;
    match method {
        ICalendarMethod::Request
        | ICalendarMethod::Add
        | ICalendarMethod::Cancel
        | ICalendarMethod::Declinecounter
            if !from_organizer =>
        {
            Err(ItipError::SenderIsNotOrganizer(sender.clone()))
        }
        ICalendarMethod::Request => apply_request(local, msg),
        ICalendarMethod::Add => super::add::apply_add(local, msg),
        ICalendarMethod::Cancel => apply_cancel(local, msg),
        ICalendarMethod::Declinecounter => Ok(InboundOutcome {
            action: InboundAction::CounterDeclined,
            copy: None,
            responses: Vec::new(),
            refused: Vec::new(),
        }),
        ICalendarMethod::Reply => {
            // Only my delegate may answer to me.
            let delegate = local
                .instances
                .values()
                .flat_map(|i| i.attendees.iter())
                .any(|a| {
                    &a.address == sender
                        && !a.is_local
                        && local
                            .instances
                            .values()
                            .flat_map(|i| i.attendees.iter())
                            .any(|l| l.is_local && a.delegated_from.contains(&l.address))
                });
            if delegate {
                apply_reply(local, msg, sender)
            } else {
                Err(ItipError::UnsupportedMethod("REPLY".into()))
            }
        }
        other => Err(ItipError::UnsupportedMethod(method_name(other).into())),
    }
}

/// The occurrences of a series (the copy, or the message itself when it redefines the
/// series), expanded once per message; `None` when it has no master to expand, or when
/// the message names no instance the copy lacks (nothing to look up).
fn occurrences(
    series: &Snapshot<'_>,
    local: &Snapshot<'_>,
    msg: &Snapshot<'_>,
) -> Option<Occurrences> {
    let needed = msg
        .instances
        .keys()
        .any(|id| *id != InstanceId::Main && !local.instances.contains_key(id));
    if !needed {
        return None;
    }
    series
        .main()
        .map(|main| Occurrences::of(series.cal, main.comp))
}

/// Whether instance `id` of a message names an occurrence of `set`. Instances the copy
/// already holds are always valid; so is anything when there is no master to expand.
fn occurrence_of(set: Option<&Occurrences>, local: &Snapshot<'_>, id: &InstanceId) -> Membership {
    match id {
        InstanceId::Main => Membership::Occurrence,
        _ if local.instances.contains_key(id) => Membership::Occurrence,
        InstanceId::Recurrence { timestamp, .. } => match set {
            Some(set) => set.membership(*timestamp),
            None => Membership::Undecided,
        },
    }
}

/// The components of `msg` whose RECURRENCE-ID is no occurrence of `series`; an error
/// when that leaves nothing of the message.
fn occurrence_refusals(
    set: Option<&Occurrences>,
    local: &Snapshot<'_>,
    msg: &Snapshot<'_>,
) -> Result<Vec<Refused>, ItipError> {
    let refused: Vec<Refused> = msg
        .instances
        .iter()
        .filter(|(id, _)| occurrence_of(set, local, id) == Membership::NotAnOccurrence)
        .map(|(_, m)| refusal(m.comp))
        .collect();
    if !refused.is_empty() && refused.len() == msg.instances.len() {
        return Err(ItipError::InvalidRecurrenceId);
    }
    Ok(refused)
}

/// Appends the master's instance at `timestamp` to `copy` (as an override, sub-
/// components included) and returns its index, or `None` without a master start.
fn push_instance(copy: &mut ICalendar, master_id: u32, timestamp: i64) -> Option<u32> {
    let tree = instance_at(copy, master_id, timestamp)?;
    let id = copy.components.len() as u32;
    push_tree(copy, tree);
    Some(id)
}

/// Removes the entries named in `names` from `comp` and appends `from`'s entries with
/// those names. A property that already reads the same is left where it is, so a
/// message delivered twice leaves the copy (and the user's file) exactly as it was.
fn replace_properties(
    comp: &mut ICalendarComponent,
    from: &ICalendarComponent,
    names: &[ICalendarProperty],
) {
    let entries_of = |c: &ICalendarComponent, name: &ICalendarProperty| -> Vec<ICalendarEntry> {
        c.entries
            .iter()
            .filter(|e| &e.name == name)
            .cloned()
            .collect()
    };
    let differ: Vec<&ICalendarProperty> = names
        .iter()
        .filter(|name| entries_of(comp, name) != entries_of(from, name))
        .collect();
    if differ.is_empty() {
        return;
    }
    comp.entries.retain(|e| !differ.contains(&&e.name));
    comp.entries.extend(
        from.entries
            .iter()
            .filter(|e| differ.contains(&&e.name))
            .cloned(),
    );
}

/// A message instance, by id, with the copy's instance of the same id if it has one.
type Matched<'s, 'a> = (&'s InstanceId, &'s Instance<'a>, Option<&'s Instance<'a>>);

/// The message's instances that name occurrences of `series`, each with the copy's
/// instance of the same id (`None` when the copy lacks it), and the refusals of the
/// others; a message instance older than the copy's is out of sequence.
fn matched_instances<'s, 'a>(
    series: &Snapshot<'_>,
    local: &'s Snapshot<'a>,
    msg: &'s Snapshot<'a>,
) -> Result<(Vec<Matched<'s, 'a>>, Vec<Refused>), ItipError> {
    let set = occurrences(series, local, msg);
    let refused = occurrence_refusals(set.as_ref(), local, msg)?;
    let mut matched = Vec::new();
    for (id, m) in &msg.instances {
        if occurrence_of(set.as_ref(), local, id) == Membership::NotAnOccurrence {
            continue;
        }
        let l = local.instances.get(id);
        if l.is_some_and(|l| m.sequence < l.sequence) {
            return Err(ItipError::OutOfSequence);
        }
        matched.push((id, m, l));
    }
    Ok((matched, refused))
}

/// The organizer's REQUEST applied to an attendee's copy.
fn apply_request(local: &Snapshot<'_>, msg: &Snapshot<'_>) -> Result<InboundOutcome, ItipError> {
    let mut copy = local.cal.clone();
    // A full REQUEST redefines the series; a partial one speaks of the copy's.
    let series = if msg.main().is_some() { msg } else { local };
    let (matched, refused) = matched_instances(series, local, msg)?;
    for (_, m, l) in matched {
        match l {
            Some(l) => {
                let mut names: Vec<ICalendarProperty> = l
                    .tracked
                    .symmetric_difference(&m.tracked)
                    .map(|t| t.property.clone())
                    .collect();
                if l.attendee_keys() != m.attendee_keys() {
                    names.push(ICalendarProperty::Attendee);
                }
                if l.comp.property(&ICalendarProperty::Dtstamp)
                    != m.comp.property(&ICalendarProperty::Dtstamp)
                {
                    names.push(ICalendarProperty::Dtstamp);
                }
                names.push(ICalendarProperty::Sequence);
                names.dedup();
                if let Some(comp) = copy.components.get_mut(l.comp_id as usize) {
                    replace_properties(comp, m.comp, &names);
                }
            }
            None => append_component(&mut copy, m.comp.clone(), true),
        }
    }
    if msg.main().is_some() {
        let gone: Vec<u32> = local
            .instances
            .iter()
            .filter(|(id, _)| !msg.instances.contains_key(id))
            .map(|(_, l)| l.comp_id)
            .collect();
        copy.remove_component_ids(&gone);
    }
    copy_missing_timezones(&mut copy, msg.cal);
    finish(copy, local.cal, InboundAction::Updated, refused)
}

/// The organizer's CANCEL: the copy stays, marked CANCELLED, so the person sees it.
fn apply_cancel(local: &Snapshot<'_>, msg: &Snapshot<'_>) -> Result<InboundOutcome, ItipError> {
    let mut copy = local.cal.clone();
    let people = [ICalendarProperty::Organizer, ICalendarProperty::Attendee];
    let (matched, refused) = matched_instances(local, local, msg)?;
    for (id, m, l) in matched {
        match l {
            Some(l) => {
                if let Some(comp) = copy.components.get_mut(l.comp_id as usize) {
                    let dropped = [
                        ICalendarProperty::Organizer,
                        ICalendarProperty::Attendee,
                        ICalendarProperty::Sequence,
                    ];
                    mark_cancelled(comp, &dropped, m.comp, &people);
                }
            }
            None => {
                // One occurrence of the series: the master's instance, marked
                // cancelled at the message's SEQUENCE (a CANCEL may omit DTSTART).
                let instance = match (local.main(), id) {
                    (Some(main), InstanceId::Recurrence { timestamp, .. }) => {
                        push_instance(&mut copy, main.comp_id, *timestamp)
                    }
                    _ => None,
                };
                match instance.and_then(|at| copy.components.get_mut(at as usize)) {
                    Some(comp) => {
                        let stamps = [ICalendarProperty::Sequence, ICalendarProperty::Dtstamp];
                        mark_cancelled(comp, &stamps, m.comp, &stamps);
                    }
                    None => {
                        let mut comp = m.comp.clone();
                        comp.entries.retain(|e| e.name != ICalendarProperty::Status);
                        comp.entries.push(cancelled_status());
                        append_component(&mut copy, comp, false);
                    }
                }
            }
        }
    }
    if let Some(main) = msg.main() {
        for (id, l) in &local.instances {
            if *id == InstanceId::Main || msg.instances.contains_key(id) {
                continue;
            }
            if let Some(comp) = copy.components.get_mut(l.comp_id as usize) {
                mark_cancelled(comp, &people, main.comp, &people);
            }
        }
    }
    finish(copy, local.cal, InboundAction::Cancelled, refused)
}

/// Marks `comp` cancelled: its STATUS and `dropped` properties give way to `from`'s
/// `taken` ones and STATUS:CANCELLED.
fn mark_cancelled(
    comp: &mut ICalendarComponent,
    dropped: &[ICalendarProperty],
    from: &ICalendarComponent,
    taken: &[ICalendarProperty],
) {
    comp.entries
        .retain(|e| e.name != ICalendarProperty::Status && !dropped.contains(&e.name));
    comp.entries.extend(
        from.entries
            .iter()
            .filter(|e| taken.contains(&e.name))
            .cloned(),
    );
    comp.entries.push(cancelled_status());
}

fn cancelled_status() -> ICalendarEntry {
    ICalendarEntry::new(ICalendarProperty::Status)
        .with_value(ICalendarValue::Status(ICalendarStatus::Cancelled))
}

/// An attendee's answer applied to the organizer's copy (or a delegate's answer to the
/// delegator's copy).
fn apply_reply(
    local: &Snapshot<'_>,
    msg: &Snapshot<'_>,
    sender: &CalAddress,
) -> Result<InboundOutcome, ItipError> {
    let mut copy = local.cal.clone();
    let is_todo = local.component_type == ICalendarComponentType::VTodo;
    // Who may answer comes before whether the occurrence exists: a stranger learns
    // nothing about the series.
    for (id, m) in &msg.instances {
        let invited = match local.instances.get(id) {
            Some(l) => l.attendee(sender).is_some(),
            None => local
                .main()
                .is_some_and(|main| main.attendee(sender).is_some()),
        };
        if m.attendee(sender).is_none() || !invited {
            return Err(ItipError::SenderIsNotParticipant(sender.clone()));
        }
    }
    let set = occurrences(local, local, msg);
    let refused = occurrence_refusals(set.as_ref(), local, msg)?;
    for (id, m) in &msg.instances {
        let Some(replied) = m.attendee(sender) else {
            return Err(ItipError::SenderIsNotParticipant(sender.clone()));
        };
        if occurrence_of(set.as_ref(), local, id) == Membership::NotAnOccurrence {
            continue;
        }
        match local.instances.get(id) {
            Some(l) => {
                let Some(stored) = l.attendee(sender) else {
                    return Err(ItipError::SenderIsNotParticipant(sender.clone()));
                };
                let Some(comp) = copy.components.get_mut(l.comp_id as usize) else {
                    continue;
                };
                apply_answer(comp, stored, replied, &m.request_status);
                record_response_comment(comp, &stored.address, m.comp);
                apply_delegates_and_progress(comp, l, m, replied, is_todo);
            }
            None => {
                // An answer for one occurrence the organizer's copy has no override for:
                // the master's instance there, with only this answer changed; and only
                // from someone invited to the series.
                let Some(main) = local.main() else {
                    return Err(ItipError::SenderIsNotParticipant(sender.clone()));
                };
                let Some(stored) = main.attendee(sender) else {
                    return Err(ItipError::SenderIsNotParticipant(sender.clone()));
                };
                let InstanceId::Recurrence { timestamp, .. } = id else {
                    continue;
                };
                let Some(at) = push_instance(&mut copy, main.comp_id, *timestamp) else {
                    continue;
                };
                let Some(comp) = copy.components.get_mut(at as usize) else {
                    continue;
                };
                let before = comp.entries.clone();
                apply_answer(comp, stored, replied, &m.request_status);
                apply_delegates_and_progress(comp, main, m, replied, is_todo);
                if comp.entries == before {
                    // The answer is the series' answer: no override needed.
                    copy.remove_component_ids(&[at]);
                }
            }
        }
    }
    finish(copy, local.cal, InboundAction::Updated, refused)
}

/// Finds the stored entry of `stored` inside `comp` (it is the same line, by position
/// among the ATTENDEE lines with that address).
fn entry_mut<'c>(
    comp: &'c mut ICalendarComponent,
    address: &CalAddress,
) -> Option<&'c mut ICalendarEntry> {
    comp.entries.iter_mut().find(|e| {
        e.name == ICalendarProperty::Attendee && entry_address(e).as_ref() == Some(address)
    })
}

/// Copies the answer (PARTSTAT, RSVP, DELEGATED-TO) and the delivery status onto the
/// stored ATTENDEE line, leaving its other parameters as they were.
/// The rest of an answer, after the sender's own line: the delegates the REPLY names
/// (added, or updated where `stored` already lists them) and, for a to-do, the
/// progress properties it carries.
fn apply_delegates_and_progress(
    comp: &mut ICalendarComponent,
    stored: &Instance<'_>,
    reply: &Instance<'_>,
    replied: &Attendee<'_>,
    is_todo: bool,
) {
    for delegate in &replied.delegated_to {
        let Some(in_reply) = reply.attendee(delegate) else {
            continue;
        };
        match stored.attendee(delegate) {
            None => comp.entries.push(in_reply.entry.clone()),
            Some(known) => update_delegate(comp, known, in_reply),
        }
    }
    if is_todo {
        let present: Vec<ICalendarProperty> = TODO_PROGRESS
            .iter()
            .filter(|p| reply.comp.has_property(p))
            .cloned()
            .collect();
        replace_properties(comp, reply.comp, &present);
    }
}

fn apply_answer(
    comp: &mut ICalendarComponent,
    stored: &Attendee<'_>,
    replied: &Attendee<'_>,
    request_status: &[String],
) {
    let changed = stored.partstat != replied.partstat
        || stored.rsvp != replied.rsvp
        || stored.delegated_to != replied.delegated_to
        || !request_status.is_empty();
    if !changed {
        return;
    }
    let Some(entry) = copy_params(comp, &stored.address, replied.entry, &ANSWER_PARAMS) else {
        return;
    };
    if !request_status.is_empty() {
        set_param(
            entry,
            ICalendarParameterName::ScheduleStatus,
            vec![request_status.join(",").into()],
        );
    }
}

/// The parameter that keeps an attendee's COMMENT from their REPLY on their ATTENDEE
/// line in the organizer's copy (Google Calendar's name for it): one comment per
/// attendee, so answers from several attendees do not overwrite each other.
pub const RESPONSE_COMMENT: &str = "X-RESPONSE-COMMENT";

/// Records the COMMENT of a REPLY component on the replying attendee's stored line; a
/// REPLY without COMMENT leaves an earlier one as it was.
fn record_response_comment(
    comp: &mut ICalendarComponent,
    address: &CalAddress,
    reply: &ICalendarComponent,
) {
    let Some(text) = reply
        .property(&ICalendarProperty::Comment)
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_text())
    else {
        return;
    };
    // A parameter value is one line without DQUOTE (RFC 5545 §3.1).
    let text: String = text
        .split(|c: char| c.is_control())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .replace('"', "'");
    if text.is_empty() {
        return;
    }
    if let Some(entry) = entry_mut(comp, address) {
        set_param(
            entry,
            ICalendarParameterName::Other(RESPONSE_COMMENT.into()),
            vec![text.into()],
        );
    }
}

/// The parameters an attendee's answer in a REPLY sets on their stored line.
const ANSWER_PARAMS: [ICalendarParameterName; 3] = [
    ICalendarParameterName::Partstat,
    ICalendarParameterName::Rsvp,
    ICalendarParameterName::DelegatedTo,
];

/// The parameters a REPLY states for a delegate: their delegation and answer.
const DELEGATE_PARAMS: [ICalendarParameterName; 6] = [
    ICalendarParameterName::DelegatedTo,
    ICalendarParameterName::DelegatedFrom,
    ICalendarParameterName::Partstat,
    ICalendarParameterName::Rsvp,
    ICalendarParameterName::ScheduleStatus,
    ICalendarParameterName::Role,
];

/// Sets each parameter in `names` on the line of `address` in `comp` to what `from` says
/// (removing it where `from` has none), leaving the other parameters where they were;
/// the line, or `None` when `comp` has no line for `address`.
fn copy_params<'c>(
    comp: &'c mut ICalendarComponent,
    address: &CalAddress,
    from: &ICalendarEntry,
    names: &[ICalendarParameterName],
) -> Option<&'c mut ICalendarEntry> {
    let entry = entry_mut(comp, address)?;
    for name in names {
        set_param(
            entry,
            name.clone(),
            from.parameters(name).cloned().collect(),
        );
    }
    Some(entry)
}

/// A delegate named in a REPLY: their delegation and answer as the reply states them.
fn update_delegate(comp: &mut ICalendarComponent, known: &Attendee<'_>, in_reply: &Attendee<'_>) {
    if known.entry == in_reply.entry {
        return;
    }
    copy_params(comp, &known.address, in_reply.entry, &DELEGATE_PARAMS);
}

/// The organizer turns down an attendee's COUNTER: a DECLINECOUNTER built from the
/// organizer's current copy, addressed to the attendee who proposed.
pub fn decline_counter(
    stored: &ICalendar,
    proposer: &CalAddress,
    ctx: &Context<'_>,
) -> Result<ItipMessage, ItipError> {
    let local = Snapshot::new(stored, ctx.account)?;
    if !local.organizer.is_local {
        return Err(ItipError::NotOrganizer);
    }
    let instance: &Instance<'_> = local
        .main()
        .or_else(|| local.instances.values().next())
        .ok_or(ItipError::NothingToSend)?;
    if instance.attendee(proposer).is_none() {
        return Err(ItipError::SenderIsNotParticipant(proposer.clone()));
    }
    let tree = organizer_component(
        local.cal,
        instance,
        &local.uid,
        instance.sequence,
        ctx.now,
        false,
    );
    Ok(ItipMessage {
        calendar: MessageCalendar::build(
            Some(&ICalendarMethod::Declinecounter),
            vec![tree],
            local.cal,
            Timezones::IfUsed,
        ),
        method: ICalendarMethod::Declinecounter,
        from: local.organizer.address.clone(),
        to: vec![proposer.clone()],
        summary: MessageSummary::DeclineCounter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::itip::ReplyDetails;

    const SERIES: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n\
        BEGIN:VEVENT\r\nUID:th\r\nSEQUENCE:1\r\nDTSTAMP:20300101T090000Z\r\n\
        DTSTART;TZID=Europe/Berlin:20300103T100000\r\nDTEND;TZID=Europe/Berlin:20300103T110000\r\n\
        RRULE:FREQ=WEEKLY;COUNT=20\r\nSUMMARY:Planning\r\n\
        ORGANIZER:mailto:o@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:o@example.com\r\n\
        ATTENDEE;RSVP=TRUE:mailto:a@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    fn reply(rids: &[&str]) -> ICalendar {
        let mut text = String::from(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nMETHOD:REPLY\r\n",
        );
        for rid in rids {
            text.push_str(&format!(
                "BEGIN:VEVENT\r\nUID:th\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:1\r\n\
                 RECURRENCE-ID;TZID=Europe/Berlin:{rid}\r\nORGANIZER:mailto:o@example.com\r\n\
                 ATTENDEE;PARTSTAT=DECLINED:mailto:a@example.net\r\nEND:VEVENT\r\n"
            ));
        }
        text.push_str("END:VCALENDAR\r\n");
        ICalendar::parse(&text).expect("parses")
    }

    fn receive_as_organizer(itip: &ICalendar) -> Result<InboundOutcome, ItipError> {
        receive_as_organizer_of(SERIES, itip)
    }

    /// `itip` from a@example.net received by the organizer of the stored `series`.
    fn receive_as_organizer_of(
        series: &str,
        itip: &ICalendar,
    ) -> Result<InboundOutcome, ItipError> {
        let stored = ICalendar::parse(series).expect("parses");
        let me = [CalAddress::parse("o@example.com").expect("address")];
        let ctx = Context {
            account: &me,
            now: 0,
            reply_details: ReplyDetails::Full,
        };
        let sender = CalAddress::parse("a@example.net").expect("address");
        receive(itip, &sender, Some(&stored), &ctx)
    }

    /// A REPLY for a Thursday and a Friday of a Thursday series: the Thursday is
    /// recorded, the Friday refused, and the outcome names the Friday.
    #[test]
    fn the_verdict_names_the_refused_occurrence_and_the_rest_applies() {
        let outcome = receive_as_organizer(&reply(&["20300110T100000", "20300111T100000"]))
            .expect("partly applied");
        assert_eq!(
            outcome.refused,
            vec![Refused {
                recurrence_id: "TZID=Europe/Berlin:20300111T100000".into(),
                error: ItipError::InvalidRecurrenceId,
            }]
        );
        let copy = outcome.copy.expect("the Thursday was recorded").to_string();
        assert!(
            copy.contains("RECURRENCE-ID;TZID=Europe/Berlin:20300110T100000"),
            "{copy}"
        );
        assert!(!copy.contains("20300111T100000"), "{copy}");
    }

    /// Answering one week as the series is already answered adds nothing.
    #[test]
    fn an_occurrence_answered_as_the_series_needs_no_override() {
        let series = SERIES.replace(
            "ATTENDEE;RSVP=TRUE:mailto:a@example.net",
            "ATTENDEE;PARTSTAT=DECLINED:mailto:a@example.net",
        );
        let outcome =
            receive_as_organizer_of(&series, &reply(&["20300110T100000"])).expect("taken");
        assert_eq!(outcome.action, InboundAction::Unchanged);
        assert!(outcome.copy.is_none());
    }

    #[test]
    fn a_reply_naming_only_non_occurrences_is_refused() {
        let refused = receive_as_organizer(&reply(&["20300111T100000"]));
        assert_eq!(refused, Err(ItipError::InvalidRecurrenceId));
    }
}
