//! Regression tests for issue 9 (hardening) on the pure SCIM crate: inputs that used to
//! overflow the stack, panic, or cost quadratic work now answer a specific SCIM error.
//!
//! Every hostile input runs on a thread with a 256 KiB stack (a tokio worker has 2 MiB),
//! so a recursion proportional to the input would overflow and fail the test.

use idplex_scim::{
    AttrPath, Filter, GROUP_RESOURCE_TYPE, Limits, PatchOpKind, PatchOperation, PatchOptions,
    PatchPath, Projection, ScimError, ScimType, USER_RESOURCE_TYPE, apply_patch, apply_patch_with,
    canonical_user_name, check_resource_strings, prepare_resource, prepare_resource_with,
    validate_resource_id,
};
use serde_json::{Value, json};

const SMALL_STACK: usize = 256 * 1024;

/// Runs `f` on a thread with a small stack; a stack overflow aborts the test binary.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic")
}

fn assert_scim(e: &ScimError, ty: ScimType, fragment: &str) {
    assert_eq!(e.scim_type, Some(ty), "{e}");
    assert_eq!(e.status, 400, "{e}");
    assert!(
        e.detail.contains(fragment),
        "{fragment:?} not in {:?}",
        e.detail
    );
}

fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "(".repeat(depth), ")".repeat(depth))
}

fn chain(n: usize, joiner: &str) -> String {
    (0..n)
        .map(|i| format!("userName eq \"u{i}\""))
        .collect::<Vec<_>>()
        .join(joiner)
}

/// Limits without the filter size bounds, to prove the tree itself is shallow.
fn unbounded_filters() -> Limits {
    Limits {
        max_filter_bytes: usize::MAX,
        max_filter_terms: usize::MAX,
        ..Limits::DEFAULT
    }
}

#[test]
fn deeply_nested_parentheses_are_refused_without_recursing() {
    on_small_stack(|| {
        for depth in [65, 1_600, 100_000] {
            let text = nested(depth, "userName eq \"x\"");
            let e = Filter::parse_with(&text, &unbounded_filters()).unwrap_err();
            assert_scim(&e, ScimType::InvalidFilter, "nested more than 64 levels");
            // Default limits: the 100,000-level one is already too long.
            let e = Filter::parse(&text).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
        }
        let nots = format!("{}a pr{}", "not (".repeat(1_600), ")".repeat(1_600));
        let e = Filter::parse(&nots).unwrap_err();
        assert_scim(&e, ScimType::InvalidFilter, "nested more than 64 levels");
        // Unbalanced: only openings.
        let e = Filter::parse(&"(".repeat(1_600)).unwrap_err();
        assert_scim(&e, ScimType::InvalidFilter, "nested more than 64 levels");
    });
}

#[test]
fn nesting_up_to_the_limit_parses_evaluates_and_prints() {
    on_small_stack(|| {
        // 63 + the parenthesis after `not` = 64 levels.
        let text = nested(63, "userName eq \"bjensen\" or not (active eq true)");
        let f = Filter::parse(&text).unwrap();
        f.validate_for(&USER_RESOURCE_TYPE).unwrap();
        let user = json!({"userName": "bjensen", "active": true});
        assert!(f.matches(&USER_RESOURCE_TYPE, &user));
        let printed = f.to_string();
        assert_eq!(Filter::parse(&printed).unwrap(), f);
        let copy = f.clone();
        drop(f);
        assert!(copy.matches(&USER_RESOURCE_TYPE, &user));
    });
}

#[test]
fn twelve_thousand_or_terms_are_refused_by_default() {
    on_small_stack(|| {
        let text = chain(12_000, " or ");
        let e = Filter::parse(&text).unwrap_err();
        assert_scim(
            &e,
            ScimType::InvalidFilter,
            "more than the limit of 16384 bytes",
        );
        // Under the length limit but over the term limit.
        let short = (0..1_500).map(|_| "a pr").collect::<Vec<_>>().join(" or ");
        assert!(short.len() < Limits::DEFAULT.max_filter_bytes);
        let e = Filter::parse(&short).unwrap_err();
        assert_scim(
            &e,
            ScimType::InvalidFilter,
            "more than 1000 attribute expressions",
        );
        // At the limit: fine.
        let ok = (0..1_000).map(|_| "a pr").collect::<Vec<_>>().join(" or ");
        Filter::parse(&ok).unwrap();
    });
}

