//! `<home>/config.toml`, defined once: [`Config`] is what `node run` reads, and its
//! [`Config::to_toml`] is what `init` (and `keys restore`, `keys escrow recover`) write,
//! every key with a comment. A key missing from a file takes its default, so the config
//! files of older homes keep loading; an unknown key is an error.
//!
//! Defaults that belong to the node library (quota, self-check period and its cap) come
//! from `datamesh_node::node`; the listen and API addresses and the log level are the
//! command line's own.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use anyhow::Context as _;
use datamesh_node::check::DEFAULT_NETWORK_REPAIR_INTERVAL;
use datamesh_node::lease::DEFAULT_LEASE;
use datamesh_node::node::{DEFAULT_CHECK_INTERVAL, DEFAULT_STORAGE_QUOTA, MAX_CHECK_INTERVAL};
use serde::{Deserialize, Serialize};

/// libp2p listen address of a new home: loopback, any free port.
pub(crate) const DEFAULT_LISTEN: &str = "/ip4/127.0.0.1/tcp/0";
/// API address of a new home: loopback, any free port.
pub(crate) const DEFAULT_API: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
/// Log filter of a new home.
pub(crate) const DEFAULT_LOG_LEVEL: &str = "info";
/// The slot `node run` unlocks through: the first it can open without a prompt.
pub(crate) const DEFAULT_UNLOCK_SLOT: &str = "auto";

/// The node settings of a home.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    /// libp2p listen address.
    pub(crate) listen_address: String,
    /// The transports listened and dialled on: "tcp", "quic" or both.
    pub(crate) transports: Vec<String>,
    /// Address of the local HTTP API.
    pub(crate) api_address: SocketAddr,
    /// Whether `api_address` may be a non-loopback address (plain HTTP with a bearer
    /// token, reachable from other machines): refused unless true.
    pub(crate) api_allow_remote: bool,
    /// Peers (multiaddrs with /p2p/PEER_ID) to join at start.
    pub(crate) bootstrap: Vec<String>,
    /// Addresses at which other machines reach this node, advertised to peers.
    pub(crate) external_addresses: Vec<String>,
    /// Bytes of shards stored for others at most.
    pub(crate) storage_quota_bytes: u64,
    /// The tracing filter (unless `DATAMESH_LOG` is set).
    pub(crate) log_level: String,
    /// Seconds between self-checks of the catalog; 0 disables.
    pub(crate) check_interval: u64,
    /// Whether the self-check fetches and hashes every copy.
    pub(crate) check_verify: bool,
    /// Seconds a holder keeps a claim on a blob without the owner renewing it.
    pub(crate) lease_seconds: u64,
    /// Seconds between network repair rounds over the manifests this node holds; 0
    /// disables.
    pub(crate) network_repair_interval: u64,
    /// The keystore slot `node run` unlocks through: `auto`, an id, a kind or a label
    /// (see [`datamesh_keys::SlotChoice`]).
    pub(crate) unlock_slot: String,
    /// The algorithm policy (`[security]`), with environment overrides applied by
    /// `crate::security`.
    pub(crate) security: SecurityConfig,
}

/// The `[security]` section: what the node creates and accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SecurityConfig {
    /// `standard` or `fips` (P-256 recipients only, PBKDF2-HMAC-SHA256 password slots).
    pub(crate) profile: String,
    /// `classical`, `hybrid`, `pq-required` or `p256-only`.
    pub(crate) recipients: String,
    /// The password KDF of new slots: `argon2id` or `pbkdf2-sha256`.
    pub(crate) kdf: String,
    /// Password slots with less Argon2id memory (KiB) are refused, created or unlocked;
    /// 0: no floor (weak parameters are only warned about).
    pub(crate) kdf_min_memory_kib: u32,
    /// Password slots with fewer Argon2id passes are refused; 0: no floor.
    pub(crate) kdf_min_iterations: u32,
    /// Whether a non-loopback API bind may be allowed at all (by `api_allow_remote` or
    /// `--api-allow-remote`); false refuses it whatever they say.
    pub(crate) allow_remote_api: bool,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            profile: "standard".to_owned(),
            recipients: "hybrid".to_owned(),
            kdf: "argon2id".to_owned(),
            kdf_min_memory_kib: 0,
            kdf_min_iterations: 0,
            allow_remote_api: true,
        }
    }
}

