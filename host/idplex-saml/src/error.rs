//! Why a SAML message was refused: a stable code (for events, metrics and tests) and a detail
//! an admin can act on. Details never quote signature values or whole documents, and quote
//! attacker-controlled strings only shortened and escaped ([`SamlError::shown`]).

/// The class of a refusal. `as_str` is the stable snake_case name recorded in events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SamlErrorCode {
    /// Not base64, not UTF-8, not well-formed XML, or not the expected element.
    Malformed,
    /// Over a size, depth, count or inflate limit.
    TooLarge,
    /// A `<!DOCTYPE>` (DTD, entities: XXE, billion laughs) anywhere.
    DtdForbidden,
    /// `<samlp:Status>` is not Success.
    StatusNotSuccess,
    /// Not exactly one `<saml:Assertion>` (none, several, or an unsigned one beside a signed
    /// one), or an encrypted assertion (not supported).
    AssertionCount,
    /// No signature covers what must be signed (signature stripped, or only the wrong element
    /// signed).
    Unsigned,
    /// The signature value does not verify under any configured certificate (forged,
    /// tampered, empty).
    SignatureInvalid,
    /// A Reference's digest does not match the canonical form of what it points at (the
    /// signed content was changed).
    DigestMismatch,
    /// The Signature's structure is not the one allowed: not exactly one Reference, a
    /// Reference to something other than its parent element (XML signature wrapping), an ID
    /// that is not unique, transforms other than enveloped-signature + exclusive c14n.
    ReferenceInvalid,
    /// A signature, digest or canonicalization algorithm not on the allow-list (RSA-SHA1,
    /// SHA-1 digests, HMAC, inclusive c14n, ...).
    AlgorithmForbidden,
    /// The IdP has no signing certificate configured: SSO is refused until it has one.
    NoCertificate,
    /// A configured certificate cannot be used (unparsable, unsupported key type, RSA key
    /// under 2048 bits).
    CertificateInvalid,
    /// `<Issuer>` is missing or not the configured IdP entity ID.
    IssuerMismatch,
    /// The Response's `Destination` is missing or not the ACS URL.
    DestinationMismatch,
    /// No bearer `<SubjectConfirmationData>` whose `Recipient` is the ACS URL.
    RecipientMismatch,
    /// No `<AudienceRestriction>`, or none naming this SP.
    AudienceMismatch,
    /// `NotOnOrAfter` has passed (allowing the skew).
    Expired,
    /// `NotBefore` is still ahead (allowing the skew).
    NotYetValid,
    /// `IssueInstant` is too old or in the future.
    Stale,
    /// `InResponseTo` does not match an outstanding request (or is missing where one is
    /// required, or the Response's and the SubjectConfirmationData's differ).
    InResponseToMismatch,
    /// The assertion ID was seen before (replay).
    Replayed,
    /// No `<Subject>`/`<NameID>`, or a NameID that is not plain text.
    SubjectInvalid,
    /// An unsolicited (IdP-initiated) response where the connection does not allow them.
    UnsolicitedRefused,
    /// A `<Conditions>` element the SP does not understand (fail closed), e.g. a
    /// `<ProxyRestriction>` or an unknown condition.
    ConditionUnsupported,
    /// The SP's own signing key cannot be used (unparsable, encrypted, not RSA 2048..=8192).
    KeyInvalid,
    /// A URL that must be `https://` is not (`http://` is allowed only for `localhost` and
    /// `127.0.0.1`, for tests).
    InsecureUrl,
    /// IdP metadata lacks something required: the entity asked for, an `IDPSSODescriptor`,
    /// SAML 2.0 in its `protocolSupportEnumeration`, an HTTP-Redirect `SingleSignOnService`.
    MetadataIncomplete,
    /// An aggregate lists several IdP entities and none was chosen (or an entity ID, or a SAML
    /// 2.0 `IDPSSODescriptor`, appears more than once).
    EntityAmbiguous,
}

impl SamlErrorCode {
    /// The stable snake_case name (events, metrics, test assertions).
    pub fn as_str(self) -> &'static str {
        match self {
            SamlErrorCode::Malformed => "malformed",
            SamlErrorCode::TooLarge => "too_large",
            SamlErrorCode::DtdForbidden => "dtd_forbidden",
            SamlErrorCode::StatusNotSuccess => "status_not_success",
            SamlErrorCode::AssertionCount => "assertion_count",
            SamlErrorCode::Unsigned => "unsigned",
            SamlErrorCode::SignatureInvalid => "signature_invalid",
            SamlErrorCode::DigestMismatch => "digest_mismatch",
            SamlErrorCode::ReferenceInvalid => "reference_invalid",
            SamlErrorCode::AlgorithmForbidden => "algorithm_forbidden",
            SamlErrorCode::NoCertificate => "no_certificate",
            SamlErrorCode::CertificateInvalid => "certificate_invalid",
            SamlErrorCode::IssuerMismatch => "issuer_mismatch",
            SamlErrorCode::DestinationMismatch => "destination_mismatch",
            SamlErrorCode::RecipientMismatch => "recipient_mismatch",
            SamlErrorCode::AudienceMismatch => "audience_mismatch",
            SamlErrorCode::Expired => "expired",
            SamlErrorCode::NotYetValid => "not_yet_valid",
            SamlErrorCode::Stale => "stale",
            SamlErrorCode::InResponseToMismatch => "in_response_to_mismatch",
            SamlErrorCode::Replayed => "replayed",
            SamlErrorCode::SubjectInvalid => "subject_invalid",
            SamlErrorCode::UnsolicitedRefused => "unsolicited_refused",
            SamlErrorCode::ConditionUnsupported => "condition_unsupported",
            SamlErrorCode::KeyInvalid => "key_invalid",
            SamlErrorCode::InsecureUrl => "insecure_url",
            SamlErrorCode::MetadataIncomplete => "metadata_incomplete",
            SamlErrorCode::EntityAmbiguous => "entity_ambiguous",
        }
    }
}

impl std::fmt::Display for SamlErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused SAML message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SAML {code}: {detail}")]
pub struct SamlError {
    pub code: SamlErrorCode,
    pub detail: String,
}

impl SamlError {
    pub fn new(code: SamlErrorCode, detail: impl Into<String>) -> Self {
        SamlError { code, detail: detail.into() }
    }

    /// An attacker-controlled string as it may appear in a detail: at most 80 characters,
    /// escaped (no control characters, no markup reaches a log or an admin page as is).
    pub fn shown(value: &str) -> String {
        let mut out: String = value.chars().take(80).flat_map(char::escape_debug).collect();
        if value.chars().count() > 80 {
            out.push('…');
        }
        out
    }
}
