//! The RSVP answer page: what an attendee sees after pressing a link in an invitation.
//!
//! One template (`templates/rsvp.html`, auto-escaped because its name ends in `.html`,
//! so a SUMMARY such as `<script>` stays text), no JavaScript and no external
//! resources; the texts come from the Fluent catalogue (`locales/rsvp-*.ftl`) in the
//! attendee's language. The page shows the event as the invitation does (title, when
//! in the event's own zone, where, organizer), the attendee's current answer, and a
//! form with the chosen answer pre-selected. This module only renders: checking the
//! token and applying the answer is `daemon::web`'s job.

use super::calendar::{self, Person};
use super::error::ImipError;
use super::i18n::{Arg, Catalogue, Language};
use super::rsvp::{self, Answer};
use super::when::{component_span, format_span};
use crate::itip::CalAddress;
use calcard::icalendar::{ICalendar, ICalendarProperty};
use minijinja::{context, Environment};
use std::sync::OnceLock;

/// The longest comment the form takes, in characters.
pub const MAX_COMMENT_CHARS: usize = 500;

/// Why the page cannot offer the form; each has its own text and HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The token is not a token.
    Malformed,
    /// The token's signature does not match.
    Altered,
    /// The token is past its expiry.
    Expired,
    /// The attendee is no longer on the event.
    Removed,
    /// The organizer cancelled the event.
    Cancelled,
    /// The event is gone from the organizer's calendar.
    Gone,
    /// The store is busy: try again.
    Busy,
    /// Too many requests for this link or from this client.
    Limited,
    /// A POST without a valid answer.
    Form,
    /// A request larger than the form can be.
    TooLarge,
    /// No such page.
    NotFound,
}

impl Problem {
    /// The HTTP status of the page.
    pub fn status(self) -> u16 {
        match self {
            Problem::Malformed | Problem::Form => 400,
            Problem::Altered => 403,
            Problem::Removed => 403,
            Problem::Expired | Problem::Cancelled | Problem::Gone => 410,
            Problem::NotFound => 404,
            Problem::TooLarge => 413,
            Problem::Limited => 429,
            Problem::Busy => 503,
        }
    }

    fn message_id(self) -> &'static str {
        match self {
            Problem::Malformed => "rsvp-error-malformed",
            Problem::Altered => "rsvp-error-altered",
            Problem::Expired => "rsvp-error-expired",
            Problem::Removed => "rsvp-error-removed",
            Problem::Cancelled => "rsvp-error-cancelled",
            Problem::Gone => "rsvp-error-gone",
            Problem::Busy => "rsvp-error-busy",
            Problem::Limited => "rsvp-error-limit",
            Problem::Form => "rsvp-error-form",
            Problem::TooLarge => "rsvp-error-too-large",
            Problem::NotFound => "rsvp-error-not-found",
        }
    }
}

impl From<rsvp::TokenError> for Problem {
    fn from(err: rsvp::TokenError) -> Problem {
        match err {
            rsvp::TokenError::Malformed => Problem::Malformed,
            rsvp::TokenError::Altered => Problem::Altered,
            rsvp::TokenError::Expired => Problem::Expired,
        }
    }
}

/// The event as the page shows it, read from the organizer's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventView {
    /// SUMMARY, on one line.
    pub title: String,
    /// Start and end in the event's zone, as the invitation writes it.
    pub when: Option<String>,
    /// LOCATION.
    pub location: Option<String>,
    /// The organizer, `Name <address>`.
    pub organizer: Option<String>,
    /// The attendee's current PARTSTAT, lowercase.
    pub partstat: String,
}

/// What the page is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// The form, with `chosen` pre-selected.
    Form {
        /// The event.
        event: EventView,
        /// The answer of the link pressed.
        chosen: Option<Answer>,
    },
    /// After a POST: the answer is recorded (`changed`), or was already so.
    Done {
        /// The event, with the new answer.
        event: EventView,
        /// The answer sent.
        answer: Answer,
        /// False when the answer was the same as before.
        changed: bool,
    },
    /// Nothing to answer, and why.
    Problem(Problem),
}

