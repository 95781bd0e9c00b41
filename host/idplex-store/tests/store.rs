//! Behaviour of the store, each test run on SQLite (temp file) and PostgreSQL (fresh schema).

#[macro_use]
mod common;

use std::collections::HashSet;

use common::TestDb;
use idplex_store::{
    Backend, BindingAction, ConnectionUpdate, EventKind, InsertOutcome, NewConnection, NewEvent,
    NewModule, SCIM_TOKEN_DEFAULT_LIFETIME_MS, SCIM_TOKEN_PREFIX, Store, StoreError, sha256_hex,
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
    scim_tokens_round_trip,
    scim_tokens_refuse_wrong_and_malformed_secrets,
    scim_token_of_one_connection_never_opens_another,
    scim_tokens_expire_and_revoke,
    scim_token_rotation_overlaps_then_retires_the_old_token,
    scim_tokens_listing_newest_first_without_secrets,
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

/// The current time in unix milliseconds, as the store reads it.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
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
    let (scim, scim_secret) = store.create_scim_token(&conn.id, None).await.unwrap();
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
    assert_eq!(
        store
            .verify_scim_token(&conn.id, &scim_secret)
            .await
            .unwrap()
            .map(|t| t.id),
        Some(scim.id)
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
    assert!(updated.updated_at > a.updated_at);
    assert_eq!(store.get_connection(&a.id).await.unwrap(), updated);

    // `updated_at` is the row's version stamp (bindings keep the newest publication by it): it
    // grows with every change, even several within one millisecond.
    let mut stamp = updated.updated_at;
    for i in 0..20 {
        let c = if i % 2 == 0 {
            store.update_connection_config(&a.id, &ConnectionUpdate { limits: Some(json!({ "n": i })), ..Default::default() }).await
        } else {
            store.set_scim_delete_policy(&a.id, idplex_store::ScimDeletePolicy::Delete).await
        }
        .unwrap();
        assert!(c.updated_at > stamp, "change {i}: {} after {stamp}", c.updated_at);
        stamp = c.updated_at;
    }

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
    let mut stamps = Vec::new();
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
        (Some("1.0.0"), None, 3)
    );
    // The history is a stack: nothing below 1.0.0 to go back to.
    let err = store.rollback(&c.id, "carol").await.unwrap_err();
    assert!(matches!(err, StoreError::NothingToRollBack { .. }), "{err:?}");
    // Re-activating the active version is recorded and changes nothing else.
    let c4 = store.activate(&c.id, "1.0.0", "dave").await.unwrap();
    assert_eq!(
        (
            c4.active_version.as_deref(),
            c4.previous_version.as_deref(),
            c4.generation
        ),
        (Some("1.0.0"), None, 4)
    );
    assert_eq!(store.get_connection(&c.id).await.unwrap(), c4);
    // Every binding change gets a newer stamp, however fast they follow each other.
    stamps.extend([c.updated_at, c1.updated_at, c2.updated_at, c3.updated_at, c4.updated_at]);
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "stamps {stamps:?}");

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

    // Rolling back twice goes back twice: 2.1.0 → 2.0.0 → 1.0.0, then nothing.
    store.insert_module(&module("okta", "2.1.0", b"okta 2.1")).await.unwrap();
    store.activate(&c.id, "2.0.0", "erin").await.unwrap();
    let top = store.activate(&c.id, "2.1.0", "erin").await.unwrap();
    assert_eq!(top.previous_version.as_deref(), Some("2.0.0"));
    let back = store.rollback(&c.id, "erin").await.unwrap();
    assert_eq!((back.active_version.as_deref(), back.previous_version.as_deref()), (Some("2.0.0"), Some("1.0.0")));
    let back = store.rollback(&c.id, "erin").await.unwrap();
    assert_eq!((back.active_version.as_deref(), back.previous_version.as_deref()), (Some("1.0.0"), None));
    let err = store.rollback(&c.id, "erin").await.unwrap_err();
    assert!(matches!(err, StoreError::NothingToRollBack { .. }), "{err:?}");
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