#[test]
fn long_and_or_chains_build_shallow_trees() {
    on_small_stack(|| {
        let limits = unbounded_filters();
        for joiner in [" or ", " and "] {
            let text = chain(12_000, joiner);
            let f = Filter::parse_with(&text, &limits).unwrap();
            f.validate_for(&USER_RESOURCE_TYPE).unwrap();
            let u = json!({"userName": "u11999"});
            assert_eq!(f.matches(&USER_RESOURCE_TYPE, &u), joiner == " or ");
            let printed = f.to_string();
            assert_eq!(Filter::parse_with(&printed, &limits).unwrap(), f);
            let copy = f.clone();
            assert_eq!(copy, f);
            drop(copy);
            drop(f);
        }
    });
}

#[test]
fn nested_patch_path_filters_are_refused() {
    on_small_stack(|| {
        let path = format!("emails[{}]", nested(1_600, "type eq \"work\""));
        let e = PatchPath::parse(&path).unwrap_err();
        assert_scim(&e, ScimType::InvalidPath, "nested more than 64 levels");
        let mut user =
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a"});
        let ops = [PatchOperation {
            op: PatchOpKind::Remove,
            path: Some(path.clone()),
            value: None,
        }];
        let e =
            apply_patch(&USER_RESOURCE_TYPE, &mut user, &ops, &PatchOptions::STRICT).unwrap_err();
        assert_scim(&e, ScimType::InvalidPath, "nested more than 64 levels");
        // As a key of a path-less value too.
        let ops = [PatchOperation {
            op: PatchOpKind::Add,
            path: None,
            value: Some(json!({ path: "x" })),
        }];
        let e =
            apply_patch(&USER_RESOURCE_TYPE, &mut user, &ops, &PatchOptions::STRICT).unwrap_err();
        assert_scim(&e, ScimType::InvalidPath, "nested more than 64 levels");
        let long = format!("emails[{}]", chain(2_000, " or "));
        let e = PatchPath::parse(&long).unwrap_err();
        assert_scim(&e, ScimType::InvalidPath, "PATCH path is");
    });
}

#[test]
fn non_ascii_attribute_names_are_errors_not_panics() {
    on_small_stack(|| {
        for name in [
            "abcé",
            "abé",
            "é",
            "abcé.x",
            "urné:x",
            "ｕｓｅｒＮａｍｅ",
            "a\u{200b}",
        ] {
            // sortBy
            let e = AttrPath::parse(name).unwrap_err();
            assert_scim(&e, ScimType::InvalidPath, "invalid attribute path");
            // filter
            let e = Filter::parse(&format!("{name} eq \"x\"")).unwrap_err();
            assert_scim(&e, ScimType::InvalidFilter, "invalid attribute path");
            let e = Filter::parse(&format!("emails[{name} eq \"x\"]")).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
            // attributes / excludedAttributes
            let e = Projection::from_params(Some(&format!("userName,{name}")), None).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
            let e = Projection::from_params(None, Some(name)).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
            // PATCH path and path-less value key
            let e = PatchPath::parse(name).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
            let mut user =
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a"});
            for op in [
                PatchOperation {
                    op: PatchOpKind::Replace,
                    path: Some(name.into()),
                    value: Some(json!("x")),
                },
                PatchOperation {
                    op: PatchOpKind::Replace,
                    path: None,
                    value: Some(json!({ name: "x" })),
                },
            ] {
                let e = apply_patch(&USER_RESOURCE_TYPE, &mut user, &[op], &PatchOptions::STRICT)
                    .unwrap_err();
                assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{e}");
            }
            // create body
            let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a", name: "x"});
            let e =
                prepare_resource(&USER_RESOURCE_TYPE, &body, &PatchOptions::STRICT).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax), "{e}");
        }
        // Sub-attribute and URN forms.
        for path in [
            "name.givé",
            "urn:ietf:params:scim:schemas:core:2.0:User:usérName",
            "urn:é",
        ] {
            assert_eq!(
                AttrPath::parse(path).unwrap_err().scim_type,
                Some(ScimType::InvalidPath),
                "{path}"
            );
        }
        // Non-ASCII *values* are fine.
        let f = Filter::parse("displayName eq \"ÄRZTE\"").unwrap();
        assert!(f.matches(&GROUP_RESOURCE_TYPE, &json!({"displayName": "ärzte"})));
    });
}

