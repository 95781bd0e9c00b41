//! OpenID Connect provider state: apps whose secrets are kept hashed, codes redeemed once (a
//! second redemption revokes what the first gave, also across two stores on one database), access
//! tokens that stop with their user, signing keys retired in turn, and organizations' session
//! timeouts. Each test runs on SQLite (temp file) and PostgreSQL.

#[macro_use]
mod common;

use common::{TestDb, connection};
use idplex_store::{CodeRedemption, NewDirectoryUser, OidcCode, OidcSigningKey, OrgSessionPolicy, Store};

on_both_backends!(
    apps_keep_only_a_hash_of_their_secret,
    a_code_is_redeemed_once_and_a_replay_revokes_its_tokens,
    access_tokens_stop_with_their_user_and_their_app,
    the_newest_signing_key_signs_and_old_ones_retire,
    an_organizations_session_timeouts_hold_every_session,
);

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn user(store: &Store, connection_id: &str, name: &str) -> String {
    store
        .create_user(&NewDirectoryUser {
            connection_id: connection_id.into(),
            user_name: name.into(),
            external_id: None,
            active: true,
            resource: serde_json::json!({ "userName": name }),
        })
        .await
        .unwrap()
        .id
}

fn code(client_id: &str, user_id: &str, expires_at: i64) -> OidcCode {
    OidcCode {
        id: format!("occ_{}", now_ms()),
        client_id: client_id.into(),
        user_id: user_id.into(),
        redirect_uri: "https://app.example/cb".into(),
        code_challenge: "E9Melhoa2OwvFWEqTa0rfQE0fQKP1Nc2O1mZ4bOE-wc".into(),
        scope: "openid email".into(),
        nonce: Some("n1".into()),
        auth_time: now_ms() - 1000,
        created_at: now_ms(),
        expires_at,
    }
}

async fn apps_keep_only_a_hash_of_their_secret(db: TestDb) {
    let store = db.open().await;
    let uris = vec!["https://app.example/cb".to_owned()];
    let (app, secret) = store.create_oidc_client("org1", "wiki", &uris).await.unwrap();
    assert!(app.id.starts_with("app_") && secret.starts_with("idp_ocs_") && secret.len() == 8 + 64);
    assert_eq!(store.verify_oidc_client(&app.id, &secret).await.unwrap().as_ref(), Some(&app));
    let wrong = format!("idp_ocs_{}", "0".repeat(64));
    for (id, s) in [(app.id.as_str(), wrong.as_str()), (app.id.as_str(), "short"), ("app_nope", secret.as_str())] {
        assert_eq!(store.verify_oidc_client(id, s).await.unwrap(), None, "{id} {s}");
    }
    // Names are unique per organization.
    let err = store.create_oidc_client("org1", "wiki", &uris).await.unwrap_err();
    assert!(err.to_string().contains("already exists in organization org1"), "{err}");
    store.create_oidc_client("org2", "wiki", &uris).await.unwrap();
    // Bounds.
    assert!(store.create_oidc_client("org1", "x", &[]).await.unwrap_err().is_invalid_input());
    assert!(store.create_oidc_client("org1", "", &uris).await.unwrap_err().is_invalid_input());
    let many: Vec<String> = (0..21).map(|i| format!("https://a.example/{i}")).collect();
    assert!(store.create_oidc_client("org1", "x", &many).await.unwrap_err().is_invalid_input());

    // Rotation: the old secret stops at once.
    let (rotated, fresh) = store.rotate_oidc_client_secret(&app.id).await.unwrap();
    assert!(rotated.secret_rotated_at >= app.secret_rotated_at);
    assert_eq!(store.verify_oidc_client(&app.id, &secret).await.unwrap(), None);
    assert!(store.verify_oidc_client(&app.id, &fresh).await.unwrap().is_some());

    let renamed = store.update_oidc_client(&app.id, Some("docs"), None).await.unwrap();
    assert_eq!((renamed.name.as_str(), renamed.redirect_uris.clone()), ("docs", uris.clone()));
    let listed = store.list_oidc_clients().await.unwrap();
    assert_eq!(listed.len(), 2);
    store.delete_oidc_client(&app.id).await.unwrap();
    assert!(store.delete_oidc_client(&app.id).await.unwrap_err().is_not_found());
    assert_eq!(store.oidc_client(&app.id).await.unwrap(), None);
}

