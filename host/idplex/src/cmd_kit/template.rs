//! The connector template of `idplex connector new`: the files under `templates/connector/`,
//! embedded with `include_str!`, rendered with a small placeholder syntax:
//!
//! * `{{key}}` anywhere in a line is replaced by the value of `key` (an unknown key is an error,
//!   so a typo in a template fails the unit tests, never a vendor's build);
//! * a line holding only `{{#flag}}` … `{{/flag}}` keeps the lines between when `flag` is on,
//!   `{{^flag}}` … `{{/flag}}` when it is off (sections nest; the marker lines are dropped).
//!
//! Besides the templates, the crate gets what the repository's guest workspace uses, read from
//! it when this binary was built: the `[profile.release]` of `connectors/Cargo.toml`, the
//! version requirement of its `serde_json`, and `connectors/Cargo.lock` (cargo prunes the
//! entries the new crate does not use), so a new crate builds with the exact crate versions the
//! repository tested, offline from the local registry cache.

use std::collections::BTreeMap;

/// The guest workspace's manifest (`connectors/Cargo.toml`).
const WORKSPACE_MANIFEST: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../connectors/Cargo.toml"));
/// The guest workspace's lock file, copied as the new crate's `Cargo.lock`.
pub const WORKSPACE_LOCK: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../connectors/Cargo.lock"));

const CARGO_TOML: &str = include_str!("../../templates/connector/Cargo.toml.tmpl");
const GITIGNORE: &str = include_str!("../../templates/connector/gitignore.tmpl");
const README: &str = include_str!("../../templates/connector/README.md.tmpl");
const LIB_RS: &str = include_str!("../../templates/connector/src/lib.rs.tmpl");
const TESTS_RS: &str = include_str!("../../templates/connector/src/tests.rs.tmpl");
const PULL_RS: &str = include_str!("../../templates/connector/src/pull.rs.tmpl");

/// The capabilities a new connector declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// SCIM push from the IdP (`provisioning`).
    pub provisioning: bool,
    /// SAML sign-in (`sso`).
    pub sso: bool,
    /// Pulling the directory from the IdP's API (`directory-sync`).
    pub directory_sync: bool,
}

/// The capability names, as `--capabilities` and the contract spell them.
pub const CAPABILITY_NAMES: [&str; 3] = ["provisioning", "sso", "directory-sync"];

impl Capabilities {
    /// `provisioning,sso,directory-sync` (any subset, any order, at least one).
    pub fn parse(list: &str) -> Result<Capabilities, String> {
        let mut caps = Capabilities::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item {
                "provisioning" => caps.provisioning = true,
                "sso" => caps.sso = true,
                "directory-sync" => caps.directory_sync = true,
                other => {
                    return Err(format!(
                        "unknown capability `{other}`: use a comma-separated list of {}",
                        CAPABILITY_NAMES.join(", ")
                    ));
                }
            }
        }
        if caps == Capabilities::default() {
            return Err(format!("declare at least one capability of {}", CAPABILITY_NAMES.join(", ")));
        }
        Ok(caps)
    }

    fn flags(self) -> [(&'static str, bool); 3] {
        [("provisioning", self.provisioning), ("sso", self.sso), ("directory-sync", self.directory_sync)]
    }

    /// The declared names, in contract order.
    pub fn declared(self) -> Vec<&'static str> {
        self.flags().into_iter().filter(|(_, on)| *on).map(|(n, _)| n).collect()
    }

    fn undeclared(self) -> Vec<&'static str> {
        self.flags().into_iter().filter(|(_, on)| !*on).map(|(n, _)| n).collect()
    }
}

/// What a new crate is made of.
pub struct Params<'a> {
    /// The connector's (and the package's) name.
    pub name: &'a str,
    /// What it declares.
    pub capabilities: Capabilities,
    /// Absolute path of the SDK crate, for the `path` dependency.
    pub sdk_path: &'a str,
}

