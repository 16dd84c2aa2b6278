//! Reading `Authentication-Results` headers (RFC 8601) added by a trusted MTA.
//!
//! Anyone can write an `Authentication-Results` header into a mail, so only headers
//! whose authserv-id is in the caller's trusted list count; every other one is ignored.
//! (The MTA that adds them must also strip copies of its own id from incoming mail,
//! as RFC 8601 section 5 asks; Postfix with OpenDKIM/OpenDMARC and rspamd do.)
//! This module does no DKIM or SPF checking of its own.

/// One `method=result` statement with its properties, e.g. `dkim=pass header.d=x.org`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthResult {
    /// `dkim`, `spf`, `dmarc`, ... (lowercase, without version).
    pub method: String,
    /// `pass`, `fail`, `none`, ... (lowercase).
    pub result: String,
    /// `ptype.property` → value, e.g. `header.d` → `example.com` (keys lowercase).
    pub properties: Vec<(String, String)>,
}

impl AuthResult {
    /// The value of a property such as `header.d`.
    pub(crate) fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses one header value: the authserv-id (lowercase) and its results.
pub(crate) fn parse(value: &str) -> Option<(String, Vec<AuthResult>)> {
    let cleaned = strip_comments(value);
    let mut segments = split_outside_quotes(&cleaned, ';').into_iter();
    let authserv_id = segments
        .next()?
        .split_whitespace()
        .next()?
        .to_ascii_lowercase();
    let mut results = Vec::new();
    for segment in segments {
        let mut tokens = split_whitespace_outside_quotes(&segment).into_iter();
        let Some(first) = tokens.next() else {
            continue;
        };
        let Some((method, result)) = first.split_once('=') else {
            continue; // "none" or garbage
        };
        let method = method
            .split('/')
            .next()
            .unwrap_or(method)
            .to_ascii_lowercase();
        let mut properties = Vec::new();
        for token in tokens {
            if let Some((key, value)) = token.split_once('=') {
                let key = key.to_ascii_lowercase();
                if key.contains('.') {
                    properties.push((key, unquote(value).to_string()));
                }
            }
        }
        results.push(AuthResult {
            method,
            result: unquote(result).to_ascii_lowercase(),
            properties,
        });
    }
    Some((authserv_id, results))
}

/// Removes `(comments)`, which may nest, leaving quoted strings alone.
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                out.push(' ');
            }
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn split_outside_quotes(value: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    for c in value.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c == separator && !quoted {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

fn split_whitespace_outside_quotes(value: &str) -> Vec<String> {
    let mut parts = crate::text::split_outside_quotes(value, char::is_whitespace);
    parts.retain(|p| !p.is_empty());
    parts
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_typical_header() {
        let (id, results) = parse(
            "mx.example.org 1;\r\n dkim=pass (2048-bit key; unprotected) header.d=example.com \
             header.i=@example.com header.s=sel1 header.b=\"AbC;dEf\";\r\n\
             spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=bounce@example.com;\r\n\
             dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.com",
        )
        .unwrap();
        assert_eq!(id, "mx.example.org");
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].method, "dkim");
        assert_eq!(results[0].result, "pass");
        assert_eq!(results[0].property("header.d"), Some("example.com"));
        assert_eq!(results[0].property("header.b"), Some("AbC;dEf"));
        assert_eq!(
            results[1].property("smtp.mailfrom"),
            Some("bounce@example.com")
        );
        assert_eq!(results[2].method, "dmarc");
        assert_eq!(results[2].property("header.from"), Some("example.com"));
    }

    #[test]
    fn none_and_garbage_give_no_results() {
        assert_eq!(parse("mx.example.org; none").unwrap().1, vec![]);
        assert_eq!(parse("").map(|(_, r)| r.len()), None);
        let (_, results) = parse("mx; ((nested) comment) dkim=fail").unwrap();
        assert_eq!(results[0].result, "fail");
    }
}
