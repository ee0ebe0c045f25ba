//! Helpers shared by the CLI tests; running the binary and password files come from
//! `datamesh-testnet`, as in the end-to-end tests.
#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use datamesh_testnet::Kdf;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_datamesh");

/// `datamesh --home HOME` with none of the caller's DATAMESH_* variables.
pub fn datamesh(home: &Path) -> assert_cmd::Command {
    assert_cmd::Command::from_std(datamesh_std(home))
}

/// The same as a `std::process::Command` (for a process the test kills itself).
pub fn datamesh_std(home: &Path) -> std::process::Command {
    datamesh_testnet::run::datamesh(Path::new(BIN), home)
}

/// Writes a 0600 password file.
pub fn password_file(
    dir: &Path,
    name: &str,
    password: &str,
) -> Result<PathBuf, datamesh_testnet::Error> {
    let path = dir.join(name);
    datamesh_testnet::write_password_file(&path, password)?;
    Ok(path)
}

/// A temp folder, a home path inside it (not created) and a password file.
pub fn fresh() -> Result<(tempfile::TempDir, PathBuf, PathBuf), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    let pw = password_file(dir.path(), "pw", PASSWORD)?;
    Ok((dir, home, pw))
}

/// A fresh home, initialised with `password` and small KDF parameters.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub password: PathBuf,
}

pub const PASSWORD: &str = "correct horse battery staple orbit";

impl Home {
    pub fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let (dir, home, password) = fresh()?;
        datamesh(&home)
            .arg("init")
            .arg("--password-file")
            .arg(&password)
            .args(Kdf::FAST.args())
            .assert()
            .success();
        Ok(Self {
            dir,
            home,
            password,
        })
    }

    /// `datamesh --home HOME keys ARGS... --password-file PW`.
    pub fn keys(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = datamesh(&self.home);
        cmd.arg("keys")
            .args(args)
            .arg("--password-file")
            .arg(&self.password);
        cmd
    }

    pub fn keystore(&self) -> PathBuf {
        self.home.join("keys").join("keystore")
    }

    pub fn audit_log(&self) -> PathBuf {
        self.home.join("keys").join("audit.log")
    }

    /// `keys list --json`, parsed.
    pub fn list(&self) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error>> {
        let out = self.keys(&["list", "--json"]).assert().success();
        Ok(serde_json::from_slice(&out.get_output().stdout)?)
    }
}

pub fn mode(path: &Path) -> std::io::Result<u32> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o777)
}

/// stderr as text.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
