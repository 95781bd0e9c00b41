//! The vendor kit of the CLI: `idplex connector new|build|dev`.
//!
//! * `new NAME` writes a connector crate that builds as it is ([`template`]).
//! * `build [PATH]` compiles a crate for `wasm32-unknown-unknown` ([`cargo`], the recipe of
//!   `host/idplex-bundled/build.rs`) and componentizes the core module with the host's own
//!   componentizer (`idplex_hub::vendor::componentize`): the component is what an install
//!   stores. No database.
//! * `dev PATH --connection ID` builds, installs the build as a dev build
//!   (`Hub::install_dev`: version `VERSION+dev.SHA12`) and activates it on the connection, then
//!   rebuilds on every change of `src/`, `Cargo.toml` or `wit/`. A running `idplex serve` on the
//!   same database applies each activation within its `--watch-ms` (its binding watcher), as for
//!   `connector activate`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::Args;
use idplex_hub::conformance::{CaseOutcome, CheckOptions, CheckReport};
use idplex_hub::{Hub, HubError, trust, vendor};
use serde_json::{Value, json};

pub mod cargo;
pub mod template;

use template::{Capabilities, Params};

/// The SDK of the repository this binary was built from: the default `--sdk`.
const REPO_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../connectors/idplex-connector-sdk");

/// `idplex connector new`.
#[derive(Args, Debug)]
pub struct NewArgs {
    /// The connector's name (also the crate's): 1-64 characters of a-z, 0-9 and '-', starting
    /// with a letter; not the name of a first-party connector.
    pub name: String,
    /// What the connector declares, comma-separated: provisioning, sso, directory-sync. The
    /// others answer `unsupported`.
    #[arg(long, default_value = "provisioning,sso")]
    pub capabilities: String,
    /// Where to create the crate (default: ./NAME). Must not exist, or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The idplex-connector-sdk crate to depend on (default: the SDK of the idplex checkout
    /// this binary was built from).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

/// `idplex connector build`.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The connector crate's directory.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Where to write the component (default: next to the core module, `NAME.component.wasm`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also run the conformance check on the component (exit 3 when a case fails).
    #[arg(long)]
    pub check: bool,
}

/// `idplex connector dev`.
#[derive(Args, Debug)]
pub struct DevArgs {
    /// The connector crate's directory.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// The connection to run each build on (it must use this connector).
    #[arg(long)]
    pub connection: String,
    /// One build-install-activate cycle, then exit (scripts and tests).
    #[arg(long)]
    pub once: bool,
    /// How often to look for changes (ms).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(50..))]
    pub poll_ms: u64,
    /// Sign each build with this publisher key (`NAME.idplex-key`) before installing it, for a
    /// server whose trust policy refuses unsigned modules and trusts that key.
    #[arg(long, requires = "publisher")]
    pub sign_key: Option<PathBuf>,
    /// The publisher name to sign as (with --sign-key).
    #[arg(long, requires = "sign_key")]
    pub publisher: Option<String>,
}

fn invalid(what: &'static str, reason: impl Into<String>) -> anyhow::Error {
    HubError::Invalid { what, reason: reason.into() }.into()
}

/// Rust keywords and the names of the standard crates: not usable as a crate name.
const RESERVED_CRATE_NAMES: &[&str] = &[
    "abstract", "alloc", "as", "async", "await", "become", "box", "break", "const", "continue", "core", "crate", "do",
    "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "macro",
    "match", "mod", "move", "mut", "override", "priv", "proc_macro", "pub", "ref", "return", "self", "static", "std",
    "struct", "super", "test", "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use", "virtual",
    "where", "while", "yield",
];

/// The host's connector-name rule (`describe`'s name at install), plus what a crate name needs:
/// a leading letter, not a keyword; and not a first-party connector's name (install refuses it).
pub fn check_new_name(name: &str) -> anyhow::Result<()> {
    vendor::check_connector_name(name).map_err(|r| invalid("connector name", r))?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid("connector name", format!("name {name:?} must start with a letter (it is also the crate's name)")));
    }
    if RESERVED_CRATE_NAMES.contains(&name.replace('-', "_").as_str()) {
        return Err(invalid("connector name", format!("name {name:?} is a Rust keyword or standard crate; pick another")));
    }
    if vendor::reserved_names().contains(&name) {
        return Err(invalid(
            "connector name",
            format!("name {name:?} is reserved for the first-party connector shipped with idplex (install would refuse it); pick another"),
        ));
    }
    Ok(())
}

