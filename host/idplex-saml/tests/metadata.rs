//! SP metadata rendering and IdP metadata reading.

use idplex_saml::cert::Certificate;
use idplex_saml::metadata::{
    IdpMetadata, MAX_METADATA_BYTES, NAMEID_FORMAT_EMAIL, NAMEID_FORMAT_UNSPECIFIED, parse_idp_metadata,
    sp_metadata,
};
use idplex_saml::{BINDING_POST, NS_DSIG, NS_METADATA, NS_PROTOCOL, SamlError, SamlErrorCode, SpConfig};

const OKTA: &str = include_str!("fixtures/metadata/okta.xml");
const ENTRA: &str = include_str!("fixtures/metadata/entra.xml");
const GOOGLE: &str = include_str!("fixtures/metadata/google.xml");
const ONELOGIN: &str = include_str!("fixtures/metadata/onelogin.xml");
const AGGREGATE: &str = include_str!("fixtures/metadata/aggregate.xml");

const OKTA_CERT: &str = include_str!("fixtures/metadata/okta-cert.pem");
const ENTRA_A_CERT: &str = include_str!("fixtures/metadata/entra-a-cert.pem");
const ENTRA_B_CERT: &str = include_str!("fixtures/metadata/entra-b-cert.pem");
const ENTRA_WSFED_CERT: &str = include_str!("fixtures/metadata/entra-wsfed-cert.pem");
const GOOGLE_CERT: &str = include_str!("fixtures/metadata/google-cert.pem");
const ONELOGIN_CERT: &str = include_str!("fixtures/metadata/onelogin-cert.pem");
const AGG_A_CERT: &str = include_str!("fixtures/metadata/agg-a-cert.pem");
const AGG_B_CERT: &str = include_str!("fixtures/metadata/agg-b-cert.pem");
const SP_CERT: &str = include_str!("fixtures/sp/sp-cert.pem");

/// 2027-01-15T08:00:00Z
const NOW: i64 = 1_800_000_000;

fn cert(pem: &str) -> Certificate {
    Certificate::from_text(pem).unwrap()
}

fn b64(pem: &str) -> String {
    cert(pem).to_base64()
}

fn parse(xml: &str) -> Result<IdpMetadata, SamlError> {
    parse_idp_metadata(xml, None, NOW)
}

fn code(xml: &str) -> SamlErrorCode {
    parse(xml).unwrap_err().code
}

/// A minimal IdP entity, with `inner` inside its IDPSSODescriptor.
fn idp(attributes: &str, inner: &str) -> String {
    format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.example.com/"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"{attributes}>{inner}</md:IDPSSODescriptor></md:EntityDescriptor>"#
    )
}

fn key(use_attr: &str, cert_b64: &str) -> String {
    format!(
        r#"<md:KeyDescriptor{use_attr}><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert_b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#
    )
}

fn sso(binding: &str, location: &str) -> String {
    format!(
        r#"<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:{binding}" Location="{location}"/>"#
    )
}

fn redirect() -> String {
    sso("HTTP-Redirect", "https://idp.example.com/sso")
}

// ---------------------------------------------------------------------------------------------
// Vendor samples
// ---------------------------------------------------------------------------------------------

#[test]
fn okta() {
    let md = parse(OKTA).unwrap();
    assert_eq!(md.entity_id, "http://www.okta.com/exk8a1b2c3d4E5f6g7h8");
    let url = "https://example.okta.com/app/example_idplex_1/exk8a1b2c3d4E5f6g7h8/sso/saml";
    assert_eq!(md.sso_redirect_url, url);
    assert_eq!(md.sso_post_url.as_deref(), Some(url));
    assert_eq!(md.certificates, vec![cert(OKTA_CERT)]);
    assert!(!md.want_authn_requests_signed);
    assert_eq!(
        md.name_id_formats,
        vec![NAMEID_FORMAT_UNSPECIFIED.to_owned(), NAMEID_FORMAT_EMAIL.to_owned()]
    );
    // The entity ID may be given (it matches) or not.
    assert_eq!(parse_idp_metadata(OKTA, Some("http://www.okta.com/exk8a1b2c3d4E5f6g7h8"), NOW).unwrap(), md);
}

