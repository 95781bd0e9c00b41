//! Signed connector modules and the deployment's trust policy.
//!
//! # Keys
//!
//! A publisher signs with an Ed25519 key pair (`ring`): the private key is a PKCS#8 document
//! (`NAME.idplex-key`, PEM `PRIVATE KEY`, mode 0600), the public key one line
//! `idplex-ed25519 <base64 of the raw 32-byte key> <publisher>` (`NAME.idplex-pub`). A key is
//! known by its [fingerprint]: the first 16 hex digits of the sha256 of the raw public key.
//!
//! # The signature
//!
//! A signature travels with the module, as the component's **last top-level custom section**,
//! named [`SIGNATURE_SECTION`] (`idplex-signature`), so it survives every way a module reaches
//! idplex (CLI, admin API upload) unchanged; wasmparser and wasmtime ignore the section. Its
//! payload is JSON ([`SignaturePayload`]):
//!
//! ```json
//! {"v": 1, "publisher": "acme", "key": "<base64 raw public key>", "name": "acme-idp",
//!  "version": "1.2.0", "sha256": "<hex sha256 of the component without this section>",
//!  "signature": "<base64 Ed25519 signature>"}
//! ```
//!
//! The signed message is domain-separated and binds the publisher's claimed name, the
//! connector's name and version and the bytes: [`signed_message`], i.e.
//! `idplex-connector-signature-v1\n{publisher}\n{name}@{version}\n{sha256}`.
//!
//! Verification ([`verify_signature`]): exactly one such section, and it is the last one; the
//! bytes before it hash to `sha256`; the signature verifies with `key`; `name@version` is what
//! the component's own `describe` says (a signature cannot be moved to another module or
//! version). `idplex connector sign` ([`sign_module`]) componentizes a core module first (the
//! signature covers the component idplex stores), and replaces an earlier signature.
//!
//! # The policy
//!
//! [`Hub::install`] judges every uploaded module after the runtime validated and described it,
//! before it is stored ([`Hub::judge`]): a signature that does not verify is always refused; a
//! module signed by a trusted key is admitted; an unsigned one, or one signed by a key the
//! deployment does not trust, only when the policy ([`TrustPolicy`], in the database, shared by
//! replicas; refuse both by default) allows it. The first-party connectors bundled in the binary
//! are trusted as part of it ([`Admission::FirstParty`]), whatever the policy. The store keeps the
//! signed bytes (the module's sha256 is that of the signed bytes) and who published them
//! ([`ModulePublisher`]), shown by `connector inspect` / `list` and the admin API. Modules
//! already installed are not judged again when they are loaded.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use idplex_runtime::{LoadedConnector, ModuleHash, Runtime, RuntimeConfig};
use idplex_store::{
    Admission, EventKind, ModulePublisher, NewEvent, NewTrustedKey, TrustPolicy, TrustRule, TrustedKey,
};
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Hub, HubError};

/// Name of the custom section that carries a module's signature.
pub const SIGNATURE_SECTION: &str = "idplex-signature";

/// The first line of every signed message (domain separation: an idplex module signature can
/// never be taken for a signature of anything else made with the same key).
pub const SIGNATURE_DOMAIN: &str = "idplex-connector-signature-v1";

/// The first word of a public key line (`NAME.idplex-pub`).
pub const PUBLIC_KEY_TAG: &str = "idplex-ed25519";

/// How the publisher shown for a bundled first-party connector reads.
pub const FIRST_PARTY_PUBLISHER: &str = "first-party (bundled)";

/// Largest signature section payload accepted, in bytes (a real one is about 400).
const MAX_SIGNATURE_PAYLOAD: usize = 4096;

