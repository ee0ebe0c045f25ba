//! The system packages the build needs: what they are, how to tell they are there, and
//! how to get them.
//!
//! A new prerequisite (softhsm2, swtpm, nftables, chromium, ...) is one more entry of
//! [`PREREQS`]: its name, why it is needed, a function that finds it on a [`Machine`], and
//! the Debian package that provides it.
//!
//! When something is missing: as root, with `apt-get`, it is installed
//! (`apt-get install -y PKGS`; on failure `apt-get update` and once more) and checked
//! again; otherwise the check stops with one line that names the command to run. It never
//! starts a build.
//!
//! Test hooks (environment variables read only to test this module; not for users):
//! `XTASK_ROOT` is the root the fixed system folders are searched under (default `/`),
//! `XTASK_UID` the effective uid to behave as (`1000`: a user; `0`: root).

use std::env;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::libclang;

/// One system package the build needs.
#[derive(Debug)]
pub(crate) struct Prereq {
    /// What is needed, as a user would call it: `libclang`.
    pub(crate) name: &'static str,
    /// Why, shown in parentheses: `for RocksDB's bindgen`.
    pub(crate) why: &'static str,
    /// Where it is on this machine.
    pub(crate) find: fn(&Machine) -> Detect,
    /// The Debian (and Ubuntu) package that provides it.
    pub(crate) debian: &'static str,
}

/// Everything `cargo xtask demo` and `cargo xtask test` need beyond Rust.
pub(crate) const PREREQS: &[Prereq] = &[
    Prereq {
        name: "libclang",
        why: "for RocksDB's bindgen",
        find: libclang::find,
        debian: "libclang-dev",
    },
    Prereq {
        name: "a C++ compiler",
        why: "for RocksDB's C++",
        find: find_cxx,
        debian: "g++",
    },
    Prereq {
        name: "pkg-config",
        why: "to find libtss2 for the TPM unlock slot",
        find: |m| m.which("pkg-config").map_or(Detect::Missing, Detect::Found),
        debian: "pkg-config",
    },
    Prereq {
        name: "libtss2",
        why: "the TPM 2.0 stack the TPM unlock slot links",
        find: |m| file_under_root(m, "usr/include/tss2/tss2_esys.h"),
        debian: "libtss2-dev",
    },
    Prereq {
        name: "SoftHSM2",
        why: "the PKCS#11 token of the hardware unlock tests",
        find: |m| file_under_root(m, "usr/lib/softhsm/libsofthsm2.so"),
        debian: "softhsm2",
    },
    Prereq {
        name: "swtpm",
        why: "the software TPM of the hardware unlock tests",
        find: |m| m.which("swtpm").map_or(Detect::Missing, Detect::Found),
        debian: "swtpm",
    },
    Prereq {
        name: "tpm2-tools",
        why: "to move a PCR in the TPM unlock tests",
        find: |m| {
            m.which("tpm2_pcrextend")
                .map_or(Detect::Missing, Detect::Found)
        },
        debian: "tpm2-tools",
    },
    Prereq {
        name: "ip and tc",
        why: "for the tests and testnets of separate hosts: network namespaces, rate limits",
        find: |m| m.which("ip").map_or(Detect::Missing, Detect::Found),
        debian: "iproute2",
    },
    Prereq {
        name: "nft",
        why: "for the kernel-level partitions and packet loss of the fault suite",
        find: |m| m.which("nft").map_or(Detect::Missing, Detect::Found),
        debian: "nftables",
    },
    Prereq {
        name: "chromium",
        why: "for the dashboard's browser tests",
        find: find_chromium,
        debian: "chromium",
    },
    Prereq {
        name: "chromedriver",
        why: "to drive chromium in the dashboard's browser tests",
        find: find_chromedriver,
        debian: "chromium-driver",
    },
];

