//! This machine's limit for a put and a get of a large file on the one-machine testnet:
//! the CPU that the unavoidable work of all its processes needs per byte of file, each
//! part timed on one core in the same run, spread over every core.
//!
//! Per byte of file a put needs: AES-256-GCM once, BLAKE3 of the plaintext and of the
//! 1.5 bytes of shards, an RS 4+2 encode; the transport (Noise: ChaCha20-Poly1305)
//! sealing the shards that leave the gateway and opening them on arrival, 1.25 bytes
//! each (the gateway keeps one of each stripe's six shards: the least traffic a
//! placement allows); BLAKE3 of those 1.25 bytes on receipt; and a synced write of the
//! 1.5 bytes stored. A get of the four data shards needs: the transport for 0.75 bytes
//! each way (one data shard on the gateway at best), BLAKE3 of the 1 byte of shards on
//! receipt, AES-256-GCM once, BLAKE3 of the plaintext (the file's hash), and a write of
//! the copy.
//!
//! Not counted, so the limit is above anything reachable: copies, framing, RocksDB's work
//! beyond one write, the holders' reads, the HTTP body between the CLI and its node, the
//! DHT. What the testnet reaches against this limit is what those (and idle cores) cost.

use std::hint::black_box;

use anyhow::anyhow;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

use crate::pipeline::{Primitive, Primitives};
use crate::sys;

/// Largest payload of one Noise transport message (65,535 bytes with its 16-byte tag):
/// how libp2p-noise cuts a stream.
pub const NOISE_FRAME: usize = 65_535 - 16;

/// Throughput of each part of the work, MB (10^6 bytes) per CPU-second of one core.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    /// AES-256-GCM seal (an open costs the same: CTR and GHASH).
    pub aes_gcm: f64,
    /// BLAKE3 of 1 MiB segments.
    pub blake3: f64,
    /// RS 4+2 parity, per byte of data.
    pub rs_encode: f64,
    /// ChaCha20-Poly1305 seal of Noise-sized frames (ring, as libp2p-noise uses it).
    pub transport_seal: f64,
    /// ChaCha20-Poly1305 open of the same frames.
    pub transport_open: f64,
    /// 256 KiB writes with an fsync after each (a stored shard): the writing thread's CPU.
    pub synced_write: f64,
    /// 1 MiB writes, one fsync at the end (the copy a get writes): the writing thread's CPU.
    pub write: f64,
}

/// One part of the work: `bytes` per byte of file at `rate`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Work {
    /// Its name in reports.
    pub what: &'static str,
    /// Bytes it handles per byte of file.
    pub bytes: f64,
    /// MB per CPU-second of one core.
    pub rate: f64,
}

impl Work {
    /// CPU milliseconds it needs per MB of file.
    pub fn cpu_ms_per_mb(&self) -> f64 {
        self.bytes / self.rate * 1e3
    }
}

/// The parts of a put, per byte of file.
pub fn put_work(r: &Rates) -> Vec<Work> {
    vec![
        Work {
            what: "aes-256-gcm",
            bytes: 1.0,
            rate: r.aes_gcm,
        },
        Work {
            what: "blake3-plaintext-and-shards",
            bytes: 2.5,
            rate: r.blake3,
        },
        Work {
            what: "rs-encode",
            bytes: 1.0,
            rate: r.rs_encode,
        },
        Work {
            what: "transport-seal",
            bytes: 1.25,
            rate: r.transport_seal,
        },
        Work {
            what: "transport-open",
            bytes: 1.25,
            rate: r.transport_open,
        },
        Work {
            what: "blake3-on-receipt",
            bytes: 1.25,
            rate: r.blake3,
        },
        Work {
            what: "synced-write",
            bytes: 1.5,
            rate: r.synced_write,
        },
    ]
}

/// The parts of a get of the four data shards, per byte of file.
pub fn get_work(r: &Rates) -> Vec<Work> {
    vec![
        Work {
            what: "transport-seal",
            bytes: 0.75,
            rate: r.transport_seal,
        },
        Work {
            what: "transport-open",
            bytes: 0.75,
            rate: r.transport_open,
        },
        Work {
            what: "blake3-on-receipt",
            bytes: 1.0,
            rate: r.blake3,
        },
        Work {
            what: "aes-256-gcm",
            bytes: 1.0,
            rate: r.aes_gcm,
        },
        Work {
            what: "blake3-plaintext",
            bytes: 1.0,
            rate: r.blake3,
        },
        Work {
            what: "write",
            bytes: 1.0,
            rate: r.write,
        },
    ]
}

/// MB/s of file that `cores` cores can carry when every byte needs `work`.
pub fn limit_mbs(work: &[Work], cores: usize) -> f64 {
    let ms_per_mb: f64 = work.iter().map(Work::cpu_ms_per_mb).sum();
    cores as f64 * 1e3 / ms_per_mb
}

/// Times each computing part on this thread over `data` (in 1 MiB segments, the median of
/// `reps` runs); the writes' rates are the CPU figures of the probes `synced` (256 KiB,
/// an fsync each) and `plain` (1 MiB) ([`sys::disk_write`]).
///
/// # Errors
/// The thread's CPU time cannot be read, or the cipher fails.
pub fn measure(
    data: &[u8],
    reps: usize,
    synced: sys::Throughput,
    plain: sys::Throughput,
) -> anyhow::Result<Rates> {
    let primitives = Primitives::new()?;
    let mut buf = data.to_vec();
    let mut rate = |p: Primitive| {
        median_rate(data.len(), reps, || {
            primitives.run(p, &mut buf, data, false);
            Ok(())
        })
    };
    let (aes_gcm, blake3, rs_encode) = (
        rate(Primitive::AesGcm)?,
        rate(Primitive::Blake3)?,
        rate(Primitive::RsEncode)?,
    );
    let (transport_seal, transport_open) = transport_rates(data, reps)?;
    Ok(Rates {
        aes_gcm,
        blake3,
        rs_encode,
        transport_seal,
        transport_open,
        synced_write: synced.cpu_mbs,
        write: plain.cpu_mbs,
    })
}

