//! App offerings (scopes, automation rules), UI extensions and app instances.

use super::{delete_mutation_types, delete_record, payload};
use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{
    Account, CustomField, CustomFieldInput, PageInfo, ValidationError, ValuesFilter,
    WebhookPolicyJwtAlg, account, blank, connection, custom_fields, merge_fields, opt_str,
    paginate, record_object, related, shared, to_fields,
};
use crate::state::{Record, State};

// ---------------------------------------------------------------------------------------------
// Scopes

/// Effect of a scope.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(rename_items = "snake_case")]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ScopeEffect {
    Allow,
    Deny,
}

/// Grant type an OAuth scope applies to.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(rename_items = "snake_case")]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum OauthApplicationGrantType {
    ClientCredentials,
    AuthorizationCode,
}

/// A scope of an app offering.
#[derive(SimpleObject, Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppOfferingScope {
    /// Node id.
    pub id: ID,
    /// Effect.
    pub effect: Option<ScopeEffect>,
    /// Grant type.
    pub grant_type: Option<OauthApplicationGrantType>,
    /// Actions.
    pub actions: Option<Vec<String>>,
    /// Conditions.
    pub conditions: Option<Vec<String>>,
}

/// A scope to create or update.
#[derive(InputObject, Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppOfferingScopeInput {
    /// Id of the scope to update (null for a new scope).
    pub id: Option<String>,
    /// Effect.
    pub effect: Option<ScopeEffect>,
    /// Grant type.
    pub grant_type: Option<OauthApplicationGrantType>,
    /// Actions.
    pub actions: Option<Vec<String>>,
    /// Conditions.
    pub conditions: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------------
// App offerings

/// An app offering.
pub struct AppOffering(pub(crate) Record);
record_object!(AppOffering);

#[Object]
impl AppOffering {
    /// Node id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// Name.
    async fn name(&self) -> Option<String> {
        self.0.str("name")
    }
    /// Reference.
    async fn reference(&self) -> Option<String> {
        self.0.str("reference")
    }
    /// Published.
    async fn published(&self) -> bool {
        self.0.bool("published").unwrap_or(false)
    }
    /// Disabled.
    async fn disabled(&self) -> bool {
        self.0.bool("disabled").unwrap_or(false)
    }
    /// Description.
    async fn description(&self) -> Option<String> {
        self.0.str("description")
    }
    /// Webhook URI template.
    async fn webhook_uri_template(&self) -> Option<String> {
        self.0.str("webhookUriTemplate")
    }
    /// Configuration URI template.
    async fn configuration_uri_template(&self) -> Option<String> {
        self.0.str("configurationUriTemplate")
    }
    /// Algorithm of the customer-side webhook policy.
    async fn policy_jwt_alg(&self) -> Option<WebhookPolicyJwtAlg> {
        self.0.get("policyJwtAlg")
    }
    /// Audience of the customer-side webhook policy.
    async fn policy_jwt_audience(&self) -> Option<String> {
        self.0.str("policyJwtAudience")
    }
    /// Avatar URL (set through REST).
    async fn picture_uri(&self) -> Option<String> {
        self.0.str("avatar").or_else(|| self.0.str("pictureUri"))
    }
    /// Scopes.
    async fn scopes(&self) -> Vec<AppOfferingScope> {
        self.0.get("scopes").unwrap_or_default()
    }
    /// The service instance.
    async fn service_instance(&self, ctx: &Context<'_>) -> Result<Option<super::ServiceInstance>> {
        related(ctx, &self.0, "serviceInstanceId", "ServiceInstance")
    }
    /// The linked UI extension version.
    async fn ui_extension_version(&self, ctx: &Context<'_>) -> Result<Option<UiExtensionVersion>> {
        related(ctx, &self.0, "uiExtensionVersionId", "UiExtensionVersion")
    }
    /// Automation rules of the offering.
    async fn automation_rules(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<AppOfferingAutomationRuleConnection> {
        let rules: Vec<Record> = shared(ctx)?
            .lock()
            .all("AppOfferingAutomationRule", &self.0.account)
            .into_iter()
            .filter(|r| r.str("appOfferingId").as_deref() == Some(self.0.id.as_str()))
            .collect();
        AppOfferingAutomationRuleConnection::page(rules, first, after)
    }
}

connection!(
    AppOfferingConnection,
    AppOffering,
    "A page of app offerings."
);

/// Filter of `appOfferings`.
#[derive(InputObject, Clone, Debug)]
pub struct AppOfferingFilter {
    /// Published (false = drafts).
    pub published: Option<bool>,
    /// Reference.
    pub reference: Option<ValuesFilter>,
    /// Name.
    pub name: Option<ValuesFilter>,
}

macro_rules! offering_input {
    ($name:ident, $doc:literal, { $($extra:tt)* }) => {
        #[doc = $doc]
        #[derive(InputObject, Clone, Debug, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $($extra)*
            /// Client mutation id.
            pub client_mutation_id: Option<String>,
            /// Reference (unique in the account).
            pub reference: Option<String>,
            /// Picture URI.
            pub picture_uri: Option<String>,
            /// Source.
            pub source: Option<String>,
            /// Id in the source.
            #[graphql(name = "sourceID")]
            #[serde(rename = "sourceID")]
            pub source_id: Option<String>,
            /// UI extension (its active version gets linked).
            pub ui_extension_id: Option<String>,
            /// UI extension version.
            pub ui_extension_version_id: Option<String>,
            /// Card description.
            pub card_description: Option<String>,
            /// Compliance.
            pub compliance: Option<String>,
            /// Description.
            pub description: Option<String>,
            /// Disabled.
            pub disabled: Option<bool>,
            /// Features.
            pub features: Option<String>,
            /// OAuth authorization endpoints.
            pub oauth_authorization_endpoints: Option<Vec<String>>,
            /// Algorithm of the customer-side policy.
            pub policy_jwt_alg: Option<WebhookPolicyJwtAlg>,
            /// Audience of the customer-side policy.
            pub policy_jwt_audience: Option<String>,
            /// Token expiry of the customer-side policy.
            pub policy_jwt_claim_expires_in: Option<i32>,
            /// Configuration URI template.
            pub configuration_uri_template: Option<String>,
            /// Webhook URI template (`{account}` placeholder).
            pub webhook_uri_template: Option<String>,
            /// Requires an enabled OAuth person.
            pub requires_enabled_oauth_person: Option<bool>,
            /// Scopes to create or update.
            pub new_scopes: Option<Vec<AppOfferingScopeInput>>,
        }
    };
}