/// `relative` below the machine's root, if it is a file.
fn file_under_root(m: &Machine, relative: &str) -> Detect {
    let path = m.root.join(relative);
    if path.is_file() {
        Detect::Found(path)
    } else {
        Detect::Missing
    }
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Detect {
    /// There, at this path.
    Found(PathBuf),
    /// Not there; its package would provide it.
    Missing,
    /// Not usable for a reason no package fixes (a variable points at the wrong place).
    Misconfigured(String),
}

/// The parts of this machine the checks look at, read once from the environment (or made
/// up by a test).
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    /// Where the fixed system folders are searched (`/`; `XTASK_ROOT` in tests).
    pub(crate) root: PathBuf,
    /// The folders of `PATH`.
    pub(crate) path: Vec<PathBuf>,
    /// `LIBCLANG_PATH`, when set and not empty.
    pub(crate) libclang_path: Option<PathBuf>,
    /// `LLVM_CONFIG_PATH`, when set and not empty.
    pub(crate) llvm_config_path: Option<PathBuf>,
    /// The folders of `LD_LIBRARY_PATH`.
    pub(crate) ld_library_path: Vec<PathBuf>,
    /// The folders of `LIBRARY_PATH`.
    pub(crate) library_path: Vec<PathBuf>,
    /// `CXX`, when set and not empty: the C++ compiler the cc crate runs.
    pub(crate) cxx: Option<String>,
    /// The effective uid (`XTASK_UID` in tests), if it could be read.
    pub(crate) uid: Option<u32>,
}

impl Machine {
    /// This machine, from the environment.
    pub(crate) fn from_env() -> Self {
        let var = |name: &str| env::var_os(name).filter(|v| !v.is_empty());
        let paths = |name: &str| -> Vec<PathBuf> {
            var(name)
                .map(|v| env::split_paths(&v).collect())
                .unwrap_or_default()
        };
        Self {
            root: var("XTASK_ROOT").map_or_else(|| PathBuf::from("/"), PathBuf::from),
            path: paths("PATH"),
            libclang_path: var("LIBCLANG_PATH").map(PathBuf::from),
            llvm_config_path: var("LLVM_CONFIG_PATH").map(PathBuf::from),
            ld_library_path: paths("LD_LIBRARY_PATH"),
            library_path: paths("LIBRARY_PATH"),
            cxx: var("CXX").map(|v| v.to_string_lossy().into_owned()),
            uid: match var("XTASK_UID") {
                Some(v) => v.to_str().and_then(|v| v.parse().ok()),
                None => effective_uid(),
            },
        }
    }

    /// Whether this process can install packages.
    pub(crate) fn is_root(&self) -> bool {
        self.uid == Some(0)
    }

    /// `program` on `PATH` (or `program` itself, when it is a path), if it is an
    /// executable file.
    pub(crate) fn which(&self, program: &str) -> Option<PathBuf> {
        let executable = |p: &Path| {
            fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        if program.contains('/') {
            let p = PathBuf::from(program);
            return executable(&p).then_some(p);
        }
        self.path
            .iter()
            .map(|d| d.join(program))
            .find(|p| executable(p))
    }
}

/// The effective uid from `/proc/self/status` (`Uid: real effective saved fs`), else from
/// `id -u`.
fn effective_uid() -> Option<u32> {
    let from_proc = fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1)?.parse().ok())
    });
    from_proc.or_else(|| {
        let out = Command::new("id")
            .arg("-u")
            .stderr(Stdio::null())
            .output()
            .ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    })
}

/// The C++ compiler the cc crate will run: `CXX` if set, else `c++` (the cc crate's
/// default on Linux; Debian's `g++` package provides it).
fn find_cxx(m: &Machine) -> Detect {
    match &m.cxx {
        Some(cxx) => {
            let program = cxx.split_whitespace().next().unwrap_or_default();
            m.which(program).map_or_else(
                || {
                    Detect::Misconfigured(format!(
                        "CXX={cxx} is not a program on PATH: point it at a C++ compiler, or unset it"
                    ))
                },
                Detect::Found,
            )
        }
        None => m.which("c++").map_or(Detect::Missing, Detect::Found),
    }
}

