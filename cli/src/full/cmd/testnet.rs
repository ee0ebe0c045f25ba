//! `datamesh testnet`: a local testnet of real node processes, through
//! `datamesh-testnet`. `up` and `start` leave the nodes running after this command
//! exits (each in a process group of its own); the other subcommands find them again
//! from the folder (`<dir>/node-I/node.json`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use datamesh_testnet::{Config, Testnet};
use rand_core::{OsRng, RngCore};

use crate::Context;

/// Arguments of `datamesh testnet`.
#[derive(Debug, Args)]
pub(crate) struct TestnetArgs {
    /// The testnet folder (one home per node: D/node-0, D/node-1, ...).
    #[arg(long, global = true, value_name = "D", default_value = ".testnet")]
    dir: PathBuf,
    #[command(subcommand)]
    command: TestnetCommand,
}

#[derive(Debug, Subcommand)]
enum TestnetCommand {
    /// Create the homes (random passwords in D/node-I/password), start the nodes on
    /// 127.0.0.1 and wait until the DHT is ready; the nodes keep running.
    #[command(
        after_help = "Examples:\n  datamesh testnet up --nodes 8 --dir ./.testnet\n  sudo datamesh testnet up --hosts 8   # 8 network namespaces, one node each"
    )]
    Up {
        /// How many nodes (a put needs 6) [default: 6, or the number of --hosts].
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
        nodes: Option<u16>,
        #[command(flatten)]
        hosts: HostsArg,
    },
    /// A table of the nodes: peer id, address, up/down, shards, bytes.
    #[command(after_help = "Example:\n  datamesh testnet status --json")]
    Status,
    /// SIGKILL node I (as a crash would).
    #[command(after_help = "Example:\n  datamesh testnet kill 3")]
    Kill { index: usize },
    /// Stop node I cleanly (SIGTERM).
    #[command(after_help = "Example:\n  datamesh testnet stop 3")]
    Stop { index: usize },
    /// Start node I again (same home, new ports).
    #[command(after_help = "Example:\n  datamesh testnet start 3")]
    Start { index: usize },
    /// Stop every node; keep the homes and their data.
    #[command(after_help = "Example:\n  datamesh testnet down")]
    Down,
    /// Stop every node and delete the testnet folder.
    #[command(after_help = "Example:\n  datamesh testnet destroy")]
    Destroy,
    /// Serve one page for the whole testnet on 127.0.0.1: every node's state, a file's
    /// stripes by node, buttons to kill/start nodes and check/repair files. Prints its
    /// address; log in with the token in D/dashboard-token.
    #[command(after_help = "Examples:
  datamesh testnet ui                 # until Ctrl-C
  datamesh testnet ui --background    # `datamesh testnet down` stops it")]
    Ui {
        /// The port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Run it in the background (its log in D/dashboard.log) and return once it
        /// listens; if one already runs for D, print its address.
        #[arg(long)]
        background: bool,
    },
    /// Up 8 nodes, put a generated 16 MiB file, kill 2 storage nodes, get it back and
    /// compare checksums; the testnet keeps running, and its dashboard (`testnet ui`).
    #[command(after_help = "Example:\n  datamesh testnet demo")]
    Demo {
        #[command(flatten)]
        hosts: HostsArg,
    },
}

/// `--hosts N` of `up` and `demo`.
#[derive(Debug, Args)]
struct HostsArg {
    /// Run the nodes on N separate hosts: each a network namespace with its own
    /// 198.18.0.x address on a bridge made for this testnet (node I on host I mod N);
    /// needs root. `down`/`destroy` delete them. Default: every node on 127.0.0.1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    hosts: Option<u16>,
    /// With --hosts: put host H behind a NAT router of its own (no inbound connections);
    /// repeat or comma-separate (never host 0).
    #[arg(long, value_name = "H", value_delimiter = ',', requires = "hosts")]
    nat: Vec<usize>,
    /// The transports of every node: tcp, quic or tcp,quic [default: tcp].
    #[arg(long, value_name = "LIST")]
    transport: Option<String>,
}

