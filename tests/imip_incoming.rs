//! Incoming iMIP mail: real clients' shapes are understood, everything else is refused
//! with a reason a mail admin can act on, and only trusted authentication counts.

/// Test names carry the `imip::` prefix so `cargo test imip` selects them.
mod imip {

    use calcard::icalendar::ICalendarProperty;
    use imipd::imip::{parse_incoming, ImipError, IncomingItip, IncomingOptions};
    use imipd::itip::{CalAddress, Method};

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/data/imip/inbound/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn trusting_our_mx() -> IncomingOptions {
        IncomingOptions {
            trusted_authserv_ids: vec!["mx.example.org".into()],
            ..IncomingOptions::default()
        }
    }

    fn read(name: &str, envelope: Option<&str>) -> IncomingItip {
        parse_incoming(&fixture(name), envelope, &trusting_our_mx())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn addr(s: &str) -> CalAddress {
        CalAddress::parse(s).unwrap()
    }

    fn main_event(itip: &IncomingItip) -> &calcard::icalendar::ICalendarComponent {
        itip.calendar
            .components
            .iter()
            .find(|c| c.component_type == calcard::icalendar::ICalendarComponentType::VEvent)
            .unwrap()
    }

    fn text(itip: &IncomingItip, property: ICalendarProperty) -> Option<String> {
        main_event(itip)
            .property(&property)
            .and_then(|e| e.values.first())
            .and_then(|v| v.as_text())
            .map(str::to_string)
    }

    /// The main event's `property` is the text `expected`.
    fn assert_text(itip: &IncomingItip, property: ICalendarProperty, expected: &str) {
        assert_eq!(text(itip, property).as_deref(), Some(expected));
    }

    // ---------------------------------------------------------------- real-world shapes

    #[test]
    fn outlook_com_reply_without_organizer_is_extracted() {
        let itip = read("outlook_com_reply.eml", Some("dana.outlook@outlook.com"));
        assert_eq!(itip.method, Method::Reply);
        assert!(main_event(&itip)
            .property(&ICalendarProperty::Organizer)
            .is_none());
        let attendee = main_event(&itip)
            .property(&ICalendarProperty::Attendee)
            .unwrap();
        // MAILTO: in capitals normalises to the plain address.
        let value = attendee.values[0].as_text().unwrap();
        assert_eq!(
            CalAddress::parse(value),
            Some(addr("dana.outlook@outlook.com"))
        );
        // The Windows zone name resolves, so the engine can compare times.
        let dtstart = main_event(&itip)
            .property(&ICalendarProperty::Dtstart)
            .unwrap();
        assert_eq!(dtstart.tz_id(), Some("W. Europe Standard Time"));
        let resolver = itip.calendar.build_tz_resolver();
        assert!(resolver.resolve("W. Europe Standard Time").is_some());
        assert!(itip
            .calendar_text
            .starts_with("BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\n"));

        let sender = &itip.sender;
        assert_eq!(
            sender.from.as_ref().unwrap().address,
            addr("dana.outlook@outlook.com")
        );
        assert_eq!(
            sender.from.as_ref().unwrap().name.as_deref(),
            Some("Dana Outlook")
        );
        assert!(sender.auth.dmarc_pass && sender.auth.dkim_from_pass && sender.auth.spf_pass);
        assert_eq!(
            sender.authenticated_from(),
            Some(&addr("dana.outlook@outlook.com"))
        );
        assert_eq!(
            itip.message_id.as_deref(),
            Some("AM6PR10MB2345C0FFEE1234567890ABCDEF@AM6PR10MB2345.EURPRD10.PROD.OUTLOOK.COM")
        );
    }

    #[test]
    fn google_invitation_with_calendar_part_and_ics_attachment_is_one_message() {
        let itip = read("google_invite.eml", Some("greta.google@gmail.com"));
        assert_eq!(itip.method, Method::Request);
        assert_text(&itip, ICalendarProperty::Summary, "Quarterly review");
        assert_text(
            &itip,
            ICalendarProperty::Uid,
            "5k2m0b3d7q4c9v8n1p6r2t4s0a@google.com",
        );
        let sender = &itip.sender;
        assert_eq!(
            sender.from.as_ref().unwrap().address,
            addr("greta.google@gmail.com")
        );
        assert_eq!(
            sender.sender.as_ref().unwrap().address,
            addr("calendar-notification@google.com")
        );
        // A google.com signature is not a gmail.com signature, but the gmail.com one is.
        assert!(sender.auth.dkim_from_pass);
        assert!(sender.auth.dmarc_pass);
    }

    #[test]
    fn google_application_ics_without_method_parameter_uses_the_method_inside() {
        let itip = read("google_ics_only.eml", None);
        assert_eq!(itip.method, Method::Request);
        assert_text(&itip, ICalendarProperty::Summary, "Quarterly review");
        // Its Authentication-Results comes from someone else's server: ignored.
        assert_eq!(itip.sender.auth.ignored_headers, 1);
        assert_eq!(itip.sender.auth.trusted_headers, 0);
        assert!(!itip.sender.auth.dmarc_pass);
        assert_eq!(itip.sender.authenticated_from(), None);
    }

    #[test]
    fn apple_mail_alternative_inside_mixed_with_quoted_printable_calendar() {
        let itip = read("apple_mail_invite.eml", Some("amelie@icloud.com"));
        assert_eq!(itip.method, Method::Request);
        assert_text(&itip, ICalendarProperty::Summary, "Réunion d'équipe");
        assert_text(&itip, ICalendarProperty::Location, "Café de la Gare");
        let from = itip.sender.from.as_ref().unwrap();
        assert_eq!(from.name.as_deref(), Some("Amélie Apple"));
        assert_eq!(from.address, addr("amelie@icloud.com"));
        assert!(itip
            .calendar_text
            .contains("\r\nORGANIZER;CN=\"Amélie Apple\";"));
    }

    #[test]
    fn exchange_reply_carrying_only_the_attendee() {
        let itip = read("exchange_reply.eml", Some("Erik.Exchange@contoso.com"));
        assert_eq!(itip.method, Method::Reply);
        let event = main_event(&itip);
        assert!(event.property(&ICalendarProperty::Organizer).is_none());
        assert!(event.property(&ICalendarProperty::Dtstart).is_none());
        let attendee = event.property(&ICalendarProperty::Attendee).unwrap();
        assert_eq!(
            CalAddress::parse(attendee.values[0].as_text().unwrap()),
            Some(addr("erik.exchange@contoso.com"))
        );
        // The folded Exchange UID is unfolded.
        assert_text(&itip, ICalendarProperty::Uid, "040000008200E00074C5B7101A82E0080000000060B2C7E1A1D4D901000000000000000010000000D6F4C1B1C2A4D34A9B6E0F0A1B2C3D4E");
        // DKIM of the From domain and SPF of the envelope passed; no DMARC verdict given.
        let auth = &itip.sender.auth;
        assert!(auth.dkim_from_pass && auth.spf_pass && !auth.dmarc_pass);
        assert_eq!(
            itip.sender.authenticated_from(),
            Some(&addr("erik.exchange@contoso.com"))
        );
        assert_eq!(
            itip.sender.envelope_from,
            Some(addr("erik.exchange@contoso.com"))
        );
    }

    #[test]
    fn legacy_latin1_single_part_calendar_is_decoded() {
        let itip = read("latin1_single_part.eml", None);
        assert_eq!(itip.method, Method::Request);
        assert_text(
            &itip,
            ICalendarProperty::Summary,
            "Jahresfeier bei Jürgen Müller",
        );
        assert_eq!(
            itip.sender.from.unwrap().name.as_deref(),
            Some("Jürgen Müller")
        );
    }

    #[test]
    fn shift_jis_attachment_is_decoded_by_its_charset() {
        let itip = read("shift_jis_ics.eml", None);
        assert_eq!(itip.method, Method::Request);
        assert_text(&itip, ICalendarProperty::Summary, "定例会議");
    }

    // ---------------------------------------------------------------- refusals

    fn mail(content_type: &str, encoding: &str, body: &str) -> Vec<u8> {
        format!(
            "From: Someone <someone@example.net>\r\nTo: owner@example.org\r\nSubject: test\r\n\
         Message-ID: <t@example.net>\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\
         Content-Transfer-Encoding: {encoding}\r\n\r\n{body}"
        )
        .into_bytes()
    }

    fn mixed(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut out = String::from(
        "From: someone@example.net\r\nTo: owner@example.org\r\nSubject: test\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n",
    );
        for (headers, body) in parts {
            out.push_str(&format!("--b\r\n{headers}\r\n\r\n{body}\r\n"));
        }
        out.push_str("--b--\r\n");
        out.into_bytes()
    }

    fn cal(method: Option<&str>, uid: &str) -> String {
        let method = method
            .map(|m| format!("METHOD:{m}\r\n"))
            .unwrap_or_default();
        format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n{method}BEGIN:VEVENT\r\nUID:{uid}\r\n\
         DTSTAMP:20240101T000000Z\r\nDTSTART:20240102T100000Z\r\nSUMMARY:Test\r\n\
         ORGANIZER:mailto:someone@example.net\r\nATTENDEE:mailto:owner@example.org\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    }

    fn refuse(raw: &[u8]) -> ImipError {
        parse_incoming(raw, None, &IncomingOptions::default()).expect_err("must be refused")
    }

    #[test]
    fn a_mail_without_calendar_is_refused() {
        let err = refuse(&mail(
            "text/plain; charset=utf-8",
            "7bit",
            "Hello, lunch tomorrow?\r\n",
        ));
        assert_eq!(err, ImipError::NoCalendarPart);
        assert!(err.to_string().contains("no calendar part"));
    }

    #[test]
    fn two_different_calendars_are_refused() {
        let raw = mixed(&[
            (
                "Content-Type: text/calendar; method=REQUEST",
                &cal(Some("REQUEST"), "one"),
            ),
            (
                "Content-Type: application/ics; name=other.ics",
                &cal(Some("REQUEST"), "two"),
            ),
        ]);
        assert_eq!(refuse(&raw), ImipError::MultipleCalendars { count: 2 });
        // Two objects in one part are two calendars as well.
        let both = format!(
            "{}{}",
            cal(Some("REQUEST"), "one"),
            cal(Some("REQUEST"), "two")
        );
        let raw = mail("text/calendar; method=REQUEST", "7bit", &both);
        assert_eq!(refuse(&raw), ImipError::MultipleCalendars { count: 2 });
    }

    #[test]
    fn the_same_calendar_as_part_and_attachment_is_fine() {
        let raw = mixed(&[
            (
                "Content-Type: text/calendar; method=CANCEL; charset=utf-8",
                &cal(Some("CANCEL"), "one"),
            ),
            (
                "Content-Type: application/ics; name=invite.ics",
                &cal(None, "one"),
            ),
        ]);
        let itip = parse_incoming(&raw, None, &IncomingOptions::default()).unwrap();
        assert_eq!(itip.method, Method::Cancel);
        // The text/calendar part is the authoritative one.
        assert_eq!(itip.calendar_text, cal(Some("CANCEL"), "one"));
    }

    #[test]
    fn a_lightly_rewritten_copy_is_the_same_message_but_another_revision_is_not() {
        let rewritten = cal(None, "one").replace(
            "SUMMARY:Test\r\n",
            "X-ALT-DESC;FMTTYPE=text/html:<p>Test</p>\r\nSUMMARY:Test\r\n",
        );
        let raw = mixed(&[
            (
                "Content-Type: text/calendar; method=REQUEST",
                &cal(Some("REQUEST"), "one"),
            ),
            ("Content-Type: application/ics", &rewritten),
        ]);
        assert_eq!(
            parse_incoming(&raw, None, &IncomingOptions::default())
                .unwrap()
                .method,
            Method::Request
        );
        let later =
            cal(Some("REQUEST"), "one").replace("SUMMARY:Test", "SEQUENCE:1\r\nSUMMARY:Test");
        let raw = mixed(&[
            (
                "Content-Type: text/calendar; method=REQUEST",
                &cal(Some("REQUEST"), "one"),
            ),
            ("Content-Type: application/ics", &later),
        ]);
        assert_eq!(refuse(&raw), ImipError::MultipleCalendars { count: 2 });
    }

    #[test]
    fn the_calendars_method_decides_over_a_contradicting_parameter() {
        let raw = mail(
            "text/calendar; method=REQUEST",
            "7bit",
            &cal(Some("CANCEL"), "x"),
        );
        let itip = parse_incoming(&raw, None, &IncomingOptions::default()).unwrap();
        assert_eq!(itip.method, Method::Cancel);
        let note = itip.method_note.expect("the disagreement is noted");
        assert!(
            note.contains("method=REQUEST") && note.contains("METHOD:CANCEL"),
            "{note}"
        );
        // The same disagreement spread over two parts.
        let raw = mixed(&[
            (
                "Content-Type: text/calendar; method=REPLY",
                &cal(None, "one"),
            ),
            (
                "Content-Type: application/ics",
                &cal(Some("REQUEST"), "one"),
            ),
        ]);
        let itip = parse_incoming(&raw, None, &IncomingOptions::default()).unwrap();
        assert_eq!(itip.method, Method::Request);
        assert!(itip.method_note.is_some());
        // Agreement is not noted.
        let raw = mail(
            "text/calendar; method=cancel",
            "7bit",
            &cal(Some("CANCEL"), "x"),
        );
        let itip = parse_incoming(&raw, None, &IncomingOptions::default()).unwrap();
        assert_eq!(itip.method_note, None);
    }

    #[test]
    fn calendars_whose_methods_contradict_each_other_are_refused() {
        let raw = mixed(&[
            (
                "Content-Type: text/calendar; method=REQUEST",
                &cal(Some("REQUEST"), "one"),
            ),
            ("Content-Type: application/ics", &cal(Some("CANCEL"), "one")),
        ]);
        assert!(matches!(refuse(&raw), ImipError::MethodMismatch { .. }));
        // Parameters alone that contradict each other have no reading either.
        let raw = mixed(&[
            (
                "Content-Type: text/calendar; method=REQUEST",
                &cal(None, "one"),
            ),
            (
                "Content-Type: application/ics; method=CANCEL",
                &cal(None, "one"),
            ),
        ]);
        assert!(matches!(refuse(&raw), ImipError::MethodMismatch { .. }));
    }

    #[test]
    fn a_method_parameter_alone_is_enough() {
        let raw = mail("text/calendar; method=reply", "7bit", &cal(None, "x"));
        let itip = parse_incoming(&raw, None, &IncomingOptions::default()).unwrap();
        assert_eq!(itip.method, Method::Reply);
    }

    #[test]
    fn a_calendar_without_any_method_is_refused() {
        let raw = mail("text/calendar; charset=utf-8", "7bit", &cal(None, "x"));
        let err = refuse(&raw);
        assert_eq!(err, ImipError::MissingMethod);
        assert!(err.to_string().contains("plain calendar file"));
    }

    #[test]
    fn an_unknown_method_is_refused() {
        let raw = mail(
            "text/calendar; method=FROBNICATE",
            "7bit",
            &cal(Some("FROBNICATE"), "x"),
        );
        assert_eq!(refuse(&raw), ImipError::UnknownMethod("FROBNICATE".into()));
    }

    #[test]
    fn an_oversized_calendar_part_is_refused_before_parsing() {
        let big = cal(Some("REQUEST"), "x").replace(
            "SUMMARY:Test",
            &format!("DESCRIPTION:{}", "0123456789abcde\\n".repeat(40 * 1024)),
        );
        assert!(big.len() > 512 * 1024);
        let err = refuse(&mail("text/calendar; method=REQUEST", "7bit", &big));
        assert!(
            matches!(err, ImipError::CalendarTooLarge { limit: 524288, .. }),
            "{err}"
        );
        // Base64 is caught by its encoded size.
        let opts = IncomingOptions {
            max_calendar_size: 2_000,
            ..IncomingOptions::default()
        };
        let encoded = "QUJD\r\n".repeat(1_000);
        let raw = mail("application/ics", "base64", &encoded);
        let err = parse_incoming(&raw, None, &opts).unwrap_err();
        assert!(
            matches!(err, ImipError::CalendarTooLarge { limit: 2_000, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("max_calendar_size"));
    }

    #[test]
    fn an_oversized_mail_is_refused_before_mime_parsing() {
        let opts = IncomingOptions {
            max_message_size: 100,
            ..IncomingOptions::default()
        };
        let raw = mail(
            "text/calendar; method=REQUEST",
            "7bit",
            &cal(Some("REQUEST"), "x"),
        );
        let err = parse_incoming(&raw, None, &opts).unwrap_err();
        assert_eq!(
            err,
            ImipError::MessageTooLarge {
                size: raw.len(),
                limit: 100
            }
        );
    }

    #[test]
    fn only_tnef_is_refused_with_advice() {
        let raw = mixed(&[
        ("Content-Type: text/plain", "See attachment"),
        (
            "Content-Type: application/ms-tnef; name=\"winmail.dat\"\r\nContent-Disposition: attachment; filename=\"winmail.dat\"\r\nContent-Transfer-Encoding: base64",
            "eJ8+IgEAAQaQCAAEAAAAAAABAAEAAQeQBgAIAAAA5AQAAAAAAADoAAEIgAcAGAAAAElQTS5NaWNy",
        ),
    ]);
        let err = refuse(&raw);
        assert_eq!(err, ImipError::OnlyTnef);
        assert!(err.to_string().contains("TNEF"));
    }

    #[test]
    fn unparseable_icalendar_is_refused() {
        let raw = mail(
            "text/calendar; method=REQUEST",
            "7bit",
            "this is not a calendar\r\n",
        );
        assert!(matches!(refuse(&raw), ImipError::InvalidICalendar(_)));
        let vcard = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:X\r\nEND:VCARD\r\n";
        let err = refuse(&mail("text/calendar; method=REQUEST", "7bit", vcard));
        assert_eq!(
            err,
            ImipError::InvalidICalendar("the part holds a vCard, not a VCALENDAR".into())
        );
        let empty = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n";
        let err = refuse(&mail("text/calendar; method=REQUEST", "7bit", empty));
        assert!(err.to_string().contains("holds no VEVENT"), "{err}");
    }

    #[test]
    fn hostile_nesting_is_cut_off() {
        let depth = 200;
        let mut raw = String::from("From: a@example.net\r\nMIME-Version: 1.0\r\n");
        for level in 0..depth {
            raw.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"
            ));
        }
        raw.push_str("Content-Type: text/calendar; method=REQUEST\r\n\r\n");
        raw.push_str(&cal(Some("REQUEST"), "deep"));
        for level in (0..depth).rev() {
            raw.push_str(&format!("\r\n--b{level}--\r\n"));
        }
        assert_eq!(
            refuse(raw.as_bytes()),
            ImipError::NestingTooDeep { limit: 16 }
        );
    }

    #[test]
    fn a_forwarded_invitation_is_not_the_senders_message() {
        let inner = String::from_utf8(mail(
            "text/calendar; method=REQUEST",
            "7bit",
            &cal(Some("REQUEST"), "fw"),
        ))
        .unwrap();
        let raw = mixed(&[
            ("Content-Type: text/plain", "FYI"),
            ("Content-Type: message/rfc822", &inner),
        ]);
        assert_eq!(refuse(&raw), ImipError::NoCalendarPart);
    }

    #[test]
    fn bytes_that_are_not_an_email_are_refused() {
        assert_eq!(refuse(b""), ImipError::NotAnEmail);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz over mutations of a real message.
        let base = fixture("google_invite.eml");
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..300 {
            let mut bytes = base.clone();
            for _ in 0..20 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % bytes.len() as u64) as usize;
                bytes[at] = (seed >> 32) as u8;
            }
            seed ^= seed << 13;
            bytes.truncate((seed % bytes.len() as u64) as usize + 1);
            let _ = parse_incoming(&bytes, Some("x"), &trusting_our_mx());
        }
    }

    // ---------------------------------------------------------------- sender identity

    fn with_auth(results: &[&str], from: &str) -> Vec<u8> {
        let mut headers = String::new();
        for r in results {
            headers.push_str(&format!("Authentication-Results: {r}\r\n"));
        }
        format!(
        "{headers}From: {from}\r\nSender: Secretary <sec@example.com>\r\nTo: owner@example.org\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/calendar; method=REPLY\r\n\r\n{}",
        cal(Some("REPLY"), "auth")
    )
        .into_bytes()
    }

    fn identity(raw: &[u8], envelope: Option<&str>) -> imipd::imip::SenderIdentity {
        parse_incoming(raw, envelope, &trusting_our_mx())
            .unwrap()
            .sender
    }

    #[test]
    fn only_authentication_results_of_trusted_servers_count() {
        let spoofed = with_auth(
            &["evil.example; dmarc=pass header.from=example.com"],
            "boss@example.com",
        );
        let id = identity(&spoofed, None);
        assert_eq!(id.authenticated_from(), None);
        assert_eq!((id.auth.trusted_headers, id.auth.ignored_headers), (0, 1));

        let ours = with_auth(
            &["MX.Example.ORG 1; dmarc=pass (p=reject) header.from=example.com"],
            "Boss <boss@example.com>",
        );
        let id = identity(&ours, None);
        assert_eq!(id.authenticated_from(), Some(&addr("boss@example.com")));
        assert_eq!(id.sender.unwrap().address, addr("sec@example.com"));
    }

    #[test]
    fn dkim_must_be_for_the_from_domain_and_spf_for_the_envelope_domain() {
        let other_domain = with_auth(
            &["mx.example.org; dkim=pass header.d=mailer.example"],
            "boss@example.com",
        );
        let id = identity(&other_domain, None);
        assert!(!id.auth.dkim_from_pass);
        assert_eq!(id.authenticated_from(), None);

        // The signer's i= claim alone is not what was verified: d= must align.
        let by_identity = with_auth(
            &["mx.example.org; dkim=pass header.i=@Example.com"],
            "boss@example.com",
        );
        assert!(!identity(&by_identity, None).auth.dkim_from_pass);
        let d_elsewhere = with_auth(
            &["mx.example.org; dkim=pass header.d=evil.example header.i=@example.com"],
            "boss@example.com",
        );
        assert_eq!(identity(&d_elsewhere, None).authenticated_from(), None);
        let parent_domain = with_auth(
            &["mx.example.org; dkim=pass header.d=example.com"],
            "boss@mail.example.com",
        );
        assert!(identity(&parent_domain, None).auth.dkim_from_pass);

        let failed = with_auth(
            &["mx.example.org; dkim=fail header.d=example.com; dmarc=fail"],
            "boss@example.com",
        );
        assert_eq!(identity(&failed, None).authenticated_from(), None);

        let spf = with_auth(
            &["mx.example.org; spf=pass smtp.mailfrom=bounces@lists.example"],
            "boss@example.com",
        );
        assert!(
            identity(&spf, Some("<bounces@lists.example>"))
                .auth
                .spf_pass
        );
        assert!(
            !identity(&spf, Some("other@elsewhere.example"))
                .auth
                .spf_pass
        );
        let null_sender = identity(&spf, Some("<>"));
        assert_eq!(null_sender.envelope_from, None);
        assert!(!null_sender.auth.spf_pass);
    }

    #[test]
    fn a_dmarc_pass_that_does_not_name_the_from_domain_counts_for_nothing() {
        let raw = with_auth(&["mx.example.org; dmarc=pass"], "boss@example.com");
        let id = identity(&raw, None);
        assert_eq!(id.auth.trusted_headers, 1);
        assert_eq!(id.authenticated_from(), None);
    }

    #[test]
    fn only_the_topmost_header_of_the_mtas_own_hop_counts() {
        // The MTA's verdict on top, the sender's forged copy under it.
        let raw = with_auth(
            &[
                "mx.example.org; dkim=none; dmarc=fail header.from=example.com",
                "mx.example.org; dmarc=pass header.from=example.com",
            ],
            "boss@example.com",
        );
        let id = identity(&raw, None);
        assert_eq!((id.auth.trusted_headers, id.auth.ignored_headers), (1, 1));
        assert_eq!(id.authenticated_from(), None);
        // Directly under the MTA's own Received line (where OpenDKIM inserts) counts;
        // under a second Received line, it came with the message.
        let own = format!(
            "Received: from a.example by mx.example.org; Mon, 1 Jan 2024 00:00:00 +0000\r\n{}",
            String::from_utf8(with_auth(
                &["mx.example.org; dmarc=pass header.from=example.com"],
                "boss@example.com"
            ))
            .unwrap()
        );
        assert_eq!(
            identity(own.as_bytes(), None).authenticated_from(),
            Some(&addr("boss@example.com"))
        );
        let deeper = format!(
            "Received: from a.example by mx.example.org; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
             Received: from b.example by a.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n{}",
            String::from_utf8(with_auth(
                &["mx.example.org; dmarc=pass header.from=example.com"],
                "boss@example.com"
            ))
            .unwrap()
        );
        let id = identity(deeper.as_bytes(), None);
        assert_eq!((id.auth.trusted_headers, id.auth.ignored_headers), (0, 1));
        assert_eq!(id.authenticated_from(), None);
    }

    #[test]
    fn dmarc_for_another_domain_does_not_authenticate_from() {
        let raw = with_auth(
            &["mx.example.org; dmarc=pass header.from=attacker.example"],
            "boss@example.com",
        );
        assert_eq!(identity(&raw, None).authenticated_from(), None);
    }
}