/// Why the trust policy (or a signature) refused a module. Each message names what is wrong
/// (the key's fingerprint, what does not match) and what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TrustRefusal {
    /// No signature, and the policy refuses unsigned modules.
    #[error(
        "{module} is not signed, and this deployment's trust policy refuses unsigned modules: sign it \
         (`idplex connector sign FILE.wasm --key NAME.idplex-key`) with a key this deployment trusts \
         (`idplex connector trust add NAME.idplex-pub`), or allow unsigned modules \
         (`idplex connector trust policy --unsigned allow`)"
    )]
    Unsigned { module: String },
    /// A valid signature by a key the deployment does not trust, and the policy refuses those.
    #[error(
        "{module} is signed by a key this deployment does not trust (fingerprint {fingerprint}, publisher \
         claimed {publisher:?}): trust the publisher's key (`idplex connector trust add {publisher}.idplex-pub`), \
         or allow modules signed by untrusted keys (`idplex connector trust policy --untrusted allow`)"
    )]
    UntrustedKey { module: String, publisher: String, fingerprint: String },
    /// The signature does not verify over these bytes: the bytes changed after signing, or it
    /// was made for other bytes, or by another key. Refused whatever the policy says.
    #[error("the signature of {module} does not match the module: {detail}; refused whatever the trust policy says")]
    SignatureInvalid { module: String, detail: String },
    /// A valid signature made for another connector name or version. Refused whatever the
    /// policy says.
    #[error(
        "the signature of {module} was made for {signed}, not for this module ({module}); refused whatever \
         the trust policy says: sign this build"
    )]
    WrongModule { module: String, signed: String },
    /// The `idplex-signature` section is not one well-formed last section. Refused whatever the
    /// policy says.
    #[error("the {SIGNATURE_SECTION} section of {module} is malformed: {detail}; refused whatever the trust policy says")]
    Malformed { module: String, detail: String },
}

impl TrustRefusal {
    /// A short, stable name of the refusal.
    pub fn kind(&self) -> &'static str {
        match self {
            TrustRefusal::Unsigned { .. } => "unsigned_module",
            TrustRefusal::UntrustedKey { .. } => "untrusted_publisher",
            TrustRefusal::SignatureInvalid { .. } => "signature_invalid",
            TrustRefusal::WrongModule { .. } => "signature_wrong_module",
            TrustRefusal::Malformed { .. } => "signature_malformed",
        }
    }
}

/// The payload of the `idplex-signature` section (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignaturePayload {
    /// Format version: 1.
    pub v: u32,
    /// The publisher's name, as the signer claims it (covered by the signature).
    pub publisher: String,
    /// The raw 32-byte Ed25519 public key, base64.
    pub key: String,
    /// The connector's name (its `describe`).
    pub name: String,
    /// The connector's version (its `describe`).
    pub version: String,
    /// Lowercase hex sha256 of the component without this section.
    pub sha256: String,
    /// The Ed25519 signature of [`signed_message`], base64.
    pub signature: String,
}

/// The message a publisher signs for `name@version` with bytes hashing to `sha256`.
pub fn signed_message(publisher: &str, name: &str, version: &str, sha256: &str) -> Vec<u8> {
    format!("{SIGNATURE_DOMAIN}\n{publisher}\n{name}@{version}\n{sha256}").into_bytes()
}

/// The fingerprint of a raw Ed25519 public key: the first 16 hex digits of its sha256.
pub fn fingerprint(raw_public_key: &[u8]) -> String {
    hex::encode(Sha256::digest(raw_public_key))[..16].to_string()
}

/// Whether `name` is a usable publisher name: 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with a
/// letter or digit (it names the key files).
pub fn check_publisher_name(name: &str) -> Result<(), HubError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(HubError::Invalid {
            what: "publisher name",
            reason: format!("{name:?} must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit"),
        })
    }
}

fn invalid_key(reason: impl Into<String>) -> HubError {
    HubError::Invalid { what: "publisher key", reason: reason.into() }
}

/// A publisher's Ed25519 public key and name: one line of a `NAME.idplex-pub` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherPublicKey {
    /// The publisher's name.
    pub publisher: String,
    /// The raw 32-byte public key.
    pub key: [u8; 32],
}

impl PublisherPublicKey {
    /// The key's fingerprint ([`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.key)
    }

    /// `idplex-ed25519 <base64> <publisher>`.
    pub fn line(&self) -> String {
        format!("{PUBLIC_KEY_TAG} {} {}", B64.encode(self.key), self.publisher)
    }

    /// Parses a public key line (surrounding blank lines and whitespace ignored; exactly one
    /// key).
    pub fn parse(text: &str) -> Result<PublisherPublicKey, HubError> {
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        let [line] = lines.as_slice() else {
            return Err(invalid_key(format!(
                "expected one line `{PUBLIC_KEY_TAG} <base64 key> <publisher>` (a NAME.idplex-pub file), found {} lines",
                lines.len()
            )));
        };
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [tag, key, publisher] = parts.as_slice() else {
            return Err(invalid_key(format!("expected `{PUBLIC_KEY_TAG} <base64 key> <publisher>`, found {} words", parts.len())));
        };
        if *tag != PUBLIC_KEY_TAG {
            return Err(invalid_key(format!("expected a line starting with `{PUBLIC_KEY_TAG}`, not {tag:?}")));
        }
        check_publisher_name(publisher)?;
        let key = decode_public_key(key).map_err(invalid_key)?;
        Ok(PublisherPublicKey { publisher: (*publisher).to_string(), key })
    }
}

