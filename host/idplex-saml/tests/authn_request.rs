//! SP-initiated AuthnRequests over the HTTP-Redirect binding: building, encoding, signing,
//! verifying and decoding.

use std::io::{Read as _, Write as _};

use base64::Engine as _;
use idplex_saml::authn_request::{
    AuthnRequest, DEFAULT_MAX_INFLATED_BYTES, RedirectMessageKind, RedirectQuery, RedirectSigner,
    SIG_ALG_RSA_SHA256, check_request_id, decode_redirect, decode_redirect_with_limit, redirect_url,
    url_encode, verify_redirect_signature,
};
use idplex_saml::cert::{Certificate, PublicKey};
use idplex_saml::metadata::NAMEID_FORMAT_EMAIL;
use idplex_saml::{BINDING_POST, NS_ASSERTION, NS_PROTOCOL, SamlErrorCode, SpConfig};

const SP_KEY: &str = include_str!("fixtures/sp/sp-key.pem");
const SP_KEY_PKCS1: &str = include_str!("fixtures/sp/sp-key-pkcs1.pem");
const SP_CERT: &str = include_str!("fixtures/sp/sp-cert.pem");
const OTHER_CERT: &str = include_str!("fixtures/sp/sp-other-cert.pem");
const EC_CERT: &str = include_str!("fixtures/sp/sp-ec-cert.pem");

const SSO: &str = "https://idp.example.com/saml2/sso";
/// 2026-01-02T03:04:05Z
const NOW: i64 = 1_767_323_045;
const ENCODED_SIG_ALG: &str = "http%3A%2F%2Fwww.w3.org%2F2001%2F04%2Fxmldsig-more%23rsa-sha256";

fn sp() -> SpConfig {
    SpConfig {
        entity_id: "https://idplex.example.com/saml/acme".into(),
        acs_url: "https://idplex.example.com/saml/acme/acs".into(),
    }
}

fn signer() -> RedirectSigner {
    RedirectSigner::from_pkcs8_pem_or_der(SP_KEY.as_bytes()).unwrap()
}

fn cert(pem: &str) -> Certificate {
    Certificate::from_text(pem).unwrap()
}

fn request() -> AuthnRequest {
    AuthnRequest::new("_3f1c0a9e2b7d4c6a8e5f1b2c3d4e5f60", NOW, &sp(), SSO).unwrap()
}

/// The query string of a URL (after the first `?`).
fn query_of(url: &str) -> &str {
    url.split_once('?').unwrap().1
}

/// Replace the raw value of query parameter `name`.
fn with_param(query: &str, name: &str, value: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((n, _)) if n == name => format!("{n}={value}"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn without_param(query: &str, name: &str) -> String {
    query.split('&').filter(|pair| !pair.starts_with(&format!("{name}="))).collect::<Vec<_>>().join("&")
}

fn raw_param<'q>(query: &'q str, name: &str) -> &'q str {
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')).unwrap()
}

fn rsa_verify(cert: &Certificate, octets: &[u8], signature: &[u8]) -> bool {
    let PublicKey::Rsa { pkcs1, .. } = cert.key() else { panic!("RSA certificate expected") };
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, pkcs1)
        .verify(octets, signature)
        .is_ok()
}

fn pkcs8_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}

/// RSA-SHA256 (PKCS#1 v1.5) of `octets` by the SP's test key, made by `ring` directly: what a
/// correct signer produces, independently of the code under test.
fn sign_with_sp_key(octets: &str) -> Vec<u8> {
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&pkcs8_der(SP_KEY)).unwrap();
    let mut signature = vec![0; pair.public().modulus_len()];
    pair.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), octets.as_bytes(), &mut signature)
        .unwrap();
    signature
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

// ---------------------------------------------------------------------------------------------
// Building and round trip
// ---------------------------------------------------------------------------------------------

