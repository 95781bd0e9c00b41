//! The ACS: strict verification of a `<samlp:Response>` posted with the HTTP-POST binding.
//!
//! [`verify_response`] fails closed, checking in this order (each refusal with the most
//! specific [`SamlErrorCode`]):
//! 1. size ([`AcsPolicy::max_response_bytes`]), base64, UTF-8, no DTD, well-formed XML within
//!    the depth and node limits ([`crate::xml`]); the document element is a `samlp:Response`
//!    (by namespace, whatever its prefix) of version 2.0;
//! 2. a signing certificate is configured (else [`SamlErrorCode::NoCertificate`]);
//! 3. the top-level status is Success;
//! 4. the document holds exactly one `saml:Assertion`, a direct child of the Response, and no
//!    `EncryptedAssertion` (not supported): an assertion anywhere else (Extensions, Advice, a
//!    `ds:Object`, inside another assertion) counts, which refuses every signature-wrapping
//!    layout outright;
//! 5. signatures: at most one `ds:Signature` child of the Assertion and one of the Response, and
//!    none anywhere else. The Assertion's must verify ([`crate::dsig`]), or, only when the IdP is
//!    configured with `allow_response_only_signing`, the Response's; when both are present both
//!    must verify;
//! 6. Issuer of the Assertion (required) and of the Response (if present) is the IdP; the
//!    Response's `Destination` (required) is the ACS URL; both `IssueInstant`s are within
//!    `now - max_issue_age - skew ..= now + skew`;
//! 7. the Subject has exactly one plain-text `NameID` (no `EncryptedID`/`BaseID`; a comment or
//!    element inside is refused, never truncated) and a bearer `SubjectConfirmation` whose data
//!    names the ACS as `Recipient`, has a future `NotOnOrAfter`, no future `NotBefore`, and an
//!    `InResponseTo` equal to the Response's when either has one;
//! 8. `Conditions` is present, its time window holds, it has at least one `AudienceRestriction`
//!    and every one of them names this SP; `OneTimeUse` is accepted (the host's replay cache
//!    enforces it); `ProxyRestriction` and any other condition are refused;
//! 9. claims (NameID, SessionIndex, attributes) are read only from the verified assertion node:
//!    the node whose own signature verified, or the one Assertion child of the verified
//!    Response. Attribute values must be text (xsi:nil values are empty strings).
//!
//! Not done here, because it needs storage — **the host must do it**: reject a replayed
//! [`VerifiedResponse::assertion_id`] (keep it until [`VerifiedResponse::expires_at`]), and
//! match [`VerifiedResponse::in_response_to`] against its outstanding AuthnRequests (or refuse
//! an unsolicited response, `None`, where the connection does not allow IdP-initiated SSO).

use roxmltree::Node;

use crate::xml::{self, Limits, TextRefusal, at_most_one, children_named, parse_date_time, plain_text};
use crate::{IdpConfig, NS_ASSERTION, NS_DSIG, NS_PROTOCOL, SamlError, SamlErrorCode, SpConfig, dsig};

/// Top-level status of a successful response.
pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
/// The bearer subject-confirmation method (Web Browser SSO profile).
pub const CM_BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
/// The entity NameID format (the only `Format` an `<Issuer>` may carry).
pub const NAMEID_ENTITY: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity";
const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Bounds and tolerances of the ACS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcsPolicy {
    /// Largest `SAMLResponse` form value accepted (base64 characters); the decoded document
    /// must fit in it too.
    pub max_response_bytes: usize,
    /// Clock skew allowed on NotBefore / NotOnOrAfter / IssueInstant, seconds.
    pub clock_skew_secs: i64,
    /// How old a Response's and Assertion's `IssueInstant` may be, seconds.
    pub max_issue_age_secs: i64,
}

impl Default for AcsPolicy {
    /// 256 KiB, 120 s of skew, `IssueInstant` at most 300 s old.
    fn default() -> Self {
        AcsPolicy { max_response_bytes: 256 << 10, clock_skew_secs: 120, max_issue_age_secs: 300 }
    }
}

/// One `<saml:Attribute>` of the verified assertion, values as their full text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// `Name` (e.g. `urn:oid:0.9.2342.19200300.100.1.3` or `email`).
    pub name: String,
    /// `FriendlyName`, if given.
    pub friendly_name: Option<String>,
    /// Each `<AttributeValue>`'s full text, in document order (`xsi:nil` values are empty).
    pub values: Vec<String>,
}