fn decode_public_key(b64: &str) -> Result<[u8; 32], String> {
    let raw = B64.decode(b64).map_err(|e| format!("the key is not base64: {e}"))?;
    <[u8; 32]>::try_from(raw.as_slice())
        .map_err(|_| format!("an Ed25519 public key is 32 bytes, this one is {}", raw.len()))
}

/// A publisher's signing key (Ed25519). Its private half is never displayed: `Debug` shows the
/// fingerprint only.
pub struct PublisherKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for PublisherKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherKey").field("fingerprint", &self.fingerprint()).finish_non_exhaustive()
    }
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

impl PublisherKey {
    /// A new key pair from the system's secure random generator, and its PKCS#8 document as the
    /// text of a `NAME.idplex-key` file (PEM). Write that text to a file only its owner reads.
    pub fn generate() -> Result<(PublisherKey, String), HubError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| invalid_key("the system random generator failed"))?;
        let key = PublisherKey::from_pkcs8(pkcs8.as_ref())?;
        let b64 = B64.encode(pkcs8.as_ref());
        let mut pem = String::from(PEM_BEGIN);
        pem.push('\n');
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        Ok((key, pem))
    }

    /// The key of a PKCS#8 v1 or v2 document (DER).
    pub fn from_pkcs8(der: &[u8]) -> Result<PublisherKey, HubError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| invalid_key(format!("not an Ed25519 PKCS#8 private key ({e})")))?;
        Ok(PublisherKey { pair })
    }

    /// The key of a `NAME.idplex-key` file: PEM `PRIVATE KEY` (what `idplex connector keygen`
    /// writes) or raw DER.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<PublisherKey, HubError> {
        if bytes.first() == Some(&0x30) {
            return PublisherKey::from_pkcs8(bytes);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| invalid_key("the key file is neither PEM nor DER"))?;
        let body = text
            .trim()
            .strip_prefix(PEM_BEGIN)
            .and_then(|rest| rest.trim_end().strip_suffix(PEM_END))
            .ok_or_else(|| invalid_key(format!("the key file is not a PEM `PRIVATE KEY` ({PEM_BEGIN} … {PEM_END})")))?;
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = B64.decode(b64).map_err(|_| invalid_key("the PEM body is not base64"))?;
        PublisherKey::from_pkcs8(&der)
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.pair.public_key().as_ref());
        raw
    }

    /// The public key's fingerprint ([`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        fingerprint(self.pair.public_key().as_ref())
    }

    /// The public half, under `publisher`.
    pub fn public(&self, publisher: &str) -> PublisherPublicKey {
        PublisherPublicKey { publisher: publisher.to_string(), key: self.public_key() }
    }
}

/// One top-level section of a WebAssembly binary (module or component): its id and where it
/// starts (the id byte) and ends; for a custom section, its name and payload.
struct SectionSpan<'a> {
    start: usize,
    end: usize,
    custom: Option<(&'a str, &'a [u8])>,
}

/// Reads an unsigned LEB128 `u32` at `*at`, advancing it.
fn read_u32(bytes: &[u8], at: &mut usize) -> Result<u32, String> {
    let mut value: u64 = 0;
    for i in 0..5 {
        let b = *bytes.get(*at).ok_or("truncated LEB128 number")?;
        *at += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(value).map_err(|_| "LEB128 number out of range".to_string());
        }
    }
    Err("LEB128 number too long".into())
}

