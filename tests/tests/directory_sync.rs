//! Directory pull sync end to end, in process: the real bundled google-workspace and entra-id
//! connectors (Wasm, sandboxed) pull from local stand-ins of the Google Admin SDK Directory API
//! and Microsoft Graph (`idplex_tests::directory_apis`) through the host's egress, which attaches
//! the credential the host obtained itself (a Google service-account JWT exchange; an OAuth
//! client credentials grant) and sends the connector's `https://admin.googleapis.com` /
//! `https://graph.microsoft.com` requests to the stand-in (`HubOptions::egress_redirects`).

use std::collections::HashSet;
use std::sync::Arc;

use idplex_hub::store::NewConnection;
use idplex_hub::{Hub, HubOptions, SecretKey, SyncTrigger};
use idplex_store::Store;
use idplex_tests::directory_apis::{
    Directory, FakeMember, GOOGLE_SYNC_SCOPES, GRAPH_DEFAULT_SCOPE, GoogleApi, GoogleCreds, GraphApi, GraphCreds,
};
use serde_json::json;

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    hub: Arc<Hub>,
}

/// A hub on a fresh SQLite file whose pulls to `host` go to `base_url` (`http://127.0.0.1:P`).
async fn world(host: &str, base_url: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("idplex.db").display());
    let store = Store::open(&url).await.unwrap();
    let runtime = idplex_runtime::Runtime::new(idplex_runtime::RuntimeConfig::new(dir.path().join("cache"))).unwrap();
    let target = base_url.trim_start_matches("http://").to_string();
    let options = HubOptions {
        egress_plain_http_loopback: true,
        egress_redirects: vec![(host.to_string(), target)],
        ..HubOptions::default()
    };
    let hub = Hub::open(store.clone(), runtime, options, SecretKey::ephemeral());
    hub.install_bundled().await.unwrap();
    World { _dir: dir, store, hub }
}

async fn connection(w: &World, connector: &str, config: serde_json::Value, egress: &str) -> String {
    let installed = w.store.list_versions(connector).await.unwrap();
    let version = installed.last().expect("bundled").version.clone();
    let conn = w
        .hub
        .create_connection(NewConnection {
            id: None,
            org_id: "acme".into(),
            name: format!("{connector} directory"),
            connector_name: connector.into(),
            config,
            egress_allow: vec![egress.into()],
            limits: json!({}),
        })
        .await
        .unwrap();
    w.hub.activate(&conn.id, &version, "test").await.unwrap();
    conn.id
}

async fn google_world(users: usize, groups: usize, per_group: usize) -> (World, GoogleApi, String) {
    let creds = GoogleCreds::generate("sync@acme-idp.iam.gserviceaccount.com", "admin@example.com", &GOOGLE_SYNC_SCOPES);
    let api = GoogleApi::start(Directory::generate(users, groups, per_group, 7), creds).await;
    let w = world("admin.googleapis.com", &api.base_url).await;
    let config = json!({
        "credential.kind": "google-service-account",
        "secret.service_account_key": api.key_file(),
        "credential.subject": "admin@example.com",
        "credential.scopes": GOOGLE_SYNC_SCOPES.join(" "),
    });
    let conn = connection(&w, "google-workspace", config, "admin.googleapis.com").await;
    (w, api, conn)
}

async fn graph_world(users: usize, groups: usize, per_group: usize) -> (World, GraphApi, String) {
    let creds = GraphCreds::generate(11);
    let api = GraphApi::start(Directory::generate(users, groups, per_group, 11), creds.clone()).await;
    let w = world("graph.microsoft.com", &api.base_url).await;
    let config = json!({
        "credential.kind": "oauth-client-credentials",
        "credential.token_url": format!("{}/{}/oauth2/v2.0/token", api.base_url, creds.tenant_id),
        "credential.client_id": creds.client_id,
        "secret.client_secret": creds.client_secret,
        "credential.scopes": GRAPH_DEFAULT_SCOPE,
    });
    let conn = connection(&w, "entra-id", config, "graph.microsoft.com").await;
    (w, api, conn)
}

