//! imipd in the mail stack people already run: users keep their address and their
//! inbox, imipd gets a copy. Every route against the real servers on loopback.
//!
//! - **Dovecot + Sieve**: Postfix delivers to Dovecot over LMTP; a Sieve script pipes a
//!   copy of calendar mail to `imipd deliver` (`pipe :copy`) and the mail lands in the
//!   INBOX as usual.
//! - **Postfix only**: `recipient_bcc_maps` copies mail for a user to
//!   `user@imipd.invalid`, which `transport_maps` routes to imipd's LMTP; imipd maps it
//!   back to the user (`[lmtp] copy_domain`). Non-calendar copies are dropped at once.
//! - **A dedicated calendar domain**: `calendar.example.com` is routed to imipd.
//! - **`imipd deliver` as a Postfix pipe**: exit 75 while the daemon is stopped, so
//!   Postfix retries; applied once after it starts.
//! - **Two instances** behind one Postfix, each owning some users: an invitation
//!   across them goes out by mail, is applied once there, and the answer comes back.
//!
//! These tests are about routing: the REPLYs are not DKIM-signed, so the daemons run
//! with the closed-setup option that believes From headers (sender authentication is
//! tested in its own files).

#[path = "support/mod.rs"]
mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::dovecot::Dovecot;
use support::site::{eventually, write_event, Daemon};
use support::tools::smtp_send;
use support::{free_port, Postfix, Sink, Site};

/// Settings these routing tests need from the inbound policy (see the module doc).
const CLOSED_SETUP: &str = "insecure_trust_from_header = true\nimport_policy = \"everyone\"\n";

/// One imipd instance on a vdir store.
struct Imipd {
    site: Site,
    daemon: Option<Daemon>,
    lmtp_port: u16,
}

impl Imipd {
    /// `users` as (folder, address); `extra_lmtp` goes into `[lmtp]`. The relay port is
    /// 0 until [`Imipd::relay_through`] names the Postfix.
    fn new(label: &str, users: &[(&str, &str)], extra_lmtp: &str) -> Imipd {
        let site = Site::new(label, &[]);
        let lmtp_port = free_port();
        let mut config = String::from(
            "state = \"state/imipd.redb\"\n[control]\nsocket = \"control.sock\"\ngroup = \"nogroup\"\n\
             [store]\nroot = \"stores\"\ndebounce_ms = 50\n",
        );
        for (name, address) in users {
            std::fs::create_dir_all(site.calendar(name)).expect("store");
            config.push_str(&format!(
                "[[user]]\nname = \"{name}\"\naddresses = [\"{address}\"]\n"
            ));
        }
        config.push_str(&format!(
            "[mail]\ndomain = \"example.com\"\n\
             [relay]\nhost = \"127.0.0.1\"\nport = 0\ntls = \"none\"\ntimeout = 10\n\
             [queue]\nfirst_retry_delay = 1\nmax_retry_delay = 1\n\
             [lmtp]\nlisten = \"127.0.0.1:{lmtp_port}\"\n{CLOSED_SETUP}{extra_lmtp}"
        ));
        site.write_config(&config);
        // The pipe programs run as nobody: the configuration must be readable.
        let _ = std::fs::set_permissions(
            &site.dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        );
        Imipd {
            site,
            daemon: None,
            lmtp_port,
        }
    }

    /// [`Imipd::new`] for Alice alone, at `address`.
    fn alice(label: &str, address: &str, extra_lmtp: &str) -> Imipd {
        Imipd::new(label, &[("alice", address)], extra_lmtp)
    }

    fn config(&self) -> PathBuf {
        self.site.config()
    }

    /// Sends outgoing mail through `postfix`.
    fn relay_through(&self, postfix: &Postfix) {
        self.site.replace_in_config(
            "port = 0\n",
            &format!("port = {}\n", postfix.smtp_addr().port()),
        );
    }

