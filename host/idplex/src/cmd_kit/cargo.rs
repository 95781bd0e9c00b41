//! Building a connector crate to a core module: the recipe of `host/idplex-bundled/build.rs`,
//! run by the binary. A toolchain that can build `wasm32-unknown-unknown` (the rustup target,
//! else Debian's `rustc-web` + `rust-web-src` + `lld` with `-Zbuild-std`), a nested cargo with a
//! clean environment (nothing of the caller's `RUSTFLAGS`, wrappers or cargo-set variables leaks
//! into a wasm build; `CARGO_TARGET_DIR` and the cargo/rustup homes are kept), and the cdylib's
//! `.wasm` read from cargo's own artifact messages (so `CARGO_TARGET_DIR` or a `.cargo/config`
//! target dir are honoured).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The target connectors are built for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// How to run the nested cargo.
#[derive(Debug, Clone)]
pub enum Toolchain {
    /// A toolchain that ships the wasm32 standard library (rustup target): plain `--target`.
    Native {
        /// `$CARGO`, else `cargo` on `PATH`.
        cargo: PathBuf,
        /// `$RUSTC` when set (else cargo picks its own).
        rustc: Option<PathBuf>,
    },
    /// Debian `rustc-web`/`cargo-web`/`rust-web-src` + `lld`: std built from source.
    DebianBuildStd {
        /// `wasm-ld`.
        linker: PathBuf,
    },
}

impl Toolchain {
    /// One line for people: which toolchain builds.
    pub fn describe(&self) -> String {
        match self {
            Toolchain::Native { cargo, .. } => format!("{} (rustup target {WASM_TARGET})", cargo.display()),
            Toolchain::DebianBuildStd { linker } => {
                format!("/usr/bin/cargo with -Zbuild-std (Debian rust-web-src), linker {}", linker.display())
            }
        }
    }
}

/// Picks how to build for wasm32 in `crate_dir` (a `rust-toolchain.toml` there is honoured), or
/// fails saying what to install.
pub fn detect(crate_dir: &Path) -> anyhow::Result<Toolchain> {
    let env_rustc = std::env::var_os("RUSTC").map(PathBuf::from);
    let rustc = env_rustc.clone().unwrap_or_else(|| PathBuf::from("rustc"));
    let cargo = std::env::var_os("CARGO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("cargo"));
    if let Some(sysroot) = sysroot(&rustc, crate_dir) {
        if sysroot.join("lib/rustlib").join(WASM_TARGET).is_dir() {
            return Ok(Toolchain::Native { cargo, rustc: env_rustc });
        }
    }
    let debian_rustc = Path::new("/usr/bin/rustc");
    let debian_cargo = Path::new("/usr/bin/cargo");
    let has_src = sysroot(debian_rustc, crate_dir)
        .is_some_and(|s| s.join("lib/rustlib/src/rust/library/std").is_dir());
    let linker = find_in_path("wasm-ld");
    if debian_cargo.is_file() && has_src {
        if let Some(linker) = linker.clone() {
            return Ok(Toolchain::DebianBuildStd { linker });
        }
    }
    let ok = |b: bool| if b { "ok" } else { "missing" };
    bail!(
        "no Rust toolchain here can build {WASM_TARGET}: `{}` has no {WASM_TARGET} standard library, and no \
         usable Debian fallback was found (/usr/bin/rustc + rust-web-src: {}, /usr/bin/cargo: {}, wasm-ld: {}). \
         Install one of: `rustup target add {WASM_TARGET}`; on Debian/Ubuntu `apt-get install rustc-web cargo-web \
         rust-web-src lld`",
        rustc.display(),
        ok(has_src),
        ok(debian_cargo.is_file()),
        ok(linker.is_some()),
    )
}

fn sysroot(rustc: &Path, dir: &Path) -> Option<PathBuf> {
    let out = Command::new(rustc).args(["--print", "sysroot"]).current_dir(dir).output().ok()?;
    out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The variables a nested cargo keeps from this process's environment: where things are
/// (homes, `PATH`, the temp and target dirs), network settings, cargo's output and job settings.
const KEPT_ENV: &[&str] = &[
    "PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN", "TMPDIR", "CARGO_TARGET_DIR",
    "CARGO_NET_OFFLINE", "CARGO_BUILD_JOBS", "CARGO_TERM_COLOR", "TERM", "HTTP_PROXY", "HTTPS_PROXY",
    "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR",
];

/// A cargo command for `toolchain` with a clean environment, run in `crate_dir`.
fn nested_cargo(toolchain: &Toolchain, crate_dir: &Path) -> Command {
    let mut cmd = match toolchain {
        Toolchain::Native { cargo, rustc } => {
            let mut c = Command::new(cargo);
            c.env_clear();
            if let Some(rustc) = rustc {
                c.env("RUSTC", rustc);
            }
            c
        }
        Toolchain::DebianBuildStd { linker } => {
            let mut c = Command::new("/usr/bin/cargo");
            c.env_clear()
                .env("RUSTC", "/usr/bin/rustc")
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", linker);
            c
        }
    };
    for key in KEPT_ENV {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.current_dir(crate_dir);
    cmd
}

/// The core module cargo built.
#[derive(Debug, Clone)]
pub struct CoreModule {
    /// The `.wasm` file of the crate's cdylib.
    pub path: PathBuf,
    /// Its cargo package name.
    pub package: String,
}

/// `cargo build --release --target wasm32-unknown-unknown` of the crate whose manifest is
/// `crate_dir/Cargo.toml`; cargo's own output (progress, diagnostics) streams to this process's
/// stderr. The crate must have exactly one `cdylib` target.
pub fn build_core(toolchain: &Toolchain, crate_dir: &Path) -> anyhow::Result<CoreModule> {
    let manifest = crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!("{} has no Cargo.toml: give the directory of a connector crate (made by `idplex connector new`)", crate_dir.display());
    }
    let mut cmd = nested_cargo(toolchain, crate_dir);
    cmd.args(["build", "--release", "--target", WASM_TARGET, "--message-format", "json-render-diagnostics", "--manifest-path"])
        .arg(&manifest);
    if let Toolchain::DebianBuildStd { .. } = toolchain {
        cmd.arg("-Zbuild-std=std,panic_abort");
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().with_context(|| format!("cannot run cargo ({})", toolchain.describe()))?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut artifacts = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's messages")?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            // Not a message (a build script printing to stdout): pass it on to stderr.
            eprintln!("{line}");
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let is_cdylib = msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if !is_cdylib {
            continue;
        }
        let package = msg["target"]["name"].as_str().unwrap_or_default().to_string();
        for file in msg["filenames"].as_array().into_iter().flatten().filter_map(|f| f.as_str()) {
            if file.ends_with(".wasm") {
                artifacts.push(CoreModule { path: PathBuf::from(file), package: package.clone() });
            }
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("cargo build for {WASM_TARGET} failed ({status}); the compiler's messages are above");
    }
    match artifacts.len() {
        1 => Ok(artifacts.remove(0)),
        0 => bail!(
            "cargo built no cdylib in {}: a connector crate needs `[lib] crate-type = [\"cdylib\"]`",
            crate_dir.display()
        ),
        _ => bail!(
            "cargo built {} cdylibs ({}): give the directory of one connector crate, not a workspace",
            artifacts.len(),
            artifacts.iter().map(|a| a.package.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}