/// What the host (and a connector's claim mapping) sees of a verified response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedResponse {
    /// The Response's `ID`.
    pub response_id: String,
    /// The Assertion's `ID` (the replay cache's key).
    pub assertion_id: String,
    /// The IdP entity ID (the Issuer).
    pub issuer: String,
    /// `InResponseTo` (Response and SubjectConfirmationData agree), if solicited. The host
    /// must match it against its outstanding requests.
    pub in_response_to: Option<String>,
    /// The NameID's full text.
    pub name_id: String,
    /// The NameID's `Format`, if given.
    pub name_id_format: Option<String>,
    /// `<AuthnStatement SessionIndex>` (of the first AuthnStatement).
    pub session_index: Option<String>,
    /// Every `<Attribute>` of every `<AttributeStatement>` of the assertion, in document order.
    pub attributes: Vec<Attribute>,
    /// Unix seconds from which the assertion is no longer acceptable: the earliest of its
    /// NotOnOrAfter bounds (Conditions, bearer SubjectConfirmationData) plus the policy's clock
    /// skew, since [`verify_response`] accepts it until then. How long its ID must stay in the
    /// replay cache.
    pub expires_at: i64,
    /// Whether the Assertion itself was signed (false only under response-only signing).
    pub assertion_signed: bool,
}

fn err(code: SamlErrorCode, detail: impl Into<String>) -> SamlError {
    SamlError::new(code, detail)
}

/// Verify a base64 `SAMLResponse` posted to `sp`'s ACS against the trusted `idp`, at `now`
/// (Unix seconds). See the module documentation for what is checked, and what the host must
/// still do with the result (replay cache, InResponseTo against outstanding requests).
pub fn verify_response(
    saml_response_b64: &str,
    sp: &SpConfig,
    idp: &IdpConfig,
    policy: &AcsPolicy,
    now: i64,
) -> Result<VerifiedResponse, SamlError> {
    if saml_response_b64.len() > policy.max_response_bytes {
        return Err(err(
            SamlErrorCode::TooLarge,
            format!(
                "SAMLResponse of {} characters, over the limit of {}",
                saml_response_b64.len(),
                policy.max_response_bytes
            ),
        ));
    }
    let text = xml::decode_form_value(saml_response_b64, policy.max_response_bytes)?;
    let limits = Limits { max_bytes: policy.max_response_bytes, ..Limits::default() };
    let doc = xml::parse(&text, &limits)?;
    verify_document(doc.root_element(), sp, idp, policy, now)
}