pub(crate) fn run(ctx: &Context, args: TestnetArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("cannot find the datamesh binary")?;
    let dir = args.dir;
    match args.command {
        TestnetCommand::Up { nodes, hosts } => {
            let count = hosts.hosts.map(usize::from);
            let nodes = nodes.map_or(count.unwrap_or(6), usize::from);
            let net = up(ctx, &binary, &dir, nodes, &hosts)?;
            print_status(ctx, &net)?;
            let prefix = net
                .namespace_of(0)
                .map(|ns| format!("ip netns exec {ns} "))
                .unwrap_or_default();
            ctx.out.info(format_args!(
                "testnet of {nodes} nodes running in {d}; try:\n  {prefix}datamesh --home {d}/node-0 put FILE\n  datamesh testnet status --dir {d}",
                d = dir.display()
            ));
            net.detach();
            Ok(())
        }
        TestnetCommand::Status => print_status(ctx, &Testnet::attach(&binary, &dir)?),
        TestnetCommand::Kill { index } => {
            Testnet::attach(&binary, &dir)?.kill(index)?;
            ctx.out.info(format_args!("killed node {index} (SIGKILL)"));
            Ok(())
        }
        TestnetCommand::Stop { index } => {
            Testnet::attach(&binary, &dir)?.stop(index)?;
            ctx.out.info(format_args!("stopped node {index}"));
            Ok(())
        }
        TestnetCommand::Start { index } => {
            Testnet::attach(&binary, &dir)?.start(index)?;
            ctx.out.info(format_args!("started node {index}"));
            Ok(())
        }
        TestnetCommand::Ui { port, background } => {
            if background {
                let url = ui_in_background(&binary, &dir, port)?;
                ctx.out.result(&url);
                ctx.out.info(format_args!(
                    "dashboard of the testnet: {url} (log in with the token in {}); `datamesh testnet down --dir {}` stops it",
                    datamesh_testnet::dashboard::token_path(&dir).display(),
                    dir.display()
                ));
                Ok(())
            } else {
                crate::testnet_ui::serve(ctx, &binary, &dir, port)
            }
        }
        TestnetCommand::Down => {
            datamesh_testnet::dashboard::stop(&dir)?;
            Testnet::attach(&binary, &dir)?.down()?;
            ctx.out.info(format_args!(
                "stopped every node; data kept in {}",
                dir.display()
            ));
            Ok(())
        }
        TestnetCommand::Destroy => {
            let mut net = Testnet::attach(&binary, &dir)?;
            let _ = datamesh_testnet::dashboard::stop(&dir);
            if net.down().is_err() {
                for i in 0..net.len() {
                    if net.is_running(i) {
                        net.kill(i)?;
                    }
                }
                net.remove_hosts()?;
            }
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot delete {}", dir.display()))?;
            ctx.out.info(format_args!("deleted {}", dir.display()));
            Ok(())
        }
        TestnetCommand::Demo { hosts } => demo(ctx, &binary, &dir, &hosts),
    }
}

/// Starts a testnet of `nodes` nodes in `dir` that outlives this process; refuses if
/// one is already running there.
fn up(
    ctx: &Context,
    binary: &Path,
    dir: &Path,
    nodes: usize,
    args: &HostsArg,
) -> anyhow::Result<Testnet> {
    let hosts = args.hosts.map(usize::from);
    if hosts.is_some() {
        datamesh_testnet::require_root_for_hosts()?;
    }
    if let Ok(mut existing) = Testnet::attach(binary, dir)
        && (0..existing.len()).any(|i| existing.is_running(i))
    {
        bail!(
            "a testnet is already running in {d}: use it, or `datamesh testnet down --dir {d}` first",
            d = dir.display()
        );
    }
    let mut config = Config::new(binary, dir, nodes).with_keep_running(true);
    if let Some(hosts) = hosts {
        config = config.with_hosts(hosts).with_nat(&args.nat);
    }
    if let Some(transports) = &args.transport {
        config = config.with_transports(transports);
    }
    ctx.out.info(format_args!(
        "starting {nodes} nodes{} in {} (waiting for the DHT)...",
        hosts.map_or(String::new(), |h| format!(
            " on {h} hosts (network namespaces)"
        )),
        dir.display()
    ));
    Ok(Testnet::up_with(config)?)
}

