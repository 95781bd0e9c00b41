//! The admin CLI never guesses a database: run where there is none, it names what it looked
//! for and how to point it elsewhere, and creates nothing; `init` and `serve` create one.

use std::process::Stdio;

use idplex_tests::TestEnv;

const BIN: &str = env!("CARGO_BIN_EXE_idplex");

/// Exit code for "not found" (main.rs).
const EXIT_NOT_FOUND: i32 = 4;

#[tokio::test(flavor = "multi_thread")]
async fn admin_commands_refuse_a_missing_database_and_create_nothing() {
    let env = TestEnv::without_database(BIN).await;
    for args in [
        &["connection", "list"][..],
        &["connector", "list"],
        &["token", "create", "ops"],
        &["events"],
    ] {
        let out = env.cli(args).await;
        assert_eq!(out.code, EXIT_NOT_FOUND, "`idplex {}`: {out:?}", args.join(" "));
        assert!(out.stderr.contains("no idplex database at"), "{}", out.stderr);
        assert!(out.stderr.contains("never creates a database"), "{}", out.stderr);
        assert!(out.stderr.contains("--db") && out.stderr.contains("--data-dir"), "{}", out.stderr);
        assert!(out.stderr.contains("idplex init"), "{}", out.stderr);
        assert!(out.stdout.is_empty(), "nothing reported as done: {}", out.stdout);
    }
    if !env.is_postgres() {
        let db = env.data_dir().join("idplex.db");
        assert!(
            env.cli(&["connection", "list"]).await.stderr.contains(&db.display().to_string()),
            "the path it looked at is named"
        );
        assert!(!db.exists(), "no database file was created");
    }
    assert!(!env.data_dir().join("secret.key").exists(), "no secret key was made");

    // `init` creates it (idempotently); then the same commands work.
    let first = env.cli_json(&["init"]).await.ok_json();
    assert!(first["database"].as_str().is_some_and(|d| !d.contains("***") || env.is_postgres()));
    env.cli(&["init"]).await.expect_code(0);
    assert!(env.data_dir().join("secret.key").exists());
    let list = env.cli_json(&["connection", "list"]).await.ok_json();
    assert!(list["connections"].as_array().is_some_and(|c| c.is_empty()), "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_from_the_wrong_directory_it_says_where_it_looked() {
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let out = tokio::process::Command::new(BIN)
        .args(["connection", "list"])
        .current_dir(elsewhere.path())
        .env_remove("IDPLEX_DB")
        .env_remove("IDPLEX_DATA_DIR")
        .env_remove("IDPLEX_SECRET_KEY_FILE")
        .env("IDPLEX_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run idplex");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_NOT_FOUND), "{stderr}");
    let expected = elsewhere.path().canonicalize().unwrap().join("idplex-data").join("idplex.db");
    assert!(
        stderr.contains(&expected.display().to_string()) || stderr.contains(&elsewhere.path().join("idplex-data/idplex.db").display().to_string()),
        "names the file it looked for ({}): {stderr}",
        expected.display()
    );
    assert!(stderr.contains("no --db was given"), "{stderr}");
    assert!(!elsewhere.path().join("idplex-data").exists(), "no data directory was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_without_its_secret_key_is_named_as_such() {
    let env = TestEnv::new(BIN).await;
    std::fs::remove_file(env.data_dir().join("secret.key")).expect("remove key");
    let out = env.cli(&["connection", "list"]).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("the database exists but not its secret key"), "{}", out.stderr);
    assert!(out.stderr.contains("secret.key"), "{}", out.stderr);
    assert!(!env.data_dir().join("secret.key").exists(), "no new key was made behind the admin's back");
}
