//! Finding the calendar parts of an email, whatever its MIME structure.
//!
//! Clients nest iMIP data differently: Outlook puts `text/calendar` inside
//! `multipart/alternative`, Apple Mail puts the alternative inside `multipart/mixed`,
//! Google adds an `application/ics` attachment, sometimes without `method=`. This
//! module walks the MIME tree iteratively (depth capped, so hostile nesting costs
//! bounded work), collects every part that may hold calendar data, ranked by how
//! authoritative it is, and notes TNEF blobs. It does not look inside attached
//! emails (`message/rfc822`): a forwarded invitation is not the sender's iTIP message.

use super::error::ImipError;
use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

/// How authoritative a calendar part is; lower is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rank {
    /// `text/calendar` with a `method=` parameter: what RFC 6047 prescribes.
    CalendarWithMethod,
    /// `text/calendar` without `method=`.
    Calendar,
    /// `application/ics`, `text/x-vcalendar` and similar attachments.
    IcsType,
    /// Any other type whose file name ends in `.ics`.
    IcsName,
}

/// One part that may hold calendar data.
#[derive(Debug)]
pub(crate) struct CalendarPart<'m, 'x> {
    /// How authoritative the part is.
    pub rank: Rank,
    /// The `method=` parameter of its Content-Type, if any.
    pub method_param: Option<String>,
    /// The part itself.
    pub part: &'m MessagePart<'x>,
}

/// What the walk found.
#[derive(Debug, Default)]
pub(crate) struct Found<'m, 'x> {
    /// Calendar candidates in document order.
    pub calendars: Vec<CalendarPart<'m, 'x>>,
    /// Whether a TNEF part (winmail.dat) was seen.
    pub tnef: bool,
}

/// Walks the MIME tree of `message`, refusing nesting deeper than `max_depth`.
pub(crate) fn find_calendar_parts<'m, 'x>(
    message: &'m Message<'x>,
    max_depth: usize,
) -> Result<Found<'m, 'x>, ImipError> {
    let mut found = Found::default();
    let mut stack: Vec<(u32, usize)> = vec![(0, 0)];
    while let Some((id, depth)) = stack.pop() {
        let Some(part) = message.parts.get(id as usize) else {
            continue;
        };
        if let PartType::Multipart(children) = &part.body {
            if depth >= max_depth {
                return Err(ImipError::NestingTooDeep { limit: max_depth });
            }
            // Children always come after their parent; anything else would be a loop.
            stack.extend(
                children
                    .iter()
                    .rev()
                    .filter(|c| **c > id)
                    .map(|c| (*c, depth + 1)),
            );
            continue;
        }
        classify(part, &mut found);
    }
    Ok(found)
}

fn classify<'m, 'x>(part: &'m MessagePart<'x>, found: &mut Found<'m, 'x>) {
    if matches!(part.body, PartType::Message(_)) {
        return;
    }
    let (ctype, subtype, method) = match part.content_type() {
        Some(ct) => (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or_default().to_ascii_lowercase(),
            ct.attribute("method")
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty()),
        ),
        None => ("text".to_string(), "plain".to_string(), None),
    };
    let name = part
        .attachment_name()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let rank = match (ctype.as_str(), subtype.as_str()) {
        ("text", "calendar") if method.is_some() => Some(Rank::CalendarWithMethod),
        ("text", "calendar") => Some(Rank::Calendar),
        ("application", "ics" | "x-ics" | "calendar") | ("text", "x-vcalendar" | "icalendar") => {
            Some(Rank::IcsType)
        }
        ("application", "ms-tnef" | "vnd.ms-tnef") => {
            found.tnef = true;
            None
        }
        _ if name == "winmail.dat" => {
            found.tnef = true;
            None
        }
        _ if name.ends_with(".ics") => Some(Rank::IcsName),
        _ => None,
    };
    if let Some(rank) = rank {
        found.calendars.push(CalendarPart {
            rank,
            method_param: method,
            part,
        });
    }
}

/// The decoded text of a calendar part.
///
/// `text/*` parts were decoded by mail-parser using their charset. Other types arrive
/// as bytes: they are decoded with their `charset=` if it names a known one, else as
/// UTF-8 (the iCalendar default), else as Windows-1252, which every byte sequence is.
pub(crate) fn part_text(part: &MessagePart<'_>) -> String {
    match &part.body {
        PartType::Text(text) | PartType::Html(text) => text.to_string(),
        PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
            let charset = part
                .content_type()
                .and_then(|ct| ct.attribute("charset"))
                .and_then(|c| mail_parser::decoders::charsets::map::charset_decoder(c.as_bytes()));
            match (charset, std::str::from_utf8(bytes)) {
                (Some(decode), _) => decode(bytes),
                (None, Ok(text)) => text.to_string(),
                (None, Err(_)) => {
                    match mail_parser::decoders::charsets::map::charset_decoder(b"windows-1252") {
                        Some(decode) => decode(bytes),
                        None => String::from_utf8_lossy(bytes).into_owned(),
                    }
                }
            }
        }
        PartType::Message(_) | PartType::Multipart(_) => String::new(),
    }
}

/// The size of the part as sent (transfer-encoded), known before any decoding.
pub(crate) fn encoded_len(part: &MessagePart<'_>) -> usize {
    part.raw_end_offset().saturating_sub(part.raw_body_offset()) as usize
}
