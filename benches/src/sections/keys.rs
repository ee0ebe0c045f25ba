//! The keys section: unlock time with the default Argon2id parameters and through each
//! other slot kind (PKCS#11, TPM, password and key file), `keys rotate`,
//! and `keys rewrap --all` of many files (time, bytes sent, shard stores untouched).

use anyhow::{Context as _, ensure};
use datamesh_api::RewrapAll;
use datamesh_testnet::hardware::{SoftHsm, Swtpm};
use datamesh_testnet::input::random_bytes;
use datamesh_testnet::run::datamesh;
use datamesh_testnet::{Kdf, write_password_file};

use super::ctx::Ctx;
use super::measure::{progress, run};
use crate::cmd::get_bytes;
use crate::report::{Figure, Report};
use crate::stats::median;

pub(super) fn keys_section(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    unlock_times(ctx, report)?;

    let want = if ctx.quick { 100 } else { 1000 };
    let dir = ctx.dir.clone();
    let already = ctx.small_files;
    let net = ctx.net(report)?;
    let api = net.api(0)?;
    if already < want {
        progress(format!(
            "storing {} files of 4 KiB to rewrap",
            want - already
        ));
        for i in already..want {
            let body = random_bytes(4096, 2_000_000 + i as u64);
            api.put_bytes(&body, &format!("rewrap-{i}"), &[])?;
        }
    }
    let files = api.list()?.len();
    let before = net.stored()?;

    progress("keys rotate");
    let mut rotate = net.tn.cli(0);
    rotate
        .args(["keys", "rotate", "--password-file"])
        .arg(net.tn.password_file(0));
    let rotated = run(rotate, &dir)?.elapsed.as_secs_f64();
    report.add(
        Figure::new("keys.rotate", rotated, "s")
            .note("`datamesh keys rotate` (file-encryption) on the running gateway's home"),
    );

    progress(format!("keys rewrap --all of {files} files"));
    let mut rewrap = net.tn.cli(0);
    rewrap.args(["--json", "keys", "rewrap", "--all"]);
    let outcome = run(rewrap, &dir)?;
    let secs = outcome.elapsed.as_secs_f64();
    let answer: RewrapAll = serde_json::from_slice(&outcome.stdout)
        .context("`keys rewrap --all --json` did not print its JSON")?;
    let (done, failed) = (answer.rewrapped, answer.failed.len());
    ensure!(
        failed == 0 && done.len() == files,
        "rewrap: {} of {files} files re-wrapped, {failed} failed",
        done.len()
    );
    let sent: u64 = done.iter().map(|r| r.bytes_sent).sum();
    let after = net.stored()?;

    // The files still open (through the new envelope).
    let sample = api
        .list()?
        .into_iter()
        .find(|f| f.size == 4096)
        .map(|f| f.id);
    if let Some(id) = sample {
        ensure!(
            get_bytes(&api, &id)?.len() == 4096,
            "a file did not open after the rewrap"
        );
    }

    report.add(
        Figure::new(format!("keys.rewrap.{files}-files"), secs, "s")
            .note("`datamesh keys rewrap --all`: new envelopes to every holder"),
    );
    report.add(Figure::new(
        "keys.rewrap.files-per-s",
        files as f64 / secs,
        "files/s",
    ));
    report.add(
        Figure::new("keys.rewrap.envelope-bytes-sent", sent as f64, "bytes")
            .note("sum of bytes_sent reported per file"),
    );
    let moved: u64 = before
        .iter()
        .zip(&after)
        .map(|(b, a)| b.1.abs_diff(a.1))
        .sum();
    let count_change: u64 = before
        .iter()
        .zip(&after)
        .map(|(b, a)| b.0.abs_diff(a.0))
        .sum();
    report.add(
        Figure::new("keys.rewrap.shard-bytes-changed", moved as f64, "bytes").note(format!(
            "sum over the 7 nodes of |bytes_stored after - before| (before: {} bytes in {} shards)",
            before.iter().map(|s| s.1).sum::<u64>(),
            before.iter().map(|s| s.0).sum::<u64>()
        )),
    );
    report.add(
        Figure::new(
            "keys.rewrap.shard-count-changed",
            count_change as f64,
            "shards",
        )
        .note("sum over the 7 nodes of |shards after - before|"),
    );
    ensure!(
        moved == 0 && count_change == 0,
        "the rewrap changed the shard stores: {moved} bytes, {count_change} shards"
    );
    Ok(())
}