fn print_status(ctx: &Context, net: &Testnet) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for i in 0..net.len() {
        let status = if net.pid(i).is_some() {
            net.status(i).ok()
        } else {
            None
        };
        let run = net.run_file(i).ok().flatten();
        // The address other nodes dial (on a testnet of hosts, not its 127.0.0.1).
        let address = run
            .as_ref()
            .and_then(|r| {
                r.listen
                    .iter()
                    .find(|a| !a.starts_with("/ip4/127."))
                    .or(r.listen.first())
                    .cloned()
            })
            .unwrap_or_default();
        let up = status.is_some();
        let peer_id = status
            .as_ref()
            .map(|s| s.peer_id.clone())
            .unwrap_or_default();
        let (shards, bytes) = status
            .as_ref()
            .map_or((0, 0), |s| (s.shards, s.bytes_stored));
        json.push(serde_json::json!({
            "node": i, "home": net.home(i), "up": up, "peer_id": peer_id,
            "address": address, "shards": shards, "bytes_stored": bytes,
        }));
        rows.push(vec![
            i.to_string(),
            if up { "up" } else { "down" }.to_string(),
            peer_id,
            if up { address } else { String::new() },
            shards.to_string(),
            bytes.to_string(),
        ]);
    }
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::Value::Array(json));
    } else {
        ctx.out.table(
            &["NODE", "STATE", "PEER ID", "ADDRESS", "SHARDS", "BYTES"],
            &rows,
        );
    }
    Ok(())
}

