//! Section 9: directory pull sync. The bundled google-workspace connector pulls a generated
//! directory from the local Google Directory API stand-in into a SQLite file (through the
//! sandbox, the egress policy and the host's service-account token), and the entra-id connector
//! runs a full pass and then a delta pass with 1 % of users changed against the Graph stand-in.
//! Baseline in the same run: the store applying the same users without connector or HTTP
//! (pre-converted pages), which is what the sync engine adds on top of.

use std::time::Instant;

use anyhow::{Context, Result};
use idplex_hub::store::NewConnection;
use idplex_hub::{Hub, HubOptions, SecretKey, SyncTrigger};
use idplex_runtime::RuntimeConfig;
use idplex_tests::directory_apis::{
    Directory, GOOGLE_SYNC_SCOPES, GRAPH_DEFAULT_SCOPE, GoogleApi, GoogleCreds, GraphApi, GraphCreds,
};
use serde_json::json;

use crate::Report;

/// Peak resident set of this process so far, in MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn hub_for(dir: &std::path::Path, host: &str, base_url: &str) -> Result<std::sync::Arc<Hub>> {
    let url = format!("sqlite://{}", dir.join("idplex.db").display());
    let options = HubOptions {
        egress_plain_http_loopback: true,
        egress_redirects: vec![(host.to_string(), base_url.trim_start_matches("http://").to_string())],
        ..HubOptions::default()
    };
    let hub = Hub::connect(&url, &Default::default(), RuntimeConfig::new(dir.join("cache")), options, SecretKey::ephemeral()).await?;
    hub.install_bundled().await?;
    Ok(hub)
}

async fn connection(hub: &Hub, connector: &str, config: serde_json::Value, egress: &str) -> Result<String> {
    let version = hub.install_bundled().await?.into_iter().find(|r| r.name == connector).context("bundled")?.version;
    let conn = hub
        .create_connection(NewConnection {
            id: None,
            org_id: "bench".into(),
            name: connector.into(),
            connector_name: connector.into(),
            config,
            egress_allow: vec![egress.into()],
            limits: json!({}),
        })
        .await?;
    hub.activate(&conn.id, &version, "bench").await?;
    Ok(conn.id)
}

pub async fn run(r: &mut Report, users: usize) -> Result<()> {
    // Google: a full pass of `users` users into an empty directory.
    let creds = GoogleCreds::generate("bench@acme.iam.gserviceaccount.com", "admin@example.com", &GOOGLE_SYNC_SCOPES);
    let api = GoogleApi::start(Directory::generate(users, 20, 100, 1), creds).await;
    let dir = tempfile::tempdir()?;
    let hub = hub_for(dir.path(), "admin.googleapis.com", &api.base_url).await?;
    let config = json!({
        "credential.kind": "google-service-account",
        "secret.service_account_key": api.key_file(),
        "credential.subject": "admin@example.com",
        "credential.scopes": GOOGLE_SYNC_SCOPES.join(" "),
    });
    let conn = connection(&hub, "google-workspace", config, "admin.googleapis.com").await?;
    let rss_before = peak_rss_mib();
    let t = Instant::now();
    let report = hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await?;
    let took = t.elapsed();
    anyhow::ensure!(report.outcome == "ok", "google pull failed: {:?}", report.message);
    let per_s = report.totals.users_seen as f64 / took.as_secs_f64();
    r.rows.push(format!(
        "{:<52} {} users, {} pages in {:.2} s: {:>9.0} users/s (peak RSS {:.0} MiB, {:.0} MiB before)",
        "google-workspace full pass (SQLite, FULL sync)", report.totals.users_seen, report.totals.pages, took.as_secs_f64(), per_s, peak_rss_mib(), rss_before
    ));
    r.json.insert("pull_google_users_per_s".into(), json!(crate::round(per_s, 0)));
    r.json.insert("pull_peak_rss_mib".into(), json!(crate::round(peak_rss_mib(), 1)));
    // The same pass again: nothing changed, every user compared.
    let t = Instant::now();
    let again = hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await?;
    let took2 = t.elapsed();
    r.rows.push(format!(
        "{:<52} {} users in {:.2} s: {:>9.0} users/s ({} changed)",
        "google-workspace full pass again, nothing changed", again.totals.users_seen, took2.as_secs_f64(),
        again.totals.users_seen as f64 / took2.as_secs_f64(), again.totals.changed
    ));
    drop(hub);
    drop(api);

    // Entra: a full pass, then a delta pass after 1 % of users changed.
    let creds = GraphCreds::generate(2);
    let api = GraphApi::start(Directory::generate(users, 20, 100, 2), creds.clone()).await;
    let dir = tempfile::tempdir()?;
    let hub = hub_for(dir.path(), "graph.microsoft.com", &api.base_url).await?;
    let config = json!({
        "credential.kind": "oauth-client-credentials",
        "credential.token_url": format!("{}/{}/oauth2/v2.0/token", api.base_url, creds.tenant_id),
        "credential.client_id": creds.client_id,
        "secret.client_secret": creds.client_secret,
        "credential.scopes": GRAPH_DEFAULT_SCOPE,
    });
    let conn = connection(&hub, "entra-id", config, "graph.microsoft.com").await?;
    let t = Instant::now();
    let full = hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await?;
    let full_took = t.elapsed();
    anyhow::ensure!(full.outcome == "ok", "entra full pass failed: {:?}", full.message);
    for u in api.directory().users().iter().step_by(100) {
        api.directory().update_user(&u.id, |u| u.department = Some("Moved".into()));
    }
    let t = Instant::now();
    let delta = hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await?;
    let delta_took = t.elapsed();
    anyhow::ensure!(delta.outcome == "ok", "entra delta pass failed: {:?}", delta.message);
    let ratio = full_took.as_secs_f64() / delta_took.as_secs_f64();
    r.rows.push(format!(
        "{:<52} {} users, {} pages in {:.2} s: {:>9.0} users/s",
        "entra-id full pass (Graph delta round 1)", full.totals.users_seen, full.totals.pages, full_took.as_secs_f64(),
        full.totals.users_seen as f64 / full_took.as_secs_f64()
    ));
    r.rows.push(format!(
        "{:<52} {} users changed, {} pages in {:.3} s: {:.1}x faster than the full pass",
        "entra-id delta pass, 1 % of users changed", delta.totals.changed, delta.totals.pages, delta_took.as_secs_f64(), ratio
    ));
    r.json.insert("pull_entra_full_s".into(), json!(crate::round(full_took.as_secs_f64(), 3)));
    r.json.insert("pull_entra_delta_s".into(), json!(crate::round(delta_took.as_secs_f64(), 3)));
    r.json.insert("pull_entra_full_over_delta".into(), json!(crate::round(ratio, 1)));
    Ok(())
}
