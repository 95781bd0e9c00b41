//! Property-based fuzzing of the filter parser, PATCH paths and PATCH application
//! (issue 9): whatever the input, no panic, no stack overflow, only SCIM errors, and
//! parse → display → parse round trips.
//!
//! Runs in CI with every `cargo test`. The number of cases per property is `PROPTEST_CASES`
//! (default 384, which keeps this file to a few seconds in a debug build); raise it for a
//! longer local run, e.g. `PROPTEST_CASES=20000 cargo test -p idplex-scim --test fuzz`.

use idplex_scim::{
    AttrPath, Filter, GROUP_RESOURCE_TYPE, PatchOpKind, PatchOperation, PatchOptions, PatchPath,
    Projection, ResourceType, ScimError, ScimType, USER_RESOURCE_TYPE, apply_patch,
    canonical_user_name, prepare_resource,
};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(384);
    Config {
        cases,
        // No regression files written into the source tree by CI runs.
        failure_persistence: None,
        ..Config::default()
    }
}

/// A well-formed SCIM error of the expected kind(s).
fn assert_scim_error(e: &ScimError, allowed: &[ScimType]) {
    let t = e.scim_type.unwrap_or_else(|| panic!("no scimType: {e}"));
    assert!(allowed.contains(&t), "unexpected {t:?}: {e}");
    assert_eq!(e.status, t.http_status());
    assert!(!e.detail.is_empty());
    assert_eq!(e.to_json()["scimType"], t.as_str());
}

/// Attribute names: valid, URN-qualified, sub-attributes, and invalid / non-ASCII ones.
fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("userName".to_owned()),
        Just("emails".to_owned()),
        Just("emails.value".to_owned()),
        Just("name.givenName".to_owned()),
        Just("meta.lastModified".to_owned()),
        Just("active".to_owned()),
        Just("members".to_owned()),
        Just("displayName".to_owned()),
        Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department".to_owned()),
        Just("urn:ietf:params:scim:schemas:core:2.0:User:userName".to_owned()),
        Just("abcé".to_owned()),
        Just("é".to_owned()),
        Just("ｕｓｅｒ".to_owned()),
        Just("urn:é".to_owned()),
        "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
        "[a-z]{1,4}\\.[a-z]{1,4}",
        "\\PC{1,6}",
    ]
}

/// Comparison values: strings with quotes, escapes and non-ASCII, numbers, keywords.
fn comp_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        "\\PC{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just(r#""a \"quoted\" \\ \u00e9 \n""#.to_owned()),
        Just(r#""\ud800""#.to_owned()),
        Just("\"unterminated".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("bareWord".to_owned()),
        Just("12abc".to_owned()),
    ]
}

fn op_word() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "EQ", "Sw", "zz",
    ])
}

/// Filter text, mostly well-formed: nested groups, `not`, value paths, long chains.
fn filter_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (attr_name(), op_word(), comp_value()).prop_map(|(a, o, v)| format!("{a} {o} {v}")),
        attr_name().prop_map(|a| format!("{a} pr")),
        (attr_name(), attr_name(), comp_value()).prop_map(|(a, s, v)| format!("{a}[{s} eq {v}]")),
        (attr_name(), comp_value()).prop_map(|(a, v)| format!("emails[type eq {v}].{a} eq {v}")),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            inner.clone().prop_map(|f| format!("({f})")),
            inner.clone().prop_map(|f| format!("not ({f})")),
            prop::collection::vec(inner.clone(), 2..8).prop_map(|v| v.join(" or ")),
            prop::collection::vec(inner.clone(), 2..8).prop_map(|v| v.join(" AND ")),
            (attr_name(), inner).prop_map(|(a, f)| format!("{a}[{f}]")),
        ]
    })
}