/// The top-level sections of a WebAssembly binary (nested modules and components are inside
/// their section, not listed). Only the framing is read: the runtime validates the rest.
fn top_level_sections(bytes: &[u8]) -> Result<Vec<SectionSpan<'_>>, String> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err("not a WebAssembly binary".into());
    }
    let mut sections = Vec::new();
    let mut at = 8;
    while at < bytes.len() {
        let start = at;
        let id = bytes[at];
        at += 1;
        let size = read_u32(bytes, &mut at)? as usize;
        let end = at.checked_add(size).filter(|&e| e <= bytes.len()).ok_or("a section runs past the end")?;
        let custom = if id == 0 {
            let mut p = at;
            let len = read_u32(bytes, &mut p)? as usize;
            let name_end = p.checked_add(len).filter(|&e| e <= end).ok_or("a custom section name runs past its section")?;
            let name = std::str::from_utf8(&bytes[p..name_end]).map_err(|_| "a custom section name is not UTF-8")?;
            Some((name, &bytes[name_end..end]))
        } else {
            None
        };
        sections.push(SectionSpan { start, end, custom });
        at = end;
    }
    Ok(sections)
}

/// The `idplex-signature` section of `bytes`, if any: where it starts and its payload. More
/// than one, or one that is not the last section, is malformed.
fn find_signature(bytes: &[u8]) -> Result<Option<(usize, &[u8])>, String> {
    let sections = top_level_sections(bytes)?;
    let signatures: Vec<&SectionSpan<'_>> =
        sections.iter().filter(|s| s.custom.is_some_and(|(name, _)| name == SIGNATURE_SECTION)).collect();
    match signatures.as_slice() {
        [] => Ok(None),
        [one] if one.end == bytes.len() => Ok(Some((one.start, one.custom.map_or(&[][..], |(_, data)| data)))),
        [_] => Err("it is not the last section: bytes were added after the module was signed".into()),
        many => Err(format!("the module carries {} of them; a signed module carries exactly one, at the end", many.len())),
    }
}

/// `bytes` without their signature section (as they are when they carry none); an error if
/// the section is malformed.
pub fn strip_signature(bytes: &[u8]) -> Result<&[u8], String> {
    Ok(match find_signature(bytes)? {
        Some((start, _)) => &bytes[..start],
        None => bytes,
    })
}

