//! A SAML IdP for tests: builds `<samlp:Response>` documents the way IdPs do and has Debian's
//! `xmlsec1` (a signer idplex did not write) sign them with the test-only keys of
//! `host/idplex-saml/tests/fixtures` (`idp.key`, and `attacker.key` for a stranger's signature).
//! Every response is fresh: its own IDs, instants around now, the ACS and audience asked for.
//!
//! Needs `xmlsec1` on the PATH (`scripts/test` installs it).

use std::path::PathBuf;
use std::process::Command;

use idplex_saml::authn_request::escape_xml as escape;

/// Which elements carry a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    Assertion,
    Response,
    Both,
    Nothing,
}

/// Which key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// The IdP's own (`idp.key`, its certificate is what the connection trusts).
    Idp,
    /// A stranger's (`attacker.key`), its certificate put in KeyInfo.
    Attacker,
}

/// One response to build; [`TestIdp::response`] fills the defaults.
#[derive(Debug, Clone)]
pub struct ResponseSpec {
    pub issuer: String,
    pub destination: String,
    pub recipient: String,
    pub audience: Option<String>,
    pub in_response_to: Option<String>,
    pub name_id: String,
    /// (Name, values).
    pub attributes: Vec<(String, Vec<String>)>,
    pub response_id: String,
    pub assertion_id: String,
    /// Unix seconds.
    pub issue_instant: i64,
    /// Seconds after the issue instant the assertion stays valid.
    pub valid_for: i64,
    /// Seconds from the issue instant to the Conditions' `NotBefore` (negative: before it).
    pub starts_in: i64,
    pub status: String,
    pub signed: Signed,
    pub key: Key,
    pub signature_algorithm: &'static str,
    pub digest_algorithm: &'static str,
}

/// Where the test IdP takes LogoutRequests and LogoutResponses ([`TestIdp::metadata_with_slo`]).
pub const SLO_URL: &str = "https://idp.example.com/slo";

pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
pub const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
pub const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

/// The test IdP: its entity ID and the files of its key.
pub struct TestIdp {
    pub entity_id: String,
    pub sso_url: String,
    fixtures: PathBuf,
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../host/idplex-saml/tests/fixtures")
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn instant(unix: i64) -> String {
    idplex_saml::authn_request::format_instant(unix).expect("an instant in 1970..=9999")
}

fn random_id(prefix: &str) -> String {
    let n: u128 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{n:x}{c:x}{}", std::process::id())
}

impl Default for TestIdp {
    fn default() -> Self {
        TestIdp::new()
    }
}

impl TestIdp {
    pub fn new() -> TestIdp {
        TestIdp {
            entity_id: "https://idp.example.com/saml".into(),
            sso_url: "https://idp.example.com/sso".into(),
            fixtures: fixtures_dir(),
        }
    }

    /// The IdP's signing certificate, PEM.
    pub fn certificate_pem(&self) -> String {
        std::fs::read_to_string(self.fixtures.join("idp.crt")).expect("idp.crt")
    }

    /// The attacker's certificate, PEM.
    pub fn attacker_certificate_pem(&self) -> String {
        std::fs::read_to_string(self.fixtures.join("attacker.crt")).expect("attacker.crt")
    }

    /// The IdP's metadata: entity ID, the HTTP-Redirect SSO URL and its signing certificate.
    pub fn metadata(&self) -> String {
        let pem = self.certificate_pem();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        format!(
            r#"<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity}">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{sso}"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
"#,
            entity = escape(&self.entity_id),
            sso = escape(&self.sso_url),
        )
    }

    /// [`TestIdp::metadata`] with a `SingleLogoutService` (HTTP-Redirect) at [`SLO_URL`]: an IdP
    /// that offers single logout.
    pub fn metadata_with_slo(&self) -> String {
        let slo = format!(
            "<md:SingleLogoutService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"{SLO_URL}\"/>\n    <md:NameIDFormat>"
        );
        self.metadata().replacen("<md:NameIDFormat>", &slo, 1)
    }

