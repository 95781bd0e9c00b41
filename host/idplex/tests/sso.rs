//! SAML sign-in through the real binary: an admin sets the connection up with the CLI (`idplex
//! saml import|set|domains|show|metadata`), a browser signs in over real HTTP (login redirect,
//! the IdP's response signed by `xmlsec1`, the ACS, the session cookie on `/api/v1/me`); and on
//! PostgreSQL, two replicas behind one public URL: a request sent by one is answered at the
//! other, and the assertion accepted there is a replay at the first.

use idplex_tests::saml_idp::TestIdp;
use idplex_tests::{Server, TestEnv};

const BIN: &str = env!("CARGO_BIN_EXE_idplex");
const PUBLIC: &str = "https://idplex.example";

/// The demo connection's id, from the SCIM URL `--demo` prints.
fn demo_connection(server: &Server) -> String {
    let url = server
        .stdout_lines
        .iter()
        .find_map(|l| l.strip_prefix("SCIM base URL: "))
        .unwrap_or_else(|| panic!("no SCIM base URL in {:?}", server.stdout_lines));
    url.trim().rsplit('/').next().unwrap().to_string()
}

/// A browser: no redirects followed, cookies handled by hand.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// `GET /saml/{conn}/login` on `server`: the AuthnRequest ID the redirect carries.
async fn login(http: &reqwest::Client, server: &Server, conn: &str) -> String {
    let resp = http.get(format!("{}/saml/{conn}/login?return_to=/home", server.base)).send().await.unwrap();
    assert_eq!(resp.status(), 303, "{:?}", resp.text().await);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("https://idp.example.com/sso?SAMLRequest="), "{location}");
    let query = location.split_once('?').unwrap().1;
    let parsed = idplex_saml::authn_request::RedirectQuery::parse(query).unwrap();
    let xml = idplex_saml::authn_request::decode_redirect(&parsed.message).unwrap();
    xml.split(" ID=\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_string()
}

