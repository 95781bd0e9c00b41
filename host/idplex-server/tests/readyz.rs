//! `/readyz` is unauthenticated: when the database is unreachable it says so, without the
//! database's own error text (which can name hosts, users and schemas).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use idplex_hub::runtime::RuntimeConfig;
use idplex_hub::{Hub, HubOptions, SecretKey};
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread")]
async fn readiness_failure_does_not_leak_database_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("idplex.db").display());
    let runtime = RuntimeConfig::new(dir.path().join("cache"));
    let hub = Hub::connect(&url, &Default::default(), runtime, HubOptions::default(), SecretKey::ephemeral()).await.expect("hub");
    let app = idplex_server::router(hub.clone());

    let ready = app.clone().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    hub.store().close().await;
    let resp = app.oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
    assert_eq!(&body[..], b"not ready: the database is unreachable");
}
