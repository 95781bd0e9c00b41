//! Behaviour of the store, each test run on SQLite (temp file) and PostgreSQL (fresh schema).

#[macro_use]
mod common;

use std::collections::HashSet;

use common::TestDb;
use idplex_store::{
    Backend, BindingAction, ConnectionUpdate, EventKind, InsertOutcome, NewConnection, NewEvent,
    NewModule, Store, StoreError, sha256_hex,
};
use serde_json::json;

on_both_backends!(
    migrations_are_idempotent_on_reopen,
    data_survives_reopen,
    module_insert_is_idempotent_and_conflicts_are_explained,
    connections_create_get_list_update,
    activate_and_rollback_keep_books,
    concurrent_activations_lose_no_update,
    admin_tokens,
    events_newest_first,
);

fn module(name: &str, version: &str, bytes: &[u8]) -> NewModule {
    NewModule {
        name: name.into(),
        version: version.into(),
        contract_version: "0.1.0".into(),
        info: json!({ "name": name, "version": version, "display_name": "Test IdP" }),
        component: bytes.to_vec(),
    }
}

fn connection(org: &str, name: &str, connector: &str) -> NewConnection {
    NewConnection {
        id: None,
        org_id: org.into(),
        name: name.into(),
        connector_name: connector.into(),
        config: json!({ "tenant": "acme" }),
        egress_allow: vec!["acme.okta.com".into()],
        limits: json!({ "timeout_ms": 2000 }),
    }
}

fn expected_backend(db: &TestDb) -> Backend {
    if db.is_postgres() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

async fn migrations_are_idempotent_on_reopen(db: TestDb) {
    let store = db.open().await;
    assert_eq!(store.backend(), expected_backend(&db));
    store.close().await;
    for _ in 0..2 {
        let store = db.open().await;
        assert_eq!(store.backend(), expected_backend(&db));
        assert!(store.list_modules().await.unwrap().is_empty());
        store.close().await;
    }
}

async fn data_survives_reopen(db: TestDb) {
    let store = db.open().await;
    let sha = store
        .insert_module(&module("okta", "1.0.0", b"component v1"))
        .await
        .unwrap();
    let conn = store
        .create_connection(&connection("org1", "main", "okta"))
        .await
        .unwrap();
    store.activate(&conn.id, "1.0.0", "alice").await.unwrap();
    let (token, secret) = store.create_admin_token("ops", None).await.unwrap();
    store
        .record_event(&NewEvent {
            at: None,
            connection_id: Some(conn.id.clone()),
            connector: "okta@1.0.0".into(),
            kind: EventKind::Trap,
            message: "unreachable executed".into(),
        })
        .await
        .unwrap();
    store.close().await;
    drop(store);

    let store = db.open().await;
    assert_eq!(
        store.module_bytes(sha.sha256()).await.unwrap(),
        b"component v1"
    );
    let reread = store.get_connection(&conn.id).await.unwrap();
    assert_eq!(reread.active_version.as_deref(), Some("1.0.0"));
    assert_eq!(reread.generation, 1);
    assert_eq!(store.binding_history(&conn.id).await.unwrap().len(), 1);
    assert_eq!(
        store
            .verify_admin_token(&secret)
            .await
            .unwrap()
            .map(|t| t.id),
        Some(token.id)
    );
    let events = store.list_events(None, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Trap);
    store.close().await;
}

async fn module_insert_is_idempotent_and_conflicts_are_explained(db: TestDb) {
    let store = db.open().await;
    let bytes = b"\0asm fake component okta 1.0.0".to_vec();
    let first = store
        .insert_module(&module("okta", "1.0.0", &bytes))
        .await
        .unwrap();
    assert_eq!(
        first,
        InsertOutcome::Inserted {
            sha256: sha256_hex(&bytes)
        }
    );
    let again = store
        .insert_module(&module("okta", "1.0.0", &bytes))
        .await
        .unwrap();
    assert_eq!(
        again,
        InsertOutcome::AlreadyPresent {
            sha256: sha256_hex(&bytes)
        }
    );

    let err = store
        .insert_module(&module("okta", "1.0.0", b"other bytes"))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("connector okta@1.0.0 is already installed with a different sha256"),
        "{msg}"
    );
    assert!(
        msg.contains(&sha256_hex(&bytes)) && msg.contains(&sha256_hex(b"other bytes")),
        "{msg}"
    );

    let err = store
        .insert_module(&module("azure", "9.9.9", &bytes))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert!(
        err.to_string()
            .contains("already installed as connector okta@1.0.0"),
        "{err}"
    );

    store
        .insert_module(&module("okta", "1.1.0", b"okta 1.1.0"))
        .await
        .unwrap();
    store
        .insert_module(&module("azure", "1.0.0", b"azure 1.0.0"))
        .await
        .unwrap();

    let m = store.get_module("okta", "1.0.0").await.unwrap();
    assert_eq!(m.sha256, sha256_hex(&bytes));
    assert_eq!(m.size_bytes, bytes.len() as i64);
    assert_eq!(m.contract_version, "0.1.0");
    assert_eq!(m.info["display_name"], "Test IdP");
    assert_eq!(store.get_module_by_hash(&m.sha256).await.unwrap(), m);
    assert_eq!(store.module_bytes(&m.sha256).await.unwrap(), bytes);

    let all = store.list_modules().await.unwrap();
    let names: Vec<_> = all
        .iter()
        .map(|m| format!("{}@{}", m.name, m.version))
        .collect();
    assert_eq!(names, ["azure@1.0.0", "okta@1.0.0", "okta@1.1.0"]);
    let versions: Vec<_> = store
        .list_versions("okta")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"]);
    assert!(store.list_versions("nope").await.unwrap().is_empty());

    let err = store.get_module("okta", "7.0.0").await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), "connector okta@7.0.0 not found");
    assert!(
        store
            .get_module_by_hash(&"0".repeat(64))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        store
            .module_bytes(&"0".repeat(64))
            .await
            .unwrap_err()
            .is_not_found()
    );
    store.close().await;
}

