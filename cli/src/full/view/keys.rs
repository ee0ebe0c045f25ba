//! Keys as `datamesh keys ...`, `init`, `keys restore` and `keys escrow recover` print
//! them: the key table, a key's JSON and detail, the rotation policy and the unlock slots.

use datamesh_keys::{DueKey, KeyInfo, RotationPolicy, SlotInfo, SlotKind, Timestamp};
use serde_json::{Value, json};

use crate::output::Output;

/// Column names of [`key_row`].
pub(crate) const KEY_HEADER: [&str; 6] = [
    "NAME",
    "VERSION",
    "PURPOSE",
    "STATUS",
    "CREATED",
    "PUBLIC KEY",
];

/// A table row for a key version.
pub(crate) fn key_row(key: &KeyInfo, due: bool) -> Vec<String> {
    let status = if due {
        format!("{} (due)", key.status)
    } else {
        key.status.to_string()
    };
    vec![
        key.name.clone(),
        key.version.to_string(),
        format!("{} ({})", key.purpose, key.purpose.algorithm()),
        status,
        key.created.to_string(),
        short_public(key),
    ]
}

/// The public key for a table: a hybrid recipient (about 2,000 characters) shortened to
/// its start and key id (`keys show` and `export-public` print it whole).
fn short_public(key: &KeyInfo) -> String {
    let text = key.public_text();
    match key.key_id() {
        Some(id) if text.len() > 80 => format!("{}… (key id {})", &text[..20], id.short()),
        _ => text,
    }
}

/// The JSON of a key version.
pub(crate) fn key_json(key: &KeyInfo) -> Value {
    let time = |t: Option<Timestamp>| t.map(|t| t.to_string());
    json!({
        "name": key.name,
        "purpose": key.purpose.as_str(),
        "algorithm": key.purpose.algorithm(),
        "version": key.version,
        "status": key.status.as_str(),
        "public_key": key.public_key_hex(),
        "recipient": key.recipient().map(|r| r.to_string()),
        "post_quantum": key.recipient().map(|r| r.kind().is_post_quantum()),
        "wraps_with": key.recipient().map(|r| r.kind().algorithms()),
        "key_id": key.key_id().map(|id| id.to_string()),
        "created": key.created.to_string(),
        "activated": time(key.activated),
        "deprecated": time(key.deprecated),
        "expires": time(key.expires),
        "revoked": time(key.revoked),
        "revoke_reason": key.revoke_reason,
        "destroyed": time(key.destroyed),
        "predecessor": key.predecessor,
        "successor": key.successor,
    })
}

/// The JSON array of key versions.
pub(crate) fn keys_json(keys: &[KeyInfo]) -> Vec<Value> {
    keys.iter().map(key_json).collect()
}

/// Key versions as a table, none marked due.
pub(crate) fn key_table(out: &Output, keys: &[KeyInfo]) {
    let rows: Vec<Vec<String>> = keys.iter().map(|k| key_row(k, false)).collect();
    out.table(&KEY_HEADER, &rows);
}

/// The algorithms that protect a slot's copy of the master key (which seals every key
/// with AES-256-GCM).
pub(crate) fn slot_protection(kind: &SlotKind) -> String {
    match kind {
        SlotKind::Password(kdf) => format!("password -> {kdf} -> AES-256-GCM"),
        SlotKind::Composite(kdf) => {
            format!("password -> {kdf}, key file -> BLAKE3 -> AES-256-GCM")
        }
        SlotKind::Pkcs11 { .. } => "AES-256-GCM key inside a PKCS#11 token".to_owned(),
        SlotKind::Tpm { .. } => "slot key sealed by a TPM 2.0 -> AES-256-GCM".to_owned(),
        SlotKind::Unknown(k) => format!("unknown slot kind {k}"),
        other => format!("{} slot", other.name()),
    }
}

/// The JSON of what protects the keys: each slot's id, kind and algorithms, and the KDF
/// of a password slot.
fn protection_json(slots: &[SlotInfo]) -> Value {
    Value::Array(
        slots
            .iter()
            .map(|s| {
                let kdf = match &s.kind {
                    SlotKind::Password(kdf) | SlotKind::Composite(kdf) => Some(json!({
                        "algorithm": kdf.algorithm().as_str(),
                        "memory_kib": kdf.memory_kib(),
                        "iterations": kdf.iterations(),
                        "parallelism": kdf.parallelism(),
                    })),
                    _ => None,
                };
                json!({
                    "slot": s.id, "kind": s.kind.name(),
                    "algorithms": slot_protection(&s.kind), "kdf": kdf,
                })
            })
            .collect(),
    )
}

