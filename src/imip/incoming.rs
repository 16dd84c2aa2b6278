//! Raw email → the one iTIP message it carries, or a typed reason why not.
//!
//! [`parse_incoming`] finds every calendar part (see `parts`), checks sizes before
//! parsing, parses each as iCalendar, and accepts the mail only when all parts hold
//! the same scheduling message (the normal `text/calendar` + `application/ics` pair;
//! see `calendar::identity_key`) and the calendars' METHODs agree (a disagreeing
//! `method=` parameter is noted, not refused: see `agreed_method`). It also reports who
//! sent the mail (see `identity`). Whether the message may change anything is the
//! engine's decision; this module never looks at the stored calendar.

use super::calendar;
use super::error::ImipError;
use super::identity::{identify, SenderIdentity};
use super::parts::{encoded_len, find_calendar_parts, part_text};
use crate::itip::Method;
use calcard::icalendar::{ICalendar, ICalendarComponentType};
use calcard::{Entry, Parser};
use mail_parser::MessageParser;

/// Limits and trust settings for reading incoming mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingOptions {
    /// Largest email accepted at all, checked before MIME parsing.
    pub max_message_size: usize,
    /// Largest calendar part accepted (RFC 6047 gives no limit; real invitations with
    /// many attendees or instances stay well under the 512 KiB default).
    pub max_calendar_size: usize,
    /// Deepest MIME multipart nesting examined; real clients use 3 or 4 levels.
    pub max_mime_depth: usize,
    /// The authserv-ids of this site's own MTAs, whose `Authentication-Results`
    /// headers are believed; all others are ignored.
    pub trusted_authserv_ids: Vec<String>,
}

impl Default for IncomingOptions {
    fn default() -> Self {
        IncomingOptions {
            max_message_size: 32 * 1024 * 1024,
            max_calendar_size: 512 * 1024,
            max_mime_depth: 16,
            trusted_authserv_ids: Vec::new(),
        }
    }
}

/// The iTIP message found in an email, with who sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingItip {
    /// The iTIP method (the METHOD property, or the `method=` parameter if the
    /// calendar has none).
    pub method: Method,
    /// The parsed calendar of the most authoritative part.
    pub calendar: ICalendar,
    /// That part's decoded text, exactly as sent.
    pub calendar_text: String,
    /// From, Sender, envelope sender and authentication verdicts.
    pub sender: SenderIdentity,
    /// The Message-ID header, without angle brackets.
    pub message_id: Option<String>,
    /// Set when a part's `method=` disagreed with the calendar's METHOD (which
    /// decided): the decision log says so.
    pub method_note: Option<String>,
}

/// Most VCALENDAR objects read from one part; more is not a scheduling message.
const MAX_OBJECTS_PER_PART: usize = 16;

/// Most calendar parts examined in one email (clients send one to three).
const MAX_CALENDAR_PARTS: usize = 32;

/// Most MIME parts in one email, counted by their delimiter lines before parsing (an
/// invitation has a handful; a line of text starting with `--` counts too, so the
/// bound is generous).
const MAX_MIME_PARTS: usize = 1000;

/// Lines starting with `--`: an upper bound of the MIME parts of `raw`.
fn delimiter_lines(raw: &[u8]) -> usize {
    let starts = raw.windows(3).filter(|w| w == b"\n--").count();
    starts + usize::from(raw.starts_with(b"--"))
}