#[test]
fn round_trip_every_field() {
    let request = request().with_name_id_format(NAMEID_FORMAT_EMAIL).with_force_authn(true);
    let url = request.redirect_url(Some("state-42"), None).unwrap();
    assert!(url.starts_with(&format!("{SSO}?SAMLRequest=")), "{url}");

    let query = RedirectQuery::parse(query_of(&url)).unwrap();
    assert_eq!(query.kind, RedirectMessageKind::Request);
    assert_eq!(query.relay_state.as_deref(), Some("state-42"));
    assert_eq!((query.sig_alg.as_deref(), query.signature.as_deref()), (None, None));
    assert_eq!(query.signed_octets(), None);

    let xml = decode_redirect(&query.message).unwrap();
    assert_eq!(xml, request.to_xml());
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().namespace(), Some(NS_PROTOCOL));
    assert_eq!(root.tag_name().name(), "AuthnRequest");
    assert_eq!(root.attribute("ID"), Some("_3f1c0a9e2b7d4c6a8e5f1b2c3d4e5f60"));
    assert_eq!(root.attribute("Version"), Some("2.0"));
    assert_eq!(root.attribute("IssueInstant"), Some("2026-01-02T03:04:05Z"));
    assert_eq!(root.attribute("Destination"), Some(SSO));
    assert_eq!(
        root.attribute("AssertionConsumerServiceURL"),
        Some("https://idplex.example.com/saml/acme/acs")
    );
    assert_eq!(root.attribute("ProtocolBinding"), Some(BINDING_POST));
    assert_eq!(root.attribute("ForceAuthn"), Some("true"));
    assert_eq!(root.attributes().count(), 7);

    let children: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    assert_eq!(children.len(), 2);
    assert_eq!(children[0].tag_name().namespace(), Some(NS_ASSERTION));
    assert_eq!(children[0].tag_name().name(), "Issuer");
    assert_eq!(children[0].text(), Some("https://idplex.example.com/saml/acme"));
    assert_eq!(children[1].tag_name().namespace(), Some(NS_PROTOCOL));
    assert_eq!(children[1].tag_name().name(), "NameIDPolicy");
    assert_eq!(children[1].attribute("AllowCreate"), Some("true"));
    assert_eq!(children[1].attribute("Format"), Some(NAMEID_FORMAT_EMAIL));

    assert_eq!(request.id(), "_3f1c0a9e2b7d4c6a8e5f1b2c3d4e5f60");
    assert_eq!(request.issue_instant(), "2026-01-02T03:04:05Z");
    assert_eq!(request.destination(), SSO);
}

#[test]
fn defaults_omit_optional_attributes() {
    let xml = request().to_xml();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.attribute("ForceAuthn"), None);
    let policy = root.children().find(|n| n.has_tag_name((NS_PROTOCOL, "NameIDPolicy"))).unwrap();
    assert_eq!(policy.attribute("AllowCreate"), Some("true"));
    assert_eq!(policy.attribute("Format"), None);
    // No RelayState, no signature: just the message.
    let url = request().redirect_url(None, None).unwrap();
    assert!(!url.contains("RelayState") && !url.contains("SigAlg") && !url.contains("Signature"));
    // An empty RelayState is left out.
    assert_eq!(request().redirect_url(Some(""), None).unwrap(), url);
}

#[test]
fn message_is_raw_deflate_without_zlib_header() {
    let url = request().redirect_url(None, None).unwrap();
    let query = RedirectQuery::parse(query_of(&url)).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD.decode(&query.message).unwrap();
    let mut raw = String::new();
    flate2::read::DeflateDecoder::new(&bytes[..]).read_to_string(&mut raw).unwrap();
    assert_eq!(raw, request().to_xml());
    let mut zlib = String::new();
    assert!(flate2::read::ZlibDecoder::new(&bytes[..]).read_to_string(&mut zlib).is_err());
    // And the base64 is URL-encoded: no raw '+', '/' or '=' in the URL.
    let raw_value = raw_param(query_of(&url), "SAMLRequest");
    assert!(!raw_value.contains(['+', '/', '=']), "{raw_value}");
}

