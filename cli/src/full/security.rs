//! The algorithm policy: `config.toml`'s `[security]` section ([`SecurityConfig`]) with
//! its environment overrides, checked once at start ([`init`]) and consulted by every
//! path that wraps a data key (the node), creates a password slot or backup
//! ([`check_kdf`]) or unlocks the keystore ([`check_unlock`]), and by `node run`'s API
//! bind. Every violation is one line and a non-zero exit.

use std::path::Path;
use std::sync::RwLock;

use anyhow::Context as _;
use datamesh_core::RecipientPolicy;
use datamesh_keys::{KdfAlgorithm, KdfParams, Keystore, SlotKind};

use crate::config::SecurityConfig;

/// The policy in force for this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Security {
    /// The fips profile: P-256 recipients only, PBKDF2 password slots only.
    pub(crate) fips: bool,
    /// Which recipient kinds envelopes may wrap to.
    pub(crate) recipients: RecipientPolicy,
    /// The password KDF of new slots and backups.
    pub(crate) kdf: KdfAlgorithm,
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
            fips: false,
            recipients: RecipientPolicy::default(),
            kdf: KdfAlgorithm::Argon2id,
            kdf_min_memory_kib: 0,
            kdf_min_iterations: 0,
            allow_remote_api: true,
        }
    }
}

static CURRENT: RwLock<Option<Security>> = RwLock::new(None);

/// Loads the policy of `home` (its `config.toml` if there is one, else the defaults)
/// with the environment's overrides, and makes it this process's policy (again, for
/// `init`, which writes the config after the start read it).
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
    *CURRENT.write().unwrap_or_else(|p| p.into_inner()) = Some(security);
    Ok(security)
}

/// The policy in force ([`init`]'s, or the defaults before it ran).
pub(crate) fn current() -> Security {
    CURRENT
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or_default()
}

/// The `[security]` section of a new home under `profile` (`init --security-profile`).
///
/// # Errors
/// A profile other than `standard` or `fips`.
pub(crate) fn profile_config(profile: &str) -> anyhow::Result<SecurityConfig> {
    let mut config = SecurityConfig::default();
    match profile {
        "standard" => {}
        "fips" => {
            config.profile = "fips".to_owned();
            config.recipients = RecipientPolicy::P256Only.as_str().to_owned();
            config.kdf = KdfAlgorithm::Pbkdf2Sha256.as_str().to_owned();
        }
        other => anyhow::bail!("security policy: profile {other:?} is not one of standard, fips"),
    }
    Ok(config)
}

