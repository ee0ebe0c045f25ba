//! The hostile-peer suite against real node processes: a testnet of `datamesh node run`
//! processes on 127.0.0.1 and, in this process, a hostile peer built on the node's own
//! network code (the in-process suite's [`attacker::Attacker`], included by path). Each
//! attack is asserted with figures taken from outside the victim: the answers it gives,
//! and the bytes its process read (`rchar` of `/proc/PID/io`, which counts every byte
//! RocksDB reads from a blob file). An honest put and get through the CLI runs while the
//! attacks are under way.

#[path = "../node/tests/hostile/attacker.rs"]
mod attacker;
mod support;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use attacker::{Attacker, Outcome};
use datamesh_core::{FileId, ShardId};
use datamesh_node::libp2p::{Multiaddr, PeerId};
use datamesh_node::protocol::{InvalidReason, MAX_IDS, Refusal, Request, Response};
use datamesh_testnet::input::{assert_same_file, make_file};
use datamesh_testnet::run::{run_within, serial};
use datamesh_testnet::{Config, Kdf, Testnet};

use support::bin;

/// Nodes of the testnet: the fewest a put accepts.
const NODES: usize = 6;
/// The node attacked.
const VICTIM: usize = 5;
/// The largest blob a peer stores (a manifest at its 16 MiB cap).
const LARGE: usize = 16 << 20;
/// No single command or attack may take longer than this.
const DEADLINE: Duration = Duration::from_secs(180);

/// Bytes node `i`'s process has read so far (`rchar`).
fn bytes_read(net: &Testnet, i: usize) -> anyhow::Result<u64> {
    let pid = net.pid(i).context("the victim is not running")?;
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .with_context(|| format!("cannot read /proc/{pid}/io"))?;
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .context("no rchar in /proc/PID/io")?
        .trim()
        .parse()
        .context("rchar is not a number")
}

/// What the attacks saw.
struct Figures {
    duplicates: Vec<Outcome>,
    distinct: Outcome,
    read_during_has: u64,
    announces: Vec<Outcome>,
    /// The control: bytes the victim read to serve one fetch of the large blob.
    read_during_fetch: u64,
    fetched: usize,
}

/// The victim's peer id and first listen address, from its `node.json`.
fn victim_address(net: &Testnet) -> anyhow::Result<(PeerId, Multiaddr)> {
    let run = net
        .run_file(VICTIM)?
        .context("the victim has no node.json")?;
    let addr = run
        .listen
        .first()
        .context("the victim has no listen address")?
        .parse()?;
    Ok((run.peer_id.parse()?, addr))
}

/// A hostile peer that knows where the victim is.
fn attacker(net: &Testnet) -> anyhow::Result<(Attacker, PeerId)> {
    let (peer, addr) = victim_address(net)?;
    let mut attacker = Attacker::new(Duration::from_secs(60)).map_err(|e| anyhow::anyhow!(e))?;
    attacker.add_address(peer, addr);
    Ok((attacker, peer))
}

/// The 16 MiB blob the attacker stores on the victim.
fn large_blob() -> Vec<u8> {
    (0..LARGE).map(|i| (i % 251) as u8).collect()
}

/// Floods the victim with `Has` requests (duplicates of the large blob's id, then 65,536
/// distinct ids with it among them) and `Announce`s of 20 made-up file ids.
async fn attack(net: &Testnet, big: ShardId) -> anyhow::Result<Figures> {
    let (mut attacker, peer) = attacker(net)?;
    let before = bytes_read(net, VICTIM)?;
    let duplicates = attacker
        .send_all(
            peer,
            vec![
                Request::Has {
                    ids: vec![big; MAX_IDS]
                };
                4
            ],
        )
        .await;
    let mut ids: Vec<ShardId> = (0..MAX_IDS as u64 - 1)
        .map(|i| ShardId::of(&i.to_be_bytes()))
        .collect();
    ids.push(big);
    let distinct = attacker.send(peer, Request::Has { ids }).await;
    let read_during_has = bytes_read(net, VICTIM)? - before;
    let announces = attacker
        .send_all(
            peer,
            (0..20u8)
                .map(|i| {
                    let file = FileId::of_manifest(&[i; 9]);
                    Request::Announce {
                        file,
                        held: ShardId::of(file.as_bytes()),
                    }
                })
                .collect(),
        )
        .await;
    // The control: a fetch of the blob is a read of it, and rchar sees it.
    let before = bytes_read(net, VICTIM)?;
    let fetched = match attacker.send(peer, Request::Fetch { id: big }).await {
        Outcome::Answered(Response::Blob(b)) => b.len(),
        _ => 0,
    };
    let read_during_fetch = bytes_read(net, VICTIM)? - before;
    Ok(Figures {
        duplicates,
        distinct,
        read_during_has,
        announces,
        read_during_fetch,
        fetched,
    })
}