/// The SDK directory to depend on: `--sdk`, else the repository's; canonical, and checked to be
/// the SDK crate.
fn sdk_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = match given {
        Some(dir) => dir.to_path_buf(),
        None => {
            let repo = PathBuf::from(REPO_SDK);
            if !repo.is_dir() {
                return Err(invalid(
                    "SDK",
                    format!(
                        "this idplex was built from a checkout whose SDK ({}) is not here; give the \
                         idplex-connector-sdk crate with --sdk PATH",
                        repo.display()
                    ),
                ));
            }
            repo
        }
    };
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    let is_sdk = manifest.lines().any(|l| {
        l.trim().strip_prefix("name").is_some_and(|r| r.trim_start().strip_prefix('=').is_some_and(|v| v.trim() == "\"idplex-connector-sdk\""))
    });
    if !is_sdk {
        return Err(invalid(
            "SDK",
            format!("{} is not the idplex-connector-sdk crate (no Cargo.toml naming it); give its directory with --sdk PATH", dir.display()),
        ));
    }
    dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))
}

/// `idplex connector new`.
pub fn new(args: &NewArgs, json_out: bool) -> anyhow::Result<()> {
    check_new_name(&args.name)?;
    let capabilities = Capabilities::parse(&args.capabilities).map_err(|r| invalid("capabilities", r))?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.is_file() {
        return Err(invalid("directory", format!("{} is a file", dir.display())));
    }
    if dir.is_dir() && std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?.next().is_some() {
        return Err(invalid("directory", format!("{} exists and is not empty; give another --dir", dir.display())));
    }
    let sdk = sdk_dir(args.sdk.as_deref())?;
    let sdk_text = sdk.to_str().ok_or_else(|| invalid("SDK", format!("the path {} is not UTF-8", sdk.display())))?;
    let files = template::files(&Params { name: &args.name, capabilities, sdk_path: sdk_text })
        .map_err(|e| anyhow::anyhow!("the connector template is broken: {e}"))?;
    for (relative, text) in &files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let dir = dir.canonicalize().unwrap_or(dir);
    let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    crate::emit(
        json_out,
        &json!({
            "name": args.name,
            "dir": dir,
            "capabilities": capabilities.declared(),
            "sdk": sdk,
            "files": names,
        }),
        || {
            format!(
                "created connector crate {} in {} ({}; SDK {})\nnext: cd {} && cargo test && idplex connector build",
                args.name,
                dir.display(),
                capabilities.declared().join(", "),
                sdk.display(),
                dir.display()
            )
        },
    );
    Ok(())
}

/// A component built from a crate.
#[derive(Debug, Clone)]
pub struct Built {
    /// Where it was written.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Their sha256 (hex).
    pub sha256: String,
    /// The core module cargo built.
    pub core: PathBuf,
    /// How long cargo and the componentizer took.
    pub elapsed: Duration,
}

impl Built {
    fn json(&self) -> serde_json::Value {
        json!({
            "path": self.path,
            "size_bytes": self.bytes.len(),
            "sha256": self.sha256,
            "core_module": self.core,
            "seconds": (self.elapsed.as_secs_f64() * 10.0).round() / 10.0,
        })
    }

    fn line(&self) -> String {
        format!(
            "built {} ({} bytes, sha256 {}) in {:.1} s",
            self.path.display(),
            self.bytes.len(),
            self.sha256,
            self.elapsed.as_secs_f64()
        )
    }
}

/// cargo, then the host's componentizer; writes the component to `out` (or beside the core
/// module). Blocking (runs cargo).
fn build_component(toolchain: &cargo::Toolchain, crate_dir: &Path, out: Option<&Path>) -> anyhow::Result<Built> {
    let t0 = Instant::now();
    let core = cargo::build_core(toolchain, crate_dir)?;
    let module = std::fs::read(&core.path).with_context(|| format!("cannot read {}", core.path.display()))?;
    let component = vendor::componentize(&module)
        .with_context(|| format!("componentizing {} (is it built with idplex-connector-sdk's export_connector!?)", core.path.display()))?;
    let path = match out {
        Some(p) => p.to_path_buf(),
        None => core.path.with_extension("component.wasm"),
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&path, &component).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Built { sha256: vendor::sha256_hex(&component), path, bytes: component, core: core.path, elapsed: t0.elapsed() })
}

/// The crate directory `path`, checked and made absolute.
fn crate_dir(path: &Path) -> anyhow::Result<PathBuf> {
    let dir = path.canonicalize().with_context(|| format!("no such directory {}", path.display()))?;
    if !dir.join("Cargo.toml").is_file() {
        return Err(invalid("crate", format!("{} has no Cargo.toml: give the directory of a connector crate", dir.display())));
    }
    Ok(dir)
}

