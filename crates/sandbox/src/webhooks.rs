//! Webhook policies, webhook deliveries (signed JWTs) and app installation.

/// Errors of the webhook helpers.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Key generation or signing failed.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// A referenced record does not exist.
    #[error("{0} not found")]
    NotFound(String),
}

/// A webhook policy as created by [`crate::Sandbox::create_webhook_policy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyInfo {
    /// Node id of the policy.
    pub id: String,
    /// `WebhookPolicyJwtAlg` item, lower case (`es512`, `rs256`, ...).
    pub jwt_alg: String,
    /// Audience (`aud` claim) of signed deliveries.
    pub audience: Option<String>,
    /// SPKI PEM of the public key (`None` for HMAC/none policies).
    pub public_key_pem: Option<String>,
}

/// Options of [`crate::Sandbox::install_app`].
#[derive(Clone, Default)]
pub struct InstallOptions {
    /// Secrets entered by the customer (ui-extension secret fields).
    pub secrets: serde_json::Map<String, serde_json::Value>,
    /// Custom fields of the app instance (`{id: value}`).
    pub custom_fields: serde_json::Map<String, serde_json::Value>,
    /// Algorithm of the customer-side policy (default `rs256`).
    pub customer_policy_alg: Option<String>,
}

impl std::fmt::Debug for InstallOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallOptions")
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("custom_fields", &self.custom_fields)
            .field("customer_policy_alg", &self.customer_policy_alg)
            .finish()
    }
}

/// Result of [`crate::Sandbox::install_app`].
#[derive(Clone, PartialEq)]
pub struct InstalledApp {
    /// Node id of the app instance (visible to the provider account).
    pub app_instance_id: String,
    /// Customer account id.
    pub customer_account: String,
    /// Customer-account OAuth credentials sent in the `application` part.
    pub customer_credentials: crate::OAuthCredentials,
    /// The customer-side webhook policy sent in the `policy` part.
    pub customer_policy: PolicyInfo,
    /// The `app_instance.secrets-update` deliveries sent to the provider's active webhooks.
    pub deliveries: Vec<Delivery>,
    /// The `app_instance.create` deliveries (sent first) to the provider's webhooks for it.
    pub instance_deliveries: Vec<Delivery>,
    /// When the offering has a `configurationUriTemplate`: where 4me sends the installing
    /// user's browser (the template with `nodeID`, `account_id`, `confirmation_url`,
    /// `created_at` and `X-4me-Signature` added); the instance stays disabled until the user
    /// opens `confirmation_url`.
    pub configuration_url: Option<String>,
}

impl std::fmt::Debug for InstalledApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstalledApp")
            .field("app_instance_id", &self.app_instance_id)
            .field("customer_account", &self.customer_account)
            .field("customer_credentials", &self.customer_credentials)
            .field("customer_policy", &self.customer_policy)
            .field("deliveries", &self.deliveries.len())
            .finish()
    }
}

