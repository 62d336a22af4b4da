//! What the local engine needs from a SAM template: parameters and their defaults, each
//! function's binary, environment variables, API routes and event subscriptions, and the
//! Outputs. The templates are the one description of a stack, so the local engine deploys from
//! them exactly like SAM does.
//!
//! The templates of this repository are block-style YAML with one key per line; this module
//! reads them as an indentation tree (key, inline value, children), which is all those lookups
//! need. Flow collections and anchors are not supported (the templates use none).

use std::collections::BTreeMap;

/// One `key: value` line and the more indented lines under it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    key: String,
    value: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, key: &str) -> Option<&Node> {
        self.children.iter().find(|node| node.key == key)
    }

    fn path(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |node, key| node.child(key))
    }

    /// The values of a list written as `- item` lines, or the inline value alone.
    fn items(&self) -> Vec<String> {
        let listed: Vec<String> = self
            .children
            .iter()
            .filter(|node| node.key == "-")
            .map(|node| node.value.clone())
            .collect();
        if listed.is_empty() && !self.value.is_empty() {
            vec![self.value.clone()]
        } else {
            listed
        }
    }
}

/// Removes a trailing ` # comment` outside quotes and surrounding quotes.
fn scalar(raw: &str) -> String {
    let mut quote = None;
    let mut end = raw.len();
    let mut previous = ' ';
    for (index, c) in raw.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => {
                end = index;
                break;
            }
            _ => {}
        }
        previous = c;
    }
    let value = raw[..end].trim();
    let unquoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
    unquoted.unwrap_or(value).to_owned()
}

fn parse_tree(text: &str) -> Node {
    // Stack of (indent, node); the root has indent -1.
    let mut stack: Vec<(isize, Node)> = vec![(-1, Node::default())];
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "---" {
            continue;
        }
        let indent = isize::try_from(line.len() - trimmed.len()).unwrap_or(isize::MAX);
        let (key, value) = if let Some(item) = trimmed.strip_prefix("- ") {
            ("-".to_owned(), scalar(item))
        } else if trimmed == "-" {
            ("-".to_owned(), String::new())
        } else if let Some((key, value)) = trimmed.split_once(':') {
            (scalar(key), scalar(value))
        } else {
            // A continuation line of a folded scalar: kept as a key-less child.
            (String::new(), scalar(trimmed))
        };
        while stack.last().is_some_and(|(level, _)| *level >= indent) {
            close(&mut stack);
        }
        stack.push((
            indent,
            Node {
                key,
                value,
                children: Vec::new(),
            },
        ));
    }
    while stack.len() > 1 {
        close(&mut stack);
    }
    stack.pop().map(|(_, root)| root).unwrap_or_default()
}

fn close(stack: &mut Vec<(isize, Node)>) {
    if stack.len() > 1
        && let Some((_, node)) = stack.pop()
        && let Some((_, parent)) = stack.last_mut()
    {
        parent.children.push(node);
    }
}

/// A value in a template: a literal, `!Ref <name>`, `!GetAtt <resource>.<attribute>` or
/// `!Sub <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateValue {
    /// A literal string.
    Literal(String),
    /// `!Ref <name>`: a parameter or a resource.
    Ref(String),
    /// `!GetAtt <resource>.<attribute>`.
    GetAtt {
        /// The logical id of the resource.
        resource: String,
        /// The attribute (`Arn`, ...).
        attribute: String,
    },
    /// `!Sub <text>` (the text with its `${...}` placeholders).
    Sub(String),
}

impl TemplateValue {
    fn parse(raw: &str) -> Self {
        if let Some(name) = raw.strip_prefix("!Ref ") {
            TemplateValue::Ref(scalar(name))
        } else if let Some(target) = raw.strip_prefix("!GetAtt ") {
            let target = scalar(target);
            let (resource, attribute) = target
                .split_once('.')
                .map_or((target.as_str(), ""), |(r, a)| (r, a));
            TemplateValue::GetAtt {
                resource: resource.to_owned(),
                attribute: attribute.to_owned(),
            }
        } else if let Some(text) = raw.strip_prefix("!Sub ") {
            TemplateValue::Sub(scalar(text))
        } else {
            TemplateValue::Literal(scalar(raw))
        }
    }
}

/// An EventBridge event pattern as the template writes it: objects of keys, lists of values
/// (which may be `!Ref`s or `!Sub`s, resolved at deploy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPattern {
    /// `key:` lines with their sub-patterns.
    Object(BTreeMap<String, EventPattern>),
    /// `- value` lines: the event's value must be one of them.
    Values(Vec<TemplateValue>),
}

impl EventPattern {
    /// The pattern as EventBridge stores it (JSON), each value resolved by `resolve`.
    pub fn to_json(&self, resolve: &dyn Fn(&TemplateValue) -> String) -> serde_json::Value {
        match self {
            Self::Object(members) => serde_json::Value::Object(
                members
                    .iter()
                    .map(|(key, sub)| (key.clone(), sub.to_json(resolve)))
                    .collect(),
            ),
            Self::Values(values) => serde_json::Value::Array(
                values
                    .iter()
                    .map(|value| serde_json::Value::String(resolve(value)))
                    .collect(),
            ),
        }
    }

