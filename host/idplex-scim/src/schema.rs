//! Schema model (RFC 7643 §2, §4, §7): attribute definitions of the User, Enterprise User
//! and Group schemas, the resource types that combine them, and case-insensitive lookup of
//! attribute paths.
//!
//! Definitions are `static` data built with `const fn` builders so that every other module
//! (filter evaluation, PATCH, projection, validation, discovery) reads one single source of
//! truth for types, case sensitivity, mutability and `returned` rules.

use crate::path::AttrPath;

/// URN of the core User schema.
pub const USER_SCHEMA_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// URN of the core Group schema.
pub const GROUP_SCHEMA_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// URN of the Enterprise User extension.
pub const ENTERPRISE_USER_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";


/// Data type of an attribute (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// Unicode string.
    String,
    /// JSON `true` / `false`.
    Boolean,
    /// Real number.
    Decimal,
    /// Whole number.
    Integer,
    /// xsd:dateTime string, compared as an instant.
    DateTime,
    /// Base64-encoded bytes.
    Binary,
    /// URI (to a SCIM resource, an external resource or a URI).
    Reference,
    /// Object made of sub-attributes.
    Complex,
}

impl AttrType {
    /// The name used in `/Schemas` (`"string"`, `"dateTime"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

/// Whether and how a client may change an attribute (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// Set by the service provider only; client input is ignored (PUT/POST) or refused (PATCH path).
    ReadOnly,
    /// Freely writable.
    ReadWrite,
    /// May be set once, never changed afterwards.
    Immutable,
    /// May be written, never returned (e.g. password).
    WriteOnly,
}

impl Mutability {
    /// Wire name (`"readOnly"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

/// When an attribute appears in responses (RFC 7643 §7, RFC 7644 §3.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// Always returned, even if excluded (id, schemas, meta).
    Always,
    /// Never returned (password).
    Never,
    /// Returned unless excluded.
    Default,
    /// Returned only when named in `attributes`.
    Request,
}

impl Returned {
    /// Wire name (`"always"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

/// Uniqueness scope of an attribute value (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    /// No uniqueness requirement.
    None,
    /// Unique within the service provider (e.g. userName).
    Server,
    /// Globally unique.
    Global,
}

impl Uniqueness {
    /// Wire name (`"none"`, `"server"`, `"global"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute definition, with the characteristics of RFC 7643 §7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeDef {
    /// Attribute name as defined (matching is case-insensitive).
    pub name: &'static str,
    /// Data type.
    pub ty: AttrType,
    /// Whether the value is a JSON array.
    pub multi_valued: bool,
    /// Short human description for `/Schemas`.
    pub description: &'static str,
    /// Whether a create/replace must carry it.
    pub required: bool,
    /// Whether string comparison is case-sensitive.
    pub case_exact: bool,
    /// Write rules.
    pub mutability: Mutability,
    /// Read rules.
    pub returned: Returned,
    /// Uniqueness scope.
    pub uniqueness: Uniqueness,
    /// Suggested values (`type` of emails...), informative only.
    pub canonical_values: &'static [&'static str],
    /// For references: what they may point to (`User`, `Group`, `external`, `uri`).
    pub reference_types: &'static [&'static str],
    /// For complex attributes: the sub-attributes.
    pub sub_attributes: &'static [AttributeDef],
}

/// Starts a definition with the RFC defaults (single-valued, optional, caseExact false,
/// readWrite, returned default, uniqueness none).
const fn attr(name: &'static str, ty: AttrType, description: &'static str) -> AttributeDef {
    AttributeDef {
        name,
        ty,
        multi_valued: false,
        description,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        canonical_values: &[],
        reference_types: &[],
        sub_attributes: &[],
    }
}

/// A bare attribute of the given type, for unit tests of type handling.
#[cfg(test)]
pub(crate) fn attr_for_tests(ty: AttrType) -> AttributeDef {
    attr("x", ty, "")
}

const fn string(name: &'static str, description: &'static str) -> AttributeDef {
    attr(name, AttrType::String, description)
}

const fn complex(
    name: &'static str,
    description: &'static str,
    subs: &'static [AttributeDef],
) -> AttributeDef {
    attr(name, AttrType::Complex, description).subs(subs)
}

const fn reference(
    name: &'static str,
    description: &'static str,
    types: &'static [&'static str],
) -> AttributeDef {
    attr(name, AttrType::Reference, description).refs(types)
}

