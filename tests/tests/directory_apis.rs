//! The fake Google Directory API and Microsoft Graph (`idplex_tests::directory_apis`), driven with
//! reqwest the way a directory-sync client drives the real ones: tokens (a service-account JWT
//! signed with `jsonwebtoken`; client credentials), paging, groups and nested members, Graph
//! delta after a 1 % change, 410 on an expired delta token, throttling and outages with
//! Retry-After, 401 after every token was expired, and a body cut mid-stream.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use idplex_tests::directory_apis::{
    Directory, FakeGroup, FakeMember, FakeUser, GOOGLE_SYNC_SCOPES, GRAPH_DEFAULT_SCOPE, GoogleApi, GoogleCreds, GraphApi, GraphCreds,
    JWT_BEARER_GRANT, SCOPE_USER_READONLY,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "admin@example.com";
const SA: &str = "idplex-sync@acme-idp.iam.gserviceaccount.com";

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Signs `claims` with the key from a Google JSON key file, as a client library would.
fn sign(key_file: &Value, claims: &Value) -> String {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(key_file["private_key"].as_str().unwrap()).unwrap();
    let der = key.to_pkcs1_der().unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(key_file["private_key_id"].as_str().unwrap().to_owned());
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes())).unwrap()
}

fn claims(key_file: &Value, scope: &str, sub: Option<&str>) -> Value {
    let now = now();
    let mut c = json!({
        "iss": key_file["client_email"], "aud": key_file["token_uri"], "scope": scope, "iat": now, "exp": now + 3600,
    });
    if let Some(s) = sub {
        c["sub"] = json!(s);
    }
    c
}

