//! `idplex connector keygen|sign|trust` and what `install` does with signatures, through the
//! real binary: a publisher makes a key and signs, a deployment trusts the key and installs;
//! unsigned and untrusted modules are refused by default; key files are private and never
//! overwritten.

use idplex_bundled::testing::{ECHO_V1, ECHO_V2};
use idplex_tests::TestEnv;

const BIN: &str = env!("CARGO_BIN_EXE_idplex");

/// Exit code for refused input.
const EXIT_REFUSED: i32 = 3;

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn keygen_sign_trust_install_and_inspect_show_the_publisher() {
    // The publisher's side needs no database.
    let publisher = TestEnv::without_database(BIN).await;
    // A key directory that does not exist yet is made, private to its owner.
    let keys = publisher.data_dir().join("keys");
    let dir = keys.to_str().unwrap().to_string();
    let made = publisher.cli_json(&["connector", "keygen", "--publisher", "acme", "--out", &dir]).await.ok_json();
    let fingerprint = made["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(fingerprint.len(), 16);
    let private = keys.join("acme.idplex-key");
    let public = keys.join("acme.idplex-pub");
    #[cfg(unix)]
    {
        assert_eq!(mode(&keys), 0o700, "a new key directory is its owner's only");
        assert_eq!(mode(&private), 0o600, "the private key is its owner's only");
        assert_eq!(mode(&public), 0o644);
    }
    let private_text = std::fs::read_to_string(&private).unwrap();
    assert!(private_text.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
    let public_text = std::fs::read_to_string(&public).unwrap();
    assert!(public_text.starts_with("idplex-ed25519 ") && public_text.trim_end().ends_with(" acme"), "{public_text}");
    assert!(!made.to_string().contains(private_text.lines().nth(1).unwrap()), "no private key material printed");

    // keygen never overwrites a key.
    let again = publisher.cli(&["connector", "keygen", "--publisher", "acme", "--out", &dir]).await;
    again.expect_code(EXIT_REFUSED);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(&private).unwrap(), private_text, "the key is untouched");

    let module = publisher.write_file("echo.wasm", ECHO_V1);
    let signed = publisher.cli_json(&["connector", "sign", module.to_str().unwrap(), "--key", private.to_str().unwrap()]).await.ok_json();
    assert_eq!(signed["name"], "echo");
    assert_eq!(signed["version"], "1.0.0");
    assert_eq!(signed["fingerprint"], fingerprint.as_str());
    assert_eq!(signed["publisher"], "acme");
    let signed_path = publisher.data_dir().join("echo.signed.wasm");
    assert_eq!(signed["out"], signed_path.to_str().unwrap());
    assert!(!publisher.data_dir().join("idplex.db").exists(), "keygen and sign touch no database");
    let signed_bytes = std::fs::read(&signed_path).unwrap();
    let text = publisher.cli(&["connector", "sign", module.to_str().unwrap(), "--key", private.to_str().unwrap()]).await;
    text.expect_code(0);
    assert!(text.stdout.contains("echo@1.0.0") && text.stdout.contains(&fingerprint), "{}", text.stdout);

    // The deployment's side: a fresh one refuses unsigned and untrusted modules.
    let env = TestEnv::new(BIN).await;
    let policy = env
        .cli_json(&["connector", "trust", "policy", "--unsigned", "refuse", "--untrusted", "refuse"])
        .await
        .ok_json();
    assert_eq!((policy["unsigned"].as_str(), policy["untrusted"].as_str()), (Some("refuse"), Some("refuse")));
    let unsigned = env.install("echo-v2.wasm", ECHO_V2).await;
    unsigned.expect_code(EXIT_REFUSED);
    assert_eq!(unsigned.json()["error"], "unsigned_module");
    assert!(unsigned.json()["message"].as_str().unwrap().contains("not signed"), "{}", unsigned.stdout);
    let untrusted = env.install("echo.signed.wasm", &signed_bytes).await;
    untrusted.expect_code(EXIT_REFUSED);
    assert!(untrusted.json()["message"].as_str().unwrap().contains(&fingerprint), "{}", untrusted.stdout);

    // Trusted: it installs, and inspect and list show the publisher.
    let pub_copy = env.write_file("acme.idplex-pub", public_text.as_bytes());
    let added = env.cli_json(&["connector", "trust", "add", pub_copy.to_str().unwrap()]).await.ok_json();
    assert_eq!(added["fingerprint"], fingerprint.as_str());
    assert_eq!(added["added"], true);
    let listed = env.cli(&["connector", "trust", "list"]).await;
    assert!(listed.expect_code(0).stdout.contains(&fingerprint), "{}", listed.stdout);
    let report = env.install("echo.signed.wasm", &signed_bytes).await.ok_json();
    assert_eq!(report["outcome"], "installed");
    assert_eq!(report["publisher"]["admitted_as"], "trusted");
    let inspect = env.cli_json(&["connector", "inspect", "echo@1.0.0"]).await.ok_json();
    assert_eq!(inspect["publisher"]["publisher"], "acme");
    assert_eq!(inspect["publisher"]["fingerprint"], fingerprint.as_str());
    let list = env.cli(&["connector", "list"]).await;
    assert!(list.expect_code(0).stdout.contains(&format!("publisher: acme (key {fingerprint}, trusted)")), "{}", list.stdout);

    // Removed: a later install of a module it signed is refused again.
    env.cli(&["connector", "trust", "remove", &fingerprint]).await.expect_code(0);
    let module_v2 = publisher.write_file("echo-v2.wasm", ECHO_V2);
    publisher.cli(&["connector", "sign", module_v2.to_str().unwrap(), "--key", private.to_str().unwrap()]).await.expect_code(0);
    let signed_v2 = std::fs::read(publisher.data_dir().join("echo-v2.signed.wasm")).unwrap();
    env.install("echo-v2.signed.wasm", &signed_v2).await.expect_code(EXIT_REFUSED);
    env.cli(&["connector", "trust", "remove", &fingerprint]).await.expect_code(4);

    // Bytes changed after signing: refused even when everything is allowed.
    env.cli(&["connector", "trust", "policy", "--unsigned", "allow", "--untrusted", "allow"]).await.expect_code(0);
    let mut moved = ECHO_V2.to_vec();
    moved.extend_from_slice(&signed_bytes[ECHO_V1.len()..]);
    let refused = env.install("moved.wasm", &moved).await;
    refused.expect_code(EXIT_REFUSED);
    assert!(refused.json()["message"].as_str().unwrap().contains("does not match"), "{}", refused.stdout);
    // Allowed untrusted: in, marked so.
    let report = env.install("echo-v2.signed.wasm", &signed_v2).await.ok_json();
    assert_eq!(report["publisher"]["admitted_as"], "untrusted");
    let events = env.cli(&["events"]).await;
    assert!(events.expect_code(0).stdout.contains("trust_key_removed"), "{}", events.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_refuses_what_it_cannot_sign() {
    let env = TestEnv::without_database(BIN).await;
    let dir = env.data_dir().to_str().unwrap().to_string();
    env.cli(&["connector", "keygen", "--publisher", "bad name", "--out", &dir]).await.expect_code(EXIT_REFUSED);
    env.cli(&["connector", "keygen", "--publisher", "acme", "--out", &dir]).await.expect_code(0);
    let key = env.data_dir().join("acme.idplex-key");
    let junk = env.write_file("junk.wasm", b"not wasm");
    let out = env.cli(&["connector", "sign", junk.to_str().unwrap(), "--key", key.to_str().unwrap()]).await;
    out.expect_code(EXIT_REFUSED);
    let not_a_key = env.write_file("acme.idplex-pub.idplex-key", b"idplex-ed25519 AAAA acme\n");
    let module = env.write_file("echo.wasm", ECHO_V1);
    let out = env.cli(&["connector", "sign", module.to_str().unwrap(), "--key", not_a_key.to_str().unwrap()]).await;
    out.expect_code(EXIT_REFUSED);
    assert!(out.stderr.contains("PRIVATE KEY"), "{}", out.stderr);
}
