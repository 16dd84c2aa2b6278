//! A real DNS server on loopback and real DKIM keys, for the sender-authentication tests.
//!
//! [`Dns`] runs Debian's `dnsmasq` (2.90) in the foreground on a free loopback port,
//! answering only from the TXT records given on its command line (`--txt-record`):
//! DKIM keys, SPF and DMARC records of the test domains. `--local` makes it the final
//! word for the test TLDs (net, com, org, example, test) (unknown names are NXDOMAIN, never forwarded); nothing else
//! is read (`--conf-file=/dev/null`, `--no-resolv`, `--no-hosts`). It can be stopped
//! and started again on the same port (the "DNS down" case). [`DkimKey`] is an
//! Ed25519 key made from a fixed seed by the test, with its DNS record, signing with
//! mail-auth's own signer.

use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running dnsmasq serving fixed TXT records; stopped on drop.
pub struct Dns {
    child: Option<Child>,
    port: u16,
    records: Vec<(String, String)>,
    pid_file: PathBuf,
}

impl Dns {
    /// Starts dnsmasq with `records` (name, TXT text) on a free loopback port.
    pub fn start(records: &[(&str, String)]) -> Dns {
        let port = super::free_port();
        let pid_file =
            std::env::temp_dir().join(format!("imipd-dnsmasq-{}-{port}.pid", std::process::id()));
        let mut dns = Dns {
            child: None,
            port,
            records: records
                .iter()
                .map(|(name, text)| (name.to_string(), text.clone()))
                .collect(),
            pid_file,
        };
        dns.resume();
        dns
    }

    /// The server's address, for `lmtp.dns_servers`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Stops the server: queries go unanswered (connection refused) until [`Self::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same records.
    pub fn resume(&mut self) {
        self.stop();
        let mut command = Command::new(dnsmasq());
        command
            .arg("--keep-in-foreground")
            .arg("--conf-file=/dev/null")
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg("--no-poll")
            .arg("--user=root")
            .arg("--bind-interfaces")
            .arg("--listen-address=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .arg(format!("--pid-file={}", self.pid_file.display()))
            .args([
                "--local=/net/",
                "--local=/com/",
                "--local=/org/",
                "--local=/example/",
                "--local=/test/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, text) in &self.records {
            command.arg(format!("--txt-record={name},{text}"));
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dnsmasq (apt-get install dnsmasq): {e}"));
        self.child = Some(child);
        // dnsmasq listens on TCP too: ready once that port accepts.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr()).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let mut err = String::new();
                if let Some(mut stderr) = self.child.take().and_then(|mut c| c.stderr.take()) {
                    use std::io::Read;
                    let _ = stderr.read_to_string(&mut err);
                }
                panic!("dnsmasq exited ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "dnsmasq did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

fn dnsmasq() -> &'static str {
    if std::path::Path::new("/usr/sbin/dnsmasq").exists() {
        "/usr/sbin/dnsmasq"
    } else {
        "dnsmasq"
    }
}

/// An Ed25519 DKIM key made by the test from a fixed seed (deterministic runs).
pub struct DkimKey {
    seed: [u8; 32],
    public: Vec<u8>,
}

impl DkimKey {
    /// The key pair for a 32-byte seed filled with `byte`.
    pub fn from_seed(byte: u8) -> DkimKey {
        use ring::signature::KeyPair;
        let seed = [byte; 32];
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
            .expect("an Ed25519 key from a seed");
        DkimKey {
            seed,
            public: pair.public_key().as_ref().to_vec(),
        }
    }

    /// The TXT record publishing the public key (at `<selector>._domainkey.<domain>`).
    pub fn dns_record(&self) -> String {
        format!("v=DKIM1; k=ed25519; p={}", base64(&self.public))
    }

    /// `message` with a DKIM-Signature of `domain`/`selector` prepended, made by
    /// mail-auth's signer over the usual headers.
    pub fn sign(&self, domain: &str, selector: &str, message: &str) -> String {
        let key = Ed25519Key::from_seed_and_public_key(&self.seed, &self.public)
            .expect("mail-auth accepts the key");
        let signature = DkimSigner::from_key(key)
            .domain(domain)
            .selector(selector)
            .headers(["From", "To", "Subject", "Message-ID", "Content-Type"])
            .sign(message.as_bytes())
            .expect("signing");
        format!("{}{message}", signature.to_header())
    }
}

/// Standard base64 with padding, as DKIM key records carry it.
fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}
