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
#[derive(Clone, Debug, Default)]
pub struct InstallOptions {
    /// Secrets entered by the customer (ui-extension secret fields).
    pub secrets: serde_json::Map<String, serde_json::Value>,
    /// Custom fields of the app instance (`{id: value}`).
    pub custom_fields: serde_json::Map<String, serde_json::Value>,
    /// Algorithm of the customer-side policy (default `rs256`).
    pub customer_policy_alg: Option<String>,
}

/// Result of [`crate::Sandbox::install_app`].
#[derive(Clone, PartialEq, Eq)]
pub struct InstalledApp {
    /// Node id of the app instance (visible to the provider account).
    pub app_instance_id: String,
    /// Customer account id.
    pub customer_account: String,
    /// Customer-account OAuth credentials sent in the `application` part.
    pub customer_credentials: crate::OAuthCredentials,
    /// The customer-side webhook policy sent in the `policy` part.
    pub customer_policy: PolicyInfo,
}

impl std::fmt::Debug for InstalledApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstalledApp")
            .field("app_instance_id", &self.app_instance_id)
            .field("customer_account", &self.customer_account)
            .field("customer_credentials", &self.customer_credentials)
            .field("customer_policy", &self.customer_policy)
            .finish()
    }
}

/// One webhook delivery sent by the sandbox.
#[derive(Clone, Debug, PartialEq)]
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