async fn connections_create_get_list_update(db: TestDb) {
    let store = db.open().await;
    let a = store
        .create_connection(&connection("org1", "main", "okta"))
        .await
        .unwrap();
    assert!(a.id.starts_with("conn_"));
    assert_eq!(a.generation, 0);
    assert_eq!(a.active_version, None);
    assert_eq!(a.egress_allow, ["acme.okta.com"]);
    assert_eq!(store.get_connection(&a.id).await.unwrap(), a);

    let mut explicit = connection("org2", "main", "azure");
    explicit.id = Some("conn-fixed".into());
    let b = store.create_connection(&explicit).await.unwrap();
    assert_eq!(b.id, "conn-fixed");

    let err = store
        .create_connection(&connection("org1", "main", "okta"))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert!(
        err.to_string()
            .contains("already exists in organization org1"),
        "{err}"
    );
    let err = store.create_connection(&explicit).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");

    let ids: Vec<_> = store
        .list_connections()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, [a.id.clone(), b.id.clone()]);

    let updated = store
        .update_connection_config(
            &a.id,
            &ConnectionUpdate {
                config: Some(json!({ "tenant": "globex" })),
                egress_allow: Some(vec!["globex.okta.com".into(), "login.globex.com".into()]),
                limits: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.config, json!({ "tenant": "globex" }));
    assert_eq!(
        updated.egress_allow,
        ["globex.okta.com", "login.globex.com"]
    );
    assert_eq!(updated.limits, a.limits);
    assert_eq!(updated.generation, 0);
    assert!(updated.updated_at >= a.updated_at);
    assert_eq!(store.get_connection(&a.id).await.unwrap(), updated);

    let err = store
        .update_connection_config("missing", &ConnectionUpdate::default())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "connection missing not found");
    assert!(
        store
            .get_connection("missing")
            .await
            .unwrap_err()
            .is_not_found()
    );
    store.close().await;
}

