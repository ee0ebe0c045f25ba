//! Compatibility vectors between datamesh-core's ECIES and the real `ecies` 0.2.14 crate.
//!
//! `gen [OUT]`   writes ciphertexts made by ecies 0.2.14 (default: core/tests/data/ecies_vectors.json)
//! `check FILE`  decrypts every case of FILE with ecies 0.2.14 and fails loudly on any mismatch

use std::process::ExitCode;

use serde::{Deserialize, Serialize};

/// Default config of ecies 0.2.14: uncompressed 65-byte ephemeral key, 16-byte nonce, 16-byte tag.
const OVERHEAD: usize = 65 + 16 + 16;

/// The upstream known-answer vector of ecies 0.2.14 (src/elliptic/secp256k1.rs, `test_known_encrypted`).
const UPSTREAM_SK: &str = "e520872701d9ec44dbac2eab85512ad14ad0c42e01de56d7b528abd8524fcb47";
const UPSTREAM_CT: &str = "047be1885aeb48d4d4db0c992996725d3264784fef88c5b60782f8d0f940c213227fc3f904f846d5ec3d0fba6653754501e8ebadc421aa3892a20fef33cff0206047058a4cfb4efbeae96b2d019b4ab2edce33328748a0d008a69c8f5816b72d45bd9b5a41bb6ea0127ab23057ec6fcd";

#[derive(Serialize, Deserialize)]
struct File {
    description: String,
    cases: Vec<Case>,
}

