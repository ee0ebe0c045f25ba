//! The unlocked keystore in memory, and every change to it, without any I/O.

use core::fmt;

use datamesh_core::ecies::SecretKey;
use datamesh_core::{AuthorityRoot, FileSecret, HybridSecretKey, P256SecretKey};
use jiff::Timestamp;
use zeroize::Zeroizing;

use crate::error::{ChangeError, KdfError};
use crate::escrow::{Share, ShareError};
use crate::format::{self, FormatError, Header, MAX_SLOTS, PasswordSlot, RawSlot, SLOT_PASSWORD};
use crate::kdf::{KdfLimits, KdfParams};
use crate::model::{
    self, Body, DueKey, DueReason, Entry, FILE_AUTHORITY, FILE_ENCRYPTION, FILE_ENCRYPTION_HYBRID,
    FILE_ENCRYPTION_P256, KeyInfo, KeyStatus, MAX_LABEL_LEN, MAX_REASON_LEN, NODE_IDENTITY,
    Purpose, RotationPolicy, SlotMeta,
};
use crate::password::Password;
use crate::secret::Secret32;
use crate::slot::composite::{CompositeSlot, HardwareHalf, PasswordHardwareSlot};
use crate::slot::pkcs11::Pkcs11Slot;
use crate::slot::{
    Credentials, SLOT_COMPOSITE, SLOT_PASSWORD_PKCS11, SLOT_PASSWORD_TPM, SLOT_PKCS11, SLOT_TPM,
    SlotChoice, UnlockPolicy,
};

/// Why sealed bytes did not unlock.
#[derive(Debug)]
pub(crate) enum UnsealError {
    Format(FormatError),
    WrongPassword,
    Kdf(KdfError),
    /// Slots were tried and failed for reasons other than a wrong secret (one line).
    Slots(String),
    /// No slot could be tried with the credentials given; what the slots need.
    NothingToTry(String),
}

/// The kind of an unlock slot.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotKind {
    /// A password, through Argon2id with these parameters.
    Password(KdfParams),
    /// A kind this build does not know (written by a newer version); kept as it is.
    Unknown(u8),
    /// A key inside a PKCS#11 token.
    Pkcs11 {
        /// The module (shared library).
        module: std::path::PathBuf,
        /// The token's label.
        token: String,
        /// The key's label.
        key_label: String,
    },
    /// A slot key sealed to a TPM 2.0, bound to these SHA-256 PCRs (none: empty).
    Tpm {
        /// The PCR indexes.
        pcrs: Vec<u8>,
    },
    /// A password and a key file, the password through Argon2id with these parameters.
    Composite(KdfParams),
    /// A password and a factor sealed in a PKCS#11 token.
    PasswordPkcs11 {
        /// The password's Argon2id parameters.
        kdf: KdfParams,
        /// The module (shared library).
        module: std::path::PathBuf,
        /// The token's label.
        token: String,
    },
    /// A password and a factor sealed to the TPM, bound to these PCRs (none: empty).
    PasswordTpm {
        /// The password's Argon2id parameters.
        kdf: KdfParams,
        /// The PCR indexes.
        pcrs: Vec<u8>,
    },
}

