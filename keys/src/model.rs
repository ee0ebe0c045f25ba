//! What the sealed body holds: entries, the rotation policy, slot labels, the audit anchor.
//!
//! The serde derives here define the body's postcard encoding (format version 1): never
//! reorder fields or enum variants; append new variants at the end and bump the format
//! version for new fields.

use core::fmt;
use std::collections::{BTreeMap, BTreeSet};

use datamesh_core::ecies::{PublicKey, SecretKey};
use datamesh_core::{
    AuthorityRoot, HybridPublicKey, HybridSecretKey, KeyId, P256PublicKey, P256SecretKey, Recipient,
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::ChangeError;
use crate::secret::Secret32;

/// Name of the node's libp2p identity (ed25519).
pub const NODE_IDENTITY: &str = "node-identity";
/// Name of the owner's file-encryption key (secp256k1, for ECIES).
pub const FILE_ENCRYPTION: &str = "file-encryption";
/// Name of the owner's hybrid file-encryption key (ML-KEM-768 + secp256k1): new files
/// are wrapped to it under the default `hybrid` recipient policy.
pub const FILE_ENCRYPTION_HYBRID: &str = "file-encryption-hybrid";
/// Name of the owner's NIST P-256 file-encryption key: new files are wrapped to it under
/// the fips profile (`p256-only` recipient policy). Made when a home first runs under it.
pub const FILE_ENCRYPTION_P256: &str = "file-encryption-p256";
/// Name of the owner's file-authority root: 32 random bytes from which each file's
/// envelope-signing key is derived (`datamesh_core::AuthorityKey`).
pub const FILE_AUTHORITY: &str = "file-authority";

/// The longest key name.
pub const MAX_NAME_LEN: usize = 64;
/// The longest revocation reason, in bytes.
pub const MAX_REASON_LEN: usize = 1024;
/// The longest slot label, in bytes.
pub const MAX_LABEL_LEN: usize = 128;

const SECONDS_PER_DAY: i64 = 86_400;

/// What a key is for; fixes its algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Purpose {
    /// The node's network identity: ed25519, turned into a libp2p keypair by the node.
    NodeIdentity,
    /// The owner's file-encryption key: secp256k1, used by ECIES to wrap data keys.
    FileEncryption,
    /// The owner's file-authority root: a 32-byte secret from which each file's
    /// envelope-signing key (secp256k1) is derived with HKDF-SHA256 and the file's salt.
    /// Its "public key" is a fingerprint that reveals neither the root nor any file's key.
    FileAuthority,
    /// The owner's hybrid file-encryption key: a 32-byte seed from which an ML-KEM-768 and
    /// a secp256k1 key are derived (`datamesh_core::HybridSecretKey`); data keys wrapped
    /// to it open only with both. Appended last: the body's encoding of older variants
    /// is unchanged.
    HybridFileEncryption,
    /// The owner's NIST P-256 file-encryption key (ECIES on P-256,
    /// `datamesh_core::P256SecretKey`), for the fips profile. Appended last.
    P256FileEncryption,
}

