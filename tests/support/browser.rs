//! A real headless Chromium (Debian's `chromium`), driven through `chromedriver`'s W3C
//! WebDriver protocol, with its own NSS database: the CA to trust and, optionally, one client
//! certificate, which the managed policy `AutoSelectCertificateForUrls` (written by
//! `scripts/browser-deps.sh`) presents without a prompt.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::process::Child;

use crate::http1;

/// The managed policy the deps script writes; without it Chromium would ask which
/// certificate to present (and, headless, present none).
pub const POLICY: &str = "/etc/chromium/policies/managed/intelmesh-console-test.json";

fn program(env: &str, default: &str) -> PathBuf {
    let p = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        p.is_file(),
        "{} not found: run scripts/browser-deps.sh (as root) or set {env}",
        p.display()
    );
    p
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (run scripts/browser-deps.sh)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes `home/.pki/nssdb` (where Chromium on Linux reads certificates) trusting `ca` for
/// servers and holding `client` (certificate and key PEM files), if given.
fn nss_db(home: &Path, ca: &Path, client: Option<(&Path, &Path)>) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).expect("nssdb dir");
    let sql = format!("sql:{}", db.display());
    run("certutil", &["-N", "-d", &sql, "--empty-password"]);
    let ca = ca.to_str().expect("utf-8 path");
    run(
        "certutil",
        &[
            "-A",
            "-d",
            &sql,
            "-n",
            "intelmesh test CA",
            "-t",
            "C,,",
            "-i",
            ca,
        ],
    );
    if let Some((cert, key)) = client {
        let p12 = home.join("client.p12");
        let p12 = p12.to_str().expect("utf-8 path");
        run(
            "openssl",
            &[
                "pkcs12",
                "-export",
                "-in",
                cert.to_str().expect("utf-8 path"),
                "-inkey",
                key.to_str().expect("utf-8 path"),
                "-out",
                p12,
                "-passout",
                "pass:",
            ],
        );
        run("pk12util", &["-i", p12, "-d", &sql, "-W", ""]);
    }
}

/// One browser session.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _home: tempfile::TempDir,
}

impl Browser {
    /// A fresh headless Chromium that trusts `ca` and presents `client` when asked.
    pub async fn open(ca: &Path, client: Option<(&Path, &Path)>) -> Browser {
        assert!(
            Path::new(POLICY).is_file(),
            "{POLICY} is missing: run scripts/browser-deps.sh (as root)"
        );
        let chromium = program("INTELMESH_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("INTELMESH_CHROMEDRIVER", "/usr/bin/chromedriver");
        let home = tempfile::tempdir().expect("browser home");
        nss_db(home.path(), ca, client);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = tokio::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .env("HOME", home.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            _home: home,
        };
        browser.wait_ready().await;
        let profile = browser._home.path().join("profile");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,900",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let created = browser
            .call("POST", "/session", Some(&caps))
            .await
            .expect("a browser session");
        browser.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser
    }

    async fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(v) = self.call("GET", "/status", None).await {
                if v["ready"] == json!(true) {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One WebDriver command; its `value`, or the driver's error message.
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| e.to_string())?;
        let body = body.map(Value::to_string);
        let host = format!("127.0.0.1:{}", self.port);
        let answer = tokio::time::timeout(
            Duration::from_secs(90),
            http1::exchange(&mut tcp, &host, method, path, body.as_deref()),
        )
        .await
        .map_err(|_| format!("chromedriver did not answer {method} {path}"))?
        .map_err(|e| e.to_string())?;
        let v: Value =
            serde_json::from_slice(&answer.body).map_err(|e| format!("{e}: {}", answer.text()))?;
        if answer.status != 200 {
            return Err(v["value"]["message"]
                .as_str()
                .unwrap_or(&answer.text())
                .to_string());
        }
        Ok(v["value"].clone())
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Navigates to `url`; a network or TLS failure comes back as the driver's message.
    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.call("POST", &self.path("/url"), Some(&json!({ "url": url })))
            .await
            .map(|_| ())
    }

    /// The value of `script` (a function body: `return …`) run in the page.
    pub async fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.path("/execute/sync"),
            Some(&json!({"script": script, "args": []})),
        )
        .await
        .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// The page's text as a reader sees it.
    pub async fn text(&self) -> String {
        self.eval("return document.body ? document.body.innerText : ''")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self
            .call("GET", &self.path("/screenshot"), None)
            .await
            .expect("screenshot");
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 text"))
            .expect("base64 PNG")
    }

    /// Ends the session (the driver closes Chromium) and stops the driver.
    pub async fn close(mut self) {
        let _ = self.call("DELETE", &self.path(""), None).await;
        let _ = self.driver.kill().await;
    }
}
