//! Service instances, requests, people, accounts and the `node` query.

use async_graphql::{Context, Enum, ID, InputObject, Interface, Object, Result, SimpleObject};
use serde::Serialize;
use serde_json::{Value, json};

use super::{
    AppInstance, AppOffering, AppOfferingAutomationRule, ConfigurationItem, PageInfo, Product,
    UiExtension, UiExtensionVersion, ValidationError, ValuesFilter, Webhook, WebhookPolicy,
    account, connection, opt_str, paginate, shared,
};
use crate::state::Record;

/// Looks up the record whose node id is stored in field `key` of `record`.
pub(crate) fn related<T: From<Record>>(
    ctx: &Context<'_>,
    record: &Record,
    key: &str,
    kind: &str,
) -> Result<Option<T>> {
    let Some(id) = record.str(key) else {
        return Ok(None);
    };
    let state = shared(ctx)?.lock();
    Ok(state.find(kind, &record.account, &id).cloned().map(T::from))
}

macro_rules! record_object {
    ($name:ident) => {
        impl From<Record> for $name {
            fn from(r: Record) -> Self {
                $name(r)
            }
        }
    };
}
pub(crate) use record_object;

// ---------------------------------------------------------------------------------------------

/// A 4me account.
#[derive(SimpleObject, Clone, Debug)]
pub struct Account {
    /// Account id (e.g. `wdc`).
    pub id: ID,
    /// Account name.
    pub name: String,
}

impl Account {
    pub(crate) fn of(id: &str) -> Account {
        Account {
            id: ID(id.to_owned()),
            name: id.to_owned(),
        }
    }
}

/// A service.
pub struct Service(pub(crate) Record);
record_object!(Service);

#[Object]
impl Service {
    /// Node id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// Name.
    async fn name(&self) -> Option<String> {
        self.0.str("name")
    }
}

/// A team.
pub struct Team(pub(crate) Record);
record_object!(Team);

#[Object]
impl Team {
    /// Node id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// Name.
    async fn name(&self) -> Option<String> {
        self.0.str("name")
    }
}

/// A service instance.
pub struct ServiceInstance(pub(crate) Record);
record_object!(ServiceInstance);

#[Object]
impl ServiceInstance {
    /// Node id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// Name.
    async fn name(&self) -> Option<String> {
        self.0.str("name")
    }
    /// The service.
    async fn service(&self, ctx: &Context<'_>) -> Result<Option<Service>> {
        related(ctx, &self.0, "serviceId", "Service")
    }
    /// The support team.
    async fn support_team(&self, ctx: &Context<'_>) -> Result<Option<Team>> {
        related(ctx, &self.0, "supportTeamId", "Team")
    }
}

connection!(
    ServiceInstanceConnection,
    ServiceInstance,
    "A page of service instances."
);

/// Filter of `serviceInstances`.
#[derive(InputObject, Clone, Debug)]
pub struct ServiceInstanceFilter {
    /// Name.
    pub name: Option<ValuesFilter>,
    /// Source.
    pub source: Option<ValuesFilter>,
    /// Id in the source.
    #[graphql(name = "sourceID")]
    pub source_id: Option<ValuesFilter>,
}

// ---------------------------------------------------------------------------------------------

/// A note on a request.
#[derive(SimpleObject, Clone, Debug)]
pub struct Note {
    /// Node id.
    pub id: ID,
    /// Text.
    pub text: String,
}

/// A page of notes.
#[derive(SimpleObject)]
pub struct NoteConnection {
    /// The nodes of this page.
    pub nodes: Vec<Note>,
    /// Paging information.
    pub page_info: PageInfo,
    /// Number of notes.
    pub total_count: i32,
}

/// A request.
pub struct Request(pub(crate) Record);
record_object!(Request);

