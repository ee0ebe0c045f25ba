//! `keys compromised NAME VERSION [--reencrypt]`: a stolen file-encryption key handled in
//! one command, through the running node.
//!
//! 1. Note which files of the catalog the version opens now (their current envelope).
//! 2. Revoke it (the active version is rotated first): it never encrypts again.
//! 3. Re-wrap every file of the catalog to the active key (the revoked-key override opens
//!    the files only that version opened).
//! 4. Destroy it, once no file of the catalog opens with it any more.
//! 5. With `--reencrypt`: every file noted in 1 is read and stored again under a fresh
//!    data key (new shards, new file id), and the old copies are released; the old
//!    envelopes a thief may have kept open nothing current.
//! 6. One `incident` line in the audit log.
//!
//! Progress is kept in `<home>/incident-NAME-vVERSION.json` (0600), written after every
//! step and every file, so an interrupted run is finished by running the same command
//! again (adding `--reencrypt` later works too: the files noted in 1 are in the state).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context as _;
use datamesh_api::Client;
use datamesh_core::FileId;
use datamesh_keys::{AuditEvent, AuditOp, ChangeError, KeyStatus, Keystore, fsx};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Context;
use crate::home;
use crate::password::PasswordArgs;

/// Version of the state file's format.
const STATE_VERSION: u8 = 1;

/// The progress of one incident, kept in the home between runs.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentState {
    format: u8,
    name: String,
    version: u32,
    /// Key id (hex) of the compromised version.
    key_id: String,
    /// Files the version opened when the incident started; `None` until noted.
    affected: Option<Vec<String>>,
    /// The version is revoked (or was before the command started).
    revoked: bool,
    /// The active version after the revocation.
    replacement: Option<u32>,
    /// Files re-wrapped to the active key.
    rewrapped: BTreeSet<String>,
    /// The secret is destroyed.
    destroyed: bool,
    /// Re-encryption asked for (in this run or an earlier one).
    reencrypt: bool,
    /// Old file id -> new file id; `None` when an interrupted run's request finished on
    /// the node after the command was gone (the old file left the catalog).
    reencrypted: BTreeMap<String, Option<String>>,
    /// The file being re-encrypted when the state was last written.
    pending: Option<String>,
    /// Every step done (with re-encryption when asked).
    finished: bool,
}

impl IncidentState {
    fn load(path: &Path) -> anyhow::Result<Option<Self>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let state: Self = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is damaged: remove it to start the incident over (every step is safe to redo)",
                path.display()
            )
        })?;
        anyhow::ensure!(
            state.format == STATE_VERSION,
            "{} has format {} (this build reads {STATE_VERSION})",
            path.display(),
            state.format
        );
        Ok(Some(state))
    }

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text =
            serde_json::to_vec_pretty(self).context("the incident state does not serialize")?;
        fsx::write_private_file(path, &text)
            .with_context(|| format!("cannot write the incident state {}", path.display()))
    }
}

/// A file a step could not handle.
#[derive(Debug, Serialize)]
struct Failure {
    id: String,
    error: String,
}