/// One webhook delivery sent by the sandbox (its `Debug` omits the token and the envelope,
/// which may carry secrets).
#[derive(Clone, PartialEq)]
pub struct Delivery {
    /// Value of the `X-4me-Delivery` header.
    pub id: String,
    /// Node id of the webhook (empty for app-offering webhooks).
    pub webhook_id: String,
    /// Event name (`webhook.verify`, `app_instance.secrets-update`, ...).
    pub event: String,
    /// Target URI.
    pub uri: String,
    /// HTTP status of the last attempt (`None` when the request failed at transport level).
    pub status: Option<u16>,
    /// Number of attempts made.
    pub attempts: u32,
    /// The signed token sent as `{"jwt": ...}`.
    pub jwt: String,
    /// The envelope (`data` claim).
    pub data: serde_json::Value,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("webhook_id", &self.webhook_id)
            .field("event", &self.event)
            .field("uri", &self.uri)
            .field("status", &self.status)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::Shared;
use crate::keys::PolicyKey;
use crate::state::{Record, random_hex, unix_now};

/// User agent of deliveries.
const USER_AGENT: &str = "4me/1.0 (https://developer.4me.com/v1/webhooks)";

/// Attempts per delivery.
const ATTEMPTS: u32 = 3;

/// Creates a webhook policy record with a new key pair; returns its node id.
pub(crate) fn create_policy(
    shared: &Arc<Shared>,
    account: &str,
    alg: &str,
    audience: Option<String>,
) -> Result<String, crate::keys::KeyError> {
    let key = PolicyKey::generate(alg)?;
    let pem = key.public_key_pem()?;
    let mut state = shared.lock();
    state.add_account(account);
    let mut fields = Map::new();
    fields.insert("jwtAlg".into(), json!(alg));
    if let Some(audience) = audience {
        fields.insert("jwtAudience".into(), json!(audience));
    }
    if let Some(pem) = pem {
        fields.insert("publicKeyPem".into(), json!(pem));
    }
    let id = state.insert(&shared.domain, "WebhookPolicy", account, fields);
    if let Some(r) = state.records.get_mut(&id) {
        // 4me names policies itself; clients cannot choose or rely on the name.
        r.fields
            .insert("name".into(), json!(format!("Webhook policy #{}", r.num)));
    }
    state.policy_keys.insert(id.clone(), key);
    Ok(id)
}

/// Policy info of policy record `id`.
pub(crate) fn policy_info(record: &Record) -> PolicyInfo {
    PolicyInfo {
        id: record.id.clone(),
        jwt_alg: record.str("jwtAlg").unwrap_or_default(),
        audience: record.str("jwtAudience"),
        public_key_pem: record.str("publicKeyPem"),
    }
}

/// Who/what a delivery is about.
pub(crate) struct EnvelopeParts<'a> {
    pub account: &'a str,
    pub webhook_num: u64,
    pub webhook_node_id: &'a str,
    pub name: &'a str,
    pub event: &'a str,
    pub object_num: u64,
    pub object_node_id: &'a str,
    pub payload: Value,
}

/// Builds the `data` envelope of a delivery.
pub(crate) fn envelope(shared: &Shared, parts: EnvelopeParts<'_>) -> Value {
    json!({
        "webhook_id": parts.webhook_num,
        "webhook_nodeID": parts.webhook_node_id,
        "account_id": parts.account,
        "account": format!("https://{}.{}", parts.account, shared.domain),
        "name": parts.name,
        "event": parts.event,
        "object_id": parts.object_num,
        "object_nodeID": parts.object_node_id,
        "person_id": 1,
        "person_nodeID": crate::state::node_id(&shared.domain, "Person", 0),
        "person_name": "Sandbox Administrator",
        "payload": parts.payload,
    })
}

/// Signs `data` with policy `policy_id` (claims jti, sub, iss, nbf, iat, aud, data).
pub(crate) fn sign(
    shared: &Shared,
    account: &str,
    policy_id: &str,
    subject: &str,
    data: &Value,
) -> Result<String, WebhookError> {
    let mut state = shared.lock();
    let key = state
        .policy_keys
        .get(policy_id)
        .ok_or_else(|| WebhookError::NotFound(format!("webhook policy {policy_id}")))?;
    let issuer = format!("https://{account}.{}", shared.domain);
    let audience = state
        .records
        .get(policy_id)
        .and_then(|r| r.str("jwtAudience"))
        .unwrap_or_else(|| issuer.clone());
    let now = unix_now();
    let jti = random_hex(16);
    let mut claims = json!({
        "data": data,
        "jti": jti,
        "sub": subject,
        "iss": issuer,
        "nbf": now,
        "iat": now,
        "aud": audience,
    });
    if let Some(exp) = state
        .records
        .get(policy_id)
        .and_then(|r| r.get::<u64>("jwtClaimExpiresIn"))
        && let Some(obj) = claims.as_object_mut()
    {
        // 4me documents `jwtClaimExpiresIn` in minutes.
        obj.insert("exp".into(), json!(now + exp * 60));
    }
    let token = key.sign_jwt(&claims)?;
    state.signed.insert(
        jti,
        (account.to_owned(), policy_id.to_owned(), subject.to_owned()),
    );
    Ok(token)
}

