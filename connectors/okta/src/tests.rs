//! Native unit tests: the Okta fixture vectors, each quirk, bad input, SAML mapping and config.

use crate::{Okta, dialect, saml};
use idplex_connector_sdk::ResourceKind;
use idplex_connector_sdk::metadata::{Capability, Guest as _};
use idplex_connector_sdk::provisioning::{Guest as _, Operation, PatchOpKind, ScimRequest};
use idplex_connector_sdk::serde_json::{self, Value, json};
use idplex_connector_sdk::sso::VerifiedAssertion;
use idplex_connector_sdk::testing::{
    assert_described,
    assert_config, assert_invalid, attr, cfg, patch, patch_ops, request_of, value, vector, vectors,
};

const OKTA: &str = include_str!("../../../tests/fixtures/idp-dialects/okta.json");
const ENTRA: &str = include_str!("../../../tests/fixtures/idp-dialects/entra.json");
const SAML_CLAIMS: &str = include_str!("../../../tests/fixtures/idp-dialects/saml_claims.json");
const GROUP_ID: &str = "abf4dd94-a4c0-4f67-89c9-76b03340cb9b";

// ---------- helpers ----------

/// Every string anywhere in `v` (values only).
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// What the host receives is RFC-strict: no boolean strings, bodies carry the core schema,
/// path-less values carry no `id`.
fn assert_rfc_strict(ops: &[Operation], kind: ResourceKind, what: &str) {
    let core = idplex_connector_sdk::scim::core_schema(kind);
    let check_value = |v: &Value| {
        let mut s = Vec::new();
        strings(v, &mut s);
        assert!(
            !s.iter()
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
                check_value(&v);
            }
            Operation::Patch((_, ops)) => {
                for op in ops {
                    let Some(text) = &op.value else { continue };
                    let v: Value = serde_json::from_str(text).unwrap();
                    check_value(&v);
                    if op.path.is_none() {
                        assert!(v.get("id").is_none(), "{what}: id left in {v}");
                    }
                }
            }
            _ => {}
        }
    }
}

/// A typical Okta assertion, built from what `saml_claims.json` says Okta sends: the
/// application username as an unspecified NameID, the per-app issuer, and the Attribute
/// Statements and `groups` Group Attribute Statement setup guides use.
fn okta_assertion() -> VerifiedAssertion {
    let claims: Value = serde_json::from_str(SAML_CLAIMS).unwrap();
    let okta = &claims["okta"];
    assert!(okta["groups"].as_str().unwrap().contains("'groups'"));
    assert!(
        okta["nameid"]["formats"][0]
            .as_str()
            .unwrap()
            .starts_with("Unspecified")
    );
    VerifiedAssertion {
        issuer: okta["issuer"]
            .as_str()
            .unwrap()
            .replace("<app-external-key>", "exk1fcia6d6EMsf280h8")
            .replace(" (per app)", ""),
        name_id: "test.user@okta.local".into(),
        name_id_format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified".into()),
        session_index: Some("id1700000000000.123".into()),
        authn_context: Some(
            "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport".into(),
        ),
        attributes: vec![
            attr("email", &["test.user@okta.local"]),
            attr("firstName", &["Test"]),
            attr("lastName", &["User"]),
            attr("groups", &["Everyone", "app-admins", "app-users", "Sales"]),
        ],
    }
}

// ---------- fixture vectors ----------

#[test]
fn every_okta_vector_normalizes_to_rfc_strict_operations() {
    let all = vectors(OKTA);
    assert!(all.len() >= 20);
    for v in &all {
        let id = v["id"].as_str().unwrap();
        let req = request_of(v).unwrap_or_else(|| panic!("{id}: not a SCIM request"));
        let ops = dialect::normalize(&req).unwrap_or_else(|e| panic!("{id}: {e:?}"));
        assert_eq!(ops.len(), 1, "{id}");
        let expected = match (req.method.as_str(), req.id.is_some()) {
            ("POST", _) => "create",
            ("PUT", _) => "replace",
            ("PATCH", _) => "patch",
            ("DELETE", _) => "delete",
            ("GET", true) => "get",
            ("GET", false) => "query",
            _ => unreachable!(),
        };
        let got = match &ops[0] {
            Operation::Create(_) => "create",
            Operation::Replace(_) => "replace",
            Operation::Patch(_) => "patch",
            Operation::Delete(_) => "delete",
            Operation::Get(_) => "get",
            Operation::Query(_) => "query",
        };
        assert_eq!(got, expected, "{id}");
        assert_rfc_strict(&ops, req.resource, id);
        // The Guest entry point is the same function.
        assert_eq!(
            format!("{:?}", Okta::normalize(req.clone()).unwrap()),
            format!("{ops:?}"),
            "{id}"
        );
    }
}