/// Every key of [`SecurityConfig`], in the order written, with its comment.
const SECURITY_KEYS: [(&str, &str); 6] = [
    (
        "profile",
        "\"standard\", or \"fips\": new files wrap to the NIST P-256 key and only P-256\n\
         recipients are accepted, new password slots use PBKDF2-HMAC-SHA256 and\n\
         Argon2id slots are refused (docs/security.md: what stays outside; not a\n\
         certification). Overridden by DATAMESH_SECURITY_PROFILE.",
    ),
    (
        "recipients",
        "Who data keys are wrapped to: \"hybrid\" (default: new files to the hybrid\n\
         ML-KEM-768 + secp256k1 key; classical recipients still accepted when named),\n\
         \"pq-required\" (classical-only recipients refused), \"classical\" (secp256k1\n\
         only) or \"p256-only\" (the fips profile's). Overridden by\n\
         DATAMESH_SECURITY_RECIPIENTS.",
    ),
    (
        "kdf",
        "Password KDF of new keystore slots and backups: \"argon2id\" or\n\
         \"pbkdf2-sha256\" (600,000 iterations or more). Overridden by\n\
         DATAMESH_SECURITY_KDF.",
    ),
    (
        "kdf_min_memory_kib",
        "Floor of the password KDF's memory (KiB): weaker slots are refused when created\n\
         and when unlocked; 0: no floor. Overridden by DATAMESH_SECURITY_KDF_MIN_MEMORY_KIB.",
    ),
    (
        "kdf_min_iterations",
        "Floor of the password KDF's passes; 0: no floor. Overridden by\n\
         DATAMESH_SECURITY_KDF_MIN_ITERATIONS.",
    ),
    (
        "allow_remote_api",
        "false refuses a non-loopback api_address even with api_allow_remote or\n\
         --api-allow-remote. Overridden by DATAMESH_SECURITY_ALLOW_REMOTE_API.",
    ),
];

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_address: DEFAULT_LISTEN.to_owned(),
            transports: vec!["tcp".to_owned()],
            api_address: DEFAULT_API,
            api_allow_remote: false,
            bootstrap: Vec::new(),
            external_addresses: Vec::new(),
            storage_quota_bytes: DEFAULT_STORAGE_QUOTA,
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            check_interval: DEFAULT_CHECK_INTERVAL.as_secs(),
            check_verify: false,
            lease_seconds: DEFAULT_LEASE.as_secs(),
            network_repair_interval: DEFAULT_NETWORK_REPAIR_INTERVAL.as_secs(),
            unlock_slot: DEFAULT_UNLOCK_SLOT.to_owned(),
            security: SecurityConfig::default(),
        }
    }
}

/// The first lines of a written config.
const HEADER: &str = "# DataMesh node configuration, written by `datamesh init`.\n\
                      # The defaults need no editing for a node on this machine.\n";
/// The last lines of a written config.
const FOOTER: &str =
    "# The key rotation policy lives in the sealed keystore: `datamesh keys policy`.\n";

