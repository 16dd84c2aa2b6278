#!/usr/bin/env python3
"""Real Thunderbird + Radicale + imipd, end to end (issue 22).

Starts, all on 127.0.0.1: an SMTP sink that records every message; a trap proxy that
records and refuses every request Thunderbird makes to anywhere else; Radicale with
htpasswd users alice and bob, each with a calendar created as Radicale's web UI creates
it (MKCOL, a random UUID name); `imipd serve` on Radicale's folder with its CalDAV front;
one headless Thunderbird per user (Marionette, chrome context), each with a fresh profile
whose mail identity is the user and whose SMTP server is the sink.

Then it drives Thunderbird's own calendar code (tests/thunderbird/thunderbird.js) through
the actions of issue 22 and counts, per action and recipient, the messages that arrive:
Thunderbird's mails and imipd's mails in the sink, and imipd's deliveries into a local
user's calendar (its log's "delivered" lines). Every recipient must get exactly one.

Outside mail (carol's answer, dave's invitation) reaches imipd through `imipd inject`, with
`[lmtp] import_policy = "everyone"` and `insecure_trust_from_header = true` (the test mail is
unsigned and there is no DNS: a closed test setup). Thunderbird's two modal questions are
answered as a person would (thunderbird.js) and counted: "send a notification?" (yes) and
the "Item changed on server" conflict dialog ("Submit my changes anyway"); the conflict
dialogs per action are reported, and no edit or answer may be lost.

An action's count is final when every expected recipient got something (or imipd logged
its decision) and then nothing new arrived for QUIET seconds: a second, unwanted message
can only be seen by waiting for it.

The controls: the same invitation with Thunderbird talking to Radicale directly before
imipd runs (Thunderbird must mail carol itself, or the test could pass by accident), and
with imipd running but no announcement (the double mails, measured and reported).

Usage: harness.py --imipd PATH --work DIR [--dev-front SCRIPT]
Exit 0 when every assertion held; 1 with the reasons on stderr; 2 on a setup error.
The last stdout line is a JSON report of everything measured.
"""

import argparse
import asyncio
import base64
import email
import email.policy
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret"}
REALM = "Radicale - Password Required"
WAIT = 90  # seconds: a deadlock guard for every bounded wait, never an expected time
QUIET = 2.0  # seconds without a new message before an action's count is final


class Failed(Exception):
    """An assertion about what a user would see did not hold."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, proc=None):
    deadline = time.monotonic() + WAIT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on {port}")
            time.sleep(0.1)


START = time.monotonic()


def log(*parts):
    print(f"[{time.monotonic() - START:6.1f}s]", *parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# The trap: Thunderbird's only proxy. Records and refuses everything that reaches it.


class Trap:
    def __init__(self):
        self.requests = []
        trap = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def refuse(self):
                trap.requests.append(f"{self.command} {self.path}")
                self.send_response(403, "Refused by the test's trap proxy")
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_HEAD = do_CONNECT = do_OPTIONS = do_DELETE = refuse

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# ---------------------------------------------------------------------------------------
# The SMTP sink: aiosmtpd, recording every message (the relay of imipd and the SMTP
# server of both Thunderbirds).


class Sink:
    def __init__(self, folder):
        from aiosmtpd.controller import Controller

        self.messages = []
        self.lock = threading.Lock()
        self.folder = folder
        # Seconds the sink waits before answering DATA: a slow relay.
        self.delay = 0
        folder.mkdir(parents=True, exist_ok=True)
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                data = envelope.original_content or envelope.content
                if sink.delay:
                    await asyncio.sleep(sink.delay)
                with sink.lock:
                    n = len(sink.messages)
                    (sink.folder / f"{n:03}.eml").write_bytes(data)
                    sink.messages.append(
                        Mail(envelope.mail_from, list(envelope.rcpt_tos), data)
                    )
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def stop(self):
        self.controller.stop()


class Mail:
    def __init__(self, mail_from, rcpts, data):
        self.mail_from = mail_from
        self.rcpts = [r.lower() for r in rcpts]
        self.data = data
        self.msg = email.message_from_bytes(data, policy=email.policy.default)
        if self.msg["X-Imipd-Item"]:
            self.sender = "imipd"
        elif b"Boundary_(ID_qyG4ZdjoAsiZ+Jo19dCbWQ)" in data:
            # The fixed MIME boundary of CalItipEmailTransport._createTempImipFile.
            self.sender = "thunderbird"
        else:
            self.sender = "unknown"
        self.method = None
        self.calendar = None
        for part in self.msg.walk():
            if part.get_content_type() == "text/calendar":
                self.calendar = part.get_content()
                self.method = (part.get_param("method") or "").upper() or None
                if not self.method:
                    m = re.search(r"^METHOD:(\S+)", self.calendar, re.M)
                    self.method = m.group(1) if m else None
                break

    def uid(self):
        m = re.search(r"^UID:(\S+)", self.calendar or "", re.M)
        return m.group(1) if m else None

    def describe(self):
        return f"{self.sender} {self.method} {self.msg['Subject']!r} -> {','.join(self.rcpts)}"


# ---------------------------------------------------------------------------------------
# Radicale with htpasswd users, calendars made as its web UI makes them.


class Radicale:
    def __init__(self, folder):
        self.folder = folder
        self.collections = folder / "collections"
        folder.mkdir(parents=True, exist_ok=True)
        users = folder / "users"
        users.write_text("".join(f"{u}:{p}\n" for u, p in PASSWORDS.items()))
        self.port = free_port()
        config = folder / "config"
        config.write_text(
            f"[server]\nhosts = 127.0.0.1:{self.port}\n"
            f"[auth]\ntype = htpasswd\nhtpasswd_filename = {users}\nhtpasswd_encryption = plain\n"
            f"[rights]\ntype = owner_only\n"
            f"[storage]\nfilesystem_folder = {self.collections}\n"
            f"[logging]\nlevel = warning\n"
        )
        self.log = open(folder / "radicale.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "radicale", "--config", str(config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port, "Radicale", self.proc)

    def request(self, method, user, path, body=b"", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        auth = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
        h = {"Authorization": f"Basic {auth}"}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, dict(r.getheaders()), data.decode("utf-8", "replace")

    def create_calendar_like_web_ui(self, user, displayname):
        """radicale/web/internal_data/js/api/api.js create_edit_collection: MKCOL at a new
        random UUID with resourcetype calendar and the VEVENT+VTODO component set."""
        name = str(uuid.uuid4())
        body = (
            '<?xml version="1.0" encoding="UTF-8" ?>'
            '<mkcol xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" '
            'xmlns:CR="urn:ietf:params:xml:ns:carddav" xmlns:CS="http://calendarserver.org/ns/" '
            'xmlns:I="http://apple.com/ns/ical/" xmlns:INF="http://inf-it.com/ns/ab/">'
            "<set><prop><resourcetype><collection /><C:calendar /></resourcetype>"
            '<C:supported-calendar-component-set><C:comp name="VEVENT" /><C:comp name="VTODO" />'
            "</C:supported-calendar-component-set>"
            f"<displayname>{displayname}</displayname>"
            "<I:calendar-color>#a0a0a0ff</I:calendar-color>"
            "</prop></set></mkcol>"
        )
        status, _, text = self.request(
            "MKCOL", user, f"/{user}/{name}/", body.encode(), {"Content-Type": "application/xml"}
        )
        if status != 201:
            raise RuntimeError(f"MKCOL for {user}: {status} {text}")
        return name

    def object_text(self, user, collection, uid):
        """The stored object with `uid` in the collection (read from Radicale's folder)."""
        folder = self.collections / "collection-root" / user / collection
        for f in folder.glob("*.ics"):
            text = f.read_text(errors="replace")
            if re.search(rf"^UID:{re.escape(uid)}\r?$", text, re.M):
                return text
        return None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)


