//! The conformance check (`idplex_hub::conformance`, `idplex connector check`): every
//! first-party connector passes every case; the test fixtures fail exactly the cases they exist
//! to break, and each failure says why.

use std::collections::BTreeSet;

use idplex_hub::conformance::{CaseOutcome, CheckOptions, CheckReport, Limits, cases, check_component};

/// The check of `bytes` with config `config` (as `--config KEY=VALUE`) and `limits`.
async fn check_with(bytes: &[u8], config: &[(&str, &str)], limits: Limits) -> CheckReport {
    let options = CheckOptions {
        config: config.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string()))).collect(),
        limits,
        cache_dir: None,
    };
    check_component(bytes, &options).await.expect("the check itself runs")
}

async fn check(bytes: &[u8], config: &[(&str, &str)]) -> CheckReport {
    check_with(bytes, config, Limits::default()).await
}

/// The report as the CLI prints it, for assertion messages.
fn dump(report: &CheckReport) -> String {
    let mut s = format!("{}:\n", report.label());
    for c in &report.cases {
        s.push_str(&format!("  {} {} — {}\n", c.outcome, c.name, c.detail));
    }
    s
}

/// The detail of case `name`, asserting it has `outcome`.
#[track_caller]
fn detail<'r>(report: &'r CheckReport, name: &str, outcome: CaseOutcome) -> &'r str {
    let case = report.case(name).unwrap_or_else(|| panic!("no case {name:?} in\n{}", dump(report)));
    assert_eq!(case.outcome, outcome, "{name}: {}\n{}", case.detail, dump(report));
    &case.detail
}

fn failed(report: &CheckReport) -> BTreeSet<&str> {
    report.failures().map(|c| c.name.as_str()).collect()
}

/// The cases that call the connector's exports other than `describe` and `schemas.extensions`
/// (what the hostile fixture's `mode` governs), for a connector declaring every capability.
fn misbehaving_cases(report: &CheckReport) -> BTreeSet<&str> {
    report
        .cases
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| n.starts_with("provisioning: ") || n.starts_with("sso: ") || n.starts_with("directory-sync: "))
        .chain([cases::DIAGNOSTICS])
        .collect()
}

const METADATA: &[&str] = &[
    cases::COMPONENT,
    cases::WORLD,
    cases::IMPORTS,
    cases::DESCRIBE,
    cases::NAME,
    cases::VERSION,
    cases::DESCRIPTION,
    cases::EGRESS,
    cases::CONFIG_SCHEMA,
    cases::DETERMINISM,
];