    fn parse(node: &Node) -> Self {
        let listed = node.children.iter().any(|child| child.key == "-");
        if listed || node.children.is_empty() {
            return Self::Values(
                node.items()
                    .iter()
                    .map(|v| TemplateValue::parse(v))
                    .collect(),
            );
        }
        Self::Object(
            node.children
                .iter()
                .map(|child| (child.key.clone(), Self::parse(child)))
                .collect(),
        )
    }
}

/// An `EventBridgeRule` event of a function that matches events by pattern (not a schedule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRule {
    /// The event's logical name in the template, e.g. `InstallationChanged`.
    pub name: String,
    /// `EventBusName` (`None`: the account's default bus).
    pub bus: Option<TemplateValue>,
    /// `Pattern`.
    pub pattern: EventPattern,
}

/// An `Api` event of a function: the route API Gateway serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRoute {
    /// The resource path, e.g. `/integration` or `/integration/{proxy+}`.
    pub path: String,
    /// The method, upper case; `ANY` for every method.
    pub method: String,
}

/// A function (`AWS::Serverless::Function`) of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFunction {
    /// Its logical id, e.g. `IntegrationFunction`.
    pub logical_id: String,
    /// The cargo binary (`Metadata.BuildProperties.Binary`), which names the handler.
    pub binary: String,
    /// `Environment.Variables`, by name.
    pub environment: BTreeMap<String, TemplateValue>,
    /// The `Api` events.
    pub routes: Vec<ApiRoute>,
    /// The EventBridge rules (by pattern) that invoke it.
    pub rules: Vec<EventRule>,
    /// Whether a schedule invokes it.
    pub scheduled: bool,
    /// Whether an SQS queue feeds it.
    pub queue_consumer: bool,
}

/// An Output of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateOutput {
    /// The output name, e.g. `IntegrationApi`.
    pub name: String,
    /// Its value.
    pub value: TemplateValue,
}

/// The parts of a SAM template the local engine deploys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    /// Declared parameters with their defaults (`None` when the parameter has no default).
    pub parameters: BTreeMap<String, Option<String>>,
    /// The functions, in order of appearance.
    pub functions: Vec<TemplateFunction>,
    /// The Outputs, in order of appearance.
    pub outputs: Vec<TemplateOutput>,
}

/// Why a template cannot be deployed locally.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A function has no `Metadata.BuildProperties.Binary`.
    #[error("function {0} names no BuildProperties.Binary")]
    NoBinary(String),
    /// The template declares no function.
    #[error("the template declares no AWS::Serverless::Function")]
    NoFunction,
}

