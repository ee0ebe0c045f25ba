//! Tests of P-256 wrapping: round trip, wrong key and tampering, the text form, envelope
//! version 4 and the frozen vectors of our format (`core/tests/data/p256_v1.json`).

use super::*;

use crate::ecies::SecretKey;
use crate::{
    AuthorityKey, AuthorityRoot, AuthoritySalt, DataKey, EnvelopeError, FileId, FileSecret,
    HybridSecretKey, KeyEnvelope, PolicyError, Recipient, RecipientKind, RecipientPolicy,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const FROZEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/p256_v1.json");

fn authority() -> Result<AuthorityKey, crate::AuthorityError> {
    AuthorityKey::derive(
        &AuthorityRoot::from_bytes(&[8; 32]),
        &AuthoritySalt::from_bytes([10; 32]),
    )
}

#[test]
fn wraps_and_unwraps_with_the_documented_sizes() -> TestResult {
    let sk = P256SecretKey::generate();
    let pk = sk.public_key();
    let dek = [7u8; 32];
    let wrapped = wrap(&pk, &dek);
    assert_eq!(wrapped.len(), 113);
    assert_eq!(P256_OVERHEAD, 81);
    assert_eq!(unwrap(&sk, &wrapped)?.as_slice(), &dek);
    // Fresh ephemeral key every time.
    assert_ne!(wrap(&pk, &dek), wrapped);
    // Another key does not open it.
    assert_eq!(
        unwrap(&P256SecretKey::generate(), &wrapped).err(),
        Some(P256Error::DecryptionFailed)
    );
    Ok(())
}

#[test]
fn every_bit_flip_and_truncation_fails() {
    let sk = P256SecretKey::generate();
    let wrapped = wrap(&sk.public_key(), &[9u8; 32]);
    for i in 0..wrapped.len() {
        let mut bad = wrapped.clone();
        bad[i] ^= 0x01;
        assert!(unwrap(&sk, &bad).is_err(), "flip at {i} accepted");
    }
    for len in 0..P256_OVERHEAD {
        assert!(matches!(
            unwrap(&sk, &wrapped[..len]),
            Err(P256Error::Truncated { .. })
        ));
    }
    assert!(unwrap(&sk, &wrapped[..wrapped.len() - 1]).is_err());
}

#[test]
fn recipient_text_has_a_checksum() -> TestResult {
    let pk = P256SecretKey::generate().public_key();
    let text = pk.to_string();
    assert!(text.starts_with("dmp256v1"), "{text}");
    assert_eq!(text.len(), 68);
    assert_eq!(text.parse::<P256PublicKey>()?, pk);
    assert_eq!(
        format!("  {}\n", text.to_uppercase()).parse::<P256PublicKey>()?,
        pk
    );
    let recipient: Recipient = text.parse()?;
    assert_eq!(recipient, Recipient::P256(pk));
    assert_eq!(recipient.kind(), RecipientKind::P256);
    assert_eq!(recipient.to_string(), text);
    // Every single-character change is caught (checksum, or not base32hex).
    for i in "dmp256v1".len()..text.len() {
        let mut chars: Vec<char> = text.chars().collect();
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert!(
            typo.parse::<P256PublicKey>().is_err(),
            "typo at {i} accepted"
        );
    }
    assert_eq!(
        text[..text.len() - 1].parse::<P256PublicKey>().err(),
        Some(P256Error::Checksum)
    );
    assert!(matches!(
        "dmpq1abc".parse::<P256PublicKey>(),
        Err(P256Error::BadText(_))
    ));
    Ok(())
}

#[test]
fn invalid_public_keys_are_refused() -> TestResult {
    let pk = P256SecretKey::generate().public_key();
    let bytes = pk.to_bytes();
    assert_eq!(P256PublicKey::from_bytes(&bytes)?, pk);
    // Uncompressed (65 bytes), other lengths, a bad tag, x off the curve.
    let uncompressed = pk.0.to_encoded_point(false);
    assert!(P256PublicKey::from_bytes(uncompressed.as_bytes()).is_err());
    assert!(P256PublicKey::from_bytes(&bytes[..32]).is_err());
    let mut bad_tag = bytes;
    bad_tag[0] = 0x05;
    assert!(P256PublicKey::from_bytes(&bad_tag).is_err());
    // About half of all x have no point: some small x must be refused.
    assert!((1u8..=40).any(|x| {
        let mut off_curve = [0u8; 33];
        off_curve[0] = 0x02;
        off_curve[32] = x;
        P256PublicKey::from_bytes(&off_curve).is_err()
    }));
    // Zero and the group order are not secret keys.
    assert!(P256SecretKey::from_bytes(&[0; 32]).is_err());
    assert!(P256SecretKey::from_bytes(&[0xff; 32]).is_err());
    Ok(())
}

#[test]
fn envelopes_with_a_p256_recipient_are_version_4_and_open_only_there() -> TestResult {
    let owner = P256SecretKey::generate();
    let friend = HybridSecretKey::generate();
    let authority = authority()?;
    let dek = DataKey::generate();
    let file_id = FileId::from_bytes([3; 32]);
    let recipients = [
        Recipient::P256(owner.public_key()),
        Recipient::Hybrid(friend.public_key()),
    ];
    let envelope = KeyEnvelope::seal_to(file_id, 2, &dek, &recipients, &authority)?;
    assert_eq!(envelope.version(), crate::ENVELOPE_VERSION_P256);
    let bytes = envelope.to_bytes();
    assert_eq!(bytes[0], 4);
    let parsed = KeyEnvelope::from_verified_bytes(&bytes, &authority.public())?;
    let kinds: Vec<_> = parsed.wrapped().iter().map(|w| w.kind).collect();
    assert_eq!(kinds, [RecipientKind::P256, RecipientKind::Hybrid]);
    assert_eq!(parsed.open([&owner])?.to_bytes(), dek.to_bytes());
    assert_eq!(parsed.open([&friend])?.to_bytes(), dek.to_bytes());
    let keyring = [
        FileSecret::Classical(SecretKey::generate()),
        FileSecret::P256(owner.clone()),
    ];
    assert_eq!(parsed.open(&keyring)?.to_bytes(), dek.to_bytes());
    assert!(matches!(
        parsed.open([&P256SecretKey::generate()]),
        Err(EnvelopeError::NoWrappedKey { tried: 1 })
    ));

    // Version 4 without a P-256 recipient, or version 3 with one: refused (one version
    // per body), whatever the signature.
    let classical_only = KeyEnvelope::seal_to(
        file_id,
        3,
        &dek,
        &[Recipient::Classical(SecretKey::generate().public_key())],
        &authority,
    )?;
    assert_eq!(classical_only.version(), crate::ENVELOPE_VERSION);
    let mut relabelled = classical_only.to_bytes();
    relabelled[0] = 4;
    assert!(matches!(
        KeyEnvelope::from_bytes(&relabelled),
        Err(EnvelopeError::Malformed(_))
    ));
    let mut downgraded = bytes.clone();
    downgraded[0] = 3;
    assert!(matches!(
        KeyEnvelope::from_bytes(&downgraded),
        Err(EnvelopeError::Malformed(_))
    ));
    // A P-256 wrapped key of another length does not parse.
    let one = KeyEnvelope::seal_to(file_id, 1, &dek, &recipients[..1], &authority)?;
    let mut bytes = one.to_bytes();
    let len_at = 1 + 32 + 1 + 1 + 32 + 1; // version, file id, sequence, count, key id, kind
    assert_eq!(bytes[len_at], 113, "varint 113");
    bytes[len_at] = 112;
    bytes.remove(len_at + 1);
    assert!(KeyEnvelope::from_bytes(&bytes).is_err());
    // An unknown version: refused by its byte.
    let mut future = one.to_bytes();
    future[0] = 5;
    assert!(matches!(
        KeyEnvelope::from_bytes(&future),
        Err(EnvelopeError::UnsupportedVersion { found: 5, .. })
    ));
    Ok(())
}

#[test]
fn the_p256_only_policy_refuses_every_other_kind() {
    let p256 = Recipient::P256(P256SecretKey::generate().public_key());
    let classical = Recipient::Classical(SecretKey::generate().public_key());
    let hybrid = Recipient::Hybrid(HybridSecretKey::generate().public_key());
    let policy: RecipientPolicy = "p256-only".parse().unwrap_or_default();
    assert_eq!(policy, RecipientPolicy::P256Only);
    assert_eq!(policy.owner_kind(), RecipientKind::P256);
    assert!(policy.check(std::slice::from_ref(&p256)).is_ok());
    for other in [&classical, &hybrid] {
        let err = policy.check(&[p256.clone(), other.clone()]).err();
        assert!(
            matches!(&err, Some(PolicyError::NotP256Recipient { kind, .. }) if *kind == other.kind()),
            "{err:?}"
        );
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("p256-only") && !text.contains('\n'), "{text}");
    }
    // pq-required refuses P-256 (classical-only); classical and hybrid accept it.
    assert!(matches!(
        RecipientPolicy::PqRequired.check(std::slice::from_ref(&p256)),
        Err(PolicyError::ClassicalRecipient { .. })
    ));
    assert!(
        RecipientPolicy::Hybrid
            .check(&[p256.clone(), classical])
            .is_ok()
    );
    assert!(RecipientPolicy::Classical.check(&[p256]).is_ok());
}

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Frozen {
    secret: String,
    public_key: String,
    recipient: String,
    key_id: String,
    ephemeral_secret: String,
    plaintext: String,
    wrapped: String,
    /// A version 4 envelope (authority root 08.., salt 0a..) to a classical key (secret
    /// 09..) and to this P-256 key.
    envelope_v4: String,
    classical_secret: String,
}

