//! Read-only helpers over calcard's iCalendar model for the mail layer.
//!
//! The mail layer needs a handful of facts from a VCALENDAR: its METHOD, the component
//! a person would call "the event", and the people in it with their names and answers.
//! These helpers find them without changing anything; scheduling rules live in `itip`.

use crate::itip::{CalAddress, Method};
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarEntry, ICalendarMethod,
    ICalendarParameterName, ICalendarParameterValue, ICalendarProperty, ICalendarValue,
};

/// The METHOD property of a calendar as written: a known method or unknown text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MethodProperty {
    /// One of RFC 5546's methods.
    Known(Method),
    /// Something else (an x-name or a typo), kept for the error message.
    Unknown(String),
}

impl MethodProperty {
    /// The method as text, for error messages.
    pub(crate) fn name(&self) -> String {
        match self {
            MethodProperty::Known(m) => crate::itip::method_name(m).to_string(),
            MethodProperty::Unknown(s) => s.clone(),
        }
    }
}

/// Reads a method name such as `request` or `REPLY` (case-insensitive).
pub(crate) fn parse_method(text: &str) -> Option<Method> {
    let method = match text.trim().to_ascii_uppercase().as_str() {
        "PUBLISH" => ICalendarMethod::Publish,
        "REQUEST" => ICalendarMethod::Request,
        "REPLY" => ICalendarMethod::Reply,
        "ADD" => ICalendarMethod::Add,
        "CANCEL" => ICalendarMethod::Cancel,
        "REFRESH" => ICalendarMethod::Refresh,
        "COUNTER" => ICalendarMethod::Counter,
        "DECLINECOUNTER" => ICalendarMethod::Declinecounter,
        _ => return None,
    };
    Some(method)
}

/// The root VCALENDAR component, if the object is one.
pub(crate) fn root(cal: &ICalendar) -> Option<&ICalendarComponent> {
    cal.components
        .first()
        .filter(|c| c.component_type == ICalendarComponentType::VCalendar)
}

/// The METHOD property of the VCALENDAR, if any.
pub(crate) fn method_property(cal: &ICalendar) -> Option<MethodProperty> {
    let entry = root(cal)?.property(&ICalendarProperty::Method)?;
    Some(match entry.values.first() {
        Some(ICalendarValue::Method(m)) => MethodProperty::Known(m.clone()),
        Some(value) => {
            let text = value.as_text().unwrap_or_default().to_string();
            parse_method(&text).map_or(MethodProperty::Unknown(text), MethodProperty::Known)
        }
        None => MethodProperty::Unknown(String::new()),
    })
}

/// The direct children of the VCALENDAR that carry scheduling data.
pub(crate) fn scheduling_components(cal: &ICalendar) -> Vec<&ICalendarComponent> {
    let Some(root) = root(cal) else {
        return Vec::new();
    };
    root.component_ids
        .iter()
        .filter_map(|id| cal.components.get(*id as usize))
        .filter(|c| {
            matches!(
                c.component_type,
                ICalendarComponentType::VEvent
                    | ICalendarComponentType::VTodo
                    | ICalendarComponentType::VJournal
                    | ICalendarComponentType::VFreebusy
            )
        })
        .collect()
}

/// The component a person would call "the event": the master if there is one,
/// otherwise the first instance.
pub(crate) fn main_component(cal: &ICalendar) -> Option<&ICalendarComponent> {
    let components = scheduling_components(cal);
    components
        .iter()
        .find(|c| !c.has_property(&ICalendarProperty::RecurrenceId))
        .or_else(|| components.first())
        .copied()
}

/// A text property on one line (line breaks and other control characters as single
/// spaces): what a subject, a page title or a location line shows.
pub(crate) fn one_line_value(
    component: &ICalendarComponent,
    property: &ICalendarProperty,
) -> Option<String> {
    text_value(component, property).map(one_line)
}

/// Collapses line breaks and other control characters into single spaces.
pub(crate) fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_control())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first text value of a property, unescaped by the parser.
pub(crate) fn text_value<'a>(
    component: &'a ICalendarComponent,
    property: &ICalendarProperty,
) -> Option<&'a str> {
    component
        .property(property)
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_text())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The first text value of a parameter.
pub(crate) fn param_text<'a>(
    entry: &'a ICalendarEntry,
    name: &ICalendarParameterName,
) -> Option<&'a str> {
    entry
        .parameter(name)
        .and_then(ICalendarParameterValue::as_text)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The normalised address of an ORGANIZER or ATTENDEE line.
