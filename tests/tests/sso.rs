//! SAML sign-in end to end, in process: the server's `Router` over a real SQLite file, the
//! bundled `custom-saml` connector mapping the assertions, and responses signed afresh for each
//! case by Debian's `xmlsec1` (`idplex_tests::saml_idp`), never by idplex's own code.
//!
//! The browser's path: `/sso/login?email=` → 303 to the IdP with a deflated AuthnRequest → the
//! IdP's signed response posted to the ACS → 303 to the return path with the `idplex_session`
//! cookie → `/api/v1/me`. Then every attack the ACS must refuse, each with its code on the
//! refusal page, an `sso_<code>` event for the admin, and nothing written (no user, no
//! session); and two hubs on one database refusing each other's replays.


use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use idplex_tests::saml_idp::{self, Key, ResponseSpec, Signed};
use idplex_tests::sso_app::{app, cookie_of, custom_saml_connection, hub_on, request_of};
use tower::ServiceExt;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_through_the_idp_and_lands_where_they_were_going() {
    let app = app().await;

    // The SP metadata an IdP admin imports.
    let md = app.call("GET", &format!("/saml/{}/metadata", app.conn), None, false).await;
    assert_eq!(md.status, StatusCode::OK);
    assert_eq!(md.header("content-type"), "application/samlmetadata+xml");
    assert!(md.body.contains(&format!("entityID=\"{}\"", app.sp_entity())), "{}", md.body);
    assert!(md.body.contains(&format!("Location=\"{}\"", app.acs_url())), "{}", md.body);

    // The admin's view: what to enter at the IdP, the certificate, the switches.
    let view = app.call("GET", &format!("/admin/v1/connections/{}/saml", app.conn), None, true).await.json();
    assert_eq!(view["enabled"], true);
    assert_eq!(view["idp_entity_id"], app.idp.entity_id);
    assert_eq!(view["acs_url"], app.acs_url());
    assert_eq!(view["certificates"].as_array().unwrap().len(), 1);
    assert_eq!(view["certificates"][0]["sha256_fingerprint"].as_str().unwrap().len(), 64 + 31, "{view}");

    // Routed by e-mail domain (any case) to the IdP, with an AuthnRequest and the return path.
    let login = app.call("GET", "/sso/login?email=Ada@EXAMPLE.com&return_to=/apps/wiki", None, false).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
    let location = login.header("location");
    assert!(location.starts_with(&format!("{}?SAMLRequest=", app.idp.sso_url)), "{location}");
    let (request_id, relay) = request_of(location);
    assert_eq!(relay.as_deref(), Some("/apps/wiki"));

    let mut r = app.idp.response(&app.acs_url(), &app.sp_entity(), Some(&request_id), "ada@example.com");
    r.attributes = vec![
        ("email".into(), vec!["ada@example.com".into()]),
        ("firstName".into(), vec!["Ada".into()]),
        ("lastName".into(), vec!["Lovelace".into()]),
        ("groups".into(), vec!["Engineering".into(), "staff".into()]),
    ];
    let signed = app.idp.sign(&r);
    // What is posted beside a solicited response cannot redirect the user elsewhere.
    let done = app.post_acs(&signed, Some("https://evil.example/")).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.header("location"), "/apps/wiki");
    let set_cookie = done.header("set-cookie");
    for attr in ["idplex_session=idp_ses_", "HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }

    // The session is the one the user API knows.
    let cookie = cookie_of(&done);
    let me = app.request("GET", "/api/v1/me", None, false, &[("cookie", &cookie)]).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.json()["userName"], "ada@example.com");

    // Created just in time, with the profile and the groups the assertion names.
    let user = app.store.find_users_by_user_name(&app.conn, "ada@example.com").await.unwrap().remove(0);
    assert_eq!(user.resource["name"]["givenName"], "Ada");
    assert_eq!(user.resource["emails"][0]["value"], "ada@example.com");
    let mut groups: Vec<String> =
        app.store.groups_of_user(&app.conn, &user.id).await.unwrap().into_iter().map(|g| g.display_name).collect();
    groups.sort();
    assert_eq!(groups, ["Engineering", "staff"]);

    // The same response again: a replay, refused, and the admin sees it.
    let again = app.post_acs(&signed, None).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert_eq!(again.header("x-idplex-error"), "replayed");
    assert!(again.body.contains("Sign-in refused") && !again.body.contains("_assert-"), "the detail stays with the admin: {}", again.body);
    assert!(app.events().await.iter().any(|m| m.starts_with("replayed:")));

    // A second sign-in finds the user (no duplicate), and its profile follows the assertion.
    let mut r = app.solicited("ADA@example.com").await;
    r.attributes = vec![("firstName".into(), vec!["Augusta Ada".into()])];
    let second = app.post_acs(&app.idp.sign(&r), None).await;
    assert_eq!(second.status, StatusCode::SEE_OTHER, "{}", second.body);
    assert_eq!(second.header("location"), "/");
    assert_eq!(app.users().await, 1);
    let user = app.store.find_users_by_user_name(&app.conn, "ada@example.com").await.unwrap().remove(0);
    assert_eq!(user.resource["name"]["givenName"], "Augusta Ada");

    // Logout ends the session for good.
    let out = app.request("POST", "/logout", None, false, &[("cookie", &cookie)]).await;
    assert_eq!(out.json()["ended"], true);
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    let me = app.request("GET", "/api/v1/me", None, false, &[("cookie", &cookie)]).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forgery_and_mismatch_is_refused_with_its_code_and_writes_nothing() {
    let app = app().await;
    type Tamper = Box<dyn Fn(&mut ResponseSpec)>;
    let cases: Vec<(&str, Tamper)> = vec![
        ("audience_mismatch", Box::new(|r| r.audience = Some("https://other-sp.example".into()))),
        ("audience_mismatch", Box::new(|r| r.audience = None)),
        ("recipient_mismatch", Box::new(|r| r.recipient = "https://idplex.test/saml/other/acs".into())),
        ("destination_mismatch", Box::new(|r| r.destination = "https://evil.example/acs".into())),
        ("issuer_mismatch", Box::new(|r| r.issuer = "https://other-idp.example".into())),
        ("in_response_to_mismatch", Box::new(|r| r.in_response_to = Some("_never-sent".into()))),
        ("expired", Box::new(|r| {
            r.issue_instant -= 200;
            r.valid_for = 60;
        })),
        ("not_yet_valid", Box::new(|r| r.starts_in = 600)),
        ("stale", Box::new(|r| r.issue_instant += 600)),
        ("stale", Box::new(|r| {
            r.issue_instant -= 3600;
            r.valid_for = 7200;
        })),
        ("unsigned", Box::new(|r| r.signed = Signed::Nothing)),
        // Response-only signing is off for this connection.
        ("unsigned", Box::new(|r| r.signed = Signed::Response)),
        ("signature_invalid", Box::new(|r| r.key = Key::Attacker)),
        ("algorithm_forbidden", Box::new(|r| r.signature_algorithm = saml_idp::RSA_SHA1)),
        ("algorithm_forbidden", Box::new(|r| r.digest_algorithm = saml_idp::SHA1)),
        ("status_not_success", Box::new(|r| r.status = "urn:oasis:names:tc:SAML:2.0:status:Requester".into())),
        ("unsolicited_refused", Box::new(|r| r.in_response_to = None)),
    ];
    for (code, tamper) in cases {
        let mut r = app.solicited("mallory@example.com").await;
        tamper(&mut r);
        let answer = app.post_acs(&app.idp.sign(&r), None).await;
        assert_eq!(answer.header("x-idplex-error"), code, "{code}: {}", answer.body);
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{code}");
        assert!(answer.headers.get("set-cookie").is_none(), "{code}: no session");
    }

    // Changed after signing: the NameID swapped for another user.
    let r = app.solicited("mallory@example.com").await;
    let xml = app.idp.signed_xml(&r).replace("mallory@example.com</saml:NameID>", "ceo@example.com</saml:NameID>");
    let answer = app.post_acs(&saml_idp::base64_encode(xml.as_bytes()), None).await;
    assert_eq!(answer.header("x-idplex-error"), "digest_mismatch");

    // Comment injection: the NameID's full text is read, and a comment in it is refused.
    let r = app.solicited("ceo@example.com.evil.example").await;
    let xml = app.idp.signed_xml(&r).replace(
        ">ceo@example.com.evil.example</saml:NameID>",
        ">ceo@example.com<!---->.evil.example</saml:NameID>",
    );
    let answer = app.post_acs(&saml_idp::base64_encode(xml.as_bytes()), None).await;
    // The comment leaves the canonical form (and so the digest) unchanged: only reading the
    // NameID as its full text catches it.
    assert_eq!((answer.status, answer.header("x-idplex-error")), (StatusCode::FORBIDDEN, "subject_invalid"), "{}", answer.body);

    // XSW: a second, unsigned assertion beside the signed one.
    let r = app.solicited("mallory@example.com").await;
    let xml = app.idp.signed_xml(&r);
    let start = xml.find("<saml:Assertion").unwrap();
    let end = xml.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    let evil = xml[start..end].replace("mallory@example.com", "ceo@example.com").replace(&r.assertion_id, "_evil");
    let wrapped = format!("{}{evil}{}", &xml[..end], &xml[end..]);
    let answer = app.post_acs(&saml_idp::base64_encode(wrapped.as_bytes()), None).await;
    assert_eq!(answer.header("x-idplex-error"), "assertion_count");

    // An encrypted assertion (the connection has no decryption key): refused, never skipped.
    let r = app.solicited("mallory@example.com").await;
    let xml = app.idp.signed_xml(&r);
    let start = xml.find("<saml:Assertion").unwrap();
    let end = xml.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    let encrypted = format!(
        "{}<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"><xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion>{}",
        &xml[..start],
        &xml[end..]
    );
    let answer = app.post_acs(&saml_idp::base64_encode(encrypted.as_bytes()), None).await;
    assert_eq!((answer.status, answer.header("x-idplex-error")), (StatusCode::FORBIDDEN, "assertion_count"));

    // DTD (XXE, billion laughs): refused before anything is expanded.
    let r = app.solicited("mallory@example.com").await;
    let xml = app.idp.signed_xml(&r).replacen(
        "<samlp:Response",
        "<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><samlp:Response",
        1,
    );
    let answer = app.post_acs(&saml_idp::base64_encode(xml.as_bytes()), None).await;
    assert_eq!(answer.header("x-idplex-error"), "dtd_forbidden");
    assert_eq!(answer.status, StatusCode::FORBIDDEN);

    // Not a SAML response at all: 400, and a form that lacks the field.
    let answer = app.post_acs("bm90IHhtbA==", None).await;
    assert_eq!((answer.status, answer.header("x-idplex-error")), (StatusCode::BAD_REQUEST, "malformed"));
    let answer = app
        .request("POST", &format!("/saml/{}/acs", app.conn), Some("x=1".into()), false, &[("content-type", "application/x-www-form-urlencoded")])
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    // Nothing was written, and the admin sees each refusal with its reason.
    assert_eq!(app.users().await, 0);
    let events = app.events().await;
    for code in [
        "audience_mismatch:",
        "recipient_mismatch:",
        "destination_mismatch:",
        "issuer_mismatch:",
        "in_response_to_mismatch:",
        "expired:",
        "not_yet_valid:",
        "stale:",
        "unsigned:",
        "signature_invalid:",
        "algorithm_forbidden:",
        "status_not_success:",
        "unsolicited_refused:",
        "digest_mismatch:",
        "assertion_count:",
        "dtd_forbidden:",
        "subject_invalid:",
    ] {
        assert!(events.iter().any(|m| m.starts_with(code)), "no {code} event in {events:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_sign_in_is_the_directorys_decision() {
    let app = app().await;
    let patch = |body: Value| {
        let app = &app;
        async move { app.call("PATCH", &format!("/admin/v1/connections/{}/saml", app.conn), Some(body.to_string()), true).await }
    };

    // Without JIT an unknown user is refused.
    assert_eq!(patch(json!({"jit": false})).await.status, StatusCode::OK);
    let r = app.solicited("grace@example.com").await;
    let answer = app.post_acs(&app.idp.sign(&r), None).await;
    assert_eq!((answer.status, answer.header("x-idplex-error")), (StatusCode::FORBIDDEN, "unknown_user"));
    assert!(answer.body.contains("not provisioned"), "{}", answer.body);

    // Provisioned by SCIM (here: the store), then deactivated by SCIM: no sign-in.
    let user = app
        .store
        .create_user(&idplex_store::NewDirectoryUser {
            connection_id: app.conn.clone(),
            user_name: "grace@example.com".into(),
            external_id: None,
            active: true,
            resource: json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "grace@example.com"}),
        })
        .await
        .unwrap();
    let r = app.solicited("grace@example.com").await;
    assert_eq!(app.post_acs(&app.idp.sign(&r), None).await.status, StatusCode::SEE_OTHER);
    app.store.set_user_active(&app.conn, &user.id, false).await.unwrap();
    let r = app.solicited("grace@example.com").await;
    let answer = app.post_acs(&app.idp.sign(&r), None).await;
    assert_eq!(answer.header("x-idplex-error"), "user_inactive");

    // IdP-initiated: off by default (above); on, it is accepted with a local RelayState only.
    assert_eq!(patch(json!({"allow_idp_initiated": true, "jit": true})).await.status, StatusCode::OK);
    let r = app.idp.response(&app.acs_url(), &app.sp_entity(), None, "hopper@example.com");
    let answer = app.post_acs(&app.idp.sign(&r), Some("/reports")).await;
    assert_eq!((answer.status, answer.header("location")), (StatusCode::SEE_OTHER, "/reports"), "{}", answer.body);
    let r = app.idp.response(&app.acs_url(), &app.sp_entity(), None, "hopper@example.com");
    let answer = app.post_acs(&app.idp.sign(&r), Some("//evil.example/x")).await;
    assert_eq!((answer.status, answer.header("location")), (StatusCode::SEE_OTHER, "/"));

    // Response-only signing, where the connection allows it.
    let r = app.solicited("hopper@example.com").await;
    let mut r = r;
    r.signed = Signed::Response;
    assert_eq!(app.post_acs(&app.idp.sign(&r), None).await.header("x-idplex-error"), "unsigned");
    assert_eq!(patch(json!({"allow_response_only_signing": true})).await.status, StatusCode::OK);
    let mut r = app.solicited("hopper@example.com").await;
    r.signed = Signed::Response;
    assert_eq!(app.post_acs(&app.idp.sign(&r), None).await.status, StatusCode::SEE_OTHER);

    // Disabled: refused before anything is read; re-enabled without certificates: refused.
    assert_eq!(patch(json!({"enabled": false})).await.status, StatusCode::OK);
    let r = app.solicited_unchecked("hopper@example.com").await;
    assert_eq!(app.post_acs(&app.idp.sign(&r), None).await.header("x-idplex-error"), "sso_disabled");
    let refused = patch(json!({"enabled": true, "certificates": []})).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert!(refused.body.contains("without an IdP signing certificate"), "{}", refused.body);
    // A certificate that is not one, named.
    let refused = patch(json!({"certificates": ["not a certificate"]})).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("certificate 1"), "{}", refused.body);
    // An SSO URL over plain http.
    let refused = patch(json!({"sso_url": "http://idp.example.com/sso"})).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);

    // Unknown domains and connections.
    let answer = app.call("GET", "/sso/login?email=someone@unknown.example", None, false).await;
    assert_eq!((answer.status, answer.header("x-idplex-error")), (StatusCode::NOT_FOUND, "no_domain_route"));
    let answer = app.call("GET", "/saml/conn_nope/login", None, false).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    // A domain routed elsewhere cannot be taken.
    let other = custom_saml_connection(&app.hub, "globex", "globex idp").await;
    let taken = app
        .call("PUT", &format!("/admin/v1/connections/{}/saml/domains", other.id), Some(json!({"domains": ["example.com"]}).to_string()), true)
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);

    // The admin routes need the admin token.
    let answer = app.call("GET", &format!("/admin/v1/connections/{}/saml", app.conn), None, false).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_behave_as_one() {
    let app = app().await;
    // A second hub (another replica) on the same database file.
    let (_, other) = hub_on(app.dir.path(), "cache-2").await;
    other.sync_bindings().await.unwrap();
    let other_router = idplex_server::router(other);
    let post = |router: &Router, saml: String| {
        let router = router.clone();
        let conn = app.conn.clone();
        async move {
            let form = format!("SAMLResponse={}", idplex_saml::authn_request::url_encode(&saml));
            let req = Request::builder()
                .method("POST")
                .uri(format!("/saml/{conn}/acs"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .unwrap();
            let resp = router.oneshot(req).await.unwrap();
            (resp.status(), resp.headers().get("x-idplex-error").map(|v| v.to_str().unwrap().to_owned()))
        }
    };

    // Requested through replica one, answered at replica two.
    let r = app.solicited("ada@example.com").await;
    let signed = app.idp.sign(&r);
    assert_eq!(post(&other_router, signed.clone()).await, (StatusCode::SEE_OTHER, None));
    // The same assertion at replica one: a replay.
    assert_eq!(post(&app.router, signed).await, (StatusCode::FORBIDDEN, Some("replayed".into())));

    // An answered request cannot be answered again at the other replica either.
    let mut r2 = r.clone();
    r2.assertion_id = format!("{}-again", r.assertion_id);
    assert_eq!(post(&app.router, app.idp.sign(&r2)).await, (StatusCode::FORBIDDEN, Some("in_response_to_mismatch".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_setup_and_certificate_rollover() {
    let app = app().await;
    let path = format!("/admin/v1/connections/{}/saml", app.conn);
    // Both the old and the new certificate during a rollover: either signs.
    let both = json!({"certificates": [app.idp.attacker_certificate_pem(), app.idp.certificate_pem()]});
    let view = app.call("PATCH", &path, Some(both.to_string()), true).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.body);
    assert_eq!(view.json()["certificates"].as_array().unwrap().len(), 2);
    let mut r = app.solicited("ada@example.com").await;
    r.key = Key::Attacker;
    assert_eq!(app.post_acs(&app.idp.sign(&r), None).await.status, StatusCode::SEE_OTHER);
    // The old one retired: its signatures stop verifying.
    let view = app.call("PATCH", &path, Some(json!({"certificates": [app.idp.certificate_pem()]}).to_string()), true).await;
    assert_eq!(view.status, StatusCode::OK);
    let mut r = app.solicited("ada@example.com").await;
    r.key = Key::Attacker;
    assert_eq!(app.post_acs(&app.idp.sign(&r), None).await.header("x-idplex-error"), "signature_invalid");

    // Manual entry on a connection without settings needs the entity ID and SSO URL.
    let conn = custom_saml_connection(&app.hub, "initech", "initech idp").await;
    let path = format!("/admin/v1/connections/{}/saml", conn.id);
    assert_eq!(app.call("GET", &path, None, true).await.status, StatusCode::NOT_FOUND);
    let refused = app.call("PATCH", &path, Some(json!({"sso_url": "https://idp.initech.example/sso"}).to_string()), true).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("idp_entity_id"), "{}", refused.body);
    let manual = json!({
        "idp_entity_id": "https://idp.initech.example",
        "sso_url": "https://idp.initech.example/sso",
        "certificates": [app.idp.certificate_pem()],
        "enabled": true,
        "session_ttl_minutes": 60,
    });
    let view = app.call("PATCH", &path, Some(manual.to_string()), true).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.body);
    assert_eq!(view.json()["session_ttl_minutes"], 60);
    let unknown = app.call("PATCH", &path, Some(json!({"enabeld": true}).to_string()), true).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "a misspelt field is not ignored");
    assert_eq!(app.call("DELETE", &path, None, true).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.call("GET", &path, None, true).await.status, StatusCode::NOT_FOUND);
}

/// Verifies an HTTP-Redirect signature with the `openssl` CLI (not idplex's code): the signed
/// octets are the query up to `&Signature=`, as sent.
fn openssl_verifies(location: &str, certificate_pem: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let query = location.split_once('?').unwrap().1;
    let (signed, signature) = query.split_once("&Signature=").expect("a Signature parameter");
    let signature = idplex_scim::percent_decode(signature);
    let signature = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, signature).unwrap();
    std::fs::write(dir.path().join("cert.pem"), certificate_pem).unwrap();
    std::fs::write(dir.path().join("signed"), signed).unwrap();
    std::fs::write(dir.path().join("sig"), signature).unwrap();
    let pubkey = std::process::Command::new("openssl")
        .args(["x509", "-in", "cert.pem", "-pubkey", "-noout"])
        .current_dir(dir.path())
        .output()
        .expect("openssl runs");
    std::fs::write(dir.path().join("pub.pem"), &pubkey.stdout).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig", "signed"])
        .current_dir(dir.path())
        .output()
        .expect("openssl runs");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authn_requests_are_signed_with_the_sp_key_when_the_connection_asks() {
    let app = app().await;
    let saml = format!("/admin/v1/connections/{}/saml", app.conn);
    let login = format!("/saml/{}/login?return_to=/home", app.conn);
    let metadata = format!("/saml/{}/metadata", app.conn);

    // Fail closed: no SP key, no signing.
    assert_eq!(app.call("GET", "/admin/v1/saml/sp-key", None, true).await.status, StatusCode::NOT_FOUND);
    let refused = app.call("PATCH", &saml, Some(json!({"sign_authn_requests": true}).to_string()), true).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("without an SP signing key"), "{}", refused.body);
    let unsigned = app.call("GET", &login, None, false).await;
    assert!(!unsigned.header("location").contains("Signature="));

    // A generated key: its certificate in the metadata, AuthnRequestsSigned once asked for.
    let made = app.call("POST", "/admin/v1/saml/sp-key", None, true).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let key = made.json();
    let cert_pem = key["certificate_pem"].as_str().unwrap().to_owned();
    assert!(key["subject"].as_str().unwrap().contains("idplex SAML SP"), "{key}");
    assert!(!made.body.contains("PRIVATE"), "never the private key");
    let view = app.call("PATCH", &saml, Some(json!({"sign_authn_requests": true}).to_string()), true).await;
    assert_eq!(view.json()["sign_authn_requests"], true);
    let md = app.call("GET", &metadata, None, false).await.body;
    let cert_b64: String = cert_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(md.contains("AuthnRequestsSigned=\"true\"") && md.contains(&cert_b64), "{md}");

    // The redirect is signed (RSA-SHA256 over the exact query), and openssl agrees; a changed
    // RelayState breaks it. The sign-in it starts completes as before.
    let signed = app.call("GET", &login, None, false).await;
    let location = signed.header("location").to_owned();
    assert!(location.contains("&SigAlg=http%3A%2F%2Fwww.w3.org%2F2001%2F04%2Fxmldsig-more%23rsa-sha256&Signature="), "{location}");
    assert!(openssl_verifies(&location, &cert_pem));
    assert!(!openssl_verifies(&location.replace("RelayState=%2Fhome", "RelayState=%2Fevil"), &cert_pem));
    let done = app.answer_login(&location, "ada@example.com", &[]).await;
    assert_eq!((done.status, done.header("location")), (StatusCode::SEE_OTHER, "/home"));

    // The admin's own key and certificate; a key that is not the certificate's is refused.
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/idplex-saml/tests/fixtures/sp");
    let read = |name: &str| std::fs::read_to_string(fixtures.join(name)).unwrap();
    let mismatch = json!({"private_key_pem": read("sp-key.pem"), "certificate_pem": read("sp-other-cert.pem")});
    let answer = app.call("PUT", "/admin/v1/saml/sp-key", Some(mismatch.to_string()), true).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer.body.contains("does not belong to the certificate"), "{}", answer.body);
    let own = json!({"private_key_pem": read("sp-key.pem"), "certificate_pem": read("sp-cert.pem")});
    let answer = app.call("PUT", "/admin/v1/saml/sp-key", Some(own.to_string()), true).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let own_pem = answer.json()["certificate_pem"].as_str().unwrap().to_owned();
    let location = app.call("GET", &login, None, false).await.header("location").to_owned();
    assert!(openssl_verifies(&location, &own_pem), "signed with the imported key");
    assert!(!openssl_verifies(&location, &cert_pem), "no longer with the generated one");

    // Turned off: unsigned again, and the metadata says so.
    app.call("PATCH", &saml, Some(json!({"sign_authn_requests": false}).to_string()), true).await;
    assert!(!app.call("GET", &login, None, false).await.header("location").contains("Signature="));
    assert!(app.call("GET", &metadata, None, false).await.body.contains("AuthnRequestsSigned=\"false\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_logout_ends_the_session_at_both_ends() {
    use idplex_saml::authn_request::{RedirectQuery, decode_redirect};
    use idplex_tests::saml_idp::SLO_URL;
    let app = app().await;
    let me = |cookie: String| {
        let app = &app;
        async move { app.request("GET", "/api/v1/me", None, false, &[("cookie", &cookie)]).await.status }
    };
    let decoded = |location: &str| {
        let parsed = RedirectQuery::parse(location.split_once('?').unwrap().1).unwrap();
        decode_redirect(&parsed.message).unwrap()
    };

    // The IdP offers single logout; the SP's own SLO endpoint is in its metadata.
    let imported = app
        .call("POST", &format!("/admin/v1/connections/{}/saml/metadata", app.conn), Some(app.idp.metadata_with_slo()), true)
        .await
        .json();
    assert_eq!(imported["slo_url"], SLO_URL);
    let sp_slo = format!("{}/saml/{}/slo", idplex_tests::sso_app::PUBLIC, app.conn);
    assert_eq!(imported["sp_slo_url"], sp_slo.as_str());
    let md = app.call("GET", &format!("/saml/{}/metadata", app.conn), None, false).await.body;
    assert!(md.contains(&format!("<md:SingleLogoutService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"{sp_slo}\"/>")), "{md}");
    let sp_cert = app.call("POST", "/admin/v1/saml/sp-key", None, true).await.json()["certificate_pem"].as_str().unwrap().to_owned();

    // A sign-in whose SessionIndex we know.
    let sign_in = || {
        let app = &app;
        async move {
            let login = app.call("GET", &format!("/saml/{}/login", app.conn), None, false).await;
            let (request_id, _) = request_of(login.header("location"));
            let r = app.idp.response(&app.acs_url(), &app.sp_entity(), Some(&request_id), "ada@example.com");
            let done = app.post_acs(&app.idp.sign(&r), None).await;
            assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
            (cookie_of(&done), format!("_session-{}", r.assertion_id))
        }
    };

    // SP-initiated: signing out here sends the browser to the IdP with a signed LogoutRequest
    // for that subject and session.
    let (cookie, index) = sign_in().await;
    assert_eq!(me(cookie.clone()).await, StatusCode::OK);
    let out = app.request("POST", "/logout", None, false, &[("cookie", &cookie)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.body);
    let location = out.header("location").to_owned();
    assert!(location.starts_with(&format!("{SLO_URL}?SAMLRequest=")), "{location}");
    assert!(openssl_verifies(&location, &sp_cert), "signed with the SP key");
    let request = decoded(&location);
    assert!(request.contains(">ada@example.com</saml:NameID>") && request.contains(&format!(">{index}</samlp:SessionIndex>")), "{request}");
    assert!(request.contains(&format!("Destination=\"{SLO_URL}\"")), "{request}");
    assert_eq!(me(cookie).await, StatusCode::UNAUTHORIZED);
    // The IdP's LogoutResponse lands the browser home.
    let request_id = request.split(" ID=\"").nth(1).unwrap().split('"').next().unwrap();
    let response = format!(
        "<samlp:LogoutResponse xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" \
         ID=\"_idp-lr1\" Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{sp_slo}\" InResponseTo=\"{request_id}\">\
         <saml:Issuer>{}</saml:Issuer><samlp:Status><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/></samlp:Status></samlp:LogoutResponse>",
        idplex_saml::authn_request::format_instant(saml_idp::now_secs()).unwrap(),
        app.idp.entity_id
    );
    let query = app.idp.redirect_query("SAMLResponse", &response, Some(Key::Idp));
    let home = app.call("GET", &format!("/saml/{}/slo?{query}", app.conn), None, false).await;
    assert_eq!((home.status, home.header("location")), (StatusCode::SEE_OTHER, "/"));
    assert!(home.headers.get("set-cookie").is_none(), "a LogoutResponse clears no cookie (anyone can send one)");
    // One signed by a stranger is refused.
    let forged = app.idp.redirect_query("SAMLResponse", &response, Some(Key::Attacker));
    assert_eq!(app.call("GET", &format!("/saml/{}/slo?{forged}", app.conn), None, false).await.header("x-idplex-error"), "signature_invalid");

    // IdP-initiated: only a LogoutRequest the IdP signed is obeyed.
    let (first, first_index) = sign_in().await;
    let (second, _) = sign_in().await;
    let request = app.idp.logout_request("_idp-lo1", &sp_slo, "ada@example.com", Some(&first_index));
    for (key, code) in [(None, "unsigned"), (Some(Key::Attacker), "signature_invalid")] {
        let query = app.idp.redirect_query("SAMLRequest", &request, key);
        let refused = app.call("GET", &format!("/saml/{}/slo?{query}", app.conn), None, false).await;
        assert_eq!((refused.status, refused.header("x-idplex-error")), (StatusCode::FORBIDDEN, code), "{}", refused.body);
    }
    assert_eq!((me(first.clone()).await, me(second.clone()).await), (StatusCode::OK, StatusCode::OK), "nothing ended");
    assert!(app.events().await.iter().any(|m| m.starts_with("unsigned")), "{:?}", app.events().await);
    let wrong_place = app.idp.logout_request("_idp-lo0", "https://elsewhere.example/slo", "ada@example.com", None);
    let query = app.idp.redirect_query("SAMLRequest", &wrong_place, Some(Key::Idp));
    assert_eq!(app.call("GET", &format!("/saml/{}/slo?{query}", app.conn), None, false).await.header("x-idplex-error"), "destination_mismatch");

    // Signed: the session it names ends, the other stays, and the IdP gets a LogoutResponse.
    let query = app.idp.redirect_query("SAMLRequest", &request, Some(Key::Idp));
    let answered = app.call("GET", &format!("/saml/{}/slo?{query}", app.conn), None, false).await;
    assert_eq!(answered.status, StatusCode::SEE_OTHER, "{}", answered.body);
    assert!(answered.header("set-cookie").contains("Max-Age=0"), "the IdP asked: the cookie goes too");
    let location = answered.header("location").to_owned();
    assert!(location.starts_with(&format!("{SLO_URL}?SAMLResponse=")), "{location}");
    assert!(openssl_verifies(&location, &sp_cert));
    let response = decoded(&location);
    assert!(response.contains("InResponseTo=\"_idp-lo1\"") && response.contains("status:Success"), "{response}");
    assert_eq!((me(first).await, me(second.clone()).await), (StatusCode::UNAUTHORIZED, StatusCode::OK));
    // Without a SessionIndex: every session of the subject.
    let all = app.idp.logout_request("_idp-lo2", &sp_slo, "ada@example.com", None);
    let query = app.idp.redirect_query("SAMLRequest", &all, Some(Key::Idp));
    assert_eq!(app.call("GET", &format!("/saml/{}/slo?{query}", app.conn), None, false).await.status, StatusCode::SEE_OTHER);
    assert_eq!(me(second).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jit_adds_the_asserted_groups_and_with_sync_the_assertion_decides() {
    let app = app().await;
    let groups = || {
        let app = &app;
        async move {
            let ada = app.store.find_users_by_user_name(&app.conn, "ada@example.com").await.unwrap().remove(0);
            let mut names: Vec<String> =
                app.store.groups_of_user(&app.conn, &ada.id).await.unwrap().into_iter().map(|g| g.display_name).collect();
            names.sort();
            names
        }
    };
    app.sign_in("ada@example.com", &["Engineering", "Staff"]).await;
    assert_eq!(groups().await, ["Engineering", "Staff"]);
    // By default memberships are only added: a group the assertion stops naming stays.
    app.sign_in("ada@example.com", &["Staff"]).await;
    assert_eq!(groups().await, ["Engineering", "Staff"]);

    // With sync, the assertion's groups become the memberships in this connection's groups.
    let path = format!("/admin/v1/connections/{}/saml", app.conn);
    let view = app.call("PATCH", &path, Some(json!({"jit_sync_groups": true}).to_string()), true).await;
    assert_eq!(view.json()["jit_sync_groups"], true, "{}", view.body);
    app.sign_in("ada@example.com", &["staff", "Design"]).await;
    assert_eq!(groups().await, ["Design", "Staff"], "Engineering left, Staff kept (names compare without case)");
    app.sign_in("ada@example.com", &[]).await;
    assert!(groups().await.is_empty());
    // The groups themselves stay (other members, SCIM's view).
    let all = app.store.list_groups(&app.conn, 0, 100, false).await.unwrap().0;
    assert_eq!(all.len(), 3, "{all:?}");
}
