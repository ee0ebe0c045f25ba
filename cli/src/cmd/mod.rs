//! One module per API command (or family of them); the full program's other commands are
//! in `full/cmd/`.

pub mod check;
pub mod files;
pub mod rm;
pub mod transfer;
pub mod tree;
