//! FIPS 203 known-answer tests for the ML-KEM-768 half of hybrid recipients, through the
//! same `libcrux-ml-kem` calls `hybrid.rs` makes (seed -> keys, the encapsulation key's
//! check, encapsulation with given randomness, decapsulation).
//!
//! Vectors: `core/tests/data/mlkem768_acvp.json`, a subset of NIST's ACVP
//! "internal projection" files for ML-KEM-keyGen-FIPS203 and ML-KEM-encapDecap-FIPS203
//! (the file names its source and commit): three key generations, three encapsulations,
//! and four decapsulations (two with a modified ciphertext, which FIPS 203's implicit
//! rejection answers with a pseudo-random key, pinned by the vector). Each test checks it
//! ran as many cases as the file holds.

use super::*;

use serde::Deserialize;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const VECTORS: &str = include_str!("../tests/data/mlkem768_acvp.json");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    source: String,
    key_gen: Vec<KeyGen>,
    encapsulation: Vec<Encaps>,
    decapsulation: Decaps,
}

#[derive(Deserialize)]
struct KeyGen {
    d: String,
    z: String,
    ek: String,
    dk: String,
}

#[derive(Deserialize)]
struct Encaps {
    ek: String,
    m: String,
    c: String,
    k: String,
}

#[derive(Deserialize)]
struct Decaps {
    dk: String,
    tests: Vec<DecapsCase>,
}

#[derive(Deserialize)]
struct DecapsCase {
    reason: String,
    c: String,
    k: String,
}

fn file() -> Result<File, Box<dyn std::error::Error>> {
    let file: File = serde_json::from_str(VECTORS)?;
    assert!(file.source.contains("ACVP"));
    Ok(file)
}

#[test]
fn key_generation_matches_fips_203_vectors() -> TestResult {
    let file = file()?;
    assert_eq!(file.key_gen.len(), 3);
    for case in &file.key_gen {
        let mut seed = hex::decode(&case.d)?;
        seed.extend(hex::decode(&case.z)?);
        let seed: [u8; 64] = seed.as_slice().try_into()?;
        let (dk, ek) = MlKemSecret::from_seed(&seed);
        assert_eq!(hex::encode(ek), case.ek);
        // ACVP publishes the expanded decapsulation key, the form the secret holds.
        assert_eq!(hex::encode(dk.0.as_slice()), case.dk);
        assert!(mlkem768::validate_public_key(&MlKem768PublicKey::from(&ek)));
    }
    Ok(())
}

#[test]
fn encapsulation_matches_fips_203_vectors() -> TestResult {
    let file = file()?;
    assert_eq!(file.encapsulation.len(), 3);
    for case in &file.encapsulation {
        let ek_bytes: [u8; MLKEM_PUBLIC_LEN] = hex::decode(&case.ek)?.as_slice().try_into()?;
        let ek = MlKem768PublicKey::from(&ek_bytes);
        assert!(mlkem768::validate_public_key(&ek), "vector ek rejected");
        let m: [u8; 32] = hex::decode(&case.m)?.as_slice().try_into()?;
        let (c, k) = mlkem768::encapsulate(&ek, m);
        assert_eq!(hex::encode(c.as_slice()), case.c);
        assert_eq!(hex::encode(k), case.k);
        assert_eq!(c.as_slice().len(), MLKEM_CIPHERTEXT_LEN);
    }
    Ok(())
}

#[test]
fn decapsulation_matches_fips_203_vectors_including_implicit_rejection() -> TestResult {
    let file = file()?;
    let cases = &file.decapsulation.tests;
    assert_eq!(cases.len(), 4);
    assert!(cases.iter().any(|c| c.reason == "modify ciphertext"));
    assert!(cases.iter().any(|c| c.reason == "no modification"));
    let dk_bytes = hex::decode(&file.decapsulation.dk)?;
    let dk = MlKemSecret(Box::new(
        MlKem768PrivateKey::try_from(dk_bytes.as_slice())
            .map_err(|_| "vector dk has the wrong length")?,
    ));
    for case in cases {
        let c: [u8; MLKEM_CIPHERTEXT_LEN] = hex::decode(&case.c)?.as_slice().try_into()?;
        // FIPS 203's check of a decapsulation key from outside (section 7.3).
        assert!(mlkem768::validate_private_key(
            &dk.0,
            &MlKem768Ciphertext::from(&c)
        ));
        let k = dk.decapsulate(&c);
        assert_eq!(hex::encode(k.as_slice()), case.k, "{}", case.reason);
    }
    Ok(())
}
