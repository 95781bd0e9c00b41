//! SP-initiated login: a `<samlp:AuthnRequest>` sent to the IdP with the HTTP-Redirect binding
//! (SAML 2.0 Bindings §3.4), optionally signed, and the decoding of Redirect-bound messages
//! (with a hard inflate cap), also used by single logout ([`crate::logout`]).
//!
//! The flow on the host's side:
//!
//! 1. generate a random request ID (e.g. `_` + 32 hex characters) and remember it for the
//!    `InResponseTo` check of the ACS;
//! 2. [`AuthnRequest::new`] with that ID and the current Unix time, then
//!    [`AuthnRequest::redirect_url`] (or [`redirect_url`] for XML built elsewhere);
//! 3. answer the browser with a `302` to that URL.
//!
//! Only RSA-SHA256 (`SigAlg=http://www.w3.org/2001/04/xmldsig-more#rsa-sha256`) is produced and
//! accepted for Redirect-binding signatures.

use std::fmt;
use std::io::Write as _;

use base64::Engine as _;

use crate::cert::{Certificate, PublicKey};
use crate::metadata::check_endpoint_url;
use crate::{BINDING_POST, NS_ASSERTION, NS_PROTOCOL, SamlError, SamlErrorCode, SpConfig};

/// The only Redirect-binding signature algorithm: RSA PKCS#1 v1.5 with SHA-256.
pub const SIG_ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// Longest `RelayState` (bytes) the binding allows (SAML 2.0 Bindings §3.4.3).
pub const MAX_RELAY_STATE_BYTES: usize = 80;
/// Longest request ID accepted.
pub const MAX_REQUEST_ID_CHARS: usize = 256;
/// Default cap on the inflated size of a Redirect-bound message ([`decode_redirect`]).
pub const DEFAULT_MAX_INFLATED_BYTES: usize = 64 << 10;
/// Largest query string [`RedirectQuery::parse`] reads.
pub const MAX_QUERY_BYTES: usize = 128 << 10;

/// Largest signature accepted (bytes): an RSA-8192 signature.
const MAX_SIGNATURE_BYTES: usize = 1024;
/// Latest instant that has a four-digit year: 9999-12-31T23:59:59Z.
const MAX_INSTANT: i64 = 253_402_300_799;

fn malformed(detail: impl Into<String>) -> SamlError {
    SamlError::new(SamlErrorCode::Malformed, detail)
}

// ---------------------------------------------------------------------------------------------
// The AuthnRequest
// ---------------------------------------------------------------------------------------------

/// An SP-initiated `<samlp:AuthnRequest>` (ProtocolBinding HTTP-POST: the response comes back
/// to the ACS as a form post), built from validated parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthnRequest {
    id: String,
    issue_instant: String,
    destination: String,
    acs_url: String,
    issuer: String,
    name_id_format: Option<String>,
    force_authn: bool,
}

impl AuthnRequest {
    /// A request with the caller's `id` (random, remembered by the host for `InResponseTo`),
    /// issued at `issue_instant` (Unix seconds), from `sp` (Issuer = its entity ID,
    /// AssertionConsumerServiceURL = its ACS URL) to the IdP's SSO URL (`Destination`).
    ///
    /// Refused: an ID that is not an NCName-safe token (an ASCII letter or `_`, then ASCII
    /// letters, digits, `_`, `-`, `.`; at most [`MAX_REQUEST_ID_CHARS`]), an instant outside
    /// 1970..=9999, an SSO URL that [`check_endpoint_url`] refuses.
    pub fn new(
        id: &str,
        issue_instant: i64,
        sp: &SpConfig,
        idp_sso_url: &str,
    ) -> Result<AuthnRequest, SamlError> {
        check_request_id(id)?;
        let issue_instant = format_instant(issue_instant)?;
        check_endpoint_url(idp_sso_url)?;
        Ok(AuthnRequest {
            id: id.to_owned(),
            issue_instant,
            destination: idp_sso_url.to_owned(),
            acs_url: sp.acs_url.clone(),
            issuer: sp.entity_id.clone(),
            name_id_format: None,
            force_authn: false,
        })
    }