pub(crate) fn entry_address(entry: &ICalendarEntry) -> Option<CalAddress> {
    entry
        .values
        .first()
        .and_then(|v| v.as_text())
        .and_then(CalAddress::parse)
}

/// A person named in the calendar (ORGANIZER or ATTENDEE line).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Person {
    /// The CN parameter, if given.
    pub name: Option<String>,
    /// The address, when the value is an email address.
    pub address: Option<CalAddress>,
    /// The raw value, shown when there is neither name nor email address.
    pub raw: String,
    /// PARTSTAT as a catalogue key (`accepted`, `needs-action`, ...).
    pub partstat: String,
    /// DELEGATED-TO, as the delegate's address or raw value.
    pub delegated_to: Option<String>,
    /// DELEGATED-FROM, as the delegator's address or raw value.
    pub delegated_from: Option<String>,
    /// The LANGUAGE parameter, which picks the language of mail to this person.
    pub language: Option<String>,
}

impl Person {
    /// Reads a person from an ORGANIZER or ATTENDEE line.
    pub(crate) fn from_entry(entry: &ICalendarEntry) -> Person {
        let raw = entry
            .values
            .first()
            .and_then(|v| v.as_text())
            .unwrap_or_default()
            .to_string();
        let uri_param = |name| {
            param_text(entry, &name)
                .map(|v| CalAddress::parse(v).map_or_else(|| v.to_string(), |a| a.to_string()))
        };
        Person {
            name: param_text(entry, &ICalendarParameterName::Cn).map(str::to_string),
            address: entry_address(entry),
            partstat: param_text(entry, &ICalendarParameterName::Partstat)
                .unwrap_or("NEEDS-ACTION")
                .to_ascii_lowercase(),
            delegated_to: uri_param(ICalendarParameterName::DelegatedTo),
            delegated_from: uri_param(ICalendarParameterName::DelegatedFrom),
            language: param_text(entry, &ICalendarParameterName::Language).map(str::to_string),
            raw,
        }
    }

    /// What a reader sees: the name, else the address, else the raw value.
    pub(crate) fn display(&self) -> String {
        match (&self.name, &self.address) {
            (Some(name), _) => name.clone(),
            (None, Some(address)) => address.to_string(),
            (None, None) => self.raw.clone(),
        }
    }

    /// `Name <address>` for lists, or whichever part exists.
    pub(crate) fn display_with_address(&self) -> String {
        match (&self.name, &self.address) {
            (Some(name), Some(address)) => format!("{name} <{address}>"),
            _ => self.display(),
        }
    }
}

/// The ORGANIZER of the main component.
pub(crate) fn organizer(cal: &ICalendar) -> Option<Person> {
    scheduling_components(cal)
        .into_iter()
        .find_map(|c| c.property(&ICalendarProperty::Organizer))
        .map(Person::from_entry)
}

/// The first `limit` attendees of the main component, in calendar order.
pub(crate) fn first_attendees(cal: &ICalendar, limit: usize) -> Vec<Person> {
    main_component(cal)
        .map(|c| {
            c.properties(&ICalendarProperty::Attendee)
                .take(limit)
                .map(Person::from_entry)
                .collect()
        })
        .unwrap_or_default()
}

/// How many attendees the main component has.
pub(crate) fn attendee_count(cal: &ICalendar) -> usize {
    main_component(cal).map_or(0, |c| c.properties(&ICalendarProperty::Attendee).count())
}

/// The ORGANIZER or ATTENDEE line for `address`, looked up in every component.
///
/// ORGANIZER wins, so the organizer's name is found even when they also attend.
pub(crate) fn find_person(cal: &ICalendar, address: &CalAddress) -> Option<Person> {
    let components = scheduling_components(cal);
    [ICalendarProperty::Organizer, ICalendarProperty::Attendee]
        .iter()
        .find_map(|property| {
            components.iter().find_map(|c| {
                c.entries
                    .iter()
                    .filter(|e| &e.name == property)
                    .find(|e| entry_address(e).as_ref() == Some(address))
            })
        })
        .map(Person::from_entry)
}

/// Everyone an ORGANIZER or ATTENDEE line names, by address, with the precedence of
/// [`find_person`]: built once per message, so the mails of an event with N
/// recipients cost N lookups instead of N scans of N lines.
#[derive(Debug, Default, Clone)]
pub(crate) struct People {
    by_address: std::collections::HashMap<CalAddress, Person>,
}

