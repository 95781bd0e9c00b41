//! The one XML parser of the crate: `roxmltree`, behind limits, and the small helpers the
//! verifier reads the tree with.
//!
//! A message is decoded (base64, then UTF-8) and parsed exactly once; signature checking
//! ([`crate::dsig`], [`crate::c14n`]) and claim reading ([`crate::response`]) then work on that
//! one tree. Nothing is ever re-serialized and re-parsed.
//!
//! Refused before or while parsing:
//! * a document type declaration (`<!DOCTYPE`, i.e. any DTD: XXE, billion laughs), refused with
//!   [`SamlErrorCode::DtdForbidden`] before the parser runs, and again if the parser sees one;
//! * a document over the byte limit, with more nodes than the node limit, or nested deeper than
//!   the depth limit ([`SamlErrorCode::TooLarge`]);
//! * anything that is not base64, not UTF-8 or not well-formed, namespace-well-formed XML
//!   ([`SamlErrorCode::Malformed`]).

use base64::Engine as _;
use roxmltree::{Document, Node, NodeType, ParsingOptions};

use crate::{SamlError, SamlErrorCode};

/// Bounds of a parsed document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document accepted, in bytes (after base64 decoding).
    pub max_bytes: usize,
    /// Deepest element nesting accepted (the root element is at depth 1).
    pub max_depth: usize,
    /// Most nodes (elements, text, comments, processing instructions) accepted.
    pub max_nodes: u32,
}

impl Default for Limits {
    /// 256 KiB, 64 levels, 32 768 nodes: far above any real SAML response (a few KiB, a depth
    /// of about 8, a few hundred nodes).
    fn default() -> Self {
        Limits { max_bytes: 256 << 10, max_depth: 64, max_nodes: 32 << 10 }
    }
}

fn malformed(detail: impl Into<String>) -> SamlError {
    SamlError::new(SamlErrorCode::Malformed, detail)
}

/// Whether `b` is XML white space (`S` production: space, tab, CR, LF).
pub fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Decode standard base64 (`+/`, padded), tolerating white space (line breaks, as many
/// encoders and form posts insert them) anywhere. Anything else is refused.
pub fn decode_base64(value: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let compact: Vec<u8> = value.bytes().filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')).collect();
    base64::engine::general_purpose::STANDARD.decode(compact)
}

/// Decode a posted `SAMLResponse` form value: base64 (white space tolerated), at most
/// `max_bytes` decoded bytes, UTF-8.
pub fn decode_form_value(value: &str, max_bytes: usize) -> Result<String, SamlError> {
    // Refuse an obviously large value before allocating for it: base64 turns 3 bytes into 4
    // characters; allow as much again for line breaks and white space.
    if value.len() / 8 * 3 > max_bytes {
        return Err(SamlError::new(
            SamlErrorCode::TooLarge,
            format!("message of {} base64 characters, over the limit of {max_bytes} bytes", value.len()),
        ));
    }
    let bytes = decode_base64(value)
        .map_err(|e| malformed(format!("the message is not valid base64 (standard alphabet, padded): {e}")))?;
    if bytes.len() > max_bytes {
        return Err(SamlError::new(
            SamlErrorCode::TooLarge,
            format!("message of {} bytes, over the limit of {max_bytes}", bytes.len()),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        malformed(format!("the message is not UTF-8 (invalid byte at offset {})", e.utf8_error().valid_up_to()))
    })
}

/// Parse `text` under `limits`: DTDs refused first, then well-formedness, node count, depth.
pub fn parse<'input>(text: &'input str, limits: &Limits) -> Result<Document<'input>, SamlError> {
    if text.len() > limits.max_bytes {
        return Err(SamlError::new(
            SamlErrorCode::TooLarge,
            format!("document of {} bytes, over the limit of {}", text.len(), limits.max_bytes),
        ));
    }
    // Before the parser sees anything: any document type declaration, wherever it is (even in a
    // comment or CDATA section, where it would be harmless: refused all the same).
    if contains_ignore_ascii_case(text.as_bytes(), b"<!DOCTYPE") {
        return Err(dtd_forbidden());
    }
    let options = ParsingOptions { allow_dtd: false, nodes_limit: limits.max_nodes, ..ParsingOptions::default() };
    let doc = Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => dtd_forbidden(),
        roxmltree::Error::NodesLimitReached => SamlError::new(
            SamlErrorCode::TooLarge,
            format!("document with more than {} XML nodes", limits.max_nodes),
        ),
        other => malformed(format!("not well-formed XML: {other}")),
    })?;
    check_depth(&doc, limits.max_depth)?;
    Ok(doc)
}