impl SlotKind {
    /// `password`, `pkcs11`, `tpm`, `password+keyfile` or `unknown`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Password(_) => "password",
            Self::Pkcs11 { .. } => "pkcs11",
            Self::Tpm { .. } => "tpm",
            Self::Composite(_) => "password+keyfile",
            Self::PasswordPkcs11 { .. } => "password+pkcs11",
            Self::PasswordTpm { .. } => "password+tpm",
            Self::Unknown(_) => "unknown",
        }
    }

    /// What unlocking through a slot of this kind needs, in words.
    #[must_use]
    pub fn needs(&self) -> String {
        match self {
            Self::Password(_) => "its password".into(),
            Self::Pkcs11 { module, token, .. } => format!(
                "token \"{token}\" through {} (and its PIN)",
                module.display()
            ),
            Self::Tpm { pcrs } if pcrs.is_empty() => "this machine's TPM".into(),
            Self::Tpm { pcrs } => format!(
                "this machine's TPM with PCRs {} unchanged",
                pcrs.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
            ),
            Self::Composite(_) => "its password and its key file".into(),
            Self::PasswordPkcs11 { module, token, .. } => format!(
                "its password and token \"{token}\" through {} (and its PIN)",
                module.display()
            ),
            Self::PasswordTpm { pcrs, .. } if pcrs.is_empty() => {
                "its password and this machine's TPM".into()
            }
            Self::PasswordTpm { pcrs, .. } => format!(
                "its password and this machine's TPM with PCRs {} unchanged",
                pcrs.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
            ),
            Self::Unknown(kind) => format!("a newer datamesh (slot kind {kind})"),
        }
    }

    /// The kind of a slot as stored (`Unknown` for an unknown kind or malformed data).
    pub(crate) fn of(raw: &RawSlot) -> Self {
        Self::parse(raw.kind, &raw.data).unwrap_or(Self::Unknown(raw.kind))
    }

    /// Parses a slot's data as read from a keystore's header (hostile bytes): its kind
    /// and what it names, or why the data is not a slot of that kind. A kind this build
    /// does not know is `Unknown`.
    ///
    /// # Errors
    ///
    /// Malformed data for a known kind (one line).
    pub fn parse(kind: u8, data: &[u8]) -> Result<Self, String> {
        Ok(match kind {
            SLOT_PASSWORD => {
                Self::Password(PasswordSlot::decode(data).map_err(|e| e.describe())?.kdf)
            }
            SLOT_PKCS11 => {
                let s = Pkcs11Slot::decode(data)?;
                Self::Pkcs11 {
                    module: s.module,
                    token: s.token,
                    key_label: s.key_label,
                }
            }
            SLOT_TPM => Self::Tpm {
                pcrs: crate::slot::tpm_pcrs(data)?,
            },
            SLOT_COMPOSITE => Self::Composite(CompositeSlot::decode(data)?.kdf),
            SLOT_PASSWORD_PKCS11 | SLOT_PASSWORD_TPM => {
                let s = PasswordHardwareSlot::decode(kind, data)?;
                match s.hardware {
                    HardwareHalf::Pkcs11(hw) => Self::PasswordPkcs11 {
                        kdf: s.kdf,
                        module: hw.module,
                        token: hw.token,
                    },
                    HardwareHalf::Tpm(hw) => Self::PasswordTpm {
                        kdf: s.kdf,
                        pcrs: hw.pcrs(),
                    },
                }
            }
            other => Self::Unknown(other),
        })
    }
}

/// The public description of an unlock slot.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotInfo {
    /// Its id (`datamesh keys slot remove ID`).
    pub id: u32,
    /// Its kind.
    pub kind: SlotKind,
    /// A free-form label.
    pub label: String,
    /// When it was added.
    pub created: Timestamp,
}

/// The contents of an unlocked keystore: entries, policy, slots and the master key.
///
/// Read-only accessors live here; `Keystore` dereferences to it and adds the
/// changes, which it writes to disk.
#[derive(Clone)]
pub struct KeyRing {
    pub(crate) header: Header,
    pub(crate) body: Body,
    master: Secret32,
    unlocked_slot: u32,
    /// The slot kinds that may unlock (none: every kind).
    pub(crate) unlock_policy: Option<UnlockPolicy>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("generation", &self.header.generation)
            .field("slots", &self.header.slots.len())
            .field("entries", &self.body.entries.len())
            .field("unlocked_slot", &self.unlocked_slot)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A new key ring: a random master key, one password slot, and the three initial keys.
    pub(crate) fn new(password: &Password, kdf: KdfParams, now: i64) -> Result<Self, KdfError> {
        let master = Secret32::random();
        let slot = PasswordSlot::seal(&master, password, kdf)?;
        Ok(Self::with_first_slot(
            master,
            SLOT_PASSWORD,
            slot.encode(),
            "initial password",
            now,
        ))
    }

    /// A new key ring under `master` with one slot (of `kind`, sealing `master`) and
    /// the initial keys.
    pub(crate) fn with_first_slot(
        master: Secret32,
        kind: u8,
        data: Vec<u8>,
        label: &str,
        now: i64,
    ) -> Self {
        let policy = RotationPolicy::DEFAULT;
        let entries = vec![
            Entry::generate(NODE_IDENTITY, Purpose::NodeIdentity, 1, now, &policy),
            Entry::generate(FILE_ENCRYPTION, Purpose::FileEncryption, 1, now, &policy),
            Entry::generate(FILE_AUTHORITY, Purpose::FileAuthority, 1, now, &policy),
            Entry::generate(
                FILE_ENCRYPTION_HYBRID,
                Purpose::HybridFileEncryption,
                1,
                now,
                &policy,
            ),
        ];
        Self {
            header: Header {
                generation: 0,
                slots: vec![RawSlot { id: 1, kind, data }],
            },
            body: Body {
                created: now,
                next_slot_id: 2,
                slots: vec![SlotMeta {
                    id: 1,
                    label: label.to_owned(),
                    created: now,
                }],
                policy,
                entries,
                audit_anchor: None,
            },
            master,
            unlocked_slot: 1,
            unlock_policy: None,
        }
    }

