//! An in-process idplex for the sign-in tests (`tests/tests/sso.rs`, `tests/tests/oidc.rs`): the
//! server's `Router` over a real SQLite file, the bundled `custom-saml` connector bound to a
//! connection whose IdP is a [`TestIdp`] (responses signed by Debian's `xmlsec1`), and helpers
//! to walk a browser through sign-in.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use idplex_hub::Hub;
use idplex_hub::store::NewConnection;
use idplex_store::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::saml_idp::{self, ResponseSpec, TestIdp};

pub const PUBLIC: &str = "https://idplex.test";

pub struct App {
    /// The data directory (database, compilation caches).
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub hub: Arc<Hub>,
    pub router: Router,
    pub admin: String,
    pub conn: String,
    pub idp: TestIdp,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub async fn hub_on(dir: &std::path::Path, cache: &str) -> (Store, Arc<Hub>) {
    let url = format!("sqlite://{}", dir.join("idplex.db").display());
    let store = Store::open(&url).await.expect("store");
    let runtime = idplex_runtime::Runtime::new(idplex_runtime::RuntimeConfig::new(dir.join(cache))).expect("runtime");
    let hub = Hub::new(store.clone(), runtime);
    hub.set_public_url(PUBLIC).unwrap();
    (store, hub)
}

/// A new connection of organization `org` to the bundled `custom-saml` (not bound).
pub async fn custom_saml_connection(hub: &Hub, org: &str, name: &str) -> idplex_hub::store::Connection {
    hub.create_connection(NewConnection {
        id: None,
        org_id: org.into(),
        name: name.into(),
        connector_name: "custom-saml".into(),
        config: json!({}),
        egress_allow: vec![],
        limits: json!({}),
    })
    .await
    .unwrap()
}

/// A connection `custom-saml` of organization `acme`, its IdP imported from metadata and
/// sign-in enabled, the domain example.com routed to it; public URL [`PUBLIC`].
pub async fn app() -> App {
    app_at(PUBLIC).await
}

/// [`app`] reached at `public_url` (for a server on a loopback port).
pub async fn app_at(public_url: &str) -> App {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, hub) = hub_on(dir.path(), "cache").await;
    hub.set_public_url(public_url).unwrap();
    let installed = hub.install_bundled().await.expect("bundled connectors install");
    let version = installed.iter().find(|r| r.name == "custom-saml").expect("custom-saml is bundled").version.clone();
    let conn = custom_saml_connection(&hub, "acme", "acme idp").await;
    hub.activate(&conn.id, &version, "test").await.unwrap();
    let (_, admin) = store.create_admin_token("sso", None).await.unwrap();
    let router = idplex_server::router(hub.clone());
    let app = App { dir, store, hub, router, admin, conn: conn.id, idp: TestIdp::new() };
    let imported = app
        .call("POST", &format!("/admin/v1/connections/{}/saml/metadata?enable=true", app.conn), Some(app.idp.metadata()), true)
        .await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.body);
    let domains = app
        .call("PUT", &format!("/admin/v1/connections/{}/saml/domains", app.conn), Some(json!({"domains": ["Example.com"]}).to_string()), true)
        .await;
    assert_eq!(domains.json()["domains"], json!(["example.com"]));
    app
}

impl App {
    pub async fn call(&self, method: &str, path: &str, body: Option<String>, admin: bool) -> Answer {
        let json = body.as_deref().is_some_and(|b| b.starts_with('{'));
        self.request(method, path, body, admin, if json { &[("content-type", "application/json")] } else { &[] }).await
    }

