//! The ACS verifier against responses signed by xmlsec1 (tests/fixtures, see its README) and
//! the attacks of the SAML CVE record, each asserting the exact refusal code.

use base64::Engine as _;
use idplex_saml::cert::Certificate;
use idplex_saml::{AcsPolicy, Attribute, IdpConfig, SamlError, SamlErrorCode, SpConfig, VerifiedResponse, verify_response};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const IDP: &str = "https://idp.example.com/saml";
const ACS: &str = "https://sp.example.com/acs";
/// 2026-03-01T12:00:00Z, when every fixture was issued.
const ISSUED: i64 = 1_772_366_400;
/// The verification time of the tests: one minute after issue.
const NOW: i64 = ISSUED + 60;

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn fixture(name: &str) -> String {
    read(&format!("{name}.xml"))
}

fn cert(name: &str) -> Certificate {
    Certificate::from_text(&read(&format!("{name}.crt"))).unwrap()
}

fn sp() -> SpConfig {
    SpConfig { entity_id: "https://sp.example.com".into(), acs_url: ACS.into() }
}

fn idp_with(certificates: Vec<Certificate>) -> IdpConfig {
    IdpConfig {
        entity_id: IDP.into(),
        sso_url: "https://idp.example.com/sso".into(),
        certificates,
        allow_response_only_signing: false,
    }
}

fn idp() -> IdpConfig {
    idp_with(vec![cert("idp")])
}

fn b64(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml)
}

fn verify_full(xml: &str, idp: &IdpConfig, policy: &AcsPolicy, now: i64) -> Result<VerifiedResponse, SamlError> {
    verify_response(&b64(xml), &sp(), idp, policy, now)
}

fn verify(xml: &str) -> Result<VerifiedResponse, SamlError> {
    verify_full(xml, &idp(), &AcsPolicy::default(), NOW)
}

fn refused_full(xml: &str, idp: &IdpConfig, policy: &AcsPolicy, now: i64) -> SamlError {
    match verify_full(xml, idp, policy, now) {
        Ok(ok) => panic!("accepted: {ok:?}"),
        Err(e) => e,
    }
}

/// The refusal of `xml` under the default configuration.
fn refused(xml: &str) -> SamlError {
    refused_full(xml, &idp(), &AcsPolicy::default(), NOW)
}

#[track_caller]
fn assert_code(xml: &str, code: SamlErrorCode) -> SamlError {
    let e = refused(xml);
    assert_eq!(e.code, code, "{e}");
    e
}

/// `s` with the one occurrence of `from` replaced (panics if absent: a test must change
/// what it means to change).
#[track_caller]
fn replace(s: &str, from: &str, to: &str) -> String {
    assert!(s.contains(from), "{from:?} not found");
    s.replacen(from, to, 1)
}

/// The byte range of the `n`th (from 0) `<tag ...>...</tag>` element written with that
/// literal tag (fixtures do not nest same-named elements).
#[track_caller]
fn element_range(s: &str, tag: &str, n: usize) -> std::ops::Range<usize> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut from = 0;
    for i in 0.. {
        let start = from + s[from..].find(&open).unwrap_or_else(|| panic!("no {tag} #{n}"));
        let end = start + s[start..].find(&close).unwrap() + close.len();
        if i == n {
            return start..end;
        }
        from = end;
    }
    unreachable!()
}

#[track_caller]
fn element<'s>(s: &'s str, tag: &str, n: usize) -> &'s str {
    &s[element_range(s, tag, n)]
}

/// `s` without the `n`th `tag` element.
fn remove(s: &str, tag: &str, n: usize) -> String {
    let r = element_range(s, tag, n);
    format!("{}{}", &s[..r.start], &s[r.end..])
}

/// `s` with `insert` placed right before the `n`th occurrence of `at`.
fn insert_before(s: &str, at: &str, n: usize, insert: &str) -> String {
    let (i, _) = s.match_indices(at).nth(n).unwrap_or_else(|| panic!("{at:?} #{n} not found"));
    format!("{}{insert}{}", &s[..i], &s[i..])
}

/// An unsigned evil copy of the fixture's assertion: ID `_evil`, NameID admin.
fn evil_assertion(xml: &str) -> String {
    let assertion = element(xml, "saml:Assertion", 0);
    let unsigned = if assertion.contains("<ds:Signature") { remove(assertion, "ds:Signature", 0) } else { assertion.to_owned() };
    replace(&replace(&unsigned, "ID=\"_assert-1\"", "ID=\"_evil\""), "alice@example.com</saml:NameID>", "admin@example.com</saml:NameID>")
}

fn without_declaration(xml: &str) -> &str {
    xml.strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n").unwrap()
}

fn good() -> String {
    fixture("assertion_signed")
}

// ---------------------------------------------------------------------------------------------
// Accepted.

fn expected_attributes() -> Vec<Attribute> {
    vec![
        Attribute { name: "email".into(), friendly_name: None, values: vec!["alice@example.com".into()] },
        Attribute {
            name: "groups".into(),
            friendly_name: Some("Groups".into()),
            values: vec!["admins".into(), "staff".into()],
        },
        Attribute { name: "manager".into(), friendly_name: None, values: vec![String::new()] },
    ]
}

