//! Native unit tests: the Entra fixture vectors, each quirk, bad input, SAML mapping.

use crate::claims::{self, GROUPS_LINK, OVERAGE_ATTRIBUTE};
use crate::dialect::{self, AttrPath, MANAGER_PATH, escape_filter_string};
use idplex_connector_sdk::provisioning::{Operation, PatchOpKind, ScimRequest};
use idplex_connector_sdk::sso::VerifiedAssertion;
use idplex_connector_sdk::testing::{self, assert_described_with_egress, attr, body_of, cfg, patch, request, request_of, vectors};
use idplex_connector_sdk::{ConnectorError, ErrorKind, ResourceKind, metadata, scim, scim_dialect};
use serde_json::{Value, json};

const ENTRA: &str = include_str!("../../../tests/fixtures/idp-dialects/entra.json");
const OKTA: &str = include_str!("../../../tests/fixtures/idp-dialects/okta.json");
const ONELOGIN: &str = include_str!("../../../tests/fixtures/idp-dialects/onelogin.json");
const GENERIC: &str = include_str!("../../../tests/fixtures/idp-dialects/generic_rfc7644.json");
const SAML_CLAIMS: &str = include_str!("../../../tests/fixtures/idp-dialects/saml_claims.json");

const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ENT: &str = scim::ENTERPRISE_USER_SCHEMA;

// ---------------------------------------------------------------------------------------------
// Helpers

/// The Entra fixture vector `id`.
fn vector(id: &str) -> Value {
    testing::vector(&vectors(ENTRA), id).clone()
}

/// One PATCH operation as plain JSON values, for assertions.
#[derive(Debug, PartialEq)]
struct Op {
    op: &'static str,
    path: Option<String>,
    value: Option<Value>,
}

fn op(op: &'static str, path: Option<&str>, value: Option<Value>) -> Op {
    Op { op, path: path.map(Into::into), value }
}

fn patch_ops(ops: &[Operation]) -> Vec<Op> {
    let [Operation::Patch((_, ops))] = ops else { panic!("not one patch: {ops:?}") };
    ops.iter()
        .map(|o| Op {
            op: match o.op {
                PatchOpKind::Add => "add",
                PatchOpKind::Replace => "replace",
                PatchOpKind::Remove => "remove",
            },
            path: o.path.clone(),
            value: o.value.as_deref().map(|v| serde_json::from_str(v).unwrap()),
        })
        .collect()
}

fn normalize_patch(kind: ResourceKind, operations: Value) -> Vec<Op> {
    patch_ops(&dialect::normalize(&patch(kind, "42", operations)).unwrap())
}

fn patch_error(kind: ResourceKind, operations: Value) -> ConnectorError {
    dialect::normalize(&patch(kind, "42", operations)).unwrap_err()
}

fn is_bool_string(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.trim().eq_ignore_ascii_case("true") || s.trim().eq_ignore_ascii_case("false"))
}

/// Asserts that a value reaching the host carries none of Entra's quirks: no boolean strings
/// for `active`/`primary`, `manager` complex, roles unwrapped, no Microsoft schema URN.
fn assert_strict_value(value: &Value, at: &str) {
    match value {
        Value::Object(o) => {
            for (k, v) in o {
                let key = k.rsplit(':').next().unwrap_or(k);
                let leaf = key.rsplit('.').next().unwrap_or(key);
                if leaf.eq_ignore_ascii_case("active") || leaf.eq_ignore_ascii_case("primary") {
                    assert!(!is_bool_string(v), "{at}.{k} is a boolean string: {v}");
                }
                if key.eq_ignore_ascii_case("manager") {
                    assert!(v.is_object() || v.is_null(), "{at}.{k}: manager not complex: {v}");
                    assert!(v.get("$ref").is_none_or(|r| !r.is_null()), "{at}.{k}: null $ref kept: {v}");
                }
                if key.eq_ignore_ascii_case("roles") {
                    for r in v.as_array().into_iter().flatten() {
                        assert!(!r["value"].as_str().unwrap_or_default().starts_with('{'), "{at}.roles: {r}");
                    }
                }
                if k == "schemas" {
                    for s in v.as_array().into_iter().flatten() {
                        assert!(!dialect::is_microsoft_schema(s.as_str().unwrap()), "{at}.schemas: {s}");
                    }
                }
                assert_strict_value(v, &format!("{at}.{k}"));
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                assert_strict_value(v, &format!("{at}[{i}]"));
            }
        }
        _ => {}
    }
}

