//! Section 8: complete SAML sign-ins through the hub's sso service, on a SQLite file with the
//! real `custom-saml` connector: each one a real RSA-2048-signed response (signed beforehand by
//! Debian's `xmlsec1`, answering an AuthnRequest the hub sent) → verified → replay cache and
//! `InResponseTo` claimed in the database → mapped by the connector → the user found (the first
//! round creates them, just in time; the timed rounds are returning users, the profile
//! unchanged) → a session opened. In process (no HTTP): what the ACS costs beyond form decoding.
//!
//! Beside it, the same responses verified only (`idplex_saml::verify_response`, one core), and
//! the RSA-2048 signature check alone (ring), the floor of any verifier.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use idplex_hub::runtime::RuntimeConfig;
use idplex_hub::store::{NewConnection, OpenOptions, SqliteSync};
use idplex_hub::{Hub, HubOptions, SamlUpdate, SecretKey};
use idplex_tests::saml_idp::TestIdp;
use serde_json::json;

use crate::{Report, Stats};

const PUBLIC: &str = "https://idplex.bench";

/// The AuthnRequest ID a sign-in redirect carries.
fn request_id(redirect_url: &str) -> Result<String> {
    let query = redirect_url.split_once('?').context("a query")?.1;
    let parsed = idplex_saml::authn_request::RedirectQuery::parse(query).map_err(|e| anyhow!("{e}"))?;
    let xml = idplex_saml::authn_request::decode_redirect(&parsed.message).map_err(|e| anyhow!("{e}"))?;
    let id = xml.split(" ID=\"").nth(1).and_then(|r| r.split('"').next()).context("an ID")?;
    Ok(id.to_owned())
}

/// Signs one response per request ID with xmlsec1, on every core.
fn sign_all(idp: &TestIdp, acs: &str, sp: &str, ids: &[String], users: usize) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<String>> = vec![None; ids.len()];
    let chunks: Vec<Vec<(usize, String)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(id) = ids.get(i) else { break };
                        let user = format!("user{}@bench.test", i % users);
                        let mut r = idp.response(acs, sp, Some(id), &user);
                        r.attributes = vec![
                            ("email".into(), vec![user.clone()]),
                            ("firstName".into(), vec!["Bench".into()]),
                            ("lastName".into(), vec![format!("User {}", i % users)]),
                        ];
                        // Valid long enough for the whole run.
                        r.valid_for = 3600;
                        mine.push((i, idp.sign(&r)));
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("signer thread")).collect()
    });
    for (i, signed) in chunks.into_iter().flatten() {
        out[i] = Some(signed);
    }
    out.into_iter().map(|s| s.expect("every response signed")).collect()
}

/// The RSA-2048 PKCS#1 v1.5 SHA-256 check alone, µs per verification (ring, the IdP's key).
fn rsa_floor_us(iters: usize) -> Result<f64> {
    let pem = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../idplex-saml/tests/fixtures/idp.key"))?;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)?;
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| anyhow!("idp.key: {e}"))?;
    let message = vec![0x5au8; 700]; // about a canonical SignedInfo's size
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), &message, &mut sig)
        .map_err(|e| anyhow!("sign: {e}"))?;
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        ring::signature::KeyPair::public_key(&key).as_ref().to_vec(),
    );
    let t = Instant::now();
    for _ in 0..iters {
        public.verify(std::hint::black_box(&message), std::hint::black_box(&sig)).map_err(|e| anyhow!("verify: {e}"))?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / iters as f64)
}

