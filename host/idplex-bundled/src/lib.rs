//! Connector components compiled into the idplex binary.
//!
//! `build.rs` compiles the guest workspace in `connectors/` to `wasm32-unknown-unknown` (release
//! profile of that workspace), optionally shrinks each core module with `wasm-opt`, and turns
//! every `cdylib` into a WebAssembly component with `wit-component`. The components are embedded
//! here as byte slices, so the host can install the first-party connectors without any file on
//! disk, and the host's tests can load the fixtures in [`testing`].
//!
//! Nothing here is trusted more than a vendor upload: the host must validate and sandbox these
//! components exactly like any other connector.
//!
//! Toolchain: see `connectors/README.md` and `build.rs`; a machine needs either the rustup target
//! `wasm32-unknown-unknown` or Debian's `rustc-web cargo-web rust-web-src lld`.

/// One first-party connector component embedded in the binary.
#[derive(Debug, Clone, Copy)]
pub struct BundledConnector {
    /// Cargo package name of the guest crate (`custom-saml`); usually, but not necessarily,
    /// the connector's `name` as reported by `metadata.describe`.
    pub crate_name: &'static str,
    /// The WebAssembly component (component-model binary, not a core module), ready for
    /// `wasmtime::component::Component::new`.
    pub component: &'static [u8],
}

/// Every first-party connector: each `cdylib` crate directly under `connectors/` (found by
/// scanning the guest workspace at build time, so new crates appear here without code changes),
/// sorted by crate name.
pub const FIRST_PARTY: &[BundledConnector] =
    include!(concat!(env!("OUT_DIR"), "/first_party.rs"));

/// Test fixtures from `connectors/testing/`. **Never install these in a deployment**: they exist
/// so the host's test suite can exercise sandbox limits and version handling.
pub mod testing {
    /// Component of `connectors/testing/hostile` (`hostile@1.0.0`): misbehaves according to the
    /// connection config key `mode` (`ok`, `trap`, `loop`, `oom`, `huge`, `egress`) in every
    /// export except `metadata.describe`. Declares `egress-hosts = ["127.0.0.1", "localhost"]`
    /// and imports `wasi:http/outgoing-handler`. See that crate's docs for details.
    pub const HOSTILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/testing/hostile.wasm"));
    /// Component of `connectors/testing/echo-v1` (`echo@1.0.0`): `provisioning.render` returns
    /// `{"served_by":"1.0.0","input":<resource>}`; `normalize` maps POST to `create(body)`.
    pub const ECHO_V1: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/testing/echo-v1.wasm"));
    /// Component of `connectors/testing/echo-v2` (`echo@2.0.0`): same as [`ECHO_V1`] but reports
    /// version `2.0.0`.
    pub const ECHO_V2: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/testing/echo-v2.wasm"));
    /// Component of `connectors/testing/impostor`: a vendor module describing itself as the
    /// first-party `custom-saml@99.0.0` (first-party names are reserved: refused at install).
    pub const IMPOSTOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/testing/impostor.wasm"));
    /// Component of `connectors/testing/bad-schema` (`bad-schema@1.0.0`): its config schema
    /// `$ref`s a remote URL (refused at install, never fetched).
    pub const BAD_SCHEMA: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/testing/bad-schema.wasm"));
    /// Component of `connectors/testing/contract-1-0` (`contract-1-0@1.0.0`): built against the
    /// released `idplex:connector@1.0.0` contract, without the 1.1 exports (`schemas`,
    /// `diagnostics`); a generic pass-through dialect.
    pub const CONTRACT_1_0: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/testing/contract-1-0.wasm"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmparser::{ComponentExternalKind, ComponentTypeRef, Parser, Payload};

    /// `\0asm`, version 0x0d, layer 1: the component-model preamble.
    const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    /// Top-level (import names, exported instance names) of a component.
    fn world_of(component: &[u8]) -> (Vec<String>, Vec<String>) {
        let (mut imports, mut exports) = (Vec::new(), Vec::new());
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(component) {
            match payload.expect("component parses") {
                Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(reader) if depth == 0 => {
                    for import in reader {
                        let import = import.unwrap();
                        if matches!(import.ty, ComponentTypeRef::Instance(_)) {
                            imports.push(import.name.name.to_string());
                        }
                    }
                }
                Payload::ComponentExportSection(reader) if depth == 0 => {
                    for export in reader {
                        let export = export.unwrap();
                        if export.kind == ComponentExternalKind::Instance {
                            exports.push(export.name.name.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        (imports, exports)
    }

    fn all() -> Vec<(&'static str, &'static [u8])> {
        let mut v: Vec<_> = FIRST_PARTY.iter().map(|c| (c.crate_name, c.component)).collect();
        v.push(("hostile", testing::HOSTILE));
        v.push(("echo-v1", testing::ECHO_V1));
        v.push(("echo-v2", testing::ECHO_V2));
        v.push(("impostor", testing::IMPOSTOR));
        v.push(("bad-schema", testing::BAD_SCHEMA));
        v.push(("contract-1-0", testing::CONTRACT_1_0));
        v
    }

    #[test]
    fn custom_saml_is_first_party_and_fixtures_are_not() {
        let names: Vec<_> = FIRST_PARTY.iter().map(|c| c.crate_name).collect();
        assert!(names.contains(&"custom-saml"), "{names:?}");
        for fixture in ["hostile", "echo-v1", "echo-v2", "impostor", "bad-schema", "contract-1-0", "idplex-connector-sdk"] {
            assert!(!names.contains(&fixture), "{fixture} must not be first-party");
        }
    }

    #[test]
    fn every_bundled_module_is_a_connector_component() {
        for (name, bytes) in all() {
            assert!(bytes.starts_with(&COMPONENT_PREAMBLE), "{name} is not a component");
            let (imports, exports) = world_of(bytes);
            // Every connector but the 1.0 fixture is built against the current contract.
            let (version, interfaces): (&str, &[&str]) = if name == "contract-1-0" {
                ("1.0.0", &["metadata", "provisioning", "directory-sync", "sso"])
            } else {
                ("1.3.0", &["metadata", "provisioning", "directory-sync", "sso", "schemas", "diagnostics", "directory-pull", "scim-reads"])
            };
            for interface in interfaces {
                let want = format!("idplex:connector/{interface}@{version}");
                assert!(exports.iter().any(|e| *e == want), "{name} lacks export {want}: {exports:?}");
            }
            // Only the contract's imports (and, for the hostile fixture and the connectors that pull, wasi:http and the wasi
            // interfaces it depends on): no filesystem, environment or sockets.
            for import in &imports {
                let allowed = import.starts_with("idplex:connector/")
                    || (["hostile", "google-workspace", "entra-id"].contains(&name)
                        && ["wasi:http/", "wasi:io/", "wasi:clocks/"].iter().any(|p| import.starts_with(p)));
                assert!(allowed, "{name} imports {import}");
            }
        }
    }

    #[test]
    fn hostile_imports_outgoing_handler() {
        let (imports, _) = world_of(testing::HOSTILE);
        assert!(
            imports.iter().any(|i| i.starts_with("wasi:http/outgoing-handler@0.2")),
            "{imports:?}"
        );
    }

    #[test]
    fn echo_versions_differ() {
        assert_ne!(testing::ECHO_V1, testing::ECHO_V2);
    }
}
