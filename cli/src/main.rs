//! `datamesh`: runs the commands that talk to a running node's API, and hands every other
//! to `datamesh-full` (the crate's documentation, `lib.rs`, says which and why).

fn main() -> std::process::ExitCode {
    datamesh_cli::client_main()
}
