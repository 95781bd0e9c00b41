//! Verification of ONE enveloped XML-DSig `<ds:Signature>`, and exactly which element it covers.
//!
//! The only shape accepted is the one SAML uses, and every deviation is refused rather than
//! interpreted:
//! * the Signature is a direct child of the element it signs (its *parent*); `SignedInfo`,
//!   `SignatureValue` and an optional `KeyInfo` are its only children, in that order (no
//!   `ds:Object`);
//! * `SignedInfo` holds `CanonicalizationMethod`, `SignatureMethod` and exactly one `Reference`
//!   (several references or several `SignedInfo`s: [`SamlErrorCode::ReferenceInvalid`]);
//! * the Reference's `URI` is `#` + the parent's `ID`, and no other element of the document
//!   carries that ID (as `ID`, `Id`, `id` or `xml:id`): no empty URI (whole document), no
//!   XPointer, no reference to a sibling or a copy;
//! * its transforms are exactly enveloped-signature then exclusive c14n (optionally with an
//!   `InclusiveNamespaces PrefixList`). Exclusive c14n alone is refused too: the Signature sits
//!   inside what it signs, so without the enveloped transform the digest could never match;
//! * algorithms on the allow-list only ([`SignatureAlgorithm`], [`DigestAlgorithm`],
//!   canonicalization [`crate::c14n::EXC_C14N`] without comments): SHA-1 (digest or signature),
//!   DSA, HMAC (a public key must never act as a MAC key), inclusive or with-comments c14n,
//!   XPath/XSLT transforms are [`SamlErrorCode::AlgorithmForbidden`];
//! * `DigestValue` and `SignatureValue` are read as their full text and must be plain base64
//!   text: a comment or element inside them is refused (the xml-crypto comment-in-DigestValue
//!   class), never skipped;
//! * keys come only from the configured certificates (any one verifying is enough: key
//!   rollover). `<ds:KeyInfo>` is never read: a certificate an attacker puts there changes
//!   nothing. No configured certificate: [`SamlErrorCode::NoCertificate`], before anything else.
//!
//! The digest is over the exclusive canonical form of the parent with this Signature left out;
//! the signature value is over the exclusive canonical form of `SignedInfo` in its document
//! context. Cryptography is `ring`'s: RSA PKCS#1 v1.5 (2048–8192-bit keys) with SHA-256/384/512,
//! ECDSA P-256/SHA-256 and P-384/SHA-384 with XML-DSig's fixed-length `r || s` signatures.

use roxmltree::Node;

use crate::c14n::{self, EXC_C14N, EXC_C14N_WITH_COMMENTS};
use crate::cert::{Certificate, PublicKey};
use crate::xml::{self, decode_base64, plain_text};
use crate::{NS_DSIG, SamlError, SamlErrorCode};

/// Transform URI of the enveloped-signature transform.
pub const ENVELOPED_SIGNATURE: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// A digest algorithm on the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    /// `http://www.w3.org/2001/04/xmlenc#sha256`
    Sha256,
    /// `http://www.w3.org/2001/04/xmldsig-more#sha384`
    Sha384,
    /// `http://www.w3.org/2001/04/xmlenc#sha512`
    Sha512,
}

impl DigestAlgorithm {
    /// The algorithm of a `DigestMethod Algorithm` URI; anything else (SHA-1 included) is
    /// [`SamlErrorCode::AlgorithmForbidden`].
    pub fn from_uri(uri: &str) -> Result<DigestAlgorithm, SamlError> {
        match uri {
            "http://www.w3.org/2001/04/xmlenc#sha256" => Ok(DigestAlgorithm::Sha256),
            "http://www.w3.org/2001/04/xmldsig-more#sha384" => Ok(DigestAlgorithm::Sha384),
            "http://www.w3.org/2001/04/xmlenc#sha512" => Ok(DigestAlgorithm::Sha512),
            "http://www.w3.org/2000/09/xmldsig#sha1" => Err(forbidden(
                "the Reference uses the SHA-1 digest, which is refused; configure the IdP to use SHA-256",
            )),
            other => Err(forbidden(format!(
                "digest algorithm {} is not accepted (SHA-256, SHA-384 and SHA-512 are)",
                SamlError::shown(other)
            ))),
        }
    }

    fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            DigestAlgorithm::Sha256 => &ring::digest::SHA256,
            DigestAlgorithm::Sha384 => &ring::digest::SHA384,
            DigestAlgorithm::Sha512 => &ring::digest::SHA512,
        }
    }
}