offering_input!(AppOfferingCreateInput, "Input of `appOfferingCreate`.", {
    /// Service instance.
    pub service_instance_id: String,
    /// Name.
    pub name: String,});
offering_input!(AppOfferingUpdateInput, "Input of `appOfferingUpdate`.", {
    /// Service instance.
    pub service_instance_id: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Node id of the offering.
    pub id: String,
    /// Ids of scopes to delete.
    pub scopes_to_delete: Option<Vec<String>>,
});

payload!(AppOfferingCreatePayload, app_offering: AppOffering, "Payload of `appOfferingCreate`.");
payload!(AppOfferingUpdatePayload, app_offering: AppOffering, "Payload of `appOfferingUpdate`.");

// ---------------------------------------------------------------------------------------------
// Automation rules

/// An expression of an automation rule.
#[derive(SimpleObject, InputObject, Clone, Debug, Serialize, Deserialize)]
#[graphql(input_name = "AutomationRuleExpressionInput")]
#[graphql(name = "AutomationRuleExpression")]
pub struct AutomationRuleExpression {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// An action of an automation rule.
#[derive(SimpleObject, InputObject, Clone, Debug, Serialize, Deserialize)]
#[graphql(input_name = "AutomationRuleActionInput")]
#[graphql(name = "AutomationRuleAction")]
pub struct AutomationRuleAction {
    /// What the action does (`add_note`, `webhook`, or the field it sets).
    pub name: String,
    /// Value.
    pub value: String,
}

/// An automation rule of an app offering.
pub struct AppOfferingAutomationRule(pub(crate) Record);
record_object!(AppOfferingAutomationRule);

#[Object]
impl AppOfferingAutomationRule {
    /// Node id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// Name.
    async fn name(&self) -> Option<String> {
        self.0.str("name")
    }
    /// Record type the rule is linked to.
    async fn generic(&self) -> Option<String> {
        self.0.str("generic")
    }
    /// Trigger.
    async fn trigger(&self) -> Option<String> {
        self.0.str("trigger")
    }
    /// Condition.
    async fn condition(&self) -> Option<String> {
        self.0.str("condition")
    }
    /// Description.
    async fn description(&self) -> Option<String> {
        self.0.str("description")
    }
    /// Position.
    async fn position(&self) -> Option<i32> {
        self.0.get("position")
    }
    /// Expressions.
    async fn expressions(&self) -> Vec<AutomationRuleExpression> {
        self.0.get("expressions").unwrap_or_default()
    }
    /// Actions.
    async fn actions(&self) -> Vec<AutomationRuleAction> {
        self.0.get("actions").unwrap_or_default()
    }
    /// The offering.
    async fn app_offering(&self, ctx: &Context<'_>) -> Result<Option<AppOffering>> {
        related(ctx, &self.0, "appOfferingId", "AppOffering")
    }
}

connection!(
    AppOfferingAutomationRuleConnection,
    AppOfferingAutomationRule,
    "A page of automation rules."
);

macro_rules! rule_input {
    ($name:ident, $doc:literal, { $($extra:tt)* }) => {
        #[doc = $doc]
        #[derive(InputObject, Clone, Debug, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $($extra)*
            /// Client mutation id.
            pub client_mutation_id: Option<String>,
            /// Description.
            pub description: Option<String>,
            /// Record type.
            pub generic: Option<String>,
            /// Position.
            pub position: Option<i32>,
            /// Expressions.
            pub expressions: Option<Vec<AutomationRuleExpression>>,
            /// Actions.
            pub actions: Option<Vec<AutomationRuleAction>>,
        }
    };
}

