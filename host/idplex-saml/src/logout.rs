//! Single logout (SAML 2.0 Profiles §4.4) with the HTTP-Redirect binding: the messages the SP
//! builds (a `<samlp:LogoutRequest>` when its user signs out, a `<samlp:LogoutResponse>` to the
//! IdP's request) and reads (the IdP's `LogoutRequest` and `LogoutResponse`).
//!
//! Reading is strict in the same way as the ACS: one parser with the same limits, no DTD, the
//! expected root element, exactly one `Issuer` equal to the configured IdP, a `Destination`
//! (when present) equal to the SP's SLO URL, a fresh `IssueInstant`, an unexpired
//! `NotOnOrAfter`, one plain-text `NameID` (an encrypted one is refused). The signature of a
//! Redirect-bound message covers the query, not the XML: the host verifies it with
//! [`crate::authn_request::verify_redirect_signature`] *before* reading the message.

use crate::authn_request::{check_request_id, escape_xml, format_instant, push_attr};
use crate::xml::{self, Limits};
use crate::{NS_ASSERTION, NS_PROTOCOL, SamlError, SamlErrorCode};

/// The top-level status of a successful response.
pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
/// How far an `IssueInstant` may be from now, in seconds (either way), on top of the skew.
pub const MAX_ISSUE_AGE_SECS: i64 = 5 * 60;

fn err(code: SamlErrorCode, detail: impl Into<String>) -> SamlError {
    SamlError::new(code, detail)
}

fn open(xml: &str, parent: &str, attrs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(512 + xml.len());
    out.push_str("<samlp:");
    out.push_str(parent);
    out.push_str(" xmlns:samlp=\"");
    out.push_str(NS_PROTOCOL);
    out.push_str("\" xmlns:saml=\"");
    out.push_str(NS_ASSERTION);
    out.push('"');
    for (name, value) in attrs {
        push_attr(&mut out, name, value);
    }
    out.push('>');
    out.push_str(xml);
    out
}

/// The ID checked, the instant written, and the body started with the `Issuer`.
fn start(id: &str, issue_instant: i64, issuer: &str) -> Result<(String, String), SamlError> {
    check_request_id(id)?;
    let instant = format_instant(issue_instant)?;
    let mut body = String::with_capacity(256);
    body.push_str("<saml:Issuer>");
    body.push_str(&escape_xml(issuer));
    body.push_str("</saml:Issuer>");
    Ok((instant, body))
}

/// A `<samlp:LogoutRequest>` from the SP (`issuer`) to the IdP's SLO URL (`destination`) for the
/// subject it signed in: its `NameID` (with the format it came with) and `SessionIndex`.
pub fn logout_request_xml(
    id: &str,
    issue_instant: i64,
    destination: &str,
    issuer: &str,
    name_id: &str,
    name_id_format: Option<&str>,
    session_index: Option<&str>,
) -> Result<String, SamlError> {
    let (instant, mut body) = start(id, issue_instant, issuer)?;
    body.push_str("<saml:NameID");
    if let Some(format) = name_id_format {
        push_attr(&mut body, "Format", format);
    }
    body.push('>');
    body.push_str(&escape_xml(name_id));
    body.push_str("</saml:NameID>");
    if let Some(index) = session_index {
        body.push_str("<samlp:SessionIndex>");
        body.push_str(&escape_xml(index));
        body.push_str("</samlp:SessionIndex>");
    }
    let mut xml = open(
        &body,
        "LogoutRequest",
        &[("ID", id), ("Version", "2.0"), ("IssueInstant", &instant), ("Destination", destination)],
    );
    xml.push_str("</samlp:LogoutRequest>");
    Ok(xml)
}

/// A `<samlp:LogoutResponse>` from the SP to the IdP, answering the request `in_response_to`
/// with `status` (a top-level status code URI, [`STATUS_SUCCESS`] or another).
pub fn logout_response_xml(
    id: &str,
    issue_instant: i64,
    destination: &str,
    issuer: &str,
    in_response_to: &str,
    status: &str,
) -> Result<String, SamlError> {
    let (instant, mut body) = start(id, issue_instant, issuer)?;
    body.push_str("<samlp:Status><samlp:StatusCode");
    push_attr(&mut body, "Value", status);
    body.push_str("/></samlp:Status>");
    let mut xml = open(
        &body,
        "LogoutResponse",
        &[
            ("ID", id),
            ("Version", "2.0"),
            ("IssueInstant", &instant),
            ("Destination", destination),
            ("InResponseTo", in_response_to),
        ],
    );
    xml.push_str("</samlp:LogoutResponse>");
    Ok(xml)
}

