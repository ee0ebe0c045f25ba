//! Hardware unlock backends for tests: a private SoftHSM2 token ([`SoftHsm`]) and a
//! private software TPM ([`Swtpm`]), each in its own folder, so a test can give a node a
//! PKCS#11 or TPM slot instead of a password file. Nothing here touches the machine's own
//! tokens or TPM.
//!
//! A missing package is an error that names it (`apt-get install softhsm2`, `swtpm`),
//! never a silent skip.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::error::{Error, Result};
use crate::process::{POLL, pid_alive, signal, wait_gone};

/// Where Debian's `softhsm2` puts its PKCS#11 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

fn missing(what: &str, package: &str) -> Error {
    Error::Missing(format!(
        "{what} is not installed: run `apt-get install {package}` (or `cargo xtask check-prereqs --install`)"
    ))
}

/// A SoftHSM2 token store of its own (`dir/softhsm2.conf`, `dir/tokens/`) with one
/// initialised token. Give [`SoftHsm::env`] to every process that uses it.
#[derive(Debug)]
pub struct SoftHsm {
    conf: PathBuf,
    pin_file: PathBuf,
    label: String,
}

impl SoftHsm {
    /// Makes the store in `dir` and a token labelled `label` whose user PIN is `pin`
    /// (written to `dir/pin`, 0600).
    ///
    /// # Errors
    /// [`Error::Missing`] when SoftHSM2 is not installed; [`Error::Io`];
    /// [`Error::Command`] when `softhsm2-util` fails.
    pub fn new(dir: &Path, label: &str, pin: &str) -> Result<Self> {
        if !Path::new(SOFTHSM_MODULE).exists() {
            return Err(missing(&format!("SoftHSM2 ({SOFTHSM_MODULE})"), "softhsm2"));
        }
        let tokens = dir.join("tokens");
        fs::create_dir_all(&tokens)
            .map_err(io_err(format!("cannot create {}", tokens.display())))?;
        let conf = dir.join("softhsm2.conf");
        fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .map_err(io_err(format!("cannot write {}", conf.display())))?;
        let pin_file = dir.join("pin");
        fs::write(&pin_file, format!("{pin}\n"))
            .and_then(|()| fs::set_permissions(&pin_file, fs::Permissions::from_mode(0o600)))
            .map_err(io_err(format!("cannot write {}", pin_file.display())))?;
        let mut cmd = Command::new("softhsm2-util");
        cmd.env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", label, "--pin", pin])
            .args(["--so-pin", "so-pin-of-the-test"]);
        let out = cmd.output().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                missing("softhsm2-util", "softhsm2")
            } else {
                Error::Io {
                    what: "cannot run softhsm2-util".into(),
                    source: e,
                }
            }
        })?;
        if !out.status.success() {
            return Err(Error::Command {
                command: "softhsm2-util --init-token".into(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(Self {
            conf,
            pin_file,
            label: label.to_string(),
        })
    }

    /// The module path.
    #[must_use]
    pub fn module(&self) -> &'static Path {
        Path::new(SOFTHSM_MODULE)
    }

    /// The token's label.
    #[must_use]
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The file holding the user PIN (0600).
    #[must_use]
    pub fn pin_file(&self) -> &Path {
        &self.pin_file
    }

    /// The variable that points SoftHSM2 at this store: `("SOFTHSM2_CONF", path)`.
    #[must_use]
    pub fn env(&self) -> (&'static str, &Path) {
        ("SOFTHSM2_CONF", &self.conf)
    }
}

/// A software TPM 2.0 (`swtpm`) of its own: state in `dir`, on two free ports of
/// 127.0.0.1, stopped (by its PID) when dropped.
#[derive(Debug)]
pub struct Swtpm {
    state: PathBuf,
    pid_file: PathBuf,
    port: u16,
    pid: Option<u32>,
}

impl Swtpm {
    /// Starts a TPM whose state lives in `dir` (made if needed; an existing state is
    /// the same TPM again).
    ///
    /// # Errors
    /// [`Error::Missing`] when swtpm is not installed; [`Error::Io`];
    /// [`Error::Command`] when it does not start.
    pub fn start(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        let mut last = None;
        for _ in 0..10 {
            let port = free_port_pair()?;
            let mut tpm = Self {
                state: dir.to_path_buf(),
                pid_file: dir.join("swtpm.pid"),
                port,
                pid: None,
            };
            match tpm.spawn() {
                Ok(()) => return Ok(tpm),
                Err(e @ Error::Missing(_)) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Invalid {
            what: "swtpm".into(),
            reason: "it did not start".into(),
        }))
    }

    fn spawn(&mut self) -> Result<()> {
        let _ = fs::remove_file(&self.pid_file);
        let out = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", self.state.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", self.port))
            .arg("--ctrl")
            .arg(format!(
                "type=tcp,port={},bindaddr=127.0.0.1",
                self.port + 1
            ))
            .args([
                "--flags",
                "not-need-init,startup-clear",
                "--daemon",
                "--pid",
            ])
            .arg(format!("file={}", self.pid_file.display()))
            .output()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    missing("swtpm", "swtpm swtpm-tools")
                } else {
                    Error::Io {
                        what: "cannot run swtpm".into(),
                        source: e,
                    }
                }
            })?;
        if !out.status.success() {
            return Err(Error::Command {
                command: "swtpm socket".into(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        // --daemon returns once the pid file is written.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = fs::read_to_string(&self.pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                self.pid = Some(pid);
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("swtpm's pid file {}", self.pid_file.display()),
                    waited: Duration::from_secs(10),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// The TCTI of this TPM: `swtpm:host=127.0.0.1,port=P`.
    #[must_use]
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Stops the TPM (SIGTERM by its PID, SIGKILL after 10 s); its state stays.
    ///
    /// # Errors
    /// [`Error::Timeout`] when it had to be killed.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(pid) = self.pid.take().filter(|pid| pid_alive(*pid)) {
            let _ = signal(pid, Signal::TERM);
            wait_gone(pid, Duration::from_secs(10), 0)?;
        }
        Ok(())
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A port P of 127.0.0.1 such that P and P + 1 were both free a moment ago.
fn free_port_pair() -> Result<u16> {
    for _ in 0..50 {
        let first =
            TcpListener::bind("127.0.0.1:0").map_err(io_err("cannot bind 127.0.0.1:0".into()))?;
        let port = first
            .local_addr()
            .map_err(io_err("cannot read a bound address".into()))?
            .port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::Invalid {
        what: "127.0.0.1".into(),
        reason: "no two free consecutive ports".into(),
    })
}
