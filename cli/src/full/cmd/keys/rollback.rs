//! `keys accept-rollback`: the way out when an older keystore file was put back on
//! purpose (a restore from a file backup), which every open otherwise refuses.

use datamesh_keys::Keystore;
use serde_json::json;

use crate::Context;
use crate::home;
use crate::password::PasswordArgs;

/// `keys accept-rollback`.
pub(super) fn accept(ctx: &Context, password: &PasswordArgs) -> anyhow::Result<()> {
    home::require_keystore(&ctx.home)?;
    let password = password.existing(&ctx.out)?;
    let keystore = Keystore::open_accepting_rollback(&ctx.home, &password)?;
    if ctx.out.json() {
        ctx.out
            .json_value(&json!({ "generation": keystore.generation() }));
    }
    ctx.out.warn(format_args!(
        "the keystore as it is now (generation {}) is accepted, with the keys it holds: a key revoked or rotated after this copy was made is as this copy says; review `datamesh keys list`",
        keystore.generation()
    ));
    Ok(())
}
