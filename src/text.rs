//! Small text codecs that several layers read their inputs with: hex escapes (`%XX` in
//! URIs and tracking references, `+XX` in SMTP xtext) and lists split outside double
//! quotes. Pure and dependency-free, so every layer may use them without depending on
//! another.

/// `value` with every `<escape>XX` replaced by the byte of hex value XX; `None` when an
/// escape is malformed or the result is not UTF-8.
pub fn decode_hex_escapes(value: &str, escape: u8) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == escape {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The parts of `value` between characters that `is_separator` accepts outside double
/// quotes (the quotes stay in the parts); empty parts included.
pub fn split_outside_quotes(value: &str, is_separator: impl Fn(char) -> bool) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in value.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if is_separator(c) && !quoted {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_escapes_decode_and_malformed_ones_are_refused() {
        assert_eq!(
            decode_hex_escapes("a%2Eb%C3%A4", b'%').as_deref(),
            Some("a.bä")
        );
        assert_eq!(decode_hex_escapes("a+2Bb", b'+').as_deref(), Some("a+b"));
        assert_eq!(decode_hex_escapes("%ZZ", b'%'), None);
        assert_eq!(decode_hex_escapes("a%2", b'%'), None);
        assert_eq!(decode_hex_escapes("%FF", b'%'), None);
    }

    #[test]
    fn quoted_separators_do_not_split() {
        assert_eq!(
            split_outside_quotes("a,\"b,c\",,d", |c| c == ','),
            ["a", "\"b,c\"", "", "d"]
        );
    }
}
