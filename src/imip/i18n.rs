//! Languages of outgoing mail and the translation catalogue.
//!
//! Every sentence, label and date part a person reads comes from a Fluent catalogue,
//! one `.ftl` file per language under `locales/`, compiled into the binary. Fluent
//! (Mozilla's localisation system, `fluent-bundle`) handles the grammar that varies by
//! language, such as selecting a phrase by answer or by weekday, inside the catalogue,
//! so the code never concatenates sentences. This module does not choose *which*
//! language a recipient gets; see `outgoing`.
//!
//! Why `fluent-bundle`: maintained by Project Fluent (Mozilla), plain-text catalogues
//! translators can edit, selectors for grammar, no build step, and it builds on 1.95.

use super::error::ImipError;
use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use std::fmt;
use std::sync::OnceLock;
use unic_langid::LanguageIdentifier;

/// A language imipd writes mail in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Language {
    /// English (the fallback when nothing else is known).
    #[default]
    En,
    /// German.
    De,
    /// French.
    Fr,
}

impl Language {
    /// Every supported language, for tests and configuration checks.
    pub const ALL: [Language; 3] = [Language::En, Language::De, Language::Fr];

    /// Reads a language tag such as `de`, `de-CH`, `FR_ca` (RFC 5646, as found in an
    /// iCalendar LANGUAGE parameter); `None` for languages imipd has no catalogue for.
    pub fn from_tag(tag: &str) -> Option<Language> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Language::En),
            "de" => Some(Language::De),
            "fr" => Some(Language::Fr),
            _ => None,
        }
    }

    /// The tag written in Content-Language headers, e.g. `de`.
    pub fn tag(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::De => "de",
            Language::Fr => "fr",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Language::En => include_str!("locales/en.ftl"),
            Language::De => include_str!("locales/de.ftl"),
            Language::Fr => include_str!("locales/fr.ftl"),
        }
    }

    /// The RSVP link and page texts (`imip::rsvp_page`), kept in their own file.
    fn rsvp_source(self) -> &'static str {
        match self {
            Language::En => include_str!("locales/rsvp-en.ftl"),
            Language::De => include_str!("locales/rsvp-de.ftl"),
            Language::Fr => include_str!("locales/rsvp-fr.ftl"),
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// The compiled catalogues, one Fluent bundle per language.
pub(crate) struct Catalogue {
    bundles: Vec<(Language, FluentBundle<FluentResource>)>,
}

impl Catalogue {
    /// The process-wide catalogue, parsed on first use.
    pub(crate) fn get() -> Result<&'static Catalogue, ImipError> {
        static CATALOGUE: OnceLock<Result<Catalogue, ImipError>> = OnceLock::new();
        CATALOGUE
            .get_or_init(Catalogue::load)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn load() -> Result<Catalogue, ImipError> {
        let mut bundles = Vec::with_capacity(Language::ALL.len());
        for language in Language::ALL {
            let resource = FluentResource::try_new(format!(
                "{}\n{}",
                language.source(),
                language.rsvp_source()
            ))
            .map_err(|(_, errors)| {
                ImipError::Template(format!("locales/{language}.ftl: {errors:?}"))
            })?;
            let tag: LanguageIdentifier = language
                .tag()
                .parse()
                .map_err(|e| ImipError::Template(format!("language tag {language}: {e}")))?;
            let mut bundle = FluentBundle::new_concurrent(vec![tag]);
            // Unicode isolation marks would end up inside subjects and plain text.
            bundle.set_use_isolating(false);
            bundle
                .add_resource(resource)
                .map_err(|e| ImipError::Template(format!("locales/{language}.ftl: {e:?}")))?;
            bundles.push((language, bundle));
        }
        Ok(Catalogue { bundles })
    }

    fn bundle(&self, language: Language) -> Result<&FluentBundle<FluentResource>, ImipError> {
        self.bundles
            .iter()
            .find(|(l, _)| *l == language)
            .map(|(_, b)| b)
            .ok_or_else(|| ImipError::Template(format!("no catalogue for {language}")))
    }

    /// The message `id` in `language`, with `args` filled in.
    ///
    /// A missing message or argument is an error rather than a silently wrong text.
    pub(crate) fn text(
        &self,
        language: Language,
        id: &str,
        args: &[(&str, Arg<'_>)],
    ) -> Result<String, ImipError> {
        let bundle = self.bundle(language)?;
        let pattern = bundle
            .get_message(id)
            .and_then(|m| m.value())
            .ok_or_else(|| {
                ImipError::Template(format!(
                    "message {id:?} missing from locales/{language}.ftl"
                ))
            })?;
        let mut fluent_args = FluentArgs::new();
        for (name, value) in args {
            let value = match value {
                Arg::Str(s) => FluentValue::from(s.to_string()),
                Arg::Num(n) => FluentValue::from(*n),
            };
            fluent_args.set(name.to_string(), value);
        }
        let mut errors = Vec::new();
        let text = bundle.format_pattern(pattern, Some(&fluent_args), &mut errors);
        if let Some(error) = errors.first() {
            return Err(ImipError::Template(format!(
                "message {id:?} in locales/{language}.ftl: {error}"
            )));
        }
        Ok(text.into_owned())
    }
}

/// A value passed into a catalogue message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    /// Text, also used for selector keys such as `accepted`.
    Str(&'a str),
    /// A number, used for selectors such as the weekday.
    Num(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids of every message in `language`'s catalogue.
    fn message_ids(language: Language) -> Vec<String> {
        [language.source(), language.rsvp_source()]
            .concat()
            .lines()
            .filter(|line| line.starts_with(|c: char| c.is_ascii_lowercase()))
            .filter_map(|line| line.split_once(" =").map(|(id, _)| id.trim().to_string()))
            .collect()
    }

    #[test]
    fn language_tags_pick_the_primary_subtag() {
        assert_eq!(Language::from_tag("de-CH"), Some(Language::De));
        assert_eq!(Language::from_tag("FR_ca"), Some(Language::Fr));
        assert_eq!(Language::from_tag(" en "), Some(Language::En));
        assert_eq!(Language::from_tag("ja"), None);
        assert_eq!(Language::from_tag(""), None);
    }

    #[test]
    fn every_language_has_every_message() {
        let english = message_ids(Language::En);
        assert!(english.len() > 30, "catalogue looks truncated: {english:?}");
        for language in [Language::De, Language::Fr] {
            let ids = message_ids(language);
            let missing: Vec<_> = english.iter().filter(|id| !ids.contains(id)).collect();
            assert!(missing.is_empty(), "{language} lacks {missing:?}");
            let extra: Vec<_> = ids.iter().filter(|id| !english.contains(id)).collect();
            assert!(extra.is_empty(), "{language} has unknown {extra:?}");
        }
    }

    #[test]
    fn messages_select_by_argument() {
        let catalogue = Catalogue::get().unwrap();
        let weekday = |l, n| catalogue.text(l, "weekday", &[("n", Arg::Num(n))]).unwrap();
        assert_eq!(weekday(Language::En, 2), "Tue");
        assert_eq!(weekday(Language::De, 2), "Di.");
        assert_eq!(weekday(Language::Fr, 2), "mar.");
        let partstat = catalogue
            .text(
                Language::De,
                "partstat",
                &[("partstat", Arg::Str("accepted"))],
            )
            .unwrap();
        assert_eq!(partstat, "Zugesagt");
    }

    #[test]
    fn a_missing_message_is_an_error_not_an_empty_text() {
        let catalogue = Catalogue::get().unwrap();
        assert!(catalogue
            .text(Language::En, "no-such-message", &[])
            .is_err());
    }
}
