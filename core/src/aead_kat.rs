//! Known-answer tests for AES-256-GCM, run through [`raw_seal`] and [`raw_open`]: the same
//! cipher calls that seal and open every segment, minus the nonce discipline.
//!
//! Vectors live in `core/tests/data/`; each file names its source in its header:
//! - `aes_gcm_wycheproof_256.json`: Project Wycheproof, every case with a 256-bit key and a
//!   96-bit IV, the invalid ones (modified tags) included;
//! - `aes_gcm_nist_256.json`: test cases 13-16 of the GCM specification (McGrew, Viega),
//!   the AES-256 ones with a 96-bit IV.
//!
//! Every case is checked both ways: a valid case must seal to exactly `ct || tag` and open
//! back to `msg` (and stop opening once a bit of it is flipped); an invalid case must not
//! open. Each test also checks that it ran as many cases as its file says it holds, so it
//! cannot pass on an empty or truncated file.

use super::*;

use std::error::Error;

use serde::Deserialize;

const WYCHEPROOF: &str = include_str!("../tests/data/aes_gcm_wycheproof_256.json");
const GCM_SPEC: &str = include_str!("../tests/data/aes_gcm_nist_256.json");

/// The part of a vector file (Wycheproof's `AeadTest` layout, one group) these tests read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VectorFile {
    key_size: u32,
    iv_size: u32,
    tag_size: u32,
    number_of_tests: usize,
    tests: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    tc_id: u32,
    comment: String,
    flags: Vec<String>,
    key: String,
    iv: String,
    aad: String,
    msg: String,
    ct: String,
    tag: String,
    result: Expected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expected {
    Valid,
    Invalid,
    /// Wycheproof's "legal but questionable". For AES-GCM that means an unusual IV or tag
    /// size; with the 96-bit IV and 128-bit tag our wrapper always uses there is nothing
    /// questionable left, so an acceptable case must behave exactly like a valid one.
    Acceptable,
}

/// How many cases of each kind ran (acceptable ones count as valid).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    valid: usize,
    invalid: usize,
}

/// Runs every case in `json`; fails if any case fails, if the file is not a 256-bit-key,
/// 96-bit-IV, 128-bit-tag group, or if the number of cases run differs from the file's
/// `numberOfTests`.
fn run(json: &str) -> Result<Tally, Box<dyn Error>> {
    let file: VectorFile = serde_json::from_str(json)?;
    let sizes = (file.key_size, file.iv_size, file.tag_size);
    if sizes != (256, 96, 128) {
        return Err(format!(
            "vector file is for (key, iv, tag) bits {sizes:?}, want (256, 96, 128)"
        )
        .into());
    }

    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for case in &file.tests {
        if let Err(why) = check(case) {
            failures.push(format!(
                "tcId {} ({:?}, flags {:?}): {why}",
                case.tc_id, case.comment, case.flags
            ));
        }
        match case.result {
            Expected::Valid | Expected::Acceptable => tally.valid += 1,
            Expected::Invalid => tally.invalid += 1,
        }
    }

    if !failures.is_empty() {
        return Err(format!(
            "{} of {} cases failed:\n{}",
            failures.len(),
            file.tests.len(),
            failures.join("\n")
        )
        .into());
    }
    assert_eq!(
        tally.valid + tally.invalid,
        file.number_of_tests,
        "cases run must equal the file's numberOfTests"
    );
    Ok(tally)
}

/// Checks one case through [`raw_seal`] and [`raw_open`].
fn check(case: &Case) -> Result<(), String> {
    let key: [u8; KEY_LEN] = decode_array(&case.key, "key")?;
    let iv: [u8; NONCE_LEN] = decode_array(&case.iv, "iv")?;
    let aad = decode(&case.aad, "aad")?;
    let msg = decode(&case.msg, "msg")?;
    let ct = decode(&case.ct, "ct")?;
    let tag = decode(&case.tag, "tag")?;
    if tag.len() != TAG_LEN {
        return Err(format!("tag is {} bytes, want {TAG_LEN}", tag.len()));
    }
    let expected: Vec<u8> = [ct.as_slice(), tag.as_slice()].concat();

    // What our seal makes of the message: msg || room for the tag, sealed in place.
    let mut sealed = msg.clone();
    sealed.resize(msg.len() + TAG_LEN, 0);
    raw_seal(&key, &iv, &aad, &mut sealed).map_err(|_| "seal refused".to_string())?;

    let mut buf = expected.clone();
    let opened = raw_open(&key, &iv, &aad, &mut buf).map(|plain| plain.to_vec());

    match case.result {
        Expected::Valid | Expected::Acceptable => {
            if sealed != expected {
                return Err(format!(
                    "seal gave {}, want {}{}",
                    hex::encode(&sealed),
                    case.ct,
                    case.tag
                ));
            }
            match opened {
                Ok(plain) if plain == msg => {}
                Ok(plain) => {
                    return Err(format!(
                        "open gave {}, want {}",
                        hex::encode(plain),
                        case.msg
                    ));
                }
                Err(OpenError) => return Err("open rejected a valid ciphertext".into()),
            }
            // The first bit (of the ciphertext, or of the tag when there is no ciphertext)
            // and the last bit of the tag both count.
            for (byte, mask) in [(0, 0x01), (expected.len() - 1, 0x80)] {
                let mut tampered = expected.clone();
                tampered[byte] ^= mask;
                if raw_open(&key, &iv, &aad, &mut tampered).is_ok() {
                    return Err(format!(
                        "open accepted the ciphertext with byte {byte} ^ {mask:#04x}"
                    ));
                }
            }
        }
        Expected::Invalid => {
            if opened.is_ok() {
                return Err("open accepted a ciphertext marked invalid".into());
            }
            if sealed == expected {
                return Err("seal produced the ciphertext marked invalid".into());
            }
        }
    }
    Ok(())
}

fn decode(hex_str: &str, what: &str) -> Result<Vec<u8>, String> {
    hex::decode(hex_str).map_err(|e| format!("{what}: {e}"))
}

fn decode_array<const N: usize>(hex_str: &str, what: &str) -> Result<[u8; N], String> {
    let bytes = decode(hex_str, what)?;
    <[u8; N]>::try_from(bytes.as_slice())
        .map_err(|_| format!("{what} is {} bytes, want {N}", bytes.len()))
}

#[test]
fn wycheproof_aes_256_gcm_96_bit_iv() -> Result<(), Box<dyn Error>> {
    let tally = run(WYCHEPROOF)?;
    // Pinned too, so that a shortened file with a matching numberOfTests cannot pass.
    assert_eq!(
        tally,
        Tally {
            valid: 39,
            invalid: 27
        }
    );
    Ok(())
}

#[test]
fn gcm_spec_aes_256_test_cases_13_to_16() -> Result<(), Box<dyn Error>> {
    let tally = run(GCM_SPEC)?;
    assert_eq!(
        tally,
        Tally {
            valid: 4,
            invalid: 0
        }
    );
    Ok(())
}
