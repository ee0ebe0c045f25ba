//! The algorithm policy: `config.toml`'s `[security]` section ([`SecurityConfig`]) with
//! its environment overrides, checked once at start ([`init`]) and consulted by every
//! path that wraps a data key (the node), creates a password slot or backup
//! ([`check_kdf`]) or unlocks the keystore ([`check_unlock`]), and by `node run`'s API
//! bind. Every violation is one line and a non-zero exit.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context as _;
use datamesh_core::RecipientPolicy;
use datamesh_keys::{KdfParams, Keystore, SlotKind};

use crate::config::SecurityConfig;

/// The policy in force for this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Security {
    /// Which recipient kinds envelopes may wrap to.
    pub(crate) recipients: RecipientPolicy,
    /// Least Argon2id memory (KiB) of a password slot; 0: none.
    pub(crate) kdf_min_memory_kib: u32,
    /// Least Argon2id passes; 0: none.
    pub(crate) kdf_min_iterations: u32,
    /// Whether a non-loopback API bind may be allowed at all.
    pub(crate) allow_remote_api: bool,
}

impl Default for Security {
    fn default() -> Self {
        // The defaults of `SecurityConfig`, which always parse.
        Self {
            recipients: RecipientPolicy::default(),
            kdf_min_memory_kib: 0,
            kdf_min_iterations: 0,
            allow_remote_api: true,
        }
    }
}

static CURRENT: OnceLock<Security> = OnceLock::new();

/// Loads the policy of `home` (its `config.toml` if there is one, else the defaults)
/// with the environment's overrides, and makes it this process's policy.
///
/// # Errors
/// An unreadable or invalid config, or an invalid value (config or environment).
pub(crate) fn init(home: &Path) -> anyhow::Result<Security> {
    let path = crate::home::config(home);
    let config = if path.exists() {
        crate::config::Config::load(&path)?.security
    } else {
        SecurityConfig::default()
    };
    let security = resolve(&config, |name| std::env::var(name).ok())?;
    Ok(*CURRENT.get_or_init(|| security))
}

/// The policy in force ([`init`]'s, or the defaults before it ran).
pub(crate) fn current() -> Security {
    CURRENT.get().copied().unwrap_or_default()
}

