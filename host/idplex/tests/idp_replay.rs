//! Data-driven replay of what each IdP really sends (`tests/fixtures/idp-dialects/`: Okta,
//! Microsoft Entra ID in both PATCH dialects, OneLogin, and the generic RFC 7644 vectors)
//! against a live idplex server, each through its own bundled connector (`okta`, `entra-id`,
//! `onelogin`; the generic vectors through `custom-saml`): the host applies strict RFC 7644
//! semantics, so every quirk a vector carries must be undone by its IdP's connector.
//!
//! Every vector runs in a directory of its own, seeded with what the vector presupposes (the
//! user or group its path addresses, the members its PATCH names, the existing user a 409 or a
//! "match" lookup needs); fixture ids are rewritten to the ids idplex assigned. Each vector must
//! answer one of its expected statuses and leave the documented `canonical_effect`, checked by
//! reading the directory back over SCIM. A vector whose effect this harness does not know fails
//! the test: new fixture vectors must be taught here, not skipped.

use std::collections::BTreeMap;

use idplex_tests::{Server, TestEnv};
use reqwest::Method;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_idplex");
/// Fixture file → the bundled connector that speaks its dialect.
const FILES: &[(&str, &str)] =
    &[("okta", "okta"), ("entra", "entra-id"), ("onelogin", "onelogin"), ("generic_rfc7644", "custom-saml")];
const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn fixtures(name: &str) -> Value {
    let path = format!("{}/../../tests/fixtures/idp-dialects/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture file")).expect("fixture JSON")
}

/// One vector's directory: a connection of its own organization and a SCIM token for it.
struct Directory<'a> {
    server: &'a Server,
    base: String,
    token: String,
    /// fixture id → id idplex assigned.
    ids: BTreeMap<String, String>,
}

struct Answer {
    status: u16,
    body: Value,
}

