//! The 4me GraphQL schema snapshot (`4me.graphql` beside this crate) and the contract checks built
//! on it.
//!
//! Every GraphQL document and every variable value the engine sends to 4me is checked against the
//! snapshot: the sandbox runs [`Contract::check`] on each request it receives, so any test that
//! talks to the sandbox also proves its documents against the real schema; [`conformance`] proves
//! the sandbox serves nothing the snapshot does not have; [`diff`] is what
//! `cargo xtask schema pull` prints when a newer snapshot is taken by introspection.
//!
//! The validator is `apollo-compiler` (Apollo's GraphQL compiler): it parses and validates a
//! schema, validates executable documents against it (fields, arguments, fragments on the right
//! type, literal values, variables used as declared) and coerces variable values to their input
//! types (unknown input fields, missing required ones, enum values, scalars). It is a library of
//! plain data structures, so one crate serves the sandbox at run time and the tests at test time;
//! typed-document generators (`graphql_client`, `cynic`) would check only the documents written as
//! Rust types, not those the provisioning assembles from templates.

use std::fmt;
use std::sync::OnceLock;

use apollo_compiler::executable::ExecutableDocument;
use apollo_compiler::schema::ExtendedType;
use apollo_compiler::validation::Valid;
use apollo_compiler::{Schema, ast::Type};

/// The snapshot's SDL, as committed.
pub const SNAPSHOT_SDL: &str = include_str!("../4me.graphql");

/// File name of the snapshot (relative to this crate), for tools that rewrite it.
pub const SNAPSHOT_FILE: &str = "4me.graphql";

/// Limits 4me documents on developer.4me.com that a schema cannot express.
pub mod limits {
    /// Largest `first` a connection accepts ("Pagination": at most 100 records per page).
    pub const MAX_PAGE_SIZE: i32 = 100;
    /// Most items one `discoveredConfigurationItems` call accepts ("Discovered configuration
    /// items": at most 100 configuration items per mutation).
    pub const MAX_DISCOVERED_ITEMS: usize = 100;
}

/// A request that does not conform to the schema: each entry names what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations(pub Vec<String>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

impl std::error::Error for Violations {}

/// A validated schema that requests are checked against.
pub struct Contract {
    schema: Valid<Schema>,
}

/// The committed 4me snapshot, parsed and validated once.
pub fn snapshot() -> &'static Contract {
    static SNAPSHOT: OnceLock<Contract> = OnceLock::new();
    SNAPSHOT.get_or_init(|| match Contract::parse(SNAPSHOT_SDL, SNAPSHOT_FILE) {
        Ok(contract) => contract,
        // The snapshot is a committed file; the crate's own tests prove it valid.
        Err(e) => panic!("the committed 4me schema snapshot is invalid: {e}"),
    })
}

impl Contract {
    /// Parses and validates an SDL.
    pub fn parse(sdl: &str, name: &str) -> Result<Self, Violations> {
        Schema::parse_and_validate(sdl, name)
            .map(|schema| Self { schema })
            .map_err(|e| {
                Violations(
                    e.errors
                        .iter()
                        .map(|d| located(&d.to_json().message, d.line_column_range()))
                        .collect(),
                )
            })
    }

    /// The validated schema.
    pub fn schema(&self) -> &Valid<Schema> {
        &self.schema
    }

    /// Checks one request as a GraphQL server would before executing it: the document against
    /// the schema, then the variables against the selected operation's declarations.
    pub fn check(
        &self,
        document: &str,
        operation_name: Option<&str>,
        variables: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), Violations> {
        let document = self.check_document(document)?;
        let operation = document
            .operations
            .get(operation_name)
            .map_err(|e| Violations(vec![e.message().to_string()]))?;
        let values: apollo_compiler::response::JsonMap =
            serde_json::from_value(serde_json::Value::Object(variables.clone()))
                .map_err(|e| Violations(vec![format!("variables: {e}")]))?;
        apollo_compiler::request::coerce_variable_values(&self.schema, operation, &values)
            .map(|_| ())
            .map_err(|e| Violations(vec![e.message().to_string()]))
    }

    /// Validates an executable document against the schema.
    ///
    /// The snapshot does not know the item type of filter values (it says `FilterValue` /
    /// `FilterAny`, scalars of its own), so a variable of any type is accepted there; everything
    /// else apollo-compiler finds is a violation.
    pub fn check_document(&self, document: &str) -> Result<Valid<ExecutableDocument>, Violations> {
        match ExecutableDocument::parse_and_validate(&self.schema, document, "request.graphql") {
            Ok(valid) => Ok(valid),
            Err(e) => {
                let violations: Vec<String> = e
                    .errors
                    .iter()
                    .filter(|d| {
                        let message = d.error.to_string();
                        !(d.error.unstable_error_name() == Some("UnsupportedValueType")
                            && message.ends_with("found a variable")
                            && LENIENT_SCALARS.iter().any(|s| message.contains(s)))
                    })
                    .map(|d| located(&d.error.to_string(), d.line_column_range()))
                    .collect();
                if violations.is_empty() {
                    // Only excused findings: the document is otherwise valid.
                    Ok(Valid::assume_valid(e.partial))
                } else {
                    Err(Violations(violations))
                }
            }
        }
    }
}