#[test]
fn untouched_okta_bodies_reach_the_host_as_sent() {
    let all = vectors(OKTA);
    for id in [
        "okta-user-03",
        "okta-user-07",
        "okta-user-11",
        "okta-group-01",
        "okta-group-07",
    ] {
        let req = request_of(vector(&all, id)).unwrap();
        let sent = req.body.clone().unwrap();
        match &dialect::normalize(&req).unwrap()[..] {
            [Operation::Create(b)] | [Operation::Replace((_, b))] => assert_eq!(b, &sent, "{id}"),
            other => panic!("{id}: {other:?}"),
        }
    }
}

#[test]
fn lookup_and_paging_queries() {
    let all = vectors(OKTA);
    let ops = dialect::normalize(&request_of(vector(&all, "okta-user-01")).unwrap()).unwrap();
    let [Operation::Query(q)] = &ops[..] else {
        panic!("{ops:?}")
    };
    assert_eq!(
        q.filter.as_deref(),
        Some("userName eq \"test.user@okta.local\"")
    );
    assert_eq!((q.start_index, q.count), (Some(1), Some(100)));
    let ops = dialect::normalize(&request_of(vector(&all, "okta-user-12")).unwrap()).unwrap();
    let [Operation::Query(q)] = &ops[..] else {
        panic!("{ops:?}")
    };
    assert_eq!((q.start_index, q.count), (Some(101), Some(100)));
}

#[test]
fn pathless_active_replace_passes_as_rfc() {
    let all = vectors(OKTA);
    for (id, active) in [("okta-user-08", false), ("okta-user-09", true)] {
        let (target, ops) =
            patch_ops(dialect::normalize(&request_of(vector(&all, id)).unwrap()).unwrap());
        assert_eq!(target, "23a35c27-23d3-4c03-b4c5-6443c09e7173");
        assert!(matches!(ops[0].op, PatchOpKind::Replace));
        assert_eq!(ops[0].path, None);
        assert_eq!(value(&ops[0]), json!({"active": active}));
    }
}

#[test]
fn password_push_is_passed_to_the_host_which_never_stores_it() {
    let all = vectors(OKTA);
    let (_, ops) =
        patch_ops(dialect::normalize(&request_of(vector(&all, "okta-user-10")).unwrap()).unwrap());
    assert_eq!(value(&ops[0]), json!({"password": "<new-password>"}));
}

#[test]
fn group_membership_patches_are_rfc() {
    let all = vectors(OKTA);
    let (_, ops) =
        patch_ops(dialect::normalize(&request_of(vector(&all, "okta-group-05")).unwrap()).unwrap());
    assert!(matches!(ops[0].op, PatchOpKind::Remove));
    assert_eq!(
        ops[0].path.as_deref(),
        Some("members[value eq \"89bb1940-b905-4575-9e7f-6f887cfb368e\"]")
    );
    assert!(matches!(ops[1].op, PatchOpKind::Add));
    assert_eq!(ops[1].path.as_deref(), Some("members"));
    assert_eq!(
        value(&ops[1])[0]["value"],
        "23a35c27-23d3-4c03-b4c5-6443c09e7173"
    );
    let (_, ops) =
        patch_ops(dialect::normalize(&request_of(vector(&all, "okta-group-06")).unwrap()).unwrap());
    assert!(matches!(ops[0].op, PatchOpKind::Replace));
    assert_eq!(value(&ops[0]).as_array().unwrap().len(), 2);
}

#[test]
fn deletes_pass_through_for_the_connection_policy() {
    let all = vectors(OKTA);
    let ops = dialect::normalize(&request_of(vector(&all, "okta-group-08")).unwrap()).unwrap();
    assert!(matches!(&ops[..], [Operation::Delete(id)] if id == GROUP_ID));
    // Okta never sends DELETE /Users, but one that arrives is passed on, not refused.
    let req = ScimRequest {
        method: "DELETE".into(),
        resource: ResourceKind::User,
        id: Some("u1".into()),
        query: Vec::new(),
        body: None,
    };
    assert!(
        matches!(&dialect::normalize(&req).unwrap()[..], [Operation::Delete(id)] if id == "u1")
    );
}

// ---------- the echoed group id ----------

#[test]
fn rename_drops_the_echoed_group_id() {
    let all = vectors(OKTA);
    let (target, ops) =
        patch_ops(dialect::normalize(&request_of(vector(&all, "okta-group-04")).unwrap()).unwrap());
    assert_eq!(target, GROUP_ID);
    assert_eq!(ops.len(), 1);
    assert!(matches!(ops[0].op, PatchOpKind::Replace));
    assert_eq!(ops[0].path, None);
    assert_eq!(value(&ops[0]), json!({"displayName": "Test SCIMv2"}));
}

