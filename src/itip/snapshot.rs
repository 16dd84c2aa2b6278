//! The scheduling view of one calendar object.
//!
//! Every rule starts from a [`Snapshot`]: the object's scheduling components keyed by
//! instance, its organizer, each instance's attendees and the "tracked entries" whose
//! change matters to scheduling. A snapshot is taken relative to the acting account's
//! addresses, which decide who is local. Building it also validates the object
//! (one UID, one component type, one organizer, no duplicate instance).

use super::address::CalAddress;
use super::error::ItipError;
use super::time::TimeResolver;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarEntry, ICalendarParameterName,
    ICalendarParameterValue, ICalendarParticipationStatus, ICalendarProperty,
    ICalendarScheduleAgentValue, ICalendarValue,
};
use std::collections::{BTreeMap, BTreeSet};

/// Which instance of a (possibly recurring) item a component describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InstanceId {
    /// The master component (no RECURRENCE-ID).
    Main,
    /// An override, keyed by its RECURRENCE-ID as a UTC timestamp.
    Recurrence {
        /// RECURRENCE-ID as a UTC timestamp (floating times read as UTC).
        timestamp: i64,
        /// Whether RANGE (THISANDFUTURE) was given.
        this_and_future: bool,
    },
}

/// The properties whose change is visible to scheduling.
pub const TRACKED_PROPERTIES: [ICalendarProperty; 14] = [
    ICalendarProperty::Dtstart,
    ICalendarProperty::Dtend,
    ICalendarProperty::Duration,
    ICalendarProperty::Due,
    ICalendarProperty::Rrule,
    ICalendarProperty::Rdate,
    ICalendarProperty::Exdate,
    ICalendarProperty::Status,
    ICalendarProperty::Location,
    ICalendarProperty::Summary,
    ICalendarProperty::Description,
    ICalendarProperty::Priority,
    ICalendarProperty::PercentComplete,
    ICalendarProperty::Completed,
];

/// One (property, value) pair of an instance; multi-valued properties give one pair per
/// value. Dates are compared as instants, so re-encoding a time zone is no change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackedEntry {
    /// The property.
    pub property: ICalendarProperty,
    /// A canonical rendering of one value.
    pub value: String,
}

/// The organizer of an item.
#[derive(Debug, Clone)]
pub struct Organizer {
    /// Normalised address.
    pub address: CalAddress,
    /// Whether the address belongs to the acting account.
    pub is_local: bool,
    /// SCHEDULE-FORCE-SEND present on the ORGANIZER.
    pub force_send: bool,
}

/// One ATTENDEE line of one instance, with the parameters the rules read.
#[derive(Debug, Clone)]
pub struct Attendee<'a> {
    /// The property as written, for verbatim copies.
    pub entry: &'a ICalendarEntry,
    /// Normalised address.
    pub address: CalAddress,
    /// Whether the address belongs to the acting account.
    pub is_local: bool,
    /// PARTSTAT, if given.
    pub partstat: Option<ICalendarParticipationStatus>,
    /// ROLE as text, if given.
    pub role: Option<String>,
    /// CUTYPE as text, if given.
    pub cutype: Option<String>,
    /// RSVP, if given.
    pub rsvp: Option<bool>,
    /// Addresses in DELEGATED-FROM.
    pub delegated_from: Vec<CalAddress>,
    /// Addresses in DELEGATED-TO.
    pub delegated_to: Vec<CalAddress>,
    /// SENT-BY, if it is an address.
    pub sent_by: Option<CalAddress>,
    /// False when SCHEDULE-AGENT is CLIENT or NONE (or unknown): someone else delivers.
    pub server_scheduled: bool,
    /// SCHEDULE-FORCE-SEND present (its value is not looked at).
    pub force_send: bool,
}

