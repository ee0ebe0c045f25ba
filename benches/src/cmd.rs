//! The node's local HTTP API, as the benchmark drives it: through `datamesh_api::Client`,
//! the client the CLI uses.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use datamesh_api::{API_TOKEN_FILE, Client, RunFile};
use datamesh_core::FileId;

/// How long one call of the benchmark to a node's API may take.
const API_TIMEOUT: Duration = Duration::from_secs(120);

/// A client of the node that published `run`, whose home is `home` (its token); calls
/// time out after two minutes.
///
/// # Errors
/// When the token cannot be read.
pub fn api_client(run: &RunFile, home: &Path) -> anyhow::Result<Client> {
    let token_path = home.join(API_TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("cannot read {}", token_path.display()))?;
    Ok(Client::new(run.api, &token).with_timeout(API_TIMEOUT))
}

/// `GET /v1/files/ID` through `client`: the whole file, in memory.
///
/// # Errors
/// A malformed id, transport errors, an error answer, or a short body.
pub fn get_bytes(client: &Client, id: &str) -> anyhow::Result<Vec<u8>> {
    let id: FileId = id
        .parse()
        .with_context(|| format!("{id} is not a file id"))?;
    let mut bytes = Vec::new();
    client.get(&id)?.copy_to(&mut bytes)?;
    Ok(bytes)
}
