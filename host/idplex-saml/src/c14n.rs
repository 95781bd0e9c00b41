//! Exclusive XML Canonicalization 1.0, without comments
//! (<http://www.w3.org/2001/10/xml-exc-c14n#>), of an element subtree of a parsed document:
//! the one canonicalization the verifier accepts, for both the signed element and `SignedInfo`.
//!
//! The input is the subtree rooted at `apex` (the node-set of a same-document `#ID` reference or
//! of `SignedInfo`), minus an optional excluded element and everything inside it (the
//! enveloped-signature transform removes the `<ds:Signature>` being verified). Per the W3C
//! recommendation:
//! * comments and processing instructions are dropped; there is no XML declaration; CDATA is
//!   text; empty elements are written as a start and an end tag;
//! * an element's namespace declarations are those it *visibly utilizes* (its own prefix, or the
//!   default namespace when it has none, and its attributes' prefixes; never `xml`) plus those of
//!   the `InclusiveNamespaces PrefixList` that are in scope, each written only when the nearest
//!   output ancestor did not already render the same prefix with the same URI; `xmlns=""` is
//!   written only to undo a non-empty default namespace an output ancestor rendered;
//! * namespace declarations are sorted by prefix (the default one first), then attributes by
//!   (namespace URI, local name), unqualified ones first;
//! * attribute values escape `& < "` and TAB, LF, CR (`&amp; &lt; &quot; &#x9; &#xA; &#xD;`);
//!   text escapes `& < >` and CR (`&amp; &lt; &gt; &#xD;`).
//!
//! roxmltree has already done what an XML processor must before canonicalization: entities and
//! character references expanded, line endings normalized to LF, attribute values normalized.
//! The walk is iterative: no recursion however deep the tree (the parser limits depth anyway).

use roxmltree::{Node, NodeType};

use crate::xml::{attribute_prefix, element_prefix};
use crate::{SamlError, SamlErrorCode};

/// Algorithm URI of exclusive canonicalization without comments (the only one accepted).
pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// Algorithm URI of exclusive canonicalization with comments (refused).
pub const EXC_C14N_WITH_COMMENTS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";
/// The token of an `InclusiveNamespaces PrefixList` that stands for the default namespace.
pub const DEFAULT_PREFIX_TOKEN: &str = "#default";

/// The prefixes of an `InclusiveNamespaces PrefixList` attribute (white-space separated;
/// `#default` for the default namespace).
pub fn parse_prefix_list(list: &str) -> Vec<&str> {
    list.split(crate::xml::is_xml_space).filter(|p| !p.is_empty()).collect()
}

/// The exclusive canonical form (without comments) of the subtree rooted at the element
/// `apex`, leaving out `excluded` (and its descendants) if it is inside that subtree, with the
/// `inclusive_prefixes` of an `InclusiveNamespaces PrefixList` treated as in inclusive
/// canonicalization.
pub fn canonicalize(
    apex: Node<'_, '_>,
    excluded: Option<Node<'_, '_>>,
    inclusive_prefixes: &[&str],
) -> Result<String, SamlError> {
    if !apex.is_element() {
        return Err(SamlError::new(SamlErrorCode::Malformed, "canonicalization of a node that is not an element"));
    }
    let excluded = excluded.map(|n| n.id());
    let inclusive: Vec<Option<&str>> = inclusive_prefixes
        .iter()
        .map(|p| if *p == DEFAULT_PREFIX_TOKEN { None } else { Some(*p) })
        .filter(|p| *p != Some("xml"))
        .collect();
    let mut writer = Writer { out: String::new(), rendered: Vec::new(), inclusive };
    // Open elements: the element, its remaining children, and how many rendered namespace
    // declarations were in force before it (to drop its own when it closes).
    let mut stack = Vec::new();
    let mark = writer.start_tag(apex)?;
    stack.push((apex, apex.children(), mark));
    while let Some((element, children, mark)) = stack.last_mut() {
        match children.next() {
            Some(child) => match child.node_type() {
                NodeType::Element => {
                    if Some(child.id()) == excluded {
                        continue;
                    }
                    let mark = writer.start_tag(child)?;
                    stack.push((child, child.children(), mark));
                }
                NodeType::Text => escape_text(&mut writer.out, child.text().unwrap_or_default()),
                NodeType::Comment | NodeType::PI | NodeType::Root => {}
            },
            None => {
                writer.out.push_str("</");
                push_qname(&mut writer.out, element_prefix(*element), element.tag_name().name());
                writer.out.push('>');
                writer.rendered.truncate(*mark);
                stack.pop();
            }
        }
    }
    Ok(writer.out)
}

