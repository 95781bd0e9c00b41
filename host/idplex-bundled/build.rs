//! Builds the guest workspace `connectors/` to WebAssembly components (see `src/lib.rs`).
//!
//! Steps: pick a toolchain that can build `wasm32-unknown-unknown` (rustup target, else Debian's
//! `rustc-web` + `rust-web-src` with `-Zbuild-std`), run a *nested* cargo with a clean
//! environment and its own target dir (`<target>/wasm-connectors`, so it never waits on the
//! outer cargo's lock), optionally shrink each core module with `wasm-opt`, componentize it with
//! `wit-component`, and write the components plus a small Rust list into `OUT_DIR`.
//!
//! Set `IDPLEX_NO_WASM_OPT=1` to skip `wasm-opt` (it is skipped anyway when not installed).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Test fixtures under `connectors/testing/` that `lib.rs` embeds by name.
const FIXTURES: &[&str] = &["hostile", "echo-v1", "echo-v2", "impostor", "bad-schema", "contract-1-0"];

/// Feature flags `wasm-opt` needs for what rustc emits for `wasm32-unknown-unknown`.
const WASM_OPT_FLAGS: &[&str] = &[
    "-Oz",
    "--enable-bulk-memory",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-reference-types",
    "--enable-multivalue",
];

/// How to run the nested cargo.
enum Toolchain {
    /// rustup (or any) toolchain that ships the wasm32 std: plain `cargo build --target`.
    Native { cargo: PathBuf, rustc: PathBuf },
    /// Debian `rustc-web`/`cargo-web`/`rust-web-src` + `lld`: std built from source.
    DebianBuildStd { linker: PathBuf },
}

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().expect("repository root");
    let connectors = root.join("connectors");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());

    emit_rerun_triggers(&root, &connectors);
    println!("cargo:rerun-if-env-changed=IDPLEX_NO_WASM_OPT");

    // OUT_DIR is <target>[/<triple>]/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .expect("OUT_DIR has the usual layout")
        .join("wasm-connectors");

    let toolchain = detect_toolchain();
    let packages = cdylib_packages(&toolchain, &connectors);
    build_guests(&toolchain, &connectors, &target_dir);

    let release = target_dir.join(WASM_TARGET).join("release");
    let testing_out = out_dir.join("testing");
    fs::create_dir_all(&testing_out).unwrap();

    let mut first_party = Vec::new();
    let mut fixtures_found = Vec::new();
    for pkg in &packages {
        let core = release.join(format!("{}.wasm", pkg.lib_name));
        let component = componentize(&core, &pkg.name);
        let parent = pkg.dir.parent().unwrap();
        if parent == connectors {
            let dest = out_dir.join(format!("first-party-{}.wasm", pkg.name));
            fs::write(&dest, &component).unwrap();
            first_party.push((pkg.name.clone(), dest));
        } else if parent == connectors.join("testing") && FIXTURES.contains(&pkg.name.as_str()) {
            fs::write(testing_out.join(format!("{}.wasm", pkg.name)), &component).unwrap();
            fixtures_found.push(pkg.name.clone());
        }
    }
    for fixture in FIXTURES {
        if !fixtures_found.iter().any(|f| f == fixture) {
            panic!("test fixture `connectors/testing/{fixture}` was not built (is it a cdylib member of connectors/Cargo.toml?)");
        }
    }

    first_party.sort();
    let mut list = String::from("&[\n");
    for (name, path) in &first_party {
        list.push_str(&format!(
            "    BundledConnector {{ crate_name: {name:?}, component: include_bytes!({:?}) }},\n",
            path.display().to_string()
        ));
    }
    list.push(']');
    fs::write(out_dir.join("first_party.rs"), list).unwrap();
}

/// Re-run only when guest sources, manifests, the lock file or the WIT change. Each directory
/// under `connectors/` except `target` is watched recursively (cargo scans it for mtimes).
fn emit_rerun_triggers(root: &Path, connectors: &Path) {
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed={}", connectors.join("Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", connectors.join("Cargo.lock").display());
    let mut entries: Vec<_> = fs::read_dir(connectors)
        .expect("connectors/ exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name != "target" && !name.starts_with('.')
        })
        .collect();
    entries.sort();
    for dir in entries {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
}

