//! The attendee's side: what a local attendee's edit or delete sends to the organizer.
//!
//! An attendee may answer (PARTSTAT), report progress on a to-do, decline single
//! occurrences (by EXDATE or by removing an override), accept single occurrences (by
//! adding an override) and delegate. Changes only the organizer may make are refused
//! rather than silently passed on.

use super::address::CalAddress;
use super::error::ItipError;
use super::export::{
    decline_component, delegation_partners, reply_component, set_param, whole_request,
    ComponentTree, MessageCalendar, Timezones, TODO_PROGRESS,
};
use super::message::{ItipMessage, MessageSummary};
use super::organizer::finalize;
use super::snapshot::{entry_address, Attendee, Instance, InstanceId, Snapshot, TrackedEntry};
use super::time::TimeResolver;
use super::{ChangeOutcome, Context};
use calcard::icalendar::{
    ICalendarComponentType, ICalendarEntry, ICalendarMethod, ICalendarParameterName,
    ICalendarParameterValue, ICalendarParticipationStatus, ICalendarProperty, ICalendarValue,
};
use std::collections::{BTreeMap, BTreeSet};

/// Tracked properties an attendee may change in their own copy.
fn attendee_may_change(component: &ICalendarComponentType, property: &ICalendarProperty) -> bool {
    match property {
        ICalendarProperty::Exdate
        | ICalendarProperty::Summary
        | ICalendarProperty::Description
        | ICalendarProperty::Comment => true,
        p => *component == ICalendarComponentType::VTodo && TODO_PROGRESS.contains(p),
    }
}

/// Collects the components of one REPLY and where it goes.
struct ReplyBuilder {
    trees: Vec<ComponentTree>,
    done: BTreeSet<InstanceId>,
    to: BTreeSet<CalAddress>,
    partstat: ICalendarParticipationStatus,
    /// How many of `trees` decline an occurrence the attendee excluded by EXDATE: when
    /// the REPLY also answers the series, that answer names the message.
    exdate_trees: usize,
}

impl ReplyBuilder {
    fn new(organizer: &CalAddress) -> Self {
        ReplyBuilder {
            trees: Vec::new(),
            done: BTreeSet::new(),
            to: BTreeSet::from([organizer.clone()]),
            partstat: ICalendarParticipationStatus::NeedsAction,
            exdate_trees: 0,
        }
    }

    /// Also tells an external delegator who delegated to `me`.
    fn add_delegator(&mut self, instance: &Instance<'_>, me: &CalAddress, declining: bool) {
        for partner in delegation_partners(instance, me) {
            if partner.delegated_to.contains(me) && (declining || partner.send_update()) {
                self.to.insert(partner.address.clone());
            }
        }
    }

    /// Answers instance `id` with `me`'s participation as it now stands.
    fn answer(
        &mut self,
        id: InstanceId,
        instance: &Instance<'_>,
        attendee: &Attendee<'_>,
        me: &CalAddress,
        uid: &str,
        ctx: &Context<'_>,
    ) {
        self.trees.push(reply_component(
            instance,
            attendee,
            uid,
            ctx.now,
            ctx.reply_details,
        ));
        self.done.insert(id);
        self.partstat = attendee
            .partstat
            .clone()
            .unwrap_or(ICalendarParticipationStatus::NeedsAction);
        self.add_delegator(instance, me, false);
    }

    /// Declines instance `id` (an instance the attendee's copy no longer has).
    fn decline(
        &mut self,
        id: InstanceId,
        instance: &Instance<'_>,
        organizer: &CalAddress,
        me: &CalAddress,
        uid: &str,
        ctx: &Context<'_>,
    ) {
        self.trees.push(decline_component(
            instance.comp,
            organizer,
            me,
            delegator_entry(instance, me),
            uid,
            instance.sequence,
            ctx.now,
            None,
            ctx.reply_details,
        ));
        self.done.insert(id);
        self.add_delegator(instance, me, true);
    }