    /// Ask for a NameID of this format (`<samlp:NameIDPolicy Format=…>`), e.g.
    /// [`crate::metadata::NAMEID_FORMAT_EMAIL`]. Without it the IdP chooses.
    pub fn with_name_id_format(mut self, format: &str) -> AuthnRequest {
        self.name_id_format = Some(format.to_owned());
        self
    }

    /// Ask the IdP to authenticate the user again even with a session (`ForceAuthn="true"`).
    pub fn with_force_authn(mut self, force_authn: bool) -> AuthnRequest {
        self.force_authn = force_authn;
        self
    }

    /// The request ID (what the response's `InResponseTo` must name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `IssueInstant`, as written (`YYYY-MM-DDThh:mm:ssZ`).
    pub fn issue_instant(&self) -> &str {
        &self.issue_instant
    }

    /// The IdP SSO URL the request is addressed to (`Destination`).
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The request as XML (no XML declaration), every value escaped.
    pub fn to_xml(&self) -> String {
        let mut xml = String::with_capacity(512);
        xml.push_str("<samlp:AuthnRequest xmlns:samlp=\"");
        xml.push_str(NS_PROTOCOL);
        xml.push_str("\" xmlns:saml=\"");
        xml.push_str(NS_ASSERTION);
        xml.push('"');
        push_attr(&mut xml, "ID", &self.id);
        push_attr(&mut xml, "Version", "2.0");
        push_attr(&mut xml, "IssueInstant", &self.issue_instant);
        push_attr(&mut xml, "Destination", &self.destination);
        push_attr(&mut xml, "AssertionConsumerServiceURL", &self.acs_url);
        push_attr(&mut xml, "ProtocolBinding", BINDING_POST);
        if self.force_authn {
            push_attr(&mut xml, "ForceAuthn", "true");
        }
        xml.push_str("><saml:Issuer>");
        xml.push_str(&escape_xml(&self.issuer));
        xml.push_str("</saml:Issuer><samlp:NameIDPolicy AllowCreate=\"true\"");
        if let Some(format) = &self.name_id_format {
            push_attr(&mut xml, "Format", format);
        }
        xml.push_str("/></samlp:AuthnRequest>");
        xml
    }

    /// The URL to redirect the browser to: [`redirect_url`] of this request to its
    /// `Destination`.
    pub fn redirect_url(
        &self,
        relay_state: Option<&str>,
        signer: Option<&RedirectSigner>,
    ) -> Result<String, SamlError> {
        redirect_url(&self.destination, &self.to_xml(), relay_state, signer)
    }
}

