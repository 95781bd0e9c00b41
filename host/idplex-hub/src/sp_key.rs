//! The deployment's SAML SP signing key: what signs the AuthnRequests of the connections that
//! ask for it (`sign_authn_requests`), and the certificate SP metadata publishes so the IdP can
//! check them. One key for the deployment (every connection's metadata carries the same
//! certificate), generated here (RSA-2048 by the `rsa` crate, a self-signed certificate for ten
//! years by `rcgen`) or imported from the admin's own PKI; the private half is sealed with the
//! deployment's secrets key. A connection cannot sign without one (fail closed), and the key
//! cannot be removed, only replaced: the IdP then needs the new metadata.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use idplex_saml::authn_request::RedirectSigner;
use idplex_saml::cert::Certificate;
use idplex_store::SamlSpKey;
use serde::Serialize;

use crate::{Hub, HubError, now_ms};

const SEALED_NAME: &str = "saml.sp_signing_key";
/// How long a generated certificate is valid, in days.
pub const GENERATED_CERTIFICATE_DAYS: i64 = 3650;

/// The SP signing key as admins see it: its certificate (never the private key).
#[derive(Debug, Clone, Serialize)]
pub struct SpKeyView {
    pub id: String,
    pub subject: String,
    pub sha256_fingerprint: String,
    pub not_before: String,
    pub not_after: String,
    /// The certificate, PEM: what an IdP that does not read metadata is given.
    pub certificate_pem: String,
    pub created_at: String,
}

fn invalid(reason: impl Into<String>) -> HubError {
    HubError::Invalid { what: "SAML SP key", reason: reason.into() }
}

fn pem(der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn view(key: &SamlSpKey, cert: &Certificate) -> SpKeyView {
    SpKeyView {
        id: key.id.clone(),
        subject: cert.subject().to_owned(),
        sha256_fingerprint: cert.fingerprint_sha256().to_owned(),
        not_before: crate::rfc3339(cert.not_before().saturating_mul(1000)),
        not_after: crate::rfc3339(cert.not_after().saturating_mul(1000)),
        certificate_pem: pem(cert.der()),
        created_at: crate::rfc3339(key.created_at),
    }
}

/// A fresh RSA-2048 key (PKCS#8 DER) and a self-signed certificate for it (DER).
fn generate(common_name: &str) -> Result<(Vec<u8>, Vec<u8>), HubError> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| invalid(format!("key generation: {e}")))?;
    let pkcs8 = key.to_pkcs8_der().map_err(|e| invalid(format!("key encoding: {e}")))?.as_bytes().to_vec();
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_slice());
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| invalid(format!("key for the certificate: {e}")))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| invalid(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(GENERATED_CERTIFICATE_DAYS);
    let cert = params.self_signed(&pair).map_err(|e| invalid(format!("certificate: {e}")))?;
    Ok((pkcs8, cert.der().to_vec()))
}

/// The key checked to be the certificate's: a message signed with it verifies under the
/// certificate (so an IdP holding the certificate will accept what idplex signs).
fn check_pair(signer: &RedirectSigner, cert: &Certificate) -> Result<(), HubError> {
    let url = idplex_saml::authn_request::redirect_url("https://idplex.invalid/check", "<check/>", None, Some(signer))
        .map_err(|e| invalid(format!("the key cannot sign: {}", e.detail)))?;
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    idplex_saml::authn_request::verify_redirect_signature(query, cert)
        .map(|_| ())
        .map_err(|_| invalid("the private key does not belong to the certificate"))
}

impl Hub {
    /// The SP signing key, if one was set.
    pub async fn saml_sp_key(&self) -> Result<Option<SpKeyView>, HubError> {
        let Some(key) = self.store.saml_sp_key().await? else { return Ok(None) };
        let cert = Certificate::from_text(&key.certificate_der).map_err(|e| invalid(e.detail))?;
        Ok(Some(view(&key, &cert)))
    }

    /// Generates a new SP signing key and self-signed certificate (RSA-2048, RSA-SHA256, ten
    /// years), replacing the current one.
    pub async fn generate_saml_sp_key(&self) -> Result<SpKeyView, HubError> {
        let cn = format!("idplex SAML SP {}", self.public_url());
        let (pkcs8, cert_der) = tokio::task::spawn_blocking(move || generate(&cn))
            .await
            .map_err(|e| invalid(format!("key generation stopped: {e}")))??;
        self.store_sp_key(&pkcs8, &cert_der).await
    }

    /// Imports the admin's own SP signing key (PEM or DER; PKCS#8 or PKCS#1 RSA) and its
    /// certificate (PEM or base64 DER), replacing the current one. Refused: an unreadable or
    /// encrypted key, a certificate without an RSA key or too weak, a pair that does not match.
    pub async fn import_saml_sp_key(&self, key: &[u8], certificate: &str) -> Result<SpKeyView, HubError> {
        let signer = RedirectSigner::from_pkcs8_pem_or_der(key).map_err(|e| invalid(e.detail))?;
        let cert = Certificate::from_text(certificate).map_err(|e| invalid(format!("certificate: {}", e.detail)))?;
        check_pair(&signer, &cert)?;
        self.store_sp_key(key, cert.der()).await
    }

    async fn store_sp_key(&self, key: &[u8], cert_der: &[u8]) -> Result<SpKeyView, HubError> {
        let cert = Certificate::from_der(cert_der).map_err(|e| invalid(format!("certificate: {}", e.detail)))?;
        let stored = SamlSpKey {
            id: format!("spk_{}", crate::sso::random_hex(8)),
            private_key_sealed: self.secrets.seal(SEALED_NAME, &B64.encode(key)),
            certificate_der: cert.to_base64(),
            created_at: now_ms(),
        };
        self.store.set_saml_sp_key(&stored).await?;
        tracing::info!(key = %stored.id, fingerprint = cert.fingerprint_sha256(), "SAML SP signing key replaced");
        Ok(view(&stored, &cert))
    }

    /// The signer and certificate of the current SP key, opened and parsed once per key (the
    /// key's row is read each time, so a replacement made by another replica is seen at once).
    pub(crate) async fn sp_signer(&self) -> Result<Option<(Arc<RedirectSigner>, Arc<Certificate>)>, HubError> {
        let Some(key) = self.store.saml_sp_key().await? else { return Ok(None) };
        if let Some((id, signer, cert)) = &*self.sp_signer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
            && *id == key.id
        {
            return Ok(Some((signer.clone(), cert.clone())));
        }
        let cert = Arc::new(Certificate::from_text(&key.certificate_der).map_err(|e| invalid(e.detail))?);
        let raw = self.secrets.open(SEALED_NAME, &key.private_key_sealed)?;
        let raw = B64.decode(raw).map_err(|_| invalid("the stored key is not base64"))?;
        let signer = Arc::new(RedirectSigner::from_pkcs8_pem_or_der(&raw).map_err(|e| invalid(e.detail))?);
        *self.sp_signer.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((key.id, signer.clone(), cert.clone()));
        Ok(Some((signer, cert)))
    }
}