    fn into_message(self, from: &CalAddress, snap: &Snapshot<'_>) -> Option<ItipMessage> {
        if self.trees.is_empty() {
            return None;
        }
        Some(ItipMessage {
            calendar: MessageCalendar::build(
                Some(&ICalendarMethod::Reply),
                self.trees,
                snap.cal,
                Timezones::IfUsed,
            ),
            method: ICalendarMethod::Reply,
            from: from.clone(),
            to: self.to.into_iter().collect(),
            summary: MessageSummary::Reply {
                partstat: self.partstat,
            },
        })
    }
}

/// The local attendee in an instance, by the address found in the old version.
fn me_in<'a, 'b>(instance: &'b Instance<'a>, me: &CalAddress) -> Option<&'b Attendee<'a>> {
    instance.attendee(me)
}

/// A local attendee edited their copy.
pub fn update(
    old: &Snapshot<'_>,
    new: &Snapshot<'_>,
    ctx: &Context<'_>,
) -> Result<ChangeOutcome, ItipError> {
    if old.organizer.address != new.organizer.address {
        return Err(ItipError::OrganizerMismatch);
    }
    let me = old
        .local_address()
        .cloned()
        .ok_or(ItipError::NotOrganizerNorAttendee)?;
    let organizer = &new.organizer.address;
    let is_todo = new.component_type == ICalendarComponentType::VTodo;
    let mut reply = ReplyBuilder::new(organizer);
    let mut delegates = BTreeSet::new();

    if old.main().is_some() != new.main().is_some() {
        return Err(ItipError::CannotModifyInstance);
    }

    let ids = old.instance_ids_with(new);
    for id in &ids {
        match (old.instances.get(id), new.instances.get(id)) {
            (Some(o), Some(n)) => {
                let Some(old_me) = me_in(o, &me) else {
                    continue;
                };
                let new_me = me_in(n, &me).ok_or(ItipError::CannotModifyAddress)?;
                check_forbidden_changes(&new.component_type, o, n)?;
                let progress_changed = is_todo
                    && TODO_PROGRESS
                        .iter()
                        .any(|p| tracked_of(o, p) != tracked_of(n, p));
                if new_me.server_scheduled
                    && (old_me.partstat != new_me.partstat || new_me.force_send || progress_changed)
                {
                    reply.answer(*id, n, new_me, &me, &new.uid, ctx);
                }
                // Delegates this edit added.
                for a in n
                    .attendees
                    .iter()
                    .filter(|a| a.delegated_from.contains(&me) && a.send_invite())
                {
                    let before = o
                        .attendee(&a.address)
                        .is_some_and(|b| b.delegated_from.contains(&me));
                    if !before {
                        delegates.insert(a.address.clone());
                    }
                }
                if *id == InstanceId::Main {
                    exdate_declines(o, n, new, &me, ctx, &mut reply);
                }
            }
            (None, Some(n)) => {
                let new_me = me_in(n, &me).ok_or(ItipError::CannotModifyInstance)?;
                if new_me.server_scheduled {
                    reply.answer(*id, n, new_me, &me, &new.uid, ctx);
                }
            }
            (Some(o), None) => {
                let old_me = me_in(o, &me).ok_or(ItipError::CannotModifyInstance)?;
                if old_me.server_scheduled && old_me.rsvp != Some(false) && !reply.done.contains(id)
                {
                    reply.decline(*id, o, organizer, &me, &old.uid, ctx);
                    reply.partstat = ICalendarParticipationStatus::Declined;
                }
            }
            (None, None) => {}
        }
    }

    let mut messages = Vec::new();
    if let Some(message) = reply.into_message(&me, new) {
        messages.push(message);
    }
    if !delegates.is_empty() {
        messages.push(delegation_request(new, &me, delegates, ctx));
    }
    if messages.is_empty() {
        return Err(ItipError::NothingToSend);
    }
    Ok(ChangeOutcome {
        messages,
        updated: finalize(new.cal, &BTreeMap::new()),
    })
}