/// `idplex connector build`.
pub async fn build(args: &BuildArgs, json_out: bool) -> anyhow::Result<()> {
    let dir = crate_dir(&args.path)?;
    let out = args.out.clone();
    let built = tokio::task::spawn_blocking(move || {
        let toolchain = cargo::detect(&dir)?;
        build_component(&toolchain, &dir, out.as_deref())
    })
    .await
    .context("the build task failed")??;
    if !args.check {
        crate::emit(json_out, &built.json(), || built.line());
        return Ok(());
    }
    let t0 = Instant::now();
    let report = idplex_hub::check_component(&built.bytes, &CheckOptions::default()).await?;
    let mut value = built.json();
    value["check"] = serde_json::to_value(&report)?;
    value["check_seconds"] = json!((t0.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    crate::emit(json_out, &value, || format!("{}\n{}", built.line(), check_text(&report, true)));
    check_verdict(&report)
}

/// The conformance report for people: one line of counts, then a line per case (every case
/// when `all`, else the failures).
fn check_text(report: &CheckReport, all: bool) -> String {
    let mut text = format!(
        "check {}: {} passed, {} failed, {} skipped",
        report.label(),
        report.count(CaseOutcome::Pass),
        report.count(CaseOutcome::Fail),
        report.count(CaseOutcome::Skip)
    );
    for case in report.cases.iter().filter(|c| all || c.outcome == CaseOutcome::Fail) {
        text.push_str(&format!("\n  {} {}: {}", case.outcome, case.name, case.detail));
    }
    text
}

/// Exit 3 (refused input) when a case failed.
fn check_verdict(report: &CheckReport) -> anyhow::Result<()> {
    if report.passed() {
        return Ok(());
    }
    let failed: Vec<&str> = report.failures().map(|c| c.name.as_str()).collect();
    Err(invalid(
        "connector",
        format!("{} failed {} conformance case(s): {}", report.label(), failed.len(), failed.join("; ")),
    ))
}

/// The files `dev` watches: `src/` and `wit/` (recursively) and `Cargo.toml`, with their
/// modification times and sizes, sorted.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    fn walk(path: &Path, out: &mut Vec<(PathBuf, Option<SystemTime>, u64)>) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(path) {
                for entry in entries.flatten() {
                    walk(&entry.path(), out);
                }
            }
        } else {
            out.push((path.to_path_buf(), meta.modified().ok(), meta.len()));
        }
    }
    let mut out = Vec::new();
    for watched in ["src", "wit", "Cargo.toml"] {
        walk(&dir.join(watched), &mut out);
    }
    out.sort();
    out
}

/// `idplex connector dev`.
pub async fn dev(hub: &Hub, json_out: bool, args: DevArgs) -> anyhow::Result<()> {
    let dir = crate_dir(&args.path)?;
    let conn = hub.connection(&args.connection).await?;
    let toolchain = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || cargo::detect(&dir)).await.context("the toolchain check failed")??
    };
    eprintln!(
        "dev loop: {} → connection {} ({}); building with {}",
        dir.display(),
        conn.id,
        conn.connector_name,
        toolchain.describe()
    );
    let signer = match (&args.sign_key, &args.publisher) {
        (Some(path), Some(publisher)) => {
            let key = std::fs::read(path).with_context(|| format!("cannot read the publisher key {}", path.display()))?;
            Some((trust::PublisherKey::from_file_bytes(&key)?, publisher.clone()))
        }
        _ => None,
    };
    let poll = Duration::from_millis(args.poll_ms);
    loop {
        let seen = fingerprint(&dir);
        let outcome = cycle(hub, &toolchain, &dir, &args, signer.as_ref(), json_out).await;
        match outcome {
            Ok(()) => {}
            Err(e) if args.once => return Err(e),
            Err(e) => eprintln!("error: {}", crate::error_message(&e)),
        }
        if args.once {
            return Ok(());
        }
        eprintln!("watching {}/{{src,wit,Cargo.toml}} for changes (Ctrl-C stops)", dir.display());
        let mut seen = seen;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
            let now = fingerprint(&dir);
            if now == seen {
                continue;
            }
            // Let an editor finish writing (several files, or write-then-rename) before building.
            seen = now;
            tokio::time::sleep(poll.min(Duration::from_millis(300))).await;
            if fingerprint(&dir) == seen {
                break;
            }
        }
    }
}