#[test]
fn echoed_id_spellings_are_dropped_too() {
    for key in ["ID", "Id", "urn:ietf:params:scim:schemas:core:2.0:Group:id"] {
        let req = patch(
            ResourceKind::Group,
            GROUP_ID,
            json!([{"op": "add", "value": {key: GROUP_ID, "displayName": "X"}}]),
        );
        let (_, ops) = patch_ops(dialect::normalize(&req).unwrap());
        assert_eq!(value(&ops[0]), json!({"displayName": "X"}), "{key}");
    }
    // Only the id is dropped: a value that is the id alone becomes an empty (no-op) replace.
    let req = patch(
        ResourceKind::Group,
        GROUP_ID,
        json!([{"op": "replace", "value": {"id": GROUP_ID}}]),
    );
    let (_, ops) = patch_ops(dialect::normalize(&req).unwrap());
    assert_eq!(value(&ops[0]), json!({}));
    // Users get the same treatment.
    let req = patch(
        ResourceKind::User,
        "u1",
        json!([{"op": "replace", "value": {"id": "u1", "active": false}}]),
    );
    let (_, ops) = patch_ops(dialect::normalize(&req).unwrap());
    assert_eq!(value(&ops[0]), json!({"active": false}));
}

#[test]
fn a_different_id_is_refused_naming_id() {
    for other in [
        json!("another-group"),
        json!(GROUP_ID.to_uppercase()),
        json!(42),
        json!({"x": 1}),
    ] {
        let req = patch(
            ResourceKind::Group,
            GROUP_ID,
            json!([{"op": "replace", "value": {"id": other, "displayName": "X"}}]),
        );
        let e = dialect::normalize(&req).unwrap_err();
        assert_invalid(&e, "`id`");
        assert!(e.message.contains("Operations[0]"), "{}", e.message);
        assert!(e.message.contains(GROUP_ID), "{}", e.message);
        assert_eq!(e.scim_type.as_deref(), Some("mutability"));
    }
    let req = patch(
        ResourceKind::Group,
        GROUP_ID,
        json!([{"op": "add", "path": "members", "value": [{"value": "u1"}]},
               {"op": "replace", "value": {"id": "nope"}}]),
    );
    assert!(
        dialect::normalize(&req)
            .unwrap_err()
            .message
            .contains("Operations[1]")
    );
}

#[test]
fn ids_inside_pathful_values_are_left_alone() {
    // `members` entries and other paths are not the resource's id: untouched.
    let req = patch(
        ResourceKind::Group,
        GROUP_ID,
        json!([{"op": "add", "path": "members", "value": [{"value": "u1", "id": "whatever"}]}]),
    );
    let (_, ops) = patch_ops(dialect::normalize(&req).unwrap());
    assert_eq!(value(&ops[0]), json!([{"value": "u1", "id": "whatever"}]));
    // An explicit `id` path is the host's to refuse (readOnly → mutability).
    let req = patch(
        ResourceKind::Group,
        GROUP_ID,
        json!([{"op": "replace", "path": "id", "value": "x"}]),
    );
    let (_, ops) = patch_ops(dialect::normalize(&req).unwrap());
    assert_eq!(ops[0].path.as_deref(), Some("id"));
    // `externalId` is not `id`.
    let req = patch(
        ResourceKind::User,
        "u1",
        json!([{"op": "replace", "value": {"externalId": "x"}}]),
    );
    let (_, ops) = patch_ops(dialect::normalize(&req).unwrap());
    assert_eq!(value(&ops[0]), json!({"externalId": "x"}));
}

// ---------- other IdPs' quirks and bad input ----------

#[test]
fn entra_boolean_strings_are_not_fixed_here() {
    let entra = vectors(ENTRA);
    let req = request_of(vector(&entra, "entra-user-09")).unwrap();
    let (_, ops) = patch_ops(dialect::normalize(&req).unwrap());
    assert_eq!(
        value(&ops[0]),
        json!("False"),
        "left for the host to refuse"
    );
    let req = patch(
        ResourceKind::User,
        "u1",
        json!([{"op": "Replace", "value": {"active": "False"}}]),
    );
    let (_, ops) = patch_ops(dialect::normalize(&req).unwrap());
    assert_eq!(value(&ops[0]), json!({"active": "False"}));
    // Entra's bare-string manager is not wrapped either.
    let path = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager";
    let req = patch(
        ResourceKind::User,
        "u1",
        json!([{"op": "add", "path": path, "value": "271"}]),
    );
    let (_, ops) = patch_ops(dialect::normalize(&req).unwrap());
    assert_eq!(value(&ops[0]), json!("271"));
}