/// An IdP's `LogoutRequest`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequestIn {
    pub id: String,
    /// The subject to sign out: the `NameID`'s full text.
    pub name_id: String,
    /// The sessions to end (`SessionIndex`); none means every session of the subject.
    pub session_indexes: Vec<String>,
}

/// An IdP's `LogoutResponse`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutResponseIn {
    pub in_response_to: Option<String>,
    /// The top-level status code.
    pub status: String,
}

/// What both readers check: the root element, version, ID, Issuer, Destination, IssueInstant.
struct Envelope<'a, 'input> {
    root: roxmltree::Node<'a, 'input>,
    id: String,
}

fn envelope<'a, 'input>(
    doc: &'a roxmltree::Document<'input>,
    local: &str,
    idp_entity_id: &str,
    slo_url: &str,
    now: i64,
    skew: i64,
) -> Result<Envelope<'a, 'input>, SamlError> {
    let root = doc.root_element();
    if !xml::is(root, NS_PROTOCOL, local) {
        return Err(err(SamlErrorCode::Malformed, format!("expected a samlp:{local}")));
    }
    if root.attribute("Version") != Some("2.0") {
        return Err(err(SamlErrorCode::Malformed, "Version must be 2.0"));
    }
    let id = root.attribute("ID").ok_or_else(|| err(SamlErrorCode::Malformed, "the message has no ID"))?;
    check_request_id(id)?;
    let issuers: Vec<_> = xml::children_named(root, NS_ASSERTION, "Issuer").collect();
    let [issuer] = issuers.as_slice() else {
        return Err(err(SamlErrorCode::IssuerMismatch, format!("{} Issuer elements; exactly one is required", issuers.len())));
    };
    let issuer = xml::plain_text(*issuer).map_err(|r| err(SamlErrorCode::IssuerMismatch, r.describe()))?;
    if issuer != idp_entity_id {
        return Err(err(
            SamlErrorCode::IssuerMismatch,
            format!("Issuer {:?} is not the IdP {idp_entity_id:?}", SamlError::shown(&issuer)),
        ));
    }
    if let Some(destination) = root.attribute("Destination")
        && destination != slo_url
    {
        return Err(err(
            SamlErrorCode::DestinationMismatch,
            format!("Destination {:?} is not {slo_url:?}", SamlError::shown(destination)),
        ));
    }
    let instant = root
        .attribute("IssueInstant")
        .and_then(xml::parse_date_time)
        .ok_or_else(|| err(SamlErrorCode::Malformed, "IssueInstant is missing or not a dateTime"))?;
    if (instant - now).abs() > MAX_ISSUE_AGE_SECS + skew {
        return Err(err(SamlErrorCode::Stale, format!("IssueInstant is {} s from now", instant - now)));
    }
    Ok(Envelope { root, id: id.to_owned() })
}

/// Reads an IdP's `LogoutRequest` (the XML [`crate::authn_request::decode_redirect`] gave),
/// at `now` (Unix seconds) with `skew` seconds of tolerance.
pub fn read_logout_request(
    text: &str,
    idp_entity_id: &str,
    slo_url: &str,
    now: i64,
    skew: i64,
) -> Result<LogoutRequestIn, SamlError> {
    let doc = xml::parse(text, &Limits::default())?;
    let env = envelope(&doc, "LogoutRequest", idp_entity_id, slo_url, now, skew)?;
    if let Some(until) = env.root.attribute("NotOnOrAfter") {
        let until = xml::parse_date_time(until).ok_or_else(|| err(SamlErrorCode::Malformed, "NotOnOrAfter is not a dateTime"))?;
        if now >= until + skew {
            return Err(err(SamlErrorCode::Expired, "the LogoutRequest's NotOnOrAfter has passed"));
        }
    }
    if xml::children_named(env.root, NS_ASSERTION, "EncryptedID").next().is_some() {
        return Err(err(SamlErrorCode::SubjectInvalid, "an encrypted NameID is not supported"));
    }
    let names: Vec<_> = xml::children_named(env.root, NS_ASSERTION, "NameID").collect();
    let [name] = names.as_slice() else {
        return Err(err(SamlErrorCode::SubjectInvalid, format!("{} NameID elements; exactly one is required", names.len())));
    };
    let name_id = xml::plain_text(*name).map_err(|r| err(SamlErrorCode::SubjectInvalid, r.describe()))?;
    if name_id.is_empty() {
        return Err(err(SamlErrorCode::SubjectInvalid, "the NameID is empty"));
    }
    let mut session_indexes = Vec::new();
    for node in xml::children_named(env.root, NS_PROTOCOL, "SessionIndex") {
        session_indexes.push(xml::plain_text(node).map_err(|r| err(SamlErrorCode::Malformed, r.describe()))?);
    }
    Ok(LogoutRequestIn { id: env.id, name_id, session_indexes })
}

