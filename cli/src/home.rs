//! The home folder and its files: `--home`, else `$DATAMESH_HOME` (both through clap),
//! else the platform data folder + `/datamesh` (`~/.local/share/datamesh` on Linux).
//!
//! ```text
//! <home>/            0700 when created by `datamesh init`
//!   config.toml      0600  node settings (see config.rs)
//!   api-token        0600  bearer token of the local HTTP API: 64 hex characters
//!   node.json        0600  where the running node's API is (removed on a clean stop)
//!   incident-NAME-vN.json 0600  progress of `keys compromised NAME N`
//!   keys/            0700  the keystore (see datamesh_keys::Layout)
//!   node/db/               the node's RocksDB
//! ```
//!
//! Every path of a home and every helper that reads one of the files an API command needs
//! lives here; the full program's `full/home.rs` adds the ones that write a home and open
//! its keystore. The commands ask these modules, never `home.join(..)` themselves.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
pub use datamesh_api::RunFile;
use datamesh_api::{API_TOKEN_FILE, Client};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// The config file inside the home.
pub const CONFIG_FILE: &str = "config.toml";

/// The home folder to use.
pub fn resolve(flag_or_env: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match flag_or_env {
        Some(home) if !home.as_os_str().is_empty() => Ok(home),
        _ => dirs::data_dir()
            .map(|dir| dir.join("datamesh"))
            .context("cannot find the platform data folder; pass --home DIR or set DATAMESH_HOME"),
    }
}

/// `<home>/config.toml`.
pub fn config(home: &Path) -> PathBuf {
    home.join(CONFIG_FILE)
}

/// `<home>/api-token`.
pub fn api_token(home: &Path) -> PathBuf {
    home.join(API_TOKEN_FILE)
}

/// `<home>/incident-NAME-vVERSION.json`, the progress of `keys compromised` (a name's
/// characters other than ASCII letters, digits, `-`, `_` and `.` become `_`).
pub fn incident_state(home: &Path, name: &str, version: u32) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect();
    home.join(format!("incident-{safe}-v{version}.json"))
}

/// `<home>/put-resume`, the resume states of interrupted puts (`crate::resume`).
pub fn put_resume_dir(home: &Path) -> PathBuf {
    home.join("put-resume")
}

/// `<home>/node`, the node's data folder.
pub fn node_dir(home: &Path) -> PathBuf {
    home.join("node")
}

/// `<home>/node/db`, the node's database.
pub fn node_db(home: &Path) -> PathBuf {
    node_dir(home).join("db")
}

/// A new API token: 32 random bytes as 64 lowercase hex characters.
pub fn new_api_token() -> Zeroizing<String> {
    let mut token = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut token[..]);
    Zeroizing::new(data_encoding::HEXLOWER.encode(&token[..]))
}

/// Reads `<home>/api-token`, refusing one that group or others may read (as the keystore
/// refuses its files).
pub fn read_api_token(home: &Path) -> anyhow::Result<Zeroizing<String>> {
    let path = api_token(home);
    match datamesh_api::check_private_file(&path) {
        Err(e) if !e.is_not_found() => return Err(e.into()),
        _ => {}
    }
    std::fs::read_to_string(&path)
        .map(Zeroizing::new)
        .with_context(|| {
            format!(
                "cannot read the API token {} (create the home with `datamesh init`)",
                path.display()
            )
        })
}

/// The client of this home's node, from its `node.json` and `api-token`: `None` when no
/// node.json says a node runs (it may still be a stale one of a killed node).
pub fn client(home: &Path) -> anyhow::Result<Option<Client>> {
    let Some(run) = RunFile::read(home)? else {
        return Ok(None);
    };
    let token = read_api_token(home)?;
    Ok(Some(Client::new(run.api, &token)))
}
