//! Hardening (issue 9): values the database cannot store are client errors, bounded directory
//! text, Unicode-aware group and user keys, a sync log that loses no good entry and leaks no
//! credential, bounded connector events. Each test runs on SQLite (temp file) and PostgreSQL
//! (fresh schema).

#[macro_use]
mod common;

use std::str::FromStr;
use std::time::Duration;

use common::{TestDb, connection};
use idplex_store::{
    EventKind, EventRetention, MAX_DIRECTORY_TEXT_BYTES, NewConnection,
    NewDirectoryGroup, NewDirectoryUser, NewEvent, ScimResourceType, Store, StoreError,
    SyncLogEntry, SyncLogQuery, SyncOperation, SyncOutcome,
};
use rand::RngCore;
use serde_json::json;

on_both_backends!(
    values_the_database_cannot_store_are_client_errors,
    directory_text_is_bounded,
    group_display_name_lookup_folds_unicode_case,
    display_name_keys_of_existing_groups_are_backfilled_in_rust,
    user_names_differing_in_unicode_case_collide,
    sync_log_batch_with_nul_loses_no_entry,
    sync_log_batch_refused_by_the_database_is_written_entry_by_entry,
    sync_log_redacts_resource_id_and_user_agent,
    connector_events_are_coalesced,
    connector_events_are_pruned_by_age_and_per_connection,
);

fn user(connection_id: &str, user_name: &str) -> NewDirectoryUser {
    NewDirectoryUser {
        connection_id: connection_id.into(),
        user_name: user_name.into(),
        external_id: None,
        active: true,
        resource: json!({ "userName": user_name }),
    }
}

fn group(connection_id: &str, name: &str) -> NewDirectoryGroup {
    NewDirectoryGroup {
        connection_id: connection_id.into(),
        display_name: name.into(),
        external_id: None,
        resource: json!({ "displayName": name }),
        members: vec![],
    }
}

/// `n` random bytes in hex (incompressible enough that PostgreSQL cannot shrink an index row).
fn random_hex(n: usize) -> String {
    let mut raw = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    hex::encode(raw)
}

