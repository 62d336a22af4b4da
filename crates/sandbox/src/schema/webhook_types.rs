//! Webhook policies and webhooks.

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    MutationError, PageInfo, account, connection, merge_fields, paginate, record_object, related,
    shared, to_fields,
};

use crate::state::Record;

/// JWT algorithm of a webhook policy.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(rename_items = "lowercase")]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum WebhookPolicyJwtAlg {
    Es256,
    Es384,
    Es512,
    Hs256,
    Hs384,
    Hs512,
    None,
    Rs256,
    Rs384,
    Rs512,
}

impl WebhookPolicyJwtAlg {
    /// The lowercase 4me name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WebhookPolicyJwtAlg::Es256 => "es256",
            WebhookPolicyJwtAlg::Es384 => "es384",
            WebhookPolicyJwtAlg::Es512 => "es512",
            WebhookPolicyJwtAlg::Hs256 => "hs256",
            WebhookPolicyJwtAlg::Hs384 => "hs384",
            WebhookPolicyJwtAlg::Hs512 => "hs512",
            WebhookPolicyJwtAlg::None => "none",
            WebhookPolicyJwtAlg::Rs256 => "rs256",
            WebhookPolicyJwtAlg::Rs384 => "rs384",
            WebhookPolicyJwtAlg::Rs512 => "rs512",
        }
    }
}

/// A webhook policy.
pub struct WebhookPolicy(pub(crate) Record);
record_object!(WebhookPolicy);

#[Object]
impl WebhookPolicy {
    /// Node id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// Name.
    async fn name(&self) -> Option<String> {
        self.0.str("name")
    }
    /// JWT algorithm.
    async fn jwt_alg(&self) -> Option<WebhookPolicyJwtAlg> {
        self.0.get("jwtAlg")
    }
    /// Audience of the tokens.
    async fn jwt_audience(&self) -> Option<String> {
        self.0.str("jwtAudience")
    }
    /// Expiry of the tokens in seconds.
    async fn jwt_claim_expires_in(&self) -> Option<i32> {
        self.0.get("jwtClaimExpiresIn")
    }
    /// SPKI PEM of the public key.
    async fn public_key_pem(&self) -> Option<String> {
        self.0.str("publicKeyPem")
    }
    /// Disabled.
    async fn disabled(&self) -> bool {
        self.0.bool("disabled").unwrap_or(false)
    }
}

/// Input of `webhookPolicyCreate`.
#[derive(InputObject, Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPolicyCreateInput {
    /// Client mutation id.
    pub client_mutation_id: Option<String>,
    /// JWT algorithm.
    pub jwt_alg: WebhookPolicyJwtAlg,
    /// Audience.
    pub jwt_audience: Option<String>,
    /// Expiry of the tokens in seconds.
    pub jwt_claim_expires_in: Option<i32>,
    /// Name.
    pub name: Option<String>,
    /// Disabled.
    pub disabled: Option<bool>,
}

/// Payload of `webhookPolicyCreate`.
#[derive(SimpleObject)]
pub struct WebhookPolicyCreatePayload {
    /// Client mutation id.
    pub client_mutation_id: Option<String>,
    /// Validation errors.
    pub errors: Vec<MutationError>,
    /// The policy.
    pub webhook_policy: Option<WebhookPolicy>,
}

/// A webhook.
pub struct Webhook(pub(crate) Record);
record_object!(Webhook);

#[Object]
impl Webhook {
    /// Node id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// Name.
    async fn name(&self) -> Option<String> {
        self.0.str("name")
    }
    /// Event.
    async fn event(&self) -> Option<String> {
        self.0.str("event")
    }
    /// URI the events are posted to.
    async fn uri(&self) -> Option<String> {
        self.0.str("uri")
    }
    /// Description.
    async fn description(&self) -> Option<String> {
        self.0.str("description")
    }
    /// Disabled.
    async fn disabled(&self) -> bool {
        self.0.bool("disabled").unwrap_or(false)
    }
    /// The policy signing the deliveries.
    async fn webhook_policy(&self, ctx: &Context<'_>) -> Result<Option<WebhookPolicy>> {
        related(ctx, &self.0, "webhookPolicyId", "WebhookPolicy")
    }
}

macro_rules! webhook_input {
    ($name:ident, $doc:literal, { $($extra:tt)* }) => {
        #[doc = $doc]
        #[derive(InputObject, Clone, Debug, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $($extra)*
            /// Client mutation id.
            pub client_mutation_id: Option<String>,
            /// Name.
            pub name: Option<String>,
            /// Description.
            pub description: Option<String>,
            /// Policy signing the deliveries.
            pub webhook_policy_id: Option<ID>,
            /// Disabled.
            pub disabled: Option<bool>,
            /// Addresses receiving exception mails.
            pub mail_exceptions_to: Option<Vec<String>>,
        }
    };
}

webhook_input!(WebhookCreateInput, "Input of `webhookCreate`.", {
    /// Event name (e.g. `app_instance.secrets-update`).
    pub event: String,
    /// URI the events are posted to.
    pub uri: String,
});
webhook_input!(WebhookUpdateInput, "Input of `webhookUpdate`.", {
    /// Node id of the webhook.
    pub id: ID,
    /// Event name.
    pub event: Option<String>,
    /// URI the events are posted to.
    pub uri: Option<String>,
});