#[test]
fn user_names_are_canonical() {
    for same in [
        "alice",
        "ａｌｉｃｅ",
        "alice ",
        " alice\t",
        "\u{3000}alice\u{a0}",
        "ａｌｉｃｅ\u{3000}",
    ] {
        assert_eq!(canonical_user_name(same).unwrap(), "alice", "{same:?}");
    }
    // NFC: e + combining acute is é.
    assert_eq!(canonical_user_name("Jose\u{301}").unwrap(), "Jos\u{e9}");
    // Halfwidth katakana become the normal (fullwidth) ones; other compatibility forms stay.
    assert_eq!(canonical_user_name("ｶﾀｶﾅ").unwrap(), "カタカナ");
    assert_eq!(canonical_user_name("ﬁsh").unwrap(), "ﬁsh");
    // Inner non-ASCII spaces become U+0020.
    assert_eq!(canonical_user_name("mary\u{a0}ann").unwrap(), "mary ann");
    for (bad, code) in [
        ("al\u{200b}ice", "U+200B"),
        ("al\u{200d}ice", "U+200D"),
        ("\u{feff}alice", "U+FEFF"),
        ("alice\u{202e}", "U+202E"),
        ("al\u{ad}ice", "U+00AD"),
        ("al\u{0}ice", "U+0000"),
        ("al\nice", "U+000A"),
        ("al\u{e000}ice", "U+E000"),
        ("al\u{fdd0}ice", "U+FDD0"),
        ("a\u{e0041}", "U+E0041"),
    ] {
        let e = canonical_user_name(bad).unwrap_err();
        assert_scim(&e, ScimType::InvalidValue, code);
    }
    for empty in ["", "   ", "\u{3000}"] {
        let e = canonical_user_name(empty).unwrap_err();
        assert_scim(&e, ScimType::InvalidValue, "empty");
    }
}

#[test]
fn stored_and_looked_up_user_names_agree() {
    let body = |name: &str| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});
    for same in ["alice", "ａｌｉｃｅ", "alice "] {
        let stored =
            prepare_resource(&USER_RESOURCE_TYPE, &body(same), &PatchOptions::STRICT).unwrap();
        assert_eq!(stored["userName"], "alice");
        // A lookup with any of the forms finds it, also through the store's index path.
        for lookup in ["alice", "ａｌｉｃｅ", "alice "] {
            let f = Filter::parse(&format!("userName eq \"{lookup}\"")).unwrap();
            assert!(f.matches(&USER_RESOURCE_TYPE, &stored), "{lookup:?}");
            assert_eq!(f.as_simple_eq().unwrap().1, &json!("alice"));
        }
    }
    let e = prepare_resource(
        &USER_RESOURCE_TYPE,
        &body("al\u{200b}ice"),
        &PatchOptions::STRICT,
    )
    .unwrap_err();
    assert_scim(&e, ScimType::InvalidValue, "U+200B");
    // Through PATCH (the server runs prepare_resource on the result).
    let mut user =
        prepare_resource(&USER_RESOURCE_TYPE, &body("alice"), &PatchOptions::STRICT).unwrap();
    let ops = [PatchOperation {
        op: PatchOpKind::Replace,
        path: Some("userName".into()),
        value: Some(json!("ｂｏｂ ")),
    }];
    apply_patch(&USER_RESOURCE_TYPE, &mut user, &ops, &PatchOptions::STRICT).unwrap();
    let stored = prepare_resource(&USER_RESOURCE_TYPE, &user, &PatchOptions::STRICT).unwrap();
    assert_eq!(stored["userName"], "bob");
}