#[test]
fn values_are_escaped_and_cannot_break_out() {
    let hostile = SpConfig {
        entity_id: "urn:sp:\"'<&>\"/><saml:Evil/>".into(),
        acs_url: "https://sp.example.com/acs?a=1&b=\"><samlp:Evil x=\"".into(),
    };
    let sso = "https://idp.example.com/sso?tenant=a&x='1'";
    let request =
        AuthnRequest::new("_abc", NOW, &hostile, sso).unwrap().with_name_id_format("urn:x\"/><Evil/>&amp;");
    let xml = request.to_xml();
    assert!(!xml.contains("<saml:Evil") && !xml.contains("<samlp:Evil") && !xml.contains("<Evil"), "{xml}");
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.attribute("AssertionConsumerServiceURL"), Some(hostile.acs_url.as_str()));
    assert_eq!(root.attribute("Destination"), Some(sso));
    let elements: Vec<_> = root.descendants().filter(|n| n.is_element()).collect();
    assert_eq!(elements.len(), 3, "AuthnRequest, Issuer, NameIDPolicy only");
    assert_eq!(elements[1].text(), Some(hostile.entity_id.as_str()));
    assert_eq!(elements[2].attribute("Format"), Some("urn:x\"/><Evil/>&amp;"));

    // Through the binding too.
    let url = request.redirect_url(None, None).unwrap();
    assert!(url.starts_with(&format!("{sso}&SAMLRequest=")));
    let query = RedirectQuery::parse(query_of(&url)).unwrap();
    assert_eq!(decode_redirect(&query.message).unwrap(), xml);
}

#[test]
fn control_characters_do_not_break_the_xml() {
    let odd =
        SpConfig { entity_id: "urn:sp:a\u{1}b\tc\nd".into(), acs_url: "https://sp.example.com/acs".into() };
    let xml = AuthnRequest::new("_abc", NOW, &odd, SSO).unwrap().to_xml();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let issuer = doc.root_element().first_element_child().unwrap();
    assert_eq!(issuer.text(), Some("urn:sp:a\u{FFFD}b\tc\nd"));
}

#[test]
fn request_ids() {
    for good in ["_a", "a", "Z9", "_3f1c-0a9e.2b_7d", &format!("_{}", "a".repeat(255))] {
        assert_eq!(check_request_id(good), Ok(()), "{good}");
        assert!(AuthnRequest::new(good, NOW, &sp(), SSO).is_ok());
    }
    for bad in ["", "1abc", "-a", ".a", "a b", "a\"b", "a<b", "a&b", "é", "a:b", "a/b", "a\u{0}"] {
        let err = AuthnRequest::new(bad, NOW, &sp(), SSO).unwrap_err();
        assert_eq!(err.code, SamlErrorCode::Malformed, "{bad:?}");
    }
    let long = format!("_{}", "a".repeat(256));
    assert_eq!(check_request_id(&long).unwrap_err().code, SamlErrorCode::TooLarge);
}

#[test]
fn issue_instants() {
    assert_eq!(AuthnRequest::new("_a", 0, &sp(), SSO).unwrap().issue_instant(), "1970-01-01T00:00:00Z");
    assert_eq!(
        AuthnRequest::new("_a", 1_709_164_800, &sp(), SSO).unwrap().issue_instant(),
        "2024-02-29T00:00:00Z"
    );
    assert_eq!(AuthnRequest::new("_a", -1, &sp(), SSO).unwrap_err().code, SamlErrorCode::Malformed);
    assert_eq!(AuthnRequest::new("_a", i64::MAX, &sp(), SSO).unwrap_err().code, SamlErrorCode::Malformed);
}

#[test]
fn insecure_or_odd_sso_urls_are_refused() {
    for (url, code) in [
        ("http://idp.example.com/sso", SamlErrorCode::InsecureUrl),
        ("https://idp.example.com/sso#frag", SamlErrorCode::Malformed),
        ("idp.example.com/sso", SamlErrorCode::Malformed),
        ("https://idp.example.com/sso?SAMLRequest=x", SamlErrorCode::Malformed),
        ("https://idp.example.com/sso?a=1&RelayState=x", SamlErrorCode::Malformed),
    ] {
        assert_eq!(redirect_url(url, "<x/>", None, None).unwrap_err().code, code, "{url}");
    }
    assert_eq!(
        AuthnRequest::new("_a", NOW, &sp(), "http://idp.example.com/").unwrap_err().code,
        SamlErrorCode::InsecureUrl
    );
    // http is fine for local test IdPs.
    assert!(redirect_url("http://localhost:8080/sso", "<x/>", None, None).is_ok());
    assert!(redirect_url("http://127.0.0.1/sso", "<x/>", None, None).is_ok());
}