    /// Unlocks a sealed keystore: tries, in the header's order, every slot the
    /// credentials can open (password and composite slots whose parameters are within
    /// `limits`; PKCS#11 and TPM slots when hardware is allowed).
    pub(crate) fn unseal(
        bytes: &[u8],
        credentials: &Credentials,
        limits: &KdfLimits,
    ) -> Result<Self, UnsealError> {
        let (header, header_len) = Header::decode(bytes).map_err(UnsealError::Format)?;
        let mut refused = None;
        let mut failures = Vec::new();
        let mut tried = 0usize;
        let malformed = |id: u32, problem: String| {
            UnsealError::Format(FormatError::Malformed(format!("slot {id}: {problem}")))
        };
        let mut other_labels = Vec::new();
        for raw in &header.slots {
            if !credentials.choice.admits(raw.id, raw.kind) {
                continue;
            }
            let attempt: Result<Option<Secret32>, String> = match raw.kind {
                SLOT_PASSWORD => {
                    let Some(password) = &credentials.password else {
                        continue;
                    };
                    let slot = PasswordSlot::decode(&raw.data).map_err(UnsealError::Format)?;
                    match slot.open(password, limits) {
                        Ok(opened) => Ok(opened),
                        Err(e) => {
                            refused = refused.or(Some(e));
                            continue;
                        }
                    }
                }
                SLOT_COMPOSITE => {
                    let (Some(password), Some(key_file)) =
                        (&credentials.password, &credentials.key_file)
                    else {
                        continue;
                    };
                    let slot =
                        CompositeSlot::decode(&raw.data).map_err(|e| malformed(raw.id, e))?;
                    match slot.open(password, key_file, limits) {
                        Ok(opened) => Ok(opened),
                        Err(e) => {
                            refused = refused.or(Some(e));
                            continue;
                        }
                    }
                }
                SLOT_PASSWORD_PKCS11 | SLOT_PASSWORD_TPM if credentials.hardware => {
                    let Some(password) = &credentials.password else {
                        continue;
                    };
                    let slot = PasswordHardwareSlot::decode(raw.kind, &raw.data)
                        .map_err(|e| malformed(raw.id, e))?;
                    match slot.open(password, credentials, limits) {
                        Ok(Ok(opened)) => Ok(opened),
                        Ok(Err(e)) => {
                            refused = refused.or(Some(e));
                            continue;
                        }
                        Err(problem) => Err(problem),
                    }
                }
                SLOT_PKCS11 if credentials.hardware => {
                    let slot = Pkcs11Slot::decode(&raw.data).map_err(|e| malformed(raw.id, e))?;
                    slot.open(credentials.pin.as_ref()).map(Some)
                }
                SLOT_TPM if credentials.hardware => {
                    crate::slot::open_tpm(&raw.data, credentials.tcti()).map(Some)
                }
                _ => continue,
            };
            tried += 1;
            match attempt {
                Ok(Some(master)) => {
                    let id = raw.id;
                    let ring = Self::with_master(bytes, header.clone(), header_len, master, id)
                        .map_err(UnsealError::Format)?;
                    match (&ring.unlock_policy, &credentials.choice) {
                        (Some(policy), _) if !policy.allows(raw.kind) => failures.push(format!(
                            "slot {id} ({}): the keystore's unlock policy allows only {} slots to unlock",
                            SlotKind::of(raw).name(),
                            policy.names().join(", ")
                        )),
                        (_, SlotChoice::Label(label)) if ring.slot_label(id) != label.as_str() => {
                            other_labels.push(id);
                        }
                        _ => return Ok(ring),
                    }
                }
                Ok(None) => {}
                Err(problem) => failures.push(format!(
                    "slot {} ({}): {problem}",
                    raw.id,
                    SlotKind::of(raw).name()
                )),
            }
        }
        if let (SlotChoice::Label(label), false) = (&credentials.choice, other_labels.is_empty()) {
            failures.push(format!(
                "no slot labelled {label:?} opened (slot(s) {other_labels:?} opened but have other labels; `datamesh keys slot list` shows them)"
            ));
        }
        if !failures.is_empty() {
            return Err(UnsealError::Slots(failures.join("; ")));
        }
        if tried == 0 && refused.is_none() {
            let slots: Vec<String> = header
                .slots
                .iter()
                .filter(|raw| credentials.choice.admits(raw.id, raw.kind))
                .map(|raw| {
                    let kind = SlotKind::of(raw);
                    format!("slot {} ({}) needs {}", raw.id, kind.name(), kind.needs())
                })
                .collect();
            return Err(UnsealError::NothingToTry(if slots.is_empty() {
                format!("there is no such slot ({})", credentials.choice)
            } else {
                slots.join("; ")
            }));
        }
        Err(refused.map_or(UnsealError::WrongPassword, UnsealError::Kdf))
    }