/// Signs the `data` of a token [`sign`] issued again, as 4me does when it redelivers: same
/// policy, subject and data, a new `jti`, `iat` and `exp`.
pub(crate) fn resign(shared: &Shared, token: &str) -> Result<String, WebhookError> {
    use base64::Engine as _;
    let unknown = || WebhookError::NotFound("a token signed by this sandbox".into());
    let claims: Value = token
        .split('.')
        .nth(1)
        .and_then(|part| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(unknown)?;
    let jti = claims["jti"].as_str().ok_or_else(unknown)?;
    let (account, policy, subject) = shared.lock().signed.get(jti).cloned().ok_or_else(unknown)?;
    sign(shared, &account, &policy, &subject, &claims["data"])
}

/// POSTs `{"jwt": ...}` (or the bare envelope without a policy) to `uri`, retrying non-2xx
/// answers, and records the delivery.
pub(crate) async fn deliver(
    shared: &Arc<Shared>,
    webhook_id: &str,
    uri: &str,
    event: &str,
    jwt: Option<String>,
    data: Value,
) -> Delivery {
    let id = uuid::Uuid::new_v4().to_string();
    let body = match &jwt {
        Some(jwt) => json!({ "jwt": jwt }),
        None => data.clone(),
    };
    let mut status = None;
    let mut attempts = 0;
    while attempts < ATTEMPTS {
        attempts += 1;
        let result = shared
            .http
            .post(uri)
            .header("X-4me-Delivery", &id)
            .header("User-Agent", USER_AGENT)
            .json(&body)
            .send()
            .await;
        status = result.ok().map(|r| r.status().as_u16());
        if status.is_some_and(|s| (200..300).contains(&s)) {
            break;
        }
        if attempts < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempts))).await;
        }
    }
    let delivery = Delivery {
        id,
        webhook_id: webhook_id.to_owned(),
        event: event.to_owned(),
        uri: uri.to_owned(),
        status,
        attempts,
        jwt: jwt.unwrap_or_default(),
        data,
    };
    shared.lock().deliveries.push(delivery.clone());
    delivery
}

/// Prepares the signed delivery of `event` to webhook record `webhook`.
pub(crate) fn webhook_delivery(
    shared: &Shared,
    webhook: &Record,
    event: &str,
    object: (u64, &str),
    payload: Value,
) -> Result<(String, Option<String>, Value), WebhookError> {
    let uri = webhook.str("uri").unwrap_or_default();
    let name = webhook.str("name").unwrap_or_default();
    let data = envelope(
        shared,
        EnvelopeParts {
            account: &webhook.account,
            webhook_num: webhook.num,
            webhook_node_id: &webhook.id,
            name: &name,
            event,
            object_num: object.0,
            object_node_id: object.1,
            payload,
        },
    );
    let jwt = match webhook.str("webhookPolicyId") {
        Some(policy) => Some(sign(
            shared,
            &webhook.account,
            &policy,
            &webhook.num.to_string(),
            &data,
        )?),
        None => None,
    };
    Ok((uri, jwt, data))
}

/// Sends `webhook.verify` to webhook `webhook_id` in the background.
pub(crate) fn spawn_verify(shared: Arc<Shared>, webhook_id: String) {
    let code = random_hex(16);
    let webhook = {
        let mut state = shared.lock();
        state.verify_codes.insert(webhook_id.clone(), code.clone());
        state.records.get(&webhook_id).cloned()
    };
    let Some(webhook) = webhook else {
        return;
    };
    let callback = format!(
        "{}/webhooks/{}/verify?code={}&expires_at={}",
        shared.base_url,
        webhook_id,
        code,
        unix_now() + 3600
    );
    let prepared = webhook_delivery(
        &shared,
        &webhook,
        "webhook.verify",
        (webhook.num, &webhook.id),
        json!({ "callback": callback }),
    );
    match prepared {
        Ok((uri, jwt, data)) => {
            tokio::spawn(async move {
                deliver(&shared, &webhook_id, &uri, "webhook.verify", jwt, data).await;
            });
        }
        Err(e) => tracing::error!("unable to prepare webhook.verify: {e}"),
    }
}

/// The events 4me sends to the provider account's webhooks when a customer installs, changes or
/// uninstalls an app instance.
pub const INSTANCE_CREATE: &str = "app_instance.create";
/// See [`INSTANCE_CREATE`].
pub const INSTANCE_UPDATE: &str = "app_instance.update";
/// See [`INSTANCE_CREATE`].
pub const INSTANCE_DELETE: &str = "app_instance.delete";