async fn scim_tokens_round_trip(db: TestDb) {
    let store = db.open().await;
    let conn = store
        .create_connection(&connection("org1", "main", "okta"))
        .await
        .unwrap();
    let before = unix_ms();
    let (token, secret) = store.create_scim_token(&conn.id, None).await.unwrap();
    let after = unix_ms();
    assert!(secret.starts_with("idp_scim_"));
    assert_eq!(secret.len(), "idp_scim_".len() + 64);
    let id_hex = token.id.strip_prefix("stok_").expect("stok_ id");
    assert!(id_hex.len() == 32 && id_hex.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(token.connection_id, conn.id);
    assert!((before..=after).contains(&token.created_at));
    assert_eq!(
        token.expires_at,
        token.created_at + SCIM_TOKEN_DEFAULT_LIFETIME_MS,
        "one year by default"
    );
    assert_eq!(
        (
            token.revoked_at,
            token.last_used_at,
            token.rotated_from.as_deref()
        ),
        (None, None, None)
    );

    let verified = store
        .verify_scim_token(&conn.id, &secret)
        .await
        .unwrap()
        .expect("valid token");
    let used_at = verified.last_used_at.expect("use recorded");
    assert_eq!(
        verified,
        idplex_store::ScimToken {
            last_used_at: Some(used_at),
            ..token.clone()
        }
    );
    // Within a minute, a second use is not written again.
    let again = store
        .verify_scim_token(&conn.id, &secret)
        .await
        .unwrap()
        .expect("still valid");
    assert_eq!(again.last_used_at, Some(used_at));
    assert_eq!(store.list_scim_tokens(&conn.id).await.unwrap(), [again]);

    // An explicit expiry is kept as given.
    let in_a_day = unix_ms() + 86_400_000;
    let (short, _) = store
        .create_scim_token(&conn.id, Some(in_a_day))
        .await
        .unwrap();
    assert_eq!(short.expires_at, in_a_day);

    let err = store.create_scim_token("missing", None).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.to_string(), "connection missing not found");
    assert!(store.list_scim_tokens("missing").await.unwrap().is_empty());
    store.close().await;
}

async fn scim_tokens_refuse_wrong_and_malformed_secrets(db: TestDb) {
    let store = db.open().await;
    let conn = store
        .create_connection(&connection("org1", "main", "okta"))
        .await
        .unwrap();
    let (_, secret) = store.create_scim_token(&conn.id, None).await.unwrap();
    let (_, admin_secret) = store.create_admin_token("ops", None).await.unwrap();

    let mut tampered = secret.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let well_formed_wrong = [
        format!("{SCIM_TOKEN_PREFIX}{}", "ab".repeat(32)),
        tampered,
        secret.to_uppercase().replacen("IDP_SCIM_", "idp_scim_", 1),
    ];
    let malformed = [
        String::new(),
        SCIM_TOKEN_PREFIX.to_owned(),
        secret.trim_start_matches(SCIM_TOKEN_PREFIX).to_owned(),
        format!("{secret}0"),
        secret[..secret.len() - 1].to_owned(),
        format!("{}zz", &secret[..secret.len() - 2]),
        format!(" {secret}"),
        format!("Bearer {secret}"),
        admin_secret.clone(),
    ];
    for wrong in well_formed_wrong.iter().chain(&malformed) {
        assert_eq!(
            store.verify_scim_token(&conn.id, wrong).await.unwrap(),
            None,
            "{wrong:?}"
        );
    }
    // Nor is a SCIM secret an admin secret.
    assert_eq!(store.verify_admin_token(&secret).await.unwrap(), None);
    assert!(
        store
            .verify_scim_token(&conn.id, &secret)
            .await
            .unwrap()
            .is_some()
    );

    // Malformed secrets are refused without a query: they are refused even with the pools
    // closed, where any query would fail.
    store.close().await;
    for wrong in &malformed {
        assert_eq!(
            store.verify_scim_token(&conn.id, wrong).await.unwrap(),
            None,
            "{wrong:?}"
        );
    }
    assert!(store.verify_scim_token(&conn.id, &secret).await.is_err());
}

async fn scim_token_of_one_connection_never_opens_another(db: TestDb) {
    let store = db.open().await;
    let a = store
        .create_connection(&connection("org1", "okta-dir", "okta"))
        .await
        .unwrap();
    let b = store
        .create_connection(&connection("org2", "entra-dir", "azure"))
        .await
        .unwrap();
    let (token_a, secret_a) = store.create_scim_token(&a.id, None).await.unwrap();
    let (token_b, secret_b) = store.create_scim_token(&b.id, None).await.unwrap();

    assert_eq!(
        store.verify_scim_token(&b.id, &secret_a).await.unwrap(),
        None,
        "A's token presented for B"
    );
    assert_eq!(
        store.verify_scim_token(&a.id, &secret_b).await.unwrap(),
        None,
        "B's token presented for A"
    );
    assert_eq!(
        store.verify_scim_token("missing", &secret_a).await.unwrap(),
        None
    );
    let ok_a = store.verify_scim_token(&a.id, &secret_a).await.unwrap();
    assert_eq!(ok_a.map(|t| t.id), Some(token_a.id.clone()));
    let ok_b = store.verify_scim_token(&b.id, &secret_b).await.unwrap();
    assert_eq!(ok_b.map(|t| t.id), Some(token_b.id.clone()));

    // Nor can B's admin path reach A's tokens: they are not found there, and stay untouched.
    let err = store
        .revoke_scim_token(&b.id, &token_a.id)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("SCIM token {} not found", token_a.id)
    );
    let err = store
        .rotate_scim_token(&b.id, &token_a.id, 0)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let listed_a = store.list_scim_tokens(&a.id).await.unwrap();
    assert_eq!(
        listed_a.len(),
        1,
        "no token was issued by the refused rotation"
    );
    assert_eq!(
        (listed_a[0].expires_at, listed_a[0].revoked_at),
        (token_a.expires_at, None)
    );
    assert!(
        store
            .verify_scim_token(&a.id, &secret_a)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .list_scim_tokens(&b.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect::<Vec<_>>(),
        [token_b.id]
    );
    store.close().await;
}