#[test]
fn sso_url_with_an_existing_query() {
    let xml = request().to_xml();
    let plain = redirect_url(SSO, &xml, None, None).unwrap();
    let message = plain.strip_prefix(&format!("{SSO}?")).unwrap();
    assert!(message.starts_with("SAMLRequest="));

    for (sso, expected_prefix) in [
        (
            "https://accounts.google.com/o/saml2/idp?idpid=C01x2y3z4",
            "https://accounts.google.com/o/saml2/idp?idpid=C01x2y3z4&SAMLRequest=",
        ),
        ("https://idp.example.com/sso?", "https://idp.example.com/sso?SAMLRequest="),
        ("https://idp.example.com/sso?a=1&", "https://idp.example.com/sso?a=1&SAMLRequest="),
        ("https://idp.example.com/sso?a=1&b=2", "https://idp.example.com/sso?a=1&b=2&SAMLRequest="),
    ] {
        let url = redirect_url(sso, &xml, Some("rs"), Some(&signer())).unwrap();
        assert!(url.starts_with(expected_prefix), "{url}");
        assert_eq!(url.matches('?').count(), 1, "{url}");
        // The IdP's own parameters are not signed, and do not disturb verification.
        let query = verify_redirect_signature(query_of(&url), &cert(SP_CERT)).unwrap();
        assert_eq!(decode_redirect(&query.message).unwrap(), xml);
        assert_eq!(query.relay_state.as_deref(), Some("rs"));
    }
}

// ---------------------------------------------------------------------------------------------
// RelayState
// ---------------------------------------------------------------------------------------------

#[test]
fn relay_state_bounds() {
    let exactly = "r".repeat(80);
    let url = request().redirect_url(Some(&exactly), None).unwrap();
    assert_eq!(RedirectQuery::parse(query_of(&url)).unwrap().relay_state, Some(exactly));

    let err = request().redirect_url(Some(&"r".repeat(81)), None).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::TooLarge);
    assert!(err.detail.contains("RelayState of 81 bytes"), "{}", err.detail);

    // Bytes, not characters: 40 two-byte characters fit, 41 do not.
    assert!(request().redirect_url(Some(&"é".repeat(40)), None).is_ok());
    assert_eq!(
        request().redirect_url(Some(&"é".repeat(41)), None).unwrap_err().code,
        SamlErrorCode::TooLarge
    );
}

#[test]
fn relay_state_is_url_encoded_and_decoded() {
    let relay_state = "/app?x=1&y=a b+c/é#frag";
    let url = request().redirect_url(Some(relay_state), Some(&signer())).unwrap();
    let raw = raw_param(query_of(&url), "RelayState");
    assert_eq!(raw, "%2Fapp%3Fx%3D1%26y%3Da%20b%2Bc%2F%C3%A9%23frag");
    let query = verify_redirect_signature(query_of(&url), &cert(SP_CERT)).unwrap();
    assert_eq!(query.relay_state.as_deref(), Some(relay_state));
}

// ---------------------------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------------------------

#[test]
fn signature_base_string_is_exact() {
    let xml = request().to_xml();
    let url = redirect_url(SSO, &xml, Some("rs 1"), Some(&signer())).unwrap();
    let query = query_of(&url);
    let encoded_message = url_encode(&b64(&{
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(xml.as_bytes()).unwrap();
        e.finish().unwrap()
    }));
    let (signed, signature) = query.split_once("&Signature=").unwrap();
    assert_eq!(signed, format!("SAMLRequest={encoded_message}&RelayState=rs%201&SigAlg={ENCODED_SIG_ALG}"));
    assert!(!signature.contains('&'));

    // The signature is RSA-PKCS1-SHA256 over exactly those octets (and PKCS#1 v1.5 is
    // deterministic: the same key gives the same bytes).
    let signature = base64::engine::general_purpose::STANDARD
        .decode(idplex_saml::authn_request::url_decode(signature).unwrap())
        .unwrap();
    assert_eq!(signature.len(), 256);
    assert!(rsa_verify(&cert(SP_CERT), signed.as_bytes(), &signature));
    let expected = sign_with_sp_key(&signed);
    assert_eq!(signature, expected);

    let parsed = RedirectQuery::parse(query).unwrap();
    assert_eq!(parsed.signed_octets(), Some(signed));
    assert_eq!(parsed.sig_alg.as_deref(), Some(SIG_ALG_RSA_SHA256));
}