impl AttributeDef {
    const fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    const fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    const fn read_only(self) -> Self {
        self.mutability(Mutability::ReadOnly)
    }
    const fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    const fn unique(mut self, u: Uniqueness) -> Self {
        self.uniqueness = u;
        self
    }
    const fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical_values = values;
        self
    }
    const fn refs(mut self, types: &'static [&'static str]) -> Self {
        self.reference_types = types;
        self
    }
    const fn subs(mut self, subs: &'static [AttributeDef]) -> Self {
        self.sub_attributes = subs;
        self
    }

    /// Case-insensitive lookup of a sub-attribute.
    pub fn sub_attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        find_attr(self.sub_attributes, name)
    }

    /// Whether clients may write this attribute at all.
    pub fn is_read_only(&self) -> bool {
        self.mutability == Mutability::ReadOnly
    }
}

fn find_attr(list: &'static [AttributeDef], name: &str) -> Option<&'static AttributeDef> {
    list.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// The usual `value`/`display`/`type`/`primary` quadruple of RFC 7643 §2.4 multi-valued attributes.
macro_rules! multi_valued_subs {
    ($value:expr, $types:expr) => {
        &[
            $value,
            string(
                "display",
                "A human-readable name, primarily used for display purposes.",
            ),
            string("type", "A label indicating the attribute's function.").canonical($types),
            attr(
                "primary",
                AttrType::Boolean,
                "Whether this is the primary or preferred value.",
            ),
        ]
    };
}

/// Common attributes of every resource (RFC 7643 §3.1): not part of any `/Schemas`
/// entry, but resolvable in filters, projections and PATCH paths.
pub static COMMON_ATTRIBUTES: &[AttributeDef] = &[
    string("schemas", "URNs of the schemas the resource conforms to.")
        .case_exact()
        .multi()
        .returned(Returned::Always),
    string("id", "Unique identifier assigned by the service provider.")
        .case_exact()
        .read_only()
        .returned(Returned::Always)
        .unique(Uniqueness::Server),
    string(
        "externalId",
        "Identifier assigned by the provisioning client.",
    )
    .case_exact(),
    complex(
        "meta",
        "Resource metadata maintained by the service provider.",
        &[
            string("resourceType", "Name of the resource type.")
                .case_exact()
                .read_only(),
            attr(
                "created",
                AttrType::DateTime,
                "When the resource was added.",
            )
            .read_only(),
            attr(
                "lastModified",
                AttrType::DateTime,
                "When the resource was last updated.",
            )
            .read_only(),
            reference("location", "URI of the resource.", &["uri"])
                .case_exact()
                .read_only(),
            string("version", "Entity tag of the resource version.")
                .case_exact()
                .read_only(),
        ],
    )
    .read_only()
    .returned(Returned::Always),
];

/// Attributes of the core User schema (RFC 7643 §4.1, §8.7.1).
static USER_ATTRIBUTES: &[AttributeDef] = &[
    string(
        "userName",
        "Unique identifier for the user, used to authenticate.",
    )
    .required()
    .unique(Uniqueness::Server),
    complex(
        "name",
        "The components of the user's real name.",
        &[
            string("formatted", "The full name, formatted for display."),
            string("familyName", "The family name (last name)."),
            string("givenName", "The given name (first name)."),
            string("middleName", "The middle name(s)."),
            string("honorificPrefix", "Honorific prefix(es), e.g. 'Ms.'."),
            string("honorificSuffix", "Honorific suffix(es), e.g. 'III'."),
        ],
    ),
    string("displayName", "Name of the user suitable for display."),
    string("nickName", "Casual way to address the user."),
    reference(
        "profileUrl",
        "URI of the user's online profile.",
        &["external"],
    ),
    string("title", "The user's title, e.g. 'Vice President'."),
    string(
        "userType",
        "Relationship between organization and user, e.g. 'Employee'.",
    ),
    string(
        "preferredLanguage",
        "Preferred written or spoken language (RFC 7231 language tag).",
    ),
    string(
        "locale",
        "Default location for localisation (e.g. 'en-US').",
    ),
    string(
        "timezone",
        "Time zone in IANA format (e.g. 'America/Los_Angeles').",
    ),
    attr(
        "active",
        AttrType::Boolean,
        "Administrative status of the user.",
    ),
    string("password", "Cleartext password, write-only.")
        .mutability(Mutability::WriteOnly)
        .returned(Returned::Never),
    complex(
        "emails",
        "Email addresses of the user.",
        multi_valued_subs!(
            string("value", "Email address."),
            &["work", "home", "other"]
        ),
    )
    .multi(),
    complex(
        "phoneNumbers",
        "Phone numbers of the user.",
        multi_valued_subs!(
            string("value", "Phone number."),
            &["work", "home", "mobile", "fax", "pager", "other"]
        ),
    )
    .multi(),
    complex(
        "ims",
        "Instant messaging addresses of the user.",
        multi_valued_subs!(
            string("value", "Instant messaging address."),
            &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]
        ),
    )
    .multi(),
    complex(
        "photos",
        "URLs of photos of the user.",
        multi_valued_subs!(
            reference("value", "URL of a photo.", &["external"]),
            &["photo", "thumbnail"]
        ),
    )
    .multi(),
    complex(
        "addresses",
        "Physical mailing addresses of the user.",
        &[
            string("formatted", "Full mailing address, formatted for display."),
            string("streetAddress", "Full street address component."),
            string("locality", "City or locality."),
            string("region", "State or region."),
            string("postalCode", "Zip code or postal code."),
            string("country", "Country name (ISO 3166-1 alpha-2)."),
            string("type", "A label indicating the address' function.")
                .canonical(&["work", "home", "other"]),
            attr(
                "primary",
                AttrType::Boolean,
                "Whether this is the primary address.",
            ),
        ],
    )
    .multi(),
    complex(
        "groups",
        "Groups the user belongs to, maintained by the service provider.",
        &[
            string("value", "Identifier of the group.").read_only(),
            reference("$ref", "URI of the group.", &["User", "Group"]).read_only(),
            string("display", "Display name of the group.").read_only(),
            string("type", "Direct or indirect membership.")
                .canonical(&["direct", "indirect"])
                .read_only(),
        ],
    )
    .multi()
    .read_only(),
    complex(
        "entitlements",
        "Entitlements of the user.",
        multi_valued_subs!(string("value", "Entitlement."), &[]),
    )
    .multi(),
    complex(
        "roles",
        "Roles of the user.",
        multi_valued_subs!(string("value", "Role."), &[]),
    )
    .multi(),
    complex(
        "x509Certificates",
        "X.509 certificates of the user.",
        multi_valued_subs!(
            attr(
                "value",
                AttrType::Binary,
                "DER-encoded certificate, base64."
            ),
            &[]
        ),
    )
    .multi(),
];

/// Attributes of the Enterprise User extension (RFC 7643 §4.3).
static ENTERPRISE_USER_ATTRIBUTES: &[AttributeDef] = &[
    string(
        "employeeNumber",
        "Numeric or alphanumeric identifier assigned to a person.",
    ),
    string("costCenter", "Name of a cost center."),
    string("organization", "Name of an organization."),
    string("division", "Name of a division."),
    string("department", "Name of a department."),
    complex(
        "manager",
        "The user's manager.",
        &[
            string("value", "The id of the manager's SCIM resource."),
            reference("$ref", "URI of the manager's SCIM resource.", &["User"]),
            string("displayName", "Display name of the manager.").read_only(),
        ],
    ),
];

/// Attributes of the core Group schema (RFC 7643 §4.2, §8.7.1).
static GROUP_ATTRIBUTES: &[AttributeDef] = &[
    string("displayName", "Human-readable name of the group.").required(),
    complex(
        "members",
        "Members of the group.",
        &[
            string("value", "Identifier of the member.")
                .case_exact()
                .mutability(Mutability::Immutable),
            reference("$ref", "URI of the member resource.", &["User", "Group"])
                .mutability(Mutability::Immutable),
            string("display", "Display name of the member.").read_only(),
            string("type", "Type of the member.")
                .canonical(&["User", "Group"])
                .mutability(Mutability::Immutable),
        ],
    )
    .multi(),
];

/// A schema: a URN plus its attribute definitions (RFC 7643 §7).
#[derive(Debug, PartialEq, Eq)]
pub struct Schema {
    /// Schema URN.
    pub id: &'static str,
    /// Human name.
    pub name: &'static str,
    /// Human description.
    pub description: &'static str,
    /// Top-level attributes.
    pub attributes: &'static [AttributeDef],
}

impl Schema {
    /// Case-insensitive lookup of a top-level attribute of this schema.
    pub fn attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        find_attr(self.attributes, name)
    }
}

