//! `keys import-legacy DIR`: seal the plaintext key files of the old layout.

use std::path::Path;

use serde_json::json;

use crate::Context;
use crate::home;
use crate::password::PasswordArgs;
use crate::view::keys::keys_json;

/// `keys import-legacy DIR`: imports the `NAME.key` files (decrypt only), then overwrites
/// and removes them.
pub(super) fn import(ctx: &Context, dir: &Path, password: &PasswordArgs) -> anyhow::Result<()> {
    let mut keystore = home::unlock(&ctx.home, password, &ctx.out)?;
    let report = keystore.import_legacy(dir)?;
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "imported": keys_json(&report.imported),
            "already_present": report.already_present,
            "removed": report.removed,
        }));
    } else {
        for key in &report.imported {
            ctx.out
                .result(format_args!("{} v{}", key.name, key.version));
        }
    }
    ctx.out.info(format_args!(
        "imported {} legacy key(s) (decrypt only), {} already present; overwrote and removed {} plaintext file(s)",
        report.imported.len(),
        report.already_present.len(),
        report.removed.len()
    ));
    Ok(())
}
