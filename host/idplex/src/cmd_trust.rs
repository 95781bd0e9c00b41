//! Signed connector modules: `idplex connector keygen` and `sign` (a publisher's tools; no
//! database), and `idplex connector trust add|list|remove|policy` (the deployment's trusted
//! publisher keys and its policy for unsigned modules and untrusted keys). The format and the
//! rules are `idplex_hub::trust`'s.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use idplex_hub::store::TrustRule;
use idplex_hub::trust::{PublisherKey, check_publisher_name, sign_module};
use idplex_hub::{Hub, HubError, rfc3339};
use serde_json::json;

use crate::{actor, emit};

/// Extension of a private key file.
const KEY_EXT: &str = "idplex-key";
/// Extension of a public key file.
const PUB_EXT: &str = "idplex-pub";

/// `idplex connector keygen`.
#[derive(clap::Args)]
pub struct KeygenArgs {
    /// The publisher's name (1-64 of A-Z a-z 0-9 . _ -): names the files and goes into the
    /// public key line.
    #[arg(long)]
    pub publisher: String,
    /// Directory to write `NAME.idplex-key` (private, mode 0600) and `NAME.idplex-pub` into.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

/// `idplex connector sign`.
#[derive(clap::Args)]
pub struct SignArgs {
    /// The module: a component, or a core module with WIT metadata (componentized first, so the
    /// signature covers what idplex stores).
    pub file: PathBuf,
    /// The private key (`NAME.idplex-key`, from `idplex connector keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// The publisher's name in the signature; default: NAME of `--key NAME.idplex-key`.
    #[arg(long)]
    pub publisher: Option<String>,
    /// Where to write the signed module; default: FILE with `.wasm` replaced by `.signed.wasm`
    /// (a FILE already named `*.signed.wasm` is re-signed in place).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `idplex connector trust …`.
#[derive(clap::Subcommand)]
pub enum TrustCmd {
    /// Trust a publisher key: a `NAME.idplex-pub` file (`-` reads standard input).
    Add {
        /// The public key file.
        file: PathBuf,
    },
    /// List the trusted publisher keys.
    List,
    /// Stop trusting a key (modules it signed stay installed; later installs are judged again).
    Remove {
        /// The key's fingerprint (16 hex digits, as `trust list` shows it).
        fingerprint: String,
    },
    /// Show the policy for unsigned modules and modules signed by untrusted keys, or change it.
    /// A signature that does not match its module is refused whatever the policy.
    Policy {
        /// Unsigned modules: `refuse` (the default) or `allow`.
        #[arg(long)]
        unsigned: Option<TrustRule>,
        /// Modules signed by a key that is not trusted: `refuse` (the default) or `allow`.
        #[arg(long)]
        untrusted: Option<TrustRule>,
    },
}

/// Creates `path` (which must not exist) with `contents`, readable by its owner only when
/// `private`.
fn create_new(path: &Path, contents: &[u8], private: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if private { 0o600 } else { 0o644 });
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents).and_then(|_| file.sync_all()).with_context(|| format!("cannot write {}", path.display()))
}

/// `idplex connector keygen --publisher NAME [--out DIR]`: a new Ed25519 key pair. Refuses to
/// overwrite either file; creates DIR (mode 0700) when it does not exist.
pub fn keygen(args: &KeygenArgs, json_out: bool) -> anyhow::Result<()> {
    check_publisher_name(&args.publisher)?;
    let private = args.out.join(format!("{}.{KEY_EXT}", args.publisher));
    let public = args.out.join(format!("{}.{PUB_EXT}", args.publisher));
    for path in [&private, &public] {
        if path.exists() {
            return Err(HubError::Invalid {
                what: "key file",
                reason: format!("{} already exists: keygen never overwrites a key; choose another --out or --publisher", path.display()),
            }
            .into());
        }
    }
    if !args.out.is_dir() {
        // A new key directory is private to its owner (like ~/.ssh).
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        dir.create(&args.out).with_context(|| format!("cannot create the key directory {}", args.out.display()))?;
    }
    let (key, pem) = PublisherKey::generate()?;
    let public_line = key.public(&args.publisher).line();
    create_new(&private, pem.as_bytes(), true)?;
    if let Err(e) = create_new(&public, format!("{public_line}\n").as_bytes(), false) {
        let _ = std::fs::remove_file(&private);
        return Err(e);
    }
    let fingerprint = key.fingerprint();
    emit(
        json_out,
        &json!({ "publisher": args.publisher, "fingerprint": fingerprint, "private_key": private, "public_key": public }),
        || {
            format!(
                "publisher {} key {fingerprint}\n  private key: {} (keep it secret; mode 0600)\n  public key:  {} (give it to deployments: idplex connector trust add {})",
                args.publisher,
                private.display(),
                public.display(),
                public.display()
            )
        },
    );
    Ok(())
}

