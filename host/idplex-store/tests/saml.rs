//! SAML sign-in state: per-connection settings that fail closed, e-mail domain routing, the
//! outstanding AuthnRequests (answered once) and the replay cache, shared by two stores on one
//! database as two replicas would be. Each test runs on SQLite (temp file) and PostgreSQL.

#[macro_use]
mod common;

use common::{TestDb, connection};
use idplex_store::{FinishSignIn, NewDirectoryUser, SamlSettings, SignInFinished, StoreError};

on_both_backends!(
    settings_round_trip_and_fail_closed,
    domains_route_to_one_connection,
    requests_are_answered_once_and_expire,
    an_assertion_is_accepted_once_across_replicas,
    single_logout_ends_the_sessions_the_idp_names,
    a_sign_in_finishes_as_one_unit_and_once,
);

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The directory user ada@example.com of the connection, active.
async fn ada(store: &idplex_store::Store, connection_id: &str) -> idplex_store::DirectoryUser {
    store
        .create_user(&NewDirectoryUser {
            connection_id: connection_id.into(),
            user_name: "ada@example.com".into(),
            external_id: None,
            active: true,
            resource: serde_json::json!({"userName": "ada@example.com"}),
        })
        .await
        .unwrap()
}

fn settings(connection_id: &str) -> SamlSettings {
    SamlSettings {
        connection_id: connection_id.into(),
        idp_entity_id: "https://idp.example.com/saml".into(),
        sso_url: "https://idp.example.com/sso".into(),
        certificates: vec!["MIIBcert1".into(), "MIIBcert2".into()],
        enabled: true,
        allow_idp_initiated: false,
        allow_response_only_signing: false,
        sign_authn_requests: false,
        slo_url: None,
        jit_sync_groups: false,
        jit: true,
        session_ttl_minutes: Some(480),
        metadata_valid_until: None,
        created_at: 0,
        updated_at: 0,
    }
}

async fn settings_round_trip_and_fail_closed(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    assert_eq!(store.saml_settings(&conn.id).await.unwrap(), None);

    let stored = store.put_saml_settings(&settings(&conn.id)).await.unwrap();
    assert_eq!(store.saml_settings(&conn.id).await.unwrap().as_ref(), Some(&stored));
    assert_eq!(stored.certificates, ["MIIBcert1", "MIIBcert2"], "rollover keeps both, in order");

    // A replacement keeps created_at and changes the rest.
    let mut next = settings(&conn.id);
    next.certificates = vec!["MIIBcert2".into()];
    next.allow_idp_initiated = true;
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let replaced = store.put_saml_settings(&next).await.unwrap();
    assert_eq!(replaced.created_at, stored.created_at);
    assert!(replaced.updated_at > stored.updated_at);
    let read = store.saml_settings(&conn.id).await.unwrap().unwrap();
    assert_eq!(read.certificates, ["MIIBcert2"]);
    assert!(read.allow_idp_initiated);

    // Fail closed: enabled without a certificate is refused, and nothing changes.
    let mut open = settings(&conn.id);
    open.certificates.clear();
    let err = store.put_saml_settings(&open).await.unwrap_err();
    assert!(err.is_invalid_input() && err.to_string().contains("without an IdP signing certificate"), "{err}");
    assert_eq!(store.saml_settings(&conn.id).await.unwrap().unwrap().certificates, ["MIIBcert2"]);
    // Disabled without one is fine (set up now, certificate later).
    open.enabled = false;
    store.put_saml_settings(&open).await.unwrap();

    let mut bad = settings(&conn.id);
    bad.session_ttl_minutes = Some(0);
    assert!(store.put_saml_settings(&bad).await.unwrap_err().is_invalid_input());
    let err = store.put_saml_settings(&settings("conn_nope")).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    assert!(store.delete_saml_settings(&conn.id).await.unwrap());
    assert!(!store.delete_saml_settings(&conn.id).await.unwrap());
    assert_eq!(store.saml_settings(&conn.id).await.unwrap(), None);
}

