//! An IdP's signing certificate, as an admin configured it (PEM, or the base64 DER of a
//! metadata `<ds:X509Certificate>`): the only source of keys signatures are checked with. A key
//! sent inside a message (`<ds:KeyInfo>`) is never used.
//!
//! Accepted keys: RSA of 2048 to 8192 bits, ECDSA on P-256 or P-384. The certificate's validity
//! dates are reported (an admin sees a certificate about to expire) but do not gate
//! verification: SAML pins keys, and IdPs commonly sign with long-expired self-signed
//! certificates whose key is what was configured.

use base64::Engine as _;
use sha2::Digest as _;

use crate::{SamlError, SamlErrorCode};

/// Largest certificate accepted (DER bytes).
pub const MAX_CERTIFICATE_BYTES: usize = 16 << 10;

/// The public key of a configured certificate, in the form `ring` verifies with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// An RSA key (PKCS#1 `RSAPublicKey` DER) and its size in bits.
    Rsa { pkcs1: Vec<u8>, bits: usize },
    /// A P-256 point (uncompressed SEC1).
    EcP256(Vec<u8>),
    /// A P-384 point (uncompressed SEC1).
    EcP384(Vec<u8>),
}

/// A parsed signing certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    key: PublicKey,
    subject: String,
    not_before: i64,
    not_after: i64,
    fingerprint: String,
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

fn invalid(detail: impl Into<String>) -> SamlError {
    SamlError::new(SamlErrorCode::CertificateInvalid, detail)
}

impl Certificate {
    /// A certificate from its DER bytes.
    pub fn from_der(der: &[u8]) -> Result<Certificate, SamlError> {
        if der.len() > MAX_CERTIFICATE_BYTES {
            return Err(SamlError::new(
                SamlErrorCode::TooLarge,
                format!("certificate of {} bytes, over the limit of {MAX_CERTIFICATE_BYTES}", der.len()),
            ));
        }
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| invalid(format!("not an X.509 certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(invalid("trailing bytes after the certificate"));
        }
        let spki = cert.public_key();
        let algorithm = spki.algorithm.algorithm.to_id_string();
        let data = spki.subject_public_key.data.to_vec();
        let key = match algorithm.as_str() {
            OID_RSA => {
                let bits = match spki.parsed() {
                    Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
                    _ => return Err(invalid("unreadable RSA public key")),
                };
                if !(2048..=8192).contains(&bits) {
                    return Err(invalid(format!("RSA key of {bits} bits; 2048 to 8192 bits are accepted")));
                }
                PublicKey::Rsa { pkcs1: data, bits }
            }
            OID_EC => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_default();
                match curve.as_str() {
                    OID_P256 => PublicKey::EcP256(data),
                    OID_P384 => PublicKey::EcP384(data),
                    other => return Err(invalid(format!("EC key on curve {other:?}; P-256 and P-384 are accepted"))),
                }
            }
            other => return Err(invalid(format!("key algorithm {other}; RSA and ECDSA are accepted"))),
        };
        let validity = cert.validity();
        Ok(Certificate {
            der: der.to_vec(),
            key,
            subject: cert.subject().to_string(),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            fingerprint: hex_colon(&sha2::Sha256::digest(der)),
        })
    }

    /// A certificate as an admin pastes it: PEM (`-----BEGIN CERTIFICATE-----`), or the bare
    /// base64 of its DER (as in metadata), whitespace ignored.
    pub fn from_text(text: &str) -> Result<Certificate, SamlError> {
        let text = text.trim();
        let body = match text.strip_prefix("-----BEGIN CERTIFICATE-----") {
            Some(rest) => rest
                .split_once("-----END CERTIFICATE-----")
                .map(|(body, _)| body)
                .ok_or_else(|| invalid("PEM without an END CERTIFICATE line"))?,
            None => text,
        };
        let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        if compact.len() > MAX_CERTIFICATE_BYTES * 4 / 3 + 4 {
            return Err(SamlError::new(SamlErrorCode::TooLarge, "certificate text over the size limit"));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|e| invalid(format!("certificate is neither PEM nor base64 DER: {e}")))?;
        Certificate::from_der(&der)
    }

    /// The key signatures are checked with.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The base64 of the DER, as metadata and storage carry it.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.der)
    }

    /// The subject's distinguished name, for display.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Validity start, Unix seconds (display only).
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// Validity end, Unix seconds (display only: see the module docs).
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// SHA-256 fingerprint of the DER, `AB:CD:…`, for an admin to compare with the IdP's.
    pub fn fingerprint_sha256(&self) -> &str {
        &self.fingerprint
    }
}

fn hex_colon(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}
