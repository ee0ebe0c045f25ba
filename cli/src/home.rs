//! The home folder: `--home`, else `$DATAMESH_HOME` (both through clap), else the
//! platform data folder + `/datamesh` (`~/.local/share/datamesh` on Linux).
//!
//! ```text
//! <home>/            0700 when created by `datamesh init`
//!   config.toml      0600  node settings (listen address, API address, ...)
//!   api-token        0600  bearer token of the local HTTP API: 64 hex characters
//!   keys/            0700  the keystore (see datamesh_keys::Layout)
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The config file inside the home.
pub(crate) const CONFIG_FILE: &str = "config.toml";
/// The API token file inside the home.
pub(crate) const API_TOKEN_FILE: &str = "api-token";

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