#[tokio::test(flavor = "multi_thread")]
async fn every_first_party_connector_passes_every_case() {
    assert!(idplex_bundled::FIRST_PARTY.len() >= 5, "the five first-party connectors are bundled");
    for bundled in idplex_bundled::FIRST_PARTY {
        let report = check(bundled.component, &[]).await;
        assert!(report.passed(), "{}", dump(&report));
        assert_eq!(report.count(CaseOutcome::Skip), 0, "every case ran with an empty config:\n{}", dump(&report));
        assert_eq!(report.name.as_deref(), Some(bundled.crate_name));
        assert_eq!(report.contract_version.as_deref(), Some(idplex_hub::runtime::CONTRACT_VERSION));
        // Each capability got its cases: the behavioural ones when declared, `unsupported`
        // otherwise.
        let declares = |c: &str| report.capabilities.iter().any(|d| d == c);
        if declares("provisioning") {
            let d = detail(&report, "provisioning: PATCH /Users/{id} replace without path", CaseOutcome::Pass);
            assert!(d.contains("as the generic RFC 7644 dialect"), "{d}");
            detail(&report, "provisioning: PATCH /Users/{id} remove without path (refused)", CaseOutcome::Pass);
            detail(&report, "provisioning: render keeps a group valid", CaseOutcome::Pass);
            // Every first-party SCIM dialect takes its reads as sent (contract 1.3).
            let reads = detail(&report, cases::SCIM_READS, CaseOutcome::Pass);
            assert!(reads.contains("GET /Users, GET /Groups decoded by the host"), "{reads}");
        } else {
            detail(&report, &cases::undeclared("provisioning"), CaseOutcome::Pass);
            let reads = detail(&report, cases::SCIM_READS, CaseOutcome::Pass);
            assert!(reads.contains("every GET goes through normalize"), "{reads}");
        }
        if declares("sso") {
            let d = detail(&report, "sso: NameID e-mail address with common attribute names", CaseOutcome::Pass);
            assert!(d.contains("userName \"bjensen@example.com\""), "{d}");
        } else {
            detail(&report, &cases::undeclared("sso"), CaseOutcome::Pass);
        }
        if declares("directory-sync") {
            // Egress is off during a check: a pull reaches for the connector's declared API host.
            let d = detail(&report, "directory-sync: a full pass answers", CaseOutcome::Pass);
            assert!(d.contains("reached for its declared host https://"), "{d}");
        } else {
            detail(&report, &cases::undeclared("directory-sync"), CaseOutcome::Pass);
        }
        let limits = detail(&report, cases::LIMITS, CaseOutcome::Pass);
        assert!(limits.contains("of 2000 ms") && limits.contains("of 64 MiB"), "measured against the defaults: {limits}");
        assert!(report.cases.iter().any(|c| c.time_ms.is_some() && c.memory_bytes.is_some()), "calls are measured");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_in_its_passthrough_mode_fails_the_generic_dialect_cases() {
    let report = check(idplex_bundled::testing::HOSTILE, &[]).await;
    assert!(!report.passed());
    // Its `ok` mode drops every PATCH operation and the list query's filter, and takes a PATCH
    // the RFC refuses: exactly those cases fail.
    let expected: BTreeSet<&str> = [
        "provisioning: PATCH /Users/{id} add with path",
        "provisioning: PATCH /Users/{id} add without path",
        "provisioning: PATCH /Users/{id} replace with path",
        "provisioning: PATCH /Users/{id} replace without path",
        "provisioning: PATCH /Users/{id} remove with path",
        "provisioning: PATCH /Users/{id} remove without path (refused)",
        "provisioning: GET /Users?filter=userName eq",
        "provisioning: GET /Groups?filter=displayName eq",
        "provisioning: PATCH /Groups/{id} add members",
        "provisioning: PATCH /Groups/{id} remove members",
    ]
    .into();
    assert_eq!(failed(&report), expected, "{}", dump(&report));
    let patch = detail(&report, "provisioning: PATCH /Users/{id} replace with path", CaseOutcome::Fail);
    assert!(patch.contains("the generic RFC 7644 dialect makes") && patch.contains(r#""operations":[]"#), "{patch}");
    let no_target = detail(&report, "provisioning: PATCH /Users/{id} remove without path (refused)", CaseOutcome::Fail);
    assert!(no_target.contains("accepted what RFC 7644 refuses") && no_target.contains("noTarget"), "{no_target}");
    let query = detail(&report, "provisioning: GET /Users?filter=userName eq", CaseOutcome::Fail);
    assert!(query.contains(r#""filter":null"#), "{query}");
    for name in METADATA {
        detail(&report, name, CaseOutcome::Pass);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_spinning_fails_on_the_deadline() {
    // A short deadline keeps the test quick; the check measures against whatever limits it is
    // given (the CLI: the runtime's defaults).
    let limits = Limits { deadline_ms: 250, ..Limits::default() };
    let report = check_with(idplex_bundled::testing::HOSTILE, &[("mode", "loop")], limits).await;
    let spinning = misbehaving_cases(&report);
    assert!(spinning.len() > 15, "{}", dump(&report));
    let mut expected = spinning.clone();
    expected.insert(cases::LIMITS);
    assert_eq!(failed(&report), expected, "{}", dump(&report));
    for name in &spinning {
        let d = detail(&report, name, CaseOutcome::Fail);
        assert!(d.contains("exceeded its deadline of 250 ms"), "{name}: {d}");
        let took = report.case(name).and_then(|c| c.time_ms).expect("timed");
        assert!(took >= 250.0, "{name} ran to its deadline, not {took} ms");
    }
    let limits = detail(&report, cases::LIMITS, CaseOutcome::Fail);
    assert!(limits.contains("normalize: provisioning: POST /Users (create): connector hostile@1.0.0 exceeded its deadline"), "{limits}");
    // `describe` and `schemas.extensions` do not look at `mode`.
    detail(&report, cases::DETERMINISM, CaseOutcome::Pass);
    detail(&report, cases::SCHEMAS, CaseOutcome::Pass);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_allocating_fails_on_the_memory_cap() {
    let report = check(idplex_bundled::testing::HOSTILE, &[("mode", "oom")]).await;
    let mut expected = misbehaving_cases(&report);
    expected.insert(cases::LIMITS);
    assert_eq!(failed(&report), expected, "{}", dump(&report));
    let limit = Limits::default().memory_bytes;
    let d = detail(&report, "sso: NameID e-mail address, no attributes", CaseOutcome::Fail);
    assert!(d.contains(&format!("exceeded its memory limit of {limit} bytes")), "{d}");
    let limits = detail(&report, cases::LIMITS, CaseOutcome::Fail);
    assert!(limits.contains("memory limit"), "{limits}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_trapping_fails_with_the_trap() {
    let report = check(idplex_bundled::testing::HOSTILE, &[("mode", "trap")]).await;
    let trapping = misbehaving_cases(&report);
    assert_eq!(failed(&report), trapping, "a trap is no limit: `limits` passes\n{}", dump(&report));
    for name in &trapping {
        let d = detail(&report, name, CaseOutcome::Fail);
        assert!(d.contains("crashed (trap)") && d.contains("mode=trap"), "{name}: {d}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_schema_fails_its_config_schema_case() {
    let report = check(idplex_bundled::testing::BAD_SCHEMA, &[]).await;
    let d = detail(&report, cases::CONFIG_SCHEMA, CaseOutcome::Fail);
    assert!(d.contains("not a valid JSON Schema") && d.contains("https://schemas.invalid/tenant.json"), "{d}");
    for name in METADATA.iter().filter(|n| **n != cases::CONFIG_SCHEMA) {
        detail(&report, name, CaseOutcome::Pass);
    }
    detail(&report, cases::CONFIG, CaseOutcome::Skip);
    // It declares provisioning and answers `unsupported` to every request: a declared
    // capability must answer.
    let d = detail(&report, "provisioning: POST /Users (create)", CaseOutcome::Fail);
    assert!(d.contains("refused a valid RFC 7644 request (unsupported)"), "{d}");
}

#[tokio::test(flavor = "multi_thread")]
async fn impostor_fails_on_the_reserved_name() {
    let report = check(idplex_bundled::testing::IMPOSTOR, &[]).await;
    assert_eq!(report.name.as_deref(), Some("custom-saml"));
    let d = detail(&report, cases::NAME, CaseOutcome::Fail);
    assert!(d.contains("`custom-saml` is reserved for the first-party connector"), "{d}");
    for name in METADATA.iter().filter(|n| **n != cases::NAME) {
        detail(&report, name, CaseOutcome::Pass);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_that_are_no_module_fail_the_component_case_and_run_nothing() {
    let report = check(b"this is not WebAssembly", &[]).await;
    let d = detail(&report, cases::COMPONENT, CaseOutcome::Fail);
    assert!(d.contains("not a WebAssembly binary") && d.contains("[not_wasm]"), "{d}");
    assert_eq!(report.count(CaseOutcome::Fail), 1, "{}", dump(&report));
    assert!(report.cases.iter().filter(|c| c.name != cases::COMPONENT).all(|c| c.outcome == CaseOutcome::Skip));
    assert_eq!(report.name, None);
}
