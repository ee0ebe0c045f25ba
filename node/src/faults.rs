//! Test-only fault hooks, off by default.
//!
//! They exist so the fault suite can break a node on purpose: flip bytes of a stored shard
//! (bit rot), make a node lie about shard bytes, and make it block given peers (a
//! partition stand-in: every testnet node shares 127.0.0.1, so the suite cannot cut the
//! network in the kernel). Nothing here is reachable unless the node was started with
//! [`TestFaults`] enabled, which the CLI does only when the environment says so exactly:
//!
//! | variable | value | effect |
//! |---|---|---|
//! | `DATAMESH_TEST_FAULTS` | `1` | enables `POST /v1/debug/corrupt-shard` and `POST /v1/debug/block-peers` (see [`crate::network::Network::set_blocked_peers`]), and is required by the next one |
//! | `DATAMESH_TEST_MISBEHAVE` | `wrong-bytes` | this node answers every fetch with altered bytes |
//! | `DATAMESH_TEST_MISBEHAVE` | `refuse-envelopes` | this node refuses every key envelope from a peer (a put then fails for want of envelope copies) |
//!
//! Any other value of either variable is an error at start, so a typo cannot leave a
//! fault half-enabled, and a node with faults enabled logs a loud warning.

/// Environment variable that enables test faults (must be exactly `1`).
pub const ENV_FAULTS: &str = "DATAMESH_TEST_FAULTS";
/// Environment variable that selects a misbehaviour (needs [`ENV_FAULTS`]).
pub const ENV_MISBEHAVE: &str = "DATAMESH_TEST_MISBEHAVE";

/// Which test faults a node runs with. Default: none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestFaults {
    debug_api: bool,
    wrong_bytes: bool,
    refuse_envelopes: bool,
}

/// The fault variables are set to something other than what enables a fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultsError {
    /// `DATAMESH_TEST_FAULTS` has another value than `1`.
    #[error("{ENV_FAULTS}={0:?}: the only accepted value is 1 (unset it for a normal node)")]
    BadFaults(String),
    /// `DATAMESH_TEST_MISBEHAVE` has an unknown value.
    #[error("{ENV_MISBEHAVE}={0:?}: the accepted values are wrong-bytes and refuse-envelopes")]
    BadMisbehave(String),
    /// A misbehaviour was asked for without enabling test faults.
    #[error(
        "{ENV_MISBEHAVE} is set but {ENV_FAULTS} is not 1: refusing to start a misbehaving node by accident"
    )]
    NotEnabled,
}

impl TestFaults {
    /// No faults (a normal node).
    pub fn none() -> Self {
        Self::default()
    }

    /// Enables the debug API (`POST /v1/debug/corrupt-shard`, `.../block-peers`).
    pub fn with_debug_api(mut self) -> Self {
        self.debug_api = true;
        self
    }

    /// Makes the node answer every fetch with altered bytes.
    pub fn with_wrong_bytes(mut self) -> Self {
        self.wrong_bytes = true;
        self
    }

    /// Makes the node refuse every key envelope from a peer.
    pub fn with_refuse_envelopes(mut self) -> Self {
        self.refuse_envelopes = true;
        self
    }

    /// Whether key envelopes from peers are refused.
    pub fn refuse_envelopes(&self) -> bool {
        self.refuse_envelopes
    }

    /// Whether the debug API is served.
    pub fn debug_api(&self) -> bool {
        self.debug_api
    }

    /// Whether fetches are answered with altered bytes.
    pub fn wrong_bytes(&self) -> bool {
        self.wrong_bytes
    }

    /// Whether any fault is enabled.
    pub fn any(&self) -> bool {
        self.debug_api || self.wrong_bytes || self.refuse_envelopes
    }

    /// Reads the faults from the two variables (see the module docs).
    ///
    /// # Errors
    /// [`FaultsError`] for any value that does not enable a fault exactly.
    pub fn from_env() -> Result<Self, FaultsError> {
        Self::from_values(
            std::env::var(ENV_FAULTS).ok().as_deref(),
            std::env::var(ENV_MISBEHAVE).ok().as_deref(),
        )
    }

    /// As [`TestFaults::from_env`], from given values.
    ///
    /// # Errors
    /// [`FaultsError`].
    pub fn from_values(faults: Option<&str>, misbehave: Option<&str>) -> Result<Self, FaultsError> {
        let mut out = Self::none();
        match faults {
            None => {}
            Some("1") => out.debug_api = true,
            Some(other) => return Err(FaultsError::BadFaults(other.to_string())),
        }
        match misbehave {
            None => {}
            Some(_) if !out.debug_api => return Err(FaultsError::NotEnabled),
            Some("wrong-bytes") => out.wrong_bytes = true,
            Some("refuse-envelopes") => out.refuse_envelopes = true,
            Some(other) => return Err(FaultsError::BadMisbehave(other.to_string())),
        }
        Ok(out)
    }

    /// The warning a node with faults enabled prints and logs.
    pub fn warning(&self) -> Option<String> {
        if !self.any() {
            return None;
        }
        let mut what = Vec::new();
        if self.debug_api {
            what.push("the debug API can corrupt stored shards and block peers");
        }
        if self.wrong_bytes {
            what.push("this node ANSWERS FETCHES WITH WRONG BYTES");
        }
        if self.refuse_envelopes {
            what.push("this node REFUSES EVERY KEY ENVELOPE");
        }
        Some(format!(
            "TEST FAULTS ENABLED ({ENV_FAULTS}): {}. Never run such a node with real data.",
            what.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_need_exact_values() {
        assert_eq!(TestFaults::from_values(None, None), Ok(TestFaults::none()));
        assert_eq!(
            TestFaults::from_values(Some("1"), None),
            Ok(TestFaults::none().with_debug_api())
        );
        assert_eq!(
            TestFaults::from_values(Some("1"), Some("wrong-bytes")),
            Ok(TestFaults::none().with_debug_api().with_wrong_bytes())
        );
        for bad in ["0", "true", "yes", "", " 1"] {
            assert!(matches!(
                TestFaults::from_values(Some(bad), None),
                Err(FaultsError::BadFaults(_))
            ));
        }
        assert_eq!(
            TestFaults::from_values(None, Some("wrong-bytes")),
            Err(FaultsError::NotEnabled)
        );
        assert!(matches!(
            TestFaults::from_values(Some("1"), Some("wrong_bytes")),
            Err(FaultsError::BadMisbehave(_))
        ));
        assert_eq!(
            TestFaults::from_values(Some("1"), Some("refuse-envelopes")),
            Ok(TestFaults::none().with_debug_api().with_refuse_envelopes())
        );
        assert!(
            TestFaults::none()
                .with_refuse_envelopes()
                .warning()
                .is_some_and(|w| w.contains("REFUSES EVERY KEY ENVELOPE"))
        );
        assert!(TestFaults::none().warning().is_none());
        assert!(
            TestFaults::none()
                .with_debug_api()
                .with_wrong_bytes()
                .warning()
                .is_some_and(|w| w.contains("WRONG BYTES"))
        );
    }
}