impl Attendee<'_> {
    /// The fields that make two attendee lines "the same" for change detection: CN, RSVP
    /// and SCHEDULE-* parameters do not count.
    pub fn key(&self) -> AttendeeKey<'_> {
        AttendeeKey {
            address: &self.address,
            partstat: self.partstat.as_ref(),
            delegated_from: &self.delegated_from,
            delegated_to: &self.delegated_to,
            role: self.role.as_deref(),
            cutype: self.cutype.as_deref(),
            sent_by: self.sent_by.as_ref(),
        }
    }

    /// [`Self::key`] without PARTSTAT: an answer recorded in the organizer's copy (by
    /// the organizer's client, or by imipd applying a REPLY) is not a change the other
    /// attendees must hear of (RFC 5546 §2.1.4).
    pub fn key_without_answer(&self) -> AttendeeKey<'_> {
        AttendeeKey {
            partstat: None,
            ..self.key()
        }
    }

    /// Would this attendee receive a first invitation? External, delivered by us, not a
    /// room or non-participant (RSVP=FALSE), and not yet answered (or forced).
    pub fn send_invite(&self) -> bool {
        self.reachable()
            && (self.force_send
                || matches!(
                    self.partstat,
                    None | Some(ICalendarParticipationStatus::NeedsAction)
                ))
    }

    /// Would this attendee receive an update or cancellation? As [`Self::send_invite`],
    /// but any answer except DECLINED (or forced).
    pub fn send_update(&self) -> bool {
        self.reachable()
            && (self.force_send || self.partstat != Some(ICalendarParticipationStatus::Declined))
    }

    fn reachable(&self) -> bool {
        !self.is_local && self.server_scheduled && self.rsvp != Some(false)
    }
}

/// See [`Attendee::key`]. It borrows from the attendee: comparing two versions builds
/// one per attendee line, and copying every field was a tenth of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttendeeKey<'s> {
    address: &'s CalAddress,
    partstat: Option<&'s ICalendarParticipationStatus>,
    delegated_from: &'s [CalAddress],
    delegated_to: &'s [CalAddress],
    role: Option<&'s str>,
    cutype: Option<&'s str>,
    sent_by: Option<&'s CalAddress>,
}

/// One scheduling component (master or override).
#[derive(Debug, Clone)]
pub struct Instance<'a> {
    /// Index of the component in `ICalendar::components`.
    pub comp_id: u32,
    /// The component itself.
    pub comp: &'a ICalendarComponent,
    /// Its attendees with a valid address, in source order.
    pub attendees: Vec<Attendee<'a>>,
    /// Indices into `attendees` sorted by address, the first line of an address first:
    /// comparing two versions looks every attendee up in the other, which must not
    /// cost O(n²) for big meetings (nor a copy and a hash of every address).
    by_address: Vec<usize>,
    /// Tracked (property, value) pairs.
    pub tracked: BTreeSet<TrackedEntry>,
    /// SEQUENCE (0 when absent).
    pub sequence: i64,
    /// REQUEST-STATUS codes (first value of each).
    pub request_status: Vec<String>,
}

impl<'a> Instance<'a> {
    /// The attendee with this address, if any.
    pub fn attendee(&self, address: &CalAddress) -> Option<&Attendee<'a>> {
        let at = self
            .by_address
            .partition_point(|&i| self.attendees.get(i).is_some_and(|a| a.address < *address));
        self.by_address
            .get(at)
            .and_then(|&i| self.attendees.get(i))
            .filter(|a| a.address == *address)
    }

    /// The first attendee that belongs to the acting account.
    pub fn local_attendee(&self) -> Option<&Attendee<'a>> {
        self.attendees.iter().find(|a| a.is_local)
    }

    /// The attendee keys, as a set, for change detection.
    pub fn attendee_keys(&self) -> BTreeSet<AttendeeKey<'_>> {
        self.attendees.iter().map(Attendee::key).collect()
    }

    /// The attendee keys without their answers ([`Attendee::key_without_answer`]): what
    /// the organizer's side compares.
    pub fn attendee_keys_without_answers(&self) -> BTreeSet<AttendeeKey<'_>> {
        self.attendees
            .iter()
            .map(Attendee::key_without_answer)
            .collect()
    }

    /// Number of tracked values of `property`.
    pub fn tracked_count(&self, property: &ICalendarProperty) -> usize {
        self.tracked
            .iter()
            .filter(|t| &t.property == property)
            .count()
    }
}

