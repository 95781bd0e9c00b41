//! The layering the architecture promises (ARCHITECTURE.md, invariant 5), held as a test: the
//! front ends (the HTTP server and the CLI binary) reach storage and the Wasm runtime only
//! through the hub's services. Neither depends on `idplex-store` or `idplex-runtime`, names
//! them, or calls the hub's test-only `store()` / `runtime()` accessors.

use std::path::{Path, PathBuf};

const FRONT_ENDS: &[&str] = &["idplex-server", "idplex"];
const BELOW_THE_HUB: &[&str] = &["idplex-store", "idplex-runtime"];

fn crate_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

/// The dependency names of a manifest's `[dependencies]` table (not dev- or build-).
fn normal_dependencies(manifest: &str) -> Vec<String> {
    let mut deps = Vec::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            if let Some(name) = line.split(['=', '.']).next() {
                deps.push(name.trim().to_string());
            }
        }
    }
    deps
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn front_ends_do_not_depend_on_the_store_or_the_runtime() {
    for front in FRONT_ENDS {
        let manifest = std::fs::read_to_string(crate_dir(front).join("Cargo.toml")).expect("manifest");
        let deps = normal_dependencies(&manifest);
        assert!(deps.iter().any(|d| d == "idplex-hub"), "{front} depends on the hub: {deps:?}");
        for below in BELOW_THE_HUB {
            assert!(!deps.iter().any(|d| d == below), "{front} must not depend on {below}; it goes through idplex-hub");
        }
    }
}

#[test]
fn front_ends_call_services_not_the_store() {
    let forbidden = ["idplex_store", "idplex_runtime", ".store()", ".runtime()"];
    let mut offences = Vec::new();
    for front in FRONT_ENDS {
        let mut files = Vec::new();
        rust_files(&crate_dir(front).join("src"), &mut files);
        assert!(!files.is_empty(), "{front} has sources");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("source");
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for f in forbidden {
                    if line.contains(f) {
                        offences.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(offences.is_empty(), "the front ends reach below the hub:\n{}", offences.join("\n"));
}

#[test]
fn the_manifest_reader_sees_only_normal_dependencies() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\nidplex-hub.workspace = true\nserde = \"1\"\n\
                    # idplex-store = \"no\"\n[dev-dependencies]\nidplex-store.workspace = true\n";
    assert_eq!(normal_dependencies(manifest), ["idplex-hub", "serde"]);
}
