//! The organizer's side: what a local organizer's create, change or delete sends.
//!
//! Creation invites everyone who has not answered. A change is compared instance by
//! instance with the last processed version: attendees of a changed or newly overridden
//! instance get a REQUEST with its RECURRENCE-ID (never an ADD), removed attendees,
//! removed and newly cancelled instances a CANCEL. A recipient touched in the master
//! gets the whole event instead of pieces. STATUS:CANCELLED on the whole item, and
//! deletion, cancel it for everyone still taking part. An answer recorded in the
//! organizer's copy is no change; a reschedule resets the answers it invalidates.

use super::address::CalAddress;
use super::error::ItipError;
use super::export::{
    cancel_component, organizer_component, ComponentTree, MessageCalendar, Timezones,
};
use super::history::SentSequences;
use super::message::{FieldChange, ItipMessage, MessageSummary, Method};
use super::reschedule;
use super::snapshot::{Instance, InstanceId, Snapshot, TrackedEntry};
use super::{ChangeOutcome, Context};
use calcard::icalendar::{
    ICalendar, ICalendarComponentType, ICalendarEntry, ICalendarMethod, ICalendarParameterName,
    ICalendarProperty, ICalendarStatus, ICalendarValue,
};
use std::collections::{BTreeMap, BTreeSet};

/// A new item organized by the account: one REQUEST to every attendee not yet answered.
pub fn create(
    new: &Snapshot<'_>,
    ctx: &Context<'_>,
    sent: &SentSequences,
) -> Result<ChangeOutcome, ItipError> {
    if !new.organizer.is_local {
        return Err(ItipError::NotOrganizer);
    }
    // An item written already cancelled invites nobody (a REQUEST may not say
    // STATUS:CANCELLED, RFC 5546 §3.2.2).
    if new.main().is_some_and(is_cancelled) {
        return Err(ItipError::NothingToSend);
    }
    let to: BTreeSet<CalAddress> = new
        .instances
        .values()
        .filter(|i| !is_cancelled(i))
        .flat_map(|i| i.attendees.iter())
        .filter(|a| a.send_invite())
        .map(|a| a.address.clone())
        .collect();
    let mut bumped = BTreeMap::new();
    // A UID imipd sent before (an event deleted and written again, a restored backup)
    // goes out above what its attendees already hold.
    let sequence =
        |id: &InstanceId, n: &Instance<'_>| above_sent(n.sequence + 1, true, sent.of(id));
    let trees = full_request_trees(new, ctx, sequence, &mut bumped, true);
    if to.is_empty() || trees.is_empty() {
        return Err(ItipError::NothingToSend);
    }
    let message = message(
        new,
        &new.organizer.address,
        ICalendarMethod::Request,
        to,
        trees,
        Timezones::All,
        MessageSummary::Invite,
    );
    Ok(ChangeOutcome {
        messages: vec![message],
        updated: finalize(new.cal, &bumped),
    })
}

/// The organizer changed an item imipd already scheduled.
///
/// A reschedule first resets the answers of the instances it moves (RFC 6638 §3.2.8,
/// see [`super::reschedule`]); the messages and the stored copy both carry the reset.
pub fn update(
    old: &Snapshot<'_>,
    new: &Snapshot<'_>,
    ctx: &Context<'_>,
    sent: &SentSequences,
) -> Result<ChangeOutcome, ItipError> {
    if old.organizer.address != new.organizer.address {
        return Err(ItipError::OrganizerMismatch);
    }
    if old.main().is_some() != new.main().is_some() {
        return Err(ItipError::CannotModifyInstance);
    }
    let moved = reschedule::rescheduled(old, new);
    if moved.is_empty() {
        let (messages, bumped) = changes(old, new, ctx, sent)?;
        return Ok(ChangeOutcome {
            messages,
            updated: finalize(new.cal, &bumped),
        });
    }
    let mut reset = reschedule::reset_answers(new.cal, &moved, ctx.account);
    let reset_snapshot = Snapshot::new(&reset, ctx.account)?;
    let result = changes(old, &reset_snapshot, ctx, sent);
    drop(reset_snapshot);
    match result {
        // The reset copy is finalized where it is: copying it again cost as much as
        // a tenth of the update.
        Ok((messages, bumped)) => {
            let updated =
                (finalize_in_place(&mut reset, &bumped) || reset != *new.cal).then_some(reset);
            Ok(ChangeOutcome { messages, updated })
        }
        // Nobody to tell, but the copy must still not show answers for the old time.
        Err(ItipError::NothingToSend) if reset != *new.cal => Ok(ChangeOutcome {
            messages: Vec::new(),
            updated: Some(reset),
        }),
        Err(err) => Err(err),
    }
}

