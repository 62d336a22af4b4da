//! Provider and customer contexts assembled from the secret store (docs/original.md#contexts).
//!
//! A context is what a handler needs to act for one 4me account: the stored secret document, a
//! 4me client authenticated with the account's OAuth application, and a verifier for the
//! account's webhook policy. Where the original returned `null` (and logged the secret), loading
//! here returns a [`ContextError`] that says which secret and which part is missing.
//!
//! Secret shapes (docs/original.md#provider-secret):
//! - provider `<app>/<domain>/<provider>`: `clientID`, `token`,
//!   `policy { jwtAlg, jwtAudience, publicKeyPem }`, and while a replaced policy's grace period
//!   lasts `previousPolicy { jwtAlg, jwtAudience, publicKeyPem, acceptedUntil }`;
//! - customer `<app>/<ref>/<domain>/instances/<account>`:
//!   `application { client_id, client_secret }`, `policy { algorithm, audience, public_key }`.
//!
//! A secret that holds only one of the two parts still loads (the original did the same): asking
//! for the missing part ([`AccountContext::client`] or [`AccountContext::verifier`]) is the error.

use serde_json::Value;

use crate::fourme::{ClientSettings, Credentials, Endpoints, FourMeClient};
use crate::policy::{Algorithm, Audience, JwtError, PolicyKey, Verifier, WebhookPolicy};
use crate::secrets::{
    SecretDocument, SecretName, SecretNameError, SecretStore, SecretStoreError,
    customer_secret_name, provider_secret_name,
};

/// Why a context could not be assembled. Messages name secrets and keys, never values.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// An account, domain, application or offering name cannot form a secret name.
    #[error(transparent)]
    InvalidName(#[from] SecretNameError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] SecretStoreError),
    /// The account has no secret.
    #[error("no secret {0}")]
    NotFound(SecretName),
    /// The secret holds neither OAuth application credentials nor a webhook policy.
    #[error("secret {0} holds neither application credentials nor a webhook policy")]
    Empty(SecretName),
    /// The secret holds no usable OAuth application credentials.
    #[error("secret {secret} has no application credentials (missing {missing})")]
    MissingCredentials {
        /// The secret concerned.
        secret: SecretName,
        /// The missing key.
        missing: &'static str,
    },
    /// The secret holds no webhook policy.
    #[error("secret {0} has no webhook policy")]
    MissingPolicy(SecretName),
    /// The stored webhook policy is unusable (unknown algorithm, bad key, no audience...).
    #[error("secret {secret} has an invalid webhook policy: {reason}")]
    InvalidPolicy {
        /// The secret concerned.
        secret: SecretName,
        /// What is wrong with it.
        reason: String,
    },
    /// Loading a customer context needs the offering reference, and none is configured.
    #[error("no offering reference configured: customer contexts need one")]
    NoOfferingReference,
    /// The 4me client could not be built.
    #[error("cannot build the 4me client for {account}: {source}")]
    Client {
        /// The account concerned.
        account: String,
        /// The client error.
        source: crate::fourme::FourMeError,
    },
}

/// Where contexts come from: the 4me domain, the bootstrap application name, the provider
/// account and, for customer contexts, the offering reference of the running integration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextConfig {
    /// The 4me domain (`PARAM_4ME_DOMAIN`), e.g. `4me-demo.com`.
    pub domain: String,
    /// The bootstrap application name (`PARAM_BOOTSTRAP_APP`), normally `4me-app-builder`.
    pub app: String,
    /// The provider account (`PARAM_BOOTSTRAP_ACCOUNT`).
    pub provider_account: String,
    /// The app offering reference of this integration (`PARAM_OFFERING_REFERENCE`), if any.
    pub offering_reference: Option<String>,
}

/// The context of one 4me account: its secret, 4me client and webhook-policy verifier.
#[derive(Debug)]
pub struct AccountContext {
    account: String,
    secret_name: SecretName,
    secrets: SecretDocument,
    client: Option<FourMeClient>,
    verifier: Option<Verifier>,
}