#[test]
fn entra_federation_metadata() {
    let md = parse(ENTRA).unwrap();
    let tenant = "00000000-1111-2222-3333-444444444444";
    assert_eq!(md.entity_id, format!("https://sts.windows.net/{tenant}/"));
    assert_eq!(md.sso_redirect_url, format!("https://login.microsoftonline.com/{tenant}/saml2"));
    assert_eq!(md.sso_post_url.as_deref(), Some(md.sso_redirect_url.as_str()));
    // Both signing keys of the IDPSSODescriptor (a rollover), in order; not the WS-Federation
    // RoleDescriptors' key, not the metadata signature's KeyInfo.
    assert_eq!(md.certificates, vec![cert(ENTRA_A_CERT), cert(ENTRA_B_CERT)]);
    assert!(!md.certificates.contains(&cert(ENTRA_WSFED_CERT)));
    assert!(!md.want_authn_requests_signed);
    assert!(md.name_id_formats.is_empty());
}

#[test]
fn google_workspace() {
    let md = parse(GOOGLE).unwrap();
    assert_eq!(md.entity_id, "https://accounts.google.com/o/saml2?idpid=C01x2y3z4");
    assert_eq!(md.sso_redirect_url, "https://accounts.google.com/o/saml2/idp?idpid=C01x2y3z4");
    assert_eq!(md.sso_post_url.as_deref(), Some("https://accounts.google.com/o/saml2/idp?idpid=C01x2y3z4"));
    // A line-wrapped certificate.
    assert_eq!(md.certificates, vec![cert(GOOGLE_CERT)]);
    assert_eq!(md.name_id_formats, vec![NAMEID_FORMAT_EMAIL.to_owned()]);
    // validUntil="2031-11-30T12:00:00.000Z": fine until then, refused after.
    let valid_until = 1_953_806_400;
    assert!(parse_idp_metadata(GOOGLE, None, valid_until - 1).is_ok());
    let err = parse_idp_metadata(GOOGLE, None, valid_until).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::Expired);
    assert!(err.detail.contains("2031-11-30T12:00:00.000Z"), "{}", err.detail);
}

#[test]
fn onelogin_key_without_use_is_a_signing_key() {
    let md = parse(ONELOGIN).unwrap();
    assert_eq!(md.entity_id, "https://app.onelogin.com/saml/metadata/7654321");
    assert_eq!(md.sso_redirect_url, "https://example.onelogin.com/trust/saml2/http-redirect/sso/7654321");
    assert_eq!(
        md.sso_post_url.as_deref(),
        Some("https://example.onelogin.com/trust/saml2/http-post/sso/7654321")
    );
    assert_eq!(md.certificates, vec![cert(ONELOGIN_CERT)]);
    assert_eq!(md.name_id_formats, vec![NAMEID_FORMAT_EMAIL.to_owned()]);
}

#[test]
fn into_idp_config() {
    let config = parse(OKTA).unwrap().into_idp_config();
    assert_eq!(config.entity_id, "http://www.okta.com/exk8a1b2c3d4E5f6g7h8");
    assert_eq!(config.sso_url, "https://example.okta.com/app/example_idplex_1/exk8a1b2c3d4E5f6g7h8/sso/saml");
    assert_eq!(config.certificates, vec![cert(OKTA_CERT)]);
    assert!(!config.allow_response_only_signing);
}

// ---------------------------------------------------------------------------------------------
// Aggregates
// ---------------------------------------------------------------------------------------------