struct Writer<'a> {
    out: String,
    /// Namespace declarations rendered by the open output ancestors, outermost first:
    /// (prefix, `None` for the default namespace; URI).
    rendered: Vec<(Option<&'a str>, &'a str)>,
    inclusive: Vec<Option<&'a str>>,
}

impl<'a> Writer<'a> {
    /// The URI the nearest output ancestor rendered for `prefix` (the default namespace
    /// counts as rendered empty when none was).
    fn rendered_uri(&self, prefix: Option<&str>) -> Option<&'a str> {
        let found = self.rendered.iter().rev().find(|(p, _)| *p == prefix).map(|(_, uri)| *uri);
        match prefix {
            None => Some(found.unwrap_or("")),
            Some(_) => found,
        }
    }

    /// Write the start tag of `element`; returns the rendered-stack mark to restore at its end.
    fn start_tag<'input: 'a>(&mut self, element: Node<'a, 'input>) -> Result<usize, SamlError> {
        let mark = self.rendered.len();
        let prefix = element_prefix(element);
        let name = element.tag_name().name();

        // Visibly utilized prefixes, with the URI each is bound to here.
        let mut wanted: Vec<(Option<&'a str>, &'a str)> = Vec::new();
        let element_uri = element.tag_name().namespace().unwrap_or("");
        wanted.push((prefix, element_uri));
        let mut attributes: Vec<(&'a str, &'a str, Option<&'input str>, &'a str)> = Vec::new();
        for attr in element.attributes() {
            let attr_prefix = attribute_prefix(element, &attr);
            let uri = attr.namespace().unwrap_or("");
            if let Some(p) = attr_prefix
                && p != "xml"
                && !wanted.iter().any(|(w, _)| *w == Some(p))
            {
                wanted.push((Some(p), uri));
            }
            attributes.push((uri, attr.name(), attr_prefix, attr.value()));
        }
        // InclusiveNamespaces: rendered as inclusive c14n would, when in scope.
        for p in self.inclusive.clone() {
            if wanted.iter().any(|(w, _)| *w == p) {
                continue;
            }
            let uri = match p {
                None => element.default_namespace().unwrap_or(""),
                Some(p) => match element.lookup_namespace_uri(Some(p)) {
                    Some(uri) => uri,
                    None => continue,
                },
            };
            wanted.push((p, uri));
        }

        let mut declarations: Vec<(Option<&'a str>, &'a str)> = Vec::new();
        for (p, uri) in wanted {
            if p == Some("xml") {
                continue;
            }
            if p.is_some() && uri.is_empty() {
                return Err(SamlError::new(
                    SamlErrorCode::Malformed,
                    format!("the prefix {:?} is bound to an empty namespace name", p.unwrap_or_default()),
                ));
            }
            if self.rendered_uri(p) != Some(uri) {
                declarations.push((p, uri));
            }
        }
        // The default namespace (no prefix) sorts first.
        declarations.sort_by(|a, b| a.0.cmp(&b.0));
        attributes.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));

        self.out.push('<');
        push_qname(&mut self.out, prefix, name);
        for (p, uri) in &declarations {
            match p {
                None => self.out.push_str(" xmlns=\""),
                Some(p) => {
                    self.out.push_str(" xmlns:");
                    self.out.push_str(p);
                    self.out.push_str("=\"");
                }
            }
            escape_attribute(&mut self.out, uri);
            self.out.push('"');
        }
        for (_, local, p, value) in &attributes {
            self.out.push(' ');
            push_qname(&mut self.out, *p, local);
            self.out.push_str("=\"");
            escape_attribute(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push('>');
        self.rendered.extend(declarations);
        Ok(mark)
    }
}

