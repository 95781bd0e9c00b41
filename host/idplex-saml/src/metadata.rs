//! SAML 2.0 metadata: the SP's own ([`sp_metadata`]), for an admin to hand to the IdP, and an
//! IdP's ([`parse_idp_metadata`]), from which a connection learns the IdP's entity ID, SSO URL
//! and signing certificates.
//!
//! * The SP metadata is **unsigned**: IdPs import it from an admin who downloaded it over
//!   HTTPS from idplex (or pasted it), which is the trust path; nothing in it is secret.
//! * IdP metadata signatures are **not verified**: the admin uploads the file they fetched from
//!   their IdP's admin console or metadata URL, and that upload is the trust decision (as when
//!   pasting a certificate). What is checked is structure, namespaces (by URI, never by
//!   prefix), HTTPS endpoints, `validUntil`, sizes, and that at least one signing certificate
//!   is listed: an IdP without one cannot be enabled (fail closed). `cacheDuration` is
//!   ignored: when to re-import is the host's decision.
//!
//! The XML is read with `roxmltree`, DTDs refused (any `<!DOCTYPE` at all is `DtdForbidden`),
//! with size and node-count limits.

use roxmltree::Node;

use crate::authn_request::{escape_xml, push_attr};
use crate::cert::Certificate;
use crate::{
    BINDING_POST, BINDING_REDIRECT, IdpConfig, NS_DSIG, NS_METADATA, NS_PROTOCOL, SamlError, SamlErrorCode,
    SpConfig,
};

/// NameID format: an email address.
pub const NAMEID_FORMAT_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
/// NameID format: unspecified (the IdP chooses).
pub const NAMEID_FORMAT_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";

/// Largest IdP metadata document accepted (bytes).
pub const MAX_METADATA_BYTES: usize = 1 << 20;
/// Most signing certificates read from one IdP (before de-duplication).
pub const MAX_CERTIFICATES: usize = 16;
/// Most `EntityDescriptor`s in an aggregate (`EntitiesDescriptor`).
pub const MAX_ENTITIES: usize = 1000;
/// Most XML nodes in a metadata document.
pub const MAX_METADATA_NODES: u32 = 200_000;
/// Longest entity ID (SAML 2.0 Core §8.3.6).
pub const MAX_ENTITY_ID_CHARS: usize = 1024;
/// Longest endpoint URL accepted.
pub const MAX_URL_CHARS: usize = 2048;

// ---------------------------------------------------------------------------------------------
// SP metadata
// ---------------------------------------------------------------------------------------------

/// The SP's metadata: an `md:EntityDescriptor` (entityID = `sp.entity_id`) with one
/// `md:SPSSODescriptor` (SAML 2.0; `AuthnRequestsSigned`, `WantAssertionsSigned` as given),
/// the signing certificate if given (`md:KeyDescriptor use="signing"`: pass it whenever
/// `authn_requests_signed` is true, or the IdP has nothing to verify with), the NameID formats
/// emailAddress and unspecified, and the ACS (HTTP-POST, index 0, default). Every value is
/// XML-escaped. The document is unsigned (see the module docs).
pub fn sp_metadata(
    sp: &SpConfig,
    signing_cert: Option<&Certificate>,
    want_assertions_signed: bool,
    authn_requests_signed: bool,
) -> String {
    sp_metadata_with_slo(sp, None, signing_cert, want_assertions_signed, authn_requests_signed)
}

