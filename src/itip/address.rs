//! Calendar user addresses.
//!
//! An ATTENDEE or ORGANIZER value is a URI (`mailto:Jane%2Edoe@Example.com?subject=x`),
//! but scheduling compares people, not URIs. [`CalAddress`] holds the normalised email
//! address that the rules compare; it never holds the raw property value, which the
//! engine copies verbatim wherever it writes iCalendar.

use std::borrow::Cow;
use std::fmt;

/// A normalised calendar user address: a lowercase `local@domain` email address.
///
/// Built only through [`CalAddress::parse`], so holding one proves the value passed the
/// normalisation rules (trim, strip `mailto:`, drop `?query`, percent-decode, remove
/// white space, lowercase, validate).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CalAddress(String);

impl CalAddress {
    /// Normalises an ATTENDEE/ORGANIZER value or a bare address.
    ///
    /// Returns `None` for anything that is not an email address once normalised
    /// (non-mailto URIs, a percent-encoded display name such as
    /// `mailto:john%20doe%20%3Cj@x%3E`): such attendees are ignored by scheduling.
    pub fn parse(raw: &str) -> Option<Self> {
        let mut value = raw.trim();
        if let Some(rest) = strip_prefix_ignore_case(value, "mailto:") {
            value = rest;
        } else if let Some((scheme, _)) = value.split_once(':') {
            // Any other scheme (urn:, http:, tel:) is not an email address.
            if !scheme.contains('@') {
                return None;
            }
        }
        if let Some((before, _)) = value.split_once('?') {
            value = before;
        }
        let decoded = percent_decode(value)?;
        // Nearly every address is ASCII: lowercase it byte by byte (the general path
        // costs a Unicode table lookup per character, and the engine normalises every
        // attendee of every version it reads).
        let compact: String = if decoded.is_ascii() {
            let mut compact = decoded.into_owned();
            compact.make_ascii_lowercase();
            if compact.bytes().any(|b| char::from(b).is_whitespace()) {
                compact.retain(|c| !c.is_whitespace());
            }
            compact
        } else {
            decoded
                .chars()
                .filter(|c| !c.is_whitespace())
                .flat_map(char::to_lowercase)
                .collect()
        };
        if is_valid_email(&compact) {
            Some(CalAddress(compact))
        } else {
            None
        }
    }

    /// The address as text, e.g. `jane.doe@example.net`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain part, used to pick per-domain sender policies.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }

    /// The `mailto:` URI for writing this address into iCalendar.
    pub fn to_mailto(&self) -> String {
        format!("mailto:{}", self.0)
    }
}

impl fmt::Display for CalAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for CalAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CalAddress::parse(s).ok_or_else(|| format!("{s:?} is not an email address"))
    }
}

/// `value` without `prefix`, compared ASCII case-insensitively; safe on any UTF-8.
pub fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(value: &str) -> Option<Cow<'_, str>> {
    if !value.contains('%') {
        return Some(Cow::Borrowed(value));
    }
    crate::text::decode_hex_escapes(value, b'%').map(Cow::Owned)
}

/// Longest local part recognised. RFC 5321 §4.5.3.1.1's 64 octets is what an SMTP
/// server must at least accept, not a rule for calendar addresses: iCloud's organizer
/// tokens (`2_…@imip.me.com`) are 77 characters and longer.
const MAX_LOCAL_PART: usize = 255;

/// Checks `local@domain`: a dot-atom local part (RFC 5322 atext) and a domain of
/// letter/digit/hyphen labels (non-ASCII letters allowed for IDN domains).
fn is_valid_email(value: &str) -> bool {
    let Some((local, domain)) = value.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > MAX_LOCAL_PART || domain.is_empty() || domain.len() > 255 {
        return false;
    }
    if value.is_ascii() {
        // The same rules byte by byte: for ASCII, `char::is_alphanumeric` is
        // `is_ascii_alphanumeric`, and the engine checks every attendee of every
        // version it reads (this was a tenth of a 10-attendee update).
        return is_ascii_dot_atom(local.as_bytes()) && is_ascii_domain(domain.as_bytes());
    }
    is_dot_atom_at_domain(local, domain)
}

/// The rules of [`is_valid_email`] on any characters (non-ASCII letters count as
/// letters, for internationalised addresses).
fn is_dot_atom_at_domain(local: &str, domain: &str) -> bool {
    let atext = |c: char| {
        c.is_alphanumeric()
            || matches!(
                c,
                '!' | '#'
                    | '$'
                    | '%'
                    | '&'
                    | '\''
                    | '*'
                    | '+'
                    | '-'
                    | '/'
                    | '='
                    | '?'
                    | '^'
                    | '_'
                    | '`'
                    | '{'
                    | '|'
                    | '}'
                    | '~'
            )
    };
    let local_ok = local
        .split('.')
        .all(|part| !part.is_empty() && part.chars().all(atext));
    let domain_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    });
    local_ok && domain_ok
}