/// The SEQUENCE an instance goes out with. `increment`: the change is significant.
fn next_sequence(increment: bool, stored: Option<i64>, written: i64, series_floor: i64) -> i64 {
    match (increment, stored) {
        // The client already moved SEQUENCE forward: don't bump it twice.
        (true, Some(o)) if written > o => written,
        // Never below what the attendees already hold: a client may write back a
        // stale copy with a lower SEQUENCE, and attendees would refuse the update.
        (true, Some(o)) => (written + 1).max(o),
        // A new override the client already raised above the series: as written.
        (true, None) if written > series_floor => written,
        // A new occurrence (or one added back after it was cancelled): never below
        // what the series has reached, which includes the SEQUENCE of any CANCEL sent
        // for a removed occurrence (see below).
        (true, None) => (written + 1).max(series_floor),
        (false, Some(o)) => written.max(o),
        (false, None) => written,
    }
}

/// `sequence`, but never below what imipd already sent for the instance (`sent`):
/// above it for a significant change, at least equal otherwise. The file may say less
/// (no SEQUENCE, a lower one, a restored backup); the attendees hold what was sent.
fn above_sent(sequence: i64, increment: bool, sent: Option<i64>) -> i64 {
    match sent {
        Some(s) if increment => sequence.max(s + 1),
        Some(s) => sequence.max(s),
        None => sequence,
    }
}

/// Records that instance `comp_id` went out with `sequence` (keeping the highest).
fn raise(bumped: &mut BTreeMap<u32, i64>, comp_id: u32, sequence: i64) {
    let entry = bumped.entry(comp_id).or_insert(sequence);
    *entry = (*entry).max(sequence);
}

/// What a change sends, and the SEQUENCE each component of the copy must be raised
/// to (by component id, for [`finalize`]).
type Sending = (Vec<ItipMessage>, BTreeMap<u32, i64>);

