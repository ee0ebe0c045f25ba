//! The sealed keystore file, format version 1 (see `docs/keystore.md`).
//!
//! ```text
//! header = magic "DMKEYST\0" (8) | version 0x01 (1) | generation u64 BE (8) | slot count (1)
//!          | per slot: id u32 BE | kind u8 | data length u16 BE | data
//! file   = header | nonce (12) | AES-256-GCM(master key, nonce, aad = header,
//!                                           postcard(Body) | zero padding to 256 bytes)
//! password slot data (kind 1, 104 bytes) =
//!          m_kib u32 BE | t u32 BE | p u32 BE | salt (32) | nonce (12) | wrapped master key (32 + 16)
//! wrapped master key = AES-256-GCM(argon2id(password, salt, m, t, p), nonce,
//!          aad = "datamesh keystore slot v1" | kind | m | t | p | salt, master key)
//! ```
//!
//! Slots of an unknown kind are kept verbatim and skipped when unlocking, so a later
//! version can add kinds (a recovery slot) that this one still carries through rewrites.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes256Gcm, KeyInit};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::error::KdfError;
use crate::kdf::{self, KdfLimits, KdfParams, SALT_LEN};
use crate::model::Body;
use crate::password::Password;
use crate::secret::{SECRET_LEN, Secret32};
use crate::slot::UnlockPolicy;

/// First bytes of every keystore file.
pub(crate) const MAGIC: [u8; 8] = *b"DMKEYST\0";
/// The format version of a keystore without an unlock policy.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// The format version of a keystore with an unlock policy (sealed after the body); only
/// such keystores are written as version 2, so that older builds, which would not
/// enforce the policy, refuse them while every other keystore stays readable by them.
pub(crate) const FORMAT_VERSION_POLICY: u8 = 2;
/// magic + version + generation + slot count.
pub(crate) const FIXED_HEADER_LEN: usize = 18;
/// The most unlock slots a keystore holds.
pub(crate) const MAX_SLOTS: usize = 32;
/// A keystore file larger than this is refused before it is read (16 MiB).
pub(crate) const MAX_KEYSTORE_LEN: u64 = 16 << 20;
/// Slot kind: a password slot.
pub(crate) const SLOT_PASSWORD: u8 = 1;

const MAX_SLOT_DATA: usize = 1024;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const BODY_PADDING: usize = 256;
const SLOT_AAD_LABEL: &[u8] = b"datamesh keystore slot v1";

/// Why bytes are not a keystore this build can open.
#[derive(Debug)]
pub(crate) enum FormatError {
    /// The magic does not match.
    NotKeystore,
    /// Another format version.
    Version(u8),
    /// Structurally invalid.
    Malformed(String),
    /// The body fails authentication under the unwrapped master key.
    Authentication,
}

impl FormatError {
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::NotKeystore => "not a DataMesh keystore (bad magic)".into(),
            Self::Version(v) => format!("unknown format version {v}"),
            Self::Malformed(problem) => problem.clone(),
            Self::Authentication => {
                "the header or body fails authentication (edited, truncated or corrupted)".into()
            }
        }
    }
}

/// A 96-bit AES-GCM nonce. Only ever made here, from the OS random number generator:
/// each master key seals at most a few thousand bodies in its life and every KEK seals
/// one master key, so random nonces are far from the 2^32 messages where collisions
/// start to matter; a counter would risk reuse when a write is abandoned and redone.
struct Nonce([u8; NONCE_LEN]);

impl Nonce {
    fn random() -> Self {
        let mut bytes = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    fn as_array(&self) -> &GenericArray<u8, aes_gcm::aead::consts::U12> {
        GenericArray::from_slice(&self.0)
    }
}

fn cipher(key: &Secret32) -> Aes256Gcm {
    Aes256Gcm::new(GenericArray::from_slice(key.expose()))
}

/// The clear part of the file: everything but the sealed body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) generation: u64,
    pub(crate) slots: Vec<RawSlot>,
}

/// One unlock slot as stored: its kind and kind-specific bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawSlot {
    pub(crate) id: u32,
    pub(crate) kind: u8,
    pub(crate) data: Vec<u8>,
}