    /// Re-reads `bytes` with the master key already known (another process changed the
    /// file; the master key never changes).
    pub(crate) fn reload(&self, bytes: &[u8]) -> Result<Self, FormatError> {
        let (header, header_len) = Header::decode(bytes)?;
        Self::with_master(
            bytes,
            header,
            header_len,
            self.master.clone(),
            self.unlocked_slot,
        )
    }

    /// A new key ring (new master key, one password slot) holding restored entries.
    pub(crate) fn from_backup(
        password: &Password,
        kdf: KdfParams,
        now: i64,
        policy: RotationPolicy,
        entries: Vec<Entry>,
    ) -> Result<Self, String> {
        Self::new(password, kdf, now)
            .map_err(|e| e.to_string())?
            .restored(policy, entries)
    }

    /// This new key ring holding restored entries and rotation policy instead of its
    /// initial keys.
    pub(crate) fn restored(
        mut self,
        policy: RotationPolicy,
        entries: Vec<Entry>,
    ) -> Result<Self, String> {
        self.body.policy = policy;
        self.body.entries = entries;
        let ids: Vec<u32> = self.header.slots.iter().map(|s| s.id).collect();
        self.body.validate(&ids)?;
        Ok(self)
    }

    /// Opens a sealed keystore with a master key recovered some other way (escrow); the
    /// body's authentication proves the key is the right one. No slot is unlocked yet.
    pub(crate) fn unseal_with_master(bytes: &[u8], master: Secret32) -> Result<Self, FormatError> {
        let (header, header_len) = Header::decode(bytes)?;
        Self::with_master(bytes, header, header_len, master, 0)
    }

    /// Records the slot this session counts as unlocked with (after a recovery added it).
    pub(crate) fn set_unlocked_slot(&mut self, id: u32) {
        self.unlocked_slot = id;
    }

    fn with_master(
        bytes: &[u8],
        header: Header,
        header_len: usize,
        master: Secret32,
        unlocked_slot: u32,
    ) -> Result<Self, FormatError> {
        let (body, unlock_policy) = format::open_body(bytes, header_len, &master)?;
        let ids: Vec<u32> = header.slots.iter().map(|s| s.id).collect();
        body.validate(&ids).map_err(FormatError::Malformed)?;
        Ok(Self {
            header,
            body,
            master,
            unlocked_slot,
            unlock_policy,
        })
    }

    /// The complete sealed file.
    pub(crate) fn seal(&self) -> Result<Vec<u8>, String> {
        let ids: Vec<u32> = self.header.slots.iter().map(|s| s.id).collect();
        self.body.validate(&ids)?;
        format::seal(
            &self.header,
            &self.body,
            self.unlock_policy.as_ref(),
            &self.master,
        )
    }

    pub(crate) fn master(&self) -> &Secret32 {
        &self.master
    }

    // ----- read-only accessors -----