#[test]
fn nul_characters_and_oversized_strings_are_refused() {
    let user = |extra: Value| {
        let mut u =
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "alice"});
        for (k, v) in extra.as_object().unwrap() {
            u[k] = v.clone();
        }
        u
    };
    let table: &[(Value, &str)] = &[
        (json!({"userName": "a\u{0}b"}), "U+0000"),
        (
            json!({"displayName": "x\u{0}"}),
            "'displayName' contains U+0000",
        ),
        (
            json!({"name": {"givenName": "\u{0}"}}),
            "'name.givenName' contains U+0000",
        ),
        (
            json!({"emails": [{"value": "a@b", "type": "wo\u{0}rk"}]}),
            "'emails.type' contains U+0000",
        ),
        (
            json!({"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "\u{0}"}}),
            "enterprise:2.0:User:department' contains U+0000",
        ),
        (
            json!({"externalId": "x".repeat(1_025)}),
            "'externalId' is 1025 bytes long, more than the limit of 1024",
        ),
        (
            json!({"userName": "x".repeat(2_700)}),
            "'userName' is 2700 bytes long",
        ),
        (
            json!({"displayName": "é".repeat(600)}),
            "'displayName' is 1200 bytes long",
        ),
        (
            json!({"emails": [{"value": "x".repeat(2_000)}]}),
            "'emails.value' is 2000 bytes long",
        ),
        (
            json!({"title": "x".repeat(64 * 1024 + 1)}),
            "more than the limit of 65536 bytes",
        ),
    ];
    for (extra, fragment) in table {
        let e = prepare_resource(
            &USER_RESOURCE_TYPE,
            &user(extra.clone()),
            &PatchOptions::STRICT,
        )
        .unwrap_err();
        assert_scim(&e, ScimType::InvalidValue, fragment);
    }
    // At the limits: accepted.
    prepare_resource(
        &USER_RESOURCE_TYPE,
        &user(json!({"externalId": "x".repeat(1_024), "title": "x".repeat(64 * 1024)})),
        &PatchOptions::STRICT,
    )
    .unwrap();
    // Groups: displayName and member ids.
    let g = |members: Value| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G", "members": members});
    let e = prepare_resource(
        &GROUP_RESOURCE_TYPE,
        &g(json!([{"value": "u\u{0}1"}])),
        &PatchOptions::STRICT,
    )
    .unwrap_err();
    assert_scim(
        &e,
        ScimType::InvalidValue,
        "'members.value' contains U+0000",
    );
    let limits = Limits {
        max_multi_valued: 2,
        ..Limits::DEFAULT
    };
    let three = json!([{"value": "1"}, {"value": "2"}, {"value": "3"}]);
    let e = prepare_resource_with(
        &GROUP_RESOURCE_TYPE,
        &g(three),
        &PatchOptions::STRICT,
        &limits,
    )
    .unwrap_err();
    assert_scim(
        &e,
        ScimType::InvalidValue,
        "'members' has 3 values, more than the limit of 2",
    );
    // The check on its own, over a stored representation (id and meta included).
    let stored =
        json!({"id": "x".repeat(257), "userName": "a", "meta": {"location": "https://h/Users/1"}});
    let e = check_resource_strings(&stored, &Limits::DEFAULT).unwrap_err();
    assert_scim(&e, ScimType::InvalidValue, "'id' is 257 bytes long");
    let stored = json!({"id": "1", "userName": "a", "meta": {"version": "W/\"\u{0}\""}});
    let e = check_resource_strings(&stored, &Limits::DEFAULT).unwrap_err();
    assert_scim(&e, ScimType::InvalidValue, "'meta.version' contains U+0000");
    let e = check_resource_strings(&json!({"a\u{0}": 1}), &Limits::DEFAULT).unwrap_err();
    assert_scim(&e, ScimType::InvalidValue, "U+0000");
}

#[test]
fn resource_ids_from_urls_are_checked() {
    validate_resource_id("2819c223-7f76-453a-919d-413861904646", &Limits::DEFAULT).unwrap();
    validate_resource_id(&"é".repeat(128), &Limits::DEFAULT).unwrap();
    for (bad, fragment) in [
        ("a\u{0}b", "U+0000"),
        ("a\nb", "U+000A"),
        ("a\u{7f}", "U+007F"),
        ("", "empty"),
    ] {
        let e = validate_resource_id(bad, &Limits::DEFAULT).unwrap_err();
        assert_scim(&e, ScimType::InvalidValue, fragment);
    }
    let e = validate_resource_id(&"x".repeat(257), &Limits::DEFAULT).unwrap_err();
    assert_scim(
        &e,
        ScimType::InvalidValue,
        "257 bytes long, more than the limit of 256",
    );
}

fn patch_body(n: usize) -> Value {
    let ops: Vec<Value> = (0..n)
        .map(|_| json!({"op": "add", "path": "title", "value": "x"}))
        .collect();
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

#[test]
fn too_many_patch_operations_are_refused() {
    assert_eq!(
        PatchOperation::parse_request(&patch_body(1_000))
            .unwrap()
            .len(),
        1_000
    );
    let e = PatchOperation::parse_request(&patch_body(1_001)).unwrap_err();
    assert_scim(
        &e,
        ScimType::TooMany,
        "1001 operations, more than the limit of 1000",
    );
    // Also when the operations come from elsewhere (a connector's normalized request).
    let ops: Vec<PatchOperation> = (0..900_000)
        .map(|_| PatchOperation {
            op: PatchOpKind::Add,
            path: None,
            value: Some(json!({})),
        })
        .collect();
    let mut user =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a"});
    let before = user.clone();
    let e = apply_patch(&USER_RESOURCE_TYPE, &mut user, &ops, &PatchOptions::STRICT).unwrap_err();
    assert_scim(&e, ScimType::TooMany, "900000 operations");
    assert_eq!(user, before);
    let limits = Limits {
        max_patch_operations: 5,
        ..Limits::DEFAULT
    };
    let e = PatchOperation::parse_request_with(&patch_body(6), &limits).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::TooMany));
}

