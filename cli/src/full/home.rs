//! The home's helpers that write it or open its keystore (the full program's commands);
//! its paths and the API's files are the library's (`datamesh_cli::home`, re-exported here
//! so the commands ask one module).

use std::io::IsTerminal as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
pub(crate) use datamesh_cli::home::*;
use datamesh_keys::{CreateError, Credentials, Keystore, Layout, OpenError, fsx};

use crate::config::Config;
use crate::output::Output;
use crate::password::PasswordArgs;

/// Reads and checks `<home>/config.toml`.
pub(crate) fn read_config(home: &Path) -> anyhow::Result<Config> {
    Config::load(&config(home))
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