impl Template {
    /// Reads a template's text.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let root = parse_tree(text);
        let parameters = root
            .child("Parameters")
            .map(|node| {
                node.children
                    .iter()
                    .map(|parameter| {
                        let default = parameter.child("Default").map(|d| d.value.clone());
                        (parameter.key.clone(), default)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut functions = Vec::new();
        for resource in root.child("Resources").map_or(&[][..], |r| &r.children) {
            if resource.child("Type").map(|t| t.value.as_str()) != Some("AWS::Serverless::Function")
            {
                continue;
            }
            functions.push(function(resource)?);
        }
        if functions.is_empty() {
            return Err(TemplateError::NoFunction);
        }
        let outputs = root
            .child("Outputs")
            .map(|node| {
                node.children
                    .iter()
                    .map(|output| TemplateOutput {
                        name: output.key.clone(),
                        value: TemplateValue::parse(
                            &output
                                .child("Value")
                                .map(|v| v.value.clone())
                                .unwrap_or_default(),
                        ),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Template {
            parameters,
            functions,
            outputs,
        })
    }
}

fn function(resource: &Node) -> Result<TemplateFunction, TemplateError> {
    let binary = resource
        .path(&["Metadata", "BuildProperties", "Binary"])
        .map(|b| b.value.clone())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| TemplateError::NoBinary(resource.key.clone()))?;
    let environment = resource
        .path(&["Properties", "Environment", "Variables"])
        .map(|vars| {
            vars.children
                .iter()
                .map(|var| (var.key.clone(), TemplateValue::parse(&var.value)))
                .collect()
        })
        .unwrap_or_default();
    let mut routes = Vec::new();
    let mut rules = Vec::new();
    let (mut scheduled, mut queue_consumer) = (false, false);
    let events = resource
        .path(&["Properties", "Events"])
        .map_or(&[][..], |e| &e.children);
    for event in events {
        let kind = event.child("Type").map(|t| t.value.as_str()).unwrap_or("");
        let properties = event.child("Properties");
        match kind {
            "Api" | "HttpApi" => {
                if let Some(path) = properties.and_then(|p| p.child("Path")) {
                    let method = properties
                        .and_then(|p| p.child("Method"))
                        .map_or("ANY".to_owned(), |m| m.value.to_ascii_uppercase());
                    routes.push(ApiRoute {
                        path: path.value.clone(),
                        method,
                    });
                }
            }
            "Schedule" | "ScheduleV2" => scheduled = true,
            "SQS" => queue_consumer = true,
            "EventBridgeRule" | "CloudWatchEvent" => {
                if properties.is_some_and(|p| p.child("Schedule").is_some()) {
                    scheduled = true;
                }
                if let Some(pattern) = properties.and_then(|p| p.child("Pattern")) {
                    rules.push(EventRule {
                        name: event.key.clone(),
                        bus: properties
                            .and_then(|p| p.child("EventBusName"))
                            .map(|bus| TemplateValue::parse(&bus.value)),
                        pattern: EventPattern::parse(pattern),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(TemplateFunction {
        logical_id: resource.key.clone(),
        binary,
        environment,
        routes,
        rules,
        scheduled,
        queue_consumer,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn repository_template(path: &str) -> Template {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        Template::parse(&std::fs::read_to_string(root.join(path)).unwrap()).unwrap()
    }

    #[test]
    fn reads_the_engine_template() {
        let template = repository_template("template.yaml");
        assert_eq!(
            template.parameters["4MeDomainParameter"].as_deref(),
            Some("4me-demo.com")
        );
        assert_eq!(
            template.parameters["BootstrapSecretEnabledReferencesParameter"].as_deref(),
            Some("*")
        );
        let [function] = template.functions.as_slice() else {
            panic!("one function expected: {:?}", template.functions);
        };
        assert_eq!(function.logical_id, "SecretsFunction");
        assert_eq!(function.binary, "secrets");
        assert_eq!(
            function.environment["PARAM_ENABLED_OFFERINGS"],
            TemplateValue::Ref("BootstrapSecretEnabledReferencesParameter".into())
        );
        assert_eq!(
            function.routes,
            vec![ApiRoute {
                path: "/secrets".into(),
                method: "POST".into()
            }]
        );
        assert!(function.rules.is_empty());
        let names: Vec<&str> = template.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "SecretsApi",
                "SecretsFunction",
                "SecretsFunctionIamRole",
                "StateTable",
                "EngineEventBus",
                "EngineDashboard"
            ]
        );
        assert_eq!(
            template.outputs[1].value,
            TemplateValue::GetAtt {
                resource: "SecretsFunction".into(),
                attribute: "Arn".into()
            }
        );
        assert!(
            matches!(&template.outputs[0].value, TemplateValue::Sub(text) if text.ends_with("/Prod/secrets/"))
        );
    }

    #[test]
    fn reads_the_typeform_template() {
        let template = repository_template("crates/typeform/template.yaml");
        let function = &template.functions[0];
        assert_eq!(function.binary, "typeform");
        let [rule] = function.rules.as_slice() else {
            panic!("one rule expected: {:?}", function.rules);
        };
        assert_eq!(rule.name, "InstallationChanged");
        let EventPattern::Object(pattern) = &rule.pattern else {
            panic!("{:?}", rule.pattern);
        };
        assert_eq!(
            pattern["source"],
            EventPattern::Values(vec![TemplateValue::Literal("4me-app-builder".into())])
        );
        let EventPattern::Object(detail) = &pattern["detail"] else {
            panic!("{pattern:?}");
        };
        assert_eq!(
            detail["offering"],
            EventPattern::Values(vec![TemplateValue::Ref(
                "OfferingReferenceParameter".into()
            )])
        );
        assert_eq!(
            function.environment["SYNC_4ME_TIMEOUT"],
            TemplateValue::Literal("10000".into())
        );
        assert_eq!(function.routes[0].method, "ANY");
        let note = repository_template("crates/note-dispatcher/template.yaml");
        assert_eq!(note.functions[0].binary, "note-dispatcher");
        // The note-dispatcher's rule asks for uninstalls only.
        let EventPattern::Object(pattern) = &note.functions[0].rules[0].pattern else {
            panic!("{:?}", note.functions[0].rules);
        };
        let EventPattern::Object(detail) = &pattern["detail"] else {
            panic!("{pattern:?}");
        };
        assert_eq!(
            detail["step"],
            EventPattern::Values(vec![TemplateValue::Literal("deleted".into())])
        );
    }

    #[test]
    fn reads_the_lansweeper_template() {
        let template = repository_template("crates/lansweeper/template.yaml");
        let function = &template.functions[0];
        assert_eq!(function.binary, "lansweeper");
        assert!(function.rules.len() == 1 && function.scheduled && function.queue_consumer);
        assert_eq!(
            function.routes,
            vec![ApiRoute {
                path: "/integration/{proxy+}".into(),
                method: "ANY".into()
            }]
        );
        assert!(matches!(
            &function.environment["REFRESH_QUEUE_URL"],
            TemplateValue::Ref(queue) if !template.parameters.contains_key(queue)
        ));
    }

    #[test]
    fn comments_and_quotes_are_not_values() {
        assert_eq!(scalar(" \"a # b\" # comment"), "a # b");
        assert_eq!(scalar(" 'x' "), "x");
        assert_eq!(scalar(" value#notacomment"), "value#notacomment");
    }
}