#[test]
fn aggregate_selects_by_entity_id() {
    let a =
        parse_idp_metadata(AGGREGATE, Some("https://idp.university-a.example/idp/shibboleth"), NOW).unwrap();
    assert_eq!(a.entity_id, "https://idp.university-a.example/idp/shibboleth");
    assert_eq!(a.sso_redirect_url, "https://idp.university-a.example/idp/profile/SAML2/Redirect/SSO");
    assert_eq!(
        a.sso_post_url.as_deref(),
        Some("https://idp.university-a.example/idp/profile/SAML2/POST/SSO")
    );
    // Its encryption key is not a signing key.
    assert_eq!(a.certificates, vec![cert(AGG_A_CERT)]);
    assert!(!a.want_authn_requests_signed);

    // In a nested group.
    let b =
        parse_idp_metadata(AGGREGATE, Some("https://idp.university-b.example/idp/shibboleth"), NOW).unwrap();
    assert_eq!(b.certificates, vec![cert(AGG_B_CERT)]);
    assert!(b.want_authn_requests_signed);
    assert_eq!(b.sso_post_url, None);
    assert_eq!(b.name_id_formats, vec!["urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".to_owned()]);
}

#[test]
fn aggregate_without_a_choice_is_ambiguous() {
    let err = parse(AGGREGATE).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::EntityAmbiguous);
    assert!(err.detail.contains("2 IdP entities"), "{}", err.detail);
    assert!(err.detail.contains("university-a") && err.detail.contains("university-b"), "{}", err.detail);

    // With one IdP left, it is chosen without an entity ID.
    let start =
        AGGREGATE.find("  <md:EntitiesDescriptor Name=\"urn:example:federation:test:group-b\">").unwrap();
    let end = AGGREGATE.rfind("  </md:EntitiesDescriptor>").unwrap() + "  </md:EntitiesDescriptor>".len();
    let single = format!("{}{}", &AGGREGATE[..start], &AGGREGATE[end..]);
    assert_eq!(parse(&single).unwrap().entity_id, "https://idp.university-a.example/idp/shibboleth");
}

#[test]
fn aggregate_entity_not_found_or_not_an_idp() {
    let err = parse_idp_metadata(AGGREGATE, Some("https://nobody.example/"), NOW).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::MetadataIncomplete);
    assert!(err.detail.contains("3 entities"), "{}", err.detail);
    let err = parse_idp_metadata(AGGREGATE, Some("https://sp.partner.example/shibboleth"), NOW).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::MetadataIncomplete);
    assert!(err.detail.contains("no IDPSSODescriptor"), "{}", err.detail);

    // An aggregate of SPs only.
    let sps = r#"<EntitiesDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata"><EntityDescriptor entityID="https://sp.example/"><SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/></EntityDescriptor></EntitiesDescriptor>"#;
    assert_eq!(code(sps), SamlErrorCode::MetadataIncomplete);
    // The same entity ID twice.
    let twice =
        AGGREGATE.replace("university-b.example/idp/shibboleth", "university-a.example/idp/shibboleth");
    let err =
        parse_idp_metadata(&twice, Some("https://idp.university-a.example/idp/shibboleth"), NOW).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::EntityAmbiguous);
}

#[test]
fn aggregate_valid_until_covers_nested_entities() {
    // validUntil="2030-01-01T00:00:00Z" on the outer group.
    let after = 1_893_456_000;
    let b = Some("https://idp.university-b.example/idp/shibboleth");
    let md = parse_idp_metadata(AGGREGATE, b, after - 1).unwrap();
    assert_eq!(md.valid_until, Some(after), "the group's bound is the entity's");
    assert_eq!(parse_idp_metadata(AGGREGATE, b, after).unwrap_err().code, SamlErrorCode::Expired);
}

