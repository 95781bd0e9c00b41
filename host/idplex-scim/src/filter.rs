//! SCIM filter expressions (RFC 7644 §3.4.2.2): AST and parser, plus the PATCH `path`
//! grammar (§3.5.2) which reuses the value-path part of the filter grammar.
//!
//! Precedence is `not` > `and` > `or`; operators and keywords are case-insensitive.
//! Errors are `invalidFilter` (or `invalidPath` for PATCH paths) and name the
//! character position at fault.
//!
//! Two documented leniencies, both seen in real IdP traffic:
//! * `emails[type eq "work"].value eq "x"` (Entra's matching filter, not in the RFC ABNF) is
//!   accepted and parsed as `emails[type eq "work" and value eq "x"]`;
//! * an unquoted bare word as comparison value (`externalId eq jyoung`, older Entra docs)
//!   is read as a string.
//!
//! Input is bounded by [`Limits`]: text length, number of attribute expressions, and
//! nesting: both the nesting of `(` and `[` in the text (the parser itself keeps open
//! levels on an explicit stack, not the call stack) and the depth of the parsed tree
//! ([`Filter::depth`]) are at most `max_filter_depth`. `and`/`or` chains are built as
//! balanced trees (`a or b or c or d` is `((a or b) or (c or d))`, same meaning), so a
//! chain of 1,000 terms is 10 levels deep. Every recursive walk over a parsed tree
//! (evaluation, validation, `Display`, `Clone`, `Drop`) is therefore shallow whatever the
//! input, and the `Display` form of a parsed filter (at most one bracket level per tree
//! level) parses back to the same tree within the same limits.
//!
//! The literal of `userName eq "…"` / `userName ne "…"` (resource level) is put in the
//! canonical form of [`crate::canonical_user_name`] when it has one, so a lookup finds the
//! user whatever width or surrounding spaces the client used when creating it.

use crate::error::{ScimError, ScimType, err};
use crate::limits::Limits;
use crate::path::{AttrPath, is_attr_name};
use crate::schema::USER_SCHEMA_URN;
use serde_json::Value;
use std::fmt;

/// Comparison operators (`pr` is represented by [`Filter::Present`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// equal
    Eq,
    /// not equal
    Ne,
    /// contains (strings)
    Co,
    /// starts with
    Sw,
    /// ends with
    Ew,
    /// greater than
    Gt,
    /// greater than or equal
    Ge,
    /// less than
    Lt,
    /// less than or equal
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }

    /// The lowercase keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// Whether this is an ordering operator (`gt ge lt le`).
    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        )
    }
}

/// A filter expression tree.
///
/// Inside a [`Filter::ValuePath`], the inner filter's paths are relative to the elements
/// of the multi-valued attribute (their `attr` is a sub-attribute name).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `path op value`.
    Compare {
        /// Attribute compared.
        path: AttrPath,
        /// Operator.
        op: CompareOp,
        /// Literal: string, number, boolean or null.
        value: Value,
    },
    /// `path pr`.
    Present(AttrPath),
    /// Conjunction.
    And(Box<Filter>, Box<Filter>),
    /// Disjunction.
    Or(Box<Filter>, Box<Filter>),
    /// Negation.
    Not(Box<Filter>),
    /// `path[filter]`: some element of the multi-valued attribute matches `filter`.
    ValuePath {
        /// The multi-valued (or complex) attribute.
        path: AttrPath,
        /// Filter applied to each element.
        filter: Box<Filter>,
    },
}

impl Filter {
    /// Parses a filter (`filter` query parameter or `/.search` body) within
    /// [`Limits::DEFAULT`]. Errors are `invalidFilter` (400).
    pub fn parse(text: &str) -> Result<Filter, ScimError> {
        Self::parse_with(text, &Limits::DEFAULT)
    }

    /// Parses a filter within `limits` (`max_filter_bytes`, `max_filter_depth`,
    /// `max_filter_terms`). Errors are `invalidFilter` (400) naming the position at fault
    /// or the limit exceeded.
    pub fn parse_with(text: &str, limits: &Limits) -> Result<Filter, ScimError> {
        let mut p = Parser::new(text, ScimType::InvalidFilter, limits)?;
        let f = p.or_expr(false)?;
        p.expect_end()?;
        p.check_tree_depth(&f)?;
        Ok(f)
    }