/// The config's values with the environment's overrides (`env` looks a variable up).
fn resolve(
    config: &SecurityConfig,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Security> {
    let pick = |name: &str, value: String| env(name).unwrap_or(value);
    let profile = pick("DATAMESH_SECURITY_PROFILE", config.profile.clone());
    let fips = match profile.trim() {
        "standard" => false,
        "fips" => true,
        other => {
            anyhow::bail!("security policy: profile = {other:?} is not one of standard, fips")
        }
    };
    let recipients_text = pick("DATAMESH_SECURITY_RECIPIENTS", config.recipients.clone());
    let mut recipients: RecipientPolicy = recipients_text.parse().map_err(|_| {
        anyhow::anyhow!(
            "security policy: recipients = {recipients_text:?} is not one of classical, hybrid, pq-required, p256-only"
        )
    })?;
    let kdf_text = pick("DATAMESH_SECURITY_KDF", config.kdf.clone());
    let mut kdf: KdfAlgorithm = kdf_text.parse().map_err(|()| {
        anyhow::anyhow!("security policy: kdf = {kdf_text:?} is not one of argon2id, pbkdf2-sha256")
    })?;
    if fips {
        // The profile decides both; a value left at the standard default yields to it,
        // another explicit choice contradicts it.
        recipients = match recipients {
            RecipientPolicy::Hybrid | RecipientPolicy::P256Only => RecipientPolicy::P256Only,
            other => anyhow::bail!(
                "security policy: profile = \"fips\" contradicts recipients = \"{other}\" (it allows only p256-only)"
            ),
        };
        kdf = KdfAlgorithm::Pbkdf2Sha256;
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
        fips,
        recipients,
        kdf,
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
    /// The parameters of new password slots and backups when no `--kdf-*` flag is given:
    /// the policy's KDF at its defaults.
    pub(crate) fn default_kdf(&self) -> KdfParams {
        self.kdf.default_params()
    }

    /// Refuses password-KDF parameters the policy does not allow: an Argon2id slot under
    /// the fips profile, Argon2id parameters below the floor. (PBKDF2's floor, OWASP's
    /// 600,000 iterations, is enforced by every reader in `datamesh-keys`.)
    ///
    /// # Errors
    /// One line naming the parameter, its value and the floor.
    pub(crate) fn check_kdf(&self, params: &KdfParams, what: &str) -> anyhow::Result<()> {
        if self.fips && params.algorithm() != KdfAlgorithm::Pbkdf2Sha256 {
            anyhow::bail!(
                "security policy (profile fips) refuses {what}: {} is not an approved password KDF (pbkdf2-sha256 only)",
                params.algorithm()
            );
        }
        if params.algorithm() != KdfAlgorithm::Argon2id {
            return Ok(());
        }
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
            SlotKind::Password(params) | SlotKind::Composite(params) if s.id == slot => {
                Some(params)
            }
            _ => None,
        });
        let way_out = if self.fips {
            "replace the slot under the old policy (`DATAMESH_SECURITY_PROFILE=standard DATAMESH_SECURITY_KDF=pbkdf2-sha256 datamesh keys passwd`)"
        } else {
            "raise the slot's parameters under the old policy (`datamesh keys passwd --kdf-memory-kib ...`)"
        };
        match params {
            Some(params) => self
                .check_kdf(&params, &format!("unlocking with slot {slot}"))
                .context(way_out),
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
    fn the_fips_profile_fixes_recipients_and_kdf() -> TestResult {
        // From the environment, over a standard config: the profile decides both.
        let config = SecurityConfig::default();
        let fips = resolve(&config, env(&[("DATAMESH_SECURITY_PROFILE", "fips")]))?;
        assert!(fips.fips);
        assert_eq!(fips.recipients, RecipientPolicy::P256Only);
        assert_eq!(fips.kdf, KdfAlgorithm::Pbkdf2Sha256);
        assert_eq!(fips.default_kdf(), KdfParams::PBKDF2_DEFAULT);
        // The config `init --security-profile fips` writes says the same.
        assert_eq!(resolve(&profile_config("fips")?, env(&[]))?, fips);
        assert_eq!(
            resolve(&profile_config("standard")?, env(&[]))?,
            Security::default()
        );
        assert!(profile_config("nist").is_err());
        // Argon2id is refused when made and when unlocking; PBKDF2 passes.
        let err = fips
            .check_kdf(&KdfParams::DEFAULT, "the new slot")
            .err()
            .ok_or("argon2id accepted under fips")?
            .to_string();
        assert!(
            err.contains("profile fips") && err.contains("argon2id") && !err.contains('\n'),
            "{err}"
        );
        assert!(fips.check_kdf(&KdfParams::PBKDF2_DEFAULT, "x").is_ok());
        // Argon2id floors do not apply to PBKDF2 (its floor is the reader's).
        let floors = resolve(
            &config,
            env(&[("DATAMESH_SECURITY_KDF_MIN_MEMORY_KIB", "65536")]),
        )?;
        assert!(floors.check_kdf(&KdfParams::PBKDF2_DEFAULT, "x").is_ok());
        // The standard profile may choose PBKDF2 for new slots and still opens Argon2id.
        let chosen = resolve(&config, env(&[("DATAMESH_SECURITY_KDF", "pbkdf2-sha256")]))?;
        assert_eq!(chosen.default_kdf(), KdfParams::PBKDF2_DEFAULT);
        assert!(chosen.check_kdf(&KdfParams::DEFAULT, "x").is_ok());
        // An explicit contradiction is refused in one line.
        let err = resolve(
            &config,
            env(&[
                ("DATAMESH_SECURITY_PROFILE", "fips"),
                ("DATAMESH_SECURITY_RECIPIENTS", "classical"),
            ]),
        )
        .err()
        .map(|e| format!("{e:#}"))
        .ok_or("contradiction accepted")?;
        assert!(err.contains("contradicts") && !err.contains('\n'), "{err}");
        Ok(())
    }

    #[test]
    fn invalid_values_are_one_line_errors() {
        let config = SecurityConfig::default();
        for bad in [
            &[("DATAMESH_SECURITY_RECIPIENTS", "quantum")][..],
            &[("DATAMESH_SECURITY_KDF", "scrypt")],
            &[("DATAMESH_SECURITY_PROFILE", "nist")],
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