async fn scim_tokens_expire_and_revoke(db: TestDb) {
    let store = db.open().await;
    let conn = store
        .create_connection(&connection("org1", "main", "okta"))
        .await
        .unwrap();
    let now = unix_ms();

    // Expired, and not yet expired.
    let (_, expired_secret) = store
        .create_scim_token(&conn.id, Some(now - 1_000))
        .await
        .unwrap();
    assert_eq!(
        store
            .verify_scim_token(&conn.id, &expired_secret)
            .await
            .unwrap(),
        None
    );
    let (_, fresh_secret) = store
        .create_scim_token(&conn.id, Some(now + 3_600_000))
        .await
        .unwrap();
    assert!(
        store
            .verify_scim_token(&conn.id, &fresh_secret)
            .await
            .unwrap()
            .is_some()
    );

    // Revoked: refused at once; a second revocation changes nothing.
    let (token, secret) = store.create_scim_token(&conn.id, None).await.unwrap();
    assert!(
        store
            .verify_scim_token(&conn.id, &secret)
            .await
            .unwrap()
            .is_some()
    );
    let revoked = store.revoke_scim_token(&conn.id, &token.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(revoked.id, token.id);
    assert_eq!(
        store.verify_scim_token(&conn.id, &secret).await.unwrap(),
        None
    );
    let again = store.revoke_scim_token(&conn.id, &token.id).await.unwrap();
    assert_eq!(again, revoked, "revocation is idempotent");
    assert_eq!(
        store.verify_scim_token(&conn.id, &secret).await.unwrap(),
        None
    );

    // A revoked token cannot be rotated back to life; unknown ones are not found.
    let err = store
        .rotate_scim_token(&conn.id, &token.id, 60_000)
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("SCIM token {} is revoked", token.id)
    );
    let err = store
        .rotate_scim_token(&conn.id, "stok_missing", 60_000)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = store
        .revoke_scim_token(&conn.id, "stok_missing")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "SCIM token stok_missing not found");
    assert_eq!(store.list_scim_tokens(&conn.id).await.unwrap().len(), 3);
    store.close().await;
}