    /// The generation counter: +1 at every write. See `Keystore::generation`.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.header.generation
    }

    /// Every version of every key, in the order they were added.
    #[must_use]
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.body.entries.iter().map(Entry::info).collect()
    }

    /// Every version of `name`, oldest first (empty if there is no such key).
    #[must_use]
    pub fn versions(&self, name: &str) -> Vec<KeyInfo> {
        let mut out: Vec<KeyInfo> = self
            .body
            .entries
            .iter()
            .filter(|e| e.name == name)
            .map(Entry::info)
            .collect();
        out.sort_by_key(|info| info.version);
        out
    }

    /// The active version of `name`.
    #[must_use]
    pub fn active(&self, name: &str) -> Option<KeyInfo> {
        self.active_entry(name).map(Entry::info)
    }

    fn active_entry(&self, name: &str) -> Option<&Entry> {
        self.body
            .entries
            .iter()
            .find(|e| e.name == name && e.status == KeyStatus::Active)
    }

    /// The active ed25519 seed of the node identity (the node turns it into a libp2p
    /// keypair). Zeroized when dropped.
    ///
    /// # Panics
    ///
    /// Never for a keystore that opened: that an active node identity exists is checked
    /// when the keystore is opened and before every write.
    #[must_use]
    pub fn node_identity_seed(&self) -> Zeroizing<[u8; 32]> {
        match self
            .active_entry(NODE_IDENTITY)
            .and_then(|e| e.secret.as_ref())
        {
            Some(secret) => {
                let mut seed = Zeroizing::new([0u8; 32]);
                seed.copy_from_slice(secret.expose());
                seed
            }
            None => panic!("keystore invariant broken: no active node identity"),
        }
    }

    /// The version and secret key that new files are encrypted to: the active version of
    /// `file-encryption`, never a revoked one.
    ///
    /// # Errors
    ///
    /// [`ChangeError::NoActiveVersion`] if there is none (the keystore invariants prevent
    /// it).
    pub fn active_file_key(&self) -> Result<(u32, SecretKey), ChangeError> {
        self.active_entry(FILE_ENCRYPTION)
            .and_then(|e| Some((e.version, ecies_secret(e)?)))
            .ok_or_else(|| ChangeError::NoActiveVersion {
                name: FILE_ENCRYPTION.into(),
            })
    }

    /// Every file-encryption key version whose secret still exists (all names, e.g.
    /// imported legacy keys too): active and deprecated ones, and revoked ones only if
    /// `allow_revoked` (incident recovery).
    #[must_use]
    pub fn decryption_keys(&self, allow_revoked: bool) -> Vec<(KeyInfo, SecretKey)> {
        self.body
            .entries
            .iter()
            .filter(|e| e.purpose == Purpose::FileEncryption)
            .filter(|e| match e.status {
                KeyStatus::Active | KeyStatus::Deprecated => true,
                KeyStatus::Revoked => allow_revoked,
                KeyStatus::Destroyed => false,
            })
            .filter_map(|e| Some((e.info(), ecies_secret(e)?)))
            .collect()
    }

    /// The version and secret of the active hybrid file-encryption key, if the keystore
    /// has one (a keystore made before hybrid keys existed gets one from
    /// `Keystore::ensure_hybrid_file_key`).
    #[must_use]
    pub fn active_hybrid_key(&self) -> Option<(u32, HybridSecretKey)> {
        self.active_entry(FILE_ENCRYPTION_HYBRID)
            .filter(|e| e.purpose == Purpose::HybridFileEncryption)
            .and_then(|e| Some((e.version, hybrid_secret(e)?)))
    }

    /// The version and secret of the active P-256 file-encryption key, if the keystore
    /// has one (`Keystore::ensure_file_key` makes it under the fips profile).
    #[must_use]
    pub fn active_p256_key(&self) -> Option<(u32, P256SecretKey)> {
        self.active_entry(FILE_ENCRYPTION_P256)
            .filter(|e| e.purpose == Purpose::P256FileEncryption)
            .and_then(|e| Some((e.version, p256_secret(e)?)))
    }

    /// Every file-encryption key version of any kind whose secret still exists, as
    /// [`Self::decryption_keys`] selects them (the classical ones first, then hybrid,
    /// then P-256).
    #[must_use]
    pub fn file_secrets(&self, allow_revoked: bool) -> Vec<(KeyInfo, FileSecret)> {
        let mut out: Vec<(KeyInfo, FileSecret)> = self
            .decryption_keys(allow_revoked)
            .into_iter()
            .map(|(info, key)| (info, FileSecret::Classical(key)))
            .collect();
        let live = |e: &&Entry| match e.status {
            KeyStatus::Active | KeyStatus::Deprecated => true,
            KeyStatus::Revoked => allow_revoked,
            KeyStatus::Destroyed => false,
        };
        for purpose in [Purpose::HybridFileEncryption, Purpose::P256FileEncryption] {
            out.extend(
                self.body
                    .entries
                    .iter()
                    .filter(|e| e.purpose == purpose)
                    .filter(live)
                    .filter_map(|e| {
                        let secret = match purpose {
                            Purpose::P256FileEncryption => FileSecret::P256(p256_secret(e)?),
                            _ => FileSecret::Hybrid(hybrid_secret(e)?),
                        };
                        Some((e.info(), secret))
                    }),
            );
        }
        out
    }

    /// Whether the key ring has a key named `name` of `purpose` (a live one or not).
    pub(crate) fn has_key(&self, name: &str, purpose: Purpose) -> bool {
        self.body
            .entries
            .iter()
            .any(|e| e.name == name && e.purpose == purpose)
    }

    /// Adds version 1 of key `name` of `purpose` (a hybrid or P-256 file-encryption key
    /// that a keystore made before it, or under another profile, lacks).
    pub(crate) fn add_key(&mut self, name: &str, purpose: Purpose, now: i64) {
        let policy = self.body.policy;
        self.body
            .entries
            .push(Entry::generate(name, purpose, 1, now, &policy));
    }

    /// Every file-authority root version whose secret still exists, the active one first
    /// (it derives the keys of new files), then the others newest first (they derive the
    /// keys of older files); revoked ones only if `allow_revoked`. Empty for a keystore
    /// made before file-authority roots existed (see `Keystore::ensure_file_authority`).
    #[must_use]
    pub fn authority_roots(&self, allow_revoked: bool) -> Vec<(KeyInfo, AuthorityRoot)> {
        let mut out: Vec<(KeyInfo, AuthorityRoot)> = self
            .body
            .entries
            .iter()
            .filter(|e| e.purpose == Purpose::FileAuthority)
            .filter(|e| match e.status {
                KeyStatus::Active | KeyStatus::Deprecated => true,
                KeyStatus::Revoked => allow_revoked,
                KeyStatus::Destroyed => false,
            })
            .filter_map(|e| {
                let secret = e.secret.as_ref()?;
                Some((e.info(), AuthorityRoot::from_bytes(secret.expose())))
            })
            .collect();
        out.sort_by_key(|(info, _)| (info.status != KeyStatus::Active, u32::MAX - info.version));
        out
    }

    /// Whether the key ring has a file-authority root (a live one or not).
    pub(crate) fn has_file_authority(&self) -> bool {
        self.body
            .entries
            .iter()
            .any(|e| e.name == FILE_AUTHORITY && e.purpose == Purpose::FileAuthority)
    }

    /// Adds version 1 of the file-authority root (a keystore made before it existed).
    pub(crate) fn add_file_authority(&mut self, now: i64) {
        let policy = self.body.policy;
        self.body.entries.push(Entry::generate(
            FILE_AUTHORITY,
            Purpose::FileAuthority,
            1,
            now,
            &policy,
        ));
    }

    /// Opens a share sealed to this key ring's file-encryption key
    /// ([`Share::seal_to`]): every live version is tried, so a contact who rotated since
    /// still opens it.
    ///
    /// # Errors
    ///
    /// As [`Share::open_sealed`].
    pub fn open_sealed_share(&self, text: &str) -> Result<Share, ShareError> {
        let keys: Vec<SecretKey> = self
            .decryption_keys(false)
            .into_iter()
            .map(|(_, key)| key)
            .collect();
        Share::open_sealed(text, &keys)
    }

    /// The rotation policy.
    #[must_use]
    pub fn policy(&self) -> RotationPolicy {
        self.body.policy
    }

    /// Active versions that the policy says are due at `now` (nothing is changed).
    #[must_use]
    pub fn due(&self, now: Timestamp) -> Vec<DueKey> {
        let now = now.as_second();
        let policy = self.body.policy;
        self.body
            .entries
            .iter()
            .filter(|e| e.status == KeyStatus::Active && e.purpose.follows_policy())
            .filter_map(|e| {
                let age = now.saturating_sub(e.activated.unwrap_or(e.created));
                let reason = if age >= policy.max_age_seconds() {
                    DueReason::MaxAge
                } else if age >= policy.interval_seconds() {
                    DueReason::Interval
                } else {
                    return None;
                };
                Some(DueKey {
                    name: e.name.clone(),
                    version: e.version,
                    reason,
                    rotated_to: None,
                })
            })
            .collect()
    }

    /// The unlock slots.
    #[must_use]
    pub fn slots(&self) -> Vec<SlotInfo> {
        self.header
            .slots
            .iter()
            .map(|raw| {
                let meta = self.body.slots.iter().find(|m| m.id == raw.id);
                let kind = SlotKind::of(raw);
                SlotInfo {
                    id: raw.id,
                    kind,
                    label: meta.map(|m| m.label.clone()).unwrap_or_default(),
                    created: model::ts(meta.map_or(self.body.created, |m| m.created)),
                }
            })
            .collect()
    }

    /// The label of slot `id` (empty if it has none).
    pub(crate) fn slot_label(&self, id: u32) -> &str {
        self.body
            .slots
            .iter()
            .find(|m| m.id == id)
            .map_or("", |m| m.label.as_str())
    }

    /// The slot this session unlocked with.
    #[must_use]
    pub fn unlocked_slot(&self) -> u32 {
        self.unlocked_slot
    }

    /// The slot kinds that may unlock, if the keystore has an unlock policy.
    #[must_use]
    pub fn unlock_policy(&self) -> Option<&UnlockPolicy> {
        self.unlock_policy.as_ref()
    }

    /// Sets (or, with `None`, removes) the unlock policy. Refused while a slot of a kind
    /// it does not allow exists (remove it first: a policy must not be undone by a slot
    /// that still opens the keystore with an older build).
    pub(crate) fn set_unlock_policy(
        &mut self,
        policy: Option<UnlockPolicy>,
    ) -> Result<(), ChangeError> {
        if let Some(policy) = &policy {
            let refused: Vec<String> = self
                .header
                .slots
                .iter()
                .filter(|raw| !policy.allows(raw.kind))
                .map(|raw| format!("slot {} ({})", raw.id, SlotKind::of(raw).name()))
                .collect();
            if !refused.is_empty() {
                return Err(ChangeError::UnlockPolicy {
                    problem: format!(
                        "{} would not be allowed to unlock; remove {} first (`datamesh keys slot remove ID`)",
                        refused.join(", "),
                        if refused.len() == 1 { "it" } else { "them" }
                    ),
                });
            }
        }
        self.unlock_policy = policy;
        Ok(())
    }

    // ----- changes (in memory; `Keystore` writes them) -----

    fn find_mut(&mut self, name: &str, version: u32) -> Result<&mut Entry, ChangeError> {
        if !self.body.entries.iter().any(|e| e.name == name) {
            return Err(ChangeError::NoSuchKey { name: name.into() });
        }
        self.body
            .entries
            .iter_mut()
            .find(|e| e.name == name && e.version == version)
            .ok_or_else(|| ChangeError::NoSuchVersion {
                name: name.into(),
                version,
            })
    }

    /// Adds a new active version of `name` and deprecates the old one.
    pub(crate) fn rotate(&mut self, name: &str, now: i64) -> Result<KeyInfo, ChangeError> {
        let Some(old) = self
            .body
            .entries
            .iter()
            .position(|e| e.name == name && e.status == KeyStatus::Active)
        else {
            return Err(if self.body.entries.iter().any(|e| e.name == name) {
                ChangeError::NoActiveVersion { name: name.into() }
            } else {
                ChangeError::NoSuchKey { name: name.into() }
            });
        };
        let latest = self
            .body
            .entries
            .iter()
            .filter(|e| e.name == name)
            .map(|e| e.version)
            .max()
            .unwrap_or(0);
        // u32::MAX versions cannot be reached; if they were, sealing would refuse the
        // duplicate version.
        let version = latest.saturating_add(1);
        let policy = self.body.policy;
        let Some(old) = self.body.entries.get_mut(old) else {
            return Err(ChangeError::NoActiveVersion { name: name.into() });
        };
        old.status = KeyStatus::Deprecated;
        old.deprecated = Some(now);
        old.expires = None;
        old.successor = Some(version);
        let mut new = Entry::generate(name, old.purpose, version, now, &policy);
        new.predecessor = Some(old.version);
        let info = new.info();
        self.body.entries.push(new);
        Ok(info)
    }

    /// Rotates every due key if the policy says so; returns what was due.
    pub(crate) fn rotate_due(&mut self, now: Timestamp) -> Result<Vec<DueKey>, ChangeError> {
        let mut due = self.due(now);
        if self.body.policy.auto() {
            for key in &mut due {
                key.rotated_to = Some(self.rotate(&key.name, now.as_second())?.version);
            }
        }
        Ok(due)
    }

    /// Marks a version compromised. An active version is first replaced by a new one,
    /// which is returned.
    pub(crate) fn revoke(
        &mut self,
        name: &str,
        version: u32,
        reason: &str,
        now: i64,
    ) -> Result<Option<KeyInfo>, ChangeError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > MAX_REASON_LEN {
            return Err(ChangeError::BadReason {
                max: MAX_REASON_LEN,
            });
        }
        let entry = self.find_mut(name, version)?;
        let replacement = match entry.status {
            KeyStatus::Destroyed => {
                return Err(ChangeError::AlreadyDestroyed {
                    name: name.into(),
                    version,
                });
            }
            KeyStatus::Revoked => {
                return Err(ChangeError::AlreadyRevoked {
                    name: name.into(),
                    version,
                });
            }
            KeyStatus::Active => Some(self.rotate(name, now)?),
            KeyStatus::Deprecated => None,
        };
        let entry = self.find_mut(name, version)?;
        entry.status = KeyStatus::Revoked;
        entry.revoked = Some(now);
        entry.revoke_reason = Some(reason.to_owned());
        entry.expires = None;
        Ok(replacement)
    }

    /// Erases a version's secret.
    pub(crate) fn destroy(
        &mut self,
        name: &str,
        version: u32,
        still_needed: bool,
        force: bool,
        now: i64,
    ) -> Result<(), ChangeError> {
        let entry = self.find_mut(name, version)?;
        let (name, version) = (name.to_owned(), version);
        match entry.status {
            KeyStatus::Active => return Err(ChangeError::DestroyActive { name, version }),
            KeyStatus::Destroyed => return Err(ChangeError::AlreadyDestroyed { name, version }),
            KeyStatus::Deprecated | KeyStatus::Revoked if still_needed && !force => {
                return Err(ChangeError::StillNeeded { name, version });
            }
            KeyStatus::Deprecated | KeyStatus::Revoked => {}
        }
        entry.status = KeyStatus::Destroyed;
        entry.secret = None; // zeroized on drop
        entry.destroyed = Some(now);
        entry.expires = None;
        Ok(())
    }

    /// Sets the policy and re-computes the expiry of active versions.
    pub(crate) fn set_policy(&mut self, policy: RotationPolicy) -> Result<(), ChangeError> {
        policy
            .validate()
            .map_err(|problem| ChangeError::BadPolicy { problem })?;
        self.body.policy = policy;
        for entry in &mut self.body.entries {
            if entry.status == KeyStatus::Active {
                entry.expires = model::expiry(
                    entry.purpose,
                    entry.activated.unwrap_or(entry.created),
                    &policy,
                );
            }
        }
        Ok(())
    }

    /// Replaces the password slot this session unlocked with.
    pub(crate) fn replace_unlocked_slot(&mut self, slot: &PasswordSlot) -> Result<(), ChangeError> {
        let id = self.unlocked_slot;
        let raw = self
            .header
            .slots
            .iter_mut()
            .find(|s| s.id == id && s.kind == SLOT_PASSWORD)
            .ok_or(ChangeError::NoSuchSlot { id })?;
        raw.data = slot.encode();
        Ok(())
    }

    /// Adds a slot of `kind` holding `data`; returns its id.
    pub(crate) fn add_slot(
        &mut self,
        kind: u8,
        data: Vec<u8>,
        label: &str,
        now: i64,
    ) -> Result<u32, ChangeError> {
        if let Some(policy) = self.unlock_policy.as_ref().filter(|p| !p.allows(kind)) {
            return Err(ChangeError::UnlockPolicy {
                problem: format!(
                    "the unlock policy allows only {} slots; a slot of another kind would open nothing",
                    policy.names().join(", ")
                ),
            });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(ChangeError::BadLabel { max: MAX_LABEL_LEN });
        }
        if self.header.slots.len() >= MAX_SLOTS {
            return Err(ChangeError::TooManySlots { max: MAX_SLOTS });
        }
        let id = self.body.next_slot_id;
        self.body.next_slot_id = id.saturating_add(1);
        self.header.slots.push(RawSlot { id, kind, data });
        self.body.slots.push(SlotMeta {
            id,
            label: label.to_owned(),
            created: now,
        });
        Ok(id)
    }

    /// Removes a slot (never the last one, nor the one this session unlocked with).
    pub(crate) fn remove_slot(&mut self, id: u32) -> Result<(), ChangeError> {
        if !self.header.slots.iter().any(|s| s.id == id) {
            return Err(ChangeError::NoSuchSlot { id });
        }
        // At least one slot of a known kind that the policy allows must stay.
        let can_open = |raw: &&RawSlot| {
            raw.id != id
                && !matches!(SlotKind::of(raw), SlotKind::Unknown(_))
                && self
                    .unlock_policy
                    .as_ref()
                    .is_none_or(|p| p.allows(raw.kind))
        };
        if !self.header.slots.iter().any(|raw| can_open(&raw)) {
            return Err(ChangeError::LastSlot { id });
        }
        if id == self.unlocked_slot {
            return Err(ChangeError::CurrentSlot { id });
        }
        self.header.slots.retain(|s| s.id != id);
        self.body.slots.retain(|m| m.id != id);
        Ok(())
    }

    /// Puts a new master key in place with the given slots (sealed with it, each keeping
    /// its id and kind); every other slot is dropped, with its record.
    pub(crate) fn rekey(&mut self, master: Secret32, slots: Vec<RawSlot>) {
        self.body
            .slots
            .retain(|meta| slots.iter().any(|raw| raw.id == meta.id));
        self.header.slots = slots;
        self.master = master;
    }

    /// The slots as stored.
    pub(crate) fn raw_slots(&self) -> &[RawSlot] {
        &self.header.slots
    }

    /// Adds imported entries.
    pub(crate) fn add_entries(&mut self, entries: Vec<Entry>) {
        self.body.entries.extend(entries);
    }

    /// Whether any entry has this public key.
    pub(crate) fn has_public_key(&self, public_key: &[u8]) -> bool {
        self.body.entries.iter().any(|e| e.public_key == public_key)
    }
}

fn ecies_secret(entry: &Entry) -> Option<SecretKey> {
    entry
        .secret
        .as_ref()
        .and_then(|s| SecretKey::from_bytes(s.expose()).ok())
}

fn p256_secret(entry: &Entry) -> Option<P256SecretKey> {
    entry
        .secret
        .as_ref()
        .and_then(|s| P256SecretKey::from_bytes(s.expose()).ok())
}

fn hybrid_secret(entry: &Entry) -> Option<HybridSecretKey> {
    entry
        .secret
        .as_ref()
        .and_then(|s| HybridSecretKey::from_seed(s.expose()).ok())
}