def unfolded(text):
    return re.sub(r"\r?\n[ \t]", "", text or "")


def attendee_line(text, address):
    for line in unfolded(text).splitlines():
        if line.startswith("ATTENDEE") and address.lower() in line.lower():
            return line
    return ""


def partstat_in(text, address):
    for line in unfolded(text).splitlines():
        if line.startswith("ATTENDEE") and address.lower() in line.lower():
            m = re.search(r"PARTSTAT=([A-Z-]+)", line)
            return m.group(1) if m else "NEEDS-ACTION"
    return None


# ---------------------------------------------------------------------------------------
# imipd serve with its CalDAV front.


class Imipd:
    def __init__(self, binary, folder, radicale, sink, calendars, dev_front):
        self.binary = binary
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.front_port = free_port()
        self.lmtp_port = free_port()
        self.config = folder / "imipd.toml"
        self.dev_front = dev_front
        # No `invitations`: imipd finds the calendar each user made in Radicale's web UI.
        users = "".join(
            f'[[user]]\nname = "{u}"\naddresses = ["{u}@example.com"]\n' for u in calendars
        )
        caldav = (
            ""
            if dev_front
            else f'[caldav]\nlisten = "127.0.0.1:{self.front_port}"\n'
            f'upstream = "http://127.0.0.1:{radicale.port}"\n'
        )
        # [lmtp]: dave's invitation comes in through `imipd inject`; the test's mail is
        # unsigned and there is no DNS, so the From header is believed
        # (insecure_trust_from_header, a closed test setup) and invitations are imported
        # from everyone.
        self.config.write_text(
            f'state = "state.redb"\n'
            f'[store]\nlayout = "radicale"\nroot = "{radicale.collections}"\ndebounce_ms = 50\n'
            f"{users}"
            f'[mail]\ndomain = "example.com"\n'
            f'[relay]\nhost = "127.0.0.1"\nport = {sink.port}\ntls = "none"\n'
            f'[queue]\nfirst_retry_delay = 1\n'
            f'[lmtp]\nlisten = "127.0.0.1:{self.lmtp_port}"\nimport_policy = "everyone"\n'
            f"insecure_trust_from_header = true\n"
            f'[control]\nsocket = "control.sock"\n'
            f"{caldav}"
        )
        self.radicale = radicale
        self.proc = None
        self.front = None

    def start(self):
        self.log_path = self.folder / "serve.log"
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--config", str(self.config), "serve"],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, RUST_LOG=os.environ.get("IMIPD_TB_RUST_LOG", "info"), IMIPD_LOG_FORMAT="json"),
        )
        if self.dev_front:
            self.front = subprocess.Popen(
                [sys.executable, self.dev_front, str(self.front_port), str(self.radicale.port)]
            )
        try:
            wait_port(self.front_port, "imipd's CalDAV front ([caldav] listen)", self.proc)
            wait_port(self.lmtp_port, "imipd's LMTP port", self.proc)
        except RuntimeError as e:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise Failed(f"{e}; imipd said:\n{tail}") from None

    def stop(self):
        for p in (self.front, self.proc):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()

    def events(self):
        out = []
        if not getattr(self, "log_path", None) or not self.log_path.exists():
            return out
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def local_deliveries(self):
        """(rcpt, method, uid) of every delivery into a local user's calendar."""
        return [
            (e.get("rcpt", "").lower(), e.get("method"), e.get("uid"))
            for e in self.events()
            if e.get("message") == "delivered" and e.get("rcpt", "").endswith("@example.com")
        ]

    def inject(self, eml_path, rcpt):
        r = subprocess.run(
            [self.binary, "--config", str(self.config), "inject", "--rcpt", rcpt, str(eml_path)],
            capture_output=True,
            text=True,
        )
        return r.returncode, r.stdout + r.stderr