fn group(members: usize) -> Value {
    let m: Vec<Value> = (0..members)
        .map(|i| json!({"value": format!("m{i}")}))
        .collect();
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G", "members": m})
}

fn members_of(g: &Value) -> usize {
    g["members"].as_array().map_or(0, Vec::len)
}

#[test]
fn patch_work_is_bounded() {
    // 200 filtered removals over 10,000 members: 200 × (10,000 + 10,000) visits.
    let limits = Limits {
        max_patch_work: 1_000_000,
        ..Limits::DEFAULT
    };
    let ops: Vec<PatchOperation> = (0..200)
        .map(|i| PatchOperation {
            op: PatchOpKind::Remove,
            path: Some(format!("members[value eq \"m{i}\"]")),
            value: None,
        })
        .collect();
    let mut g = group(10_000);
    let before = g.clone();
    let e = apply_patch_with(
        &GROUP_RESOURCE_TYPE,
        &mut g,
        &ops,
        &PatchOptions::STRICT,
        &limits,
    )
    .unwrap_err();
    assert_scim(&e, ScimType::TooMany, "more than 1000000 element visits");
    assert_eq!(g, before, "nothing applied");
    // The same work in smaller requests is fine.
    for chunk in ops.chunks(20) {
        apply_patch_with(
            &GROUP_RESOURCE_TYPE,
            &mut g,
            chunk,
            &PatchOptions::STRICT,
            &limits,
        )
        .unwrap();
    }
    assert_eq!(members_of(&g), 9_800);
}

#[test]
fn multi_valued_attributes_cannot_grow_past_the_limit() {
    let limits = Limits {
        max_multi_valued: 1_000,
        ..Limits::DEFAULT
    };
    let add = |from: usize, n: usize| PatchOperation {
        op: PatchOpKind::Add,
        path: Some("members".into()),
        value: Some(Value::Array(
            (from..from + n)
                .map(|i| json!({"value": format!("m{i}")}))
                .collect(),
        )),
    };
    let mut g = group(990);
    apply_patch_with(
        &GROUP_RESOURCE_TYPE,
        &mut g,
        &[add(980, 20)],
        &PatchOptions::STRICT,
        &limits,
    )
    .unwrap();
    assert_eq!(members_of(&g), 1_000);
    let e = apply_patch_with(
        &GROUP_RESOURCE_TYPE,
        &mut g,
        &[add(1_000, 1)],
        &PatchOptions::STRICT,
        &limits,
    )
    .unwrap_err();
    assert_scim(
        &e,
        ScimType::InvalidValue,
        "'members' would have 1001 values, more than the limit of 1000",
    );
    assert_eq!(members_of(&g), 1_000);
}

