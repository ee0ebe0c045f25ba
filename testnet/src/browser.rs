//! Headless Chromium driven through chromedriver (W3C WebDriver), for the dashboard's
//! browser tests.
//!
//! WebDriver is plain JSON over HTTP on 127.0.0.1, so this speaks it with `ureq` and
//! `serde_json`, which the workspace already has: no async WebDriver crate (fantoccini
//! would bring hyper's TLS stack and a second HTTP client for a loopback protocol).
//! Only the commands the tests use are here.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`cargo xtask check-prereqs
//! --install`); [`Browser::start`] fails with [`BrowserError::Missing`] naming them when
//! they are not installed. Chromium runs headless with a fresh profile in a temporary
//! folder (removed on drop) and, as root, with `--no-sandbox`. Dropping the browser
//! ends the WebDriver session (Chromium quits) and stops the chromedriver this process
//! started, by its pid.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Where Debian installs the two programs.
const CHROMEDRIVER: &[&str] = &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];
const CHROMIUM: &[&str] = &["/usr/bin/chromium", "/usr/lib/chromium/chromium"];
/// The W3C name of an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// What went wrong driving the browser.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserError {
    /// A program is not installed.
    #[error(
        "{what} is not installed (looked for {looked}): install the Debian packages chromium and chromium-driver (`cargo xtask check-prereqs --install`)"
    )]
    Missing {
        /// The program.
        what: &'static str,
        /// Where it was looked for.
        looked: String,
    },
    /// chromedriver or the session did not start.
    #[error("cannot start {what}: {reason}")]
    Start {
        /// chromedriver or the session.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A WebDriver command failed.
    #[error("webdriver {command}: {message}")]
    Command {
        /// The command.
        command: String,
        /// The driver's error message.
        message: String,
    },
    /// A condition was not met in time.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// The condition.
        what: String,
        /// How long.
        waited: Duration,
    },
    /// A local file could not be written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A result of this module.
pub type BrowserResult<T> = std::result::Result<T, BrowserError>;

fn find(candidates: &[&str], what: &'static str) -> BrowserResult<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| BrowserError::Missing {
            what,
            looked: candidates.join(", "),
        })
}

/// A page element (a WebDriver element reference).
#[derive(Clone, Debug)]
pub struct Element(String);