#[test]
fn signature_base_string_without_relay_state() {
    let url = request().redirect_url(None, Some(&signer())).unwrap();
    let (signed, _) = query_of(&url).split_once("&Signature=").unwrap();
    let message = raw_param(signed, "SAMLRequest");
    assert_eq!(signed, format!("SAMLRequest={message}&SigAlg={ENCODED_SIG_ALG}"));
    verify_redirect_signature(query_of(&url), &cert(SP_CERT)).unwrap();
}

#[test]
fn signature_verifies_with_the_matching_certificate_only() {
    let url = request().redirect_url(Some("rs"), Some(&signer())).unwrap();
    let query = query_of(&url);
    let parsed = verify_redirect_signature(query, &cert(SP_CERT)).unwrap();
    assert_eq!(decode_redirect(&parsed.message).unwrap(), request().to_xml());

    let err = verify_redirect_signature(query, &cert(OTHER_CERT)).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::SignatureInvalid);
    assert!(err.detail.contains(cert(OTHER_CERT).fingerprint_sha256()));

    let err = verify_redirect_signature(query, &cert(EC_CERT)).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::AlgorithmForbidden);

    // With a leading '?', and with the parameters in another order (the signed string's order
    // is fixed by the binding, not by the URL).
    verify_redirect_signature(&format!("?{query}"), &cert(SP_CERT)).unwrap();
    let mut pairs: Vec<&str> = query.split('&').collect();
    pairs.reverse();
    verify_redirect_signature(&pairs.join("&"), &cert(SP_CERT)).unwrap();
    // Unrelated parameters are not covered and do not matter.
    verify_redirect_signature(&format!("foo=bar&{query}&x"), &cert(SP_CERT)).unwrap();
}

#[test]
fn tampering_with_any_parameter_breaks_the_signature() {
    let url = request().redirect_url(Some("rs"), Some(&signer())).unwrap();
    let query = query_of(&url);
    let sp_cert = cert(SP_CERT);
    let refused = |q: &str| verify_redirect_signature(q, &sp_cert).map(|_| ()).unwrap_err().code;

    // Another message (a different request, validly encoded).
    let other = AuthnRequest::new("_other", NOW, &sp(), SSO).unwrap().redirect_url(None, None).unwrap();
    let other_message = raw_param(query_of(&other), "SAMLRequest");
    assert_eq!(refused(&with_param(query, "SAMLRequest", other_message)), SamlErrorCode::SignatureInvalid);
    // Another RelayState, a removed one, an added one.
    assert_eq!(refused(&with_param(query, "RelayState", "rt")), SamlErrorCode::SignatureInvalid);
    assert_eq!(refused(&without_param(query, "RelayState")), SamlErrorCode::SignatureInvalid);
    let no_relay = request().redirect_url(None, Some(&signer())).unwrap();
    assert_eq!(refused(&format!("{}&RelayState=rs", query_of(&no_relay))), SamlErrorCode::SignatureInvalid);
    // The same SigAlg, encoded differently: the signature covers the octets as sent.
    let lower = ENCODED_SIG_ALG.replace("%3A", "%3a");
    assert_eq!(refused(&with_param(query, "SigAlg", &lower)), SamlErrorCode::SignatureInvalid);
    // Another algorithm.
    let sha1 = url_encode("http://www.w3.org/2000/09/xmldsig#rsa-sha1");
    assert_eq!(refused(&with_param(query, "SigAlg", &sha1)), SamlErrorCode::AlgorithmForbidden);
    // The signature itself: altered, emptied, not base64, removed; SigAlg removed.
    let signature = raw_param(query, "Signature");
    let flipped = if signature.starts_with('A') {
        signature.replacen('A', "B", 1)
    } else {
        format!("A{}", &signature[1..])
    };
    assert_eq!(refused(&with_param(query, "Signature", &flipped)), SamlErrorCode::SignatureInvalid);
    assert_eq!(refused(&with_param(query, "Signature", "")), SamlErrorCode::SignatureInvalid);
    assert_eq!(refused(&with_param(query, "Signature", "%25%25")), SamlErrorCode::SignatureInvalid);
    assert_eq!(refused(&without_param(query, "Signature")), SamlErrorCode::Unsigned);
    assert_eq!(refused(&without_param(query, "SigAlg")), SamlErrorCode::Unsigned);
    assert_eq!(refused(query_of(&request().redirect_url(None, None).unwrap())), SamlErrorCode::Unsigned);
    // A parameter given twice.
    assert_eq!(refused(&format!("{query}&RelayState=rs")), SamlErrorCode::Malformed);
    assert_eq!(refused(&format!("{query}&SAMLRequest={other_message}")), SamlErrorCode::Malformed);
    // An oversize signature.
    assert_eq!(refused(&with_param(query, "Signature", &"A".repeat(4000))), SamlErrorCode::TooLarge);
}