/// Every user of the connection (soft-deleted ones included): (external id, active).
async fn users(w: &World, conn: &str) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let (page, _) = w.store.list_users_including_deleted(conn, offset, 1000).await.unwrap();
        if page.is_empty() {
            break;
        }
        offset += page.len() as u64;
        out.extend(page.into_iter().map(|u| (u.external_id.unwrap_or_default(), u.user_name, u.active && u.scim_deleted_at.is_none())));
    }
    out
}

fn assert_unique(users: &[(String, String, bool)]) {
    let ids: HashSet<&str> = users.iter().map(|u| u.0.as_str()).collect();
    assert_eq!(ids.len(), users.len(), "no external id twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_full_passes_create_then_remove_what_the_idp_no_longer_has() {
    let (w, api, conn) = google_world(1_200, 6, 40).await;
    let report = w.hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await.unwrap();
    assert_eq!(report.outcome, "ok", "{report:?}");
    assert!(report.pass_complete);
    assert_eq!(report.totals.pass_kind.as_deref(), Some("full"));
    assert!(report.totals.pages >= 3, "1,200 users take several pages: {report:?}");
    assert_eq!(report.totals.created, 1_206, "1,200 users and 6 groups");
    let all = users(&w, &conn).await;
    assert_eq!(all.len(), 1_200);
    assert_unique(&all);
    let fake = api.directory().users();
    let inactive = fake.iter().filter(|u| u.suspended || u.archived).count();
    assert_eq!(all.iter().filter(|u| !u.2).count(), inactive, "suspended and archived users are inactive");

    // Groups, memberships and nesting.
    let (groups, total) = w.store.list_groups(&conn, 0, 100, true).await.unwrap();
    assert_eq!(total, 6);
    let by_external = |id: &str| groups.iter().find(|g| g.external_id.as_deref() == Some(id)).unwrap();
    let fake_groups = api.directory().groups();
    let parent = fake_groups.iter().find(|g| g.members.iter().any(|m| matches!(m, FakeMember::Group(_)))).expect("a nested group");
    let child = parent.members.iter().find_map(|m| match m {
        FakeMember::Group(id) => Some(id.clone()),
        FakeMember::User(_) => None,
    });
    let user_members = parent.members.iter().filter(|m| matches!(m, FakeMember::User(_))).count();
    assert_eq!(by_external(&parent.id).members.len(), user_members, "every user member of {}", parent.name);
    let nested = w.store.group_subgroups(&conn, &by_external(&parent.id).id).await.unwrap();
    assert_eq!(nested, vec![by_external(&child.unwrap()).id.clone()], "{} has a nested group", parent.name);

    // The credential: one token, obtained by the host, presented on every data request.
    let stats = api.stats();
    assert_eq!(stats.tokens_issued, 1, "the token is cached for the whole pass");
    assert_eq!(stats.bearer_tokens_seen, stats.issued_tokens);

    // The IdP drops a user and a membership; the next full pass removes both, and only those.
    let gone = fake.iter().find(|u| !u.suspended && !u.archived).unwrap().clone();
    assert!(api.directory().purge_user(&gone.id));
    let report = w.hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await.unwrap();
    assert_eq!(report.outcome, "ok", "{report:?}");
    assert_eq!((report.totals.created, report.totals.removed), (0, 1), "{report:?}");
    let all = users(&w, &conn).await;
    assert_eq!(all.len(), 1_200, "deactivated (the default policy), not deleted");
    let row = all.iter().find(|u| u.0 == gone.id).unwrap();
    assert!(!row.2, "the user the IdP no longer has is deactivated");
    let status = w.hub.directory_sync_status(&conn, 5).await.unwrap();
    assert_eq!(status.recent_runs.len(), 2);
    assert!(status.recent_runs.iter().all(|r| r.outcome == "ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_outages_and_expired_tokens_are_ridden_out() {
    let (w, api, conn) = google_world(700, 2, 10).await;
    api.faults().throttle_next(2, 1);
    api.faults().unavailable_next(1, 1);
    api.faults().fail_next(1);
    let report = w.hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await.unwrap();
    assert_eq!(report.outcome, "ok", "{report:?}");
    assert_eq!(users(&w, &conn).await.len(), 700);
    let stats = api.stats();
    assert_eq!((stats.throttled, stats.unavailable, stats.failed), (2, 1, 1));
    let log = w.hub.directory_sync_log(&conn, 100).await.unwrap();
    assert!(log.iter().any(|l| l.message.contains("asking again")), "retries are in the sync log: {log:?}");

    // Every token the host holds stops working: it gets a new one and goes on.
    api.faults().expire_tokens();
    let report = w.hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await.unwrap();
    assert_eq!(report.outcome, "ok", "{report:?}");
    assert_eq!(api.stats().tokens_issued, 2, "one refresh after the 401");
    assert_eq!(users(&w, &conn).await.len(), 700, "nothing duplicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_removes_nobody_and_says_why() {
    let (w, api, conn) = google_world(600, 1, 5).await;
    assert_eq!(w.hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await.unwrap().outcome, "ok");
    let active_before = users(&w, &conn).await.iter().filter(|u| u.2).count();
    // The IdP lost half its users, and then fails for good part-way through the next pass.
    for u in api.directory().users().iter().take(300) {
        api.directory().purge_user(&u.id);
    }
    api.faults().fail_next(1_000);
    let report = w.hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await.unwrap();
    assert_eq!(report.outcome, "error");
    assert!(report.message.as_deref().unwrap_or_default().contains("500"), "{report:?}");
    assert_eq!(users(&w, &conn).await.iter().filter(|u| u.2).count(), active_before, "nobody removed");
    let log = w.hub.directory_sync_log(&conn, 100).await.unwrap();
    assert!(log.iter().any(|l| l.level == "error"), "the failure is in the log: {log:?}");
    // The IdP recovers: the pass goes on from where it stopped and completes.
    api.faults().clear();
    let report = w.hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await.unwrap();
    assert_eq!(report.outcome, "ok", "{report:?}");
    assert_eq!(report.totals.removed, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_the_connector_cannot_read_fails_the_run_and_applies_nothing_of_it() {
    let (w, api, conn) = google_world(1_200, 0, 0).await;
    // users.list answers 500 users a page: the first page is read, the second is garbage.
    api.faults().garble_after(1, 1);
    let report = w.hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await.unwrap();
    assert_eq!(report.outcome, "error", "{report:?}");
    let message = report.message.clone().unwrap_or_default();
    assert!(!message.is_empty(), "the run says why: {report:?}");
    assert_eq!((report.totals.pages, report.totals.created), (1, 500), "the first page only: {report:?}");
    assert_eq!(users(&w, &conn).await.len(), 500, "nothing of the unreadable page was applied");
    let log = w.hub.directory_sync_log(&conn, 100).await.unwrap();
    assert!(log.iter().any(|l| l.level == "error" && l.message.contains(&message)), "the failure is in the log: {log:?}");
    // The IdP answers properly again: the pass continues at the page that failed.
    let again = w.hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await.unwrap();
    assert_eq!(again.outcome, "ok", "{again:?}");
    assert_eq!(again.totals.created, 700, "{again:?}");
    assert_unique(&users(&w, &conn).await);
    assert_eq!(users(&w, &conn).await.len(), 1_200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_fail_the_run_with_the_token_endpoints_answer() {
    let creds = GraphCreds::generate(3);
    let api = GraphApi::start(Directory::generate(10, 1, 2, 3), creds.clone()).await;
    let w = world("graph.microsoft.com", &api.base_url).await;
    let config = json!({
        "credential.kind": "oauth-client-credentials",
        "credential.token_url": format!("{}/{}/oauth2/v2.0/token", api.base_url, creds.tenant_id),
        "credential.client_id": creds.client_id,
        "secret.client_secret": "not-the-secret",
        "credential.scopes": GRAPH_DEFAULT_SCOPE,
    });
    let conn = connection(&w, "entra-id", config, "graph.microsoft.com").await;
    let report = w.hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await.unwrap();
    assert_eq!(report.outcome, "error");
    let message = report.message.unwrap_or_default();
    assert!(message.contains("invalid_client"), "{message}");
    assert!(!message.contains("not-the-secret"), "never the secret: {message}");
    assert_eq!(api.stats().data_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_delta_passes_read_only_what_changed() {
    let (w, api, conn) = graph_world(2_000, 4, 30).await;
    let full = w.hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await.unwrap();
    assert_eq!(full.outcome, "ok", "{full:?}");
    assert_eq!(full.totals.pass_kind.as_deref(), Some("full"));
    assert_eq!(full.totals.created, 2_004, "2,000 users and 4 groups");
    let requests_full = api.stats().data_requests();

    // 1 % changes: 15 renamed, 5 deleted.
    let fake = api.directory().users();
    for u in fake.iter().take(15) {
        api.directory().update_user(&u.id, |u| u.department = Some("Changed".into()));
    }
    for u in fake.iter().skip(100).take(5) {
        api.directory().remove_user(&u.id);
    }
    let delta = w.hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await.unwrap();
    assert_eq!(delta.outcome, "ok", "{delta:?}");
    assert_eq!(delta.totals.pass_kind.as_deref(), Some("delta"));
    assert_eq!(delta.totals.users_seen, 15, "{delta:?}");
    assert_eq!((delta.totals.changed, delta.totals.removed, delta.totals.created), (15, 5, 0), "{delta:?}");
    let requests_delta = api.stats().data_requests() - requests_full;
    assert!(requests_delta * 5 < requests_full, "a delta pass reads only changes: {requests_delta} requests vs {requests_full}");
    let all = users(&w, &conn).await;
    assert_eq!(all.len(), 2_000);
    let expected: HashSet<&str> = fake
        .iter()
        .filter(|u| u.suspended)
        .chain(fake.iter().skip(100).take(5))
        .map(|u| u.id.as_str())
        .collect();
    let inactive: HashSet<&str> = all.iter().filter(|u| !u.2).map(|u| u.0.as_str()).collect();
    assert_eq!(inactive, expected, "the deleted and the disabled are inactive");

    // The delta token expires: the connector starts over, the host runs a full pass.
    api.faults().expire_delta_tokens();
    let again = w.hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await.unwrap();
    assert_eq!(again.outcome, "ok", "{again:?}");
    assert_eq!(again.totals.pass_kind.as_deref(), Some("full"));
    assert_eq!(again.totals.created, 0, "nothing duplicated");
    assert_unique(&users(&w, &conn).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_at_a_time_per_connection() {
    let (w, api, conn) = google_world(600, 1, 5).await;
    api.faults().set_latency(std::time::Duration::from_millis(300));
    let hub = w.hub.clone();
    let c = conn.clone();
    let first = tokio::spawn(async move { hub.run_directory_sync(&c, SyncTrigger::Manual, None).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let second = w.hub.run_directory_sync(&conn, SyncTrigger::Manual, None).await;
    let e = second.expect_err("a second run while one is going on is refused");
    assert_eq!(e.class(), idplex_hub::ErrorClass::Conflict, "{e}");
    assert!(e.to_string().contains("already running"), "{e}");
    assert_eq!(first.await.unwrap().unwrap().outcome, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_config_is_checked_naming_the_key() {
    let (w, _api, _conn) = google_world(1, 0, 0).await;
    let e = w
        .hub
        .create_connection(NewConnection {
            id: None,
            org_id: "acme".into(),
            name: "bad".into(),
            connector_name: "google-workspace".into(),
            config: json!({"credential.kind": "google-service-account", "secret.service_account_key": "{not json"}),
            egress_allow: vec![],
            limits: json!({}),
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("secret.service_account_key"), "{e}");
    assert!(!e.to_string().contains("{not json"), "the secret is not echoed: {e}");
}