    /// The IdP's `LogoutRequest` for `name_id` (and `session_index`), issued now, to the SP's SLO
    /// URL `destination`.
    pub fn logout_request(&self, id: &str, destination: &str, name_id: &str, session_index: Option<&str>) -> String {
        let index = session_index.map(|i| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", escape(i))).unwrap_or_default();
        format!(
            r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{dest}"><saml:Issuer>{issuer}</saml:Issuer><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{name}</saml:NameID>{index}</samlp:LogoutRequest>"#,
            now = instant(now_secs()),
            dest = escape(destination),
            issuer = escape(&self.entity_id),
            name = escape(name_id),
        )
    }

    /// An HTTP-Redirect query carrying `xml` as `param` (`SAMLRequest` or `SAMLResponse`),
    /// signed (RSA-SHA256 over the exact query, by the `openssl` CLI) with `key`, or unsigned.
    pub fn redirect_query(&self, param: &str, xml: &str, key: Option<Key>) -> String {
        use idplex_saml::authn_request::{RedirectMessageKind, redirect_url_for, url_encode};
        let kind = if param == "SAMLRequest" { RedirectMessageKind::Request } else { RedirectMessageKind::Response };
        // Encoding only (deflate, base64, URL-encoding): the signature below is openssl's.
        let url = redirect_url_for(kind, "https://sp.invalid/slo", xml, None, None).expect("encodable");
        let mut query = url.split_once('?').unwrap().1.to_owned();
        let Some(key) = key else { return query };
        query.push_str("&SigAlg=");
        query.push_str(&url_encode(RSA_SHA256));
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("octets"), &query).unwrap();
        let key_file = self.fixtures.join(match key {
            Key::Idp => "idp.key",
            Key::Attacker => "attacker.key",
        });
        let out = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&key_file)
            .arg(dir.path().join("octets"))
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl dgst -sign: {}", String::from_utf8_lossy(&out.stderr));
        query.push_str("&Signature=");
        query.push_str(&url_encode(&base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &out.stdout)));
        query
    }

    /// A response for `name_id` to the SP `sp_entity_id` at `acs_url`, answering `in_response_to`
    /// (unsolicited when `None`), signed on the Assertion with the IdP's key, valid from now for
    /// five minutes; adjust the fields and pass it to [`TestIdp::sign`].
    pub fn response(&self, acs_url: &str, sp_entity_id: &str, in_response_to: Option<&str>, name_id: &str) -> ResponseSpec {
        ResponseSpec {
            issuer: self.entity_id.clone(),
            destination: acs_url.into(),
            recipient: acs_url.into(),
            audience: Some(sp_entity_id.into()),
            in_response_to: in_response_to.map(str::to_owned),
            name_id: name_id.into(),
            attributes: vec![("email".into(), vec![name_id.into()])],
            response_id: random_id("_resp-"),
            assertion_id: random_id("_assert-"),
            issue_instant: now_secs(),
            valid_for: 300,
            starts_in: -30,
            status: SUCCESS.into(),
            signed: Signed::Assertion,
            key: Key::Idp,
            signature_algorithm: RSA_SHA256,
            digest_algorithm: SHA256,
        }
    }

    /// The response as XML, unsigned (Signature templates in place when signed).
    pub fn xml(&self, r: &ResponseSpec) -> String {
        let template = |id: &str| {
            format!(
                r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="{}"/><ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="{}"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data></ds:X509Data></ds:KeyInfo></ds:Signature>"##,
                r.signature_algorithm, r.digest_algorithm
            )
        };
        let assertion_sig = if matches!(r.signed, Signed::Assertion | Signed::Both) { template(&r.assertion_id) } else { String::new() };
        let response_sig = if matches!(r.signed, Signed::Response | Signed::Both) { template(&r.response_id) } else { String::new() };
        let irt = r.in_response_to.as_deref().map(|i| format!(r#" InResponseTo="{}""#, escape(i))).unwrap_or_default();
        let audience = r
            .audience
            .as_deref()
            .map(|a| format!("<saml:AudienceRestriction><saml:Audience>{}</saml:Audience></saml:AudienceRestriction>", escape(a)))
            .unwrap_or_default();
        let attributes: String = r
            .attributes
            .iter()
            .map(|(name, values)| {
                let values: String = values
                    .iter()
                    .map(|v| format!(r#"<saml:AttributeValue xsi:type="xs:string">{}</saml:AttributeValue>"#, escape(v)))
                    .collect();
                format!(r#"<saml:Attribute Name="{}">{values}</saml:Attribute>"#, escape(name))
            })
            .collect();
        let issued = instant(r.issue_instant);
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{rid}" Version="2.0" IssueInstant="{issued}" Destination="{dest}"{irt}><saml:Issuer>{issuer}</saml:Issuer>{response_sig}<samlp:Status><samlp:StatusCode Value="{status}"/></samlp:Status><saml:Assertion xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="{aid}" Version="2.0" IssueInstant="{issued}"><saml:Issuer>{issuer}</saml:Issuer>{assertion_sig}<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{name_id}</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData{irt} NotOnOrAfter="{until}" Recipient="{recipient}"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{not_before}" NotOnOrAfter="{until}">{audience}</saml:Conditions><saml:AuthnStatement AuthnInstant="{issued}" SessionIndex="_session-{aid}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement><saml:AttributeStatement>{attributes}</saml:AttributeStatement></saml:Assertion></samlp:Response>
"#,
            rid = escape(&r.response_id),
            aid = escape(&r.assertion_id),
            dest = escape(&r.destination),
            issuer = escape(&r.issuer),
            status = escape(&r.status),
            name_id = escape(&r.name_id),
            recipient = escape(&r.recipient),
            until = instant(r.issue_instant + r.valid_for),
            not_before = instant(r.issue_instant + r.starts_in),
        )
    }

    /// The response signed by `xmlsec1` as the spec says, as XML.
    pub fn signed_xml(&self, r: &ResponseSpec) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("response.xml");
        std::fs::write(&file, self.xml(r)).expect("write response");
        let key = match r.key {
            Key::Idp => "idp",
            Key::Attacker => "attacker",
        };
        let sign = |element: &str| {
            let out = dir.path().join("signed.xml");
            let status = Command::new("xmlsec1")
                .arg("--sign")
                .arg("--privkey-pem")
                .arg(format!("{},{}", self.fixtures.join(format!("{key}.key")).display(), self.fixtures.join(format!("{key}.crt")).display()))
                .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"])
                .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:protocol:Response"])
                .arg("--node-xpath")
                .arg(format!("//*[local-name()='{element}']/*[local-name()='Signature']"))
                .arg("--output")
                .arg(&out)
                .arg(&file)
                .output()
                .expect("xmlsec1 runs (apt-get install -y xmlsec1)");
            assert!(status.status.success(), "xmlsec1 --sign failed: {}", String::from_utf8_lossy(&status.stderr));
            std::fs::rename(&out, &file).expect("signed file");
        };
        // The Assertion first: a Response signature covers the signed Assertion.
        if matches!(r.signed, Signed::Assertion | Signed::Both) {
            sign("Assertion");
        }
        if matches!(r.signed, Signed::Response | Signed::Both) {
            sign("Response");
        }
        std::fs::read_to_string(&file).expect("read signed response")
    }

    /// [`TestIdp::signed_xml`], base64 as the HTTP-POST binding carries it.
    pub fn sign(&self, r: &ResponseSpec) -> String {
        base64_encode(self.signed_xml(r).as_bytes())
    }
}

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn instants() {
        assert_eq!(super::instant(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::instant(1_772_366_400), "2026-03-01T12:00:00Z");
    }
}