#[test]
fn large_membership_changes_stay_correct() {
    // 50,000 members added to 50,000 (half of them already present), then 30,000 removed
    // by value list: hash-set paths, same results as the element-by-element rules.
    let mut g = group(50_000);
    let add = PatchOperation {
        op: PatchOpKind::Add,
        path: Some("members".into()),
        value: Some(Value::Array(
            (25_000..75_000)
                .chain(74_990..75_000) // duplicates inside the value too
                .map(|i| json!({"value": format!("m{i}")}))
                .collect(),
        )),
    };
    apply_patch(&GROUP_RESOURCE_TYPE, &mut g, &[add], &PatchOptions::STRICT).unwrap();
    assert_eq!(members_of(&g), 75_000);
    let remove = PatchOperation {
        op: PatchOpKind::Remove,
        path: Some("members".into()),
        value: Some(Value::Array(
            (0..30_000)
                .map(|i| json!({"value": format!("m{i}")}))
                .collect(),
        )),
    };
    apply_patch(
        &GROUP_RESOURCE_TYPE,
        &mut g,
        &[remove],
        &PatchOptions::STRICT,
    )
    .unwrap();
    assert_eq!(members_of(&g), 45_000);
    assert_eq!(g["members"][0]["value"], "m30000");
    // Non-identity attributes (emails) de-duplicate on the whole element.
    let mut u = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a",
                       "emails": [{"value": "a@x", "type": "work"}]});
    let add = PatchOperation {
        op: PatchOpKind::Add,
        path: Some("emails".into()),
        value: Some(
            json!([{"type": "work", "value": "a@x"}, {"value": "a@x", "type": "home"}, {"value": "a@x", "type": "home"}]),
        ),
    };
    apply_patch(&USER_RESOURCE_TYPE, &mut u, &[add], &PatchOptions::STRICT).unwrap();
    assert_eq!(
        u["emails"],
        json!([{"value": "a@x", "type": "work"}, {"value": "a@x", "type": "home"}])
    );
}

/// `(userName pr and (…) or active pr)`: two tree levels per bracket level.
fn mixed(levels: usize) -> String {
    let mut text = "userName eq \"bjensen\"".to_owned();
    for _ in 0..levels {
        text = format!("(userName pr and {text} or active pr)");
    }
    text
}

#[test]
fn deepest_accepted_trees_are_walked_on_a_small_stack() {
    on_small_stack(|| {
        let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bjensen",
                          "emails": [{"value": "b@x", "type": "work"}]});
        let nots = format!(
            "{}emails[type eq \"work\"]{}",
            "not (".repeat(63),
            ")".repeat(63)
        );
        for text in [nots.clone(), mixed(32)] {
            let f = Filter::parse(&text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(f.depth(), 64);
            f.validate_for(&USER_RESOURCE_TYPE).unwrap();
            let _ = f.matches(&USER_RESOURCE_TYPE, &user);
            let _ = f.as_eq_conjunction();
            let printed = f.to_string();
            let again = Filter::parse(&printed).unwrap();
            assert_eq!(again, f);
            let copy = f.clone();
            drop(f);
            drop(again);
            drop(copy);
        }
        assert!(
            !Filter::parse(&nots)
                .unwrap()
                .matches(&USER_RESOURCE_TYPE, &user)
        );
        // One more level of tree, no more brackets: refused.
        let e = Filter::parse(&mixed(33)).unwrap_err();
        assert_scim(&e, ScimType::InvalidFilter, "expression tree has 66 levels");
        // The deepest PATCH path filter, applied (matches_element and the create-from-filter
        // path walk it).
        let path = format!(
            "emails[{}type eq \"home\"{}].value",
            "not (".repeat(63),
            ")".repeat(63)
        );
        let mut u = user.clone();
        let ops = [PatchOperation {
            op: PatchOpKind::Replace,
            path: Some(path),
            value: Some(json!("n@x")),
        }];
        let e = apply_patch(
            &USER_RESOURCE_TYPE,
            &mut u,
            &ops,
            &PatchOptions::IDP_COMPATIBLE,
        );
        assert!(e.is_ok(), "{e:?}");
        assert_eq!(u["emails"][0]["value"], "n@x");
    });
}
