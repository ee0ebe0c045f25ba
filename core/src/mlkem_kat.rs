//! FIPS 203 known-answer tests for the ML-KEM-768 half of hybrid recipients, through the
//! same `ml-kem` calls `hybrid.rs` makes (seed -> keys, deterministic encapsulation,
//! decapsulation).
//!
//! Vectors: `core/tests/data/mlkem768_acvp.json`, a subset of NIST's ACVP
//! "internal projection" files for ML-KEM-keyGen-FIPS203 and ML-KEM-encapDecap-FIPS203
//! (the file names its source and commit): three key generations, three encapsulations,
//! and four decapsulations (two with a modified ciphertext, which FIPS 203's implicit
//! rejection answers with a pseudo-random key, pinned by the vector). Each test checks it
//! ran as many cases as the file holds.

#![allow(deprecated)] // The expanded decapsulation key form is what ACVP publishes.

use super::*;

use ml_kem::{ExpandedKeyEncoding, FromSeed, MlKem768};
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
        let (dk, ek) = MlKem768::from_seed(&Seed::from(seed));
        assert_eq!(hex::encode(ek.to_bytes()), case.ek);
        assert_eq!(hex::encode(dk.to_expanded_bytes()), case.dk);
        // The public half parses through the hybrid key's own check.
        assert_eq!(ek.to_bytes().len(), MLKEM_PUBLIC_LEN);
    }
    Ok(())
}

#[test]
fn encapsulation_matches_fips_203_vectors() -> TestResult {
    let file = file()?;
    assert_eq!(file.encapsulation.len(), 3);
    for case in &file.encapsulation {
        let ek_bytes: [u8; MLKEM_PUBLIC_LEN] = hex::decode(&case.ek)?.as_slice().try_into()?;
        let ek = EncapsulationKey::new(&ml_kem::array::Array::from(ek_bytes))
            .map_err(|_| "vector ek rejected")?;
        let m: [u8; 32] = hex::decode(&case.m)?.as_slice().try_into()?;
        let (c, k) = ek.encapsulate_deterministic(&B32::from(m));
        assert_eq!(hex::encode(c.as_slice()), case.c);
        assert_eq!(hex::encode(k.as_slice()), case.k);
        assert_eq!(c.len(), MLKEM_CIPHERTEXT_LEN);
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
    let expanded = ml_kem::ExpandedDecapsulationKey::<MlKem768>::try_from(dk_bytes.as_slice())
        .map_err(|_| "vector dk has the wrong length")?;
    let dk = DecapsulationKey::from_expanded(&expanded).map_err(|_| "vector dk rejected")?;
    for case in cases {
        let c: [u8; MLKEM_CIPHERTEXT_LEN] = hex::decode(&case.c)?.as_slice().try_into()?;
        let k = dk.decapsulate(&Ciphertext::from(c));
        assert_eq!(hex::encode(k.as_slice()), case.k, "{}", case.reason);
    }
    Ok(())
}
