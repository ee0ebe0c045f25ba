//! Expiries between the monotonic clock (what Kademlia uses) and the wall clock (what the
//! rows store, so an expiry means the same after a restart).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Expiries further away than this are pulled in to it at load (no record lives that
/// long; a corrupt far-future expiry must not overflow [`Instant`]).
pub(super) const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// One reading of both clocks, to convert expiries between them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    pub(super) mono: Instant,
    pub(super) unix_ms: u64,
}

impl Clock {
    pub(super) fn now() -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, saturating_ms);
        Self {
            mono: Instant::now(),
            unix_ms,
        }
    }

    /// The wall-clock time (unix milliseconds) of the monotonic `at`.
    pub(super) fn unix_ms(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.mono) {
            Some(ahead) => self.unix_ms.saturating_add(saturating_ms(ahead)),
            None => self
                .unix_ms
                .saturating_sub(saturating_ms(self.mono.duration_since(at))),
        }
    }

    /// The monotonic time of the wall-clock `unix_ms`, `None` if it has passed
    /// (`Record::is_expired` is `now >= expires`).
    pub(super) fn instant(&self, unix_ms: u64) -> Option<Instant> {
        let ahead = unix_ms.checked_sub(self.unix_ms).filter(|&ms| ms > 0)?;
        self.mono
            .checked_add(Duration::from_millis(ahead).min(MAX_TTL))
    }
}

fn saturating_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