impl AccountContext {
    /// The 4me account id.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The name of the secret the context was loaded from.
    pub fn secret_name(&self) -> &SecretName {
        &self.secret_name
    }

    /// The secret document as stored.
    pub fn secrets(&self) -> &SecretDocument {
        &self.secrets
    }

    /// The 4me client authenticated with the account's OAuth application.
    pub fn client(&self) -> Result<&FourMeClient, ContextError> {
        self.client
            .as_ref()
            .ok_or_else(|| ContextError::MissingCredentials {
                secret: self.secret_name.clone(),
                missing: "application credentials",
            })
    }

    /// The verifier of the account's webhook policy (issuer bound to this account).
    pub fn verifier(&self) -> Result<&Verifier, ContextError> {
        self.verifier
            .as_ref()
            .ok_or_else(|| ContextError::MissingPolicy(self.secret_name.clone()))
    }
}

/// How long a loaded provider context is used before the provider secret is read again. Only
/// `bootstrap` writes that secret; a rotated webhook policy is seen at once anyway (see
/// [`ContextLoader::refreshed_provider`]), a rotated 4me token after at most this long.
pub const PROVIDER_CONTEXT_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// A provider context is read again after a failed verification only when it is at least this
/// old, so that a stream of forged deliveries cannot turn into a stream of Secrets Manager reads.
pub const PROVIDER_REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Loads provider and customer contexts from a [`SecretStore`]. All 4me clients it builds share
/// one HTTP connection pool.
///
/// The provider context is cached across invocations for [`PROVIDER_CONTEXT_TTL`] (clones of the
/// loader share the cache): a warm function verifies a delivery without a Secrets Manager call,
/// and keeps the provider's 4me client with its access token. Customer contexts are read on
/// every call: the functions write customer secrets themselves.
#[derive(Debug, Clone)]
pub struct ContextLoader<S> {
    config: ContextConfig,
    store: S,
    endpoints: Endpoints,
    settings: ClientSettings,
    /// Built on first use (it reads the system's root certificates), then shared by clones.
    http: std::sync::Arc<std::sync::OnceLock<reqwest::Client>>,
    provider: std::sync::Arc<std::sync::Mutex<Option<CachedProvider>>>,
    provider_ttl: std::time::Duration,
    refresh_interval: std::time::Duration,
}

#[derive(Debug)]
struct CachedProvider {
    loaded: std::time::Instant,
    context: std::sync::Arc<AccountContext>,
}

impl<S: SecretStore> ContextLoader<S> {
    /// A loader over `store`, building 4me clients for `endpoints` with `settings`.
    pub fn new(
        config: ContextConfig,
        store: S,
        endpoints: Endpoints,
        settings: ClientSettings,
    ) -> Result<Self, ContextError> {
        Ok(Self {
            config,
            store,
            endpoints,
            settings,
            http: std::sync::Arc::default(),
            provider: std::sync::Arc::default(),
            provider_ttl: PROVIDER_CONTEXT_TTL,
            refresh_interval: PROVIDER_REFRESH_INTERVAL,
        })
    }

    /// Sets how long the provider context is cached ([`PROVIDER_CONTEXT_TTL`] by default; zero:
    /// read on every call) and how old it must be before a failed verification reads it again
    /// ([`PROVIDER_REFRESH_INTERVAL`] by default).
    #[must_use]
    pub fn with_provider_cache(
        mut self,
        ttl: std::time::Duration,
        refresh_interval: std::time::Duration,
    ) -> Self {
        self.provider_ttl = ttl;
        self.refresh_interval = refresh_interval;
        self
    }

    /// The configuration this loader was built with.
    pub fn config(&self) -> &ContextConfig {
        &self.config
    }

