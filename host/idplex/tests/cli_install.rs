//! `idplex connector install|list|inspect` and `idplex events` against a real database, with
//! real components: what an admin sees when installing good and bad modules.

use idplex_tests::{TestEnv, fixtures};

const BIN: &str = env!("CARGO_BIN_EXE_idplex");

/// Exit code for refused input (documented in `idplex --help` / main.rs).
const EXIT_REFUSED: i32 = 3;

#[tokio::test(flavor = "multi_thread")]
async fn install_is_idempotent_and_listed_and_inspectable() {
    let env = TestEnv::new(BIN).await;

    let first = env
        .install("custom-saml.wasm", fixtures::custom_saml())
        .await
        .ok_json();
    assert_eq!(first["outcome"], "installed");
    assert_eq!(first["name"], "custom-saml");
    let version = first["version"].as_str().expect("version").to_string();
    assert!(!version.is_empty());
    let sha = first["sha256"].as_str().expect("sha256").to_string();
    assert_eq!(sha.len(), 64, "sha256 is 64 hex digits: {sha}");
    assert!(sha.chars().all(|c| c.is_ascii_hexdigit()));

    // Same file again: not an error, and it says so.
    let again = env
        .install("custom-saml-again.wasm", fixtures::custom_saml())
        .await
        .ok_json();
    assert_eq!(again["outcome"], "already_installed");
    assert_eq!(again["sha256"], sha.as_str());

    let list = env.cli_json(&["connector", "list"]).await.ok_json();
    let connectors = list["connectors"].as_array().expect("connectors array");
    let matching: Vec<_> = connectors
        .iter()
        .filter(|m| m["name"] == "custom-saml")
        .collect();
    assert_eq!(matching.len(), 1, "installed once, listed once: {list}");
    assert_eq!(matching[0]["version"], version.as_str());
    assert_eq!(matching[0]["sha256"], sha.as_str());

    let target = format!("custom-saml@{version}");
    let inspect = env
        .cli_json(&["connector", "inspect", &target])
        .await
        .ok_json();
    assert_eq!(inspect["name"], "custom-saml");
    assert_eq!(inspect["version"], version.as_str());
    assert_eq!(inspect["sha256"], sha.as_str());

    // By name: all versions.
    let by_name = env
        .cli_json(&["connector", "inspect", "custom-saml"])
        .await
        .ok_json();
    assert_eq!(
        by_name["versions"].as_array().map(Vec::len),
        Some(1),
        "{by_name}"
    );

    // Unknown: not found (4).
    env.cli_json(&["connector", "inspect", "custom-saml@9.9.9"])
        .await
        .expect_code(4);
}

/// Install `bytes` without `--json`; assert exit 3 and that stderr explains why.
async fn assert_refused(env: &TestEnv, file: &str, bytes: &[u8], expected_in_message: &[&str]) {
    let path = env.write_file(file, bytes);
    let out = env
        .cli(&["connector", "install", path.to_str().unwrap()])
        .await;
    out.expect_code(EXIT_REFUSED);
    let err_line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no `error:` line on stderr for {file}:\n{}", out.stderr));
    assert!(err_line.contains("connector refused"), "{file}: {err_line}");
    for needle in expected_in_message {
        assert!(
            err_line.contains(needle),
            "{file}: expected {needle:?} in {err_line:?}"
        );
    }

    // The same refusal with --json: machine-readable code on stdout, same exit code.
    let json = env
        .cli_json(&["connector", "install", path.to_str().unwrap()])
        .await;
    json.expect_code(EXIT_REFUSED);
    assert!(json.json()["error"].is_string(), "{}", json.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_modules_exit_3_with_a_reason_and_are_recorded() {
    let env = TestEnv::new(BIN).await;

    assert_refused(
        &env,
        "noise.wasm",
        &fixtures::random_bytes(4096),
        &["not a WebAssembly binary"],
    )
    .await;
    assert_refused(
        &env,
        "core.wasm",
        &fixtures::bare_core_module(),
        &["core WebAssembly module", "not a component"],
    )
    .await;
    assert_refused(
        &env,
        "foreign.wasm",
        &fixtures::foreign_world_component(),
        &["another world"],
    )
    .await;
    assert_refused(
        &env,
        "contract-v2.wasm",
        &fixtures::contract_v2_component(),
        &["idplex:connector@2.0.0", "1.x"],
    )
    .await;
    let big = fixtures::oversized_module(17);
    let size = big.len().to_string();
    assert_refused(
        &env,
        "big.wasm",
        &big,
        &[size.as_str(), &(16usize << 20).to_string(), "limit"],
    )
    .await;

    // The machine-readable codes.
    for (file, code) in [
        ("noise.wasm", "not_wasm"),
        ("core.wasm", "not_a_component"),
        ("foreign.wasm", "wrong_world"),
        ("contract-v2.wasm", "incompatible_contract"),
        ("big.wasm", "too_large"),
    ] {
        let path = env.data_dir().join(file);
        let out = env
            .cli_json(&["connector", "install", path.to_str().unwrap()])
            .await;
        assert_eq!(
            out.expect_code(EXIT_REFUSED).json()["error"],
            code,
            "{file}"
        );
    }

    // Nothing got installed.
    let list = env.cli_json(&["connector", "list"]).await.ok_json();
    assert_eq!(
        list["connectors"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );

    // Every refusal is in the event log, with its reason.
    let events = env.cli_json(&["events", "--limit", "100"]).await.ok_json();
    let refused: Vec<&str> = events["events"]
        .as_array()
        .expect("events array")
        .iter()
        .filter(|e| e["kind"] == "install_refused")
        .map(|e| e["message"].as_str().unwrap_or_default())
        .collect();
    // Five fixtures × three attempts each.
    assert_eq!(refused.len(), 15, "{events}");
    for needle in [
        "not a WebAssembly binary",
        "not a component",
        "another world",
        "idplex:connector@2.0.0",
        "limit",
    ] {
        assert!(
            refused.iter().any(|m| m.contains(needle)),
            "no install_refused event mentions {needle:?}: {refused:#?}"
        );
    }
}