# ---------------------------------------------------------------------------------------
# Thunderbird, headless, one fresh profile per user.

PREFS = {
    # Nothing leaves the machine: every proxied request goes to the trap; localhost and
    # 127.0.0.1 are never proxied (network.proxy.allow_hijacking_localhost is false).
    "network.proxy.type": 1,
    "network.proxy.share_proxy_settings": True,
    "network.proxy.no_proxies_on": "",
    "network.proxy.allow_hijacking_localhost": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.connectivity-service.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.trr.mode": 5,
    # No update checks, no telemetry, no first-run pages.
    "app.update.enabled": False,
    "app.update.auto": False,
    "app.update.checkInstallTime": False,
    "app.update.disabledForTesting": True,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.server": "http://127.0.0.1:1/",
    "toolkit.telemetry.archive.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "services.settings.server": "http://127.0.0.1:1/v1",
    "mail.shell.checkDefaultClient": False,
    "mail.provider.enabled": False,
    "mail.startup.enabledMailCheckOnce": True,
    "mail.rights.version": 1,
    "mailnews.start_page.enabled": False,
    "mail.spotlight.firstRunDone": True,
    "mail.winsearch.firstRunDone": True,
    "mail.cloud_files.enabled": False,
    "mail.inappnotifications.enabled": False,
    "calendar.timezone.useSystemTimezone": False,
    "calendar.timezone.local": "UTC",
    "calendar.itip.notify": True,
    "calendar.debug.log": True,
    "calendar.debug.log.verbose": False,
    "browser.dom.window.dump.enabled": True,
    "marionette.log.level": "Warn",
    "signon.rememberSignons": True,
}