/// The config's values with the environment's overrides (`env` looks a variable up).
fn resolve(
    config: &SecurityConfig,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Security> {
    let pick = |name: &str, value: String| env(name).unwrap_or(value);
    let recipients_text = pick("DATAMESH_SECURITY_RECIPIENTS", config.recipients.clone());
    let recipients: RecipientPolicy = recipients_text.parse().map_err(|_| {
        anyhow::anyhow!(
            "security policy: recipients = {recipients_text:?} is not one of classical, hybrid, pq-required"
        )
    })?;
    let kdf = pick("DATAMESH_SECURITY_KDF", config.kdf.clone());
    if kdf.trim() != "argon2id" {
        anyhow::bail!(
            "security policy: kdf = {kdf:?} is not available in this build (only argon2id)"
        );
    }
    let number = |name: &str, value: u32| -> anyhow::Result<u32> {
        match env(name) {
            Some(text) => text
                .trim()
                .parse()
                .with_context(|| format!("security policy: {name}={text:?} is not a whole number")),
            None => Ok(value),
        }
    };
    let allow_remote_api = match env("DATAMESH_SECURITY_ALLOW_REMOTE_API") {
        Some(text) => match text.trim() {
            "true" | "1" => true,
            "false" | "0" => false,
            other => anyhow::bail!(
                "security policy: DATAMESH_SECURITY_ALLOW_REMOTE_API={other:?} is not true or false"
            ),
        },
        None => config.allow_remote_api,
    };
    Ok(Security {
        recipients,
        kdf_min_memory_kib: number(
            "DATAMESH_SECURITY_KDF_MIN_MEMORY_KIB",
            config.kdf_min_memory_kib,
        )?,
        kdf_min_iterations: number(
            "DATAMESH_SECURITY_KDF_MIN_ITERATIONS",
            config.kdf_min_iterations,
        )?,
        allow_remote_api,
    })
}

impl Security {
    /// Refuses password-KDF parameters below the floor.
    ///
    /// # Errors
    /// One line naming the parameter, its value and the floor.
    pub(crate) fn check_kdf(&self, params: &KdfParams, what: &str) -> anyhow::Result<()> {
        if params.memory_kib() < self.kdf_min_memory_kib {
            anyhow::bail!(
                "security policy refuses {what}: Argon2id memory {} KiB is below kdf_min_memory_kib = {}",
                params.memory_kib(),
                self.kdf_min_memory_kib
            );
        }
        if params.iterations() < self.kdf_min_iterations {
            anyhow::bail!(
                "security policy refuses {what}: Argon2id {} passes is below kdf_min_iterations = {}",
                params.iterations(),
                self.kdf_min_iterations
            );
        }
        Ok(())
    }

    /// Refuses a keystore unlocked through a password slot below the floor.
    ///
    /// # Errors
    /// As [`Security::check_kdf`], with the way out in the message.
    pub(crate) fn check_unlock(&self, keystore: &Keystore) -> anyhow::Result<()> {
        let slot = keystore.unlocked_slot();
        let params = keystore.slots().into_iter().find_map(|s| match s.kind {
            SlotKind::Password(params) if s.id == slot => Some(params),
            _ => None,
        });
        match params {
            Some(params) => self
                .check_kdf(&params, &format!("unlocking with slot {slot}"))
                .context("raise the slot's parameters under the old policy (`datamesh keys passwd --kdf-memory-kib ...`)"),
            None => Ok(()),
        }
    }

    /// Refuses a non-loopback API bind the policy forbids.
    ///
    /// # Errors
    /// One line.
    pub(crate) fn check_api_bind(&self, addr: std::net::SocketAddr) -> anyhow::Result<()> {
        if addr.ip().is_loopback() || self.allow_remote_api {
            return Ok(());
        }
        anyhow::bail!(
            "security policy refuses the API address {addr}: allow_remote_api = false permits only loopback addresses"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_and_environment_overrides() -> TestResult {
        let config = SecurityConfig::default();
        assert_eq!(resolve(&config, env(&[]))?, Security::default());
        let strict = resolve(
            &config,
            env(&[
                ("DATAMESH_SECURITY_RECIPIENTS", "pq-required"),
                ("DATAMESH_SECURITY_KDF_MIN_MEMORY_KIB", "65536"),
                ("DATAMESH_SECURITY_KDF_MIN_ITERATIONS", "3"),
                ("DATAMESH_SECURITY_ALLOW_REMOTE_API", "false"),
            ]),
        )?;
        assert_eq!(strict.recipients, RecipientPolicy::PqRequired);
        assert_eq!(
            (strict.kdf_min_memory_kib, strict.kdf_min_iterations),
            (65536, 3)
        );
        assert!(!strict.allow_remote_api);
        let weak = KdfParams::new(8, 1, 1)?;
        let err = strict
            .check_kdf(&weak, "the new slot")
            .err()
            .ok_or("accepted")?;
        assert!(!err.to_string().contains('\n'));
        assert!(
            err.to_string().contains("below kdf_min_memory_kib = 65536"),
            "{err}"
        );
        assert!(strict.check_kdf(&KdfParams::DEFAULT, "x").is_ok());
        assert!(strict.check_api_bind("0.0.0.0:80".parse()?).is_err());
        assert!(strict.check_api_bind("127.0.0.1:80".parse()?).is_ok());
        Ok(())
    }

    #[test]
    fn invalid_values_are_one_line_errors() {
        let config = SecurityConfig::default();
        for bad in [
            &[("DATAMESH_SECURITY_RECIPIENTS", "quantum")][..],
            &[("DATAMESH_SECURITY_KDF", "scrypt")],
            &[("DATAMESH_SECURITY_KDF_MIN_MEMORY_KIB", "lots")],
            &[("DATAMESH_SECURITY_ALLOW_REMOTE_API", "maybe")],
        ] {
            let err = resolve(&config, env(bad)).err().map(|e| format!("{e:#}"));
            assert!(
                matches!(&err, Some(m) if m.starts_with("security policy") && !m.contains('\n')),
                "{err:?}"
            );
        }
    }
}