fn dtd_forbidden() -> SamlError {
    SamlError::new(
        SamlErrorCode::DtdForbidden,
        "the message contains a document type declaration (<!DOCTYPE>); DTDs and entities are never accepted",
    )
}

fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Refuse elements nested deeper than `max_depth`, in one pass over the tree (no recursion).
fn check_depth(doc: &Document<'_>, max_depth: usize) -> Result<(), SamlError> {
    // Pre-order walk keeping the depth of `node` (the document root is 0): descending to a
    // first child adds one, moving to a sibling keeps it, climbing back removes one per level.
    let mut depth = 0usize;
    let mut node = doc.root();
    loop {
        if let Some(child) = node.first_child() {
            node = child;
            depth += 1;
            if node.is_element() && depth > max_depth {
                return Err(SamlError::new(
                    SamlErrorCode::TooLarge,
                    format!("elements nested deeper than {max_depth} levels"),
                ));
            }
            continue;
        }
        // Leaf: climb until a next sibling exists.
        loop {
            if let Some(next) = node.next_sibling() {
                node = next;
                break;
            }
            match node.parent() {
                Some(parent) => {
                    node = parent;
                    depth = depth.saturating_sub(1);
                    if node.is_root() {
                        return Ok(());
                    }
                }
                None => return Ok(()),
            }
        }
    }
}

/// Whether `node` is an element named `{ns}local`.
pub fn is(node: Node<'_, '_>, ns: &str, local: &str) -> bool {
    node.is_element() && node.tag_name().name() == local && node.tag_name().namespace() == Some(ns)
}

/// The element children of `node`.
pub fn elements<'a, 'input>(node: Node<'a, 'input>) -> impl Iterator<Item = Node<'a, 'input>> {
    node.children().filter(|n| n.is_element())
}

/// The element children of `node` named `{ns}local`.
pub fn children_named<'a, 'input>(
    node: Node<'a, 'input>,
    ns: &'static str,
    local: &'static str,
) -> impl Iterator<Item = Node<'a, 'input>> {
    node.children().filter(move |n| is(*n, ns, local))
}

/// The element child of `node` named `{ns}local`, if any; more than one is refused with `code`.
pub fn at_most_one<'a, 'input>(
    node: Node<'a, 'input>,
    ns: &'static str,
    local: &'static str,
    code: SamlErrorCode,
) -> Result<Option<Node<'a, 'input>>, SamlError> {
    let mut found = children_named(node, ns, local);
    let first = found.next();
    if found.next().is_some() {
        return Err(SamlError::new(
            code,
            format!("<{}> has more than one <{local}> child", node.tag_name().name()),
        ));
    }
    Ok(first)
}

/// Why [`plain_text`] refused an element's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextRefusal {
    /// An element child.
    Element,
    /// A comment child (the comment-truncation attack class).
    Comment,
    /// A processing-instruction child.
    ProcessingInstruction,
}

impl TextRefusal {
    /// What was found, for a detail.
    pub fn describe(self) -> &'static str {
        match self {
            TextRefusal::Element => "an element",
            TextRefusal::Comment => "a comment",
            TextRefusal::ProcessingInstruction => "a processing instruction",
        }
    }
}

/// The full text of an element whose content must be character data only: the concatenation
/// of all its text children (CDATA included, entities and character references expanded). Any
/// element, comment or processing-instruction child is refused, never skipped: a reader that
/// took only the first text node would see a different value than the signature covered.
pub fn plain_text(node: Node<'_, '_>) -> Result<String, TextRefusal> {
    let mut out = String::new();
    for child in node.children() {
        match child.node_type() {
            NodeType::Text => out.push_str(child.text().unwrap_or_default()),
            NodeType::Element => return Err(TextRefusal::Element),
            NodeType::Comment => return Err(TextRefusal::Comment),
            NodeType::PI => return Err(TextRefusal::ProcessingInstruction),
            NodeType::Root => {}
        }
    }
    Ok(out)
}

/// The lexical prefix of an element as written (`saml` of `<saml:Assertion>`), or `None`.
///
/// roxmltree resolves names to namespace URIs; canonicalization must write the prefix the
/// document used, so it is read back from the start tag in the input.
pub fn element_prefix<'input>(node: Node<'_, 'input>) -> Option<&'input str> {
    let input = node.document().input_text();
    let start = node.range().start;
    let qname = qname_at(input, start.checked_add(1)?)?;
    qname.split_once(':').map(|(prefix, _)| prefix)
}

/// The lexical prefix of an attribute as written, or `None`.
pub fn attribute_prefix<'input>(node: Node<'_, 'input>, attr: &roxmltree::Attribute<'_, 'input>) -> Option<&'input str> {
    let input = node.document().input_text();
    let qname = input.get(attr.range_qname())?;
    qname.split_once(':').map(|(prefix, _)| prefix)
}

