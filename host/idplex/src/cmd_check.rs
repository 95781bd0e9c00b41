//! `idplex connector check FILE.wasm`: the host's conformance checks of a connector module
//! (`idplex_hub::conformance`), with no database: the module is loaded exactly as an install
//! would load it, on a runtime of its own whose artifact cache is a temporary directory.
//!
//! Prints one line per case (`PASS|FAIL|SKIP name — detail`) and a summary, or with `--json`
//! the report; exits 0 when no case failed and 3 (refused input, as in the binary's exit-code
//! table) when one did.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use idplex_hub::{CaseOutcome, CheckOptions, CheckReport};
use serde_json::{Map, Value};

/// The exit code of a check with a failed case (the binary's "refused input").
const EXIT_FAILED: i32 = 3;

/// `idplex connector check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The module: a component, or a core module carrying the WIT metadata wit-bindgen embeds.
    pub file: PathBuf,
    /// A connection config value the cases run with, `KEY=VALUE` (repeatable; over the values of
    /// `--config-file`). Without any, the cases run with an empty config, as a new connection's;
    /// a case that needs a key nobody gave is skipped, saying which.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = crate::parse_kv)]
    pub config: Vec<(String, String)>,
    /// A JSON object of connection config values (applied before `--config`).
    #[arg(long, value_name = "FILE.json")]
    pub config_file: Option<PathBuf>,
}

/// Runs the check and prints it. A failed case ends the process with exit code 3 once the report
/// is printed (so that `--json` prints the report alone); an error is the check's own (a file
/// that cannot be read, no temporary directory).
pub async fn run(json_out: bool, args: &CheckArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut config = Map::new();
    if let Some(path) = &args.config_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        match serde_json::from_str::<Value>(&text).with_context(|| format!("{} is not JSON", path.display()))? {
            Value::Object(values) => config.extend(values),
            other => anyhow::bail!("{} must hold a JSON object of config values, not {other}", path.display()),
        }
    }
    for (key, value) in &args.config {
        config.insert(key.clone(), Value::String(value.clone()));
    }
    let options = CheckOptions { config, ..CheckOptions::default() };
    let report = idplex_hub::check_component(&bytes, &options).await?;
    let mut out = std::io::stdout().lock();
    if json_out {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", text(&args.file, &report))?;
    }
    out.flush()?;
    if !report.passed() {
        std::process::exit(EXIT_FAILED);
    }
    Ok(())
}

/// The report for people: one line per case and a summary.
fn text(file: &std::path::Path, report: &CheckReport) -> String {
    let mut s = String::new();
    for case in &report.cases {
        let mut measured = Vec::new();
        if let Some(ms) = case.time_ms {
            measured.push(format!("{ms:.2} ms"));
        }
        if let Some(bytes) = case.memory_bytes {
            measured.push(format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64));
        }
        let measured = if measured.is_empty() { String::new() } else { format!(" [{}]", measured.join(", ")) };
        s.push_str(&format!("{} {} — {}{measured}\n", case.outcome, case.name, case.detail));
    }
    let contract = report.contract_version.as_deref().map(|c| format!(", contract {c}")).unwrap_or_default();
    s.push_str(&format!(
        "{}: {} ({}{contract}, sha256 {}): {} passed, {} failed, {} skipped\n",
        if report.passed() { "PASSED" } else { "FAILED" },
        file.display(),
        report.label(),
        report.sha256,
        report.count(CaseOutcome::Pass),
        report.count(CaseOutcome::Fail),
        report.count(CaseOutcome::Skip),
    ));
    s
}
