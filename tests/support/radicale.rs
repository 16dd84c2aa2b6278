//! A real Radicale server (pip `radicale`, installed by `scripts/test`) for one test: its
//! own storage folder, a free loopback port, `auth = none` with owner-only rights, and
//! a minimal HTTP client to talk CalDAV to it as a client would. Stopped on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Radicale server for one test; stopped on drop.
pub struct Radicale {
    child: Child,
    /// The HTTP port.
    pub port: u16,
    /// Its folder: `collections/` is Radicale's filesystem_folder.
    pub dir: PathBuf,
}

impl Radicale {
    /// Starts Radicale with storage under a new temporary folder.
    pub fn start(name: &str) -> Radicale {
        let dir =
            std::env::temp_dir().join(format!("imipd-radicale-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let config = dir.join("config");
        std::fs::write(
            &config,
            format!(
                "[server]\nhosts = 127.0.0.1:{port}\n[auth]\ntype = none\n[rights]\ntype = owner_only\n\
                 [storage]\nfilesystem_folder = {}\n[logging]\nlevel = warning\n",
                dir.join("collections").display()
            ),
        )
        .expect("config");
        let child = Command::new("python3")
            .args(["-m", "radicale", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m radicale (install it: pip install radicale, see scripts/test)");
        let radicale = Radicale { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Radicale did not start (is `pip install radicale` done?)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        radicale
    }

    /// One HTTP request as `user`; returns (status, ETag header, body).
    pub fn request(
        &self,
        method: &str,
        user: &str,
        path: &str,
        body: &str,
    ) -> (u16, Option<String>, String) {
        let answer = http(self.port, method, user, path, &[], body);
        let etag = answer.header("etag");
        (answer.status, etag, answer.body)
    }

    /// The folder of `user`'s collection `calendar` in Radicale's storage.
    pub fn collection(&self, user: &str, calendar: &str) -> PathBuf {
        self.dir
            .join("collections/collection-root")
            .join(user)
            .join(calendar)
    }

    /// An `imipd.toml` for a site on this Radicale's storage (state and control socket
    /// in the site's folder), `users` as `<user>@example.com`, `rest` after it.
    pub fn imipd_config(&self, users: &[&str], rest: &str) -> String {
        let mut text = format!(
            "state = \"state/imipd.redb\"\n[control]\nsocket = \"control.sock\"\n\
             [store]\nlayout = \"radicale\"\nroot = \"{}\"\ndebounce_ms = 50\n",
            self.dir.join("collections").display()
        );
        text.push_str(&super::site::users_and_mail(users));
        text.push_str("[queue]\noutbox = \"outbox\"\n");
        text.push_str(rest);
        text
    }

    /// [`Radicale::start`] with a `calendar` collection for each of `users`.
    pub fn with_calendars(name: &str, users: &[&str]) -> Radicale {
        let radicale = Radicale::start(name);
        for user in users {
            radicale.mkcalendar(user);
        }
        radicale
    }

    /// Creates `/<user>/calendar/`.
    pub fn mkcalendar(&self, user: &str) {
        let (status, _, body) = self.request("MKCALENDAR", user, &format!("/{user}/calendar/"), "");
        assert_eq!(status, 201, "MKCALENDAR for {user}: {body}");
    }
}

impl Drop for Radicale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTP answer: status, the head as text, the body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The status code (0: no answer).
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    /// The body.
    pub body: String,
}

impl HttpAnswer {
    /// The value of the first header called `name` (any case), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    }
}

/// One HTTP/1.1 request as `user` (basic auth, password `x`) to a CalDAV server on
/// `port` of 127.0.0.1 (Radicale itself, or imipd's CalDAV front), with `headers` added.
pub fn http(
    port: u16,
    method: &str,
    user: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpAnswer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = match user {
        "alice" => "YWxpY2U6eA==",
        "bob" => "Ym9iOng=",
        "carol" => "Y2Fyb2w6eA==",
        other => panic!("no credentials for {other}"),
    };
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: text/calendar; charset=utf-8\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("receive");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    HttpAnswer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// A client's save of `body` at `path` on a CalDAV server on `port`, on the version
/// with ETag `etag` (If-Match).
pub fn put_on(port: u16, user: &str, path: &str, etag: &str, body: &str) -> HttpAnswer {
    http(port, "PUT", user, path, &[("If-Match", etag)], body)
}

/// A client's edit of `path` on a CalDAV server on `port`: it GETs the object and PUTs
/// it back with `from` replaced by `to`, on the ETag it got (If-Match); the save must
/// succeed (201 or 204).
pub fn edit(port: u16, user: &str, path: &str, from: &str, to: &str) {
    let current = http(port, "GET", user, path, &[], "");
    let etag = current.header("etag").expect("etag");
    let saved = put_on(port, user, path, &etag, &current.body.replace(from, to));
    assert!(matches!(saved.status, 201 | 204), "{saved:?}");
}

/// The ETag a PROPFIND/REPORT answer (`body`) lists for `path`.
pub fn listed_etag(body: &str, path: &str) -> Option<String> {
    body.split("response>")
        .find(|block| block.contains(&format!("{path}<")))
        .and_then(|block| {
            let start = block.find("getetag>")? + "getetag>".len();
            let end = start + block[start..].find('<')?;
            Some(block[start..end].replace("&quot;", "\""))
        })
}

/// The unfolded ATTENDEE line of `who` in `calendar` (servers fold and reorder what
/// they serve); empty when there is none.
pub fn attendee_line(calendar: &str, who: &str) -> String {
    calendar
        .replace("\r\n ", "")
        .split("\r\n")
        .find(|l| l.starts_with("ATTENDEE") && l.contains(who))
        .unwrap_or("")
        .to_string()
}