/// Every key of [`Config`], in the order written, with the comment above it (a unit test
/// checks that the list and the struct agree).
const KEYS: [(&str, &str); 13] = [
    (
        "listen_address",
        "libp2p listen address of the node (port 0: any free port); overridden by\n\
         `node run --listen` or DATAMESH_LISTEN.",
    ),
    (
        "transports",
        "Transports listened and dialled on, each at listen_address's host and port:\n\
         [\"tcp\"] (default), [\"quic\"] or [\"tcp\", \"quic\"]; overridden by\n\
         `node run --transport`.",
    ),
    (
        "api_address",
        "Local HTTP API (the CLI's way in), with the bearer token in ./api-token;\n\
         overridden by `node run --api` or DATAMESH_API.",
    ),
    (
        "api_allow_remote",
        "Allow an api_address other than loopback (127.0.0.1, ::1). The API is plain\n\
         HTTP: its token and your files would cross the network unencrypted. Off by\n\
         default; `node run --api-allow-remote` also allows it.",
    ),
    (
        "bootstrap",
        "Multiaddrs (with /p2p/PEER_ID) of nodes to join at start; `node run --bootstrap`\n\
         adds to them.",
    ),
    (
        "external_addresses",
        "Multiaddrs at which other machines reach this node (e.g. a router's forwarded\n\
         port), advertised to peers besides its non-loopback listen addresses (loopback\n\
         is advertised only by a node listening on nothing else); `node run --external`\n\
         adds to them.",
    ),
    (
        "storage_quota_bytes",
        "Bytes of shards this node stores for others at most; overridden by\n\
         `node run --quota` or DATAMESH_QUOTA.",
    ),
    (
        "log_level",
        "error, warn, info, debug or trace (DATAMESH_LOG, a tracing filter, wins).",
    ),
    (
        "check_interval",
        "Seconds between self-checks of this node's files (repairing those below full\n\
         health); 0 disables; at most a year.",
    ),
    (
        "check_verify",
        "Whether the self-check fetches and hashes every copy (finds bit rot and lying\n\
         holders) instead of asking the holders.",
    ),
    (
        "lease_seconds",
        "Seconds this node keeps what a peer stored here without that peer renewing it\n\
         (an owner's self-check renews its files); then it is deleted. Default 180 days.",
    ),
    (
        "network_repair_interval",
        "Seconds between rounds in which this node checks and repairs, for their owners,\n\
         the files whose manifest it holds (when it is the live manifest holder nearest\n\
         the file id and the owner has not renewed lately); 0 disables; at most a year.",
    ),
    (
        "unlock_slot",
        "The keystore slot `node run` unlocks through, unattended: \"auto\" (the first slot\n\
         it can open without a prompt, in `keys slot list` order), a slot id (\"2\"), a kind\n\
         (\"pkcs11\", \"tpm\", \"password+keyfile\", ...) or a label (\"label:NAME\"; a\n\
         label is sealed, so slots are tried in order until that one opens). Overridden by\n\
         `node run --unlock-slot` or DATAMESH_UNLOCK_SLOT.",
    ),
];

impl Config {
    /// The config of a new home that joins through `bootstrap`; the rest defaults.
    pub(crate) fn with_bootstrap(bootstrap: &[String]) -> Self {
        Self {
            bootstrap: bootstrap.to_vec(),
            ..Self::default()
        }
    }

    /// The text of `config.toml`: every key with its comment.
    ///
    /// # Errors
    ///
    /// A value that TOML cannot hold (none of today's).
    pub(crate) fn to_toml(&self) -> anyhow::Result<String> {
        let value = toml::Value::try_from(self).context("the config does not serialize")?;
        let table = value.as_table().context("the config is not a table")?;
        let mut text = String::from(HEADER);
        for (key, comment) in KEYS {
            let value = table
                .get(key)
                .with_context(|| format!("the config has no key {key}"))?;
            text.push('\n');
            for line in comment.lines() {
                text.push_str("# ");
                text.push_str(line);
                text.push('\n');
            }
            text.push_str(&format!("{key} = {value}\n"));
        }
        let security = table
            .get("security")
            .and_then(toml::Value::as_table)
            .context("the config has no [security] table")?;
        text.push_str("\n[security]\n");
        for (key, comment) in SECURITY_KEYS {
            let value = security
                .get(key)
                .with_context(|| format!("the config has no key security.{key}"))?;
            for line in comment.lines() {
                text.push_str("# ");
                text.push_str(line);
                text.push('\n');
            }
            text.push_str(&format!("{key} = {value}\n\n"));
        }
        text.push_str(FOOTER);
        Ok(text)
    }

    /// Refuses to serve the API on `addr` unless it is loopback or `allow_remote` (the
    /// config key or the flag) says so explicitly.
    ///
    /// # Errors
    ///
    /// `addr` is not a loopback address and remote binds are not allowed.
    pub(crate) fn check_api_address(addr: SocketAddr, allow_remote: bool) -> anyhow::Result<()> {
        if addr.ip().is_loopback() || allow_remote {
            return Ok(());
        }
        anyhow::bail!(
            "refusing to serve the API on {addr}: it is not a loopback address, and the API is plain \
             HTTP (its bearer token and your files would cross the network unencrypted); use \
             127.0.0.1, or allow it explicitly with `node run --api-allow-remote` or \
             api_allow_remote = true in config.toml"
        )
    }

