//! `idplex connector check FILE.wasm`: the conformance checks from the command line, with no
//! database anywhere (no `--db`, and the data directory is never created).

use std::path::Path;

use idplex_tests::{CLI_TIMEOUT, TestEnv, fixtures};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_idplex");

/// Exit code of a check with a failed case (refused input, in the binary's exit-code table).
const EXIT_FAILED: i32 = 3;

/// Runs `idplex ARGS` in `cwd` with no database configured: no `--db`, no `IDPLEX_DB`, and a
/// data directory that does not exist.
async fn idplex(cwd: &Path, data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.current_dir(cwd)
        .env_remove("IDPLEX_DB")
        .env("IDPLEX_DATA_DIR", data_dir)
        .env("IDPLEX_LOG", "warn")
        .args(args)
        .kill_on_drop(true);
    let out = tokio::time::timeout(CLI_TIMEOUT, cmd.output())
        .await
        .expect("idplex connector check finished in time")
        .expect("idplex runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn check_runs_without_a_database_and_reports_every_case() {
    let env = TestEnv::without_database(BIN).await;
    let data_dir = env.data_dir().join("no-such-data-dir");

    // A first-party connector passes: one line per case, a summary, exit 0.
    let good = env.write_file("custom-saml.wasm", fixtures::custom_saml());
    let (code, stdout, stderr) = idplex(env.data_dir(), &data_dir, &["connector", "check", good.to_str().unwrap()]).await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let (summary, cases) = lines.split_last().expect("output");
    assert!(cases.len() > 20, "one line per case:\n{stdout}");
    for line in cases {
        assert!(
            ["PASS ", "SKIP "].iter().any(|p| line.starts_with(p)) && line.contains(" — "),
            "`PASS|SKIP name — detail`: {line}"
        );
    }
    assert!(
        cases.iter().any(|l| l.starts_with("PASS provisioning: POST /Users (create) — ")),
        "the SCIM cases ran:\n{stdout}"
    );
    assert!(summary.starts_with("PASSED: ") && summary.contains("custom-saml@") && summary.contains(" 0 failed"), "{summary}");

    // The hostile fixture, trapping on every call but `describe`: exit 3, and `--json` prints
    // the report alone, each failed case saying why.
    let hostile = env.write_file("hostile.wasm", idplex_bundled::testing::HOSTILE);
    let (code, stdout, stderr) = idplex(
        env.data_dir(),
        &data_dir,
        &["--json", "connector", "check", hostile.to_str().unwrap(), "--config", "mode=trap"],
    )
    .await;
    assert_eq!(code, EXIT_FAILED, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("one JSON document ({e}):\n{stdout}"));
    assert_eq!(report["name"], "hostile");
    let cases = report["cases"].as_array().expect("cases");
    let case = |name: &str| cases.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("case {name}: {report}"));
    assert_eq!(case("metadata: name")["outcome"], "pass");
    assert_eq!(case("describe is deterministic")["outcome"], "pass", "describe ignores `mode`");
    let create = case("provisioning: POST /Users (create)");
    assert_eq!(create["outcome"], "fail");
    assert!(create["detail"].as_str().unwrap().contains("crashed (trap)"), "{create}");

    // Nothing was created: no data directory, no database.
    assert!(!data_dir.exists(), "check must not create {}", data_dir.display());
    assert!(!env.data_dir().join("idplex-data").exists());
    assert!(!env.data_dir().join("idplex.db").exists());
}