rule_input!(
    AppOfferingAutomationRuleCreateInput,
    "Input of `appOfferingAutomationRuleCreate`.",
    {
    /// Condition.
    pub condition: String,
    /// Trigger.
    pub trigger: String,
    /// Name.
    pub name: String,
        /// The offering.
        pub app_offering_id: String,
    }
);
rule_input!(
    AppOfferingAutomationRuleUpdateInput,
    "Input of `appOfferingAutomationRuleUpdate`.",
    {
    /// Condition.
    pub condition: Option<String>,
    /// Trigger.
    pub trigger: Option<String>,
    /// Name.
    pub name: Option<String>,
        /// Node id of the rule.
        pub id: String,
    }
);

delete_mutation_types!(
    AppOfferingAutomationRuleDeleteMutationInput,
    AppOfferingAutomationRuleDeleteMutationPayload,
    "`appOfferingAutomationRuleDelete`."
);
payload!(AppOfferingAutomationRuleCreatePayload, app_offering_automation_rule: AppOfferingAutomationRule, "Payload of `appOfferingAutomationRuleCreate`.");
payload!(AppOfferingAutomationRuleUpdatePayload, app_offering_automation_rule: AppOfferingAutomationRule, "Payload of `appOfferingAutomationRuleUpdate`.");

// ---------------------------------------------------------------------------------------------
// UI extensions

/// A UI extension.
pub struct UiExtension(pub(crate) Record);
record_object!(UiExtension);

#[Object]
impl UiExtension {
    /// Node id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// Name.
    async fn name(&self) -> Option<String> {
        self.0.str("name")
    }
    /// Title.
    async fn title(&self) -> Option<String> {
        self.0.str("title")
    }
    /// Category.
    async fn category(&self) -> Option<UiExtensionCategory> {
        self.0.get("category")
    }
    /// Description.
    async fn description(&self) -> Option<String> {
        self.0.str("description")
    }
    /// Disabled.
    async fn disabled(&self) -> bool {
        self.0.bool("disabled").unwrap_or(false)
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
    /// The active version.
    async fn active_version(&self, ctx: &Context<'_>) -> Result<Option<UiExtensionVersion>> {
        related(ctx, &self.0, "activeVersionId", "UiExtensionVersion")
    }
}

/// A version of a UI extension.
pub struct UiExtensionVersion(pub(crate) Record);
record_object!(UiExtensionVersion);

#[Object]
impl UiExtensionVersion {
    /// Node id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// HTML.
    async fn html(&self) -> Option<String> {
        self.0.str("html")
    }
    /// CSS.
    async fn css(&self) -> Option<String> {
        self.0.str("css")
    }
    /// JavaScript.
    async fn javascript(&self) -> Option<String> {
        self.0.str("javascript")
    }
    /// The extension.
    async fn ui_extension(&self, ctx: &Context<'_>) -> Result<Option<UiExtension>> {
        related(ctx, &self.0, "uiExtensionId", "UiExtension")
    }
}

connection!(
    UiExtensionConnection,
    UiExtension,
    "A page of UI extensions."
);

/// Filter of `uiExtensions`.
#[derive(InputObject, Clone, Debug)]
pub struct UiExtensionFilter {
    /// Name.
    pub name: Option<ValuesFilter>,
    /// Source.
    pub source: Option<ValuesFilter>,
    /// Id in the source.
    #[graphql(name = "sourceID")]
    pub source_id: Option<ValuesFilter>,
}

macro_rules! ui_input {
    ($name:ident, $doc:literal, { $($extra:tt)* }) => {
        #[doc = $doc]
        #[derive(InputObject, Clone, Debug, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $($extra)*
            /// Client mutation id.
            pub client_mutation_id: Option<String>,
            /// Title.
            pub title: Option<String>,
            /// Description.
            pub description: Option<String>,
            /// Activate the new version.
            pub activate: Option<bool>,
            /// HTML.
            pub html: Option<String>,
            /// CSS.
            pub css: Option<String>,
            /// JavaScript.
            pub javascript: Option<String>,
            /// Disabled.
            pub disabled: Option<bool>,
            /// Source.
            pub source: Option<String>,
            /// Id in the source.
            #[graphql(name = "sourceID")]
            #[serde(rename = "sourceID")]
            pub source_id: Option<String>,
        }
    };
}

