//! The user lifecycle (SCIM delete policies and soft deletion, user API tokens and sessions that
//! stop when the user is deactivated) and the SCIM sync log, each test run on SQLite (temp file)
//! and PostgreSQL (fresh schema).

#[macro_use]
mod common;

use std::time::Duration;

use common::{TestDb, connection};
use idplex_store::{
    DirectoryUser, NewDirectoryGroup, NewDirectoryUser, OutcomeFilter,
    ScimDeleteOutcome, ScimDeletePolicy, ScimResourceType, SessionEndReason, Store, StoreError,
    SyncLogEntry, SyncLogQuery, SyncOperation, SyncOutcome, UserTokenFilter,
};
use serde_json::{Value, json};

on_both_backends!(
    deactivation_stops_api_tokens_and_sessions_at_once,
    user_api_tokens_expire_revoke_and_list,
    soft_delete_hides_the_user_from_scim_and_create_restores_it,
    delete_policy_removes_the_user_and_its_credentials,
    sync_log_records_pages_filters_and_isolates,
    sync_log_scrubs_and_prunes,
    sync_log_batches_are_one_transaction_that_skips_vanished_directories,
);

fn resource(user_name: &str, active: bool) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": { "givenName": "Ada", "familyName": "Lovelace" },
        "active": active,
    })
}

async fn user(store: &Store, connection_id: &str, user_name: &str) -> DirectoryUser {
    store
        .create_user(&NewDirectoryUser {
            connection_id: connection_id.into(),
            user_name: user_name.into(),
            external_id: Some(format!("ext-{user_name}")),
            active: true,
            resource: resource(user_name, true),
        })
        .await
        .unwrap()
}

async fn replace_active(store: &Store, u: &DirectoryUser, active: bool) -> DirectoryUser {
    store
        .replace_user(
            &u.connection_id,
            &u.id,
            None,
            &u.user_name,
            u.external_id.as_deref(),
            active,
            &resource(&u.user_name, active),
        )
        .await
        .unwrap()
}

async fn token_works(store: &Store, secret: &str) -> bool {
    store.verify_user_api_token(secret).await.unwrap().is_some()
}

async fn session_works(store: &Store, secret: &str) -> bool {
    store.verify_user_session(secret).await.unwrap().is_some()
}