    /// Depth of the tree: 0 for a single comparison, one more per `and`, `or`, `not` or
    /// value-filter level. Computed without recursion.
    pub fn depth(&self) -> usize {
        let mut max = 0;
        let mut stack = vec![(self, 0usize)];
        while let Some((f, d)) = stack.pop() {
            max = max.max(d);
            match f {
                Filter::And(a, b) | Filter::Or(a, b) => {
                    stack.push((a, d + 1));
                    stack.push((b, d + 1));
                }
                Filter::Not(a) => stack.push((a, d + 1)),
                Filter::ValuePath { filter, .. } => stack.push((filter, d + 1)),
                Filter::Compare { .. } | Filter::Present(_) => {}
            }
        }
        max
    }

    /// Number of nodes of the tree (the cost of evaluating it once).
    pub(crate) fn node_count(&self) -> usize {
        match self {
            Filter::Compare { .. } | Filter::Present(_) => 1,
            Filter::And(a, b) | Filter::Or(a, b) => 1 + a.node_count() + b.node_count(),
            Filter::Not(a) => 1 + a.node_count(),
            Filter::ValuePath { filter, .. } => 1 + filter.node_count(),
        }
    }

    /// For storage layers: the filter is a single `attr eq literal` (no value path), the
    /// typical IdP lookup (`userName eq "..."`, `externalId eq "..."`) that an index can answer.
    pub fn as_simple_eq(&self) -> Option<(&AttrPath, &Value)> {
        match self {
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value,
            } => Some((path, value)),
            _ => None,
        }
    }

    /// For storage layers: the filter is a conjunction (`and`) of simple equalities; the
    /// returned list has one entry per equality. Covers every Entra/Okta matching filter
    /// except the value-path email one.
    pub fn as_eq_conjunction(&self) -> Option<Vec<(&AttrPath, &Value)>> {
        match self {
            Filter::And(a, b) => {
                let mut v = a.as_eq_conjunction()?;
                v.extend(b.as_eq_conjunction()?);
                Some(v)
            }
            other => other.as_simple_eq().map(|p| vec![p]),
        }
    }
}

impl fmt::Display for Filter {
    /// Canonical text form (fully parenthesised binary operators), re-parsable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => write!(f, "{path} {} {value}", op.as_str()),
            Filter::Present(p) => write!(f, "{p} pr"),
            Filter::And(a, b) => write!(f, "({a} and {b})"),
            Filter::Or(a, b) => write!(f, "({a} or {b})"),
            Filter::Not(a) => write!(f, "not ({a})"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

/// A parsed PATCH `path`: `attrPath` or `valuePath [ "." subAttr ]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// Target attribute (may carry a sub-attribute when there is no filter: `name.givenName`).
    pub attr: AttrPath,
    /// Value selection filter (`emails[type eq "work"]`).
    pub filter: Option<Filter>,
    /// Sub-attribute after the filter (`.value` in `emails[type eq "work"].value`).
    pub sub_after_filter: Option<String>,
}

impl PatchPath {
    /// Parses a PATCH path within [`Limits::DEFAULT`]; errors are `invalidPath` (400).
    pub fn parse(text: &str) -> Result<PatchPath, ScimError> {
        Self::parse_with(text, &Limits::DEFAULT)
    }

    /// Parses a PATCH path within `limits` (the filter limits apply to the whole path);
    /// errors are `invalidPath` (400) naming the position at fault or the limit exceeded.
    pub fn parse_with(text: &str, limits: &Limits) -> Result<PatchPath, ScimError> {
        let mut p = Parser::new(text, ScimType::InvalidPath, limits)?;
        let (attr, at) = p.attr_path()?;
        let mut out = PatchPath {
            attr,
            filter: None,
            sub_after_filter: None,
        };
        if p.eat(&Tok::LBracket) {
            if out.attr.sub_attr.is_some() {
                return Err(p.error_at(at, "a value filter cannot follow a sub-attribute"));
            }
            p.enter(at)?;
            let filter = p.or_expr(true)?;
            p.leave();
            p.check_tree_depth(&filter)?;
            out.filter = Some(filter);
            p.expect(&Tok::RBracket, "']'")?;
            if p.eat(&Tok::Dot) {
                out.sub_after_filter = Some(p.name()?);
            }
        }
        p.expect_end()?;
        Ok(out)
    }