async fn activate_and_rollback_keep_books(db: TestDb) {
    let store = db.open().await;
    store
        .insert_module(&module("okta", "1.0.0", b"okta 1"))
        .await
        .unwrap();
    store
        .insert_module(&module("okta", "2.0.0", b"okta 2"))
        .await
        .unwrap();
    store
        .insert_module(&module("azure", "3.0.0", b"azure 3"))
        .await
        .unwrap();
    let c = store
        .create_connection(&connection("org1", "main", "okta"))
        .await
        .unwrap();

    let err = store.rollback(&c.id, "alice").await.unwrap_err();
    assert!(
        matches!(err, StoreError::NothingToRollBack { .. }),
        "{err:?}"
    );
    let err = store.activate(&c.id, "3.0.0", "alice").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.to_string(), "connector okta@3.0.0 not found");
    let err = store
        .activate("missing", "1.0.0", "alice")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "connection missing not found");
    assert_eq!(store.get_connection(&c.id).await.unwrap().generation, 0);

    let c1 = store.activate(&c.id, "1.0.0", "alice").await.unwrap();
    assert_eq!(
        (
            c1.active_version.as_deref(),
            c1.previous_version.as_deref(),
            c1.generation
        ),
        (Some("1.0.0"), None, 1)
    );
    let c2 = store.activate(&c.id, "2.0.0", "bob").await.unwrap();
    assert_eq!(
        (
            c2.active_version.as_deref(),
            c2.previous_version.as_deref(),
            c2.generation
        ),
        (Some("2.0.0"), Some("1.0.0"), 2)
    );
    assert_eq!(store.get_connection(&c.id).await.unwrap(), c2);

    let c3 = store.rollback(&c.id, "carol").await.unwrap();
    assert_eq!(
        (
            c3.active_version.as_deref(),
            c3.previous_version.as_deref(),
            c3.generation
        ),
        (Some("1.0.0"), Some("2.0.0"), 3)
    );
    // Re-activating the active version is recorded but keeps the rollback target.
    let c4 = store.activate(&c.id, "1.0.0", "dave").await.unwrap();
    assert_eq!(
        (
            c4.active_version.as_deref(),
            c4.previous_version.as_deref(),
            c4.generation
        ),
        (Some("1.0.0"), Some("2.0.0"), 4)
    );
    assert_eq!(store.get_connection(&c.id).await.unwrap(), c4);

    let history = store.binding_history(&c.id).await.unwrap();
    let summary: Vec<_> = history
        .iter()
        .map(|h| {
            (
                h.seq,
                h.from_version.as_deref(),
                h.to_version.as_str(),
                h.action,
                h.actor.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, None, "1.0.0", BindingAction::Activate, "alice"),
            (2, Some("1.0.0"), "2.0.0", BindingAction::Activate, "bob"),
            (3, Some("2.0.0"), "1.0.0", BindingAction::Rollback, "carol"),
            (4, Some("1.0.0"), "1.0.0", BindingAction::Activate, "dave"),
        ]
    );
    assert!(history.iter().all(|h| h.connection_id == c.id && h.at > 0));
    assert!(store.binding_history("missing").await.unwrap().is_empty());
    store.close().await;
}