/// The qualified name starting at byte `start` of `input` (up to white space, `/` or `>`).
fn qname_at(input: &str, start: usize) -> Option<&str> {
    let rest = input.get(start..)?;
    let end = rest.find(|c: char| is_xml_space(c) || c == '/' || c == '>').unwrap_or(rest.len());
    rest.get(..end)
}

/// An `xs:dateTime` as SAML writes it, to Unix seconds: `YYYY-MM-DDThh:mm:ss`, optional
/// fractional seconds (truncated), and a mandatory time zone, `Z` or `±hh:mm`. Anything else
/// (no time zone, out-of-range fields, `24:00:00`, leap seconds, extra characters) is `None`.
pub fn parse_date_time(value: &str) -> Option<i64> {
    let b = value.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0i64, |acc, d| d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0')))
    };
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = b.get(19..)?;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = fraction.get(digits..)?;
    }
    let offset = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| (a.is_ascii_digit() && b.is_ascii_digit()).then(|| i64::from((a - b'0') * 10 + (b - b'0')));
            let (h, m) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if h > 14 || m > 59 || (h == 14 && m != 0) {
                return None;
            }
            let seconds = h * 3600 + m * 60;
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year == 0 || day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_limit() {
        let limits = Limits { max_depth: 3, ..Limits::default() };
        assert!(parse("<a><b><c>t</c></b><b/></a>", &limits).is_ok());
        let err = parse("<a><b><c><d/></c></b></a>", &limits).unwrap_err();
        assert_eq!(err.code, SamlErrorCode::TooLarge);
    }

    #[test]
    fn dtd_refused_first() {
        let err = parse("<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>", &Limits::default()).unwrap_err();
        assert_eq!(err.code, SamlErrorCode::DtdForbidden);
        let err = parse("<!-- <!doctype a> --><a/>", &Limits::default()).unwrap_err();
        assert_eq!(err.code, SamlErrorCode::DtdForbidden);
        // Without a DTD only the predefined entities exist.
        let err = parse("<a>&x;</a>", &Limits::default()).unwrap_err();
        assert_eq!(err.code, SamlErrorCode::Malformed);
    }

    #[test]
    fn prefixes_as_written() {
        let doc = parse(r#"<p:a xmlns:p="urn:p" xmlns:q="urn:p" q:x="1" y="2"><b/></p:a>"#, &Limits::default())
            .unwrap();
        let root = doc.root_element();
        assert_eq!(element_prefix(root), Some("p"));
        let attrs: Vec<_> = root.attributes().map(|a| attribute_prefix(root, &a)).collect();
        assert_eq!(attrs, vec![Some("q"), None]);
        assert_eq!(element_prefix(root.first_element_child().unwrap()), None);
    }

    #[test]
    fn plain_text_refuses_comments() {
        let doc = parse("<a>x<!---->y</a>", &Limits::default()).unwrap();
        assert_eq!(plain_text(doc.root_element()), Err(TextRefusal::Comment));
        let doc = parse("<a>x&amp;<![CDATA[<y>]]>z</a>", &Limits::default()).unwrap();
        assert_eq!(plain_text(doc.root_element()).unwrap(), "x&<y>z");
    }

    #[test]
    fn date_times() {
        assert_eq!(parse_date_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_date_time("2026-03-01T12:00:00Z"), Some(1_772_366_400));
        assert_eq!(parse_date_time("2026-03-01T12:00:00.999Z"), Some(1_772_366_400));
        assert_eq!(parse_date_time("2026-03-01T14:30:00+02:30"), Some(1_772_366_400));
        assert_eq!(parse_date_time("2026-03-01T07:00:00-05:00"), Some(1_772_366_400));
        assert_eq!(parse_date_time("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(parse_date_time("1969-12-31T23:59:59Z"), Some(-1));
        for bad in [
            "2026-03-01T12:00:00",
            "2026-03-01 12:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T12:00:60Z",
            "2026-03-01T12:00:00.Z",
            "2026-03-01T12:00:00Zx",
            "2026-03-01T12:00:00+15:00",
            "+026-03-01T12:00:00Z",
            "2026-03-01T12:00:00\u{e9}",
            "",
        ] {
            assert_eq!(parse_date_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn form_value() {
        assert_eq!(decode_form_value("PGEv\r\nPg==", 100).unwrap(), "<a/>");
        assert_eq!(decode_form_value("PGEvPg", 100).unwrap_err().code, SamlErrorCode::Malformed);
        assert_eq!(decode_form_value("//79", 100).unwrap_err().code, SamlErrorCode::Malformed);
        assert_eq!(decode_form_value("PGEvPg==", 3).unwrap_err().code, SamlErrorCode::TooLarge);
    }
}