/// Token soup: the filter alphabet in any order, balanced or not.
fn token_soup() -> impl Strategy<Value = String> {
    let tok = prop_oneof![
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(".".to_owned()),
        Just(" ".to_owned()),
        Just("not".to_owned()),
        Just("and".to_owned()),
        Just("or".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("pr".to_owned()),
        op_word().prop_map(str::to_owned),
        attr_name(),
        comp_value(),
    ];
    prop::collection::vec(tok, 0..80).prop_map(|v| v.join(" "))
}

/// Deep or long shapes around the limits.
fn extreme_filter() -> impl Strategy<Value = String> {
    prop_oneof![
        (0usize..200).prop_map(|d| format!("{}a pr{}", "(".repeat(d), ")".repeat(d))),
        (0usize..120).prop_map(|d| format!("{}a pr{}", "not (".repeat(d), ")".repeat(d))),
        (0usize..3000).prop_map(|d| "(".repeat(d)),
        (1usize..1500).prop_map(|n| vec!["a pr"; n].join(" or ")),
        (1usize..1500).prop_map(|n| vec!["a pr"; n].join(" and ")),
        (0usize..200).prop_map(|d| format!("emails[{}type pr{}]", "(".repeat(d), ")".repeat(d))),
    ]
}

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "1", "userName": "bjensen", "active": true,
        "name": {"givenName": "Barbara"},
        "emails": [{"value": "b@x", "type": "work", "primary": true}, {"value": "c@y", "type": "home"}],
        "meta": {"lastModified": "2011-05-13T04:42:34Z"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales"}
    })
}

fn group() -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g", "displayName": "G",
           "members": [{"value": "1"}, {"value": "2"}]})
}

/// Parses, and on success exercises everything that walks the tree.
fn check_filter(text: &str) {
    match Filter::parse(text) {
        Err(e) => assert_scim_error(&e, &[ScimType::InvalidFilter]),
        Ok(f) => {
            let printed = f.to_string();
            let again = Filter::parse(&printed)
                .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}: {e}"));
            assert_eq!(again, f, "{text:?} printed as {printed:?}");
            for (rt, r) in [
                (&USER_RESOURCE_TYPE, user()),
                (&GROUP_RESOURCE_TYPE, group()),
            ] {
                let _ = f.matches(rt, &r);
                if let Err(e) = f.validate_for(rt) {
                    assert_scim_error(&e, &[ScimType::InvalidFilter]);
                }
            }
            let _ = f.as_eq_conjunction();
            drop(f.clone());
        }
    }
}