/// The custom section `idplex-signature` with `payload`, encoded (id, size, name, payload).
fn encode_section(payload: &[u8]) -> Vec<u8> {
    fn leb(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut content = Vec::with_capacity(payload.len() + 32);
    leb(SIGNATURE_SECTION.len(), &mut content);
    content.extend_from_slice(SIGNATURE_SECTION.as_bytes());
    content.extend_from_slice(payload);
    let mut out = vec![0u8];
    leb(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

/// `component` (a component without a signature section) with a signature by `key` for
/// `name@version` under `publisher` appended as its last section. The caller vouches for
/// `name@version` ([`sign_module`] takes them from the component's `describe`).
pub fn append_signature(component: &[u8], key: &PublisherKey, publisher: &str, name: &str, version: &str) -> Vec<u8> {
    let sha256 = hex::encode(Sha256::digest(component));
    let signature = key.pair.sign(&signed_message(publisher, name, version, &sha256));
    let payload = SignaturePayload {
        v: 1,
        publisher: publisher.to_string(),
        key: B64.encode(key.public_key()),
        name: name.to_string(),
        version: version.to_string(),
        sha256,
        signature: B64.encode(signature.as_ref()),
    };
    let json = serde_json::to_vec(&payload).unwrap_or_default();
    let mut out = Vec::with_capacity(component.len() + json.len() + 32);
    out.extend_from_slice(component);
    out.extend_from_slice(&encode_section(&json));
    out
}

/// A signature that verified ([`verify_signature`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// The publisher's name as the signature claims it (only a trusted key vouches for it).
    pub publisher: String,
    /// The raw public key that signed.
    pub key: [u8; 32],
    /// Its fingerprint.
    pub fingerprint: String,
    /// sha256 of the component without the signature section.
    pub unsigned_sha256: String,
}

/// Verifies the signature `component` carries, if any, for the connector `name@version` (what
/// the component's `describe` said): `None` when it carries none; a refusal when the section is
/// malformed, the bytes are not those signed, the signature does not verify, or it was made for
/// another name or version.
pub fn verify_signature(component: &[u8], name: &str, version: &str) -> Result<Option<VerifiedSignature>, TrustRefusal> {
    let module = format!("{name}@{version}");
    let malformed = |detail: String| TrustRefusal::Malformed { module: module.clone(), detail };
    let Some((start, payload)) = find_signature(component).map_err(malformed)? else {
        return Ok(None);
    };
    if payload.len() > MAX_SIGNATURE_PAYLOAD {
        return Err(malformed(format!("{} bytes; at most {MAX_SIGNATURE_PAYLOAD}", payload.len())));
    }
    let p: SignaturePayload =
        serde_json::from_slice(payload).map_err(|e| malformed(format!("not the expected JSON: {e}")))?;
    if p.v != 1 {
        return Err(malformed(format!("format version {} is unknown (this idplex reads version 1)", p.v)));
    }
    let key = decode_public_key(&p.key).map_err(malformed)?;
    let signature = B64.decode(&p.signature).map_err(|e| malformed(format!("the signature is not base64: {e}")))?;
    let fp = fingerprint(&key);
    let actual = hex::encode(Sha256::digest(&component[..start]));
    if p.sha256 != actual {
        return Err(TrustRefusal::SignatureInvalid {
            module,
            detail: format!(
                "it was made for bytes with sha256 {}, these bytes (without the signature) have sha256 {actual}: \
                 the module was changed after it was signed, or the signature was taken from another module",
                p.sha256
            ),
        });
    }
    UnparsedPublicKey::new(&ED25519, &key)
        .verify(&signed_message(&p.publisher, &p.name, &p.version, &p.sha256), &signature)
        .map_err(|_| TrustRefusal::SignatureInvalid {
            module: module.clone(),
            detail: format!("the Ed25519 signature does not verify with the key it names (fingerprint {fp})"),
        })?;
    if p.name != name || p.version != version {
        return Err(TrustRefusal::WrongModule { module, signed: format!("{}@{}", p.name, p.version) });
    }
    Ok(Some(VerifiedSignature { publisher: p.publisher, key, fingerprint: fp, unsigned_sha256: actual }))
}

/// Whether `hash` is that of a first-party connector bundled in this binary.
pub fn is_first_party(hash: &ModuleHash) -> bool {
    static BUNDLED: std::sync::OnceLock<Vec<ModuleHash>> = std::sync::OnceLock::new();
    BUNDLED
        .get_or_init(|| idplex_bundled::FIRST_PARTY.iter().map(|b| ModuleHash::of(b.component)).collect())
        .contains(hash)
}

/// The record of a bundled first-party connector.
pub fn first_party_publisher() -> ModulePublisher {
    ModulePublisher { admitted_as: Admission::FirstParty, publisher: Some(FIRST_PARTY_PUBLISHER.into()), fingerprint: None }
}

/// A module signed by [`sign_module`].
#[derive(Debug, Clone, Serialize)]
pub struct SignedModule {
    /// The signed component (write it out; install it as it is).
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// The connector's name, from its `describe`.
    pub name: String,
    /// The connector's version, from its `describe`.
    pub version: String,
    /// sha256 of the component without the signature (what the signature covers).
    pub unsigned_sha256: String,
    /// sha256 of the signed component (the content address idplex will store it under).
    pub sha256: String,
    /// The publisher named in the signature.
    pub publisher: String,
    /// The signing key's fingerprint.
    pub fingerprint: String,
    /// The input was a core module, componentized before signing.
    pub componentized: bool,
    /// The input carried a signature, replaced by this one.
    pub replaced_signature: bool,
}

/// A private, temporary compiled-artifact cache, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<ScratchDir, HubError> {
        let mut raw = [0u8; 8];
        ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut raw).map_err(|_| HubError::Invalid {
            what: "signing",
            reason: "the system random generator failed".into(),
        })?;
        let dir = std::env::temp_dir().join(format!("idplex-sign-{}-{}", std::process::id(), hex::encode(raw)));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(|e| HubError::Invalid {
            what: "signing",
            reason: format!("cannot create a scratch directory {}: {e}", dir.display()),
        })?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Signs a connector module for publishing: the runtime validates it as an install would
/// (a core module with WIT metadata is componentized first: the signature covers the component
/// idplex stores) and `describe` gives its name and version; an earlier signature is replaced;
/// the signature by `key` under `publisher` is appended as the last section. Needs no database
/// (a temporary compiled-artifact cache is used and removed).
pub async fn sign_module(bytes: &[u8], key: &PublisherKey, publisher: &str) -> Result<SignedModule, HubError> {
    check_publisher_name(publisher)?;
    let scratch = ScratchDir::new()?;
    let runtime = Runtime::new(RuntimeConfig { max_concurrent_instances: 8, ..RuntimeConfig::new(&scratch.0) })
        .map_err(|e| HubError::Invalid { what: "signing", reason: format!("cannot start the connector runtime: {e:#}") })?;
    let loaded: LoadedConnector = runtime.install(bytes).await?;
    let component = loaded.component_bytes();
    let componentized = !is_component(bytes);
    let unsigned = strip_signature(component).map_err(|detail| HubError::Invalid {
        what: "module to sign",
        reason: format!("its {SIGNATURE_SECTION} section is malformed ({detail}); sign the unsigned build"),
    })?;
    let replaced_signature = unsigned.len() != component.len();
    let info = loaded.info();
    let signed = append_signature(unsigned, key, publisher, &info.name, &info.version);
    Ok(SignedModule {
        name: info.name.clone(),
        version: info.version.clone(),
        unsigned_sha256: hex::encode(Sha256::digest(unsigned)),
        sha256: hex::encode(Sha256::digest(&signed)),
        publisher: publisher.to_string(),
        fingerprint: key.fingerprint(),
        componentized,
        replaced_signature,
        bytes: signed,
    })
}

/// Whether `bytes` are a component (rather than a core module): the layer field of the header.
fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[..4] == b"\0asm" && bytes[6..8] == [1, 0]
}