/// The core User schema.
pub static USER_SCHEMA: Schema = Schema {
    id: USER_SCHEMA_URN,
    name: "User",
    description: "User Account",
    attributes: USER_ATTRIBUTES,
};
/// The Enterprise User extension schema.
pub static ENTERPRISE_USER_SCHEMA: Schema = Schema {
    id: ENTERPRISE_USER_URN,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: ENTERPRISE_USER_ATTRIBUTES,
};
/// The core Group schema.
pub static GROUP_SCHEMA: Schema = Schema {
    id: GROUP_SCHEMA_URN,
    name: "Group",
    description: "Group",
    attributes: GROUP_ATTRIBUTES,
};

/// Every schema this crate defines, in `/Schemas` order.
pub static ALL_SCHEMAS: &[&Schema] = &[&USER_SCHEMA, &ENTERPRISE_USER_SCHEMA, &GROUP_SCHEMA];

/// A schema extension attached to a resource type.
#[derive(Debug, PartialEq, Eq)]
pub struct SchemaExtension {
    /// The extension schema.
    pub schema: &'static Schema,
    /// Whether every resource must carry it.
    pub required: bool,
}

/// A resource type (RFC 7643 §6): core schema plus extensions, served at an endpoint.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// Resource type name (`User`, `Group`), also `meta.resourceType`.
    pub name: &'static str,
    /// Endpoint relative to the base URL (`/Users`).
    pub endpoint: &'static str,
    /// Human description.
    pub description: &'static str,
    /// Core schema.
    pub schema: &'static Schema,
    /// Extension schemas.
    pub extensions: &'static [SchemaExtension],
}

