//! Section 7: every first-party connector with a typical input of its own IdP. The same person
//! (Ada Lovelace) signs in from each IdP with the assertion that IdP sends, and is provisioned
//! with the `POST /Users` body of each IdP that pushes SCIM — the shapes of
//! `host/idplex/tests/cross_idp.rs`. Each connector runs with its defaults (empty connection
//! config), as a new connection has.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, ensure};
use idplex_runtime::{CallContext, Capability, Operation, SamlAttribute, VerifiedAssertion, Warm};
use serde_json::{Value, json};

use crate::{Report, Settings, Stats, post_users, runtime_in, time_async, time_kept, time_sync, us};

/// Target of a fresh instance + one `map_assertion` of a typical assertion, p50.
const MAP_ASSERTION_P50_TARGET_US: f64 = 20.0;

/// The connector whose generic dialect, on an RFC 7643 body, is the reference of the ratios.
const REFERENCE: &str = "custom-saml";

const EMAIL: &str = "ada.lovelace@example.com";
const EMAIL_FORMAT: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const CLAIMS: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// What one IdP sends: a verified assertion, and the body of its SCIM create if it pushes.
struct Typical {
    assertion: VerifiedAssertion,
    scim_create: Option<String>,
}

fn assertion(issuer: &str, attributes: &[(&str, &[&str])]) -> VerifiedAssertion {
    VerifiedAssertion {
        issuer: issuer.into(),
        name_id: EMAIL.into(),
        name_id_format: Some(EMAIL_FORMAT.into()),
        session_index: None,
        authn_context: None,
        attributes: attributes
            .iter()
            .map(|(name, values)| SamlAttribute {
                name: name.to_string(),
                values: values.iter().map(|v| v.to_string()).collect(),
            })
            .collect(),
    }
}

/// The typical input of the IdP served by the connector crate `name`, if the bench knows it.
fn typical(name: &str) -> Option<Typical> {
    let given = format!("{CLAIMS}/givenname");
    let surname = format!("{CLAIMS}/surname");
    let email = format!("{CLAIMS}/emailaddress");
    let upn = format!("{CLAIMS}/name");
    let (assertion, body) = match name {
        "custom-saml" => (
            assertion(
                "https://idp.example.com/saml",
                &[("email", &[EMAIL]), ("firstName", &["Ada"]), ("lastName", &["Lovelace"])],
            ),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": EMAIL, "name": {"givenName": "Ada", "familyName": "Lovelace"},
                "emails": [{"value": EMAIL, "type": "work", "primary": true}], "displayName": "Ada Lovelace",
                "active": true,
            })),
        ),
        "okta" => (
            assertion(
                "http://www.okta.com/exk1fcia6d6EMsf331d8",
                &[
                    ("email", &[EMAIL]),
                    ("firstName", &["Ada"]),
                    ("lastName", &["Lovelace"]),
                    ("groups", &["Engineering"]),
                ],
            ),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": EMAIL, "name": {"givenName": "Ada", "familyName": "Lovelace"},
                "emails": [{"primary": true, "value": EMAIL, "type": "work"}],
                "displayName": "Ada Lovelace", "locale": "en-US", "externalId": "00u1ada", "groups": [],
                "password": "t1meMa$heen", "active": true,
            })),
        ),
        "entra-id" => (
            assertion(
                "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
                &[
                    (&given, &["Ada"]),
                    (&surname, &["Lovelace"]),
                    (&email, &[EMAIL]),
                    (&upn, &[EMAIL]),
                    ("http://schemas.microsoft.com/identity/claims/displayname", &["Ada Lovelace"]),
                    (
                        "http://schemas.microsoft.com/identity/claims/objectidentifier",
                        &["0b5e3b8c-5a3e-4a8e-9f0e-1d2c3b4a5f60"],
                    ),
                    (
                        "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
                        &["8a1c6e0d-4b4f-4c1e-9a3b-5d2e1f0a9b8c"],
                    ),
                ],
            ),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
                "externalId": "0b5e3b8c-5a3e-4a8e-9f0e-1d2c3b4a5f60", "userName": EMAIL, "active": "True",
                "displayName": "Ada Lovelace",
                "emails": [{"primary": "True", "type": "work", "value": EMAIL}],
                "name": {"formatted": "Ada Lovelace", "familyName": "Lovelace", "givenName": "Ada"},
                ENT: {"department": "Analytical Engines", "manager": "271"},
                "roles": [{"primary": "False", "type": "WindowsAzureActiveDirectoryRole",
                           "value": "{\"id\":\"7c2f\",\"value\":\"Admin\",\"displayName\":\"Admins\"}"}],
            })),
        ),
        "onelogin" => (
            assertion(
                "https://app.onelogin.com/saml/metadata/1234567",
                &[
                    ("User.email", &[EMAIL]),
                    ("User.FirstName", &["Ada"]),
                    ("User.LastName", &["Lovelace"]),
                    ("memberOf", &["Engineering;Ops"]),
                ],
            ),
            Some(json!({
                "schemas": ["urn:scim:schemas:core:2.0", "urn:scim:schemas:extension:enterprise:2.0"],
                "userName": EMAIL, "name": {"givenName": "Ada", "familyName": "Lovelace"},
                "emails": [{"value": EMAIL, "primary": true}], "displayName": "Ada Lovelace",
                "urn:scim:schemas:extension:enterprise:2.0": {"department": "Analytical Engines"},
            })),
        ),
        "google-workspace" => (
            assertion(
                "https://accounts.google.com/o/saml2?idpid=C01abcdef",
                &[("firstName", &["Ada"]), ("lastName", &["Lovelace"]), ("groups", &["engineering@example.com"])],
            ),
            None,
        ),
        _ => return None,
    };
    Some(Typical { assertion, scim_create: body.map(|b: Value| b.to_string()) })
}

