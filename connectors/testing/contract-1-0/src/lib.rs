//! `contract-1-0`: a **test fixture**, a connector as a vendor built it against the released
//! `idplex:connector@1.0.0` contract (`wit/v1.0.0/connector.wit`, frozen), before `schemas` and
//! `diagnostics` existed. The host must install and run it next to 1.1 components: it has no
//! schema extensions, and a *test connection* answers that the check is not available.
//!
//! * `describe`: `contract-1-0@1.0.0`, provisioning and sso.
//! * `provisioning.normalize`: the generic RFC 7644 shapes, passed through (POST → create,
//!   PUT → replace, GET → get / query with the request's filter, DELETE → delete; PATCH →
//!   `unsupported`). `render`: the resource unchanged.
//! * `sso.map-assertion`: the `NameID` as `userName`. `directory-sync.pull`: `unsupported`.

wit_bindgen::generate!({
    world: "connector",
    path: "../../../wit/v1.0.0",
    generate_all,
});

use exports::idplex::connector::directory_sync::{self, SyncPage};
use exports::idplex::connector::metadata::{self, Capability, ConnectorInfo};
use exports::idplex::connector::provisioning::{self, ListQuery, Operation, ScimRequest};
use exports::idplex::connector::sso::{self, SsoIdentity, VerifiedAssertion};
use idplex::connector::types::{CanonicalUser, ConnectorError, ErrorKind, Json, ResourceKind};

struct OneOh;

fn error(kind: ErrorKind, message: String) -> ConnectorError {
    ConnectorError { kind, message, scim_type: None }
}

impl metadata::Guest for OneOh {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            name: "contract-1-0".to_string(),
            vendor: "idplex tests".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "TEST FIXTURE: built against idplex:connector@1.0.0.".to_string(),
            capabilities: vec![Capability::Provisioning, Capability::Sso],
            config_schema: r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false}"#
                .to_string(),
            egress_hosts: Vec::new(),
        }
    }
}

impl provisioning::Guest for OneOh {
    fn normalize(request: ScimRequest) -> Result<Vec<Operation>, ConnectorError> {
        let body = || request.body.clone().ok_or_else(|| error(ErrorKind::InvalidRequest, format!("{} needs a body", request.method)));
        let op = match (request.method.as_str(), request.id.clone()) {
            ("POST", None) => Operation::Create(body()?),
            ("PUT", Some(id)) => Operation::Replace((id, body()?)),
            ("GET", Some(id)) => Operation::Get(id),
            ("GET", None) => Operation::Query(ListQuery {
                filter: request.query.iter().find(|(k, _)| k == "filter").map(|(_, v)| v.clone()),
                start_index: None,
                count: None,
                sort_by: None,
                sort_descending: false,
                attributes: Vec::new(),
                excluded_attributes: Vec::new(),
            }),
            ("DELETE", Some(id)) => Operation::Delete(id),
            (m, _) => return Err(error(ErrorKind::Unsupported, format!("contract-1-0: {m} is not handled"))),
        };
        Ok(vec![op])
    }

    fn render(_kind: ResourceKind, resource: Json) -> Result<Json, ConnectorError> {
        Ok(resource)
    }
}

impl directory_sync::Guest for OneOh {
    fn pull(_cursor: Option<String>) -> Result<SyncPage, ConnectorError> {
        Err(error(ErrorKind::Unsupported, "contract-1-0 does not pull".to_string()))
    }
}

impl sso::Guest for OneOh {
    fn map_assertion(assertion: VerifiedAssertion) -> Result<SsoIdentity, ConnectorError> {
        Ok(SsoIdentity {
            user: CanonicalUser {
                external_id: None,
                user_name: assertion.name_id,
                given_name: None,
                family_name: None,
                display_name: None,
                emails: Vec::new(),
                active: true,
                groups: Vec::new(),
                attributes: Vec::new(),
            },
            groups: Vec::new(),
        })
    }
}

export!(OneOh);