impl People {
    /// Indexes the people of `cal`.
    pub(crate) fn of(cal: &ICalendar) -> People {
        let components = scheduling_components(cal);
        let mut by_address = std::collections::HashMap::new();
        for property in [ICalendarProperty::Organizer, ICalendarProperty::Attendee] {
            for component in &components {
                for entry in component.entries.iter().filter(|e| e.name == property) {
                    if let Some(address) = entry_address(entry) {
                        by_address
                            .entry(address)
                            .or_insert_with(|| Person::from_entry(entry));
                    }
                }
            }
        }
        People { by_address }
    }

    /// The line for `address`, as [`find_person`] would find it.
    pub(crate) fn find(&self, address: &CalAddress) -> Option<&Person> {
        self.by_address.get(address)
    }
}

/// The UID shared by the components, if any.
pub(crate) fn uid(cal: &ICalendar) -> Option<&str> {
    scheduling_components(cal)
        .into_iter()
        .find_map(|c| text_value(c, &ICalendarProperty::Uid))
}

/// What makes two copies of a calendar "the same scheduling message": for each
/// scheduling component its type, UID, RECURRENCE-ID, SEQUENCE and DTSTAMP.
///
/// Clients attach the calendar twice (`text/calendar` and `invite.ics`) and some
/// rewrite the copy slightly (property order, folding, an HTML description dropped);
/// such copies are one message. Copies about other items or other revisions are not.
pub(crate) fn identity_key(cal: &ICalendar) -> Vec<String> {
    let mut key: Vec<String> = scheduling_components(cal)
        .into_iter()
        .map(|c| {
            let value = |p: ICalendarProperty| {
                c.property(&p)
                    .and_then(|e| e.values.first())
                    .map(|v| match v {
                        ICalendarValue::PartialDateTime(dt) => format!("{dt:?}"),
                        ICalendarValue::Integer(i) => i.to_string(),
                        other => other.as_text().unwrap_or_default().to_string(),
                    })
                    .unwrap_or_default()
            };
            format!(
                "{}|{}|{}|{}|{}",
                c.component_type.as_str(),
                value(ICalendarProperty::Uid),
                value(ICalendarProperty::RecurrenceId),
                value(ICalendarProperty::Sequence),
                value(ICalendarProperty::Dtstamp)
            )
        })
        .collect();
    key.sort();
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAL: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nMETHOD:request\r\n\
        BEGIN:VEVENT\r\nUID:u1\r\nRECURRENCE-ID:20090609T160000Z\r\nDTSTART:20090609T170000Z\r\n\
        END:VEVENT\r\nBEGIN:VEVENT\r\nUID:u1\r\nDTSTART:20090602T160000Z\r\nSUMMARY:Lunch\r\n\
        ORGANIZER;CN=Jürgen Müller:MAILTO:Juergen@Example.COM\r\n\
        ATTENDEE;CN=Bob;PARTSTAT=ACCEPTED;LANGUAGE=de-CH:mailto:bob@example.net\r\n\
        ATTENDEE;DELEGATED-FROM=\"mailto:bob@example.net\":mailto:carol@example.net\r\n\
        END:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn finds_method_master_and_people() {
        let cal = ICalendar::parse(CAL).unwrap();
        assert_eq!(
            method_property(&cal),
            Some(MethodProperty::Known(Method::Request))
        );
        let main = main_component(&cal).unwrap();
        assert_eq!(text_value(main, &ICalendarProperty::Summary), Some("Lunch"));
        let organizer = organizer(&cal).unwrap();
        assert_eq!(organizer.display(), "Jürgen Müller");
        assert_eq!(organizer.address.unwrap().as_str(), "juergen@example.com");
        let people = first_attendees(&cal, usize::MAX);
        assert_eq!(attendee_count(&cal), 2);
        assert_eq!(people.len(), 2);
        assert_eq!(people[0].partstat, "accepted");
        assert_eq!(people[0].language.as_deref(), Some("de-CH"));
        assert_eq!(people[1].partstat, "needs-action");
        assert_eq!(people[1].delegated_from.as_deref(), Some("bob@example.net"));
        let carol = CalAddress::parse("carol@example.net").unwrap();
        assert_eq!(
            find_person(&cal, &carol).unwrap().display(),
            "carol@example.net"
        );
        assert_eq!(uid(&cal), Some("u1"));
    }
}
