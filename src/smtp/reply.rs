//! Server replies of the LMTP server: code, enhanced status code, text, on the wire.
//!
//! Every reply the server writes goes through [`Reply`], which guarantees a well-formed
//! line whatever the handler put in its texts: CR, LF and other control characters are
//! replaced (a reason string can never start a second reply), the text is capped, and
//! an enhanced status code whose class does not match the reply code is replaced by
//! the generic one for that class.

/// Longest reply text, well under the 512-octet reply line limit of RFC 5321.
const MAX_TEXT: usize = 400;

/// One SMTP/LMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// Three-digit code (250, 451, 550…).
    pub code: u16,
    /// RFC 3463 enhanced status code, `x.y.z`, class matching `code`.
    pub enhanced: String,
    /// Human-readable text, one line.
    pub text: String,
}

impl Reply {
    /// A reply; out-of-range codes become 451/554 and bad enhanced codes the generic
    /// `x.0.0`, so a handler mistake cannot produce an unreadable reply.
    pub fn new(code: u16, enhanced: &str, text: impl AsRef<str>) -> Self {
        let code = match code {
            200..=599 => code,
            _ => 451,
        };
        let class = (code / 100).to_string();
        let enhanced_ok = {
            let parts: Vec<&str> = enhanced.split('.').collect();
            parts.len() == 3
                && parts[0] == class
                && parts[1..]
                    .iter()
                    .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        };
        let enhanced = if enhanced_ok {
            enhanced.to_string()
        } else {
            match code / 100 {
                2 | 3 => "2.0.0",
                4 => "4.0.0",
                _ => "5.0.0",
            }
            .to_string()
        };
        Reply {
            code,
            enhanced,
            text: clean_text(text.as_ref()),
        }
    }

    /// A reply without an enhanced status code: the greeting (sent before the client
    /// could know about ENHANCEDSTATUSCODES) and the 354 intermediate reply.
    pub fn bare(code: u16, text: impl AsRef<str>) -> Self {
        Reply {
            enhanced: String::new(),
            ..Reply::new(code, "", text)
        }
    }

    /// Appends the reply line to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.code.to_string().as_bytes());
        out.push(b' ');
        if !self.enhanced.is_empty() {
            out.extend_from_slice(self.enhanced.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(self.text.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// One printable line: controls become spaces, runs of spaces collapse, length capped.
fn clean_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_TEXT));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        if out.len() + c.len_utf8() > MAX_TEXT {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    if out.is_empty() {
        out.push_str("no text");
    }
    out
}

/// Writes a multi-line 250 reply (`250-` continuation lines, `250 ` last).
pub(crate) fn write_multiline(out: &mut Vec<u8>, code: u16, lines: &[String]) {
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.extend_from_slice(format!("{code}{sep}{}\r\n", clean_text(line)).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Reply) -> String {
        let mut out = Vec::new();
        r.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn texts_cannot_inject_lines() {
        let r = Reply::new(451, "4.3.0", "disk\r\n250 2.0.0 fake");
        assert_eq!(wire(&r), "451 4.3.0 disk 250 2.0.0 fake\r\n");
        assert_eq!(wire(&Reply::new(250, "2.0.0", "")), "250 2.0.0 no text\r\n");
        assert!(wire(&Reply::new(250, "2.0.0", "x".repeat(5000))).len() < 420);
    }

    #[test]
    fn enhanced_class_follows_code() {
        assert_eq!(Reply::new(550, "2.1.5", "x").enhanced, "5.0.0");
        assert_eq!(Reply::new(554, "5.7.1", "x").enhanced, "5.7.1");
        assert_eq!(Reply::new(451, "junk", "x").enhanced, "4.0.0");
        assert_eq!(Reply::new(999, "5.0.0", "x").code, 451);
        assert_eq!(wire(&Reply::bare(354, "go ahead")), "354 go ahead\r\n");
        assert_eq!(wire(&Reply::bare(220, "ready")), "220 ready\r\n");
    }
}