fn push_qname(out: &mut String, prefix: Option<&str>, local: &str) {
    if let Some(p) = prefix {
        out.push_str(p);
        out.push(':');
    }
    out.push_str(local);
}

fn escape_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

fn escape_attribute(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{Limits, parse};

    fn c14n_root(xml: &str) -> String {
        let doc = parse(xml, &Limits::default()).unwrap();
        canonicalize(doc.root_element(), None, &[]).unwrap()
    }

    fn c14n_first(xml: &str, local: &str, prefixes: &[&str]) -> String {
        let doc = parse(xml, &Limits::default()).unwrap();
        let node = doc.descendants().find(|n| n.is_element() && n.tag_name().name() == local).unwrap();
        canonicalize(node, None, prefixes).unwrap()
    }

    // The example of section 2.2 of the Exclusive XML Canonicalization recommendation: both
    // documents give the same exclusive canonical form of the n1:elem2 subtree (the inherited
    // xmlns:n2, xml:lang and xml:space of the second are not carried in).
    #[test]
    fn w3c_exc_c14n_section_2_2() {
        let first = "<n0:local xmlns:n0=\"foo:bar\" xmlns:n3=\"ftp://example.org\">\n  \
                     <n1:elem2 xmlns:n1=\"http://example.net\" xml:lang=\"en\">\n     \
                     <n3:stuff xmlns:n3=\"ftp://example.org\"/>\n  </n1:elem2>\n</n0:local>";
        let second = "<n2:pdu xmlns:n1=\"http://example.com\"\n           \
                      xmlns:n2=\"http://foo.example\"\n           xml:lang=\"fr\"\n           \
                      xml:space=\"retain\">\n  \
                      <n1:elem2 xmlns:n1=\"http://example.net\" xml:lang=\"en\">\n     \
                      <n3:stuff xmlns:n3=\"ftp://example.org\"/>\n  </n1:elem2>\n</n2:pdu>";
        let expected = "<n1:elem2 xmlns:n1=\"http://example.net\" xml:lang=\"en\">\n     \
                        <n3:stuff xmlns:n3=\"ftp://example.org\"></n3:stuff>\n  </n1:elem2>";
        assert_eq!(c14n_first(first, "elem2", &[]), expected);
        assert_eq!(c14n_first(second, "elem2", &[]), expected);
    }

    // Whole documents: the expected outputs are those of `xmllint --exc-c14n` (libxml2 2.9.14),
    // minus the comments that xmllint's with-comments output keeps.
    #[test]
    fn document_vectors_match_libxml2() {
        // Declarations sorted and only where used; attributes sorted by (URI, local name);
        // unused declarations dropped; empty element expanded; comment and PI dropped.
        assert_eq!(
            c14n_root(
                "<?xml version=\"1.0\"?>\n<!-- c --><r xmlns:z=\"urn:z\" xmlns:a=\"urn:a\" xmlns:u=\"urn:unused\" \
                 z:k=\"1\" b=\"2\" a:k=\"3\" a=\"4\"><?pi x?><e/><!-- in --></r>"
            ),
            "<r xmlns:a=\"urn:a\" xmlns:z=\"urn:z\" a=\"4\" b=\"2\" a:k=\"3\" z:k=\"1\"><e></e></r>"
        );
        // Escaping in text and attributes; character references; CDATA.
        assert_eq!(
            c14n_root("<r a=\"&lt;&amp;&gt;&quot;'&#9;&#10;&#13;\">&lt;&amp;&gt;\"'&#13;<![CDATA[<&>]]></r>"),
            "<r a=\"&lt;&amp;>&quot;'&#x9;&#xA;&#xD;\">&lt;&amp;&gt;\"'&#xD;&lt;&amp;&gt;</r>"
        );
        // Literal white space in attribute values is normalized by the parser; CRLF in text
        // becomes LF.
        assert_eq!(c14n_root("<r a=\" x\ty\r\nz \">a\r\nb</r>"), "<r a=\" x y z \">a\nb</r>");
        // Default namespace: rendered where used, undone with xmlns="" below, not repeated.
        assert_eq!(
            c14n_root(
                "<r xmlns=\"urn:d\"><a xmlns=\"\"><b xmlns=\"\"/></a><c xmlns=\"urn:d\"/>\
                 <p:d xmlns:p=\"urn:p\"/></r>"
            ),
            "<r xmlns=\"urn:d\"><a xmlns=\"\"><b></b></a><c></c><p:d xmlns:p=\"urn:p\"></p:d></r>"
        );
        // A prefix rebound to another URI is rendered again; same URI not.
        assert_eq!(
            c14n_root("<p:r xmlns:p=\"urn:1\"><p:a xmlns:p=\"urn:2\"><p:b xmlns:p=\"urn:2\"/></p:a><p:c/></p:r>"),
            "<p:r xmlns:p=\"urn:1\"><p:a xmlns:p=\"urn:2\"><p:b></p:b></p:a><p:c></p:c></p:r>"
        );
        // Namespace used only by an attribute, on a child.
        assert_eq!(
            c14n_root("<r xmlns:x=\"urn:x\"><a x:y=\"1\"/><b/></r>"),
            "<r><a xmlns:x=\"urn:x\" x:y=\"1\"></a><b></b></r>"
        );
    }

    #[test]
    fn subtree_inherits_only_utilized_namespaces() {
        // An unprefixed element under a default namespace declared on an ancestor.
        let xml = "<r xmlns=\"urn:d\" xmlns:s=\"urn:s\"><a s:x=\"1\"><b/></a></r>";
        assert_eq!(c14n_first(xml, "a", &[]), "<a xmlns=\"urn:d\" xmlns:s=\"urn:s\" s:x=\"1\"><b></b></a>");
        // An unprefixed element with no default namespace in scope: no xmlns="" at the apex.
        let xml = "<p:r xmlns:p=\"urn:p\"><a><b/></a></p:r>";
        assert_eq!(c14n_first(xml, "a", &[]), "<a><b></b></a>");
    }

    #[test]
    fn inclusive_namespaces_prefix_list() {
        // xs is used only inside an attribute value (xsi:type="xs:string"): without the
        // PrefixList it is not rendered; with it, it is.
        let xml = "<r xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" \
                   xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:u=\"urn:u\">\
                   <v xsi:type=\"xs:string\">x</v></r>";
        assert_eq!(
            c14n_first(xml, "v", &[]),
            "<v xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"xs:string\">x</v>"
        );
        assert_eq!(
            c14n_first(xml, "v", &parse_prefix_list(" xs\n xsi unknown ")),
            "<v xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" \
             xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"xs:string\">x</v>"
        );
        // #default, with and without a default namespace in scope.
        let xml = "<r xmlns=\"urn:d\"><p:v xmlns:p=\"urn:p\"><p:w/></p:v></r>";
        assert_eq!(
            c14n_first(xml, "v", &["#default"]),
            "<p:v xmlns=\"urn:d\" xmlns:p=\"urn:p\"><p:w></p:w></p:v>"
        );
        let xml = "<r><p:v xmlns:p=\"urn:p\"/></r>";
        assert_eq!(c14n_first(xml, "v", &["#default"]), "<p:v xmlns:p=\"urn:p\"></p:v>");
    }

    #[test]
    fn excluded_subtree_is_left_out() {
        let xml = "<r ID=\"a\"><i>x</i>\n<ds:Signature xmlns:ds=\"urn:ds\"><ds:v>1</ds:v></ds:Signature>\n<j/></r>";
        let doc = parse(xml, &Limits::default()).unwrap();
        let sig = doc.descendants().find(|n| n.tag_name().name() == "Signature").unwrap();
        assert_eq!(canonicalize(doc.root_element(), Some(sig), &[]).unwrap(), "<r ID=\"a\"><i>x</i>\n\n<j></j></r>");
    }

    #[test]
    fn deep_trees_do_not_recurse() {
        let depth = 50_000;
        let xml = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
        let doc = parse(&xml, &Limits { max_depth: depth + 1, max_nodes: u32::MAX, max_bytes: usize::MAX }).unwrap();
        assert_eq!(canonicalize(doc.root_element(), None, &[]).unwrap(), xml);
    }
}
