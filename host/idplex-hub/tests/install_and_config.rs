//! Hub-level install and connection checks: first-party names are reserved, refusals are
//! recorded as events (also when answered from the refusal cache), and a connection's config
//! must satisfy its connector's schema, without a secret ever appearing in the error.

use idplex_bundled::testing::{BAD_SCHEMA, IMPOSTOR};
use idplex_hub::{ErrorClass, Hub, HubError};
use idplex_runtime::{InstallError, Runtime, RuntimeConfig};
use idplex_store::{ConnectionUpdate, EventKind, NewConnection, Store};
use serde_json::json;

async fn hub() -> (std::sync::Arc<Hub>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RuntimeConfig::new(dir.path().join("cache"));
    cfg.max_concurrent_instances = 8;
    let runtime = Runtime::new(cfg).unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("idplex.db").display())).await.unwrap();
    (Hub::new(store, runtime), dir)
}

async fn refusals(hub: &Hub) -> Vec<String> {
    let events = hub.store().list_events(None, 100).await.unwrap();
    events.into_iter().filter(|e| e.kind == EventKind::InstallRefused).map(|e| e.message).collect()
}

fn connection(name: &str, config: serde_json::Value) -> NewConnection {
    NewConnection {
        id: None,
        org_id: "default".into(),
        name: name.into(),
        connector_name: "custom-saml".into(),
        config,
        egress_allow: Vec::new(),
        limits: json!({}),
    }
}

#[tokio::test]
async fn a_vendor_module_cannot_take_a_first_party_name() {
    let (hub, _dir) = hub().await;
    let err = hub.install(IMPOSTOR).await.expect_err("custom-saml@99.0.0 from a vendor");
    assert!(matches!(err, HubError::Refused(InstallError::ReservedName { .. })), "{err}");
    assert_eq!(err.code(), "reserved_name");
    assert_eq!(err.class(), ErrorClass::Invalid);
    assert!(err.to_string().contains("custom-saml"), "{err}");
    assert!(hub.store().list_versions("custom-saml").await.unwrap().is_empty(), "nothing stored");
    // Refused again from the refusal cache; both refusals are events.
    let again = hub.install(IMPOSTOR).await.expect_err("still refused");
    assert_eq!(again.code(), "reserved_name");
    assert_eq!(hub.runtime().cache_stats().refusals_cached, 1);
    let events = refusals(&hub).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|m| m.contains("reserved")), "{events:?}");

    // The bundled connector itself still installs, under its name, from the bundle or a file.
    let reports = hub.install_bundled().await.unwrap();
    assert!(reports.iter().any(|r| r.name == "custom-saml"));
    let saml = idplex_bundled::FIRST_PARTY.iter().find(|c| c.crate_name == "custom-saml").unwrap();
    assert_eq!(hub.install(saml.component).await.unwrap().outcome, "already_installed");
}

#[tokio::test]
async fn every_first_party_connector_describes_itself_under_its_reserved_name() {
    let (hub, _dir) = hub().await;
    for (bundled, report) in idplex_bundled::FIRST_PARTY.iter().zip(hub.install_bundled().await.unwrap()) {
        assert_eq!(bundled.crate_name, report.name, "the reserved name is the crate name");
    }
}

#[tokio::test]
async fn an_invalid_config_schema_refuses_the_install_with_an_event() {
    let (hub, _dir) = hub().await;
    let err = hub.install(BAD_SCHEMA).await.expect_err("remote $ref");
    assert_eq!(err.code(), "bad_metadata", "{err}");
    let events = refusals(&hub).await;
    assert_eq!(events.len(), 1);
    assert!(events[0].contains("config-schema"), "{events:?}");
}

