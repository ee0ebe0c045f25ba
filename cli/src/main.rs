//! The `datamesh` command (in progress).
fn main() {}
