//! Native unit tests: the OneLogin fixture vectors, each quirk, bad input, SAML mapping and
//! config.

use crate::{OneLogin, dialect, saml};
use idplex_connector_sdk::metadata::{Capability, Guest as _};
use idplex_connector_sdk::provisioning::{Guest as _, Operation, PatchOpKind};
use idplex_connector_sdk::scim::{ENTERPRISE_USER_SCHEMA as ENT, GROUP_SCHEMA, USER_SCHEMA};
use idplex_connector_sdk::serde_json::{self, Value, json};
use idplex_connector_sdk::sso::VerifiedAssertion;
use idplex_connector_sdk::testing::{
    assert_described,
    assert_invalid, attr, body_of, cfg, patch, patch_ops, request, request_of, value, vector,
    vectors,
};
use idplex_connector_sdk::{ErrorKind, ResourceKind};

const ONELOGIN: &str = include_str!("../../../tests/fixtures/idp-dialects/onelogin.json");
const ENTRA: &str = include_str!("../../../tests/fixtures/idp-dialects/entra.json");
const SAML_CLAIMS: &str = include_str!("../../../tests/fixtures/idp-dialects/saml_claims.json");
const USER_ID: &str = "e90ef750-39cc-4062-8c35-ab6375bc455e";

// ---------- helpers ----------

/// Every string and key anywhere in `v`.
fn texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            texts(x, out)
        }),
        _ => {}
    }
}

/// What the host receives is RFC-strict: no pre-RFC URN anywhere, no boolean strings, bodies
/// list the core schema, user PUTs carry a boolean `active`.
fn assert_rfc_strict(ops: &[Operation], kind: ResourceKind, what: &str) {
    let core = idplex_connector_sdk::scim::core_schema(kind);
    let check = |v: &Value| {
        let mut t = Vec::new();
        texts(v, &mut t);
        assert!(
            !t.iter()
                .any(|s| s.to_ascii_lowercase().starts_with("urn:scim:")),
            "{what}: legacy URN in {v}"
        );
        assert!(
            !t.iter()
                .any(|s| s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false")),
            "{what}: boolean string in {v}"
        );
    };
    for op in ops {
        match op {
            Operation::Create(body) | Operation::Replace((_, body)) => {
                let v: Value = serde_json::from_str(body).unwrap();
                assert!(
                    v["schemas"].as_array().unwrap().iter().any(|s| s == core),
                    "{what}: {v}"
                );
                if matches!(op, Operation::Replace(_)) && matches!(kind, ResourceKind::User) {
                    assert!(v["active"].is_boolean(), "{what}: {v}");
                }
                check(&v);
            }
            Operation::Patch((_, ops)) => {
                for op in ops {
                    if let Some(p) = &op.path {
                        assert!(
                            !p.to_ascii_lowercase().starts_with("urn:scim:"),
                            "{what}: {p}"
                        );
                    }
                    if let Some(text) = &op.value {
                        check(&serde_json::from_str(text).unwrap());
                    }
                }
            }
            _ => {}
        }
    }
}

/// A typical OneLogin assertion, from what `saml_claims.json` lists: the per-app issuer, the
/// e-mail NameID, and the `User.*`, `memberOf` and `PersonImmutableID` parameter conventions,
/// with roles sent as one semicolon-delimited value.
fn onelogin_assertion() -> VerifiedAssertion {
    let claims: Value = serde_json::from_str(SAML_CLAIMS).unwrap();
    let ol = &claims["onelogin"];
    for name in [
        "User.email",
        "User.FirstName",
        "User.LastName",
        "memberOf",
        "PersonImmutableID",
    ] {
        assert!(ol["attributes"].as_str().unwrap().contains(name), "{name}");
    }
    VerifiedAssertion {
        issuer: ol["issuer"]
            .as_str()
            .unwrap()
            .replace("<app-id>", "1234567"),
        name_id: "user01@example.com".into(),
        name_id_format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into()),
        session_index: Some("_1a2b3c".into()),
        authn_context: None,
        attributes: vec![
            attr("User.email", &["user01@example.com"]),
            attr("User.FirstName", &["AAA Test"]),
            attr("User.LastName", &["User 01"]),
            attr("memberOf", &["Admins;Engineering; Sales ;;Admins"]),
            attr("PersonImmutableID", &["98765432"]),
        ],
    }
}