/// Starts `datamesh testnet ui` for `dir` in a process group of its own that outlives
/// this command (output in `D/dashboard.log`) and waits until it listens; its address.
/// A dashboard already running for `dir` is reused.
fn ui_in_background(binary: &Path, dir: &Path, port: u16) -> anyhow::Result<String> {
    use std::os::unix::process::CommandExt as _;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    if let Some(running) = datamesh_testnet::dashboard::running(dir)? {
        return Ok(running.url);
    }
    let log_path = dir.join("dashboard.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut child = Command::new(binary)
        .args(["testnet", "ui", "--port", &port.to_string(), "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(running) = datamesh_testnet::dashboard::running(dir)?
            && running.pid == child.id()
        {
            return Ok(running.url);
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the dashboard exited ({status}): {}",
                std::fs::read_to_string(&log_path)
                    .unwrap_or_default()
                    .lines()
                    .last()
                    .unwrap_or("")
            );
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the dashboard did not listen within 30 s (log: {})",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `cmd`; its stdout, or an error with its stderr.
fn output(mut cmd: Command, what: &str) -> anyhow::Result<Vec<u8>> {
    datamesh_testnet::run::output(&mut cmd).map_err(|e| match e {
        datamesh_testnet::Error::Command { stderr, .. } => {
            anyhow::anyhow!("{what} failed: {stderr}")
        }
        other => anyhow::Error::new(other).context(format!("cannot run {what}")),
    })
}

/// The demo's copy differs from its original; exit code 5.
#[derive(Debug, thiserror::Error)]
#[error("the copy differs from the original: this is a bug, please report it")]
pub(crate) struct DemoMismatch;

fn demo(ctx: &Context, binary: &Path, dir: &Path, args: &HostsArg) -> anyhow::Result<()> {
    let hosts = args.hosts.map(usize::from);
    const NODES: usize = 8;
    const SIZE: usize = 16 << 20;
    if hosts.is_some() {
        datamesh_testnet::require_root_for_hosts()?;
    }
    let step = |n: u8, text: std::fmt::Arguments<'_>| {
        let _ = writeln!(std::io::stderr().lock(), "[{n}/5] {text}");
    };
    step(
        1,
        format_args!(
            "starting {NODES} nodes{} in {}",
            hosts.map_or(String::new(), |h| format!(" on {h} hosts")),
            dir.display()
        ),
    );
    let mut net = up(ctx, binary, dir, NODES, args)?;
    print_status(ctx, &net)?;
    let ns = net
        .namespace_of(0)
        .map(|ns| format!("ip netns exec {ns} "))
        .unwrap_or_default();

    let input = dir.join("demo-input.bin");
    let mut data = vec![0u8; SIZE];
    OsRng.fill_bytes(&mut data);
    std::fs::write(&input, &data).with_context(|| format!("cannot write {}", input.display()))?;
    let before = datamesh_core::ShardId::of(&data);
    drop(data);
    step(
        2,
        format_args!(
            "putting a random 16 MiB file through node 0 (BLAKE3 {before}): {ns}datamesh --home {}/node-0 put {}",
            dir.display(),
            input.display()
        ),
    );
    let mut put = net.cli(0);
    put.arg("put").arg(&input);
    let id = String::from_utf8(output(put, "put")?)?.trim().to_string();
    step(
        2,
        format_args!("stored as {id}: 6 shards per stripe on 6 distinct nodes"),
    );

    // The two nodes (other than the putter) holding the most shards.
    let mut holders: Vec<(u64, usize)> = (1..net.len())
        .map(|i| (net.status(i).map_or(0, |s| s.shards), i))
        .collect();
    holders.sort_unstable_by(|a, b| b.cmp(a));
    let victims: Vec<(u64, usize)> = holders.into_iter().take(2).collect();
    for &(shards, i) in &victims {
        step(
            3,
            format_args!("killing storage node {i} (SIGKILL), which holds {shards} shards"),
        );
        net.kill(i)?;
    }

    let copy = dir.join("demo-output.bin");
    let _ = std::fs::remove_file(&copy);
    step(
        4,
        format_args!(
            "getting it back: {ns}datamesh --home {}/node-0 get {id} -o {}",
            dir.display(),
            copy.display()
        ),
    );
    let mut get = net.cli(0);
    get.args(["get", &id, "-o"]).arg(&copy);
    output(get, "get")?;
    let after = datamesh_core::ShardId::of(
        &std::fs::read(&copy).with_context(|| format!("cannot read {}", copy.display()))?,
    );
    step(5, format_args!("BLAKE3 of the copy: {after}"));
    let node_ui = match hosts {
        // On a testnet of hosts node 0's API is on its namespace's loopback.
        Some(_) => None,
        None => net.run_file(0).ok().flatten().map(|run| run.api),
    };
    net.detach();
    if before != after {
        bail!(DemoMismatch);
    }
    ctx.out.info(format_args!(
        "the copy is identical. The testnet keeps running ({} of {NODES} nodes up): `datamesh testnet status --dir {d}`, `datamesh testnet destroy --dir {d}`",
        NODES - victims.len(),
        d = dir.display()
    ));
    if let Some(api) = node_ui {
        ctx.out.info(format_args!(
            "dashboard of node 0: http://{api}/ui (log in with the token in {}/node-0/api-token)",
            dir.display()
        ));
    }
    let url = ui_in_background(binary, dir, 0)?;
    ctx.out.info(format_args!(
        "dashboard of the testnet (watch it heal: start the killed nodes, repair the file): {url} (log in with the token in {})",
        datamesh_testnet::dashboard::token_path(dir).display()
    ));
    Ok(())
}