/// The scheduling view of a calendar object.
#[derive(Debug, Clone)]
pub struct Snapshot<'a> {
    /// The object the snapshot was taken from.
    pub cal: &'a ICalendar,
    /// VEVENT, VTODO, VJOURNAL or VFREEBUSY.
    pub component_type: ICalendarComponentType,
    /// The shared UID.
    pub uid: String,
    /// The organizer.
    pub organizer: Organizer,
    /// Instances in a stable order (master first, then overrides by time).
    pub instances: BTreeMap<InstanceId, Instance<'a>>,
}

impl<'a> Snapshot<'a> {
    /// Takes the snapshot of `cal` as seen by an account owning `account`.
    pub fn new(cal: &'a ICalendar, account: &[CalAddress]) -> Result<Self, ItipError> {
        // calcard is lenient about the outer component; a scheduling object must be a
        // VCALENDAR (anything else would not even serialise into something parseable).
        if cal.components.first().map(|c| &c.component_type)
            != Some(&ICalendarComponentType::VCalendar)
        {
            return Err(ItipError::ICalendarParseError(
                "the object is not a VCALENDAR".into(),
            ));
        }
        let times = TimeResolver::new(cal);
        let mut component_type = None;
        let mut uid: Option<&str> = None;
        let mut organizer: Option<Organizer> = None;
        let mut instances = BTreeMap::new();
        let mut has_organizer_line = false;

        for (comp_id, comp) in cal.components.iter().enumerate() {
            if !comp.component_type.is_scheduling_object() {
                continue;
            }
            match &component_type {
                None => component_type = Some(comp.component_type.clone()),
                Some(t) if *t != comp.component_type => return Err(ItipError::MultipleObjectTypes),
                _ => {}
            }
            let mut instance_id = InstanceId::Main;
            // Sized once: an Attendee is large, and growing the vector one push at a
            // time copied the lines read so far again and again.
            let mut attendees = Vec::with_capacity(
                comp.entries
                    .iter()
                    .filter(|e| e.name == ICalendarProperty::Attendee)
                    .count(),
            );
            let mut tracked = BTreeSet::new();
            let mut sequence = 0;
            let mut request_status = Vec::new();

            for entry in &comp.entries {
                match &entry.name {
                    ICalendarProperty::Uid => {
                        if let Some(value) = entry.values.first().and_then(|v| v.as_text()) {
                            let value = value.trim();
                            if !value.is_empty() {
                                match uid {
                                    None => uid = Some(value),
                                    Some(u) if u != value => return Err(ItipError::MultipleUid),
                                    _ => {}
                                }
                            }
                        }
                    }
                    ICalendarProperty::Organizer => {
                        has_organizer_line = true;
                        if let Some(address) = entry_address(entry) {
                            match &organizer {
                                None => {
                                    if !is_server_scheduled(entry) {
                                        return Err(ItipError::OtherSchedulingAgent);
                                    }
                                    organizer = Some(Organizer {
                                        is_local: account.contains(&address),
                                        address,
                                        force_send: entry.has_parameter(
                                            &ICalendarParameterName::ScheduleForceSend,
                                        ),
                                    });
                                }
                                Some(o) if o.address != address => {
                                    return Err(ItipError::MultipleOrganizer)
                                }
                                _ => {}
                            }
                        }
                    }
                    ICalendarProperty::Attendee => {
                        if let Some(attendee) = Attendee::from_entry(entry, account) {
                            attendees.push(attendee);
                        }
                    }
                    ICalendarProperty::RecurrenceId => {
                        let timestamp = times
                            .entry_timestamp(entry)
                            .ok_or(ItipError::InvalidRecurrenceId)?;
                        instance_id = InstanceId::Recurrence {
                            timestamp,
                            this_and_future: entry.has_parameter(&ICalendarParameterName::Range),
                        };
                    }
                    ICalendarProperty::Sequence => {
                        sequence = entry
                            .values
                            .first()
                            .and_then(|v| v.as_integer())
                            .unwrap_or(0);
                    }
                    ICalendarProperty::RequestStatus => {
                        if let Some(code) = entry.values.first().and_then(|v| v.as_text()) {
                            request_status.push(code.to_string());
                        }
                    }
                    name if TRACKED_PROPERTIES.contains(name) => {
                        for value in &entry.values {
                            tracked.insert(TrackedEntry {
                                property: name.clone(),
                                value: canonical_value(entry, value, &times),
                            });
                        }
                    }
                    _ => {}
                }
            }

            // A stable sort: of equal addresses, the first line stays first.
            let mut by_address: Vec<usize> = (0..attendees.len()).collect();
            by_address.sort_by(|&x, &y| attendees[x].address.cmp(&attendees[y].address));
            let instance = Instance {
                comp_id: comp_id as u32,
                comp,
                attendees,
                by_address,
                tracked,
                sequence,
                request_status,
            };
            if instances.insert(instance_id, instance).is_some() {
                return Err(ItipError::MultipleObjectInstances);
            }
        }

        let Some(component_type) = component_type else {
            return Err(ItipError::NoSchedulingInfo);
        };
        if !has_organizer_line {
            return Err(ItipError::NoSchedulingInfo);
        }
        let organizer_local = organizer.as_ref().is_some_and(|o| o.is_local);
        let attendee_local = instances
            .values()
            .any(|i| i.attendees.iter().any(|a| a.is_local && a.server_scheduled));
        if !organizer_local && !attendee_local {
            return Err(ItipError::NotOrganizerNorAttendee);
        }
        let organizer = organizer.ok_or(ItipError::NoSchedulingInfo)?;
        let uid = uid.ok_or(ItipError::MissingUid)?.to_string();

        Ok(Snapshot {
            cal,
            component_type,
            uid,
            organizer,
            instances,
        })
    }