/// The first of Debian's fixed paths (under the machine's root) that is a file. The
/// browser tests (`datamesh_testnet::browser`) look in the same places.
fn find_fixed(m: &Machine, paths: &[&str]) -> Detect {
    paths
        .iter()
        .map(|p| m.root.join(p))
        .find(|p| p.is_file())
        .map_or(Detect::Missing, Detect::Found)
}

fn find_chromium(m: &Machine) -> Detect {
    find_fixed(m, &["usr/bin/chromium", "usr/lib/chromium/chromium"])
}

fn find_chromedriver(m: &Machine) -> Detect {
    find_fixed(
        m,
        &["usr/bin/chromedriver", "usr/lib/chromium/chromedriver"],
    )
}

/// One prerequisite and what its search found.
#[derive(Debug)]
pub(crate) struct Status {
    pub(crate) prereq: &'static Prereq,
    pub(crate) found: Detect,
}

impl fmt::Display for Status {
    /// `libclang (for RocksDB's bindgen): /usr/lib/...` or `...: missing (libclang-dev)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Prereq {
            name, why, debian, ..
        } = self.prereq;
        match &self.found {
            Detect::Found(p) => write!(f, "{name} ({why}): {}", p.display()),
            Detect::Missing => write!(f, "{name} ({why}): missing (Debian package {debian})"),
            Detect::Misconfigured(reason) => write!(f, "{name} ({why}): {reason}"),
        }
    }
}

/// Every entry of `table`, searched for on `m`.
pub(crate) fn survey(m: &Machine, table: &'static [Prereq]) -> Vec<Status> {
    table
        .iter()
        .map(|prereq| Status {
            prereq,
            found: (prereq.find)(m),
        })
        .collect()
}

/// What to do about a survey.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Everything is there.
    Ready,
    /// Run `apt-get install -y` with these packages (root, apt-get found).
    Install {
        apt_get: PathBuf,
        packages: Vec<&'static str>,
    },
    /// Stop with this one-line message.
    Stop(String),
}

/// What to do: nothing, install (as root with apt-get), or stop with a message.
pub(crate) fn plan(m: &Machine, statuses: &[Status]) -> Plan {
    let missing: Vec<&Status> = statuses
        .iter()
        .filter(|s| s.found == Detect::Missing)
        .collect();
    let misconfigured: Vec<String> = statuses
        .iter()
        .filter_map(|s| match &s.found {
            Detect::Misconfigured(reason) => {
                Some(format!("{} ({}): {reason}", s.prereq.name, s.prereq.why))
            }
            _ => None,
        })
        .collect();
    if !misconfigured.is_empty() {
        return Plan::Stop(format!("unusable: {}", misconfigured.join("; ")));
    }
    if missing.is_empty() {
        return Plan::Ready;
    }
    let what = missing
        .iter()
        .map(|s| format!("{} ({})", s.prereq.name, s.prereq.why))
        .collect::<Vec<_>>()
        .join(", ");
    let packages: Vec<&'static str> = missing.iter().map(|s| s.prereq.debian).collect();
    match m.which("apt-get") {
        Some(apt_get) if m.is_root() => Plan::Install { apt_get, packages },
        Some(_) => Plan::Stop(format!(
            "missing: {what}; run: sudo apt-get install -y {}",
            packages.join(" ")
        )),
        None => Plan::Stop(format!(
            "missing: {what}; this is not a Debian/Ubuntu system (no apt-get): install the equivalent of Debian's {} with your package manager, or set LIBCLANG_PATH / CXX to where they are",
            packages.join(" ")
        )),
    }
}

/// Why the prerequisites are not there.
#[derive(Debug)]
pub(crate) struct Unmet(pub(crate) String);