/// Reads what the page shows about `stored` for `attendee`; `Err` when the page
/// must show a problem instead (cancelled, attendee removed).
pub fn event_view(
    stored: &ICalendar,
    attendee: &CalAddress,
    language: Language,
) -> Result<Result<EventView, Problem>, ImipError> {
    if rsvp::is_cancelled(stored) {
        return Ok(Err(Problem::Cancelled));
    }
    let Some(partstat) = rsvp::current_partstat(stored, attendee) else {
        return Ok(Err(Problem::Removed));
    };
    let catalogue = Catalogue::get()?;
    let main = calendar::main_component(stored);
    let title = main
        .and_then(|c| calendar::one_line_value(c, &ICalendarProperty::Summary))
        .map_or_else(|| catalogue.text(language, "untitled", &[]), Ok)?;
    let resolver = stored.build_tz_resolver();
    let when = match main.and_then(|c| component_span(c, &resolver)) {
        Some((start, end)) => Some(format_span(catalogue, language, &start, end.as_ref())?),
        None => None,
    };
    Ok(Ok(EventView {
        title,
        when,
        location: main.and_then(|c| calendar::one_line_value(c, &ICalendarProperty::Location)),
        organizer: calendar::organizer(stored).map(|p| p.display_with_address()),
        partstat,
    }))
}

/// The language of the page: the attendee's LANGUAGE parameter, else the browser's
/// first supported `Accept-Language`, else `default`.
pub fn page_language(
    stored: Option<&ICalendar>,
    attendee: Option<&CalAddress>,
    accept_language: Option<&str>,
    default: Language,
) -> Language {
    let from_calendar = match (stored, attendee) {
        (Some(cal), Some(a)) => calendar::find_person(cal, a)
            .and_then(|p: Person| p.language)
            .and_then(|tag| Language::from_tag(&tag)),
        _ => None,
    };
    from_calendar
        .or_else(|| {
            accept_language?
                .split(',')
                .filter_map(|part| part.split(';').next())
                .find_map(Language::from_tag)
        })
        .unwrap_or(default)
}

/// Renders `page` in `language`: the complete HTML document.
pub fn render_page(page: &Page, language: Language) -> Result<String, ImipError> {
    let catalogue = Catalogue::get()?;
    let t = |id: &str| catalogue.text(language, id, &[]);
    let partstat = |p: &str| catalogue.text(language, "partstat", &[("partstat", Arg::Str(p))]);
    let answer_label = |a: Answer| {
        t(match a {
            Answer::Accepted => "rsvp-accept",
            Answer::Tentative => "rsvp-maybe",
            Answer::Declined => "rsvp-decline",
        })
    };
    let event_ctx = |e: &EventView| -> Result<minijinja::Value, ImipError> {
        Ok(context! {
            title => &e.title,
            when => &e.when,
            location => &e.location,
            organizer => &e.organizer,
            current => partstat(&e.partstat)?,
        })
    };
    let labels = context! {
        title => t("label-title")?,
        when => t("label-when")?,
        place => t("label-where")?,
        organizer => t("label-organizer")?,
        current => t("rsvp-current")?,
        choose => t("rsvp-choose")?,
        comment => t("rsvp-comment")?,
        send => t("rsvp-send")?,
    };
    let none = minijinja::Value::from(());
    let (heading, notice, problem, event, form) = match page {
        Page::Form { event, chosen } => {
            let current = Answer::from_key(&event.partstat);
            let selected = chosen.or(current);
            let choices = Answer::ALL
                .iter()
                .map(|a| {
                    Ok(context! {
                        key => a.key(),
                        label => answer_label(*a)?,
                        checked => selected == Some(*a),
                    })
                })
                .collect::<Result<Vec<_>, ImipError>>()?;
            (
                t("rsvp-page-title")?,
                none.clone(),
                none.clone(),
                event_ctx(event)?,
                context! { choices, max_comment => MAX_COMMENT_CHARS },
            )
        }
        Page::Done {
            event,
            answer,
            changed,
        } => {
            let label = partstat(answer.key())?;
            let id = if *changed {
                "rsvp-done"
            } else {
                "rsvp-unchanged"
            };
            let notice = catalogue.text(language, id, &[("answer", Arg::Str(&label))])?;
            (
                t("rsvp-page-title")?,
                minijinja::Value::from(notice),
                none.clone(),
                event_ctx(event)?,
                none.clone(),
            )
        }
        Page::Problem(problem) => (
            t("rsvp-error-title")?,
            none.clone(),
            minijinja::Value::from(t(problem.message_id())?),
            none.clone(),
            none.clone(),
        ),
    };
    environment()?
        .get_template("rsvp.html")
        .and_then(|tpl| {
            tpl.render(context! {
                lang => language.tag(),
                heading, notice, problem, event, form, labels,
            })
        })
        .map_err(|e| ImipError::Template(format!("rsvp.html: {e:#}")))
}