/// A copy the attendee's client created already answered (an invitation imipd never
/// imported, accepted from the email): the answer goes to the organizer as if the copy
/// had arrived unanswered. A copy still unanswered sends nothing.
pub fn first_answer(new: &Snapshot<'_>, ctx: &Context<'_>) -> Result<ChangeOutcome, ItipError> {
    let unanswered = super::history::with_lines(new.cal, ICalendarProperty::Attendee, |entry| {
        if entry_address(entry).is_some_and(|a| ctx.account.contains(&a)) {
            set_param(
                entry,
                ICalendarParameterName::Partstat,
                vec![ICalendarParameterValue::Partstat(
                    ICalendarParticipationStatus::NeedsAction,
                )],
            );
        }
    });
    let old = Snapshot::new(&unanswered, ctx.account)?;
    update(&old, new, ctx)
}

/// A local attendee deleted their copy: decline every instance they had not declined.
pub fn decline(old: &Snapshot<'_>, ctx: &Context<'_>) -> Result<ChangeOutcome, ItipError> {
    let me = old
        .local_address()
        .cloned()
        .ok_or(ItipError::NotOrganizerNorAttendee)?;
    let organizer = &old.organizer.address;
    let mut reply = ReplyBuilder::new(organizer);
    reply.partstat = ICalendarParticipationStatus::Declined;
    for (id, instance) in &old.instances {
        let Some(att) = me_in(instance, &me) else {
            continue;
        };
        let answered_no = matches!(
            att.partstat,
            Some(ICalendarParticipationStatus::Declined | ICalendarParticipationStatus::Delegated)
        );
        if !att.server_scheduled || att.rsvp == Some(false) || (answered_no && !att.force_send) {
            continue;
        }
        reply.decline(*id, instance, organizer, &me, &old.uid, ctx);
    }
    let message = reply
        .into_message(&me, old)
        .ok_or(ItipError::NothingToSend)?;
    Ok(ChangeOutcome {
        messages: vec![message],
        updated: None,
    })
}

/// Refuses additions or removals of properties only the organizer may change. Value
/// changes that keep the count (a client re-encoding a date or RRULE) pass.
fn check_forbidden_changes(
    component: &ICalendarComponentType,
    o: &Instance<'_>,
    n: &Instance<'_>,
) -> Result<(), ItipError> {
    let properties: BTreeSet<&ICalendarProperty> = o
        .tracked
        .iter()
        .chain(n.tracked.iter())
        .map(|t| &t.property)
        .collect();
    for property in properties {
        if attendee_may_change(component, property) {
            continue;
        }
        if o.tracked_count(property) != n.tracked_count(property) {
            return Err(ItipError::CannotModifyProperty(
                property.as_str().to_string(),
            ));
        }
    }
    Ok(())
}

fn tracked_of<'b>(
    instance: &'b Instance<'_>,
    property: &ICalendarProperty,
) -> BTreeSet<&'b TrackedEntry> {
    instance
        .tracked
        .iter()
        .filter(|t| &t.property == property)
        .collect()
}

/// The ATTENDEE line of an external attendee who delegated to `me`.
fn delegator_entry<'a>(instance: &Instance<'a>, me: &CalAddress) -> Option<&'a ICalendarEntry> {
    instance
        .attendees
        .iter()
        .find(|a| !a.is_local && a.delegated_to.contains(me))
        .map(|a| a.entry)
}

/// EXDATEs the attendee added to the master decline those occurrences.
fn exdate_declines(
    o: &Instance<'_>,
    n: &Instance<'_>,
    new: &Snapshot<'_>,
    me: &CalAddress,
    ctx: &Context<'_>,
    reply: &mut ReplyBuilder,
) {
    let Some(new_me) = me_in(n, me) else {
        return;
    };
    if !new_me.server_scheduled || new_me.rsvp == Some(false) {
        return;
    }
    let times = TimeResolver::new(new.cal);
    let old_exdates: BTreeSet<i64> = exdates(o, &times).into_iter().map(|(ts, _)| ts).collect();
    for (timestamp, rid) in exdates(n, &times) {
        if old_exdates.contains(&timestamp) {
            continue;
        }
        let id = InstanceId::Recurrence {
            timestamp,
            this_and_future: false,
        };
        if reply.done.contains(&id) || new.instances.contains_key(&id) {
            continue;
        }
        if reply.exdate_trees == reply.trees.len() {
            reply.partstat = ICalendarParticipationStatus::Declined;
        }
        // The declined occurrence's own times (RFC 5545 3.8.4.4: with a RECURRENCE-ID,
        // DTSTART is that instance's start), not the series' first.
        let occurrence = super::occurrence::instance_at(new.cal, n.comp_id, timestamp);
        let source = occurrence.as_ref().map_or(n.comp, |tree| &tree.component);
        reply.trees.push(decline_component(
            source,
            &new.organizer.address,
            me,
            delegator_entry(n, me),
            &new.uid,
            n.sequence,
            ctx.now,
            Some(rid),
            ctx.reply_details,
        ));
        reply.exdate_trees += 1;
        reply.done.insert(id);
        reply.add_delegator(n, me, true);
    }
}