/// The default output of `sign FILE`.
fn default_signed_path(file: &Path) -> PathBuf {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.ends_with(".signed.wasm") {
        return file.to_path_buf();
    }
    let stem = name.strip_suffix(".wasm").unwrap_or(&name);
    file.with_file_name(format!("{stem}.signed.wasm"))
}

/// `idplex connector sign FILE --key NAME.idplex-key [--publisher NAME] [--out OUT]`.
pub async fn sign(args: &SignArgs, json_out: bool) -> anyhow::Result<()> {
    let key_bytes = std::fs::read(&args.key).with_context(|| format!("cannot read the key {}", args.key.display()))?;
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(&args.key) {
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!("warning: the private key {} is readable by others than its owner (chmod 600 it)", args.key.display());
        }
    }
    let key = PublisherKey::from_file_bytes(&key_bytes)?;
    drop(key_bytes);
    let publisher = match &args.publisher {
        Some(p) => p.clone(),
        None => {
            let name = args.key.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.strip_suffix(&format!(".{KEY_EXT}")).map(str::to_string).ok_or_else(|| HubError::Invalid {
                what: "publisher name",
                reason: format!("cannot take it from the key file name {name:?} (not NAME.{KEY_EXT}): give --publisher NAME"),
            })?
        }
    };
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let signed = sign_module(&bytes, &key, &publisher).await?;
    let out = args.out.clone().unwrap_or_else(|| default_signed_path(&args.file));
    std::fs::write(&out, &signed.bytes).with_context(|| format!("cannot write {}", out.display()))?;
    let mut value = serde_json::to_value(&signed)?;
    value["out"] = json!(out);
    emit(json_out, &value, || {
        let mut text = format!(
            "signed {}@{} as publisher {} with key {}\n  sha256 {} (signed module; the signature covers {})\n  written to {}",
            signed.name,
            signed.version,
            signed.publisher,
            signed.fingerprint,
            signed.sha256,
            signed.unsigned_sha256,
            out.display()
        );
        if signed.componentized {
            text.push_str("\n  (the core module was componentized first)");
        }
        if signed.replaced_signature {
            text.push_str("\n  (its earlier signature was replaced)");
        }
        text
    });
    Ok(())
}

/// `idplex connector trust …`.
pub async fn trust(hub: &Hub, json_out: bool, cmd: TrustCmd) -> anyhow::Result<()> {
    match cmd {
        TrustCmd::Add { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?
            };
            let (key, added) = hub.trust_publisher_key(&text, &actor()).await?;
            let mut value = serde_json::to_value(&key)?;
            value["added"] = json!(added);
            emit(json_out, &value, || {
                format!(
                    "{} key {} of publisher {}",
                    if added { "trusted" } else { "already trusted:" },
                    key.fingerprint,
                    key.publisher
                )
            });
        }
        TrustCmd::List => {
            let keys = hub.trusted_keys().await?;
            emit(json_out, &json!({ "keys": keys }), || {
                if keys.is_empty() {
                    return "no trusted publisher keys (idplex connector trust add NAME.idplex-pub)".into();
                }
                keys.iter()
                    .map(|k| format!("{}  {:<24} added by {} at {}", k.fingerprint, k.publisher, k.added_by, rfc3339(k.added_at)))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        TrustCmd::Remove { fingerprint } => {
            let key = hub.untrust_publisher_key(&fingerprint, &actor()).await?;
            emit(json_out, &serde_json::to_value(&key)?, || {
                format!("no longer trusted: key {} of publisher {}", key.fingerprint, key.publisher)
            });
        }
        TrustCmd::Policy { unsigned, untrusted } => {
            let policy = hub.set_trust_policy(unsigned, untrusted, &actor()).await?;
            emit(json_out, &serde_json::to_value(&policy)?, || {
                let set = match (&policy.updated_by, policy.updated_at) {
                    (Some(by), Some(at)) => format!("set by {by} at {}", rfc3339(at)),
                    _ => "never set: the defaults".into(),
                };
                format!(
                    "unsigned modules: {}\nmodules signed by untrusted keys: {}\nbad signatures: always refused\n({set})",
                    policy.unsigned, policy.untrusted
                )
            });
        }
    }
    Ok(())
}