/// A signature algorithm on the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// RSA PKCS#1 v1.5 with SHA-256 (`…xmldsig-more#rsa-sha256`).
    RsaSha256,
    /// RSA PKCS#1 v1.5 with SHA-384.
    RsaSha384,
    /// RSA PKCS#1 v1.5 with SHA-512.
    RsaSha512,
    /// ECDSA with SHA-256; verified with P-256 keys only.
    EcdsaSha256,
    /// ECDSA with SHA-384; verified with P-384 keys only.
    EcdsaSha384,
}

impl SignatureAlgorithm {
    /// The algorithm of a `SignatureMethod Algorithm` URI; anything else is
    /// [`SamlErrorCode::AlgorithmForbidden`].
    pub fn from_uri(uri: &str) -> Result<SignatureAlgorithm, SamlError> {
        const MORE: &str = "http://www.w3.org/2001/04/xmldsig-more#";
        const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
        if let Some(name) = uri.strip_prefix(MORE) {
            match name {
                "rsa-sha256" => return Ok(SignatureAlgorithm::RsaSha256),
                "rsa-sha384" => return Ok(SignatureAlgorithm::RsaSha384),
                "rsa-sha512" => return Ok(SignatureAlgorithm::RsaSha512),
                "ecdsa-sha256" => return Ok(SignatureAlgorithm::EcdsaSha256),
                "ecdsa-sha384" => return Ok(SignatureAlgorithm::EcdsaSha384),
                "ecdsa-sha512" => {
                    return Err(forbidden(
                        "ECDSA-SHA512 is not accepted (no supported curve pairs with SHA-512); use \
                         ECDSA-SHA256 with a P-256 key or ECDSA-SHA384 with a P-384 key",
                    ));
                }
                _ => {}
            }
        }
        let why = match uri.strip_prefix(DSIG).or_else(|| uri.strip_prefix(MORE)) {
            Some("rsa-sha1") => "RSA-SHA1 (SHA-1 is broken)",
            Some("dsa-sha1") => "DSA-SHA1",
            Some("ecdsa-sha1") => "ECDSA-SHA1 (SHA-1 is broken)",
            Some(n) if n.starts_with("hmac-") => "an HMAC (a shared-secret MAC, never accepted for SAML)",
            _ => "not on the allow-list",
        };
        Err(forbidden(format!(
            "signature algorithm {} is refused: {why}; configure the IdP to sign with RSA-SHA256 (or \
             RSA-SHA384/512, ECDSA-SHA256 on P-256, ECDSA-SHA384 on P-384)",
            SamlError::shown(uri)
        )))
    }

    fn name(self) -> &'static str {
        match self {
            SignatureAlgorithm::RsaSha256 => "RSA-SHA256",
            SignatureAlgorithm::RsaSha384 => "RSA-SHA384",
            SignatureAlgorithm::RsaSha512 => "RSA-SHA512",
            SignatureAlgorithm::EcdsaSha256 => "ECDSA-SHA256",
            SignatureAlgorithm::EcdsaSha384 => "ECDSA-SHA384",
        }
    }

    fn is_rsa(self) -> bool {
        matches!(self, SignatureAlgorithm::RsaSha256 | SignatureAlgorithm::RsaSha384 | SignatureAlgorithm::RsaSha512)
    }

    /// The `ring` algorithm for `key`, when this pair is supported.
    fn ring_for(self, key: &PublicKey) -> Option<(&'static dyn ring::signature::VerificationAlgorithm, &[u8])> {
        use ring::signature as sig;
        match (self, key) {
            (SignatureAlgorithm::RsaSha256, PublicKey::Rsa { pkcs1, .. }) => Some((&sig::RSA_PKCS1_2048_8192_SHA256, pkcs1)),
            (SignatureAlgorithm::RsaSha384, PublicKey::Rsa { pkcs1, .. }) => Some((&sig::RSA_PKCS1_2048_8192_SHA384, pkcs1)),
            (SignatureAlgorithm::RsaSha512, PublicKey::Rsa { pkcs1, .. }) => Some((&sig::RSA_PKCS1_2048_8192_SHA512, pkcs1)),
            (SignatureAlgorithm::EcdsaSha256, PublicKey::EcP256(point)) => Some((&sig::ECDSA_P256_SHA256_FIXED, point)),
            (SignatureAlgorithm::EcdsaSha384, PublicKey::EcP384(point)) => Some((&sig::ECDSA_P384_SHA384_FIXED, point)),
            _ => None,
        }
    }
}

