//! The in-process environment of the server's integration tests: a hub on a real SQLite file
//! in a temporary directory, the axum router over it, and helpers to make connections and send
//! requests through the router (tower `oneshot`).
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use idplex_hub::runtime::RuntimeConfig;
use idplex_hub::store::NewConnection;
use idplex_hub::{Hub, HubOptions, SecretKey};
use serde_json::{Value, json};
use tower::ServiceExt;

pub struct Env {
    pub hub: Arc<Hub>,
    pub app: axum::Router,
    _dir: tempfile::TempDir,
}

pub async fn env() -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("idplex.db").display());
    let mut runtime = RuntimeConfig::new(dir.path().join("cache"));
    runtime.max_concurrent_instances = 16;
    let hub = Hub::connect(&url, &Default::default(), runtime, HubOptions::default(), SecretKey::ephemeral()).await.expect("hub");
    // The test fixtures are unsigned: let them in (a new deployment refuses unsigned modules).
    hub.set_trust_policy(Some(idplex_hub::store::TrustRule::Allow), None, "test").await.expect("trust policy");
    let app = idplex_server::router(hub.clone());
    Env { hub, app, _dir: dir }
}

impl Env {
    /// A connection of `connector` with `config`, active, and a SCIM token for it.
    pub async fn connection(&self, name: &str, connector: &[u8], config: Value) -> (String, String) {
        let report = self.hub.install(connector).await.expect("install");
        let conn = self
            .hub
            .create_connection(NewConnection {
                id: None,
                org_id: "default".into(),
                name: name.into(),
                connector_name: report.name.clone(),
                config,
                egress_allow: Vec::new(),
                limits: json!({}),
            })
            .await
            .expect("connection");
        self.hub.activate(&conn.id, &report.version, "test").await.expect("activate");
        let (_, secret) = self.hub.store().create_scim_token(&conn.id, None).await.expect("token");
        (conn.id, secret)
    }

    /// A SCIM request (`path` from the root, e.g. `/scim/v2/{connection}/Users`).
    pub async fn send(&self, token: &str, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        self.request(token, method, path, "application/scim+json", body).await
    }

    async fn request(&self, token: &str, method: Method, uri: &str, content_type: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let resp = self.app.clone().oneshot(request).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// An admin token's secret, made through the hub.
    pub async fn admin_token(&self) -> String {
        self.hub.create_admin_token("tests", Some(1)).await.expect("admin token").1
    }

    /// A request to the admin API (`/admin/v1` + `path`) with a JSON body.
    pub async fn admin(&self, token: &str, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        self.request(token, method, &format!("/admin/v1{path}"), "application/json", body).await
    }
}