/// Sends `event` about the app instance `instance` to every active webhook of the provider
/// account for that event, one after the other. 4me documents the envelope (`object_id`,
/// `object_nodeID` name the instance) but not these events' payload; the sandbox sends what
/// `app_instance.secrets-update` carries about the instance (`app_offering`,
/// `customer_account_id`) and the audit line.
pub(crate) async fn instance_event(
    shared: &Arc<Shared>,
    event: &str,
    instance: &Record,
) -> Result<Vec<Delivery>, WebhookError> {
    let (webhooks, payload) = {
        let mut state = shared.lock();
        let webhooks: Vec<Record> = state
            .all("Webhook", &instance.account)
            .into_iter()
            .filter(|w| {
                w.str("event").as_deref() == Some(event)
                    && w.bool("active") == Some(true)
                    && w.bool("disabled") != Some(true)
            })
            .collect();
        let offering = instance
            .str("appOfferingId")
            .and_then(|id| state.records.get(&id).cloned());
        let audit_num = state.next_num();
        let payload = json!({
            "audit_line_id": audit_num,
            "audit_line_nodeID": crate::state::node_id(&shared.domain, "AuditLine", audit_num),
            "app_offering": offering.map(|o| json!({
                "reference": o.str("reference"),
                "id": o.num,
                "nodeID": o.id,
            })),
            "customer_account_id": instance.str("customerAccount"),
        });
        (webhooks, payload)
    };
    let mut deliveries = Vec::new();
    for webhook in &webhooks {
        let (uri, jwt, data) = webhook_delivery(
            shared,
            webhook,
            event,
            (instance.num, &instance.id),
            payload.clone(),
        )?;
        deliveries.push(deliver(shared, &webhook.id, &uri, event, jwt, data).await);
    }
    Ok(deliveries)
}

/// Sends [`INSTANCE_UPDATE`] about `instance` in the background (after a change made through
/// the API, whose answer must not wait for the provider's webhooks).
pub(crate) fn spawn_instance_update(shared: Arc<Shared>, instance: Record) {
    tokio::spawn(async move {
        if let Err(error) = instance_event(&shared, INSTANCE_UPDATE, &instance).await {
            tracing::error!("unable to send {INSTANCE_UPDATE}: {error}");
        }
    });
}

/// The customer enables or disables the instance `instance_id` (`enabledByCustomer`).
pub(crate) async fn set_instance_enabled(
    shared: &Arc<Shared>,
    instance_id: &str,
    enabled: bool,
) -> Result<Vec<Delivery>, WebhookError> {
    update_instance(shared, instance_id, |record| {
        record
            .fields
            .insert("enabledByCustomer".into(), json!(enabled));
        true
    })
    .await
}

/// The customer confirms the configuration of a new instance (opens its `confirmation_url`):
/// 4me enables it and sends `app_instance.update`. Confirming an enabled instance changes
/// nothing and sends nothing.
pub(crate) async fn confirm_configuration(
    shared: &Arc<Shared>,
    instance_id: &str,
) -> Result<Vec<Delivery>, WebhookError> {
    update_instance(shared, instance_id, |record| {
        record.bool("disabled") == Some(true)
            && record
                .fields
                .insert("disabled".into(), json!(false))
                .is_some()
    })
    .await
}

/// Changes app instance `instance_id` with `change` (`false`: nothing changed) and sends
/// `app_instance.update` for a change.
async fn update_instance(
    shared: &Arc<Shared>,
    instance_id: &str,
    change: impl FnOnce(&mut Record) -> bool,
) -> Result<Vec<Delivery>, WebhookError> {
    let instance = {
        let mut state = shared.lock();
        let record = state
            .records
            .get_mut(instance_id)
            .filter(|r| r.kind == "AppInstance")
            .ok_or_else(|| WebhookError::NotFound(format!("app instance {instance_id}")))?;
        if !change(record) {
            return Ok(Vec::new());
        }
        record.clone()
    };
    instance_event(shared, INSTANCE_UPDATE, &instance).await
}

/// The customer uninstalls the app: the instance `instance_id` is deleted.
pub(crate) async fn uninstall_app(
    shared: &Arc<Shared>,
    instance_id: &str,
) -> Result<Vec<Delivery>, WebhookError> {
    let instance = shared
        .lock()
        .records
        .remove(instance_id)
        .filter(|r| r.kind == "AppInstance")
        .ok_or_else(|| WebhookError::NotFound(format!("app instance {instance_id}")))?;
    instance_event(shared, INSTANCE_DELETE, &instance).await
}