/// [`sp_metadata`] with the SP's `SingleLogoutService` (HTTP-Redirect) at `slo_url`, if given.
pub fn sp_metadata_with_slo(
    sp: &SpConfig,
    slo_url: Option<&str>,
    signing_cert: Option<&Certificate>,
    want_assertions_signed: bool,
    authn_requests_signed: bool,
) -> String {
    let mut xml = String::with_capacity(2048);
    xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str("<md:EntityDescriptor xmlns:md=\"");
    xml.push_str(NS_METADATA);
    xml.push('"');
    push_attr(&mut xml, "entityID", &sp.entity_id);
    xml.push_str(">\n  <md:SPSSODescriptor");
    push_attr(&mut xml, "AuthnRequestsSigned", bool_str(authn_requests_signed));
    push_attr(&mut xml, "WantAssertionsSigned", bool_str(want_assertions_signed));
    push_attr(&mut xml, "protocolSupportEnumeration", NS_PROTOCOL);
    xml.push_str(">\n");
    if let Some(cert) = signing_cert {
        xml.push_str("    <md:KeyDescriptor use=\"signing\">\n      <ds:KeyInfo xmlns:ds=\"");
        xml.push_str(NS_DSIG);
        xml.push_str("\">\n        <ds:X509Data>\n          <ds:X509Certificate>");
        xml.push_str(&escape_xml(&cert.to_base64()));
        xml.push_str(
            "</ds:X509Certificate>\n        </ds:X509Data>\n      </ds:KeyInfo>\n    </md:KeyDescriptor>\n",
        );
    }
    if let Some(slo_url) = slo_url {
        xml.push_str("    <md:SingleLogoutService");
        push_attr(&mut xml, "Binding", BINDING_REDIRECT);
        push_attr(&mut xml, "Location", slo_url);
        xml.push_str("/>\n");
    }
    for format in [NAMEID_FORMAT_EMAIL, NAMEID_FORMAT_UNSPECIFIED] {
        xml.push_str("    <md:NameIDFormat>");
        xml.push_str(&escape_xml(format));
        xml.push_str("</md:NameIDFormat>\n");
    }
    xml.push_str("    <md:AssertionConsumerService");
    push_attr(&mut xml, "Binding", BINDING_POST);
    push_attr(&mut xml, "Location", &sp.acs_url);
    push_attr(&mut xml, "index", "0");
    push_attr(&mut xml, "isDefault", "true");
    xml.push_str("/>\n  </md:SPSSODescriptor>\n</md:EntityDescriptor>\n");
    xml
}

fn bool_str(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

// ---------------------------------------------------------------------------------------------
// IdP metadata
// ---------------------------------------------------------------------------------------------

/// What a connection takes from an IdP's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpMetadata {
    /// The IdP's entity ID (the Issuer of its responses).
    pub entity_id: String,
    /// The first `SingleSignOnService` with the HTTP-Redirect binding (where AuthnRequests go).
    pub sso_redirect_url: String,
    /// The first `SingleSignOnService` with the HTTP-POST binding, if any.
    pub sso_post_url: Option<String>,
    /// The first `SingleLogoutService` with the HTTP-Redirect binding, if the IdP offers single
    /// logout (its `ResponseLocation` is not used: idplex answers at `Location`).
    pub slo_redirect_url: Option<String>,
    /// The signing certificates, in document order, de-duplicated (same DER), never empty:
    /// every `KeyDescriptor` with `use="signing"` or without `use` (a key for both).
    pub certificates: Vec<Certificate>,
    /// `WantAuthnRequestsSigned` (default false).
    pub want_authn_requests_signed: bool,
    /// The `NameIDFormat`s listed, in document order.
    pub name_id_formats: Vec<String>,
    /// The earliest `validUntil` (Unix seconds) of the descriptor, the entity and the groups
    /// around it, if any says one: when the admin must import a fresh copy.
    pub valid_until: Option<i64>,
}

impl IdpMetadata {
    /// The trusted-IdP configuration this metadata describes (response-only signing off).
    pub fn into_idp_config(self) -> IdpConfig {
        IdpConfig {
            entity_id: self.entity_id,
            sso_url: self.sso_redirect_url,
            certificates: self.certificates,
            allow_response_only_signing: false,
        }
    }
}

fn malformed(detail: impl Into<String>) -> SamlError {
    SamlError::new(SamlErrorCode::Malformed, detail)
}

fn incomplete(detail: impl Into<String>) -> SamlError {
    SamlError::new(SamlErrorCode::MetadataIncomplete, detail)
}