/// The reference response, every field of the result.
#[test]
fn accepts_signed_assertion_with_every_field() {
    let v = verify(&good()).unwrap();
    assert_eq!(
        v,
        VerifiedResponse {
            response_id: "_resp-1".into(),
            assertion_id: "_assert-1".into(),
            issuer: IDP.into(),
            in_response_to: Some("_req-1".into()),
            name_id: "alice@example.com".into(),
            name_id_format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into()),
            session_index: Some("_session-1".into()),
            attributes: expected_attributes(),
            // The bearer confirmation's 12:05:00Z (earlier than the Conditions' 12:10:00Z), plus
            // the 120 s of skew it is accepted with.
            expires_at: ISSUED + 300 + 120,
            assertion_signed: true,
        }
    );
}

/// Both signed (Assertion first, then Response): both verify.
#[test]
fn accepts_both_signed() {
    let v = verify(&fixture("both_signed")).unwrap();
    assert!(v.assertion_signed);
    assert_eq!(v.name_id, "alice@example.com");
}

/// Both signed: a change to the Response outside the assertion breaks the Response's
/// signature, and that is fatal even though the Assertion's verifies.
#[test]
fn both_signed_requires_both_to_verify() {
    let xml = replace(&fixture("both_signed"), "<samlp:Status>", "<samlp:Status  >");
    // White space inside a tag is not content: still fine.
    verify(&xml).unwrap();
    let xml = replace(&fixture("both_signed"), "InResponseTo=\"_req-1\">", "InResponseTo=\"_req-1\" Consent=\"x\">");
    assert_code(&xml, SamlErrorCode::DigestMismatch);
}

/// Response-only signing: refused by default, accepted when the IdP is configured for it.
#[test]
fn response_only_signing_refused_unless_allowed() {
    let xml = fixture("response_only_signed");
    let e = assert_code(&xml, SamlErrorCode::Unsigned);
    assert!(e.detail.contains("only the Response"), "{e}");
    let mut idp = idp();
    idp.allow_response_only_signing = true;
    let v = verify_full(&xml, &idp, &AcsPolicy::default(), NOW).unwrap();
    assert!(!v.assertion_signed);
    assert_eq!(v.assertion_id, "_assert-1");
    assert_eq!(v.attributes, expected_attributes());
}

/// Under response-only signing the assertion read is inside the verified Response: changing
/// it breaks the Response's digest.
#[test]
fn response_only_signing_covers_the_assertion() {
    let mut idp = idp();
    idp.allow_response_only_signing = true;
    let xml = replace(&fixture("response_only_signed"), ">admins<", ">root<");
    assert_eq!(refused_full(&xml, &idp, &AcsPolicy::default(), NOW).code, SamlErrorCode::DigestMismatch);
}

/// ECDSA-SHA256 on P-256 (raw r||s signature value) is accepted with the EC certificate.
#[test]
fn accepts_ecdsa_p256() {
    let xml = fixture("ecdsa_signed");
    let v = verify_full(&xml, &idp_with(vec![cert("idp-ec")]), &AcsPolicy::default(), NOW).unwrap();
    assert_eq!(v.name_id, "alice@example.com");
    // Not with the RSA certificate.
    assert_code(&xml, SamlErrorCode::SignatureInvalid);
}

/// RSA-SHA384 with a SHA-384 digest.
#[test]
fn accepts_rsa_sha384() {
    verify(&fixture("rsa_sha384")).unwrap();
}

/// An InclusiveNamespaces PrefixList on the exc-c14n transform (xs is used only inside
/// xsi:type values).
#[test]
fn accepts_inclusive_namespaces_prefix_list() {
    let xml = fixture("inclusive_namespaces");
    assert!(xml.contains("PrefixList=\"xs xsi\""));
    assert_eq!(verify(&xml).unwrap().attributes, expected_attributes());
}

/// Entities, character references and CDATA are read as the XML says (and were signed so).
#[test]
fn accepts_entities_and_typed_values() {
    let v = verify(&fixture("entities")).unwrap();
    assert_eq!(v.name_id, "o'brien&co@example.com");
    let values: Vec<_> = v.attributes.iter().map(|a| (a.name.as_str(), a.values[0].as_str())).collect();
    assert_eq!(values, [("displayName", "Tom & Jerry <ops> \u{263A}"), ("note", "a<b & c"), ("age", "42")]);
    // The same characters written as entity and character references, CDATA as escaped text:
    // the same document, so the signature still verifies and the values are the same.
    let xml = replace(&fixture("entities"), "o'brien", "o&apos;brien");
    let xml = replace(&xml, "\u{263A}", "&#x263A;");
    let xml = replace(&xml, "<![CDATA[a<b & c]]>", "a&lt;b &#38; c");
    assert_eq!(verify(&xml).unwrap(), v);
}

/// OneTimeUse is accepted (the host's replay cache enforces single use).
#[test]
fn accepts_one_time_use() {
    verify(&fixture("one_time_use")).unwrap();
}

/// Key rollover: several configured certificates, the last one verifies.
#[test]
fn key_rollover_second_certificate_matches() {
    let idp = idp_with(vec![cert("attacker"), cert("idp-ec"), cert("idp")]);
    verify_full(&good(), &idp, &AcsPolicy::default(), NOW).unwrap();
    let idp = idp_with(vec![cert("idp"), cert("idp-ec")]);
    verify_full(&fixture("ecdsa_signed"), &idp, &AcsPolicy::default(), NOW).unwrap();
}

