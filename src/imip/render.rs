//! Subject, plain-text and HTML body of an outgoing iMIP mail.
//!
//! The wording lives in two places, neither of them in code: the templates under
//! `templates/` (minijinja, Jinja2 syntax; layout of the subject and the two bodies)
//! and the Fluent catalogue under `locales/` (every sentence and label, reached from
//! the templates through the `tr(id, name=value, ...)` function). This module only
//! gathers the facts the templates show. The HTML template is auto-escaped because
//! its name ends in `.html`, so a SUMMARY such as `<script>` stays text.
//!
//! Why `minijinja`: widely used, no dependencies in its default-off configuration,
//! auto-escaping by file name, templates loaded at run time from `include_str!`.

use super::attendee_list::AttendeeList;
use super::calendar::{self, Person};
use super::changes;
use super::error::ImipError;
use super::i18n::{Arg, Catalogue, Language};
use super::kind::MailKind;
use super::series;
use super::when::{component_span, format_span};
use crate::itip::{CalAddress, ItipMessage, MessageSummary};
use calcard::icalendar::ICalendarProperty;
use minijinja::value::{Kwargs, Value};
use minijinja::{context, Environment, State, UndefinedBehavior};
use std::sync::OnceLock;

/// The three texts of one mail; the bodies end their lines with CRLF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    /// The Subject header, one line.
    pub subject: String,
    /// The text/plain body (CRLF line ends).
    pub text: String,
    /// The text/html body (CRLF line ends).
    pub html: String,
}

/// Renders the subject and bodies of `msg` for `recipient` in `language`, with RSVP
/// links (`imip::rsvp`) in both bodies when `links` is given, and as many attendees as
/// `list` allows.
pub(crate) fn render_with_links(
    msg: &ItipMessage,
    kind: &MailKind,
    language: Language,
    links: Option<&super::rsvp::RsvpLinks>,
    list: AttendeeList,
) -> Result<Rendered, ImipError> {
    let catalogue = Catalogue::get()?;
    let env = environment()?;
    let cal = &msg.calendar;
    let main = calendar::main_component(cal);

    let title = main
        .and_then(|c| calendar::one_line_value(c, &ICalendarProperty::Summary))
        .map_or_else(|| catalogue.text(language, "untitled", &[]), Ok)?;
    let resolver = cal.build_tz_resolver();
    let span = main.and_then(|c| component_span(c, &resolver));
    // A series that already started is shown by its next occurrence (not for a
    // proposed time, which is the proposal as written).
    let next = match main {
        Some(c) if !matches!(kind, MailKind::Counter) => series::stamped_at(c, &resolver)
            .and_then(|now| series::next_occurrence(cal, c, &resolver, now)),
        _ => None,
    };
    let when = match next.as_ref().or(span.as_ref()) {
        Some((start, end)) => Some(format_span(catalogue, language, start, end.as_ref())?),
        None => None,
    };
    let event = match &when {
        Some(when) => catalogue.text(
            language,
            "event-with-time",
            &[("title", Arg::Str(&title)), ("when", Arg::Str(when))],
        )?,
        None => title.clone(),
    };

    let organizer = calendar::organizer(cal);
    let sender = calendar::find_person(cal, &msg.from);
    let sender_name = sender
        .as_ref()
        .map_or_else(|| msg.from.to_string(), Person::display);
    let organizer_name = if kind.is_from_attendee() {
        organizer.as_ref().map(Person::display)
    } else {
        Some(sender_name.clone())
    }
    .unwrap_or_default();

    // REFRESH and DECLINECOUNTER name attendees without answers: no list for them.
    let (people, total) = if kind.shows_answers() {
        let total = calendar::attendee_count(cal);
        (calendar::first_attendees(cal, list.shown(total)), total)
    } else {
        (Vec::new(), 0)
    };
    // Under "hidden" no names are listed, and no count of the others either.
    let more = total.saturating_sub(people.len());
    let more_attendees = match (people.is_empty(), more) {
        (true, _) | (_, 0) => None,
        (false, more) => Some(catalogue.text(
            language,
            "attendees-more",
            &[("count", Arg::Num(i64::try_from(more).unwrap_or(i64::MAX)))],
        )?),
    };
    let attendees = people
        .iter()
        .map(|a| {
            Ok(context! {
                name => a.display_with_address(),
                status => catalogue.text(language, "partstat", &[("partstat", Arg::Str(&a.partstat))])?,
                delegated_to => a.delegated_to.as_ref().map(|d| display_address(msg, d)),
            })
        })
        .collect::<Result<Vec<Value>, ImipError>>()?;

    let changes = match &msg.summary {
        MessageSummary::Update { changes } => changes::describe(catalogue, language, cal, changes)?
            .into_iter()
            .map(|c| context! { field => c.field, old => c.old, new => c.new })
            .collect(),
        _ => Vec::new(),
    };

    let repeats = match (main.and_then(series::rule_of), &span) {
        (Some(rule), Some((start, _))) => Some(series::repeats(
            catalogue,
            language,
            rule,
            start,
            next.is_some(),
            &resolver,
        )?),
        _ => None,
    };
    let field_changes = match &msg.summary {
        MessageSummary::Update { changes } => changes.as_slice(),
        _ => &[],
    };
    let occurrence = series::single_occurrence(
        catalogue,
        language,
        cal,
        &resolver,
        kind.key(),
        field_changes,
    )?;

    let (partstat, delegate, delegator) = match kind {
        MailKind::Reply { partstat, delegate } => (
            partstat.clone(),
            delegate.clone().unwrap_or_default(),
            String::new(),
        ),
        MailKind::DelegatedInvitation(delegator) => {
            (String::new(), String::new(), delegator.clone())
        }
        _ => (String::new(), String::new(), String::new()),
    };

    let text_of = |p| {
        main.and_then(|c| calendar::text_value(c, &p))
            .map(str::to_string)
    };
    let rsvp = match links {
        Some(links) => {
            let [intro, accept, maybe, decline] = super::rsvp_page::link_labels(language)?;
            Some(context! {
                intro,
                links => vec![
                    context! { label => accept, url => &links.accept },
                    context! { label => maybe, url => &links.maybe },
                    context! { label => decline, url => &links.decline },
                ],
            })
        }
        None => None,
    };
    let ctx = context! {
        rsvp,
        lang => language.tag(),
        kind => kind.key(),
        intro_kind => occurrence.as_ref().map_or(kind.key(), |o| o.key),
        occurrence_date => occurrence.as_ref().map(|o| o.date.clone()).unwrap_or_default(),
        moved_from => occurrence.as_ref().map(|o| o.from.clone()).unwrap_or_default(),
        moved_to => occurrence.as_ref().map(|o| o.to.clone()).unwrap_or_default(),
        partstat,
        delegate,
        delegator,
        title,
        event,
        when,
        when_label => if matches!(kind, MailKind::Counter) { "label-proposed-when" } else { "label-when" },
        repeats,
        location => text_of(ICalendarProperty::Location),
        description => text_of(ICalendarProperty::Description),
        comment => text_of(ICalendarProperty::Comment),
        organizer => organizer.as_ref().map(Person::display_with_address),
        organizer_name,
        sender_name,
        attendees,
        more_attendees,
        changes,
    };

    let render = |name: &str, ctx: Value| {
        env.get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| ImipError::Template(format!("{name}: {e:#}")))
    };
    let subject = calendar::one_line(&render("subject.txt", ctx.clone())?);
    let html_ctx = context! { subject => subject.clone(), ..ctx.clone() };
    Ok(Rendered {
        text: crlf(&render("body.txt", ctx)?),
        html: crlf(&render("body.html", html_ctx)?),
        subject,
    })
}