/// One dev cycle: build, conformance check (with the connection's non-secret config), sign
/// (with `--sign-key`), install as a dev build, activate on the connection; prints each step.
async fn cycle(
    hub: &Hub,
    toolchain: &cargo::Toolchain,
    dir: &Path,
    args: &DevArgs,
    signer: Option<&(trust::PublisherKey, String)>,
    json_out: bool,
) -> anyhow::Result<()> {
    let connection = args.connection.as_str();
    let built = {
        let (toolchain, dir) = (toolchain.clone(), dir.to_path_buf());
        tokio::task::spawn_blocking(move || build_component(&toolchain, &dir, None)).await.context("the build task failed")??
    };
    if !json_out {
        println!("{}", built.line());
    }
    let conn = hub.connection(connection).await?;
    let config = match &conn.config {
        Value::Object(map) => map.iter().filter(|(k, _)| !k.starts_with(idplex_hub::SECRET_PREFIX)).map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => Default::default(),
    };
    let t0 = Instant::now();
    let report = idplex_hub::check_component(&built.bytes, &CheckOptions { config, ..CheckOptions::default() }).await?;
    let check_seconds = t0.elapsed().as_secs_f64();
    if !json_out {
        println!("{} ({check_seconds:.1} s)", check_text(&report, false));
    }
    check_verdict(&report)?;
    let bytes = match signer {
        Some((key, publisher)) => trust::sign_module(&built.bytes, key, publisher).await?.bytes,
        None => built.bytes.clone(),
    };
    let report_install = hub.install_dev(&bytes).await?;
    if report_install.name != conn.connector_name {
        return Err(invalid(
            "connection",
            format!(
                "connection {} uses connector {}, and this crate builds {}: create a connection for {} \
                 (`idplex connection create NAME --connector {} --version {}`) or give another --connection",
                conn.id, conn.connector_name, report_install.name, report_install.name, report_install.name, report_install.version
            ),
        ));
    }
    let target = format!("{}@{}", report_install.name, report_install.version);
    let short = &report_install.sha256[..12];
    let swapped = conn.active_version.as_deref() != Some(report_install.version.as_str());
    if swapped {
        hub.activate(connection, &report_install.version, &format!("{}:dev", crate::actor())).await?;
    }
    let message = if swapped {
        format!("swapped connection {} to {target} (sha {short})", conn.id)
    } else {
        format!("connection {} already runs {target} (sha {short})", conn.id)
    };
    if json_out {
        println!(
            "{}",
            json!({
                "build": built.json(),
                "check": {
                    "passed": report.passed(),
                    "pass": report.count(CaseOutcome::Pass),
                    "fail": report.count(CaseOutcome::Fail),
                    "skip": report.count(CaseOutcome::Skip),
                    "seconds": (check_seconds * 10.0).round() / 10.0,
                },
                "install": {
                    "outcome": report_install.outcome,
                    "name": report_install.name,
                    "version": report_install.version,
                    "sha256": report_install.sha256,
                    "publisher": report_install.publisher,
                },
                "connection": conn.id,
                "swapped": swapped,
                "message": message,
            })
        );
    } else {
        println!("installed {target} ({})", report_install.outcome);
        println!("{message}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_names_follow_the_host_rule_and_the_crate_rules() {
        check_new_name("acme-idp").unwrap();
        for (bad, says) in [
            ("Acme", "a-z, 0-9 and '-'"),
            ("acme_idp", "a-z, 0-9 and '-'"),
            ("-acme", "a-z, 0-9 and '-'"),
            ("9acme", "start with a letter"),
            ("self", "keyword"),
            ("custom-saml", "reserved for the first-party"),
        ] {
            let e = check_new_name(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_repository_sdk_is_found_and_other_directories_are_not_taken_for_it() {
        let sdk = sdk_dir(None).expect("this checkout has the SDK");
        assert!(sdk.is_absolute() && sdk.ends_with("connectors/idplex-connector-sdk"), "{}", sdk.display());
        let e = sdk_dir(Some(Path::new(env!("CARGO_MANIFEST_DIR")))).unwrap_err().to_string();
        assert!(e.contains("is not the idplex-connector-sdk crate"), "{e}");
    }

    #[test]
    fn the_fingerprint_sees_sources_manifest_and_wit_only() {
        let dir = std::env::temp_dir().join(format!("idplex-kit-fp-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src/nested")).unwrap();
        std::fs::create_dir_all(dir.join("target")).unwrap();
        std::fs::write(dir.join("Cargo.toml"), "x").unwrap();
        std::fs::write(dir.join("src/nested/a.rs"), "a").unwrap();
        let before = fingerprint(&dir);
        assert_eq!(before.len(), 2);
        std::fs::write(dir.join("target/ignored"), "t").unwrap();
        assert_eq!(fingerprint(&dir), before);
        std::fs::write(dir.join("src/nested/a.rs"), "ab").unwrap();
        assert_ne!(fingerprint(&dir), before);
        std::fs::create_dir_all(dir.join("wit")).unwrap();
        std::fs::write(dir.join("wit/x.wit"), "w").unwrap();
        assert_eq!(fingerprint(&dir).len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