impl Purpose {
    /// `node-identity`, `file-encryption`, `file-authority`, `file-encryption-hybrid` or
    /// `file-encryption-p256`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NodeIdentity => "node-identity",
            Self::FileEncryption => "file-encryption",
            Self::FileAuthority => "file-authority",
            Self::HybridFileEncryption => "file-encryption-hybrid",
            Self::P256FileEncryption => "file-encryption-p256",
        }
    }

    /// `ed25519`, `secp256k1`, `hkdf-sha256+secp256k1`, `ml-kem-768+secp256k1` or `p256`.
    #[must_use]
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::NodeIdentity => "ed25519",
            Self::FileEncryption => "secp256k1",
            Self::FileAuthority => "hkdf-sha256+secp256k1",
            Self::HybridFileEncryption => "ml-kem-768+secp256k1",
            Self::P256FileEncryption => "p256",
        }
    }

    /// Whether the rotation policy rotates keys of this purpose. The node identity is
    /// rotated only on request: a new one changes the node's peer id, under which the
    /// network knows the shards this node holds. Nor is the file-authority root: every
    /// version must be kept for as long as a file signed under it may need a new envelope.
    #[must_use]
    pub fn follows_policy(&self) -> bool {
        self.is_file_encryption()
    }

    /// Whether keys of this purpose wrap data keys (classical, hybrid or P-256).
    #[must_use]
    pub fn is_file_encryption(&self) -> bool {
        matches!(
            self,
            Self::FileEncryption | Self::HybridFileEncryption | Self::P256FileEncryption
        )
    }

    /// A fresh random secret and its public key.
    pub(crate) fn generate(&self) -> (Secret32, Vec<u8>) {
        let secret = Secret32::random();
        // Both derivations accept any 32 bytes except, for secp256k1, zero and values not
        // below the group order (probability ~2^-128); retry in that case.
        match self.public_key(&secret) {
            Some(public) => (secret, public),
            None => self.generate(),
        }
    }

    /// The public key of `secret` (ed25519: 32 bytes; secp256k1: compressed SEC1, 33
    /// bytes; file authority: the root's 32-byte fingerprint), or `None` if the bytes are
    /// not a valid secret of this algorithm.
    pub(crate) fn public_key(&self, secret: &Secret32) -> Option<Vec<u8>> {
        match self {
            Self::NodeIdentity => {
                let signing = ed25519_dalek::SigningKey::from_bytes(secret.expose());
                Some(signing.verifying_key().to_bytes().to_vec())
            }
            Self::FileEncryption => SecretKey::from_bytes(secret.expose())
                .ok()
                .map(|sk| sk.public_key().to_compressed().to_vec()),
            Self::FileAuthority => Some(
                AuthorityRoot::from_bytes(secret.expose())
                    .fingerprint()
                    .to_vec(),
            ),
            Self::HybridFileEncryption => HybridSecretKey::from_seed(secret.expose())
                .ok()
                .map(|sk| sk.public_key().to_bytes()),
            Self::P256FileEncryption => P256SecretKey::from_bytes(secret.expose())
                .ok()
                .map(|sk| sk.public_key().to_bytes().to_vec()),
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Life-cycle state of one key version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KeyStatus {
    /// The one version of its name used for new work (encrypting, signing).
    Active,
    /// Replaced by a newer version; still decrypts.
    Deprecated,
    /// Compromised: never encrypts; decrypts only on an explicit override.
    Revoked,
    /// Its secret is erased; only the public record remains.
    Destroyed,
}

impl KeyStatus {
    /// `active`, `deprecated`, `revoked` or `destroyed`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deprecated => "deprecated",
            Self::Revoked => "revoked",
            Self::Destroyed => "destroyed",
        }
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The public record of one key version (no secret).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The key's name, e.g. `file-encryption`.
    pub name: String,
    /// What it is for.
    pub purpose: Purpose,
    /// 1, 2, ... within its name.
    pub version: u32,
    /// Its state.
    pub status: KeyStatus,
    /// When it was generated (or imported).
    pub created: Timestamp,
    /// When it became active.
    pub activated: Option<Timestamp>,
    /// When a newer version replaced it.
    pub deprecated: Option<Timestamp>,
    /// When the policy's maximum age runs out (active versions of policy-following keys).
    pub expires: Option<Timestamp>,
    /// When it was revoked.
    pub revoked: Option<Timestamp>,
    /// Why it was revoked.
    pub revoke_reason: Option<String>,
    /// When its secret was erased.
    pub destroyed: Option<Timestamp>,
    /// The version it replaced.
    pub predecessor: Option<u32>,
    /// The version that replaced it.
    pub successor: Option<u32>,
    /// ed25519: 32 bytes; secp256k1 and P-256: compressed SEC1, 33 bytes; hybrid: 1217
    /// bytes.
    pub public_key: Vec<u8>,
}

impl KeyInfo {
    /// The public key in lowercase hex.
    #[must_use]
    pub fn public_key_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.public_key)
    }

    /// The secp256k1 public key of a file-encryption key.
    #[must_use]
    pub fn ecies_public_key(&self) -> Option<PublicKey> {
        match self.purpose {
            Purpose::FileEncryption => PublicKey::from_sec1_bytes(&self.public_key).ok(),
            Purpose::NodeIdentity
            | Purpose::FileAuthority
            | Purpose::HybridFileEncryption
            | Purpose::P256FileEncryption => None,
        }
    }

    /// The recipient of a file-encryption key of either kind.
    #[must_use]
    pub fn recipient(&self) -> Option<Recipient> {
        match self.purpose {
            Purpose::FileEncryption => self.ecies_public_key().map(Recipient::Classical),
            Purpose::HybridFileEncryption => HybridPublicKey::from_bytes(&self.public_key)
                .ok()
                .map(Recipient::Hybrid),
            Purpose::P256FileEncryption => P256PublicKey::from_bytes(&self.public_key)
                .ok()
                .map(Recipient::P256),
            Purpose::NodeIdentity | Purpose::FileAuthority => None,
        }
    }

    /// The public key as `keys export-public` prints it: a hybrid (`dmpq1...`) or P-256
    /// (`dmp256v1...`) recipient, with a checksum, for those keys; lowercase hex otherwise.
    #[must_use]
    pub fn public_text(&self) -> String {
        match self.recipient() {
            Some(recipient @ (Recipient::Hybrid(_) | Recipient::P256(_))) => recipient.to_string(),
            _ => self.public_key_hex(),
        }
    }

    /// The key id (BLAKE3 fingerprint) that key envelopes name a file-encryption key by.
    #[must_use]
    pub fn key_id(&self) -> Option<KeyId> {
        self.recipient().map(|r| r.key_id())
    }
}