/// The files of a new crate: (path relative to the crate, contents).
pub fn files(p: &Params<'_>) -> Result<Vec<(&'static str, String)>, String> {
    let caps = p.capabilities;
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    vars.insert("name", p.name.to_string());
    vars.insert("crate_name", p.name.replace('-', "_"));
    vars.insert("sdk_path", toml_escape(p.sdk_path)?);
    vars.insert("serde_json_dependency", workspace_dependency(WORKSPACE_MANIFEST, "serde_json")?);
    vars.insert("release_profile", manifest_section(WORKSPACE_MANIFEST, "[profile.release]")?);
    vars.insert("capabilities_arg", caps.declared().join(","));
    vars.insert(
        "capability_values",
        caps.flags()
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| match n {
                "provisioning" => "metadata::Capability::Provisioning",
                "sso" => "metadata::Capability::Sso",
                _ => "metadata::Capability::DirectorySync",
            })
            .collect::<Vec<_>>()
            .join(", "),
    );
    vars.insert("undeclared_list", caps.undeclared().join(", "));
    let api_domain = format!("{}.example.com", p.name);
    vars.insert("egress_host", format!("{{tenant}}.{api_domain}"));
    vars.insert("api_domain", api_domain);
    let mut what = Vec::new();
    if caps.provisioning {
        what.push("SCIM provisioning (generic RFC 7644 dialect)");
    }
    if caps.sso {
        what.push("SAML sign-in (generic claim mapping)");
    }
    if caps.directory_sync {
        what.push("directory sync (pulled from the IdP's SCIM 2.0 API)");
    }
    vars.insert("description", format!("TODO: your identity provider. {}.", what.join("; ")));

    let mut flags: BTreeMap<&str, bool> = caps.flags().into_iter().collect();
    flags.insert("undeclared", !caps.undeclared().is_empty());
    flags.insert("no-config", !caps.sso && !caps.directory_sync);

    let mut out = vec![
        ("Cargo.toml", render(CARGO_TOML, &vars, &flags)?),
        ("Cargo.lock", WORKSPACE_LOCK.to_string()),
        (".gitignore", render(GITIGNORE, &vars, &flags)?),
        ("README.md", render(README, &vars, &flags)?),
        ("src/lib.rs", render(LIB_RS, &vars, &flags)?),
        ("src/tests.rs", render(TESTS_RS, &vars, &flags)?),
    ];
    if caps.directory_sync {
        out.push(("src/pull.rs", render(PULL_RS, &vars, &flags)?));
    }
    Ok(out)
}

/// Renders `text` (see the module docs). Errors name the line.
pub fn render(text: &str, vars: &BTreeMap<&str, String>, flags: &BTreeMap<&str, bool>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    // Open sections: (flag, kept).
    let mut open: Vec<(&str, bool)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        let marker = trimmed.strip_prefix("{{").and_then(|t| t.strip_suffix("}}"));
        if let Some(m) = marker.filter(|m| m.starts_with(['#', '^', '/'])) {
            let (sigil, flag) = m.split_at(1);
            match sigil {
                "/" => match open.pop() {
                    Some((f, _)) if f == flag => {}
                    Some((f, _)) => return Err(format!("line {}: {{{{/{flag}}}}} closes {{{{{f}}}}}", n + 1)),
                    None => return Err(format!("line {}: {{{{/{flag}}}}} closes nothing", n + 1)),
                },
                _ => {
                    let on = *flags.get(flag).ok_or_else(|| format!("line {}: unknown flag `{flag}`", n + 1))?;
                    open.push((flag, if sigil == "#" { on } else { !on }));
                }
            }
            continue;
        }
        if open.iter().any(|(_, kept)| !kept) {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| format!("line {}: unclosed `{{{{`", n + 1))?;
            let key = &after[..end];
            let value = vars.get(key).ok_or_else(|| format!("line {}: unknown placeholder `{key}`", n + 1))?;
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    if let Some((flag, _)) = open.pop() {
        return Err(format!("section `{flag}` is not closed"));
    }
    Ok(out)
}