impl Hub {
    /// Judges a module the runtime validated and described, before it is stored: who published
    /// it, or why the deployment refuses it ([`HubError::Trust`]). `upload` are the bytes as
    /// sent (a core module is judged by the component made of it: it carries no signature).
    pub(crate) async fn judge(&self, upload: &[u8], loaded: &LoadedConnector) -> Result<ModulePublisher, HubError> {
        if is_first_party(loaded.hash()) {
            return Ok(first_party_publisher());
        }
        let info = loaded.info();
        let module = format!("{}@{}", info.name, info.version);
        if !is_component(upload) && find_signature(upload).is_ok_and(|s| s.is_some()) {
            return Err(TrustRefusal::Malformed {
                module,
                detail: "it is in a core module; sign the component (`idplex connector sign` componentizes a core module first)"
                    .into(),
            }
            .into());
        }
        let verified = verify_signature(loaded.component_bytes(), &info.name, &info.version)?;
        let policy = self.store.trust_policy().await?;
        let Some(sig) = verified else {
            if policy.unsigned == TrustRule::Allow {
                return Ok(ModulePublisher { admitted_as: Admission::Unsigned, publisher: None, fingerprint: None });
            }
            return Err(TrustRefusal::Unsigned { module }.into());
        };
        let trusted = self.store.trusted_key(&sig.fingerprint).await?;
        match trusted {
            Some(k) if k.public_key == B64.encode(sig.key) => Ok(ModulePublisher {
                admitted_as: Admission::Trusted,
                publisher: Some(k.publisher),
                fingerprint: Some(sig.fingerprint),
            }),
            _ if policy.untrusted == TrustRule::Allow => Ok(ModulePublisher {
                admitted_as: Admission::Untrusted,
                publisher: Some(sig.publisher),
                fingerprint: Some(sig.fingerprint),
            }),
            _ => Err(TrustRefusal::UntrustedKey { module, publisher: sig.publisher, fingerprint: sig.fingerprint }.into()),
        }
    }

    /// Records a change of the trust configuration as an event (no connection: never coalesced),
    /// the deployment's audit trail of it (`idplex events`).
    async fn audit_trust(&self, kind: &str, message: String) {
        let event = NewEvent {
            at: None,
            connection_id: None,
            connector: "trust".into(),
            kind: EventKind::Other(kind.into()),
            message,
        };
        if let Err(e) = self.store.record_event(&event).await {
            tracing::error!(error = %e, "could not record a trust change");
        }
    }

    /// The deployment's trust policy (refuse both until set).
    pub async fn trust_policy(&self) -> Result<TrustPolicy, HubError> {
        Ok(self.store.trust_policy().await?)
    }