    /// Reads and checks the config file at `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be read, is not valid TOML, has an unknown key or a value out of
    /// range.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read {} (create the home with `datamesh init`)",
                path.display()
            )
        })?;
        let config: Self = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid config", path.display()))?;
        let max = MAX_CHECK_INTERVAL.as_secs();
        if config.check_interval > max {
            anyhow::bail!(
                "{}: check_interval = {} is more than a year ({max} seconds); use 0 to disable the self-check",
                path.display(),
                config.check_interval
            );
        }
        if config.network_repair_interval > max {
            anyhow::bail!(
                "{}: network_repair_interval = {} is more than a year ({max} seconds); use 0 to disable it",
                path.display(),
                config.network_repair_interval
            );
        }
        if let Err(e) = datamesh_keys::SlotChoice::parse(&config.unlock_slot) {
            anyhow::bail!("{}: unlock_slot: {e}", path.display());
        }
        if config.lease_seconds == 0 {
            anyhow::bail!(
                "{}: lease_seconds = 0: a lease must last at least a second",
                path.display()
            );
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn every_key_is_written_with_a_comment() -> TestResult {
        let value = toml::Value::try_from(Config::default())?;
        let mut fields: Vec<&str> = value
            .as_table()
            .ok_or("not a table")?
            .keys()
            .map(String::as_str)
            .filter(|key| *key != "security")
            .collect();
        let mut written: Vec<&str> = KEYS.iter().map(|(key, _)| *key).collect();
        let security = toml::Value::try_from(SecurityConfig::default())?;
        let mut security_fields: Vec<&str> = security
            .as_table()
            .ok_or("not a table")?
            .keys()
            .map(String::as_str)
            .collect();
        let mut security_written: Vec<&str> = SECURITY_KEYS.iter().map(|(k, _)| *k).collect();
        security_fields.sort_unstable();
        security_written.sort_unstable();
        assert_eq!(security_fields, security_written);
        fields.sort_unstable();
        written.sort_unstable();
        assert_eq!(fields, written);
        assert!(KEYS.iter().all(|(_, comment)| !comment.is_empty()));
        Ok(())
    }

    #[test]
    fn written_config_reads_back() -> TestResult {
        for config in [
            Config::default(),
            Config::with_bootstrap(&[
                "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWA".to_owned(),
                "/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWB".to_owned(),
            ]),
        ] {
            let text = config.to_toml()?;
            assert_eq!(toml::from_str::<Config>(&text)?, config);
            assert!(text.starts_with(HEADER) && text.ends_with(FOOTER));
        }
        Ok(())
    }

    #[test]
    fn an_old_config_loads_with_defaults() -> TestResult {
        // What `init` wrote before check_interval and check_verify were written.
        let old = r#"
listen_address = "/ip4/127.0.0.1/tcp/0"
api_address = "127.0.0.1:0"
bootstrap = []
storage_quota_bytes = 10737418240
log_level = "info"
"#;
        assert_eq!(toml::from_str::<Config>(old)?, Config::default());
        assert_eq!(toml::from_str::<Config>("")?, Config::default());
        assert!(toml::from_str::<Config>("listen = 1").is_err());
        Ok(())
    }

    #[test]
    fn defaults_match_what_init_always_wrote() {
        let config = Config::default();
        assert_eq!(config.storage_quota_bytes, 10 << 30);
        assert_eq!(config.check_interval, 600);
        assert!(!config.check_verify);
    }

    #[test]
    fn a_remote_api_address_needs_the_explicit_option() -> TestResult {
        for (addr, allowed) in [
            ("127.0.0.1:0", true),
            ("[::1]:7070", true),
            ("0.0.0.0:7070", false),
            ("192.0.2.7:7070", false),
            ("[::]:0", false),
        ] {
            let addr: SocketAddr = addr.parse()?;
            let result = Config::check_api_address(addr, false);
            assert_eq!(result.is_ok(), allowed, "{addr}");
            if let Err(e) = result {
                assert!(e.to_string().contains("--api-allow-remote"), "{e}");
            }
            assert!(Config::check_api_address(addr, true).is_ok());
        }
        assert!(!Config::default().api_allow_remote);
        Ok(())
    }

    #[test]
    fn a_check_interval_over_a_year_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "check_interval = 31536001\n")?;
        let err = Config::load(&path).err().ok_or("loaded")?;
        assert!(format!("{err:#}").contains("more than a year"));
        std::fs::write(&path, "check_interval = 31536000\n")?;
        assert_eq!(Config::load(&path)?.check_interval, 31_536_000);
        Ok(())
    }
}