fn too_large(detail: impl Into<String>) -> SamlError {
    SamlError::new(SamlErrorCode::TooLarge, detail)
}

/// Read an IdP's metadata at `now` (Unix seconds).
///
/// The root is an `md:EntityDescriptor` (if `entity_id` is given it must match), or an
/// `md:EntitiesDescriptor` aggregate (nested groups allowed): then `entity_id` selects the
/// entity; without it exactly one entity with an `IDPSSODescriptor` must be present
/// (`EntityAmbiguous` says how many there are). The entity must have one `IDPSSODescriptor`
/// whose `protocolSupportEnumeration` lists SAML 2.0, with an HTTP-Redirect
/// `SingleSignOnService` on an `https://` URL (see [`check_endpoint_url`]), and at least one
/// signing certificate (`NoCertificate`). A `validUntil` in the past on the descriptor, the
/// entity or an enclosing group is `Expired`. Limits: [`MAX_METADATA_BYTES`],
/// [`MAX_CERTIFICATES`], [`MAX_ENTITIES`], [`MAX_METADATA_NODES`] (`TooLarge`).
///
/// The metadata's own signature, if any, is not verified (see the module docs).
pub fn parse_idp_metadata(xml: &str, entity_id: Option<&str>, now: i64) -> Result<IdpMetadata, SamlError> {
    if xml.len() > MAX_METADATA_BYTES {
        return Err(too_large(format!(
            "metadata of {} bytes, over the limit of {MAX_METADATA_BYTES}",
            xml.len()
        )));
    }
    // roxmltree tolerates an empty `<!DOCTYPE x>` even with DTDs off: refuse any.
    if xml.contains("<!DOCTYPE") {
        return Err(SamlError::new(SamlErrorCode::DtdForbidden, "the metadata contains a <!DOCTYPE>"));
    }
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_METADATA_NODES,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected | roxmltree::Error::EntityReferenceLoop(_) => {
            SamlError::new(SamlErrorCode::DtdForbidden, "the metadata contains a DTD")
        }
        roxmltree::Error::NodesLimitReached => {
            too_large(format!("metadata of more than {MAX_METADATA_NODES} XML nodes"))
        }
        other => {
            malformed(format!("metadata is not well-formed XML: {}", SamlError::shown(&other.to_string())))
        }
    })?;

    let root = doc.root_element();
    let entity = if is_md(root, "EntityDescriptor") {
        if let Some(wanted) = entity_id {
            let found = root.attribute("entityID").unwrap_or_default();
            if found != wanted {
                return Err(incomplete(format!(
                    "the metadata describes entity {:?}, not {:?}",
                    SamlError::shown(found),
                    SamlError::shown(wanted)
                )));
            }
        }
        root
    } else if is_md(root, "EntitiesDescriptor") {
        select_entity(root, entity_id)?
    } else {
        return Err(malformed(format!(
            "the root element is {{{}}}{}, not an md:EntityDescriptor or md:EntitiesDescriptor",
            SamlError::shown(root.tag_name().namespace().unwrap_or_default()),
            SamlError::shown(root.tag_name().name())
        )));
    };

    let entity_id = entity.attribute("entityID").unwrap_or_default();
    if entity_id.trim().is_empty() {
        return Err(malformed("the EntityDescriptor has no entityID"));
    }
    if entity_id.chars().count() > MAX_ENTITY_ID_CHARS {
        return Err(too_large(format!("entityID over {MAX_ENTITY_ID_CHARS} characters")));
    }
    let shown_entity = SamlError::shown(entity_id);

    let idp = select_idp_descriptor(entity, &shown_entity)?;

    // validUntil on the descriptor, the entity and every enclosing group.
    let mut earliest: Option<i64> = None;
    for node in idp.ancestors().filter(|n| n.is_element() && n.tag_name().namespace() == Some(NS_METADATA)) {
        if let Some(valid_until) = node.attribute("validUntil") {
            let instant = parse_instant(valid_until).ok_or_else(|| {
                malformed(format!(
                    "validUntil {:?} of the {} is not an xs:dateTime",
                    SamlError::shown(valid_until),
                    node.tag_name().name()
                ))
            })?;
            if instant <= now {
                return Err(SamlError::new(
                    SamlErrorCode::Expired,
                    format!(
                        "the metadata expired: validUntil {} of the {} has passed; fetch a fresh copy from the IdP",
                        SamlError::shown(valid_until),
                        node.tag_name().name()
                    ),
                ));
            }
            earliest = Some(earliest.map_or(instant, |e| e.min(instant)));
        }
    }

    let want_authn_requests_signed = match idp.attribute("WantAuthnRequestsSigned").map(str::trim) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(malformed(format!(
                "WantAuthnRequestsSigned {:?} is not a boolean",
                SamlError::shown(other)
            )));
        }
    };

    let services: Vec<Node> = md_children(idp, "SingleSignOnService").collect();
    let location = |binding: &str| -> Result<Option<String>, SamlError> {
        let Some(service) = services.iter().find(|s| s.attribute("Binding") == Some(binding)) else {
            return Ok(None);
        };
        let location = service.attribute("Location").unwrap_or_default();
        if location.is_empty() {
            return Err(malformed(format!("the SingleSignOnService for {binding} has no Location")));
        }
        check_endpoint_url(location)?;
        Ok(Some(location.to_owned()))
    };
    let Some(sso_redirect_url) = location(BINDING_REDIRECT)? else {
        let found: Vec<String> = services
            .iter()
            .map(|s| SamlError::shown(s.attribute("Binding").unwrap_or("(no Binding)")))
            .collect();
        return Err(incomplete(format!(
            "entity {shown_entity:?} has no SingleSignOnService with the HTTP-Redirect binding ({BINDING_REDIRECT}); bindings listed: {}",
            if found.is_empty() { "none".to_owned() } else { found.join(", ") }
        )));
    };
    let sso_post_url = location(BINDING_POST)?;
    let slo_redirect_url = match md_children(idp, "SingleLogoutService").find(|s| s.attribute("Binding") == Some(BINDING_REDIRECT)) {
        Some(service) => {
            let location = service.attribute("Location").unwrap_or_default();
            check_endpoint_url(location)?;
            Some(location.to_owned())
        }
        None => None,
    };

    let certificates = signing_certificates(idp, &shown_entity)?;

    let mut name_id_formats = Vec::new();
    for format in md_children(idp, "NameIDFormat") {
        let text = element_text(format, "NameIDFormat")?;
        let text = text.trim();
        if !text.is_empty() && !name_id_formats.iter().any(|f| f == text) {
            name_id_formats.push(text.to_owned());
        }
    }

    Ok(IdpMetadata {
        entity_id: entity_id.to_owned(),
        sso_redirect_url,
        sso_post_url,
        slo_redirect_url,
        certificates,
        want_authn_requests_signed,
        name_id_formats,
        valid_until: earliest,
    })
}