/// RFC 5322 atext, for ASCII: what [`is_valid_email`]'s local part allows besides dots.
fn is_ascii_atext(b: u8) -> bool {
    ATEXT.get(usize::from(b)).copied().unwrap_or(false)
}

/// [`is_ascii_atext`] as a table: one load per character of every address read.
const ATEXT: [bool; 128] = {
    let mut table = [false; 128];
    let mut b = 0;
    while b < 128 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"!#$%&'*+-/=?^_`{|}~";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// An ASCII dot-atom: atext runs separated by single dots, none empty.
fn is_ascii_dot_atom(local: &[u8]) -> bool {
    local
        .split(|&b| b == b'.')
        .all(|part| !part.is_empty() && part.iter().all(|&b| is_ascii_atext(b)))
}

/// ASCII domain labels: letters, digits and inner hyphens, none empty.
fn is_ascii_domain(domain: &[u8]) -> bool {
    domain.split(|&b| b == b'.').all(|label| {
        !label.is_empty()
            && label.first() != Some(&b'-')
            && label.last() != Some(&b'-')
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Option<String> {
        CalAddress::parse(s).map(|a| a.0)
    }

    /// Asserts that each written address normalises to its expected form.
    fn assert_normalises(cases: &[(&str, &str)]) {
        for (written, expected) in cases {
            assert_eq!(norm(written).as_deref(), Some(*expected), "{written}");
        }
    }

    #[test]
    fn normalises_mailto_uris() {
        assert_normalises(&[
            ("MAILTO:Jane@Example.COM", "jane@example.com"),
            (" mailto:a@b.c ", "a@b.c"),
            ("conf_big@example.com", "conf_big@example.com"),
            (
                "mailto:jane%2Edoe@example.net?subject=Conference",
                "jane.doe@example.net",
            ),
        ]);
    }

    #[test]
    fn lowercases_and_compacts_ascii_and_non_ascii_alike() {
        assert_normalises(&[
            ("mailto:Jane\t.Doe @Example.NET", "jane.doe@example.net"),
            ("mailto:ÄNNE @Exämple.DE", "änne@exämple.de"),
            ("mailto:%C3%84nne@example.de", "änne@example.de"),
            ("mailto:o'brien+cal@example.ie", "o'brien+cal@example.ie"),
        ]);
    }

    #[test]
    fn a_local_part_over_64_characters_is_an_address() {
        let token = format!("2_{}", "h".repeat(75));
        assert_eq!(
            norm(&format!("mailto:{token}@imip.me.com")),
            Some(format!("{token}@imip.me.com"))
        );
        assert_eq!(
            norm(&format!("mailto:{}@example.com", "a".repeat(256))),
            None
        );
    }

    /// The ASCII shortcut of `is_valid_email` says what the general rules say, for
    /// every ASCII character in every position of the local part and the domain.
    #[test]
    fn the_ascii_check_agrees_with_the_general_rules() {
        for b in 0u8..128 {
            let c = char::from(b);
            for (local, domain) in [
                (format!("a{c}b"), "x.y".to_string()),
                (format!("{c}"), "x.y".to_string()),
                (format!("{c}a"), "x.y".to_string()),
                (format!("a{c}"), "x.y".to_string()),
                (format!("a.{c}"), "x.y".to_string()),
                ("a".to_string(), format!("x{c}y.z")),
                ("a".to_string(), format!("{c}.z")),
                ("a".to_string(), format!("{c}x.z")),
                ("a".to_string(), format!("x.z{c}")),
            ] {
                let fast =
                    is_ascii_dot_atom(local.as_bytes()) && is_ascii_domain(domain.as_bytes());
                assert_eq!(
                    fast,
                    is_dot_atom_at_domain(&local, &domain),
                    "{local:?} @ {domain:?}"
                );
            }
        }
    }

    #[test]
    fn rejects_what_is_not_an_address() {
        for written in [
            "mailto:john%20doe%20%3Cjohn.doe@example.net%3E",
            "urn:uuid:1234",
            "mailto:",
            "mailto:a@@b",
            "mailto:%ZZ@b.c",
            "mailto:a..b@c.d",
            "mailtö:a@b.c",
            "ü",
        ] {
            assert_eq!(norm(written), None, "{written}");
        }
    }
}