/// Each EXDATE value as (timestamp, a RECURRENCE-ID line with the same TZID).
fn exdates(instance: &Instance<'_>, times: &TimeResolver<'_>) -> Vec<(i64, ICalendarEntry)> {
    let mut out = Vec::new();
    for entry in instance.comp.properties(&ICalendarProperty::Exdate) {
        for value in &entry.values {
            let ICalendarValue::PartialDateTime(dt) = value else {
                continue;
            };
            let Some(ts) = times.timestamp(dt, entry.tz_id()) else {
                continue;
            };
            let rid = ICalendarEntry::new(ICalendarProperty::RecurrenceId)
                .with_params(entry.params.clone())
                .with_value(value.clone());
            out.push((ts, rid));
        }
    }
    out
}

/// The attendee invites the people they delegated to: the whole event, as they have it,
/// without their own reminders.
fn delegation_request(
    new: &Snapshot<'_>,
    me: &CalAddress,
    delegates: BTreeSet<CalAddress>,
    ctx: &Context<'_>,
) -> ItipMessage {
    whole_request(new, me.clone(), delegates.into_iter().collect(), ctx.now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use calcard::icalendar::ICalendar;

    const SERIES: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n\
        BEGIN:VEVENT\r\nUID:w1\r\nSEQUENCE:1\r\nDTSTAMP:20300101T090000Z\r\n\
        DTSTART:20300107T100000Z\r\nDTEND:20300107T110000Z\r\nRRULE:FREQ=WEEKLY;COUNT=4\r\n\
        SUMMARY:Weekly sync\r\nORGANIZER:mailto:o@example.com\r\n\
        ATTENDEE;PARTSTAT=ACCEPTED:mailto:o@example.com\r\n\
        ATTENDEE;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:a@example.net\r\nEND:VEVENT\r\n";

    fn context(account: &[CalAddress]) -> Context<'_> {
        Context {
            account,
            now: 0,
            reply_details: super::super::ReplyDetails::Full,
        }
    }

    /// Declining one week by adding an override for it says "Declined", not "Undecided".
    #[test]
    fn declining_one_occurrence_by_override_is_a_decline() {
        let old = ICalendar::parse(format!("{SERIES}END:VCALENDAR\r\n")).expect("old");
        let new = ICalendar::parse(format!(
            "{SERIES}BEGIN:VEVENT\r\nUID:w1\r\nSEQUENCE:1\r\nDTSTAMP:20300101T090000Z\r\n\
             RECURRENCE-ID:20300114T100000Z\r\nDTSTART:20300114T100000Z\r\n\
             DTEND:20300114T110000Z\r\nSUMMARY:Weekly sync\r\n\
             ORGANIZER:mailto:o@example.com\r\n\
             ATTENDEE;PARTSTAT=ACCEPTED:mailto:o@example.com\r\n\
             ATTENDEE;RSVP=TRUE;PARTSTAT=DECLINED:mailto:a@example.net\r\n\
             END:VEVENT\r\nEND:VCALENDAR\r\n"
        ))
        .expect("new");
        let me = [CalAddress::parse("a@example.net").expect("address")];
        let outcome = crate::itip::schedule_change(Some(&old), &new, &context(&me)).expect("sent");
        assert_eq!(outcome.messages.len(), 1);
        assert_eq!(
            outcome.messages[0].summary,
            MessageSummary::Reply {
                partstat: ICalendarParticipationStatus::Declined
            }
        );
    }
}