/// MB per CPU-second of `f` over `len` bytes: the median of `reps` runs after a warm-up,
/// each timed by this thread's CPU time (a busy machine slows the wall clock, not this).
fn median_rate(
    len: usize,
    reps: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    f()?;
    let mut runs = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let cpu = sys::thread_cpu_seconds()?;
        f()?;
        let secs = (sys::thread_cpu_seconds()? - cpu).max(1e-9);
        runs.push(len as f64 / secs / 1e6);
    }
    crate::stats::median(&runs).ok_or_else(|| anyhow!("no runs"))
}

/// ChaCha20-Poly1305 seal and open of `data` cut into Noise frames (ring, as
/// libp2p-noise's resolver uses it), MB per CPU-second.
fn transport_rates(data: &[u8], reps: usize) -> anyhow::Result<(f64, f64)> {
    let key = || {
        UnboundKey::new(&CHACHA20_POLY1305, &[9u8; 32])
            .map(LessSafeKey::new)
            .map_err(|_| anyhow!("ring refused a ChaCha20-Poly1305 key"))
    };
    let (sealer, opener) = (key()?, key()?);
    let nonce = |n: usize| {
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&(n as u64).to_le_bytes());
        Nonce::assume_unique_for_key(bytes)
    };
    // Sealed frames with their tags, made once: the open runs over these.
    let sealed: Vec<Vec<u8>> = data
        .chunks(NOISE_FRAME)
        .enumerate()
        .map(|(n, chunk)| {
            let mut frame = chunk.to_vec();
            let tag = sealer
                .seal_in_place_separate_tag(nonce(n), Aad::empty(), &mut frame)
                .map_err(|_| anyhow!("seal failed"))?;
            frame.extend_from_slice(tag.as_ref());
            Ok(frame)
        })
        .collect::<anyhow::Result<_>>()?;
    let mut plain = data.to_vec();
    let seal = median_rate(data.len(), reps, || {
        for (n, chunk) in plain.chunks_mut(NOISE_FRAME).enumerate() {
            let tag = sealer
                .seal_in_place_separate_tag(nonce(n), Aad::empty(), chunk)
                .map_err(|_| anyhow!("seal failed"))?;
            black_box(tag.as_ref());
        }
        Ok(())
    })?;
    let open = median_rate(data.len(), reps, || {
        for (n, frame) in sealed.iter().enumerate() {
            // Each run opens a copy (opening in place leaves plaintext): the copy is
            // timed with it, as a receiver copies each frame into a buffer too.
            let mut copy = frame.clone();
            let opened = opener
                .open_in_place(nonce(n), Aad::empty(), &mut copy)
                .map_err(|_| anyhow!("a sealed frame did not open"))?;
            black_box(opened.len());
        }
        Ok(())
    })?;
    Ok((seal, open))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(all: f64) -> Rates {
        Rates {
            aes_gcm: all,
            blake3: all,
            rs_encode: all,
            transport_seal: all,
            transport_open: all,
            synced_write: all,
            write: all,
        }
    }

    #[test]
    fn the_work_per_byte_adds_up() {
        // Put: 1 + 2.5 + 1 + 1.25 + 1.25 + 1.25 + 1.5 = 9.75 bytes of work per byte.
        let put: f64 = put_work(&rates(1.0)).iter().map(|w| w.bytes).sum();
        assert!((put - 9.75).abs() < 1e-9, "{put}");
        // Get: 0.75 + 0.75 + 1 + 1 + 1 + 1 = 5.5.
        let get: f64 = get_work(&rates(1.0)).iter().map(|w| w.bytes).sum();
        assert!((get - 5.5).abs() < 1e-9, "{get}");
    }

    #[test]
    fn the_limit_is_the_cores_over_the_cpu_per_byte() {
        // Every part at 975 MB/s: a put needs 10 ms of CPU per MB; two cores carry 200.
        let limit = limit_mbs(&put_work(&rates(975.0)), 2);
        assert!((limit - 200.0).abs() < 1e-6, "{limit}");
        // A part twice as slow costs twice its share.
        let mut slow = rates(1000.0);
        slow.aes_gcm = 500.0;
        let ms: f64 = get_work(&slow).iter().map(Work::cpu_ms_per_mb).sum();
        assert!((ms - (5.5 + 1.0)).abs() < 1e-9, "{ms}");
    }

    #[test]
    fn every_part_is_measured() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let synced = sys::disk_write(dir.path(), 1 << 20, 256 * 1024, true)?;
        let plain = sys::disk_write(dir.path(), 2 << 20, 1 << 20, false)?;
        let data = crate::pipeline::input(4 << 20);
        let r = measure(&data, 2, synced, plain)?;
        for (name, v) in [
            ("aes", r.aes_gcm),
            ("blake3", r.blake3),
            ("rs", r.rs_encode),
            ("seal", r.transport_seal),
            ("open", r.transport_open),
            ("synced write", r.synced_write),
            ("write", r.write),
        ] {
            assert!(v.is_finite() && v > 0.0, "{name}: {v}");
        }
        assert!(!dir.path().join("disk-bandwidth-probe").exists());
        Ok(())
    }
}
