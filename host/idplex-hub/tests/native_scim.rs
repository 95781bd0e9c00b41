//! The native pass-through dialect (`idplex serve --native-scim-passthrough`, a benchmarking aid)
//! must turn every SCIM request into exactly what the bundled `custom-saml` connector makes of it,
//! refusals included, or the connector share that `scripts/bench-scim` reports would compare
//! different work. Inputs: the IdP request vectors in `tests/fixtures/idp-dialects/` and the
//! requests of `scripts/bench/scim-load.sh`.

use std::path::PathBuf;

use idplex_hub::native_scim;
use idplex_runtime::{CallContext, CallError, LoadedConnector, Limits, ResourceKind, Runtime, RuntimeConfig, ScimRequest};
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/idp-dialects"))
}

/// Every SCIM request on `/Users` or `/Groups` in the dialect fixtures, as (vector id, request).
fn fixture_requests() -> Vec<(String, ScimRequest)> {
    let mut out = Vec::new();
    for name in ["okta", "entra", "onelogin", "generic_rfc7644", "google_workspace"] {
        let path = fixtures_dir().join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text).expect("fixture is JSON");
        for v in doc["vectors"].as_array().expect("vectors") {
            let r = &v["request"];
            let Some(path) = r["path"].as_str().filter(|p| p.starts_with('/')) else { continue };
            let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let Some(at) = segments.iter().position(|s| *s == "Users" || *s == "Groups") else { continue };
            let resource = if segments[at] == "Users" { ResourceKind::User } else { ResourceKind::Group };
            let query = r["query"]
                .as_object()
                .map(|q| q.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect())
                .unwrap_or_default();
            out.push((
                v["id"].as_str().expect("vector id").to_string(),
                ScimRequest {
                    method: r["method"].as_str().expect("method").to_string(),
                    resource,
                    id: segments.get(at + 1).map(|s| s.to_string()),
                    query,
                    body: Some(&r["body"]).filter(|b| !b.is_null()).map(Value::to_string),
                },
            ));
        }
    }
    out
}

fn request(method: &str, id: Option<&str>, query: &[(&str, &str)], body: Option<&str>) -> ScimRequest {
    ScimRequest {
        method: method.into(),
        resource: ResourceKind::User,
        id: id.map(Into::into),
        query: query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        body: body.map(Into::into),
    }
}

/// The three requests of `scripts/bench/scim-load.sh`, and refusals of each kind.
fn load_and_refusals() -> Vec<(String, ScimRequest)> {
    let user = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"r1-t1-1@load.test","name":{"givenName":"Load","familyName":"T1 N1"},"emails":[{"value":"r1-t1-1@load.test","type":"work","primary":true}],"externalId":"r1-t1-1@load.test","active":true}"#;
    let patch = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}"#;
    let filter = [("filter", r#"userName eq "r1-t1-1@load.test""#)];
    [
        ("load POST", request("POST", None, &[], Some(user))),
        ("load GET filter", request("GET", None, &filter, None)),
        ("load PATCH", request("PATCH", Some("0123abcd"), &[], Some(patch))),
        ("PUT", request("PUT", Some("x"), &[], Some(user))),
        ("PUT without id", request("PUT", None, &[], Some(user))),
        ("POST with id", request("POST", Some("x"), &[], Some(user))),
        ("POST without body", request("POST", None, &[], None)),
        ("POST not an object", request("POST", None, &[], Some("[1]"))),
        ("POST wrong schema", request("POST", None, &[], Some(r#"{"schemas":["x"]}"#))),
        ("POST schemas not array", request("POST", None, &[], Some(r#"{"schemas":"x"}"#))),
        ("PATCH empty", request("PATCH", Some("x"), &[], Some(r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[]}"#))),
        ("PATCH remove no path", request("PATCH", Some("x"), &[], Some(r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove"}]}"#))),
        ("PATCH bad op", request("PATCH", Some("x"), &[], Some(r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"move","path":"a"}]}"#))),
        ("GET paged", request("GET", None, &[("startIndex", "0"), ("count", "-3"), ("sortOrder", "descending"), ("attributes", "userName, emails")], None)),
        ("GET bad count", request("GET", None, &[("count", "ten")], None)),
        ("GET bad sortOrder", request("GET", None, &[("sortOrder", "up")], None)),
        ("DELETE", request("DELETE", Some("x"), &[], None)),
        ("DELETE without id", request("DELETE", None, &[], None)),
        ("HEAD", request("HEAD", None, &[], None)),
    ]
    .into_iter()
    .map(|(name, r)| (name.to_string(), r))
    .collect()
}

async fn custom_saml(cache: &std::path::Path) -> LoadedConnector {
    let runtime = Runtime::new(RuntimeConfig::new(cache)).expect("runtime");
    let bundled = idplex_bundled::FIRST_PARTY.iter().find(|b| b.crate_name == "custom-saml").expect("custom-saml is bundled");
    runtime.install(bundled.component).await.expect("custom-saml installs")
}

#[tokio::test(flavor = "multi_thread")]
async fn native_dialect_matches_custom_saml() {
    let cache = tempfile::tempdir().expect("temp dir");
    let connector = custom_saml(cache.path()).await;
    let ctx = CallContext::with_limits(Limits::default());
    let cases: Vec<_> = fixture_requests().into_iter().chain(load_and_refusals()).collect();
    assert!(cases.len() > 60, "expected the IdP fixtures to hold many SCIM requests, found {}", cases.len());
    let (mut accepted, mut refused) = (0, 0);
    for (name, req) in cases {
        let native = native_scim::normalize(&req);
        let wasm = connector.normalize(&ctx, req.clone()).await;
        match (&native, &wasm) {
            (Ok(n), Ok(w)) => {
                assert_eq!(format!("{n:?}"), format!("{w:?}"), "{name}: operations differ");
                accepted += 1;
            }
            (Err(n), Err(CallError::Connector { error: w, .. })) => {
                assert_eq!(format!("{n:?}"), format!("{w:?}"), "{name}: refusals differ");
                refused += 1;
            }
            _ => panic!("{name}: native {native:?}, connector {wasm:?}"),
        }
    }
    assert!(accepted > 40 && refused > 10, "accepted {accepted}, refused {refused}");

    for resource in [r#"{"id":"1","userName":"a","emails":[{"value":"a@x"}]}"#, "not json"] {
        let native = native_scim::render(resource.to_string());
        let wasm = connector.render(&ctx, ResourceKind::User, resource.to_string()).await;
        match (&native, &wasm) {
            (Ok(n), Ok(w)) => assert_eq!(n, w),
            (Err(n), Err(CallError::Connector { error: w, .. })) => assert_eq!(format!("{n:?}"), format!("{w:?}")),
            _ => panic!("render {resource}: native {native:?}, connector {wasm:?}"),
        }
    }
}