/// Posts `saml` to `server`'s ACS: status, `x-idplex-error`, `set-cookie`.
async fn acs(http: &reqwest::Client, server: &Server, conn: &str, saml: &str) -> (u16, String, String) {
    let resp = http
        .post(format!("{}/saml/{conn}/acs", server.base))
        .form(&[("SAMLResponse", saml)])
        .send()
        .await
        .unwrap();
    let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (resp.status().as_u16(), header("x-idplex-error"), header("set-cookie"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sets_up_saml_with_the_cli_and_a_user_signs_in_over_http() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo", "--public-url", PUBLIC]).await;
    let conn = demo_connection(&server);
    let idp = TestIdp::new();
    let cli = |args: Vec<String>| {
        let env = &env;
        async move {
            let mut all = vec!["--public-url".to_string(), PUBLIC.to_string()];
            all.extend(args);
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            env.cli_json(&all).await
        }
    };
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();

    // Not set up yet; by hand without a certificate, sign-in cannot be enabled (exit 3).
    assert_eq!(cli(s(&["saml", "show", &conn])).await.code, 4);
    let refused = cli(s(&[
        "saml", "set", &conn, "--idp-entity-id", &idp.entity_id, "--sso-url", &idp.sso_url, "--enabled", "true",
    ]))
    .await;
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(refused.stderr.contains("without an IdP signing certificate") || refused.stdout.contains("without an IdP signing certificate"), "{refused:?}");

    // Imported from the IdP's metadata file, enabled, a domain routed.
    let metadata = env.write_file("idp-metadata.xml", idp.metadata().as_bytes());
    let imported = cli(s(&["saml", "import", &conn, metadata.to_str().unwrap(), "--enable"])).await;
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    let view = imported.json();
    assert_eq!(view["enabled"], true);
    assert_eq!(view["acs_url"], format!("{PUBLIC}/saml/{conn}/acs"));
    assert_eq!(view["sp_entity_id"], format!("{PUBLIC}/saml/{conn}"));
    assert_eq!(cli(s(&["saml", "domains", &conn, "example.com"])).await.json()["domains"][0], "example.com");
    let md = env.cli(&["--public-url", PUBLIC, "saml", "metadata", &conn]).await;
    assert!(md.stdout.contains(&format!("Location=\"{PUBLIC}/saml/{conn}/acs\"")), "{}", md.stdout);
    let text = env.cli(&["--public-url", PUBLIC, "saml", "show", &conn]).await;
    assert!(text.stdout.contains("ACS URL") && text.stdout.contains("example.com"), "{}", text.stdout);

    // AuthnRequests signed with a generated SP key: the redirect carries the signature.
    assert!(cli(s(&["saml", "sp-key", "show"])).await.json()["sp_key"].is_null());
    let key = cli(s(&["saml", "sp-key", "generate"])).await.json();
    assert!(key["sp_key"]["certificate_pem"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"), "{key}");
    let signing = cli(s(&["saml", "set", &conn, "--sign-authn-requests", "true"])).await;
    assert_eq!(signing.json()["sign_authn_requests"], true, "{}", signing.stderr);

    // The browser: login redirect, the IdP's signed answer at the ACS, the session.
    let http = browser();
    let signed = http.get(format!("{}/saml/{conn}/login", server.base)).send().await.unwrap();
    assert!(signed.headers()["location"].to_str().unwrap().contains("&Signature="));
    let id = login(&http, &server, &conn).await;
    let r = idp.response(&format!("{PUBLIC}/saml/{conn}/acs"), &format!("{PUBLIC}/saml/{conn}"), Some(&id), "ada@example.com");
    let (status, error, cookie) = acs(&http, &server, &conn, &idp.sign(&r)).await;
    assert_eq!((status, error.as_str()), (303, ""), "{}", server.log());
    let cookie = cookie.split(';').next().unwrap().to_string();
    let me = http.get(format!("{}/api/v1/me", server.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<serde_json::Value>().await.unwrap()["userName"], "ada@example.com");

    // A forged response is refused, and the admin reads why with `idplex events`.
    let id = login(&http, &server, &conn).await;
    let mut r = idp.response(&format!("{PUBLIC}/saml/{conn}/acs"), &format!("{PUBLIC}/saml/{conn}"), Some(&id), "ceo@example.com");
    r.key = idplex_tests::saml_idp::Key::Attacker;
    let (status, error, _) = acs(&http, &server, &conn, &idp.sign(&r)).await;
    assert_eq!((status, error.as_str()), (403, "signature_invalid"));
    let events = env.cli_json(&["events", "--connection", &conn]).await.json();
    assert!(
        events["events"].as_array().unwrap().iter().any(|e| e["kind"] == "sso_signature_invalid"),
        "{events}"
    );

    // Removed: sign-in through it stops.
    assert_eq!(cli(s(&["saml", "delete", &conn])).await.code, 0);
    let resp = http.get(format!("{}/saml/{conn}/login", server.base)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_outstanding_requests_and_the_replay_cache() {
    let env = TestEnv::new(BIN).await;
    if !env.is_postgres() {
        eprintln!("replicas share a PostgreSQL database: this test runs in the PostgreSQL pass (IDPLEX_TEST_DATABASE_URL)");
        return;
    }
    let a = env.serve(&["--demo", "--public-url", PUBLIC]).await;
    let conn = demo_connection(&a);
    let b = env.serve(&["--public-url", PUBLIC]).await;
    let idp = TestIdp::new();
    let metadata = env.write_file("idp-metadata.xml", idp.metadata().as_bytes());
    let imported = env.cli_json(&["--public-url", PUBLIC, "saml", "import", &conn, metadata.to_str().unwrap(), "--enable"]).await;
    assert_eq!(imported.code, 0, "{}", imported.stderr);

    let http = browser();
    let acs_url = format!("{PUBLIC}/saml/{conn}/acs");
    let sp = format!("{PUBLIC}/saml/{conn}");
    // Sent by A, answered at B.
    let id = login(&http, &a, &conn).await;
    let signed = idp.sign(&idp.response(&acs_url, &sp, Some(&id), "ada@example.com"));
    let (status, error, _) = acs(&http, &b, &conn, &signed).await;
    assert_eq!((status, error.as_str()), (303, ""), "{}", b.log());
    // The same assertion at A: a replay.
    let (status, error, _) = acs(&http, &a, &conn, &signed).await;
    assert_eq!((status, error.as_str()), (403, "replayed"));
    // And the other way round.
    let id = login(&http, &b, &conn).await;
    let signed = idp.sign(&idp.response(&acs_url, &sp, Some(&id), "ada@example.com"));
    assert_eq!(acs(&http, &a, &conn, &signed).await.0, 303);
    assert_eq!(acs(&http, &b, &conn, &signed).await.1, "replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_registers_an_app_with_the_cli_and_it_gets_a_signed_in_users_identity() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo", "--public-url", PUBLIC]).await;
    let conn = demo_connection(&server);
    let idp = TestIdp::new();
    let metadata = env.write_file("idp-metadata.xml", idp.metadata().as_bytes());
    let imported = env.cli_json(&["--public-url", PUBLIC, "saml", "import", &conn, metadata.to_str().unwrap(), "--enable"]).await;
    assert_eq!(imported.code, 0, "{}", imported.stderr);

    // The admin registers the app; the secret is printed once, never listed.
    let redirect = "https://wiki.example/callback";
    let made = env.cli_json(&["app", "create", "--org", "default", "--name", "wiki", "--redirect-uri", redirect]).await.ok_json();
    let client_id = made["client_id"].as_str().unwrap().to_owned();
    let secret = made["client_secret"].as_str().unwrap().to_owned();
    let listed = env.cli_json(&["app", "list"]).await;
    assert!(listed.stdout.contains(&client_id) && !listed.stdout.contains("idp_ocs_"), "{}", listed.stdout);
    let refused = env.cli_json(&["app", "create", "--org", "default", "--name", "x", "--redirect-uri", "http://wiki.example/cb"]).await;
    assert_eq!(refused.code, 3, "{refused:?}");
    // A signing key made ahead of the first sign-in; a session policy for the organization.
    let kid = env.cli_json(&["oidc", "rotate-key"]).await.ok_json()["keys"][0]["kid"].as_str().unwrap().to_owned();
    assert_eq!(env.cli_json(&["oidc", "keys"]).await.ok_json()["keys"][0]["kid"], kid.as_str());
    let policy = env.cli_json(&["org", "session-policy", "default", "--idle-minutes", "30"]).await.ok_json();
    assert_eq!(policy, serde_json::json!({"session_idle_minutes": 30, "session_absolute_minutes": null}));
    assert_eq!(env.cli_json(&["org", "session-policy", "default", "--idle-minutes", "2"]).await.code, 3);

    // A user signs in, then the app's authorization request gets a code at once.
    let http = browser();
    let id = login(&http, &server, &conn).await;
    let r = idp.response(&format!("{PUBLIC}/saml/{conn}/acs"), &format!("{PUBLIC}/saml/{conn}"), Some(&id), "ada@example.com");
    let (status, _, cookie) = acs(&http, &server, &conn, &idp.sign(&r)).await;
    assert_eq!(status, 303, "{}", server.log());
    let cookie = cookie.split(';').next().unwrap().to_string();
    let verifier = "v".repeat(60);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let authorize = http
        .get(format!("{}/oauth2/authorize", server.base))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", redirect),
            ("scope", "openid email"),
            ("state", "xyz"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(authorize.status(), 303, "{}", server.log());
    let location = authorize.headers()["location"].to_str().unwrap().to_owned();
    let code = location.split("code=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let exchange = |secret: String, code: String| {
        let (http, server, client_id, verifier) = (&http, &server, client_id.clone(), verifier.clone());
        async move {
            http.post(format!("{}/oauth2/token", server.base))
                .basic_auth(client_id, Some(secret))
                .form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", redirect), ("code_verifier", &verifier)])
                .send()
                .await
                .unwrap()
        }
    };
    let tokens = exchange(secret.clone(), code).await;
    assert_eq!(tokens.status(), 200, "{}", server.log());
    let tokens: serde_json::Value = tokens.json().await.unwrap();
    let header = tokens["id_token"].as_str().unwrap().split('.').next().unwrap().to_owned();
    let header: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(header["kid"], kid.as_str(), "signed with the key the CLI made");

    // A rotated secret: the old one is refused at once.
    let rotated = env.cli_json(&["app", "rotate-secret", &client_id]).await.ok_json();
    assert_ne!(rotated["client_secret"], secret.as_str());
    let stale = exchange(secret, "idp_occ_x".into()).await;
    assert_eq!(stale.status(), 401);
    assert_eq!(env.cli_json(&["app", "delete", &client_id]).await.code, 0);
    assert_eq!(env.cli_json(&["app", "show", &client_id]).await.code, 4);
}