/// What `keys list` (`detail`: false) and `keys show` (true) print: JSON, one block of
/// fields per version, or the table; versions in `due` are marked. Each key's entry
/// says what protects it: the keystore's AES-256-GCM under the master key, whose copies
/// `slots` hold (a password slot names its KDF).
pub(crate) fn key_list(
    out: &Output,
    keys: &[KeyInfo],
    due: &[DueKey],
    detail: bool,
    slots: &[SlotInfo],
) {
    let is_due = |k: &KeyInfo| {
        due.iter()
            .any(|d| d.name == k.name && d.version == k.version)
    };
    if out.json() {
        let protected_by = protection_json(slots);
        let mut list = keys_json(keys);
        for key in &mut list {
            if let Some(fields) = key.as_object_mut() {
                fields.insert("sealed_with".into(), json!("aes-256-gcm (master key)"));
                fields.insert("protected_by".into(), protected_by.clone());
            }
        }
        out.json_value(&Value::Array(list));
        return;
    }
    if detail {
        for (i, key) in keys.iter().enumerate() {
            if i > 0 {
                out.result("");
            }
            key_detail(out, key, is_due(key));
        }
    } else {
        let rows: Vec<Vec<String>> = keys.iter().map(|k| key_row(k, is_due(k))).collect();
        out.table(&KEY_HEADER, &rows);
    }
    out.result("");
    out.result("every key is sealed with AES-256-GCM under the master key; its copies:");
    for slot in slots {
        out.result(format_args!(
            "  slot {} ({}): {}",
            slot.id,
            slot.kind.name(),
            slot_protection(&slot.kind)
        ));
    }
}

/// One key version, a field per line.
fn key_detail(out: &Output, key: &KeyInfo, due: bool) {
    let mut fields: Vec<(&str, String)> = vec![
        ("name", key.name.clone()),
        ("version", key.version.to_string()),
        (
            "purpose",
            format!("{} ({})", key.purpose, key.purpose.algorithm()),
        ),
        (
            "status",
            if due {
                format!("{} (due for rotation)", key.status)
            } else {
                key.status.to_string()
            },
        ),
        ("public key", key.public_text()),
    ];
    if let Some(id) = key.key_id() {
        fields.push(("key id", id.to_string()));
    }
    if let Some(recipient) = key.recipient() {
        fields.push(("wraps with", recipient.kind().algorithms().to_owned()));
    }
    fields.push(("created", key.created.to_string()));
    let optional = [
        ("activated", key.activated),
        ("deprecated", key.deprecated),
        ("expires", key.expires),
        ("revoked", key.revoked),
        ("destroyed", key.destroyed),
    ];
    for (label, time) in optional {
        if let Some(time) = time {
            fields.push((label, time.to_string()));
        }
    }
    if let Some(reason) = &key.revoke_reason {
        fields.push(("revoke reason", reason.clone()));
    }
    if let Some(v) = key.predecessor {
        fields.push(("predecessor", format!("v{v}")));
    }
    if let Some(v) = key.successor {
        fields.push(("successor", format!("v{v}")));
    }
    for (label, value) in fields {
        out.result(format_args!("{:<15}{value}", format!("{label}:")));
    }
}

/// The rotation policy and what is due now.
pub(crate) fn policy(out: &Output, policy: &RotationPolicy, due: &[DueKey]) {
    if out.json() {
        out.json_value(&json!({
            "interval_days": policy.interval_days(),
            "max_age_days": policy.max_age_days(),
            "auto": policy.auto(),
            "due": due.iter().map(|d| json!({
                "name": d.name, "version": d.version, "reason": d.reason.as_str(),
            })).collect::<Vec<_>>(),
        }));
        return;
    }
    out.result(format_args!(
        "interval: {} days\nmax age:  {} days\nauto:     {}",
        policy.interval_days(),
        policy.max_age_days(),
        if policy.auto() { "on" } else { "off" }
    ));
    for d in due {
        out.result(format_args!(
            "due:      {} v{} ({})",
            d.name,
            d.version,
            d.reason.as_str()
        ));
    }
}

/// The unlock slots, `current` (the one unlocked with) marked.
pub(crate) fn slots(out: &Output, slots: &[SlotInfo], current: u32) {
    let kind = |kind: &SlotKind| match kind {
        SlotKind::Password(kdf) | SlotKind::Composite(kdf) => {
            (kind.name().to_owned(), kdf.to_string())
        }
        SlotKind::Unknown(k) => (format!("unknown ({k})"), String::new()),
        other => (other.name().to_owned(), String::new()),
    };
    if out.json() {
        let list: Vec<Value> = slots
            .iter()
            .map(|s| {
                let (kind, kdf) = kind(&s.kind);
                json!({
                    "id": s.id, "kind": kind, "kdf": kdf, "label": s.label,
                    "created": s.created.to_string(), "current": s.id == current,
                    "needs": s.kind.needs(),
                })
            })
            .collect();
        out.json_value(&Value::Array(list));
    } else {
        let rows: Vec<Vec<String>> = slots
            .iter()
            .map(|s| {
                let (kind, kdf) = kind(&s.kind);
                vec![
                    format!("{}{}", s.id, if s.id == current { " *" } else { "" }),
                    kind,
                    kdf,
                    s.created.to_string(),
                    s.label.clone(),
                    s.kind.needs(),
                ]
            })
            .collect();
        out.table(&["ID", "KIND", "KDF", "CREATED", "LABEL", "NEEDS"], &rows);
    }
}
