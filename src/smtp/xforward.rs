//! Postfix's `XFORWARD` command: who the MTA received the mail from.
//!
//! imipd checks SPF itself, which needs the address of the SMTP client that handed
//! the mail to the site's MTA, not the MTA's own address (the LMTP peer). Postfix's
//! LMTP client sends it, before MAIL FROM, when the server offers `XFORWARD` in its
//! LHLO reply and `lmtp_send_xforward_command = yes` is set:
//! `XFORWARD NAME=mail.example.net ADDR=192.0.2.7 PROTO=ESMTP HELO=mail.example.net`
//! (values xtext-encoded, `[UNAVAILABLE]` when unknown; see Postfix's XFORWARD_README).
//! The attributes hold for the next transaction and are cleared after it, on RSET and
//! on LHLO. Only the MTA should reach the LMTP socket, so its word is taken; that is
//! the same trust the MTA already has when it hands over the mail.

use std::net::IpAddr;

/// The attributes this server offers in its LHLO reply.
pub(crate) const OFFERED: &str = "XFORWARD NAME ADDR PROTO HELO SOURCE";

/// The client the MTA received the mail from, as `XFORWARD` reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardedClient {
    /// `ADDR`: the client's IP address (what SPF is checked against).
    pub addr: Option<IpAddr>,
    /// `HELO`: the name the client gave in HELO/EHLO (SPF's HELO identity).
    pub helo: Option<String>,
    /// `NAME`: the client's verified host name, for the log.
    pub name: Option<String>,
}

impl ForwardedClient {
    /// Applies the attributes of one `XFORWARD` command line (without the CRLF).
    /// `Err` says which attribute is wrong, for the 501 reply.
    pub(crate) fn apply(&mut self, arguments: &str) -> Result<(), String> {
        let mut any = false;
        for pair in arguments.split_ascii_whitespace() {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair}: expected NAME=value"))?;
            // RFC 3461 xtext: `+XX` is the byte with hex value XX.
            let value = crate::text::decode_hex_escapes(value, b'+')
                .ok_or_else(|| format!("{name}: bad xtext"))?;
            let known = !value.eq_ignore_ascii_case("[UNAVAILABLE]")
                && !value.eq_ignore_ascii_case("[TEMPUNAVAIL]");
            match name.to_ascii_uppercase().as_str() {
                "ADDR" => {
                    self.addr = if known {
                        let bare = strip_ipv6_prefix(&value);
                        Some(
                            bare.parse()
                                .map_err(|_| format!("ADDR={value} is not an IP address"))?,
                        )
                    } else {
                        None
                    }
                }
                "HELO" => self.helo = known.then_some(value),
                "NAME" => self.name = known.then_some(value),
                "PROTO" | "SOURCE" | "PORT" | "IDENT" => {}
                other => return Err(format!("{other}: unknown XFORWARD attribute")),
            }
            any = true;
        }
        if any {
            Ok(())
        } else {
            Err("XFORWARD needs at least one NAME=value".into())
        }
    }
}

/// `IPV6:2001:db8::1` → `2001:db8::1` (Postfix writes the RFC 5321 address literal tag).
fn strip_ipv6_prefix(value: &str) -> &str {
    match value.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => &value[5..],
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_attributes_are_read_and_unavailable_ones_are_none() {
        let mut client = ForwardedClient::default();
        client
            .apply("NAME=mail.example.net ADDR=192.0.2.7 PROTO=ESMTP")
            .expect("valid");
        client
            .apply("HELO=[UNAVAILABLE] SOURCE=REMOTE")
            .expect("valid");
        assert_eq!(client.addr, Some("192.0.2.7".parse().expect("ip")));
        assert_eq!(client.name.as_deref(), Some("mail.example.net"));
        assert_eq!(client.helo, None);
        client
            .apply("ADDR=IPV6:2001:db8::1 HELO=a+2Bb")
            .expect("valid");
        assert_eq!(client.addr, Some("2001:db8::1".parse().expect("ip")));
        assert_eq!(client.helo.as_deref(), Some("a+b"));
    }

    #[test]
    fn garbage_is_refused() {
        let mut client = ForwardedClient::default();
        assert!(client.apply("ADDR=not-an-ip").is_err());
        assert!(client.apply("COLOUR=red").is_err());
        assert!(client.apply("ADDR").is_err());
        assert!(client.apply("").is_err());
        assert!(client.apply("HELO=bad+zz").is_err());
        assert_eq!(client, ForwardedClient::default());
    }
}