/// Picks how to build for wasm32, or fails saying what to install.
fn detect_toolchain() -> Toolchain {
    let rustc = PathBuf::from(env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
    let cargo = PathBuf::from(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    if let Some(sysroot) = sysroot(&rustc) {
        if sysroot.join("lib/rustlib").join(WASM_TARGET).is_dir() {
            return Toolchain::Native { cargo, rustc };
        }
    }
    let debian_rustc = Path::new("/usr/bin/rustc");
    let debian_cargo = Path::new("/usr/bin/cargo");
    let has_src = sysroot(debian_rustc)
        .map(|s| s.join("lib/rustlib/src/rust/library/std").is_dir())
        .unwrap_or(false);
    let linker = find_in_path("wasm-ld");
    if debian_cargo.is_file() && has_src {
        if let Some(linker) = linker {
            return Toolchain::DebianBuildStd { linker };
        }
    }
    panic!(
        "\n\nidplex-bundled: cannot build the connectors for {WASM_TARGET}.\n\
         The Rust toolchain at `{}` has no {WASM_TARGET} standard library, and no usable Debian \
         fallback was found (/usr/bin/rustc + rust-web-src: {}, /usr/bin/cargo: {}, wasm-ld: {}).\n\
         Install one of:\n  \
         * rustup target add {WASM_TARGET}\n  \
         * on Debian/Ubuntu: apt-get install rustc-web cargo-web rust-web-src lld\n  \
         * or run scripts/bootstrap\n\n",
        rustc.display(),
        if has_src { "ok" } else { "missing" },
        if debian_cargo.is_file() { "ok" } else { "missing" },
        if find_in_path("wasm-ld").is_some() { "ok" } else { "missing" },
    );
}

fn sysroot(rustc: &Path) -> Option<PathBuf> {
    let out = Command::new(rustc).args(["--print", "sysroot"]).output().ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A nested cargo command with a clean environment: nothing of the outer build (target dir,
/// RUSTFLAGS, wrappers, jobserver, CARGO_CFG_*, TARGET, PROFILE, ...) leaks in.
fn nested_cargo(toolchain: &Toolchain, connectors: &Path) -> Command {
    let mut cmd = match toolchain {
        Toolchain::Native { cargo, rustc } => {
            let mut c = Command::new(cargo);
            c.env_clear().env("RUSTC", rustc);
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
    for key in [
        "PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN", "TMPDIR",
        "CARGO_NET_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy",
        "https_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR",
    ] {
        if let Some(value) = env::var_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.current_dir(connectors);
    cmd
}

fn run(mut cmd: Command, what: &str) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("idplex-bundled: cannot run {what} ({cmd:?}): {e}"));
    if !out.status.success() {
        panic!(
            "idplex-bundled: {what} failed ({}):\n{cmd:?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
        );
    }
    out.stdout
}

/// A guest package with a `cdylib` target.
struct Package {
    /// Cargo package name (`custom-saml`).
    name: String,
    /// Library target name (`custom_saml`), i.e. the `.wasm` file stem.
    lib_name: String,
    /// Directory holding the package's Cargo.toml.
    dir: PathBuf,
}

/// Every workspace member of `connectors/` with a `cdylib` target, via `cargo metadata`.
fn cdylib_packages(toolchain: &Toolchain, connectors: &Path) -> Vec<Package> {
    let mut cmd = nested_cargo(toolchain, connectors);
    cmd.args(["metadata", "--no-deps", "--format-version", "1", "--manifest-path"])
        .arg(connectors.join("Cargo.toml"));
    let stdout = run(cmd, "cargo metadata for connectors/");
    let meta: serde_json::Value = serde_json::from_slice(&stdout).expect("cargo metadata JSON");
    let mut packages = Vec::new();
    for pkg in meta["packages"].as_array().expect("packages") {
        let manifest = PathBuf::from(pkg["manifest_path"].as_str().unwrap());
        for target in pkg["targets"].as_array().unwrap() {
            let is_cdylib =
                target["kind"].as_array().unwrap().iter().any(|k| k.as_str() == Some("cdylib"));
            if is_cdylib {
                packages.push(Package {
                    name: pkg["name"].as_str().unwrap().to_string(),
                    lib_name: target["name"].as_str().unwrap().replace('-', "_"),
                    dir: manifest.parent().unwrap().canonicalize().unwrap(),
                });
            }
        }
    }
    packages
}

fn build_guests(toolchain: &Toolchain, connectors: &Path, target_dir: &Path) {
    let mut cmd = nested_cargo(toolchain, connectors);
    cmd.args(["build", "--release", "--target", WASM_TARGET, "--manifest-path"])
        .arg(connectors.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    if let Toolchain::DebianBuildStd { .. } = toolchain {
        cmd.arg("-Zbuild-std=std,panic_abort");
    }
    run(cmd, "the nested cargo build of connectors/");
}

/// Core module → component; runs `wasm-opt` first when available (falls back to the
/// unoptimized module if `wasm-opt` fails or its output does not componentize).
fn componentize(core: &Path, name: &str) -> Vec<u8> {
    let module = fs::read(core)
        .unwrap_or_else(|e| panic!("idplex-bundled: cannot read {}: {e}", core.display()));
    if env::var_os("IDPLEX_NO_WASM_OPT").is_none() {
        if let Some(optimized) = wasm_opt(core) {
            match encode(&optimized) {
                Ok(c) => return c,
                Err(e) => println!(
                    "cargo:warning=wasm-opt output of {name} did not componentize ({e}); using the unoptimized module"
                ),
            }
        }
    }
    encode(&module).unwrap_or_else(|e| panic!("idplex-bundled: componentizing {name}: {e}"))
}

fn encode(module: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .and_then(|mut e| e.encode())
        .map_err(|e| format!("{e:#}"))
}

fn wasm_opt(core: &Path) -> Option<Vec<u8>> {
    let wasm_opt = find_in_path("wasm-opt")?;
    let out = core.with_extension("opt.wasm");
    let status = Command::new(wasm_opt).arg(core).args(WASM_OPT_FLAGS).arg("-o").arg(&out).status();
    match status {
        Ok(s) if s.success() => fs::read(&out).ok(),
        _ => {
            println!("cargo:warning=wasm-opt failed on {}; using the unoptimized module", core.display());
            None
        }
    }
}
