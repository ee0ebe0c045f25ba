//! Case 8: crash durability under a stream of puts.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use datamesh_testnet::input::{MIB, SplitMix, make_file};
use datamesh_testnet::run::serial;

use super::{EXIT_NETWORK, NODES, check, get_same, restart_all, run, state, testnet};
use crate::support::datamesh;

/// Case 8: a stream of puts through node 0 while storage nodes are SIGKILLed at random
/// moments and restarted (20 kills; `DATAMESH_SOAK_KILLS=N` for a longer soak);
/// afterwards every acknowledged put reads back byte-identical and verifies intact on
/// six peers, and every failed put failed cleanly.
#[test]
fn crash_durability_under_a_stream_of_puts() -> anyhow::Result<()> {
    let kills_wanted: usize = match std::env::var("DATAMESH_SOAK_KILLS") {
        Ok(n) => n
            .parse()
            .with_context(|| format!("DATAMESH_SOAK_KILLS={n:?} is not a count"))?,
        Err(_) => 20,
    };
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path().to_path_buf();
    let mut net = testnet(&scratch, |c| c)?;
    let seed = {
        use rand_core::RngCore as _;
        rand_core::OsRng.next_u64()
    };
    note!("case 8: seed {seed:#x}");
    let mut rng = SplitMix(seed);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let home = net.home(0);
    let putter = {
        let (stop, scratch) = (std::sync::Arc::clone(&stop), scratch.clone());
        let mut rng = SplitMix(seed.rotate_left(17));
        std::thread::spawn(move || -> anyhow::Result<(Vec<(String, PathBuf)>, usize)> {
            let mut acked = Vec::new();
            let mut failed = 0;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let len = rng.range(1, 3 * MIB as u64) as usize;
                let input = make_file(&scratch, len, 8000 + n)?;
                let mut cmd = datamesh(&home);
                cmd.arg("put").arg(&input);
                let outcome = run(cmd, &scratch)?;
                if outcome.code == Some(0) {
                    let id = String::from_utf8(outcome.stdout)?.trim().to_string();
                    ensure!(id.starts_with("dm1"), "put printed {id:?}, not an id");
                    acked.push((id, input));
                } else {
                    // Not acknowledged: it must have failed cleanly.
                    outcome.fails_with(EXIT_NETWORK, "a put during a crash")?;
                    failed += 1;
                    fs::remove_file(input)?;
                }
            }
            Ok((acked, failed))
        })
    };
    let mut kills = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        for _ in 0..kills_wanted {
            std::thread::sleep(Duration::from_millis(rng.range(50, 1500)));
            let victim = rng.range(1, NODES as u64) as usize;
            net.kill(victim)?;
            kills.push(victim);
            std::thread::sleep(Duration::from_millis(rng.range(0, 500)));
            net.start(victim)?;
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = putter
        .join()
        .map_err(|_| anyhow::anyhow!("the put thread panicked"))??;
    result?;
    note!(
        "case 8: {} puts acknowledged, {failed} failed cleanly; killed {kills:?}",
        acked.len()
    );
    ensure!(
        acked.len() >= kills_wanted / 2,
        "only {} puts were acknowledged",
        acked.len()
    );
    restart_all(&mut net)?;
    // Every acknowledged put reads back, and every copy of every shard it placed is
    // there and intact (fetched and hashed): no torn shard passes.
    for (id, input) in &acked {
        get_same(&net, 0, id, input, &scratch, "an acknowledged put")?;
        let verify = check(&net, 0, id, &["--verify"], &scratch)?;
        ensure!(
            state(&verify) == "healthy"
                && verify["bad_peers"].as_array().is_some_and(Vec::is_empty),
            "an acknowledged put is not intact on six peers after the crashes: {verify}"
        );
    }
    Ok(())
}