/// Runs section 8: `signins` timed sign-ins of `users` returning users, `concurrency` at once.
pub fn run(r: &mut Report, signins: usize, users: usize, concurrency: usize, sync: SqliteSync) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("idplex.db").display());
    let open = OpenOptions { sqlite_synchronous: sync, ..Default::default() };
    let (hub, conn) = rt.block_on(async {
        let hub = Hub::connect(&url, &open, RuntimeConfig::new(dir.path().join("cache")), HubOptions::default(), SecretKey::ephemeral())
            .await?;
        hub.set_public_url(PUBLIC)?;
        // The requests are made up front, far faster than browsers would start them.
        hub.set_sign_in_start_rate(1e9, 1e9);
        let version = hub.install_bundled().await?.into_iter().find(|r| r.name == "custom-saml").context("custom-saml")?.version;
        let conn = hub
            .create_connection(NewConnection {
                id: None,
                org_id: "bench".into(),
                name: "bench idp".into(),
                connector_name: "custom-saml".into(),
                config: json!({}),
                egress_allow: vec![],
                limits: json!({}),
            })
            .await?;
        hub.activate(&conn.id, &version, "bench").await?;
        let idp = TestIdp::new();
        hub.set_saml(
            &conn.id,
            SamlUpdate {
                idp_entity_id: Some(idp.entity_id.clone()),
                sso_url: Some(idp.sso_url.clone()),
                certificates: Some(vec![idp.certificate_pem()]),
                enabled: Some(true),
                ..Default::default()
            },
        )
        .await?;
        anyhow::Ok((hub, conn.id))
    })?;
    let sp = hub.sp_config(&conn);

    // One AuthnRequest per sign-in (the warm-up round, which creates the users, included).
    let total = users + signins;
    let ids: Vec<String> = rt.block_on(async {
        let mut ids = Vec::with_capacity(total);
        for _ in 0..total {
            let start = hub.begin_sign_in(&conn, None).await.map_err(|e| anyhow!("{e}"))?;
            ids.push(request_id(&start.redirect_url)?);
        }
        anyhow::Ok(ids)
    })?;
    let t = Instant::now();
    let idp = TestIdp::new();
    let responses = Arc::new(sign_all(&idp, &sp.acs_url, &sp.entity_id, &ids, users));
    println!("  (signed {total} responses with xmlsec1 in {:.1} s)", t.elapsed().as_secs_f64());

    // Verify only, one core: the same documents, before the hub consumes them.
    let idp_config = idplex_saml::IdpConfig {
        entity_id: idp.entity_id.clone(),
        sso_url: idp.sso_url.clone(),
        certificates: vec![idplex_saml::cert::Certificate::from_text(&idp.certificate_pem()).map_err(|e| anyhow!("{e}"))?],
        allow_response_only_signing: false,
    };
    let now = idplex_tests::saml_idp::now_secs();
    let policy = idplex_saml::AcsPolicy::default();
    let sample = &responses[users..];
    let t = Instant::now();
    for b64 in sample {
        idplex_saml::verify_response(std::hint::black_box(b64), &sp, &idp_config, &policy, now).map_err(|e| anyhow!("{e}"))?;
    }
    let verify_us = t.elapsed().as_secs_f64() * 1e6 / sample.len() as f64;
    let rsa_us = rsa_floor_us(2000)?;

    // Warm-up: the first sign-in of each user creates it (JIT).
    rt.block_on(async {
        for b64 in &responses[..users] {
            hub.complete_sign_in(&conn, b64, None).await.map_err(|e| anyhow!("warm-up sign-in: {e}"))?;
        }
        anyhow::Ok(())
    })?;

    // Timed: returning users, `concurrency` sign-ins in flight.
    let next = Arc::new(AtomicUsize::new(users));
    let t = Instant::now();
    let latencies: Vec<Duration> = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (hub, conn, responses, next) = (hub.clone(), conn.clone(), responses.clone(), next.clone());
            tasks.spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(b64) = responses.get(i) else { break };
                    let t = Instant::now();
                    let done = hub.complete_sign_in(&conn, b64, None).await.map_err(|e| anyhow!("sign-in {i}: {e}"))?;
                    mine.push(t.elapsed());
                    std::hint::black_box(done);
                }
                anyhow::Ok(mine)
            });
        }
        let mut all = Vec::new();
        while let Some(done) = tasks.join_next().await {
            all.extend(done??);
        }
        anyhow::Ok(all)
    })?;
    let elapsed = t.elapsed().as_secs_f64();
    let rate = latencies.len() as f64 / elapsed;
    let stats = Stats::of(latencies);
    r.latency_ms("sso_complete_signin", &format!("complete sign-in ({concurrency} in flight)"), stats);
    r.rows.push(format!(
        "{:<52} {:>9.0} sign-ins/s   (target ≥ 3,000/s; Ory Polis 82.5 flows/s, Keycloak ~15/s per vCPU)",
        format!("complete sign-ins, SQLite file ({sync:?}), 2 cores"), rate
    ));
    r.rows.push(format!(
        "{:<52} {:>9.1} µs   = {:>6.0} verifications/s per core",
        "verify only (idplex-saml), one core", verify_us, 1e6 / verify_us
    ));
    r.rows.push(format!(
        "{:<52} {:>9.1} µs   = {:>4.0} % of verify, {:>4.1} % of a sign-in's share of 2 cores",
        "RSA-2048 check alone (ring), the floor",
        rsa_us,
        100.0 * rsa_us / verify_us,
        100.0 * rsa_us * rate / 2e6
    ));
    r.json.insert(
        "sso".into(),
        json!({"signins_per_s": rate.round(), "verify_us": (verify_us * 10.0).round() / 10.0,
               "rsa_us": (rsa_us * 10.0).round() / 10.0, "concurrency": concurrency, "signins": signins, "users": users, "sqlite_synchronous": format!("{sync:?}")}),
    );
    rt.block_on(hub.close());
    Ok(())
}