// ---------- fixture vectors ----------

#[test]
fn every_onelogin_vector_normalizes_to_rfc_strict_operations() {
    let all = vectors(ONELOGIN);
    assert!(all.len() >= 10);
    for v in &all {
        let id = v["id"].as_str().unwrap();
        let req = request_of(v).unwrap_or_else(|| panic!("{id}: not a SCIM request"));
        let ops = dialect::normalize(&req).unwrap_or_else(|e| panic!("{id}: {e:?}"));
        assert_eq!(ops.len(), 1, "{id}");
        let ok = match (req.method.as_str(), &ops[0]) {
            ("POST", Operation::Create(_)) | ("PUT", Operation::Replace(_)) => true,
            ("PATCH", Operation::Patch(_)) | ("DELETE", Operation::Delete(_)) => true,
            ("GET", Operation::Get(_)) => req.id.is_some(),
            ("GET", Operation::Query(_)) => req.id.is_none(),
            _ => false,
        };
        assert!(ok, "{id}: {} gave {:?}", req.method, ops[0]);
        assert_rfc_strict(&ops, req.resource, id);
        assert_eq!(
            format!("{:?}", OneLogin::normalize(req.clone()).unwrap()),
            format!("{ops:?}"),
            "{id}"
        );
    }
}

#[test]
fn legacy_urns_of_the_default_template_become_rfc() {
    let all = vectors(ONELOGIN);
    let ops = dialect::normalize(&request_of(vector(&all, "onelogin-user-02")).unwrap()).unwrap();
    let body = body_of(&ops);
    assert_eq!(body["schemas"], json!([USER_SCHEMA, ENT]));
    assert_eq!(body[ENT]["department"], "Eng");
    assert_eq!(
        body[ENT]["manager"],
        json!({"value": "<external_manager_id>", "displayName": "Mgr Name"})
    );
    assert_eq!(body["userName"], "onelogin-test-user01");
    assert_eq!(body["name"]["givenName"], "AAA Test");
    assert!(
        body.get("active").is_none(),
        "a create is not given `active`"
    );
}

/// A body that cannot name a legacy URN passes without being parsed in full; one that can,
/// however it spells the URN (any ASCII case, or behind a JSON escape), is renamed.
#[test]
fn legacy_urns_are_found_in_any_spelling_and_rfc_bodies_are_not_rebuilt() {
    let normalize_post = |text: &str| {
        let mut req = request("POST", ResourceKind::User, None, None);
        req.body = Some(text.to_string());
        dialect::normalize(&req).unwrap()
    };
    let post = |text: &str| body_of(&normalize_post(text));
    for text in [
        r#"{"schemas":["URN:SCIM:SCHEMAS:CORE:2.0"],"userName":"a"}"#,
        r#"{"schemas":["urn\u003ascim:schemas:core:2.0"],"userName":"a"}"#,
    ] {
        assert_eq!(post(text)["schemas"], json!([USER_SCHEMA]), "{text}");
    }
    let escaped_key = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"urn\u003ascim:schemas:extension:enterprise:2.0":{"department":"Eng"},"userName":"a"}"#;
    let body = post(escaped_key);
    assert_eq!(body[ENT]["department"], "Eng", "{body}");
    assert!(body.as_object().unwrap().keys().all(|k| !k.starts_with("urn:scim:")), "{body}");
    let rfc = r#"{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a"}"#;
    assert!(matches!(&normalize_post(rfc)[..], [Operation::Create(b)] if b == rfc), "as sent, spaces and all");
}

