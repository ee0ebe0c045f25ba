//! What every DataMesh dashboard does the same way, whoever serves it: the node's `/ui`
//! ([`crate::ui`](self)) and the testnet's page (`datamesh testnet ui`, in the CLI).
//!
//! * [`session`]: login sessions in an `HttpOnly`, `SameSite=Strict` cookie, with a
//!   CSRF token each.
//! * [`guard`]: a middleware that refuses a `Host` that is not an IP address or
//!   `localhost` (DNS rebinding) and sets the security headers (a Content-Security-Policy
//!   allowing scripts and styles from the dashboard only, no framing, `no-store`).
//! * [`same_origin`]: whether a state-changing request comes from the dashboard's own
//!   pages (`Origin`, `Sec-Fetch-Site`).
//! * [`LoginLimiter`]: at most [`LOGIN_ATTEMPTS`] login attempts per
//!   [`LOGIN_WINDOW`], in constant memory.
//! * [`escape`] for every interpolated text, and the shared stylesheet [`STYLE_CSS`]
//!   (system fonts, WCAG AA contrast).

pub mod session;

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The dashboards' stylesheet (compiled in).
pub const STYLE_CSS: &str = include_str!("style.css");

/// Login attempts (right or wrong) a dashboard accepts per [`LOGIN_WINDOW`].
pub const LOGIN_ATTEMPTS: u32 = 10;
/// The window of [`LOGIN_ATTEMPTS`].
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// Refuses a `Host` that is not an IP address or `localhost` (DNS rebinding) and adds
/// the security headers to every answer. Use with `axum::middleware::from_fn`.
pub async fn guard(request: Request, next: Next) -> Response {
    if !host_allowed(request.headers()) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "the dashboard answers only to an IP address or localhost in the Host header",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it Chromium sends `Origin: null` with the page's own
    // form posts, which the origin check would then refuse.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether the `Host` header names an IP address or `localhost`.
pub fn host_allowed(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

/// Whether a state-changing request comes from this listener's own pages: its `Origin`
/// is `http://<Host>` and, when the browser says, `Sec-Fetch-Site` is `same-origin`.
/// (Another port of 127.0.0.1 is the *same site* for `SameSite` cookies, so the cookie
/// alone does not stop it.)
pub fn same_origin(headers: &HeaderMap) -> bool {
    let get = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(origin), Some(host)) = (get(header::ORIGIN), get(header::HOST)) else {
        return false;
    };
    let fetch_site_ok = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|site| site == "same-origin");
    fetch_site_ok && origin == format!("http://{host}")
}

/// Whether a presented secret (a login token) equals the expected one, in constant
/// time for a given length.
pub fn secret_eq(expected: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A fixed-window limit on login attempts: at most `max` per `window`, whoever sends
/// them (the dashboards listen on loopback, where every client has the same address).
/// Two numbers of state, whatever the load. Every attempt counts, right or wrong, so
/// that a guesser cannot tell a refusal for the count from one for the token.
#[derive(Debug)]
pub struct LoginLimiter {
    max: u32,
    window: Duration,
    /// The current window's start and the attempts in it.
    state: Mutex<Option<(Instant, u32)>>,
}

impl Default for LoginLimiter {
    /// [`LOGIN_ATTEMPTS`] per [`LOGIN_WINDOW`].
    fn default() -> Self {
        Self::new(LOGIN_ATTEMPTS, LOGIN_WINDOW)
    }
}

impl LoginLimiter {
    /// At most `max` attempts per `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            state: Mutex::new(None),
        }
    }

    /// Counts an attempt at `now`; `Err(wait)` when the window's attempts are used up
    /// (try again after `wait`), and then the attempt must not be tried.
    pub fn attempt(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (start, count) = match *state {
            Some((start, count)) if now.saturating_duration_since(start) < self.window => {
                (start, count)
            }
            _ => (now, 0),
        };
        if count >= self.max {
            *state = Some((start, count));
            return Err((start + self.window).saturating_duration_since(now));
        }
        *state = Some((start, count + 1));
        Ok(())
    }
}

/// The answer to a login over the limit: 429 with `Retry-After`, a one-line page.
pub fn too_many_logins(wait: Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("too many login attempts: try again in {secs} s"),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_the_listeners_own_origin_may_change_state() {
        let ok = headers(&[
            ("host", "127.0.0.1:5000"),
            ("origin", "http://127.0.0.1:5000"),
        ]);
        assert!(same_origin(&ok));
        for bad in [
            headers(&[("host", "127.0.0.1:5000")]),
            headers(&[
                ("host", "127.0.0.1:5000"),
                ("origin", "http://127.0.0.1:5001"),
            ]),
            headers(&[("host", "127.0.0.1:5000"), ("origin", "null")]),
            headers(&[
                ("host", "127.0.0.1:5000"),
                ("origin", "https://127.0.0.1:5000"),
            ]),
            headers(&[
                ("host", "127.0.0.1:5000"),
                ("origin", "http://127.0.0.1:5000"),
                ("sec-fetch-site", "same-site"),
            ]),
        ] {
            assert!(!same_origin(&bad), "{bad:?}");
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(secret_eq("abc", "abc"));
        assert!(!secret_eq("abc", "abd"));
        assert!(!secret_eq("abc", "ab"));
        assert!(!secret_eq("abc", ""));
    }

    #[test]
    fn interpolated_text_is_escaped() {
        assert_eq!(
            escape("<a href='x'>\"&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn logins_past_the_limit_wait_for_the_next_window() {
        let window = Duration::from_secs(60);
        let limiter = LoginLimiter::new(3, window);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(limiter.attempt(t0 + Duration::from_secs(i)), Ok(()));
        }
        // The fourth in the window is refused, with the time left in it.
        assert_eq!(
            limiter.attempt(t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(50))
        );
        assert!(limiter.attempt(t0 + Duration::from_secs(59)).is_err());
        // A new window: three more.
        let t1 = t0 + window;
        for _ in 0..3 {
            assert_eq!(limiter.attempt(t1), Ok(()));
        }
        assert!(limiter.attempt(t1).is_err());
        // A thousand refused attempts change nothing but the answer.
        for _ in 0..1000 {
            assert!(limiter.attempt(t1 + Duration::from_secs(1)).is_err());
        }
        assert_eq!(limiter.attempt(t1 + window), Ok(()));
    }

    #[test]
    fn the_refusal_says_when_to_come_back() {
        let r = too_many_logins(Duration::from_millis(1500));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            r.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(1u64))
        );
    }

    #[test]
    fn hosts_must_be_addresses_or_localhost() {
        for good in ["127.0.0.1:80", "localhost:9", "[::1]:4000", "10.0.0.2"] {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static(good));
            assert!(host_allowed(&h), "{good}");
        }
        for bad in ["evil.example:80", "127.0.0.1.evil.example", ""] {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static(bad));
            assert!(!host_allowed(&h), "{bad}");
        }
        assert!(!host_allowed(&HeaderMap::new()));
    }
}
