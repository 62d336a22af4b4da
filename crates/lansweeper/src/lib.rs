//! The Lansweeper integration (docs/original.md#lansweeper): OAuth with Lansweeper, scheduled fan-out over
//! SQS and the sync of Lansweeper assets into 4me as discovered configuration items.
//!
//! [`api`] is the Lansweeper Data API client: OAuth token exchange and refresh (rotation reported
//! to the caller), request spacing for Lansweeper's 150 requests per minute, `Retry-After` on 429,
//! backoff on 5xx, GraphQL variables for every filter value, and assets as a lazy page stream.
//! [`LansweeperFunction`] holds the handlers over their ports: the secret store (through the
//! [`ContextLoader`]), the Lansweeper API and the [`queue::RefreshQueue`].
#![warn(missing_docs)]

pub mod api;
mod callback;
pub mod configure;
pub mod discovery;
mod install;
pub mod instance;
pub mod queue;
pub mod references;
mod schedule;
pub mod sync;

use std::time::Duration;

use app_builder_core::context::ContextLoader;
use app_builder_core::events::{Invocation, InvocationFailed};
use app_builder_core::idempotency::Idempotency;
use app_builder_core::secrets::{SecretDocument, SecretStore};
use app_builder_core::state::StateStore;
use secrecy::SecretString;

pub use api::LansweeperApi;
pub use install::{FORGET_FAILED, TOKENS_FORGOTTEN};
pub use queue::{InMemoryQueue, QueueError, RefreshQueue, SqsRefreshQueue};

/// Prefix of this function's idempotency keys in the state store.
pub const CONSUMER: &str = "lansweeper";

/// How long a handled installation change or queue message is remembered: longer than an
/// installation event can be retried (an hour at EventBridge, six at Lambda's asynchronous
/// invocation) and than SQS redelivers a message in practice.
pub const DELIVERY_MEMORY: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// How long handling an event may take when the Lambda context gives no deadline (the
/// function's timeout).
pub const DEFAULT_ATTEMPT_TIME: Duration = Duration::from_secs(900);

/// Top-level key of the customer secret holding the callback secret.
pub const CALLBACK_SECRET_KEY: &str = "callback_secret";
/// Top-level key of the customer secret holding the Lansweeper refresh token.
pub const REFRESH_TOKEN_KEY: &str = "refresh_token";
/// Legacy key of the customer secret holding the SHA-256 (hex) of the Lansweeper client id and
/// secret last authorized or validated: a record of the state table now (a change that leaves
/// them unchanged is not validated again); read when there is no record, dropped with the next
/// refresh-token write.
pub const VALIDATED_CREDENTIALS_KEY: &str = "validated_credentials";
/// Key inside `secrets` holding the Lansweeper client secret (UI secret field).
pub const CLIENT_SECRET_KEY: &str = "client_secret";

/// Suspension comment while waiting for the customer to authorize in Lansweeper.
pub const AWAITING_AUTHORIZATION: &str = "Awaiting authorization from Lansweeper";
/// Suspension comment when the customer's 4me credentials fail.
pub const ROTATE_TOKEN_COMMENT: &str =
    "Unable to connect to customer account. Please rotate the token and unsuspend.";
/// Public message of a failed OAuth callback step.
pub const CONNECTION_ERROR: &str = "Connection error, please try again later.";

/// Hours between syncs of one account (default 8).
pub const ENV_SYNC_INTERVAL: &str = "SYNC_INTERVAL";

/// Seconds before the invocation's deadline at which a sync stops and queues its continuation
/// (default 120: longer than one batch takes, its reference lookups, upload and result).
pub const ENV_SYNC_STOP_MARGIN: &str = "SYNC_STOP_MARGIN";

/// Days after which an unseen asset is no longer synced (default 30).
pub const ENV_LAST_SEEN_DAYS: &str = "LAST_SEEN_DAYS";
/// Longest sync summary stored in the instance (default 15000).
pub const ENV_MAX_SUMMARY_SIZE: &str = "MAX_SUMMARY_SIZE";
/// `;`-separated Lansweeper user names never linked to 4me people
/// (default [`references::DEFAULT_USERS_TO_IGNORE`]).
pub const ENV_USERS_TO_IGNORE: &str = "USERS_TO_IGNORE";