#[test]
fn aggregate_entity_limit() {
    let entity = |i: usize| format!(r#"<md:EntityDescriptor entityID="https://sp{i}.example/"/>"#);
    let aggregate = |n: usize| {
        format!(
            r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">{}{}</md:EntitiesDescriptor>"#,
            (0..n).map(entity).collect::<String>(),
            idp("", &format!("{}{}", key("", &b64(OKTA_CERT)), redirect()))
                .replace(r#"xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" "#, "")
        )
    };
    assert_eq!(parse(&aggregate(999)).unwrap().entity_id, "https://idp.example.com/");
    let err = parse(&aggregate(1000)).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::TooLarge);
    assert!(err.detail.contains("1000"), "{}", err.detail);
}

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

#[test]
fn doctype_and_xxe_are_refused() {
    let xxe = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE md:EntityDescriptor [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n{}",
        idp("", &format!("{}{}", key("", "&xxe;"), redirect()))
    );
    assert_eq!(code(&xxe), SamlErrorCode::DtdForbidden);
    let laughs = format!(
        "<!DOCTYPE x [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">]>{}",
        idp("", &redirect())
    );
    assert_eq!(code(&laughs), SamlErrorCode::DtdForbidden);
    // Even an empty DOCTYPE (which the parser itself would let through).
    assert_eq!(code(&format!("<!DOCTYPE x>{}", idp("", &redirect()))), SamlErrorCode::DtdForbidden);
}

#[test]
fn not_metadata() {
    assert_eq!(code(""), SamlErrorCode::Malformed);
    assert_eq!(code("not xml"), SamlErrorCode::Malformed);
    assert_eq!(code("<a><b></a>"), SamlErrorCode::Malformed);
    let err = parse(r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"/>"#).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::Malformed);
    assert!(err.detail.contains("Response"), "{}", err.detail);
    // No entityID.
    let no_id = idp("", &format!("{}{}", key("", &b64(OKTA_CERT)), redirect()))
        .replace(r#" entityID="https://idp.example.com/""#, "");
    assert_eq!(code(&no_id), SamlErrorCode::Malformed);
}

#[test]
fn namespaces_are_matched_by_uri_not_prefix() {
    // Any prefix bound to the metadata and XML-DSig namespaces works.
    let renamed = idp("", &format!("{}{}", key("", &b64(OKTA_CERT)), redirect()))
        .replace("md:", "m:")
        .replace("xmlns:md=", "xmlns:m=")
        .replace("ds:", "sig:")
        .replace("xmlns:ds=", "xmlns:sig=");
    assert_eq!(parse(&renamed).unwrap().certificates, vec![cert(OKTA_CERT)]);

    // The usual prefixes bound to other namespaces count for nothing.
    let fake_md = idp("", &format!("{}{}", key("", &b64(OKTA_CERT)), redirect())).replace(
        r#"xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata""#,
        r#"xmlns:md="urn:example:not-metadata""#,
    );
    assert_eq!(code(&fake_md), SamlErrorCode::Malformed);
    let fake_ds = idp("", &format!("{}{}", key("", &b64(OKTA_CERT)), redirect()))
        .replace(r#"xmlns:ds="http://www.w3.org/2000/09/xmldsig#""#, r#"xmlns:ds="urn:example:not-dsig""#);
    assert_eq!(code(&fake_ds), SamlErrorCode::NoCertificate);
    // An IDPSSODescriptor in another namespace is not one.
    let foreign = format!(
        r#"<md:EntityDescriptor xmlns:md="{NS_METADATA}" xmlns:x="urn:example:x" entityID="https://idp.example.com/"><x:IDPSSODescriptor protocolSupportEnumeration="{NS_PROTOCOL}"/></md:EntityDescriptor>"#
    );
    assert_eq!(code(&foreign), SamlErrorCode::MetadataIncomplete);
}

#[test]
fn entity_id_mismatch() {
    let err = parse_idp_metadata(OKTA, Some("https://another.example/"), NOW).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::MetadataIncomplete);
    assert!(err.detail.contains("exk8a1b2c3d4E5f6g7h8"), "{}", err.detail);
}

#[test]
fn no_idp_descriptor() {
    // SP metadata is not IdP metadata.
    let sp = sp_metadata(&sp_config(), Some(&cert(SP_CERT)), true, true);
    let err = parse(&sp).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::MetadataIncomplete);
    assert!(err.detail.contains("no IDPSSODescriptor"), "{}", err.detail);
}

#[test]
fn saml2_protocol_support_is_required() {
    let saml11 = idp("", &format!("{}{}", key("", &b64(OKTA_CERT)), redirect())).replace(
        r#"protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol""#,
        r#"protocolSupportEnumeration="urn:oasis:names:tc:SAML:1.1:protocol""#,
    );
    let err = parse(&saml11).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::MetadataIncomplete);
    assert!(err.detail.contains("protocolSupportEnumeration"), "{}", err.detail);
    // A prefix of the URI is not the URI.
    let prefix = saml11.replace("SAML:1.1:protocol", "SAML:2.0:protocolX");
    assert_eq!(code(&prefix), SamlErrorCode::MetadataIncomplete);
}