/// An honest `put` on node 0 and `get` of it, through the CLI.
fn honest_round_trip(net: &Testnet, scratch: &Path) -> anyhow::Result<()> {
    let input = make_file(scratch, 3 << 20, 13)?;
    let mut put = net.cli(0);
    put.arg("put").arg(&input);
    let id = String::from_utf8(run_within(put, scratch, DEADLINE)?.ok("honest put")?)?
        .trim()
        .to_string();
    let output = scratch.join("honest-out");
    let mut get = net.cli(0);
    get.args(["get", &id, "-o"]).arg(&output);
    run_within(get, scratch, DEADLINE)?.ok("honest get")?;
    Ok(assert_same_file(&input, &output)?)
}

/// `Has` floods and `Announce`s of unknown files against a node process: 65,536 copies
/// of a 16 MiB blob's id are refused, 65,536 distinct ids are answered while the victim
/// reads less than one copy of that blob, and 20 of 20 made-up files are refused; an
/// honest put and get meanwhile come back byte-identical.
#[test]
fn has_floods_and_announces_of_unknown_files_are_refused() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let mut net =
        Testnet::up_with(Config::new(bin()?, scratch.join("net"), NODES).with_kdf(Kdf::FAST))
            .context("cannot start the testnet")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    // The attacker stores a 16 MiB blob; a restart flushes it from the victim's memtable
    // into a blob file, where every read of it is a read of the file (counted in rchar).
    let bytes = large_blob();
    let big = ShardId::of(&bytes);
    let stored = runtime.block_on(async {
        let (mut attacker, peer) = attacker(&net)?;
        let request = Request::Store {
            id: big,
            bytes: bytes.into(),
        };
        anyhow::Ok(attacker.send(peer, request).await)
    })?;
    ensure!(stored.is(&Response::Stored), "{stored:?}");
    net.stop(VICTIM)?;
    net.start(VICTIM)?;

    let net = &net;
    let (figures, honest) = std::thread::scope(|scope| {
        let attacks = scope.spawn(|| {
            runtime.block_on(async {
                tokio::time::timeout(DEADLINE, attack(net, big))
                    .await
                    .context("the attacks did not end in time")?
            })
        });
        let honest = honest_round_trip(net, scratch);
        let figures = attacks
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the attack thread panicked")));
        (figures, honest)
    });
    let figures = figures?;
    honest.context("the honest round trip during the attacks")?;

    for outcome in &figures.duplicates {
        ensure!(
            matches!(outcome, Outcome::Failed(_)),
            "a has of duplicate ids was not refused: {outcome:?}"
        );
    }
    let Outcome::Answered(Response::Has(flags)) = &figures.distinct else {
        anyhow::bail!(
            "a has of distinct ids was not answered: {:?}",
            figures.distinct
        );
    };
    ensure!(flags.len() == MAX_IDS && flags.iter().filter(|f| **f).count() == 1);
    ensure!(flags.last() == Some(&true), "the stored blob was not found");
    ensure!(figures.fetched == LARGE, "the blob was not served whole");
    ensure!(
        figures.read_during_fetch >= LARGE as u64,
        "the measure does not see blob reads: a fetch read {} bytes",
        figures.read_during_fetch
    );
    ensure!(
        figures.read_during_has < LARGE as u64,
        "the victim read {} bytes: a has read the 16 MiB blob",
        figures.read_during_has
    );
    let unknown = Response::Refused(Refusal::Invalid(InvalidReason::UnknownFile));
    let refused = figures.announces.iter().filter(|o| o.is(&unknown)).count();
    ensure!(refused == 20, "{:?}", figures.announces);
    Ok(())
}
