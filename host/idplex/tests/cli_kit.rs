//! The vendor kit end to end: `idplex connector new` writes a crate that passes its own native
//! tests, `connector build` turns it into a component that installs, and `connector dev` swaps a
//! rebuilt edit onto a connection a running server serves.
//!
//! The full cycle builds one fresh crate for wasm (minutes on a small machine), so it is one test
//! with one crate; the nested cargo builds go to `$IDPLEX_KIT_TARGET_DIR` (default
//! `/var/tmp/idplex-kit-target`), kept between runs so reruns are warm.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use idplex_tests::{CliOutput, Server, TestEnv, eventually};
use serde_json::{Value, json};
use sha2::Digest;

const BIN: &str = env!("CARGO_BIN_EXE_idplex");
const EXIT_REFUSED: i32 = 3;
/// A wasm build of a fresh crate on a busy 2-core machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// Where the nested cargo builds of these tests go (kept between runs).
fn kit_target_dir() -> PathBuf {
    std::env::var_os("IDPLEX_KIT_TARGET_DIR").map_or_else(|| PathBuf::from("/var/tmp/idplex-kit-target"), PathBuf::from)
}

/// `idplex --db … --data-dir … [--json] ARGS` with the kit's target dir, bounded by
/// [`BUILD_TIMEOUT`]; the output, and how long it took.
async fn kit_cli(env: &TestEnv, json_out: bool, args: &[&str]) -> (CliOutput, Duration) {
    let mut all = Vec::new();
    if json_out {
        all.push("--json");
    }
    all.extend_from_slice(args);
    let t0 = Instant::now();
    let child = env
        .command(&all)
        .env("CARGO_TARGET_DIR", kit_target_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn idplex");
    let out = tokio::time::timeout(BUILD_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`idplex {}` did not finish within {BUILD_TIMEOUT:?}", all.join(" ")))
        .expect("wait for idplex");
    let out = CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (out, t0.elapsed())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn new_writes_a_crate_for_each_capability_set_and_refuses_bad_input() {
    let env = TestEnv::new(BIN).await;
    let root = env.data_dir().join("crates");
    for (i, caps) in ["provisioning", "sso", "directory-sync", "provisioning,sso", "provisioning,directory-sync", "sso,directory-sync", "provisioning,sso,directory-sync"]
        .iter()
        .enumerate()
    {
        let dir = root.join(format!("c{i}"));
        let v = env
            .cli_json(&["connector", "new", "acme-idp", "--capabilities", caps, "--dir", dir.to_str().unwrap()])
            .await
            .ok_json();
        assert_eq!(v["name"], "acme-idp");
        let declared: Vec<&str> = caps.split(',').collect();
        assert_eq!(v["capabilities"], json!(declared), "{v}");
        let manifest = read(&dir.join("Cargo.toml"));
        assert!(manifest.contains("name = \"acme-idp\"") && manifest.contains("\n[workspace]\n"), "{manifest}");
        assert!(manifest.contains("crate-type = [\"cdylib\"]"), "{manifest}");
        let sdk = Path::new(v["sdk"].as_str().unwrap());
        assert!(sdk.is_absolute() && sdk.join("Cargo.toml").is_file(), "{v}");
        assert!(manifest.contains(&format!("idplex-connector-sdk = {{ path = \"{}\" }}", sdk.display())), "{manifest}");
        assert!(manifest.contains("[profile.release]") && manifest.contains("panic = \"abort\""), "{manifest}");
        assert_eq!(read(&dir.join("Cargo.lock")), read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../connectors/Cargo.lock")));
        assert!(dir.join("README.md").is_file() && dir.join("src/tests.rs").is_file());
        assert_eq!(dir.join("src/pull.rs").is_file(), caps.contains("directory-sync"), "{caps}");
        let lib = read(&dir.join("src/lib.rs"));
        for (cap, variant) in [("provisioning", "Capability::Provisioning"), ("sso", "Capability::Sso"), ("directory-sync", "Capability::DirectorySync")] {
            assert_eq!(lib.contains(variant), declared.contains(&cap), "{caps}: {variant}");
        }
    }

    // Refusals: exit 3, a message naming the problem, nothing written.
    let refused = |out: CliOutput, says: &str| {
        assert_eq!(out.code, EXIT_REFUSED, "{says}: {out:?}");
        assert!(out.stderr.contains(says), "expected {says:?} in: {}", out.stderr);
    };
    let fresh = root.join("fresh");
    let fresh_arg = fresh.to_str().unwrap();
    refused(env.cli(&["connector", "new", "Acme_IdP", "--dir", fresh_arg]).await, "must be 1-64 characters of a-z, 0-9 and '-'");
    refused(env.cli(&["connector", "new", "2fa-idp", "--dir", fresh_arg]).await, "must start with a letter");
    refused(env.cli(&["connector", "new", "custom-saml", "--dir", fresh_arg]).await, "reserved for the first-party connector");
    refused(env.cli(&["connector", "new", "acme-idp", "--capabilities", "scim", "--dir", fresh_arg]).await, "unknown capability `scim`");
    refused(
        env.cli(&["connector", "new", "acme-idp", "--dir", fresh_arg, "--sdk", env.data_dir().to_str().unwrap()]).await,
        "is not the idplex-connector-sdk crate",
    );
    refused(
        env.cli(&["connector", "new", "acme-idp", "--dir", fresh_arg, "--sdk", "/no/such/sdk"]).await,
        "is not the idplex-connector-sdk crate",
    );
    assert!(!fresh.exists(), "nothing written for a refused `new`");
    let existing = root.join("c0");
    refused(env.cli(&["connector", "new", "other-idp", "--dir", existing.to_str().unwrap()]).await, "exists and is not empty");
    assert!(read(&existing.join("Cargo.toml")).contains("acme-idp"), "the existing crate is untouched");
    // An empty directory is fine.
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    env.cli_json(&["connector", "new", "other-idp", "--dir", empty.to_str().unwrap()]).await.ok_json();
}

#[tokio::test(flavor = "multi_thread")]
async fn build_without_a_wasm_toolchain_says_what_to_install() {
    if Path::new("/usr/bin/cargo").is_file() && Path::new("/usr/bin/rustc").is_file() {
        eprintln!("skipped: a Debian toolchain could be used as the fallback here");
        return;
    }
    let env = TestEnv::new(BIN).await;
    let dir = env.data_dir().join("crate");
    env.cli_json(&["connector", "new", "acme-idp", "--dir", dir.to_str().unwrap()]).await.ok_json();
    let out = env
        .command(&["connector", "build", dir.to_str().unwrap()])
        .env("RUSTC", "/no/such/rustc")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("run idplex");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("rustup target add wasm32-unknown-unknown") && stderr.contains("rust-web-src"), "{stderr}");

    let not_a_crate = env.cli(&["connector", "build", env.data_dir().to_str().unwrap()]).await;
    assert_eq!(not_a_crate.code, EXIT_REFUSED, "{not_a_crate:?}");
    assert!(not_a_crate.stderr.contains("has no Cargo.toml"), "{}", not_a_crate.stderr);
}

/// `new` → native `cargo test` → `build` → `install` → a connection on a running server →
/// edit → `dev --once` → the server serves the edited build. Prints the time of each step.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_crate_tests_builds_installs_and_hot_swaps_through_the_dev_loop() {
    let env = TestEnv::new(BIN).await;
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    let dir = env.data_dir().join("acme-idp");
    let dir_arg = dir.to_str().unwrap().to_string();

    let t0 = Instant::now();
    env.cli_json(&["connector", "new", "acme-idp", "--capabilities", "provisioning,sso,directory-sync", "--dir", &dir_arg])
        .await
        .ok_json();
    timings.push(("new", t0.elapsed()));

    // The crate's own native tests.
    let t0 = Instant::now();
    let native = tokio::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", kit_target_dir().join("native"))
        .env_remove("RUSTFLAGS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let native = tokio::time::timeout(BUILD_TIMEOUT, native).await.expect("cargo test in time").expect("run cargo test");
    let (stdout, stderr) = (String::from_utf8_lossy(&native.stdout), String::from_utf8_lossy(&native.stderr));
    assert!(native.status.success(), "native tests of the new crate:\n{stdout}\n{stderr}");
    for test in [
        "describes_itself_with_the_declared_capabilities_and_a_closed_config_schema",
        "provisioning_turns_scim_requests_into_canonical_operations",
        "sso_maps_an_assertion_with_the_default_and_the_configured_attribute_names",
        "directory_sync_pulls_users_then_groups_with_their_members_in_one_full_pass",
    ] {
        assert!(stdout.contains(&format!("{test} ... ok")), "{test} ran and passed:\n{stdout}");
    }
    assert!(!stderr.contains("--> src/"), "the template compiles without warnings:\n{stderr}");
    timings.push(("native cargo test", t0.elapsed()));

    // The component.
    let (out, took) = kit_cli(&env, true, &["connector", "build", &dir_arg]).await;
    let built = out.ok_json();
    timings.push(("build", took));
    let path = PathBuf::from(built["path"].as_str().expect("path"));
    let bytes = std::fs::read(&path).expect("the component is written");
    assert_eq!(built["size_bytes"], bytes.len(), "{built}");
    assert_eq!(built["sha256"].as_str().unwrap(), hex(&sha2::Sha256::digest(&bytes)), "{built}");
    assert_eq!(&bytes[..8], b"\0asm\x0d\0\x01\0", "a component, not a core module");
    // Again, into --out and with the conformance check: nothing changed, so the same bytes
    // (and a warm build); the template passes every case the host checks.
    let out_file = env.data_dir().join("out/acme.wasm");
    let (again, took) = kit_cli(&env, true, &["connector", "build", &dir_arg, "--out", out_file.to_str().unwrap(), "--check"]).await;
    let again = again.ok_json();
    timings.push(("build (warm, nothing changed) + check", took));
    assert_eq!(again["sha256"], built["sha256"], "reproducible");
    assert_eq!(std::fs::read(&out_file).unwrap(), bytes);
    let cases = again["check"]["cases"].as_array().expect("check cases");
    assert!(cases.len() > 10, "{again}");
    let failed: Vec<&Value> = cases.iter().filter(|c| c["outcome"] == "fail").collect();
    assert!(failed.is_empty(), "the template fails conformance cases: {failed:?}");
    assert_eq!(again["check"]["name"], "acme-idp");

    // Installs as it is, on a deployment whose trust policy admits unsigned modules (a
    // development server; the default refuses them, dev builds included).
    allow_unsigned_modules(&env).await;
    let t0 = Instant::now();
    let installed = env.cli_json(&["connector", "install", path.to_str().unwrap()]).await.ok_json();
    timings.push(("install", t0.elapsed()));
    assert_eq!((installed["name"].as_str(), installed["version"].as_str()), (Some("acme-idp"), Some("0.1.0")), "{installed}");
    assert_eq!(installed["sha256"], built["sha256"], "install stores the component as built");
    let caps = installed["info"]["capabilities"].as_array().expect("capabilities").clone();
    assert_eq!(caps.len(), 3, "{installed}");

    // A connection on a running server, bound to the first build.
    let conn = env
        .cli_json(&["connection", "create", "acme", "--connector", "acme-idp", "--version", "0.1.0", "--config", "tenant=acme"])
        .await
        .ok_json();
    let id = conn["id"].as_str().expect("connection id").to_string();
    let scim = env.cli_json(&["scim-token", "create", "--connection", &id]).await.ok_json();
    let scim_secret = scim["secret"].as_str().expect("scim secret").to_string();
    let admin = env.admin_token().await;
    let mut server = env.serve(&[]).await;
    server.admin_token = Some(admin);
    let marked = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "dev-edit-marker-1@example.com"});
    let r = create_user(&server, &id, &scim_secret, &marked).await;
    assert_eq!(r.status, 201, "the first build creates the user: {}", r.body);

    // Edit: the provisioning dialect now refuses users named with the marker.
    let lib_path = dir.join("src/lib.rs");
    let lib = read(&lib_path);
    let anchor = "    let parsed = scim_dialect::parse(request)?;\n";
    assert!(lib.contains(anchor), "the template's normalize:\n{lib}");
    let edited = lib.replace(
        anchor,
        &format!(
            "{anchor}    if request.body.as_deref().is_some_and(|b| b.contains(\"dev-edit-marker\")) {{\n        \
             return Err(ConnectorError::invalid_request(\"refused by the edited dev build\"));\n    }}\n"
        ),
    );
    std::fs::write(&lib_path, edited).unwrap();

    let (out, took) = kit_cli(&env, true, &["connector", "dev", &dir_arg, "--connection", &id, "--once"]).await;
    let cycle = out.ok_json();
    timings.push(("dev cycle (rebuild + check + install + activate)", took));
    assert_eq!((cycle["check"]["passed"].as_bool(), cycle["check"]["fail"].as_u64()), (Some(true), Some(0)), "{cycle}");
    assert_eq!(cycle["install"]["publisher"]["admitted_as"], "unsigned", "{cycle}");
    let version = cycle["install"]["version"].as_str().expect("dev version").to_string();
    let sha = cycle["install"]["sha256"].as_str().unwrap().to_string();
    assert_eq!(version, format!("0.1.0+dev.{}", &sha[..12]), "{cycle}");
    assert_ne!(sha, built["sha256"].as_str().unwrap(), "the edit changed the bytes");
    assert_eq!(cycle["swapped"], true, "{cycle}");
    assert_eq!(cycle["message"], format!("swapped connection {id} to acme-idp@{version} (sha {})", &sha[..12]));

    // The running server picks the swap up (its binding watcher) and serves the edited build.
    let t0 = Instant::now();
    let second = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "dev-edit-marker-2@example.com"});
    let refused = eventually(Duration::from_secs(30), "the server to serve the dev build", || async {
        let r = create_user(&server, &id, &scim_secret, &second).await;
        (r.status == 400).then_some(r)
    })
    .await;
    timings.push(("server serving the swap", t0.elapsed()));
    assert!(refused.body.to_string().contains("refused by the edited dev build"), "{}", refused.body);
    let plain = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ada@example.com"});
    assert_eq!(create_user(&server, &id, &scim_secret, &plain).await.status, 201, "other users still provision");
    let c = server.get(&format!("/admin/v1/connections/{id}")).await;
    c.expect(200);
    assert_eq!((c.body["active_version"].as_str(), c.body["previous_version"].as_str()), (Some(version.as_str()), Some("0.1.0")), "{}", c.body);

    // The dev build is listed as such; the same bytes again swap nothing.
    let list = env.cli(&["connector", "list"]).await;
    assert!(list.stdout.contains(&format!("acme-idp@{version}")), "{}", list.stdout);
    let (out, _) = kit_cli(&env, true, &["connector", "dev", &dir_arg, "--connection", &id, "--once"]).await;
    let again = out.ok_json();
    assert_eq!((again["swapped"].as_bool(), again["install"]["outcome"].as_str()), (Some(false), Some("already_installed")), "{again}");
    assert_eq!(again["install"]["version"], version.as_str());

    // A connection of another connector is refused, naming both.
    let other = env.cli_json(&["connection", "create", "other", "--connector", "custom-saml"]).await.ok_json();
    let other_id = other["id"].as_str().unwrap().to_string();
    let (out, _) = kit_cli(&env, false, &["connector", "dev", &dir_arg, "--connection", &other_id, "--once"]).await;
    assert_eq!(out.code, EXIT_REFUSED, "{out:?}");
    assert!(out.stderr.contains("uses connector custom-saml") && out.stderr.contains("acme-idp"), "{}", out.stderr);

    eprintln!("vendor kit timings:");
    for (step, took) in &timings {
        eprintln!("  {step:<45} {:>7.1} s", took.as_secs_f64());
    }
    server.terminate(Duration::from_secs(30)).await;
}

/// The trust policy of `env`'s database set to admit unsigned modules, written to the store
/// directly (what `idplex connector trust policy --unsigned allow` does on a development server).
async fn allow_unsigned_modules(env: &TestEnv) {
    let store = idplex_store::Store::open(env.db_url()).await.expect("open the test database");
    let policy = store
        .set_trust_policy(Some(idplex_store::TrustRule::Allow), None, "cli_kit test")
        .await
        .expect("set the trust policy");
    assert_eq!(policy.unsigned, idplex_store::TrustRule::Allow);
    store.close().await;
}

async fn create_user(server: &Server, connection: &str, token: &str, user: &Value) -> idplex_tests::Resp {
    Server::send(
        server
            .request(reqwest::Method::POST, &format!("/scim/v2/{connection}/Users"), Some(token))
            .header("content-type", "application/scim+json")
            .body(user.to_string()),
    )
    .await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