#[test]
fn malformed_requests_name_the_field() {
    let e = dialect::normalize(&patch(ResourceKind::User, "u1", json!([]))).unwrap_err();
    assert_invalid(&e, "`Operations`");
    let e = dialect::normalize(&patch(
        ResourceKind::User,
        "u1",
        json!([{"op": "frobnicate", "path": "active"}]),
    ))
    .unwrap_err();
    assert_invalid(&e, "frobnicate");
    let e = dialect::normalize(&patch(
        ResourceKind::User,
        "u1",
        json!([{"path": "active", "value": true}]),
    ))
    .unwrap_err();
    assert_invalid(&e, "`op`");
    let e = dialect::normalize(&patch(ResourceKind::User, "u1", json!([{"op": "remove"}])))
        .unwrap_err();
    assert_invalid(&e, "`path`");
    assert_eq!(e.scim_type.as_deref(), Some("noTarget"));
    let e = dialect::normalize(&patch(
        ResourceKind::User,
        "u1",
        json!([{"op": "replace", "path": "active"}]),
    ))
    .unwrap_err();
    assert_invalid(&e, "`value`");
    let mut req = patch(ResourceKind::User, "u1", json!([]));
    req.body = Some(
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"#
            .into(),
    );
    let e = dialect::normalize(&req).unwrap_err();
    assert_invalid(&e, "PATCH body");
    assert_eq!(e.scim_type.as_deref(), Some("invalidSyntax"));
    req.body = Some(r#"{"Operations":[{"op":"replace","value":{"active":false}}]}"#.into());
    assert_invalid(&dialect::normalize(&req).unwrap_err(), "`schemas`");
    req.id = None;
    assert_invalid(&dialect::normalize(&req).unwrap_err(), "resource id");

    let post = |body: &str| ScimRequest {
        method: "POST".into(),
        resource: ResourceKind::User,
        id: None,
        query: Vec::new(),
        body: Some(body.into()),
    };
    assert_invalid(
        &dialect::normalize(&post(r#"{"userName":"a"}"#)).unwrap_err(),
        "`schemas`",
    );
    // A OneLogin body (pre-RFC URN) is not renamed by the Okta connector.
    let e = dialect::normalize(&post(
        r#"{"schemas":["urn:scim:schemas:core:2.0"],"userName":"a"}"#,
    ))
    .unwrap_err();
    assert_invalid(&e, "urn:ietf:params:scim:schemas:core:2.0:User");
}

#[test]
fn render_leaves_resources_to_the_host() {
    // `unsupported` from `render` (contract 1.1): the host serves its own resource unchanged
    // and stops calling `render`.
    let r = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"1","userName":"a"}"#;
    let e = Okta::render(ResourceKind::User, r.into()).unwrap_err();
    assert_eq!(e.kind, idplex_connector_sdk::ErrorKind::Unsupported, "{}", e.message);
}

// ---------- describe and config schema ----------

#[test]
fn describe_declares_provisioning_and_sso_with_a_closed_documented_schema() {
    let info = Okta::describe();
    let schema = assert_described(&info, "okta", env!("CARGO_PKG_VERSION"));
    assert!(matches!(info.capabilities[..], [Capability::Provisioning, Capability::Sso]));
    let p = &schema["properties"];
    assert_eq!(p["groups_filter_mode"]["default"], "starts-with");
    assert_eq!(
        p["groups_filter_mode"]["enum"],
        json!(["starts-with", "equals", "contains"])
    );
    assert_eq!(p["attribute.email"]["default"], "email");
    assert_eq!(p["attribute.given_name"]["default"], "firstName");
    assert_eq!(p["attribute.family_name"]["default"], "lastName");
    assert_eq!(p["attribute.display_name"]["default"], "displayName");
    assert_eq!(p["attribute.groups"]["default"], "groups");
    assert_eq!(p["user_name_source"]["default"], "name-id");
    assert_eq!(
        schema["dependentRequired"]["groups_filter_mode"],
        json!(["groups_filter"])
    );
}

// ---------- SAML ----------

#[test]
fn typical_okta_assertion_maps_with_defaults() {
    let (id, dropped) = saml::map_assertion(&okta_assertion(), &|_| None).unwrap();
    assert_eq!(dropped, 0);
    let u = &id.user;
    assert_eq!(u.user_name, "test.user@okta.local");
    assert_eq!(
        u.external_id, None,
        "an unspecified NameID is not an immutable id"
    );
    assert_eq!(u.emails.len(), 1);
    assert_eq!(u.emails[0].value, "test.user@okta.local");
    assert!(u.emails[0].primary);
    assert_eq!(u.given_name.as_deref(), Some("Test"));
    assert_eq!(u.family_name.as_deref(), Some("User"));
    assert_eq!(u.display_name.as_deref(), Some("Test User"));
    assert!(u.active);
    assert_eq!(id.groups, ["Everyone", "app-admins", "app-users", "Sales"]);
    assert_eq!(u.groups, id.groups);
}

#[test]
fn display_name_persistent_name_id_and_overrides() {
    let mut a = okta_assertion();
    a.attributes.push(attr("displayName", &["Testy McUser"]));
    a.name_id = "00ujl29u0le5T6Aj10h7".into();
    a.name_id_format = Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into());
    let (id, _) = saml::map_assertion(&a, &|_| None).unwrap();
    assert_eq!(id.user.display_name.as_deref(), Some("Testy McUser"));
    assert_eq!(id.user.external_id.as_deref(), Some("00ujl29u0le5T6Aj10h7"));
    // user name from the `email` attribute; groups from an admin-chosen statement name.
    a.attributes.push(attr("memberOf", &["Okta-Eng"]));
    let get = cfg(&[
        ("user_name_source", "attribute"),
        ("attribute.groups", "memberOf"),
    ]);
    let (id, _) = saml::map_assertion(&a, &get).unwrap();
    assert_eq!(id.user.user_name, "test.user@okta.local");
    assert_eq!(id.groups, ["Okta-Eng"]);
}

#[test]
fn groups_filter_modes() {
    let a = okta_assertion();
    let groups = |pairs: &'static [(&'static str, &'static str)]| {
        saml::map_assertion(&a, &cfg(pairs)).map(|(id, dropped)| {
            assert_eq!(id.user.groups, id.groups);
            (id.groups, dropped)
        })
    };
    // starts-with is the default mode.
    assert_eq!(
        groups(&[("groups_filter", "app-")]).unwrap(),
        (vec!["app-admins".into(), "app-users".into()], 2)
    );
    assert_eq!(
        groups(&[
            ("groups_filter", "app-"),
            ("groups_filter_mode", "starts-with")
        ])
        .unwrap()
        .0,
        ["app-admins", "app-users"]
    );
    assert_eq!(
        groups(&[("groups_filter", "Sales"), ("groups_filter_mode", "equals")])
            .unwrap()
            .0,
        ["Sales"]
    );
    assert_eq!(
        groups(&[("groups_filter", "app"), ("groups_filter_mode", "equals")])
            .unwrap()
            .0,
        Vec::<String>::new()
    );
    assert_eq!(
        groups(&[("groups_filter", "-u"), ("groups_filter_mode", "contains")])
            .unwrap()
            .0,
        ["app-users"]
    );
    // Case-sensitive, and no regular expressions: `.*` is literal text.
    assert_eq!(
        groups(&[("groups_filter", "APP-")]).unwrap().0,
        Vec::<String>::new()
    );
    assert_eq!(
        groups(&[("groups_filter", ".*"), ("groups_filter_mode", "contains")])
            .unwrap()
            .0,
        Vec::<String>::new()
    );
}