#[tokio::test]
async fn connection_configs_must_satisfy_the_connector_schema() {
    let (hub, _dir) = hub().await;
    hub.install_bundled().await.unwrap();
    let secret = "Bearer s3cr3t-t0ken-value";

    // custom-saml: `user_name_source` is `name-id` or `attribute`, no other keys.
    let err = hub
        .create_connection(connection("okta", json!({"user_name_source": "shoe-size"})))
        .await
        .expect_err("enum violated");
    assert!(matches!(err, HubError::Config(_)), "{err}");
    assert_eq!((err.code(), err.class()), ("config_invalid", ErrorClass::Invalid));
    assert!(err.to_string().contains("user_name_source"), "{err}");

    let err = hub
        .create_connection(connection("okta", json!({"secret.authorization": secret})))
        .await
        .expect_err("custom-saml declares no secret");
    assert!(err.to_string().contains("secret.authorization"), "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "a secret value in an error: {err}");
    assert!(hub.store().list_connections().await.unwrap().is_empty(), "nothing created");

    // A valid config creates and activates.
    let conn = hub.create_connection(connection("okta", json!({"user_name_source": "attribute"}))).await.unwrap();
    hub.activate(&conn.id, "1.0.0", "test").await.unwrap();

    // Changing the config is checked against the active version; the old config stays.
    let err = hub
        .update_connection(&conn.id, ConnectionUpdate { config: Some(json!({"attribute.email": ""})), ..Default::default() })
        .await
        .expect_err("minLength 1");
    assert!(err.to_string().contains("attribute.email"), "{err}");
    let stored = hub.store().get_connection(&conn.id).await.unwrap();
    assert_eq!(stored.config, json!({"user_name_source": "attribute"}));
    let updated = hub
        .update_connection(&conn.id, ConnectionUpdate { config: Some(json!({"attribute.email": "mail"})), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(updated.config, json!({"attribute.email": "mail"}));
    assert!(hub.binding(&conn.id).is_ok());
}

/// The request that changed a connection binds the change, and the watcher that hears of it
/// (the store's row is the same) keeps that binding: its instances are not thrown away by a
/// second publication of the same change. Before, a watcher that read the row while the admin
/// API was still binding published it again just after, and the next request started afresh.
#[tokio::test]
async fn a_change_heard_by_the_watcher_after_its_request_bound_it_is_published_once() {
    let (hub, _dir) = hub().await;
    hub.install_bundled().await.unwrap();
    let conn = hub.create_connection(connection("once", json!({}))).await.unwrap();
    let conn = hub.activate(&conn.id, "1.0.0", "test").await.unwrap();
    let bound = hub.binding(&conn.id).unwrap();

    // The watcher, late: by the row, by the whole list, and with the row as the request read it.
    assert!(!hub.sync_connection(&conn.id).await.unwrap(), "nothing new to bind");
    assert_eq!(hub.sync_bindings().await.unwrap(), 0);
    assert!(!hub.bind(&conn).await.unwrap(), "the same row again");
    assert!(std::sync::Arc::ptr_eq(&bound, &hub.binding(&conn.id).unwrap()), "the request's binding stays");

    // A newer change is published, by whoever applies it first, and an older row never
    // replaces it.
    let newer = hub
        .update_connection(&conn.id, ConnectionUpdate { config: Some(json!({"attribute.email": "mail"})), ..Default::default() })
        .await
        .unwrap();
    assert!(newer.updated_at > conn.updated_at);
    let rebound = hub.binding(&conn.id).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&bound, &rebound), "the change is a new binding");
    assert_eq!(rebound.stamp, newer.updated_at);
    assert!(!hub.bind(&conn).await.unwrap(), "a stale row");
    assert!(std::sync::Arc::ptr_eq(&rebound, &hub.binding(&conn.id).unwrap()));
}

/// A SCIM request whose connector renders nothing (every first-party one: `render` answers
/// `unsupported`, "served unchanged") holds a sandbox instance only for its `normalize`: the
/// instance is back with the binding while the request still works on the store, so under
/// load a few warm instances serve every request instead of one per request in flight. The
/// request keeps its binding pinned all the same.
#[tokio::test]
async fn a_request_that_renders_nothing_holds_its_instance_only_for_normalize() {
    use idplex_hub::runtime::{ResourceKind, ScimRequest};
    let (hub, _dir) = hub().await;
    hub.install_bundled().await.unwrap();
    let conn = hub.create_connection(connection("quick", json!({}))).await.unwrap();
    let conn = hub.activate(&conn.id, "1.0.0", "test").await.unwrap();
    // A DELETE goes through `normalize` (a GET would not: custom-saml takes reads as sent).
    let get = || ScimRequest {
        method: "DELETE".into(),
        resource: ResourceKind::User,
        id: Some("u1".into()),
        query: Vec::new(),
        body: None,
    };
    let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1", "userName": "a@example.com"});

    // First request: the binding does not know yet that nothing is rendered, so the instance
    // stays with the request until its end; its renders teach the binding.
    let mut first = hub.provisioning(&conn.id).unwrap();
    first.normalize(get()).await.unwrap();
    assert!(!first.renders_nothing());
    let binding = hub.binding(&conn.id).unwrap();
    assert_eq!(binding.idle.len(), 0, "the first request holds its instance");
    for kind in [ResourceKind::User, ResourceKind::Group] {
        assert_eq!(first.render(kind, user.to_string()).await.unwrap(), user.to_string());
    }
    assert!(first.renders_nothing());
    drop(first);
    assert_eq!(binding.idle.len(), 1, "back with the binding at the request's end");

    // Now a request gives its instance back as soon as `normalize` answered, keeps its binding
    // for the rest, and renders without one.
    let mut second = hub.provisioning(&conn.id).unwrap();
    assert_eq!(binding.idle.len(), 1, "not taken before the request's first call");
    second.normalize(get()).await.unwrap();
    assert_eq!(binding.idle.len(), 0, "taken for the call");
    assert!(second.renders_nothing());
    second.release_instance();
    assert_eq!(binding.idle.len(), 1, "back while the request goes on");
    let newer = hub
        .update_connection(&conn.id, ConnectionUpdate { config: Some(json!({"attribute.email": "mail"})), ..Default::default() })
        .await
        .unwrap();
    assert!(newer.updated_at > conn.updated_at, "a swap meanwhile");
    assert_eq!(second.connector_label(), binding.connector.label());
    assert_eq!(second.render(ResourceKind::User, user.to_string()).await.unwrap(), user.to_string());
    // A later call of the same request takes an instance of its own (pinned) binding again.
    second.normalize(get()).await.unwrap();
    assert_eq!(binding.idle.len(), 0);
    drop(second);
    assert_eq!(binding.idle.len(), 1);
    assert_eq!(hub.binding(&conn.id).unwrap().idle.len(), 0, "the new binding starts with none");
    // A read the connector takes as sent (contract 1.3) is decoded by the host: no instance.
    let binding = hub.binding(&conn.id).unwrap();
    let mut write = hub.provisioning(&conn.id).unwrap();
    write.normalize(get()).await.unwrap();
    drop(write);
    assert_eq!(binding.idle.len(), 1, "an instance waits with the binding");
    let mut read = hub.provisioning(&conn.id).unwrap();
    let read_request = ScimRequest { method: "GET".into(), ..get() };
    assert!(read.reads_as_sent(&read_request));
    let ops = read.normalize(read_request).await.unwrap();
    assert!(matches!(&ops[..], [idplex_hub::runtime::Operation::Get(id)] if id == "u1"), "{ops:?}");
    assert!(!read.reads_as_sent(&ScimRequest { resource: ResourceKind::Group, ..get() }), "a DELETE is never a read");
    assert_eq!(binding.idle.len(), 1, "the read took no instance");
    drop(read);
    assert_eq!(binding.idle.len(), 1);
}