/// A count bar on stderr (hidden unless the terminal shows progress).
fn bar(ctx: &Context, total: usize, what: &str) -> indicatif::ProgressBar {
    if !ctx.out.progress() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Records a noted file that is no longer in the catalog (re-encrypted by an interrupted
/// run, whose new id `datamesh ls` shows, or removed otherwise).
fn gone(ctx: &Context, state: &mut IncidentState, path: &Path, old: String) -> anyhow::Result<()> {
    ctx.out.warn(format_args!(
        "{old} is no longer in the catalog{}",
        if state.pending.as_deref() == Some(&old) {
            ": re-encrypted by the interrupted run (its new id is in `datamesh ls`)"
        } else {
            ""
        }
    ));
    state.reencrypted.insert(old, None);
    state.save(path)
}

fn parse_id(id: &str) -> anyhow::Result<FileId> {
    id.parse()
        .with_context(|| format!("the node listed {id}, which is not a file id"))
}

/// The catalog files whose current envelope the key opens (revoked keys included).
fn files_opened_by(client: &Client, key_id: &str) -> anyhow::Result<Vec<String>> {
    Ok(client
        .key_usage(true)?
        .into_iter()
        .filter(|f| f.keys.iter().any(|k| k == key_id))
        .map(|f| f.id)
        .collect())
}

/// `keys compromised NAME VERSION [--reencrypt] [--reason TEXT]`.
pub(super) fn compromised(
    ctx: &Context,
    password: &PasswordArgs,
    name: &str,
    version: u32,
    reencrypt: bool,
    reason: &str,
) -> anyhow::Result<()> {
    let client = crate::cmd::files::client(ctx)?;
    let mut keystore = home::unlock(&ctx.home, password, &ctx.out)?;
    let info = keystore
        .versions(name)
        .into_iter()
        .find(|k| k.version == version)
        .ok_or_else(|| ChangeError::NoSuchVersion {
            name: name.to_string(),
            version,
        })?;
    anyhow::ensure!(
        info.purpose.is_file_encryption(),
        "keys compromised handles file-encryption keys (classical, hybrid, P-256); for a node identity run \
         `datamesh keys rotate {name}`, restart the node, then `datamesh keys destroy {name} {version}`"
    );
    // The id envelopes name it by, of whichever kind (secp256k1, hybrid, P-256).
    let key_id = info.key_id().map(|id| id.to_string()).ok_or_else(|| {
        anyhow::anyhow!("the keystore holds an invalid public key for {name} v{version}")
    })?;

    let path = home::incident_state(&ctx.home, name, version);
    let (mut state, resumed) = match IncidentState::load(&path)? {
        Some(state) => {
            anyhow::ensure!(
                state.name == name && state.version == version && state.key_id == key_id,
                "{} belongs to another key: remove it to start over",
                path.display()
            );
            (state, true)
        }
        None => {
            anyhow::ensure!(
                info.status != KeyStatus::Destroyed,
                "{name} v{version} is already destroyed and no incident state is left in the home: \
                 nothing to re-wrap or re-encrypt"
            );
            let state = IncidentState {
                format: STATE_VERSION,
                name: name.to_string(),
                version,
                key_id: key_id.clone(),
                ..IncidentState::default()
            };
            (state, false)
        }
    };
    if resumed {
        ctx.out.info(format_args!(
            "resuming the incident of {name} v{version} from {}",
            path.display()
        ));
    }
    let more = reencrypt && !state.reencrypt;
    if more {
        state.reencrypt = true;
        state.finished = false;
    }
    state.save(&path)?;

    // 1. The files the version opens now.
    if state.affected.is_none() {
        let affected = files_opened_by(&client, &key_id)
            .context("cannot ask the node which files the key opens")?;
        ctx.out.info(format_args!(
            "{} file(s) of the catalog open with {name} v{version}",
            affected.len()
        ));
        state.affected = Some(affected);
        state.save(&path)?;
    }

    // 2. Revoke (rotating first if it is the active version).
    if !state.revoked {
        if matches!(info.status, KeyStatus::Active | KeyStatus::Deprecated) {
            keystore.revoke(name, version, reason)?;
            ctx.out.info(format_args!(
                "revoked {name} v{version}: it never encrypts again"
            ));
        }
        state.revoked = true;
        state.replacement = keystore.active(name).map(|k| k.version);
        state.save(&path)?;
    }

    // 3. Every file of the catalog re-wrapped to the active key.
    let mut rewrap_failed = Vec::new();
    if !state.destroyed {
        let listed = client.list()?;
        let todo: Vec<String> = listed
            .into_iter()
            .map(|f| f.id)
            .filter(|id| !state.rewrapped.contains(id))
            .collect();
        let progress = bar(ctx, todo.len(), "rewrap");
        for id in todo {
            match client.rewrap_with(&parse_id(&id)?, &[], true) {
                Ok(_) => {
                    state.rewrapped.insert(id);
                    state.save(&path)?;
                }
                Err(e) => rewrap_failed.push(Failure {
                    id,
                    error: e.to_string(),
                }),
            }
            progress.inc(1);
        }
        progress.finish_and_clear();
        ctx.out.info(format_args!(
            "re-wrapped {} file(s) to the active key{}",
            state.rewrapped.len(),
            match rewrap_failed.len() {
                0 => String::new(),
                n => format!(", {n} failed"),
            }
        ));

        // 4. Destroy, once no file of the catalog opens with it.
        let still = files_opened_by(&client, &key_id)?;
        if !still.is_empty() {
            report(ctx, &state, &path, resumed, &rewrap_failed, &[])?;
            anyhow::bail!(
                "{} file(s) still open only with {name} v{version} (e.g. {}), so it is not destroyed yet: \
                 run the same command again to finish",
                still.len(),
                still[0]
            );
        }
        destroy(&mut keystore, name, version)?;
        state.destroyed = true;
        state.save(&path)?;
        ctx.out
            .info(format_args!("destroyed the secret of {name} v{version}"));
    }

    // 5. Re-encryption of the files it opened.
    let mut reencrypt_failed = Vec::new();
    if state.reencrypt {
        let catalog: BTreeSet<String> = client.list()?.into_iter().map(|f| f.id).collect();
        let todo: Vec<String> = state
            .affected
            .iter()
            .flatten()
            .filter(|id| !state.reencrypted.contains_key(*id))
            .cloned()
            .collect();
        let progress = bar(ctx, todo.len(), "re-encrypt");
        for old in todo {
            progress.inc(1);
            if !catalog.contains(&old) {
                // Gone from the catalog: re-encrypted by a run cut short after its
                // request reached the node (which finishes it), or removed otherwise.
                gone(ctx, &mut state, &path, old)?;
                continue;
            }
            state.pending = Some(old.clone());
            state.save(&path)?;
            match client.reencrypt(&parse_id(&old)?, false) {
                Ok(r) => {
                    ctx.out.detail(format_args!("{old} -> {}", r.new));
                    state.reencrypted.insert(old, Some(r.new));
                    state.pending = None;
                    state.save(&path)?;
                }
                // The node runs one re-encryption at a time: this request waited for the
                // interrupted run's, which took the file out of the catalog.
                Err(datamesh_api::ClientError::Api {
                    kind: datamesh_api::ErrorKind::NotFound,
                    ..
                }) => gone(ctx, &mut state, &path, old)?,
                Err(e) => reencrypt_failed.push(Failure {
                    id: old,
                    error: e.to_string(),
                }),
            }
        }
        progress.finish_and_clear();
        ctx.out.info(format_args!(
            "re-encrypted {} file(s) under fresh data keys{}",
            state.reencrypted.values().flatten().count(),
            match reencrypt_failed.len() {
                0 => String::new(),
                n => format!(", {n} failed"),
            }
        ));
    }

    // 6. The audit line, once everything asked for is done.
    let failed = rewrap_failed.len() + reencrypt_failed.len();
    if failed == 0 && !state.finished {
        let mut detail = format!(
            "compromised: revoked{}, {} file(s) re-wrapped, destroyed",
            state
                .replacement
                .map(|v| format!(" (active: v{v})"))
                .unwrap_or_default(),
            state.rewrapped.len()
        );
        if state.reencrypt {
            detail.push_str(&format!(
                ", {} file(s) re-encrypted",
                state.reencrypted.len()
            ));
        }
        keystore.log(
            &AuditEvent::new(AuditOp::Incident)
                .with_key(name, Some(version))
                .with_detail(detail),
        )?;
        state.finished = true;
        state.save(&path)?;
    }
    report(
        ctx,
        &state,
        &path,
        resumed,
        &rewrap_failed,
        &reencrypt_failed,
    )?;
    if failed > 0 {
        anyhow::bail!(
            "{failed} file(s) could not be handled (listed above): run the same command again to finish"
        );
    }
    Ok(())
}

/// Destroys the version (revoked by now; no file of the catalog opens with it).
fn destroy(keystore: &mut Keystore, name: &str, version: u32) -> Result<(), ChangeError> {
    match keystore.destroy(name, version, false, false) {
        Err(ChangeError::AlreadyDestroyed { .. }) => Ok(()),
        other => other,
    }
}

fn report(
    ctx: &Context,
    state: &IncidentState,
    path: &Path,
    resumed: bool,
    rewrap_failed: &[Failure],
    reencrypt_failed: &[Failure],
) -> anyhow::Result<()> {
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "name": state.name,
            "version": state.version,
            "key_id": state.key_id,
            "replacement": state.replacement,
            "affected": state.affected.as_ref().map_or(0, Vec::len),
            "rewrapped": state.rewrapped.len(),
            "rewrap_failed": rewrap_failed,
            "destroyed": state.destroyed,
            "reencrypt": state.reencrypt,
            "reencrypted": state.reencrypted.iter()
                .map(|(old, new)| json!({"old": old, "new": new}))
                .collect::<Vec<_>>(),
            "reencrypt_failed": reencrypt_failed,
            "resumed": resumed,
            "finished": state.finished,
            "state_file": path,
        }));
        return Ok(());
    }
    for f in rewrap_failed {
        ctx.out.warn(format_args!("re-wrap {}: {}", f.id, f.error));
    }
    for f in reencrypt_failed {
        ctx.out
            .warn(format_args!("re-encrypt {}: {}", f.id, f.error));
    }
    for (old, new) in &state.reencrypted {
        if let Some(new) = new {
            ctx.out.result(format_args!("{old} -> {new}"));
        }
    }
    if state.finished {
        ctx.out.info(format_args!(
            "incident of {} v{} handled{}",
            state.name,
            state.version,
            if state.reencrypt {
                ": old keys and old envelopes open nothing current"
            } else {
                ": no current envelope opens with the old key (the data keys are unchanged: \
                 add --reencrypt to change them)"
            }
        ));
    }
    Ok(())
}