async fn deactivation_stops_api_tokens_and_sessions_at_once(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    let ada = user(&store, &conn.id, "ada@example.com").await;

    let (token, token_secret) = store
        .create_user_api_token(&ada.id, "laptop script", None)
        .await
        .unwrap();
    assert!(token_secret.starts_with("idp_uat_") && token_secret.len() == 8 + 64);
    assert!(token_secret.starts_with(&token.prefix) && token.prefix.len() == 16);
    assert!(token.id.starts_with("uat_"));
    assert_eq!((token.org_id.as_str(), token.user_id.as_str()), ("org1", ada.id.as_str()));
    let (session, session_secret) = store.create_user_session(&ada.id, None).await.unwrap();
    assert!(session_secret.starts_with("idp_ses_"));
    assert_eq!(session.org_id, "org1");

    let (t, u) = store.verify_user_api_token(&token_secret).await.unwrap().unwrap();
    assert_eq!((t.id.as_str(), u.id.as_str(), u.user_name.as_str()), (token.id.as_str(), ada.id.as_str(), "ada@example.com"));
    assert!(t.last_used_at.is_some(), "the use is recorded");
    let (s, u) = store.verify_user_session(&session_secret).await.unwrap().unwrap();
    assert_eq!((s.id.as_str(), u.id.as_str()), (session.id.as_str(), ada.id.as_str()));

    // Deactivated with set_user_active: both stop on the very next check.
    store.set_user_active(&conn.id, &ada.id, false).await.unwrap();
    assert!(!token_works(&store, &token_secret).await);
    assert!(!session_works(&store, &session_secret).await);
    let sessions = store.list_user_sessions(&ada.id).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].ended_at.is_some());
    assert_eq!(sessions[0].end_reason, Some(SessionEndReason::UserDeactivated));

    // Nothing is issued to an inactive user.
    let err = store.create_user_api_token(&ada.id, "x", None).await.unwrap_err();
    assert!(matches!(&err, StoreError::Conflict { reason, .. } if reason.contains("inactive")), "{err}");
    assert!(store.create_user_session(&ada.id, None).await.unwrap_err().is_conflict());
    assert!(store.create_user_api_token("nope", "x", None).await.unwrap_err().is_not_found());
    assert!(store.create_user_session("nope", None).await.unwrap_err().is_not_found());

    // Reactivated: the API token works again, the ended session does not.
    store.set_user_active(&conn.id, &ada.id, true).await.unwrap();
    assert!(token_works(&store, &token_secret).await);
    assert!(!session_works(&store, &session_secret).await);
    let (_, second_session) = store.create_user_session(&ada.id, None).await.unwrap();
    assert!(session_works(&store, &second_session).await);

    // Deactivated with replace_user (SCIM PUT, or PATCH active=false): same effect.
    let ada = store.get_user(&conn.id, &ada.id).await.unwrap();
    replace_active(&store, &ada, false).await;
    assert!(!token_works(&store, &token_secret).await);
    assert!(!session_works(&store, &second_session).await);
    let ended: Vec<_> = store
        .list_user_sessions(&ada.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.end_reason)
        .collect();
    assert_eq!(ended, vec![Some(SessionEndReason::UserDeactivated); 2]);
    // A replace that keeps the user inactive changes nothing about that.
    let ada = store.get_user(&conn.id, &ada.id).await.unwrap();
    replace_active(&store, &ada, false).await;
    let ada = store.get_user(&conn.id, &ada.id).await.unwrap();
    replace_active(&store, &ada, true).await;
    assert!(token_works(&store, &token_secret).await);
    assert!(!session_works(&store, &second_session).await);

    // A failed replace (stale If-Match) ends nothing.
    let (_, third_session) = store.create_user_session(&ada.id, None).await.unwrap();
    let err = store
        .replace_user(&conn.id, &ada.id, Some(1), &ada.user_name, None, false, &resource("x", false))
        .await
        .unwrap_err();
    assert!(err.is_precondition_failed(), "{err}");
    assert!(session_works(&store, &third_session).await);
    assert!(token_works(&store, &token_secret).await);

    // An admin ends a session: reason `revoked`, idempotent.
    let (third, _) = store.verify_user_session(&third_session).await.unwrap().unwrap();
    let ended = store.end_user_session(&third.id).await.unwrap();
    assert_eq!(ended.end_reason, Some(SessionEndReason::Revoked));
    assert_eq!(store.end_user_session(&third.id).await.unwrap().ended_at, ended.ended_at);
    assert!(!session_works(&store, &third_session).await);
    assert!(store.end_user_session("ses_nope").await.unwrap_err().is_not_found());

    // Wrong, malformed and foreign secrets.
    for bad in [
        String::new(),
        "idp_uat_".to_string(),
        format!("idp_uat_{}", "0".repeat(64)),
        token_secret.to_uppercase(),
        session_secret.clone(),
        format!("{token_secret}x"),
    ] {
        assert!(!token_works(&store, &bad).await, "{bad}");
    }
    assert!(!session_works(&store, &token_secret).await);
    store.close().await;
}