/// `datamesh keys list` (one unlock) in a home made with the default Argon2id
/// parameters and in one of the fips profile (PBKDF2-HMAC-SHA256, 600,000 iterations),
/// against the same command in a home with the cheapest Argon2id ones.
pub(super) fn unlock_times(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let dir = ctx.dir.join("unlock");
    std::fs::create_dir_all(&dir)?;
    let password = dir.join("password");
    write_password_file(
        &password,
        "correct horse battery staple of the benchmark 7f3a91",
    )?;
    let reps = if ctx.quick { 2 } else { 5 };
    let mut medians = Vec::new();
    let fips = ["--security-profile".to_string(), "fips".to_string()];
    for (label, args, note) in [
        (
            "default",
            Vec::new(),
            "`datamesh keys list` (one unlock) at argon2id m=64 MiB t=3 p=4; median",
        ),
        (
            "fast",
            Kdf::FAST.args().to_vec(),
            "the same command at m=8 KiB t=1 p=1: process start + everything but the KDF",
        ),
        (
            "pbkdf2",
            fips.to_vec(),
            "the same command in a fips-profile home: pbkdf2-sha256 i=600000; median",
        ),
    ] {
        let home = dir.join(label);
        let mut init = datamesh(&ctx.binary, &home);
        init.arg("init").arg("--password-file").arg(&password);
        init.args(&args);
        progress(format!("unlock time, {label} KDF parameters"));
        run(init, &dir)?;
        let mut times = Vec::new();
        for _ in 0..reps {
            let mut list = datamesh(&ctx.binary, &home);
            list.args(["keys", "list", "--password-file"])
                .arg(&password);
            times.push(run(list, &dir)?.elapsed.as_secs_f64());
        }
        medians.push(median(&times).unwrap_or(0.0));
        report.add(
            Figure::new(
                format!("keys.unlock-command.{label}-kdf"),
                medians[medians.len() - 1],
                "s",
            )
            .runs(times)
            .note(note),
        );
    }
    report.add(
        Figure::new(
            "keys.unlock.default-kdf",
            (medians[0] - medians[1]).max(0.0),
            "s",
        )
        .note("argon2id m=64 MiB t=3 p=4: default minus fast, the KDF's share of an unlock"),
    );
    report.add(
        Figure::new(
            "keys.unlock.pbkdf2-kdf",
            (medians[2] - medians[1]).max(0.0),
            "s",
        )
        .note("pbkdf2-sha256 i=600000 (fips profile): pbkdf2 minus fast, the KDF's share"),
    );
    slot_kind_unlock_times(ctx, report, &dir.join("default"), &password, reps)
}

/// `datamesh keys list --unlock-slot N` through a slot of each other kind, added to the
/// default-parameter home: a SoftHSM2 token, a swtpm, a password and a key file, a
/// password and the token, a password and the TPM.
fn slot_kind_unlock_times(
    ctx: &Ctx,
    report: &mut Report,
    home: &std::path::Path,
    password: &std::path::Path,
    reps: usize,
) -> anyhow::Result<()> {
    let dir = ctx.dir.join("unlock-slots");
    std::fs::create_dir_all(&dir)?;
    let hsm = SoftHsm::new(&dir.join("softhsm"), "bench", "4711")?;
    let tpm = Swtpm::start(&dir.join("tpm"))?;
    let (conf_key, conf) = hsm.env();
    let key_file = dir.join("key");
    let cli = |args: &[&str]| {
        let mut cmd = datamesh(&ctx.binary, home);
        cmd.args(args)
            .env(conf_key, conf)
            .env("TSS2_LOG", "all+none")
            .env("DATAMESH_TPM_TCTI", tpm.tcti())
            .env("DATAMESH_PKCS11_PIN_FILE", hsm.pin_file());
        cmd
    };
    let module = hsm.module().display().to_string();
    let pw = password.display().to_string();
    let kf = key_file.display().to_string();
    let adds: [(&str, Vec<&str>); 5] = [
        ("pkcs11", vec!["--pkcs11", &module, "--token", hsm.label()]),
        ("tpm", vec!["--tpm"]),
        (
            "password+pkcs11",
            vec![
                "--with-password",
                "--pkcs11",
                &module,
                "--token",
                hsm.label(),
                "--key-label",
                "bench-factor",
                "--new-password-file",
                &pw,
            ],
        ),
        (
            "password+tpm",
            vec!["--with-password", "--tpm", "--new-password-file", &pw],
        ),
        (
            "password+keyfile",
            vec![
                "--new-key-file",
                &kf,
                "--generate-key-file",
                "--new-password-file",
                &pw,
            ],
        ),
    ];
    for (kind, extra) in adds {
        progress(format!("unlock time through a {kind} slot"));
        let mut add = cli(&["keys", "slot", "add", "--password-file", &pw]);
        add.args(extra);
        let id = String::from_utf8(run(add, &dir)?.stdout)?
            .trim()
            .to_string();
        let mut times = Vec::new();
        for _ in 0..reps {
            let mut list = cli(&["keys", "list", "--unlock-slot", &id]);
            if kind.starts_with("password+") {
                list.arg("--password-file").arg(password);
            }
            // Only once the key file exists: a named key file that is missing stops an
            // unlock through any other slot too.
            if kind == "password+keyfile" {
                list.env("DATAMESH_KEY_FILE", &key_file);
            }
            times.push(run(list, &dir)?.elapsed.as_secs_f64());
        }
        report.add(
            Figure::new(
                format!("keys.unlock-command.{}-slot", kind.replace('+', "-")),
                median(&times).unwrap_or(0.0),
                "s",
            )
            .runs(times)
            .note(format!(
                "`datamesh keys list --unlock-slot {id}` through a {kind} slot (SoftHSM2, swtpm on 127.0.0.1; Argon2id at the defaults); median"
            )),
        );
    }
    Ok(())
}