/// The white space and line breaks a form post may add to the base64 are tolerated.
#[test]
fn base64_with_line_breaks() {
    let encoded = b64(&good());
    let wrapped: String = encoded.as_bytes().chunks(76).map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap())).collect();
    verify_response(&wrapped, &sp(), &idp(), &AcsPolicy::default(), NOW).unwrap();
}

// ---------------------------------------------------------------------------------------------
// XML signature wrapping (the XSW1–XSW8 catalogue of "On Breaking SAML", Somorovsky et al.
// 2012) and variants that keep a single assertion.

/// XSW1: the signed Response copied into its own Signature; the root Response replaced by an
/// evil one (new ID, evil assertion) carrying that Signature.
#[test]
fn xsw1_response_copy_inside_signature() {
    let original = fixture("response_only_signed");
    let copy = without_declaration(&original);
    let evil = replace(&replace(&original, "ID=\"_resp-1\"", "ID=\"_evil-resp\""), "alice@example.com</saml:NameID>", "admin@example.com</saml:NameID>");
    let xml = insert_before(&evil, "</ds:Signature>", 0, copy);
    let mut idp = idp();
    idp.allow_response_only_signing = true;
    assert_eq!(refused_full(&xml, &idp, &AcsPolicy::default(), NOW).code, SamlErrorCode::AssertionCount);
}

/// XSW1 with a single assertion (the "first ID match anywhere" class): the evil root Response
/// keeps the original Signature (Reference `#_resp-1`), and a copy of the original Response,
/// without signature or assertion, is tucked into Extensions to carry the ID `_resp-1`. The
/// Reference must name the Signature's parent, so it is refused before any digest.
#[test]
fn xsw1_single_assertion_reference_not_parent() {
    let original = fixture("response_only_signed");
    let copy = remove(&remove(without_declaration(&original), "saml:Assertion", 0), "ds:Signature", 0);
    let evil = replace(&original, "ID=\"_resp-1\"", "ID=\"_evil-resp\"");
    let xml = insert_before(&evil, "<samlp:Status>", 0, &format!("<samlp:Extensions>{copy}</samlp:Extensions>"));
    let mut idp = idp();
    idp.allow_response_only_signing = true;
    let e = refused_full(&xml, &idp, &AcsPolicy::default(), NOW);
    assert_eq!(e.code, SamlErrorCode::ReferenceInvalid, "{e}");
    assert!(e.detail.contains("does not name"), "{e}");
}

/// XSW2: like XSW1, the copy placed as a sibling before the Signature (detached signature).
#[test]
fn xsw2_response_copy_before_signature() {
    let original = fixture("response_only_signed");
    let copy = without_declaration(&original);
    let evil = replace(&original, "ID=\"_resp-1\"", "ID=\"_evil-resp\"");
    let xml = insert_before(&evil, "<ds:Signature", 0, copy);
    let mut idp = idp();
    idp.allow_response_only_signing = true;
    assert_eq!(refused_full(&xml, &idp, &AcsPolicy::default(), NOW).code, SamlErrorCode::AssertionCount);
}

/// XSW3: an evil assertion inserted before the signed one.
#[test]
fn xsw3_evil_assertion_before_signed_one() {
    let xml = good();
    let evil = evil_assertion(&xml);
    assert_code(&insert_before(&xml, "<saml:Assertion", 0, &evil), SamlErrorCode::AssertionCount);
}

/// XSW4: an evil assertion whose child is the signed assertion.
#[test]
fn xsw4_signed_assertion_inside_evil_one() {
    let xml = good();
    let signed = element(&xml, "saml:Assertion", 0).to_owned();
    let evil = insert_before(&evil_assertion(&xml), "</saml:Assertion>", 0, &signed);
    let r = element_range(&xml, "saml:Assertion", 0);
    let xml = format!("{}{evil}{}", &xml[..r.start], &xml[r.end..]);
    assert_code(&xml, SamlErrorCode::AssertionCount);
}

/// XSW5: the evil assertion carries the original signature; the original assertion, unsigned,
/// is appended to the Response.
#[test]
fn xsw5_signature_copied_into_evil_assertion() {
    let xml = good();
    let signature = element(&xml, "ds:Signature", 0).to_owned();
    let original = remove(element(&xml, "saml:Assertion", 0), "ds:Signature", 0);
    let evil = insert_before(&evil_assertion(&xml), "<saml:Subject>", 0, &signature);
    let r = element_range(&xml, "saml:Assertion", 0);
    let xml = format!("{}{evil}{original}{}", &xml[..r.start], &xml[r.end..]);
    assert_code(&xml, SamlErrorCode::AssertionCount);
}

/// XSW5 with a single assertion: the evil assertion takes the original's ID and signature.
/// Only the digest can tell, and it does.
#[test]
fn xsw5_single_assertion_same_id_evil_content() {
    let xml = replace(&good(), "alice@example.com</saml:NameID>", "admin@example.com</saml:NameID>");
    assert_code(&xml, SamlErrorCode::DigestMismatch);
}