/// Payload of `webhookCreate` / `webhookUpdate`.
#[derive(SimpleObject)]
pub struct WebhookPayload {
    /// Client mutation id.
    pub client_mutation_id: Option<String>,
    /// Validation errors.
    pub errors: Vec<MutationError>,
    /// The webhook.
    pub webhook: Option<Webhook>,
}

/// Events a webhook can subscribe to.
pub(crate) const WEBHOOK_EVENTS: &[&str] = &[
    "app_instance.create",
    "app_instance.update",
    "app_instance.delete",
    "app_instance.secrets-update",
    "automation_rule",
    "ci.create",
    "ci.update",
    "person.create",
    "person.update",
    "request.create",
    "request.update",
    "request.note-added",
    "request.status-changed",
    "webhook.verify",
];

fn validate_webhook(
    errors: &mut Vec<MutationError>,
    state: &crate::state::State,
    account: &str,
    event: Option<&str>,
    uri: Option<&str>,
    policy: Option<&ID>,
) {
    if let Some(event) = event
        && !WEBHOOK_EVENTS.contains(&event)
    {
        errors.push(MutationError::new(
            &["event"],
            "Event is not included in the list",
        ));
    }
    if let Some(uri) = uri {
        let ok = url::Url::parse(uri)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            errors.push(MutationError::new(&["uri"], "URI is invalid"));
        }
    }
    if let Some(policy) = policy
        && state
            .find("WebhookPolicy", account, policy.as_str())
            .is_none()
    {
        errors.push(MutationError::new(
            &["webhookPolicyId"],
            "Webhook policy not found",
        ));
    }
}

connection!(WebhookConnection, Webhook, "A page of webhooks.");

/// Queries on webhooks.
#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// Webhooks of the account.
    async fn webhooks(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<WebhookConnection> {
        let account = account(ctx)?;
        let records = shared(ctx)?.lock().all("Webhook", account);
        WebhookConnection::page(records, first, after)
    }
}

/// Mutations on webhook policies and webhooks.
#[derive(Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// Creates a webhook policy with a freshly generated key pair.
    async fn webhook_policy_create(
        &self,
        ctx: &Context<'_>,
        input: WebhookPolicyCreateInput,
    ) -> Result<WebhookPolicyCreatePayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let id = crate::webhooks::create_policy(
            shared,
            account,
            input.jwt_alg.as_str(),
            input.jwt_audience.clone(),
            input.name.clone(),
        )
        .map_err(|e| async_graphql::Error::new(e.to_string()))?;
        let mut state = shared.lock();
        if let Some(r) = state.records.get_mut(&id) {
            merge_fields(&mut r.fields, to_fields(&input));
        }
        let record = state.records.get(&id).cloned();
        Ok(WebhookPolicyCreatePayload {
            client_mutation_id: input.client_mutation_id,
            errors: Vec::new(),
            webhook_policy: record.map(WebhookPolicy),
        })
    }

    /// Creates a webhook and sends it a `webhook.verify` event.
    async fn webhook_create(
        &self,
        ctx: &Context<'_>,
        input: WebhookCreateInput,
    ) -> Result<WebhookPayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let id = {
            let mut state = shared.lock();
            let mut errors = Vec::new();
            validate_webhook(
                &mut errors,
                &state,
                account,
                Some(&input.event),
                Some(&input.uri),
                input.webhook_policy_id.as_ref(),
            );
            if !errors.is_empty() {
                return Ok(WebhookPayload {
                    client_mutation_id: input.client_mutation_id,
                    errors,
                    webhook: None,
                });
            }
            let mut fields = to_fields(&input);
            fields.entry("name").or_insert_with(|| json!(input.event));
            fields.insert("active".into(), Value::Bool(false));
            state.insert(&shared.domain, "Webhook", account, fields)
        };
        crate::webhooks::spawn_verify(shared.clone(), id.clone());
        let record = shared.lock().records.get(&id).cloned();
        Ok(WebhookPayload {
            client_mutation_id: input.client_mutation_id,
            errors: Vec::new(),
            webhook: record.map(Webhook),
        })
    }

    /// Updates a webhook; a new URI must be verified again.
    async fn webhook_update(
        &self,
        ctx: &Context<'_>,
        input: WebhookUpdateInput,
    ) -> Result<WebhookPayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let (record, reverify) = {
            let mut state = shared.lock();
            let mut errors = Vec::new();
            validate_webhook(
                &mut errors,
                &state,
                account,
                input.event.as_deref(),
                input.uri.as_deref(),
                input.webhook_policy_id.as_ref(),
            );
            let Some(r) = state.find_mut("Webhook", account, input.id.as_str()) else {
                errors.push(MutationError::new(&["id"], "Webhook not found"));
                return Ok(WebhookPayload {
                    client_mutation_id: input.client_mutation_id,
                    errors,
                    webhook: None,
                });
            };
            if !errors.is_empty() {
                return Ok(WebhookPayload {
                    client_mutation_id: input.client_mutation_id,
                    errors,
                    webhook: None,
                });
            }
            let reverify = input
                .uri
                .as_ref()
                .is_some_and(|u| r.str("uri").as_deref() != Some(u.as_str()));
            merge_fields(&mut r.fields, to_fields(&input));
            if reverify {
                r.fields.insert("active".into(), Value::Bool(false));
            }
            (r.clone(), reverify)
        };
        if reverify {
            crate::webhooks::spawn_verify(shared.clone(), record.id.clone());
        }
        Ok(WebhookPayload {
            client_mutation_id: input.client_mutation_id,
            errors: Vec::new(),
            webhook: Some(Webhook(record)),
        })
    }
}