/// Check a request ID: an ASCII letter or `_`, then ASCII letters, digits, `_`, `-` or `.`, at
/// most [`MAX_REQUEST_ID_CHARS`] characters (a valid `xs:ID`, safe in XML, URLs and logs).
pub fn check_request_id(id: &str) -> Result<(), SamlError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !first_ok || !rest_ok {
        return Err(malformed(format!(
            "request ID {:?} is not an NCName token (an ASCII letter or '_', then letters, digits, '_', '-', '.')",
            SamlError::shown(id)
        )));
    }
    if id.len() > MAX_REQUEST_ID_CHARS {
        return Err(SamlError::new(
            SamlErrorCode::TooLarge,
            format!("request ID of {} characters, over the limit of {MAX_REQUEST_ID_CHARS}", id.len()),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTTP-Redirect encoding
// ---------------------------------------------------------------------------------------------

/// The HTTP-Redirect binding URL of a request: `request_xml` raw-DEFLATEd (RFC 1951, no zlib
/// header), base64, URL-encoded as `SAMLRequest`, then `RelayState` (if given and not empty),
/// then, with a `signer`, `SigAlg` (RSA-SHA256) and `Signature`: the base64 RSA-PKCS1-SHA256
/// signature of the exact octets `SAMLRequest=…&RelayState=…&SigAlg=…` as they appear in the
/// URL. The parameters are appended to `idp_sso_url` with `?`, or `&` if it already has a
/// query.
///
/// Refused: an SSO URL [`check_endpoint_url`] refuses or whose query already carries one of
/// the binding's parameters; a `RelayState` over [`MAX_RELAY_STATE_BYTES`] (`TooLarge`); a
/// request over [`DEFAULT_MAX_INFLATED_BYTES`] (an IdP could not be expected to read it).
pub fn redirect_url(
    idp_sso_url: &str,
    request_xml: &str,
    relay_state: Option<&str>,
    signer: Option<&RedirectSigner>,
) -> Result<String, SamlError> {
    redirect_url_for(RedirectMessageKind::Request, idp_sso_url, request_xml, relay_state, signer)
}

/// [`redirect_url`] for either kind of message: a request (`SAMLRequest`) or a response
/// (`SAMLResponse`, e.g. a LogoutResponse), encoded and signed the same way.
pub fn redirect_url_for(
    kind: RedirectMessageKind,
    idp_sso_url: &str,
    request_xml: &str,
    relay_state: Option<&str>,
    signer: Option<&RedirectSigner>,
) -> Result<String, SamlError> {
    check_endpoint_url(idp_sso_url)?;
    if let Some((_, query)) = idp_sso_url.split_once('?') {
        for pair in query.split('&') {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            if BINDING_PARAMS.contains(&name) {
                return Err(malformed(format!("the SSO URL's query already has a {name} parameter")));
            }
        }
    }
    let relay_state = relay_state.filter(|r| !r.is_empty());
    if let Some(relay_state) = relay_state
        && relay_state.len() > MAX_RELAY_STATE_BYTES
    {
        return Err(SamlError::new(
            SamlErrorCode::TooLarge,
            format!(
                "RelayState of {} bytes, over the {MAX_RELAY_STATE_BYTES} bytes the HTTP-Redirect binding allows",
                relay_state.len()
            ),
        ));
    }
    if request_xml.len() > DEFAULT_MAX_INFLATED_BYTES {
        return Err(SamlError::new(
            SamlErrorCode::TooLarge,
            format!("request of {} bytes, over the limit of {DEFAULT_MAX_INFLATED_BYTES}", request_xml.len()),
        ));
    }

    let deflated = deflate(request_xml.as_bytes())?;
    let mut query = String::with_capacity(deflated.len() * 2 + 512);
    query.push_str(kind.param());
    query.push('=');
    query.push_str(&url_encode(&base64::engine::general_purpose::STANDARD.encode(deflated)));
    if let Some(relay_state) = relay_state {
        query.push_str("&RelayState=");
        query.push_str(&url_encode(relay_state));
    }
    if let Some(signer) = signer {
        query.push_str("&SigAlg=");
        query.push_str(&url_encode(SIG_ALG_RSA_SHA256));
        let signature = signer.sign(query.as_bytes())?;
        query.push_str("&Signature=");
        query.push_str(&url_encode(&base64::engine::general_purpose::STANDARD.encode(signature)));
    }

    let separator = match idp_sso_url.split_once('?') {
        None => "?",
        Some((_, "")) => "",
        Some(_) if idp_sso_url.ends_with('&') => "",
        Some(_) => "&",
    };
    Ok(format!("{idp_sso_url}{separator}{query}"))
}

/// The query parameters of the HTTP-Redirect binding (case-sensitive, as the spec names them).
const BINDING_PARAMS: [&str; 5] = ["SAMLRequest", "SAMLResponse", "RelayState", "SigAlg", "Signature"];

fn deflate(data: &[u8]) -> Result<Vec<u8>, SamlError> {
    let mut encoder = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(data.len() / 2 + 64),
        flate2::Compression::default(),
    );
    encoder
        .write_all(data)
        .and_then(|()| encoder.finish())
        .map_err(|e| malformed(format!("DEFLATE failed: {e}")))
}

/// Decode a Redirect-bound message parameter (`SAMLRequest` or `SAMLResponse`, already
/// URL-decoded): base64, raw inflate (at most [`DEFAULT_MAX_INFLATED_BYTES`]), UTF-8.
pub fn decode_redirect(saml_param: &str) -> Result<String, SamlError> {
    decode_redirect_with_limit(saml_param, DEFAULT_MAX_INFLATED_BYTES)
}

/// [`decode_redirect`] with another cap on the inflated size. Inflation stops as soon as the
/// output would pass `max_inflated_bytes` (`TooLarge`): a deflate bomb is never expanded past
/// the cap. Truncated streams and bytes after the end of the DEFLATE stream are `Malformed`.
pub fn decode_redirect_with_limit(saml_param: &str, max_inflated_bytes: usize) -> Result<String, SamlError> {
    // DEFLATE never expands incompressible data by more than a few bytes per 64 KiB block.
    let max_encoded =
        max_inflated_bytes.saturating_add(max_inflated_bytes / 64 + 64).saturating_mul(4) / 3 + 8;
    if saml_param.len() > max_encoded {
        return Err(SamlError::new(
            SamlErrorCode::TooLarge,
            format!("encoded message of {} bytes, over the limit of {max_encoded}", saml_param.len()),
        ));
    }
    let deflated = base64::engine::general_purpose::STANDARD
        .decode(saml_param.as_bytes())
        .map_err(|e| malformed(format!("message is not base64: {e}")))?;
    let inflated = inflate_capped(&deflated, max_inflated_bytes)?;
    String::from_utf8(inflated).map_err(|_| malformed("inflated message is not UTF-8"))
}

fn inflate_capped(input: &[u8], cap: usize) -> Result<Vec<u8>, SamlError> {
    const CHUNK: usize = 16 << 10;
    let too_large =
        || SamlError::new(SamlErrorCode::TooLarge, format!("inflated message over the limit of {cap} bytes"));
    let mut inflater = flate2::Decompress::new(false);
    let mut out: Vec<u8> = Vec::new();
    loop {
        // `decompress_vec` writes into the spare capacity only. Capacity is only ever grown
        // with `reserve_exact`, geometrically (no quadratic copying) but never past cap + 1
        // bytes: at most one byte past the cap is inflated, and reaching it means "too large".
        let room = cap.saturating_add(1).saturating_sub(out.len()).min(out.len().max(CHUNK));
        out.reserve_exact(room);
        let consumed = usize::try_from(inflater.total_in()).unwrap_or(usize::MAX);
        let rest = input.get(consumed..).unwrap_or_default();
        let before = (inflater.total_in(), out.len());
        let status = inflater
            .decompress_vec(rest, &mut out, flate2::FlushDecompress::None)
            .map_err(|e| malformed(format!("not a raw DEFLATE stream: {e}")))?;
        if out.len() > cap {
            return Err(too_large());
        }
        match status {
            flate2::Status::StreamEnd => break,
            flate2::Status::Ok | flate2::Status::BufError => {
                if (inflater.total_in(), out.len()) == before {
                    return Err(malformed("truncated DEFLATE stream"));
                }
            }
        }
    }
    if usize::try_from(inflater.total_in()).ok() != Some(input.len()) {
        return Err(malformed("bytes after the end of the DEFLATE stream"));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Signing and verification
// ---------------------------------------------------------------------------------------------

/// The SP's RSA signing key for Redirect-binding messages (RSA-SHA256).
pub struct RedirectSigner {
    key: ring::signature::RsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl fmt::Debug for RedirectSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedirectSigner")
            .field("bits", &(self.key.public().modulus_len() * 8))
            .finish_non_exhaustive()
    }
}

impl RedirectSigner {
    /// The key from PEM (`BEGIN PRIVATE KEY`: PKCS#8; `BEGIN RSA PRIVATE KEY`: PKCS#1) or DER
    /// (PKCS#8, else PKCS#1). RSA of 2048 to 8192 bits (as `ring` accepts them); encrypted keys
    /// are refused (`KeyInvalid`). Errors never quote key material.
    pub fn from_pkcs8_pem_or_der(key: &[u8]) -> Result<RedirectSigner, SamlError> {
        let invalid = |detail: String| SamlError::new(SamlErrorCode::KeyInvalid, detail);
        let text = std::str::from_utf8(key).ok().map(str::trim);
        let pair = match text {
            Some(text) if text.starts_with("-----BEGIN ") => {
                if let Some(der) = pem_body(text, "PRIVATE KEY")? {
                    ring::signature::RsaKeyPair::from_pkcs8(&der)
                } else if let Some(der) = pem_body(text, "RSA PRIVATE KEY")? {
                    ring::signature::RsaKeyPair::from_der(&der)
                } else if text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
                    return Err(invalid("encrypted private keys are not supported; decrypt it first".into()));
                } else {
                    return Err(invalid(
                        "PEM is neither a PRIVATE KEY (PKCS#8) nor an RSA PRIVATE KEY (PKCS#1)".into(),
                    ));
                }
            }
            _ => ring::signature::RsaKeyPair::from_pkcs8(key)
                .or_else(|_| ring::signature::RsaKeyPair::from_der(key)),
        }
        .map_err(|e| invalid(format!("unusable RSA signing key: {e}")))?;
        Ok(RedirectSigner { key: pair, rng: ring::rand::SystemRandom::new() })
    }

    /// Size of the key's modulus, bits.
    pub fn bits(&self) -> usize {
        self.key.public().modulus_len() * 8
    }

    fn sign(&self, octets: &[u8]) -> Result<Vec<u8>, SamlError> {
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&ring::signature::RSA_PKCS1_SHA256, &self.rng, octets, &mut signature)
            .map_err(|_| SamlError::new(SamlErrorCode::KeyInvalid, "RSA signing failed"))?;
        Ok(signature)
    }
}

/// The body of the PEM block labelled `label`, if `text` is one.
fn pem_body(text: &str, label: &str) -> Result<Option<Vec<u8>>, SamlError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let Some(rest) = text.strip_prefix(&begin) else {
        return Ok(None);
    };
    let (body, _) = rest.split_once(&end).ok_or_else(|| {
        SamlError::new(SamlErrorCode::KeyInvalid, format!("PEM without an END {label} line"))
    })?;
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map(Some)
        .map_err(|_| SamlError::new(SamlErrorCode::KeyInvalid, "PEM body is not base64"))
}

