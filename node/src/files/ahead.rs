//! Key agreements made ahead of puts.
//!
//! Every put wraps its data key to the owner's recipient. The costly part of that wrap
//! does not need the key: the ECIES multiplications and ML-KEM's encapsulation, about
//! 0.2 ms of a hybrid wrap on the benchmark machine, against a few microseconds for the
//! AES-GCM seal that follows. A put used to make it after encoding, before its first
//! request left. A thread of its own, at the lowest CPU priority, now keeps [`READY`]
//! of them made for the recipient of the latest put; a put takes one, and makes its own
//! only when none is ready (the first put, a burst, a machine with no core to spare).
//!
//! What is kept: [`Encapsulation`]s, each a fresh ephemeral key agreement (and ML-KEM
//! ciphertext) with the key it derived, zeroized on drop, used for one wrap. They are
//! made from the recipient's public key alone: no secret key of the node is read or held
//! here. A put for another recipient (a rotated key, another policy) drops the ones held
//! and has more made for the new one. The thread starts with the first put, and ends
//! when the engine is dropped.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use datamesh_core::{Encapsulation, KeyId, Recipient};
use tracing::debug;

/// Agreements kept ready: a few puts at once. A hybrid one is about 1.2 KB.
pub(crate) const READY: usize = 4;

/// Nice value of the thread that makes them: the lowest priority, so it runs on a core
/// that would otherwise idle.
const NICE: i32 = 19;

/// The agreements kept ready, and the thread that makes them.
#[derive(Debug, Default)]
pub(crate) struct Ahead {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when one is taken, the recipient changes, or the engine is dropped.
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// The recipient the latest put asked for, with its id: whom those ready are for.
    recipient: Option<(Recipient, KeyId)>,
    ready: Vec<Encapsulation>,
    /// The thread was started.
    started: bool,
    /// The engine is gone: the thread ends.
    closed: bool,
}

impl State {
    fn is_for(&self, id: KeyId) -> bool {
        self.recipient.as_ref().map(|(_, held)| *held) == Some(id)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Ahead {
    /// An agreement made ahead for `recipient`, if one is ready. Either way more are made
    /// for it in the background, up to [`READY`].
    pub(crate) fn take(&self, recipient: &Recipient) -> Option<Encapsulation> {
        let mut state = self.shared.lock();
        if state.recipient.as_ref().map(|(held, _)| held) != Some(recipient) {
            state.recipient = Some((recipient.clone(), recipient.key_id()));
            state.ready.clear();
        }
        let taken = state.ready.pop();
        if !state.started && !state.closed {
            state.started = true;
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name("datamesh-ahead".into())
                .spawn(move || make(&shared));
            // Without the thread every put makes its own, as before it.
            if let Err(e) = spawned {
                debug!("no thread for key agreements made ahead: {e}");
            }
        }
        drop(state);
        self.shared.wake.notify_one();
        taken
    }

    /// How many are ready now.
    #[cfg(test)]
    fn ready(&self) -> usize {
        self.shared.lock().ready.len()
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.ready.clear();
        drop(state);
        self.shared.wake.notify_all();
    }
}

/// The thread: makes agreements for the recipient asked for until [`READY`] are held,
/// then waits; ends once the engine is dropped.
fn make(shared: &Shared) {
    // On Linux the nice value is the calling thread's own (setpriority(2), NOTES).
    if let Err(e) = rustix::process::setpriority_process(None, NICE) {
        debug!("key agreements made ahead run at normal priority: {e}");
    }
    let mut state = shared.lock();
    loop {
        if state.closed {
            return;
        }
        let wanted = state
            .recipient
            .as_ref()
            .map(|(recipient, _)| recipient.clone())
            .filter(|_| state.ready.len() < READY);
        let Some(recipient) = wanted else {
            state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        drop(state);
        let made = recipient.encapsulate();
        state = shared.lock();
        match made {
            // Unless the recipient changed meanwhile (then it is dropped, zeroized).
            Some(made)
                if !state.closed && state.is_for(made.recipient()) && state.ready.len() < READY =>
            {
                state.ready.push(made);
            }
            Some(_) => {}
            // Never for a key that parsed; puts make their own.
            None => state.recipient = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datamesh_core::ecies::SecretKey;
    use datamesh_core::{DataKey, FileSecret, HybridSecretKey};
    use std::time::{Duration, Instant};

    /// Waits (10 s at most) until `ahead` holds `n` ready.
    fn until_ready(ahead: &Ahead, n: usize) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if ahead.ready() == n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn agreements_are_made_for_the_latest_recipient_and_open_with_its_key()
    -> Result<(), Box<dyn std::error::Error>> {
        let ahead = Ahead::default();
        let hybrid = FileSecret::Hybrid(HybridSecretKey::generate());
        let classical = FileSecret::Classical(SecretKey::generate());
        // Nothing is made before a put asks.
        assert_eq!(ahead.ready(), 0);
        assert!(ahead.take(&hybrid.recipient()).is_none());
        assert!(until_ready(&ahead, READY), "never filled");
        let dek = DataKey::generate();
        let taken = ahead.take(&hybrid.recipient()).ok_or("none ready")?;
        assert_eq!(taken.recipient(), hybrid.recipient().key_id());
        let authority = datamesh_core::AuthorityKey::derive(
            &datamesh_core::AuthorityRoot::from_bytes(&[3; 32]),
            &datamesh_core::AuthoritySalt::random(),
        )?;
        let file = datamesh_core::FileId::from_bytes([4; 32]);
        let envelope = datamesh_core::KeyEnvelope::seal_to_with(
            file,
            1,
            &dek,
            &[hybrid.recipient()],
            &authority,
            vec![taken],
        )?;
        assert_eq!(envelope.open([&hybrid])?.to_bytes(), dek.to_bytes());
        assert!(until_ready(&ahead, READY), "not refilled");
        // Another recipient: those held are dropped, and the new one's are made.
        assert!(ahead.take(&classical.recipient()).is_none());
        assert!(until_ready(&ahead, READY), "not made for the new recipient");
        let taken = ahead.take(&classical.recipient()).ok_or("none ready")?;
        assert_eq!(taken.recipient(), classical.recipient().key_id());
        Ok(())
    }

    #[test]
    fn the_thread_ends_with_the_engine() -> Result<(), Box<dyn std::error::Error>> {
        let ahead = Ahead::default();
        let shared = Arc::clone(&ahead.shared);
        let recipient = FileSecret::Classical(SecretKey::generate()).recipient();
        let _ = ahead.take(&recipient);
        drop(ahead);
        // The thread holds the other reference to the shared state until it ends.
        let start = Instant::now();
        while Arc::strong_count(&shared) > 1 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "thread still running"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            shared.lock().ready.len(),
            0,
            "agreements kept after the drop"
        );
        Ok(())
    }
}