fn check_patch_path(text: &str) {
    match PatchPath::parse(text) {
        Err(e) => assert_scim_error(&e, &[ScimType::InvalidPath]),
        Ok(p) => {
            if let Some(f) = &p.filter {
                // Inner paths are relative to the elements: re-parse as a PATCH path.
                let again = PatchPath::parse(&format!("{}[{f}]", p.attr))
                    .unwrap_or_else(|e| panic!("{text:?}: {e}"));
                assert_eq!(again.filter.as_ref(), Some(f), "{text:?}");
            }
        }
    }
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,6}".prop_map(Value::String),
        Just(json!("u\u{0}")),
        Just(json!("work")),
        Just(json!("True")),
        Just(json!("2011-05-13T04:42:34Z")),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((patch_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Keys and paths that hit the schema as well as garbage.
fn patch_key() -> impl Strategy<Value = String> {
    prop_oneof![
        attr_name(),
        Just("value".to_owned()),
        Just("type".to_owned()),
        Just("primary".to_owned()),
        Just("emails[type eq \"work\"].value".to_owned()),
        Just("emails[value co \"@\"]".to_owned()),
        Just("members[value eq \"1\"]".to_owned()),
        Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_owned()),
        Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager".to_owned()),
        Just("schemas".to_owned()),
        Just("id".to_owned()),
        filter_text().prop_map(|f| format!("emails[{f}]")),
    ]
}

fn patch_op() -> impl Strategy<Value = PatchOperation> {
    (
        prop::sample::select(vec![
            PatchOpKind::Add,
            PatchOpKind::Replace,
            PatchOpKind::Remove,
        ]),
        prop::option::of(patch_key()),
        prop::option::of(json_value()),
    )
        .prop_map(|(op, path, value)| PatchOperation { op, path, value })
}

fn check_patch(rt: &ResourceType, base: Value, ops: &[PatchOperation], options: &PatchOptions) {
    let mut r = base.clone();
    match apply_patch(rt, &mut r, ops, options) {
        Err(e) => {
            assert_eq!(r, base, "resource must be untouched on error");
            assert_scim_error(
                &e,
                &[
                    ScimType::InvalidPath,
                    ScimType::InvalidValue,
                    ScimType::InvalidSyntax,
                    ScimType::InvalidFilter,
                    ScimType::NoTarget,
                    ScimType::Mutability,
                    ScimType::TooMany,
                ],
            );
        }
        Ok(_) => {
            if let Err(e) = prepare_resource(rt, &r, options) {
                assert_scim_error(&e, &[ScimType::InvalidValue, ScimType::InvalidSyntax]);
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn filters_from_arbitrary_strings(text in any::<String>()) {
        check_filter(&text);
        check_patch_path(&text);
        let _ = AttrPath::parse(&text);
        let _ = Projection::from_params(Some(&text), Some(&text));
    }

    #[test]
    fn filters_from_token_soup(text in token_soup()) {
        check_filter(&text);
        check_patch_path(&text);
    }

    #[test]
    fn structured_filters_round_trip(text in filter_text()) {
        check_filter(&text);
        check_patch_path(&format!("emails[{text}].value"));
    }

    #[test]
    fn extreme_filters_are_bounded(text in extreme_filter()) {
        // On a small stack: a recursion proportional to the input would overflow.
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                check_filter(&text);
                check_patch_path(&format!("emails[{text}]"));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn attribute_paths_never_panic(text in "\\PC{0,12}", prefix in prop::sample::select(vec!["", "urn:", "urn:x:", "a.", "é"])) {
        let text = format!("{prefix}{text}");
        if let Ok(p) = AttrPath::parse(&text) {
            prop_assert_eq!(AttrPath::parse(&p.to_string()).unwrap(), p);
        } else {
            prop_assert_eq!(AttrPath::parse(&text).unwrap_err().scim_type, Some(ScimType::InvalidPath));
        }
    }

    #[test]
    fn patch_application_never_panics(
        ops in prop::collection::vec(patch_op(), 1..6),
        extra in json_value(),
        lenient in any::<bool>(),
    ) {
        let options = if lenient { PatchOptions::IDP_COMPATIBLE } else { PatchOptions::STRICT };
        check_patch(&USER_RESOURCE_TYPE, user(), &ops, &options);
        check_patch(&GROUP_RESOURCE_TYPE, group(), &ops, &options);
        // Arbitrary stored data under a known attribute.
        let mut odd = user();
        odd["emails"] = extra.clone();
        check_patch(&USER_RESOURCE_TYPE, odd, &ops, &options);
        // And arbitrary bodies through create validation.
        for rt in [&USER_RESOURCE_TYPE, &GROUP_RESOURCE_TYPE] {
            if let Err(e) = prepare_resource(rt, &extra, &options) {
                assert_scim_error(&e, &[ScimType::InvalidValue, ScimType::InvalidSyntax]);
            }
        }
    }

    #[test]
    fn patch_request_bodies_never_panic(body in json_value()) {
        if let Err(e) = PatchOperation::parse_request(&body) {
            assert_scim_error(&e, &[ScimType::InvalidSyntax, ScimType::TooMany]);
        }
    }

    #[test]
    fn user_name_canonicalization_is_idempotent(name in any::<String>()) {
        match canonical_user_name(&name) {
            Ok(c) => {
                prop_assert!(!c.is_empty());
                prop_assert_eq!(canonical_user_name(&c).unwrap(), c.clone());
                prop_assert_eq!(c.trim(), c.as_str());
            }
            Err(e) => assert_scim_error(&e, &[ScimType::InvalidValue]),
        }
    }
}