    /// The sub-attribute targeted, whichever syntax was used.
    pub fn sub_attr(&self) -> Option<&str> {
        self.sub_after_filter
            .as_deref()
            .or(self.attr.sub_attr.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Word(String),
    Str(String),
}

/// Parser over a token list carrying character positions. It does not recurse (see
/// [`Parser::or_expr`]); nesting is still bounded by `max_depth` ([`Parser::enter`]) so the
/// trees it builds stay shallow.
struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
    kind: ScimType,
    depth: usize,
    max_depth: usize,
    terms: usize,
    max_terms: usize,
}

impl Parser {
    fn new(text: &str, kind: ScimType, limits: &Limits) -> Result<Self, ScimError> {
        let what = if kind == ScimType::InvalidPath {
            "PATCH path"
        } else {
            "filter"
        };
        if text.len() > limits.max_filter_bytes {
            return Err(err(
                kind,
                format!(
                    "{what} is {} bytes long, more than the limit of {} bytes",
                    text.len(),
                    limits.max_filter_bytes
                ),
            ));
        }
        let toks = lex(text).map_err(|(at, msg)| err(kind, format!("{msg} at position {at}")))?;
        Ok(Parser {
            toks,
            pos: 0,
            end: text.chars().count(),
            kind,
            depth: 0,
            max_depth: limits.max_filter_depth,
            terms: 0,
            max_terms: limits.max_filter_terms,
        })
    }

    /// Opens a nesting level (`(` or `[`); refuses to go deeper than `max_depth`.
    fn enter(&mut self, at: usize) -> Result<(), ScimError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(self.error_at(
                at,
                format!(
                    "filter nested more than {} levels deep (limit on '(' and '[')",
                    self.max_depth
                ),
            ));
        }
        Ok(())
    }

    /// The parsed tree may not be deeper than `max_depth` either (long `and`/`or` mixes
    /// add levels without brackets); this also guarantees its `Display` form re-parses.
    fn check_tree_depth(&self, f: &Filter) -> Result<(), ScimError> {
        let depth = f.depth();
        if depth > self.max_depth {
            return Err(err(
                self.kind,
                format!(
                    "filter nested more than {} levels deep (its expression tree has {depth} levels of 'and', 'or', 'not' and '[')",
                    self.max_depth
                ),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Counts one attribute expression; refuses more than `max_terms`.
    fn count_term(&mut self, at: usize) -> Result<(), ScimError> {
        self.terms += 1;
        if self.terms > self.max_terms {
            return Err(self.error_at(
                at,
                format!(
                    "filter has more than {} attribute expressions (limit)",
                    self.max_terms
                ),
            ));
        }
        Ok(())
    }

    fn error_at(&self, at: usize, msg: impl fmt::Display) -> ScimError {
        err(self.kind, format!("{msg} at position {at}"))
    }

    fn here(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |t| t.1)
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &Tok, what: &str) -> Result<(), ScimError> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.error_at(self.here(), format!("expected {what}")))
        }
    }

