//! `idplex connection create` + `connector activate|rollback`: version swaps from the CLI, and
//! the exit codes scripts rely on; `idplex connection test`.

use idplex_bundled::testing::{ECHO_V1, ECHO_V2, HOSTILE};
use idplex_tests::TestEnv;

const BIN: &str = env!("CARGO_BIN_EXE_idplex");

const EXIT_NOT_FOUND: i32 = 4;
const EXIT_CONFLICT: i32 = 5;
const EXIT_REFUSED: i32 = 3;

#[tokio::test(flavor = "multi_thread")]
async fn connection_test_shows_the_checks_and_exits_3_when_one_fails() {
    let env = TestEnv::new(BIN).await;
    env.install("hostile.wasm", HOSTILE).await.ok_json();
    let conn = env
        .cli_json(&["connection", "create", "probe", "--connector", "hostile", "--version", "1.0.0", "--config", "mode=ok"])
        .await
        .ok_json();
    let id = conn["id"].as_str().expect("connection id").to_string();

    let report = env.cli_json(&["connection", "test", &id]).await.ok_json();
    assert_eq!((report["available"].as_bool(), report["ok"].as_bool()), (Some(true), Some(true)), "{report}");
    assert_eq!(report["checks"][0]["name"], "config", "{report}");

    env.cli_json(&["connection", "update", &id, "--config", "mode=ok", "--config", "check=fail"]).await.ok_json();
    let failed = env.cli(&["connection", "test", &id]).await;
    assert_eq!(failed.code, EXIT_REFUSED, "{} {}", failed.stdout, failed.stderr);
    assert!(failed.stdout.contains("FAIL") && failed.stdout.contains("hostile: asked to fail"), "{}", failed.stdout);
    assert!(failed.stderr.contains("1 of 1 check(s) failed"), "{}", failed.stderr);

    let missing = env.cli_json(&["connection", "test", "no-such-connection"]).await;
    assert_eq!(missing.code, EXIT_NOT_FOUND, "{}", missing.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn activate_rollback_and_rollback_again() {
    let env = TestEnv::new(BIN).await;
    if env.is_postgres() {
        assert!(
            env.db_url().contains("search_path%3Dt_"),
            "each test gets its own schema: {}",
            env.db_url()
        );
    }
    assert_eq!(
        env.install("echo-v1.wasm", ECHO_V1).await.ok_json()["version"],
        "1.0.0"
    );
    assert_eq!(
        env.install("echo-v2.wasm", ECHO_V2).await.ok_json()["version"],
        "2.0.0"
    );

    let conn = env
        .cli_json(&[
            "connection",
            "create",
            "demo",
            "--connector",
            "echo",
            "--version",
            "1.0.0",
        ])
        .await
        .ok_json();
    let id = conn["id"].as_str().expect("connection id").to_string();
    assert_eq!(conn["active_version"], "1.0.0");

    // An admin changes the connection's limits and egress from the CLI; nothing else moves.
    let c = env
        .cli_json(&["connection", "update", &id, "--limits", r#"{"deadline_ms":750}"#, "--allow-egress", "idp.example.com"])
        .await
        .ok_json();
    assert_eq!(c["limits"]["deadline_ms"], 750);
    assert_eq!(c["egress_allow"], serde_json::json!(["idp.example.com"]));
    assert_eq!(c["active_version"], "1.0.0");
    let c = env.cli_json(&["connection", "update", &id, "--no-egress"]).await.ok_json();
    assert_eq!(c["egress_allow"], serde_json::json!([]));
    assert_eq!(c["limits"]["deadline_ms"], 750, "limits kept");
    let nothing = env.cli_json(&["connection", "update", &id]).await;
    assert_ne!(nothing.code, 0, "an update with nothing to change is refused");
    assert!(nothing.stderr.contains("nothing to change") || nothing.stdout.contains("nothing to change"), "{}", nothing.stderr);

    let c = env
        .cli_json(&["connector", "activate", "--connection", &id, "2.0.0"])
        .await
        .ok_json();
    assert_eq!(c["active_version"], "2.0.0");
    assert_eq!(c["previous_version"], "1.0.0");

    let c = env
        .cli_json(&["connector", "rollback", "--connection", &id])
        .await
        .ok_json();
    assert_eq!(
        c["active_version"], "1.0.0",
        "rollback returns to the previous version"
    );
    assert!(c["previous_version"].is_null(), "nothing below 1.0.0: {c}");

    // The history is a stack: a second rollback has nowhere to go (it does not swap back).
    let again = env.cli(&["connector", "rollback", "--connection", &id]).await;
    again.expect_code(EXIT_CONFLICT);
    assert!(again.stderr.contains("no previous version"), "{}", again.stderr);

    // Forward again, then back again.
    let c = env.cli_json(&["connector", "activate", "--connection", &id, "2.0.0"]).await.ok_json();
    assert_eq!((c["active_version"].as_str(), c["previous_version"].as_str()), (Some("2.0.0"), Some("1.0.0")));
    let c = env.cli_json(&["connector", "rollback", "--connection", &id]).await.ok_json();
    assert_eq!(c["active_version"], "1.0.0");

    // `NAME@VERSION` works too.
    let c = env
        .cli_json(&["connector", "activate", "--connection", &id, "echo@1.0.0"])
        .await
        .ok_json();
    assert_eq!(c["active_version"], "1.0.0");

    // What `connection list` shows agrees.
    let list = env.cli_json(&["connection", "list"]).await.ok_json();
    let listed = list["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .cloned();
    assert_eq!(
        listed.expect("connection listed")["active_version"],
        "1.0.0"
    );
    // The database really is the one chosen: no SQLite file appears when running on PostgreSQL.
    assert_eq!(
        env.data_dir().join("idplex.db").exists(),
        !env.is_postgres()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn activate_unknown_version_is_not_found_and_rollback_without_history_is_a_conflict() {
    let env = TestEnv::new(BIN).await;
    env.install("echo-v1.wasm", ECHO_V1).await.expect_code(0);
    let id = env
        .cli_json(&[
            "connection",
            "create",
            "fresh",
            "--connector",
            "echo",
            "--version",
            "1.0.0",
        ])
        .await
        .ok_json()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let out = env
        .cli(&["connector", "activate", "--connection", &id, "3.0.0"])
        .await;
    out.expect_code(EXIT_NOT_FOUND);
    assert!(
        out.stderr.contains("3.0.0"),
        "the message names the missing version: {}",
        out.stderr
    );
    // Still bound to what it was.
    let list = env.cli_json(&["connection", "list"]).await.ok_json();
    assert_eq!(list["connections"][0]["active_version"], "1.0.0");

    // Only ever bound once: nothing to roll back to.
    let out = env
        .cli(&["connector", "rollback", "--connection", &id])
        .await;
    out.expect_code(EXIT_CONFLICT);
    assert!(out.stderr.contains("no previous version"), "{}", out.stderr);

    // Unknown connection: not found.
    env.cli(&[
        "connector",
        "rollback",
        "--connection",
        "no-such-connection",
    ])
    .await
    .expect_code(EXIT_NOT_FOUND);
}