/// XSW6: the evil assertion carries the signature, with the original assertion inside the
/// signature (in a ds:Object).
#[test]
fn xsw6_original_inside_signature_object() {
    let xml = good();
    let signature = element(&xml, "ds:Signature", 0).to_owned();
    let original = remove(element(&xml, "saml:Assertion", 0), "ds:Signature", 0);
    let signature = insert_before(&signature, "</ds:Signature>", 0, &format!("<ds:Object>{original}</ds:Object>"));
    let evil = insert_before(&evil_assertion(&xml), "<saml:Subject>", 0, &signature);
    let r = element_range(&xml, "saml:Assertion", 0);
    let xml = format!("{}{evil}{}", &xml[..r.start], &xml[r.end..]);
    assert_code(&xml, SamlErrorCode::AssertionCount);
}

/// XSW7: the signed assertion moved into samlp:Extensions, an evil unsigned one in its place.
#[test]
fn xsw7_signed_assertion_in_extensions() {
    let xml = good();
    let signed = element(&xml, "saml:Assertion", 0).to_owned();
    let evil = evil_assertion(&xml);
    let r = element_range(&xml, "saml:Assertion", 0);
    let xml = format!("{}{evil}{}", &xml[..r.start], &xml[r.end..]);
    let xml = insert_before(&xml, "<samlp:Status>", 0, &format!("<samlp:Extensions>{signed}</samlp:Extensions>"));
    assert_code(&xml, SamlErrorCode::AssertionCount);
}

/// XSW7 with a single assertion: the signed assertion moved into Extensions, nothing else.
#[test]
fn xsw7_single_assertion_not_a_child_of_the_response() {
    let xml = good();
    let signed = element(&xml, "saml:Assertion", 0).to_owned();
    let xml = remove(&xml, "saml:Assertion", 0);
    let xml = insert_before(&xml, "<samlp:Status>", 0, &format!("<samlp:Extensions>{signed}</samlp:Extensions>"));
    let e = assert_code(&xml, SamlErrorCode::AssertionCount);
    assert!(e.detail.contains("Extensions"), "{e}");
}

/// XSW8: the evil assertion's signature holds a ds:Object with the original assertion
/// stripped of its signature.
#[test]
fn xsw8_original_without_signature_in_object() {
    let xml = good();
    let signature = element(&xml, "ds:Signature", 0).to_owned();
    let original = remove(element(&xml, "saml:Assertion", 0), "ds:Signature", 0);
    let signature = insert_before(&signature, "<ds:KeyInfo", 0, &format!("<ds:Object>{original}</ds:Object>"));
    let evil = insert_before(&evil_assertion(&xml), "<saml:Subject>", 0, &signature);
    let r = element_range(&xml, "saml:Assertion", 0);
    let xml = format!("{}{evil}{}", &xml[..r.start], &xml[r.end..]);
    assert_code(&xml, SamlErrorCode::AssertionCount);
}

/// The assertion's signature moved up to the Response (still referencing `#_assert-1`): the
/// Reference does not name the element the Signature is in.
#[test]
fn signature_moved_to_response() {
    let xml = good();
    let signature = element(&xml, "ds:Signature", 0).to_owned();
    let xml = remove(&xml, "ds:Signature", 0);
    let xml = insert_before(&xml, "<samlp:Status>", 0, &signature);
    let mut idp = idp();
    idp.allow_response_only_signing = true;
    let e = refused_full(&xml, &idp, &AcsPolicy::default(), NOW);
    assert_eq!(e.code, SamlErrorCode::ReferenceInvalid, "{e}");
    // Without response-only signing the assertion is simply unsigned.
    assert_code(&xml, SamlErrorCode::Unsigned);
}

/// An extra unsigned assertion beside the signed one (crewjam CVE-2022-41912 class).
#[test]
fn extra_unsigned_assertion_beside_signed_one() {
    let xml = good();
    let evil = evil_assertion(&xml);
    assert_code(&insert_before(&xml, "</samlp:Response>", 0, &evil), SamlErrorCode::AssertionCount);
}

/// A ds:Signature anywhere but directly in the Response or the Assertion.
#[test]
fn signature_elsewhere_refused() {
    let xml = good();
    let signature = element(&xml, "ds:Signature", 0).to_owned();
    let xml = insert_before(&xml, "<samlp:Status>", 0, &format!("<samlp:Extensions>{signature}</samlp:Extensions>"));
    assert_code(&xml, SamlErrorCode::ReferenceInvalid);
}

/// Two signatures on the assertion.
#[test]
fn two_signatures_on_the_assertion() {
    let xml = good();
    let signature = element(&xml, "ds:Signature", 0).to_owned();
    assert_code(&insert_before(&xml, "<saml:Subject>", 0, &signature), SamlErrorCode::ReferenceInvalid);
}

// ---------------------------------------------------------------------------------------------
// Signature values, digests, references, algorithms, keys.

#[test]
fn signature_stripped() {
    assert_code(&remove(&good(), "ds:Signature", 0), SamlErrorCode::Unsigned);
}

#[test]
fn signature_value_forged() {
    let xml = good();
    let value = element(&xml, "ds:SignatureValue", 0).to_owned();
    let forged = format!(
        "<ds:SignatureValue>{}</ds:SignatureValue>",
        base64::engine::general_purpose::STANDARD.encode([0x5au8; 256])
    );
    assert_code(&replace(&xml, &value, &forged), SamlErrorCode::SignatureInvalid);
}