/// Which message a Redirect-bound query carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectMessageKind {
    /// `SAMLRequest` (AuthnRequest, LogoutRequest).
    Request,
    /// `SAMLResponse` (LogoutResponse).
    Response,
}

impl RedirectMessageKind {
    /// The query parameter's name.
    pub fn param(self) -> &'static str {
        match self {
            RedirectMessageKind::Request => "SAMLRequest",
            RedirectMessageKind::Response => "SAMLResponse",
        }
    }
}

/// The binding's parameters of an HTTP-Redirect query string, URL-decoded, plus the exact
/// octets a signature covers (taken from the raw query as received, never re-encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectQuery {
    /// `SAMLRequest` or `SAMLResponse`.
    pub kind: RedirectMessageKind,
    /// The message parameter, URL-decoded: the base64 for [`decode_redirect`].
    pub message: String,
    /// `RelayState`, URL-decoded.
    pub relay_state: Option<String>,
    /// `SigAlg`, URL-decoded.
    pub sig_alg: Option<String>,
    /// `Signature`, URL-decoded (base64).
    pub signature: Option<String>,
    signed_octets: Option<String>,
}

impl RedirectQuery {
    /// Parse a query string (the part after `?`; a leading `?` is skipped). Exactly one of
    /// `SAMLRequest`/`SAMLResponse` is required; a binding parameter given twice is
    /// `Malformed`; other parameters are ignored (a signature does not cover them).
    pub fn parse(query: &str) -> Result<RedirectQuery, SamlError> {
        let query = query.strip_prefix('?').unwrap_or(query);
        if query.len() > MAX_QUERY_BYTES {
            return Err(SamlError::new(
                SamlErrorCode::TooLarge,
                format!("query string of {} bytes, over the limit of {MAX_QUERY_BYTES}", query.len()),
            ));
        }
        let mut raw: [Option<&str>; 5] = [None; 5];
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if let Some(index) = BINDING_PARAMS.iter().position(|p| *p == name) {
                if raw[index].is_some() {
                    return Err(malformed(format!("query parameter {name} appears more than once")));
                }
                raw[index] = Some(value);
            }
        }
        let [request, response, relay_state, sig_alg, signature] = raw;
        let (kind, message) = match (request, response) {
            (Some(m), None) => (RedirectMessageKind::Request, m),
            (None, Some(m)) => (RedirectMessageKind::Response, m),
            (None, None) => return Err(malformed("query has neither SAMLRequest nor SAMLResponse")),
            (Some(_), Some(_)) => return Err(malformed("query has both SAMLRequest and SAMLResponse")),
        };
        let signed_octets = sig_alg.map(|sig_alg| {
            let mut octets = format!("{}={message}", kind.param());
            if let Some(relay_state) = relay_state {
                octets.push_str("&RelayState=");
                octets.push_str(relay_state);
            }
            octets.push_str("&SigAlg=");
            octets.push_str(sig_alg);
            octets
        });
        Ok(RedirectQuery {
            kind,
            message: url_decode(message)?,
            relay_state: relay_state.map(url_decode).transpose()?,
            sig_alg: sig_alg.map(url_decode).transpose()?,
            signature: signature.map(url_decode).transpose()?,
            signed_octets,
        })
    }

    /// The octets a signature covers, as received: `SAMLRequest=…[&RelayState=…]&SigAlg=…`
    /// (or `SAMLResponse=…`), values exactly as they appeared in the query. `None` without a
    /// `SigAlg`.
    pub fn signed_octets(&self) -> Option<&str> {
        self.signed_octets.as_deref()
    }
}

