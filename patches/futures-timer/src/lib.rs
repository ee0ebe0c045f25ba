//! `futures-timer` 3.0's one type, [`Delay`], on tokio's timer.
//!
//! libp2p times every substream's negotiation, every request's answer and every idle
//! connection with a `futures_timer::Delay`. Upstream, each `Delay` made and each one
//! dropped wakes a helper thread that keeps all timers in a heap: about three thread
//! wake-ups per request a storage node serves and twelve per small put on the node that
//! places it (benches/PROFILE.md, session 24). Here a `Delay` is a tokio [`Sleep`]: it is
//! registered in the runtime's timer wheel when first polled and leaves it when dropped,
//! with no other thread woken, and it fires when the runtime's workers park.
//!
//! A `Delay` made on a thread of a tokio runtime belongs to that runtime's timer. One made
//! anywhere else belongs to a timer runtime of its own, started on first use on a thread
//! named `futures-timer`, as upstream's helper thread was.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::{Instant, Sleep};

/// A future that is ready once a duration has passed since it was made (or reset).
/// Like upstream's, not a high-resolution timer: tokio's wheel has millisecond steps.
pub struct Delay {
    sleep: Pin<Box<Sleep>>,
}

impl Delay {
    /// A timer that fires `dur` from now.
    pub fn new(dur: Duration) -> Delay {
        let deadline = deadline(dur);
        let sleep = match Handle::try_current() {
            Ok(_) => tokio::time::sleep_until(deadline),
            Err(_) => {
                let _entered = fallback().enter();
                tokio::time::sleep_until(deadline)
            }
        };
        Delay {
            sleep: Box::pin(sleep),
        }
    }

    /// Sets the timer to fire `dur` from now, whether it had fired or not.
    pub fn reset(&mut self, dur: Duration) {
        self.sleep.as_mut().reset(deadline(dur));
    }
}

impl Future for Delay {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.sleep.as_mut().poll(cx)
    }
}

impl fmt::Debug for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delay")
            .field("deadline", &self.sleep.deadline())
            .finish()
    }
}

/// `dur` from now; a duration past what an instant can hold is about thirty years, as
/// tokio's own `sleep` has it (upstream's `Delay::new` would panic).
fn deadline(dur: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(dur)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

/// The timer of `Delay`s made off every tokio runtime: a current-thread runtime with only
/// its timer enabled, driven for the life of the process by a thread of its own.
fn fallback() -> &'static Handle {
    static TIMER: OnceLock<Handle> = OnceLock::new();
    TIMER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build();
        #[expect(
            clippy::expect_used,
            reason = "Delay::new cannot fail; upstream panics too when its helper thread cannot start"
        )]
        let runtime = runtime.expect("the timer runtime of futures-timer could not be built");
        let handle = runtime.handle().clone();
        let started = std::thread::Builder::new()
            .name("futures-timer".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()));
        #[expect(
            clippy::expect_used,
            reason = "Delay::new cannot fail; upstream panics too when its helper thread cannot start"
        )]
        started.expect("the timer thread of futures-timer could not be started");
        handle
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant as StdInstant;

    #[tokio::test]
    async fn a_delay_fires_after_its_duration_on_the_runtime() {
        let started = StdInstant::now();
        Delay::new(Duration::from_millis(30)).await;
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test]
    async fn a_reset_delay_fires_again_after_the_new_duration() {
        let mut delay = Delay::new(Duration::from_millis(5));
        (&mut delay).await;
        let reset_at = StdInstant::now();
        delay.reset(Duration::from_millis(30));
        assert!(futures::poll!(&mut delay).is_pending());
        delay.await;
        assert!(reset_at.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_delay_made_off_any_runtime_fires_on_the_timer_thread() {
        let started = StdInstant::now();
        let delay = Delay::new(Duration::from_millis(30));
        futures::executor::block_on(delay);
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_delay_made_off_a_runtime_fires_inside_one() -> Result<(), std::io::Error> {
        let delay = Delay::new(Duration::from_millis(10));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(delay);
        Ok(())
    }

    #[test]
    fn a_duration_past_what_an_instant_holds_does_not_panic() {
        let delay = Delay::new(Duration::MAX);
        let mut delay = std::pin::pin!(delay);
        let waker = futures::task::noop_waker();
        assert!(
            delay
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
    }
}