fn assert_strict(kind: ResourceKind, ops: &[Operation], at: &str) {
    for o in ops {
        match o {
            Operation::Create(b) | Operation::Replace((_, b)) => {
                let body: Value = serde_json::from_str(b).unwrap();
                assert!(
                    body["schemas"].as_array().unwrap().iter().any(|s| s == scim::core_schema(kind)),
                    "{at}: body lost its core schema"
                );
                assert_strict_value(&body, at);
            }
            Operation::Patch(_) => {
                for (i, p) in patch_ops(std::slice::from_ref(o)).into_iter().enumerate() {
                    let at = format!("{at} Operations[{i}]");
                    let path = p.path.as_deref();
                    let parsed = path.and_then(AttrPath::parse);
                    if let Some(v) = &p.value {
                        assert_strict_value(v, &at);
                        if let Some(pp) = &parsed
                            && (pp.names("active") || pp.sub.is_some_and(|s| s.eq_ignore_ascii_case("primary")))
                        {
                            assert!(v.is_boolean(), "{at}: {path:?} = {v}");
                        }
                    }
                    if let Some(pp) = &parsed {
                        if pp.names("roles") {
                            let wrapped = json!({"roles": p.value.clone().unwrap_or(Value::Null)});
                            assert_strict_value(&wrapped, &at);
                        }
                        if pp.attr.eq_ignore_ascii_case("manager") {
                            assert_eq!(path, Some(MANAGER_PATH), "{at}");
                            match p.op {
                                "remove" => assert_eq!(p.value, None, "{at}"),
                                _ => assert!(p.value.as_ref().unwrap()["value"].is_string(), "{at}: {:?}", p.value),
                            }
                        }
                        if p.op == "replace" {
                            assert!(!(pp.filter.is_some() && pp.sub.is_some()), "{at}: filtered replace {path:?}");
                        }
                        if p.op == "remove" && kind == ResourceKind::Group && pp.names("members") {
                            assert!(pp.filter.is_some() || p.value.is_none(), "{at}: member list removal");
                        }
                    }
                }
            }
            Operation::Delete(_) | Operation::Get(_) | Operation::Query(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture vectors

#[test]
fn every_entra_vector_normalizes_to_rfc_strict_operations() {
    let mut normalized = 0;
    let mut skipped = Vec::new();
    for v in vectors(ENTRA) {
        let id = v["id"].as_str().unwrap();
        let Some(req) = request_of(&v) else {
            skipped.push(id.to_string());
            continue;
        };
        let ops = dialect::normalize(&req).unwrap_or_else(|e| panic!("{id}: {e:?}"));
        assert_eq!(ops.len(), 1, "{id}");
        assert_strict(req.resource, &ops, id);
        // What the host gets still parses as RFC 7644 (the generic dialect accepts it).
        if let Some(body) = match &ops[0] {
            Operation::Create(b) | Operation::Replace((_, b)) => Some(b.clone()),
            _ => None,
        } {
            let again = ScimRequest { body: Some(body), ..req.clone() };
            scim_dialect::normalize(&again).unwrap_or_else(|e| panic!("{id}: {e:?}"));
        }
        normalized += 1;
    }
    assert_eq!(skipped, ["entra-schema-01"], "only the /Schemas vector is not a resource request");
    assert!(normalized >= 25, "only {normalized} vectors");
}

#[test]
fn vector_legacy_active_string_becomes_boolean() {
    let ops = dialect::normalize(&request_of(&vector("entra-user-09")).unwrap()).unwrap();
    assert_eq!(patch_ops(&ops), [op("replace", Some("active"), Some(json!(false)))]);
}

#[test]
fn vectors_with_boolean_active_are_unchanged() {
    for id in ["entra-user-10", "entra-user-11"] {
        let ops = dialect::normalize(&request_of(&vector(id)).unwrap()).unwrap();
        assert_eq!(patch_ops(&ops), [op("replace", Some("active"), Some(json!(false)))], "{id}");
    }
}

#[test]
fn vector_filtered_email_replace_becomes_add() {
    let ops = dialect::normalize(&request_of(&vector("entra-user-07")).unwrap()).unwrap();
    assert_eq!(
        patch_ops(&ops),
        [
            op("add", Some("emails[type eq \"work\"].value"), Some(json!("updatedEmail@microsoft.com"))),
            op("replace", Some("name.familyName"), Some(json!("updatedFamilyName"))),
        ]
    );
    let ops = dialect::normalize(&request_of(&vector("entra-user-14")).unwrap()).unwrap();
    let ops = patch_ops(&ops);
    assert_eq!(ops.len(), 6);
    assert_eq!(ops[1].op, "add");
    assert!(ops.iter().enumerate().all(|(i, o)| i == 1 || o.op == "replace"));
    assert_eq!(ops[5].path.as_deref(), Some(&*format!("{ENT}:employeeNumber")));
}

#[test]
fn vector_rfc_dialect_pathless_replace_keeps_dotted_and_urn_keys() {
    let ops = dialect::normalize(&request_of(&vector("entra-user-13")).unwrap()).unwrap();
    assert_eq!(
        patch_ops(&ops),
        [
            op("add", Some("emails[type eq \"work\"].value"), Some(json!("TestMhvaes@test.microsoft.com"))),
            op(
                "replace",
                None,
                Some(json!({"displayName": "Bjfe", "name.givenName": "Kkom", "name.familyName": "Unua",
                    format!("{ENT}:employeeNumber"): "Aklq"}))
            ),
        ]
    );
}

#[test]
fn vector_validator_patch_filtered_replaces_become_adds() {
    let ops = dialect::normalize(&request_of(&vector("entra-user-19")).unwrap()).unwrap();
    let ops = patch_ops(&ops);
    assert_eq!(ops[0], op("add", Some("emails[primary eq true].value"), Some(json!("dandre_kling@wintheiser.info"))));
    assert_eq!(ops[1], op("add", Some("addresses[primary eq true].postalCode"), Some(json!("ko28 1qa"))));
    assert_eq!(ops[2].op, "replace");
    assert_eq!(ops[2].value.as_ref().unwrap()["active"], json!(true));
}

#[test]
fn vector_manager_bare_string_and_legacy_array() {
    let ops = dialect::normalize(&request_of(&vector("entra-user-15")).unwrap()).unwrap();
    assert_eq!(patch_ops(&ops), [op("add", Some(MANAGER_PATH), Some(json!({"value": "271"})))]);
    let ops = dialect::normalize(&request_of(&vector("entra-user-16")).unwrap()).unwrap();
    assert_eq!(
        patch_ops(&ops),
        [op(
            "add",
            Some(MANAGER_PATH),
            Some(json!({"$ref": "http://.../scim/Users/00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
                "value": "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"}))
        )]
    );
}

#[test]
fn vector_stringified_roles_are_unwrapped() {
    let ops = dialect::normalize(&request_of(&vector("entra-user-17")).unwrap()).unwrap();
    assert_eq!(
        patch_ops(&ops),
        [op("add", Some("roles"), Some(json!([{"value": "DocumentMgmt-Admin", "display": "DocumentMgmt Admin"}])))]
    );
}

#[test]
fn vector_user_create_passes_as_sent() {
    let req = request_of(&vector("entra-user-04")).unwrap();
    let ops = dialect::normalize(&req).unwrap();
    assert!(matches!(&ops[..], [Operation::Create(b)] if Some(b) == req.body.as_ref()), "{ops:?}");
}

#[test]
fn vector_group_create_drops_the_microsoft_schema() {
    let ops = dialect::normalize(&request_of(&vector("entra-group-01")).unwrap()).unwrap();
    let body = body_of(&ops);
    assert_eq!(body["schemas"], json!([scim::GROUP_SCHEMA]));
    assert_eq!(body["externalId"], "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159");
    assert_eq!(body["displayName"], "displayName");
}

#[test]
fn vector_member_removal_by_value_list_becomes_filtered_removes() {
    let ops = dialect::normalize(&request_of(&vector("entra-group-06")).unwrap()).unwrap();
    assert_eq!(patch_ops(&ops), [op("remove", Some("members[value eq \"f648f8d5ea4e4cd38e9c\"]"), None)]);
    // The RFC dialect's filtered removal, and member addition, pass unchanged.
    let ops = dialect::normalize(&request_of(&vector("entra-group-07")).unwrap()).unwrap();
    assert_eq!(
        patch_ops(&ops),
        [op("remove", Some("members[value eq \"7f4bc1a3-285e-48ae-8202-5accb43efb0e\"]"), None)]
    );
    let ops = dialect::normalize(&request_of(&vector("entra-group-05")).unwrap()).unwrap();
    assert_eq!(
        patch_ops(&ops),
        [op("add", Some("members"), Some(json!([{"$ref": null, "value": "f648f8d5ea4e4cd38e9c"}])))]
    );
}

#[test]
fn test_connection_probe_and_excluded_members_need_nothing_special() {
    let ops = dialect::normalize(&request_of(&vector("entra-conn-01")).unwrap()).unwrap();
    let [Operation::Query(q)] = &ops[..] else { panic!("{ops:?}") };
    assert_eq!(q.filter.as_deref(), Some("userName eq \"9f0e3b2a-6c1d-4a59-bf0a-2d7c1e8a4b11\""));
    assert!(q.excluded_attributes.is_empty());

    let ops = dialect::normalize(&request_of(&vector("entra-group-03")).unwrap()).unwrap();
    let [Operation::Query(q)] = &ops[..] else { panic!("{ops:?}") };
    assert_eq!(q.filter.as_deref(), Some("displayName eq \"displayName\""));
    assert_eq!(q.excluded_attributes, ["members"]);

    let ops = dialect::normalize(&request_of(&vector("entra-group-02")).unwrap()).unwrap();
    assert!(matches!(&ops[..], [Operation::Get(id)] if id == "a99962b9f99d4c4fac67"), "{ops:?}");

    // The tenant URL's feature flag, when it reaches the query, is ignored.
    let mut req = request_of(&vector("entra-user-01")).unwrap();
    req.query.push(("aadOptscim062020".into(), String::new()));
    let ops = dialect::normalize(&req).unwrap();
    assert!(matches!(&ops[..], [Operation::Query(q)] if q.filter.is_some()));
}

#[test]
fn deletes_pass_through() {
    for id in ["entra-user-18", "entra-group-08"] {
        let ops = dialect::normalize(&request_of(&vector(id)).unwrap()).unwrap();
        assert!(matches!(&ops[..], [Operation::Delete(_)]), "{id}: {ops:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Quirks, one by one

#[test]
fn boolean_strings_become_booleans_case_insensitively() {
    for (text, expected) in [("False", false), ("TRUE", true), ("true", true), (" false ", false), ("fALSE", false)] {
        assert_eq!(
            normalize_patch(ResourceKind::User, json!([{"op": "Replace", "path": "active", "value": text}])),
            [op("replace", Some("active"), Some(json!(expected)))],
            "{text}"
        );
    }
    let urn_active = format!("{}:active", scim::USER_SCHEMA);
    assert_eq!(
        normalize_patch(ResourceKind::User, json!([{"op": "Replace", "path": urn_active, "value": "False"}])),
        [op("replace", Some(&urn_active), Some(json!(false)))]
    );
    // Path-less value (legacy and RFC dialect alike).
    assert_eq!(
        normalize_patch(ResourceKind::User, json!([{"op": "Replace", "value": {"active": "False", "displayName": "D"}}])),
        [op("replace", None, Some(json!({"active": false, "displayName": "D"})))]
    );
    // `primary` of multi-valued attributes, through every shape of path.
    assert_eq!(
        normalize_patch(ResourceKind::User, json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].primary", "value": "True"},
            {"op": "Add", "path": "emails", "value": [{"value": "a@x.io", "type": "work", "primary": "True"}]},
            {"op": "Add", "path": "phoneNumbers", "value": {"value": "+1", "Primary": "false"}},
            {"op": "Replace", "value": {"addresses": [{"locality": "Paris", "primary": "TRUE"}],
                                        "emails[type eq \"home\"].primary": "false"}},
        ])),
        [
            op("add", Some("emails[type eq \"work\"].primary"), Some(json!(true))),
            op("add", Some("emails"), Some(json!([{"value": "a@x.io", "type": "work", "primary": true}]))),
            op("add", Some("phoneNumbers"), Some(json!({"value": "+1", "Primary": false}))),
            op("replace", None, Some(json!({"addresses": [{"locality": "Paris", "primary": true}]}))),
            op("add", Some("emails[type eq \"home\"].primary"), Some(json!(false))),
        ]
    );
}

#[test]
fn boolean_strings_in_bodies_become_booleans() {
    let body = json!({"schemas": [scim::USER_SCHEMA, ENT], "userName": "u@x.io", "active": "False",
        "emails": [{"value": "u@x.io", "primary": "True"}], "displayName": "True"});
    for (method, id) in [("POST", None), ("PUT", Some("42"))] {
        let ops = dialect::normalize(&request(method, ResourceKind::User, id, Some(body.clone()))).unwrap();
        let out = body_of(&ops);
        assert_eq!(out["active"], json!(false), "{method}");
        assert_eq!(out["emails"][0]["primary"], json!(true), "{method}");
        assert_eq!(out["displayName"], "True", "{method}: a string attribute stays a string");
    }
}

#[test]
fn non_boolean_strings_are_left_for_the_host_to_refuse() {
    assert_eq!(
        normalize_patch(ResourceKind::User, json!([{"op": "Replace", "path": "active", "value": "maybe"}])),
        [op("replace", Some("active"), Some(json!("maybe")))]
    );
    // String attributes whose value happens to read "True" are not booleans.
    assert_eq!(
        normalize_patch(ResourceKind::User, json!([
            {"op": "Add", "path": "nickName", "value": "True"},
            {"op": "Replace", "value": {"title": "False", "name.givenName": "true"}},
        ])),
        [
            op("add", Some("nickName"), Some(json!("True"))),
            op("replace", None, Some(json!({"title": "False", "name.givenName": "true"}))),
        ]
    );
    let body = json!({"schemas": [scim::USER_SCHEMA], "userName": "u", "active": "yes"});
    let ops = dialect::normalize(&request("POST", ResourceKind::User, None, Some(body))).unwrap();
    assert_eq!(body_of(&ops)["active"], "yes");
}

#[test]
fn rfc_dialect_pathless_replace_converts_booleans_and_keeps_keys() {
    let dep = format!("{ENT}:department");
    assert_eq!(
        normalize_patch(ResourceKind::User, json!([{"op": "replace", "value": {
            "name.givenName": "Kyler", "active": "True", dep.clone(): "Eng", "externalId": "e1"}}])),
        [op("replace", None, Some(json!({"name.givenName": "Kyler", "active": true, dep: "Eng", "externalId": "e1"})))]
    );
}

#[test]
fn member_removal_by_value_list_is_one_filtered_remove_per_member() {
    assert_eq!(
        normalize_patch(ResourceKind::Group, json!([
            {"op": "Replace", "path": "displayName", "value": "G"},
            {"op": "Remove", "path": "members", "value": [{"value": "id1"}, {"$ref": null, "value": "id2"}]},
            {"op": "Add", "path": "members", "value": [{"value": "id3"}]},
        ])),
        [
            op("replace", Some("displayName"), Some(json!("G"))),
            op("remove", Some("members[value eq \"id1\"]"), None),
            op("remove", Some("members[value eq \"id2\"]"), None),
            op("add", Some("members"), Some(json!([{"value": "id3"}]))),
        ]
    );
    // Quotes and backslashes in an id are escaped inside the filter string.
    assert_eq!(
        normalize_patch(ResourceKind::Group, json!([{"op": "remove", "path": "members", "value": [{"value": "a\"b\\c"}]}])),
        [op("remove", Some("members[value eq \"a\\\"b\\\\c\"]"), None)]
    );
    assert_eq!(escape_filter_string(r#"x"y\z"#), r#"x\"y\\z"#);
    // A single member object, and the URN-qualified path.
    let urn_members = format!("{}:members", scim::GROUP_SCHEMA);
    assert_eq!(
        normalize_patch(ResourceKind::Group, json!([{"op": "Remove", "path": urn_members, "value": {"value": "id9"}}])),
        [op("remove", Some("members[value eq \"id9\"]"), None)]
    );
    // Without a value it is the RFC's "remove every member", left as it is.
    assert_eq!(
        normalize_patch(ResourceKind::Group, json!([{"op": "Remove", "path": "members"}])),
        [op("remove", Some("members"), None)]
    );
}

#[test]
fn member_removal_with_a_bad_value_list_names_the_field() {
    let e = patch_error(ResourceKind::Group, json!([{"op": "Remove", "path": "members", "value": []}]));
    assert!(matches!(e.kind, ErrorKind::InvalidRequest));
    assert_eq!(e.scim_type.as_deref(), Some("invalidValue"));
    assert!(e.message.contains("Operations[0].value"), "{}", e.message);
    let e = patch_error(
        ResourceKind::Group,
        json!([{"op": "Add", "path": "displayName", "value": "x"},
               {"op": "Remove", "path": "members", "value": [{"value": "a"}, {"display": "no id"}]}]),
    );
    assert!(e.message.contains("Operations[1].value[1].value"), "{}", e.message);
    let e = patch_error(ResourceKind::Group, json!([{"op": "Remove", "path": "members", "value": "id1"}]));
    assert!(e.message.contains("Operations[0].value") && e.message.contains("string"), "{}", e.message);
}

#[test]
fn manager_becomes_a_complex_value_under_its_full_urn() {
    let expected = [op("add", Some(MANAGER_PATH), Some(json!({"value": "271"})))];
    for path in ["manager", "Manager", MANAGER_PATH, &MANAGER_PATH.to_ascii_lowercase()] {
        for value in [json!("271"), json!([{"value": "271", "$ref": null}]), json!({"value": "271", "$ref": null}), json!(["271"])] {
            assert_eq!(
                normalize_patch(ResourceKind::User, json!([{"op": "Add", "path": path, "value": value}])),
                expected,
                "{path} {value}"
            );
        }
    }
    // A `$ref` with a value is kept, and so is an RFC-correct manager.
    let full = json!({"value": "271", "$ref": "https://x/Users/271", "displayName": "Boss"});
    assert_eq!(
        normalize_patch(ResourceKind::User, json!([{"op": "replace", "path": MANAGER_PATH, "value": [full.clone()]}])),
        [op("replace", Some(MANAGER_PATH), Some(full.clone()))]
    );
    // Removal is by path only.
    assert_eq!(
        normalize_patch(ResourceKind::User, json!([
            {"op": "Remove", "path": "manager", "value": [{"value": "271"}]},
            {"op": "Remove", "path": MANAGER_PATH},
        ])),
        [op("remove", Some(MANAGER_PATH), None), op("remove", Some(MANAGER_PATH), None)]
    );
    // In a path-less value: the URN key, the bare key, and the extension object.
    assert_eq!(
        normalize_patch(ResourceKind::User, json!([
            {"op": "replace", "value": {MANAGER_PATH: "1", "displayName": "D"}},
            {"op": "replace", "value": {"manager": ["2"]}},
            {"op": "replace", "value": {ENT: {"manager": "3", "department": "Eng"}}},
        ])),
        [
            op("replace", None, Some(json!({MANAGER_PATH: {"value": "1"}, "displayName": "D"}))),
            op("replace", None, Some(json!({MANAGER_PATH: {"value": "2"}}))),
            op("replace", None, Some(json!({ENT: {"manager": {"value": "3"}, "department": "Eng"}}))),
        ]
    );
}

#[test]
fn manager_in_bodies_becomes_complex() {
    for (method, id, manager) in [
        ("POST", None, json!("271")),
        ("PUT", Some("42"), json!([{"value": "271", "$ref": null}])),
    ] {
        let body = json!({"schemas": [scim::USER_SCHEMA, ENT], "userName": "u", ENT: {"manager": manager, "department": "Eng"}});
        let ops = dialect::normalize(&request(method, ResourceKind::User, id, Some(body))).unwrap();
        let out = body_of(&ops);
        assert_eq!(out[ENT]["manager"], json!({"value": "271"}), "{method}");
        assert_eq!(out[ENT]["department"], "Eng");
    }
    // An explicit null (older Entra payloads) is left: the RFC reads it as unassigned.
    let body = json!({"schemas": [scim::USER_SCHEMA, ENT], "userName": "u", ENT: {"manager": null}});
    let req = request("POST", ResourceKind::User, None, Some(body));
    let ops = dialect::normalize(&req).unwrap();
    assert!(matches!(&ops[..], [Operation::Create(b)] if Some(b) == req.body.as_ref()));
}

#[test]
fn manager_with_several_values_is_refused_naming_the_field() {
    let e = patch_error(
        ResourceKind::User,
        json!([{"op": "Add", "path": "manager", "value": [{"value": "1"}, {"value": "2"}]}]),
    );
    assert!(matches!(e.kind, ErrorKind::InvalidRequest));
    assert_eq!(e.scim_type.as_deref(), Some("invalidValue"));
    assert!(e.message.contains("Operations[0].value") && e.message.contains("manager"), "{}", e.message);
    let e = patch_error(ResourceKind::User, json!([{"op": "Add", "path": "manager", "value": []}]));
    assert!(e.message.contains("manager"), "{}", e.message);
}

#[test]
fn filtered_replace_of_a_sub_attribute_becomes_add() {
    assert_eq!(
        normalize_patch(ResourceKind::User, json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "a@x.io"},
            {"op": "replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1"},
            {"op": "replace", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Main St"},
            {"op": "replace", "path": "emails[value eq \"a].b\"].display", "value": "quoted bracket"},
            {"op": "replace", "path": format!("{}:emails[type eq \"work\"].value", scim::USER_SCHEMA), "value": "b@x.io"},
        ])),
        [
            op("add", Some("emails[type eq \"work\"].value"), Some(json!("a@x.io"))),
            op("add", Some("phoneNumbers[type eq \"mobile\"].value"), Some(json!("+1"))),
            op("add", Some("addresses[type eq \"work\"].streetAddress"), Some(json!("1 Main St"))),
            op("add", Some("emails[value eq \"a].b\"].display"), Some(json!("quoted bracket"))),
            op("add", Some(&format!("{}:emails[type eq \"work\"].value", scim::USER_SCHEMA)), Some(json!("b@x.io"))),
        ]
    );
    // Without a sub-attribute, without a filter, or for a remove: unchanged.
    assert_eq!(
        normalize_patch(ResourceKind::User, json!([
            {"op": "replace", "path": "emails[type eq \"work\"]", "value": {"value": "a@x.io"}},
            {"op": "replace", "path": "name.familyName", "value": "F"},
            {"op": "remove", "path": "emails[type eq \"home\"].value"},
        ])),
        [
            op("replace", Some("emails[type eq \"work\"]"), Some(json!({"value": "a@x.io"}))),
            op("replace", Some("name.familyName"), Some(json!("F"))),
            op("remove", Some("emails[type eq \"home\"].value"), None),
        ]
    );
    // A filtered key in a path-less replace becomes an add of its own.
    assert_eq!(
        normalize_patch(ResourceKind::User, json!([
            {"op": "replace", "value": {"emails[type eq \"work\"].value": "c@x.io", "displayName": "D"}},
            {"op": "replace", "value": {"emails[type eq \"work\"].value": "d@x.io"}},
        ])),
        [
            op("replace", None, Some(json!({"displayName": "D"}))),
            op("add", Some("emails[type eq \"work\"].value"), Some(json!("c@x.io"))),
            op("add", Some("emails[type eq \"work\"].value"), Some(json!("d@x.io"))),
        ]
    );
}

#[test]
fn stringified_roles_are_unwrapped_in_patches_and_bodies() {
    let role = "{\"id\":\"1\",\"value\":\"Admin\",\"displayName\":\"Admins\"}";
    let expected = json!([{"value": "Admin", "display": "Admins"}]);
    assert_eq!(
        normalize_patch(ResourceKind::User, json!([
            {"op": "Replace", "path": "roles", "value": [{"value": role, "primary": "True"}]},
            {"op": "replace", "value": {"roles": [{"value": role}]}},
        ])),
        [
            op("replace", Some("roles"), Some(json!([{"value": "Admin", "display": "Admins", "primary": true}]))),
            op("replace", None, Some(json!({"roles": expected.clone()}))),
        ]
    );
    let body = json!({"schemas": [scim::USER_SCHEMA], "userName": "u", "roles": [{"value": role}]});
    let ops = dialect::normalize(&request("POST", ResourceKind::User, None, Some(body))).unwrap();
    assert_eq!(body_of(&ops)["roles"], expected);
    // Plain roles are untouched.
    assert_eq!(
        normalize_patch(ResourceKind::User, json!([{"op": "add", "path": "roles", "value": [{"value": "Admin"}]}])),
        [op("add", Some("roles"), Some(json!([{"value": "Admin"}])))]
    );
}

#[test]
fn microsoft_group_schema_is_dropped_from_bodies() {
    let ms = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";
    for (method, id) in [("POST", None), ("PUT", Some("g1"))] {
        let body = json!({"schemas": [ms.to_ascii_uppercase(), scim::GROUP_SCHEMA], "displayName": "G"});
        let ops = dialect::normalize(&request(method, ResourceKind::Group, id, Some(body))).unwrap();
        assert_eq!(body_of(&ops)["schemas"], json!([scim::GROUP_SCHEMA]), "{method}");
    }
    // A group body without it passes byte for byte.
    let text = r#"{ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G" }"#;
    let req = ScimRequest { body: Some(text.into()), ..request("POST", ResourceKind::Group, None, None) };
    assert!(matches!(&dialect::normalize(&req).unwrap()[..], [Operation::Create(b)] if b == text));
    // Only Microsoft's URN goes: the body must still list the core schema.
    let body = json!({"schemas": [ms], "displayName": "G"});
    let e = dialect::normalize(&request("POST", ResourceKind::Group, None, Some(body))).unwrap_err();
    assert!(e.message.contains(scim::GROUP_SCHEMA), "{}", e.message);
}

#[test]
fn render_leaves_resources_to_the_host() {
    // `unsupported` from `render` (contract 1.1): the host serves its own resource unchanged
    // and stops calling `render`.
    let r = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"1","active":false}"#;
    let e = scim_dialect::render(r.to_string()).unwrap_err();
    assert_eq!(e.kind, idplex_connector_sdk::ErrorKind::Unsupported, "{}", e.message);
}

#[test]
fn attribute_paths_are_taken_apart() {
    let p = AttrPath::parse(MANAGER_PATH).unwrap();
    assert_eq!((p.urn, p.attr, p.filter, p.sub), (Some(ENT), "manager", None, None));
    assert!(p.is_manager());
    let p = AttrPath::parse("emails[type eq \"w]\"].value").unwrap();
    assert_eq!((p.attr, p.filter, p.sub), ("emails", Some("type eq \"w]\""), Some("value")));
    let p = AttrPath::parse(ENT).unwrap();
    assert!(p.names(ENT) && !p.names("manager"));
    assert!(AttrPath::parse("emails[type eq \"work\"").is_none());
    assert!(AttrPath::parse("emails[type eq \"work\"]x").is_none());
    assert!(!AttrPath::parse(&format!("{}:manager", scim::USER_SCHEMA)).unwrap().is_manager());
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn another_idps_dialect_is_not_fixed() {
    // OneLogin's pre-RFC core URN: refused naming the URN the body must list.
    for v in vectors(ONELOGIN) {
        let Some(req) = request_of(&v) else { continue };
        let body = req.body.as_deref().unwrap_or_default();
        if req.method == "POST" && body.contains("urn:scim:schemas:core:2.0") {
            let e = dialect::normalize(&req).unwrap_err();
            assert_eq!(e.scim_type.as_deref(), Some("invalidValue"), "{}", v["id"]);
            assert!(e.message.contains(scim::USER_SCHEMA), "{}", e.message);
        }
    }
    // Okta's, OneLogin's and the generic RFC vectors reach the host exactly as the generic
    // dialect reads them (or are refused the same way).
    let mut compared = 0;
    for file in [OKTA, ONELOGIN, GENERIC] {
        for v in vectors(file) {
            let Some(req) = request_of(&v) else { continue };
            let ours = dialect::normalize(&req);
            let generic = scim_dialect::normalize(&req);
            assert_eq!(format!("{ours:?}"), format!("{generic:?}"), "{}", v["id"]);
            compared += 1;
        }
    }
    assert!(compared >= 40, "only {compared} vectors compared");
    // Entra's own quirks in a body of another IdP's shape are still Entra's: nothing else is
    // touched (an Okta-style path-less replace with a string boolean on a string attribute).
    assert_eq!(
        normalize_patch(ResourceKind::Group, json!([{"op": "replace", "value": {"id": "g", "displayName": "False"}}])),
        [op("replace", None, Some(json!({"id": "g", "displayName": "False"})))]
    );
}

#[test]
fn the_strictness_check_catches_every_raw_quirk() {
    // What the generic dialect hands on for Entra's quirky vectors fails the check used above.
    for id in ["entra-user-09", "entra-user-07", "entra-user-15", "entra-user-16", "entra-user-17",
               "entra-group-01", "entra-group-06"] {
        let req = request_of(&vector(id)).unwrap();
        let raw = scim_dialect::normalize(&req).unwrap();
        let caught = std::panic::catch_unwind(|| assert_strict(req.resource, &raw, id)).is_err();
        assert!(caught, "{id}: the raw quirk passed the strictness check");
    }
}

#[test]
fn malformed_patches_are_refused_naming_the_field() {
    let cases: &[(Value, &str, &str)] = &[
        (json!({"schemas": [PATCH_URN]}), "Operations", "invalidSyntax"),
        (json!({"schemas": [PATCH_URN], "Operations": []}), "Operations", "invalidValue"),
        (json!({"schemas": [PATCH_URN], "Operations": [{"op": "Move", "path": "active"}]}), "Move", "invalidSyntax"),
        (json!({"schemas": [PATCH_URN], "Operations": [{"op": "Replace", "path": 7, "value": "x"}]}), "path", "invalidPath"),
        (json!({"schemas": [PATCH_URN], "Operations": [{"op": "Replace", "path": "active"}]}), "value", "invalidValue"),
        (json!({"Operations": [{"op": "Replace", "path": "active", "value": false}]}), "schemas", "invalidSyntax"),
    ];
    for (body, names, scim_type) in cases {
        let e = dialect::normalize(&request("PATCH", ResourceKind::User, Some("1"), Some(body.clone()))).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::InvalidRequest), "{body}");
        assert!(e.message.contains(names), "{body}: {}", e.message);
        assert_eq!(e.scim_type.as_deref(), Some(*scim_type), "{body}: {}", e.message);
    }
    let not_json = ScimRequest { body: Some("{\"Operations\": [".into()), ..request("PATCH", ResourceKind::User, Some("1"), None) };
    assert_eq!(dialect::normalize(&not_json).unwrap_err().scim_type.as_deref(), Some("invalidSyntax"));
    let no_id = request("PATCH", ResourceKind::User, None, Some(json!({"schemas": [PATCH_URN], "Operations": []})));
    assert!(dialect::normalize(&no_id).unwrap_err().message.contains("id"));
}

// ---------------------------------------------------------------------------------------------
// SAML

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OID: &str = "b1f6d8a0-5c3e-4f7a-9d2b-8e4c1a6f3d90";

/// A typical Entra assertion: the default claims of a new enterprise app, plus groups and roles.
fn entra_assertion() -> VerifiedAssertion {
    VerifiedAssertion {
        issuer: format!("https://sts.windows.net/{TENANT}/"),
        name_id: "ada@contoso.onmicrosoft.com".into(),
        name_id_format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into()),
        session_index: Some("_sess".into()),
        authn_context: Some("urn:oasis:names:tc:SAML:2.0:ac:classes:Password".into()),
        attributes: vec![
            attr(claims::TENANT_ID, &[TENANT]),
            attr(claims::OBJECT_ID, &[OID]),
            attr(claims::DISPLAY_NAME, &["Ada Lovelace"]),
            attr("http://schemas.microsoft.com/identity/claims/identityprovider", &[&format!("https://sts.windows.net/{TENANT}/")]),
            attr("http://schemas.microsoft.com/claims/authnmethodsreferences", &["http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/password"]),
            attr(claims::GIVEN_NAME, &["Ada"]),
            attr(claims::SURNAME, &["Lovelace"]),
            attr(claims::EMAIL, &["ada@contoso.com"]),
            attr(claims::NAME, &["ada@contoso.onmicrosoft.com"]),
            attr(claims::GROUPS, &["0e1f2a3b-0000-0000-0000-000000000001", "0e1f2a3b-0000-0000-0000-000000000002"]),
            attr(claims::ROLES, &["Admin", "Reader", "Admin"]),
        ],
    }
}

fn attribute<'a>(identity: &'a idplex_connector_sdk::sso::SsoIdentity, name: &str) -> Option<&'a str> {
    identity.user.attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn saml_defaults_are_the_fixture_claim_uris() {
    let fixture: Value = serde_json::from_str(SAML_CLAIMS).unwrap();
    let entra = &fixture["entra"];
    let names = |key: &str| claims::MAPPING.names(key, &|_| None);
    for uri in entra["default_attributes"].as_object().unwrap().keys() {
        assert!(claims::DEFAULTS.iter().any(|(_, d)| d.contains(&uri.as_str())), "{uri} has no default use");
    }
    assert_eq!(names("attribute.external_id"), [claims::OBJECT_ID]);
    assert!(entra["always_emitted"].get(claims::OBJECT_ID).is_some());
    assert!(entra["always_emitted"].get(claims::DISPLAY_NAME).is_some());
    assert!(entra["optional"].get(claims::GROUPS).is_some());
    assert!(entra["optional"].get(claims::ROLES).is_some());
    assert!(entra["optional"][claims::GROUPS].as_str().unwrap().contains(GROUPS_LINK));
    assert_eq!(entra["issuer"], "https://sts.windows.net/<tenant-id>/");
}