async fn concurrent_activations_lose_no_update(db: TestDb) {
    let store = db.open().await;
    store
        .insert_module(&module("okta", "1.0.0", b"okta 1"))
        .await
        .unwrap();
    store
        .insert_module(&module("okta", "2.0.0", b"okta 2"))
        .await
        .unwrap();
    let c = store
        .create_connection(&connection("org1", "main", "okta"))
        .await
        .unwrap();

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let id = c.id.clone();
            let version = if i % 2 == 0 { "1.0.0" } else { "2.0.0" };
            tokio::spawn(async move { store.activate(&id, version, &format!("task{i}")).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    let after = store.get_connection(&c.id).await.unwrap();
    assert_eq!(after.generation, 20);
    let history = store.binding_history(&c.id).await.unwrap();
    assert_eq!(history.len(), 20);
    assert_eq!(
        history.iter().map(|h| h.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    let actors: HashSet<_> = history.iter().map(|h| h.actor.clone()).collect();
    assert_eq!(
        actors.len(),
        20,
        "every task's change is recorded exactly once"
    );
    // The chain is unbroken: each change starts from the version the previous one set.
    assert_eq!(history[0].from_version, None);
    for pair in history.windows(2) {
        assert_eq!(
            pair[1].from_version.as_deref(),
            Some(pair[0].to_version.as_str())
        );
    }
    assert_eq!(
        after.active_version.as_deref(),
        Some(history[19].to_version.as_str())
    );
    store.close().await;
}

async fn admin_tokens(db: TestDb) {
    let store = db.open().await;
    let (token, secret) = store.create_admin_token("ci", None).await.unwrap();
    assert!(secret.starts_with("idp_adm_"));
    assert_eq!(secret.len(), "idp_adm_".len() + 64);
    assert!(token.id.starts_with("tok_"));
    assert_eq!(token.last_used_at, None);

    let verified = store
        .verify_admin_token(&secret)
        .await
        .unwrap()
        .expect("valid token");
    assert_eq!(verified.id, token.id);
    assert_eq!(verified.name, "ci");
    assert!(verified.last_used_at.is_some());

    // Wrong secrets: another well-formed one, a tampered one, garbage.
    let mut tampered = secret.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    for wrong in [
        format!("idp_adm_{}", "ab".repeat(32)),
        tampered,
        "idp_adm_".to_owned(),
        String::new(),
        secret.trim_start_matches("idp_adm_").to_owned(),
    ] {
        assert_eq!(
            store.verify_admin_token(&wrong).await.unwrap(),
            None,
            "{wrong:?}"
        );
    }

    // Revoked.
    let (revocable, revocable_secret) = store.create_admin_token("temp", None).await.unwrap();
    assert!(
        store
            .verify_admin_token(&revocable_secret)
            .await
            .unwrap()
            .is_some()
    );
    let revoked = store.revoke_admin_token(&revocable.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(
        store.verify_admin_token(&revocable_secret).await.unwrap(),
        None
    );
    let again = store.revoke_admin_token(&revocable.id).await.unwrap();
    assert_eq!(
        again.revoked_at, revoked.revoked_at,
        "revocation is idempotent"
    );
    let err = store.revoke_admin_token("tok_missing").await.unwrap_err();
    assert_eq!(err.to_string(), "admin token tok_missing not found");

    // Expired, and not yet expired.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (_, expired_secret) = store
        .create_admin_token("old", Some(now - 1_000))
        .await
        .unwrap();
    assert_eq!(
        store.verify_admin_token(&expired_secret).await.unwrap(),
        None
    );
    let (_, fresh_secret) = store
        .create_admin_token("fresh", Some(now + 3_600_000))
        .await
        .unwrap();
    assert!(
        store
            .verify_admin_token(&fresh_secret)
            .await
            .unwrap()
            .is_some()
    );

    // Listing: everything, but never a secret or a hash.
    let listed = store.list_admin_tokens().await.unwrap();
    let mut names: Vec<_> = listed.iter().map(|t| t.name.as_str()).collect();
    names.sort(); // ordered by creation time, which may tie within a millisecond
    assert_eq!(names, ["ci", "fresh", "old", "temp"]);
    let dump = serde_json::to_string(&listed).unwrap() + &format!("{listed:?}");
    for s in [&secret, &revocable_secret, &expired_secret, &fresh_secret] {
        assert!(!dump.contains(s.as_str()));
        assert!(!dump.contains(&sha256_hex(s.as_bytes())));
        assert!(!dump.contains(s.trim_start_matches("idp_adm_")));
    }
    store.close().await;
}

async fn events_newest_first(db: TestDb) {
    let store = db.open().await;
    let event = |at: Option<i64>, conn: Option<&str>, kind: EventKind, msg: &str| NewEvent {
        at,
        connection_id: conn.map(str::to_owned),
        connector: "okta@1.0.0".into(),
        kind,
        message: msg.into(),
    };
    let e1 = store
        .record_event(&event(Some(1_000), Some("c1"), EventKind::Trap, "first"))
        .await
        .unwrap();
    let e2 = store
        .record_event(&event(
            Some(2_000),
            Some("c2"),
            EventKind::Timeout,
            "second",
        ))
        .await
        .unwrap();
    let e3 = store
        .record_event(&event(
            Some(2_000),
            Some("c1"),
            EventKind::EgressDenied,
            "third",
        ))
        .await
        .unwrap();
    let e4 = store
        .record_event(&event(
            Some(3_000),
            None,
            EventKind::Other("custom_kind".into()),
            &"x".repeat(100_000),
        ))
        .await
        .unwrap();
    assert!(e1 < e2 && e2 < e3 && e3 < e4);

    let all = store.list_events(None, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        [e4, e3, e2, e1]
    );
    assert_eq!(all[0].kind, EventKind::Other("custom_kind".into()));
    assert_eq!(all[0].connection_id, None);
    assert!(
        all[0].message.len() <= idplex_store::MAX_EVENT_MESSAGE_BYTES
            && all[0].message.ends_with('…')
    );
    assert_eq!(
        (all[1].kind.clone(), all[1].message.as_str(), all[1].at),
        (EventKind::EgressDenied, "third", 2_000)
    );

    let c1 = store.list_events(Some("c1"), 100).await.unwrap();
    assert_eq!(
        c1.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["third", "first"]
    );
    let limited = store.list_events(None, 2).await.unwrap();
    assert_eq!(limited.iter().map(|e| e.id).collect::<Vec<_>>(), [e4, e3]);

    let now_event = store
        .record_event(&event(None, None, EventKind::Memory, "oom"))
        .await
        .unwrap();
    assert_eq!(store.list_events(None, 1).await.unwrap()[0].id, now_event);
    assert_eq!(store.prune_events(2_500).await.unwrap(), 3);
    assert_eq!(store.list_events(None, 100).await.unwrap().len(), 2);
    store.close().await;
}

/// `Store::open` alone, with the schema chosen by an `options` parameter in the URL.
async fn postgres_search_path_from_url(db: TestDb) {
    let TestDb::Postgres { url, schema } = &db else {
        unreachable!()
    };
    let store = db.open().await; // creates the schema and migrates it
    store
        .insert_module(&module("okta", "1.0.0", b"in the test schema"))
        .await
        .unwrap();
    store.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = Store::open(&format!("{url}{sep}options=-c%20search_path%3D{schema}"))
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    let modules = store.list_modules().await.unwrap();
    assert_eq!(
        modules.len(),
        1,
        "sees the test schema's tables, not public's"
    );
    store.close().await;
}

#[tokio::test]
async fn postgres_search_path_from_url_option() {
    common::run_postgres(postgres_search_path_from_url).await
}

#[tokio::test]
async fn open_rejects_bad_schema_names() {
    let err = Store::open_with(
        common::DEFAULT_POSTGRES_URL,
        &idplex_store::OpenOptions {
            postgres_schema: Some("x; drop".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput { .. }), "{err:?}");
}

// Backend-independent checks of `Store::open`.

#[tokio::test]
async fn open_rejects_unknown_schemes_without_echoing_the_url() {
    let err = Store::open("mysql://root:hunter2@db/idplex")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(matches!(
        Store::open("  ").await.unwrap_err(),
        StoreError::InvalidUrl { .. }
    ));
}

#[tokio::test]
async fn open_accepts_memory_and_plain_paths() {
    let mem = Store::open("sqlite::memory:").await.unwrap();
    assert_eq!(mem.backend(), Backend::Sqlite);
    mem.insert_module(&module("okta", "1.0.0", b"x"))
        .await
        .unwrap();
    assert_eq!(mem.list_modules().await.unwrap().len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.db");
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    store
        .insert_module(&module("okta", "1.0.0", b"x"))
        .await
        .unwrap();
    store.close().await;
    assert!(path.exists());
    let store = Store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    assert_eq!(store.list_modules().await.unwrap().len(), 1);
}