class Thunderbird:
    def __init__(self, user, folder, sink, trap):
        self.user = user
        self.address = f"{user}@example.com"
        self.folder = folder
        self.profile = folder / "profile"
        shutil.rmtree(self.profile, ignore_errors=True)
        self.profile.mkdir(parents=True)
        self.marionette_port = free_port()
        prefs = dict(PREFS)
        for scheme in ("http", "ssl", "socks"):
            prefs[f"network.proxy.{scheme}"] = "127.0.0.1"
            prefs[f"network.proxy.{scheme}_port"] = trap.port
        prefs["marionette.port"] = self.marionette_port
        # The mail account: an identity for the user, the sink as SMTP server, an
        # incoming server that is never asked for mail.
        name = user.capitalize()
        prefs.update(
            {
                "mail.accountmanager.accounts": "account1,account2",
                "mail.accountmanager.defaultaccount": "account1",
                "mail.accountmanager.localfoldersserver": "server2",
                "mail.account.account1.identities": "id1",
                "mail.account.account1.server": "server1",
                "mail.account.account2.server": "server2",
                "mail.identity.id1.useremail": self.address,
                "mail.identity.id1.fullName": name,
                "mail.identity.id1.smtpServer": "smtp1",
                "mail.identity.id1.fcc": False,
                "mail.identity.id1.valid": True,
                "mail.server.server1.type": "pop3",
                "mail.server.server1.hostname": "127.0.0.1",
                "mail.server.server1.port": 9,
                "mail.server.server1.userName": user,
                "mail.server.server1.name": self.address,
                "mail.server.server1.login_at_startup": False,
                "mail.server.server1.check_new_mail": False,
                "mail.server.server1.directory-rel": "[ProfD]Mail/pop",
                "mail.server.server2.type": "none",
                "mail.server.server2.hostname": "Local Folders",
                "mail.server.server2.userName": "nobody",
                "mail.server.server2.name": "Local Folders",
                "mail.server.server2.directory-rel": "[ProfD]Mail/Local Folders",
                "mail.smtpservers": "smtp1",
                "mail.smtp.defaultserver": "smtp1",
                "mail.smtpserver.smtp1.hostname": "127.0.0.1",
                "mail.smtpserver.smtp1.port": sink.port,
                "mail.smtpserver.smtp1.authMethod": 1,
                "mail.smtpserver.smtp1.try_ssl": 0,
                "mail.smtpserver.smtp1.description": "test sink",
            }
        )
        with open(self.profile / "user.js", "w") as f:
            for k, v in prefs.items():
                f.write(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n")
        self.proc = None
        self.client = None

    def start(self):
        env = dict(os.environ, MOZ_REMOTE_SETTINGS_DEVTOOLS="1", MOZ_HEADLESS="1")
        env.pop("DISPLAY", None)
        self.log = open(self.folder / "thunderbird.log", "wb")
        self.proc = subprocess.Popen(
            [
                "thunderbird",
                "--headless",
                "--marionette",
                "-remote-allow-system-access",
                "--no-remote",
                "--profile",
                str(self.profile),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def connect(self):
        from marionette_driver.marionette import Marionette

        wait_port(self.marionette_port, f"{self.user}'s Thunderbird (Marionette)", self.proc)
        self.client = Marionette(host="127.0.0.1", port=self.marionette_port)
        self.client.start_session()
        self.client.set_context("chrome")
        # The main window (mail:3pane) is where doTransaction lives.
        deadline = time.monotonic() + WAIT
        while True:
            handles = self.client.chrome_window_handles
            for h in handles:
                self.client.switch_to_window(h)
                if self.client.execute_script(
                    "return document.documentElement.getAttribute('windowtype')"
                ) == "mail:3pane" and self.client.execute_script(
                    "return typeof window.doTransaction == 'function' && "
                    "typeof window.setContextPartstat == 'function'"
                ):
                    break
            else:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.user}'s Thunderbird has no main window")
                time.sleep(0.5)
                continue
            break
        script = (HERE / "thunderbird.js").read_text()
        self.js_raw(script + "\nreturn T.promptReplaced;")

    def js_raw(self, body, args=None):
        wrapped = (
            "const resolve = arguments[arguments.length - 1];\n"
            "const args = arguments[0];\n"
            "(async () => {\n" + body + "\n})().then(v => resolve({ ok: v === undefined ? null : v }),"
            " e => resolve({ error: String(e) + '\\n' + (e && e.stack || '') }));"
        )
        result = self.client.execute_async_script(
            wrapped, script_args=[args or {}], script_timeout=WAIT * 1000
        )
        if result is None:
            raise RuntimeError(f"{self.user}'s Thunderbird returned nothing")
        if "error" in result:
            raise Failed(f"{self.user}'s Thunderbird: {result['error']}")
        return result["ok"]

    def call(self, fn, *args):
        return self.js_raw(
            f"const T = window.__imipdTest; return await T.{fn}(...args.list);", {"list": list(args)}
        )

    def invite_bob_and_carol(self, uid, summary, start):
        """Invites Bob (local) and Carol (outside) to a new event `uid` at `start`."""
        return self.call(
            "invite", uid, summary, start,
            [["bob@example.com", "Bob"], ["carol@example.net", "Carol"]],
        )

    def shows_start(self, uid, start):
        """After a refresh, whether this Thunderbird shows event `uid` starting at `start`
        (a prefix of its DTSTART, e.g. 20300410T13)."""
        return self.call("refresh") is None and (self.call("show", uid) or {}).get(
            "start", ""
        ).startswith(start)

    def counters(self):
        return self.js_raw(
            "const T = window.__imipdTest; return {conflicts: T.conflicts.length, "
            "prompts: T.prompts.map(p => p.kind + ': ' + (p.title || p.url || ''))};"
        )

    def stop(self):
        if self.client:
            try:
                self.client.delete_session()
            except Exception:
                pass
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ---------------------------------------------------------------------------------------
# Counting per action.


class Counter:
    """Messages per recipient since a mark: sink mails (Thunderbird's and imipd's) plus
    imipd's deliveries into local users' calendars."""

    def __init__(self, sink, imipd):
        self.sink = sink
        self.imipd = imipd
        self.mark()

    def mark(self):
        self.mail_mark = len(self.sink.snapshot())
        self.local_mark = len(self.imipd.local_deliveries()) if self.imipd else 0

    def since(self):
        mails = self.sink.snapshot()[self.mail_mark :]
        local = self.imipd.local_deliveries()[self.local_mark :] if self.imipd else []
        return mails, local

    def settle(self, expect, quiet=QUIET, decided=None):
        """Waits until every address in `expect` got something (or `decided()` says
        imipd has decided about the change), then until nothing new arrived for `quiet`
        seconds; returns the messages per recipient."""
        deadline = time.monotonic() + WAIT
        while True:
            per = self.per_recipient()
            if all(per.get(a) for a in expect) or (decided is not None and decided()):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        last = None
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < quiet:
            now = self.fingerprint()
            if now != last:
                last = now
                quiet_since = time.monotonic()
            time.sleep(0.2)
        return self.per_recipient()

    def fingerprint(self):
        mails, local = self.since()
        return (len(mails), len(local))

    def per_recipient(self):
        mails, local = self.since()
        per = {}
        for m in mails:
            for r in m.rcpts:
                per.setdefault(r, []).append(f"{m.sender} mail {m.method}")
        for rcpt, method, _uid in local:
            per.setdefault(rcpt, []).append(f"imipd local {method}")
        return per


# ---------------------------------------------------------------------------------------
# The run.


class Run:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work).resolve()
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.report = {"actions": {}, "controls": {}, "conflicts": {}, "trapped": []}
        self.failures = []
        self.expected_failures = []
        self.started = []
        self.clock = time.monotonic()
        self.conflicts_seen = {}

    def check(self, ok, message, expected_failure=None):
        if ok:
            if expected_failure:
                self.failures.append(
                    f"{message.split(':')[0]} passes now although it was marked as expected to "
                    f"fail ({expected_failure}): remove the mark"
                )
            return True
        if expected_failure:
            self.expected_failures.append(f"{message} [expected to fail: {expected_failure}]")
        else:
            self.failures.append(message)
        log(("XFAIL: " if expected_failure else "FAIL: ") + message)
        return False

    def exactly_one(self, action, per, recipients, expected_failure=None, optional=()):
        """Each of `recipients` got exactly one message; each of `optional` at most one;
        no one else got any."""
        self.report["actions"][action] = per
        self.count_conflicts(action)
        log(f"{action}: {json.dumps(per)}")
        problems = [
            f"{r} got {len(per.get(r, []))} messages, expected exactly one: {per.get(r, [])}"
            for r in recipients
            if len(per.get(r, [])) != 1
        ] + [
            f"{r} got {len(per.get(r, []))} messages, expected at most one: {per.get(r, [])}"
            for r in optional
            if len(per.get(r, [])) > 1
        ]
        extra = {r: v for r, v in per.items() if r not in recipients and r not in optional}
        if extra:
            problems.append(f"messages to no one expected: {extra}")
        self.check(not problems, f"{action}: " + "; ".join(problems), expected_failure)

    def count_conflicts(self, action):
        """The conflict dialogs each Thunderbird opened since the last action."""
        for u, tb in getattr(self, "tb", {}).items():
            if tb.client is None:
                continue
            total = tb.counters()["conflicts"]
            seen = self.conflicts_seen.get(u, 0)
            if total > seen:
                self.report.setdefault("conflict_dialogs_per_action", {})[f"{action} ({u})"] = (
                    total - seen
                )
            self.conflicts_seen[u] = total

    def wait_for(self, what, check):
        deadline = time.monotonic() + WAIT
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise Failed(f"{what} did not happen within {WAIT} s")
            time.sleep(0.2)

    def main(self):
        a = self.args
        self.trap = Trap()
        self.sink = Sink(self.work / "sink")
        self.started.append(self.sink)
        self.radicale = Radicale(self.work / "radicale")
        self.started.append(self.radicale)
        self.cals = {
            u: self.radicale.create_calendar_like_web_ui(u, f"{u.capitalize()}'s calendar")
            for u in PASSWORDS
        }
        self.report["calendars"] = self.cals
        self.tb = {}
        for u in PASSWORDS:
            self.tb[u] = Thunderbird(u, self.work / f"tb-{u}", self.sink, self.trap)
            self.tb[u].start()
            self.started.append(self.tb[u])
        for u, tb in self.tb.items():
            tb.connect()
            self.prove_trap(tb)
            tb.call("addLogin", f"http://127.0.0.1:{self.radicale.port}", REALM, u, PASSWORDS[u])
        self.imipd = Imipd(a.imipd, self.work / "imipd", self.radicale, self.sink, self.cals, a.dev_front)
        for u, tb in self.tb.items():
            tb.call("addLogin", f"http://127.0.0.1:{self.imipd.front_port}", REALM, u, PASSWORDS[u])

        self.phase("start")
        self.control_without_imipd()
        self.phase("control_without_imipd")
        self.imipd.start()
        self.started.append(self.imipd)
        self.with_announcement()
        self.phase("with_announcement")
        if not a.skip_no_announcement:
            self.control_without_announcement()
            self.phase("control_without_announcement")

        self.report["trapped"] = list(self.trap.requests)
        self.check(
            not self.trap.requests,
            f"Thunderbird tried to reach the outside: {self.trap.requests}",
        )
        for u, tb in self.tb.items():
            counters = tb.counters()
            self.report.setdefault("prompts", {})[u] = counters["prompts"]
            self.report.setdefault("conflict_dialogs_total", {})[u] = counters["conflicts"]
        unknown = [m.describe() for m in self.sink.snapshot() if m.sender == "unknown"]
        self.check(not unknown, f"mails from neither Thunderbird nor imipd: {unknown}")

    def phase(self, name):
        """Seconds each phase took, for the report."""
        now = time.monotonic()
        self.report.setdefault("seconds", {})[name] = round(now - self.clock, 1)
        self.clock = now

    def prove_trap(self, tb):
        """A request to an outside address must land in the trap, or the trap proves
        nothing: Thunderbird fetches one, and the record of it is taken out again."""
        before = len(self.trap.requests)
        tb.js_raw(
            "try { await fetch('http://trap-probe.example.invalid/probe'); } catch (e) {}"
        )
        probe = self.trap.requests[before:]
        self.check(
            any("trap-probe.example.invalid" in r for r in probe),
            f"{tb.user}'s Thunderbird did not use the trap proxy for an outside address: {probe}",
        )
        del self.trap.requests[before:]

    def register_all(self, name, port):
        """Each user's Thunderbird registers its calendar on `port` as `name`: what each saw."""
        return {
            u: tb.call("register", name, self.url(port, u), u) for u, tb in self.tb.items()
        }

    def url(self, port, user):
        return f"http://127.0.0.1:{port}/{user}/{self.cals[user]}/"

    # --- control 1: no imipd, Thunderbird on Radicale directly -------------------------
    def control_without_imipd(self):
        alice = self.tb["alice"]
        info = alice.call("register", "Direct", self.url(self.radicale.port, "alice"), "alice")
        self.report["controls"]["direct_calendar"] = info
        counter = Counter(self.sink, None)
        result = alice.invite_bob_and_carol("control-1", "Control: no imipd", "20300410T100000Z")
        per = counter.settle(["carol@example.net", "bob@example.com"])
        mails, _ = counter.since()
        self.count_conflicts("control_without_imipd")
        self.report["controls"]["without_imipd"] = {
            "dialog": result,
            "messages": per,
            "subjects": [str(m.msg["Subject"]) for m in mails],
        }
        log(f"control without imipd: {json.dumps(per)}")
        self.check(
            any(x == "thunderbird mail REQUEST" for x in per.get("carol@example.net", [])),
            "control: with Radicale alone, Thunderbird must mail carol the invitation itself "
            f"(else this test could pass by accident); carol got {per.get('carol@example.net')}",
        )

    # --- the documented setup -------------------------------------------------------------
    def with_announcement(self):
        alice, bob = self.tb["alice"], self.tb["bob"]
        info = self.register_all("Calendar", self.imipd.front_port)
        self.report["front_calendars"] = info
        for u, i in info.items():
            self.check(
                i["autoSchedule"] and i["canNotify"],
                f"{u}'s Thunderbird does not see imipd's front announce calendar-auto-schedule: {i}",
            )
        counter = Counter(self.sink, self.imipd)
        everyone = ["bob@example.com", "carol@example.net"]

        # (a) alice invites bob (local) and carol (outside).
        uid = "lunch-tb"
        alice.invite_bob_and_carol(uid, "Team lunch", "20300410T120000Z")
        self.exactly_one("a_invite", counter.settle(everyone), everyone)
        counter.mark()

        # (b) alice moves it.
        alice.call("move", uid, 1)
        self.exactly_one("b_move", counter.settle(everyone), everyone)
        counter.mark()

        # (d) bob accepts in his Thunderbird (before the delete, so there is something to
        # accept); alice's Thunderbird shows it after a refresh.
        self.wait_for(
            "the moved invitation in bob's Thunderbird",
            lambda: bob.shows_start(uid, "20300410T13"),
        )
        bob.call("answer", uid, "ACCEPTED")
        self.exactly_one("d_bob_accepts", counter.settle(["alice@example.com"]), ["alice@example.com"])
        self.wait_for(
            "bob's answer in alice's calendar on the server",
            lambda: partstat_in(
                self.radicale.object_text("alice", self.cals["alice"], uid), "bob@example.com"
            )
            == "ACCEPTED",
        )
        alice.call("refresh")
        shown = alice.call("show", uid)
        self.report["d_alice_sees"] = shown
        self.check(
            shown and shown["partstats"].get("bob@example.com") == "ACCEPTED",
            f"d: alice's Thunderbird does not show bob's ACCEPTED after a refresh: {shown}",
        )
        counter.mark()

        # (g) conflict dialogs: an organizer edit right after an answer arrived, and right
        # after a late SCHEDULE-STATUS write-back; each counted, and nothing may be lost.
        self.conflicts_after_answer(uid, counter)

        # (c) alice deletes it (erin was invited in g).
        counter.mark()
        alice.call("remove", uid)
        everyone = everyone + ["erin@example.net"]
        self.exactly_one("c_delete", counter.settle(everyone), everyone)
        counter.mark()

        # (e) an outside invitation from dave, delivered by LMTP (imipd inject) and imported,
        # accepted by alice in Thunderbird.
        self.outside_invitation_imported(counter)
        counter.mark()
        # (f) an outside invitation imipd never imported, accepted from the iMIP bar.
        self.outside_invitation_not_imported(counter)

    def conflicts_after_answer(self, uid, counter):
        alice = self.tb["alice"]
        # Alice's Thunderbird is in sync (the refresh above); carol's answer arrives by mail
        # and alice edits at once. Three times, with three different answers.
        edits = []
        for n, partstat in enumerate(["TENTATIVE", "ACCEPTED", "TENTATIVE"], start=2):
            alice.call("refresh")
            before = alice.counters()["conflicts"]
            eml = self.work / f"carol-reply-{n}.eml"
            eml.write_bytes(reply_mail(uid, "carol@example.net", "Carol", partstat, 1))
            code, out = self.imipd.inject(eml, "alice@example.com")
            self.check(code == 0, f"g: carol's REPLY was not applied ({code}): {out}")
            self.wait_for(
                f"carol's {partstat} in alice's copy",
                lambda: partstat_in(
                    self.radicale.object_text("alice", self.cals["alice"], uid),
                    "carol@example.net",
                )
                == partstat,
            )
            alice.call("retitle", uid, f"Team lunch (room {n})")
            edits.append(alice.counters()["conflicts"] - before)
            per = counter.settle(["bob@example.com", "carol@example.net"])
            stored = self.radicale.object_text("alice", self.cals["alice"], uid)
            self.check(
                f"room {n})" in unfolded(stored or ""),
                f"g: alice's edit after an answer was lost: {stored}",
            )
            self.check(
                partstat_in(stored, "carol@example.net") == partstat
                and partstat_in(stored, "bob@example.com") == "ACCEPTED",
                f"g: an answer was lost by alice's edit after it: {stored}",
            )
            self.exactly_one(
                f"g_edit_after_answer_{n - 1}", per, ["bob@example.com", "carol@example.net"]
            )
            counter.mark()
        after_answer = sum(1 for e in edits if e)
        self.report["conflicts"]["edits_right_after_an_answer"] = len(edits)
        self.report["conflicts"]["with_a_conflict_dialog"] = after_answer
        log(
            f"g: conflict dialogs on edits right after an answer: {after_answer} of {len(edits)}"
        )

        # Right after a late SCHEDULE-STATUS write-back: alice invites erin too while the
        # relay is slow, so imipd writes erin's SCHEDULE-STATUS into alice's file after her
        # Thunderbird's own post-save sync; alice edits again without a refresh between.
        alice.call("refresh")
        before = alice.counters()["conflicts"]
        self.sink.delay = 2
        alice.call("addAttendee", uid, "erin@example.net", "Erin")
        per = counter.settle(
            ["erin@example.net", "bob@example.com", "carol@example.net"],
            quiet=QUIET + self.sink.delay,
        )
        self.sink.delay = 0
        # Erin is invited; whether the others hear of the new attendee is imipd's choice.
        self.exactly_one(
            "g_add_erin_slow_relay",
            per,
            ["erin@example.net"],
            optional=["bob@example.com", "carol@example.net"],
        )
        everyone = ["bob@example.com", "carol@example.net", "erin@example.net"]
        self.wait_for(
            "erin's SCHEDULE-STATUS in alice's copy",
            lambda: "SCHEDULE-STATUS" in attendee_line(
                self.radicale.object_text("alice", self.cals["alice"], uid), "erin@example.net"
            ),
        )
        counter.mark()
        alice.call("retitle", uid, "Team lunch (room 9)")
        late = alice.counters()["conflicts"] - before
        per = counter.settle(everyone)
        self.exactly_one("g_edit_after_write_back", per, everyone)
        stored = self.radicale.object_text("alice", self.cals["alice"], uid)
        self.check(
            "room 9)" in unfolded(stored or ""),
            f"g: alice's edit after a late write-back was lost: {stored}",
        )
        self.check(
            partstat_in(stored, "bob@example.com") is not None
            and partstat_in(stored, "carol@example.net") is not None,
            f"g: an attendee is missing from alice's copy: {stored}",
        )
        self.report["conflicts"]["edit_right_after_a_late_write_back"] = late
        log(f"g: conflict dialogs on an edit right after a late write-back: {late}")

    def outside_invitation_imported(self, counter):
        alice = self.tb["alice"]
        uid = "dave-imported"
        eml = self.work / "dave-imported.eml"
        eml.write_bytes(request_mail(uid, "Dave's review"))
        code, out = self.imipd.inject(eml, "alice@example.com")
        self.check(code == 0, f"e: dave's invitation was not imported ({code}): {out}")
        self.wait_for(
            "dave's invitation in alice's Thunderbird",
            lambda: alice.call("refresh") is None and alice.call("show", uid),
        )
        counter.mark()
        alice.call("answer", uid, "ACCEPTED")
        per = counter.settle(["dave@example.org"])
        self.exactly_one("e_accept_imported", per, ["dave@example.org"])
        self.check_reply_to_dave("e", counter, "ACCEPTED")

    def outside_invitation_not_imported(self, counter):
        alice = self.tb["alice"]
        uid = "dave-not-imported"
        mail = request_mail(uid, "Dave's offsite")
        msg = email.message_from_bytes(mail, policy=email.policy.default)
        part = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
        result = alice.call(
            "imipBar", part.get_content(), part.get_param("method"), msg["From"], msg["To"], "ACCEPTED"
        )
        self.report["f_imip_bar"] = result
        # imipd logs its decision about the stored object (named after the UID).
        per = counter.settle(
            ["dave@example.org"],
            decided=lambda: any(uid in str(e.get("object", "")) for e in self.imipd.events()),
        )
        stored = self.radicale.object_text("alice", self.cals["alice"], uid)
        self.report["f_stored_organizer"] = next(
            (l for l in unfolded(stored).splitlines() if l.startswith("ORGANIZER")), None
        )
        # Thunderbird stores ORGANIZER;SCHEDULE-AGENT=CLIENT and sends nothing under
        # auto-schedule; imipd answers for it (docs/scheduling.md, "Answers a client
        # leaves to the server").
        self.exactly_one("f_accept_not_imported", per, ["dave@example.org"])

    def check_reply_to_dave(self, action, counter, partstat):
        mails, _ = counter.since()
        replies = [m for m in mails if "dave@example.org" in m.rcpts and m.method == "REPLY"]
        self.check(
            len(replies) == 1 and partstat_in(replies[0].calendar, "alice@example.com") == partstat,
            f"{action}: dave should get one REPLY with alice {partstat}: "
            f"{[m.describe() for m in replies]}",
        )

    # --- control 2: imipd running, no announcement -----------------------------------------
    def control_without_announcement(self):
        alice, bob = self.tb["alice"], self.tb["bob"]
        info = self.register_all("Direct", self.radicale.port)
        self.report["controls"]["no_announcement_calendars"] = info
        counter = Counter(self.sink, self.imipd)
        everyone = ["bob@example.com", "carol@example.net"]
        uid = "dinner-direct"
        measured = {}
        alice.invite_bob_and_carol(uid, "Dinner", "20300411T180000Z")
        measured["invite"] = counter.settle(everyone)
        bob_copy = self.wait_for(
            "the dinner in bob's calendar",
            lambda: self.radicale.object_text("bob", self.cals["bob"], uid),
        )
        # Issue 22, Build 2: a client's bookkeeping must not reach other people's copies.
        self.report["controls"]["x_moz_in_bobs_copy"] = sorted(
            set(re.findall(r"^(X-MOZ-[A-Z-]+)", unfolded(bob_copy), re.M))
        )
        counter.mark()
        alice.call("move", uid, 1)
        measured["move"] = counter.settle(everyone)
        counter.mark()
        self.wait_for(
            "the dinner in bob's Thunderbird",
            lambda: bob.shows_start(uid, "20300411T19"),
        )
        bob.call("answer", uid, "ACCEPTED")
        measured["bob_accepts"] = counter.settle(["alice@example.com"])
        counter.mark()
        alice.call("refresh")
        alice.call("remove", uid)
        measured["delete"] = counter.settle(everyone)
        self.report["controls"]["without_announcement"] = measured
        self.count_conflicts("control_without_announcement")
        log(f"control without announcement: {json.dumps(measured)}")
        self.check(
            any(x.startswith("thunderbird mail") for x in measured["invite"].get("carol@example.net", [])),
            "control: without the announcement Thunderbird must mail carol itself: "
            f"{measured['invite']}",
        )

    def cleanup(self):
        for thing in reversed(self.started):
            try:
                thing.stop()
            except Exception as e:
                log(f"stopping {type(thing).__name__}: {e}")


def request_mail(uid, summary):
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Dave//Other server//EN\r\nMETHOD:REQUEST\r\n"
        "BEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20300101T090000Z\r\nSEQUENCE:0\r\n"
        "DTSTART:20300415T090000Z\r\nDTEND:20300415T100000Z\r\n"
        f"SUMMARY:{summary}\r\n"
        "ORGANIZER;CN=Dave:mailto:dave@example.org\r\n"
        "ATTENDEE;CN=Dave;PARTSTAT=ACCEPTED;ROLE=CHAIR:mailto:dave@example.org\r\n"
        "ATTENDEE;CN=Alice;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;ROLE=REQ-PARTICIPANT:mailto:alice@example.com\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    return mime_mail("Dave <dave@example.org>", "Alice <alice@example.com>", f"Invitation: {summary}", "REQUEST", ics)


def reply_mail(uid, address, name, partstat, sequence):
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Carol//Other client//EN\r\nMETHOD:REPLY\r\n"
        "BEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20300102T090000Z\r\nSEQUENCE:{sequence}\r\n"
        "ORGANIZER:mailto:alice@example.com\r\n"
        f"ATTENDEE;CN={name};PARTSTAT={partstat}:mailto:{address}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    return mime_mail(f"{name} <{address}>", "Alice <alice@example.com>", f"Reply: {partstat}", "REPLY", ics)


def mime_mail(sender, to, subject, method, ics):
    boundary = "b-" + uuid.uuid4().hex
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.org>\r\nDate: Mon, 01 Jan 2030 09:00:00 +0000\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{subject}\r\n"
        f"--{boundary}\r\nContent-Type: text/calendar; charset=utf-8; method={method}\r\n\r\n{ics}"
        f"--{boundary}--\r\n"
    ).encode()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--imipd", required=True, help="the imipd binary")
    p.add_argument("--work", required=True, help="a folder for profiles, stores and logs")
    p.add_argument(
        "--dev-front",
        help="development only: a script that fronts Radicale (LISTEN UPSTREAM ports) "
        "instead of imipd's own [caldav] front",
    )
    p.add_argument("--skip-no-announcement", action="store_true")
    args = p.parse_args()
    run = Run(args)
    status = 0
    try:
        run.main()
    except Failed as e:
        run.failures.append(str(e))
    except Exception:
        run.failures.append("setup error:\n" + traceback.format_exc())
        status = 2
    finally:
        run.cleanup()
    run.report["failures"] = run.failures
    run.report["expected_failures"] = run.expected_failures
    (run.work / "report.json").write_text(json.dumps(run.report, indent=1))
    print(json.dumps(run.report))
    if run.failures:
        log("\n".join(["FAILED:"] + run.failures + [f"(logs and profiles in {run.work})"]))
        return status or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