    /// The master instance, if there is one.
    pub fn main(&self) -> Option<&Instance<'a>> {
        self.instances.get(&InstanceId::Main)
    }

    /// Every instance of this version or of `other`, in a stable order: what a change
    /// between two versions has to look at.
    pub fn instance_ids_with(&self, other: &Snapshot<'_>) -> BTreeSet<InstanceId> {
        self.instances
            .keys()
            .chain(other.instances.keys())
            .copied()
            .collect()
    }

    /// The address of the acting account as it appears in the object: the organizer's
    /// if local, otherwise the first local server-scheduled attendee's.
    pub fn local_address(&self) -> Option<&CalAddress> {
        if self.organizer.is_local {
            return Some(&self.organizer.address);
        }
        self.instances
            .values()
            .flat_map(|i| i.attendees.iter())
            .find(|a| a.is_local)
            .map(|a| &a.address)
    }
}

impl<'a> Attendee<'a> {
    /// Reads an ATTENDEE line; `None` when its value is not an email address.
    pub fn from_entry(entry: &'a ICalendarEntry, account: &[CalAddress]) -> Option<Self> {
        let address = entry_address(entry)?;
        let mut attendee = Attendee {
            entry,
            is_local: account.contains(&address),
            address,
            partstat: None,
            role: None,
            cutype: None,
            rsvp: None,
            delegated_from: Vec::new(),
            delegated_to: Vec::new(),
            sent_by: None,
            server_scheduled: is_server_scheduled(entry),
            force_send: false,
        };
        for param in &entry.params {
            match (&param.name, &param.value) {
                (ICalendarParameterName::Partstat, ICalendarParameterValue::Partstat(p)) => {
                    attendee.partstat = Some(p.clone())
                }
                (ICalendarParameterName::Role, value) => {
                    attendee.role = value.as_text().map(str::to_ascii_uppercase)
                }
                (ICalendarParameterName::Cutype, value) => {
                    attendee.cutype = value.as_text().map(str::to_ascii_uppercase)
                }
                (ICalendarParameterName::Rsvp, value) => attendee.rsvp = param_bool(value),
                (ICalendarParameterName::DelegatedFrom, value) => {
                    attendee.delegated_from.extend(param_address(value))
                }
                (ICalendarParameterName::DelegatedTo, value) => {
                    attendee.delegated_to.extend(param_address(value))
                }
                (ICalendarParameterName::SentBy, value) => attendee.sent_by = param_address(value),
                (ICalendarParameterName::ScheduleForceSend, _) => attendee.force_send = true,
                _ => {}
            }
        }
        Some(attendee)
    }
}