/// The User resource type (core User + Enterprise User extension).
pub static USER_RESOURCE_TYPE: ResourceType = ResourceType {
    name: "User",
    endpoint: "/Users",
    description: "User Account",
    schema: &USER_SCHEMA,
    extensions: &[SchemaExtension {
        schema: &ENTERPRISE_USER_SCHEMA,
        required: false,
    }],
};

/// The Group resource type.
pub static GROUP_RESOURCE_TYPE: ResourceType = ResourceType {
    name: "Group",
    endpoint: "/Groups",
    description: "Group",
    schema: &GROUP_SCHEMA,
    extensions: &[],
};

/// Every resource type, in `/ResourceTypes` order.
pub static ALL_RESOURCE_TYPES: &[&ResourceType] = &[&USER_RESOURCE_TYPE, &GROUP_RESOURCE_TYPE];

/// Result of resolving an attribute path against a resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedAttr {
    /// The extension schema holding the attribute, `None` for core and common attributes
    /// (which live at the top level of the resource JSON).
    pub extension: Option<&'static Schema>,
    /// The top-level attribute.
    pub attr: &'static AttributeDef,
    /// The sub-attribute, when the path names one.
    pub sub: Option<&'static AttributeDef>,
}

impl ResolvedAttr {
    /// The innermost definition the path designates (sub-attribute if any).
    pub fn leaf(&self) -> &'static AttributeDef {
        self.sub.unwrap_or(self.attr)
    }
}

impl ResourceType {
    /// Finds the schema a URN designates for this resource type: `Some((schema, false))`
    /// for the core schema, `Some((ext, true))` for an extension. Case-insensitive; only the
    /// RFC's URNs (a pre-RFC `urn:scim:schemas:...` one is its IdP's connector's to rewrite).
    pub fn schema_for_urn(&self, urn: &str) -> Option<(&'static Schema, bool)> {
        if urn.eq_ignore_ascii_case(self.schema.id) {
            return Some((self.schema, false));
        }
        self.extensions
            .iter()
            .find(|e| e.schema.id.eq_ignore_ascii_case(urn))
            .map(|e| (e.schema, true))
    }