/// Runs `sql` (several statements) on the test database beside the store: what an operator or
/// an older version of idplex could have left in it.
async fn raw(db: &TestDb, sql: &str) {
    match db {
        TestDb::Sqlite { path, .. } => {
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(path))
                .await
                .unwrap();
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
        TestDb::Postgres { url, schema } => {
            let options = sqlx::postgres::PgConnectOptions::from_str(url)
                .unwrap()
                .options([("search_path", schema.as_str())]);
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .unwrap();
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

fn assert_invalid(e: &StoreError, what: &str) {
    match e {
        StoreError::InvalidInput { what: w, .. } if *w == what => {}
        other => panic!("expected an invalid {what}, got {other:?}"),
    }
}

async fn values_the_database_cannot_store_are_client_errors(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;

    // NUL in the values the store writes: refused up front, on both backends alike.
    let e = store
        .create_user(&user(&a.id, "al\0ice"))
        .await
        .unwrap_err();
    assert_invalid(&e, "userName");
    let e = store
        .create_user(&NewDirectoryUser {
            external_id: Some("x\0".into()),
            ..user(&a.id, "alice")
        })
        .await
        .unwrap_err();
    assert_invalid(&e, "externalId");
    let e = store
        .create_group(&group(&a.id, "Ärzte\0"))
        .await
        .unwrap_err();
    assert_invalid(&e, "displayName");
    let ok = store.create_user(&user(&a.id, "alice")).await.unwrap();
    let e = store
        .replace_user(&a.id, &ok.id, None, "bob\0", None, true, &json!({}))
        .await
        .unwrap_err();
    assert_invalid(&e, "userName");

    // NUL in a looked-up id reaches the database: PostgreSQL refuses it (SQLSTATE 22021), which
    // is the client's error, never "database unavailable" (a 503 IdPs would retry forever).
    let e = store.get_user(&a.id, "ab\0cd").await.unwrap_err();
    if db.is_postgres() {
        assert!(e.is_invalid_input(), "{e:?}");
        assert!(e.to_string().contains("22021"), "{e}");
    } else {
        assert!(e.is_not_found(), "{e:?}");
    }
    let e = store.get_group(&a.id, "\0").await.unwrap_err();
    assert!(e.is_invalid_input() || e.is_not_found(), "{e:?}");
    assert!(!matches!(e, StoreError::Database(_)), "{e:?}");
    let members = vec!["u\0".to_owned()];
    let e = store
        .create_group(&NewDirectoryGroup {
            members,
            ..group(&a.id, "g")
        })
        .await
        .unwrap_err();
    assert!(e.is_invalid_input() || e.is_not_found(), "{e:?}");

    // A value too large for PostgreSQL's b-tree row (SQLSTATE 54000) through a path the store
    // does not bound itself: an organization id far over the limit, in the (org_id, name) index.
    let huge_org = random_hex(4000);
    let created = store
        .create_connection(&NewConnection {
            id: None,
            org_id: huge_org,
            name: "big".into(),
            connector_name: "okta".into(),
            config: json!({}),
            egress_allow: vec![],
            limits: json!({}),
        })
        .await;
    if db.is_postgres() {
        let e = created.unwrap_err();
        assert!(e.is_invalid_input(), "{e:?}");
        assert!(e.to_string().contains("54000"), "{e}");
    } else {
        created.unwrap();
    }

    // Connector events carrying a NUL are stored, the NUL replaced.
    store
        .record_event(&NewEvent {
            at: None,
            connection_id: Some(a.id.clone()),
            connector: "okta@1.0.0".into(),
            kind: EventKind::Trap,
            message: "trap at \0 here".into(),
        })
        .await
        .unwrap();
    let events = store.list_events(Some(&a.id), 10).await.unwrap();
    assert_eq!(events[0].message, "trap at \u{FFFD} here");
    store.close().await;
}

async fn directory_text_is_bounded(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;
    // 3 KB of incompressible text: over PostgreSQL's b-tree row limit if it got that far.
    let long = random_hex(1536);
    assert_eq!(long.len(), 3072);

    let e = store.create_user(&user(&a.id, &long)).await.unwrap_err();
    assert_invalid(&e, "userName");
    assert!(e.to_string().contains("at most 1024 bytes"), "{e}");
    let e = store
        .create_user(&NewDirectoryUser {
            external_id: Some(long.clone()),
            ..user(&a.id, "bob")
        })
        .await
        .unwrap_err();
    assert_invalid(&e, "externalId");
    let e = store.create_group(&group(&a.id, &long)).await.unwrap_err();
    assert_invalid(&e, "displayName");
    let e = store
        .create_group(&NewDirectoryGroup {
            external_id: Some(long.clone()),
            ..group(&a.id, "g")
        })
        .await
        .unwrap_err();
    assert_invalid(&e, "externalId");

    // Exactly the bound is accepted, on every indexed column, on both backends (multi-byte
    // characters whose lower case is longer included: `Ⱥ` is 2 bytes, `ⱥ` 3).
    let max = random_hex(MAX_DIRECTORY_TEXT_BYTES / 2);
    let u = store
        .create_user(&NewDirectoryUser {
            external_id: Some(max.clone()),
            ..user(&a.id, &max)
        })
        .await
        .unwrap();
    let grows = "Ⱥ".repeat(MAX_DIRECTORY_TEXT_BYTES / 2);
    assert_eq!(grows.len(), MAX_DIRECTORY_TEXT_BYTES);
    let u2 = store.create_user(&user(&a.id, &grows)).await.unwrap();
    let g = store
        .create_group(&NewDirectoryGroup {
            external_id: Some(max.clone()),
            ..group(&a.id, &grows)
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .find_groups_by_display_name(&a.id, &grows.to_lowercase(), false)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .find_users_by_user_name(&a.id, &grows.to_lowercase())
            .await
            .unwrap()[0]
            .id,
        u2.id
    );

    // Replacing with one byte more is refused; nothing changes.
    let over = format!("{max}x");
    let e = store
        .replace_user(&a.id, &u.id, None, &over, None, true, &json!({}))
        .await
        .unwrap_err();
    assert_invalid(&e, "userName");
    let e = store
        .replace_user(&a.id, &u.id, None, "ok", Some(&over), true, &json!({}))
        .await
        .unwrap_err();
    assert_invalid(&e, "externalId");
    let e = store
        .replace_group(&a.id, &g.id, None, &over, None, &json!({}), None)
        .await
        .unwrap_err();
    assert_invalid(&e, "displayName");
    let e = store
        .replace_group(&a.id, &g.id, None, "ok", Some(&over), &json!({}), None)
        .await
        .unwrap_err();
    assert_invalid(&e, "externalId");
    assert_eq!(store.get_user(&a.id, &u.id).await.unwrap().version, 1);
    assert_eq!(store.get_group(&a.id, &g.id).await.unwrap().version, 1);
    store.close().await;
}

async fn group_display_name_lookup_folds_unicode_case(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;
    let b = connection(&store, "org1", "entra").await;
    let find = |name: &'static str| {
        let store = store.clone();
        let a = a.id.clone();
        async move {
            store
                .find_groups_by_display_name(&a, name, false)
                .await
                .unwrap()
                .into_iter()
                .map(|g| g.display_name)
                .collect::<Vec<_>>()
        }
    };
    let arzte = store.create_group(&group(&a.id, "ÄRZTE")).await.unwrap();
    store.create_group(&group(&b.id, "ärzte")).await.unwrap();
    for name in ["ärzte", "ÄrZtE", "ÄRZTE"] {
        assert_eq!(
            find(name).await,
            ["ÄRZTE"],
            "{name}: one group, of this connection only"
        );
    }

    // Semantics are Rust's `to_lowercase` on both sides (as the SCIM filter evaluator's), which
    // is lower-casing, not case folding:
    // capital sharp s lowers to ß, but SS stays ss;
    store.create_group(&group(&a.id, "STRAẞE")).await.unwrap();
    assert_eq!(find("straße").await, ["STRAẞE"]);
    assert!(find("STRASSE").await.is_empty());
    // Turkish: İ lowers to i + U+0307 (not to i), I to i (not to ı);
    store.create_group(&group(&a.id, "İSTANBUL")).await.unwrap();
    assert!(find("istanbul").await.is_empty());
    assert_eq!(find("i\u{307}stanbul").await, ["İSTANBUL"]);
    store.create_group(&group(&a.id, "IRMAK")).await.unwrap();
    assert_eq!(find("irmak").await, ["IRMAK"]);
    assert!(find("ırmak").await.is_empty());
    // Greek final sigma.
    store.create_group(&group(&a.id, "ΟΔΟΣ")).await.unwrap();
    assert_eq!(find("οδος").await, ["ΟΔΟΣ"]);

    // Every write keeps the key in step.
    store
        .replace_group(&a.id, &arzte.id, None, "ÖLTEAM", None, &json!({}), None)
        .await
        .unwrap();
    assert!(find("ärzte").await.is_empty());
    assert_eq!(find("ölteam").await, ["ÖLTEAM"]);
    store
        .change_group_members(&a.id, &arzte.id, None, &[], &[])
        .await
        .unwrap();
    assert_eq!(find("ÖlTeAm").await, ["ÖLTEAM"]);
    store.close().await;
}

async fn display_name_keys_of_existing_groups_are_backfilled_in_rust(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;
    store.create_group(&group(&a.id, "ÄRZTE")).await.unwrap();
    store.create_group(&group(&a.id, "Admins")).await.unwrap();
    store.close().await;
    drop(store);
    // What migration 0006 leaves on SQLite (ASCII-only lower()), before the Rust pass.
    raw(
        &db,
        "UPDATE directory_groups SET display_name_lc = 'Ärzte' WHERE display_name = 'ÄRZTE'; \
         DELETE FROM store_backfills;",
    )
    .await;
    let store = db.open().await;
    let found = store
        .find_groups_by_display_name(&a.id, "ärzte", false)
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "rewritten at open");
    assert_eq!(
        store
            .find_groups_by_display_name(&a.id, "ADMINS", false)
            .await
            .unwrap()
            .len(),
        1
    );
    store.close().await;
    drop(store);
    // Done once: a later reopen does not redo it.
    raw(
        &db,
        "UPDATE directory_groups SET display_name_lc = 'stale' WHERE display_name = 'Admins';",
    )
    .await;
    let store = db.open().await;
    assert!(
        store
            .find_groups_by_display_name(&a.id, "admins", false)
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await;
}

async fn user_names_differing_in_unicode_case_collide(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;
    let b = connection(&store, "org1", "entra").await;
    let alice = store.create_user(&user(&a.id, "ÄLICE")).await.unwrap();
    // Same organization, another directory: the userName is taken (the key is Unicode lower case).
    let e = store.create_user(&user(&b.id, "älice")).await.unwrap_err();
    assert!(e.is_conflict(), "{e:?}");
    let e = store.create_user(&user(&a.id, "ÄlIcE")).await.unwrap_err();
    assert!(e.is_conflict(), "{e:?}");
    assert_eq!(
        store.find_users_by_user_name(&a.id, "älice").await.unwrap()[0].id,
        alice.id
    );
    let bob = store.create_user(&user(&a.id, "bob")).await.unwrap();
    let e = store
        .replace_user(&a.id, &bob.id, None, "äLICE", None, true, &json!({}))
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{e:?}");
    // Renaming a user to another case of its own name is no conflict.
    store
        .replace_user(&a.id, &alice.id, None, "Älice", None, true, &json!({}))
        .await
        .unwrap();
    store.close().await;
}

fn sync(connection_id: &str, at: i64) -> SyncLogEntry {
    SyncLogEntry {
        connection_id: connection_id.into(),
        at,
        method: "POST".into(),
        path: format!("/scim/v2/{connection_id}/Users"),
        resource_type: Some(ScimResourceType::User),
        resource_id: Some(format!("{at:032x}")),
        operation: SyncOperation::Create,
        status: 201,
        outcome: SyncOutcome::Ok,
        scim_type: None,
        detail: None,
        duration_us: 10,
        user_agent: Some("Okta SCIM Client 1.0.0".into()),
    }
}

async fn all_entries(store: &Store, connection_id: &str) -> Vec<SyncLogEntry> {
    let mut out = Vec::new();
    let mut query = SyncLogQuery {
        limit: Some(1000),
        ..Default::default()
    };
    loop {
        let page = store.list_sync_log(connection_id, &query).await.unwrap();
        out.extend(page.entries.into_iter().map(|r| r.entry));
        match page.next {
            Some(next) => query.before = Some(next),
            None => return out,
        }
    }
}

async fn sync_log_batch_with_nul_loses_no_entry(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;
    let b = connection(&store, "org2", "okta").await;
    // 1,500 entries of two tenants; every 100th of A's carries NUL and control characters in
    // each text field.
    let mut batch = Vec::new();
    for i in 0..1500i64 {
        let mut e = sync(if i % 3 == 0 { &a.id } else { &b.id }, i);
        if i % 300 == 0 {
            e.method = "PO\0ST".into();
            e.path = format!("/scim/v2/{}/Users/x\0y", a.id);
            e.resource_id = Some("x\0y\u{1b}[2J".into());
            e.scim_type = Some("invalid\0Value".into());
            e.detail = Some("bad\0detail\nsecond line\u{202e}".into());
            e.user_agent = Some("evil\0agent\r\n".into());
            e.status = 400;
            e.outcome = SyncOutcome::ClientError;
        }
        batch.push(e);
    }
    // A connection id with a NUL names no connection: skipped, as an unknown one is.
    batch.push(sync(&format!("{}\0", a.id), 9999));
    assert_eq!(store.record_sync_batch(&batch).await.unwrap(), 1500);
    let a_log = all_entries(&store, &a.id).await;
    let b_log = all_entries(&store, &b.id).await;
    assert_eq!(
        (a_log.len(), b_log.len()),
        (500, 1000),
        "nothing lost, nothing misfiled"
    );
    let scrubbed: Vec<&SyncLogEntry> = a_log.iter().filter(|e| e.status == 400).collect();
    assert_eq!(scrubbed.len(), 5);
    for e in &scrubbed {
        let texts = [
            Some(e.method.as_str()),
            Some(e.path.as_str()),
            e.resource_id.as_deref(),
            e.scim_type.as_deref(),
            e.detail.as_deref(),
            e.user_agent.as_deref(),
        ];
        for t in texts.into_iter().map(Option::unwrap) {
            assert!(
                !t.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{t:?}"
            );
        }
        assert_eq!(e.resource_id.as_deref(), Some("x\u{FFFD}y\u{FFFD}[2J"));
        assert_eq!(
            e.detail.as_deref(),
            Some("bad\u{FFFD}detail second line\u{FFFD}")
        );
    }
    // A single record too.
    let id = store
        .record_sync(&SyncLogEntry {
            detail: Some("\0".into()),
            ..sync(&a.id, 20_000)
        })
        .await
        .unwrap();
    assert!(id > 0);
    assert!(
        store
            .record_sync(&sync(&format!("{}\0", a.id), 1))
            .await
            .unwrap_err()
            .is_not_found()
    );
    store.close().await;
}

async fn sync_log_batch_refused_by_the_database_is_written_entry_by_entry(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;
    let b = connection(&store, "org2", "okta").await;
    // A statement failure scrubbing cannot prevent (here: a trigger refusing one entry).
    if db.is_postgres() {
        raw(
            &db,
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.detail = 'poison' THEN RAISE EXCEPTION 'poisoned entry'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER refuse_poison BEFORE INSERT ON scim_sync_log \
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
        )
        .await;
    } else {
        raw(
            &db,
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON scim_sync_log \
             WHEN NEW.detail = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned entry'); END;",
        )
        .await;
    }
    let mut batch: Vec<SyncLogEntry> = (0..200)
        .map(|i| sync(if i % 2 == 0 { &a.id } else { &b.id }, i))
        .collect();
    batch.insert(
        77,
        SyncLogEntry {
            detail: Some("poison".into()),
            ..sync(&a.id, 500)
        },
    );
    assert_eq!(store.record_sync_batch(&batch).await.unwrap(), 200);
    let a_log = all_entries(&store, &a.id).await;
    let b_log = all_entries(&store, &b.id).await;
    assert_eq!(
        (a_log.len(), b_log.len()),
        (100, 100),
        "every good entry of both tenants kept"
    );
    assert!(a_log.iter().all(|e| e.detail.is_none()));
    // The next batch goes through as one again.
    assert_eq!(
        store
            .record_sync_batch(&[sync(&b.id, 1000), sync(&a.id, 1001)])
            .await
            .unwrap(),
        2
    );
    store.close().await;
}

async fn sync_log_redacts_resource_id_and_user_agent(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;
    let jwt =
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let api_key = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
    let scim = format!("idp_scim_{}", "0123456789abcdef".repeat(4));
    let sha = "ab".repeat(32);
    let user_id = "0123456789abcdef0123456789abcdef";
    let cases = [
        (
            Some(jwt.to_owned()),
            Some(format!("curl/8.0 Bearer {api_key}")),
        ),
        (Some(scim.clone()), Some(format!("okta {scim}"))),
        (Some(api_key.to_owned()), Some(format!("agent token={jwt}"))),
        (Some(sha.clone()), Some(format!("Basic {api_key} more"))),
        (
            Some(user_id.to_owned()),
            Some(format!("Azure AD {}", "x".repeat(400))),
        ),
    ];
    for (i, (resource_id, user_agent)) in cases.iter().enumerate() {
        store
            .record_sync(&SyncLogEntry {
                resource_id: resource_id.clone(),
                user_agent: user_agent.clone(),
                path: format!(
                    "/scim/v2/{}/Users/{}",
                    a.id,
                    resource_id.as_deref().unwrap()
                ),
                ..sync(&a.id, i as i64)
            })
            .await
            .unwrap();
    }
    let mut log = all_entries(&store, &a.id).await;
    log.reverse();
    let stored: Vec<(String, String, String)> = log
        .iter()
        .map(|e| {
            (
                e.resource_id.clone().unwrap(),
                e.user_agent.clone().unwrap(),
                e.path.clone(),
            )
        })
        .collect();
    let dump = format!("{stored:?}");
    for secret in [jwt, api_key, &scim[9..], &sha] {
        assert!(!dump.contains(secret), "{secret} leaked: {dump}");
    }
    assert_eq!(stored[0].0, "<redacted>");
    assert_eq!(stored[0].1, "curl/8.0 Bearer <redacted>");
    assert_eq!(stored[1].0, "idp_scim_<redacted>");
    assert_eq!(stored[2].0, "<redacted>");
    assert_eq!(stored[2].1, "agent token=<redacted>");
    assert_eq!(stored[3].1, "Basic <redacted> more");
    assert_eq!(stored[2].2, format!("/scim/v2/{}/Users/<redacted>", a.id));
    // idplex's own ids stay readable (and filterable); long agents are cut.
    assert_eq!(stored[4].0, user_id);
    assert_eq!(stored[4].2, format!("/scim/v2/{}/Users/{user_id}", a.id));
    assert!(
        stored[4].1.len() <= idplex_store::MAX_SYNC_USER_AGENT_BYTES && stored[4].1.ends_with('…')
    );
    let by_id = store
        .list_sync_log(
            &a.id,
            &SyncLogQuery {
                resource_id: Some(user_id.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(by_id.entries.len(), 1);
    // A resource id far over the bound is cut.
    store
        .record_sync(&SyncLogEntry {
            resource_id: Some("r-".repeat(1000)),
            ..sync(&a.id, 99)
        })
        .await
        .unwrap();
    let newest = &all_entries(&store, &a.id).await[0];
    assert!(newest.resource_id.as_deref().unwrap().len() <= 256);
    store.close().await;
}

fn event(connection: Option<&str>, at: i64, kind: EventKind, message: &str) -> NewEvent {
    NewEvent {
        at: Some(at),
        connection_id: connection.map(str::to_owned),
        connector: "okta@1.0.0".into(),
        kind,
        message: message.into(),
    }
}

async fn connector_events_are_coalesced(db: TestDb) {
    let store = db.open().await;
    let base = 1_000_000;
    // A flood: 1,000 traps of one connection within the window make one row.
    let mut ids = Vec::new();
    for i in 0..1000 {
        ids.push(
            store
                .record_event(&event(
                    Some("c1"),
                    base + i,
                    EventKind::Trap,
                    &format!("trap {i}"),
                ))
                .await
                .unwrap(),
        );
    }
    assert!(ids.iter().all(|id| *id == ids[0]));
    let rows = store.list_events(Some("c1"), 100).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].repeats, rows[0].last_at, rows[0].at),
        (1000, Some(base + 999), base)
    );
    assert_eq!(
        rows[0].message, "trap 0",
        "the first occurrence's message is kept"
    );

    // Another kind, another connection or another connector: rows of their own.
    store
        .record_event(&event(Some("c1"), base + 5, EventKind::Timeout, "slow"))
        .await
        .unwrap();
    store
        .record_event(&event(Some("c2"), base + 5, EventKind::Trap, "c2"))
        .await
        .unwrap();
    store
        .record_event(&NewEvent {
            connector: "okta@2.0.0".into(),
            ..event(Some("c1"), base + 6, EventKind::Trap, "v2")
        })
        .await
        .unwrap();
    // The window ends a minute after the row's first occurrence: then a new row opens.
    let later = base + idplex_store::EVENT_COALESCE_WINDOW_MS;
    let next = store
        .record_event(&event(Some("c1"), later, EventKind::Trap, "again"))
        .await
        .unwrap();
    assert_ne!(next, ids[0]);
    assert_eq!(store.list_events(Some("c1"), 100).await.unwrap().len(), 4);
    assert_eq!(store.list_events(Some("c2"), 100).await.unwrap().len(), 1);

    // Events without a connection (refused installs) are never coalesced.
    for _ in 0..3 {
        store
            .record_event(&event(None, base, EventKind::InstallRefused, "no"))
            .await
            .unwrap();
    }
    let all = store.list_events(None, 1000).await.unwrap();
    assert_eq!(
        all.iter()
            .filter(|e| e.kind == EventKind::InstallRefused)
            .count(),
        3
    );
    assert!(
        all.iter()
            .filter(|e| e.kind == EventKind::InstallRefused)
            .all(|e| e.repeats == 1)
    );

    // Coalescing can be turned off.
    let store = store.with_event_coalescing(Duration::ZERO);
    for i in 0..3 {
        store
            .record_event(&event(Some("c3"), base + i, EventKind::Trap, "t"))
            .await
            .unwrap();
    }
    assert_eq!(store.list_events(Some("c3"), 100).await.unwrap().len(), 3);
    store.close().await;
}

async fn connector_events_are_pruned_by_age_and_per_connection(db: TestDb) {
    let store = db.open().await.with_event_coalescing(Duration::ZERO);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let day = 24 * 60 * 60 * 1000;
    // c1: 5,200 recent events (more than a prune batch over the cap) and 5 old ones; c2: 3
    // recent; no connection: 4 recent.
    let mut recorded = 0;
    for i in 0..5200 {
        store
            .record_event(&event(Some("c1"), now - i, EventKind::Trap, "t"))
            .await
            .unwrap();
        recorded += 1;
    }
    for i in 0..5 {
        store
            .record_event(&event(
                Some("c1"),
                now - 40 * day - i,
                EventKind::Trap,
                "old",
            ))
            .await
            .unwrap();
    }
    for i in 0..3 {
        store
            .record_event(&event(Some("c2"), now - i, EventKind::Timeout, "t"))
            .await
            .unwrap();
    }
    for i in 0..4 {
        store
            .record_event(&event(None, now - i, EventKind::InstallRefused, "t"))
            .await
            .unwrap();
    }
    assert_eq!(recorded, 5200);

    // Age only (the default cap is above every count here): the 5 old ones go.
    assert_eq!(
        store
            .prune_connector_events(&EventRetention::default())
            .await
            .unwrap(),
        5
    );
    // A cap of 100 per connection: c1 keeps its newest 100; the others are under it.
    let retention = EventRetention {
        max_age_ms: 30 * day,
        max_per_connection: 100,
    };
    assert_eq!(
        store.prune_connector_events(&retention).await.unwrap(),
        5100
    );
    let c1 = store.list_events(Some("c1"), 1000).await.unwrap();
    assert_eq!(c1.len(), 100);
    assert_eq!(c1.first().unwrap().at, now);
    assert_eq!(c1.last().unwrap().at, now - 99, "the newest are kept");
    assert_eq!(store.list_events(Some("c2"), 100).await.unwrap().len(), 3);
    // A cap of 2 applies to the events without a connection too.
    let retention = EventRetention {
        max_age_ms: 30 * day,
        max_per_connection: 2,
    };
    assert_eq!(
        store.prune_connector_events(&retention).await.unwrap(),
        98 + 1 + 2
    );
    let all = store.list_events(None, 1000).await.unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(
        store.prune_connector_events(&retention).await.unwrap(),
        0,
        "idempotent"
    );
    store.close().await;
}
