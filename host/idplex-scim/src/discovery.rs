//! Discovery documents (RFC 7643 §5–§7, RFC 7644 §4): `/Schemas`, `/ResourceTypes` and
//! `/ServiceProviderConfig`, generated from the schema model so they always agree with
//! what the server enforces. Each function takes the base URL (e.g.
//! `https://idp.example/scim/v2`) used for `meta.location`.

use crate::list::ListResponse;
use crate::schema::{
    ALL_RESOURCE_TYPES, ALL_SCHEMAS, AttrType, AttributeDef, ResourceType, Schema,
};
use serde_json::{Value, json};

/// URN of the ServiceProviderConfig schema.
pub const SERVICE_PROVIDER_CONFIG_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// URN of the ResourceType schema.
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// URN of the Schema schema.
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// Largest page the server returns for a filtered query (advertised as `filter.maxResults`).
pub const MAX_RESULTS: usize = 200;

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// One attribute definition in RFC 7643 §7 form.
pub fn attribute_json(def: &AttributeDef) -> Value {
    let mut v = json!({
        "name": def.name,
        "type": def.ty.as_str(),
        "multiValued": def.multi_valued,
        "description": def.description,
        "required": def.required,
        "caseExact": def.case_exact,
        "mutability": def.mutability.as_str(),
        "returned": def.returned.as_str(),
        "uniqueness": def.uniqueness.as_str(),
    });
    if def.ty == AttrType::Complex {
        v["subAttributes"] = def.sub_attributes.iter().map(attribute_json).collect();
    }
    if !def.canonical_values.is_empty() {
        v["canonicalValues"] = json!(def.canonical_values);
    }
    if def.ty == AttrType::Reference {
        v["referenceTypes"] = json!(def.reference_types);
    }
    v
}

/// One `/Schemas/{urn}` resource.
pub fn schema_resource(schema: &Schema, base_url: &str) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": schema.attributes.iter().map(attribute_json).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{}/Schemas/{}", base(base_url), schema.id)},
    })
}

/// The `/Schemas` ListResponse (User, Enterprise User, Group).
pub fn schemas_response(base_url: &str) -> Value {
    let all = ALL_SCHEMAS
        .iter()
        .map(|s| schema_resource(s, base_url))
        .collect();
    ListResponse::complete(all).to_json()
}

/// The schemas of `types` (their core schemas and extensions, each once, in order), e.g. a
/// connection's resource types with the extensions its connector declared.
pub fn schemas_of<'a>(types: &[&'a ResourceType]) -> Vec<&'a Schema> {
    let mut out: Vec<&Schema> = Vec::new();
    for rt in types {
        for s in std::iter::once(rt.schema).chain(rt.extensions.iter().map(|e| e.schema)) {
            if !out.iter().any(|o| o.id.eq_ignore_ascii_case(s.id)) {
                out.push(s);
            }
        }
    }
    out
}

/// The `/Schemas` ListResponse of `types` (see [`schemas_of`]).
pub fn schemas_response_for(types: &[&ResourceType], base_url: &str) -> Value {
    let all = schemas_of(types).into_iter().map(|s| schema_resource(s, base_url)).collect();
    ListResponse::complete(all).to_json()
}

/// The `/ResourceTypes` ListResponse of `types`.
pub fn resource_types_response_for(types: &[&ResourceType], base_url: &str) -> Value {
    let all = types.iter().map(|rt| resource_type_resource(rt, base_url)).collect();
    ListResponse::complete(all).to_json()
}

/// One `/ResourceTypes/{name}` resource.
pub fn resource_type_resource(rt: &ResourceType, base_url: &str) -> Value {
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": rt.name,
        "name": rt.name,
        "endpoint": rt.endpoint,
        "description": rt.description,
        "schema": rt.schema.id,
        "schemaExtensions": rt.extensions.iter().map(|e| json!({"schema": e.schema.id, "required": e.required})).collect::<Vec<_>>(),
        "meta": {"resourceType": "ResourceType", "location": format!("{}/ResourceTypes/{}", base(base_url), rt.name)},
    })
}

/// The `/ResourceTypes` ListResponse (User with the enterprise extension, Group).
pub fn resource_types_response(base_url: &str) -> Value {
    let all = ALL_RESOURCE_TYPES
        .iter()
        .map(|rt| resource_type_resource(rt, base_url))
        .collect();
    ListResponse::complete(all).to_json()
}