async fn domains_route_to_one_connection(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;
    let b = connection(&store, "org2", "entra").await;
    let set = store
        .set_sso_domains(&a.id, &["example.com".into(), "eu.example.com".into(), "example.com".into()])
        .await
        .unwrap();
    assert_eq!(set, ["eu.example.com", "example.com"], "sorted, deduplicated");
    assert_eq!(store.connection_for_domain("EXAMPLE.com").await.unwrap().as_deref(), Some(a.id.as_str()));
    assert_eq!(store.connection_for_domain("other.com").await.unwrap(), None);

    // Another connection cannot take a routed domain; its own set stays as it was.
    store.set_sso_domains(&b.id, &["contoso.com".into()]).await.unwrap();
    let err = store.set_sso_domains(&b.id, &["fabrikam.com".into(), "example.com".into()]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }) && err.to_string().contains("example.com"), "{err}");
    assert_eq!(store.sso_domains(&b.id).await.unwrap(), ["contoso.com"]);
    assert_eq!(store.connection_for_domain("example.com").await.unwrap().as_deref(), Some(a.id.as_str()));

    // Replacing moves nothing else; an empty set releases the domains.
    store.set_sso_domains(&a.id, &[]).await.unwrap();
    store.set_sso_domains(&b.id, &["example.com".into()]).await.unwrap();
    assert_eq!(store.connection_for_domain("example.com").await.unwrap().as_deref(), Some(b.id.as_str()));

    for bad in ["Example.com", "example", "exa mple.com", ""] {
        let err = store.set_sso_domains(&a.id, &[bad.into()]).await.unwrap_err();
        assert!(err.is_invalid_input(), "{bad}: {err}");
    }
    assert!(store.set_sso_domains("conn_nope", &["nope.com".into()]).await.unwrap_err().is_not_found());
}

/// What finishing a sign-in of `user` through `connection_id` writes, for `assertion` answering
/// `request`.
fn finish(connection_id: &str, user: &str, assertion: &str, request: Option<&str>) -> FinishSignIn {
    FinishSignIn {
        connection_id: connection_id.into(),
        assertion_id: assertion.into(),
        assertion_expires_at: now_ms() + 300_000,
        request_id: request.map(str::to_owned),
        user_id: user.into(),
        session_ttl_ms: None,
        idp_session: None,
    }
}

