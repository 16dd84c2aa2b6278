//! Outgoing iMIP mail: what the recipient's mail client and the person reading see.

#[path = "data/imip/fixtures.rs"]
mod fixtures;

/// Test names carry the `imip::` prefix so `cargo test imip` selects them.
mod imip {
    use super::fixtures;
    use fixtures::{addr, all_cases, case, options, stamp, ALICE, BOB};
    use imipd::imip::{
        build_message, parse_item_ref, ImipError, Language, Mailbox, OutgoingMail, TRACKING_HEADER,
    };
    use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

    fn build(name: &str, language: Language) -> OutgoingMail {
        let case = case(name);
        build_message(&case.msg, &case.recipient, &options(language), &stamp()).unwrap()
    }

    fn parse(mail: &OutgoingMail) -> Message<'_> {
        MessageParser::default().parse(&mail.bytes).unwrap()
    }

    /// The MIME tree as `type[children]`, with the method parameter of calendar parts.
    fn tree(message: &Message<'_>, id: u32) -> String {
        let part = &message.parts[id as usize];
        let ct = part.content_type().unwrap();
        let mut name = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default());
        if let Some(method) = ct.attribute("method") {
            name.push_str(&format!(";method={method}"));
        }
        match &part.body {
            PartType::Multipart(children) => {
                let inner: Vec<String> = children.iter().map(|c| tree(message, *c)).collect();
                format!("{name}[{}]", inner.join(","))
            }
            _ => name,
        }
    }

    fn header<'a>(message: &'a Message<'a>, name: &'a str) -> Option<&'a str> {
        message.header_raw(name).map(str::trim)
    }

    #[test]
    fn subjects_say_what_happened_in_english() {
        let expected = [
            (
                "request-invite",
                "Invitation: Lunch @ Tue 2 Jun 2009 16:00–17:00 (UTC)",
            ),
            (
                "request-update",
                "Updated invitation: Lunch @ Tue 2 Jun 2009 16:00–17:00 (UTC)",
            ),
            (
                "request-delegated",
                "Invitation (delegated by Bob Attendee): Lunch @ Tue 2 Jun 2009 16:00–17:00 (UTC)",
            ),
            (
                "request-refresh-answer",
                "Invitation: Lunch @ Tue 2 Jun 2009 16:00–17:00 (UTC)",
            ),
            (
                "request-occurrence-moved",
                "Updated invitation: Lunch @ Tue 2 Jun 2009 17:00–18:00 (UTC)",
            ),
            // Invited on 1 Jun to a series that began on 12 May: its next lunch.
            (
                "request-series-running",
                "Invitation: Lunch @ Tue 2 Jun 2009 16:00–17:00 (UTC)",
            ),
            (
                "reply-accepted",
                "Accepted: Lunch @ Tue 2 Jun 2009 16:00–17:00 (UTC)",
            ),
            (
                "reply-declined",
                "Declined: Lunch @ Tue 2 Jun 2009 16:00–17:00 (UTC)",
            ),
            (
                "reply-tentative",
                "Tentative: Lunch @ Tue 2 Jun 2009 16:00–17:00 (UTC)",
            ),
            (
                "reply-delegated",
                "Delegated: Lunch @ Tue 2 Jun 2009 16:00–17:00 (UTC)",
            ),
            (
                "reply-needs-action",
                "Undecided: Lunch @ Tue 2 Jun 2009 16:00–17:00 (UTC)",
            ),
            (
                "cancel",
                "Cancelled: Lunch @ Tue 2 Jun 2009 16:00–17:00 (UTC)",
            ),
            (
                "cancel-occurrence",
                "Cancelled: Lunch @ Tue 9 Jun 2009 16:00–17:00 (UTC)",
            ),
            (
                "add",
                "New occurrences: Lunch @ Tue 9 Jun 2009 16:00–17:00 (UTC)",
            ),
            ("refresh", "Update requested: (no title)"),
            (
                "counter",
                "New time proposed: Lunch @ Tue 2 Jun 2009 17:00–18:00 (UTC)",
            ),
            ("declinecounter", "Proposal declined: Lunch"),
        ];
        assert_eq!(
            expected.len(),
            all_cases().len(),
            "every case has an expected subject"
        );
        for (name, subject) in expected {
            let mail = build(name, Language::En);
            assert_eq!(mail.subject, subject, "{name}");
            // What the mail client shows after RFC 2047 decoding is the same text.
            assert_eq!(parse(&mail).subject(), Some(subject), "{name}");
        }
    }

    #[test]
    fn subjects_in_german_and_french() {
        let expected = [
            (
                "request-invite",
                Language::De,
                "Einladung: Lunch @ Di. 2. Juni 2009 16:00–17:00 (UTC)",
            ),
            (
                "reply-tentative",
                Language::De,
                "Mit Vorbehalt: Lunch @ Di. 2. Juni 2009 16:00–17:00 (UTC)",
            ),
            (
                "cancel",
                Language::De,
                "Abgesagt: Lunch @ Di. 2. Juni 2009 16:00–17:00 (UTC)",
            ),
            (
                "counter",
                Language::De,
                "Neue Zeit vorgeschlagen: Lunch @ Di. 2. Juni 2009 17:00–18:00 (UTC)",
            ),
            (
                "request-update",
                Language::Fr,
                "Invitation mise à jour : Lunch @ mar. 2 juin 2009 16:00–17:00 (UTC)",
            ),
            (
                "reply-declined",
                Language::Fr,
                "Refusé : Lunch @ mar. 2 juin 2009 16:00–17:00 (UTC)",
            ),
            (
                "reply-accepted",
                Language::Fr,
                "Accepté : Lunch @ mar. 2 juin 2009 16:00–17:00 (UTC)",
            ),
            (
                "declinecounter",
                Language::Fr,
                "Proposition refusée : Lunch",
            ),
        ];
        for (name, language, subject) in expected {
            let mail = build(name, language);
            assert_eq!(mail.subject, subject, "{name} {language}");
            assert_eq!(parse(&mail).subject(), Some(subject));
            assert_eq!(
                header(&parse(&mail), "Content-Language"),
                Some(language.tag())
            );
        }
    }

    #[test]
    fn outlook_sees_a_text_calendar_part_whose_method_matches_the_calendar() {
        for case in all_cases() {
            let method = imipd::itip::method_name(&case.msg.method);
            let mail = build_message(&case.msg, &case.recipient, &options(Language::En), &stamp())
                .unwrap();
            let message = parse(&mail);
            assert_eq!(
            tree(&message, 0),
            format!(
                "multipart/mixed[multipart/alternative[text/plain,text/html,text/calendar;method={method}],application/ics]"
            ),
            "{}",
            case.name
        );
            let calendar_part = message
                .parts
                .iter()
                .find(|p| {
                    p.content_type()
                        .is_some_and(|c| c.subtype() == Some("calendar"))
                })
                .unwrap();
            assert_eq!(
                calendar_part.content_type().unwrap().attribute("charset"),
                Some("utf-8")
            );
            assert!(calendar_part
                .text_contents()
                .unwrap()
                .contains(&format!("\r\nMETHOD:{method}\r\n")));
            let attachment = message
                .attachments()
                .find(|p| p.attachment_name() == Some("invite.ics"))
                .unwrap();
            assert_eq!(
                attachment.contents(),
                case.msg.to_ics().as_bytes(),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn headers_identify_sender_recipient_and_item() {
        let mail = build("request-invite", Language::En);
        let message = parse(&mail);
        let from = message.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Alice Organizer"));
        assert_eq!(from.address(), Some(ALICE));
        let to = message.to().unwrap().first().unwrap();
        assert_eq!((to.name(), to.address()), (Some("Bob Attendee"), Some(BOB)));
        assert_eq!(header(&message, "Auto-Submitted"), Some("auto-generated"));
        assert_eq!(
            header(&message, "Date"),
            Some("Mon, 1 Jun 2009 12:00:00 +0000")
        );
        assert_eq!(message.message_id(), Some(mail.message_id.as_str()));
        assert!(mail.message_id.ends_with("@gw.example.com"));
        assert_eq!(mail.envelope_from.as_str(), ALICE);
        assert!(message.reply_to().is_none());

        let tracking = parse_item_ref(header(&message, TRACKING_HEADER).unwrap()).unwrap();
        assert_eq!(tracking.uid, "lunch-42@example.com");
        assert_eq!(tracking.recipient, addr(BOB));
        assert_eq!(mail.item.as_ref(), Some(&tracking));
    }

    #[test]
    fn a_reply_comes_from_the_answering_attendee() {
        let mail = build("reply-accepted", Language::En);
        let message = parse(&mail);
        let from = message.from().unwrap().first().unwrap();
        assert_eq!(
            (from.name(), from.address()),
            (Some("Bob Attendee"), Some(BOB))
        );
        let to = message.to().unwrap().first().unwrap();
        assert_eq!(
            (to.name(), to.address()),
            (Some("Alice Organizer"), Some(ALICE))
        );
        assert_eq!(
            parse_item_ref(header(&message, TRACKING_HEADER).unwrap())
                .unwrap()
                .recipient,
            addr(ALICE)
        );
    }

    #[test]
    fn domains_the_relay_cannot_send_as_use_the_system_sender_with_reply_to() {
        let case = case("request-invite");
        let mut opts = options(Language::En);
        opts.system_senders.insert(
            "example.com".into(),
            Mailbox::named("Calendar", addr("calendar@gw.example.com")),
        );
        let mail = build_message(&case.msg, &case.recipient, &opts, &stamp()).unwrap();
        let message = parse(&mail);
        let from = message.from().unwrap().first().unwrap();
        assert_eq!(
            (from.name(), from.address()),
            (Some("Alice Organizer"), Some("calendar@gw.example.com"))
        );
        let reply_to = message.reply_to().unwrap().first().unwrap();
        assert_eq!(
            (reply_to.name(), reply_to.address()),
            (Some("Alice Organizer"), Some(ALICE))
        );
        assert_eq!(mail.envelope_from.as_str(), "calendar@gw.example.com");

        // Other domains are unaffected.
        let reply = fixtures::case("reply-accepted");
        let mail = build_message(&reply.msg, &reply.recipient, &opts, &stamp()).unwrap();
        assert_eq!(
            parse(&mail).from().unwrap().first().unwrap().address(),
            Some(BOB)
        );
    }

    #[test]
    fn language_follows_the_recipients_language_parameter_then_the_settings() {
        let mut case = case("request-invite");
        case.msg.calendar = fixtures::calendar(
            "REQUEST",
            &[
                "DTSTART:20090602T160000Z",
                "SUMMARY:Lunch",
                "ORGANIZER;CN=Alice Organizer:mailto:alice@example.com",
                "ATTENDEE;CN=Bob Attendee;LANGUAGE=fr-CA:mailto:bob@example.net",
            ],
        );
        let mail =
            build_message(&case.msg, &case.recipient, &options(Language::De), &stamp()).unwrap();
        assert_eq!(mail.language, Language::Fr);
        assert!(
            mail.subject.starts_with("Invitation : Lunch @ mar. 2 juin"),
            "{}",
            mail.subject
        );

        let plain = fixtures::case("request-invite");
        let mut opts = options(Language::En);
        opts.languages.insert(addr(BOB), Language::De);
        let mail = build_message(&plain.msg, &plain.recipient, &opts, &stamp()).unwrap();
        assert_eq!(mail.language, Language::De);
        assert!(mail.subject.starts_with("Einladung: "));

        let mut opts = options(Language::En);
        opts.languages.insert(addr(ALICE), Language::Fr);
        let mail = build_message(&plain.msg, &plain.recipient, &opts, &stamp()).unwrap();
        assert_eq!(
            mail.language,
            Language::Fr,
            "the sender's preference applies when the recipient has none"
        );
    }

    fn text_body(mail: &OutgoingMail) -> String {
        parse(mail).body_text(0).unwrap().replace("\r\n", "\n")
    }

    fn html_body(mail: &OutgoingMail) -> String {
        parse(mail).body_html(0).unwrap().replace("\r\n", "\n")
    }

    #[test]
    fn the_plain_text_body_tells_the_whole_story() {
        let text = text_body(&build("request-invite", Language::En));
        for line in [
            "Alice Organizer has invited you to “Lunch”.",
            "Title: Lunch",
            "When: Tue 2 Jun 2009 16:00–17:00 (UTC)",
            "Where: Cafe Rouge",
            "Organizer: Alice Organizer <alice@example.com>",
            "  - Alice Organizer <alice@example.com>: Accepted",
            "  - Bob Attendee <bob@example.net>: Awaiting reply",
            "Let's talk about the roadmap.\nBring ideas.",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn updates_list_what_changed() {
        let text = text_body(&build("request-update", Language::En));
        assert!(text.contains("What changed:"), "{text}");
        assert!(
            text.contains("  - Start: Tue 2 Jun 2009 15:00 (UTC) → Tue 2 Jun 2009 16:00 (UTC)"),
            "{text}"
        );
        assert!(
            text.contains("  - Location: Canteen → Cafe Rouge"),
            "{text}"
        );
        let html = html_body(&build("request-update", Language::De));
        assert!(
            html.contains("<strong>Ort:</strong> <del>Canteen</del> → <ins>Cafe Rouge</ins>"),
            "{html}"
        );
    }

    #[test]
    fn replies_say_who_answered_what() {
        let text = text_body(&build("reply-declined", Language::En));
        assert!(
            text.starts_with("Bob Attendee has declined “Lunch”."),
            "{text}"
        );
        assert!(
            text.contains("  - Bob Attendee <bob@example.net>: Declined"),
            "{text}"
        );
        let text = text_body(&build("reply-delegated", Language::De));
        assert!(
            text.starts_with("Bob Attendee hat „Lunch“ an Carol Delegate delegiert."),
            "{text}"
        );
        assert!(
            text.contains("Delegiert (delegiert an Carol Delegate <carol@example.net>)"),
            "{text}"
        );
        let text = text_body(&build("counter", Language::Fr));
        assert!(
            text.contains("Horaire proposé : mar. 2 juin 2009 17:00–18:00 (UTC)"),
            "{text}"
        );
        assert!(text.contains("Can we make it an hour later?"), "{text}");
    }

    #[test]
    fn html_escapes_what_the_calendar_says() {
        let mut case = case("request-invite");
        let text = case.msg.to_ics().replace(
            "SUMMARY:Lunch",
            "SUMMARY:<script>alert(1)</script> & \"friends\"",
        );
        case.msg.calendar = calcard::icalendar::ICalendar::parse(&text).unwrap();
        let mail =
            build_message(&case.msg, &case.recipient, &options(Language::En), &stamp()).unwrap();
        let html = html_body(&mail);
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt; &amp; &quot;friends&quot;"),
            "{html}"
        );
        // The plain part is not HTML and shows the text as written.
        assert!(text_body(&mail).contains("Title: <script>alert(1)</script> & \"friends\""));
    }

    #[test]
    fn non_ascii_names_and_titles_are_encoded_and_survive() {
        let case = fixtures::Case {
            name: "non-ascii",
            msg: non_ascii_message(),
            recipient: addr(BOB),
        };
        let mail =
            build_message(&case.msg, &case.recipient, &options(Language::En), &stamp()).unwrap();
        let raw = String::from_utf8(mail.bytes.clone()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert!(
            headers.is_ascii(),
            "headers must be RFC 2047 encoded:\n{headers}"
        );
        let message = parse(&mail);
        let from = message.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Jürgen Müller"));
        assert_eq!(
            message.subject(),
            Some("Invitation: Réunion d'équipe — 日本 @ Tue 2 Jun 2009 16:00–17:00 (UTC)")
        );
    }

    pub fn non_ascii_message() -> imipd::itip::ItipMessage {
        fixtures::juergens_request(
            ["DTSTART:20090602T160000Z", "DTEND:20090602T170000Z"],
            "équipe 日本語のテキスト which is long enough to be folded over several lines",
            &[],
        )
    }

    #[test]
    fn hostile_names_cannot_inject_headers() {
        use calcard::icalendar::{
            ICalendarParameterName, ICalendarParameterValue, ICalendarProperty,
        };
        let mut case = case("request-invite");
        case.msg.calendar = fixtures::calendar(
            "REQUEST",
            &[
                "DTSTART:20090602T160000Z",
                "SUMMARY:Lunch\\nBcc: victim@example.org",
                "ORGANIZER;CN=Alice:mailto:alice@example.com",
                "ATTENDEE;CN=Bob:mailto:bob@example.net",
            ],
        );
        // The parser never yields line breaks in a CN, but a calendar built in code can.
        for entry in &mut case.msg.calendar.components[1].entries {
            if matches!(
                entry.name,
                ICalendarProperty::Organizer | ICalendarProperty::Attendee
            ) {
                for param in &mut entry.params {
                    if param.name == ICalendarParameterName::Cn {
                        param.value = ICalendarParameterValue::Text(
                            "Evil\r\nBcc: victim@example.org\r\n\r\nbody".into(),
                        );
                    }
                }
            }
        }
        let mail =
            build_message(&case.msg, &case.recipient, &options(Language::En), &stamp()).unwrap();
        let message = parse(&mail);
        assert!(message.header_raw("Bcc").is_none());
        assert_eq!(
            message.subject(),
            Some("Invitation: Lunch Bcc: victim@example.org @ Tue 2 Jun 2009 16:00 (UTC)")
        );
        let from = message.from().unwrap().first().unwrap();
        assert_eq!(from.address(), Some(ALICE));
        assert_eq!(from.name(), Some("Evil Bcc: victim@example.org body"));
        assert_eq!(message.to().unwrap().first().unwrap().address(), Some(BOB));
        assert!(parse_incoming_ok(&mail));
    }

    fn parse_incoming_ok(mail: &OutgoingMail) -> bool {
        imipd::imip::parse_incoming(&mail.bytes, None, &imipd::imip::IncomingOptions::default())
            .is_ok()
    }

    #[test]
    fn recurring_events_say_how_they_repeat() {
        let mut case = case("request-invite");
        case.msg.calendar = fixtures::calendar(
            "REQUEST",
            &[
                "DTSTART;TZID=Europe/Berlin:20240108T090000",
                "DTEND;TZID=Europe/Berlin:20240108T093000",
                "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO",
                "SUMMARY:Standup",
                "ORGANIZER;CN=Alice Organizer:mailto:alice@example.com",
                "ATTENDEE;CN=Bob Attendee:mailto:bob@example.net",
            ],
        );
        let mail =
            build_message(&case.msg, &case.recipient, &options(Language::De), &stamp()).unwrap();
        let text = text_body(&mail);
        assert!(
            text.contains("Wann: Mo. 8. Jan. 2024 09:00–09:30 (Europe/Berlin)"),
            "{text}"
        );
        assert!(text.contains("Wiederholung: Alle 2 Wochen"), "{text}");
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes_and_another_stamp_another_id() {
        let a = build("request-invite", Language::En);
        let b = build("request-invite", Language::En);
        assert_eq!(a.bytes, b.bytes);
        let case = case("request-invite");
        let mut other = stamp();
        other.unique = 43;
        let c = build_message(&case.msg, &case.recipient, &options(Language::En), &other).unwrap();
        assert_ne!(a.message_id, c.message_id);
    }

    #[test]
    fn a_message_whose_method_contradicts_its_calendar_is_not_sent() {
        let mut case = case("request-invite");
        case.msg.method = imipd::itip::Method::Cancel;
        let err = build_message(&case.msg, &case.recipient, &options(Language::En), &stamp())
            .unwrap_err();
        assert_eq!(
            err,
            ImipError::OutgoingMethodMismatch {
                expected: "CANCEL".into(),
                found: "REQUEST".into()
            }
        );
        assert!(err
            .to_string()
            .contains("method= parameter would contradict"));
    }
}