/// Extracts the iTIP message from the raw RFC 5322 bytes of an email.
///
/// `envelope_from` is the SMTP MAIL FROM as received (`None` or `""` for `<>`).
pub fn parse_incoming(
    raw: &[u8],
    envelope_from: Option<&str>,
    opts: &IncomingOptions,
) -> Result<IncomingItip, ImipError> {
    if raw.len() > opts.max_message_size {
        return Err(ImipError::MessageTooLarge {
            size: raw.len(),
            limit: opts.max_message_size,
        });
    }
    // mail-parser keeps every part of the tree in memory: count the delimiter lines
    // first, so 25,000 tiny parts cost a byte scan, not a parse.
    if delimiter_lines(raw) > MAX_MIME_PARTS {
        return Err(ImipError::TooManyParts {
            what: "MIME parts",
            limit: MAX_MIME_PARTS,
        });
    }
    let message = MessageParser::default()
        .parse(raw)
        .filter(|m| !m.root_part().headers().is_empty())
        .ok_or(ImipError::NotAnEmail)?;
    let mut found = find_calendar_parts(&message, opts.max_mime_depth)?;
    if found.calendars.is_empty() {
        return Err(if found.tnef {
            ImipError::OnlyTnef
        } else {
            ImipError::NoCalendarPart
        });
    }
    if found.calendars.len() > MAX_CALENDAR_PARTS {
        return Err(ImipError::TooManyParts {
            what: "calendar parts",
            limit: MAX_CALENDAR_PARTS,
        });
    }
    found.calendars.sort_by_key(|c| c.rank);

    let mut candidates = Vec::new();
    // All calendar parts together are bounded too: 32 parts just under the per-part
    // limit would otherwise be parsed side by side.
    let mut examined = 0usize;
    for part in &found.calendars {
        let limit = opts.max_calendar_size;
        examined = examined.saturating_add(part.part.len());
        if examined > limit.saturating_mul(2) {
            return Err(ImipError::CalendarTooLarge {
                size: examined,
                limit: limit.saturating_mul(2),
            });
        }
        // Transfer encodings only grow data by up to a third (base64), so an encoded
        // size beyond that bound is refused before anything is decoded.
        let encoded = encoded_len(part.part);
        if encoded.saturating_mul(3) / 4 > limit.saturating_add(1024) {
            return Err(ImipError::CalendarTooLarge {
                size: encoded,
                limit,
            });
        }
        if part.part.len() > limit {
            return Err(ImipError::CalendarTooLarge {
                size: part.part.len(),
                limit,
            });
        }
        let text = part_text(part.part);
        for cal in parse_calendars(&text)? {
            candidates.push(Candidate {
                method_param: part.method_param.clone(),
                calendar: cal,
                text: text.clone(),
            });
        }
    }

    let mut distinct: Vec<Vec<String>> = Vec::new();
    for candidate in &candidates {
        let key = calendar::identity_key(&candidate.calendar);
        if !distinct.contains(&key) {
            distinct.push(key);
        }
    }
    if distinct.len() > 1 {
        return Err(ImipError::MultipleCalendars {
            count: distinct.len(),
        });
    }

    let (method, method_note) = agreed_method(&candidates)?;
    let chosen = candidates
        .into_iter()
        .next()
        .ok_or(ImipError::NoCalendarPart)?;
    let sender = identify(&message, envelope_from, &opts.trusted_authserv_ids);
    Ok(IncomingItip {
        method,
        calendar: chosen.calendar,
        calendar_text: chosen.text,
        sender,
        message_id: message.message_id().map(str::to_string),
        method_note,
    })
}

/// One parsed calendar and where it came from.
struct Candidate {
    method_param: Option<String>,
    calendar: ICalendar,
    text: String,
}

/// Parses every VCALENDAR in `text`; at least one, each with a scheduling component.
fn parse_calendars(text: &str) -> Result<Vec<ICalendar>, ImipError> {
    let mut parser = Parser::new(text);
    let mut calendars = Vec::new();
    let mut junk_lines = 0usize;
    loop {
        match parser.entry() {
            Entry::ICalendar(cal) => {
                let top = cal.components.first().map(|c| c.component_type.clone());
                if top != Some(ICalendarComponentType::VCalendar) {
                    let name =
                        top.map_or_else(|| "nothing".to_string(), |t| t.as_str().to_string());
                    return Err(ImipError::InvalidICalendar(format!(
                        "the top-level object is {name}, not VCALENDAR"
                    )));
                }
                if calendar::scheduling_components(&cal).is_empty() {
                    return Err(ImipError::InvalidICalendar(
                        "the VCALENDAR holds no VEVENT, VTODO, VJOURNAL or VFREEBUSY".to_string(),
                    ));
                }
                calendars.push(cal);
                if calendars.len() > MAX_OBJECTS_PER_PART {
                    break;
                }
            }
            Entry::Eof => break,
            Entry::InvalidLine(_) if junk_lines < 64 => junk_lines += 1,
            Entry::InvalidLine(line) => {
                return Err(ImipError::InvalidICalendar(format!(
                    "too many lines outside BEGIN:VCALENDAR/END:VCALENDAR (e.g. {:?})",
                    line.chars().take(60).collect::<String>()
                )))
            }
            Entry::VCard(_) => {
                return Err(ImipError::InvalidICalendar(
                    "the part holds a vCard, not a VCALENDAR".to_string(),
                ))
            }
            Entry::UnexpectedComponentEnd { expected, found } => {
                return Err(ImipError::InvalidICalendar(format!(
                    "END:{} where END:{} was expected",
                    found.as_str(),
                    expected.as_str()
                )))
            }
            Entry::UnterminatedComponent(name) => {
                return Err(ImipError::InvalidICalendar(format!(
                    "BEGIN:{name} is never ended"
                )))
            }
            Entry::TooManyComponents => {
                return Err(ImipError::InvalidICalendar(
                    "too many components".to_string(),
                ))
            }
            _ => {
                return Err(ImipError::InvalidICalendar(
                    "unrecognised content".to_string(),
                ))
            }
        }
    }
    if calendars.is_empty() {
        return Err(ImipError::InvalidICalendar(
            "no BEGIN:VCALENDAR found in the calendar part".to_string(),
        ));
    }
    Ok(calendars)
}