/// Makes sure every prerequisite is there: installs what is missing when it can (see the
/// module docs), and otherwise says what to run.
///
/// # Errors
/// [`Unmet`] with the one-line message to print (exit code 2).
pub(crate) fn ensure(m: &Machine, table: &'static [Prereq]) -> Result<Vec<Status>, Unmet> {
    let statuses = survey(m, table);
    let (apt_get, packages) = match plan(m, &statuses) {
        Plan::Ready => return Ok(statuses),
        Plan::Stop(message) => return Err(Unmet(message)),
        Plan::Install { apt_get, packages } => (apt_get, packages),
    };
    let list = packages.join(" ");
    crate::say(format_args!(
        "installing {list} (apt-get install -y {list})"
    ));
    let install = || apt(&apt_get, &["install", "-y"], &packages);
    let installed = install().or_else(|_| {
        crate::say("apt-get install failed; apt-get update, then once more");
        apt(&apt_get, &["update"], &[])?;
        install()
    });
    if let Err(failed) = installed {
        return Err(Unmet(format!(
            "{failed}; could not install {list}: run `apt-get install -y {list}` to see why"
        )));
    }
    let statuses = survey(m, table);
    let still: Vec<String> = statuses
        .iter()
        .filter(|s| !matches!(s.found, Detect::Found(_)))
        .map(|s| format!("{} ({})", s.prereq.name, s.prereq.why))
        .collect();
    if still.is_empty() {
        Ok(statuses)
    } else {
        Err(Unmet(format!(
            "still missing after apt-get install -y {list}: {}",
            still.join(", ")
        )))
    }
}