fn verify_document(
    response: Node<'_, '_>,
    sp: &SpConfig,
    idp: &IdpConfig,
    policy: &AcsPolicy,
    now: i64,
) -> Result<VerifiedResponse, SamlError> {
    // 1. The document element.
    if !xml::is(response, NS_PROTOCOL, "Response") {
        return Err(err(
            SamlErrorCode::Malformed,
            format!(
                "the message is a <{}> (namespace {}); a samlp:Response is expected",
                SamlError::shown(response.tag_name().name()),
                SamlError::shown(response.tag_name().namespace().unwrap_or("none"))
            ),
        ));
    }
    check_version(response)?;
    let response_id = required_attribute(response, "ID")?;

    // 2. Fail closed without a key.
    if idp.certificates.is_empty() {
        return Err(err(
            SamlErrorCode::NoCertificate,
            format!(
                "no signing certificate is configured for the IdP {}; add its certificate (or import its \
                 metadata) before enabling SSO",
                SamlError::shown(&idp.entity_id)
            ),
        ));
    }

    // 3. Status.
    check_status(response)?;

    // 4. Exactly one assertion, where it belongs.
    let doc_root = response.document().root();
    if doc_root.descendants().any(|n| xml::is(n, NS_ASSERTION, "EncryptedAssertion")) {
        return Err(err(
            SamlErrorCode::AssertionCount,
            "the response carries an EncryptedAssertion; encrypted assertions are not supported: configure the \
             IdP to sign assertions without encrypting them",
        ));
    }
    let assertions: Vec<Node<'_, '_>> = doc_root.descendants().filter(|n| xml::is(*n, NS_ASSERTION, "Assertion")).collect();
    let assertion = match assertions.as_slice() {
        [] => return Err(err(SamlErrorCode::AssertionCount, "the response carries no Assertion")),
        [one] => *one,
        many => {
            return Err(err(
                SamlErrorCode::AssertionCount,
                format!("the response carries {} Assertions; exactly one is accepted", many.len()),
            ));
        }
    };
    if assertion.parent_element().map(|p| p.id()) != Some(response.id()) {
        return Err(err(
            SamlErrorCode::AssertionCount,
            format!(
                "the Assertion is inside <{}>, not a direct child of the Response",
                SamlError::shown(assertion.parent_element().map(|p| p.tag_name().name()).unwrap_or("?"))
            ),
        ));
    }

    // 5. Signatures.
    let mut assertion_signature = None;
    let mut response_signature = None;
    for signature in doc_root.descendants().filter(|n| xml::is(*n, NS_DSIG, "Signature")) {
        let parent = signature.parent_element();
        let slot = match parent.map(|p| p.id()) {
            Some(id) if id == assertion.id() => &mut assertion_signature,
            Some(id) if id == response.id() => &mut response_signature,
            _ => {
                return Err(err(
                    SamlErrorCode::ReferenceInvalid,
                    format!(
                        "a ds:Signature inside <{}>; only the Response and the Assertion may be signed, each by a \
                         Signature that is its direct child",
                        SamlError::shown(parent.map(|p| p.tag_name().name()).unwrap_or("?"))
                    ),
                ));
            }
        };
        if slot.replace(signature).is_some() {
            return Err(err(
                SamlErrorCode::ReferenceInvalid,
                format!(
                    "the {} carries more than one ds:Signature",
                    parent.map(|p| p.tag_name().name()).unwrap_or("?")
                ),
            ));
        }
    }
    let verified_assertion = match assertion_signature {
        Some(signature) => Some(dsig::verify_enveloped(signature, &idp.certificates)?),
        None => None,
    };
    let verified_response = match response_signature {
        Some(_) if verified_assertion.is_none() && !idp.allow_response_only_signing => {
            return Err(err(
                SamlErrorCode::Unsigned,
                "the Assertion is not signed (only the Response is); this connection requires a signed assertion \
                 (allow response-only signing for IdPs that cannot sign assertions)",
            ));
        }
        Some(signature) => Some(dsig::verify_enveloped(signature, &idp.certificates)?),
        None => None,
    };
    // The node claims are read from: the one whose signature verified, or the one Assertion
    // child of the verified Response.
    let (assertion, assertion_signed) = match (&verified_assertion, &verified_response) {
        (Some(signed), _) => (signed.signed, true),
        (None, Some(signed)) => {
            let mut inside = children_named(signed.signed, NS_ASSERTION, "Assertion");
            match (inside.next(), inside.next()) {
                (Some(one), None) if signed.signed.id() == response.id() => (one, false),
                _ => {
                    return Err(err(
                        SamlErrorCode::AssertionCount,
                        "the signed Response does not hold exactly one Assertion",
                    ));
                }
            }
        }
        (None, None) => {
            return Err(err(
                SamlErrorCode::Unsigned,
                "neither the Assertion nor the Response is signed; an unsigned response is never accepted",
            ));
        }
    };
    check_version(assertion)?;
    let assertion_id = required_attribute(assertion, "ID")?;

    // 6. Issuer, Destination, freshness.
    let issuer = issuer_of(assertion)?
        .ok_or_else(|| err(SamlErrorCode::IssuerMismatch, "the Assertion has no <Issuer>"))?;
    check_issuer(&issuer, "Assertion", idp)?;
    if let Some(response_issuer) = issuer_of(response)? {
        check_issuer(&response_issuer, "Response", idp)?;
    }
    match response.attribute("Destination") {
        Some(destination) if destination == sp.acs_url => {}
        Some(destination) => {
            return Err(err(
                SamlErrorCode::DestinationMismatch,
                format!(
                    "the Response's Destination is {}, not this ACS URL {}",
                    SamlError::shown(destination),
                    SamlError::shown(&sp.acs_url)
                ),
            ));
        }
        None => {
            return Err(err(
                SamlErrorCode::DestinationMismatch,
                "the Response has no Destination attribute; it must name this ACS URL",
            ));
        }
    }
    let skew = policy.clock_skew_secs.max(0);
    for (node, what) in [(response, "Response"), (assertion, "Assertion")] {
        let instant = time_attribute(node, "IssueInstant", what)?
            .ok_or_else(|| err(SamlErrorCode::Malformed, format!("the {what} has no IssueInstant")))?;
        if instant > now.saturating_add(skew) {
            return Err(err(
                SamlErrorCode::Stale,
                format!("the {what} IssueInstant is {} s in the future (skew allowed: {skew} s)", instant - now),
            ));
        }
        if instant < now.saturating_sub(policy.max_issue_age_secs).saturating_sub(skew) {
            return Err(err(
                SamlErrorCode::Stale,
                format!(
                    "the {what} was issued {} s ago; at most {} s (+{skew} s skew) is accepted",
                    now.saturating_sub(instant),
                    policy.max_issue_age_secs
                ),
            ));
        }
    }

    // 7. Subject.
    let response_in_response_to = response.attribute("InResponseTo");
    let subject = read_subject(assertion, sp, response_in_response_to, now, skew)?;

    // 8. Conditions.
    let conditions_not_on_or_after = check_conditions(assertion, sp, now, skew)?;

    // 9. Claims.
    let session_index = children_named(assertion, NS_ASSERTION, "AuthnStatement")
        .next()
        .and_then(|statement| statement.attribute("SessionIndex"))
        .map(str::to_owned);
    let attributes = read_attributes(assertion)?;
    let expires_at = match conditions_not_on_or_after {
        Some(bound) => bound.min(subject.not_on_or_after),
        None => subject.not_on_or_after,
    }
    .saturating_add(skew);

    Ok(VerifiedResponse {
        response_id: response_id.to_owned(),
        assertion_id: assertion_id.to_owned(),
        issuer,
        in_response_to: subject.in_response_to,
        name_id: subject.name_id,
        name_id_format: subject.name_id_format,
        session_index,
        attributes,
        expires_at,
        assertion_signed,
    })
}