/// JSON key prefix of a connector: `connector_entra_id` for `entra-id`.
fn key_of(name: &str) -> String {
    format!("connector_{}", name.replace('-', "_"))
}

/// Section 7. `warm` must hold the compiled artifacts of every first-party connector.
pub fn run(s: &Settings, rt: &tokio::runtime::Runtime, r: &mut Report, warm: &Path) -> Result<()> {
    r.section("7. first-party connectors: typical input of each IdP, fresh instance + one call");
    let runtime = runtime_in(warm)?;
    // The reference first, so that every other connector's ratio can be printed with it.
    let mut connectors: Vec<_> = idplex_bundled::FIRST_PARTY.iter().collect();
    connectors.sort_by_key(|c| c.crate_name != REFERENCE);
    ensure!(connectors.first().is_some_and(|c| c.crate_name == REFERENCE), "{REFERENCE} is not bundled");
    let ctx = CallContext::with_limits(Default::default());
    let mut reference: Option<Stats> = None;

    for bundled in connectors {
        let name = bundled.crate_name;
        let key = key_of(name);
        let connector = rt
            .block_on(runtime.load(Arc::from(bundled.component)))
            .with_context(|| format!("loading {name} from the warm cache"))?;
        r.rows.push(format!("{} ({} KiB)", connector.label(), bundled.component.len() / 1024));
        let Some(input) = typical(name) else {
            r.rows.push("  no typical input of this IdP in the bench: not measured".into());
            continue;
        };

        // Once, untimed: the input must map to Ada, so that what is timed is a successful call.
        let identity = rt
            .block_on(connector.map_assertion(&ctx, input.assertion.clone()))
            .map_err(|e| anyhow!("{name}: map_assertion of its typical assertion failed: {e}"))?;
        ensure!(
            identity.user.user_name == EMAIL
                && identity.user.given_name.as_deref() == Some("Ada")
                && identity.user.family_name.as_deref() == Some("Lovelace"),
            "{name}: its typical assertion did not map to Ada: {identity:?}"
        );
        let map = rt.block_on(time_async(s, &input.assertion, |a| connector.map_assertion(&ctx, a)))?;
        r.latency_us(
            &format!("{key}_map_assertion"),
            &format!(
                "  map_assertion ({} attrs -> {} group{})",
                input.assertion.attributes.len(),
                identity.groups.len(),
                if identity.groups.len() == 1 { "" } else { "s" }
            ),
            map,
        );
        r.check(
            &format!("{key}_map_assertion_p50_us"),
            "    p50 vs target",
            us(map.p50),
            "µs",
            MAP_ASSERTION_P50_TARGET_US,
        );
        // The same call in an instance kept between calls: what is the mapping itself.
        let map_kept = rt.block_on(time_kept(s, &input.assertion, async |warm: &mut Warm, a| {
            connector.map_assertion_in(warm, &ctx, a).await
        }))?;
        r.latency_us(&format!("{key}_map_assertion_kept"), "  map_assertion, kept instance", map_kept);

        if !connector.has(Capability::Provisioning) {
            ensure!(input.scim_create.is_none(), "{name}: a SCIM body but no provisioning capability");
            r.rows.push("  normalize: no provisioning capability, not measured".into());
            continue;
        }
        let body =
            input.scim_create.with_context(|| format!("{name} provisions but the bench has no SCIM body for it"))?;
        let request = post_users(&body);
        let ops = rt
            .block_on(connector.normalize(&ctx, request.clone()))
            .map_err(|e| anyhow!("{name}: normalize of its typical POST /Users failed: {e}"))?;
        ensure!(matches!(ops.as_slice(), [Operation::Create(_)]), "{name}: POST /Users gave {ops:?}");
        let norm = rt.block_on(time_async(s, &request, |q| connector.normalize(&ctx, q)))?;
        r.json.insert(format!("{key}_scim_body_bytes"), json!(body.len()));
        if name == REFERENCE {
            r.latency_us(
                &format!("{key}_normalize_post"),
                &format!("  normalize POST /Users (RFC, {} B) [reference]", body.len()),
                norm,
            );
            reference = Some(norm);
        } else {
            r.latency_us(
                &format!("{key}_normalize_post"),
                &format!("  normalize POST /Users ({name} body, {} B)", body.len()),
                norm,
            );
            let reference = reference.context("the reference is measured first")?;
            r.figure(
                &format!("{key}_normalize_ratio_p50"),
                &format!("    p50 / {REFERENCE}'s on its RFC body"),
                us(norm.p50) / us(reference.p50).max(1e-9),
                "x",
            );
        }

        // What the connector adds to a SCIM create as the server runs it: `normalize` in the
        // instance the binding keeps between requests (`idplex_runtime::reuse`), against the
        // host's native generic dialect decoding a body. Divided by the server's CPU time per
        // POST (`scripts/bench-scim`, "server CPU per request"), this is the connector's share
        // of a create without wrk's noise.
        let norm_kept = rt.block_on(time_kept(s, &request, async |warm: &mut Warm, q| {
            connector.normalize_in(warm, &ctx, q).await
        }))?;
        r.latency_us(&format!("{key}_normalize_post_kept"), "  normalize POST /Users, kept instance", norm_kept);
        // The native dialect is RFC 7644's: an IdP's quirks (Entra's "True", OneLogin's pre-RFC
        // URNs) are the connector's to undo, so those bodies are compared with the RFC body.
        let rfc_body = typical(REFERENCE).and_then(|t| t.scim_create).context("the reference has a SCIM body")?;
        let (native_request, native_of) = match idplex_hub::native_scim::normalize(&request) {
            Ok(_) => (request.clone(), "its body"),
            Err(_) => (post_users(&rfc_body), "the RFC body"),
        };
        let native = time_sync(s, || idplex_hub::native_scim::normalize(&native_request).map_err(|e| e.message))?;
        r.latency_us(&format!("{key}_normalize_post_native"), &format!("  native generic dialect, {native_of}"), native);
        r.figure(
            &format!("{key}_normalize_post_added_us"),
            "    connector's added time per POST (p50 difference)",
            us(norm_kept.p50) - us(native.p50),
            "µs",
        );
    }
    Ok(())
}