    pub async fn request(&self, method: &str, path: &str, body: Option<String>, admin: bool, headers: &[(&str, &str)]) -> Answer {
        let mut req = Request::builder().method(method).uri(path).header("host", "idplex.test");
        if admin {
            req = req.header("authorization", format!("Bearer {}", self.admin));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
        let resp = self.router.clone().oneshot(req).await.expect("the router answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 4 << 20).await.unwrap();
        Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    pub fn acs_url(&self) -> String {
        format!("{}/saml/{}/acs", self.hub.public_url(), self.conn)
    }

    pub fn sp_entity(&self) -> String {
        format!("{}/saml/{}", self.hub.public_url(), self.conn)
    }

    /// Answers the AuthnRequest of a redirect to the IdP (`location`) for `name_id` with these
    /// groups, signed; posts it to the ACS and returns the ACS's answer.
    pub async fn answer_login(&self, location: &str, name_id: &str, groups: &[&str]) -> Answer {
        let (request_id, _) = request_of(location);
        let mut r = self.idp.response(&self.acs_url(), &self.sp_entity(), Some(&request_id), name_id);
        r.attributes = vec![
            ("email".into(), vec![name_id.into()]),
            ("firstName".into(), vec!["Ada".into()]),
            ("lastName".into(), vec!["Lovelace".into()]),
            ("groups".into(), groups.iter().map(|g| g.to_string()).collect()),
        ];
        self.post_acs(&self.idp.sign(&r), None).await
    }

    /// Signs `name_id` in (SP-initiated, with these groups); returns the cookie pair
    /// `idplex_session=…` to send back.
    pub async fn sign_in(&self, name_id: &str, groups: &[&str]) -> String {
        let path = format!("/saml/{}/login", self.conn);
        let login = self.call("GET", &path, None, false).await;
        assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
        let done = self.answer_login(login.header("location"), name_id, groups).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        cookie_of(&done)
    }

    /// Starts an SP-initiated sign-in; returns the AuthnRequest's ID and the RelayState sent.
    pub async fn start(&self, return_to: &str) -> (String, Option<String>) {
        let path = format!("/saml/{}/login?return_to={}", self.conn, idplex_saml::authn_request::url_encode(return_to));
        let answer = self.call("GET", &path, None, false).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        request_of(answer.header("location"))
    }

    pub async fn post_acs(&self, saml_response: &str, relay_state: Option<&str>) -> Answer {
        let mut form = format!("SAMLResponse={}", idplex_saml::authn_request::url_encode(saml_response));
        if let Some(r) = relay_state {
            form.push_str(&format!("&RelayState={}", idplex_saml::authn_request::url_encode(r)));
        }
        self.request(
            "POST",
            &format!("/saml/{}/acs", self.conn),
            Some(form),
            false,
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await
    }

    /// A response answering a fresh SP-initiated request, for `name_id`.
    pub async fn solicited(&self, name_id: &str) -> ResponseSpec {
        let (id, _) = self.start("/").await;
        self.idp.response(&self.acs_url(), &self.sp_entity(), Some(&id), name_id)
    }

    pub async fn users(&self) -> usize {
        self.store.list_users(&self.conn, 0, 1000).await.map(|(users, _)| users.len()).unwrap()
    }

    pub async fn events(&self) -> Vec<String> {
        let answer = self.call("GET", &format!("/admin/v1/events?connection={}", self.conn), None, true).await;
        answer.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"].as_str().unwrap().starts_with("sso_"))
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The AuthnRequest ID and RelayState of a redirect to the IdP.
pub fn request_of(location: &str) -> (String, Option<String>) {
    let query = location.split_once('?').expect("a query").1;
    let parsed = idplex_saml::authn_request::RedirectQuery::parse(query).expect("a redirect binding query");
    let xml = idplex_saml::authn_request::decode_redirect(&parsed.message).expect("deflated AuthnRequest");
    let id = xml.split(" ID=\"").nth(1).and_then(|r| r.split('"').next()).expect("an ID").to_owned();
    (id, parsed.relay_state)
}

pub fn cookie_of(answer: &Answer) -> String {
    let set = answer.header("set-cookie");
    set.split(';').next().unwrap().to_owned()
}


impl App {
    /// A response to a request remembered directly (sign-in may be disabled, so `/login` refuses).
    pub async fn solicited_unchecked(&self, name_id: &str) -> ResponseSpec {
        let id = format!("_direct{}", saml_idp::now_secs());
        self.store.remember_saml_request(&id, &self.conn, None, (saml_idp::now_secs() + 600) * 1000).await.unwrap();
        self.idp.response(&self.acs_url(), &self.sp_entity(), Some(&id), name_id)
    }
}