async fn scim_token_rotation_overlaps_then_retires_the_old_token(db: TestDb) {
    let store = db.open().await;
    let conn = store
        .create_connection(&connection("org1", "main", "okta"))
        .await
        .unwrap();
    let (first, first_secret) = store.create_scim_token(&conn.id, None).await.unwrap();

    // An hour of overlap: both work.
    let before = unix_ms();
    let (second, second_secret) = store
        .rotate_scim_token(&conn.id, &first.id, 3_600_000)
        .await
        .unwrap();
    let after = unix_ms();
    assert_ne!(second.id, first.id);
    assert_ne!(second_secret, first_secret);
    assert!(second_secret.starts_with(SCIM_TOKEN_PREFIX));
    assert_eq!(second.rotated_from.as_deref(), Some(first.id.as_str()));
    assert_eq!(second.connection_id, conn.id);
    assert_eq!(
        second.expires_at,
        second.created_at + SCIM_TOKEN_DEFAULT_LIFETIME_MS
    );
    for s in [&first_secret, &second_secret] {
        assert!(
            store
                .verify_scim_token(&conn.id, s)
                .await
                .unwrap()
                .is_some()
        );
    }
    let listed = store.list_scim_tokens(&conn.id).await.unwrap();
    let old = listed.iter().find(|t| t.id == first.id).unwrap();
    assert!(
        (before + 3_600_000..=after + 3_600_000).contains(&old.expires_at),
        "the old token now ends with the overlap: {} not in {}..={}",
        old.expires_at,
        before + 3_600_000,
        after + 3_600_000
    );
    assert_eq!(old.revoked_at, None);

    // No overlap: the old token is retired at once, the new one works.
    let (third, third_secret) = store
        .rotate_scim_token(&conn.id, &second.id, 0)
        .await
        .unwrap();
    assert_eq!(third.rotated_from.as_deref(), Some(second.id.as_str()));
    assert_eq!(
        store
            .verify_scim_token(&conn.id, &second_secret)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .verify_scim_token(&conn.id, &third_secret)
            .await
            .unwrap()
            .map(|t| t.id),
        Some(third.id.clone())
    );
    // The first token is still within its own overlap window.
    assert!(
        store
            .verify_scim_token(&conn.id, &first_secret)
            .await
            .unwrap()
            .is_some()
    );

    // Rotation never extends a token: one that ends sooner than the overlap keeps its expiry.
    let soon = unix_ms() + 10_000;
    let (short, _) = store.create_scim_token(&conn.id, Some(soon)).await.unwrap();
    store
        .rotate_scim_token(&conn.id, &short.id, 3_600_000)
        .await
        .unwrap();
    let short_after = store
        .list_scim_tokens(&conn.id)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.id == short.id)
        .unwrap();
    assert_eq!(short_after.expires_at, soon);

    // An already expired token may be rotated (the replacement works), and stays expired.
    let (expired, expired_secret) = store
        .create_scim_token(&conn.id, Some(unix_ms() - 1_000))
        .await
        .unwrap();
    let (renewed, renewed_secret) = store
        .rotate_scim_token(&conn.id, &expired.id, 3_600_000)
        .await
        .unwrap();
    assert_eq!(renewed.rotated_from.as_deref(), Some(expired.id.as_str()));
    assert_eq!(
        store
            .verify_scim_token(&conn.id, &expired_secret)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .verify_scim_token(&conn.id, &renewed_secret)
            .await
            .unwrap()
            .is_some()
    );

    let err = store
        .rotate_scim_token(&conn.id, &third.id, -1)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput { .. }), "{err:?}");
    assert!(
        store
            .verify_scim_token(&conn.id, &third_secret)
            .await
            .unwrap()
            .is_some(),
        "a refused rotation leaves the token alone"
    );
    store.close().await;
}

async fn scim_tokens_listing_newest_first_without_secrets(db: TestDb) {
    let store = db.open().await;
    let conn = store
        .create_connection(&connection("org1", "main", "okta"))
        .await
        .unwrap();
    let other = store
        .create_connection(&connection("org1", "other", "okta"))
        .await
        .unwrap();
    let mut secrets = Vec::new();
    let mut ids = HashSet::new();
    for _ in 0..3 {
        let (token, secret) = store.create_scim_token(&conn.id, None).await.unwrap();
        ids.insert(token.id);
        secrets.push(secret);
        // Distinct creation times, so that the order is fully determined.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let (rotated, rotated_secret) = store
        .rotate_scim_token(&conn.id, ids.iter().next().unwrap(), 60_000)
        .await
        .unwrap();
    ids.insert(rotated.id.clone());
    secrets.push(rotated_secret);
    let (_, other_secret) = store.create_scim_token(&other.id, None).await.unwrap();

    let listed = store.list_scim_tokens(&conn.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|t| t.id.clone()).collect::<HashSet<_>>(),
        ids,
        "this connection's tokens only"
    );
    assert_eq!(listed[0].id, rotated.id, "newest first");
    assert!(
        listed.windows(2).all(|w| w[0].created_at > w[1].created_at),
        "newest first: {listed:?}"
    );
    assert!(listed.iter().all(|t| t.connection_id == conn.id));

    let dump = serde_json::to_string(&listed).unwrap() + &format!("{listed:?}");
    let roundtrip: Vec<idplex_store::ScimToken> =
        serde_json::from_str(&serde_json::to_string(&listed).unwrap()).unwrap();
    assert_eq!(roundtrip, listed);
    for s in secrets.iter().chain([&other_secret]) {
        assert!(!dump.contains(s.as_str()));
        assert!(!dump.contains(&sha256_hex(s.as_bytes())));
        assert!(!dump.contains(s.trim_start_matches(SCIM_TOKEN_PREFIX)));
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

/// A server and CLI commands started at once on a fresh data directory all open the same new
/// SQLite file: each must find the schema created exactly once, none may fail half-way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_opening_a_new_sqlite_file_at_once_all_get_one_schema() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("idplex.db").display());
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Store::open(&url).await })
            })
            .collect();
        let mut stores = Vec::new();
        for open in opens {
            match open.await.unwrap() {
                Ok(store) => stores.push(store),
                Err(e) => panic!("round {round}: a concurrent first open failed: {e}"),
            }
        }
        // Every handle works on the one schema.
        let created = stores[0].insert_module(&module("okta", "1.0.0", b"\0asm")).await.unwrap();
        assert!(matches!(created, InsertOutcome::Inserted { .. }), "{created:?}");
        for s in &stores {
            assert_eq!(s.list_modules().await.unwrap().len(), 1);
        }
    }
}