#[test]
fn typical_entra_assertion_maps_to_the_scim_user() {
    let mapped = claims::map_assertion(&entra_assertion(), &|_| None).unwrap();
    let user = &mapped.identity.user;
    assert_eq!(user.user_name, "ada@contoso.onmicrosoft.com", "NameID (the UPN) by default");
    assert_eq!(user.external_id.as_deref(), Some(OID), "objectidentifier links to SCIM externalId");
    assert_eq!(user.given_name.as_deref(), Some("Ada"));
    assert_eq!(user.family_name.as_deref(), Some("Lovelace"));
    assert_eq!(user.display_name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(user.emails.len(), 1);
    assert_eq!(user.emails[0].value, "ada@contoso.com");
    assert!(user.emails[0].primary);
    assert!(user.active);
    let groups = ["0e1f2a3b-0000-0000-0000-000000000001", "0e1f2a3b-0000-0000-0000-000000000002"];
    assert_eq!(mapped.identity.groups, groups);
    assert_eq!(user.groups, groups);
    let roles: Value = serde_json::from_str(attribute(&mapped.identity, "roles").unwrap()).unwrap();
    assert_eq!(roles, json!([{"value": "Admin"}, {"value": "Reader"}]));
    assert!(attribute(&mapped.identity, OVERAGE_ATTRIBUTE).is_none());
    assert!(mapped.warnings.is_empty());
}

#[test]
fn saml_mapping_follows_config_overrides() {
    let mut a = entra_assertion();
    a.attributes.push(attr("employeeid", &["E-7"]));
    a.attributes.push(attr("appRoles", &["Owner"]));
    let cfg = cfg(&[
        ("user_name_source", "attribute"),
        ("attribute.external_id", "employeeid"),
        ("attribute.roles", "appRoles"),
    ]);
    let mapped = claims::map_assertion(&a, &cfg).unwrap();
    assert_eq!(mapped.identity.user.user_name, "ada@contoso.onmicrosoft.com", "from the `name` claim");
    assert_eq!(mapped.identity.user.external_id.as_deref(), Some("E-7"));
    assert_eq!(attribute(&mapped.identity, "roles"), Some(r#"[{"value":"Owner"}]"#));
    // Without role claims there is no roles attribute.
    a.attributes.retain(|x| x.name != claims::ROLES);
    let mapped = claims::map_assertion(&a, &|_| None).unwrap();
    assert!(attribute(&mapped.identity, "roles").is_none());
}

#[test]
fn group_overage_is_flagged_and_warned() {
    let mut a = entra_assertion();
    a.attributes.retain(|x| x.name != claims::GROUPS);
    a.attributes.push(attr(GROUPS_LINK, &[&format!("https://graph.windows.net/{TENANT}/users/{OID}/getMemberObjects")]));
    let mapped = claims::map_assertion(&a, &|_| None).unwrap();
    assert_eq!(attribute(&mapped.identity, OVERAGE_ATTRIBUTE), Some("true"));
    assert!(mapped.identity.groups.is_empty());
    let [warning] = &mapped.warnings[..] else { panic!("{:?}", mapped.warnings) };
    assert!(warning.contains(GROUPS_LINK), "{warning}");
    assert!(warning.contains("assigned to the application"), "{warning}");
    assert!(warning.contains("SCIM"), "{warning}");
}

#[test]
fn tenant_pinning_refuses_other_issuers() {
    let pinned = [("tenant_id", TENANT)];
    assert!(claims::map_assertion(&entra_assertion(), &cfg(&pinned)).is_ok());
    let upper = [("tenant_id", "72F988BF-86F1-41AF-91AB-2D7CD011DB47")];
    assert!(claims::map_assertion(&entra_assertion(), &cfg(&upper)).is_ok(), "GUIDs compare case-insensitively");

    let mut other = entra_assertion();
    other.issuer = "https://sts.windows.net/00000000-1111-2222-3333-444444444444/".into();
    let e = claims::map_assertion(&other, &cfg(&pinned)).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::InvalidRequest));
    assert!(e.message.contains(&other.issuer), "{}", e.message);
    assert!(e.message.contains(&format!("https://sts.windows.net/{TENANT}/")), "{}", e.message);
    assert!(e.message.contains("tenant_id"), "{}", e.message);
    // Unpinned: any issuer.
    assert!(claims::map_assertion(&other, &|_| None).is_ok());

    // The right issuer with another tenant's `tenantid` claim is refused too.
    let mut forged = entra_assertion();
    forged.attributes[0] = attr(claims::TENANT_ID, &["00000000-1111-2222-3333-444444444444"]);
    let e = claims::map_assertion(&forged, &cfg(&pinned)).unwrap_err();
    assert!(e.message.contains("tenantid"), "{}", e.message);
}

#[test]
fn wrong_config_is_a_config_error_naming_the_key() {
    let e = claims::map_assertion(&entra_assertion(), &cfg(&[("tenant_id", "contoso.onmicrosoft.com")])).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Config));
    assert!(e.message.contains("`tenant_id`"), "{}", e.message);
    let e = claims::map_assertion(&entra_assertion(), &cfg(&[("user_name_source", "upn")])).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Config));
    assert!(e.message.contains("`user_name_source`"), "{}", e.message);
    let mut a = entra_assertion();
    a.name_id = " ".into();
    let e = claims::map_assertion(&a, &|_| None).unwrap_err();
    assert!(e.message.contains("user_name_source"), "{}", e.message);
}

#[test]
fn describe_and_config_schema() {
    let info = <crate::EntraId as metadata::Guest>::describe();
    let schema = assert_described_with_egress(&info, "entra-id", env!("CARGO_PKG_VERSION"), &["graph.microsoft.com"]);
    let props = schema["properties"].as_object().unwrap();
    let patterns: Vec<&String> = schema["patternProperties"].as_object().unwrap().keys().collect();
    assert_eq!(patterns, ["^credential\\.", "^secret\\."], "the host's client-credentials keys");
    assert!(matches!(
        info.capabilities[..],
        [metadata::Capability::Provisioning, metadata::Capability::DirectorySync, metadata::Capability::Sso]
    ));
    for key in ["user_name_source", "tenant_id", "attribute.roles", "attribute.external_id", "attribute.groups"] {
        assert!(props.contains_key(key), "{key}");
    }
    assert_eq!(props["attribute.external_id"]["default"], claims::OBJECT_ID);
    assert_eq!(props["attribute.roles"]["default"], claims::ROLES);
    assert_eq!(props["attribute.email"]["default"], claims::EMAIL);
    assert!(props["tenant_id"].get("default").is_none());
    assert!(props["tenant_id"]["pattern"].as_str().unwrap().contains("{12}"));
}
