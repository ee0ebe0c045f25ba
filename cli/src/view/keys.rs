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

/// What `keys list` (`detail`: false) and `keys show` (true) print: JSON, one block of
/// fields per version, or the table; versions in `due` are marked.
pub(crate) fn key_list(out: &Output, keys: &[KeyInfo], due: &[DueKey], detail: bool) {
    let is_due = |k: &KeyInfo| {
        due.iter()
            .any(|d| d.name == k.name && d.version == k.version)
    };
    if out.json() {
        out.json_value(&Value::Array(keys_json(keys)));
    } else if detail {
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
