//! One module per top-level command (or family of commands).

pub(crate) mod check;
pub(crate) mod debug;
pub(crate) mod files;
pub(crate) mod init;
pub(crate) mod keys;
pub(crate) mod node;
pub(crate) mod rm;
pub(crate) mod testnet;
pub(crate) mod transfer;
pub(crate) mod tree;