async fn user_api_tokens_expire_revoke_and_list(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;
    let b = connection(&store, "org2", "entra").await;
    let ada = user(&store, &a.id, "ada@example.com").await;
    let bob = user(&store, &b.id, "bob@example.com").await;

    // (Pauses keep creation times apart: listings are newest first.)
    let (short, short_secret) = store.create_user_api_token(&ada.id, "short", Some(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    let (keep, keep_secret) = store.create_user_api_token(&ada.id, "  ci  ", None).await.unwrap();
    assert_eq!(keep.label, "ci");
    assert!(keep.expires_at - keep.created_at == idplex_store::USER_API_TOKEN_DEFAULT_TTL_MS);
    tokio::time::sleep(Duration::from_millis(3)).await;
    let (bobs, _) = store.create_user_api_token(&bob.id, "bob's", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(!token_works(&store, &short_secret).await, "expired");
    assert!(token_works(&store, &keep_secret).await);

    for (label, ttl) in [("", None), (" ", None), (&"x".repeat(201)[..], None), ("ok", Some(0)), ("ok", Some(-5))] {
        assert!(
            matches!(store.create_user_api_token(&ada.id, label, ttl).await, Err(StoreError::InvalidInput { .. })),
            "{label:?} {ttl:?}"
        );
    }

    let revoked = store.revoke_user_api_token(&keep.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(!token_works(&store, &keep_secret).await);
    assert_eq!(store.revoke_user_api_token(&keep.id).await.unwrap().revoked_at, revoked.revoked_at);
    assert!(store.revoke_user_api_token("uat_nope").await.unwrap_err().is_not_found());

    // Listing: newest first, owner shown, filtered by user or organization; never a secret.
    let all = store.list_user_api_tokens(UserTokenFilter::All, None, None).await.unwrap().tokens;
    let ids: Vec<&str> = all.iter().map(|t| t.token.id.as_str()).collect();
    assert_eq!(ids, [bobs.id.as_str(), keep.id.as_str(), short.id.as_str()]);
    let org1 = store.list_user_api_tokens(UserTokenFilter::Org("org1"), None, None).await.unwrap().tokens;
    assert_eq!(org1.len(), 2);
    assert!(org1.iter().all(|t| t.user_name == "ada@example.com" && t.user_active && t.connection_id == a.id));
    let bob_only = store.list_user_api_tokens(UserTokenFilter::User(&bob.id), None, None).await.unwrap().tokens;
    assert_eq!(bob_only.len(), 1);
    assert_eq!(bob_only[0].token.label, "bob's");
    assert!(store.list_user_api_tokens(UserTokenFilter::Org("org9"), None, None).await.unwrap().tokens.is_empty());
    // A page at a time, newest first, each token once; a cursor the server never issued is refused.
    let mut paged = Vec::new();
    let mut before: Option<idplex_store::UserTokenCursor> = None;
    loop {
        let page = store.list_user_api_tokens(UserTokenFilter::All, Some(2), before.as_ref()).await.unwrap();
        assert!(page.tokens.len() <= 2);
        paged.extend(page.tokens.into_iter().map(|t| t.token.id));
        match page.next {
            Some(next) => before = Some(next.to_string().parse().unwrap()),
            None => break,
        }
    }
    assert_eq!(paged, ids, "pages add up to the whole listing, in order");
    assert!("12x_".parse::<idplex_store::UserTokenCursor>().is_err());
    assert!("nonsense".parse::<idplex_store::UserTokenCursor>().is_err());
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains(&keep_secret) && !text.contains("hash"), "{text}");
    assert!(all[1].token.last_used_at.is_some(), "verified once");

    // The owner's state shows in the listing.
    store.set_user_active(&a.id, &ada.id, false).await.unwrap();
    let org1 = store.list_user_api_tokens(UserTokenFilter::Org("org1"), None, None).await.unwrap().tokens;
    assert!(org1.iter().all(|t| !t.user_active));
    store.close().await;
}

async fn soft_delete_hides_the_user_from_scim_and_create_restores_it(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    let other = connection(&store, "org1", "entra").await;
    assert_eq!(conn.scim_delete_policy, ScimDeletePolicy::Deactivate, "the default");
    let ada = user(&store, &conn.id, "ada@example.com").await;
    let bob = user(&store, &conn.id, "bob@example.com").await;
    let eng = store
        .create_group(&NewDirectoryGroup {
            connection_id: conn.id.clone(),
            display_name: "Engineering".into(),
            external_id: None,
            resource: json!({"displayName": "Engineering"}),
            members: vec![ada.id.clone(), bob.id.clone()],
        })
        .await
        .unwrap();
    let (_, token_secret) = store.create_user_api_token(&ada.id, "cli", None).await.unwrap();
    let (_, session_secret) = store.create_user_session(&ada.id, None).await.unwrap();

    // A conditional delete at another version is refused and changes nothing.
    let stale = store.scim_delete_user(&conn.id, &ada.id, Some(ada.version + 1)).await.unwrap_err();
    assert!(stale.is_precondition_failed(), "{stale}");
    assert!(store.get_user(&conn.id, &ada.id).await.unwrap().active);
    assert!(store.verify_user_api_token(&token_secret).await.unwrap().is_some(), "nothing changed");
    assert_eq!(
        store.scim_delete_user(&conn.id, &ada.id, Some(ada.version)).await.unwrap(),
        ScimDeleteOutcome::Deactivated
    );

    // SCIM-facing reads and writes: absent.
    let nf = |r: Result<DirectoryUser, StoreError>| matches!(r, Err(e) if e.is_not_found());
    assert!(nf(store.get_user(&conn.id, &ada.id).await));
    assert!(nf(store.set_user_active(&conn.id, &ada.id, true).await));
    assert!(nf(store.replace_user(&conn.id, &ada.id, None, "ada@example.com", None, true, &resource("a", true)).await));
    assert!(
        nf(store.replace_user(&conn.id, &ada.id, Some(2), "ada@example.com", None, true, &resource("a", true)).await),
        "a version probe does not reveal it either"
    );
    assert!(store.find_users_by_user_name(&conn.id, "ADA@example.com").await.unwrap().is_empty());
    assert!(store.find_users_by_external_id(&conn.id, "ext-ada@example.com").await.unwrap().is_empty());
    let (listed, total) = store.list_users(&conn.id, 0, 100).await.unwrap();
    assert_eq!((listed.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), total), (vec![bob.id.as_str()], 1));
    assert!(store.groups_of_user(&conn.id, &ada.id).await.unwrap_err().is_not_found());
    assert_eq!(store.get_group(&conn.id, &eng.id).await.unwrap().members, vec![bob.id.clone()]);
    let (groups, _) = store.list_groups(&conn.id, 0, 10, true).await.unwrap();
    assert_eq!(groups[0].members, vec![bob.id.clone()]);
    assert!(store.add_group_members(&conn.id, &eng.id, std::slice::from_ref(&ada.id)).await.unwrap_err().is_not_found());
    assert!(store.scim_delete_user(&conn.id, &ada.id, None).await.unwrap_err().is_not_found(), "404 from then on");
    // A full replace of the group's members (the IdP never sees Ada) keeps her hidden membership.
    let replaced = store
        .replace_group(&conn.id, &eng.id, None, "Engineering", None, &json!({}), Some(vec![bob.id.clone()]))
        .await
        .unwrap();
    assert_eq!(replaced.members, vec![bob.id.clone()]);

    // Its credentials stop; its sessions are ended for good.
    assert!(!token_works(&store, &token_secret).await);
    assert!(!session_works(&store, &session_secret).await);
    assert_eq!(store.list_user_sessions(&ada.id).await.unwrap()[0].end_reason, Some(SessionEndReason::UserDeleted));
    assert!(store.create_user_api_token(&ada.id, "x", None).await.unwrap_err().is_conflict());

    // Admins still see it, deactivated and marked deleted.
    let seen = store.get_user_for_admin(&ada.id).await.unwrap();
    assert!(!seen.active && seen.scim_deleted_at.is_some() && seen.deactivated_at.is_some());
    assert_eq!(seen.resource["active"], false);
    assert_eq!(seen.version, ada.version + 1);
    let (all, total) = store.list_users_including_deleted(&conn.id, 0, 100).await.unwrap();
    assert_eq!((all.len(), total), (2, 2));
    assert!(store.list_user_api_tokens(UserTokenFilter::User(&ada.id), None, None).await.unwrap().tokens[0].user_scim_deleted_at.is_some());

    // It still holds its userName: another directory of the organization cannot take it...
    let err = store
        .create_user(&NewDirectoryUser {
            connection_id: other.id.clone(),
            user_name: "Ada@Example.com".into(),
            external_id: None,
            active: true,
            resource: resource("Ada@Example.com", true),
        })
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(store.get_user_for_admin(&ada.id).await.unwrap().scim_deleted_at.is_some());

    // ...but a create through its own directory restores it: same id, new resource, bumped version.
    let restored = store
        .create_user(&NewDirectoryUser {
            connection_id: conn.id.clone(),
            user_name: "Ada@Example.com".into(),
            external_id: Some("okta-42".into()),
            active: true,
            resource: json!({"userName": "Ada@Example.com", "title": "Countess"}),
        })
        .await
        .unwrap();
    assert_eq!(restored.id, ada.id);
    assert_eq!(restored.created_at, ada.created_at);
    assert_eq!(restored.version, ada.version + 2);
    assert_eq!((restored.active, restored.scim_deleted_at, restored.deactivated_at), (true, None, None));
    assert_eq!(restored.user_name, "Ada@Example.com");
    assert_eq!(restored.external_id.as_deref(), Some("okta-42"));
    assert_eq!(restored.resource, json!({"userName": "Ada@Example.com", "title": "Countess"}));
    assert_eq!(store.get_user(&conn.id, &ada.id).await.unwrap(), restored);
    let mut members = store.get_group(&conn.id, &eng.id).await.unwrap().members;
    members.sort();
    let mut expected = vec![ada.id.clone(), bob.id.clone()];
    expected.sort();
    assert_eq!(members, expected, "memberships were kept");
    assert_eq!(store.groups_of_user(&conn.id, &ada.id).await.unwrap().len(), 1);
    assert!(token_works(&store, &token_secret).await, "API tokens work again");
    assert!(!session_works(&store, &session_secret).await, "sessions stay ended");

    // A live user still conflicts, and a restore as inactive keeps it deactivated.
    let err = store
        .create_user(&NewDirectoryUser {
            connection_id: conn.id.clone(),
            user_name: "ada@example.com".into(),
            external_id: None,
            active: true,
            resource: resource("ada@example.com", true),
        })
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    store.scim_delete_user(&conn.id, &bob.id, None).await.unwrap();
    let bob_again = store
        .create_user(&NewDirectoryUser {
            connection_id: conn.id.clone(),
            user_name: "bob@example.com".into(),
            external_id: None,
            active: false,
            resource: resource("bob@example.com", false),
        })
        .await
        .unwrap();
    assert_eq!(bob_again.id, bob.id);
    assert!(!bob_again.active && bob_again.deactivated_at.is_some() && bob_again.scim_deleted_at.is_none());
    store.close().await;
}

async fn delete_policy_removes_the_user_and_its_credentials(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    let other = connection(&store, "org1", "entra").await;
    let set = store.set_scim_delete_policy(&conn.id, ScimDeletePolicy::Delete).await.unwrap();
    assert_eq!(set.scim_delete_policy, ScimDeletePolicy::Delete);
    assert_eq!(store.get_connection(&conn.id).await.unwrap().scim_delete_policy, ScimDeletePolicy::Delete);
    let listed = store.list_connections().await.unwrap();
    let policies: Vec<_> = listed.iter().map(|c| (c.id.as_str(), c.scim_delete_policy)).collect();
    assert!(policies.contains(&(conn.id.as_str(), ScimDeletePolicy::Delete)));
    assert!(policies.contains(&(other.id.as_str(), ScimDeletePolicy::Deactivate)), "per connection");
    assert!(
        store.set_scim_delete_policy("conn_nope", ScimDeletePolicy::Delete).await.unwrap_err().is_not_found()
    );
    assert_eq!(
        serde_json::to_value(&set).unwrap()["scim_delete_policy"],
        "delete",
        "shown in the connection's JSON"
    );

    let ada = user(&store, &conn.id, "ada@example.com").await;
    let bob = user(&store, &conn.id, "bob@example.com").await;
    let eng = store
        .create_group(&NewDirectoryGroup {
            connection_id: conn.id.clone(),
            display_name: "Engineering".into(),
            external_id: None,
            resource: json!({}),
            members: vec![ada.id.clone(), bob.id.clone()],
        })
        .await
        .unwrap();
    let (_, token_secret) = store.create_user_api_token(&ada.id, "cli", None).await.unwrap();
    store.create_user_session(&ada.id, None).await.unwrap();

    // Another connection cannot delete it.
    assert!(store.scim_delete_user(&other.id, &ada.id, None).await.unwrap_err().is_not_found());

    assert_eq!(store.scim_delete_user(&conn.id, &ada.id, None).await.unwrap(), ScimDeleteOutcome::Deleted);
    assert!(store.get_user_for_admin(&ada.id).await.unwrap_err().is_not_found());
    assert!(store.scim_delete_user(&conn.id, &ada.id, None).await.unwrap_err().is_not_found());
    assert!(!token_works(&store, &token_secret).await);
    assert!(store.list_user_api_tokens(UserTokenFilter::User(&ada.id), None, None).await.unwrap().tokens.is_empty(), "cascaded");
    assert!(store.list_user_sessions(&ada.id).await.unwrap().is_empty(), "cascaded");
    assert_eq!(store.get_group(&conn.id, &eng.id).await.unwrap().members, vec![bob.id.clone()]);
    let fresh = user(&store, &conn.id, "ada@example.com").await;
    assert_ne!(fresh.id, ada.id);
    assert_eq!(fresh.version, 1);

    // Switching back: the next delete deactivates.
    store.set_scim_delete_policy(&conn.id, ScimDeletePolicy::Deactivate).await.unwrap();
    assert_eq!(store.scim_delete_user(&conn.id, &bob.id, None).await.unwrap(), ScimDeleteOutcome::Deactivated);
    assert!(store.get_user_for_admin(&bob.id).await.unwrap().scim_deleted_at.is_some());
    // An admin purge removes a soft-deleted user for good.
    store.delete_user(&conn.id, &bob.id).await.unwrap();
    assert!(store.get_user_for_admin(&bob.id).await.unwrap_err().is_not_found());
    store.close().await;
}

fn entry(connection_id: &str, at: i64, status: u16, resource_id: Option<&str>) -> SyncLogEntry {
    SyncLogEntry {
        connection_id: connection_id.into(),
        at,
        method: "PATCH".into(),
        path: format!("/scim/v2/{connection_id}/Users/{}", resource_id.unwrap_or("")),
        resource_type: Some(ScimResourceType::User),
        resource_id: resource_id.map(str::to_owned),
        operation: SyncOperation::Patch,
        status,
        outcome: SyncOutcome::for_status(status),
        scim_type: (status == 409).then(|| "uniqueness".to_owned()),
        detail: (status >= 400).then(|| format!("failed with {status}")),
        duration_us: 1234,
        user_agent: Some("Okta SCIM Client 1.0.0".into()),
    }
}

async fn sync_log_records_pages_filters_and_isolates(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;
    let b = connection(&store, "org1", "entra").await;
    let empty = store.list_sync_log(&a.id, &SyncLogQuery::default()).await.unwrap();
    assert!(empty.entries.is_empty() && empty.next.is_none());

    // 25 entries on A, several sharing a timestamp (ties broken by id); 3 on B.
    let statuses = [200u16, 201, 409, 404, 502];
    let mut ids = Vec::new();
    for i in 0..25 {
        let e = entry(&a.id, 1_000 + (i / 3) as i64, statuses[i % 5], Some(&format!("u{}", i % 4)));
        ids.push((e.at, store.record_sync(&e).await.unwrap()));
    }
    for i in 0..3 {
        store.record_sync(&entry(&b.id, 1_000 + i, 500, Some("u0"))).await.unwrap();
    }
    ids.sort_by(|x, y| y.cmp(x));

    let first = store.list_sync_log(&a.id, &SyncLogQuery::default()).await.unwrap();
    assert_eq!(first.entries.len(), 25);
    assert!(first.next.is_none());
    assert_eq!(first.entries.iter().map(|r| (r.entry.at, r.id)).collect::<Vec<_>>(), ids, "newest first");
    let e = &first.entries[0].entry;
    assert_eq!((e.operation, e.resource_type, e.duration_us), (SyncOperation::Patch, Some(ScimResourceType::User), 1234));
    assert_eq!(e.user_agent.as_deref(), Some("Okta SCIM Client 1.0.0"));
    assert!(first.entries.iter().all(|r| r.entry.connection_id == a.id), "B's entries stay in B");

    // Paging by 4: every entry once, in order, and `next` is None exactly on the last page.
    let mut seen = Vec::new();
    let mut query = SyncLogQuery { limit: Some(4), ..SyncLogQuery::default() };
    loop {
        let page = store.list_sync_log(&a.id, &query).await.unwrap();
        assert!(page.entries.len() <= 4);
        seen.extend(page.entries.iter().map(|r| (r.entry.at, r.id)));
        match page.next {
            Some(next) => query.before = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    // A cursor survives its string form.
    let page = store.list_sync_log(&a.id, &SyncLogQuery { limit: Some(3), ..SyncLogQuery::default() }).await.unwrap();
    let cursor = page.next.unwrap();
    assert_eq!(cursor.to_string().parse::<idplex_store::SyncLogCursor>().unwrap(), cursor);

    // Filters: one outcome, any error, one resource; and combined.
    let only = |q: SyncLogQuery| {
        let store = store.clone();
        let a = a.id.clone();
        async move { store.list_sync_log(&a, &q).await.unwrap().entries }
    };
    let client = only(SyncLogQuery { outcome: Some(OutcomeFilter::Is(SyncOutcome::ClientError)), ..Default::default() }).await;
    assert_eq!(client.len(), 10);
    assert!(client.iter().all(|r| r.entry.outcome == SyncOutcome::ClientError));
    let errors = only(SyncLogQuery { outcome: Some(OutcomeFilter::AnyError), ..Default::default() }).await;
    assert_eq!(errors.len(), 15);
    assert!(errors.iter().all(|r| r.entry.status >= 400));
    let u1 = only(SyncLogQuery { resource_id: Some("u1".into()), ..Default::default() }).await;
    assert_eq!(u1.len(), 6);
    let u1_errors = only(SyncLogQuery {
        resource_id: Some("u1".into()),
        outcome: Some(OutcomeFilter::AnyError),
        limit: Some(2),
        ..Default::default()
    })
    .await;
    assert_eq!(u1_errors.len(), 2);
    assert!(u1_errors.iter().all(|r| r.entry.resource_id.as_deref() == Some("u1") && r.entry.status >= 400));

    // Limits are clamped to 1..=1000.
    assert_eq!(only(SyncLogQuery { limit: Some(0), ..Default::default() }).await.len(), 1);
    let b_page = store.list_sync_log(&b.id, &SyncLogQuery { limit: Some(5000), ..Default::default() }).await.unwrap();
    assert_eq!(b_page.entries.len(), 3);
    assert!(store.list_sync_log("conn_nope", &SyncLogQuery::default()).await.unwrap().entries.is_empty());

    // An unknown connection cannot be written to.
    assert!(store.record_sync(&entry("conn_nope", 1, 200, None)).await.unwrap_err().is_not_found());
    store.close().await;
}

async fn sync_log_scrubs_and_prunes(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;
    let b = connection(&store, "org2", "okta").await;
    let secret = format!("idp_scim_{}", "0123456789abcdef".repeat(4));
    let id = store
        .record_sync(&SyncLogEntry {
            path: format!("/scim/v2/{}/Users?filter=userName%20eq%20%22x%22", a.id),
            detail: Some(format!("token {secret} and Authorization: Bearer {secret}; {}", "é".repeat(3000))),
            user_agent: Some("U".repeat(500)),
            resource_type: None,
            operation: SyncOperation::Other,
            ..entry(&a.id, 5, 401, None)
        })
        .await
        .unwrap();
    let page = store.list_sync_log(&a.id, &SyncLogQuery::default()).await.unwrap();
    let stored = &page.entries[0];
    assert_eq!(stored.id, id);
    assert_eq!(stored.entry.path, format!("/scim/v2/{}/Users", a.id), "no query string");
    let detail = stored.entry.detail.as_deref().unwrap();
    assert!(!detail.contains("0123456789abcdef"), "{detail}");
    assert!(detail.starts_with("token idp_scim_<redacted> and Authorization: Bearer <redacted>; é"), "{detail}");
    assert!(detail.len() <= idplex_store::MAX_SYNC_DETAIL_BYTES && detail.ends_with('…'));
    assert!(stored.entry.user_agent.as_deref().unwrap().len() <= idplex_store::MAX_SYNC_USER_AGENT_BYTES);
    assert_eq!((stored.entry.operation, stored.entry.resource_type), (SyncOperation::Other, None));

    // Pruning by age, in every directory; newer entries stay.
    for at in [10, 20, 30] {
        store.record_sync(&entry(&a.id, at, 200, None)).await.unwrap();
        store.record_sync(&entry(&b.id, at, 200, None)).await.unwrap();
    }
    assert_eq!(store.prune_sync_log(20).await.unwrap(), 3, "a: 5 and 10, b: 10");
    let left = |c: String| {
        let store = store.clone();
        async move {
            store
                .list_sync_log(&c, &SyncLogQuery::default())
                .await
                .unwrap()
                .entries
                .iter()
                .map(|r| r.entry.at)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(left(a.id.clone()).await, [30, 20]);
    assert_eq!(left(b.id.clone()).await, [30, 20]);
    assert_eq!(store.prune_sync_log(20).await.unwrap(), 0);
    assert_eq!(store.prune_sync_log(i64::MAX).await.unwrap(), 4);
    store.close().await;
}

async fn sync_log_batches_are_one_transaction_that_skips_vanished_directories(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;
    let b = connection(&store, "org1", "entra").await;
    let secret = format!("idp_scim_{}", "0123456789abcdef".repeat(4));
    let batch = vec![
        entry(&a.id, 1, 201, Some("u1")),
        entry("conn_gone", 2, 200, None),
        SyncLogEntry { detail: Some(format!("bad token {secret}")), ..entry(&b.id, 3, 401, None) },
        entry(&a.id, 4, 204, Some("u1")),
    ];
    assert_eq!(store.record_sync_batch(&batch).await.unwrap(), 3);
    assert_eq!(store.record_sync_batch(&[]).await.unwrap(), 0);
    let a_log = store.list_sync_log(&a.id, &SyncLogQuery::default()).await.unwrap();
    assert_eq!(a_log.entries.iter().map(|r| r.entry.at).collect::<Vec<_>>(), [4, 1]);
    let b_log = store.list_sync_log(&b.id, &SyncLogQuery::default()).await.unwrap();
    let detail = b_log.entries[0].entry.detail.as_deref().unwrap();
    assert!(!detail.contains("0123456789abcdef"), "batches are scrubbed too: {detail}");
    store.close().await;
}