/// The messages for a change from `old` to `new` (answers already reset).
fn changes(
    old: &Snapshot<'_>,
    new: &Snapshot<'_>,
    ctx: &Context<'_>,
    sent: &SentSequences,
) -> Result<Sending, ItipError> {
    let series_floor = old
        .main()
        .map_or(0, |m| m.sequence)
        .max(sent.get(None).unwrap_or(0));
    let sequence_of = |increment: bool, id: &InstanceId, n: &Instance<'_>| -> i64 {
        let stored = old.instances.get(id).map(|o| o.sequence);
        let next = next_sequence(increment, stored, n.sequence, series_floor);
        above_sent(next, increment, sent.of(id))
    };

    // STATUS:CANCELLED on the whole item: a CANCEL to everyone (RFC 5546 §3.2.5).
    if let Some(main) = new.main().filter(|m| is_cancelled(m)) {
        if old.main().is_some_and(is_cancelled) {
            // Already cancelled: there is no meeting left to update.
            return Err(ItipError::NothingToSend);
        }
        let to: BTreeSet<CalAddress> =
            update_recipients(old.instances.values().chain(new.instances.values()));
        if to.is_empty() {
            return Err(ItipError::NothingToSend);
        }
        // Above every SEQUENCE any instance went out with: a receiver that orders
        // by SEQUENCE per instance must not keep an occurrence updated later.
        let sequence =
            sequence_of(true, &InstanceId::Main, main).max(series_cancel_floor(old, sent));
        let mut bumped = BTreeMap::new();
        raise(&mut bumped, main.comp_id, sequence);
        let tree = cancel_component(main.comp, sequence, ctx.now, None);
        let cancel = message(
            new,
            &new.organizer.address,
            ICalendarMethod::Cancel,
            to,
            vec![tree],
            Timezones::IfUsed,
            MessageSummary::Cancel,
        );
        return Ok((vec![cancel], bumped));
    }

    let mut increment = false;
    let mut items: BTreeMap<CalAddress, BTreeMap<InstanceId, Method>> = BTreeMap::new();
    let mut put = |who: &CalAddress, id: InstanceId, method: Method| {
        items.entry(who.clone()).or_default().insert(id, method);
    };
    let ids = old.instance_ids_with(new);
    for id in &ids {
        match (old.instances.get(id), new.instances.get(id)) {
            (Some(o), Some(n)) if is_cancelled(n) => {
                // An occurrence cancelled now is a CANCEL for it (never a REQUEST with
                // STATUS:CANCELLED); one cancelled before has nothing more to say.
                if !is_cancelled(o) {
                    increment = true;
                    for a in o.attendees.iter().chain(&n.attendees) {
                        if a.send_update() {
                            put(&a.address, *id, ICalendarMethod::Cancel);
                        }
                    }
                }
            }
            (Some(o), Some(n)) => {
                let changed: BTreeSet<&TrackedEntry> =
                    o.tracked.symmetric_difference(&n.tracked).collect();
                // Every update sent goes up (see docs/scheduling.md, "SEQUENCE"): RFC
                // 5546 §2.1.4 requires it for significant changes and allows it for the
                // rest, and Google and iOS ignore an update whose SEQUENCE did not go up.
                if !changed.is_empty() {
                    increment = true;
                }
                // An answer recorded in the organizer's copy is no change to announce.
                let attendees_differ =
                    o.attendee_keys_without_answers() != n.attendee_keys_without_answers();
                if attendees_differ {
                    increment = true;
                    for a in o.attendees.iter().filter(|a| a.send_update()) {
                        if n.attendee(&a.address).is_none() {
                            put(&a.address, *id, ICalendarMethod::Cancel);
                        }
                    }
                }
                if !changed.is_empty() || attendees_differ {
                    for a in n.attendees.iter().filter(|a| a.send_update()) {
                        put(&a.address, *id, ICalendarMethod::Request);
                    }
                }
            }
            (None, Some(n)) => {
                // The organizer's client (or imipd applying a REPLY) recording one
                // attendee's answer for one occurrence: the occurrence is the master's,
                // only answers differ. Nothing to announce (RFC 5546 §2.1.4).
                let plain = match (id, new.main()) {
                    (InstanceId::Recurrence { timestamp, .. }, Some(main)) => {
                        !is_cancelled(n)
                            && reschedule::is_master_instance(n, *timestamp, main, new.cal)
                    }
                    _ => false,
                };
                if plain {
                    continue;
                }
                increment = true;
                // A new override of an existing occurrence is a REQUEST with its
                // RECURRENCE-ID: RFC 5546 allows no RECURRENCE-ID in ADD, and major
                // clients implement no ADD. (New occurrences come with a new RDATE,
                // a change of the master: those recipients get the whole item.)
                let method = if is_cancelled(n) {
                    ICalendarMethod::Cancel
                } else {
                    ICalendarMethod::Request
                };
                // People already in the series hear about a new occurrence even if they
                // accepted the series; newcomers only while they have not answered.
                let in_series =
                    |a: &CalAddress| new.main().is_some_and(|m| m.attendee(a).is_some());
                let wanted = |a: &&super::snapshot::Attendee<'_>| {
                    a.send_invite() || (a.send_update() && in_series(&a.address))
                };
                for a in n.attendees.iter().filter(wanted) {
                    put(&a.address, *id, method.clone());
                }
            }
            // A cancelled occurrence whose override is gone: its attendees hold it
            // as cancelled (or as an EXDATE) already; another CANCEL says nothing new.
            (Some(o), None) if is_cancelled(o) => {}
            (Some(o), None) => {
                increment = true;
                for a in o.attendees.iter().filter(|a| a.send_update()) {
                    put(&a.address, *id, ICalendarMethod::Cancel);
                }
            }
            (None, None) => {}
        }
    }

    // Route: the whole event to whoever is touched in the master (or would get mixed
    // methods); the changed pieces to everyone else.
    let mut wants_full = false;
    let mut partial: BTreeMap<(MethodKey, Vec<InstanceId>), Vec<CalAddress>> = BTreeMap::new();
    for (rcpt, per_instance) in &items {
        let mut methods = per_instance.values().map(MethodKey::from);
        let first = methods.next();
        let mixed = first.as_ref().is_some_and(|f| methods.any(|m| &m != f));
        if per_instance.get(&InstanceId::Main) == Some(&ICalendarMethod::Request) || mixed {
            wants_full = true;
        } else if let Some(method) = first {
            let ids = per_instance.keys().copied().collect();
            partial.entry((method, ids)).or_default().push(rcpt.clone());
        }
    }

    let mut messages = Vec::new();
    let mut bumped = BTreeMap::new();
    let mut full_to = BTreeSet::new();
    if wants_full {
        full_to = update_recipients(new.instances.values());
        let sequence = |id: &InstanceId, n: &Instance<'_>| sequence_of(increment, id, n);
        let trees = full_request_trees(new, ctx, sequence, &mut bumped, false);
        if !full_to.is_empty() && !trees.is_empty() {
            let summary = MessageSummary::Update {
                changes: field_changes(old, new),
            };
            messages.push(message(
                new,
                &new.organizer.address,
                ICalendarMethod::Request,
                full_to.clone(),
                trees,
                Timezones::All,
                summary,
            ));
        }
    }

    for ((method, ids), rcpts) in partial {
        let method = method.0;
        let to: BTreeSet<CalAddress> = if method == ICalendarMethod::Cancel {
            rcpts.into_iter().collect()
        } else {
            // Whoever got the whole event already has these instances.
            rcpts.into_iter().filter(|r| !full_to.contains(r)).collect()
        };
        if to.is_empty() {
            continue;
        }
        let mut trees = Vec::new();
        for id in &ids {
            match (method.clone(), old.instances.get(id), new.instances.get(id)) {
                (ICalendarMethod::Cancel, o, Some(n)) => {
                    // The instance stays in the copy: it keeps the SEQUENCE its CANCEL
                    // carried, so that no later message goes out below it.
                    // Above what the cancelled attendees hold, even when the client
                    // wrote a stale SEQUENCE; kept in the copy (see `raise`).
                    let sequence = sequence_of(true, id, n).max(o.map_or(0, |o| o.sequence + 1));
                    raise(&mut bumped, n.comp_id, sequence);
                    let source = match o {
                        Some(o) if !is_cancelled(n) => o.comp,
                        _ => n.comp,
                    };
                    let only: Vec<CalAddress> = to.iter().cloned().collect();
                    trees.push(cancel_component(source, sequence, ctx.now, Some(&only)));
                }
                (ICalendarMethod::Cancel, Some(o), None) => {
                    let sequence = above_sent(o.sequence + 1, true, sent.of(id));
                    let only: Vec<CalAddress> = to.iter().cloned().collect();
                    trees.push(cancel_component(o.comp, sequence, ctx.now, Some(&only)));
                    // An occurrence removed from the copy leaves nowhere to keep the
                    // SEQUENCE its CANCEL carried: the master keeps it, so that adding
                    // the occurrence back later does not go out below the CANCEL.
                    if let Some(main) = new.main() {
                        raise(&mut bumped, main.comp_id, sequence.max(main.sequence));
                    }
                }
                (_, _, Some(n)) => {
                    let sequence = sequence_of(increment, id, n);
                    if sequence != n.sequence {
                        raise(&mut bumped, n.comp_id, sequence);
                    }
                    trees.push(organizer_component(
                        new.cal, n, &new.uid, sequence, ctx.now, false,
                    ));
                }
                _ => {}
            }
        }
        if trees.is_empty() {
            continue;
        }
        let summary = if method == ICalendarMethod::Cancel {
            MessageSummary::Cancel
        } else {
            MessageSummary::Update {
                changes: field_changes(old, new),
            }
        };
        let source = if method == ICalendarMethod::Cancel {
            old
        } else {
            new
        };
        messages.push(message(
            source,
            &new.organizer.address,
            method,
            to,
            trees,
            Timezones::IfUsed,
            summary,
        ));
    }

    if messages.is_empty() {
        // Nothing to send, but a stale copy (a second device, an old cache) may have
        // written a lower SEQUENCE than the attendees hold: put it back, or the next
        // real change would go out below it and be refused as out of date.
        for (id, n) in &new.instances {
            let held = old.instances.get(id).map(|o| o.sequence).max(sent.of(id));
            if let Some(held) = held.filter(|h| n.sequence < *h) {
                raise(&mut bumped, n.comp_id, held);
            }
        }
        if bumped.is_empty() {
            return Err(ItipError::NothingToSend);
        }
    }
    Ok((messages, bumped))
}