impl Header {
    pub(crate) fn encode(&self, version: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_HEADER_LEN + self.slots.len() * 112);
        out.extend_from_slice(&MAGIC);
        out.push(version);
        out.extend_from_slice(&self.generation.to_be_bytes());
        // At most MAX_SLOTS slots of at most MAX_SLOT_DATA bytes (enforced by callers).
        out.push(u8::try_from(self.slots.len()).unwrap_or(u8::MAX));
        for slot in &self.slots {
            out.extend_from_slice(&slot.id.to_be_bytes());
            out.push(slot.kind);
            out.extend_from_slice(&u16::try_from(slot.data.len()).unwrap_or(0).to_be_bytes());
            out.extend_from_slice(&slot.data);
        }
        out
    }

    /// Parses the header at the start of `bytes`; returns it and its length.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(Self, usize), FormatError> {
        let generation = read_generation(bytes)?;
        let mut reader = Reader {
            bytes,
            pos: FIXED_HEADER_LEN - 1,
        };
        let count = usize::from(reader.u8()?);
        if count == 0 || count > MAX_SLOTS {
            return Err(FormatError::Malformed(format!(
                "{count} unlock slots (1 to {MAX_SLOTS} allowed)"
            )));
        }
        let mut slots: Vec<RawSlot> = Vec::with_capacity(count);
        for _ in 0..count {
            let id = reader.u32()?;
            let kind = reader.u8()?;
            let len = usize::from(reader.u16()?);
            if len > MAX_SLOT_DATA {
                return Err(FormatError::Malformed(format!("slot {id} is too large")));
            }
            let data = reader.take(len)?.to_vec();
            if slots.iter().any(|s| s.id == id) {
                return Err(FormatError::Malformed(format!("slot {id} appears twice")));
            }
            slots.push(RawSlot { id, kind, data });
        }
        Ok((Self { generation, slots }, reader.pos))
    }
}

/// The generation counter from the first [`FIXED_HEADER_LEN`] bytes of a file.
pub(crate) fn read_generation(bytes: &[u8]) -> Result<u64, FormatError> {
    if bytes.len() < MAGIC.len() || bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(FormatError::NotKeystore);
    }
    let mut reader = Reader {
        bytes,
        pos: MAGIC.len(),
    };
    let version = reader.u8()?;
    if version != FORMAT_VERSION && version != FORMAT_VERSION_POLICY {
        return Err(FormatError::Version(version));
    }
    reader.u64()
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self.pos.checked_add(n);
        let out = end.and_then(|end| self.bytes.get(self.pos..end));
        match (out, end) {
            (Some(out), Some(end)) => {
                self.pos = end;
                Ok(out)
            }
            _ => Err(FormatError::Malformed("truncated header".into())),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, FormatError> {
        self.array::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Result<u16, FormatError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, FormatError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, FormatError> {
        self.array().map(u64::from_be_bytes)
    }
}

/// A password slot: Argon2id parameters, salt, and the master key wrapped under the KEK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PasswordSlot {
    pub(crate) kdf: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
    wrapped: [u8; SECRET_LEN + TAG_LEN],
}

impl PasswordSlot {
    const LEN: usize = 12 + SALT_LEN + NONCE_LEN + SECRET_LEN + TAG_LEN;

    /// Wraps `master` under a KEK derived from `password` with a fresh salt.
    pub(crate) fn seal(
        master: &Secret32,
        password: &Password,
        kdf: KdfParams,
    ) -> Result<Self, KdfError> {
        let mut salt = [0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        let kek = kdf::derive_kek(password, &salt, kdf, &KdfLimits::DEFAULT)?;
        let nonce = Nonce::random();
        let mut wrapped = [0u8; SECRET_LEN + TAG_LEN];
        let (body, tag_out) = wrapped.split_at_mut(SECRET_LEN);
        body.copy_from_slice(master.expose());
        let aad = Self::aad(kdf, &salt);
        // Only fails above AES-GCM's length limit, which 32 bytes never reach.
        let tag = cipher(&kek)
            .encrypt_in_place_detached(nonce.as_array(), &aad, body)
            .map_err(|_| KdfError::Wrap)?;
        tag_out.copy_from_slice(&tag);
        Ok(Self {
            kdf,
            salt,
            nonce: nonce.0,
            wrapped,
        })
    }

    /// The master key, if `password` is the one this slot was sealed with; `Ok(None)`
    /// otherwise. The limits are checked before the KDF allocates anything.
    pub(crate) fn open(
        &self,
        password: &Password,
        limits: &KdfLimits,
    ) -> Result<Option<Secret32>, KdfError> {
        let kek = kdf::derive_kek(password, &self.salt, self.kdf, limits)?;
        let aad = Self::aad(self.kdf, &self.salt);
        let (body, tag) = self.wrapped.split_at(SECRET_LEN);
        let mut ok = false;
        let master = Secret32::init_with(|out| {
            out.copy_from_slice(body);
            ok = cipher(&kek)
                .decrypt_in_place_detached(
                    GenericArray::from_slice(&self.nonce),
                    &aad,
                    out,
                    GenericArray::from_slice(tag),
                )
                .is_ok();
        });
        Ok(ok.then_some(master))
    }

    fn aad(kdf: KdfParams, salt: &[u8; SALT_LEN]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(SLOT_AAD_LABEL.len() + 13 + SALT_LEN);
        aad.extend_from_slice(SLOT_AAD_LABEL);
        aad.push(SLOT_PASSWORD);
        aad.extend_from_slice(&kdf.memory_kib().to_be_bytes());
        aad.extend_from_slice(&kdf.iterations().to_be_bytes());
        aad.extend_from_slice(&kdf.parallelism().to_be_bytes());
        aad.extend_from_slice(salt);
        aad
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.kdf.memory_kib().to_be_bytes());
        out.extend_from_slice(&self.kdf.iterations().to_be_bytes());
        out.extend_from_slice(&self.kdf.parallelism().to_be_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.wrapped);
        out
    }