/// A signature that verified, and what it covers.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedSignature<'a, 'input> {
    /// The element the signature covers: the Signature's parent, whose `ID` the one Reference
    /// names. Only this node (and what is inside it) is authenticated.
    pub signed: Node<'a, 'input>,
    /// The signed element's `ID`.
    pub signed_id: &'a str,
    /// The `SignatureMethod`.
    pub signature_algorithm: SignatureAlgorithm,
    /// The Reference's `DigestMethod`.
    pub digest_algorithm: DigestAlgorithm,
    /// Index, in the configured list, of the certificate whose key verified.
    pub certificate_index: usize,
}

fn forbidden(detail: impl Into<String>) -> SamlError {
    SamlError::new(SamlErrorCode::AlgorithmForbidden, detail)
}

fn reference_invalid(detail: impl Into<String>) -> SamlError {
    SamlError::new(SamlErrorCode::ReferenceInvalid, detail)
}

fn malformed(detail: impl Into<String>) -> SamlError {
    SamlError::new(SamlErrorCode::Malformed, detail)
}

/// The element children of `node`, which must be exactly the DSig elements `expected` (each
/// optional one marked `true`), in order. Anything else: `ReferenceInvalid`.
fn expect_children<'a, 'input>(
    node: Node<'a, 'input>,
    expected: &[(&'static str, bool)],
) -> Result<Vec<Option<Node<'a, 'input>>>, SamlError> {
    let parent = node.tag_name().name();
    let mut children = xml::elements(node).peekable();
    let mut found = Vec::with_capacity(expected.len());
    let mut previous: Option<&str> = None;
    for (local, optional) in expected {
        match children.peek() {
            Some(child) if xml::is(*child, NS_DSIG, local) => {
                found.push(Some(*child));
                children.next();
                previous = Some(local);
            }
            _ if *optional => found.push(None),
            Some(child) if previous.is_some_and(|p| xml::is(*child, NS_DSIG, p)) => {
                return Err(reference_invalid(format!(
                    "<ds:{parent}> contains more than one <ds:{}>; exactly one SignedInfo with exactly one \
                     Reference is accepted",
                    previous.unwrap_or_default()
                )));
            }
            _ => {
                return Err(reference_invalid(format!(
                    "<ds:{parent}> must contain one <ds:{local}> (in schema order); it does not"
                )));
            }
        }
    }
    if let Some(extra) = children.next() {
        let name = extra.tag_name().name();
        let why = if expected.iter().any(|(local, _)| *local == name) && extra.tag_name().namespace() == Some(NS_DSIG) {
            format!("more than one <ds:{name}>")
        } else {
            format!("an unexpected <{}>", SamlError::shown(name))
        };
        return Err(reference_invalid(format!(
            "<ds:{parent}> contains {why}; exactly one SignedInfo with exactly one Reference is accepted"
        )));
    }
    Ok(found)
}

/// The `Algorithm` attribute of a DSig method element.
fn algorithm<'a>(node: Node<'a, '_>) -> Result<&'a str, SamlError> {
    node.attribute("Algorithm")
        .ok_or_else(|| malformed(format!("<ds:{}> without an Algorithm attribute", node.tag_name().name())))
}

/// The `PrefixList` of an exclusive-c14n method element's optional `InclusiveNamespaces` child;
/// any other child is refused.
fn inclusive_prefixes<'a>(method: Node<'a, '_>) -> Result<Vec<&'a str>, SamlError> {
    let mut prefixes = Vec::new();
    let mut seen = false;
    for child in xml::elements(method) {
        if !xml::is(child, EXC_C14N, "InclusiveNamespaces") || seen {
            return Err(malformed(format!(
                "unexpected <{}> inside <ds:{}>",
                SamlError::shown(child.tag_name().name()),
                method.tag_name().name()
            )));
        }
        seen = true;
        prefixes = c14n::parse_prefix_list(child.attribute("PrefixList").unwrap_or(""));
    }
    Ok(prefixes)
}

fn no_element_children(node: Node<'_, '_>) -> Result<(), SamlError> {
    match xml::elements(node).next() {
        Some(child) => Err(malformed(format!(
            "unexpected <{}> inside <ds:{}>",
            SamlError::shown(child.tag_name().name()),
            node.tag_name().name()
        ))),
        None => Ok(()),
    }
}

/// The base64 content of `DigestValue` / `SignatureValue`: full text, plain text only.
fn base64_value(node: Node<'_, '_>) -> Result<Vec<u8>, SamlError> {
    let name = node.tag_name().name();
    let text = plain_text(node).map_err(|found| {
        malformed(format!("<ds:{name}> must be base64 text only; it contains {}", found.describe()))
    })?;
    decode_base64(&text).map_err(|e| malformed(format!("<ds:{name}> is not valid base64: {e}")))
}

/// Whether an element other than `except` carries `id` as an ID-like attribute.
fn id_used_elsewhere(doc_root: Node<'_, '_>, except: Node<'_, '_>, id: &str) -> bool {
    doc_root.descendants().filter(|n| n.is_element() && n.id() != except.id()).any(|n| {
        n.attributes().any(|a| {
            let id_like = match a.namespace() {
                None => matches!(a.name(), "ID" | "Id" | "id"),
                Some(ns) => ns == NS_XML && a.name() == "id",
            };
            id_like && a.value() == id
        })
    })
}

/// Verify the enveloped `signature` (a `<ds:Signature>` element) with the configured
/// `certificates`, and return the element it covers (its parent).
pub fn verify_enveloped<'a, 'input>(
    signature: Node<'a, 'input>,
    certificates: &[Certificate],
) -> Result<VerifiedSignature<'a, 'input>, SamlError> {
    if certificates.is_empty() {
        return Err(SamlError::new(
            SamlErrorCode::NoCertificate,
            "no signing certificate is configured for this IdP; nothing can be verified",
        ));
    }
    if !xml::is(signature, NS_DSIG, "Signature") {
        return Err(malformed("not a <ds:Signature> element"));
    }
    let signed = signature
        .parent_element()
        .ok_or_else(|| reference_invalid("the Signature is the document element; it must sit inside what it signs"))?;
    let signed_name = signed.tag_name().name();

    // Structure.
    let parts = expect_children(signature, &[("SignedInfo", false), ("SignatureValue", false), ("KeyInfo", true)])?;
    let (Some(signed_info), Some(signature_value)) = (parts[0], parts[1]) else {
        return Err(reference_invalid("<ds:Signature> without SignedInfo or SignatureValue"));
    };
    let info = expect_children(
        signed_info,
        &[("CanonicalizationMethod", false), ("SignatureMethod", false), ("Reference", false)],
    )?;
    let (Some(c14n_method), Some(signature_method), Some(reference)) = (info[0], info[1], info[2]) else {
        return Err(reference_invalid("<ds:SignedInfo> is incomplete"));
    };

    // Canonicalization of SignedInfo.
    let c14n_uri = algorithm(c14n_method)?;
    if c14n_uri != EXC_C14N {
        let why = if c14n_uri == EXC_C14N_WITH_COMMENTS { " (the with-comments variant)" } else { "" };
        return Err(forbidden(format!(
            "canonicalization {}{why} is refused; only exclusive c14n without comments ({EXC_C14N}) is accepted",
            SamlError::shown(c14n_uri)
        )));
    }
    let signed_info_prefixes = inclusive_prefixes(c14n_method)?;

    // Signature method.
    let signature_algorithm = SignatureAlgorithm::from_uri(algorithm(signature_method)?)?;
    no_element_children(signature_method)?;

    // The one Reference: to the parent, by an ID nothing else carries.
    let uri = reference
        .attribute("URI")
        .ok_or_else(|| reference_invalid("the Reference has no URI; it must be \"#\" + the ID of the signed element"))?;
    let signed_id = signed.attribute("ID").ok_or_else(|| {
        reference_invalid(format!("the signed <{signed_name}> has no ID attribute for the Reference to name"))
    })?;
    if uri.is_empty() {
        return Err(reference_invalid(
            "the Reference URI is \"\" (the whole document); it must be \"#\" + the ID of the element that \
             contains the Signature",
        ));
    }
    if uri.strip_prefix('#') != Some(signed_id) || signed_id.is_empty() {
        return Err(reference_invalid(format!(
            "the Reference URI {} does not name the <{signed_name}> that contains the Signature (ID {}); \
             a signature must cover the element it is in",
            SamlError::shown(uri),
            SamlError::shown(signed_id)
        )));
    }
    if id_used_elsewhere(signed.document().root(), signed, signed_id) {
        return Err(reference_invalid(format!(
            "the signed ID {} is carried by more than one element of the message",
            SamlError::shown(signed_id)
        )));
    }
    let parts = expect_children(reference, &[("Transforms", true), ("DigestMethod", false), ("DigestValue", false)])?;
    let (Some(digest_method), Some(digest_value)) = (parts[1], parts[2]) else {
        return Err(reference_invalid("<ds:Reference> without DigestMethod or DigestValue"));
    };
    let transforms: Vec<Node<'a, 'input>> = match parts[0] {
        Some(t) => {
            if let Some(other) = xml::elements(t).find(|n| !xml::is(*n, NS_DSIG, "Transform")) {
                return Err(reference_invalid(format!(
                    "unexpected <{}> inside <ds:Transforms>",
                    SamlError::shown(other.tag_name().name())
                )));
            }
            xml::elements(t).collect()
        }
        None => Vec::new(),
    };
    let mut algorithms = Vec::with_capacity(transforms.len());
    for transform in &transforms {
        let uri = algorithm(*transform)?;
        if uri != ENVELOPED_SIGNATURE && uri != EXC_C14N {
            return Err(forbidden(format!(
                "transform {} is refused; only enveloped-signature followed by exclusive c14n is accepted",
                SamlError::shown(uri)
            )));
        }
        algorithms.push(uri);
    }
    if algorithms != [ENVELOPED_SIGNATURE, EXC_C14N] {
        return Err(reference_invalid(format!(
            "the Reference's transforms are [{}]; exactly enveloped-signature then exclusive c14n is accepted",
            algorithms.join(", ")
        )));
    }
    no_element_children(transforms[0])?;
    let reference_prefixes = inclusive_prefixes(transforms[1])?;
    let digest_algorithm = DigestAlgorithm::from_uri(algorithm(digest_method)?)?;
    no_element_children(digest_method)?;

    // Values.
    let expected_digest = base64_value(digest_value)?;
    let signature_bytes = base64_value(signature_value)?;

    // Digest of the parent without this Signature.
    let canonical = c14n::canonicalize(signed, Some(signature), &reference_prefixes)?;
    let actual = ring::digest::digest(digest_algorithm.ring(), canonical.as_bytes());
    if actual.as_ref() != expected_digest.as_slice() {
        return Err(SamlError::new(
            SamlErrorCode::DigestMismatch,
            format!(
                "the digest of the signed <{signed_name}> (ID {}) does not match its Reference: the signed \
                 content was changed",
                SamlError::shown(signed_id)
            ),
        ));
    }

    // Signature over SignedInfo, with the configured keys only.
    if signature_bytes.is_empty() {
        return Err(SamlError::new(SamlErrorCode::SignatureInvalid, "the SignatureValue is empty"));
    }
    let signed_info_c14n = c14n::canonicalize(signed_info, None, &signed_info_prefixes)?;
    let mut usable = 0usize;
    let mut wrong_curve = false;
    for (index, certificate) in certificates.iter().enumerate() {
        let key = certificate.key();
        match signature_algorithm.ring_for(key) {
            Some((alg, key_bytes)) => {
                usable += 1;
                let public = ring::signature::UnparsedPublicKey::new(alg, key_bytes);
                if public.verify(signed_info_c14n.as_bytes(), &signature_bytes).is_ok() {
                    return Ok(VerifiedSignature {
                        signed,
                        signed_id,
                        signature_algorithm,
                        digest_algorithm,
                        certificate_index: index,
                    });
                }
            }
            None => {
                if !signature_algorithm.is_rsa() && matches!(key, PublicKey::EcP256(_) | PublicKey::EcP384(_)) {
                    wrong_curve = true;
                }
            }
        }
    }
    if usable == 0 && wrong_curve {
        return Err(forbidden(format!(
            "{} does not pair with the curve of any configured EC key (ECDSA-SHA256 needs P-256, ECDSA-SHA384 \
             needs P-384)",
            signature_algorithm.name()
        )));
    }
    let detail = if usable == 0 {
        format!(
            "signed with {}, but none of the {} configured certificate(s) has a key of that type: it does not \
             verify",
            signature_algorithm.name(),
            certificates.len()
        )
    } else {
        format!(
            "the {} signature of <{signed_name}> does not verify under any of the {} configured certificate(s) \
             (SHA-256 fingerprints: {}); the message was forged or altered, or the IdP signs with another key",
            signature_algorithm.name(),
            certificates.len(),
            certificates.iter().map(|c| c.fingerprint_sha256()).collect::<Vec<_>>().join(", ")
        )
    };
    Err(SamlError::new(SamlErrorCode::SignatureInvalid, detail))
}