fn check_version(node: Node<'_, '_>) -> Result<(), SamlError> {
    match node.attribute("Version") {
        Some("2.0") => Ok(()),
        other => Err(err(
            SamlErrorCode::Malformed,
            format!(
                "the {} has Version {}; SAML 2.0 is expected",
                node.tag_name().name(),
                SamlError::shown(other.unwrap_or("(none)"))
            ),
        )),
    }
}

fn required_attribute<'a>(node: Node<'a, '_>, name: &str) -> Result<&'a str, SamlError> {
    node.attribute(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| err(SamlErrorCode::Malformed, format!("the {} has no {name}", node.tag_name().name())))
}

/// An optional `xs:dateTime` attribute; present but unparsable is `Malformed`.
fn time_attribute(node: Node<'_, '_>, name: &str, what: &str) -> Result<Option<i64>, SamlError> {
    match node.attribute(name) {
        None => Ok(None),
        Some(value) => parse_date_time(value).map(Some).ok_or_else(|| {
            err(
                SamlErrorCode::Malformed,
                format!(
                    "the {what} {name} {} is not a UTC xs:dateTime (YYYY-MM-DDThh:mm:ssZ)",
                    SamlError::shown(value)
                ),
            )
        }),
    }
}

/// The top-level StatusCode must be Success.
fn check_status(response: Node<'_, '_>) -> Result<(), SamlError> {
    let status = at_most_one(response, NS_PROTOCOL, "Status", SamlErrorCode::Malformed)?
        .ok_or_else(|| err(SamlErrorCode::StatusNotSuccess, "the Response has no <samlp:Status>"))?;
    let code = at_most_one(status, NS_PROTOCOL, "StatusCode", SamlErrorCode::Malformed)?;
    let value = code.and_then(|c| c.attribute("Value")).unwrap_or("");
    if value == STATUS_SUCCESS {
        return Ok(());
    }
    let short = |v: &str| -> String {
        SamlError::shown(v.strip_prefix("urn:oasis:names:tc:SAML:2.0:status:").unwrap_or(v))
    };
    let mut detail = format!("the IdP answered with status {}", if value.is_empty() { "(none)".into() } else { short(value) });
    if let Some(second) = code
        .and_then(|c| children_named(c, NS_PROTOCOL, "StatusCode").next())
        .and_then(|c| c.attribute("Value"))
    {
        detail.push_str(&format!(" / {}", short(second)));
    }
    if let Some(message) = children_named(status, NS_PROTOCOL, "StatusMessage").next() {
        let text = message.descendants().filter(|n| n.is_text()).filter_map(|n| n.text()).collect::<String>();
        if !text.trim().is_empty() {
            detail.push_str(&format!(": {}", SamlError::shown(text.trim())));
        }
    }
    Err(err(SamlErrorCode::StatusNotSuccess, detail))
}