#[test]
fn wrong_config_is_a_config_error_naming_the_key() {
    let a = okta_assertion();
    let config_err = |pairs: &'static [(&'static str, &'static str)], key: &str| {
        let e = saml::map_assertion(&a, &cfg(pairs)).unwrap_err();
        assert_config(&e, key);
    };
    config_err(
        &[("groups_filter", "app-"), ("groups_filter_mode", "regex")],
        "groups_filter_mode",
    );
    config_err(
        &[
            ("groups_filter", "app-"),
            ("groups_filter_mode", "Starts with"),
        ],
        "groups_filter_mode",
    );
    config_err(&[("groups_filter_mode", "equals")], "groups_filter");
    config_err(&[("groups_filter", "  ")], "groups_filter");
    config_err(&[("user_name_source", "email")], "user_name_source");
}

#[test]
fn missing_user_name_is_an_invalid_request() {
    let mut a = okta_assertion();
    a.name_id = " ".into();
    assert_invalid(&saml::map_assertion(&a, &|_| None).unwrap_err(), "NameID");
    let a = VerifiedAssertion {
        attributes: vec![],
        ..okta_assertion()
    };
    let e = saml::map_assertion(&a, &cfg(&[("user_name_source", "attribute")])).unwrap_err();
    assert_invalid(&e, "`email`");
}