/// Ends every line with CRLF, the line break of MIME text (RFC 2046 §4.1.1). The
/// templates have LF; quoted-printable would turn it into CRLF, base64 would keep it.
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    for line in text.split_inclusive('\n') {
        match line.strip_suffix('\n') {
            Some(body) => {
                out.push_str(body.strip_suffix('\r').unwrap_or(body));
                out.push_str("\r\n");
            }
            None => out.push_str(line),
        }
    }
    out
}

/// The process-wide template environment, built on first use.
fn environment() -> Result<&'static Environment<'static>, ImipError> {
    static ENV: OnceLock<Result<Environment<'static>, ImipError>> = OnceLock::new();
    ENV.get_or_init(build_environment)
        .as_ref()
        .map_err(Clone::clone)
}

fn build_environment() -> Result<Environment<'static>, ImipError> {
    let catalogue = Catalogue::get()?;
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| ImipError::Template(e.to_string()))?;
    env.set_syntax(syntax);
    let templates = [
        ("subject.txt", include_str!("templates/subject.txt")),
        ("body.txt", include_str!("templates/body.txt")),
        ("body.html", include_str!("templates/body.html")),
    ];
    for (name, source) in templates {
        env.add_template(name, source)
            .map_err(|e| ImipError::Template(format!("{name}: {e:#}")))?;
    }
    env.add_function(
        "tr",
        move |state: &State, id: String, kwargs: Kwargs| -> Result<String, minijinja::Error> {
            let language = state
                .lookup("lang")
                .and_then(|v| v.as_str().and_then(Language::from_tag))
                .unwrap_or_default();
            let values: Vec<(String, Value)> = kwargs
                .args()
                .map(|k| (k.to_string(), kwargs.peek::<Value>(k).unwrap_or_default()))
                .collect();
            // Strings stay text; numbers feed numeric selectors; none becomes "".
            let args: Vec<(&str, Arg<'_>)> = values
                .iter()
                .map(|(k, v)| {
                    let arg = match v.as_str() {
                        Some(text) => Arg::Str(text),
                        None => i64::try_from(v.clone()).map_or(Arg::Str(""), Arg::Num),
                    };
                    (k.as_str(), arg)
                })
                .collect();
            catalogue.text(language, &id, &args).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
            })
        },
    );
    Ok(env)
}

/// The CN of a delegate or delegator named by address, else the address itself.
fn display_address(msg: &ItipMessage, value: &str) -> String {
    CalAddress::parse(value)
        .and_then(|a| calendar::find_person(&msg.calendar, &a))
        .map_or_else(|| value.to_string(), |p| p.display_with_address())
}
