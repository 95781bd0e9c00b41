//! OpenID Connect for downstream apps, end to end: an app registered by the admin, a user who
//! signs in through SAML (the test IdP's responses signed by `xmlsec1`), the authorization code
//! with PKCE, the token endpoint, the ID token verified against the JWKS by a second JWT
//! implementation (`jsonwebtoken`), userinfo; every refusal the authorization server owes;
//! deactivation, key and secret rotation; and a real OIDC client library (Authlib, Python)
//! driving a live idplex on a loopback port.

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use idplex_saml::authn_request::url_encode;
use idplex_scim::percent_decode;
use idplex_store::NewDirectoryUser;
use idplex_tests::sso_app::{Answer, App, app, app_at, cookie_of, custom_saml_connection};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const REDIRECT: &str = "https://app.example/cb";

struct Client {
    id: String,
    secret: String,
}

async fn register(app: &App, org: &str, name: &str, redirect_uris: &[&str]) -> Client {
    let made = app
        .call("POST", "/admin/v1/apps", Some(json!({"org_id": org, "name": name, "redirect_uris": redirect_uris}).to_string()), true)
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let v = made.json();
    Client { id: v["client_id"].as_str().unwrap().into(), secret: v["client_secret"].as_str().unwrap().into() }
}

/// A PKCE verifier and its S256 challenge.
fn pkce(seed: &str) -> (String, String) {
    let verifier = format!("{seed}-{}", "v".repeat(50));
    let challenge = B64URL.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn authorize_path(client: &str, redirect: &str, challenge: &str, extra: &str) -> String {
    format!(
        "/oauth2/authorize?response_type=code&client_id={client}&redirect_uri={}&scope=openid%20profile%20email%20groups\
         &state=st-1&nonce=n-0S6_WzA2Mj&code_challenge={challenge}&code_challenge_method=S256{extra}",
        url_encode(redirect)
    )
}

/// The query parameters of a redirect.
fn query_of(location: &str) -> Vec<(String, String)> {
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

fn param(location: &str, name: &str) -> Option<String> {
    query_of(location).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

async fn authorize(app: &App, path: &str, cookie: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = cookie.map(|c| vec![("cookie", c)]).unwrap_or_default();
    app.request("GET", path, None, false, &headers).await
}

/// A code for the signed-in user (cookie) and the PKCE verifier that goes with it.
async fn code_for(app: &App, client: &Client, cookie: &str) -> (String, String) {
    let (verifier, challenge) = pkce(&client.id);
    let answer = authorize(app, &authorize_path(&client.id, REDIRECT, &challenge, ""), Some(cookie)).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let location = answer.header("location");
    assert!(location.starts_with(&format!("{REDIRECT}?code=idp_occ_")), "{location}");
    (param(location, "code").unwrap(), verifier)
}

fn basic(client: &Client) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", client.id, client.secret)))
}

async fn token(app: &App, auth: Option<&str>, form: &[(&str, &str)]) -> Answer {
    let body = form.iter().map(|(k, v)| format!("{k}={}", url_encode(v))).collect::<Vec<_>>().join("&");
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    app.request("POST", "/oauth2/token", Some(body), false, &headers).await
}

async fn redeem(app: &App, client: &Client, code: &str, verifier: &str) -> Answer {
    token(
        app,
        Some(&basic(client)),
        &[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT), ("code_verifier", verifier)],
    )
    .await
}

async fn userinfo(app: &App, access_token: &str) -> Answer {
    app.request("GET", "/oauth2/userinfo", None, false, &[("authorization", &format!("Bearer {access_token}"))]).await
}

/// The ID token's claims, its signature checked against the JWKS the server publishes.
async fn verify_id_token(app: &App, id_token: &str, audience: &str) -> (String, Value) {
    let header = jsonwebtoken::decode_header(id_token).expect("a JWS header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let kid = header.kid.expect("a kid");
    let jwks = app.call("GET", "/oauth2/jwks", None, false).await.json();
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).expect("the kid is published");
    let key = jsonwebtoken::DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[app.hub.oidc_issuer()]);
    let data = jsonwebtoken::decode::<Value>(id_token, &key, &validation).expect("the ID token verifies");
    (kid, data.claims)
}