/// Reads an IdP's `LogoutResponse` at `now` (Unix seconds) with `skew` seconds of tolerance.
pub fn read_logout_response(
    text: &str,
    idp_entity_id: &str,
    slo_url: &str,
    now: i64,
    skew: i64,
) -> Result<LogoutResponseIn, SamlError> {
    let doc = xml::parse(text, &Limits::default())?;
    let env = envelope(&doc, "LogoutResponse", idp_entity_id, slo_url, now, skew)?;
    let status = xml::children_named(env.root, NS_PROTOCOL, "Status")
        .next()
        .and_then(|s| xml::children_named(s, NS_PROTOCOL, "StatusCode").next())
        .and_then(|c| c.attribute("Value"))
        .ok_or_else(|| err(SamlErrorCode::Malformed, "the LogoutResponse has no Status"))?;
    Ok(LogoutResponseIn { in_response_to: env.root.attribute("InResponseTo").map(str::to_owned), status: status.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDP: &str = "https://idp.example.com/saml";
    const SLO: &str = "https://sp.example.com/saml/c1/slo";
    const NOW: i64 = 1_800_000_000;

    fn idp_request(extra: &str, name_id: &str) -> String {
        format!(
            "<samlp:LogoutRequest xmlns:samlp=\"{NS_PROTOCOL}\" xmlns:saml=\"{NS_ASSERTION}\" ID=\"_r1\" Version=\"2.0\" \
             IssueInstant=\"{}\" Destination=\"{SLO}\"{extra}><saml:Issuer>{IDP}</saml:Issuer>{name_id}\
             <samlp:SessionIndex>_s1</samlp:SessionIndex></samlp:LogoutRequest>",
            format_instant(NOW).unwrap()
        )
    }

    #[test]
    fn built_messages_read_back() {
        let xml = logout_request_xml("_lo1", NOW, SLO, IDP, "ada@example.com", Some("urn:f"), Some("_s1")).unwrap();
        let read = read_logout_request(&xml, IDP, SLO, NOW, 60).unwrap();
        assert_eq!(read, LogoutRequestIn { id: "_lo1".into(), name_id: "ada@example.com".into(), session_indexes: vec!["_s1".into()] });
        let xml = logout_response_xml("_lr1", NOW, SLO, IDP, "_lo1", STATUS_SUCCESS).unwrap();
        let read = read_logout_response(&xml, IDP, SLO, NOW, 60).unwrap();
        assert_eq!(read, LogoutResponseIn { in_response_to: Some("_lo1".into()), status: STATUS_SUCCESS.into() });
        assert!(logout_request_xml("bad id", NOW, SLO, IDP, "x", None, None).is_err());
    }

    #[test]
    fn strange_requests_are_refused_with_their_code() {
        let name = "<saml:NameID>ada@example.com</saml:NameID>";
        let code = |xml: &str| read_logout_request(xml, IDP, SLO, NOW, 60).unwrap_err().code;
        assert_eq!(code(&idp_request("", name).replace(IDP, "https://evil.example")), SamlErrorCode::IssuerMismatch);
        assert_eq!(code(&idp_request("", name).replace(SLO, "https://sp.example.com/other")), SamlErrorCode::DestinationMismatch);
        assert_eq!(code(&idp_request(" NotOnOrAfter=\"2020-01-01T00:00:00Z\"", name)), SamlErrorCode::Expired);
        assert_eq!(code(&idp_request("", "")), SamlErrorCode::SubjectInvalid);
        assert_eq!(code(&idp_request("", "<saml:NameID>ada@example.com<!---->.evil</saml:NameID>")), SamlErrorCode::SubjectInvalid);
        assert_eq!(code(&idp_request("", "<saml:EncryptedID/>")), SamlErrorCode::SubjectInvalid);
        let stale = idp_request("", name).replace(&format_instant(NOW).unwrap(), &format_instant(NOW - 3600).unwrap());
        assert_eq!(code(&stale), SamlErrorCode::Stale);
        assert_eq!(code(&format!("<!DOCTYPE x>{}", idp_request("", name))), SamlErrorCode::DtdForbidden);
        assert_eq!(code("<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"/>"), SamlErrorCode::Malformed);
        assert!(read_logout_request(&idp_request("", name), IDP, SLO, NOW, 60).is_ok());
    }
}