/// Tunables of the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSettings {
    /// Wait before the second app-instance lookup right after an installation.
    pub instance_retry_wait: Duration,
    /// An account is synced again once its last sync started this long ago.
    pub sync_interval: Duration,
    /// Assets last seen longer ago than this many days are not synced (`LAST_SEEN_DAYS`).
    pub last_seen_days: u32,
    /// Longest `sync_summary` before truncation (`MAX_SUMMARY_SIZE`).
    pub max_summary_size: usize,
    /// `;`-separated user names not linked to people (`USERS_TO_IGNORE`).
    pub users_to_ignore: String,
    /// A sync stops this long before its invocation's deadline (`SYNC_STOP_MARGIN`).
    pub stop_margin: Duration,
}

impl Default for FunctionSettings {
    fn default() -> Self {
        FunctionSettings {
            instance_retry_wait: Duration::from_secs(2),
            sync_interval: Duration::from_secs(8 * 3600),
            last_seen_days: 30,
            max_summary_size: 15_000,
            users_to_ignore: references::DEFAULT_USERS_TO_IGNORE.to_owned(),
            stop_margin: Duration::from_secs(120),
        }
    }
}

impl FunctionSettings {
    /// Settings from `SYNC_INTERVAL` (hours, positive; default 8), `LAST_SEEN_DAYS` (30),
    /// `MAX_SUMMARY_SIZE` (15000), `SYNC_STOP_MARGIN` (seconds, 120) and `USERS_TO_IGNORE`.
    pub fn from_settings<L: Fn(&str) -> Option<String>>(
        settings: &app_builder_core::config::Settings<L>,
    ) -> Result<Self, app_builder_core::config::ConfigError> {
        let mut out = FunctionSettings::default();
        if let Some(hours) = settings.parsed::<u64>(ENV_SYNC_INTERVAL)? {
            if hours == 0 {
                return Err(app_builder_core::config::ConfigError::Invalid {
                    name: ENV_SYNC_INTERVAL,
                    reason: "must be a positive number of hours".into(),
                });
            }
            out.sync_interval = Duration::from_secs(hours * 3600);
        }
        if let Some(days) = settings.parsed::<u32>(ENV_LAST_SEEN_DAYS)? {
            out.last_seen_days = days;
        }
        if let Some(size) = settings.parsed::<usize>(ENV_MAX_SUMMARY_SIZE)? {
            out.max_summary_size = size;
        }
        if let Some(seconds) = settings.parsed::<u64>(ENV_SYNC_STOP_MARGIN)? {
            out.stop_margin = Duration::from_secs(seconds);
        }
        if let Some(users) = settings.optional(ENV_USERS_TO_IGNORE) {
            out.users_to_ignore = users;
        }
        Ok(out)
    }
}

/// The Lansweeper function: handlers over a secret store, the Lansweeper API, a refresh queue
/// and the engine's state store (the sync lease).
#[derive(Debug)]
pub struct LansweeperFunction<S, Q, T> {
    loader: ContextLoader<S>,
    api: LansweeperApi,
    queue: Q,
    state: T,
    settings: FunctionSettings,
}

impl<S: SecretStore, Q: RefreshQueue, T: StateStore> LansweeperFunction<S, Q, T> {
    /// A function over its ports.
    pub fn new(
        loader: ContextLoader<S>,
        api: LansweeperApi,
        queue: Q,
        state: T,
        settings: FunctionSettings,
    ) -> Self {
        LansweeperFunction {
            loader,
            api,
            queue,
            state,
            settings,
        }
    }

    /// The refresh queue.
    pub fn queue(&self) -> &Q {
        &self.queue
    }

    /// The Lansweeper API client.
    pub fn api(&self) -> &LansweeperApi {
        &self.api
    }

    fn offering(&self) -> &str {
        self.loader
            .config()
            .offering_reference
            .as_deref()
            .unwrap_or_default()
    }
}

/// The Lansweeper client secret of a customer secret (`secrets.client_secret`).
pub(crate) fn client_secret(doc: &SecretDocument) -> Option<SecretString> {
    doc.get("secrets")
        .and_then(|s| s.get(CLIENT_SECRET_KEY))
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(|s| SecretString::from(s.to_owned()))
}