/// Verify the signature of an HTTP-Redirect query string (the part after `?`) under `cert`,
/// over the raw octets as received (see [`RedirectQuery::signed_octets`]). Returns the parsed
/// query.
///
/// `Unsigned` without `SigAlg` or `Signature`; `AlgorithmForbidden` for a `SigAlg` other than
/// RSA-SHA256 or a certificate without an RSA key; `SignatureInvalid` if it does not verify.
pub fn verify_redirect_signature(query: &str, cert: &Certificate) -> Result<RedirectQuery, SamlError> {
    let parsed = RedirectQuery::parse(query)?;
    let (Some(octets), Some(sig_alg), Some(signature)) =
        (parsed.signed_octets(), parsed.sig_alg.as_deref(), parsed.signature.as_deref())
    else {
        return Err(SamlError::new(SamlErrorCode::Unsigned, "the query has no SigAlg and Signature"));
    };
    if sig_alg != SIG_ALG_RSA_SHA256 {
        return Err(SamlError::new(
            SamlErrorCode::AlgorithmForbidden,
            format!("SigAlg {:?}; only {SIG_ALG_RSA_SHA256} is accepted", SamlError::shown(sig_alg)),
        ));
    }
    let PublicKey::Rsa { pkcs1, .. } = cert.key() else {
        return Err(SamlError::new(
            SamlErrorCode::AlgorithmForbidden,
            "SigAlg is RSA-SHA256 but the certificate's key is not RSA",
        ));
    };
    if signature.len() > MAX_SIGNATURE_BYTES * 4 / 3 + 4 {
        return Err(SamlError::new(SamlErrorCode::TooLarge, "Signature over the size limit"));
    }
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature.as_bytes())
        .map_err(|_| SamlError::new(SamlErrorCode::SignatureInvalid, "Signature is not base64"))?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, pkcs1)
        .verify(octets.as_bytes(), &signature)
        .map_err(|_| {
            SamlError::new(
                SamlErrorCode::SignatureInvalid,
                format!(
                    "the Redirect-binding signature does not verify under the certificate {}",
                    cert.fingerprint_sha256()
                ),
            )
        })?;
    Ok(parsed)
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers
// ---------------------------------------------------------------------------------------------