async fn google_token_response(api: &GoogleApi, assertion: &str) -> (StatusCode, Value) {
    let r = http().post(&api.token_url).form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", assertion)]).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn google_token(api: &GoogleApi) -> String {
    let key_file: Value = serde_json::from_str(&api.key_file()).unwrap();
    let (status, body) = google_token_response(api, &sign(&key_file, &claims(&key_file, &GOOGLE_SYNC_SCOPES.join(" "), Some(ADMIN)))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn get(url: &str, token: &str) -> reqwest::Response {
    http().get(url).bearer_auth(token).send().await.unwrap()
}

async fn get_json(url: &str, token: &str) -> Value {
    let r = get(url, token).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{url}: {body}");
    body
}

/// One RSA key per test binary (generation is the slow part of a test in a debug build).
fn creds() -> GoogleCreds {
    static CREDS: std::sync::OnceLock<GoogleCreds> = std::sync::OnceLock::new();
    CREDS.get_or_init(|| GoogleCreds::generate(SA, ADMIN, &GOOGLE_SYNC_SCOPES)).clone()
}

/// Pages through a Google list, returning every item of `field`.
async fn google_all(first_url: &str, field: &str, token: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut page_token: Option<String> = None;
    loop {
        let url = match &page_token {
            Some(t) => format!("{first_url}&pageToken={t}"),
            None => first_url.to_owned(),
        };
        let body = get_json(&url, token).await;
        pages += 1;
        items.extend(body[field].as_array().cloned().unwrap_or_default());
        match body["nextPageToken"].as_str() {
            Some(t) => page_token = Some(t.to_owned()),
            None => return (items, pages),
        }
    }
}

/// Follows `@odata.nextLink` to the end; returns the items and the deltaLink, if any.
async fn graph_all(first_url: &str, token: &str, prefer: Option<&str>) -> (Vec<Value>, Option<String>, usize) {
    let mut items = Vec::new();
    let mut url = first_url.to_owned();
    let mut pages = 0;
    loop {
        let mut req = http().get(&url).bearer_auth(token);
        if let Some(p) = prefer {
            req = req.header("Prefer", p);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{url}: {body}");
        pages += 1;
        items.extend(body["value"].as_array().unwrap().iter().cloned());
        match body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(body.get("@odata.deltaLink").is_none(), "a page has both links");
                url = next.to_owned();
            }
            None => return (items, body["@odata.deltaLink"].as_str().map(str::to_owned), pages),
        }
    }
}

#[test]
fn generate_is_deterministic() {
    let a = Directory::generate(2_000, 12, 30, 42);
    let b = Directory::generate(2_000, 12, 30, 42);
    let c = Directory::generate(2_000, 12, 30, 43);
    assert_eq!(a.users(), b.users());
    assert_eq!(a.groups(), b.groups());
    assert_ne!(a.users(), c.users());
    assert_eq!(a.user_count(), 2_000);
    assert_eq!(a.group_count(), 12);
    let emails: HashSet<String> = a.users().into_iter().map(|u| u.primary_email).collect();
    assert_eq!(emails.len(), 2_000);
    // Group 1 nests group 0; every group has 30 distinct users.
    let groups = a.groups();
    let by_email: BTreeMap<&str, &FakeGroup> = groups.iter().map(|g| (g.email.as_str(), g)).collect();
    let (g0, g1) = (by_email["group-0@example.com"], by_email["group-1@example.com"]);
    assert!(g1.members.contains(&FakeMember::Group(g0.id.clone())));
    for g in &groups {
        let users: HashSet<&FakeMember> = g.members.iter().filter(|m| matches!(m, FakeMember::User(_))).collect();
        assert_eq!(users.len(), 30);
    }
    assert_eq!(a.version(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_key_file_token_and_ten_thousand_users() {
    let dir = Directory::generate(10_000, 5, 10, 7);
    let api = GoogleApi::start(dir.clone(), creds()).await;
    let key_file: Value = serde_json::from_str(&api.key_file()).unwrap();
    assert_eq!(key_file["type"], "service_account");
    assert_eq!(key_file["client_email"], SA);
    assert_eq!(key_file["project_id"], "acme-idp");
    assert_eq!(key_file["token_uri"].as_str(), Some(api.token_url.as_str()));
    assert!(key_file["private_key"].as_str().unwrap().starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(key_file["private_key"].as_str().unwrap().ends_with("-----END PRIVATE KEY-----\n"));
    assert_eq!(key_file["private_key_id"].as_str().unwrap().len(), 40);
    assert_eq!(key_file["client_id"].as_str().unwrap().len(), 21);

    let (status, body) =
        google_token_response(&api, &sign(&key_file, &claims(&key_file, &GOOGLE_SYNC_SCOPES.join(" "), Some(ADMIN)))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let url = format!("{}/admin/directory/v1/users?customer=my_customer&maxResults=500&projection=full&orderBy=email", api.base_url);
    let (users, pages) = google_all(&url, "users", &token).await;
    assert_eq!(pages, 20);
    assert_eq!(users.len(), 10_000);
    let ids: HashSet<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 10_000);
    let emails: Vec<&str> = users.iter().map(|u| u["primaryEmail"].as_str().unwrap()).collect();
    assert!(emails.windows(2).all(|w| w[0] < w[1]), "ordered by email");
    eprintln!("10,000 Google users in {pages} pages: {:?}", started.elapsed());

    // One user as the docs show it.
    let ada = dir.users().into_iter().find(|u| u.manager.is_some()).unwrap();
    let manager_email = dir.user(ada.manager.as_deref().unwrap()).unwrap().primary_email;
    let u = users.iter().find(|u| u["id"] == ada.id.as_str()).unwrap();
    assert_eq!(u["kind"], "admin#directory#user");
    assert_eq!(u["primaryEmail"], ada.primary_email.as_str());
    assert_eq!(u["name"]["givenName"], ada.given_name.as_str());
    assert_eq!(u["name"]["familyName"], ada.family_name.as_str());
    assert_eq!(u["name"]["fullName"], ada.full_name().as_str());
    assert_eq!(u["suspended"], ada.suspended);
    assert_eq!(u["archived"], ada.archived);
    assert_eq!(u["emails"][0], json!({"address": ada.primary_email, "primary": true}));
    assert_eq!(u["organizations"][0]["department"], ada.department.as_deref().unwrap());
    assert_eq!(u["relations"][0], json!({"value": manager_email, "type": "manager"}));
    assert_eq!(u["customerId"], dir.customer_id().as_str());
    assert!(u["creationTime"].as_str().unwrap().ends_with(".000Z"));
    assert!(u["etag"].as_str().unwrap().starts_with('"'));

    // A customer id and the domain work as well as my_customer; neither is a 400.
    for q in [format!("customer={}", dir.customer_id()), "domain=example.com".to_owned()] {
        let body = get_json(&format!("{}/admin/directory/v1/users?{q}&maxResults=3", api.base_url), &token).await;
        assert_eq!(body["users"].as_array().unwrap().len(), 3);
    }
    let r = get(&format!("{}/admin/directory/v1/users?maxResults=3", api.base_url), &token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = get(&format!("{}/admin/directory/v1/users?customer=my_customer&maxResults=501", api.base_url), &token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let one = get_json(&format!("{}/admin/directory/v1/users/{}", api.base_url, ada.primary_email), &token).await;
    assert_eq!(one["id"], ada.id.as_str());

    let stats = api.stats();
    assert_eq!(stats.tokens_issued, 1);
    assert_eq!(stats.requests_to("users"), 24);
    assert_eq!(stats.bearer_tokens_seen, vec![token.clone()]);
    assert_eq!(stats.issued_tokens, vec![token]);
}

#[tokio::test]
async fn google_refuses_bad_assertions() {
    let dir = Directory::generate(20, 2, 5, 1);
    let api = GoogleApi::start(dir, creds()).await;
    let key_file: Value = serde_json::from_str(&api.key_file()).unwrap();
    let scope = GOOGLE_SYNC_SCOPES.join(" ");
    let refused = |status: StatusCode, body: &Value, error: &str| {
        assert_eq!(body["error"], error, "{body}");
        assert!(body["error_description"].is_string(), "{body}");
        status
    };

    // Another delegated admin: domain-wide delegation names one subject.
    let (s, b) = google_token_response(&api, &sign(&key_file, &claims(&key_file, &scope, Some("mallory@example.com")))).await;
    assert_eq!(refused(s, &b, "invalid_grant"), StatusCode::BAD_REQUEST);

    // A bad signature: the right claims, the signature of other bytes.
    let good = sign(&key_file, &claims(&key_file, &scope, Some(ADMIN)));
    let other = sign(&key_file, &claims(&key_file, SCOPE_USER_READONLY, Some(ADMIN)));
    let forged = format!("{}.{}", good.rsplit_once('.').unwrap().0, other.rsplit_once('.').unwrap().1);
    let (s, b) = google_token_response(&api, &forged).await;
    assert_eq!(refused(s, &b, "invalid_grant"), StatusCode::BAD_REQUEST);
    assert_eq!(b["error_description"], "Invalid JWT Signature.");

    // Wrong audience, another issuer, a two-hour assertion, an expired one.
    let mut c = claims(&key_file, &scope, Some(ADMIN));
    c["aud"] = json!("https://oauth2.googleapis.com/token");
    let (s, b) = google_token_response(&api, &sign(&key_file, &c)).await;
    assert_eq!(refused(s, &b, "invalid_grant"), StatusCode::BAD_REQUEST);
    let mut c = claims(&key_file, &scope, Some(ADMIN));
    c["iss"] = json!("other@acme-idp.iam.gserviceaccount.com");
    let (s, b) = google_token_response(&api, &sign(&key_file, &c)).await;
    assert_eq!(refused(s, &b, "invalid_grant"), StatusCode::BAD_REQUEST);
    let mut c = claims(&key_file, &scope, Some(ADMIN));
    c["exp"] = json!(now() + 7200);
    let (s, b) = google_token_response(&api, &sign(&key_file, &c)).await;
    assert_eq!(refused(s, &b, "invalid_grant"), StatusCode::BAD_REQUEST);
    let mut c = claims(&key_file, &scope, Some(ADMIN));
    c["iat"] = json!(now() - 4000);
    c["exp"] = json!(now() - 400);
    let (s, b) = google_token_response(&api, &sign(&key_file, &c)).await;
    assert_eq!(refused(s, &b, "invalid_grant"), StatusCode::BAD_REQUEST);

    // A scope the delegation does not grant; no scope; another grant type.
    let (s, b) = google_token_response(
        &api,
        &sign(&key_file, &claims(&key_file, "https://www.googleapis.com/auth/admin.directory.user", Some(ADMIN))),
    )
    .await;
    assert_eq!(refused(s, &b, "unauthorized_client"), StatusCode::UNAUTHORIZED);
    let (s, b) = google_token_response(&api, &sign(&key_file, &claims(&key_file, "", Some(ADMIN)))).await;
    assert_eq!(refused(s, &b, "invalid_scope"), StatusCode::BAD_REQUEST);
    let r = http().post(&api.token_url).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");
    assert_eq!(api.stats().tokens_issued, 0);
    assert_eq!(api.stats().token_refusals, 9);

    // Without `sub` the token is the service account's own: the Directory API refuses it.
    let (s, b) = google_token_response(&api, &sign(&key_file, &claims(&key_file, &scope, None))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let r = get(&format!("{}/admin/directory/v1/users?customer=my_customer", api.base_url), b["access_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // A token for users only may not list groups.
    let (s, b) = google_token_response(&api, &sign(&key_file, &claims(&key_file, SCOPE_USER_READONLY, Some(ADMIN)))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let users_only = b["access_token"].as_str().unwrap().to_owned();
    get_json(&format!("{}/admin/directory/v1/users?customer=my_customer", api.base_url), &users_only).await;
    let r = get(&format!("{}/admin/directory/v1/groups?customer=my_customer", api.base_url), &users_only).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["reason"], "insufficientPermissions");

    // No token, a made-up one: 401 in Google's shape.
    let r = http().get(format!("{}/admin/directory/v1/users?customer=my_customer", api.base_url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = get(&format!("{}/admin/directory/v1/users?customer=my_customer", api.base_url), "ya29.made-up").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], 401);
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    assert!(body["error"]["errors"].is_array());
}

#[tokio::test]
async fn google_groups_and_nested_members() {
    let dir = Directory::generate(500, 15, 50, 3);
    let api = GoogleApi::start(dir.clone(), creds()).await;
    let token = google_token(&api).await;
    let base = format!("{}/admin/directory/v1", api.base_url);

    let (groups, pages) = google_all(&format!("{base}/groups?customer=my_customer&maxResults=7"), "groups", &token).await;
    assert_eq!((groups.len(), pages), (15, 3));
    let g1 = groups.iter().find(|g| g["email"] == "group-1@example.com").unwrap();
    let g0 = groups.iter().find(|g| g["email"] == "group-0@example.com").unwrap();
    assert_eq!(g1["kind"], "admin#directory#group");
    assert_eq!(g1["directMembersCount"], "51");
    assert!(g1["name"].is_string() && g1["description"].is_string());

    // By id and by email; 51 members in pages of 20; the nested group has type GROUP.
    for key in [g1["id"].as_str().unwrap(), "group-1@example.com"] {
        let (members, pages) = google_all(&format!("{base}/groups/{key}/members?maxResults=20"), "members", &token).await;
        assert_eq!((members.len(), pages), (51, 3));
        let nested: Vec<&Value> = members.iter().filter(|m| m["type"] == "GROUP").collect();
        assert_eq!(nested.len(), 1);
        assert_eq!(nested[0]["id"], g0["id"]);
        assert_eq!(nested[0]["email"], "group-0@example.com");
        for m in &members {
            assert_eq!(m["kind"], "admin#directory#member");
            assert_eq!(m["role"], "MEMBER");
            assert!(m["status"] == "ACTIVE" || m["status"] == "SUSPENDED");
        }
    }
    let r = get(&format!("{base}/groups/nobody@example.com/members"), &token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = get(&format!("{base}/groups/group-1@example.com/members?maxResults=201"), &token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // An empty group lists no `members` array at all, as Google's JSON does.
    dir.add_group(FakeGroup::new("g-empty", "empty@example.com", "Empty"));
    let body = get_json(&format!("{base}/groups/empty@example.com/members"), &token).await;
    assert!(body.get("members").is_none(), "{body}");
    assert!(body.get("nextPageToken").is_none());
}

#[tokio::test]
async fn google_faults() {
    let dir = Directory::generate(50, 1, 5, 9);
    let api = GoogleApi::start(dir, creds()).await;
    let token = google_token(&api).await;
    let url = format!("{}/admin/directory/v1/users?customer=my_customer&maxResults=10", api.base_url);

    api.faults().throttle_next(2, 7);
    for _ in 0..2 {
        let r = get(&url, &token).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["retry-after"], "7");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], 429);
        assert_eq!(body["error"]["errors"][0]["reason"], "rateLimitExceeded");
    }
    get_json(&url, &token).await;

    api.faults().unavailable_next(1, 3);
    let r = get(&url, &token).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "3");
    api.faults().fail_next(1);
    assert_eq!(get(&url, &token).await.status(), StatusCode::INTERNAL_SERVER_ERROR);
    api.faults().quota_exceeded_next(1);
    let r = get(&url, &token).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["errors"][0]["reason"], "rateLimitExceeded");

    // A body cut halfway: the status is 200, reading the body fails.
    api.faults().drop_next(1);
    let r = get(&url, &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.is_err(), "the cut body must not read whole");
    get_json(&url, &token).await;

    // The token endpoint's own outage.
    api.faults().fail_token_requests_next(1);
    let key_file: Value = serde_json::from_str(&api.key_file()).unwrap();
    let assertion = sign(&key_file, &claims(&key_file, &GOOGLE_SYNC_SCOPES.join(" "), Some(ADMIN)));
    let (s, _) = google_token_response(&api, &assertion).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);

    // Every token expired at once; a fresh one works.
    api.faults().expire_tokens();
    let r = get(&url, &token).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["status"], "UNAUTHENTICATED");
    let fresh = google_token(&api).await;
    get_json(&url, &fresh).await;

    // A short token lifetime.
    api.faults().set_token_lifetime(1);
    let key_file: Value = serde_json::from_str(&api.key_file()).unwrap();
    let (s, b) = google_token_response(&api, &sign(&key_file, &claims(&key_file, &GOOGLE_SYNC_SCOPES.join(" "), Some(ADMIN)))).await;
    assert_eq!((s, b["expires_in"].as_u64()), (StatusCode::OK, Some(1)));
    let short = b["access_token"].as_str().unwrap().to_owned();
    get_json(&url, &short).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&url, &short).await.status(), StatusCode::UNAUTHORIZED);

    let stats = api.stats();
    assert_eq!(
        (stats.throttled, stats.unavailable, stats.failed, stats.quota_exceeded, stats.dropped, stats.token_failures),
        (2, 1, 1, 1, 1, 1)
    );
    assert_eq!(stats.unauthorized, 2);
    assert_eq!(stats.tokens_issued, 3);
}

async fn graph_token(api: &GraphApi) -> String {
    let c = api.creds();
    let r = http()
        .post(&api.token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
            ("scope", GRAPH_DEFAULT_SCOPE),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_token_and_ten_thousand_users() {
    let dir = Directory::generate(10_000, 3, 10, 11);
    let creds = GraphCreds::generate(1);
    let api = GraphApi::start(dir.clone(), creds.clone()).await;
    let token = graph_token(&api).await;

    // HTTP Basic client authentication works too; a wrong secret, tenant or scope does not.
    let r = http()
        .post(&api.token_url)
        .basic_auth(&creds.client_id, Some(&creds.client_secret))
        .form(&[("grant_type", "client_credentials"), ("scope", GRAPH_DEFAULT_SCOPE)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let form = |secret: &str, scope: &str| {
        vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("client_id".to_owned(), creds.client_id.clone()),
            ("client_secret".to_owned(), secret.to_owned()),
            ("scope".to_owned(), scope.to_owned()),
        ]
    };
    let r = http().post(&api.token_url).form(&form("wrong", GRAPH_DEFAULT_SCOPE)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"].as_str().unwrap().starts_with("AADSTS7000215: Invalid client secret provided"));
    let r = http().post(&api.token_url).form(&form(&creds.client_secret, "User.Read.All")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_scope");
    let other_tenant = api.token_url.replace(&creds.tenant_id, "00000000-0000-0000-0000-000000000000");
    let r = http().post(other_tenant).form(&form(&creds.client_secret, GRAPH_DEFAULT_SCOPE)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let started = Instant::now();
    let select = "id,userPrincipalName,displayName,givenName,surname,mail,accountEnabled,department,jobTitle,employeeId";
    let url = format!("{}/v1.0/users?$select={select}&$top=999", api.base_url);
    let (users, delta, pages) = graph_all(&url, &token, None).await;
    assert_eq!((users.len(), pages, delta), (10_000, 11, None));
    eprintln!("10,000 Graph users in {pages} pages: {:?}", started.elapsed());
    let ids: HashSet<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 10_000);
    let want = dir.users().into_iter().find(|u| u.suspended).unwrap();
    let got = users.iter().find(|u| u["id"] == want.id.as_str()).unwrap();
    assert_eq!(got["accountEnabled"], false);
    assert_eq!(got["userPrincipalName"], want.primary_email.as_str());
    assert_eq!(got["displayName"], want.full_name().as_str());
    assert_eq!(got["employeeId"], want.employee_id.as_deref().unwrap());
    assert_eq!(got.as_object().unwrap().len(), 10);

    // The nextLink is absolute, on this server, and keeps the query options.
    let first = get_json(&format!("{}/v1.0/users?$select=id&$top=5", api.base_url), &token).await;
    let next = first["@odata.nextLink"].as_str().unwrap();
    assert!(next.starts_with(&format!("{}/v1.0/users?", api.base_url)), "{next}");
    assert!(next.contains("$skiptoken="), "{next}");
    assert_eq!(first["value"][0].as_object().unwrap().len(), 1);
    assert!(first["@odata.context"].as_str().unwrap().contains("$metadata#users"));

    // Without $select: Graph's default properties, so no accountEnabled.
    let plain = get_json(&format!("{}/v1.0/users?$top=1", api.base_url), &token).await;
    assert!(plain["value"][0].get("accountEnabled").is_none());
    assert!(plain["value"][0]["userPrincipalName"].is_string());
    let r = get(&format!("{}/v1.0/users?$top=1000", api.base_url), &token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = get(&format!("{}/v1.0/users?$select=id,shoeSize", api.base_url), &token).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let stats = api.stats();
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!(stats.token_refusals, 3);
    assert_eq!(stats.bearer_tokens_seen, vec![token]);
}

#[tokio::test]
async fn graph_groups_and_nested_members() {
    let dir = Directory::generate(300, 6, 40, 5);
    let api = GraphApi::start(dir.clone(), GraphCreds::generate(2)).await;
    let token = graph_token(&api).await;

    let (groups, _, pages) =
        graph_all(&format!("{}/v1.0/groups?$select=id,displayName,description,mail&$top=4", api.base_url), &token, None).await;
    assert_eq!((groups.len(), pages), (6, 2));
    let g1 = groups.iter().find(|g| g["mail"] == "group-1@example.com").unwrap();
    let g0 = groups.iter().find(|g| g["mail"] == "group-0@example.com").unwrap();
    assert_eq!(g1.as_object().unwrap().len(), 4);

    let url = format!("{}/v1.0/groups/{}/members?$select=id&$top=15", api.base_url, g1["id"].as_str().unwrap());
    let (members, _, pages) = graph_all(&url, &token, None).await;
    assert_eq!((members.len(), pages), (41, 3));
    let nested: Vec<&Value> = members.iter().filter(|m| m["@odata.type"] == "#microsoft.graph.group").collect();
    assert_eq!(nested.len(), 1);
    assert_eq!(nested[0]["id"], g0["id"]);
    assert_eq!(members.iter().filter(|m| m["@odata.type"] == "#microsoft.graph.user").count(), 40);
    assert!(members.iter().all(|m| m.as_object().unwrap().len() == 2));

    let r = get(&format!("{}/v1.0/groups/no-such-group/members", api.base_url), &token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "Request_ResourceNotFound");

    // An app without a group permission may read users but not groups.
    let mut users_only = GraphCreds::generate(3);
    users_only.roles = vec!["User.Read.All".into()];
    let api2 = GraphApi::start(dir, users_only).await;
    let token2 = graph_token(&api2).await;
    get_json(&format!("{}/v1.0/users?$top=1", api2.base_url), &token2).await;
    let r = get(&format!("{}/v1.0/groups", api2.base_url), &token2).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "Authorization_RequestDenied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_delta_after_one_percent_change() {
    let dir = Directory::generate(10_000, 4, 20, 21);
    let api = GraphApi::start(dir.clone(), GraphCreds::generate(4)).await;
    let token = graph_token(&api).await;
    let select = "id,displayName,userPrincipalName,accountEnabled,department";
    let prefer = Some("odata.maxpagesize=999");

    let (all, delta_link, pages) = graph_all(&format!("{}/v1.0/users/delta?$select={select}", api.base_url), &token, prefer).await;
    assert_eq!((all.len(), pages), (10_000, 11));
    assert_eq!(all.iter().map(|u| u["id"].as_str().unwrap()).collect::<HashSet<_>>().len(), 10_000);
    assert!(all.iter().all(|u| u.get("@removed").is_none()));
    let delta_link = delta_link.expect("a deltaLink on the last page");
    assert!(delta_link.starts_with(&format!("{}/v1.0/users/delta?$deltatoken=", api.base_url)), "{delta_link}");

    // Nothing changed: an empty page and a new deltaLink.
    let (none, again, _) = graph_all(&delta_link, &token, None).await;
    assert!(none.is_empty(), "{none:?}");
    let delta_link = again.unwrap();

    // Change 1 %: 80 updated, 15 deleted, 5 deleted for good (none of them anyone's manager,
    // so no report changes with them), 3 added (that's 103 entries).
    let users = dir.users();
    let managers: HashSet<String> = users.iter().filter_map(|u| u.manager.clone()).collect();
    let leaves: Vec<&FakeUser> = users.iter().filter(|u| !managers.contains(&u.id)).collect();
    let mut updated = BTreeSet::new();
    for u in leaves.iter().step_by(50).take(80) {
        assert!(dir.update_user(&u.id, |u| u.department = Some("Moved".into())));
        updated.insert(u.id.clone());
    }
    let mut soft = BTreeSet::new();
    let mut hard = BTreeSet::new();
    for (i, u) in leaves.iter().filter(|u| !updated.contains(&u.id)).step_by(97).take(20).enumerate() {
        if i < 15 {
            assert!(dir.remove_user(&u.id));
            soft.insert(u.id.clone());
        } else {
            assert!(dir.purge_user(&u.id));
            hard.insert(u.id.clone());
        }
    }
    for i in 0..3 {
        let id = format!("new-user-{i}");
        dir.add_user(FakeUser::new(&id, &format!("new{i}@example.com"), "New", "Hire"));
        updated.insert(id);
    }
    // Updated twice: still one entry.
    let twice = updated.iter().next().unwrap().clone();
    dir.update_user(&twice, |u| u.title = Some("Twice".into()));

    let (changes, next_link, pages) = graph_all(&delta_link, &token, Some("odata.maxpagesize=40")).await;
    assert_eq!(pages, 3);
    assert_eq!(changes.len(), 103);
    let mut seen_changed = BTreeSet::new();
    let mut seen_soft = BTreeSet::new();
    let mut seen_hard = BTreeSet::new();
    for c in &changes {
        let id = c["id"].as_str().unwrap().to_owned();
        match c["@removed"]["reason"].as_str() {
            Some("changed") => assert!(seen_soft.insert(id)),
            Some("deleted") => assert!(seen_hard.insert(id)),
            None => {
                let want = dir.user(&id).unwrap();
                assert_eq!(c["displayName"], want.full_name().as_str());
                assert_eq!(c["department"], json!(want.department));
                assert!(c.get("accountEnabled").is_some(), "the selected properties: {c}");
                assert!(seen_changed.insert(id));
            }
            Some(other) => panic!("reason {other}"),
        }
    }
    assert_eq!((seen_changed, seen_soft, seen_hard), (updated, soft, hard));
    let next_link = next_link.unwrap();

    // `$deltatoken=latest`: only a link.
    let latest = get_json(&format!("{}/v1.0/users/delta?$deltatoken=latest&$select=id", api.base_url), &token).await;
    assert_eq!(latest["value"], json!([]));
    assert!(latest["@odata.deltaLink"].is_string());

    // Expired delta tokens: 410 Gone, the documented error, a Location to start over.
    api.faults().expire_delta_tokens();
    let r = get(&next_link, &token).await;
    assert_eq!(r.status(), StatusCode::GONE);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("{}/v1.0/users/delta", api.base_url));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "syncStateNotFound");
    assert_eq!(body["error"]["innerError"]["code"], "resyncRequired");
    let r = get(&format!("{}/v1.0/users/delta?$deltatoken=garbage", api.base_url), &token).await;
    assert_eq!(r.status(), StatusCode::GONE);
    assert_eq!(api.stats().gone, 2);
}

#[tokio::test]
async fn graph_group_delta_members() {
    let dir = Directory::generate(200, 5, 10, 8);
    let api = GraphApi::start(dir.clone(), GraphCreds::generate(5)).await;
    let token = graph_token(&api).await;
    let (groups, link, _) =
        graph_all(&format!("{}/v1.0/groups/delta?$select=displayName,description,members", api.base_url), &token, None).await;
    assert_eq!(groups.len(), 5);
    let g1 = dir.groups().into_iter().find(|g| g.email == "group-1@example.com").unwrap();
    let got = groups.iter().find(|g| g["id"] == g1.id.as_str()).unwrap();
    let members = got["members@delta"].as_array().unwrap();
    assert_eq!(members.len(), 11);
    assert!(members.iter().any(|m| m["@odata.type"] == "#microsoft.graph.group"));

    // One member out, one in, a group deleted, a group renamed.
    let out = g1.members[0].clone();
    let newcomer = dir.users().into_iter().find(|u| !g1.members.contains(&FakeMember::User(u.id.clone()))).unwrap();
    assert!(dir.remove_member(&g1.id, &out));
    assert!(dir.add_member(&g1.id, FakeMember::User(newcomer.id.clone())));
    let g3 = dir.groups().into_iter().find(|g| g.email == "group-3@example.com").unwrap();
    let g2 = dir.groups().into_iter().find(|g| g.email == "group-2@example.com").unwrap();
    assert!(dir.remove_group(&g3.id));
    assert!(dir.update_group(&g2.id, |g| g.name = "Renamed".into()));

    let (changes, _, _) = graph_all(&link.unwrap(), &token, None).await;
    let by_id: BTreeMap<&str, &Value> = changes.iter().map(|c| (c["id"].as_str().unwrap(), c)).collect();
    assert_eq!(by_id.len(), 3, "{changes:?}");
    let c1 = by_id[g1.id.as_str()];
    let md = c1["members@delta"].as_array().unwrap();
    assert_eq!(md.len(), 2, "{c1}");
    assert!(md.contains(&json!({"@odata.type": "#microsoft.graph.user", "id": newcomer.id})));
    assert!(md.contains(&json!({"@odata.type": "#microsoft.graph.user", "id": out.id(), "@removed": {"reason": "deleted"}})));
    assert_eq!(by_id[g3.id.as_str()]["@removed"]["reason"], "changed");
    assert_eq!(by_id[g2.id.as_str()]["displayName"], "Renamed");
    assert!(by_id[g2.id.as_str()].get("members@delta").is_none(), "no membership change");
}

#[tokio::test]
async fn graph_group_delta_splits_large_groups() {
    let dir = Directory::generate(200, 5, 10, 8);
    let api = GraphApi::start(dir.clone(), GraphCreds::generate(9)).await;
    api.set_delta_members_per_object(4);
    let token = graph_token(&api).await;
    let url = format!("{}/v1.0/groups/delta?$select=displayName,members", api.base_url);
    let (objects, link, pages) = graph_all(&url, &token, Some("odata.maxpagesize=3")).await;
    // Group 1 has 11 members (3 objects), the others 10 (3 each): 15 objects, 5 pages of 3.
    assert_eq!((objects.len(), pages), (15, 5));
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in &objects {
        let ms = o["members@delta"].as_array().unwrap();
        assert!(ms.len() <= 4);
        members.entry(o["id"].as_str().unwrap().to_owned()).or_default().extend(ms.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(objects.iter().filter(|o| o.get("displayName").is_some()).count(), 5, "only a group's first object has its properties");
    for g in dir.groups() {
        let want: Vec<String> = g.members.iter().map(|m| m.id().to_owned()).collect();
        assert_eq!(members[&g.id], want, "{}", g.email);
    }

    // Six members join group 1: two objects in the delta.
    let g1 = dir.groups().into_iter().find(|g| g.email == "group-1@example.com").unwrap();
    let joining: Vec<FakeUser> =
        dir.users().into_iter().filter(|u| !g1.members.contains(&FakeMember::User(u.id.clone()))).take(6).collect();
    for u in &joining {
        assert!(dir.add_member(&g1.id, FakeMember::User(u.id.clone())));
    }
    let (changes, _, pages) = graph_all(&link.unwrap(), &token, Some("odata.maxpagesize=1")).await;
    assert_eq!((changes.len(), pages), (2, 2));
    assert!(changes.iter().all(|c| c["id"] == g1.id.as_str()));
    let joined: BTreeSet<&str> =
        changes.iter().flat_map(|c| c["members@delta"].as_array().unwrap()).map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(joined, joining.iter().map(|u| u.id.as_str()).collect());
}

#[tokio::test]
async fn graph_faults() {
    let dir = Directory::generate(30, 1, 5, 6);
    let api = GraphApi::start(dir, GraphCreds::generate(6)).await;
    let token = graph_token(&api).await;
    let url = format!("{}/v1.0/users?$select=id&$top=10", api.base_url);

    api.faults().throttle_next(1, 5);
    let r = get(&url, &token).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "TooManyRequests");
    api.faults().unavailable_next(1, 2);
    let r = get(&url, &token).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "2");
    api.faults().fail_next(1);
    assert_eq!(get(&url, &token).await.status(), StatusCode::INTERNAL_SERVER_ERROR);
    api.faults().drop_next(1);
    let r = get(&url, &token).await;
    assert!(r.json::<Value>().await.is_err());
    get_json(&url, &token).await;

    api.faults().expire_tokens();
    let r = get(&url, &token).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(body["error"]["innerError"]["request-id"].is_string());
    let r = http().get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let fresh = graph_token(&api).await;
    get_json(&url, &fresh).await;
    let s = api.stats();
    assert_eq!((s.throttled, s.unavailable, s.failed, s.dropped, s.unauthorized), (1, 1, 1, 1, 2));
}

/// The benchmark's scale: 100,000 users through both fakes in their largest pages, without
/// O(n²) paging. (Only the page tokens are parsed out of Google's 93 MB here: parsing all of it
/// in this unoptimized test build would take longer than serving it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_users_page_quickly() {
    let started = Instant::now();
    let dir = Directory::generate(100_000, 0, 0, 99);
    eprintln!("generated 100,000 users in {:?}", started.elapsed());
    let google = GoogleApi::start(dir.clone(), creds()).await;
    let graph = GraphApi::start(dir, GraphCreds::generate(7)).await;

    let token = google_token(&google).await;
    let client = http();
    let first = format!("{}/admin/directory/v1/users?customer=my_customer&maxResults=500", google.base_url);
    {
        let t = Instant::now();
        let (mut url, mut pages, mut users) = (first.clone(), 0, 0);
        loop {
            let body = client.get(&url).bearer_auth(&token).send().await.unwrap().text().await.unwrap();
            pages += 1;
            users += body.matches("\"kind\":\"admin#directory#user\"").count();
            let tail = &body[body.len().saturating_sub(300)..];
            match tail.split_once("\"nextPageToken\":\"") {
                Some((_, rest)) => url = format!("{first}&pageToken={}", rest.split('"').next().unwrap()),
                None => break,
            }
        }
        assert_eq!((users, pages), (100_000, 200));
        eprintln!("Google: 100,000 users in {:?}", t.elapsed());
    }

    let token = graph_token(&graph).await;
    let t = Instant::now();
    let (users, _, pages) =
        graph_all(&format!("{}/v1.0/users?$select=id,userPrincipalName,displayName,accountEnabled&$top=999", graph.base_url), &token, None)
            .await;
    assert_eq!((users.len(), pages), (100_000, 101));
    assert_eq!(users.iter().map(|u| u["id"].as_str().unwrap()).collect::<HashSet<_>>().len(), 100_000);
    eprintln!("Graph: 100,000 users in {:?}", t.elapsed());
}