ui_input!(UiExtensionCreateInput, "Input of `uiExtensionCreate`.", {
    /// Category (e.g. `product`, `app_offering`); cannot be changed later.
    pub category: UiExtensionCategory,
    /// Name.
    pub name: String,
});
ui_input!(UiExtensionUpdateInput, "Input of `uiExtensionUpdate`.", {
    /// Node id of the extension.
    pub id: String,
    /// Name.
    pub name: Option<String>,
});

/// The record type a UI extension is for.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(rename_items = "snake_case")]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum UiExtensionCategory {
    AppOffering,
    Contract,
    CustomCollection,
    KnowledgeArticleTemplate,
    Organization,
    Person,
    Problem,
    Product,
    ProductCategory,
    Project,
    ProjectTaskTemplate,
    Release,
    RequestTemplate,
    Risk,
    ScimUser,
    Service,
    ServiceInstance,
    ShopArticle,
    Site,
    TaskTemplate,
    Team,
    WorkflowTemplate,
}

payload!(UiExtensionCreatePayload, ui_extension: UiExtension, "Payload of `uiExtensionCreate`.");
payload!(UiExtensionUpdatePayload, ui_extension: UiExtension, "Payload of `uiExtensionUpdate`.");

// ---------------------------------------------------------------------------------------------
// App instances

/// An installation of an app offering in a customer account (visible to the provider).
pub struct AppInstance(pub(crate) Record);
record_object!(AppInstance);

#[Object]
impl AppInstance {
    /// Node id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// The offering.
    async fn app_offering(&self, ctx: &Context<'_>) -> Result<Option<AppOffering>> {
        related(ctx, &self.0, "appOfferingId", "AppOffering")
    }
    /// The customer account.
    async fn customer_account(&self) -> Option<Account> {
        self.0.str("customerAccount").map(|a| Account::of(&a))
    }
    /// Suspended by the provider.
    async fn suspended(&self) -> bool {
        self.0.bool("suspended").unwrap_or(false)
    }
    /// Suspension comment.
    async fn suspension_comment(&self) -> Option<String> {
        self.0.str("suspensionComment")
    }
    /// Disabled.
    async fn disabled(&self) -> bool {
        self.0.bool("disabled").unwrap_or(false)
    }
    /// Enabled by the customer.
    async fn enabled_by_customer(&self) -> bool {
        self.0.bool("enabledByCustomer").unwrap_or(true)
    }
    /// When it was created.
    async fn created_at(&self) -> Option<super::Iso8601Timestamp> {
        self.0.str("createdAt").map(super::Iso8601Timestamp)
    }
    /// Custom field values.
    async fn custom_fields(&self) -> Vec<CustomField> {
        custom_fields(&self.0)
    }
}

connection!(
    AppInstanceConnection,
    AppInstance,
    "A page of app instances."
);

/// A filter on a custom field; values may start with `<`, `<=`, `>`, `>=` (string comparison).
#[derive(InputObject, Clone, Debug)]
pub struct CustomFilter {
    /// Custom field id.
    pub name: String,
    /// Accepted values or comparisons.
    pub values: Option<Vec<Option<super::FilterValue>>>,
    /// Invert the filter.
    pub negate: Option<bool>,
}

impl CustomFilter {
    fn matches(&self, record: &Record) -> bool {
        let actual = custom_fields(record)
            .into_iter()
            .find(|f| f.id.eq_ignore_ascii_case(&self.name))
            .and_then(|f| match f.value.0 {
                Value::Null => None,
                Value::String(s) => Some(s),
                other => Some(other.to_string()),
            });
        let hit = self.values.iter().flatten().any(|v| match (v, &actual) {
            (None, None) => true,
            (Some(v), Some(a)) => compare(&v.0, a),
            _ => false,
        });
        hit != self.negate.unwrap_or(false)
    }
}

fn compare(spec: &str, actual: &str) -> bool {
    if let Some(v) = spec.strip_prefix("<=") {
        actual <= v
    } else if let Some(v) = spec.strip_prefix(">=") {
        actual >= v
    } else if let Some(v) = spec.strip_prefix('<') {
        actual < v
    } else if let Some(v) = spec.strip_prefix('>') {
        actual > v
    } else {
        actual == spec
    }
}

/// Filter of `appInstances`.
#[derive(InputObject, Clone, Debug)]
pub struct AppInstanceFilter {
    /// Customer account id.
    pub customer_account: Option<ValuesFilter>,
    /// Reference of the offering.
    pub app_offering_reference: Option<ValuesFilter>,
    /// Custom field filters.
    pub custom_filters: Option<Vec<CustomFilter>>,
    /// Disabled.
    pub disabled: Option<bool>,
    /// Suspended.
    pub suspended: Option<bool>,
    /// Enabled by the customer.
    pub enabled_by_customer: Option<bool>,
}