    /// Sends outgoing mail through `postfix`, and starts.
    fn start_behind(&mut self, postfix: &Postfix) {
        self.relay_through(postfix);
        self.start();
    }

    /// The daemon logged `what` exactly once.
    fn assert_once(&self, what: &str) {
        let log = self.log();
        assert_eq!(log.matches(what).count(), 1, "{what}, once:\n{log}");
    }

    fn start(&mut self) {
        self.daemon = Some(Daemon::new(self.site.serve_appending(&[])));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.site.dir.join("control.sock").exists()
            || TcpStream::connect(("127.0.0.1", self.lmtp_port)).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "imipd did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.stop();
        }
    }

    fn nexthop(&self) -> String {
        format!("lmtp:inet:127.0.0.1:{}", self.lmtp_port)
    }

    fn log(&self) -> String {
        self.site.log()
    }

    fn calendar(&self, user: &str) -> PathBuf {
        self.site.calendar(user)
    }

    /// The text of `user`'s only object with `uid`, if there is one.
    fn object(&self, user: &str, uid: &str) -> Option<String> {
        std::fs::read_dir(self.calendar(user))
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .find(|text| text.contains(&format!("UID:{uid}")))
    }

    /// A program for Dovecot's pipe folder that runs `imipd deliver` on this instance.
    fn deliver_program(&self, pipe_dir: &Path) {
        let program = pipe_dir.join("imipd-deliver");
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\nexec {} deliver --config {} --rcpt \"$1\"\n",
                env!("CARGO_BIN_EXE_imipd"),
                self.config().display()
            ),
        )
        .expect("pipe program");
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("mode");
    }
}

/// The PARTSTAT of `address` in an iCalendar text (folded lines joined).
fn partstat(text: &str, address: &str) -> Option<String> {
    let unfolded = text.replace("\r\n ", "").replace("\n ", "");
    unfolded
        .lines()
        .filter(|l| {
            l.starts_with("ATTENDEE")
                && l.to_ascii_lowercase()
                    .ends_with(&format!("mailto:{address}"))
        })
        .find_map(|l| {
            l.split([';', ':'])
                .find_map(|p| p.strip_prefix("PARTSTAT="))
                .map(str::to_string)
        })
}

/// Whether `user`'s copy of `uid` shows `address` as ACCEPTED.
fn accepted(imipd: &Imipd, user: &str, uid: &str, address: &str) -> bool {
    imipd
        .object(user, uid)
        .is_some_and(|t| partstat(&t, address).as_deref() == Some("ACCEPTED"))
}