/// The `<saml:Issuer>` child of `node`, if any, as plain text.
fn issuer_of(node: Node<'_, '_>) -> Result<Option<String>, SamlError> {
    let Some(issuer) = at_most_one(node, NS_ASSERTION, "Issuer", SamlErrorCode::IssuerMismatch)? else {
        return Ok(None);
    };
    if let Some(format) = issuer.attribute("Format")
        && format != NAMEID_ENTITY
    {
        return Err(err(
            SamlErrorCode::IssuerMismatch,
            format!("the {} Issuer has Format {}, not the entity format", node.tag_name().name(), SamlError::shown(format)),
        ));
    }
    plain_text(issuer).map(Some).map_err(|found| {
        err(
            SamlErrorCode::IssuerMismatch,
            format!("the {} Issuer is not plain text: it contains {}", node.tag_name().name(), found.describe()),
        )
    })
}

fn check_issuer(issuer: &str, what: &str, idp: &IdpConfig) -> Result<(), SamlError> {
    if issuer == idp.entity_id {
        return Ok(());
    }
    Err(err(
        SamlErrorCode::IssuerMismatch,
        format!(
            "the {what} was issued by {}, not by the configured IdP {}",
            SamlError::shown(issuer),
            SamlError::shown(&idp.entity_id)
        ),
    ))
}

struct Subject {
    name_id: String,
    name_id_format: Option<String>,
    in_response_to: Option<String>,
    not_on_or_after: i64,
}

fn subject_invalid(detail: impl Into<String>) -> SamlError {
    err(SamlErrorCode::SubjectInvalid, detail)
}

