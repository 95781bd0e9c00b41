//! Directory pull sync through the CLI, as processes: `idplex sync run` killed mid-run
//! (SIGKILL) and run again loses no user and applies none twice; `sync status`, `sync log` and
//! `sync schedule` answer. The IdP is the local Google Directory API stand-in
//! (`idplex_tests::directory_apis`), reached through `--insecure-egress-redirect`.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use idplex_tests::TestEnv;
use idplex_tests::directory_apis::{Directory, GOOGLE_SYNC_SCOPES, GoogleApi, GoogleCreds};

const BIN: &str = env!("CARGO_BIN_EXE_idplex");

async fn google_connection(env: &TestEnv, api: &GoogleApi) -> String {
    let gw = idplex_bundled::FIRST_PARTY.iter().find(|b| b.crate_name == "google-workspace").expect("bundled");
    let installed = env.install("google-workspace.wasm", gw.component).await.ok_json();
    let version = installed["version"].as_str().unwrap().to_string();
    let key = format!("secret.service_account_key={}", api.key_file());
    let scopes = format!("credential.scopes={}", GOOGLE_SYNC_SCOPES.join(" "));
    let created = env
        .cli_json(&[
            "connection", "create", "workspace", "--connector", "google-workspace", "--version", &version,
            "--config", "credential.kind=google-service-account", "--config", &key,
            "--config", "credential.subject=admin@example.com", "--config", &scopes,
            "--allow-egress", "admin.googleapis.com",
        ])
        .await
        .ok_json();
    created["id"].as_str().expect("connection id").to_string()
}

fn redirect(api: &GoogleApi) -> String {
    format!("admin.googleapis.com={}", api.base_url.trim_start_matches("http://"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_mid_run_resumes_and_loses_or_duplicates_nobody() {
    let env = TestEnv::new(BIN).await;
    let creds = GoogleCreds::generate("sync@acme-idp.iam.gserviceaccount.com", "admin@example.com", &GOOGLE_SYNC_SCOPES);
    let api = GoogleApi::start(Directory::generate(4_000, 8, 30, 5), creds).await;
    let conn = google_connection(&env, &api).await;
    let redirect = redirect(&api);
    let run_args = ["sync", "run", conn.as_str(), "--insecure-egress-http-loopback", "--insecure-egress-redirect", redirect.as_str()];

    // Slow pages, so the run can be caught in the middle.
    api.faults().set_latency(Duration::from_millis(400));
    let mut child = env.command(&run_args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn sync run");
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(120), "the run never got two pages in");
        let status = env.cli_json(&["sync", "status", &conn]).await;
        if status.code == 0 {
            let pages = status.json()["state"]["pass"]["pages"].as_i64().unwrap_or(0);
            if pages >= 2 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().await.expect("SIGKILL the run");
    api.faults().set_latency(Duration::ZERO);

    // Run again until the dead run's lease expires, then to the end of the pass.
    let t1 = Instant::now();
    let summary = loop {
        let out = env.cli_json(&run_args).await;
        if out.code == 0 {
            break out.json();
        }
        assert!(out.stdout.contains("already running"), "{} {}", out.stdout, out.stderr);
        assert!(t1.elapsed() < Duration::from_secs(90), "the dead run's lease never expired");
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert_eq!(summary["outcome"], "ok", "{summary}");
    assert!(summary["pass_complete"].as_bool().unwrap());

    let store = idplex_store::Store::open(env.db_url()).await.unwrap();
    let mut ids = Vec::new();
    let mut offset = 0;
    loop {
        let (page, _) = store.list_users_including_deleted(&conn, offset, 1000).await.unwrap();
        if page.is_empty() {
            break;
        }
        offset += page.len() as u64;
        ids.extend(page.into_iter().map(|u| (u.external_id.unwrap(), u.version)));
    }
    assert_eq!(ids.len(), 4_000, "every user of the IdP, once");
    let unique: HashSet<&str> = ids.iter().map(|(x, _)| x.as_str()).collect();
    assert_eq!(unique.len(), 4_000, "none twice");
    assert!(ids.iter().all(|(_, v)| *v == 1), "no user written twice");

    // The killed run is marked as interrupted, the second one ok.
    let status = env.cli_json(&["sync", "status", &conn]).await.ok_json();
    let runs = status["recent_runs"].as_array().unwrap();
    assert_eq!(runs[0]["outcome"], "ok");
    assert!(runs.iter().any(|r| r["outcome"] == "error" && r["message"].as_str().unwrap_or_default().contains("interrupted")), "{status}");
    assert!(status["state"]["pass"].is_null(), "no pass in progress: {status}");

    // A schedule; and the text forms.
    let sched = env.cli_json(&["sync", "schedule", &conn, "--every", "30"]).await.ok_json();
    assert_eq!(sched["interval_secs"], 1800);
    assert_eq!(sched["enabled"], true);
    let text = env.cli(&["sync", "status", &conn]).await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stdout.contains("every 30 min"), "{}", text.stdout);
    let off = env.cli_json(&["sync", "schedule", &conn, "--off"]).await.ok_json();
    assert_eq!(off["enabled"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_exits_3_and_its_log_says_why() {
    let env = TestEnv::new(BIN).await;
    let creds = GoogleCreds::generate("sync@acme-idp.iam.gserviceaccount.com", "admin@example.com", &GOOGLE_SYNC_SCOPES);
    let api = GoogleApi::start(Directory::generate(50, 1, 5, 9), creds).await;
    let conn = google_connection(&env, &api).await;
    // Without the loopback switch, the token endpoint (plain http) is refused before anything
    // is sent.
    let out = env.cli(&["sync", "run", &conn]).await;
    assert_eq!(out.code, 3, "stdout: {}\nstderr: {}", out.stdout, out.stderr);
    assert!(out.stdout.contains("https"), "{}", out.stdout);
    assert_eq!(api.stats().tokens_issued, 0);
    let log = env.cli_json(&["sync", "log", &conn]).await.ok_json();
    assert!(log["log"].as_array().unwrap().iter().any(|l| l["level"] == "error"), "{log}");
}
