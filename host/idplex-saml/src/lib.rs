//! The SAML 2.0 service-provider protocol of idplex, as a pure library: no HTTP, no storage, no
//! clock (every check that needs the time takes `now` as a parameter), like `idplex-scim`.
//!
//! * [`response`] verifies a `<samlp:Response>` posted to the ACS (HTTP-POST binding) under a
//!   strict, fail-closed [`AcsPolicy`] and yields a [`VerifiedResponse`]: the only thing the
//!   rest of idplex (and a connector's claim mapping) ever sees of an assertion.
//! * [`xml`] is the one XML parser (size and depth limits, no DTD); [`c14n`] is exclusive XML
//!   canonicalization over that parser's tree; [`dsig`] checks one enveloped XML-DSig signature
//!   and says exactly which element it covers; [`cert`] reads configured IdP certificates.
//! * [`authn_request`] builds SP-initiated `<samlp:AuthnRequest>`s for the HTTP-Redirect binding
//!   (DEFLATE, optionally signed) and decodes Redirect-bound messages with an inflate cap.
//! * [`metadata`] renders the SP's metadata and reads an IdP's (entity ID, SSO URL, signing
//!   certificates).
//!
//! Why our own verifier, on `roxmltree` + `ring`, rather than samael/xmlsec or a general
//! XML-DSig crate: see ARCHITECTURE.md ("SAML verification"). In short: every SAML SP CVE of
//! the last years is a gap between what was verified and what was consumed; here the signature
//! is checked over a node of the same tree the claims are then read from, with exactly one
//! Reference that must point at that node, one allow-listed canonicalization, allow-listed
//! algorithms, and keys only from configuration. The cryptography is `ring`'s.

pub mod authn_request;
pub mod c14n;
pub mod cert;
pub mod dsig;
mod error;
pub mod logout;
pub mod metadata;
pub mod response;
pub mod xml;

pub use error::{SamlError, SamlErrorCode};
pub use response::{AcsPolicy, Attribute, VerifiedResponse, verify_response};

/// Namespace of SAML 2.0 assertions.
pub const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// Namespace of SAML 2.0 protocol messages.
pub const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// Namespace of SAML 2.0 metadata.
pub const NS_METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
/// Namespace of XML-DSig.
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
/// The HTTP-Redirect binding.
pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
/// The HTTP-POST binding.
pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// This service provider, per connection: what an IdP is told in metadata and what a response
/// must be addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpConfig {
    /// The SP's entity ID (the Audience every assertion must name).
    pub entity_id: String,
    /// The Assertion Consumer Service URL (HTTP-POST): Destination and Recipient must equal it.
    pub acs_url: String,
}

/// The IdP a connection trusts, configured by an admin (imported from metadata or entered by
/// hand).
#[derive(Debug, Clone)]
pub struct IdpConfig {
    /// The IdP's entity ID: the `<Issuer>` of its responses and assertions.
    pub entity_id: String,
    /// Its single sign-on URL (HTTP-Redirect binding), where AuthnRequests go.
    pub sso_url: String,
    /// Its signing certificates (more than one during a key rollover). Empty means SSO cannot
    /// be enabled: verification refuses every response (fail closed).
    pub certificates: Vec<cert::Certificate>,
    /// Accept a response whose only signature covers the `<samlp:Response>` (not the
    /// assertion). Off by default: the assertion itself must be signed.
    pub allow_response_only_signing: bool,
}