#[Object]
impl Request {
    /// Node id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// Request number (as a string).
    async fn request_id(&self) -> String {
        self.0.num.to_string()
    }
    /// Subject.
    async fn subject(&self) -> Option<String> {
        self.0.str("subject")
    }
    /// Status.
    async fn status(&self) -> Option<RequestStatus> {
        self.0.get("status")
    }
    /// Notes, oldest first.
    async fn notes(&self, first: Option<i32>, after: Option<String>) -> Result<NoteConnection> {
        let notes: Vec<Note> = self
            .0
            .fields
            .get("notes")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|n| {
                        Some(Note {
                            id: ID(n.get("id")?.as_str()?.to_owned()),
                            text: n.get("text")?.as_str()?.to_owned(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (nodes, page_info, total_count) = paginate(notes, first, after)?;
        Ok(NoteConnection {
            nodes,
            page_info,
            total_count,
        })
    }
}

connection!(RequestConnection, Request, "A page of requests.");

/// Filter of `requests`.
#[derive(InputObject, Clone, Debug)]
pub struct RequestFilter {
    /// Request number.
    pub request_id: Option<ValuesFilter>,
    /// Subject.
    pub subject: Option<ValuesFilter>,
}

/// Input of `requestUpdate`.
#[derive(InputObject, Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestUpdateInput {
    /// Client mutation id.
    pub client_mutation_id: Option<String>,
    /// Node id of the request.
    pub id: String,
    /// A note to add.
    pub note: Option<String>,
    /// The text of an internal note to add.
    pub internal_note: Option<String>,
    /// Subject.
    pub subject: Option<String>,
    /// Status.
    pub status: Option<RequestStatus>,
}

/// Status of a request.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[graphql(rename_items = "snake_case")]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum RequestStatus {
    Declined,
    OnBacklog,
    Assigned,
    Accepted,
    InProgress,
    WaitingFor,
    WaitingForCustomer,
    ReservationPending,
    WorkflowPending,
    ProjectPending,
    Completed,
}

/// Payload of `requestUpdate`.
#[derive(SimpleObject)]
pub struct RequestUpdatePayload {
    /// Client mutation id.
    pub client_mutation_id: Option<String>,
    /// Validation errors.
    pub errors: Vec<ValidationError>,
    /// The request.
    pub request: Option<Request>,
}

// ---------------------------------------------------------------------------------------------

/// A person.
pub struct Person(pub(crate) Record);
record_object!(Person);

#[Object]
impl Person {
    /// Node id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// Name.
    async fn name(&self) -> Option<String> {
        self.0.str("name")
    }
    /// Primary email.
    async fn primary_email(&self) -> Option<String> {
        self.0.str("primaryEmail")
    }
    /// Authentication id.
    #[graphql(name = "authenticationID")]
    async fn authentication_id(&self) -> Option<String> {
        self.0.str("authenticationID")
    }
    /// Employee id.
    #[graphql(name = "employeeID")]
    async fn employee_id(&self) -> Option<String> {
        self.0.str("employeeID")
    }
    /// Support id.
    #[graphql(name = "supportID")]
    async fn support_id(&self) -> Option<String> {
        self.0.str("supportID")
    }
    /// Source.
    async fn source(&self) -> Option<String> {
        self.0.str("source")
    }
    /// Id in the source.
    #[graphql(name = "sourceID")]
    async fn source_id(&self) -> Option<String> {
        self.0.str("sourceID")
    }
    /// Disabled.
    async fn disabled(&self) -> bool {
        self.0.bool("disabled").unwrap_or(false)
    }
}

connection!(PersonConnection, Person, "A page of people.");

/// View of the people query.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(rename_items = "snake_case")]
#[allow(missing_docs)]
pub enum PersonView {
    All,
    AllWithRoles,
    Archive,
    CurrentAccount,
    Trash,
}

/// Filter of `people`.
#[derive(InputObject, Clone, Debug)]
pub struct PersonFilter {
    /// Name.
    pub name: Option<ValuesFilter>,
    /// Primary email.
    pub primary_email: Option<ValuesFilter>,
    /// Authentication id.
    #[graphql(name = "authenticationID")]
    pub authentication_id: Option<ValuesFilter>,
    /// Employee id.
    #[graphql(name = "employeeID")]
    pub employee_id: Option<ValuesFilter>,
    /// Support id.
    #[graphql(name = "supportID")]
    pub support_id: Option<ValuesFilter>,
    /// Source.
    pub source: Option<ValuesFilter>,
    /// Id in the source.
    #[graphql(name = "sourceID")]
    pub source_id: Option<ValuesFilter>,
    /// Disabled.
    pub disabled: Option<bool>,
}

fn ci_eq(filter: &Option<ValuesFilter>, record: &Record, key: &str) -> bool {
    // 4me matches people attributes case-insensitively.
    filter.as_ref().is_none_or(|f| {
        let actual = record.str(key).map(|s| s.to_lowercase());
        let lowered = ValuesFilter {
            values: f.values.as_ref().map(|vs| {
                vs.iter()
                    .map(|v| v.as_ref().map(|s| super::FilterValue(s.0.to_lowercase())))
                    .collect()
            }),
            negate: f.negate,
        };
        lowered.matches(actual.as_deref())
    })
}

// ---------------------------------------------------------------------------------------------

/// Any record with a node id.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID"))]
#[allow(missing_docs, clippy::large_enum_variant)]
pub enum Node {
    ConfigurationItem(ConfigurationItem),
    Product(Product),
    ServiceInstance(ServiceInstance),
    Service(Service),
    Team(Team),
    AppOffering(AppOffering),
    AppOfferingAutomationRule(AppOfferingAutomationRule),
    AppInstance(AppInstance),
    UiExtension(UiExtension),
    UiExtensionVersion(UiExtensionVersion),
    WebhookPolicy(WebhookPolicy),
    Webhook(Webhook),
    Request(Request),
    Person(Person),
}

impl Node {
    fn from_record(r: Record) -> Option<Node> {
        Some(match r.kind {
            "ConfigurationItem" => Node::ConfigurationItem(r.into()),
            "Product" => Node::Product(r.into()),
            "ServiceInstance" => Node::ServiceInstance(r.into()),
            "Service" => Node::Service(r.into()),
            "Team" => Node::Team(r.into()),
            "AppOffering" => Node::AppOffering(r.into()),
            "AppOfferingAutomationRule" => Node::AppOfferingAutomationRule(r.into()),
            "AppInstance" => Node::AppInstance(r.into()),
            "UiExtension" => Node::UiExtension(r.into()),
            "UiExtensionVersion" => Node::UiExtensionVersion(r.into()),
            "WebhookPolicy" => Node::WebhookPolicy(r.into()),
            "Webhook" => Node::Webhook(r.into()),
            "Request" => Node::Request(r.into()),
            "Person" => Node::Person(r.into()),
            _ => return None,
        })
    }
}

/// Queries on service instances, requests, people and nodes.
#[derive(Default)]
pub struct MiscQuery;

#[Object]
impl MiscQuery {
    /// Any record by node id (null when unknown or in another account).
    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Node>> {
        let account = account(ctx)?;
        let state = shared(ctx)?.lock();
        Ok(state
            .records
            .get(id.as_str())
            .filter(|r| r.account == account)
            .cloned()
            .and_then(Node::from_record))
    }

    /// Service instances.
    async fn service_instances(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<ServiceInstanceFilter>,
    ) -> Result<ServiceInstanceConnection> {
        let account = account(ctx)?;
        let records = shared(ctx)?.lock().all("ServiceInstance", account);
        let records = records
            .into_iter()
            .filter(|r| {
                filter.as_ref().is_none_or(|f| {
                    opt_str(&f.name, r, "name")
                        && opt_str(&f.source, r, "source")
                        && opt_str(&f.source_id, r, "sourceID")
                })
            })
            .collect();
        ServiceInstanceConnection::page(records, first, after)
    }

    /// Requests.
    async fn requests(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<RequestFilter>,
    ) -> Result<RequestConnection> {
        let account = account(ctx)?;
        let records = shared(ctx)?.lock().all("Request", account);
        let records = records
            .into_iter()
            .filter(|r| {
                filter.as_ref().is_none_or(|f| {
                    f.request_id
                        .as_ref()
                        .is_none_or(|rf| rf.matches(Some(&r.num.to_string())))
                        && opt_str(&f.subject, r, "subject")
                })
            })
            .collect();
        RequestConnection::page(records, first, after)
    }

    /// People.
    async fn people(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        view: Option<PersonView>,
        filter: Option<PersonFilter>,
    ) -> Result<PersonConnection> {
        let _ = view;
        let account = account(ctx)?;
        let records = shared(ctx)?.lock().all("Person", account);
        let records = records
            .into_iter()
            .filter(|r| {
                filter.as_ref().is_none_or(|f| {
                    ci_eq(&f.name, r, "name")
                        && ci_eq(&f.primary_email, r, "primaryEmail")
                        && ci_eq(&f.authentication_id, r, "authenticationID")
                        && ci_eq(&f.employee_id, r, "employeeID")
                        && ci_eq(&f.support_id, r, "supportID")
                        && opt_str(&f.source, r, "source")
                        && opt_str(&f.source_id, r, "sourceID")
                        && f.disabled
                            .is_none_or(|d| d == r.bool("disabled").unwrap_or(false))
                })
            })
            .collect();
        PersonConnection::page(records, first, after)
    }
}

/// Mutations on requests.
#[derive(Default)]
pub struct MiscMutation;

#[Object]
impl MiscMutation {
    /// Updates a request (e.g. adds a note).
    async fn request_update(
        &self,
        ctx: &Context<'_>,
        input: RequestUpdateInput,
    ) -> Result<RequestUpdatePayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        let mut errors = Vec::new();
        if input.note.as_deref().is_some_and(|n| n.trim().is_empty()) {
            errors.push(ValidationError::new(&["note"], "Note can't be blank"));
        }
        let mut calls = Vec::new();
        let record = match state.find_mut("Request", account, input.id.as_str()) {
            None => {
                errors.push(ValidationError::new(&["id"], "Request not found"));
                None
            }
            Some(_) if !errors.is_empty() => None,
            Some(r) => {
                let status_was = r.str("status").unwrap_or_default();
                if let Some(subject) = &input.subject {
                    r.fields.insert("subject".into(), json!(subject));
                }
                if let Some(status) = input.status {
                    r.fields.insert("status".into(), json!(status));
                }
                // 4me takes the text of a public note in `note` and of an internal one in
                // `internalNote`.
                let notes = [(&input.note, false), (&input.internal_note, true)];
                for (text, internal) in notes {
                    if let Some(text) = text {
                        state.add_note(&shared.domain, input.id.as_str(), text, internal);
                        calls.extend(crate::rules::note_added(
                            &mut state,
                            &shared.domain,
                            input.id.as_str(),
                            &status_was,
                        ));
                    }
                }
                state.records.get(input.id.as_str()).cloned()
            }
        };
        drop(state);
        // 4me calls the webhooks of automation rules after the update, not within it.
        for call in calls {
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Err(err) = crate::webhooks::call_app_webhook(
                    &shared,
                    &call.app_instance_id,
                    call.payload,
                    Some(call.object),
                )
                .await
                {
                    tracing::error!("automation rule webhook not called: {err}");
                }
            });
        }
        Ok(RequestUpdatePayload {
            client_mutation_id: input.client_mutation_id,
            errors,
            request: record.map(Request),
        })
    }
}
