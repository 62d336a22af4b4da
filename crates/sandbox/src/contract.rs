//! The gate in front of the GraphQL executor.
//!
//! A request is checked first against the committed 4me schema snapshot
//! (`app-builder-schema`): whatever real 4me refuses — an unknown field or input field, a
//! fragment on the wrong type, a missing required input, an enum value 4me does not have, a value
//! of the wrong scalar type — the sandbox refuses too, as a GraphQL server does: HTTP 200 with
//! `errors` and no `data`. A request that 4me would accept but that uses a part of the schema the
//! sandbox does not implement is answered "not emulated by the sandbox", never pretended.

use std::sync::OnceLock;

use app_builder_schema::{Contract, Violations, snapshot};
use serde_json::{Map, Value, json};

/// The part of the 4me schema the sandbox implements (its own SDL).
fn emulated() -> &'static Contract {
    static EMULATED: OnceLock<Contract> = OnceLock::new();
    EMULATED.get_or_init(
        || match Contract::parse(&crate::schema::sdl(), "sandbox.graphql") {
            Ok(contract) => contract,
            // The SDL is generated from the sandbox's own types; a test parses it on every run.
            Err(e) => panic!("the sandbox's own schema is invalid: {e}"),
        },
    )
}

/// `Ok` when the request may be executed; otherwise the response body to answer with.
pub(crate) fn admit(request: &async_graphql::Request) -> Result<(), Value> {
    let variables = match serde_json::to_value(&request.variables) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let operation = request.operation_name.as_deref();
    snapshot()
        .check(&request.query, operation, &variables)
        .map_err(|v| refusal("", &v))?;
    emulated()
        .check(&request.query, operation, &variables)
        .map_err(|v| refusal("Not emulated by the sandbox: ", &v))
}

fn refusal(prefix: &str, violations: &Violations) -> Value {
    let errors: Vec<Value> = violations
        .0
        .iter()
        .map(|message| json!({"message": format!("{prefix}{message}")}))
        .collect();
    json!({"errors": errors})
}