/// Input of `appInstanceUpdate`.
#[derive(InputObject, Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInstanceUpdateInput {
    /// Client mutation id.
    pub client_mutation_id: Option<String>,
    /// Node id of the instance.
    pub id: String,
    /// Suspended.
    pub suspended: Option<bool>,
    /// Suspension comment.
    pub suspension_comment: Option<String>,
    /// Custom fields (merged by id).
    pub custom_fields: Option<Vec<CustomFieldInput>>,
}

/// Payload of `appInstanceUpdate`.
#[derive(SimpleObject)]
pub struct AppInstanceUpdatePayload {
    /// Client mutation id.
    pub client_mutation_id: Option<String>,
    /// Validation errors.
    pub errors: Vec<ValidationError>,
    /// The instance.
    pub app_instance: Option<AppInstance>,
}

// ---------------------------------------------------------------------------------------------
// Resolvers

/// Queries on offerings, UI extensions and app instances.
#[derive(Default)]
pub struct AppsQuery;

#[Object]
impl AppsQuery {
    /// App offerings.
    async fn app_offerings(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<AppOfferingFilter>,
    ) -> Result<AppOfferingConnection> {
        let account = account(ctx)?;
        let records = shared(ctx)?.lock().all("AppOffering", account);
        let records = records
            .into_iter()
            .filter(|r| {
                filter.as_ref().is_none_or(|f| {
                    f.published
                        .is_none_or(|p| p == r.bool("published").unwrap_or(false))
                        && opt_str(&f.reference, r, "reference")
                        && opt_str(&f.name, r, "name")
                })
            })
            .collect();
        AppOfferingConnection::page(records, first, after)
    }

    /// UI extensions.
    async fn ui_extensions(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<UiExtensionFilter>,
    ) -> Result<UiExtensionConnection> {
        let account = account(ctx)?;
        let records = shared(ctx)?.lock().all("UiExtension", account);
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
        UiExtensionConnection::page(records, first, after)
    }

    /// App instances of the provider's offerings.
    async fn app_instances(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<AppInstanceFilter>,
    ) -> Result<AppInstanceConnection> {
        let account = account(ctx)?;
        let state = shared(ctx)?.lock();
        let records: Vec<Record> = state
            .all("AppInstance", account)
            .into_iter()
            .filter(|r| {
                filter.as_ref().is_none_or(|f| {
                    let reference = r
                        .str("appOfferingId")
                        .and_then(|id| state.records.get(&id))
                        .and_then(|o| o.str("reference"));
                    opt_str(&f.customer_account, r, "customerAccount")
                        && f.app_offering_reference
                            .as_ref()
                            .is_none_or(|rf| rf.matches(reference.as_deref()))
                        && f.custom_filters.iter().flatten().all(|cf| cf.matches(r))
                        && f.disabled
                            .is_none_or(|d| d == r.bool("disabled").unwrap_or(false))
                        && f.suspended
                            .is_none_or(|d| d == r.bool("suspended").unwrap_or(false))
                        && f.enabled_by_customer
                            .is_none_or(|d| d == r.bool("enabledByCustomer").unwrap_or(true))
                })
            })
            .collect();
        drop(state);
        AppInstanceConnection::page(records, first, after)
    }
}

fn scope_fields(
    state: &mut State,
    domain: &str,
    existing: Vec<AppOfferingScope>,
    new_scopes: &Option<Vec<AppOfferingScopeInput>>,
    to_delete: &[String],
    errors: &mut Vec<ValidationError>,
) -> Vec<AppOfferingScope> {
    let mut scopes: Vec<AppOfferingScope> = existing
        .into_iter()
        .filter(|s| !to_delete.contains(&s.id))
        .collect();
    for (i, input) in new_scopes.iter().flatten().enumerate() {
        match &input.id {
            Some(id) => match scopes.iter_mut().find(|s| s.id.as_str() == id.as_str()) {
                Some(scope) => {
                    scope.effect = input.effect.or(scope.effect);
                    scope.grant_type = input.grant_type.or(scope.grant_type);
                    if input.actions.is_some() {
                        scope.actions = input.actions.clone();
                    }
                    if input.conditions.is_some() {
                        scope.conditions = input.conditions.clone();
                    }
                }
                None => errors.push(ValidationError::new(
                    &["newScopes", &i.to_string(), "id"],
                    format!("Scope '{}' not found", id.as_str()),
                )),
            },
            None => {
                let num = state.next_num();
                scopes.push(AppOfferingScope {
                    id: ID(crate::state::node_id(domain, "AppOfferingScope", num)),
                    effect: input.effect.or(Some(ScopeEffect::Allow)),
                    grant_type: input
                        .grant_type
                        .or(Some(OauthApplicationGrantType::ClientCredentials)),
                    actions: input.actions.clone(),
                    conditions: input.conditions.clone(),
                });
            }
        }
    }
    scopes
}