/// The components of a full REQUEST: every instance with attendees, SEQUENCE as
/// `sequence_of` says (recorded in `bumped` where it moved), VALARMs only in a first
/// invitation (`with_alarms`). Occurrences cancelled in
/// the copy are not sent as components with STATUS:CANCELLED (RFC 5546 allows only
/// TENTATIVE or CONFIRMED in a REQUEST): the master excludes them with EXDATE instead,
/// so that an attendee's copy drops them rather than bringing them back.
fn full_request_trees(
    new: &Snapshot<'_>,
    ctx: &Context<'_>,
    sequence_of: impl Fn(&InstanceId, &Instance<'_>) -> i64,
    bumped: &mut BTreeMap<u32, i64>,
    with_alarms: bool,
) -> Vec<ComponentTree> {
    let mut trees = Vec::new();
    let mut excluded = Vec::new();
    let mut main_tree = None;
    for (id, n) in &new.instances {
        if n.attendees.is_empty() {
            continue;
        }
        if *id != InstanceId::Main && is_cancelled(n) {
            if let Some(rid) = n.comp.property(&ICalendarProperty::RecurrenceId) {
                excluded.push(rid.clone());
            }
            continue;
        }
        let sequence = sequence_of(id, n);
        if sequence != n.sequence {
            raise(bumped, n.comp_id, sequence);
        }
        let tree = organizer_component(new.cal, n, &new.uid, sequence, ctx.now, with_alarms);
        if *id == InstanceId::Main {
            main_tree = Some(trees.len());
        }
        trees.push(tree);
    }
    if let Some(main) = main_tree.and_then(|i| trees.get_mut(i)) {
        for rid in excluded {
            let mut exdate = rid;
            exdate.name = ICalendarProperty::Exdate;
            exdate
                .params
                .retain(|p| p.name != ICalendarParameterName::Range);
            main.component.entries.push(exdate);
        }
    }
    trees
}

/// The organizer deleted the item, or it lost its scheduling information: one CANCEL,
/// built from the master, to everyone who has not declined.
pub fn cancel(
    old: &Snapshot<'_>,
    ctx: &Context<'_>,
    sent: &SentSequences,
) -> Result<ChangeOutcome, ItipError> {
    if old.component_type == ICalendarComponentType::VFreebusy {
        return Err(ItipError::NothingToSend);
    }
    let to: BTreeSet<CalAddress> = update_recipients(old.instances.values());
    let Some(instance) = old.main().or_else(|| old.instances.values().next()) else {
        return Err(ItipError::NothingToSend);
    };
    if to.is_empty() {
        return Err(ItipError::NothingToSend);
    }
    let sequence = (instance.sequence + 1).max(series_cancel_floor(old, sent));
    let tree = cancel_component(instance.comp, sequence, ctx.now, None);
    Ok(ChangeOutcome {
        messages: vec![message(
            old,
            &old.organizer.address,
            ICalendarMethod::Cancel,
            to,
            vec![tree],
            Timezones::IfUsed,
            MessageSummary::Cancel,
        )],
        updated: None,
    })
}

/// The lowest SEQUENCE a CANCEL of the whole series may carry: above every instance
/// of the copy and above every SEQUENCE imipd sent for any instance (Outlook's rule: a
/// cancellation above every earlier request).
fn series_cancel_floor(old: &Snapshot<'_>, sent: &SentSequences) -> i64 {
    let in_copy = old
        .instances
        .values()
        .map(|i| i.sequence)
        .max()
        .unwrap_or(0);
    in_copy.max(sent.highest().unwrap_or(0)) + 1
}

/// Orders methods for grouping (calcard's method type has no `Ord`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct MethodKey(Method);

impl From<&Method> for MethodKey {
    fn from(method: &Method) -> Self {
        MethodKey(method.clone())
    }
}

impl PartialOrd for MethodKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MethodKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        super::message::method_name(&self.0).cmp(super::message::method_name(&other.0))
    }
}