    /// Parses slot data; the KDF parameters are *not* checked here (see [`Self::open`]).
    pub(crate) fn decode(data: &[u8]) -> Result<Self, FormatError> {
        if data.len() != Self::LEN {
            return Err(FormatError::Malformed(format!(
                "a password slot of {} bytes (expected {})",
                data.len(),
                Self::LEN
            )));
        }
        let mut reader = Reader {
            bytes: data,
            pos: 0,
        };
        let (m, t, p) = (reader.u32()?, reader.u32()?, reader.u32()?);
        Ok(Self {
            kdf: KdfParams::unchecked(m, t, p),
            salt: reader.array()?,
            nonce: reader.array()?,
            wrapped: reader.array()?,
        })
    }
}

/// Seals `body` (and the unlock policy, if any) under `master` behind `header`: the
/// complete file, version 2 with a policy, else version 1.
pub(crate) fn seal(
    header: &Header,
    body: &Body,
    policy: Option<&UnlockPolicy>,
    master: &Secret32,
) -> Result<Vec<u8>, String> {
    let version = if policy.is_some() {
        FORMAT_VERSION_POLICY
    } else {
        FORMAT_VERSION
    };
    let header_bytes = header.encode(version);
    let mut plain = encode_body(body, policy)?;
    let nonce = Nonce::random();
    cipher(master)
        .encrypt_in_place(nonce.as_array(), &header_bytes, &mut *plain)
        .map_err(|_| "the keystore body is too large to seal".to_owned())?;
    let mut out = Vec::with_capacity(header_bytes.len() + NONCE_LEN + plain.len());
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(&nonce.0);
    out.extend_from_slice(&plain);
    Ok(out)
}

/// postcard(body), zero-padded to a multiple of 256 bytes, in a zeroizing buffer with room
/// for the tag, so that neither serialising nor sealing reallocates (a reallocation would
/// leave a copy of the secrets in freed memory).
fn encode_body(body: &Body, policy: Option<&UnlockPolicy>) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut capacity = 4096 + body.entries.len() * 512 + body.slots.len() * 256;
    loop {
        let mut buf = Zeroizing::new(vec![0u8; capacity]);
        match postcard::to_slice(body, &mut buf[..]) {
            Ok(used) => {
                let mut used = used.len();
                if let Some(policy) = policy {
                    let bytes = policy.encode();
                    if let Some(room) = buf.get_mut(used..used + bytes.len()) {
                        room.copy_from_slice(&bytes);
                    }
                    used += bytes.len();
                }
                let padded = used.div_ceil(BODY_PADDING) * BODY_PADDING;
                if padded + TAG_LEN <= capacity {
                    buf.truncate(padded);
                    return Ok(buf);
                }
            }
            Err(postcard::Error::SerializeBufferFull) => {}
            Err(e) => return Err(format!("cannot encode the keystore body: {e}")),
        }
        capacity = capacity.saturating_mul(2);
        if capacity as u64 > MAX_KEYSTORE_LEN * 2 {
            return Err("the keystore body exceeds 16 MiB".into());
        }
    }
}

/// Opens the body of `file` (whose header is `header_len` bytes) with `master`, and the
/// unlock policy after it in a version 2 file.
pub(crate) fn open_body(
    file: &[u8],
    header_len: usize,
    master: &Secret32,
) -> Result<(Body, Option<UnlockPolicy>), FormatError> {
    let (header, rest) = file
        .split_at_checked(header_len)
        .ok_or_else(|| FormatError::Malformed("truncated".into()))?;
    let Some((nonce, sealed)) = rest.split_at_checked(NONCE_LEN) else {
        return Err(FormatError::Malformed("truncated before the body".into()));
    };
    if sealed.len() < TAG_LEN {
        return Err(FormatError::Malformed("truncated body".into()));
    }
    let mut plain = Zeroizing::new(Vec::with_capacity(sealed.len()));
    plain.extend_from_slice(sealed);
    cipher(master)
        .decrypt_in_place(GenericArray::from_slice(nonce), header, &mut *plain)
        .map_err(|_| FormatError::Authentication)?;
    let (body, rest) = postcard::take_from_bytes::<Body>(&plain)
        .map_err(|e| FormatError::Malformed(format!("the body does not decode: {e}")))?;
    let (policy, padding) = if file.get(MAGIC.len()) == Some(&FORMAT_VERSION_POLICY) {
        let (policy, padding) = UnlockPolicy::decode(rest).map_err(FormatError::Malformed)?;
        (Some(policy), padding)
    } else {
        (None, rest)
    };
    if padding.len() >= BODY_PADDING || padding.iter().any(|b| *b != 0) {
        return Err(FormatError::Malformed("bad padding after the body".into()));
    }
    Ok((body, policy))
}