#[test]
fn frozen_p256_format_vectors() -> TestResult {
    // A change to the key derivation, the wrap layout, the text form, the key id or
    // envelope v4 changes these bytes and fails here. Regenerate deliberately with
    // DATAMESH_REGENERATE_VECTORS=1 (and bump the format's version).
    let secret = [0x11; 32];
    let sk = P256SecretKey::from_bytes(&secret)?;
    let pk = sk.public_key();
    let ephemeral = p256::SecretKey::from_slice(&[0x22; 32])?;
    let plaintext = [0x44; 32];
    let wrapped = wrap_with(&pk, &plaintext, &ephemeral).ok_or("wrap")?;
    if std::env::var_os("DATAMESH_REGENERATE_VECTORS").is_some() {
        let classical = SecretKey::from_bytes(&[9; 32])?;
        let envelope = KeyEnvelope::seal_to(
            FileId::from_bytes([5; 32]),
            7,
            &DataKey::from_bytes(&plaintext),
            &[
                Recipient::Classical(classical.public_key()),
                Recipient::P256(pk),
            ],
            &authority()?,
        )?;
        let v = Frozen {
            secret: hex::encode(secret),
            public_key: hex::encode(pk.to_bytes()),
            recipient: pk.to_string(),
            key_id: pk.key_id().to_string(),
            ephemeral_secret: hex::encode([0x22; 32]),
            plaintext: hex::encode(plaintext),
            wrapped: hex::encode(&wrapped),
            envelope_v4: hex::encode(envelope.to_bytes()),
            classical_secret: hex::encode(*classical.to_bytes()),
        };
        std::fs::write(FROZEN, serde_json::to_string_pretty(&v)? + "\n")?;
    }
    let frozen: Frozen = serde_json::from_str(&std::fs::read_to_string(FROZEN)?)?;
    assert_eq!(frozen.public_key, hex::encode(pk.to_bytes()));
    assert_eq!(frozen.recipient, pk.to_string());
    assert_eq!(frozen.key_id, pk.key_id().to_string());
    assert_eq!(frozen.wrapped, hex::encode(&wrapped));
    assert_eq!(
        unwrap(&sk, &hex::decode(&frozen.wrapped)?)?.as_slice(),
        &plaintext
    );

    let envelope_bytes = hex::decode(&frozen.envelope_v4)?;
    let envelope = KeyEnvelope::from_verified_bytes(&envelope_bytes, &authority()?.public())?;
    assert_eq!(envelope.version(), 4);
    assert_eq!(envelope.to_bytes(), envelope_bytes);
    let kinds: Vec<_> = envelope.wrapped().iter().map(|w| w.kind).collect();
    assert_eq!(kinds, [RecipientKind::Classical, RecipientKind::P256]);
    assert_eq!(envelope.open([&sk])?.to_bytes().as_slice(), &plaintext);
    let classical: [u8; 32] = hex::decode(&frozen.classical_secret)?
        .as_slice()
        .try_into()?;
    let classical = SecretKey::from_bytes(&classical)?;
    assert_eq!(
        envelope.open([&classical])?.to_bytes().as_slice(),
        &plaintext
    );
    Ok(())
}