async fn requests_are_answered_once_and_expire(db: TestDb) {
    let store = db.open().await;
    let a = connection(&store, "org1", "okta").await;
    let b = connection(&store, "org2", "entra").await;
    let (ada_a, ada_b) = (ada(&store, &a.id).await.id, ada(&store, &b.id).await.id);
    let now = now_ms();
    store.remember_saml_request("_r1", &a.id, Some("/apps/wiki"), now + 60_000).await.unwrap();
    let err = store.remember_saml_request("_r1", &a.id, None, now + 60_000).await.unwrap_err();
    assert!(err.is_conflict(), "an ID is issued once: {err}");

    // Another connection cannot answer it, and trying does not consume it.
    assert!(!store.saml_request_pending("_r1", &b.id, now).await.unwrap());
    assert_eq!(store.finish_sign_in(finish(&b.id, &ada_b, "_a0", Some("_r1"))).await.unwrap(), SignInFinished::NoRequest);
    assert!(store.saml_request_pending("_r1", &a.id, now).await.unwrap());
    match store.finish_sign_in(finish(&a.id, &ada_a, "_a1", Some("_r1"))).await.unwrap() {
        SignInFinished::Done { relay_state, .. } => assert_eq!(relay_state.as_deref(), Some("/apps/wiki")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.finish_sign_in(finish(&a.id, &ada_a, "_a2", Some("_r1"))).await.unwrap(),
        SignInFinished::NoRequest,
        "answered once"
    );

    // Expired: refused, and gone.
    store.remember_saml_request("_r2", &a.id, None, now - 1).await.unwrap();
    assert!(!store.saml_request_pending("_r2", &a.id, now).await.unwrap());
    assert_eq!(store.finish_sign_in(finish(&a.id, &ada_a, "_a3", Some("_r2"))).await.unwrap(), SignInFinished::NoRequest);

    assert!(store.remember_saml_request("", &a.id, None, now).await.unwrap_err().is_invalid_input());
    let long = "x".repeat(2000);
    assert!(store.remember_saml_request("_r3", &a.id, Some(&long), now).await.unwrap_err().is_invalid_input());
    assert!(store.remember_saml_request("_r4", "conn_nope", None, now).await.unwrap_err().is_not_found());
    assert_eq!(store.finish_sign_in(finish(&a.id, &ada_a, "_a4", Some(&long))).await.unwrap(), SignInFinished::NoRequest);
    assert!(store.finish_sign_in(finish(&a.id, &ada_a, "", None)).await.unwrap_err().is_invalid_input());

    // Pruning removes what expired and keeps the rest.
    store.remember_saml_request("_old", &a.id, None, now - 1).await.unwrap();
    store.remember_saml_request("_new", &a.id, None, now + 60_000).await.unwrap();
    assert!(store.prune_saml(now).await.unwrap() >= 1);
    assert!(store.saml_request_pending("_new", &a.id, now).await.unwrap());
}

async fn an_assertion_is_accepted_once_across_replicas(db: TestDb) {
    // Two stores on one database: two replicas behind a load balancer.
    let one = db.open().await;
    let two = db.open().await;
    let a = connection(&one, "org1", "okta").await;
    let b = connection(&one, "org2", "entra").await;
    let (ada_a, ada_b) = (ada(&one, &a.id).await.id, ada(&one, &b.id).await.id);
    assert!(matches!(one.finish_sign_in(finish(&a.id, &ada_a, "_assert-1", None)).await.unwrap(), SignInFinished::Done { .. }));
    assert!(one.saml_assertion_seen(&a.id, "_assert-1").await.unwrap());
    assert_eq!(two.finish_sign_in(finish(&a.id, &ada_a, "_assert-1", None)).await.unwrap(), SignInFinished::Replayed);
    // The same ID from another connection's IdP is its own.
    assert!(!two.saml_assertion_seen(&b.id, "_assert-1").await.unwrap());
    assert!(matches!(two.finish_sign_in(finish(&b.id, &ada_b, "_assert-1", None)).await.unwrap(), SignInFinished::Done { .. }));

    // Pruned once expired (the verifier refuses the assertion itself by then).
    let mut short = finish(&a.id, &ada_a, "_short", None);
    short.assertion_expires_at = now_ms() - 1;
    one.finish_sign_in(short).await.unwrap();
    assert_eq!(one.prune_saml(now_ms()).await.unwrap(), 1);
    assert!(one.saml_assertion_seen(&a.id, "_assert-1").await.unwrap(), "unexpired entries stay");
    assert!(!one.saml_assertion_seen(&a.id, "_short").await.unwrap());
}

async fn single_logout_ends_the_sessions_the_idp_names(db: TestDb) {
    let store = db.open().await;
    let conn = connection(&store, "org1", "okta").await;
    let other = connection(&store, "org1", "entra").await;
    let user = ada(&store, &conn.id).await;
    let mut sessions = Vec::new();
    for (i, (connection_id, index)) in [(&conn.id, "_s1"), (&conn.id, "_s2"), (&other.id, "_s1")].into_iter().enumerate() {
        let mut f = finish(connection_id, &user.id, &format!("_a{i}"), None);
        f.idp_session = Some(("ada@example.com".into(), Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into()), Some(index.into())));
        let SignInFinished::Done { session, secret, .. } = store.finish_sign_in(f).await.unwrap() else { panic!("opened") };
        let link = store.saml_session(&session.id).await.unwrap().expect("linked");
        assert_eq!((link.connection_id.as_str(), link.session_index.as_deref()), (connection_id.as_str(), Some(index)));
        sessions.push(secret);
    }
    let alive = |secret: String| {
        let store = store.clone();
        async move { store.verify_user_session(&secret).await.unwrap().is_some() }
    };
    // One index of one connection's IdP: that session only.
    let ended = store.end_saml_sessions(&conn.id, "ada@example.com", &["_s1".into()]).await.unwrap();
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (alive(sessions[0].clone()).await, alive(sessions[1].clone()).await, alive(sessions[2].clone()).await),
        (false, true, true)
    );
    // Another subject: nothing.
    assert!(store.end_saml_sessions(&conn.id, "eve@example.com", &[]).await.unwrap().is_empty());
    // No index: every open session of the subject from that IdP, not another IdP's.
    assert_eq!(store.end_saml_sessions(&conn.id, "ada@example.com", &[]).await.unwrap().len(), 1);
    assert_eq!((alive(sessions[1].clone()).await, alive(sessions[2].clone()).await), (false, true));
}