/// When keys are due for rotation, and whether the node rotates them by itself.
///
/// ```
/// use datamesh_keys::RotationPolicy;
/// let policy = RotationPolicy::default();
/// assert_eq!((policy.interval_days(), policy.max_age_days(), policy.auto()), (90, 365, true));
/// assert!(RotationPolicy::new(400, 365, true).is_err()); // interval above max age
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPolicy {
    interval_days: u32,
    max_age_days: u32,
    auto: bool,
}

impl RotationPolicy {
    /// Rotate every 90 days, never keep an active key past 365 days, automatically.
    pub const DEFAULT: Self = Self {
        interval_days: 90,
        max_age_days: 365,
        auto: true,
    };
    /// The longest interval or age accepted (100 years).
    pub const MAX_DAYS: u32 = 36_500;

    /// A policy with `1 <= interval_days <= max_age_days <= 36500`.
    ///
    /// # Errors
    ///
    /// [`ChangeError::BadPolicy`] saying which bound is broken.
    pub fn new(interval_days: u32, max_age_days: u32, auto: bool) -> Result<Self, ChangeError> {
        let policy = Self {
            interval_days,
            max_age_days,
            auto,
        };
        policy
            .validate()
            .map(|()| policy)
            .map_err(|problem| ChangeError::BadPolicy { problem })
    }

    /// A policy that skips validation (tests of the validation itself).
    #[cfg(test)]
    pub(crate) fn unchecked(interval_days: u32, max_age_days: u32, auto: bool) -> Self {
        Self {
            interval_days,
            max_age_days,
            auto,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.interval_days == 0 {
            return Err("the rotation interval must be at least 1 day".into());
        }
        if self.max_age_days > Self::MAX_DAYS {
            return Err(format!(
                "the maximum age is at most {} days",
                Self::MAX_DAYS
            ));
        }
        if self.interval_days > self.max_age_days {
            return Err(format!(
                "the rotation interval ({} days) must not exceed the maximum age ({} days)",
                self.interval_days, self.max_age_days
            ));
        }
        Ok(())
    }

    /// Days between rotations (default 90).
    #[must_use]
    pub fn interval_days(&self) -> u32 {
        self.interval_days
    }

    /// Days an active key may live at most (default 365).
    #[must_use]
    pub fn max_age_days(&self) -> u32 {
        self.max_age_days
    }

    /// Whether the node rotates due keys by itself (default on).
    #[must_use]
    pub fn auto(&self) -> bool {
        self.auto
    }

    pub(crate) fn max_age_seconds(&self) -> i64 {
        i64::from(self.max_age_days) * SECONDS_PER_DAY
    }

    pub(crate) fn interval_seconds(&self) -> i64 {
        i64::from(self.interval_days) * SECONDS_PER_DAY
    }
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a key is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DueReason {
    /// Active for at least the rotation interval.
    Interval,
    /// Active for at least the maximum age: rotate now.
    MaxAge,
}

impl DueReason {
    /// `interval` or `max-age`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Interval => "interval",
            Self::MaxAge => "max-age",
        }
    }
}

/// An active key version that the policy says to rotate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DueKey {
    /// The key's name.
    pub name: String,
    /// The active version that is due.
    pub version: u32,
    /// Why.
    pub reason: DueReason,
    /// The new version, if it was rotated.
    pub rotated_to: Option<u32>,
}

/// One key version as sealed in the body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) purpose: Purpose,
    pub(crate) version: u32,
    pub(crate) status: KeyStatus,
    pub(crate) created: i64,
    pub(crate) activated: Option<i64>,
    pub(crate) deprecated: Option<i64>,
    pub(crate) expires: Option<i64>,
    pub(crate) revoked: Option<i64>,
    pub(crate) revoke_reason: Option<String>,
    pub(crate) destroyed: Option<i64>,
    pub(crate) predecessor: Option<u32>,
    pub(crate) successor: Option<u32>,
    pub(crate) public_key: Vec<u8>,
    #[serde(with = "crate::secret::serde_opt")]
    pub(crate) secret: Option<Secret32>,
}

impl Entry {
    /// A new active version.
    pub(crate) fn generate(
        name: &str,
        purpose: Purpose,
        version: u32,
        now: i64,
        policy: &RotationPolicy,
    ) -> Self {
        let (secret, public_key) = purpose.generate();
        Self {
            name: name.to_owned(),
            purpose,
            version,
            status: KeyStatus::Active,
            created: now,
            activated: Some(now),
            deprecated: None,
            expires: expiry(purpose, now, policy),
            revoked: None,
            revoke_reason: None,
            destroyed: None,
            predecessor: None,
            successor: None,
            public_key,
            secret: Some(secret),
        }
    }