/// Percent-encode everything but the RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`),
/// as `%XX` with upper-case hex.
pub fn url_encode(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for &byte in value.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0F)]));
        }
    }
    out
}

/// Decode a query value (`application/x-www-form-urlencoded`: `%XX`, and `+` for a space).
/// A bad escape or a result that is not UTF-8 is `Malformed`.
pub fn url_decode(value: &str) -> Result<String, SamlError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let decoded = hex
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| malformed("bad percent-escape in the query"))?;
                out.push(decoded);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| malformed("query value is not UTF-8"))
}

/// Escape a value for XML text or a double-quoted attribute: `& < > " '` as entities, tab,
/// newline and carriage return as character references (kept through attribute-value
/// normalization). Characters XML 1.0 cannot carry at all (other C0 controls, U+FFFE, U+FFFF)
/// become U+FFFD.
pub fn escape_xml(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 16);
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\u{0}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// ` name="escaped value"`.
pub(crate) fn push_attr(xml: &mut String, name: &str, value: &str) {
    xml.push(' ');
    xml.push_str(name);
    xml.push_str("=\"");
    xml.push_str(&escape_xml(value));
    xml.push('"');
}

/// A Unix time as a SAML instant, `YYYY-MM-DDThh:mm:ssZ` (UTC, no fraction).
pub fn format_instant(unix: i64) -> Result<String, SamlError> {
    if !(0..=MAX_INSTANT).contains(&unix) {
        return Err(malformed(format!("instant {unix} is outside 1970..=9999")));
    }
    let (year, month, day) = civil_from_days(unix.div_euclid(86_400));
    let secs = unix.rem_euclid(86_400);
    Ok(format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60))
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants() {
        assert_eq!(format_instant(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(format_instant(951_782_400).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(format_instant(1_767_225_599).unwrap(), "2025-12-31T23:59:59Z");
        assert_eq!(format_instant(MAX_INSTANT).unwrap(), "9999-12-31T23:59:59Z");
        assert!(format_instant(-1).is_err());
        assert!(format_instant(MAX_INSTANT + 1).is_err());
        for days in [-1_000_000, -1, 0, 1, 59, 60, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(crate::xml::days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn url_coding() {
        assert_eq!(url_encode("a b+/=~._-é"), "a%20b%2B%2F%3D~._-%C3%A9");
        assert_eq!(url_decode("a%20b%2b%2F+x").unwrap(), "a b+/ x");
        assert!(url_decode("%").is_err());
        assert!(url_decode("%4").is_err());
        assert!(url_decode("%zz").is_err());
        assert!(url_decode("%+1").is_err());
        assert!(url_decode("%FF").is_err());
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape_xml("a&b<c>d\"e'f\tg\nh\u{1}"),
            "a&amp;b&lt;c&gt;d&quot;e&apos;f&#9;g&#10;h\u{FFFD}"
        );
    }

    #[test]
    fn inflate_edges() {
        let data = vec![b'x'; 1000];
        let deflated = deflate(&data).unwrap();
        assert_eq!(inflate_capped(&deflated, 1000).unwrap(), data);
        assert_eq!(inflate_capped(&deflated, 999).unwrap_err().code, SamlErrorCode::TooLarge);
        assert_eq!(
            inflate_capped(&deflated[..deflated.len() - 1], 1000).unwrap_err().code,
            SamlErrorCode::Malformed
        );
        let mut trailing = deflated.clone();
        trailing.push(0);
        assert_eq!(inflate_capped(&trailing, 1000).unwrap_err().code, SamlErrorCode::Malformed);
        assert_eq!(inflate_capped(b"", 1000).unwrap_err().code, SamlErrorCode::Malformed);
        // No arithmetic overflow with an unbounded cap.
        assert_eq!(inflate_capped(&deflated, usize::MAX).unwrap(), data);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&deflated);
        assert_eq!(decode_redirect_with_limit(&encoded, usize::MAX).unwrap().len(), 1000);
        // An empty message, and a cap of zero.
        assert_eq!(inflate_capped(&deflate(b"").unwrap(), 0).unwrap(), b"");
    }
}