/// Resolves `uiExtensionId` into `uiExtensionVersionId` (the active version).
fn link_ui_extension(
    state: &State,
    account: &str,
    fields: &mut Map<String, Value>,
    errors: &mut Vec<ValidationError>,
) {
    let Some(ext_id) = fields.remove("uiExtensionId") else {
        return;
    };
    let ext_id = ext_id.as_str().unwrap_or_default().to_owned();
    match state.find("UiExtension", account, &ext_id) {
        Some(ext) => match ext.str("activeVersionId") {
            Some(v) => {
                fields.insert("uiExtensionVersionId".into(), json!(v));
            }
            None => errors.push(ValidationError::new(
                &["uiExtensionId"],
                "UI extension has no active version",
            )),
        },
        None => errors.push(ValidationError::new(
            &["uiExtensionId"],
            "UI extension not found",
        )),
    }
}

fn check_version(
    state: &State,
    account: &str,
    fields: &Map<String, Value>,
    errors: &mut Vec<ValidationError>,
) {
    if let Some(v) = fields.get("uiExtensionVersionId").and_then(Value::as_str)
        && state.find("UiExtensionVersion", account, v).is_none()
    {
        errors.push(ValidationError::new(
            &["uiExtensionVersionId"],
            "UI extension version not found",
        ));
    }
}

fn reference_taken(state: &State, account: &str, reference: &str, except: Option<&str>) -> bool {
    state
        .all("AppOffering", account)
        .iter()
        .any(|o| o.str("reference").as_deref() == Some(reference) && Some(o.id.as_str()) != except)
}

/// Mutations on offerings, automation rules, UI extensions and app instances.
#[derive(Default)]
pub struct AppsMutation;

