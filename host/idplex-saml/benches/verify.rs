//! How fast the ACS verifies a real RSA-2048-signed response, one core, and how much of that is
//! the RSA verification itself (the floor no implementation goes under).
//!
//! `cargo bench -p idplex-saml` (release). Prints, per stage, the median and the best of
//! `ROUNDS` rounds of `ITERS` calls, in µs per call and calls per second:
//! * `verify_response` — the whole ACS check of `tests/fixtures/assertion_signed.xml` (base64,
//!   parse, structure, digest, signature, conditions, claims);
//! * `parse` — the one XML parse with its limits;
//! * `c14n` — exclusive canonicalization of the signed Assertion (Signature left out);
//! * `rsa-2048 verify` — `ring` verifying one RSA-SHA256 signature of the same key: the floor.
//!
//! The ratio `rsa / verify_response` is the share of the check that is cryptography; what is
//! left is ours (parsing, canonicalization, policy).

use std::time::Instant;

use base64::Engine as _;
use idplex_saml::cert::{Certificate, PublicKey};
use idplex_saml::{AcsPolicy, IdpConfig, SpConfig, verify_response};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const NOW: i64 = 1_772_366_400 + 60;
const ROUNDS: usize = 7;
const ITERS: usize = 400;

fn measure(name: &str, mut f: impl FnMut()) -> f64 {
    for _ in 0..ITERS / 4 {
        f();
    }
    let mut per_call: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERS {
                f();
            }
            start.elapsed().as_secs_f64() * 1e6 / ITERS as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    let (median, best) = (per_call[ROUNDS / 2], per_call[0]);
    println!("{name:<18} {median:>10.1} µs/call (best {best:>8.1})  {:>10.0} calls/s", 1e6 / median);
    median
}

fn pem_body(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).expect("PEM body")
}

fn main() {
    let read = |name: &str| std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect(name);
    let xml = read("assertion_signed.xml");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&xml);
    let cert = Certificate::from_text(&read("idp.crt")).expect("idp.crt");
    let sp = SpConfig { entity_id: "https://sp.example.com".into(), acs_url: "https://sp.example.com/acs".into() };
    let idp = IdpConfig {
        entity_id: "https://idp.example.com/saml".into(),
        sso_url: "https://idp.example.com/sso".into(),
        certificates: vec![cert.clone()],
        allow_response_only_signing: false,
    };
    let policy = AcsPolicy::default();
    verify_response(&b64, &sp, &idp, &policy, NOW).expect("the fixture verifies");

    println!("idplex-saml ACS verification, {} B response, RSA-2048/SHA-256, one core", xml.len());
    let full = measure("verify_response", || {
        std::hint::black_box(verify_response(&b64, &sp, &idp, &policy, NOW).is_ok());
    });

    let limits = idplex_saml::xml::Limits::default();
    let parse = measure("parse", || {
        std::hint::black_box(idplex_saml::xml::parse(&xml, &limits).is_ok());
    });

    let doc = idplex_saml::xml::parse(&xml, &limits).expect("parses");
    let assertion = doc.descendants().find(|n| n.tag_name().name() == "Assertion").expect("assertion");
    let signature = assertion.children().find(|n| n.tag_name().name() == "Signature").expect("signature");
    let c14n = measure("c14n", || {
        std::hint::black_box(idplex_saml::c14n::canonicalize(assertion, Some(signature), &[]).is_ok());
    });

    // The floor: ring verifying an RSA-SHA256 signature by the same key over a SignedInfo-sized
    // message.
    let key = ring::signature::RsaKeyPair::from_pkcs8(&pem_body(&read("idp.key"))).expect("PKCS#8 key");
    let message = vec![b'x'; 600];
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), &message, &mut sig).expect("sign");
    let PublicKey::Rsa { pkcs1, .. } = cert.key() else { panic!("an RSA certificate") };
    let public = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, pkcs1.clone());
    public.verify(&message, &sig).expect("verifies");
    let rsa = measure("rsa-2048 verify", || {
        std::hint::black_box(public.verify(&message, &sig).is_ok());
    });

    println!();
    println!("rsa / verify_response   {:>5.1} %  (the cryptographic floor's share)", rsa / full * 100.0);
    println!("parse / verify_response {:>5.1} %", parse / full * 100.0);
    println!("c14n / verify_response  {:>5.1} %", c14n / full * 100.0);
    println!("verify_response / rsa   {:>5.2}×", full / rsa);
}
