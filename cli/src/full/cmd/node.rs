//! `datamesh node run`: the node in the foreground until SIGINT/SIGTERM.
//!
//! While it runs, `<home>/node.json` (0600) says where its API is, so the other commands
//! (`put`, `get`, `ls`, `status`, `peers`) find it; it is removed on a clean stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use datamesh_keys::fsx;
use datamesh_node::check::NetworkRepairConfig;
use datamesh_node::libp2p::identity::Keypair;
use datamesh_node::network::Transports;
use datamesh_node::{ApiToken, FilesConfig, NetworkConfig, Node, NodeConfig, StoreConfig};

use crate::Context;
use crate::config::Config;
use crate::home::{self, RunFile};
use crate::keystore_keys::KeystoreKeys;
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
    /// A transport to listen and dial on, `tcp` or `quic`; repeat (or comma-separate) for
    /// both [default: config.toml's transports].
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    transport: Vec<String>,
    /// API address [default: config.toml's api_address].
    #[arg(long, env = "DATAMESH_API", value_name = "ADDR")]
    api: Option<SocketAddr>,
    /// Serve the API on a non-loopback --api address (plain HTTP: the token and files
    /// cross the network unencrypted) [default: config.toml's api_allow_remote].
    #[arg(long)]
    api_allow_remote: bool,
    /// A peer to join through (with /p2p/PEER_ID); repeat for more; adds to config.toml's.
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// An address at which other machines reach this node, advertised to peers; repeat
    /// for more; adds to config.toml's external_addresses.
    #[arg(long, value_name = "MULTIADDR")]
    external: Vec<String>,
    /// Storage quota in bytes [default: config.toml's storage_quota_bytes].
    #[arg(long, env = "DATAMESH_QUOTA", value_name = "BYTES")]
    quota: Option<u64>,
}

pub(crate) fn run(ctx: &Context, args: NodeArgs) -> anyhow::Result<()> {
    match args.command {
        NodeCommand::Run(args) => run_node(ctx, args),
    }
}

fn run_node(ctx: &Context, args: RunArgs) -> anyhow::Result<()> {
    // Before anything else: this process may be replaced by itself with one arena.
    if let Some(e) = crate::allocator::restart_with_one_arena() {
        ctx.out.warn(format_args!(
            "could not start again with one allocator arena ({e}); running with glibc's default"
        ));
    }
    home::require_keystore(&ctx.home)?;
    let config = home::read_config(&ctx.home)?;
    let api_address = args.api.unwrap_or(config.api_address);
    let allow_remote = args.api_allow_remote || config.api_allow_remote;
    let security = crate::security::current();
    security.check_api_bind(api_address)?;
    Config::check_api_address(api_address, allow_remote)?;
    if !api_address.ip().is_loopback() {
        ctx.out.warn(format_args!(
            "the API listens on {api_address}, beyond this machine, over plain HTTP (api_allow_remote)"
        ));
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

    let password = args.password.or_unlock_slot(&config.unlock_slot);
    let keystore = home::unlock(&ctx.home, &password, &ctx.out)?;
    let mut seed = keystore.node_identity_seed();
    let identity = Keypair::ed25519_from_bytes(&mut seed[..])
        .context("the keystore's node identity is not a valid ed25519 key")?;
    let keys = Arc::new(KeystoreKeys::new(keystore));
    for rotated in keys.rotate_due().map_err(anyhow::Error::msg)? {
        ctx.out.info(format_args!("rotated {rotated} (policy)"));
    }
    let token = home::read_api_token(&ctx.home)?;

    let listen = args.listen.unwrap_or(config.listen_address);
    let listen = listen
        .parse()
        .with_context(|| format!("listen address {listen} is not a multiaddr"))?;
    let transports = if args.transport.is_empty() {
        &config.transports
    } else {
        &args.transport
    };
    let transports = Transports::parse(transports).map_err(anyhow::Error::msg)?;
    let mut bootstrap = Vec::new();
    for addr in config.bootstrap.iter().chain(&args.bootstrap) {
        bootstrap.push(
            addr.parse()
                .with_context(|| format!("bootstrap address {addr} is not a multiaddr"))?,
        );
    }
    let mut external = Vec::new();
    for addr in config.external_addresses.iter().chain(&args.external) {
        external.push(
            addr.parse()
                .with_context(|| format!("external address {addr} is not a multiaddr"))?,
        );
    }
    let node_config = NodeConfig::new(
        home::node_db(&ctx.home),
        NetworkConfig::new(vec![listen])
            .with_transports(transports)
            .with_bootstrap(bootstrap)
            .with_external_addresses(external),
        api_address,
    )
    .with_store(StoreConfig::new(
        args.quota.unwrap_or(config.storage_quota_bytes),
    ))
    .with_check_interval(Duration::from_secs(config.check_interval))
    .with_check_verify(config.check_verify)
    .with_files(FilesConfig {
        recipients: security.recipients,
        ..FilesConfig::default()
    })
    .with_lease(Duration::from_secs(config.lease_seconds))
    .with_network_repair(NetworkRepairConfig::new(Duration::from_secs(
        config.network_repair_interval,
    )))
    .with_test_faults(faults);
    fsx::ensure_dir(&home::node_dir(&ctx.home)).context("cannot create the node's data folder")?;

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
        home::write_run_file(
            &ctx.home,
            &RunFile {
                pid: std::process::id(),
                peer_id: node.peer_id().to_string(),
                api: node.api_addr(),
                listen: listen.clone(),
            },
        )?;
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
        home::remove_run_file(&ctx.home);
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