    /// The extension schema whose URN is `urn`.
    pub fn extension(&self, urn: &str) -> Option<&'static Schema> {
        match self.schema_for_urn(urn) {
            Some((s, true)) => Some(s),
            _ => None,
        }
    }

    /// Resolves an attribute path case-insensitively. Without URN, core and common
    /// attributes are tried first, then the extensions (so `manager` finds the enterprise
    /// manager). A sub-attribute must exist in the complex attribute's definition.
    pub fn resolve(&self, path: &AttrPath) -> Option<ResolvedAttr> {
        let (extension, attr) = match &path.urn {
            Some(urn) => {
                let (schema, is_ext) = self.schema_for_urn(urn)?;
                let attr = schema.attribute(&path.attr).or_else(|| {
                    if is_ext {
                        None
                    } else {
                        find_attr(COMMON_ATTRIBUTES, &path.attr)
                    }
                })?;
                (is_ext.then_some(schema), attr)
            }
            None => match self
                .schema
                .attribute(&path.attr)
                .or_else(|| find_attr(COMMON_ATTRIBUTES, &path.attr))
            {
                Some(a) => (None, a),
                None => self
                    .extensions
                    .iter()
                    .find_map(|e| e.schema.attribute(&path.attr).map(|a| (Some(e.schema), a)))?,
            },
        };
        let sub = match &path.sub_attr {
            Some(s) => Some(attr.sub_attribute(s)?),
            None => None,
        };
        Some(ResolvedAttr {
            extension,
            attr,
            sub,
        })
    }

    /// Convenience: parses then resolves a textual path (`"name.givenName"`,
    /// `"urn:...:enterprise:2.0:User:department"`).
    pub fn resolve_str(&self, path: &str) -> Option<ResolvedAttr> {
        self.resolve(&AttrPath::parse(path).ok()?)
    }

    /// All top-level attributes a resource of this type may carry at its root
    /// (core schema + common attributes).
    pub fn root_attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        self.schema
            .attribute(name)
            .or_else(|| find_attr(COMMON_ATTRIBUTES, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_table() {
        let u = &USER_RESOURCE_TYPE;
        // (path, expected leaf name, in extension?)
        let table: &[(&str, &str, bool)] = &[
            ("userName", "userName", false),
            ("USERNAME", "userName", false),
            ("name.givenName", "givenName", false),
            ("Name.GIVENNAME", "givenName", false),
            ("emails.value", "value", false),
            ("id", "id", false),
            ("meta.lastModified", "lastModified", false),
            (
                "urn:ietf:params:scim:schemas:core:2.0:User:userName",
                "userName",
                false,
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                "department",
                true,
            ),
            (
                "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:manager.value",
                "value",
                true,
            ),
            ("manager", "manager", true),
            ("groups.display", "display", false),
            ("x509Certificates.value", "value", false),
        ];
        for (path, leaf, ext) in table {
            let r = u
                .resolve_str(path)
                .unwrap_or_else(|| panic!("{path} should resolve"));
            assert_eq!(r.leaf().name, *leaf, "{path}");
            assert_eq!(r.extension.is_some(), *ext, "{path}");
        }
        for bad in [
            "nope",
            "name.nope",
            "urn:ietf:params:scim:schemas:extension:other:2.0:User:x",
            "members",
        ] {
            assert!(u.resolve_str(bad).is_none(), "{bad}");
        }
        let g = &GROUP_RESOURCE_TYPE;
        assert_eq!(
            g.resolve_str("members.$ref").unwrap().leaf().ty,
            AttrType::Reference
        );
        assert!(g.resolve_str("manager").is_none());
    }

    #[test]
    fn characteristics() {
        let u = &USER_RESOURCE_TYPE;
        let leaf = |p: &str| u.resolve_str(p).unwrap().leaf();
        assert!(!leaf("userName").case_exact && leaf("userName").required);
        assert_eq!(leaf("userName").uniqueness, Uniqueness::Server);
        assert!(leaf("id").case_exact && leaf("externalId").case_exact);
        assert!(!leaf("emails.value").case_exact);
        assert!(leaf("groups").is_read_only() && leaf("groups").multi_valued);
        assert_eq!(leaf("password").returned, Returned::Never);
        assert_eq!(leaf("active").ty, AttrType::Boolean);
        assert_eq!(leaf("x509Certificates.value").ty, AttrType::Binary);
        assert_eq!(leaf("meta").returned, Returned::Always);
        assert_eq!(leaf("manager.displayName").mutability, Mutability::ReadOnly);
        let m = GROUP_RESOURCE_TYPE.resolve_str("members").unwrap().attr;
        let names: Vec<_> = m.sub_attributes.iter().map(|a| a.name).collect();
        assert_eq!(names, ["value", "$ref", "display", "type"]);
    }

    #[test]
    fn only_the_rfc_urns_are_known() {
        let u = &USER_RESOURCE_TYPE;
        assert_eq!(u.schema_for_urn(&USER_SCHEMA_URN.to_uppercase()), Some((&USER_SCHEMA, false)));
        assert_eq!(GROUP_RESOURCE_TYPE.schema_for_urn(GROUP_SCHEMA_URN), Some((&GROUP_SCHEMA, false)));
        assert_eq!(u.extension(ENTERPRISE_USER_URN).unwrap().id, ENTERPRISE_USER_URN);
        // Pre-RFC URNs (OneLogin's templates) are the onelogin connector's to rewrite.
        assert!(u.schema_for_urn("urn:scim:schemas:core:2.0").is_none());
        assert!(GROUP_RESOURCE_TYPE.schema_for_urn("urn:scim:schemas:core:2.0").is_none());
        assert!(u.extension("urn:scim:schemas:extension:enterprise:2.0").is_none());
        assert!(u.extension(USER_SCHEMA_URN).is_none());
        assert!(
            u.schema_for_urn(
                "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/User"
            )
            .is_none()
        );
    }
}