#[test]
fn a_put_without_active_keeps_the_user_active() {
    let all = vectors(ONELOGIN);
    let req = request_of(vector(&all, "onelogin-user-03")).unwrap();
    assert!(!req.body.as_deref().unwrap().contains("active"));
    let ops = dialect::normalize(&req).unwrap();
    let [Operation::Replace((id, _))] = &ops[..] else {
        panic!("{ops:?}")
    };
    assert_eq!(id, USER_ID);
    let body = body_of(&ops);
    assert_eq!(body["active"], true);
    assert_eq!(body["schemas"], json!([USER_SCHEMA, ENT]));
    assert_eq!(body[ENT]["department"], "Eng");

    // OneLogin's "Suspend": an explicit false stays false.
    let ops = dialect::normalize(&request_of(vector(&all, "onelogin-user-06")).unwrap()).unwrap();
    assert_eq!(body_of(&ops)["active"], false);

    let put =
        |body: Value| dialect::normalize(&request("PUT", ResourceKind::User, Some(USER_ID), body));
    // An unresolved template field (`null`) is no deactivation either.
    let b =
        body_of(&put(json!({"schemas": [USER_SCHEMA], "userName": "u", "active": null})).unwrap());
    assert_eq!(b["active"], true);
    // Explicit values, however spelled, are not touched.
    let b =
        body_of(&put(json!({"schemas": [USER_SCHEMA], "userName": "u", "Active": false})).unwrap());
    assert_eq!((b["Active"].clone(), b.get("active")), (json!(false), None));
    let key = format!("{USER_SCHEMA}:active");
    let b = body_of(
        &put(json!({"schemas": [USER_SCHEMA], "userName": "u", key.as_str(): false})).unwrap(),
    );
    assert_eq!((b[&key].clone(), b.get("active")), (json!(false), None));
    // An RFC body with `active` reaches the host as sent (not re-encoded).
    let sent = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"], "userName":"u", "active":true}"#;
    let mut req = request("PUT", ResourceKind::User, Some(USER_ID), json!({}));
    req.body = Some(sent.into());
    assert!(
        matches!(&dialect::normalize(&req).unwrap()[..], [Operation::Replace((_, b))] if b == sent)
    );
    // Groups have no `active`.
    let b = body_of(
        &dialect::normalize(&request(
            "PUT",
            ResourceKind::Group,
            Some("g1"),
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Eng"}),
        ))
        .unwrap(),
    );
    assert!(b.get("active").is_none());
}

#[test]
fn rfc_bodies_pass_as_sent_and_groups_are_rfc() {
    let all = vectors(ONELOGIN);
    let req = request_of(vector(&all, "onelogin-group-02")).unwrap();
    let sent = req.body.clone().unwrap();
    assert!(matches!(&dialect::normalize(&req).unwrap()[..], [Operation::Create(b)] if *b == sent));
    let (_, ops) = patch_ops(
        dialect::normalize(&request_of(vector(&all, "onelogin-group-03")).unwrap()).unwrap(),
    );
    assert!(matches!(ops[0].op, PatchOpKind::Add));
    assert_eq!(ops[0].path.as_deref(), Some("members"));
    assert_eq!(value(&ops[0]), json!([{"value": USER_ID}]));
    let ops = dialect::normalize(&request_of(vector(&all, "onelogin-user-05")).unwrap()).unwrap();
    assert!(matches!(&ops[..], [Operation::Delete(id)] if id == USER_ID));
    let ops = dialect::normalize(&request_of(vector(&all, "onelogin-user-01")).unwrap()).unwrap();
    let [Operation::Query(q)] = &ops[..] else {
        panic!("{ops:?}")
    };
    assert_eq!(
        q.filter.as_deref(),
        Some("userName eq \"onelogin-test-user01\"")
    );
}