#[test]
fn verification_uses_the_raw_octets_as_received() {
    // Another implementation encodes with lower-case hex and signs what it sent: it verifies,
    // because the octets are taken from the query, never re-encoded.
    let message = b64(&deflate(request().to_xml().as_bytes()));
    let lower = |s: &str| {
        url_encode(s)
            .split('%')
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    part.to_owned()
                } else {
                    format!("{}{}", part[..2].to_ascii_lowercase(), &part[2..])
                }
            })
            .collect::<Vec<_>>()
            .join("%")
    };
    let signed = format!(
        "SAMLRequest={}&RelayState={}&SigAlg={}",
        lower(&message),
        lower("a/b"),
        lower(SIG_ALG_RSA_SHA256)
    );
    assert!(signed.contains("%3a%2f%2f"));
    let signature = sign_with_sp_key(&signed);
    let query = format!("{signed}&Signature={}", lower(&b64(&signature)));
    let parsed = verify_redirect_signature(&query, &cert(SP_CERT)).unwrap();
    assert_eq!(parsed.relay_state.as_deref(), Some("a/b"));
    assert_eq!(decode_redirect(&parsed.message).unwrap(), request().to_xml());
}

#[test]
fn saml_response_queries_verify_too() {
    // The same binding carries SAMLResponse (single logout): same rules.
    let message = url_encode(&b64(&deflate(b"<samlp:LogoutResponse/>")));
    let signed = format!("SAMLResponse={message}&SigAlg={ENCODED_SIG_ALG}");
    let signature = sign_with_sp_key(&signed);
    let query = format!("{signed}&Signature={}", url_encode(&b64(&signature)));
    let parsed = verify_redirect_signature(&query, &cert(SP_CERT)).unwrap();
    assert_eq!(parsed.kind, RedirectMessageKind::Response);
    assert_eq!(decode_redirect(&parsed.message).unwrap(), "<samlp:LogoutResponse/>");
    // A SAMLRequest signature does not pass for a SAMLResponse with the same value.
    let swapped = query.replacen("SAMLResponse=", "SAMLRequest=", 1);
    assert_eq!(
        verify_redirect_signature(&swapped, &cert(SP_CERT)).unwrap_err().code,
        SamlErrorCode::SignatureInvalid
    );
}

