//! Tests of hybrid wrapping: round trip, both halves needed, tampering, the text form and
//! the frozen vectors of our combined format (`core/tests/data/hybrid_v1.json`).

use super::*;

use crate::ecies::SecretKey;
use crate::{
    AuthorityKey, AuthorityRoot, AuthoritySalt, DataKey, EnvelopeError, FileId, FileSecret,
    KeyEnvelope, Recipient, RecipientKind,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const FROZEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hybrid_v1.json");

/// `right`'s public key, with one half of its secret replaced by `other`'s.
fn with_wrong_half(
    right: &HybridSecretKey,
    other: &HybridSecretKey,
    wrong_pq: bool,
) -> HybridSecretKey {
    let (ec, pq) = if wrong_pq {
        (&right.ec, &other.pq)
    } else {
        (&other.ec, &right.pq)
    };
    let ec = SecretKey::from_bytes(&ec.to_bytes()).unwrap_or_else(|_| SecretKey::generate());
    HybridSecretKey {
        seed: right.seed.clone(),
        ec,
        pq: MlKemSecret(Box::new((*pq.0).clone())),
        public: right.public.clone(),
    }
}

#[test]
fn wraps_and_unwraps_with_the_documented_sizes() -> TestResult {
    let sk = HybridSecretKey::generate();
    let pk = sk.public_key();
    assert_eq!(pk.to_bytes().len(), HYBRID_PUBLIC_LEN);
    assert_eq!(HYBRID_PUBLIC_LEN, 1217);
    let dek = [0x5a; 32];
    let wrapped = wrap(&pk, &dek);
    assert_eq!(wrapped.len(), 32 + HYBRID_OVERHEAD);
    assert_eq!(wrapped.len(), 1201);
    assert_eq!(unwrap(&sk, &wrapped)?.as_slice(), &dek);
    // Fresh randomness: two wraps of the same key differ.
    assert_ne!(wrap(&pk, &dek), wrapped);
    // The same seed gives the same keys.
    let again = HybridSecretKey::from_seed(&sk.to_seed())?;
    assert_eq!(again.public_key(), pk);
    assert_eq!(format!("{sk:?}"), "HybridSecretKey(..)");
    Ok(())
}

#[test]
fn neither_half_alone_unwraps() -> TestResult {
    let sk = HybridSecretKey::generate();
    let other = HybridSecretKey::generate();
    let wrapped = wrap(&sk.public_key(), &[1; 32]);
    for wrong_pq in [true, false] {
        let half = with_wrong_half(&sk, &other, wrong_pq);
        assert_eq!(
            unwrap(&half, &wrapped).map(|p| p.to_vec()),
            Err(HybridError::DecryptionFailed),
            "wrong {} half",
            if wrong_pq { "ML-KEM" } else { "secp256k1" }
        );
    }
    // The classical half's key alone cannot read a hybrid wrap through ECIES either.
    assert!(crate::ecies::decrypt(&sk.ec, &wrapped).is_err());
    assert_eq!(
        unwrap(&other, &wrapped).map(|p| p.to_vec()),
        Err(HybridError::DecryptionFailed)
    );
    Ok(())
}

#[test]
fn every_bit_flip_and_truncation_fails() {
    let sk = HybridSecretKey::generate();
    let wrapped = wrap(&sk.public_key(), &[2; 32]);
    // Every byte, one bit each (all 9,608 bits would take long in the ML-KEM half).
    for i in 0..wrapped.len() {
        let mut tampered = wrapped.clone();
        tampered[i] ^= 1 << (i % 8);
        assert!(unwrap(&sk, &tampered).is_err(), "byte {i}");
    }
    for len in [0, 1, 64, 65, 1152, 1153, 1168, 1200] {
        assert!(unwrap(&sk, &wrapped[..len]).is_err(), "len {len}");
    }
    let mut extended = wrapped;
    extended.push(0);
    assert_eq!(
        unwrap(&sk, &extended).map(|p| p.to_vec()),
        Err(HybridError::DecryptionFailed)
    );
}

#[test]
fn recipient_text_has_a_checksum() -> TestResult {
    let pk = HybridSecretKey::generate().public_key();
    let text = pk.to_string();
    assert!(text.starts_with(HYBRID_RECIPIENT_PREFIX));
    assert_eq!(text.len(), 5 + (HYBRID_PUBLIC_LEN + 4) * 8 / 5 + 1);
    assert_eq!(text.parse::<HybridPublicKey>()?, pk);
    assert_eq!(
        format!("  {}\n", text.to_uppercase()).parse::<HybridPublicKey>()?,
        pk
    );
    // A typo anywhere (one character changed) is caught by the checksum.
    for at in [5, 100, 1000, text.len() - 2] {
        let mut typo: Vec<u8> = text.clone().into_bytes();
        typo[at] = if typo[at] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo)?;
        assert_eq!(
            typo.parse::<HybridPublicKey>(),
            Err(HybridError::Checksum),
            "at {at}"
        );
    }
    assert_eq!(
        text[..text.len() - 1].parse::<HybridPublicKey>(),
        Err(HybridError::Checksum)
    );
    assert!(matches!(
        text[4..].parse::<HybridPublicKey>(),
        Err(HybridError::BadText(_))
    ));
    // Through the general recipient parser: hybrid, classical, and one-line errors.
    assert_eq!(text.parse::<Recipient>()?.kind(), RecipientKind::Hybrid);
    let classical = SecretKey::generate().public_key();
    assert_eq!(
        classical.to_string().parse::<Recipient>()?,
        Recipient::Classical(classical)
    );
    let err = format!("{}x", &text[..text.len() - 1])
        .parse::<Recipient>()
        .map_err(|e| e.to_string());
    assert!(
        matches!(&err, Err(m) if m.contains("checksum") && !m.contains('\n')),
        "{err:?}"
    );
    assert!("nonsense".parse::<Recipient>().is_err());
    Ok(())
}