/// See [`crate::Sandbox::install_app`].
pub(crate) async fn install_app(
    shared: &Arc<Shared>,
    offering_ref: &str,
    customer: &str,
    options: InstallOptions,
) -> Result<InstalledApp, WebhookError> {
    let offering = {
        let state = shared.lock();
        let mut offerings: Vec<&Record> = state
            .records
            .values()
            .filter(|r| {
                r.kind == "AppOffering" && r.str("reference").as_deref() == Some(offering_ref)
            })
            .collect();
        offerings.sort_by_key(|r| r.num);
        offerings
            .last()
            .map(|r| (*r).clone())
            .ok_or_else(|| WebhookError::NotFound(format!("app offering '{offering_ref}'")))?
    };
    let provider = offering.account.clone();
    let alg = options
        .customer_policy_alg
        .clone()
        .or_else(|| offering.str("policyJwtAlg"))
        .unwrap_or_else(|| "rs256".to_owned());
    let audience = offering.str("policyJwtAudience");
    let policy_id = create_policy(shared, customer, &alg, audience.clone())?;
    let (app, instance, policy, webhooks, audit_num) = {
        let mut state = shared.lock();
        // The customer's policy signs tokens that expire as the offering says.
        if let Some(minutes) = offering.get::<u64>("policyJwtClaimExpiresIn")
            && let Some(policy) = state.records.get_mut(&policy_id)
        {
            policy
                .fields
                .insert("jwtClaimExpiresIn".into(), json!(minutes));
        }
        let app = state.add_oauth_application(customer);
        let custom_fields: Vec<Value> = options
            .custom_fields
            .iter()
            .map(|(id, value)| json!({"id": id, "value": value}))
            .collect();
        let mut fields = Map::new();
        fields.insert("appOfferingId".into(), json!(offering.id));
        fields.insert("customerAccount".into(), json!(customer));
        fields.insert("suspended".into(), json!(false));
        // With a configuration URI, 4me creates the instance disabled until the customer
        // confirms the configuration.
        let configured = offering.str("configurationUriTemplate").is_some();
        fields.insert("disabled".into(), json!(configured));
        fields.insert("enabledByCustomer".into(), json!(true));
        fields.insert(
            "createdAt".into(),
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        );
        fields.insert("customFields".into(), json!(custom_fields));
        fields.insert("customerPolicyId".into(), json!(policy_id));
        fields.insert("customerClientId".into(), json!(app.client_id));
        let instance_id = state.insert(&shared.domain, "AppInstance", &provider, fields);
        let instance = state
            .records
            .get(&instance_id)
            .cloned()
            .ok_or_else(|| WebhookError::NotFound("app instance".into()))?;
        let policy = state
            .records
            .get(&policy_id)
            .map(policy_info)
            .ok_or_else(|| WebhookError::NotFound("customer policy".into()))?;
        let webhooks: Vec<Record> = state
            .all("Webhook", &provider)
            .into_iter()
            .filter(|w| {
                w.str("event").as_deref() == Some("app_instance.secrets-update")
                    && w.bool("active") == Some(true)
                    && w.bool("disabled") != Some(true)
            })
            .collect();
        let audit_num = state.next_num();
        (app, instance, policy, webhooks, audit_num)
    };
    let base = json!({
        "audit_line_id": audit_num,
        "audit_line_nodeID": crate::state::node_id(&shared.domain, "AuditLine", audit_num),
        "app_offering": {
            "reference": offering_ref,
            "id": offering.num,
            "nodeID": offering.id,
        },
        "customer_account_id": customer,
    });
    let mut application_part = base.clone();
    let mut policy_part = base;
    if let Some(obj) = application_part.as_object_mut() {
        obj.insert(
            "application".into(),
            json!({"nodeID": app.node_id, "client_id": app.client_id, "client_secret": app.client_secret}),
        );
    }
    if let Some(obj) = policy_part.as_object_mut() {
        obj.insert(
            "policy".into(),
            json!({
                "nodeID": policy.id,
                "audience": policy.audience,
                "algorithm": policy.jwt_alg.to_uppercase(),
                "public_key": policy.public_key_pem,
            }),
        );
        if !options.secrets.is_empty() {
            obj.insert("secrets".into(), Value::Object(options.secrets.clone()));
        }
    }
    let instance_deliveries = instance_event(shared, INSTANCE_CREATE, &instance).await?;
    let mut deliveries = Vec::new();
    for webhook in &webhooks {
        for payload in [&application_part, &policy_part] {
            let (uri, jwt, data) = webhook_delivery(
                shared,
                webhook,
                "app_instance.secrets-update",
                (instance.num, &instance.id),
                payload.clone(),
            )?;
            deliveries.push(
                deliver(
                    shared,
                    &webhook.id,
                    &uri,
                    "app_instance.secrets-update",
                    jwt,
                    data,
                )
                .await,
            );
        }
    }
    let signing_policy = webhooks.iter().find_map(|w| w.str("webhookPolicyId"));
    let configuration_url = configuration_link(
        shared,
        &offering,
        &instance,
        customer,
        signing_policy.as_deref(),
    )?;
    Ok(InstalledApp {
        configuration_url,
        app_instance_id: instance.id,
        customer_account: customer.to_owned(),
        customer_credentials: crate::OAuthCredentials {
            client_id: app.client_id,
            client_secret: app.client_secret,
        },
        customer_policy: policy,
        deliveries,
        instance_deliveries,
    })
}

