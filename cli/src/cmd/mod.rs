//! One module per top-level command.

pub(crate) mod init;
pub(crate) mod keys;