/// The `/ServiceProviderConfig` document: PATCH, filter (max 200 results), sort and ETags
/// supported; bulk and password change not; OAuth bearer token authentication.
pub fn service_provider_config(base_url: &str) -> Value {
    json!({
        "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a bearer token (RFC 6750).",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", base(base_url)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ENTERPRISE_USER_URN;

    const BASE: &str = "https://idp.example/scim/v2/";

    fn find<'a>(list: &'a [Value], key: &str, name: &str) -> &'a Value {
        list.iter()
            .find(|a| a[key] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    #[test]
    fn schemas_document() {
        let doc = schemas_response(BASE);
        assert_eq!(doc["totalResults"], 3);
        let resources = doc["Resources"].as_array().unwrap();
        let user = find(
            resources,
            "id",
            "urn:ietf:params:scim:schemas:core:2.0:User",
        );
        assert_eq!(
            user["meta"]["location"],
            "https://idp.example/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User"
        );
        let attrs = user["attributes"].as_array().unwrap();
        let user_name = find(attrs, "name", "userName");
        assert_eq!(
            (
                &user_name["type"],
                &user_name["required"],
                &user_name["caseExact"],
                &user_name["uniqueness"]
            ),
            (
                &json!("string"),
                &json!(true),
                &json!(false),
                &json!("server")
            )
        );
        let emails = find(attrs, "name", "emails");
        assert_eq!(emails["multiValued"], true);
        assert_eq!(
            find(emails["subAttributes"].as_array().unwrap(), "name", "type")["canonicalValues"],
            json!(["work", "home", "other"])
        );
        assert_eq!(find(attrs, "name", "groups")["mutability"], "readOnly");
        assert_eq!(find(attrs, "name", "password")["returned"], "never");
        let ent = find(resources, "id", ENTERPRISE_USER_URN);
        let manager = find(ent["attributes"].as_array().unwrap(), "name", "manager");
        assert_eq!(
            find(manager["subAttributes"].as_array().unwrap(), "name", "$ref")["referenceTypes"],
            json!(["User"])
        );
        let group = find(
            resources,
            "id",
            "urn:ietf:params:scim:schemas:core:2.0:Group",
        );
        let members = find(group["attributes"].as_array().unwrap(), "name", "members");
        let subs: Vec<&Value> = members["subAttributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| &s["name"])
            .collect();
        assert_eq!(
            subs,
            [
                &json!("value"),
                &json!("$ref"),
                &json!("display"),
                &json!("type")
            ]
        );
        // Common attributes are not part of /Schemas.
        assert!(attrs.iter().all(|a| a["name"] != "id"));
    }

    #[test]
    fn resource_types_document() {
        let doc = resource_types_response(BASE);
        let list = doc["Resources"].as_array().unwrap();
        let user = find(list, "id", "User");
        assert_eq!(user["endpoint"], "/Users");
        assert_eq!(
            user["schemaExtensions"],
            json!([{"schema": ENTERPRISE_USER_URN, "required": false}])
        );
        assert_eq!(
            user["meta"]["location"],
            "https://idp.example/scim/v2/ResourceTypes/User"
        );
        assert_eq!(find(list, "id", "Group")["schemaExtensions"], json!([]));
    }

    #[test]
    fn service_provider_config_document() {
        let spc = service_provider_config("https://idp.example/scim/v2");
        let table = [
            ("/patch/supported", json!(true)),
            ("/bulk/supported", json!(false)),
            ("/filter/supported", json!(true)),
            ("/filter/maxResults", json!(200)),
            ("/changePassword/supported", json!(false)),
            ("/sort/supported", json!(true)),
            ("/etag/supported", json!(true)),
            ("/authenticationSchemes/0/type", json!("oauthbearertoken")),
            (
                "/meta/location",
                json!("https://idp.example/scim/v2/ServiceProviderConfig"),
            ),
            ("/schemas/0", json!(SERVICE_PROVIDER_CONFIG_SCHEMA)),
        ];
        for (ptr, expected) in table {
            assert_eq!(spc.pointer(ptr), Some(&expected), "{ptr}");
        }
    }
}