    fn expect_end(&self) -> Result<(), ScimError> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(self.error_at(self.here(), format!("unexpected {}", describe(t)))),
        }
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        match self.peek() {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    /// `filter = and_expr *("or" and_expr)`, `and_expr = unary *("and" unary)`,
    /// `unary = ["not"] "(" filter ")" / attrExpr`, with `attrExpr` possibly
    /// `attr "[" filter "]"`. Parsed with an explicit stack of open levels instead of
    /// recursion, so the parser's own stack use does not grow with the input; `and`/`or`
    /// chains become balanced trees. `in_brackets`: the whole text is the inside of a
    /// value filter (PATCH paths).
    fn or_expr(&mut self, in_brackets: bool) -> Result<Filter, ScimError> {
        let mut stack = vec![Level::new(Open::Top)];
        // Nested value filters are refused, so at most one bracket level is open.
        let mut bracket_open = in_brackets;
        loop {
            // An operand: open levels until an attribute expression completes one.
            let mut operand = loop {
                let at = self.here();
                if self.eat_keyword("not") {
                    let at = self.here();
                    if !self.eat(&Tok::LParen) {
                        return Err(self.error_at(at, "expected '(' after 'not'"));
                    }
                    self.enter(at)?;
                    stack.push(Level::new(Open::Paren { negate: true }));
                    continue;
                }
                if self.eat(&Tok::LParen) {
                    self.enter(at)?;
                    stack.push(Level::new(Open::Paren { negate: false }));
                    continue;
                }
                match self.attr_expr(bracket_open)? {
                    AttrExpr::Done(f) => break f,
                    AttrExpr::Opened(path, bracket_at) => {
                        self.enter(bracket_at)?;
                        bracket_open = true;
                        stack.push(Level::new(Open::Bracket { path }));
                    }
                }
            };
            // The operators after it; a level whose expression ends is closed and becomes
            // an operand of the level below.
            loop {
                let level = stack
                    .last_mut()
                    .expect("the top level is never popped here");
                level.ands.push(operand);
                if self.eat_keyword("and") {
                    break;
                }
                let ands = std::mem::take(&mut level.ands);
                level.ors.push(balanced(ands, Filter::And));
                if self.eat_keyword("or") {
                    break;
                }
                let level = stack.pop().expect("checked above");
                let expr = balanced(level.ors, Filter::Or);
                operand = match level.open {
                    Open::Top => return Ok(expr),
                    Open::Paren { negate } => {
                        self.expect(&Tok::RParen, "')'")?;
                        self.leave();
                        if negate {
                            Filter::Not(Box::new(expr))
                        } else {
                            expr
                        }
                    }
                    Open::Bracket { path } => {
                        self.expect(&Tok::RBracket, "']'")?;
                        self.leave();
                        bracket_open = in_brackets;
                        self.close_value_path(path, expr)?
                    }
                };
            }
        }
    }

    /// An attribute expression, or the opening of a value filter (`path[`, consumed).
    fn attr_expr(&mut self, in_brackets: bool) -> Result<AttrExpr, ScimError> {
        self.count_term(self.here())?;
        let (path, at) = self.attr_path()?;
        if self.peek() == Some(&Tok::LBracket) {
            if in_brackets {
                return Err(self.error_at(self.here(), "nested value filters are not allowed"));
            }
            if path.sub_attr.is_some() {
                return Err(self.error_at(at, "a value filter cannot follow a sub-attribute"));
            }
            let bracket_at = self.here();
            self.pos += 1;
            return Ok(AttrExpr::Opened(path, bracket_at));
        }
        if in_brackets && (path.urn.is_some() || path.sub_attr.is_some()) {
            return Err(self.error_at(
                at,
                "only sub-attribute names are allowed inside a value filter",
            ));
        }
        self.condition(path, at, !in_brackets).map(AttrExpr::Done)
    }

    /// After `path[inner]`: the value path, with Entra's `.sub op value` suffix if present.
    fn close_value_path(&mut self, path: AttrPath, inner: Filter) -> Result<Filter, ScimError> {
        let filter = if self.eat(&Tok::Dot) {
            // Entra dialect: emails[type eq "work"].value eq "x"
            let sub_at = self.here();
            let sub = self.name()?;
            let cond = self.condition(AttrPath::new(sub), sub_at, false)?;
            Filter::And(Box::new(inner), Box::new(cond))
        } else {
            inner
        };
        Ok(Filter::ValuePath {
            path,
            filter: Box::new(filter),
        })
    }

    /// `pr` or `compareOp compValue` after an attribute path; `at_root` when the path is
    /// relative to the resource (not to the elements of a value filter).
    fn condition(
        &mut self,
        path: AttrPath,
        path_at: usize,
        at_root: bool,
    ) -> Result<Filter, ScimError> {
        let at = self.here();
        let op_word = match self.peek() {
            Some(Tok::Word(w)) => w.clone(),
            Some(t) => {
                return Err(self.error_at(
                    at,
                    format!("expected an operator after '{path}', found {}", describe(t)),
                ));
            }
            None => {
                return Err(self.error_at(
                    at,
                    format!("expected an operator after '{path}' (attribute at {path_at})"),
                ));
            }
        };
        self.pos += 1;
        if op_word.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let op = CompareOp::parse(&op_word)
            .ok_or_else(|| self.error_at(at, format!("unknown operator '{op_word}'")))?;
        let mut value = self.comp_value()?;
        if at_root
            && matches!(op, CompareOp::Eq | CompareOp::Ne)
            && is_user_name(&path)
            && let Value::String(s) = &value
            && let Ok(canonical) = crate::validate::canonical_user_name(s)
        {
            value = Value::String(canonical);
        }
        Ok(Filter::Compare { path, op, value })
    }

    fn comp_value(&mut self) -> Result<Value, ScimError> {
        let at = self.here();
        let tok = self.toks.get(self.pos).map(|t| t.0.clone());
        let value = match tok {
            Some(Tok::Str(s)) => Value::String(s),
            Some(Tok::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                "and" | "or" | "not" => {
                    return Err(self.error_at(at, "expected a comparison value"));
                }
                _ if w.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
                    let n: serde_json::Number = w
                        .parse()
                        .map_err(|_| self.error_at(at, format!("invalid number '{w}'")))?;
                    // JSON's syntax, checked above; the value of a non-integer read again with
                    // the standard library's correctly rounded parser (serde_json's default
                    // one can be off by an ulp on long literals, and a filter printed and read
                    // back must be the same filter).
                    let n = match n.is_f64() {
                        true => w.parse::<f64>().ok().and_then(serde_json::Number::from_f64).unwrap_or(n),
                        false => n,
                    };
                    Value::Number(n)
                }
                // Lenient: bare word read as a string (older Entra `externalId eq jyoung`).
                _ => Value::String(w),
            },
            Some(t) => {
                return Err(self.error_at(
                    at,
                    format!("expected a comparison value, found {}", describe(&t)),
                ));
            }
            None => return Err(self.error_at(at, "expected a comparison value")),
        };
        self.pos += 1;
        Ok(value)
    }

    fn attr_path(&mut self) -> Result<(AttrPath, usize), ScimError> {
        let at = self.here();
        match self.peek() {
            Some(Tok::Word(w)) => {
                let w = w.clone();
                self.pos += 1;
                let p = AttrPath::parse(&w)
                    .map_err(|_| self.error_at(at, format!("invalid attribute path '{w}'")))?;
                Ok((p, at))
            }
            Some(t) => Err(self.error_at(
                at,
                format!("expected an attribute path, found {}", describe(t)),
            )),
            None => Err(self.error_at(at, "expected an attribute path")),
        }
    }

    fn name(&mut self) -> Result<String, ScimError> {
        let at = self.here();
        match self.peek() {
            Some(Tok::Word(w)) if is_attr_name(w) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.error_at(at, "expected a sub-attribute name")),
        }
    }
}