#[test]
fn invalid_public_keys_are_refused() -> TestResult {
    let bytes = HybridSecretKey::generate().public_key().to_bytes();
    assert!(HybridPublicKey::from_bytes(&bytes[1..]).is_err());
    let mut bad_ec = bytes.clone();
    bad_ec[0] = 0x05;
    assert_eq!(
        HybridPublicKey::from_bytes(&bad_ec),
        Err(HybridError::InvalidPublicKey)
    );
    // An ML-KEM coefficient of 0xfff (>= q = 3329) fails FIPS 203's modulus check.
    let mut bad_pq = bytes;
    bad_pq[EC_PUBLIC_LEN] = 0xff;
    bad_pq[EC_PUBLIC_LEN + 1] |= 0x0f;
    assert_eq!(
        HybridPublicKey::from_bytes(&bad_pq),
        Err(HybridError::InvalidPublicKey)
    );
    Ok(())
}

fn authority() -> Result<AuthorityKey, crate::AuthorityError> {
    AuthorityKey::derive(
        &AuthorityRoot::from_bytes(&[8; 32]),
        &AuthoritySalt::from_bytes([10; 32]),
    )
}

#[test]
fn a_file_shared_to_a_hybrid_recipient_opens_there_and_not_with_either_half() -> TestResult {
    let owner = SecretKey::generate();
    let friend = HybridSecretKey::generate();
    let authority = authority()?;
    let dek = DataKey::generate();
    let file_id = FileId::from_bytes([3; 32]);
    let recipients = [
        Recipient::Classical(owner.public_key()),
        Recipient::Hybrid(friend.public_key()),
        Recipient::Hybrid(friend.public_key()),
    ];
    let envelope = KeyEnvelope::seal_to(file_id, 2, &dek, &recipients, &authority)?;
    assert_eq!(envelope.version(), crate::ENVELOPE_VERSION);
    assert_eq!(envelope.wrapped().len(), 2, "duplicate recipient kept once");
    let bytes = envelope.to_bytes();
    let parsed = KeyEnvelope::from_verified_bytes(&bytes, &authority.public())?;
    assert!(parsed.names(&friend.public_key().key_id()));
    assert_eq!(parsed.open([&friend])?.to_bytes(), dek.to_bytes());
    assert_eq!(parsed.open([&owner])?.to_bytes(), dek.to_bytes());
    let keyring = [
        FileSecret::Classical(SecretKey::generate()),
        FileSecret::Hybrid(HybridSecretKey::from_seed(&friend.to_seed())?),
    ];
    assert_eq!(parsed.open(&keyring)?.to_bytes(), dek.to_bytes());

    let other = HybridSecretKey::generate();
    for wrong_pq in [true, false] {
        let half = with_wrong_half(&friend, &other, wrong_pq);
        assert!(matches!(
            parsed.open([&half]),
            Err(EnvelopeError::BadHybridWrappedKey(
                HybridError::DecryptionFailed
            ))
        ));
    }
    // Holding only the secp256k1 half as a classical key: not a recipient at all.
    let ec_only = SecretKey::from_bytes(&friend.ec.to_bytes())?;
    assert!(matches!(
        parsed.open([&ec_only]),
        Err(EnvelopeError::NoWrappedKey { tried: 1 })
    ));
    Ok(())
}

