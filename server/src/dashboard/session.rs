//! The dashboard's login: the token, the session table and the limit on
//! wrong tokens.
//!
//! - **The token** is kept as its SHA-256 digest; a candidate is hashed
//!   and the two digests compared with `subtle`'s constant-time equality,
//!   so neither the token's content nor its length shows in the timing.
//!   It only ever arrives in a POST body, never in a URL, and is never
//!   logged ([`DashboardToken`]'s `Debug` prints `***`).
//! - **Sessions** are 256-bit random ids (from `/dev/urandom`) held in a
//!   table of at most [`MAX_SESSIONS`] entries, each expiring
//!   [`SESSION_TTL`] after login; a login into a full table evicts the
//!   session closest to expiry. The id travels only in an `HttpOnly`,
//!   `SameSite=Strict` cookie scoped to `/dashboard`. The table is looked
//!   up through a hash map keyed by std's per-process random SipHash, so
//!   a lookup's timing tells nothing usable about other ids.
//! - **Wrong tokens** are counted (`realtime_dashboard_login_failures`)
//!   and logged with the peer's address; past [`MAX_FAILURES`] within
//!   [`FAILURE_WINDOW`] every login is answered 429 without looking at
//!   the token until the window ends, which caps guessing at a few tries
//!   a minute whatever the number of clients.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Most sessions at once.
pub const MAX_SESSIONS: usize = 32;
/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Wrong tokens allowed within [`FAILURE_WINDOW`] before logins are
/// refused with 429.
pub const MAX_FAILURES: u32 = 10;
/// The window [`MAX_FAILURES`] counts in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// The session cookie's name.
pub const COOKIE: &str = "realtime_dashboard";

/// The dashboard's login token (`--dashboard-token`); its `Debug` does not
/// show it.
#[derive(Clone, PartialEq, Eq)]
pub struct DashboardToken(String);

impl DashboardToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DashboardToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DashboardToken(***)")
    }
}

/// The answer to a login attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Login {
    /// Right token: the new session's id.
    Session(String),
    /// Wrong token.
    Refused,
    /// Too many wrong tokens lately; not checked.
    Limited,
    /// No randomness for a session id.
    Unavailable,
}

#[derive(Debug)]
struct Failures {
    since: Instant,
    count: u32,
}

/// Token, sessions and failure counter; see the module docs.
#[derive(Debug)]
pub(crate) struct Sessions {
    digest: [u8; 32],
    table: Mutex<HashMap<String, Instant>>,
    failures: Mutex<Failures>,
    failed: Counter,
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

/// 32 random bytes as hex, from the OS.
fn random_id() -> Option<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .ok()?;
    Some(hex::encode(bytes))
}

impl Sessions {
    /// Sessions for `token`, counting wrong tokens into `failed`.
    pub(crate) fn new(token: &DashboardToken, failed: Counter) -> Self {
        Self {
            digest: digest(token.expose().as_bytes()),
            table: Mutex::new(HashMap::new()),
            failures: Mutex::new(Failures {
                since: Instant::now(),
                count: 0,
            }),
            failed,
        }
    }

    /// Checks `candidate` at `now`; see [`Login`].
    pub(crate) fn login(&self, candidate: &[u8], now: Instant) -> Login {
        {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if now.saturating_duration_since(f.since) >= FAILURE_WINDOW {
                f.since = now;
                f.count = 0;
            }
            if f.count >= MAX_FAILURES {
                return Login::Limited;
            }
            if !bool::from(digest(candidate).ct_eq(&self.digest)) {
                f.count += 1;
                self.failed.inc();
                return Login::Refused;
            }
        }
        let Some(id) = random_id() else {
            return Login::Unavailable;
        };
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.retain(|_, expires| *expires > now);
        if table.len() >= MAX_SESSIONS {
            if let Some(oldest) = table
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(k, _)| k.clone())
            {
                table.remove(&oldest);
            }
        }
        table.insert(id.clone(), now + SESSION_TTL);
        Login::Session(id)
    }

    /// Whether the `Cookie` header carries a live session.
    pub(crate) fn valid(&self, cookie_header: Option<&str>, now: Instant) -> bool {
        let Some(id) = session_id(cookie_header) else {
            return false;
        };
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.get(id).is_some_and(|expires| *expires > now)
    }

    /// Ends the session the `Cookie` header carries; whether any is left.
    pub(crate) fn logout(&self, cookie_header: Option<&str>, now: Instant) -> bool {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = session_id(cookie_header) {
            table.remove(id);
        }
        table.retain(|_, expires| *expires > now);
        !table.is_empty()
    }
}

/// The session id in a `Cookie` header.
fn session_id(header: Option<&str>) -> Option<&str> {
    header?
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value for session `id`.
pub(crate) fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(&DashboardToken::new("right-token"), Counter::default())
    }

    fn cookie(id: &str) -> String {
        format!("other=1; {COOKIE}={id}")
    }

    #[test]
    fn the_right_token_opens_a_session_that_expires() {
        let s = sessions();
        let now = Instant::now();
        let Login::Session(id) = s.login(b"right-token", now) else {
            panic!("refused")
        };
        assert_eq!(id.len(), 64);
        assert!(s.valid(Some(&cookie(&id)), now));
        assert!(!s.valid(Some(&cookie(&id)), now + SESSION_TTL));
        assert!(!s.valid(Some(&cookie("forged")), now));
        assert!(!s.valid(None, now));
    }

    #[test]
    fn wrong_tokens_are_counted_then_limited_until_the_window_ends() {
        let s = sessions();
        let now = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert_eq!(s.login(b"right-token-", now), Login::Refused);
        }
        assert_eq!(s.failed.get(), u64::from(MAX_FAILURES));
        // Even the right token waits for the window to end.
        assert_eq!(s.login(b"right-token", now), Login::Limited);
        assert!(matches!(
            s.login(b"right-token", now + FAILURE_WINDOW),
            Login::Session(_)
        ));
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_oldest_session() {
        let s = sessions();
        let t0 = Instant::now();
        let Login::Session(first) = s.login(b"right-token", t0) else {
            panic!()
        };
        for i in 1..=MAX_SESSIONS as u64 {
            assert!(matches!(
                s.login(b"right-token", t0 + Duration::from_secs(i)),
                Login::Session(_)
            ));
        }
        let now = t0 + Duration::from_secs(100);
        assert!(!s.valid(Some(&cookie(&first)), now));
        assert_eq!(s.table.lock().unwrap().len(), MAX_SESSIONS, "bounded table");
    }

    #[test]
    fn logout_ends_the_session_and_says_whether_any_is_left() {
        let s = sessions();
        let now = Instant::now();
        let Login::Session(id) = s.login(b"right-token", now) else {
            panic!()
        };
        assert!(!s.logout(Some(&cookie(&id)), now));
        assert!(!s.valid(Some(&cookie(&id)), now));
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        assert_eq!(
            format!("{:?}", DashboardToken::new("right-token")),
            "DashboardToken(***)"
        );
    }
}