fn read_subject(
    assertion: Node<'_, '_>,
    sp: &SpConfig,
    response_in_response_to: Option<&str>,
    now: i64,
    skew: i64,
) -> Result<Subject, SamlError> {
    let subject = at_most_one(assertion, NS_ASSERTION, "Subject", SamlErrorCode::SubjectInvalid)?
        .ok_or_else(|| subject_invalid("the Assertion has no <Subject>"))?;
    let mut name_ids = Vec::new();
    let mut confirmations = Vec::new();
    for child in xml::elements(subject) {
        let name = child.tag_name().name();
        match (child.tag_name().namespace(), name) {
            (Some(NS_ASSERTION), "NameID") => name_ids.push(child),
            (Some(NS_ASSERTION), "SubjectConfirmation") => confirmations.push(child),
            (Some(NS_ASSERTION), "EncryptedID" | "BaseID") => {
                return Err(subject_invalid(format!(
                    "the Subject identifies the user with <saml:{name}>, which is not supported; configure the IdP \
                     to send a plain NameID"
                )));
            }
            _ => return Err(subject_invalid(format!("unexpected <{}> in the Subject", SamlError::shown(name)))),
        }
    }
    let name_id = match name_ids.as_slice() {
        [one] => *one,
        [] => return Err(subject_invalid("the Subject has no NameID")),
        _ => return Err(subject_invalid("the Subject has more than one NameID")),
    };
    let name_id_text = plain_text(name_id).map_err(|found| {
        subject_invalid(format!(
            "the NameID contains {}; it must be plain text (a comment or element inside a NameID is how \
             truncation attacks work)",
            found.describe()
        ))
    })?;
    if name_id_text.trim_matches(xml::is_xml_space).is_empty() {
        return Err(subject_invalid("the NameID is empty"));
    }

    let bearer: Vec<_> = confirmations.iter().filter(|c| c.attribute("Method") == Some(CM_BEARER)).collect();
    if bearer.is_empty() {
        return Err(err(
            SamlErrorCode::RecipientMismatch,
            "the Subject has no bearer SubjectConfirmation (Method urn:oasis:names:tc:SAML:2.0:cm:bearer)",
        ));
    }
    let mut first_error = None;
    for confirmation in bearer {
        match check_bearer(*confirmation, sp, response_in_response_to, now, skew) {
            Ok((not_on_or_after, in_response_to)) => {
                return Ok(Subject {
                    name_id: name_id_text,
                    name_id_format: name_id.attribute("Format").map(str::to_owned),
                    in_response_to,
                    not_on_or_after,
                });
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| err(SamlErrorCode::RecipientMismatch, "no usable bearer SubjectConfirmation")))
}

/// One bearer SubjectConfirmation: its NotOnOrAfter and InResponseTo when acceptable.
fn check_bearer(
    confirmation: Node<'_, '_>,
    sp: &SpConfig,
    response_in_response_to: Option<&str>,
    now: i64,
    skew: i64,
) -> Result<(i64, Option<String>), SamlError> {
    const WHAT: &str = "bearer SubjectConfirmationData";
    let data = at_most_one(confirmation, NS_ASSERTION, "SubjectConfirmationData", SamlErrorCode::SubjectInvalid)?
        .ok_or_else(|| {
            err(SamlErrorCode::RecipientMismatch, "a bearer SubjectConfirmation has no SubjectConfirmationData")
        })?;
    match data.attribute("Recipient") {
        Some(recipient) if recipient == sp.acs_url => {}
        Some(recipient) => {
            return Err(err(
                SamlErrorCode::RecipientMismatch,
                format!(
                    "the {WHAT} Recipient is {}, not this ACS URL {}",
                    SamlError::shown(recipient),
                    SamlError::shown(&sp.acs_url)
                ),
            ));
        }
        None => return Err(err(SamlErrorCode::RecipientMismatch, format!("the {WHAT} has no Recipient"))),
    }
    let not_on_or_after = time_attribute(data, "NotOnOrAfter", WHAT)?.ok_or_else(|| {
        err(SamlErrorCode::Expired, format!("the {WHAT} has no NotOnOrAfter; a bearer assertion must expire"))
    })?;
    if now >= not_on_or_after.saturating_add(skew) {
        return Err(err(
            SamlErrorCode::Expired,
            format!("the {WHAT} expired {} s ago (skew allowed: {skew} s)", now - not_on_or_after),
        ));
    }
    if let Some(not_before) = time_attribute(data, "NotBefore", WHAT)?
        && now.saturating_add(skew) < not_before
    {
        return Err(err(
            SamlErrorCode::NotYetValid,
            format!("the {WHAT} is valid only in {} s (skew allowed: {skew} s)", not_before - now),
        ));
    }
    let data_in_response_to = data.attribute("InResponseTo");
    if (response_in_response_to.is_some() || data_in_response_to.is_some()) && response_in_response_to != data_in_response_to
    {
        let show = |v: Option<&str>| v.map(SamlError::shown).unwrap_or_else(|| "(none)".into());
        return Err(err(
            SamlErrorCode::InResponseToMismatch,
            format!(
                "the Response answers request {} but the {WHAT} answers {}",
                show(response_in_response_to),
                show(data_in_response_to)
            ),
        ));
    }
    Ok((not_on_or_after, data_in_response_to.map(str::to_owned)))
}

/// Check `<Conditions>`; returns its NotOnOrAfter if any.
fn check_conditions(assertion: Node<'_, '_>, sp: &SpConfig, now: i64, skew: i64) -> Result<Option<i64>, SamlError> {
    let conditions = at_most_one(assertion, NS_ASSERTION, "Conditions", SamlErrorCode::Malformed)?.ok_or_else(|| {
        err(SamlErrorCode::AudienceMismatch, "the Assertion has no <Conditions>, so no AudienceRestriction")
    })?;
    if let Some(not_before) = time_attribute(conditions, "NotBefore", "Conditions")?
        && now.saturating_add(skew) < not_before
    {
        return Err(err(
            SamlErrorCode::NotYetValid,
            format!("the assertion is valid only in {} s (Conditions NotBefore; skew allowed: {skew} s)", not_before - now),
        ));
    }
    let not_on_or_after = time_attribute(conditions, "NotOnOrAfter", "Conditions")?;
    if let Some(bound) = not_on_or_after
        && now >= bound.saturating_add(skew)
    {
        return Err(err(
            SamlErrorCode::Expired,
            format!("the assertion expired {} s ago (Conditions NotOnOrAfter; skew allowed: {skew} s)", now - bound),
        ));
    }
    let mut restrictions = 0usize;
    for condition in xml::elements(conditions) {
        let name = condition.tag_name().name();
        match (condition.tag_name().namespace(), name) {
            (Some(NS_ASSERTION), "AudienceRestriction") => {
                restrictions += 1;
                let mut audiences = Vec::new();
                for audience in xml::elements(condition) {
                    if !xml::is(audience, NS_ASSERTION, "Audience") {
                        return Err(err(
                            SamlErrorCode::AudienceMismatch,
                            format!("unexpected <{}> in an AudienceRestriction", SamlError::shown(audience.tag_name().name())),
                        ));
                    }
                    audiences.push(plain_text(audience).map_err(|found| {
                        err(SamlErrorCode::AudienceMismatch, format!("an Audience contains {}", found.describe()))
                    })?);
                }
                if !audiences.contains(&sp.entity_id) {
                    return Err(err(
                        SamlErrorCode::AudienceMismatch,
                        format!(
                            "an AudienceRestriction names {} but not this SP {}",
                            audiences.first().map(|a| SamlError::shown(a)).unwrap_or_else(|| "no audience".into()),
                            SamlError::shown(&sp.entity_id)
                        ),
                    ));
                }
            }
            // Single use is what the host's replay cache enforces for every assertion.
            (Some(NS_ASSERTION), "OneTimeUse") => {}
            (Some(NS_ASSERTION), "ProxyRestriction") => {
                return Err(err(
                    SamlErrorCode::ConditionUnsupported,
                    "the assertion carries a ProxyRestriction condition, which this SP does not support",
                ));
            }
            _ => {
                return Err(err(
                    SamlErrorCode::ConditionUnsupported,
                    format!(
                        "the assertion carries an unknown condition <{}>; unknown conditions are refused",
                        SamlError::shown(name)
                    ),
                ));
            }
        }
    }
    if restrictions == 0 {
        return Err(err(
            SamlErrorCode::AudienceMismatch,
            "the assertion has no AudienceRestriction; it must be restricted to this SP",
        ));
    }
    Ok(not_on_or_after)
}

fn attribute_value_refused(attribute: &str, found: TextRefusal) -> SamlError {
    err(
        SamlErrorCode::Malformed,
        format!(
            "a value of the attribute {} contains {}; only text values are accepted",
            SamlError::shown(attribute),
            found.describe()
        ),
    )
}

fn read_attributes(assertion: Node<'_, '_>) -> Result<Vec<Attribute>, SamlError> {
    let mut attributes = Vec::new();
    for statement in children_named(assertion, NS_ASSERTION, "AttributeStatement") {
        for child in xml::elements(statement) {
            if xml::is(child, NS_ASSERTION, "EncryptedAttribute") {
                return Err(err(
                    SamlErrorCode::Malformed,
                    "the assertion carries an EncryptedAttribute; encrypted attributes are not supported",
                ));
            }
            if !xml::is(child, NS_ASSERTION, "Attribute") {
                return Err(err(
                    SamlErrorCode::Malformed,
                    format!("unexpected <{}> in an AttributeStatement", SamlError::shown(child.tag_name().name())),
                ));
            }
            let name = child
                .attribute("Name")
                .ok_or_else(|| err(SamlErrorCode::Malformed, "an Attribute has no Name"))?;
            let mut values = Vec::new();
            for value in xml::elements(child) {
                if !xml::is(value, NS_ASSERTION, "AttributeValue") {
                    return Err(err(
                        SamlErrorCode::Malformed,
                        format!(
                            "unexpected <{}> in the attribute {}",
                            SamlError::shown(value.tag_name().name()),
                            SamlError::shown(name)
                        ),
                    ));
                }
                let nil = matches!(value.attribute((NS_XSI, "nil")), Some("true" | "1"));
                let text = plain_text(value).map_err(|found| attribute_value_refused(name, found))?;
                if nil && !text.is_empty() {
                    return Err(err(
                        SamlErrorCode::Malformed,
                        format!("a value of the attribute {} is xsi:nil but not empty", SamlError::shown(name)),
                    ));
                }
                values.push(text);
            }
            attributes.push(Attribute {
                name: name.to_owned(),
                friendly_name: child.attribute("FriendlyName").map(str::to_owned),
                values,
            });
        }
    }
    Ok(attributes)
}