#[test]
fn no_redirect_sso_service() {
    let post_only = idp(
        "",
        &format!(
            "{}{}",
            key(r#" use="signing""#, &b64(OKTA_CERT)),
            sso("HTTP-POST", "https://idp.example.com/sso")
        ),
    );
    let err = parse(&post_only).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::MetadataIncomplete);
    assert!(err.detail.contains("HTTP-Redirect"), "{}", err.detail);
    assert!(err.detail.contains("bindings:HTTP-POST"), "{}", err.detail);
    let none = idp("", &key("", &b64(OKTA_CERT)));
    let err = parse(&none).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::MetadataIncomplete);
    assert!(err.detail.contains("bindings listed: none"), "{}", err.detail);
    // A Redirect service without a Location.
    let no_location = idp(
        "",
        &format!(
            r#"{}<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"/>"#,
            key("", &b64(OKTA_CERT))
        ),
    );
    assert_eq!(code(&no_location), SamlErrorCode::Malformed);
}

#[test]
fn sso_urls_must_be_https() {
    let with =
        |location: &str| idp("", &format!("{}{}", key("", &b64(OKTA_CERT)), sso("HTTP-Redirect", location)));
    let err = parse(&with("http://idp.example.com/sso")).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::InsecureUrl);
    assert!(err.detail.contains("http://idp.example.com/sso"), "{}", err.detail);
    assert_eq!(code(&with("http://localhost.evil.example/sso")), SamlErrorCode::InsecureUrl);
    assert_eq!(code(&with("javascript:alert(1)")), SamlErrorCode::Malformed);
    assert_eq!(code(&with("https://idp.example.com/sso#x")), SamlErrorCode::Malformed);
    // Local test IdPs.
    assert_eq!(
        parse(&with("http://localhost:8080/sso")).unwrap().sso_redirect_url,
        "http://localhost:8080/sso"
    );
    assert_eq!(parse(&with("http://127.0.0.1/sso")).unwrap().sso_redirect_url, "http://127.0.0.1/sso");
    // The POST service is held to the same rule.
    let post = idp(
        "",
        &format!(
            "{}{}{}",
            key("", &b64(OKTA_CERT)),
            redirect(),
            sso("HTTP-POST", "http://idp.example.com/post")
        ),
    );
    assert_eq!(code(&post), SamlErrorCode::InsecureUrl);
}