    pub(crate) fn info(&self) -> KeyInfo {
        KeyInfo {
            name: self.name.clone(),
            purpose: self.purpose,
            version: self.version,
            status: self.status,
            created: ts(self.created),
            activated: self.activated.map(ts),
            deprecated: self.deprecated.map(ts),
            expires: self.expires.map(ts),
            revoked: self.revoked.map(ts),
            revoke_reason: self.revoke_reason.clone(),
            destroyed: self.destroyed.map(ts),
            predecessor: self.predecessor,
            successor: self.successor,
            public_key: self.public_key.clone(),
        }
    }
}

/// When an active version of `purpose` activated at `activated` expires.
pub(crate) fn expiry(purpose: Purpose, activated: i64, policy: &RotationPolicy) -> Option<i64> {
    purpose
        .follows_policy()
        .then(|| activated.saturating_add(policy.max_age_seconds()))
}

/// Seconds since the epoch -> timestamp (the body is validated to hold only valid ones).
pub(crate) fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Whether `seconds` is a valid timestamp.
pub(crate) fn valid_ts(seconds: i64) -> bool {
    Timestamp::from_second(seconds).is_ok()
}

/// Key names: 1 to 64 ASCII letters, digits, `.`, `_` or `-`, not starting with `.`/`-`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.starts_with(['.', '-'])
}

/// Label and creation time of an unlock slot (kept in the body, not in the clear header).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SlotMeta {
    pub(crate) id: u32,
    pub(crate) label: String,
    pub(crate) created: i64,
}

/// The sealed body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Body {
    pub(crate) created: i64,
    pub(crate) next_slot_id: u32,
    pub(crate) slots: Vec<SlotMeta>,
    pub(crate) policy: RotationPolicy,
    pub(crate) entries: Vec<Entry>,
    /// The audit line of the last change, exactly as appended to `audit.log`.
    pub(crate) audit_anchor: Option<String>,
}

impl Body {
    /// The body's invariants; `Err` describes the first broken one.
    pub(crate) fn validate(&self, slot_ids: &[u32]) -> Result<(), String> {
        self.policy.validate()?;
        if !valid_ts(self.created) {
            return Err("invalid creation time".into());
        }
        for id in slot_ids {
            if !self.slots.iter().any(|meta| meta.id == *id) {
                return Err(format!("slot {id} has no record"));
            }
            if *id >= self.next_slot_id {
                return Err(format!("slot {id} is not below the next slot id"));
            }
        }
        let mut versions = BTreeSet::new();
        let mut names: BTreeMap<&str, (Purpose, usize)> = BTreeMap::new();
        for entry in &self.entries {
            validate_entry(entry)?;
            if !versions.insert((entry.name.as_str(), entry.version)) {
                return Err(format!("{} v{} appears twice", entry.name, entry.version));
            }
            let (purpose, active) = names
                .entry(entry.name.as_str())
                .or_insert((entry.purpose, 0));
            if *purpose != entry.purpose {
                return Err(format!("{} has versions of two purposes", entry.name));
            }
            if entry.status == KeyStatus::Active {
                *active += 1;
                if *active > 1 {
                    return Err(format!("{} has more than one active version", entry.name));
                }
            }
        }
        for (name, purpose) in [
            (NODE_IDENTITY, Purpose::NodeIdentity),
            (FILE_ENCRYPTION, Purpose::FileEncryption),
        ] {
            if !self
                .entries
                .iter()
                .any(|e| e.name == name && e.purpose == purpose && e.status == KeyStatus::Active)
            {
                return Err(format!("{name} has no active version"));
            }
        }
        Ok(())
    }
}

fn validate_entry(entry: &Entry) -> Result<(), String> {
    let what = format!("{} v{}", entry.name, entry.version);
    if !valid_name(&entry.name) || entry.version == 0 {
        return Err(format!("invalid key name or version: {what}"));
    }
    let times = [
        Some(entry.created),
        entry.activated,
        entry.deprecated,
        entry.expires,
        entry.revoked,
        entry.destroyed,
    ];
    if !times.into_iter().flatten().all(valid_ts) {
        return Err(format!("{what} has an invalid time"));
    }
    match (&entry.secret, entry.status) {
        (None, KeyStatus::Destroyed) => Ok(()),
        (Some(_), KeyStatus::Destroyed) => Err(format!("{what} is destroyed but has a secret")),
        (None, _) => Err(format!("{what} lacks its secret")),
        (Some(secret), _) => {
            if entry.purpose.public_key(secret).as_deref() == Some(entry.public_key.as_slice()) {
                Ok(())
            } else {
                Err(format!("{what}: the public key does not match the secret"))
            }
        }
    }
}