async fn a_code_is_redeemed_once_and_a_replay_revokes_its_tokens(db: TestDb) {
    let one = db.open().await;
    let two = db.open().await;
    let conn = connection(&one, "org1", "okta").await;
    let ada = user(&one, &conn.id, "ada@example.com").await;
    let (app, _) = one.create_oidc_client("org1", "wiki", &["https://app.example/cb".into()]).await.unwrap();

    let c = code(&app.id, &ada, now_ms() + 60_000);
    let secret = one.create_oidc_code(&c).await.unwrap();
    let CodeRedemption::Redeemed(redeemed) = two.redeem_oidc_code(&secret, now_ms()).await.unwrap() else {
        panic!("the first redemption redeems");
    };
    assert_eq!(redeemed, c);
    let (token, access) = one.issue_oidc_access_token(&redeemed, now_ms() + 900_000).await.unwrap().expect("issued");
    assert!(one.verify_oidc_access_token(&access, now_ms()).await.unwrap().is_some());

    // The replay, at the other replica: refused, and the token the code gave is revoked.
    match one.redeem_oidc_code(&secret, now_ms()).await.unwrap() {
        CodeRedemption::Reused { client_id, code_id, revoked_tokens } => {
            assert_eq!((client_id, code_id, revoked_tokens), (app.id.clone(), c.id.clone(), 1));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(two.verify_oidc_access_token(&access, now_ms()).await.unwrap(), None, "{token:?} revoked");
    // Nor can a token be issued for it any more (a slow first redemption loses to the replay).
    assert_eq!(one.issue_oidc_access_token(&redeemed, now_ms() + 900_000).await.unwrap(), None);

    // Expired, unknown and malformed codes are simply invalid.
    let stale = one.create_oidc_code(&OidcCode { id: "occ_stale".into(), ..code(&app.id, &ada, now_ms() - 1) }).await.unwrap();
    assert_eq!(one.redeem_oidc_code(&stale, now_ms()).await.unwrap(), CodeRedemption::Invalid);
    assert_eq!(one.redeem_oidc_code(&format!("idp_occ_{}", "1".repeat(64)), now_ms()).await.unwrap(), CodeRedemption::Invalid);
    assert_eq!(one.redeem_oidc_code("idp_occ_x", now_ms()).await.unwrap(), CodeRedemption::Invalid);

    // Two replicas racing for each of 10 codes: exactly one redeems each.
    let mut secrets = Vec::new();
    for i in 0..10 {
        secrets.push(one.create_oidc_code(&OidcCode { id: format!("occ_race{i}"), ..code(&app.id, &ada, now_ms() + 60_000) }).await.unwrap());
    }
    let mut tasks = Vec::new();
    for (i, s) in secrets.iter().enumerate() {
        for store in [one.clone(), two.clone()] {
            let s = s.clone();
            tasks.push(tokio::spawn(async move { (i, store.redeem_oidc_code(&s, now_ms()).await.unwrap()) }));
        }
    }
    let mut wins = [0; 10];
    for t in tasks {
        let (i, r) = t.await.unwrap();
        wins[i] += usize::from(matches!(r, CodeRedemption::Redeemed(_)));
    }
    assert_eq!(wins, [1; 10]);

    // Pending authorization requests: taken once, not after expiry.
    let id = one.remember_oidc_request(&app.id, "{\"scope\":\"openid\"}", now_ms() + 60_000).await.unwrap();
    assert_eq!(two.take_oidc_request(&id, now_ms()).await.unwrap(), Some((app.id.clone(), "{\"scope\":\"openid\"}".into())));
    assert_eq!(one.take_oidc_request(&id, now_ms()).await.unwrap(), None);
    let old = one.remember_oidc_request(&app.id, "{}", now_ms() - 1).await.unwrap();
    assert_eq!(one.take_oidc_request(&old, now_ms()).await.unwrap(), None);
    assert!(one.remember_oidc_request(&app.id, &"x".repeat(9000), now_ms()).await.unwrap_err().is_invalid_input());

    // Pruning removes expired state.
    let far = now_ms() + 3 * 24 * 60 * 60 * 1000;
    assert!(one.prune_oidc(far, 0).await.unwrap() > 0);
    assert_eq!(one.redeem_oidc_code(&stale, now_ms()).await.unwrap(), CodeRedemption::Invalid);
}

async fn access_tokens_stop_with_their_user_and_their_app(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    let ada = user(&store, &conn.id, "ada@example.com").await;
    let (app, _) = store.create_oidc_client("org1", "wiki", &["https://app.example/cb".into()]).await.unwrap();
    let issue = |expires_at: i64| {
        let store = store.clone();
        let c = OidcCode { id: format!("occ_{expires_at}"), ..code(&app.id, &ada, now_ms() + 60_000) };
        async move {
            store.create_oidc_code(&c).await.unwrap();
            store.issue_oidc_access_token(&c, expires_at).await.unwrap().unwrap().1
        }
    };
    let access = issue(now_ms() + 900_000).await;
    let (token, who) = store.verify_oidc_access_token(&access, now_ms()).await.unwrap().unwrap();
    assert_eq!((token.user_id.as_str(), who.user_name.as_str(), token.scope.as_str()), (ada.as_str(), "ada@example.com", "openid email"));

    store.set_user_active(&conn.id, &ada, false).await.unwrap();
    assert_eq!(store.verify_oidc_access_token(&access, now_ms()).await.unwrap(), None);
    store.set_user_active(&conn.id, &ada, true).await.unwrap();
    assert!(store.verify_oidc_access_token(&access, now_ms()).await.unwrap().is_some());

    let expired = issue(now_ms() - 1).await;
    assert_eq!(store.verify_oidc_access_token(&expired, now_ms()).await.unwrap(), None);

    // Revocation by its own app only.
    assert!(!store.revoke_oidc_access_token(&access, "app_other", now_ms()).await.unwrap());
    assert!(store.verify_oidc_access_token(&access, now_ms()).await.unwrap().is_some());
    assert!(store.revoke_oidc_access_token(&access, &app.id, now_ms()).await.unwrap());
    assert_eq!(store.verify_oidc_access_token(&access, now_ms()).await.unwrap(), None);

    let other = issue(now_ms() + 900_000 + 1).await;
    store.delete_oidc_client(&app.id).await.unwrap();
    assert_eq!(store.verify_oidc_access_token(&other, now_ms()).await.unwrap(), None);
}

async fn the_newest_signing_key_signs_and_old_ones_retire(db: TestDb) {
    let store = db.open().await;
    assert!(store.oidc_signing_keys().await.unwrap().is_empty());
    let key = |kid: &str, at: i64| OidcSigningKey {
        kid: kid.into(),
        alg: "RS256".into(),
        private_key_sealed: format!("sealed:{kid}"),
        public_jwk_json: format!("{{\"kid\":\"{kid}\"}}"),
        created_at: at,
        retired_at: None,
    };
    let t = now_ms();
    store.add_oidc_signing_key(&key("k1", t)).await.unwrap();
    store.add_oidc_signing_key(&key("k2", t + 10)).await.unwrap();
    let keys = store.oidc_signing_keys().await.unwrap();
    assert_eq!(keys.iter().map(|k| (k.kid.as_str(), k.retired_at)).collect::<Vec<_>>(), [("k2", None), ("k1", Some(t + 10))]);
    // Retired keys go once they are old enough; the signing one never.
    store.prune_oidc(t, t + 10).await.unwrap();
    let kept: Vec<String> = store.oidc_signing_keys().await.unwrap().into_iter().map(|k| k.kid).collect();
    assert_eq!(kept, ["k2"]);
}

async fn an_organizations_session_timeouts_hold_every_session(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    let other = connection(&store, "org2", "okta").await;
    let ada = user(&store, &conn.id, "ada@example.com").await;
    let bob = user(&store, &other.id, "bob@example.com").await;
    assert_eq!(store.org_session_policy("org1").await.unwrap(), OrgSessionPolicy::default());

    let (_, before) = store.create_user_session(&ada, Some(10 * 60 * 60 * 1000)).await.unwrap();
    let policy = OrgSessionPolicy { session_idle_minutes: Some(30), session_absolute_minutes: Some(60) };
    store.set_org_session_policy("org1", &policy).await.unwrap();
    assert_eq!(store.org_session_policy("org1").await.unwrap(), policy);
    assert!(store.set_org_session_policy("org1", &OrgSessionPolicy { session_idle_minutes: Some(0), ..policy.clone() }).await.is_err());

    // A new session is opened for at most the absolute timeout; another organization's is not.
    let (opened, _) = store.create_user_session(&ada, Some(10 * 60 * 60 * 1000)).await.unwrap();
    assert_eq!(opened.expires_at - opened.created_at, 60 * 60 * 1000);
    let (theirs, _) = store.create_user_session(&bob, Some(10 * 60 * 60 * 1000)).await.unwrap();
    assert_eq!(theirs.expires_at - theirs.created_at, 10 * 60 * 60 * 1000);

    // The session opened before the policy is held to it too: fine while recent and used.
    assert!(store.verify_user_session(&before).await.unwrap().is_some());
    let (session, _) = store.verify_user_session(&before).await.unwrap().unwrap();
    let set = |created: i64, seen: i64| {
        let (db, id) = (db.clone(), session.id.clone());
        async move { common::execute(&db, "UPDATE user_sessions SET created_at = $1, last_seen_at = $2 WHERE id = $3", &[created, seen], &id).await }
    };
    let now = now_ms();
    set(now - 40 * 60_000, now - 31 * 60_000).await; // idle 31 min
    assert!(store.verify_user_session(&before).await.unwrap().is_none());
    set(now - 40 * 60_000, now - 30_000).await; // used just now
    assert!(store.verify_user_session(&before).await.unwrap().is_some());
    set(now - 61 * 60_000, now).await; // opened 61 min ago
    assert!(store.verify_user_session(&before).await.unwrap().is_none());
    store.set_org_session_policy("org1", &OrgSessionPolicy::default()).await.unwrap();
    assert!(store.verify_user_session(&before).await.unwrap().is_some(), "held, never ended");
}