/// The entity of an aggregate: the one named `entity_id`, else the only IdP.
fn select_entity<'a, 'i>(root: Node<'a, 'i>, entity_id: Option<&str>) -> Result<Node<'a, 'i>, SamlError> {
    let mut entities: Vec<Node> = Vec::new();
    let mut groups = vec![root];
    while let Some(group) = groups.pop() {
        for child in group.children().filter(Node::is_element) {
            if is_md(child, "EntitiesDescriptor") {
                groups.push(child);
            } else if is_md(child, "EntityDescriptor") {
                if entities.len() == MAX_ENTITIES {
                    return Err(too_large(format!("aggregate of more than {MAX_ENTITIES} entities")));
                }
                entities.push(child);
            }
        }
    }
    entities.sort_by_key(|n| n.range().start);

    if let Some(wanted) = entity_id {
        let mut matching = entities.iter().filter(|e| e.attribute("entityID") == Some(wanted));
        return match (matching.next(), matching.next()) {
            (Some(entity), None) => Ok(*entity),
            (None, _) => Err(incomplete(format!(
                "the aggregate's {} entities do not include {:?}",
                entities.len(),
                SamlError::shown(wanted)
            ))),
            (Some(_), Some(_)) => Err(SamlError::new(
                SamlErrorCode::EntityAmbiguous,
                format!("entity {:?} appears more than once in the aggregate", SamlError::shown(wanted)),
            )),
        };
    }
    let idps: Vec<Node> =
        entities.iter().copied().filter(|e| md_children(*e, "IDPSSODescriptor").next().is_some()).collect();
    match idps.as_slice() {
        [only] => Ok(*only),
        [] => Err(incomplete(format!(
            "the aggregate lists {} entities, none of them an IdP (IDPSSODescriptor)",
            entities.len()
        ))),
        several => {
            let mut names: Vec<String> = several
                .iter()
                .take(3)
                .map(|e| format!("{:?}", SamlError::shown(e.attribute("entityID").unwrap_or_default())))
                .collect();
            if several.len() > 3 {
                names.push("…".to_owned());
            }
            Err(SamlError::new(
                SamlErrorCode::EntityAmbiguous,
                format!(
                    "the aggregate lists {} IdP entities ({}); choose one by entity ID",
                    several.len(),
                    names.join(", ")
                ),
            ))
        }
    }
}