/// One headless Chromium under one chromedriver.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    base: String,
    session: Option<String>,
    http: ureq::Agent,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free 127.0.0.1 port and a headless Chromium session with
    /// a fresh profile, its window 1280x1000.
    ///
    /// # Errors
    /// [`BrowserError::Missing`] when chromium or chromedriver is not installed;
    /// [`BrowserError::Start`].
    pub fn start() -> BrowserResult<Self> {
        let driver_path = find(CHROMEDRIVER, "chromedriver")?;
        let chromium = find(CHROMIUM, "chromium")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| BrowserError::Start {
                what: "chromedriver",
                reason: format!("no free port: {e}"),
            })?
            .port();
        let profile = std::env::temp_dir().join(format!(
            "datamesh-chromium-{}-{}",
            std::process::id(),
            crate::run::unique()
        ));
        std::fs::create_dir_all(&profile).map_err(|source| BrowserError::Io {
            what: format!("cannot create {}", profile.display()),
            source,
        })?;
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| BrowserError::Start {
                what: "chromedriver",
                reason: format!("{}: {e}", driver_path.display()),
            })?;
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut browser = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: None,
            http,
            profile,
        };
        browser.wait_driver()?;
        let mut args = vec![
            "--headless=new".to_string(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--window-size=1280,1000".into(),
            format!("--user-data-dir={}", browser.profile.display()),
        ];
        if rustix::process::geteuid().is_root() {
            args.push("--no-sandbox".into());
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let created =
            browser
                .call("POST", "/session", Some(caps))
                .map_err(|e| BrowserError::Start {
                    what: "a chromium session",
                    reason: e.to_string(),
                })?;
        let id = created["sessionId"]
            .as_str()
            .ok_or_else(|| BrowserError::Start {
                what: "a chromium session",
                reason: format!("no session id in {created}"),
            })?;
        browser.session = Some(id.to_string());
        Ok(browser)
    }

    fn wait_driver(&mut self) -> BrowserResult<()> {
        let waited = Duration::from_secs(20);
        let deadline = Instant::now() + waited;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(BrowserError::Start {
                    what: "chromedriver",
                    reason: format!("it exited ({status})"),
                });
            }
            if let Ok(v) = self.call("GET", "/status", None)
                && v["ready"].as_bool() == Some(true)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(BrowserError::Timeout {
            what: "chromedriver to answer".into(),
            waited,
        })
    }

    /// Sends one WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> BrowserResult<Value> {
        let url = format!("{}{path}", self.base);
        let command = format!("{method} {path}");
        let fail = |message: String| BrowserError::Command {
            command: command.clone(),
            message,
        };
        let response = match (method, body) {
            ("GET", _) => self.http.get(&url).call(),
            ("DELETE", _) => self.http.delete(&url).call(),
            (_, body) => self
                .http
                .post(&url)
                .send_json(body.unwrap_or_else(|| json!({}))),
        };
        let mut response = response.map_err(|e| fail(e.to_string()))?;
        let ok = response.status().is_success();
        let value: Value = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_json()
            .map_err(|e| fail(e.to_string()))?;
        let value = value.get("value").cloned().unwrap_or(Value::Null);
        if !ok {
            return Err(fail(
                value["message"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            ));
        }
        Ok(value)
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> BrowserResult<Value> {
        let session = self.session.as_deref().unwrap_or("none");
        self.call(method, &format!("/session/{session}{path}"), body)
    }

    /// Opens `url` and waits until it has loaded.
    ///
    /// # Errors
    /// [`BrowserError::Command`].
    pub fn goto(&self, url: &str) -> BrowserResult<()> {
        self.session_call("POST", "/url", Some(json!({ "url": url })))
            .map(drop)
    }

    /// The current page's URL.
    ///
    /// # Errors
    /// [`BrowserError::Command`].
    pub fn url(&self) -> BrowserResult<String> {
        let v = self.session_call("GET", "/url", None)?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// The first element matching a CSS selector.
    ///
    /// # Errors
    /// [`BrowserError::Command`] (`no such element` when none matches).
    pub fn find(&self, css: &str) -> BrowserResult<Element> {
        let v = self.session_call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        v[ELEMENT]
            .as_str()
            .map(|id| Element(id.to_string()))
            .ok_or_else(|| BrowserError::Command {
                command: format!("find {css}"),
                message: format!("no element reference in {v}"),
            })
    }

    /// Clicks an element.
    ///
    /// # Errors
    /// [`BrowserError::Command`].
    pub fn click(&self, element: &Element) -> BrowserResult<()> {
        self.session_call("POST", &format!("/element/{}/click", element.0), None)
            .map(drop)
    }

    /// Types text into an element.
    ///
    /// # Errors
    /// [`BrowserError::Command`].
    pub fn type_into(&self, element: &Element, text: &str) -> BrowserResult<()> {
        self.session_call(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(json!({ "text": text })),
        )
        .map(drop)
    }

    /// An element's rendered text.
    ///
    /// # Errors
    /// [`BrowserError::Command`].
    pub fn text(&self, element: &Element) -> BrowserResult<String> {
        let v = self.session_call("GET", &format!("/element/{}/text", element.0), None)?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Runs a script in the page (`return ...;` for a value).
    ///
    /// # Errors
    /// [`BrowserError::Command`].
    pub fn eval(&self, script: &str) -> BrowserResult<Value> {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Polls a script until it returns `true`.
    ///
    /// # Errors
    /// [`BrowserError::Timeout`], naming `what`.
    pub fn wait_until(&self, what: &str, script: &str, timeout: Duration) -> BrowserResult<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(script).is_ok_and(|v| v == Value::Bool(true)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BrowserError::Timeout {
                    what: what.to_string(),
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until an element matches a CSS selector (a page loading after a click), and
    /// returns it.
    ///
    /// # Errors
    /// [`BrowserError::Timeout`].
    pub fn wait_for(&self, css: &str, timeout: Duration) -> BrowserResult<Element> {
        let quoted = serde_json::to_string(css).unwrap_or_default();
        self.wait_until(
            &format!("an element {css}"),
            &format!("return document.readyState === 'complete' && document.querySelector({quoted}) !== null;"),
            timeout,
        )?;
        self.find(css)
    }

    /// Milliseconds the current page took to load (navigation timing: start to the end
    /// of its `load` event), if the browser reports it.
    ///
    /// # Errors
    /// [`BrowserError::Command`].
    pub fn load_time_ms(&self) -> BrowserResult<Option<f64>> {
        let v = self.eval(
            "const t = performance.getEntriesByType('navigation')[0]; return t ? t.duration : null;",
        )?;
        Ok(v.as_f64())
    }

    /// Writes a PNG screenshot of the page to `path`.
    ///
    /// # Errors
    /// [`BrowserError::Command`], [`BrowserError::Io`].
    pub fn screenshot(&self, path: &Path) -> BrowserResult<()> {
        let v = self.session_call("GET", "/screenshot", None)?;
        let png = data_encoding::BASE64
            .decode(v.as_str().unwrap_or_default().as_bytes())
            .map_err(|e| BrowserError::Command {
                command: "screenshot".into(),
                message: format!("not base64: {e}"),
            })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| BrowserError::Io {
                what: format!("cannot create {}", dir.display()),
                source,
            })?;
        }
        std::fs::write(path, png).map_err(|source| BrowserError::Io {
            what: format!("cannot write {}", path.display()),
            source,
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.session.is_some() {
            let _ = self.session_call("DELETE", "", None);
        }
        // Our own child, by its pid: TERM first so that it takes its Chromium along.
        let _ = crate::process::signal(self.driver.id(), rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.driver.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