/// Everyone in `instances` who takes updates: the recipients of a whole-object message.
fn update_recipients<'i, 'a: 'i>(
    instances: impl Iterator<Item = &'i Instance<'a>>,
) -> BTreeSet<CalAddress> {
    instances
        .flat_map(|i| i.attendees.iter())
        .filter(|a| a.send_update())
        .map(|a| a.address.clone())
        .collect()
}

fn is_cancelled(instance: &Instance<'_>) -> bool {
    matches!(instance.comp.status(), Some(ICalendarStatus::Cancelled))
}

/// A message from `from` built from `source`'s calendar (its time zones).
fn message(
    source: &Snapshot<'_>,
    from: &CalAddress,
    method: Method,
    to: BTreeSet<CalAddress>,
    trees: Vec<ComponentTree>,
    timezones: Timezones,
    summary: MessageSummary,
) -> ItipMessage {
    ItipMessage {
        calendar: MessageCalendar::build(Some(&method), trees, source.cal, timezones),
        method,
        from: from.clone(),
        to: to.into_iter().collect(),
        summary,
    }
}

/// The stored copy after sending: SEQUENCE raised where the messages raised it, and
/// SCHEDULE-FORCE-SEND removed (it asks for one send, not every send). `None` when that
/// changes nothing.
pub fn finalize(cal: &ICalendar, bumped: &BTreeMap<u32, i64>) -> Option<ICalendar> {
    let mut out = cal.clone();
    finalize_in_place(&mut out, bumped).then_some(out)
}