#[test]
fn envelope_sizes_and_limits() -> TestResult {
    let authority = authority()?;
    let dek = DataKey::generate();
    let file_id = FileId::from_bytes([4; 32]);
    let hybrid: Vec<Recipient> = (0..60)
        .map(|_| Recipient::Hybrid(HybridSecretKey::generate().public_key()))
        .collect();
    // About 50 hybrid recipients fit the wire's 64 KiB envelope limit; more are refused.
    assert!(KeyEnvelope::seal_to(file_id, 1, &dek, &hybrid[..50], &authority).is_ok());
    assert!(matches!(
        KeyEnvelope::seal_to(file_id, 1, &dek, &hybrid, &authority),
        Err(EnvelopeError::Malformed(_))
    ));
    // A hybrid wrapped key of any other length does not parse.
    let one = KeyEnvelope::seal_to(file_id, 1, &dek, &hybrid[..1], &authority)?;
    let mut bytes = one.to_bytes();
    let len_at = 1 + 32 + 1 + 1 + 32 + 1; // version, file id, sequence, count, key id, kind
    assert_eq!(bytes[len_at..len_at + 2], [0xb1, 0x09], "varint 1201");
    bytes[len_at] = 0xb0;
    bytes.remove(len_at + 2);
    assert!(KeyEnvelope::from_bytes(&bytes).is_err());
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Frozen {
    seed: String,
    public_key: String,
    recipient: String,
    key_id: String,
    ephemeral_secret: String,
    mlkem_m: String,
    plaintext: String,
    wrapped: String,
    /// A version 3 envelope (authority root 08.., salt 0a..) to a classical key (secret
    /// 09..) and to this hybrid key.
    envelope_v3: String,
    classical_secret: String,
}

#[test]
fn frozen_combined_format_vectors() -> TestResult {
    // A change to the seed expansion, the combiner, the wrap layout, the text form, the key
    // id or envelope v3 changes these bytes and fails here. Regenerate deliberately with
    // DATAMESH_REGENERATE_VECTORS=1 (and bump the format's version).
    let seed = [0x11; 32];
    let sk = HybridSecretKey::from_seed(&seed)?;
    let pk = sk.public_key();
    let ephemeral = k256::SecretKey::from_slice(&[0x22; 32])?;
    let m = [0x33; 32];
    let plaintext = [0x44; 32];
    let wrapped = wrap_with(&pk, &plaintext, &ephemeral, &m).ok_or("wrap")?;
    if std::env::var_os("DATAMESH_REGENERATE_VECTORS").is_some() {
        let classical = SecretKey::from_bytes(&[9; 32])?;
        let envelope = KeyEnvelope::seal_to(
            FileId::from_bytes([5; 32]),
            7,
            &DataKey::from_bytes(&plaintext),
            &[
                Recipient::Classical(classical.public_key()),
                Recipient::Hybrid(pk.clone()),
            ],
            &authority()?,
        )?;
        let v = Frozen {
            seed: hex::encode(seed),
            public_key: hex::encode(pk.to_bytes()),
            recipient: pk.to_string(),
            key_id: pk.key_id().to_string(),
            ephemeral_secret: hex::encode([0x22; 32]),
            mlkem_m: hex::encode(m),
            plaintext: hex::encode(plaintext),
            wrapped: hex::encode(&wrapped),
            envelope_v3: hex::encode(envelope.to_bytes()),
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

    let envelope_bytes = hex::decode(&frozen.envelope_v3)?;
    let envelope = KeyEnvelope::from_verified_bytes(&envelope_bytes, &authority()?.public())?;
    assert_eq!(envelope.version(), 3);
    assert_eq!(envelope.to_bytes(), envelope_bytes);
    let kinds: Vec<_> = envelope.wrapped().iter().map(|w| w.kind).collect();
    assert_eq!(kinds, [RecipientKind::Classical, RecipientKind::Hybrid]);
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