/// What opened a level of the parser's explicit stack.
enum Open {
    /// The whole expression (or the inside of a PATCH path's brackets).
    Top,
    /// `(`, negated when it followed `not`.
    Paren { negate: bool },
    /// `path[`.
    Bracket { path: AttrPath },
}

/// One open level: the `or` operands so far and the `and` chain being read.
struct Level {
    open: Open,
    ors: Vec<Filter>,
    ands: Vec<Filter>,
}

impl Level {
    fn new(open: Open) -> Self {
        Level {
            open,
            ors: Vec::new(),
            ands: Vec::new(),
        }
    }
}

/// Result of [`Parser::attr_expr`].
enum AttrExpr {
    /// A complete comparison or presence test.
    Done(Filter),
    /// `path[` was read (position of the bracket): a value filter is open.
    Opened(AttrPath, usize),
}

/// Joins a non-empty chain of operands into a balanced tree of `join` nodes (the left half
/// gets the extra operand, so chains of up to three read as a left fold). Depth is
/// `ceil(log2(len))`.
fn balanced(mut items: Vec<Filter>, join: fn(Box<Filter>, Box<Filter>) -> Filter) -> Filter {
    if items.len() <= 1 {
        return items.pop().expect("a chain has at least one operand");
    }
    let right = items.split_off(items.len().div_ceil(2));
    join(
        Box::new(balanced(items, join)),
        Box::new(balanced(right, join)),
    )
}

/// Whether `path` is the core User `userName` (bare or URN-qualified).
fn is_user_name(path: &AttrPath) -> bool {
    path.sub_attr.is_none()
        && path.attr.eq_ignore_ascii_case("userName")
        && path
            .urn
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case(USER_SCHEMA_URN))
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::LBracket => "'['".into(),
        Tok::RBracket => "']'".into(),
        Tok::Dot => "'.'".into(),
        Tok::Word(w) => format!("'{w}'"),
        Tok::Str(s) => format!("string \"{s}\""),
    }
}