#[test]
fn legacy_urn_patch_paths_become_rfc() {
    let user = ResourceKind::User;
    let cases = [
        (
            "urn:scim:schemas:extension:enterprise:2.0:department",
            format!("{ENT}:department"),
        ),
        (
            "urn:scim:schemas:extension:enterprise:2.0:User:department",
            format!("{ENT}:department"),
        ),
        (
            "URN:SCIM:schemas:extension:Enterprise:2.0:manager",
            format!("{ENT}:manager"),
        ),
        ("urn:scim:schemas:extension:enterprise:2.0", ENT.to_string()),
        (
            "urn:scim:schemas:core:2.0:name.givenName",
            format!("{USER_SCHEMA}:name.givenName"),
        ),
        (
            "urn:scim:schemas:core:2.0:User:userName",
            format!("{USER_SCHEMA}:userName"),
        ),
        (
            "urn:scim:schemas:core:2.0:emails[type eq \"work\"].value",
            format!("{USER_SCHEMA}:emails[type eq \"work\"].value"),
        ),
        (
            "urn:scim:schemas:core:2.0:active",
            format!("{USER_SCHEMA}:active"),
        ),
    ];
    for (legacy, rfc) in &cases {
        assert_eq!(
            dialect::rfc_path(legacy, user).as_deref(),
            Some(rfc.as_str()),
            "{legacy}"
        );
        let (_, ops) = patch_ops(
            dialect::normalize(&patch(
                user,
                USER_ID,
                json!([{"op": "replace", "path": legacy, "value": {"value": "x"}}]),
            ))
            .unwrap(),
        );
        assert_eq!(ops[0].path.as_deref(), Some(rfc.as_str()), "{legacy}");
    }
    assert_eq!(
        dialect::rfc_path(
            "urn:scim:schemas:core:2.0:Group:displayName",
            ResourceKind::Group
        )
        .as_deref(),
        Some(format!("{GROUP_SCHEMA}:displayName").as_str())
    );
    // Left alone: RFC paths, plain paths, look-alikes, and the enterprise extension on a group.
    for path in [
        "active",
        "members",
        &format!("{ENT}:department"),
        "urn:scim:schemas:core:2.0x:active",
        "urn:scim:schemas:core:1.0:userName",
        "urn:scim:schemas:core:2.0:Username",
    ] {
        let expected = (path == "urn:scim:schemas:core:2.0:Username")
            .then(|| format!("{USER_SCHEMA}:Username"));
        assert_eq!(dialect::rfc_path(path, user), expected, "{path}");
    }
    assert_eq!(
        dialect::rfc_path(
            "urn:scim:schemas:extension:enterprise:2.0:department",
            ResourceKind::Group
        ),
        None
    );
    // `remove` paths are renamed too.
    let (_, ops) = patch_ops(
        dialect::normalize(&patch(
            user,
            USER_ID,
            json!([{"op": "remove", "path": "urn:scim:schemas:extension:enterprise:2.0:manager"}]),
        ))
        .unwrap(),
    );
    assert_eq!(
        ops[0].path.as_deref(),
        Some(format!("{ENT}:manager").as_str())
    );
}

#[test]
fn legacy_urn_keys_of_pathless_values_become_rfc() {
    let (_, ops) = patch_ops(dialect::normalize(&patch(ResourceKind::User, USER_ID, json!([
        {"op": "replace", "value": {"urn:scim:schemas:extension:enterprise:2.0": {"department": "Ops"}}},
        {"op": "add", "value": {"urn:scim:schemas:extension:enterprise:2.0:costCenter": "42", "title": "Dr"}},
        {"op": "replace", "value": {"urn:scim:schemas:core:2.0:User:nickName": "Al"}},
        {"op": "add", "path": "urn:scim:schemas:extension:enterprise:2.0", "value": {"division": "D"}}
    ]))).unwrap());
    assert_eq!(value(&ops[0]), json!({ENT: {"department": "Ops"}}));
    assert_eq!(
        value(&ops[1]),
        json!({format!("{ENT}:costCenter"): "42", "title": "Dr"})
    );
    assert_eq!(
        value(&ops[2]),
        json!({format!("{USER_SCHEMA}:nickName"): "Al"})
    );
    assert_eq!(ops[3].path.as_deref(), Some(ENT));
    assert_eq!(value(&ops[3]), json!({"division": "D"}));
    // URN-qualified keys in bodies too.
    let b = body_of(
        &dialect::normalize(&request(
            "POST",
            ResourceKind::User,
            None,
            json!({
                "schemas": ["urn:scim:schemas:core:2.0:User"],
                "userName": "u",
                "urn:scim:schemas:extension:enterprise:2.0:employeeNumber": "7"
            }),
        ))
        .unwrap(),
    );
    assert_eq!(b["schemas"], json!([USER_SCHEMA]));
    assert_eq!(b[format!("{ENT}:employeeNumber")], "7");
}

#[test]
fn custom_fields_are_left_for_the_host_to_name() {
    let b = body_of(
        &dialect::normalize(&request(
            "POST",
            ResourceKind::User,
            None,
            json!({
                "schemas": ["urn:scim:schemas:core:2.0"],
                "userName": "u",
                "custom_fields": {"badge": "A1"}
            }),
        ))
        .unwrap(),
    );
    assert_eq!(b["custom_fields"], json!({"badge": "A1"}));
}

// ---------- other IdPs' quirks and bad input ----------