#[test]
fn only_an_encryption_key_is_no_certificate() {
    let only_encryption = idp("", &format!("{}{}", key(r#" use="encryption""#, &b64(OKTA_CERT)), redirect()));
    let err = parse(&only_encryption).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::NoCertificate);
    assert!(
        err.detail.contains("the IdP metadata lists no signing certificate")
            && err.detail.contains("SSO cannot be enabled without one"),
        "{}",
        err.detail
    );
    assert_eq!(code(&idp("", &redirect())), SamlErrorCode::NoCertificate);
    // A KeyDescriptor without X509Certificate (e.g. a KeyName only).
    let key_name = idp(
        "",
        &format!(
            "<md:KeyDescriptor><ds:KeyInfo><ds:KeyName>k1</ds:KeyName></ds:KeyInfo></md:KeyDescriptor>{}",
            redirect()
        ),
    );
    assert_eq!(code(&key_name), SamlErrorCode::NoCertificate);
    // An unknown use.
    let both = idp("", &format!("{}{}", key(r#" use="both""#, &b64(OKTA_CERT)), redirect()));
    assert_eq!(code(&both), SamlErrorCode::Malformed);
}

#[test]
fn signing_and_unlabelled_keys_kept_encryption_dropped_duplicates_merged() {
    let keys = [
        key(r#" use="encryption""#, &b64(AGG_A_CERT)),
        key(r#" use="signing""#, &b64(OKTA_CERT)),
        key("", &b64(GOOGLE_CERT)),
        key(r#" use="signing""#, &b64(OKTA_CERT)),
        key("", &format!("\n  {}\n", b64(OKTA_CERT))),
    ]
    .concat();
    let md = parse(&idp("", &format!("{keys}{}", redirect()))).unwrap();
    assert_eq!(md.certificates, vec![cert(OKTA_CERT), cert(GOOGLE_CERT)]);
    // Several certificates in one KeyDescriptor.
    let two = format!(
        "<md:KeyDescriptor><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>",
        b64(AGG_A_CERT),
        b64(AGG_B_CERT)
    );
    let md = parse(&idp("", &format!("{two}{}", redirect()))).unwrap();
    assert_eq!(md.certificates, vec![cert(AGG_A_CERT), cert(AGG_B_CERT)]);
}

#[test]
fn certificate_limit() {
    let sixteen = key("", &b64(OKTA_CERT)).repeat(16);
    assert_eq!(parse(&idp("", &format!("{sixteen}{}", redirect()))).unwrap().certificates.len(), 1);
    let seventeen = key("", &b64(OKTA_CERT)).repeat(17);
    assert_eq!(code(&idp("", &format!("{seventeen}{}", redirect()))), SamlErrorCode::TooLarge);
}

#[test]
fn garbage_certificate_is_named() {
    let garbage = idp(
        "",
        &format!(
            "{}{}{}",
            key(r#" use="signing""#, &b64(OKTA_CERT)),
            key(r#" use="signing""#, "TUlJQ0dhcmJhZ2U="),
            redirect()
        ),
    );
    let err = parse(&garbage).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::CertificateInvalid);
    assert!(err.detail.contains("signing certificate #2"), "{}", err.detail);
    assert!(err.detail.contains("KeyDescriptor 2"), "{}", err.detail);
    assert!(err.detail.contains("TUlJQ0dhcmJhZ2U="), "{}", err.detail);
    assert!(err.detail.contains("https://idp.example.com/"), "{}", err.detail);
    // Not base64 at all, empty, or with markup inside.
    assert_eq!(
        code(&idp("", &format!("{}{}", key("", "not base64 !!"), redirect()))),
        SamlErrorCode::CertificateInvalid
    );
    assert_eq!(code(&idp("", &format!("{}{}", key("", ""), redirect()))), SamlErrorCode::CertificateInvalid);
    assert_eq!(code(&idp("", &format!("{}{}", key("", "<ds:X/>"), redirect()))), SamlErrorCode::Malformed);
}

#[test]
fn valid_until() {
    let inner = format!("{}{}", key("", &b64(OKTA_CERT)), redirect());
    let on_entity =
        |value: &str| idp("", &inner).replace(r#"entityID="#, &format!(r#"validUntil="{value}" entityID="#));
    let on_descriptor = |value: &str| idp(&format!(r#" validUntil="{value}""#), &inner);
    for make in [&on_entity as &dyn Fn(&str) -> String, &on_descriptor] {
        let err = parse(&make("2027-01-15T07:59:59Z")).unwrap_err();
        assert_eq!(err.code, SamlErrorCode::Expired);
        assert!(err.detail.contains("validUntil 2027-01-15T07:59:59Z"), "{}", err.detail);
        // Exactly now is expired; a second later is fine.
        assert_eq!(code(&make("2027-01-15T08:00:00Z")), SamlErrorCode::Expired);
        assert!(parse(&make("2027-01-15T08:00:01Z")).is_ok());
        assert!(parse(&make("2027-01-15T09:00:01+01:00")).is_ok());
        assert_eq!(code(&make("2027-01-15T09:00:00+01:00")), SamlErrorCode::Expired);
        assert_eq!(code(&make("soon")), SamlErrorCode::Malformed);
    }
}

#[test]
fn want_authn_requests_signed() {
    let inner = format!("{}{}", key("", &b64(OKTA_CERT)), redirect());
    assert!(parse(&idp(r#" WantAuthnRequestsSigned="true""#, &inner)).unwrap().want_authn_requests_signed);
    assert!(parse(&idp(r#" WantAuthnRequestsSigned="1""#, &inner)).unwrap().want_authn_requests_signed);
    assert!(!parse(&idp(r#" WantAuthnRequestsSigned="false""#, &inner)).unwrap().want_authn_requests_signed);
    assert_eq!(code(&idp(r#" WantAuthnRequestsSigned="yes""#, &inner)), SamlErrorCode::Malformed);
}

#[test]
fn oversize_metadata() {
    let inner = format!("{}{}", key("", &b64(OKTA_CERT)), redirect());
    let doc = idp("", &inner);
    let padding = MAX_METADATA_BYTES - doc.len() - "<!---->".len();
    let at_limit = format!("<!--{}-->{doc}", "x".repeat(padding));
    assert_eq!(at_limit.len(), MAX_METADATA_BYTES);
    assert!(parse(&at_limit).is_ok());
    let over = format!("<!--{}-->{doc}", "x".repeat(padding + 1));
    let err = parse(&over).unwrap_err();
    assert_eq!(err.code, SamlErrorCode::TooLarge);
    // Too many nodes within the byte limit.
    let many = idp("", &format!("{inner}{}", "<a/>".repeat(210_000)));
    assert!(many.len() < MAX_METADATA_BYTES);
    assert_eq!(code(&many), SamlErrorCode::TooLarge);
}

#[test]
fn attacker_strings_in_details_are_shortened_and_escaped() {
    let hostile = format!("https://idp.example.com/\n{}", "x".repeat(500));
    let err = parse_idp_metadata(OKTA, Some(&hostile), NOW).unwrap_err();
    assert!(!err.detail.contains('\n'));
    assert!(err.detail.len() < 400, "{}", err.detail);
}

// ---------------------------------------------------------------------------------------------
// SP metadata
// ---------------------------------------------------------------------------------------------

fn elements<'a, 'i>(node: roxmltree::Node<'a, 'i>) -> Vec<roxmltree::Node<'a, 'i>> {
    node.children().filter(|n| n.is_element()).collect()
}

fn sp_config() -> SpConfig {
    SpConfig {
        entity_id: "https://idplex.example.com/saml/acme".into(),
        acs_url: "https://idplex.example.com/saml/acme/acs".into(),
    }
}

#[test]
fn sp_metadata_every_field() {
    let signing = cert(SP_CERT);
    let xml = sp_metadata(&sp_config(), Some(&signing), true, true);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert!(root.has_tag_name((NS_METADATA, "EntityDescriptor")));
    assert_eq!(root.attribute("entityID"), Some("https://idplex.example.com/saml/acme"));
    let [descriptor] = elements(root)[..] else { panic!("one SPSSODescriptor expected") };
    assert!(descriptor.has_tag_name((NS_METADATA, "SPSSODescriptor")));
    assert_eq!(descriptor.attribute("protocolSupportEnumeration"), Some(NS_PROTOCOL));
    assert_eq!(descriptor.attribute("AuthnRequestsSigned"), Some("true"));
    assert_eq!(descriptor.attribute("WantAssertionsSigned"), Some("true"));

    let children = elements(descriptor);
    let names: Vec<&str> = children.iter().map(|n| n.tag_name().name()).collect();
    assert_eq!(names, ["KeyDescriptor", "NameIDFormat", "NameIDFormat", "AssertionConsumerService"]);
    assert!(children.iter().all(|n| n.tag_name().namespace() == Some(NS_METADATA)));

    let key = children[0];
    assert_eq!(key.attribute("use"), Some("signing"));
    let x509 = key.descendants().find(|n| n.has_tag_name((NS_DSIG, "X509Certificate"))).unwrap();
    let path: Vec<&str> = x509.ancestors().take(4).map(|n| n.tag_name().name()).collect();
    assert_eq!(path, ["X509Certificate", "X509Data", "KeyInfo", "KeyDescriptor"]);
    assert!(x509.ancestors().take(3).all(|n| n.tag_name().namespace() == Some(NS_DSIG)));
    assert_eq!(x509.text(), Some(signing.to_base64().as_str()));
    assert_eq!(Certificate::from_text(x509.text().unwrap()).unwrap(), signing);

    assert_eq!(children[1].text(), Some(NAMEID_FORMAT_EMAIL));
    assert_eq!(children[2].text(), Some(NAMEID_FORMAT_UNSPECIFIED));
    let acs = children[3];
    assert_eq!(acs.attribute("Binding"), Some(BINDING_POST));
    assert_eq!(acs.attribute("Location"), Some("https://idplex.example.com/saml/acme/acs"));
    assert_eq!(acs.attribute("index"), Some("0"));
    assert_eq!(acs.attribute("isDefault"), Some("true"));
}

#[test]
fn sp_metadata_without_key() {
    let xml = sp_metadata(&sp_config(), None, false, false);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let descriptor = doc.descendants().find(|n| n.has_tag_name((NS_METADATA, "SPSSODescriptor"))).unwrap();
    assert_eq!(descriptor.attribute("AuthnRequestsSigned"), Some("false"));
    assert_eq!(descriptor.attribute("WantAssertionsSigned"), Some("false"));
    assert!(!doc.descendants().any(|n| n.tag_name().name() == "KeyDescriptor"));
    assert!(!xml.contains(NS_DSIG));
    // Mixed: assertions signed, requests not.
    let xml = sp_metadata(&sp_config(), None, true, false);
    assert!(xml.contains(r#"AuthnRequestsSigned="false" WantAssertionsSigned="true""#), "{xml}");
}

#[test]
fn sp_metadata_escapes_everything() {
    let hostile = SpConfig {
        entity_id: "https://sp.example.com/?a=1&b=2\"><md:Evil/>".into(),
        acs_url: "https://sp.example.com/acs?x=<y>&z='1'".into(),
    };
    let xml = sp_metadata(&hostile, Some(&cert(SP_CERT)), true, false);
    assert!(xml.contains("a=1&amp;b=2&quot;&gt;&lt;md:Evil/&gt;"), "{xml}");
    assert!(!xml.contains("<md:Evil"));
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(doc.root_element().attribute("entityID"), Some(hostile.entity_id.as_str()));
    let acs = doc.descendants().find(|n| n.has_tag_name((NS_METADATA, "AssertionConsumerService"))).unwrap();
    assert_eq!(acs.attribute("Location"), Some(hostile.acs_url.as_str()));
    assert_eq!(doc.descendants().filter(|n| n.is_element()).count(), 9);
}
