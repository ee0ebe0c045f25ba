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
//! Every path of a home and every helper that creates or reads one of its files lives
//! here; the commands ask this module, never `home.join(..)` themselves.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
pub(crate) use datamesh_api::RunFile;
use datamesh_api::{API_TOKEN_FILE, Client};
use datamesh_keys::{CreateError, Credentials, Keystore, Layout, OpenError, fsx};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::output::Output;
use crate::password::PasswordArgs;

/// The config file inside the home.
pub(crate) const CONFIG_FILE: &str = "config.toml";

/// The home folder to use.
pub(crate) fn resolve(flag_or_env: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match flag_or_env {
        Some(home) if !home.as_os_str().is_empty() => Ok(home),
        _ => dirs::data_dir()
            .map(|dir| dir.join("datamesh"))
            .context("cannot find the platform data folder; pass --home DIR or set DATAMESH_HOME"),
    }
}

/// `<home>/config.toml`.
pub(crate) fn config(home: &Path) -> PathBuf {
    home.join(CONFIG_FILE)
}

/// `<home>/api-token`.
pub(crate) fn api_token(home: &Path) -> PathBuf {
    home.join(API_TOKEN_FILE)
}

/// `<home>/incident-NAME-vVERSION.json`, the progress of `keys compromised` (a name's
/// characters other than ASCII letters, digits, `-`, `_` and `.` become `_`).
pub(crate) fn incident_state(home: &Path, name: &str, version: u32) -> PathBuf {
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
pub(crate) fn put_resume_dir(home: &Path) -> PathBuf {
    home.join("put-resume")
}

/// `<home>/node`, the node's data folder.
pub(crate) fn node_dir(home: &Path) -> PathBuf {
    home.join("node")
}

/// `<home>/node/db`, the node's database.
pub(crate) fn node_db(home: &Path) -> PathBuf {
    node_dir(home).join("db")
}

/// Reads and checks `<home>/config.toml`.
pub(crate) fn read_config(home: &Path) -> anyhow::Result<Config> {
    Config::load(&config(home))
}

/// A new API token: 32 random bytes as 64 lowercase hex characters.
pub(crate) fn new_api_token() -> Zeroizing<String> {
    let mut token = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut token[..]);
    Zeroizing::new(data_encoding::HEXLOWER.encode(&token[..]))
}

/// Reads `<home>/api-token`, refusing one that group or others may read (as the keystore
/// refuses its files).
pub(crate) fn read_api_token(home: &Path) -> anyhow::Result<Zeroizing<String>> {
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

/// Writes `config.toml` (the defaults, joining through `bootstrap`) and `api-token` (a
/// new token) into a home, leaving either alone if it exists. Used by `init`,
/// `keys restore` and `keys escrow recover`.
pub(crate) fn write_home_files(home: &Path, bootstrap: &[String]) -> anyhow::Result<()> {
    let config = config(home);
    if !config.exists() {
        let text = Config::with_bootstrap(bootstrap).to_toml()?;
        fsx::write_private_file(&config, text.as_bytes())
            .with_context(|| format!("cannot write {}", config.display()))?;
    }
    let token_path = api_token(home);
    if !token_path.exists() {
        fsx::write_private_file(&token_path, new_api_token().as_bytes())
            .with_context(|| format!("cannot write {}", token_path.display()))?;
    }
    Ok(())
}

/// The client of this home's node, from its `node.json` and `api-token`: `None` when no
/// node.json says a node runs (it may still be a stale one of a killed node).
pub(crate) fn client(home: &Path) -> anyhow::Result<Option<Client>> {
    let Some(run) = RunFile::read(home)? else {
        return Ok(None);
    };
    let token = read_api_token(home)?;
    Ok(Some(Client::new(run.api, &token)))
}

/// Writes `<home>/node.json` (0600), aside and renamed, so a reader never sees half a
/// file.
pub(crate) fn write_run_file(home: &Path, run: &RunFile) -> anyhow::Result<()> {
    let path = RunFile::path(home);
    let temp = home.join(".node.json.tmp");
    fsx::write_private_file(&temp, run.to_json().as_bytes())
        .and_then(|()| std::fs::rename(&temp, &path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Removes `<home>/node.json` (on a clean stop), ignoring a missing one.
pub(crate) fn remove_run_file(home: &Path) {
    let _ = std::fs::remove_file(RunFile::path(home));
}

/// Fails with [`OpenError::NotInitialised`] if the home has no keystore.
pub(crate) fn require_keystore(home: &Path) -> Result<(), OpenError> {
    if Layout::new(home).keystore().exists() {
        Ok(())
    } else {
        Err(OpenError::NotInitialised {
            home: home.to_owned(),
        })
    }
}

/// Fails with [`CreateError::AlreadyExists`] if the home has a keystore (a new one is
/// about to be made there).
pub(crate) fn require_no_keystore(home: &Path) -> Result<(), CreateError> {
    if Layout::new(home).keystore().exists() {
        Err(CreateError::AlreadyExists {
            home: home.to_owned(),
        })
    } else {
        Ok(())
    }
}

/// Opens the keystore of `home` (asking for the password only if there is one).
pub(crate) fn unlock(
    home: &Path,
    password: &PasswordArgs,
    out: &Output,
) -> anyhow::Result<Keystore> {
    unlock_with(home, password, out).map(|(keystore, _)| keystore)
}

/// As [`unlock`], and the credentials it unlocked with (with the password asked for, if
/// one was): `keys rekey` re-wraps every slot they open.
pub(crate) fn unlock_with(
    home: &Path,
    password: &PasswordArgs,
    out: &Output,
) -> anyhow::Result<(Keystore, Credentials)> {
    require_keystore(home)?;
    let started = Instant::now();
    let mut credentials = password.credentials(out)?;
    let keystore = match Keystore::open_with(home, &credentials) {
        Ok(keystore) => keystore,
        // Nothing given opens a slot, or a hardware slot failed while someone is at the
        // terminal: ask for the password (without a terminal, the error stands).
        Err(e @ (OpenError::NothingToTry { .. } | OpenError::SlotFailed { .. }))
            if !password.has_password_file() =>
        {
            if matches!(e, OpenError::SlotFailed { .. }) {
                if !std::io::stdin().is_terminal() {
                    return Err(e.into());
                }
                out.warn(format_args!("{e}"));
            }
            let asked = password.existing(out)?;
            credentials = password
                .credentials(out)?
                .with_password(asked)
                .with_hardware(false);
            Keystore::open_with(home, &credentials)?
        }
        Err(e) => return Err(e.into()),
    };
    crate::security::current().check_unlock(&keystore)?;
    let kind = keystore
        .slots()
        .into_iter()
        .find(|s| s.id == keystore.unlocked_slot())
        .map_or("", |s| s.kind.name());
    out.detail(format_args!(
        "unlocked slot {} ({kind}) of {} in {:.3} s",
        keystore.unlocked_slot(),
        Layout::new(home).keystore().display(),
        started.elapsed().as_secs_f64()
    ));
    Ok((keystore, credentials))
}