/// One case. Files made by datamesh-core may carry extra fields (ephemeral key, nonce); they are ignored here.
#[derive(Serialize, Deserialize)]
struct Case {
    name: String,
    /// Recipient secret key, 32 bytes.
    secret_key: String,
    /// Recipient public key, SEC1 compressed (33 bytes).
    public_key: String,
    plaintext: String,
    ciphertext: String,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["gen"] => generate(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../core/tests/data/ecies_vectors.json"
        )),
        ["gen", out] => generate(out),
        ["check", file] => check(file),
        _ => Err("usage: ecies-vectors gen [OUT] | ecies-vectors check FILE".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ecies-vectors: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Deterministic filler bytes (the content of a plaintext does not matter, only its length).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sk_from_hex(h: &str) -> Result<ecies::SecretKey, String> {
    let bytes = hex::decode(h).map_err(|e| format!("secret key hex: {e}"))?;
    ecies::SecretKey::parse_slice(&bytes).map_err(|e| format!("secret key: {e}"))
}

fn generate(out: &str) -> Result<(), String> {
    // Edge secret keys (1 and n-1) and fresh random ones.
    let one = format!("{:064x}", 1);
    let n_minus_1 = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140".to_owned();
    let lengths: [(usize, Option<&str>); 12] = [
        (0, Some(&one)),
        (1, Some(n_minus_1.as_str())),
        (15, None),
        (16, None),
        (17, None),
        (32, None),
        (33, None),
        (64, None),
        (100, None),
        (255, None),
        (1000, None),
        (4096, None),
    ];

    let mut cases = Vec::new();
    for (i, (len, fixed_sk)) in lengths.iter().enumerate() {
        let sk = match fixed_sk {
            Some(h) => sk_from_hex(h)?,
            None => ecies::SecretKey::generate(),
        };
        let pk = ecies::PublicKey::from_secret_key(&sk);
        let plaintext = pattern(*len, i as u64 + 1);
        // Alternate the recipient key encoding handed to ecies; it does not change the wire format.
        let recipient = if i % 2 == 0 {
            pk.serialize_compressed().to_vec()
        } else {
            pk.serialize().to_vec()
        };
        let ciphertext =
            ecies::encrypt(&recipient, &plaintext).map_err(|e| format!("encrypt: {e}"))?;
        if ciphertext.len() != plaintext.len() + OVERHEAD {
            return Err(format!(
                "unexpected ciphertext length {} for {} bytes",
                ciphertext.len(),
                len
            ));
        }
        cases.push(Case {
            name: format!("len-{len}"),
            secret_key: hex::encode(sk.serialize()),
            public_key: hex::encode(pk.serialize_compressed()),
            plaintext: hex::encode(&plaintext),
            ciphertext: hex::encode(&ciphertext),
        });
    }

    // The upstream known-answer vector, checked here before it is copied.
    let sk = sk_from_hex(UPSTREAM_SK)?;
    let ct = hex::decode(UPSTREAM_CT).map_err(|e| e.to_string())?;
    let pt = ecies::decrypt(&sk.serialize(), &ct).map_err(|e| format!("upstream vector: {e}"))?;
    if pt != "hello world🌍".as_bytes() {
        return Err("upstream vector decrypts to the wrong plaintext".to_owned());
    }
    cases.push(Case {
        name: "ecies-0.2.14-test_known_encrypted".to_owned(),
        secret_key: UPSTREAM_SK.to_owned(),
        public_key: hex::encode(ecies::PublicKey::from_secret_key(&sk).serialize_compressed()),
        plaintext: hex::encode(&pt),
        ciphertext: UPSTREAM_CT.to_owned(),
    });

    let file = File {
        description: "ECIES secp256k1 ciphertexts made by the real `ecies` crate 0.2.14 (default-features = false, \
                      features = [aes-rust, std]; default config: uncompressed ephemeral key, HKDF over uncompressed \
                      points, AES-256-GCM with a 16-byte nonce). Made by tools/ecies-vectors `gen`; frozen."
            .to_owned(),
        cases,
    };
    let json = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
    std::fs::write(out, json + "\n").map_err(|e| format!("write {out}: {e}"))?;
    println!("wrote {} cases to {out}", file.cases.len());
    Ok(())
}

fn check(path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    let file: File = serde_json::from_str(&text).map_err(|e| format!("parse {path}: {e}"))?;
    if file.cases.is_empty() {
        return Err(format!("{path} has no cases"));
    }
    let mut failures = 0usize;
    for case in &file.cases {
        match check_case(case) {
            Ok(()) => println!(
                "ok    {} ({} plaintext bytes)",
                case.name,
                case.plaintext.len() / 2
            ),
            Err(e) => {
                failures += 1;
                eprintln!("FAIL  {}: {e}", case.name);
            }
        }
    }
    if failures > 0 {
        return Err(format!(
            "{failures} of {} cases failed in {path}",
            file.cases.len()
        ));
    }
    println!(
        "all {} cases of {path} open with ecies 0.2.14",
        file.cases.len()
    );
    Ok(())
}

fn check_case(case: &Case) -> Result<(), String> {
    let sk = sk_from_hex(&case.secret_key)?;
    let pk = hex::encode(ecies::PublicKey::from_secret_key(&sk).serialize_compressed());
    if pk != case.public_key {
        return Err(format!(
            "public key mismatch: file {} derived {pk}",
            case.public_key
        ));
    }
    let plaintext = hex::decode(&case.plaintext).map_err(|e| format!("plaintext hex: {e}"))?;
    let ciphertext = hex::decode(&case.ciphertext).map_err(|e| format!("ciphertext hex: {e}"))?;
    if ciphertext.len() != plaintext.len() + OVERHEAD {
        return Err(format!(
            "ciphertext is {} bytes, expected {}",
            ciphertext.len(),
            plaintext.len() + OVERHEAD
        ));
    }
    let opened =
        ecies::decrypt(&sk.serialize(), &ciphertext).map_err(|e| format!("ecies::decrypt: {e}"))?;
    if opened != plaintext {
        return Err("decrypted plaintext differs".to_owned());
    }
    // Negative control: one flipped tag bit must be rejected.
    let mut tampered = ciphertext;
    tampered[65 + 16] ^= 1;
    if ecies::decrypt(&sk.serialize(), &tampered).is_ok() {
        return Err("tampered ciphertext was accepted".to_owned());
    }
    Ok(())
}