/// Runs `apt-get ARGS PACKAGES` (non-interactive).
fn apt(apt_get: &Path, args: &[&str], packages: &[&str]) -> Result<(), String> {
    let line = || {
        let mut words: Vec<&str> = vec!["apt-get"];
        words.extend(args);
        words.extend(packages);
        words.join(" ")
    };
    let status = Command::new(apt_get)
        .args(args)
        .args(packages)
        .env("DEBIAN_FRONTEND", OsString::from("noninteractive"))
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", line()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", line()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scratch folder standing for a machine's root, removed when dropped.
    #[derive(Debug)]
    pub(crate) struct Scratch(PathBuf);

    impl Scratch {
        pub(crate) fn new(name: &str) -> std::io::Result<Self> {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = env::temp_dir().join(format!("xtask-unit-{name}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir)?;
            Ok(Self(dir))
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }

        /// A machine rooted here, with nothing from this process's environment.
        pub(crate) fn machine(&self) -> Machine {
            Machine {
                root: self.0.clone(),
                path: vec![self.0.join("bin")],
                libclang_path: None,
                llvm_config_path: None,
                ld_library_path: Vec::new(),
                library_path: Vec::new(),
                cxx: None,
                uid: Some(1000),
            }
        }

        /// The prerequisites of the hardware unlock slots, present.
        pub(crate) fn hardware(&self) -> std::io::Result<()> {
            self.program("pkg-config")?;
            self.program("swtpm")?;
            self.program("tpm2_pcrextend")?;
            for file in [
                "usr/include/tss2/tss2_esys.h",
                "usr/lib/softhsm/libsofthsm2.so",
            ] {
                let path = self.0.join(file);
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)?;
                }
                fs::write(path, b"")?;
            }
            Ok(())
        }

        /// An executable script at `bin/NAME`.
        pub(crate) fn program(&self, name: &str) -> std::io::Result<PathBuf> {
            let path = self.0.join("bin").join(name);
            fs::create_dir_all(self.0.join("bin"))?;
            fs::write(&path, "#!/bin/sh\nexit 0\n")?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
            Ok(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A file that passes for a 64-bit ELF shared library.
    pub(crate) fn fake_library(path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(path, b"\x7fELF\x02\x01\x01")
    }

    /// Chromium and chromedriver where Debian puts them.
    fn fake_browser(s: &Scratch) -> std::io::Result<()> {
        for p in ["usr/bin/chromium", "usr/bin/chromedriver"] {
            let path = s.path().join(p);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::write(path, "#!/bin/sh\n")?;
        }
        Ok(())
    }

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn all_present_is_ready() -> TestResult {
        let s = Scratch::new("ready")?;
        s.hardware()?;
        fake_library(&s.path().join("usr/lib/llvm-14/lib/libclang.so"))?;
        let cxx = s.program("c++")?;
        s.program("ip")?;
        s.program("nft")?;
        fake_browser(&s)?;
        let m = s.machine();
        let statuses = survey(&m, PREREQS);
        assert_eq!(statuses[1].found, Detect::Found(cxx));
        assert_eq!(
            statuses[PREREQS.len() - 1].found,
            Detect::Found(s.path().join("usr/bin/chromedriver"))
        );
        assert_eq!(plan(&m, &statuses), Plan::Ready);
        Ok(())
    }

    #[test]
    fn a_user_is_told_the_command() -> TestResult {
        let s = Scratch::new("user")?;
        s.hardware()?;
        s.program("apt-get")?;
        s.program("c++")?;
        s.program("ip")?;
        s.program("nft")?;
        fake_browser(&s)?;
        let m = s.machine();
        assert_eq!(
            plan(&m, &survey(&m, PREREQS)),
            Plan::Stop(
                "missing: libclang (for RocksDB's bindgen); run: sudo apt-get install -y libclang-dev"
                    .into()
            )
        );
        Ok(())
    }

    #[test]
    fn root_installs_every_missing_package() -> TestResult {
        let s = Scratch::new("root")?;
        let apt_get = s.program("apt-get")?;
        let mut m = s.machine();
        m.uid = Some(0);
        assert_eq!(
            plan(&m, &survey(&m, PREREQS)),
            Plan::Install {
                apt_get,
                packages: vec![
                    "libclang-dev",
                    "g++",
                    "pkg-config",
                    "libtss2-dev",
                    "softhsm2",
                    "swtpm",
                    "tpm2-tools",
                    "iproute2",
                    "nftables",
                    "chromium",
                    "chromium-driver"
                ]
            }
        );
        Ok(())
    }

    #[test]
    fn without_apt_get_the_packages_are_named() -> TestResult {
        let s = Scratch::new("no-apt")?;
        s.hardware()?;
        fake_browser(&s)?;
        let mut m = s.machine();
        m.uid = Some(0);
        assert_eq!(
            plan(&m, &survey(&m, PREREQS)),
            Plan::Stop("missing: libclang (for RocksDB's bindgen), a C++ compiler (for RocksDB's C++), ip and tc (for the tests and testnets of separate hosts: network namespaces, rate limits), nft (for the kernel-level partitions and packet loss of the fault suite); this is not a Debian/Ubuntu system (no apt-get): install the equivalent of Debian's libclang-dev g++ iproute2 nftables with your package manager, or set LIBCLANG_PATH / CXX to where they are".into())
        );
        Ok(())
    }

    #[test]
    fn a_wrong_variable_is_never_installed_over() -> TestResult {
        let s = Scratch::new("wrong-var")?;
        s.hardware()?;
        fake_library(&s.path().join("usr/lib/x86_64-linux-gnu/libclang-14.so.1"))?;
        s.program("apt-get")?;
        s.program("c++")?;
        fake_browser(&s)?;
        let mut m = s.machine();
        m.uid = Some(0);
        m.cxx = Some("clang++-99 -stdlib=libc++".into());
        let Plan::Stop(message) = plan(&m, &survey(&m, PREREQS)) else {
            return Err("a wrong CXX must stop, not install".into());
        };
        assert_eq!(
            message,
            "unusable: a C++ compiler (for RocksDB's C++): CXX=clang++-99 -stdlib=libc++ is not a program on PATH: point it at a C++ compiler, or unset it"
        );
        Ok(())
    }

    #[test]
    fn uid_comes_from_proc() {
        // This process has some effective uid, and /proc says which.
        assert!(effective_uid().is_some());
    }
}