/// The normalised address in an ORGANIZER or ATTENDEE value.
pub fn entry_address(entry: &ICalendarEntry) -> Option<CalAddress> {
    entry
        .values
        .first()
        .and_then(|v| v.as_text())
        .and_then(CalAddress::parse)
}

/// A parameter value that names an address (DELEGATED-TO, SENT-BY, ...).
pub fn param_address(value: &ICalendarParameterValue) -> Option<CalAddress> {
    value.as_text().and_then(CalAddress::parse)
}

fn param_bool(value: &ICalendarParameterValue) -> Option<bool> {
    match value {
        ICalendarParameterValue::Bool(b) => Some(*b),
        other => match other.as_text()?.to_ascii_uppercase().as_str() {
            "TRUE" => Some(true),
            "FALSE" => Some(false),
            _ => None,
        },
    }
}

/// True unless SCHEDULE-AGENT says someone other than the server delivers messages.
pub fn is_server_scheduled(entry: &ICalendarEntry) -> bool {
    match entry.parameter(&ICalendarParameterName::ScheduleAgent) {
        None => true,
        Some(ICalendarParameterValue::ScheduleAgent(ICalendarScheduleAgentValue::Server)) => true,
        Some(ICalendarParameterValue::Text(t)) => t.eq_ignore_ascii_case("SERVER"),
        Some(_) => false,
    }
}

/// A canonical text for one value of a tracked property.
fn canonical_value(entry: &ICalendarEntry, value: &ICalendarValue, times: &TimeResolver) -> String {
    match value {
        ICalendarValue::PartialDateTime(dt) => match times.timestamp(dt, entry.tz_id()) {
            Some(ts) if dt.has_time() => format!("@{ts}"),
            Some(ts) => format!("@{ts}/date"),
            None => format!("{dt:?}"),
        },
        ICalendarValue::RecurrenceRule(rule) => {
            let mut rule = rule.as_ref().clone();
            if rule.interval == Some(1) {
                rule.interval = None;
            }
            rule.to_string()
        }
        other => other
            .clone()
            .into_text()
            .map(|t| t.into_owned())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attendee_lookup_finds_the_first_entry_of_an_address() {
        let cal = ICalendar::parse(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:u\r\n\
             DTSTART:20270101T090000Z\r\nORGANIZER:mailto:o@example.org\r\n\
             ATTENDEE;PARTSTAT=ACCEPTED:mailto:a@example.net\r\n\
             ATTENDEE;PARTSTAT=DECLINED:MAILTO:A@Example.NET\r\n\
             ATTENDEE:mailto:b@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        )
        .expect("parses");
        let me = [CalAddress::parse("o@example.org").expect("address")];
        let snapshot = Snapshot::new(&cal, &me).expect("a scheduling object");
        let main = snapshot.main().expect("a master");
        let a = CalAddress::parse("a@example.net").expect("address");
        let found = main.attendee(&a).expect("a is an attendee");
        assert_eq!(found.partstat, Some(ICalendarParticipationStatus::Accepted));
        let b = CalAddress::parse("b@example.net").expect("address");
        assert_eq!(main.attendee(&b).map(|x| &x.address), Some(&b));
        let c = CalAddress::parse("c@example.net").expect("address");
        assert!(main.attendee(&c).is_none());
    }
}