/// The entity's one `IDPSSODescriptor` that supports SAML 2.0.
fn select_idp_descriptor<'a, 'i>(
    entity: Node<'a, 'i>,
    shown_entity: &str,
) -> Result<Node<'a, 'i>, SamlError> {
    let descriptors: Vec<Node> = md_children(entity, "IDPSSODescriptor").collect();
    if descriptors.is_empty() {
        return Err(incomplete(format!(
            "entity {shown_entity:?} has no IDPSSODescriptor: it is not an identity provider"
        )));
    }
    let mut saml2 = descriptors.iter().filter(|d| {
        d.attribute("protocolSupportEnumeration")
            .is_some_and(|protocols| protocols.split_ascii_whitespace().any(|p| p == NS_PROTOCOL))
    });
    match (saml2.next(), saml2.next()) {
        (Some(idp), None) => Ok(*idp),
        (None, _) => Err(incomplete(format!(
            "the IDPSSODescriptor of {shown_entity:?} does not list SAML 2.0 ({NS_PROTOCOL}) in protocolSupportEnumeration"
        ))),
        (Some(_), Some(_)) => Err(SamlError::new(
            SamlErrorCode::EntityAmbiguous,
            format!("entity {shown_entity:?} has more than one SAML 2.0 IDPSSODescriptor"),
        )),
    }
}

/// The certificates of every `KeyDescriptor` with `use="signing"` or no `use`, de-duplicated.
fn signing_certificates(idp: Node, shown_entity: &str) -> Result<Vec<Certificate>, SamlError> {
    let mut certificates: Vec<Certificate> = Vec::new();
    let mut seen = 0usize;
    let mut encryption_only = 0usize;
    for (index, descriptor) in md_children(idp, "KeyDescriptor").enumerate() {
        match descriptor.attribute("use") {
            // No `use`: the key is for signing and encryption (SAML 2.0 Metadata §2.4.1.1).
            None | Some("signing") => {}
            Some("encryption") => {
                encryption_only += 1;
                continue;
            }
            Some(other) => {
                return Err(malformed(format!(
                    "KeyDescriptor {} has use={:?}; signing or encryption expected",
                    index + 1,
                    SamlError::shown(other)
                )));
            }
        }
        let x509_certificates = children_ns(descriptor, NS_DSIG, "KeyInfo")
            .flat_map(|info| children_ns(info, NS_DSIG, "X509Data"))
            .flat_map(|data| children_ns(data, NS_DSIG, "X509Certificate"));
        for element in x509_certificates {
            seen += 1;
            if seen > MAX_CERTIFICATES {
                return Err(too_large(format!(
                    "more than {MAX_CERTIFICATES} signing certificates in the IDPSSODescriptor"
                )));
            }
            let text = element_text(element, "X509Certificate")?;
            let certificate = Certificate::from_text(&text).map_err(|e| {
                SamlError::new(
                    e.code,
                    format!(
                        "signing certificate #{seen} (KeyDescriptor {}, starting {:?}) of {shown_entity:?}: {}",
                        index + 1,
                        SamlError::shown(&text.trim().chars().take(24).collect::<String>()),
                        e.detail
                    ),
                )
            })?;
            if !certificates.iter().any(|c| c.der() == certificate.der()) {
                certificates.push(certificate);
            }
        }
    }
    if certificates.is_empty() {
        let note = if encryption_only > 0 {
            format!(" (only {encryption_only} encryption key(s))")
        } else {
            String::new()
        };
        return Err(SamlError::new(
            SamlErrorCode::NoCertificate,
            format!("the IdP metadata lists no signing certificate{note}; SSO cannot be enabled without one"),
        ));
    }
    Ok(certificates)
}