    /// The store contexts are read from.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The provider context, from `<app>/<domain>/<provider>`: the cached one while younger than
    /// the cache's time to live, else read again (a failed read is not cached).
    pub async fn provider(&self) -> Result<std::sync::Arc<AccountContext>, ContextError> {
        if let Some(cached) = self.cached_provider()
            && cached.loaded.elapsed() < self.provider_ttl
        {
            return Ok(cached.context);
        }
        self.reload_provider().await
    }

    /// After `used` failed to verify a delivery: the provider context read again when `used`
    /// is still the cached one and at least the refresh interval old (a webhook policy
    /// rotated by `bootstrap` since it was read), else `None` (verify once, not in a loop).
    pub async fn refreshed_provider(
        &self,
        used: &std::sync::Arc<AccountContext>,
    ) -> Result<Option<std::sync::Arc<AccountContext>>, ContextError> {
        match self.cached_provider() {
            Some(cached)
                if std::sync::Arc::ptr_eq(&cached.context, used)
                    && cached.loaded.elapsed() >= self.refresh_interval =>
            {
                self.reload_provider().await.map(Some)
            }
            _ => Ok(None),
        }
    }

    fn cached_provider(&self) -> Option<CachedProvider> {
        let cache = self
            .provider
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.as_ref().map(|cached| CachedProvider {
            loaded: cached.loaded,
            context: std::sync::Arc::clone(&cached.context),
        })
    }

    async fn reload_provider(&self) -> Result<std::sync::Arc<AccountContext>, ContextError> {
        let context = std::sync::Arc::new(self.load_provider().await?);
        *self
            .provider
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(CachedProvider {
            loaded: std::time::Instant::now(),
            context: std::sync::Arc::clone(&context),
        });
        Ok(context)
    }

    async fn load_provider(&self) -> Result<AccountContext, ContextError> {
        let config = &self.config;
        let name = provider_secret_name(&config.app, &config.domain, &config.provider_account)?;
        let secrets = self.load(&name).await?;
        let credentials = match (secrets.get_str("clientID"), secrets.get_str("token")) {
            (Some(id), Some(token)) if !id.is_empty() && !token.is_empty() => {
                Some(Credentials::new(id, token))
            }
            _ => None,
        };
        let verifier = match secrets.get("policy") {
            Some(policy) => {
                let current = self.verifier(&name, &config.provider_account, policy, PROVIDER)?;
                Some(self.with_previous_policy(&name, &secrets, current)?)
            }
            None => None,
        };
        self.assemble(
            config.provider_account.clone(),
            name,
            secrets,
            credentials,
            verifier,
        )
    }

    /// The context of `account` for this loader's offering, from
    /// `<app>/<ref>/<domain>/instances/<account>`.
    pub async fn customer(&self, account: &str) -> Result<AccountContext, ContextError> {
        let config = &self.config;
        let reference = config
            .offering_reference
            .as_deref()
            .ok_or(ContextError::NoOfferingReference)?;
        let name = customer_secret_name(&config.app, reference, &config.domain, account)?;
        let secrets = self.load(&name).await?;
        let credentials = secrets.get("application").and_then(|application| {
            let id = application.get("client_id")?.as_str()?;
            let secret = application.get("client_secret")?.as_str()?;
            (!id.is_empty() && !secret.is_empty()).then(|| Credentials::new(id, secret))
        });
        let verifier = match secrets.get("policy") {
            Some(policy) => Some(self.verifier(&name, account, policy, CUSTOMER)?),
            None => None,
        };
        self.assemble(account.to_owned(), name, secrets, credentials, verifier)
    }

    fn http_client(&self, account: &str) -> Result<reqwest::Client, ContextError> {
        if let Some(http) = self.http.get() {
            return Ok(http.clone());
        }
        let built = crate::tls::http_client_builder()
            .timeout(self.settings.timeout)
            .build()
            .map_err(|e| ContextError::Client {
                account: account.to_owned(),
                source: crate::fourme::FourMeError::Request {
                    operation: "client setup".into(),
                    message: e.to_string(),
                },
            })?;
        Ok(self.http.get_or_init(|| built).clone())
    }