#[Object]
impl AppsMutation {
    /// Creates an app offering (a draft).
    async fn app_offering_create(
        &self,
        ctx: &Context<'_>,
        input: AppOfferingCreateInput,
    ) -> Result<AppOfferingCreatePayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        let mut errors = Vec::new();
        if input.name.trim().is_empty() {
            errors.push(ValidationError::new(&["name"], "Name can't be blank"));
        }
        if state
            .find("ServiceInstance", account, &input.service_instance_id)
            .is_none()
        {
            errors.push(ValidationError::new(
                &["serviceInstanceId"],
                "Service instance not found",
            ));
        }
        if let Some(reference) = &input.reference
            && reference_taken(&state, account, reference, None)
        {
            errors.push(ValidationError::new(
                &["reference"],
                "Reference has already been taken",
            ));
        }
        let mut fields = to_fields(&input);
        fields.remove("newScopes");
        link_ui_extension(&state, account, &mut fields, &mut errors);
        check_version(&state, account, &fields, &mut errors);
        let scopes = scope_fields(
            &mut state,
            &shared.domain,
            Vec::new(),
            &input.new_scopes,
            &[],
            &mut errors,
        );
        if !errors.is_empty() {
            return Ok(AppOfferingCreatePayload {
                client_mutation_id: input.client_mutation_id,
                errors,
                app_offering: None,
            });
        }
        fields.insert("scopes".into(), serde_json::to_value(scopes)?);
        fields.insert("published".into(), Value::Bool(false));
        let id = state.insert(&shared.domain, "AppOffering", account, fields);
        let record = state.records.get(&id).cloned();
        Ok(AppOfferingCreatePayload {
            client_mutation_id: input.client_mutation_id,
            errors: Vec::new(),
            app_offering: record.map(AppOffering),
        })
    }

    /// Updates an app offering.
    async fn app_offering_update(
        &self,
        ctx: &Context<'_>,
        input: AppOfferingUpdateInput,
    ) -> Result<AppOfferingUpdatePayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        let mut errors = Vec::new();
        let Some(existing) = state
            .find("AppOffering", account, input.id.as_str())
            .cloned()
        else {
            return Ok(AppOfferingUpdatePayload {
                client_mutation_id: input.client_mutation_id,
                errors: vec![ValidationError::new(&["id"], "App offering not found")],
                app_offering: None,
            });
        };
        if input.name.is_some() && blank(input.name.as_deref()) {
            errors.push(ValidationError::new(&["name"], "Name can't be blank"));
        }
        if let Some(si) = &input.service_instance_id
            && state
                .find("ServiceInstance", account, si.as_str())
                .is_none()
        {
            errors.push(ValidationError::new(
                &["serviceInstanceId"],
                "Service instance not found",
            ));
        }
        if let Some(reference) = &input.reference
            && reference_taken(&state, account, reference, Some(&existing.id))
        {
            errors.push(ValidationError::new(
                &["reference"],
                "Reference has already been taken",
            ));
        }
        let mut fields = to_fields(&input);
        fields.remove("newScopes");
        fields.remove("scopesToDelete");
        link_ui_extension(&state, account, &mut fields, &mut errors);
        check_version(&state, account, &fields, &mut errors);
        let current: Vec<AppOfferingScope> = existing.get("scopes").unwrap_or_default();
        let to_delete = input.scopes_to_delete.clone().unwrap_or_default();
        for (i, id) in to_delete.iter().enumerate() {
            if !current.iter().any(|s| s.id.as_str() == id.as_str()) {
                errors.push(ValidationError::new(
                    &["scopesToDelete", &i.to_string()],
                    format!("Scope '{}' not found", id.as_str()),
                ));
            }
        }
        let scopes = scope_fields(
            &mut state,
            &shared.domain,
            current,
            &input.new_scopes,
            &to_delete,
            &mut errors,
        );
        if !errors.is_empty() {
            return Ok(AppOfferingUpdatePayload {
                client_mutation_id: input.client_mutation_id,
                errors,
                app_offering: None,
            });
        }
        fields.insert("scopes".into(), serde_json::to_value(scopes)?);
        let record = state
            .find_mut("AppOffering", account, input.id.as_str())
            .map(|r| {
                merge_fields(&mut r.fields, fields);
                r.clone()
            });
        Ok(AppOfferingUpdatePayload {
            client_mutation_id: input.client_mutation_id,
            errors: Vec::new(),
            app_offering: record.map(AppOffering),
        })
    }

    /// Creates an automation rule of an app offering.
    async fn app_offering_automation_rule_create(
        &self,
        ctx: &Context<'_>,
        input: AppOfferingAutomationRuleCreateInput,
    ) -> Result<AppOfferingAutomationRuleCreatePayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        let mut errors = Vec::new();
        if blank(Some(&input.name)) {
            errors.push(ValidationError::new(&["name"], "Name can't be blank"));
        }
        if blank(Some(&input.trigger)) {
            errors.push(ValidationError::new(&["trigger"], "Trigger can't be blank"));
        }
        if state
            .find("AppOffering", account, input.app_offering_id.as_str())
            .is_none()
        {
            errors.push(ValidationError::new(
                &["appOfferingId"],
                "App offering not found",
            ));
        }
        let fields = to_fields(&input);
        if errors.is_empty()
            && let Err(err) = crate::rules::Rule::parse(&fields)
        {
            errors.push(ValidationError::new(&[err.attribute], err.message));
        }
        if !errors.is_empty() {
            return Ok(AppOfferingAutomationRuleCreatePayload {
                client_mutation_id: input.client_mutation_id,
                errors,
                app_offering_automation_rule: None,
            });
        }
        let id = state.insert(&shared.domain, "AppOfferingAutomationRule", account, fields);
        let record = state.records.get(&id).cloned();
        Ok(AppOfferingAutomationRuleCreatePayload {
            client_mutation_id: input.client_mutation_id,
            errors: Vec::new(),
            app_offering_automation_rule: record.map(AppOfferingAutomationRule),
        })
    }

    /// Deletes an automation rule of an app offering.
    async fn app_offering_automation_rule_delete(
        &self,
        ctx: &Context<'_>,
        input: AppOfferingAutomationRuleDeleteMutationInput,
    ) -> Result<AppOfferingAutomationRuleDeleteMutationPayload> {
        let errors = delete_record(ctx, "AppOfferingAutomationRule", &input.id)?;
        Ok((input.client_mutation_id, errors).into())
    }

    /// Updates an automation rule of an app offering.
    async fn app_offering_automation_rule_update(
        &self,
        ctx: &Context<'_>,
        input: AppOfferingAutomationRuleUpdateInput,
    ) -> Result<AppOfferingAutomationRuleUpdatePayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        let mut errors = Vec::new();
        if input.name.is_some() && blank(input.name.as_deref()) {
            errors.push(ValidationError::new(&["name"], "Name can't be blank"));
        }
        let fields = to_fields(&input);
        let record = match state.find_mut("AppOfferingAutomationRule", account, input.id.as_str()) {
            None => {
                errors.push(ValidationError::new(&["id"], "Automation rule not found"));
                None
            }
            Some(_) if !errors.is_empty() => None,
            Some(r) => {
                let mut merged = r.fields.clone();
                merge_fields(&mut merged, fields);
                match crate::rules::Rule::parse(&merged) {
                    Ok(_) => {
                        r.fields = merged;
                        Some(r.clone())
                    }
                    Err(err) => {
                        errors.push(ValidationError::new(&[err.attribute], err.message));
                        None
                    }
                }
            }
        };
        Ok(AppOfferingAutomationRuleUpdatePayload {
            client_mutation_id: input.client_mutation_id,
            errors,
            app_offering_automation_rule: record.map(AppOfferingAutomationRule),
        })
    }

    /// Creates a UI extension (and its first version).
    async fn ui_extension_create(
        &self,
        ctx: &Context<'_>,
        input: UiExtensionCreateInput,
    ) -> Result<UiExtensionCreatePayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        let mut errors = Vec::new();
        if blank(Some(&input.name)) {
            errors.push(ValidationError::new(&["name"], "Name can't be blank"));
        }
        if blank(input.title.as_deref()) {
            errors.push(ValidationError::new(&["title"], "Title can't be blank"));
        }
        if !errors.is_empty() {
            return Ok(UiExtensionCreatePayload {
                client_mutation_id: input.client_mutation_id,
                errors,
                ui_extension: None,
            });
        }
        let mut fields = to_fields(&input);
        let version = version_fields(&mut fields);
        let id = state.insert(&shared.domain, "UiExtension", account, fields);
        add_version(
            &mut state,
            &shared.domain,
            account,
            &id,
            version,
            input.activate,
        );
        let record = state.records.get(&id).cloned();
        Ok(UiExtensionCreatePayload {
            client_mutation_id: input.client_mutation_id,
            errors: Vec::new(),
            ui_extension: record.map(UiExtension),
        })
    }

    /// Updates a UI extension; new code creates a new version.
    async fn ui_extension_update(
        &self,
        ctx: &Context<'_>,
        input: UiExtensionUpdateInput,
    ) -> Result<UiExtensionUpdatePayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        let mut errors = Vec::new();
        if input.name.is_some() && blank(input.name.as_deref()) {
            errors.push(ValidationError::new(&["name"], "Name can't be blank"));
        }
        if state
            .find("UiExtension", account, input.id.as_str())
            .is_none()
        {
            errors.push(ValidationError::new(&["id"], "UI extension not found"));
        }
        if !errors.is_empty() {
            return Ok(UiExtensionUpdatePayload {
                client_mutation_id: input.client_mutation_id,
                errors,
                ui_extension: None,
            });
        }
        let mut fields = to_fields(&input);
        let version = version_fields(&mut fields);
        if let Some(r) = state.find_mut("UiExtension", account, input.id.as_str()) {
            merge_fields(&mut r.fields, fields);
        }
        let id = input.id.to_string();
        if !version.is_empty() {
            add_version(
                &mut state,
                &shared.domain,
                account,
                &id,
                version,
                input.activate,
            );
        } else if input.activate == Some(true)
            && let Some(r) = state.records.get_mut(&id)
            && let Some(prepared) = r.fields.remove("preparedVersionId")
        {
            r.fields.insert("activeVersionId".into(), prepared);
        }
        let record = state.records.get(&id).cloned();
        Ok(UiExtensionUpdatePayload {
            client_mutation_id: input.client_mutation_id,
            errors: Vec::new(),
            ui_extension: record.map(UiExtension),
        })
    }

    /// Updates an app instance (suspension, custom fields).
    async fn app_instance_update(
        &self,
        ctx: &Context<'_>,
        input: AppInstanceUpdateInput,
    ) -> Result<AppInstanceUpdatePayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        let fields = to_fields(&input);
        let record = state
            .find_mut("AppInstance", account, input.id.as_str())
            .map(|r| {
                merge_fields(&mut r.fields, fields);
                if input.suspended == Some(false) {
                    r.fields.remove("suspensionComment");
                }
                r.clone()
            });
        drop(state);
        let errors = match &record {
            None => vec![ValidationError::new(&["id"], "App instance not found")],
            Some(record) => {
                // 4me tells the provider's app_instance.update webhooks of every change.
                crate::webhooks::spawn_instance_update(
                    std::sync::Arc::clone(shared),
                    record.clone(),
                );
                Vec::new()
            }
        };
        Ok(AppInstanceUpdatePayload {
            client_mutation_id: input.client_mutation_id,
            errors,
            app_instance: record.map(AppInstance),
        })
    }
}

/// Moves `html`, `css`, `javascript` (and `activate`) out of the extension fields.
fn version_fields(fields: &mut Map<String, Value>) -> Map<String, Value> {
    fields.remove("activate");
    ["html", "css", "javascript"]
        .into_iter()
        .filter_map(|k| fields.remove(k).map(|v| (k.to_owned(), v)))
        .collect()
}

fn add_version(
    state: &mut State,
    domain: &str,
    account: &str,
    extension: &str,
    mut version: Map<String, Value>,
    activate: Option<bool>,
) {
    version.insert("uiExtensionId".into(), json!(extension));
    let vid = state.insert(domain, "UiExtensionVersion", account, version);
    if let Some(r) = state.records.get_mut(extension) {
        if activate == Some(true) {
            r.fields.insert("activeVersionId".into(), json!(vid));
            r.fields.remove("preparedVersionId");
        } else {
            r.fields.insert("preparedVersionId".into(), json!(vid));
        }
    }
}