async fn events(app: &App) -> Vec<(String, String)> {
    let all = app.call("GET", "/admin/v1/events?limit=1000", None, true).await.json();
    all["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"].as_str().unwrap().starts_with("oidc_"))
        .map(|e| (e["kind"].as_str().unwrap().to_owned(), e["message"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_receives_a_verified_identity_through_the_code_flow_with_pkce() {
    let app = app().await;
    let client = register(&app, "acme", "wiki", &[REDIRECT]).await;
    assert!(client.id.starts_with("app_") && client.secret.starts_with("idp_ocs_"));

    // Discovery says what a client library needs.
    let disc = app.call("GET", "/.well-known/openid-configuration", None, false).await.json();
    assert_eq!(disc["issuer"], "https://idplex.test");
    assert_eq!(disc["authorization_endpoint"], "https://idplex.test/oauth2/authorize");
    assert_eq!(disc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(disc["id_token_signing_alg_values_supported"], json!(["RS256"]));

    // Not signed in: the request is kept, the browser goes to the organization's SAML sign-in
    // and comes back to it.
    let (verifier, challenge) = pkce("flow");
    let first = authorize(&app, &authorize_path(&client.id, REDIRECT, &challenge, ""), None).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    let to_login = first.header("location").to_owned();
    assert!(to_login.starts_with(&format!("/saml/{}/login?return_to=%2Foauth2%2Fauthorize%3Fresume%3Doar_", app.conn)), "{to_login}");
    let login = app.call("GET", &to_login, None, false).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let acs = app.answer_login(login.header("location"), "ada@example.com", &["Engineering"]).await;
    assert_eq!(acs.status, StatusCode::SEE_OTHER, "{}", acs.body);
    let back = acs.header("location").to_owned();
    assert!(back.starts_with("/oauth2/authorize?resume=oar_"), "{back}");
    let cookie = cookie_of(&acs);
    let done = authorize(&app, &back, Some(&cookie)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let location = done.header("location");
    assert_eq!(param(location, "state").as_deref(), Some("st-1"));
    assert_eq!(param(location, "iss").as_deref(), Some("https://idplex.test"));
    let code = param(location, "code").expect("a code");
    // The kept request was consumed: resuming it again does not issue another code.
    assert_eq!(authorize(&app, &back, Some(&cookie)).await.status, StatusCode::BAD_REQUEST);

    // The code for tokens.
    let tokens = redeem(&app, &client, &code, &verifier).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    assert_eq!(tokens.header("cache-control"), "no-store");
    let t = tokens.json();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    assert_eq!(t["scope"], "openid profile email groups");
    let access = t["access_token"].as_str().unwrap().to_owned();
    assert!(access.starts_with("idp_oat_"));

    let (_, claims) = verify_id_token(&app, t["id_token"].as_str().unwrap(), &client.id).await;
    let user = app.store.find_users_by_user_name(&app.conn, "ada@example.com").await.unwrap().remove(0);
    assert_eq!(claims["sub"], user.id.as_str());
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["preferred_username"], "ada@example.com");
    assert_eq!(claims["given_name"], "Ada");
    assert_eq!(claims["groups"], json!(["Engineering"]));
    assert_eq!(claims["org_id"], "acme");
    let at_hash = B64URL.encode(&Sha256::digest(access.as_bytes())[..16]);
    assert_eq!(claims["at_hash"], at_hash.as_str());
    let exp = claims["exp"].as_i64().unwrap();
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(exp - iat, 900);
    assert!(claims["auth_time"].as_i64().unwrap() <= iat);

    // userinfo answers the same person.
    let info = userinfo(&app, &access).await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.body);
    let info = info.json();
    assert_eq!(info["sub"], user.id.as_str());
    assert_eq!(info["email"], "ada@example.com");
    assert_eq!(info["name"], "Ada Lovelace");

    // A code is good once. Presented again, it is refused and what it gave is revoked
    // (RFC 6749 §4.1.2): the access token stops, and the admin sees why.
    let again = redeem(&app, &client, &code, &verifier).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.json()["error"], "invalid_grant");
    let revoked = userinfo(&app, &access).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    assert!(revoked.header("www-authenticate").contains("error=\"invalid_token\""), "{:?}", revoked.headers);
    let seen = events(&app).await;
    assert!(seen.iter().any(|(k, m)| k == "oidc_code_reused" && m.contains("1 access token(s) issued for it revoked")), "{seen:?}");

    // Signed in already: the next app request gets its code straight away.
    let (code2, verifier2) = code_for(&app, &client, &cookie).await;
    assert_eq!(redeem(&app, &client, &code2, &verifier2).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_server_refuses_what_it_must() {
    let app = app().await;
    let client = register(&app, "acme", "wiki", &[REDIRECT]).await;
    let other = register(&app, "acme", "crm", &["https://crm.example/cb"]).await;
    let cookie = app.sign_in("ada@example.com", &[]).await;
    let (_, challenge) = pkce("x");

    // Never redirected to: an unknown client, a redirect URI not registered exactly.
    for (client_id, redirect) in [
        ("app_00000000000000000000000000000000", REDIRECT),
        (client.id.as_str(), "https://evil.example/cb"),
        (client.id.as_str(), "https://app.example/cb/"),
        (client.id.as_str(), "https://app.example/cb?next=https://evil.example"),
        (client.id.as_str(), "https://app.example/CB"),
    ] {
        let answer = authorize(&app, &authorize_path(client_id, redirect, &challenge, ""), Some(&cookie)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{client_id} {redirect}: {}", answer.body);
        assert!(answer.headers.get("location").is_none(), "{redirect}");
        assert!(answer.header("content-type").starts_with("text/html"));
    }
    let no_redirect = format!("/oauth2/authorize?response_type=code&client_id={}&scope=openid", client.id);
    assert_eq!(authorize(&app, &no_redirect, Some(&cookie)).await.status, StatusCode::BAD_REQUEST);
    let seen = events(&app).await;
    assert!(seen.iter().any(|(k, m)| k == "oidc_invalid_redirect_uri" && m.contains("evil.example")), "{seen:?}");
    assert!(seen.iter().any(|(k, _)| k == "oidc_invalid_client"), "{seen:?}");

    // Errors the app is told about, with its state.
    let base = |extra: &str| {
        format!(
            "/oauth2/authorize?client_id={}&redirect_uri={}&state=s1{extra}",
            client.id,
            url_encode(REDIRECT)
        )
    };
    let cases = [
        (base(&format!("&response_type=token&scope=openid&code_challenge_method=S256&code_challenge={challenge}")), "unsupported_response_type"),
        (base(&format!("&response_type=code&scope=profile&code_challenge_method=S256&code_challenge={challenge}")), "invalid_scope"),
        (base("&response_type=code&scope=openid"), "invalid_request"),
        (base(&format!("&response_type=code&scope=openid&code_challenge={challenge}&code_challenge_method=plain")), "invalid_request"),
        (base("&response_type=code&scope=openid&code_challenge=short&code_challenge_method=S256"), "invalid_request"),
    ];
    for (path, error) in cases {
        let answer = authorize(&app, &path, Some(&cookie)).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path}");
        let location = answer.header("location");
        assert!(location.starts_with(REDIRECT), "{location}");
        assert_eq!(param(location, "error").as_deref(), Some(error), "{path}: {location}");
        assert_eq!(param(location, "state").as_deref(), Some("s1"));
        assert!(param(location, "code").is_none());
    }
    // prompt=none without a session of this organization: login_required, no sign-in page.
    let silent = authorize(&app, &authorize_path(&client.id, REDIRECT, &challenge, "&prompt=none"), None).await;
    assert_eq!(param(silent.header("location"), "error").as_deref(), Some("login_required"));

    // The token endpoint.
    let (code, verifier) = code_for(&app, &client, &cookie).await;
    let form = |code: &str, verifier: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", verifier.to_owned()),
        ]
    };
    let as_refs = |f: &Vec<(&'static str, String)>| f.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    let send = |auth: Option<String>, f: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            token(app, auth.as_deref(), &pairs).await
        }
    };
    // Wrong secret, no authentication: 401 invalid_client, with a challenge; the admin sees it.
    let wrong = Client { id: client.id.clone(), secret: format!("idp_ocs_{}", "0".repeat(64)) };
    let answer = send(Some(basic(&wrong)), as_refs(&form(&code, &verifier))).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.json()["error"], "invalid_client");
    assert!(answer.header("www-authenticate").starts_with("Basic"));
    let answer = send(None, as_refs(&form(&code, &verifier))).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(events(&app).await.iter().any(|(k, m)| k == "oidc_invalid_client" && m.contains("wrong credentials")));
    // Two authentication methods at once.
    let mut both = form(&code, &verifier);
    both.push(("client_secret", client.secret.clone()));
    both.push(("client_id", client.id.clone()));
    assert_eq!(send(Some(basic(&client)), both).await.json()["error"], "invalid_request");
    // Another grant type.
    let answer = send(Some(basic(&client)), vec![("grant_type", "password".into()), ("username", "ada".into())]).await;
    assert_eq!(answer.json()["error"], "unsupported_grant_type");
    // A wrong PKCE verifier burns the code: the right one is refused afterwards.
    let (_, other_verifier) = pkce("other");
    let answer = send(Some(basic(&client)), form(&code, &other_verifier)).await;
    assert_eq!((answer.status, answer.json()["error"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_grant")));
    assert_eq!(send(Some(basic(&client)), form(&code, &verifier)).await.json()["error"], "invalid_grant");
    // No verifier at all.
    let (code, _) = code_for(&app, &client, &cookie).await;
    let mut no_pkce = form(&code, "");
    no_pkce.retain(|(k, _)| *k != "code_verifier");
    assert_eq!(send(Some(basic(&client)), no_pkce).await.json()["error"], "invalid_grant");
    // A redirect URI other than the request's.
    let (code, verifier) = code_for(&app, &client, &cookie).await;
    let mut moved = form(&code, &verifier);
    moved[2].1 = "https://app.example/other".into();
    assert_eq!(send(Some(basic(&client)), moved).await.json()["error"], "invalid_grant");
    // A code issued to another app, presented with that app's own valid credentials.
    let (code, verifier) = code_for(&app, &client, &cookie).await;
    assert_eq!(send(Some(basic(&other)), form(&code, &verifier)).await.json()["error"], "invalid_grant");
    // client_secret_post works too (a fresh code).
    let (code, verifier) = code_for(&app, &client, &cookie).await;
    let mut post = form(&code, &verifier);
    post.push(("client_id", client.id.clone()));
    post.push(("client_secret", client.secret.clone()));
    assert_eq!(send(None, post).await.status, StatusCode::OK);
    // Garbage instead of a form, or a bearer token that is not one.
    let answer = app
        .request("POST", "/oauth2/token", Some("{\"grant_type\":1}".into()), false, &[("content-type", "application/json")])
        .await;
    assert_eq!(answer.json()["error"], "invalid_request");
    assert_eq!(userinfo(&app, "idp_oat_nope").await.status, StatusCode::UNAUTHORIZED);
    let none = app.request("GET", "/oauth2/userinfo", None, false, &[]).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_are_apart_and_deactivation_keys_and_secrets_take_effect_at_once() {
    let app = app().await;
    let client = register(&app, "acme", "wiki", &[REDIRECT]).await;
    let cookie = app.sign_in("ada@example.com", &["staff"]).await;

    // A user of another organization, signed in there, is not signed in to acme's app: sent to
    // acme's sign-in (or, silently, login_required), never given a code.
    let globex = custom_saml_connection(&app.hub, "globex", "globex idp").await;
    let intruder = app
        .store
        .create_user(&NewDirectoryUser {
            connection_id: globex.id.clone(),
            user_name: "eve@globex.example".into(),
            external_id: None,
            active: true,
            resource: json!({"userName": "eve@globex.example"}),
        })
        .await
        .unwrap();
    let (_, eve_cookie) = app.store.create_user_session(&intruder.id, None).await.unwrap();
    let eve_cookie = format!("idplex_session={eve_cookie}");
    let (_, challenge) = pkce("eve");
    let answer = authorize(&app, &authorize_path(&client.id, REDIRECT, &challenge, ""), Some(&eve_cookie)).await;
    assert!(answer.header("location").starts_with(&format!("/saml/{}/login", app.conn)), "{}", answer.header("location"));
    let answer = authorize(&app, &authorize_path(&client.id, REDIRECT, &challenge, "&prompt=none"), Some(&eve_cookie)).await;
    assert_eq!(param(answer.header("location"), "error").as_deref(), Some("login_required"));

    // Tokens and a code of a user who is then deactivated stop at once.
    let (code, verifier) = code_for(&app, &client, &cookie).await;
    let t = redeem(&app, &client, &code, &verifier).await.json();
    let access = t["access_token"].as_str().unwrap().to_owned();
    let (old_kid, _) = verify_id_token(&app, t["id_token"].as_str().unwrap(), &client.id).await;
    let (pending_code, pending_verifier) = code_for(&app, &client, &cookie).await;
    let ada = app.store.find_users_by_user_name(&app.conn, "ada@example.com").await.unwrap().remove(0);
    app.store.set_user_active(&app.conn, &ada.id, false).await.unwrap();
    assert_eq!(userinfo(&app, &access).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(redeem(&app, &client, &pending_code, &pending_verifier).await.json()["error"], "invalid_grant");
    app.store.set_user_active(&app.conn, &ada.id, true).await.unwrap();
    // Reactivated: the access token works again (as API tokens do); the session does not.
    assert_eq!(userinfo(&app, &access).await.status, StatusCode::OK);
    let cookie = app.sign_in("ada@example.com", &[]).await;

    // Key rotation: new tokens are signed with the new key; the old key stays published so the
    // tokens it signed still verify.
    let rotated = app.call("POST", "/admin/v1/oidc/keys/rotate", None, true).await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.body);
    let new_kid = rotated.json()["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    let keys = app.call("GET", "/admin/v1/oidc/keys", None, true).await.json();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    assert!(keys["keys"][0]["retired_at"].is_null() && keys["keys"][1]["retired_at"].is_i64(), "{keys}");
    assert!(!keys.to_string().contains("private"), "{keys}");
    let jwks = app.call("GET", "/oauth2/jwks", None, false).await.json();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()]);
    assert!(jwks["keys"].as_array().unwrap().iter().all(|k| k.get("d").is_none() && k["kty"] == "RSA"));
    verify_id_token(&app, t["id_token"].as_str().unwrap(), &client.id).await;
    let (code, verifier) = code_for(&app, &client, &cookie).await;
    let t2 = redeem(&app, &client, &code, &verifier).await.json();
    assert_eq!(verify_id_token(&app, t2["id_token"].as_str().unwrap(), &client.id).await.0, new_kid);

    // Secret rotation: the old secret stops at once.
    let rotated = app.call("POST", &format!("/admin/v1/apps/{}/rotate-secret", client.id), None, true).await.json();
    let fresh = Client { id: client.id.clone(), secret: rotated["client_secret"].as_str().unwrap().into() };
    let (code, verifier) = code_for(&app, &client, &cookie).await;
    assert_eq!(redeem(&app, &client, &code, &verifier).await.status, StatusCode::UNAUTHORIZED);
    let (code, verifier) = code_for(&app, &client, &cookie).await;
    let t3 = redeem(&app, &fresh, &code, &verifier).await.json();
    let access3 = t3["access_token"].as_str().unwrap().to_owned();

    // The app's listing never shows a secret; deleting it ends what it was given.
    let listed = app.call("GET", "/admin/v1/apps", None, true).await;
    assert!(!listed.body.contains("idp_ocs_") && listed.body.contains(&client.id), "{}", listed.body);
    assert_eq!(app.call("DELETE", &format!("/admin/v1/apps/{}", client.id), None, true).await.status, StatusCode::NO_CONTENT);
    assert_eq!(userinfo(&app, &access3).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.call("GET", &format!("/admin/v1/apps/{}", client.id), None, true).await.status, StatusCode::NOT_FOUND);

    // Registration checks what an admin types.
    for (body, what) in [
        (json!({"org_id": "acme", "name": "x", "redirect_uris": ["http://app.example/cb"]}), "https"),
        (json!({"org_id": "acme", "name": "x", "redirect_uris": ["https://app.example/cb#f"]}), "fragment"),
        (json!({"org_id": "acme", "name": "x", "redirect_uris": []}), "1 to"),
        (json!({"org_id": "acme", "name": "", "redirect_uris": [REDIRECT]}), "name"),
    ] {
        let answer = app.call("POST", "/admin/v1/apps", Some(body.to_string()), true).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", answer.body);
        assert!(answer.body.contains(what), "{body}: {}", answer.body);
    }
    register(&app, "acme", "dup", &[REDIRECT]).await;
    let dup = app.call("POST", "/admin/v1/apps", Some(json!({"org_id": "acme", "name": "dup", "redirect_uris": [REDIRECT]}).to_string()), true).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    // The admin API wants a token.
    assert_eq!(app.call("GET", "/admin/v1/apps", None, false).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organizations_session_timeouts_end_sessions() {
    let app = app().await;
    let cookie = app.sign_in("ada@example.com", &[]).await;
    let me = |cookie: String| {
        let app = &app;
        async move { app.request("GET", "/api/v1/me", None, false, &[("cookie", &cookie)]).await.status }
    };
    assert_eq!(me(cookie.clone()).await, StatusCode::OK);

    let path = "/admin/v1/orgs/acme/session-policy";
    assert_eq!(app.call("GET", path, None, true).await.json(), json!({"session_idle_minutes": null, "session_absolute_minutes": null}));
    for bad in [json!({"session_idle_minutes": 1}), json!({"session_absolute_minutes": 0}), json!({"idle": 5})] {
        let answer = app.call("PUT", path, Some(bad.to_string()), true).await;
        assert!(answer.status.is_client_error(), "{bad}: {}", answer.status);
    }
    let set = app.call("PUT", path, Some(json!({"session_idle_minutes": 30, "session_absolute_minutes": 120}).to_string()), true).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);

    // A new session's lifetime is bounded by the absolute timeout (the cookie says so too).
    let login = app.call("GET", &format!("/saml/{}/login", app.conn), None, false).await;
    let acs = app.answer_login(login.header("location"), "ada@example.com", &[]).await;
    assert!(acs.header("set-cookie").contains("Max-Age=7200"), "{}", acs.header("set-cookie"));

    // Open sessions are held to the policy from their next request on: idle for 31 minutes, or
    // opened 121 minutes ago, ends them (the clock is moved by rewriting the rows' times).
    let secret = cookie.trim_start_matches("idplex_session=").to_owned();
    let (session, _) = app.store.verify_user_session(&secret).await.unwrap().expect("valid");
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", app.dir.path().join("idplex.db").display())).await.unwrap();
    let set_times = |created: i64, seen: i64| {
        let (db, id) = (&db, session.id.clone());
        async move {
            sqlx::query("UPDATE user_sessions SET created_at = $1, last_seen_at = $2 WHERE id = $3")
                .bind(created)
                .bind(seen)
                .bind(id)
                .execute(db)
                .await
                .unwrap();
        }
    };
    let now = idplex_tests::saml_idp::now_secs() * 1000;
    set_times(now - 60 * 60_000, now - 31 * 60_000).await;
    assert_eq!(me(cookie.clone()).await, StatusCode::UNAUTHORIZED);
    set_times(now - 60 * 60_000, now - 30_000).await;
    assert_eq!(me(cookie.clone()).await, StatusCode::OK);
    set_times(now - 121 * 60_000, now).await;
    assert_eq!(me(cookie.clone()).await, StatusCode::UNAUTHORIZED);
    // Turning the bounds off lets it through again (it was never ended, only held).
    app.call("PUT", path, Some(json!({"session_idle_minutes": null, "session_absolute_minutes": null}).to_string()), true).await;
    assert_eq!(me(cookie).await, StatusCode::OK);
}

/// The Python venv with Authlib that `scripts/test` installs.
fn oidc_python() -> std::path::PathBuf {
    let venv = std::env::var("IDPLEX_OIDC_VENV").unwrap_or_else(|_| "/var/tmp/idplex-tools/oidc-venv".into());
    let python = std::path::Path::new(&venv).join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run the tests through scripts/test, which installs Authlib in {venv} \
         (or: bash scripts/pyvenv {venv} authlib==1.9.10 requests==2.34.2)",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_oidc_client_library_signs_a_user_in() {
    let python = oidc_python();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let app = app_at(&issuer).await;
    let server = tokio::spawn(axum::serve(listener, app.router.clone()).into_future());
    let redirect = "http://127.0.0.1:9/callback";
    let client = register(&app, "acme", "authlib app", &[redirect]).await;
    let cookie = app.sign_in("ada@example.com", &["Engineering", "staff"]).await;
    let ada = app.store.find_users_by_user_name(&app.conn, "ada@example.com").await.unwrap().remove(0);

    for method in ["client_secret_basic", "client_secret_post"] {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/oidc_client.py");
        let out = tokio::process::Command::new(&python)
            .args([script, &issuer, &client.id, &client.secret, redirect, &cookie, method])
            .output()
            .await
            .expect("python runs");
        assert!(
            out.status.success(),
            "{method}: Authlib failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(seen["id_token"]["sub"], ada.id.as_str(), "{seen}");
        assert_eq!(seen["id_token"]["iss"], issuer.as_str());
        assert_eq!(seen["id_token"]["aud"], client.id.as_str());
        assert_eq!(seen["id_token"]["groups"], json!(["Engineering", "staff"]));
        assert_eq!(seen["id_token_header"]["alg"], "RS256");
        assert_eq!(seen["userinfo"]["sub"], ada.id.as_str());
        assert_eq!(seen["userinfo"]["email"], "ada@example.com");
        assert_eq!(seen["token_type"], "Bearer");
    }
    server.abort();
}