    async fn load(&self, name: &SecretName) -> Result<SecretDocument, ContextError> {
        self.store
            .get(name)
            .await?
            .ok_or_else(|| ContextError::NotFound(name.clone()))
    }

    fn assemble(
        &self,
        account: String,
        secret_name: SecretName,
        secrets: SecretDocument,
        credentials: Option<Credentials>,
        verifier: Option<Verifier>,
    ) -> Result<AccountContext, ContextError> {
        if credentials.is_none() && verifier.is_none() {
            return Err(ContextError::Empty(secret_name));
        }
        let http = match credentials {
            Some(_) => Some(self.http_client(&account)?),
            None => None,
        };
        let client = credentials.zip(http).map(|(credentials, http)| {
            FourMeClient::with_http_client(
                http,
                self.endpoints.clone(),
                account.clone(),
                credentials,
                self.settings.clone(),
            )
        });
        Ok(AccountContext {
            account,
            secret_name,
            secrets,
            client,
            verifier,
        })
    }

    /// The provider verifier, also accepting the policy bootstrap replaced while its grace
    /// period lasts (`previousPolicy`, with `acceptedUntil` in seconds since the epoch).
    fn with_previous_policy(
        &self,
        name: &SecretName,
        secrets: &SecretDocument,
        current: Verifier,
    ) -> Result<Verifier, ContextError> {
        let Some(previous) = secrets.get("previousPolicy") else {
            return Ok(current);
        };
        let until = previous
            .get("acceptedUntil")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        if until < now {
            return Ok(current);
        }
        let previous = self.verifier(name, &self.config.provider_account, previous, PROVIDER)?;
        Ok(current.accepting_previous(previous, until))
    }

    fn verifier(
        &self,
        secret: &SecretName,
        account: &str,
        policy: &Value,
        keys: &PolicyKeys,
    ) -> Result<Verifier, ContextError> {
        let invalid = |reason: String| ContextError::InvalidPolicy {
            secret: secret.clone(),
            reason,
        };
        let algorithm: Algorithm = policy
            .get(keys.algorithm)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("missing {}", keys.algorithm)))?
            .parse()
            .map_err(|_| invalid(format!("unknown {}", keys.algorithm)))?;
        let pem = policy
            .get(keys.key)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("missing {}", keys.key)))?;
        let key = PolicyKey::from_pem(pem).map_err(|e: JwtError| invalid(e.to_string()))?;
        let audience = (keys.audience_rule)(policy.get(keys.audience))
            .ok_or_else(|| invalid(format!("missing {}", keys.audience)))?;
        let policy = WebhookPolicy {
            algorithm,
            key,
            audience,
        };
        Verifier::for_account(policy, account, &self.config.domain)
            .map_err(|e| invalid(e.to_string()))
    }
}

/// The key names of a stored policy, which differ between provider and customer secrets.
struct PolicyKeys {
    algorithm: &'static str,
    key: &'static str,
    audience: &'static str,
    audience_rule: fn(Option<&Value>) -> Option<Audience>,
}

/// The provider policy is ours (created by bootstrap with an audience): its audience is required.
const PROVIDER: &PolicyKeys = &PolicyKeys {
    algorithm: "jwtAlg",
    key: "publicKeyPem",
    audience: "jwtAudience",
    audience_rule: |value| match value {
        Some(Value::String(audience)) if !audience.is_empty() => {
            Some(Audience::Exact(audience.clone()))
        }
        _ => None,
    },
};

/// Customer policies come from 4me as the customer configured them; the audience may be null.
const CUSTOMER: &PolicyKeys = &PolicyKeys {
    algorithm: "algorithm",
    key: "public_key",
    audience: "audience",
    audience_rule: |value| Some(Audience::from_stored(value)),
};