#[test]
fn other_idps_quirks_are_not_fixed_here() {
    let entra = vectors(ENTRA);
    let (_, ops) = patch_ops(
        dialect::normalize(&request_of(vector(&entra, "entra-user-09")).unwrap()).unwrap(),
    );
    assert_eq!(
        value(&ops[0]),
        json!("False"),
        "left for the host to refuse"
    );
    let b = body_of(
        &dialect::normalize(&request(
            "PUT",
            ResourceKind::User,
            Some(USER_ID),
            json!({"schemas": ["urn:scim:schemas:core:2.0"], "userName": "u", "active": "False"}),
        ))
        .unwrap(),
    );
    assert_eq!(b["active"], "False");
    // Okta's echoed id in a path-less value is the host's (readOnly, skipped), not ours.
    let (_, ops) = patch_ops(
        dialect::normalize(&patch(
            ResourceKind::Group,
            "g1",
            json!([{"op": "replace", "value": {"id": "g1", "displayName": "X"}}]),
        ))
        .unwrap(),
    );
    assert_eq!(value(&ops[0]), json!({"id": "g1", "displayName": "X"}));
}

#[test]
fn malformed_requests_name_the_field() {
    let user = ResourceKind::User;
    assert_invalid(
        &dialect::normalize(&patch(user, USER_ID, json!({"op": "add"}))).unwrap_err(),
        "`Operations`",
    );
    assert_invalid(
        &dialect::normalize(&patch(user, USER_ID, json!([{"op": "remove"}]))).unwrap_err(),
        "`path`",
    );
    assert_invalid(
        &dialect::normalize(&patch(
            user,
            USER_ID,
            json!([{"op": "add", "path": 7, "value": 1}]),
        ))
        .unwrap_err(),
        "`path`",
    );
    let mut req = request("PUT", user, Some(USER_ID), json!({}));
    req.body = Some("{\"schemas\":".into());
    let e = dialect::normalize(&req).unwrap_err();
    assert_invalid(&e, "request body");
    assert_eq!(e.scim_type.as_deref(), Some("invalidSyntax"));
    req.body = None;
    assert_invalid(&dialect::normalize(&req).unwrap_err(), "JSON body");
    // A SCIM 1.1 body (core 1.0 URN) is not SCIM 2.0: refused, naming the URN to use.
    let e = dialect::normalize(&request(
        "POST",
        user,
        None,
        json!({"schemas": ["urn:scim:schemas:core:1.0"], "userName": "u"}),
    ))
    .unwrap_err();
    assert_invalid(&e, USER_SCHEMA);
    let e = dialect::normalize(&request(
        "PUT",
        user,
        Some(USER_ID),
        json!({"userName": "u"}),
    ))
    .unwrap_err();
    assert_invalid(&e, "`schemas`");
}

#[test]
fn render_leaves_resources_to_the_host() {
    // `unsupported` from `render` (contract 1.1): the host serves its own resource unchanged
    // and stops calling `render`.
    let r = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"1","userName":"a"}"#;
    let e = OneLogin::render(ResourceKind::User, r.into()).unwrap_err();
    assert_eq!(e.kind, idplex_connector_sdk::ErrorKind::Unsupported, "{}", e.message);
}

// ---------- describe and config schema ----------

#[test]
fn describe_declares_provisioning_and_sso_with_a_closed_documented_schema() {
    let info = OneLogin::describe();
    let schema = assert_described(&info, "onelogin", env!("CARGO_PKG_VERSION"));
    assert!(matches!(info.capabilities[..], [Capability::Provisioning, Capability::Sso]));
    let p = &schema["properties"];
    assert_eq!(p["groups_delimiter"]["default"], ";");
    assert_eq!(
        (
            p["groups_delimiter"]["minLength"].clone(),
            p["groups_delimiter"]["maxLength"].clone()
        ),
        (json!(1), json!(1))
    );
    assert_eq!(p["attribute.email"]["default"], "User.email");
    assert_eq!(p["attribute.user_name"]["default"], "User.email");
    assert_eq!(p["attribute.given_name"]["default"], "User.FirstName");
    assert_eq!(p["attribute.family_name"]["default"], "User.LastName");
    assert_eq!(p["attribute.groups"]["default"], "memberOf,Groups");
    assert_eq!(p["attribute.external_id"]["default"], "PersonImmutableID");
}

// ---------- SAML ----------