/// The text of the links in an invitation: the intro line and the three button labels.
pub(crate) fn link_labels(language: Language) -> Result<[String; 4], ImipError> {
    let catalogue = Catalogue::get()?;
    let t = |id: &str| catalogue.text(language, id, &[]);
    Ok([
        t("rsvp-links")?,
        t("rsvp-accept")?,
        t("rsvp-maybe")?,
        t("rsvp-decline")?,
    ])
}

fn environment() -> Result<&'static Environment<'static>, ImipError> {
    static ENV: OnceLock<Result<Environment<'static>, ImipError>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template("rsvp.html", include_str!("templates/rsvp.html"))
            .map_err(|e| ImipError::Template(format!("rsvp.html: {e:#}")))?;
        Ok(env)
    })
    .as_ref()
    .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(summary: &str, extra: &str) -> ICalendar {
        ICalendar::parse(format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n\
             BEGIN:VEVENT\r\nUID:u1\r\nDTSTAMP:20300101T000000Z\r\n\
             DTSTART;TZID=Europe/Berlin:20300102T120000\r\nDTEND;TZID=Europe/Berlin:20300102T130000\r\n\
             SUMMARY:{summary}\r\nLOCATION:Room 1\r\n{extra}\
             ORGANIZER;CN=Alice:mailto:alice@example.com\r\n\
             ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;LANGUAGE=de:mailto:bob@outside.example\r\n\
             END:VEVENT\r\nEND:VCALENDAR\r\n"
        ))
        .unwrap()
    }

    fn bob() -> CalAddress {
        CalAddress::parse("mailto:bob@outside.example").unwrap()
    }

    /// The English form for Bob about a stored event named `summary`.
    fn form_html(summary: &str, chosen: Option<Answer>) -> String {
        let cal = stored(summary, "");
        let event = event_view(&cal, &bob(), Language::En).unwrap().unwrap();
        render_page(&Page::Form { event, chosen }, Language::En).unwrap()
    }

    #[test]
    fn the_form_shows_the_event_and_preselects_the_pressed_answer() {
        let html = form_html("Lunch", Some(Answer::Declined));
        assert!(html.contains("Lunch"), "{html}");
        assert!(html.contains("Room 1"), "{html}");
        assert!(html.contains("12:00–13:00 (Europe&#x2f;Berlin)"), "{html}");
        assert!(html.contains("Alice &lt;alice@example.com&gt;"), "{html}");
        assert!(
            html.contains(r#"value="declined" id="answer-declined" checked"#),
            "{html}"
        );
        assert!(!html.contains(r#"id="answer-accepted" checked"#), "{html}");
        assert!(html.contains(r#"<form method="post""#), "{html}");
        assert!(!html.contains("<script"), "{html}");
    }

    #[test]
    fn a_hostile_summary_is_shown_as_text() {
        let html = form_html("<script>alert(1)</script>", None);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn cancelled_events_and_removed_attendees_have_their_own_page() {
        let cancelled = stored("Lunch", "STATUS:CANCELLED\r\n");
        assert_eq!(
            event_view(&cancelled, &bob(), Language::En).unwrap(),
            Err(Problem::Cancelled)
        );
        let carol = CalAddress::parse("mailto:carol@outside.example").unwrap();
        assert_eq!(
            event_view(&stored("Lunch", ""), &carol, Language::En).unwrap(),
            Err(Problem::Removed)
        );
        let html = render_page(&Page::Problem(Problem::Removed), Language::Fr).unwrap();
        assert!(html.contains("liste des invités"), "{html}");
    }

    #[test]
    fn the_page_speaks_the_attendees_language_then_the_browsers() {
        let cal = stored("Lunch", "");
        assert_eq!(
            page_language(
                Some(&cal),
                Some(&bob()),
                Some("fr-FR,fr;q=0.9"),
                Language::En
            ),
            Language::De
        );
        assert_eq!(
            page_language(None, None, Some("ja, fr-FR;q=0.8"), Language::En),
            Language::Fr
        );
        assert_eq!(page_language(None, None, None, Language::De), Language::De);
    }
}