impl<'a> Directory<'a> {
    async fn new(server: &'a Server, vector: &str, connector: &str) -> Self {
        let version = server.newest_version(connector).await;
        let conn = server
            .create_connection(&json!({"name": vector, "connector": connector, "version": version,
                "org_id": format!("org-{vector}")}))
            .await;
        let t = server.post_json(&format!("/admin/v1/connections/{conn}/scim-tokens"), &json!({})).await;
        t.expect(201);
        Directory {
            server,
            base: format!("/scim/v2/{conn}"),
            token: t.body["secret"].as_str().expect("secret").to_string(),
            ids: BTreeMap::new(),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        let mut rb = self.server.request(method, &format!("{}{path}", self.base), Some(&self.token));
        if let Some(b) = body {
            rb = rb.header("content-type", "application/scim+json; charset=utf-8").body(b.to_string());
        }
        let resp = rb.send().await.expect("HTTP request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
    }

    async fn create(&self, endpoint: &str, body: Value) -> String {
        let a = self.send(Method::POST, &format!("/{endpoint}"), Some(&body)).await;
        assert_eq!(a.status, 201, "seeding {endpoint}: {}", a.body);
        a.body["id"].as_str().expect("id").to_string()
    }

    /// A user as rich as the IdPs' own (work and home emails, a primary address, enterprise
    /// attributes), so that PATCHes on filtered paths have targets.
    async fn seed_user(&mut self, fixture_id: &str, user_name: &str) -> String {
        let id = self
            .create(
                "Users",
                json!({
                    "schemas": [USER_URN, ENT],
                    "userName": user_name,
                    "externalId": format!("ext-{fixture_id}"),
                    "name": {"givenName": "Seed", "familyName": "User"},
                    "displayName": "Seed User",
                    "emails": [{"value": format!("work-{user_name}"), "type": "work", "primary": true},
                               {"value": format!("home-{user_name}"), "type": "home"}],
                    "addresses": [{"type": "work", "postalCode": "00000", "primary": true}],
                    "active": true,
                    ENT: {"department": "Seed", "employeeNumber": "0"}
                }),
            )
            .await;
        self.ids.insert(fixture_id.to_string(), id.clone());
        id
    }

    async fn seed_group(&mut self, fixture_id: &str, display_name: &str, members: &[String]) -> String {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let id = self
            .create("Groups", json!({"schemas": [GROUP_URN], "displayName": display_name, "members": members}))
            .await;
        self.ids.insert(fixture_id.to_string(), id.clone());
        id
    }

    /// `text` with every known fixture id replaced by its idplex id.
    fn rewrite(&self, text: &str) -> String {
        self.ids.iter().fold(text.to_string(), |t, (from, to)| t.replace(from, to))
    }

    fn real(&self, fixture_id: &str) -> String {
        self.ids.get(fixture_id).cloned().unwrap_or_else(|| fixture_id.to_string())
    }
}

/// `/scim/v2/Users/abc` or `/scim/Users/abc` → ("Users", Some("abc")).
fn split_path(path: &str) -> (String, Option<String>) {
    let rest = path.trim_start_matches("/scim/v2").trim_start_matches("/scim");
    let mut parts = rest.trim_start_matches('/').splitn(2, '/');
    let endpoint = parts.next().unwrap_or_default().to_string();
    (endpoint, parts.next().map(str::to_string))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// Member ids a PATCH/PUT/POST body names: `members[].value` and `members[value eq "x"]`.
fn member_ids(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let text = body.to_string();
    for part in text.split("members[value eq \\\"").skip(1) {
        if let Some(end) = part.find("\\\"") {
            out.push(part[..end].to_string());
        }
    }
    let mut collect = |members: &Value| {
        for m in members.as_array().into_iter().flatten() {
            if let Some(v) = m.get("value").and_then(Value::as_str) {
                out.push(v.to_string());
            }
        }
    };
    collect(&body["members"]);
    for op in body["Operations"].as_array().into_iter().flatten() {
        if op["path"].as_str().is_some_and(|p| p.eq_ignore_ascii_case("members")) {
            collect(&op["value"]);
        }
        if op["path"].is_null() {
            collect(&op["value"]["members"]);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The `X` of a `attr eq "X"` filter.
fn eq_value(filter: &str, attr: &str) -> Option<String> {
    let lower = filter.to_ascii_lowercase();
    let at = lower.find(&format!("{} eq \"", attr.to_ascii_lowercase()))?;
    let rest = &filter[at + attr.len() + 5..];
    rest.find('"').map(|end| rest[..end].to_string())
}

async fn replay(server: &Server, (file, connector): (&str, &str), vector: &Value) -> Result<(), String> {
    let id = vector["id"].as_str().unwrap();
    let req = &vector["request"];
    let effect = &vector["canonical_effect"];
    let op = effect["op"].as_str().unwrap_or_default();
    let expected: Vec<u16> = vector["expected_response"]["status"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_u64()).map(|s| s as u16).collect())
        .unwrap_or_default();
    // The resource a path addresses exists unless the vector is about a missing one.
    let expects_existing = !expected.contains(&404);
    let method = Method::from_bytes(req["method"].as_str().unwrap().as_bytes()).unwrap();
    let (endpoint, path_id) = split_path(req["path"].as_str().unwrap());
    let mut body = req["body"].clone();
    let query: Vec<(String, String)> = req["query"]
        .as_object()
        .map(|q| q.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();
    let filter = query.iter().find(|(k, _)| k == "filter").map(|(_, v)| v.clone());

    let mut dir = Directory::new(server, id, connector).await;

    // --- seed what the vector presupposes ---
    let mut members = member_ids(&body);
    for key in ["add", "remove", "members"] {
        members.extend(strings(&effect[key]));
    }
    members.sort();
    members.dedup();
    for (i, m) in members.iter().enumerate() {
        dir.seed_user(m, &format!("member{i}@replay.test")).await;
    }
    if let Some(pid) = &path_id
        && expects_existing
    {
        match endpoint.as_str() {
            "Users" => {
                dir.seed_user(pid, "subject@replay.test").await;
            }
            "Groups" => {
                // Members the vector removes start as members, so removing them means something.
                let removed: Vec<String> = strings(&effect["remove"]).iter().map(|m| dir.real(m)).collect();
                dir.seed_group(pid, "Seed Group", &removed).await;
            }
            _ => {}
        }
    }
    let wants_match = effect["result"] == "match"
        || vector["expected_response"]["body"]["totalResults"].as_i64().unwrap_or(0) > 0;
    if wants_match && let Some(f) = &filter {
        if let Some(name) = eq_value(f, "userName") {
            dir.seed_user("lookup-subject", &name).await;
        } else if let Some(name) = eq_value(f, "displayName") {
            dir.seed_group("lookup-subject", &name, &[]).await;
        }
    }
    if effect["reason"] == "uniqueness" {
        let name = body["userName"].as_str().ok_or("a uniqueness vector without userName")?.to_string();
        dir.seed_user("existing", &name).await;
    }

    // --- send it, as the IdP would ---
    if !body.is_null() {
        body = serde_json::from_str(&dir.rewrite(&body.to_string())).unwrap();
    }
    let mut url = format!("/{endpoint}");
    if let Some(pid) = &path_id {
        url = format!("{url}/{}", dir.real(pid));
    }
    let mut rb = server.request(method.clone(), &format!("{}{url}", dir.base), None).query(
        &query.iter().map(|(k, v)| (k.clone(), dir.rewrite(v))).collect::<Vec<_>>(),
    );
    for (name, value) in req["headers"].as_object().into_iter().flatten() {
        let value = value.as_str().unwrap_or_default();
        match name.to_ascii_lowercase().as_str() {
            // Auth vectors keep their (invalid) credential; the others use the directory's token.
            "authorization" if op == "reject" && effect["reason"] == "auth" => rb = rb.header(name, value),
            "authorization" => rb = rb.bearer_auth(&dir.token),
            "content-type" | "accept" | "user-agent" => rb = rb.header(name, value),
            _ => {}
        }
    }
    if !req["headers"].as_object().is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("authorization"))) {
        rb = rb.bearer_auth(&dir.token);
    }
    if !body.is_null() {
        rb = rb.body(body.to_string());
        if !req["headers"].as_object().is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("content-type"))) {
            rb = rb.header("content-type", "application/scim+json");
        }
    }
    let resp = rb.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = resp.text().await.unwrap_or_default();
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !expected.contains(&status) {
        return Err(format!("{file}/{id}: status {status}, expected {expected:?}: {text}"));
    }
    if !text.is_empty() && !content_type.starts_with("application/scim+json") {
        return Err(format!("{file}/{id}: content type {content_type:?}"));
    }

    // --- the canonical effect, read back over SCIM ---
    let fail = |what: String| Err::<(), String>(format!("{file}/{id} ({op}): {what}"));
    let target = path_id.as_deref().map(|p| dir.real(p));
    let get = |endpoint: &str, rid: &str| {
        let (dir, endpoint, rid) = (&dir, endpoint.to_string(), rid.to_string());
        async move { dir.send(Method::GET, &format!("/{endpoint}/{rid}"), None).await }
    };
    let primary_email = |u: &Value| {
        let emails = u["emails"].as_array().cloned().unwrap_or_default();
        emails
            .iter()
            .find(|e| e["primary"] == json!(true) || e["primary"] == json!("true") || e["primary"] == json!("True"))
            .or(emails.first())
            .and_then(|e| e["value"].as_str())
            .map(str::to_string)
    };
    // Canonical attribute name → value in a SCIM user.
    let attr = |u: &Value, name: &str| -> Value {
        match name {
            "user_name" => u["userName"].clone(),
            "external_id" => u["externalId"].clone(),
            "active" => u["active"].clone(),
            "given_name" => u["name"]["givenName"].clone(),
            "family_name" => u["name"]["familyName"].clone(),
            "display_name" => u["displayName"].clone(),
            "nick_name" => u["nickName"].clone(),
            "primary_email" => primary_email(u).map_or(Value::Null, Value::String),
            "department" => u[ENT]["department"].clone(),
            "employee_number" => u[ENT]["employeeNumber"].clone(),
            other => json!({"unknown canonical attribute": other}),
        }
    };
    let same = |a: &Value, b: &Value| match (a, b) {
        (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
        _ => a == b,
    };
    match op {
        "none" => {}
        "lookup" | "lookup_group" => {
            let total = answer["totalResults"].as_i64().unwrap_or(-1);
            let want_match = wants_match;
            if status == 200 && (want_match != (total > 0)) {
                return fail(format!("totalResults {total}, expected a match: {want_match}"));
            }
            if status == 200 && answer["schemas"][0] != "urn:ietf:params:scim:api:messages:2.0:ListResponse" {
                return fail(format!("not a ListResponse: {answer}"));
            }
        }
        "create_user" => {
            let uid = answer["id"].as_str().ok_or("no id")?.to_string();
            let u = get("Users", &uid).await.body;
            for (k, v) in effect["canonical"].as_object().into_iter().flatten() {
                if !same(&attr(&u, k), v) {
                    return fail(format!("{k}: {} != {v} in {u}", attr(&u, k)));
                }
            }
        }
        "create_user_generic" | "create" => {}
        "create_group" => {
            let gid = answer["id"].as_str().ok_or("no id")?.to_string();
            let g = get("Groups", &gid).await.body;
            for (k, field) in [("display_name", "displayName"), ("external_id", "externalId")] {
                if !effect[k].is_null() && g[field] != effect[k] {
                    return fail(format!("{field} {} != {}", g[field], effect[k]));
                }
            }
        }
        "get_user" | "get_group" => {
            if status == 200 && answer["id"].as_str() != target.as_deref() {
                return fail(format!("answered another resource: {answer}"));
            }
            if effect["include_members"] == false && answer.get("members").is_some() {
                return fail(format!("members included: {answer}"));
            }
        }
        "replace_user" => {
            let u = get("Users", target.as_deref().unwrap()).await.body;
            if !same(&u["userName"], &body["userName"]) {
                return fail(format!("userName {} after PUT of {}", u["userName"], body["userName"]));
            }
        }
        "set_active" => {
            let u = get("Users", target.as_deref().unwrap()).await.body;
            let active = u["active"].as_bool().unwrap_or(true);
            if json!(active) != effect["active"] {
                return fail(format!("active is {active}: {u}"));
            }
        }
        "set_password" => {
            let u = get("Users", target.as_deref().unwrap()).await.body;
            if u.get("password").is_some() || answer.get("password").is_some() {
                return fail("a password was returned".into());
            }
        }
        "set_attrs" => {
            let u = get("Users", target.as_deref().unwrap()).await.body;
            for (k, v) in effect["set"].as_object().into_iter().flatten() {
                if !same(&attr(&u, k), v) {
                    return fail(format!("{k}: {} != {v} in {u}", attr(&u, k)));
                }
            }
        }
        "set_manager" => {
            let u = get("Users", target.as_deref().unwrap()).await.body;
            if u[ENT]["manager"]["value"] != effect["manager_id"] {
                return fail(format!("manager {}", u[ENT]["manager"]));
            }
        }
        "set_roles" => {
            let u = get("Users", target.as_deref().unwrap()).await.body;
            for role in effect["roles"].as_array().into_iter().flatten() {
                if !u["roles"].as_array().into_iter().flatten().any(|r| r["value"] == role["value"]) {
                    return fail(format!("role {} missing: {}", role["value"], u["roles"]));
                }
            }
        }
        "remove_email" => {
            let u = get("Users", target.as_deref().unwrap()).await.body;
            if u["emails"].as_array().into_iter().flatten().any(|e| e["type"] == effect["type"]) {
                return fail(format!("{} email still there: {}", effect["type"], u["emails"]));
            }
        }
        "delete_user" | "delete_group" => {
            let after = get(&endpoint, target.as_deref().unwrap()).await;
            if after.status != 404 {
                return fail(format!("still readable: {}", after.status));
            }
        }
        "rename_group" => {
            let g = get("Groups", target.as_deref().unwrap()).await.body;
            let want = effect["display_name"]
                .as_str()
                .map(str::to_string)
                .or_else(|| body["Operations"][0]["value"].as_str().map(str::to_string))
                .or_else(|| body["Operations"][0]["value"]["displayName"].as_str().map(str::to_string));
            if g["displayName"].as_str().map(str::to_string) != want {
                return fail(format!("displayName {} != {want:?}", g["displayName"]));
            }
        }
        "membership_delta" | "membership_set" | "replace_group" => {
            let g = get("Groups", target.as_deref().unwrap()).await.body;
            let now: Vec<String> = g["members"].as_array().into_iter().flatten().filter_map(|m| m["value"].as_str().map(str::to_string)).collect();
            for m in strings(&effect["add"]) {
                if !now.contains(&dir.real(&m)) {
                    return fail(format!("{m} not added: {now:?}"));
                }
            }
            for m in strings(&effect["remove"]) {
                if now.contains(&dir.real(&m)) {
                    return fail(format!("{m} not removed: {now:?}"));
                }
            }
            if let Some(set) = effect["members"].as_array() {
                let mut want: Vec<String> = set.iter().filter_map(Value::as_str).map(|m| dir.real(m)).collect();
                let mut have = now.clone();
                want.sort();
                have.sort();
                if want != have {
                    return fail(format!("members {have:?} != {want:?}"));
                }
            }
        }
        "list_users" | "list_groups" => {
            if answer["schemas"][0] != "urn:ietf:params:scim:api:messages:2.0:ListResponse" {
                return fail(format!("not a ListResponse: {answer}"));
            }
            if let Some(offset) = effect["offset"].as_i64()
                && answer["startIndex"].as_i64() != Some(offset + 1)
            {
                return fail(format!("startIndex {} for offset {offset}", answer["startIndex"]));
            }
        }
        "reject" => {
            let reason = effect["reason"].as_str().unwrap_or_default();
            if reason == "uniqueness" && answer["scimType"] != "uniqueness" {
                return fail(format!("scimType {} (wanted uniqueness)", answer["scimType"]));
            }
            if answer["schemas"][0] != "urn:ietf:params:scim:api:messages:2.0:Error" {
                return fail(format!("not an RFC 7644 error: {answer}"));
            }
            if answer["detail"].as_str().is_none_or(str::is_empty) {
                return fail("an error without detail".into());
            }
        }
        other => return fail(format!("unknown canonical effect `{other}`: teach this harness")),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_idp_vector_replays_with_its_documented_status_and_effect() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    let mut failures = Vec::new();
    let mut replayed = 0;
    for &(file, connector) in FILES {
        let doc = fixtures(file);
        for vector in doc["vectors"].as_array().expect("vectors") {
            replayed += 1;
            if let Err(e) = replay(&server, (file, connector), vector).await {
                failures.push(e);
            }
        }
    }
    assert!(replayed >= 70, "only {replayed} vectors found");
    assert!(failures.is_empty(), "{} of {replayed} vectors failed:\n{}", failures.len(), failures.join("\n"));
}

/// Each connector undoes its own IdP's quirks and no other's: a request in another IdP's dialect
/// is refused with an RFC 7644 error whose `scimType` and message name the field, and the
/// refusal is in the directory's sync log, where the admin looks.
#[tokio::test(flavor = "multi_thread")]
async fn another_idps_dialect_is_refused_naming_the_field_and_logged() {
    let env = TestEnv::new(BIN).await;
    let server = env.serve(&["--demo"]).await;
    const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
    // Entra's legacy boolean string: entra-id turns it into `false`, the others leave it to the
    // host, which refuses it.
    let entra_active = json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]});
    // Entra's bare-string manager.
    let entra_manager = json!({"schemas": [PATCH], "Operations": [{"op": "Add",
        "path": format!("{ENT}:manager"), "value": "271"}]});
    // OneLogin's pre-RFC core schema URN.
    let onelogin_user = json!({"schemas": ["urn:scim:schemas:core:2.0"], "userName": "legacy@dialect.test"});

    for connector in ["custom-saml", "okta", "entra-id", "onelogin"] {
        let mut dir = Directory::new(&server, &format!("dialect-{connector}"), connector).await;
        let id = dir.seed_user("subject", "subject@dialect.test").await;
        let path = format!("/Users/{id}");

        let a = dir.send(Method::PATCH, &path, Some(&entra_active)).await;
        if connector == "entra-id" {
            assert_eq!(a.status, 200, "{connector}: {}", a.body);
            assert_eq!(a.body["active"], false, "{connector}: {}", a.body);
        } else {
            assert_eq!(a.status, 400, "{connector} accepted Entra's \"False\": {}", a.body);
            assert_eq!(a.body["scimType"], "invalidValue", "{connector}: {}", a.body);
            assert!(a.body["detail"].as_str().unwrap_or_default().contains("active"), "{connector}: {}", a.body);
        }

        let m = dir.send(Method::PATCH, &path, Some(&entra_manager)).await;
        if connector == "entra-id" {
            assert_eq!(m.status, 200, "{connector}: {}", m.body);
            assert_eq!(m.body[ENT]["manager"]["value"], "271", "{connector}: {}", m.body);
        } else {
            assert_eq!(m.status, 400, "{connector} accepted a bare-string manager: {}", m.body);
            assert!(m.body["detail"].as_str().unwrap_or_default().contains("manager"), "{connector}: {}", m.body);
        }

        let o = dir.send(Method::POST, "/Users", Some(&onelogin_user)).await;
        if connector == "onelogin" {
            assert_eq!(o.status, 201, "{connector}: {}", o.body);
            assert_eq!(o.body["schemas"][0], USER_URN, "{connector}: {}", o.body);
        } else {
            assert_eq!(o.status, 400, "{connector} accepted OneLogin's legacy URN: {}", o.body);
            assert_eq!(o.body["scimType"], "invalidValue", "{connector}: {}", o.body);
            assert!(o.body["detail"].as_str().unwrap_or_default().contains(USER_URN), "{connector}: {}", o.body);
        }

        // The refusals are in the directory's sync log as client errors.
        let conn = dir.base.trim_start_matches("/scim/v2/").to_string();
        let refused = match connector {
            "entra-id" => 1,
            "onelogin" => 2,
            _ => 3,
        };
        let log = format!("/admin/v1/connections/{conn}/sync-log?outcome=client_error");
        idplex_tests::eventually(std::time::Duration::from_secs(10), "the refusals in the sync log", || async {
            let r = server.get(&log).await;
            (r.status == 200 && r.body["entries"].as_array().is_some_and(|e| e.len() >= refused)).then_some(())
        })
        .await;
    }
}