/// 16 random bytes as hex (callback secrets, configuration states); `None` when the system's
/// random source fails.
pub(crate) fn random_token() -> Option<String> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Fingerprint of Lansweeper client credentials (SHA-256 hex of `client_id \n client_secret`).
pub(crate) fn credentials_fingerprint(client_id: &str, client_secret: &SecretString) -> String {
    use secrecy::ExposeSecret;
    let mut data = client_id.as_bytes().to_vec();
    data.push(b'\n');
    data.extend_from_slice(client_secret.expose_secret().as_bytes());
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The stored refresh token of a customer secret.
pub(crate) fn refresh_token(doc: &SecretDocument) -> Option<SecretString> {
    doc.get_str(REFRESH_TOKEN_KEY)
        .filter(|s| !s.is_empty())
        .map(|s| SecretString::from(s.to_owned()))
}

/// The queue URL setting (`REFRESH_QUEUE_URL`, set by SAM).
pub const ENV_REFRESH_QUEUE_URL: &str = "REFRESH_QUEUE_URL";

/// The function's configuration, read once at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionConfig {
    /// Domain, bootstrap application, provider account and offering reference.
    pub context: app_builder_core::context::ContextConfig,
    /// The Lansweeper API settings.
    pub api: api::ApiSettings,
    /// Function tunables.
    pub function: FunctionSettings,
    /// `REFRESH_QUEUE_URL`.
    pub refresh_queue_url: String,
    /// The engine's state table (`STATE_TABLE`).
    pub state_table: String,
}

impl FunctionConfig {
    /// Reads the configuration; a missing or malformed setting is an error naming it.
    pub fn from_settings<L: Fn(&str) -> Option<String>>(
        settings: &app_builder_core::config::Settings<L>,
    ) -> Result<Self, app_builder_core::config::ConfigError> {
        Ok(FunctionConfig {
            context: settings.context_config(true)?,
            api: api::ApiSettings::from_settings(settings)?,
            function: FunctionSettings::from_settings(settings)?,
            refresh_queue_url: settings.required(ENV_REFRESH_QUEUE_URL)?,
            state_table: settings.required(app_builder_core::state::ENV_STATE_TABLE)?,
        })
    }
}

impl<S: SecretStore, Q: RefreshQueue, T: StateStore> LansweeperFunction<S, Q, T> {
    /// Routes a raw Lambda payload: an event of the engine's bus → installation (once per
    /// change), schedule → fan-out, SQS → sync (once per message), anything else → HTTP.
    ///
    /// SQS batches answer with `batchItemFailures` (transient sync failures); a 5xx of an
    /// installation event or a schedule is an [`InvocationFailed`], so that Lambda retries it.
    pub async fn handle_payload(
        &self,
        payload: serde_json::Value,
        invocation: Invocation<'_>,
    ) -> Result<serde_json::Value, InvocationFailed> {
        use app_builder_core::events::{
            EngineEvent, event_result, http_result, installation_once, unqualified_function_arn,
            unrecognised_payload,
        };
        match EngineEvent::classify_for(payload, &invocation) {
            Ok(EngineEvent::Installation(event)) => {
                let arn = unqualified_function_arn(invocation.function_arn);
                installation_once(
                    &self.deliveries(),
                    CONSUMER,
                    &event,
                    invocation.deadline,
                    self.handle_installation(&event, arn),
                )
                .await
            }
            Ok(EngineEvent::Schedule(_)) => {
                event_result(self.handle_schedule(chrono::Utc::now()).await)
            }
            Ok(EngineEvent::Sqs(event)) => Ok(serde_json::to_value(
                self.handle_sqs(&event, invocation.deadline).await,
            )
            .unwrap_or_default()),
            Ok(EngineEvent::Http(request)) => {
                Ok(http_result(&request, self.handle_http(&request).await))
            }
            Err(err) => Ok(unrecognised_payload(err)),
        }
    }

    /// The idempotency records of deliveries (installation changes, queue messages).
    fn deliveries(&self) -> Idempotency<&T> {
        Idempotency::new(&self.state, DELIVERY_MEMORY)
    }
}

impl<S: SecretStore, Q: RefreshQueue, T: StateStore> app_builder_core::events::PayloadFunction
    for LansweeperFunction<S, Q, T>
{
    const NAME: &'static str = "lansweeper";
    const ATTEMPT_TIME: Duration = DEFAULT_ATTEMPT_TIME;

    fn handle_payload<'a>(
        &'a self,
        payload: serde_json::Value,
        invocation: app_builder_core::events::Invocation<'a>,
    ) -> impl Future<Output = Result<serde_json::Value, app_builder_core::events::InvocationFailed>>
    + Send
    + 'a {
        LansweeperFunction::handle_payload(self, payload, invocation)
    }
}
