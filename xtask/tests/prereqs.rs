//! The set-up path of `cargo xtask demo` / `test`, run as the real binary against a fake
//! machine: a root folder (`XTASK_ROOT`) where libclang is missing, a `PATH` holding only
//! fake programs (`c++`, and `apt-get` and `cargo` scripts that write down how they were
//! called), and an effective uid chosen with `XTASK_UID`. The real apt-get is never run:
//! the environment is cleared, so the only programs xtask can find are the fakes.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Where Debian's libclang1 puts the library.
const LIB_DIR: &str = "usr/lib/x86_64-linux-gnu";

/// A fake machine in a scratch folder, removed when dropped.
struct FakeMachine {
    root: PathBuf,
}

impl FakeMachine {
    /// No libclang; `c++`, `ip`, `nft`, chromium and chromedriver present; `apt-get` as
    /// given (a shell script body, or none).
    fn new(name: &str, apt_get: Option<&str>) -> std::io::Result<Self> {
        let root = std::env::temp_dir().join(format!("xtask-it-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("bin"))?;
        fs::create_dir_all(root.join(LIB_DIR))?;
        fs::create_dir_all(root.join("usr/lib/llvm-14/lib"))?;
        fs::create_dir_all(root.join("usr/bin"))?;
        for browser in ["usr/bin/chromium", "usr/bin/chromedriver"] {
            fs::write(root.join(browser), "#!/bin/sh\n")?;
        }
        let m = Self { root };
        m.script("c++", "exit 0")?;
        // The hardware unlock slots' prerequisites are present.
        m.script("pkg-config", "exit 0")?;
        m.script("swtpm", "exit 0")?;
        m.script("tpm2_pcrextend", "exit 0")?;
        for file in [
            "usr/include/tss2/tss2_esys.h",
            "usr/lib/softhsm/libsofthsm2.so",
        ] {
            let path = m.root.join(file);
            fs::create_dir_all(path.parent().unwrap_or(&m.root))?;
            fs::write(path, b"")?;
        }
        // The tools of the tests of separate hosts (iproute2, nftables) are there.
        m.script("ip", "exit 0")?;
        m.script("nft", "exit 0")?;
        let log = m.log("cargo");
        m.script("cargo", &format!("echo \"$@\" >> '{}'", log.display()))?;
        if let Some(body) = apt_get {
            m.script("apt-get", body)?;
        }
        Ok(m)
    }

    fn script(&self, name: &str, body: &str) -> std::io::Result<()> {
        let path = self.root.join("bin").join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n"))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
    }

    /// Where the fake program `name` writes its arguments, one call a line.
    fn log(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.log"))
    }

    fn calls(&self, name: &str) -> String {
        fs::read_to_string(self.log(name)).unwrap_or_default()
    }

    /// Runs xtask with `args` as user `uid` on this machine and nothing else.
    fn xtask(&self, uid: u32, args: &[&str]) -> std::io::Result<Output> {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .env_clear()
            .env("PATH", self.root.join("bin"))
            .env("CARGO", self.root.join("bin/cargo"))
            .env("XTASK_ROOT", &self.root)
            .env("XTASK_UID", uid.to_string())
            .current_dir(&self.root)
            .output()
    }

    /// A fake apt-get that logs its arguments and, on `install`, puts a libclang where
    /// Debian's package does.
    fn installing_apt_get(log: &Path, root: &Path) -> String {
        format!(
            "echo \"$@\" >> '{log}'\ncase \"$1\" in install) printf '\\177ELF\\002' > '{lib}' ;; esac",
            log = log.display(),
            lib = root.join(LIB_DIR).join("libclang-14.so.1").display(),
        )
    }
}

impl Drop for FakeMachine {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_user_without_libclang_is_told_the_command_and_nothing_is_built() -> TestResult {
    let m = FakeMachine::new("user", Some("echo \"$@\" >> /dev/null"))?;
    for command in [
        &["demo", "--dir", "x"][..],
        &["test"],
        &["check-prereqs", "--install"],
    ] {
        let out = m.xtask(1000, command)?;
        assert_eq!(out.status.code(), Some(2), "{command:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out),
            "missing: libclang (for RocksDB's bindgen); run: sudo apt-get install -y libclang-dev\n",
            "{command:?}"
        );
        assert!(out.stdout.is_empty(), "{command:?}");
    }
    assert_eq!(m.calls("cargo"), "", "nothing may be built");
    assert!(!m.root.join(LIB_DIR).join("libclang-14.so.1").exists());
    Ok(())
}

#[test]
fn root_installs_libclang_then_builds() -> TestResult {
    let m = FakeMachine::new("root", None)?;
    m.script(
        "apt-get",
        &FakeMachine::installing_apt_get(&m.log("apt-get"), &m.root),
    )?;
    let out = m.xtask(0, &["test", "-p", "xtask", "--", "--nocapture"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(m.calls("apt-get"), "install -y libclang-dev\n");
    assert_eq!(
        m.calls("cargo"),
        "test --release --locked -p xtask -- --nocapture\n"
    );
    assert!(
        stderr(&out).contains("xtask: installing libclang-dev (apt-get install -y libclang-dev)"),
        "{}",
        stderr(&out)
    );

    // Now present: the demo goes straight to the build, passing its arguments through.
    let out = m.xtask(0, &["demo", "--dir", "/tmp/d"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(m.calls("apt-get"), "install -y libclang-dev\n");
    assert!(
        m.calls("cargo")
            .ends_with("run --release --locked --package datamesh -- testnet demo --dir /tmp/d\n")
    );
    Ok(())
}

#[test]
fn a_failed_install_is_retried_after_an_update() -> TestResult {
    let m = FakeMachine::new("update", None)?;
    let log = m.log("apt-get");
    let marker = m.root.join("updated");
    // install fails until `apt-get update` ran.
    m.script(
        "apt-get",
        &format!(
            "case \"$1\" in update) : > '{marker}' ;; install) [ -e '{marker}' ] || {{ echo \"$@\" >> '{log}'; exit 100; }} ;; esac\n{}",
            FakeMachine::installing_apt_get(&log, &m.root),
            marker = marker.display(),
            log = log.display(),
        ),
    )?;
    let out = m.xtask(0, &["check-prereqs", "--install"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        m.calls("apt-get"),
        "install -y libclang-dev\nupdate\ninstall -y libclang-dev\n"
    );
    assert_eq!(m.calls("cargo"), "");
    Ok(())
}

#[test]
fn a_dry_run_as_root_installs_nothing() -> TestResult {
    let m = FakeMachine::new("dry-run", None)?;
    m.script(
        "apt-get",
        &FakeMachine::installing_apt_get(&m.log("apt-get"), &m.root),
    )?;
    let out = m.xtask(0, &["check-prereqs", "--dry-run"])?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout)?;
    assert_eq!(
        stdout,
        format!(
            "libclang (for RocksDB's bindgen): missing (Debian package libclang-dev)\n\
             a C++ compiler (for RocksDB's C++): {}\n\
             pkg-config (to find libtss2 for the TPM unlock slot): {}\n\
             libtss2 (the TPM 2.0 stack the TPM unlock slot links): {}\n\
             SoftHSM2 (the PKCS#11 token of the hardware unlock tests): {}\n\
             swtpm (the software TPM of the hardware unlock tests): {}\n\
             tpm2-tools (to move a PCR in the TPM unlock tests): {}\n\
             ip and tc (for the tests and testnets of separate hosts: network namespaces, rate limits): {}\n\
             nft (for the kernel-level partitions and packet loss of the fault suite): {}\n\
             chromium (for the dashboard's browser tests): {}\n\
             chromedriver (to drive chromium in the dashboard's browser tests): {}\n\
             would run: apt-get install -y libclang-dev (dry run: nothing installed)\n",
            m.root.join("bin/c++").display(),
            m.root.join("bin/pkg-config").display(),
            m.root.join("usr/include/tss2/tss2_esys.h").display(),
            m.root.join("usr/lib/softhsm/libsofthsm2.so").display(),
            m.root.join("bin/swtpm").display(),
            m.root.join("bin/tpm2_pcrextend").display(),
            m.root.join("bin/ip").display(),
            m.root.join("bin/nft").display(),
            m.root.join("usr/bin/chromium").display(),
            m.root.join("usr/bin/chromedriver").display()
        )
    );
    assert_eq!(m.calls("apt-get"), "");
    Ok(())
}
