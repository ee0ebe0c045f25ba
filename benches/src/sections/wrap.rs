//! Per recipient kind (classical secp256k1 ECIES, hybrid ML-KEM-768 + secp256k1, P-256
//! ECIES of the fips profile): the time to wrap and to unwrap one data key, and the size
//! of an envelope to one recipient (part of the `pipeline` section: no network).

use std::time::Instant;

use datamesh_core::ecies::SecretKey;
use datamesh_core::{
    AuthorityKey, AuthorityRoot, AuthoritySalt, DataKey, FileId, FileSecret, HybridSecretKey,
    KeyEnvelope, P256SecretKey,
};

use super::measure::progress;
use crate::report::{Figure, Report};
use crate::stats::median;

pub(super) fn wrap_figures(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let runs = if quick { 50 } else { 500 };
    let authority = AuthorityKey::derive(
        &AuthorityRoot::from_bytes(&[1; 32]),
        &AuthoritySalt::random(),
    )?;
    let dek = DataKey::generate();
    let file = FileId::from_bytes([2; 32]);
    for (kind, secret) in [
        ("classical", FileSecret::Classical(SecretKey::generate())),
        ("hybrid", FileSecret::Hybrid(HybridSecretKey::generate())),
        ("p256", FileSecret::P256(P256SecretKey::generate())),
    ] {
        progress(format!("wrap/unwrap, {kind} recipient, {runs} runs"));
        let recipient = [secret.recipient()];
        let mut wrap = Vec::with_capacity(runs);
        let mut unwrap = Vec::with_capacity(runs);
        let mut size = 0;
        for _ in 0..runs {
            let started = Instant::now();
            let envelope = KeyEnvelope::seal_to(file, 1, &dek, &recipient, &authority)?;
            wrap.push(started.elapsed().as_secs_f64() * 1e6);
            let started = Instant::now();
            let opened = envelope.open([&secret])?;
            unwrap.push(started.elapsed().as_secs_f64() * 1e6);
            anyhow::ensure!(opened.to_bytes() == dek.to_bytes(), "{kind}: wrong key");
            size = envelope.to_bytes().len();
        }
        report.add(
            Figure::new(
                format!("wrap.{kind}.seal"),
                median(&wrap).unwrap_or(0.0),
                "us",
            )
            .note("KeyEnvelope::seal_to, one recipient (wrap + ECDSA signature), median"),
        );
        report.add(
            Figure::new(
                format!("wrap.{kind}.open"),
                median(&unwrap).unwrap_or(0.0),
                "us",
            )
            .note("KeyEnvelope::open with the recipient's key, median"),
        );
        report.add(
            Figure::new(format!("wrap.{kind}.envelope"), size as f64, "bytes").note(
                "envelope to one recipient; each further recipient adds its wrapped key + 34",
            ),
        );
    }
    Ok(())
}
