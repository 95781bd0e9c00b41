//! The fixtures are what a tool we did not write produces, today, on this machine: Debian's
//! `xmlsec1` (installed by `scripts/bootstrap`) signs every response of
//! `tests/fixtures/regenerate.sh` afresh into a temporary directory with the committed keys.
//! The RSA-signed ones (PKCS#1 v1.5 is deterministic) must come out byte for byte as committed,
//! and every freshly signed response of an accepted shape must verify here — including the
//! ECDSA one, whose signature is new on every run. A canonicalization of ours that drifted
//! from xmlsec1's would fail this test, not only the committed vectors.

use base64::Engine as _;
use idplex_saml::cert::Certificate;
use idplex_saml::{AcsPolicy, IdpConfig, SpConfig, verify_response};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
/// 2026-03-01T12:00:00Z (the fixtures' issue instant) plus one minute.
const NOW: i64 = 1_772_366_400 + 60;

fn idp(cert: &str) -> IdpConfig {
    let pem = std::fs::read_to_string(format!("{FIXTURES}/{cert}.crt")).unwrap();
    IdpConfig {
        entity_id: "https://idp.example.com/saml".into(),
        sso_url: "https://idp.example.com/sso".into(),
        certificates: vec![Certificate::from_text(&pem).unwrap()],
        allow_response_only_signing: true,
    }
}

#[test]
fn responses_signed_afresh_by_xmlsec1_verify_and_match_the_committed_ones() {
    let found = std::process::Command::new("xmlsec1").arg("--version").output();
    assert!(
        found.as_ref().is_ok_and(|o| o.status.success()),
        "xmlsec1 is needed to sign the SAML test responses; scripts/bootstrap installs it (apt-get install -y xmlsec1): {found:?}"
    );
    let out = tempfile::tempdir().unwrap();
    let run = std::process::Command::new("bash")
        .arg(format!("{FIXTURES}/regenerate.sh"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "regenerate.sh failed: {}", String::from_utf8_lossy(&run.stderr));

    let mut compared = 0;
    for entry in std::fs::read_dir(FIXTURES).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "xml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let fresh = std::fs::read_to_string(out.path().join(&name)).unwrap_or_else(|e| panic!("{name} not regenerated: {e}"));
        if name != "ecdsa_signed.xml" {
            assert_eq!(fresh, std::fs::read_to_string(&path).unwrap(), "{name}: xmlsec1 signs it differently today");
            compared += 1;
        }
    }
    assert!(compared >= 20, "only {compared} fixtures compared");

    let sp = SpConfig { entity_id: "https://sp.example.com".into(), acs_url: "https://sp.example.com/acs".into() };
    for (name, cert) in [
        ("assertion_signed", "idp"),
        ("response_only_signed", "idp"),
        ("both_signed", "idp"),
        ("ecdsa_signed", "idp-ec"),
        ("rsa_sha384", "idp"),
        ("inclusive_namespaces", "idp"),
        ("one_time_use", "idp"),
        ("entities", "idp"),
    ] {
        let xml = std::fs::read_to_string(out.path().join(format!("{name}.xml"))).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(xml);
        let verified = verify_response(&b64, &sp, &idp(cert), &AcsPolicy::default(), NOW)
            .unwrap_or_else(|e| panic!("{name}, freshly signed by xmlsec1, refused: {e}"));
        assert_eq!(verified.issuer, "https://idp.example.com/saml", "{name}");
    }
}