/// [`finalize`] on a copy the caller owns; true when it changed something.
fn finalize_in_place(cal: &mut ICalendar, bumped: &BTreeMap<u32, i64>) -> bool {
    let mut changed = false;
    for (id, comp) in cal.components.iter_mut().enumerate() {
        if !comp.component_type.is_scheduling_object() {
            continue;
        }
        for entry in comp.entries.iter_mut() {
            if matches!(
                entry.name,
                ICalendarProperty::Attendee | ICalendarProperty::Organizer
            ) {
                let before = entry.params.len();
                entry
                    .params
                    .retain(|p| p.name != ICalendarParameterName::ScheduleForceSend);
                changed |= entry.params.len() != before;
            }
        }
        if let Some(sequence) = bumped.get(&(id as u32)) {
            changed |= set_sequence(&mut comp.entries, *sequence);
        }
    }
    changed
}

/// Replaces (or adds) the SEQUENCE of a component; true when that changed it.
pub fn set_sequence(entries: &mut Vec<ICalendarEntry>, sequence: i64) -> bool {
    let value = ICalendarValue::Integer(sequence);
    match entries
        .iter_mut()
        .find(|e| e.name == ICalendarProperty::Sequence)
    {
        Some(entry) if entry.values.len() == 1 && entry.values.first() == Some(&value) => false,
        Some(entry) => {
            entry.values = vec![value];
            true
        }
        None => {
            entries.push(ICalendarEntry::new(ICalendarProperty::Sequence).with_value(value));
            true
        }
    }
}

/// What a person would notice changed in the master (or, failing that, the first
/// changed instance): property, old text, new text.
fn field_changes(old: &Snapshot<'_>, new: &Snapshot<'_>) -> Vec<FieldChange> {
    let pairs = old
        .instances
        .iter()
        .filter_map(|(id, o)| new.instances.get(id).map(|n| (o, n)))
        .find(|(o, n)| o.tracked != n.tracked);
    let Some((o, n)) = pairs else {
        return Vec::new();
    };
    let properties: BTreeSet<&ICalendarProperty> = o
        .tracked
        .symmetric_difference(&n.tracked)
        .map(|t| &t.property)
        .collect();
    properties
        .into_iter()
        .map(|property| FieldChange {
            property: property.as_str().to_string(),
            old: value_text(o, property),
            new: value_text(n, property),
        })
        .collect()
}

fn value_text(instance: &Instance<'_>, property: &ICalendarProperty) -> Option<String> {
    FieldChange::value_text(&instance.comp.properties(property).collect::<Vec<_>>())
}
