//! A dashboard's login sessions: a random id in an `HttpOnly`, `SameSite=Strict`
//! cookie, a CSRF token bound to it, an expiry. Held in memory only (a restart logs
//! everyone out); ids and tokens are compared in constant time and never printed.
//!
//! Each dashboard names its own [`Cookie`] (name and path): the node's `/ui` and the
//! testnet's page run on different ports of the same host, and browsers do not keep
//! cookies apart by port.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// How long a session lives after its login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; a new login past this ends the oldest.
pub const MAX_SESSIONS: usize = 32;

/// A dashboard's session cookie: its name and the path it is scoped to.
#[derive(Clone, Copy, Debug)]
pub struct Cookie {
    /// The cookie's name.
    pub name: &'static str,
    /// Its `Path` (the dashboard's prefix); the browser sends it nowhere else.
    pub path: &'static str,
}

impl Cookie {
    #[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_found_by_their_id_only_until_they_end_or_expire() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let a = sessions.create(now);
        let b = sessions.create(now);
        assert_eq!(a.len(), 64);
        assert_ne!(*a, *b);
        let found = sessions.find(&a, now);
        assert!(found.is_some());
        assert!(sessions.find("", now).is_none());
        assert!(sessions.find(&a[..63], now).is_none());
        let (fa, fb) = (sessions.find(&a, now), sessions.find(&b, now));
        if let (Some(fa), Some(fb)) = (fa, fb) {
            assert_ne!(fa.csrf(), fb.csrf());
            assert!(fa.csrf_matches(fa.csrf()));
            assert!(!fa.csrf_matches(fb.csrf()));
            assert!(!fa.csrf_matches(""));
        } else {
            panic!("both sessions are live");
        }
        sessions.end(&a);
        assert!(sessions.find(&a, now).is_none());
        assert!(sessions.find(&b, now).is_some());
        assert!(
            sessions
                .find(&b, now + SESSION_LIFETIME + Duration::from_secs(1))
                .is_none()
        );
    }

    #[test]
    fn at_most_max_sessions_live_and_the_oldest_ends_first() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let first = sessions.create(start);
        for i in 1..=MAX_SESSIONS {
            sessions.create(start + Duration::from_secs(i as u64));
        }
        let later = start + Duration::from_secs(MAX_SESSIONS as u64 + 1);
        assert!(sessions.find(&first, later).is_none());
        let live = sessions.live.lock().map(|l| l.len()).unwrap_or(0);
        assert_eq!(live, MAX_SESSIONS);
    }

    #[test]
    fn the_cookie_is_read_among_others_and_set_strict_and_http_only() {
        let cookie = Cookie {
            name: "datamesh_session",
            path: "/ui",
        };
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            axum::http::HeaderValue::from_static("a=1; datamesh_session=abc; b=2"),
        );
        assert_eq!(cookie.value(&headers).as_deref(), Some("abc"));
        let other = Cookie {
            name: "datamesh_testnet",
            path: "/testnet",
        };
        assert_eq!(other.value(&headers), None);
        let set = cookie.set("abc");
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(set.contains("Path=/ui;"));
        assert!(cookie.clear().contains("Max-Age=0"));
    }
}
