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
    /// The session id a request's `Cookie` headers carry, if any.
    pub fn value(&self, headers: &axum::http::HeaderMap) -> Option<String> {
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.name)
            .map(|(_, value)| value.to_string())
    }

    /// The `Set-Cookie` value that starts a session.
    pub fn set(&self, id: &str) -> String {
        format!(
            "{}={id}; Path={}; HttpOnly; SameSite=Strict; Max-Age={}",
            self.name,
            self.path,
            SESSION_LIFETIME.as_secs()
        )
    }

    /// The `Set-Cookie` value that clears it.
    pub fn clear(&self) -> String {
        format!(
            "{}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0",
            self.name, self.path
        )
    }
}

/// 32 random bytes as 64 hex characters.
fn random_hex() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut());
    Zeroizing::new(hex::encode(bytes.as_ref()))
}

struct Session {
    id: Zeroizing<String>,
    csrf: Zeroizing<String>,
    expires: Instant,
}

/// A session a request proved it holds: its CSRF token, for the page and the check of
/// state-changing requests.
#[derive(Clone)]
pub struct Authenticated {
    csrf: Zeroizing<String>,
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticated(..)")
    }
}

impl Authenticated {
    /// The session's CSRF token (to embed in the page it serves).
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// The live sessions.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<Vec<Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions(..)")
    }
}

impl Sessions {
    /// Starts a session; returns its id (the cookie's value).
    pub fn create(&self, now: Instant) -> Zeroizing<String> {
        let id = random_hex();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|s| s.expires > now);
        if live.len() >= MAX_SESSIONS {
            live.sort_by_key(|s| s.expires);
            live.remove(0);
        }
        live.push(Session {
            id: id.clone(),
            csrf: random_hex(),
            expires: now + SESSION_LIFETIME,
        });
        id
    }

    /// The live session whose id is `id`. Every live id is compared (in constant time),
    /// whichever matches.
    pub fn find(&self, id: &str, now: Instant) -> Option<Authenticated> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|s| s.expires > now);
        let mut found = None;
        for s in live.iter() {
            if bool::from(s.id.as_bytes().ct_eq(id.as_bytes())) {
                found = Some(Authenticated {
                    csrf: s.csrf.clone(),
                });
            }
        }
        found
    }

    /// Ends the session whose id is `id` (if any).
    pub fn end(&self, id: &str) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|s| !bool::from(s.id.as_bytes().ct_eq(id.as_bytes())));
    }
}

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
