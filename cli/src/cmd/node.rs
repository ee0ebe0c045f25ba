//! `datamesh node run`: the node in the foreground until SIGINT/SIGTERM.
//!
//! While it runs, `<home>/node.json` (0600) says where its API is, so the other commands
//! (`put`, `get`, `ls`, `status`, `peers`) find it; it is removed on a clean stop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use datamesh_api::RunFile;
use datamesh_keys::{Keystore, fsx};
use datamesh_node::libp2p::identity::Keypair;
use datamesh_node::{ApiToken, KeystoreKeys, NetworkConfig, Node, NodeConfig, StoreConfig};
use serde::Deserialize;

use crate::Context;
use crate::home;
use crate::password::PasswordArgs;

/// Arguments of `datamesh node`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Run the node in the foreground (stop with Ctrl-C or SIGTERM).
    #[command(
        after_help = "Example:\n  datamesh --home ./node-a node run --password-file ./node-a.pw"
    )]
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    password: PasswordArgs,
    /// libp2p listen address [default: config.toml's listen_address].
    #[arg(long, env = "DATAMESH_LISTEN", value_name = "MULTIADDR")]
    listen: Option<String>,
    /// API address [default: config.toml's api_address].
    #[arg(long, env = "DATAMESH_API", value_name = "ADDR")]
    api: Option<SocketAddr>,
    /// A peer to join through (with /p2p/PEER_ID); repeat for more; adds to config.toml's.
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// Storage quota in bytes [default: config.toml's storage_quota_bytes].
    #[arg(long, env = "DATAMESH_QUOTA", value_name = "BYTES")]
    quota: Option<u64>,
}

/// `config.toml`, as `datamesh init` writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default = "default_listen")]
    listen_address: String,
    #[serde(default = "default_api")]
    api_address: SocketAddr,
    #[serde(default)]
    bootstrap: Vec<String>,
    #[serde(default = "default_quota")]
    storage_quota_bytes: u64,
    #[serde(default = "default_log_level")]
    log_level: String,
    /// Seconds between self-checks of the catalog (repairing files below full health);
    /// 0 disables.
    #[serde(default = "default_check_interval")]
    check_interval: u64,
    /// Whether the self-check fetches and hashes every copy.
    #[serde(default)]
    check_verify: bool,
}

fn default_listen() -> String {
    "/ip4/127.0.0.1/tcp/0".into()
}
fn default_api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
fn default_quota() -> u64 {
    10 << 30
}
fn default_log_level() -> String {
    "info".into()
}
/// Longest self-check period accepted (a year), so the timer cannot overflow.
const MAX_CHECK_INTERVAL: u64 = 365 * 24 * 3600;

fn default_check_interval() -> u64 {
    datamesh_node::node::DEFAULT_CHECK_INTERVAL.as_secs()
}

pub(crate) fn run(ctx: &Context, args: NodeArgs) -> anyhow::Result<()> {
    match args.command {
        NodeCommand::Run(args) => run_node(ctx, args),
    }
}

fn read_config(home: &Path) -> anyhow::Result<FileConfig> {
    let path = home::config(home);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (create the home with `datamesh init`)",
            path.display()
        )
    })?;
    toml::from_str(&text).with_context(|| format!("{} is not a valid config", path.display()))
}

fn run_node(ctx: &Context, args: RunArgs) -> anyhow::Result<()> {
    if !datamesh_keys::Layout::new(&ctx.home).keystore().exists() {
        return Err(datamesh_keys::OpenError::NotInitialised {
            home: ctx.home.clone(),
        }
        .into());
    }
    let config = read_config(&ctx.home)?;
    if config.check_interval > MAX_CHECK_INTERVAL {
        anyhow::bail!(
            "{}: check_interval = {} is more than a year ({MAX_CHECK_INTERVAL} seconds); use 0 to disable the self-check",
            home::config(&ctx.home).display(),
            config.check_interval
        );
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("DATAMESH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();

    // Test-only faults: exact values or a refusal to start (see datamesh_node::faults).
    let faults = datamesh_node::TestFaults::from_env()?;
    if let Some(warning) = faults.warning() {
        ctx.out.warn(&warning);
    }

    let password = args.password.existing(&ctx.out)?;
    let keystore = Keystore::open(&ctx.home, &password)?;
    drop(password);
    let mut seed = keystore.node_identity_seed();
    let identity = Keypair::ed25519_from_bytes(&mut seed[..])
        .context("the keystore's node identity is not a valid ed25519 key")?;
    let keys = Arc::new(KeystoreKeys::new(keystore));
    for rotated in keys.rotate_due().map_err(anyhow::Error::msg)? {
        ctx.out.info(format_args!("rotated {rotated} (policy)"));
    }
    let token = std::fs::read_to_string(home::api_token(&ctx.home))
        .context("cannot read the API token (create the home with `datamesh init`)")?;

    let listen = args.listen.unwrap_or(config.listen_address);
    let listen = listen
        .parse()
        .with_context(|| format!("listen address {listen} is not a multiaddr"))?;
    let mut bootstrap = Vec::new();
    for addr in config.bootstrap.iter().chain(&args.bootstrap) {
        bootstrap.push(
            addr.parse()
                .with_context(|| format!("bootstrap address {addr} is not a multiaddr"))?,
        );
    }
    let node_config = NodeConfig::new(
        ctx.home.join("node").join("db"),
        NetworkConfig::new(vec![listen]).with_bootstrap(bootstrap),
        args.api.unwrap_or(config.api_address),
    )
    .with_store(StoreConfig::new(
        args.quota.unwrap_or(config.storage_quota_bytes),
    ))
    .with_check_interval(Duration::from_secs(config.check_interval))
    .with_check_verify(config.check_verify)
    .with_test_faults(faults);
    fsx::ensure_dir(&ctx.home.join("node")).context("cannot create the node's data folder")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let node = Node::start(node_config, identity, keys.clone(), ApiToken::new(&token)).await?;
        let listen: Vec<String> = node
            .listen_addresses()
            .await?
            .iter()
            .map(ToString::to_string)
            .collect();
        let run_file = RunFile::path(&ctx.home);
        let published = RunFile {
            pid: std::process::id(),
            peer_id: node.peer_id().to_string(),
            api: node.api_addr(),
            listen: listen.clone(),
        };
        // Written aside and renamed, so a reader never sees half a file.
        let temp = ctx.home.join(".node.json.tmp");
        fsx::write_private_file(&temp, published.to_json().as_bytes())
            .and_then(|()| std::fs::rename(&temp, &run_file))
            .with_context(|| format!("cannot write {}", run_file.display()))?;
        ctx.out.info(format_args!(
            "node {} listening on {}; API on http://{}",
            node.peer_id(),
            listen.join(", "),
            node.api_addr()
        ));

        let daily = tokio::spawn(async move {
            let mut timer = tokio::time::interval(Duration::from_secs(24 * 3600));
            timer.tick().await;
            loop {
                timer.tick().await;
                match keys.rotate_due() {
                    Ok(rotated) => {
                        for r in rotated {
                            tracing::info!("rotated {r} (policy)");
                        }
                    }
                    Err(e) => tracing::warn!("policy rotation failed: {e}"),
                }
            }
        });
        wait_for_signal().await?;
        ctx.out
            .info("stopping: finishing in-flight requests and flushing the store");
        daily.abort();
        let stopped = node.shutdown().await;
        let _ = std::fs::remove_file(&run_file);
        stopped?;
        ctx.out.info("node stopped");
        Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