async fn a_sign_in_finishes_as_one_unit_and_once(db: TestDb) {
    let one = db.open().await;
    let two = db.open().await;
    let conn = connection(&one, "org1", "okta").await;
    let user = ada(&one, &conn.id).await;
    let finish = |assertion: &str, request: Option<&str>| FinishSignIn {
        connection_id: conn.id.clone(),
        assertion_id: assertion.into(),
        assertion_expires_at: now_ms() + 300_000,
        request_id: request.map(str::to_owned),
        user_id: user.id.clone(),
        session_ttl_ms: Some(3_600_000),
        idp_session: Some(("ada@example.com".into(), None, Some("_s1".into()))),
    };
    one.remember_saml_request("_req1", &conn.id, Some("/home"), now_ms() + 60_000).await.unwrap();
    assert!(one.saml_request_pending("_req1", &conn.id, now_ms()).await.unwrap());
    let SignInFinished::Done { session, secret, relay_state } = two.finish_sign_in(finish("_a1", Some("_req1"))).await.unwrap() else {
        panic!("the first finish opens a session");
    };
    assert_eq!((relay_state.as_deref(), session.expires_at - session.created_at), (Some("/home"), 3_600_000));
    assert_eq!(one.verify_user_session(&secret).await.unwrap().unwrap().0.id, session.id);
    assert_eq!(one.saml_session(&session.id).await.unwrap().unwrap().session_index.as_deref(), Some("_s1"));
    assert!(one.saml_assertion_seen(&conn.id, "_a1").await.unwrap());
    assert!(!one.saml_request_pending("_req1", &conn.id, now_ms()).await.unwrap());
    // Again: the assertion is a replay; another assertion for the consumed request finds none,
    // and writes nothing (its claim is undone with it).
    assert_eq!(one.finish_sign_in(finish("_a1", Some("_req1"))).await.unwrap(), SignInFinished::Replayed);
    assert_eq!(one.finish_sign_in(finish("_a2", Some("_req1"))).await.unwrap(), SignInFinished::NoRequest);
    assert!(!one.saml_assertion_seen(&conn.id, "_a2").await.unwrap(), "undone with the refusal");
    // An inactive user gets no session, and nothing else is kept either.
    one.set_user_active(&conn.id, &user.id, false).await.unwrap();
    assert_eq!(one.finish_sign_in(finish("_a3", None)).await.unwrap(), SignInFinished::UserInactive);
    assert!(!one.saml_assertion_seen(&conn.id, "_a3").await.unwrap());
    one.set_user_active(&conn.id, &user.id, true).await.unwrap();

    // Two replicas racing to finish with each of 10 assertions: exactly one session each.
    let mut tasks = Vec::new();
    for i in 0..10 {
        for store in [one.clone(), two.clone()] {
            let f = finish(&format!("_race{i}"), None);
            tasks.push(tokio::spawn(async move { (i, store.finish_sign_in(f).await.unwrap()) }));
        }
    }
    let mut wins = [0; 10];
    for t in tasks {
        let (i, r) = t.await.unwrap();
        match r {
            SignInFinished::Done { .. } => wins[i] += 1,
            SignInFinished::Replayed => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(wins, [1; 10]);
}