fn event(uid: &str, organizer: &str, attendee: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
         DTSTAMP:20300101T090000Z\r\nDTSTART:20300610T103000Z\r\nDTEND:20300610T113000Z\r\n\
         SUMMARY:Planning\r\nORGANIZER:mailto:{organizer}\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:{organizer}\r\n\
         ATTENDEE;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:{attendee}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// An answer from `from` to the organizer, as an outside calendar writes it, with a
/// personal line in the text part: the organizer must still read it in the inbox.
fn answer(method: &str, uid: &str, organizer: &str, from: &str, id: &str) -> String {
    let extra = if method == "COUNTER" {
        "DTSTART:20300611T103000Z\r\nDTEND:20300611T113000Z\r\n"
    } else {
        ""
    };
    format!(
        "From: Carol <{from}>\r\nTo: {organizer}\r\nSubject: {method}: Planning\r\n\
         Message-ID: <{id}@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee you there! Carol\r\n\
         --b1\r\nContent-Type: text/calendar; method={method}; charset=utf-8\r\n\r\n\
         BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nMETHOD:{method}\r\nBEGIN:VEVENT\r\n\
         UID:{uid}\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:1\r\n{extra}\
         ORGANIZER:mailto:{organizer}\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:{from}\r\n\
         END:VEVENT\r\nEND:VCALENDAR\r\n--b1--\r\n"
    )
}

fn plain(to: &str) -> String {
    format!(
        "From: carol@example.net\r\nTo: {to}\r\nSubject: lunch?\r\n\
         Message-ID: <plain-1@example.net>\r\n\r\nShall we have lunch?\r\n"
    )
}

/// Whether `sent` is in Alice's inbox, unchanged.
fn in_inbox(dovecot: &Dovecot, sent: &str) -> bool {
    dovecot
        .inbox("alice")
        .iter()
        .any(|m| contains_unchanged(m, sent))
}

/// The message as Postfix and Dovecot stored it contains what was sent, unchanged.
fn contains_unchanged(stored: &[u8], sent: &str) -> bool {
    let body = sent.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or(sent);
    let stored = String::from_utf8_lossy(stored).replace("\r\n", "\n");
    stored.contains(&body.replace("\r\n", "\n"))
}

/// Carol sends `method` for `uid` to `organizer` through `postfix`; the message sent.
fn carol_sends(postfix: &Postfix, method: &str, uid: &str, organizer: &str, id: &str) -> String {
    let message = answer(method, uid, organizer, "carol@example.net", id);
    smtp_send(
        postfix.smtp_addr().port(),
        "carol@example.net",
        &[organizer],
        &message,
    );
    message
}

/// Carol accepts Alice's `uid` by mail: the answer reaches Alice's calendar and,
/// unchanged, her inbox; then Carol's plain mail reaches the inbox too.
fn carol_accepts_then_writes_plain_mail(
    imipd: &Imipd,
    postfix: &Postfix,
    dovecot: &Dovecot,
    uid: &str,
    id: &str,
) {
    let reply = carol_sends(postfix, "REPLY", uid, "alice@example.com", id);
    let log = || format!("{}\n{}\n{}", imipd.log(), dovecot.log(), postfix.log());
    eventually("the answer is in alice's calendar", log, || {
        accepted(imipd, "alice", uid, "carol@example.net")
    });
    eventually("the REPLY is in alice's inbox", log, || {
        in_inbox(dovecot, &reply)
    });
    smtp_send(
        postfix.smtp_addr().port(),
        "carol@example.net",
        &["alice@example.com"],
        &plain("alice@example.com"),
    );
    eventually("the plain mail is in the inbox", log, || {
        dovecot
            .inbox("alice")
            .iter()
            .any(|m| String::from_utf8_lossy(m).contains("Shall we have lunch?"))
    });
}

/// Alice (organizer) invited Carol; the invitation went out to the sink.
fn alice_invites_carol(imipd: &Imipd, sink: &Sink, uid: &str, alice: &str) {
    let calendar = imipd.calendar("alice");
    write_event(
        &calendar,
        "planning.ics",
        &event(uid, alice, "carol@example.net"),
    );
    eventually(
        "the invitation reaches the outside",
        || imipd.log(),
        || {
            sink.messages()
                .iter()
                .any(|m| String::from_utf8_lossy(&m.data).contains(uid))
        },
    );
}

#[test]
fn dovecot_sieve_copy_leaves_the_mail_in_the_inbox_and_applies_the_answer_once() {
    let sink = Sink::start();
    let dovecot_script = "require [\"vnd.dovecot.pipe\", \"copy\", \"envelope\", \"variables\", \"mime\"];\n\
        if header :mime :anychild :contains \"Content-Type\" [\"text/calendar\", \"application/ics\"] {\n\
          if envelope :matches \"to\" \"*\" { set \"rcpt\" \"${1}\"; }\n\
          pipe :copy \"imipd-deliver\" [\"${rcpt}\"];\n}\n";
    let dovecot = Dovecot::start(&["alice@example.com"], Some(dovecot_script));
    let postfix = Postfix::builder()
        .route("example.com", &dovecot.nexthop())
        .relayhost(sink.addr())
        .start();
    let mut imipd = Imipd::alice("route-sieve", "alice@example.com", "");
    imipd.deliver_program(&dovecot.pipe_dir());
    imipd.start_behind(&postfix);
    alice_invites_carol(&imipd, &sink, "sieve-1", "alice@example.com");

    carol_accepts_then_writes_plain_mail(&imipd, &postfix, &dovecot, "sieve-1", "r1");
    let log = || format!("{}\n{}\n{}", imipd.log(), dovecot.log(), postfix.log());

    // A counter-proposal: the organizer decides; it is in the inbox, the event unchanged.
    let before = imipd.object("alice", "sieve-1").expect("copy");
    let counter = carol_sends(&postfix, "COUNTER", "sieve-1", "alice@example.com", "c1");
    eventually("the COUNTER is in the inbox", log, || {
        in_inbox(&dovecot, &counter)
    });
    eventually("imipd noted the COUNTER", log, || {
        imipd.log().contains("c1@example.net") || imipd.log().contains("COUNTER noted")
    });
    assert_eq!(
        imipd.object("alice", "sieve-1").expect("copy"),
        before,
        "a COUNTER changes nothing"
    );
    assert_eq!(
        dovecot.inbox("alice").len(),
        3,
        "REPLY, plain mail and COUNTER, each once"
    );
    imipd.assert_once("REPLY applied");
    assert!(
        !imipd.log().contains("plain-1@example.net"),
        "imipd never saw the plain mail"
    );
}

#[test]
fn postfix_bcc_copy_reaches_imipd_and_the_inbox_and_plain_copies_are_dropped() {
    let sink = Sink::start();
    let dovecot = Dovecot::start(&["alice@example.com"], None);
    let mut imipd = Imipd::alice(
        "route-bcc",
        "alice@example.com",
        "copy_domain = \"imipd.invalid\"\n",
    );
    let postfix = Postfix::builder()
        .route("example.com", &dovecot.nexthop())
        .route("imipd.invalid", &imipd.nexthop())
        .relayhost(sink.addr())
        .set(
            "recipient_bcc_maps",
            "inline:{ alice@example.com=alice@imipd.invalid }",
        )
        .start();
    // The relay is the Postfix that was started after the configuration was written.
    imipd.start_behind(&postfix);
    alice_invites_carol(&imipd, &sink, "bcc-1", "alice@example.com");

    carol_accepts_then_writes_plain_mail(&imipd, &postfix, &dovecot, "bcc-1", "r2");
    let log = || format!("{}\n{}\n{}", imipd.log(), dovecot.log(), postfix.log());
    eventually("imipd dropped the plain copy", log, || {
        imipd.log().contains("not calendar mail")
    });
    imipd.assert_once("REPLY applied");
}

#[test]
fn a_dedicated_calendar_domain_is_routed_to_imipd() {
    let sink = Sink::start();
    let mut imipd = Imipd::alice("route-domain", "alice@calendar.example.com", "");
    let postfix = Postfix::builder()
        .route("calendar.example.com", &imipd.nexthop())
        .relayhost(sink.addr())
        .start();
    imipd.start_behind(&postfix);
    alice_invites_carol(&imipd, &sink, "domain-1", "alice@calendar.example.com");
    carol_sends(
        &postfix,
        "REPLY",
        "domain-1",
        "alice@calendar.example.com",
        "r3",
    );
    eventually(
        "the answer is in alice's calendar",
        || imipd.log(),
        || accepted(&imipd, "alice", "domain-1", "carol@example.net"),
    );
}

#[test]
fn deliver_exits_75_while_the_daemon_is_stopped_and_the_mta_retry_applies_once() {
    let sink = Sink::start();
    let mut imipd = Imipd::alice("route-pipe", "alice@example.com", "");
    let pipe = format!(
        "imipd unix - n n - - pipe flags=R user=nobody argv={} deliver --config {} --rcpt ${{recipient}}",
        env!("CARGO_BIN_EXE_imipd"),
        imipd.config().display()
    );
    let postfix = Postfix::builder()
        .route("example.com", "imipd:")
        .relayhost(sink.addr())
        .service(&pipe)
        .set("imipd_destination_recipient_limit", "1")
        .start();
    imipd.start_behind(&postfix);
    alice_invites_carol(&imipd, &sink, "pipe-1", "alice@example.com");
    imipd.stop();

    carol_sends(&postfix, "REPLY", "pipe-1", "alice@example.com", "r4");
    postfix.wait_for_log(&["status=deferred", "not running"], Duration::from_secs(30));
    assert!(!accepted(&imipd, "alice", "pipe-1", "carol@example.net"));

    imipd.start();
    postfix.flush();
    eventually(
        "the retried REPLY is applied",
        || postfix.log(),
        || accepted(&imipd, "alice", "pipe-1", "carol@example.net"),
    );
    postfix.wait_for_log(&["status=sent", "imipd"], Duration::from_secs(30));
    imipd.assert_once("REPLY applied");
}

#[test]
fn two_instances_behind_one_postfix_schedule_with_each_other_by_mail() {
    let sink = Sink::start();
    let mut a = Imipd::alice("route-two-a", "alice@example.com", "");
    let mut b = Imipd::new("route-two-b", &[("bob", "bob@example.com")], "");
    let routes = format!(
        "inline:{{ alice@example.com={}, bob@example.com={}, imipd-bounces@example.com={} }}",
        a.nexthop(),
        b.nexthop(),
        a.nexthop()
    );
    let postfix = Postfix::builder()
        .relayhost(sink.addr())
        .set("relay_domains", "example.com")
        .set("transport_maps", &routes)
        .start();
    a.relay_through(&postfix);
    b.relay_through(&postfix);
    a.start();
    b.start();
    // Alice (instance a) invites Bob (instance b): b does not know alice, so it is mail.
    let calendar = a.calendar("alice");
    write_event(
        &calendar,
        "planning.ics",
        &event("two-1", "alice@example.com", "bob@example.com"),
    );
    let log = || format!("{}\n{}\n{}", a.log(), b.log(), postfix.log());
    eventually("bob has the invitation", log, || {
        b.object("bob", "two-1").is_some()
    });
    // Bob accepts in his calendar; the REPLY goes back by mail to instance a.
    let bob_copy = b.object("bob", "two-1").expect("bob's copy");
    let bob_file = std::fs::read_dir(b.calendar("bob"))
        .expect("bob's calendar")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("UID:two-1")))
        .expect("bob's file");
    let unfolded = bob_copy.replace("\r\n ", "");
    let answered: String = unfolded
        .split_inclusive('\n')
        .map(|line| {
            if line.starts_with("ATTENDEE") && line.contains("mailto:bob@example.com") {
                line.replace("PARTSTAT=NEEDS-ACTION", "PARTSTAT=ACCEPTED")
            } else {
                line.to_string()
            }
        })
        .collect();
    assert_ne!(
        answered, unfolded,
        "bob's copy names him as NEEDS-ACTION:\n{bob_copy}"
    );
    std::fs::write(bob_file.with_extension("tmp"), &answered).expect("write");
    std::fs::rename(bob_file.with_extension("tmp"), &bob_file).expect("rename");
    // The file is written before the daemon logs it: wait for both.
    eventually("alice sees bob's answer", log, || {
        accepted(&a, "alice", "two-1", "bob@example.com") && a.log().contains("REPLY applied")
    });
    // The decision is logged after the file is written: wait for the line too.
    eventually("a logs the answer", log, || {
        a.log().contains("REPLY applied")
    });
    b.assert_once("REQUEST imported");
    a.assert_once("REPLY applied");
    assert!(
        sink.messages()
            .iter()
            .all(|m| !String::from_utf8_lossy(&m.data).contains("two-1")),
        "nothing between the two instances leaves the site"
    );
}
