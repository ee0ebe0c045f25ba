//! The two programs of the command line (`src/lib.rs`): `datamesh`, which users type,
//! links only the API commands' code, so it starts without mapping and relocating RocksDB,
//! the TPM libraries, OpenSSL and libp2p; `datamesh-full` has them all. What each links is
//! read from the program files themselves: their needed libraries and the source paths
//! their panic messages carry.

mod common;

use common::TestResult;

/// Whether `needle` occurs in `bytes`.
fn contains(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A library the full program needs or a crate it links, and which `datamesh` must not.
const HEAVY: [&str; 4] = [
    "libstdc++.so",
    "libtss2-esys.so",
    "librocksdb",
    "libp2p-swarm",
];

#[test]
fn datamesh_links_no_node_keystore_or_tpm_code_and_datamesh_full_does() -> TestResult {
    let client = std::fs::read(env!("CARGO_BIN_EXE_datamesh"))?;
    let full = std::fs::read(env!("CARGO_BIN_EXE_datamesh-full"))?;
    for heavy in HEAVY {
        // The check can see each of them (in the full program)...
        assert!(contains(&full, heavy), "datamesh-full has no {heavy}");
        // ...and `datamesh` has none.
        assert!(!contains(&client, heavy), "datamesh links {heavy}");
    }
    Ok(())
}

#[test]
fn datamesh_hands_the_other_commands_to_datamesh_full_with_their_exit_codes() -> TestResult {
    let dir = tempfile::tempdir()?;
    // `keys list` in a home with no keystore: the full program's "not found" (exit 3).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_datamesh"))
        .arg("--home")
        .arg(dir.path())
        .args(["keys", "list"])
        .output()?;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: "),
        "{out:?}"
    );
    Ok(())
}
