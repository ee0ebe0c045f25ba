//! One module per top-level command (or family of commands): the API commands' are the
//! library's (`datamesh_cli::cmd`), the others' are here.

pub(crate) use datamesh_cli::cmd::files;

pub(crate) mod debug;
pub(crate) mod init;
pub(crate) mod keys;
pub(crate) mod node;
pub(crate) mod testnet;