fn is_md(node: Node, name: &str) -> bool {
    node.is_element() && node.tag_name().namespace() == Some(NS_METADATA) && node.tag_name().name() == name
}

fn children_ns<'a, 'i>(
    node: Node<'a, 'i>,
    namespace: &'static str,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(move |c| {
        c.is_element() && c.tag_name().namespace() == Some(namespace) && c.tag_name().name() == name
    })
}

fn md_children<'a, 'i>(node: Node<'a, 'i>, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> {
    children_ns(node, NS_METADATA, name)
}

/// The text of an element that must hold only text (comments ignored).
fn element_text(node: Node, what: &str) -> Result<String, SamlError> {
    let mut text = String::new();
    for child in node.children() {
        if child.is_element() {
            return Err(malformed(format!("{what} contains an element; text expected")));
        }
        if let Some(t) = child.text().filter(|_| child.is_text()) {
            text.push_str(t);
        }
    }
    Ok(text)
}

// ---------------------------------------------------------------------------------------------
// URLs and instants
// ---------------------------------------------------------------------------------------------

/// Check an IdP endpoint URL: absolute `https://` with a host (`http://` only for
/// `localhost`, `127.0.0.1` and `[::1]`, for tests: otherwise `InsecureUrl`); no user info, no
/// fragment, printable ASCII only without characters a URL cannot carry (`"<>\^`{|}`,
/// whitespace); at most [`MAX_URL_CHARS`]. Anything else is `Malformed`.
pub fn check_endpoint_url(url: &str) -> Result<(), SamlError> {
    let shown = || SamlError::shown(url);
    if url.len() > MAX_URL_CHARS {
        return Err(too_large(format!("URL over {MAX_URL_CHARS} characters")));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b)) {
        return Err(malformed(format!("{:?} is not a URL (characters a URL cannot carry)", shown())));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(malformed(format!("{:?} is not an absolute URL", shown())));
    };
    if url.contains('#') {
        return Err(malformed(format!("URL {:?} has a fragment", shown())));
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(malformed(format!("URL {:?} has user info", shown())));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((address, port)) => (&authority[..address.len() + 2], port),
            None => return Err(malformed(format!("URL {:?} has a bad IPv6 host", shown()))),
        },
        None => match authority.split_once(':') {
            Some((host, _)) => (host, &authority[host.len()..]),
            None => (authority, ""),
        },
    };
    if host.is_empty() || host == "[]" {
        return Err(malformed(format!("URL {:?} has no host", shown())));
    }
    if !port.is_empty() {
        let digits = port.strip_prefix(':').unwrap_or("x");
        if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed(format!("URL {:?} has a bad port", shown())));
        }
    }
    if scheme.eq_ignore_ascii_case("https") {
        Ok(())
    } else if scheme.eq_ignore_ascii_case("http") {
        if host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "[::1]" {
            Ok(())
        } else {
            Err(SamlError::new(
                SamlErrorCode::InsecureUrl,
                format!("URL {:?} is not https:// (http:// is allowed only for localhost)", shown()),
            ))
        }
    } else {
        Err(SamlError::new(
            SamlErrorCode::InsecureUrl,
            format!("URL {:?} has scheme {:?}; https:// is required", shown(), SamlError::shown(scheme)),
        ))
    }
}