impl Contract {
    /// Checks a partial value of input type `type_name`, such as a template the code completes
    /// before sending: every field present must exist, enum values must be the enum's, nested
    /// input objects are checked the same way. Required fields are not demanded here; the whole
    /// input is checked by [`Contract::check`] when it is sent.
    pub fn check_partial_input(
        &self,
        type_name: &str,
        value: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), Violations> {
        let mut problems = Vec::new();
        self.partial_input(type_name, value, type_name, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Violations(problems))
        }
    }

    fn partial_input(
        &self,
        type_name: &str,
        value: &serde_json::Map<String, serde_json::Value>,
        path: &str,
        problems: &mut Vec<String>,
    ) {
        let Some(input) = self.schema.get_input_object(type_name) else {
            problems.push(format!("{path}: {type_name} is not an input type"));
            return;
        };
        for (key, item) in value {
            let Some(field) = input.fields.get(key.as_str()) else {
                problems.push(format!("{path}.{key}: not a field of {type_name}"));
                continue;
            };
            let inner = field.ty.inner_named_type();
            let items: Vec<&serde_json::Value> = match item {
                serde_json::Value::Array(list) => list.iter().collect(),
                other => vec![other],
            };
            for item in items {
                match (self.schema.types.get(inner), item) {
                    (Some(ExtendedType::Enum(e)), serde_json::Value::String(v))
                        if !e.values.contains_key(v.as_str()) =>
                    {
                        problems.push(format!("{path}.{key}: `{v}` is not a value of {inner}"));
                    }
                    (Some(ExtendedType::InputObject(_)), serde_json::Value::Object(map)) => {
                        self.partial_input(inner.as_str(), map, &format!("{path}.{key}"), problems);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The snapshot's stand-ins for filter value types it cannot name precisely.
const LENIENT_SCALARS: [&str; 2] = ["FilterValue", "FilterAny"];

fn located(
    message: &str,
    range: Option<std::ops::Range<apollo_compiler::parser::LineColumn>>,
) -> String {
    match range {
        Some(r) => format!("{message} (at {}:{})", r.start.line, r.start.column),
        None => message.to_string(),
    }
}

/// One difference between two schemas, named by its schema coordinate (`Type`, `Type.field`,
/// `Type.field(argument:)`, `Enum.VALUE`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// In the new schema only.
    Added(String),
    /// In the old schema only.
    Removed(String),
    /// In both, with a different type or kind: `(coordinate, old, new)`.
    Changed(String, String, String),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Added(c) => write!(f, "+ {c}"),
            Self::Removed(c) => write!(f, "- {c}"),
            Self::Changed(c, old, new) => write!(f, "~ {c}: {old} -> {new}"),
        }
    }
}

/// Every member of a type, as `(coordinate, type or kind)`: fields with their arguments, input
/// fields, enum values; the type itself as `(name, kind)`.
fn members(name: &str, ty: &ExtendedType) -> Vec<(String, String)> {
    let mut out = vec![(name.to_string(), kind(ty).to_string())];
    let mut field = |field: &str, ty: &Type, args: &[apollo_compiler::Node<_>]| {
        out.push((format!("{name}.{field}"), ty.to_string()));
        for arg in args {
            let arg: &apollo_compiler::ast::InputValueDefinition = arg;
            out.push((format!("{name}.{field}({}:)", arg.name), arg.ty.to_string()));
        }
    };
    match ty {
        ExtendedType::Object(o) => {
            for (f, def) in &o.fields {
                field(f.as_str(), &def.ty, &def.arguments);
            }
        }
        ExtendedType::Interface(i) => {
            for (f, def) in &i.fields {
                field(f.as_str(), &def.ty, &def.arguments);
            }
        }
        ExtendedType::InputObject(i) => {
            for (f, def) in &i.fields {
                field(f.as_str(), &def.ty, &[]);
            }
        }
        ExtendedType::Enum(e) => {
            for v in e.values.keys() {
                out.push((format!("{name}.{v}"), "value".to_string()));
            }
        }
        ExtendedType::Union(u) => {
            for m in &u.members {
                out.push((format!("{name}|{}", m.name), "member".to_string()));
            }
        }
        ExtendedType::Scalar(_) => {}
    }
    out
}

fn kind(ty: &ExtendedType) -> &'static str {
    match ty {
        ExtendedType::Scalar(_) => "scalar",
        ExtendedType::Object(_) => "type",
        ExtendedType::Interface(_) => "interface",
        ExtendedType::Union(_) => "union",
        ExtendedType::Enum(_) => "enum",
        ExtendedType::InputObject(_) => "input",
    }
}

fn all_members(schema: &Schema) -> std::collections::BTreeMap<String, String> {
    schema
        .types
        .iter()
        .filter(|(_, ty)| !ty.is_built_in())
        .flat_map(|(name, ty)| members(name.as_str(), ty))
        .collect()
}

/// What changed from `old` to `new`, sorted by coordinate.
pub fn diff(old: &Schema, new: &Schema) -> Vec<Change> {
    let old = all_members(old);
    let new = all_members(new);
    let mut changes = Vec::new();
    for (coordinate, old_ty) in &old {
        match new.get(coordinate) {
            None => changes.push(Change::Removed(coordinate.clone())),
            Some(new_ty) if new_ty != old_ty => changes.push(Change::Changed(
                coordinate.clone(),
                old_ty.clone(),
                new_ty.clone(),
            )),
            Some(_) => {}
        }
    }
    for coordinate in new.keys().filter(|c| !old.contains_key(*c)) {
        changes.push(Change::Added(coordinate.clone()));
    }
    changes.sort_by(|a, b| coordinate(a).cmp(coordinate(b)));
    changes
}

fn coordinate(change: &Change) -> &str {
    match change {
        Change::Added(c) | Change::Removed(c) | Change::Changed(c, _, _) => c,
    }
}

/// Where a schema that serves part of the contract (the sandbox) departs from it: every type,
/// field, argument, input field and enum value it serves must exist in the contract with the same
/// type. An output field may be stricter than the contract (`T!` where the contract says `T`):
/// a client of the contract handles both. Returns one line per departure.
pub fn conformance(served: &Schema, contract: &Schema) -> Vec<String> {
    let contract_members = all_members(contract);
    let mut problems = Vec::new();
    for (name, ty) in served.types.iter().filter(|(_, ty)| !ty.is_built_in()) {
        let is_output = matches!(ty, ExtendedType::Object(_) | ExtendedType::Interface(_));
        for (coordinate, served_ty) in members(name.as_str(), ty) {
            let Some(contract_ty) = contract_members.get(&coordinate) else {
                problems.push(format!("{coordinate} is not in the 4me schema"));
                continue;
            };
            let is_field = coordinate.contains('.') && !coordinate.ends_with(":)");
            let same = if is_output && is_field {
                output_compatible(&served_ty, contract_ty)
            } else {
                &served_ty == contract_ty
            };
            if !same {
                problems.push(format!(
                    "{coordinate} is {served_ty} in the sandbox but {contract_ty} in the 4me schema"
                ));
            }
        }
    }
    problems
}

/// `served` may add non-null markers where `contract` has none (compared on the type strings
/// `members` produced).
fn output_compatible(served: &str, contract: &str) -> bool {
    match (parse_type(served), parse_type(contract)) {
        (Some(s), Some(c)) => stricter_or_equal(&s, &c),
        _ => served == contract,
    }
}

fn parse_type(text: &str) -> Option<Type> {
    Type::parse(text, "type").ok()
}

fn stricter_or_equal(served: &Type, contract: &Type) -> bool {
    match (served, contract) {
        (Type::Named(a) | Type::NonNullNamed(a), Type::Named(b)) => a == b,
        (Type::NonNullNamed(a), Type::NonNullNamed(b)) => a == b,
        (Type::List(a) | Type::NonNullList(a), Type::List(b)) => stricter_or_equal(a, b),
        (Type::NonNullList(a), Type::NonNullList(b)) => stricter_or_equal(a, b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        match v {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }

    #[test]
    fn the_snapshot_is_a_valid_schema_with_4me_roots() {
        let schema = snapshot().schema();
        assert!(schema.types.len() > 1000, "{} types", schema.types.len());
        assert_eq!(
            schema.schema_definition.query.as_ref().map(|n| n.as_str()),
            Some("Query")
        );
        assert!(schema.get_object("Mutation").is_some());
    }

    #[test]
    fn a_field_the_type_does_not_have_is_named_with_its_type() {
        let err = snapshot()
            .check(
                "query P($id: ID!) { node(id: $id) { ... on WebhookPolicy { id publicKeyPem } } }",
                None,
                &vars(json!({"id": "x"})),
            )
            .expect_err("WebhookPolicy has no publicKeyPem");
        let text = err.to_string();
        assert!(text.contains("WebhookPolicy"), "{text}");
        assert!(text.contains("publicKeyPem"), "{text}");
    }

    #[test]
    fn the_create_response_does_have_the_public_key() {
        snapshot()
            .check(
                "mutation C($input: WebhookPolicyCreateInput!) { webhookPolicyCreate(input: $input) { errors { path message } webhookPolicy { id publicKeyPem } } }",
                Some("C"),
                &vars(json!({"input": {"jwtAlg": "es512", "jwtAudience": "wdc", "jwtClaimExpiresIn": 60}})),
            )
            .expect("valid create");
    }

    #[test]
    fn an_input_field_the_input_type_does_not_have_is_refused() {
        let err = snapshot()
            .check(
                "mutation C($input: WebhookPolicyCreateInput!) { webhookPolicyCreate(input: $input) { webhookPolicy { id } } }",
                None,
                &vars(json!({"input": {"jwtAlg": "es512", "name": "policy"}})),
            )
            .expect_err("no name on WebhookPolicyCreateInput");
        assert!(
            err.to_string().contains("name")
                && err.to_string().contains("WebhookPolicyCreateInput"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_required_input_field_and_an_unknown_enum_value_are_refused() {
        let doc = "mutation C($input: WebhookPolicyCreateInput!) { webhookPolicyCreate(input: $input) { webhookPolicy { id } } }";
        let err = snapshot()
            .check(doc, None, &vars(json!({"input": {"jwtAudience": "x"}})))
            .expect_err("jwtAlg is required");
        assert!(err.to_string().contains("jwtAlg"), "{err}");
        let err = snapshot()
            .check(doc, None, &vars(json!({"input": {"jwtAlg": "ES512"}})))
            .expect_err("enum values are lower case");
        assert!(err.to_string().contains("WebhookPolicyJwtAlg"), "{err}");
    }

    #[test]
    fn variables_in_filter_values_are_checked_by_their_declared_type() {
        // The snapshot types filter `values` items as its own `FilterValue` scalar: any variable
        // may stand there, and its value is checked against the variable's declared type.
        let doc = "query Q($s: [CiStatus!]!, $id: String) { configurationItems(first: 1, filter: {status: {values: $s}, systemID: {values: [$id]}}) { nodes { id } } }";
        snapshot()
            .check(doc, None, &vars(json!({"s": ["lent_out"], "id": "arn"})))
            .expect("lent_out is a CiStatus");
        let err = snapshot()
            .check(doc, None, &vars(json!({"s": ["lent"], "id": "arn"})))
            .expect_err("lent is not a CiStatus (lent_out is)");
        assert!(err.to_string().contains("CiStatus"), "{err}");
    }

    #[test]
    fn a_wrong_literal_elsewhere_is_still_refused() {
        let err = snapshot()
            .check(
                "query { configurationItems(first: \"ten\") { nodes { id } } }",
                None,
                &serde_json::Map::new(),
            )
            .expect_err("first is an Int");
        assert!(err.to_string().contains("Int"), "{err}");
    }

    #[test]
    fn partial_inputs_are_checked_for_names_enums_and_nested_inputs() {
        let contract = snapshot();
        let ok = vars(json!({"jwtAlg": "es512", "jwtAudience": "x"}));
        contract
            .check_partial_input("WebhookPolicyCreateInput", &ok)
            .expect("valid template");
        let err = contract
            .check_partial_input(
                "WebhookPolicyCreateInput",
                &vars(json!({"name": "p", "jwtAlg": "ES512"})),
            )
            .expect_err("two problems");
        assert_eq!(err.0.len(), 2, "{err}");
        let err = contract
            .check_partial_input(
                "AppOfferingAutomationRuleCreateInput",
                &vars(json!({"actions": [{"name": "a1", "value": "v", "id": "x"}]})),
            )
            .expect_err("actions have no id");
        assert!(err.to_string().contains("actions.id"), "{err}");
    }

    #[test]
    fn diff_names_added_removed_and_changed_members() {
        let old = Contract::parse(
            "type Query { a: String b(x: Int): Int } enum E { one two }",
            "old",
        )
        .expect("old");
        let new = Contract::parse(
            "type Query { a: Int c: String b(x: String): Int } enum E { one three }",
            "new",
        )
        .expect("new");
        let changes: Vec<String> = diff(old.schema(), new.schema())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            changes,
            [
                "+ E.three",
                "- E.two",
                "~ Query.a: String -> Int",
                "~ Query.b(x:): Int -> String",
                "+ Query.c"
            ]
        );
    }

    #[test]
    fn conformance_allows_stricter_outputs_and_nothing_else() {
        let contract = Contract::parse(
            "type Query { a: String l: [String] } input I { x: Int }",
            "c",
        )
        .expect("c");
        let served = Contract::parse(
            "type Query { a: String! l: [String!]! b: Int } input I { x: Int! }",
            "s",
        )
        .expect("s");
        assert_eq!(
            conformance(served.schema(), contract.schema()),
            [
                "Query.b is not in the 4me schema",
                "I.x is Int! in the sandbox but Int in the 4me schema"
            ]
        );
    }
}
