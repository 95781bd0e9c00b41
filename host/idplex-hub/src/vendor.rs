//! The vendor kit's services (`idplex connector new|build|dev`): what a connector author's tools
//! need from the host without reaching below the hub (ARCHITECTURE.md, invariant 5).
//!
//! * [`componentize`]: a core module with wit-bindgen's WIT metadata → a component, with exactly
//!   the encoder and checks `install` uses (so what `idplex connector build` writes is what an
//!   install of the core module would have stored).
//! * [`check_connector_name`] and [`reserved_names`]: the names a connector may take.
//! * [`Hub::install_dev`]: installs a *development build* of a connector. Every rebuild of a
//!   crate describes itself with the same `name@version` but other bytes, which
//!   [`Hub::install`] refuses (a conflict: a version names one build). A dev build is stored
//!   under its own version instead, `{version}+dev.{sha12}` (semver build metadata: the first
//!   12 hex digits of the component's sha256), so each build is a separate module an admin can
//!   tell apart in `connector list` and on the connection (`active_version`), and activating it
//!   is an ordinary activation (history, rollback, the watcher of a running server).

use idplex_store::StoreError;

use crate::{Hub, HubError, InstallReport};

/// The build-metadata tag that marks a development build's version (`1.2.0+dev.0123456789ab`).
pub const DEV_TAG: &str = "dev";

/// How many hex digits of the sha256 a dev version carries.
pub const DEV_SHA_DIGITS: usize = 12;

/// A core module (with the `component-type` custom section wit-bindgen embeds) as a component,
/// componentized and size-checked exactly as [`Hub::install`] does it; a component is returned
/// unchanged. Refusals are [`HubError::Refused`] (`not_a_component`, `not_wasm`, `too_large`).
pub fn componentize(core: &[u8]) -> Result<Vec<u8>, HubError> {
    let limit = idplex_runtime::RuntimeConfig::new(std::path::PathBuf::new()).max_module_bytes;
    Ok(idplex_runtime::componentize(core, limit)?)
}

/// Lowercase hex sha256 of `bytes`: a module's content address, as install computes it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    idplex_runtime::ModuleHash::of(bytes).0
}

/// Whether `name` may be a connector's name (what `describe` answers): 1-64 characters of
/// `a-z`, `0-9` and `-`, not starting with `-`. The error says why not.
pub fn check_connector_name(name: &str) -> Result<(), String> {
    idplex_runtime::check_connector_name(name)
}

/// The names reserved for the first-party connectors shipped in this binary: a component
/// describing itself under one of them is refused at install unless it is byte for byte the
/// bundled one.
pub fn reserved_names() -> Vec<&'static str> {
    idplex_bundled::FIRST_PARTY.iter().map(|b| b.crate_name).collect()
}

/// The version a dev build of `version` with component sha256 `sha256` is stored under:
/// `{version}+dev.{sha12}`, or `{version}.dev.{sha12}` appended to build metadata the version
/// already has (`1.0.0+build.7` → `1.0.0+build.7.dev.0123456789ab`). Still a semver version, and
/// equal in precedence to `version` (build metadata does not order).
pub fn dev_version(version: &str, sha256: &str) -> String {
    let short = &sha256[..sha256.len().min(DEV_SHA_DIGITS)];
    if version.contains('+') {
        format!("{version}.{DEV_TAG}.{short}")
    } else {
        format!("{version}+{DEV_TAG}.{short}")
    }
}

/// Whether `version` names a dev build ([`dev_version`]): its build metadata holds the
/// identifiers `dev` and a 12-digit hex sha prefix.
pub fn is_dev_version(version: &str) -> bool {
    let Some((_, build)) = version.split_once('+') else {
        return false;
    };
    let ids: Vec<&str> = build.split('.').collect();
    ids.windows(2).any(|w| {
        w[0] == DEV_TAG && w[1].len() == DEV_SHA_DIGITS && w[1].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

impl Hub {
    /// Install a development build: the checks and policies of [`Hub::install`] (the same
    /// validation in the sandbox, the reserved first-party names, the trust policy), stored under
    /// [`dev_version`] of the version it describes, so rebuilds with the same `name@version`
    /// and other bytes do not conflict. The report's `version` is the stored one (pass it to
    /// [`Hub::activate`]); `info.version` stays what the connector described.
    ///
    /// The same bytes again answer `already_installed` with the version they were stored under
    /// first (also when they were installed as a release with [`Hub::install`]: a module is
    /// stored once).
    pub async fn install_dev(&self, bytes: &[u8]) -> Result<InstallReport, HubError> {
        // The deployment's trust policy, as for any install (a dev build is no exception: on a
        // development server, allow unsigned modules, or sign dev builds with a trusted key).
        let (loaded, publisher) = self.admit(bytes, "dev build").await?;
        let (name, described) = (loaded.info().name.clone(), loaded.info().version.clone());
        let sha256 = loaded.hash().0.clone();
        // Stored before (as a dev build or a release): the same module, whatever version it has.
        let version = match self.store.get_module_by_hash(&sha256).await {
            Ok(existing) if existing.name == name => existing.version,
            Ok(_) | Err(StoreError::NotFound { .. }) => dev_version(&described, &sha256),
            Err(e) => return Err(e.into()),
        };
        let report = self.store_module(loaded, publisher, version).await?;
        tracing::info!(connector = %format!("{}@{}", report.name, report.version), sha256 = %report.sha256, outcome = report.outcome, "dev build installed");
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn dev_versions_are_semver_build_metadata_with_the_sha_prefix() {
        assert_eq!(dev_version("0.1.0", SHA), "0.1.0+dev.0123456789ab");
        assert_eq!(dev_version("1.0.0-rc.1+build.7", SHA), "1.0.0-rc.1+build.7.dev.0123456789ab");
        for v in ["0.1.0", "1.0.0-rc.1+build.7"] {
            let dev = dev_version(v, SHA);
            // Build metadata only: the version before `+` is untouched (same precedence).
            assert!(dev.starts_with(v) && dev.split_once('+').is_some(), "{dev}");
            assert!(is_dev_version(&dev), "{dev}");
            assert!(!is_dev_version(v), "{v}");
        }
        assert!(!is_dev_version("1.0.0+dev.xyz"));
    }

    #[test]
    fn names_follow_the_install_rule_and_first_party_names_are_reserved() {
        assert!(check_connector_name("acme-idp2").is_ok());
        for bad in ["", "-acme", "Acme", "acme_idp", &"a".repeat(65)] {
            let e = check_connector_name(bad).unwrap_err();
            assert!(e.contains("a-z, 0-9 and '-'"), "{bad}: {e}");
        }
        assert!(reserved_names().contains(&"custom-saml"));
    }
}