/// The method of the message, and a note when a part's `method=` parameter says
/// otherwise.
///
/// RFC 6047 §2.4 wants the two equal, but real mail disagrees (Google's "propose a
/// new time": `method=REPLY` over `METHOD:COUNTER`; Cyrus's tests: `method=CANCEL` over
/// `METHOD:REQUEST`). The calendar is what gets processed, so its METHOD decides, as in
/// Cyrus; the disagreement is reported for the log. The `method=` parameters count
/// only when no calendar has a METHOD. Calendars whose METHODs disagree (or
/// parameters that disagree with no METHOD to decide) are refused: they have no single
/// reading.
fn agreed_method(candidates: &[Candidate]) -> Result<(Method, Option<String>), ImipError> {
    let inside: Vec<String> = candidates
        .iter()
        .filter_map(|c| calendar::method_property(&c.calendar).map(|m| m.name()))
        .map(|m| m.to_ascii_uppercase())
        .collect();
    let params: Vec<String> = candidates
        .iter()
        .filter_map(|c| c.method_param.as_ref())
        .map(|p| p.to_ascii_uppercase())
        .collect();
    let disagreeing = |stated: &[String]| {
        let first = stated.first()?;
        stated
            .iter()
            .find(|m| *m != first)
            .map(|other| (first.clone(), other.clone()))
    };
    let (chosen, note) = if let Some(first) = inside.first() {
        if let Some((first, other)) = disagreeing(&inside) {
            return Err(ImipError::MethodMismatch {
                param: first,
                inside: other,
            });
        }
        let note = params.iter().find(|p| *p != first).map(|param| {
            format!(
                "the calendar part says method={param} but the calendar METHOD:{first}, \
                 which decides"
            )
        });
        (first.clone(), note)
    } else {
        if let Some((param, other)) = disagreeing(&params) {
            return Err(ImipError::MethodMismatch {
                param,
                inside: other,
            });
        }
        let first = params.first().ok_or(ImipError::MissingMethod)?;
        (first.clone(), None)
    };
    match calendar::parse_method(&chosen) {
        Some(method) => Ok((method, note)),
        None => Err(ImipError::UnknownMethod(chosen)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail_with_parts(n: usize) -> String {
        let mut mail = String::from(
            "From: o@example.net\r\nTo: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n",
        );
        for _ in 0..n {
            mail.push_str(
                "--b\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\n\
                 BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:u\r\n\
                 DTSTAMP:20300101T000000Z\r\nDTSTART:20300102T100000Z\r\n\
                 ORGANIZER:mailto:o@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            );
        }
        mail.push_str("--b--\r\n");
        mail
    }

    #[test]
    fn a_mail_of_many_calendar_parts_is_refused_before_they_are_parsed() {
        let opts = IncomingOptions::default();
        assert!(parse_incoming(mail_with_parts(3).as_bytes(), None, &opts).is_ok());
        for (parts, what) in [(40, "calendar parts"), (1200, "MIME parts")] {
            match parse_incoming(mail_with_parts(parts).as_bytes(), None, &opts) {
                Err(ImipError::TooManyParts { what: w, .. }) => assert_eq!(w, what),
                other => panic!("{parts} parts: {other:?}"),
            }
        }
    }
}