    /// Sets the parts of the trust policy given (`None` keeps one as it is) and answers the
    /// policy in force. Audited.
    pub async fn set_trust_policy(
        &self,
        unsigned: Option<TrustRule>,
        untrusted: Option<TrustRule>,
        actor: &str,
    ) -> Result<TrustPolicy, HubError> {
        if unsigned.is_none() && untrusted.is_none() {
            return self.trust_policy().await;
        }
        let policy = self.store.set_trust_policy(unsigned, untrusted, actor).await?;
        tracing::info!(unsigned = %policy.unsigned, untrusted = %policy.untrusted, actor, "connector trust policy set");
        self.audit_trust(
            "trust_policy_set",
            format!("{actor} set the trust policy: unsigned modules {}, untrusted keys {}", policy.unsigned, policy.untrusted),
        )
        .await;
        Ok(policy)
    }

    /// The trusted publisher keys, oldest first.
    pub async fn trusted_keys(&self) -> Result<Vec<TrustedKey>, HubError> {
        Ok(self.store.trusted_keys().await?)
    }

    /// Trusts the publisher key of a public key line (`NAME.idplex-pub`); answers its record and
    /// whether it is new (a key already trusted is not an error). Audited.
    pub async fn trust_publisher_key(&self, public_key_line: &str, actor: &str) -> Result<(TrustedKey, bool), HubError> {
        let key = PublisherPublicKey::parse(public_key_line)?;
        let (record, added) = self
            .store
            .add_trusted_key(&NewTrustedKey {
                fingerprint: key.fingerprint(),
                publisher: key.publisher.clone(),
                public_key: B64.encode(key.key),
                added_by: actor.to_string(),
            })
            .await?;
        if added {
            tracing::info!(fingerprint = %record.fingerprint, publisher = %record.publisher, actor, "publisher key trusted");
            self.audit_trust(
                "trust_key_added",
                format!("{actor} trusted the key {} of publisher {}", record.fingerprint, record.publisher),
            )
            .await;
        }
        Ok((record, added))
    }

    /// Stops trusting the key with this fingerprint (not found if it was not trusted). Modules
    /// it signed stay installed; later installs of modules it signs are judged untrusted.
    /// Audited.
    pub async fn untrust_publisher_key(&self, fingerprint: &str, actor: &str) -> Result<TrustedKey, HubError> {
        let fingerprint = fingerprint.trim().to_ascii_lowercase();
        let record = self.store.remove_trusted_key(&fingerprint).await?;
        tracing::info!(fingerprint = %record.fingerprint, publisher = %record.publisher, actor, "publisher key no longer trusted");
        self.audit_trust(
            "trust_key_removed",
            format!("{actor} stopped trusting the key {} of publisher {}", record.fingerprint, record.publisher),
        )
        .await;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_lines_round_trip_and_refuse_junk() {
        let (key, pem) = PublisherKey::generate().unwrap();
        assert_eq!(PublisherKey::from_file_bytes(pem.as_bytes()).unwrap().public_key(), key.public_key());
        let public = key.public("acme");
        assert_eq!(PublisherPublicKey::parse(&format!("\n{}\n", public.line())).unwrap(), public);
        assert_eq!(public.fingerprint().len(), 16);
        for bad in ["", "idplex-ed25519 AAAA acme", "ssh-ed25519 AAAA acme", "idplex-ed25519 !!! acme", "a\nb"] {
            assert!(PublisherPublicKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(!format!("{key:?}").contains(&pem[30..60]), "Debug shows no private key material");
    }

    #[test]
    fn sections_are_framed_and_the_signature_must_be_last_and_single() {
        // An empty component: header only.
        let empty = b"\0asm\x0d\x00\x01\x00".to_vec();
        let (key, _) = PublisherKey::generate().unwrap();
        let signed = append_signature(&empty, &key, "acme", "x", "1.0.0");
        let v = verify_signature(&signed, "x", "1.0.0").unwrap().unwrap();
        assert_eq!(v.fingerprint, key.fingerprint());
        assert_eq!(strip_signature(&signed).unwrap(), &empty[..]);
        assert!(matches!(verify_signature(&signed, "y", "1.0.0"), Err(TrustRefusal::WrongModule { .. })));
        let twice = append_signature(&signed, &key, "acme", "x", "1.0.0");
        assert!(matches!(verify_signature(&twice, "x", "1.0.0"), Err(TrustRefusal::Malformed { .. })));
        let mut trailing = signed.clone();
        trailing.extend_from_slice(&[0, 2, 1, b'z']);
        assert!(matches!(verify_signature(&trailing, "x", "1.0.0"), Err(TrustRefusal::Malformed { .. })));
        assert_eq!(verify_signature(&empty, "x", "1.0.0").unwrap(), None);
    }
}