#[test]
fn query_shapes() {
    assert_eq!(RedirectQuery::parse("RelayState=x").unwrap_err().code, SamlErrorCode::Malformed);
    assert_eq!(RedirectQuery::parse("").unwrap_err().code, SamlErrorCode::Malformed);
    assert_eq!(
        RedirectQuery::parse("SAMLRequest=a&SAMLResponse=b").unwrap_err().code,
        SamlErrorCode::Malformed
    );
    assert_eq!(
        RedirectQuery::parse("SAMLRequest=a&SAMLRequest=a").unwrap_err().code,
        SamlErrorCode::Malformed
    );
    assert_eq!(RedirectQuery::parse("SAMLRequest=%zz").unwrap_err().code, SamlErrorCode::Malformed);
    assert_eq!(RedirectQuery::parse("SAMLRequest=%C3").unwrap_err().code, SamlErrorCode::Malformed);
    // Names are case-sensitive, as in the binding.
    assert_eq!(RedirectQuery::parse("samlrequest=a").unwrap_err().code, SamlErrorCode::Malformed);
    let long = format!("SAMLRequest={}", "a".repeat(200_000));
    assert_eq!(RedirectQuery::parse(&long).unwrap_err().code, SamlErrorCode::TooLarge);
    let parsed = RedirectQuery::parse("SAMLRequest=a%2Bb+c&RelayState=").unwrap();
    assert_eq!(parsed.message, "a+b c");
    assert_eq!(parsed.relay_state.as_deref(), Some(""));
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

#[test]
fn signing_key_forms() {
    let url = |s: &RedirectSigner| request().redirect_url(Some("rs"), Some(s)).unwrap();
    let expected = url(&signer());
    assert_eq!(signer().bits(), 2048);
    // PKCS#1 PEM, PKCS#8 DER: the same key, the same (deterministic) signature.
    assert_eq!(url(&RedirectSigner::from_pkcs8_pem_or_der(SP_KEY_PKCS1.as_bytes()).unwrap()), expected);
    assert_eq!(url(&RedirectSigner::from_pkcs8_pem_or_der(&pkcs8_der(SP_KEY)).unwrap()), expected);
    assert_eq!(url(&RedirectSigner::from_pkcs8_pem_or_der(&pkcs8_der(SP_KEY_PKCS1)).unwrap()), expected);
    // Debug shows no key material.
    assert_eq!(format!("{:?}", signer()), "RedirectSigner { bits: 2048, .. }");

    for bad in [
        b"".as_slice(),
        b"not a key",
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\nMIIB\n",
        b"-----BEGIN EC PRIVATE KEY-----\nMIIB\n-----END EC PRIVATE KEY-----\n",
        SP_CERT.as_bytes(),
    ] {
        let err = RedirectSigner::from_pkcs8_pem_or_der(bad).unwrap_err();
        assert_eq!(err.code, SamlErrorCode::KeyInvalid, "{}", String::from_utf8_lossy(bad));
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

#[test]
fn inflate_bomb_is_refused_at_the_cap() {
    let bomb = deflate(&vec![0u8; 10 << 20]);
    assert!(bomb.len() < 20_000, "{}", bomb.len());
    let encoded = b64(&bomb);
    let err = decode_redirect(&encoded).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::TooLarge);
    assert!(err.detail.contains(&DEFAULT_MAX_INFLATED_BYTES.to_string()), "{}", err.detail);
    // A smaller cap refuses earlier; the cap is what refused it (a larger one accepts).
    assert_eq!(decode_redirect_with_limit(&encoded, 1024).unwrap_err().code, SamlErrorCode::TooLarge);
    assert_eq!(decode_redirect_with_limit(&encoded, 11 << 20).unwrap().len(), 10 << 20);
}

#[test]
fn inflate_cap_is_exact() {
    let text = "x".repeat(DEFAULT_MAX_INFLATED_BYTES);
    assert_eq!(decode_redirect(&b64(&deflate(text.as_bytes()))).unwrap(), text);
    let over = "x".repeat(DEFAULT_MAX_INFLATED_BYTES + 1);
    assert_eq!(decode_redirect(&b64(&deflate(over.as_bytes()))).unwrap_err().code, SamlErrorCode::TooLarge);
    // Encoded input far over what the cap could inflate to is refused before decoding.
    assert_eq!(decode_redirect(&"A".repeat(200_000)).unwrap_err().code, SamlErrorCode::TooLarge);
}

#[test]
fn decode_refuses_what_is_not_a_redirect_message() {
    let zlib = {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"<x/>").unwrap();
        e.finish().unwrap()
    };
    let deflated = deflate(b"<x/>");
    for (input, what) in [
        ("not base64!".to_owned(), "not base64"),
        (b64(b"<x/>"), "not deflated"),
        (b64(&zlib), "zlib, not raw"),
        (b64(&deflated[..deflated.len() - 2]), "truncated"),
        (b64(&[deflated.as_slice(), b"junk"].concat()), "trailing bytes"),
        (b64(&deflate(&[0xff, 0xfe, 0x00])), "not UTF-8"),
    ] {
        assert_eq!(decode_redirect(&input).unwrap_err().code, SamlErrorCode::Malformed, "{what}");
    }
    assert_eq!(decode_redirect(&b64(&deflated)).unwrap(), "<x/>");
}