/// Splits filter text into tokens with their character positions. Strings are JSON
/// strings (all JSON escapes honoured).
fn lex(text: &str) -> Result<Vec<(Tok, usize)>, (usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let simple = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            '.' => Some(Tok::Dot),
            _ => None,
        };
        if let Some(t) = simple {
            toks.push((t, start));
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '"' {
            i += 1;
            let mut escaped = false;
            loop {
                match chars.get(i) {
                    None => return Err((start, "unterminated string".into())),
                    Some('\\') if !escaped => escaped = true,
                    Some('"') if !escaped => break,
                    Some(_) => escaped = false,
                }
                i += 1;
            }
            let raw: String = chars[start..=i].iter().collect();
            let s: String = serde_json::from_str(&raw)
                .map_err(|e| (start, format!("invalid string literal ({e})")))?;
            toks.push((Tok::Str(s), start));
            i += 1;
        } else {
            while i < chars.len() && !chars[i].is_whitespace() && !"()[]\"".contains(chars[i]) {
                i += 1;
            }
            toks.push((Tok::Word(chars[start..i].iter().collect()), start));
        }
    }
    Ok(toks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cmp(path: &str, op: CompareOp, value: Value) -> Filter {
        Filter::Compare {
            path: AttrPath::parse(path).unwrap(),
            op,
            value,
        }
    }

    #[test]
    fn precedence_and_grouping() {
        // (input, canonical rendering)
        let table = [
            (
                "a eq 1 or b eq 2 and c eq 3",
                "(a eq 1 or (b eq 2 and c eq 3))",
            ),
            (
                "a eq 1 and b eq 2 or c eq 3",
                "((a eq 1 and b eq 2) or c eq 3)",
            ),
            (
                "(a eq 1 or b eq 2) and c eq 3",
                "((a eq 1 or b eq 2) and c eq 3)",
            ),
            ("not (a eq 1) and b pr", "(not (a eq 1) and b pr)"),
            (
                "a eq 1 AND NOT (b Eq 2) Or c PR",
                "((a eq 1 and not (b eq 2)) or c pr)",
            ),
            (
                "a eq 1 and b eq 2 and c eq 3",
                "((a eq 1 and b eq 2) and c eq 3)",
            ),
            (
                "emails[type eq \"work\" and value co \"@x\"]",
                "emails[(type eq \"work\" and value co \"@x\")]",
            ),
            (
                "emails[type eq \"work\"].value eq \"u@c.com\"",
                "emails[(type eq \"work\" and value eq \"u@c.com\")]",
            ),
            (
                "meta.lastModified gt \"2011-05-13T04:42:34Z\"",
                "meta.lastModified gt \"2011-05-13T04:42:34Z\"",
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq \"Sales\"",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq \"Sales\"",
            ),
            (
                "x eq 1.5e3 or y eq -2 or z eq null",
                "((x eq 1500.0 or y eq -2) or z eq null)",
            ),
            ("externalId eq jyoung", "externalId eq \"jyoung\""),
        ];
        for (input, expected) in table {
            let f = Filter::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(f.to_string(), expected, "{input}");
            // The rendering parses back to the same tree.
            assert_eq!(Filter::parse(&f.to_string()).unwrap(), f, "{input}");
        }
    }

    #[test]
    fn literals_and_escapes() {
        let f = Filter::parse(r#"title eq "a \"quoted\" \\ \u00e9 \n""#).unwrap();
        assert_eq!(
            f,
            cmp("title", CompareOp::Eq, json!("a \"quoted\" \\ é \n"))
        );
        assert_eq!(
            Filter::parse("active eq TRUE").unwrap(),
            cmp("active", CompareOp::Eq, json!(true))
        );
        assert_eq!(
            Filter::parse("active ne false").unwrap(),
            cmp("active", CompareOp::Ne, json!(false))
        );
        assert_eq!(
            Filter::parse("n ge 10").unwrap(),
            cmp("n", CompareOp::Ge, json!(10))
        );
        assert_eq!(
            Filter::parse("title pr").unwrap(),
            Filter::Present(AttrPath::new("title"))
        );
        for (op, expected) in [
            ("eq", CompareOp::Eq),
            ("NE", CompareOp::Ne),
            ("Co", CompareOp::Co),
            ("sW", CompareOp::Sw),
            ("ew", CompareOp::Ew),
            ("gt", CompareOp::Gt),
            ("ge", CompareOp::Ge),
            ("lt", CompareOp::Lt),
            ("le", CompareOp::Le),
        ] {
            assert_eq!(
                Filter::parse(&format!("a {op} \"x\"")).unwrap(),
                cmp("a", expected, json!("x"))
            );
        }
    }

    #[test]
    fn errors_say_what_and_where() {
        // (input, fragment expected in the detail)
        let table = [
            ("userName zz \"x\"", "unknown operator 'zz' at position 9"),
            ("userName eq", "expected a comparison value at position 11"),
            ("userName", "expected an operator after 'userName'"),
            ("(a eq 1", "expected ')' at position 7"),
            ("a eq 1)", "unexpected ')' at position 6"),
            ("a eq \"x", "unterminated string at position 5"),
            ("emails[type eq \"work\"", "expected ']' at position 21"),
            (
                "emails[x[y eq 1]]",
                "nested value filters are not allowed at position 8",
            ),
            ("not a eq 1", "expected '(' after 'not' at position 4"),
            ("a eq 1 and", "expected an attribute path at position 10"),
            ("", "expected an attribute path at position 0"),
            ("1a eq 2", "invalid attribute path '1a' at position 0"),
            ("a eq 12abc", "invalid number '12abc' at position 5"),
            ("a eq \"\\q\"", "invalid string literal"),
            ("a eq and", "expected a comparison value at position 5"),
        ];
        for (input, fragment) in table {
            let e = Filter::parse(input).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{input}");
            assert_eq!(e.status, 400);
            assert!(e.detail.contains(fragment), "{input}: {}", e.detail);
        }
    }

    #[test]
    fn simple_eq_recognition() {
        let f = Filter::parse("userName eq \"bjensen\"").unwrap();
        let (p, v) = f.as_simple_eq().unwrap();
        assert_eq!((p.attr.as_str(), v), ("userName", &json!("bjensen")));
        assert!(
            Filter::parse("userName ne \"x\"")
                .unwrap()
                .as_simple_eq()
                .is_none()
        );
        assert!(
            Filter::parse("emails[type eq \"work\"]")
                .unwrap()
                .as_simple_eq()
                .is_none()
        );
        let c = Filter::parse("userName eq \"a\" and externalId eq \"b\"").unwrap();
        assert_eq!(c.as_eq_conjunction().unwrap().len(), 2);
        assert!(
            Filter::parse("a eq 1 or b eq 2")
                .unwrap()
                .as_eq_conjunction()
                .is_none()
        );
    }

    #[test]
    fn patch_paths() {
        let p = PatchPath::parse("emails[type eq \"work\"].value").unwrap();
        assert_eq!(p.attr, AttrPath::new("emails"));
        assert_eq!(p.filter, Some(cmp("type", CompareOp::Eq, json!("work"))));
        assert_eq!(p.sub_attr(), Some("value"));
        let p = PatchPath::parse("name.givenName").unwrap();
        assert_eq!(
            (p.filter.is_none(), p.sub_attr()),
            (true, Some("givenName"))
        );
        let p = PatchPath::parse("members[value eq \"7f4b\"]").unwrap();
        assert!(p.filter.is_some() && p.sub_attr().is_none());
        let p =
            PatchPath::parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager")
                .unwrap();
        assert_eq!(
            p.attr.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        for bad in [
            "",
            "emails[",
            "emails[type eq \"w\"]x",
            "name.givenName[type eq \"x\"]",
            "emails[type eq \"w\"].",
        ] {
            assert_eq!(
                PatchPath::parse(bad).unwrap_err().scim_type,
                Some(ScimType::InvalidPath),
                "{bad}"
            );
        }
    }

    /// Every filter the IdP fixture vectors send must parse.
    #[test]
    fn fixture_filters_parse() {
        let filters = crate::test_fixtures::all_filters();
        assert!(filters.len() >= 10, "fixtures not found");
        for (id, f) in filters {
            let parsed = Filter::parse(&f);
            if id == "rfc-03" {
                assert_eq!(parsed.unwrap_err().scim_type, Some(ScimType::InvalidFilter));
            } else {
                parsed.unwrap_or_else(|e| panic!("{id}: {f}: {e}"));
            }
        }
    }

    /// A long number literal reads as the correctly rounded value, so a filter printed and
    /// read back is the same filter (found by `tests/fuzz.rs`: serde_json's default float
    /// parser was one ulp off on this literal).
    #[test]
    fn a_long_number_round_trips_through_printing() {
        let literal = format!("2115127026763174300{}", "0".repeat(198));
        let f = Filter::parse(&format!("w lt {literal}")).unwrap();
        let Filter::Compare { value, .. } = &f else { panic!("{f:?}") };
        assert_eq!(value.as_f64(), Some(literal.parse::<f64>().unwrap()));
        assert_eq!(Filter::parse(&f.to_string()).unwrap(), f, "printed as {f}");
    }
}