#[test]
fn signature_value_tampered() {
    let xml = good();
    let start = xml.find("<ds:SignatureValue>").unwrap() + "<ds:SignatureValue>".len();
    let mut bytes = xml.into_bytes();
    bytes[start + 10] = if bytes[start + 10] == b'A' { b'B' } else { b'A' };
    assert_code(&String::from_utf8(bytes).unwrap(), SamlErrorCode::SignatureInvalid);
}

#[test]
fn signature_value_empty() {
    let xml = good();
    let value = element(&xml, "ds:SignatureValue", 0).to_owned();
    let e = assert_code(&replace(&xml, &value, "<ds:SignatureValue></ds:SignatureValue>"), SamlErrorCode::SignatureInvalid);
    assert!(e.detail.contains("empty"), "{e}");
}

/// Signed content changed (an attribute value).
#[test]
fn signed_content_tampered() {
    assert_code(&replace(&good(), ">admins<", ">root<"), SamlErrorCode::DigestMismatch);
}

/// A SignedInfo whose DigestValue has a comment inside (xml-crypto CVE-2025-29775): comments
/// are not part of SignedInfo's canonical form, so the signature would still verify; the
/// value must be plain text.
#[test]
fn comment_inside_digest_value() {
    let xml = good();
    let value = element(&xml, "ds:DigestValue", 0).to_owned();
    let inner = &value["<ds:DigestValue>".len()..value.len() - "</ds:DigestValue>".len()];
    let injected = format!("<ds:DigestValue>{}<!--x-->{}</ds:DigestValue>", &inner[..8], &inner[8..]);
    assert_code(&replace(&xml, &value, &injected), SamlErrorCode::Malformed);
}

/// The attacker signs with its own key and ships its certificate in KeyInfo: KeyInfo is never
/// read, only configured certificates count.
#[test]
fn attacker_certificate_in_keyinfo() {
    let xml = fixture("attacker_signed");
    let attacker = cert("attacker").to_base64();
    assert!(xml.replace(['\n', '\r'], "").contains(&attacker), "the fixture carries the attacker certificate");
    let e = assert_code(&xml, SamlErrorCode::SignatureInvalid);
    assert!(e.detail.contains(cert("idp").fingerprint_sha256()), "{e}");
}

#[test]
fn rsa_sha1_refused() {
    let e = assert_code(&fixture("rsa_sha1"), SamlErrorCode::AlgorithmForbidden);
    assert!(e.detail.contains("RSA-SHA1"), "{e}");
}

#[test]
fn sha1_digest_refused() {
    let e = assert_code(&fixture("sha1_digest"), SamlErrorCode::AlgorithmForbidden);
    assert!(e.detail.contains("SHA-1"), "{e}");
}