/// `text` as the inside of a TOML basic string (a path may hold `\` or `"`).
fn toml_escape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => return Err(format!("the path {text:?} holds a control character")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The section of `manifest` headed `header` (that line through the line before the next
/// header), without trailing blank lines.
fn manifest_section(manifest: &str, header: &str) -> Result<String, String> {
    let mut lines = manifest.lines().skip_while(|l| l.trim() != header);
    let first = lines.next().ok_or_else(|| format!("connectors/Cargo.toml has no {header}"))?;
    let mut section = vec![first];
    section.extend(lines.take_while(|l| !l.trim_start().starts_with('[')));
    while section.last().is_some_and(|l| l.trim().is_empty()) {
        section.pop();
    }
    Ok(section.join("\n"))
}

/// The line of `[workspace.dependencies]` of `manifest` that declares `name`.
fn workspace_dependency(manifest: &str, name: &str) -> Result<String, String> {
    let section = manifest_section(manifest, "[workspace.dependencies]")?;
    section
        .lines()
        .find(|l| l.strip_prefix(name).is_some_and(|rest| rest.trim_start().starts_with('=')))
        .map(|l| l.trim().to_string())
        .ok_or_else(|| format!("connectors/Cargo.toml declares no workspace dependency `{name}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_capability_sets() -> Vec<Capabilities> {
        (1..8u8)
            .map(|bits| Capabilities { provisioning: bits & 1 != 0, sso: bits & 2 != 0, directory_sync: bits & 4 != 0 })
            .collect()
    }

    #[test]
    fn every_capability_set_renders_without_leftover_placeholders() {
        for caps in all_capability_sets() {
            let files = files(&Params { name: "acme-idp", capabilities: caps, sdk_path: "/sdk \"x\"\\y" })
                .unwrap_or_else(|e| panic!("{caps:?}: {e}"));
            let names: Vec<_> = files.iter().map(|(n, _)| *n).collect();
            assert_eq!(names.contains(&"src/pull.rs"), caps.directory_sync, "{caps:?}");
            for (path, text) in &files {
                if *path != "Cargo.lock" {
                    assert!(!text.contains("{{") && !text.contains("}}"), "{caps:?} {path}:\n{text}");
                }
            }
            let (_, manifest) = files.iter().find(|(n, _)| *n == "Cargo.toml").unwrap();
            assert!(manifest.contains("name = \"acme-idp\""), "{manifest}");
            assert!(manifest.contains("\n[workspace]\n"), "an empty workspace of its own: {manifest}");
            assert!(manifest.contains(r#"path = "/sdk \"x\"\\y""#), "{manifest}");
            assert!(manifest.contains("[profile.release]") && manifest.contains("panic = \"abort\""), "{manifest}");
            assert!(manifest.contains("serde_json = "), "{manifest}");
            let (_, lib) = files.iter().find(|(n, _)| *n == "src/lib.rs").unwrap();
            for (name, on) in caps.flags() {
                let variant = match name {
                    "provisioning" => "Capability::Provisioning",
                    "sso" => "Capability::Sso",
                    _ => "Capability::DirectorySync",
                };
                assert_eq!(lib.contains(variant), on, "{caps:?}: {variant}");
            }
        }
    }

    #[test]
    fn sections_nest_and_errors_name_the_line() {
        let vars = BTreeMap::from([("x", "X".to_string())]);
        let flags = BTreeMap::from([("a", true), ("b", false)]);
        let text = "1\n{{#a}}\n2{{x}}\n  {{^b}}\n3\n  {{/b}}\n{{#b}}\n4\n{{/b}}\n{{/a}}\n{{^a}}\n5\n{{/a}}\n";
        assert_eq!(render(text, &vars, &flags).unwrap(), "1\n2X\n3\n");
        assert!(render("{{y}}", &vars, &flags).unwrap_err().contains("line 1: unknown placeholder `y`"));
        assert!(render("{{#c}}\n{{/c}}", &vars, &flags).unwrap_err().contains("unknown flag `c`"));
        assert!(render("{{#a}}\n", &vars, &flags).unwrap_err().contains("not closed"));
        assert!(render("{{#a}}\n{{/b}}\n", &vars, &flags).unwrap_err().contains("line 2"));
    }

    #[test]
    fn capabilities_parse_and_refuse_unknown_or_none() {
        let all = Capabilities::parse("sso, provisioning,directory-sync").unwrap();
        assert_eq!(all.declared(), ["provisioning", "sso", "directory-sync"]);
        assert!(Capabilities::parse("scim").unwrap_err().contains("unknown capability `scim`"));
        assert!(Capabilities::parse(" , ").unwrap_err().contains("at least one"));
    }

    #[test]
    fn the_release_profile_and_dependencies_come_from_the_guest_workspace() {
        let profile = manifest_section(WORKSPACE_MANIFEST, "[profile.release]").unwrap();
        for key in ["panic", "lto", "codegen-units", "strip", "opt-level"] {
            assert!(profile.contains(key), "{key}: {profile}");
        }
        assert!(workspace_dependency(WORKSPACE_MANIFEST, "serde_json").unwrap().starts_with("serde_json = "));
        assert!(workspace_dependency(WORKSPACE_MANIFEST, "serde").unwrap().starts_with("serde = "), "not serde_json's line");
        assert!(WORKSPACE_LOCK.contains("name = \"idplex-connector-sdk\""));
    }
}