/// A metadata `validUntil` as Unix seconds: an `xs:dateTime` as the ACS reads it
/// ([`crate::xml::parse_date_time`]), surrounding white space ignored and a missing time zone
/// taken as UTC (SAML requires UTC; some metadata omits the `Z`). `None` if malformed.
pub(crate) fn parse_instant(value: &str) -> Option<i64> {
    let value = value.trim();
    crate::xml::parse_date_time(value).or_else(|| {
        let zoned = value.bytes().rev().take(6).any(|b| matches!(b, b'Z' | b'+' | b'-'));
        if zoned { None } else { crate::xml::parse_date_time(&format!("{value}Z")) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants() {
        assert_eq!(parse_instant("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_instant("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_instant("2000-02-29T00:00:00.123456Z"), Some(951_782_400));
        assert_eq!(parse_instant("2000-02-29T00:00:00"), Some(951_782_400));
        assert_eq!(parse_instant("2000-02-29T01:30:00+01:30"), Some(951_782_400));
        assert_eq!(parse_instant("2000-02-28T22:00:00-02:00"), Some(951_782_400));
        for bad in [
            "",
            "2001-02-29T00:00:00Z",
            "2000-13-01T00:00:00Z",
            "2000-00-01T00:00:00Z",
            "2000-01-01T24:00:00Z",
            "2000-01-01T00:00:00.Z",
            "2000-01-01T00:00:00+1:00",
            "2000-01-01T00:00:00+15:00",
            "2000-01-01 00:00:00Z",
            "2000-01-01T00:00:00ZZ",
            "+200-01-01T00:00:00Z",
            "2000-01-01T00:00:0éZ",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }

    #[test]
    fn endpoint_urls() {
        for good in [
            "https://idp.example.com/sso",
            "HTTPS://idp.example.com:8443/sso?x=1&y=2",
            "https://idp.example.com",
            "http://localhost:8080/sso",
            "http://127.0.0.1/sso",
            "http://[::1]:9000/sso",
            "https://[2001:db8::1]/sso",
        ] {
            assert_eq!(check_endpoint_url(good), Ok(()), "{good}");
        }
        for (bad, code) in [
            ("http://idp.example.com/sso", SamlErrorCode::InsecureUrl),
            ("http://localhost.evil.example/sso", SamlErrorCode::InsecureUrl),
            ("http://127.0.0.1.evil.example/", SamlErrorCode::InsecureUrl),
            ("ftp://idp.example.com/", SamlErrorCode::InsecureUrl),
            ("javascript://%0aalert(1)", SamlErrorCode::InsecureUrl),
            ("http://localhost@evil.example/", SamlErrorCode::Malformed),
            ("http://localhost\\@evil.example/", SamlErrorCode::Malformed),
            ("https://idp.example.com/sso#x", SamlErrorCode::Malformed),
            ("https:///sso", SamlErrorCode::Malformed),
            ("https://idp.example.com:/sso", SamlErrorCode::Malformed),
            ("https://idp.example.com:x/sso", SamlErrorCode::Malformed),
            ("https://idp.example.com/s so", SamlErrorCode::Malformed),
            ("https://idp.example.com/\"><x", SamlErrorCode::Malformed),
            ("/relative", SamlErrorCode::Malformed),
            ("https://[::1/", SamlErrorCode::Malformed),
        ] {
            assert_eq!(check_endpoint_url(bad).map_err(|e| e.code), Err(code), "{bad}");
        }
    }
}