/// The configuration link of a new instance of `offering`, as 4me builds it: the template with
/// the instance's `nodeID`, `account_id`, `confirmation_url` (the sandbox's confirmation page of
/// the instance) and `created_at`, and `X-4me-Signature`, a JWT whose `data` is the node id,
/// signed with `policy`, the policy of the provider's active `app_instance.secrets-update`
/// webhook. `None` without a template; without a policy the link has no signature.
fn configuration_link(
    shared: &Arc<Shared>,
    offering: &Record,
    instance: &Record,
    customer: &str,
    policy: Option<&str>,
) -> Result<Option<String>, WebhookError> {
    let Some(template) = offering.str("configurationUriTemplate") else {
        return Ok(None);
    };
    let provider = offering.account.clone();
    let mut url = url::Url::parse(&template.replace("{account}", customer))
        .map_err(|e| WebhookError::NotFound(format!("a valid configurationUriTemplate ({e})")))?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("nodeID", &instance.id)
            .append_pair("account_id", customer)
            .append_pair(
                "confirmation_url",
                &format!("{}/app_instances/{}/confirm", shared.base_url, instance.id),
            )
            .append_pair("created_at", &instance.str("createdAt").unwrap_or_default());
        if let Some(policy) = policy {
            let jwt = sign(shared, &provider, policy, &instance.id, &json!(instance.id))?;
            query.append_pair("X-4me-Signature", &jwt);
        }
    }
    Ok(Some(url.to_string()))
}

/// Calls the app-offering webhook of app instance `app_instance_id` as an automation rule on
/// `object` (`(number, node id)`; the instance itself when `None`) does: the offering's URI
/// template with `{account}` filled, signed with the customer-side policy.
pub(crate) async fn call_app_webhook(
    shared: &Arc<Shared>,
    app_instance_id: &str,
    payload: Value,
    object: Option<(u64, String)>,
) -> Result<Delivery, WebhookError> {
    let (instance, offering) = {
        let state = shared.lock();
        let instance = state
            .records
            .get(app_instance_id)
            .filter(|r| r.kind == "AppInstance")
            .cloned()
            .ok_or_else(|| WebhookError::NotFound(format!("app instance {app_instance_id}")))?;
        let offering = instance
            .str("appOfferingId")
            .and_then(|id| state.records.get(&id).cloned())
            .ok_or_else(|| WebhookError::NotFound("app offering of the instance".into()))?;
        (instance, offering)
    };
    let customer = instance.str("customerAccount").unwrap_or_default();
    let template = offering
        .str("webhookUriTemplate")
        .ok_or_else(|| WebhookError::NotFound("webhookUriTemplate of the offering".into()))?;
    let uri = template.replace("{account}", &customer);
    let name = offering.str("name").unwrap_or_default();
    let data = envelope(
        shared,
        EnvelopeParts {
            account: &customer,
            webhook_num: instance.num,
            webhook_node_id: &instance.id,
            name: &name,
            event: "automation_rule",
            object_num: object.as_ref().map_or(instance.num, |o| o.0),
            object_node_id: object.as_ref().map_or(&instance.id, |o| &o.1),
            payload,
        },
    );
    let policy = instance
        .str("customerPolicyId")
        .ok_or_else(|| WebhookError::NotFound("customer policy".into()))?;
    let jwt = sign(shared, &customer, &policy, &instance.num.to_string(), &data)?;
    Ok(deliver(
        shared,
        &instance.id,
        &uri,
        "automation_rule",
        Some(jwt),
        data,
    )
    .await)
}