#[test]
fn typical_onelogin_assertion_maps_with_defaults() {
    let id = saml::map_assertion(&onelogin_assertion(), &|_| None).unwrap();
    let u = &id.user;
    assert_eq!(u.user_name, "user01@example.com");
    assert_eq!(u.external_id.as_deref(), Some("98765432"));
    assert_eq!(u.emails.len(), 1);
    assert_eq!(u.emails[0].value, "user01@example.com");
    assert!(u.emails[0].primary);
    assert_eq!(u.given_name.as_deref(), Some("AAA Test"));
    assert_eq!(u.family_name.as_deref(), Some("User 01"));
    assert_eq!(u.display_name.as_deref(), Some("AAA Test User 01"));
    assert_eq!(id.groups, ["Admins", "Engineering", "Sales"]);
    assert_eq!(u.groups, id.groups);
}

#[test]
fn groups_come_from_member_of_then_groups_each_split() {
    let mut a = onelogin_assertion();
    a.attributes.push(attr("Groups", &["Sales;Support", "Ops"]));
    let id = saml::map_assertion(&a, &|_| None).unwrap();
    assert_eq!(
        id.groups,
        ["Admins", "Engineering", "Sales", "Support", "Ops"]
    );
    a.attributes.retain(|x| x.name != "memberOf");
    assert_eq!(
        saml::map_assertion(&a, &|_| None).unwrap().groups,
        ["Sales", "Support", "Ops"]
    );
    // Multi-valued without delimiters works as is.
    a.attributes = vec![attr("memberOf", &["A", " B "])];
    assert_eq!(
        saml::map_assertion(&a, &|_| None).unwrap().groups,
        ["A", "B"]
    );
}

#[test]
fn groups_delimiter_config() {
    let mut a = onelogin_assertion();
    a.attributes.push(attr("Groups", &["x,y;z"]));
    let id = saml::map_assertion(&a, &cfg(&[("groups_delimiter", ",")])).unwrap();
    assert_eq!(
        id.groups,
        ["Admins;Engineering; Sales ;;Admins", "x", "y;z"]
    );
    let id = saml::map_assertion(&a, &cfg(&[("groups_delimiter", "|")])).unwrap();
    assert_eq!(id.groups.len(), 2, "nothing split: {:?}", id.groups);
    assert_eq!(saml::split_groups(&["a§b".into()], '§'), ["a", "b"]);
}

#[test]
fn wrong_config_is_a_config_error_naming_the_key() {
    let a = onelogin_assertion();
    for pairs in [
        &[("groups_delimiter", "")][..],
        &[("groups_delimiter", ";;")],
        &[("groups_delimiter", "ab")],
    ] {
        let e = saml::map_assertion(&a, &move |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Config), "{e:?}");
        assert!(e.message.contains("`groups_delimiter`"), "{}", e.message);
    }
    let e = saml::map_assertion(&a, &cfg(&[("user_name_source", "User.email")])).unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Config) && e.message.contains("`user_name_source`"),
        "{e:?}"
    );
}

#[test]
fn user_name_from_attribute_and_overrides() {
    let mut a = onelogin_assertion();
    a.name_id = "opaque-123".into();
    a.name_id_format = Some("urn:oasis:names:tc:SAML:2.0:nameid-format:transient".into());
    let id = saml::map_assertion(&a, &cfg(&[("user_name_source", "attribute")])).unwrap();
    assert_eq!(id.user.user_name, "user01@example.com");
    a.attributes.push(attr("Department Roles", &["R1;R2"]));
    let id = saml::map_assertion(&a, &cfg(&[("attribute.groups", "Department Roles")])).unwrap();
    assert_eq!(id.groups, ["R1", "R2"]);
    // No attribute to take it from: the error names the attribute.
    a.attributes.clear();
    let e = saml::map_assertion(&a, &cfg(&[("user_name_source", "attribute")])).unwrap_err();
    assert_invalid(&e, "`User.email`");
    // Without PersonImmutableID a persistent NameID is the external id.
    let mut a = onelogin_assertion();
    a.attributes.retain(|x| x.name != "PersonImmutableID");
    a.name_id_format = Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into());
    assert_eq!(
        saml::map_assertion(&a, &|_| None)
            .unwrap()
            .user
            .external_id
            .as_deref(),
        Some("user01@example.com")
    );
}