/// HMAC: a public key must never act as a MAC key.
#[test]
fn hmac_refused() {
    let xml = replace(
        &good(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
    );
    assert_code(&xml, SamlErrorCode::AlgorithmForbidden);
}

#[test]
fn dsa_and_ecdsa_sha512_refused() {
    let xml = replace(&good(), "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2000/09/xmldsig#dsa-sha1");
    assert_code(&xml, SamlErrorCode::AlgorithmForbidden);
    let xml = replace(&good(), "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512");
    assert_code(&xml, SamlErrorCode::AlgorithmForbidden);
}

/// ECDSA-SHA384 needs a P-384 key: with only a P-256 one configured, the pair is refused.
#[test]
fn ecdsa_curve_hash_mismatch_refused() {
    let xml = replace(
        &fixture("ecdsa_signed"),
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    );
    let e = refused_full(&xml, &idp_with(vec![cert("idp-ec")]), &AcsPolicy::default(), NOW);
    assert_eq!(e.code, SamlErrorCode::AlgorithmForbidden, "{e}");
}

/// Canonicalization other than exclusive without comments, for SignedInfo or the Reference.
#[test]
fn other_canonicalizations_refused() {
    let xml = good();
    let exc = "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>";
    for other in ["http://www.w3.org/2001/10/xml-exc-c14n#WithComments", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"] {
        let changed = replace(&xml, exc, &format!("<ds:CanonicalizationMethod Algorithm=\"{other}\"/>"));
        assert_code(&changed, SamlErrorCode::AlgorithmForbidden);
    }
    let transform = "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>";
    let changed = replace(&xml, transform, "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#WithComments\"/>");
    assert_code(&changed, SamlErrorCode::AlgorithmForbidden);
    let changed = replace(&xml, transform, "<ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xpath-19991116\"><ds:XPath>1</ds:XPath></ds:Transform>");
    assert_code(&changed, SamlErrorCode::AlgorithmForbidden);
}

/// Transforms other than exactly enveloped-signature then exc-c14n.
#[test]
fn transform_chain_shape_refused() {
    let xml = good();
    let enveloped = "<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>";
    assert_code(&replace(&xml, enveloped, ""), SamlErrorCode::ReferenceInvalid);
    let exc = "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>";
    assert_code(&replace(&xml, exc, ""), SamlErrorCode::ReferenceInvalid);
    assert_code(&replace(&xml, exc, &format!("{exc}{exc}")), SamlErrorCode::ReferenceInvalid);
    assert_code(&remove(&xml, "ds:Transforms", 0), SamlErrorCode::ReferenceInvalid);
}

/// Two References in one SignedInfo (xml-crypto CVE-2025-29774 class).
#[test]
fn two_references_in_signed_info() {
    let xml = good();
    let reference = element(&xml, "ds:Reference", 0).to_owned();
    assert_code(&insert_before(&xml, "</ds:SignedInfo>", 0, &reference), SamlErrorCode::ReferenceInvalid);
}

/// Two SignedInfo in one Signature.
#[test]
fn two_signed_infos() {
    let xml = good();
    let signed_info = element(&xml, "ds:SignedInfo", 0).to_owned();
    let e = assert_code(&insert_before(&xml, "<ds:SignatureValue>", 0, &signed_info), SamlErrorCode::ReferenceInvalid);
    assert!(e.detail.contains("more than one <ds:SignedInfo>"), "{e}");
}

/// A ds:Object inside the Signature is not part of the accepted shape.
#[test]
fn object_in_signature_refused() {
    let xml = insert_before(&good(), "</ds:Signature>", 0, "<ds:Object><x/></ds:Object>");
    assert_code(&xml, SamlErrorCode::ReferenceInvalid);
}

/// The Reference names another element than the Signature's parent.
#[test]
fn reference_uri_to_another_element() {
    assert_code(&replace(&good(), "URI=\"#_assert-1\"", "URI=\"#_resp-1\""), SamlErrorCode::ReferenceInvalid);
}

/// URI="" (the whole document) and a missing URI.
#[test]
fn reference_uri_empty_or_missing() {
    let e = assert_code(&replace(&good(), "URI=\"#_assert-1\"", "URI=\"\""), SamlErrorCode::ReferenceInvalid);
    assert!(e.detail.contains("whole document"), "{e}");
    assert_code(&replace(&good(), "URI=\"#_assert-1\"", ""), SamlErrorCode::ReferenceInvalid);
    assert_code(&replace(&good(), "URI=\"#_assert-1\"", "URI=\"#xpointer(id('_assert-1'))\""), SamlErrorCode::ReferenceInvalid);
}

/// The signed ID carried by another element too (first-ID-match libraries pick either).
#[test]
fn duplicate_ids() {
    let xml = insert_before(&good(), "<samlp:Status>", 0, "<samlp:Extensions><x ID=\"_assert-1\"/></samlp:Extensions>");
    let e = assert_code(&xml, SamlErrorCode::ReferenceInvalid);
    assert!(e.detail.contains("more than one"), "{e}");
    let xml = insert_before(&good(), "<samlp:Status>", 0, "<samlp:Extensions><x Id=\"_assert-1\"/></samlp:Extensions>");
    assert_code(&xml, SamlErrorCode::ReferenceInvalid);
}

/// No certificate configured: nothing verifies, even a perfectly signed response.
#[test]
fn no_certificate_configured() {
    let e = refused_full(&good(), &idp_with(Vec::new()), &AcsPolicy::default(), NOW);
    assert_eq!(e.code, SamlErrorCode::NoCertificate);
    let e = refused_full(&remove(&good(), "ds:Signature", 0), &idp_with(Vec::new()), &AcsPolicy::default(), NOW);
    assert_eq!(e.code, SamlErrorCode::NoCertificate);
}

// ---------------------------------------------------------------------------------------------
// Subject, comment injection.

/// Comment injection in the NameID (CVE-2017-11427 class): the comment is not part of the
/// canonical form, so the signature still verifies; a truncating reader would see
/// "alice@example". Refused, never truncated.
#[test]
fn comment_injection_in_name_id() {
    let xml = replace(&good(), "alice@example.com</saml:NameID>", "alice@example<!---->.com</saml:NameID>");
    let e = assert_code(&xml, SamlErrorCode::SubjectInvalid);
    assert!(e.detail.contains("comment"), "{e}");
}

/// The same in an attribute value.
#[test]
fn comment_injection_in_attribute_value() {
    assert_code(&replace(&good(), ">admins<", ">adm<!---->ins<"), SamlErrorCode::Malformed);
}

/// A processing instruction in the NameID is refused like a comment.
#[test]
fn processing_instruction_in_name_id() {
    let xml = replace(&good(), "alice@example.com</saml:NameID>", "alice@example<?x y?>.com</saml:NameID>");
    assert_code(&xml, SamlErrorCode::SubjectInvalid);
}

/// An EncryptedID instead of a NameID (signed fixture).
#[test]
fn encrypted_id_refused() {
    assert_code(&fixture("encrypted_id"), SamlErrorCode::SubjectInvalid);
}

// ---------------------------------------------------------------------------------------------
// Time.

fn lenient_age() -> AcsPolicy {
    AcsPolicy { max_issue_age_secs: 86_400, ..AcsPolicy::default() }
}

/// The bearer confirmation's NotOnOrAfter (12:05:00Z) plus 120 s of skew.
#[test]
fn expired() {
    let idp = idp();
    verify_full(&good(), &idp, &lenient_age(), ISSUED + 300 + 119).unwrap();
    let e = refused_full(&good(), &idp, &lenient_age(), ISSUED + 300 + 120);
    assert_eq!(e.code, SamlErrorCode::Expired, "{e}");
    // expires_at is exactly the first refused instant: a replay cache keeping the ID until then
    // covers every instant at which the assertion verifies.
    assert_eq!(verify(&good()).unwrap().expires_at, ISSUED + 300 + 120);
}

/// Conditions NotBefore an hour ahead (signed fixture).
#[test]
fn not_yet_valid() {
    assert_code(&fixture("not_yet_valid"), SamlErrorCode::NotYetValid);
}

/// IssueInstant older than max age + skew.
#[test]
fn stale_issue_instant() {
    let idp = idp();
    let policy = AcsPolicy::default();
    verify_full(&good(), &idp, &AcsPolicy { max_issue_age_secs: 200, ..policy }, ISSUED + 320).unwrap();
    let e = refused_full(&good(), &idp, &AcsPolicy { max_issue_age_secs: 200, ..policy }, ISSUED + 321);
    assert_eq!(e.code, SamlErrorCode::Stale, "{e}");
}

/// IssueInstant in the future by more than the skew.
#[test]
fn future_issue_instant() {
    verify_full(&good(), &idp(), &AcsPolicy::default(), ISSUED - 120).unwrap();
    let e = refused_full(&good(), &idp(), &AcsPolicy::default(), ISSUED - 121);
    assert_eq!(e.code, SamlErrorCode::Stale, "{e}");
}

/// The Response's IssueInstant counts too (unsigned under assertion signing, but checked).
#[test]
fn stale_response_issue_instant() {
    let xml = replace(
        &good(),
        "Version=\"2.0\" IssueInstant=\"2026-03-01T12:00:00Z\" Destination",
        "Version=\"2.0\" IssueInstant=\"2026-03-01T10:00:00Z\" Destination",
    );
    assert_code(&xml, SamlErrorCode::Stale);
}

// ---------------------------------------------------------------------------------------------
// Addressing, audience, conditions, status.

#[test]
fn wrong_audience() {
    assert_code(&fixture("wrong_audience"), SamlErrorCode::AudienceMismatch);
}

#[test]
fn missing_audience_restriction() {
    assert_code(&fixture("no_audience_restriction"), SamlErrorCode::AudienceMismatch);
}

/// Every AudienceRestriction must name this SP.
#[test]
fn one_of_two_audience_restrictions_excludes_us() {
    assert_code(&fixture("two_audience_restrictions"), SamlErrorCode::AudienceMismatch);
}

#[test]
fn proxy_restriction_unsupported() {
    assert_code(&fixture("proxy_restriction"), SamlErrorCode::ConditionUnsupported);
}

#[test]
fn wrong_recipient() {
    assert_code(&fixture("wrong_recipient"), SamlErrorCode::RecipientMismatch);
}

/// Destination wrong in a response whose Response is signed too.
#[test]
fn wrong_destination() {
    assert_code(&fixture("wrong_destination"), SamlErrorCode::DestinationMismatch);
}

/// Destination is required.
#[test]
fn missing_destination() {
    let xml = replace(&good(), " Destination=\"https://sp.example.com/acs\"", "");
    assert_code(&xml, SamlErrorCode::DestinationMismatch);
}

#[test]
fn wrong_issuer() {
    assert_code(&fixture("wrong_issuer"), SamlErrorCode::IssuerMismatch);
}

/// The (unsigned, under assertion signing) Response Issuer must match too.
#[test]
fn wrong_response_issuer() {
    let xml = replace(&good(), "<saml:Issuer>https://idp.example.com/saml</saml:Issuer>", "<saml:Issuer>https://evil.example.com</saml:Issuer>");
    assert_code(&xml, SamlErrorCode::IssuerMismatch);
}

/// The SubjectConfirmationData answers another request than the Response (signed fixture).
#[test]
fn in_response_to_mismatch() {
    assert_code(&fixture("in_response_to_mismatch"), SamlErrorCode::InResponseToMismatch);
}

/// The unsigned Response's InResponseTo changed or dropped: the signed
/// SubjectConfirmationData's must equal it.
#[test]
fn response_in_response_to_changed_or_dropped() {
    let xml = replace(&good(), " InResponseTo=\"_req-1\">", " InResponseTo=\"_req-evil\">");
    assert_code(&xml, SamlErrorCode::InResponseToMismatch);
    let xml = replace(&good(), " InResponseTo=\"_req-1\">", ">");
    assert_code(&xml, SamlErrorCode::InResponseToMismatch);
}

#[test]
fn status_not_success() {
    let e = assert_code(&fixture("status_failure"), SamlErrorCode::StatusNotSuccess);
    assert!(e.detail.contains("Responder") && e.detail.contains("AuthnFailed"), "{e}");
    assert!(e.detail.contains("User account is disabled"), "{e}");
}

#[test]
fn encrypted_assertion_refused() {
    let xml = good();
    let r = element_range(&xml, "saml:Assertion", 0);
    let encrypted = "<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\">\
                     <xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData>\
                     </xenc:EncryptedData></saml:EncryptedAssertion>";
    let xml = format!("{}{encrypted}{}", &xml[..r.start], &xml[r.end..]);
    let e = assert_code(&xml, SamlErrorCode::AssertionCount);
    assert!(e.detail.contains("not supported"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Parsing and limits.

/// A DOCTYPE in any form: XXE, billion laughs, a harmless internal subset.
#[test]
fn dtd_xxe_billion_laughs() {
    let xml = good();
    let declaration = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    let xxe = replace(
        &replace(&xml, declaration, &format!("{declaration}<!DOCTYPE r [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n")),
        "alice@example.com</saml:NameID>",
        "&xxe;</saml:NameID>",
    );
    assert_code(&xxe, SamlErrorCode::DtdForbidden);
    let mut entities = String::from("<!ENTITY l0 \"lol\">");
    for i in 1..10 {
        let p = i - 1;
        entities.push_str(&format!("<!ENTITY l{i} \"&l{p};&l{p};&l{p};&l{p};&l{p};&l{p};&l{p};&l{p};&l{p};&l{p};\">"));
    }
    let laughs = replace(
        &replace(&xml, declaration, &format!("{declaration}<!DOCTYPE r [{entities}]>\n")),
        "alice@example.com</saml:NameID>",
        "&l9;</saml:NameID>",
    );
    assert_code(&laughs, SamlErrorCode::DtdForbidden);
    let harmless = replace(&xml, declaration, &format!("{declaration}<!DOCTYPE samlp:Response>\n"));
    assert_code(&harmless, SamlErrorCode::DtdForbidden);
}

#[test]
fn oversize() {
    let small = AcsPolicy { max_response_bytes: 4096, ..AcsPolicy::default() };
    assert_eq!(refused_full(&good(), &idp(), &small, NOW).code, SamlErrorCode::TooLarge);
    let padded = insert_before(&good(), "</samlp:Response>", 0, &" ".repeat(300 << 10));
    assert_code(&padded, SamlErrorCode::TooLarge);
}

#[test]
fn deep_nesting() {
    let depth = 100;
    let nested = format!("<samlp:Extensions>{}{}</samlp:Extensions>", "<x>".repeat(depth), "</x>".repeat(depth));
    assert_code(&insert_before(&good(), "<samlp:Status>", 0, &nested), SamlErrorCode::TooLarge);
}

#[test]
fn too_many_nodes() {
    let many = format!("<samlp:Extensions>{}</samlp:Extensions>", "<x/>".repeat(40_000));
    let e = assert_code(&insert_before(&good(), "<samlp:Status>", 0, &many), SamlErrorCode::TooLarge);
    assert!(e.detail.contains("nodes"), "{e}");
}

#[test]
fn not_base64() {
    let e = verify_response("this is not base64!", &sp(), &idp(), &AcsPolicy::default(), NOW).unwrap_err();
    assert_eq!(e.code, SamlErrorCode::Malformed);
}

#[test]
fn not_utf8() {
    let mut bytes = good().into_bytes();
    let at = bytes.windows(5).position(|w| w == b"alice").unwrap();
    bytes[at] = 0xff;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let e = verify_response(&encoded, &sp(), &idp(), &AcsPolicy::default(), NOW).unwrap_err();
    assert_eq!(e.code, SamlErrorCode::Malformed);
}

#[test]
fn not_xml_or_not_a_response() {
    assert_code("<samlp:Response", SamlErrorCode::Malformed);
    // The right local name in the wrong namespace (prefixes mean nothing).
    let xml = replace(&good(), "xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"", "xmlns:samlp=\"urn:evil\"");
    assert_code(&xml, SamlErrorCode::Malformed);
    // Another prefix for the protocol namespace is the same document: accepted (and the
    // assertion's exclusive canonical form does not involve the protocol prefix at all).
    let xml = good().replace("samlp:", "p:").replace("xmlns:samlp=", "xmlns:p=");
    verify(&xml).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Robustness.

/// Random mutations of signed responses (byte flips, deletions, duplications, markup
/// insertions) never panic and are never accepted with other content than the original.
/// `SAML_MUTATIONS` sets the number of rounds (default 2000).
#[test]
fn mutations_never_panic() {
    let rounds: usize = std::env::var("SAML_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let snippets: [&[u8]; 8] = [b"<!---->", b"<x/>", b"&amp;", b"\"", b"<", b">", b"<![CDATA[x]]>", b"\xc3\xa9"];
    let mut idp = idp();
    idp.allow_response_only_signing = true;
    let policy = AcsPolicy { max_issue_age_secs: 86_400, ..AcsPolicy::default() };
    for name in ["assertion_signed", "both_signed", "response_only_signed", "inclusive_namespaces"] {
        let original = fixture(name);
        let reference = verify_full(&original, &idp, &policy, NOW).unwrap();
        for _ in 0..rounds / 4 {
            let mut bytes = original.clone().into_bytes();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % bytes.len();
                match next() % 4 {
                    0 => bytes[at] = (next() % 128) as u8,
                    1 => {
                        let end = (at + 1 + (next() as usize) % 16).min(bytes.len());
                        bytes.drain(at..end);
                    }
                    2 => {
                        let end = (at + 1 + (next() as usize) % 64).min(bytes.len());
                        let copy = bytes[at..end].to_vec();
                        let to = (next() as usize) % bytes.len();
                        bytes.splice(to..to, copy);
                    }
                    _ => {
                        let snippet = snippets[(next() as usize) % snippets.len()];
                        bytes.splice(at..at, snippet.iter().copied());
                    }
                }
            }
            let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            if let Ok(accepted) = verify_response(&encoded, &sp(), &idp, &policy, NOW) {
                // Only changes outside what is signed and checked (white space in tags, the
                // unsigned Response envelope's formatting...) may still pass: the claims must be
                // the original ones.
                assert_eq!(accepted.name_id, reference.name_id);
                assert_eq!(accepted.attributes, reference.attributes);
                assert_eq!(accepted.assertion_id, reference.assertion_id);
            }
        }
    }
}
