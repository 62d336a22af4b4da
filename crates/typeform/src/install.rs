//! Installation handler (docs/original.md#installation-events + docs/original.md#typeform, with the re-registration improvement).

use app_builder_core::bus::{InstallationEvent, LifecycleStep};
use app_builder_core::context::AccountContext;
use app_builder_core::fourme::FourMeClient;
use app_builder_core::response::{ApiError, ApiResponse};
use app_builder_core::secrets::{
    RECOVERY_WINDOW_DAYS, SecretDocument, SecretStore, customer_secret_name,
};
use app_builder_core::state::{Expect, Lease, StateRecord, StateStore, Written};
use lambda_http::{Body, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{LEGACY_WEBHOOK_TAG, WebhookRegistration, form_id_from_url, webhook_tag};
use app_builder_core::fourme::instances::{
    self, AppInstance, InstanceUpdate, find_app_instance_with_retry, update_app_instance,
};

use crate::fourme::{self, FORM_URL_FIELD};
use crate::{CONSUMER, EVENTS_KEY, REGISTRATION_KEY, TYPEFORM_SECRET_KEY, TypeformFunction};

/// Public message of every failed installation.
pub(crate) const INSTALL_FAILED: &str = "Unable to create Typeform webhook";
/// 200 after a disable or uninstall.
pub const WEBHOOK_REMOVED: &str = "Typeform webhook removed";
/// 500 when the webhook cannot be removed (EventBridge and Lambda retry the event).
pub const REMOVE_FAILED: &str = "Unable to remove Typeform webhook";
const COMMENT_FORM_ID: &str = "Please fill Form ID.";
const COMMENT_TOKEN: &str = "Please fill Typeform token.";
const COMMENT_TYPEFORM: &str =
    "Error creating Typeform webhook. Please check the Typeform token and Form ID.";
const COMMENT_INTERNAL: &str = "Internal error in integration.";
/// The suspension comments this function sets: only such a suspension is lifted when an
/// existing registration is renewed (a suspension by the provider for other reasons stays).
const OUR_COMMENTS: [&str; 4] = [
    COMMENT_FORM_ID,
    COMMENT_TOKEN,
    COMMENT_TYPEFORM,
    COMMENT_INTERNAL,
];

fn suspended_by_us(instance: &AppInstance) -> bool {
    instance.suspended
        && instance
            .suspension_comment
            .as_deref()
            .is_some_and(|c| OUR_COMMENTS.contains(&c))
}

/// What was registered at Typeform, remembered in the engine's state store
/// ([`registration_key`]); an earlier version kept it in the customer secret
/// ([`REGISTRATION_KEY`]), which is read when there is no record and dropped by the next
/// registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Registration {
    form_id: String,
    /// The webhook's tag (registrations of earlier versions: [`LEGACY_WEBHOOK_TAG`]).
    #[serde(default = "legacy_tag")]
    tag: String,
    url: String,
    /// SHA-256 (hex) of the Typeform token used: a changed token is noticed without storing it
    /// twice.
    token_sha256: String,
}

fn legacy_tag() -> String {
    LEGACY_WEBHOOK_TAG.to_owned()
}

/// Why the installation failed (logged; the caller gets [`INSTALL_FAILED`]).
#[derive(Debug, thiserror::Error)]
enum InstallError {
    #[error(transparent)]
    Lookup(#[from] fourme::LookupError),
    #[error("No Typeform form ID known")]
    NoFormId,
    #[error("No Typeform token available")]
    NoToken,
    #[error("Unable to create Typeform webhook: {0}")]
    Typeform(crate::api::TypeformError),
    #[error("Unable to store Typeform webhook secret: {0}")]
    Store(app_builder_core::secrets::SecretStoreError),
    #[error("Unable to record the Typeform webhook registration: {0}")]
    Record(String),
    #[error("Unable to store Typeform webhook secret: typeform_secret missing after the write")]
    NotStored,
    #[error("cannot generate the webhook secret: random generator failed")]
    Random,
    #[error("cannot build the webhook URL from api_url: {0}")]
    ApiUrl(url::ParseError),
}

impl InstallError {
    /// Whether only the customer can fix it (a missing form or token, a token or form Typeform
    /// refuses), as opposed to a failure a retry may get past (4me, Typeform unavailable).
    fn is_for_the_customer(&self) -> bool {
        match self {
            Self::NoFormId | Self::NoToken => true,
            Self::Typeform(err) => err.is_refusal(),
            _ => false,
        }
    }
}

/// Key of the registration record of `account`'s installation of `reference`.
fn registration_key(reference: &str, account: &str) -> String {
    format!("{CONSUMER}/{reference}/{account}/webhook")
}

/// Key of the lease held while an installation event of `account` is handled: two events of
/// one installation handled at once could leave Typeform signing with one webhook secret and
/// the customer secret holding the other.
fn installation_lease_key(reference: &str, account: &str) -> String {
    format!("{CONSUMER}/{reference}/{account}/installation-lease")
}

/// The remembered registration: the state record (and its version), else the legacy key of
/// the customer secret.
fn remembered(record: Option<&StateRecord>, secrets: &SecretDocument) -> Option<Registration> {
    match record {
        Some(record) => serde_json::from_value(record.data.clone()).ok(),
        None => secrets
            .get(REGISTRATION_KEY)
            .and_then(|v| serde_json::from_value(v.clone()).ok()),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 random bytes as 128 lowercase hex characters (as the original).
fn new_webhook_secret() -> Result<String, aws_lc_rs::error::Unspecified> {
    let mut bytes = [0u8; 64];
    aws_lc_rs::rand::fill(&mut bytes)?;
    Ok(hex(&bytes))
}

/// `<api_url>?account=<customer>` (the account is query-encoded).
fn webhook_url(api_url: &str, customer: &str) -> Result<String, url::ParseError> {
    let mut url = url::Url::parse(api_url)?;
    url.query_pairs_mut().append_pair("account", customer);
    Ok(url.into())
}

impl<S: SecretStore, T: StateStore> TypeformFunction<S, T> {
    /// Handles an `Installation changed` event: when secrets were stored or the instance was
    /// enabled, 200 `OK` once the webhook is (or already was) registered for the current form,
    /// token and URL; other steps and other offerings 200 without action; 400
    /// `Unable to create Typeform webhook` when the customer must fix the installation (no form,
    /// no token, a token Typeform refuses: the instance is suspended with the original's
    /// comments); 500 `Unable to gather customer context` / `Unable to gather provider context`
    /// / `Unable to create Typeform webhook` on failures a retry may get past.
    ///
    /// Events of one installation are handled one at a time (a lease in the state store until
    /// `deadline`, the invocation's): another one meanwhile is 503, retried.
    pub async fn handle_installation(
        &self,
        event: &InstallationEvent,
        function_arn: &str,
        deadline: i64,
    ) -> Response<Body> {
        let config = self.loader.config();
        let reference = config.offering_reference.clone().unwrap_or_default();
        if !event.concerns(&config.domain, &reference) {
            return ApiResponse::ok(&format!(
                "Not an installation of {reference}: {}",
                event.detail.offering
            ));
        }
        let account = event.detail.account.clone();
        let step = event.detail.step;
        tracing::info!(
            account = %account,
            offering = %reference,
            step = step.as_str(),
            keys = ?event.detail.keys,
            "installation changed"
        );
        if matches!(step, LifecycleStep::Installed | LifecycleStep::Suspended) {
            return ApiResponse::ok(&format!("No action for {}", step.as_str()));
        }
        let state = self.deliveries.store();
        let lease_key = installation_lease_key(&reference, &account);
        let lease = match Lease::acquire(state, &lease_key, deadline).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                return ApiError::Unavailable {
                    message: "Another change of this installation is being handled".into(),
                    detail: format!("{lease_key} is held"),
                }
                .into_response();
            }
            Err(err) => return ApiError::upstream(INSTALL_FAILED, err).into_response(),
        };
        let response = match step {
            LifecycleStep::Disabled => self.remove_webhook(&account, false).await,
            LifecycleStep::Deleted => self.remove_webhook(&account, true).await,
            // A change without a change of state (e.g. the form URL): the registration follows
            // it while the instance is active; nothing is written when it is unchanged.
            LifecycleStep::Updated => {
                self.register(&account, &reference, function_arn, true)
                    .await
            }
            _ => {
                self.register(&account, &reference, function_arn, false)
                    .await
            }
        };
        if let Err(err) = lease.release(state).await {
            tracing::warn!(error = %err, "installation lease not released; it expires by itself");
        }
        response
    }

    /// Secrets stored or instance enabled: the webhook registered for the current form, token
    /// and URL.
    async fn register(
        &self,
        account: &str,
        reference: &str,
        function_arn: &str,
        only_if_active: bool,
    ) -> Response<Body> {
        let customer = match self.loader.customer(account).await {
            Ok(context) => context,
            Err(err) => {
                return ApiError::upstream("Unable to gather customer context", err)
                    .into_response();
            }
        };
        let provider = match self.loader.provider().await {
            Ok(context) => context,
            Err(err) => {
                return ApiError::upstream("Unable to gather provider context", err)
                    .into_response();
            }
        };
        let provider_client = match provider.client() {
            Ok(client) => client,
            Err(err) => {
                return ApiError::upstream("Unable to gather provider context", err)
                    .into_response();
            }
        };
        match self
            .ensure_webhook(
                &customer,
                provider_client,
                reference,
                function_arn,
                only_if_active,
            )
            .await
        {
            Ok(()) => ApiResponse::ok("OK"),
            // Retrying cannot help until the customer changes the installation, which sends a
            // new event: acknowledged (the instance is suspended with what to fix).
            Err(err) if err.is_for_the_customer() => {
                tracing::warn!(account, error = %err, "installation waits for the customer");
                ApiError::BadRequest(INSTALL_FAILED.into()).into_response()
            }
            Err(err) => ApiError::upstream(INSTALL_FAILED, err).into_response(),
        }
    }

    /// Disabled or uninstalled: deletes exactly the webhook this function registered (its tag on
    /// the form it registered it on; other webhooks of the form stay) and forgets it, so that
    /// enabling registers a new one; after an uninstall the customer secret is scheduled for
    /// deletion. 200 `Typeform webhook removed`; 500 when Typeform or the store fails (retried).
    async fn remove_webhook(&self, account: &str, uninstalled: bool) -> Response<Body> {
        let config = self.loader.config();
        let reference = config.offering_reference.as_deref().unwrap_or_default();
        let name = match customer_secret_name(&config.app, reference, &config.domain, account) {
            Ok(name) => name,
            Err(err) => return ApiError::BadRequest(err.to_string()).into_response(),
        };
        let store = self.loader.store();
        let secrets = match store.get(&name).await {
            Ok(Some(secrets)) => secrets,
            Ok(None) => return ApiResponse::ok("No Typeform webhook registered"),
            Err(err) => return ApiError::upstream(REMOVE_FAILED, err).into_response(),
        };
        let state = self.deliveries.store();
        let key = registration_key(reference, account);
        let record = match state.get(&key).await {
            Ok(record) => record,
            Err(err) => return ApiError::upstream(REMOVE_FAILED, err).into_response(),
        };
        let registered = remembered(record.as_ref(), &secrets);
        let token = secrets
            .get("secrets")
            .and_then(|s| s.get(crate::TYPEFORM_TOKEN_KEY))
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty());
        if let (Some(registered), Some(token)) = (&registered, token) {
            match self
                .typeform
                .delete_webhook(token, &registered.form_id, &registered.tag)
                .await
            {
                Ok(()) => {
                    tracing::info!(account, form_id = %registered.form_id, tag = %registered.tag, "Typeform webhook deleted")
                }
                // The token no longer reaches the form (revoked, another workspace): no retry
                // changes that. The installation is forgotten anyway; a delivery the webhook
                // still makes is answered 410, on which Typeform disables the webhook.
                Err(err) if err.is_refusal() => {
                    tracing::warn!(account, form_id = %registered.form_id, error = %err, "Typeform webhook not deleted: the token is refused")
                }
                Err(err) => return ApiError::upstream(REMOVE_FAILED, err).into_response(),
            }
        }
        if let Some(record) = record
            && let Err(err) = state.delete(&key, record.version).await
        {
            return ApiError::upstream(REMOVE_FAILED, err).into_response();
        }
        let forgotten = if uninstalled {
            store.schedule_deletion(&name, RECOVERY_WINDOW_DAYS).await
        } else {
            let mut update = SecretDocument::new();
            update.insert(REGISTRATION_KEY, Value::Null);
            update.insert(TYPEFORM_SECRET_KEY, Value::Null);
            store.upsert(&name, update).await.map(|_| ())
        };
        match forgotten {
            Ok(()) if uninstalled => {
                tracing::info!(account, secret = %name, "customer secret scheduled for deletion");
                ApiResponse::ok(WEBHOOK_REMOVED)
            }
            Ok(()) => ApiResponse::ok(WEBHOOK_REMOVED),
            Err(err) => ApiError::upstream(REMOVE_FAILED, err).into_response(),
        }
    }

    async fn ensure_webhook(
        &self,
        customer: &AccountContext,
        provider: &FourMeClient,
        reference: &str,
        function_arn: &str,
        only_if_active: bool,
    ) -> Result<(), InstallError> {
        let account = customer.account();
        let api_url = instances::lambda_api_url(provider, function_arn)
            .await
            .map_err(fourme::LookupError::from)?;
        let instance = find_app_instance_with_retry(
            provider,
            reference,
            account,
            self.settings.instance_retry_wait,
        )
        .await
        .map_err(fourme::LookupError::from)?;
        if only_if_active && (instance.disabled || instance.suspended) {
            tracing::info!(
                account,
                "instance not active: the registration waits for it"
            );
            return Ok(());
        }
        let form_url = instance.text(FORM_URL_FIELD);
        let Some(form_id) = form_url.as_deref().and_then(form_id_from_url) else {
            self.suspend(provider, &instance, COMMENT_FORM_ID).await;
            return Err(InstallError::NoFormId);
        };
        let secrets = customer.secrets();
        let token = secrets
            .get("secrets")
            .and_then(|s| s.get(crate::TYPEFORM_TOKEN_KEY))
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty());
        let Some(token) = token else {
            self.suspend(provider, &instance, COMMENT_TOKEN).await;
            return Err(InstallError::NoToken);
        };
        let url = webhook_url(&api_url, account).map_err(InstallError::ApiUrl)?;
        let config = self.loader.config();
        let wanted = Registration {
            form_id,
            tag: webhook_tag(&config.provider_account, reference, account),
            url,
            token_sha256: sha256_hex(token.as_bytes()),
        };
        let state = self.deliveries.store();
        let key = registration_key(reference, account);
        let record = state
            .get(&key)
            .await
            .map_err(|e| InstallError::Record(e.to_string()))?;
        let registered = remembered(record.as_ref(), secrets);
        let has_secret = secrets
            .get_str(TYPEFORM_SECRET_KEY)
            .is_some_and(|s| !s.is_empty());
        if has_secret && registered.as_ref() == Some(&wanted) && !suspended_by_us(&instance) {
            tracing::info!(account, "No need to update Typeform webhook");
            return Ok(());
        }
        // The first registration lifts any suspension, as the original did; a renewal only
        // lifts the suspensions this function set.
        let lift_suspension = if registered.is_none() {
            instance.suspended
        } else {
            suspended_by_us(&instance)
        };
        let secret = match new_webhook_secret() {
            Ok(secret) => secret,
            Err(_) => {
                self.suspend(provider, &instance, COMMENT_INTERNAL).await;
                return Err(InstallError::Random);
            }
        };
        let registration = WebhookRegistration {
            url: &wanted.url,
            enabled: true,
            secret: &secret,
            verify_ssl: true,
        };
        if let Err(err) = self
            .typeform
            .put_webhook(token, &wanted.form_id, &wanted.tag, &registration)
            .await
        {
            self.suspend(provider, &instance, COMMENT_TYPEFORM).await;
            return Err(InstallError::Typeform(err));
        }
        tracing::info!(account, form_id = %wanted.form_id, "Typeform webhook registered");
        // The webhook of a form the customer no longer uses (or under the tag of an earlier
        // version) would keep delivering responses that no longer belong to this installation:
        // delete it. Best effort: a form of another Typeform account (the token changed too)
        // cannot be reached with the new token.
        if let Some(previous) = registered
            .as_ref()
            .filter(|r| r.form_id != wanted.form_id || r.tag != wanted.tag)
        {
            match self
                .typeform
                .delete_webhook(token, &previous.form_id, &previous.tag)
                .await
            {
                Ok(()) => {
                    tracing::info!(account, form_id = %previous.form_id, tag = %previous.tag, "previous Typeform webhook deleted")
                }
                Err(err) => {
                    tracing::warn!(account, form_id = %previous.form_id, tag = %previous.tag, error = %err, "previous Typeform webhook not deleted")
                }
            }
        }
        let mut update = SecretDocument::new();
        update.insert(TYPEFORM_SECRET_KEY, secret);
        // What earlier versions kept in the customer secret: state records now.
        update.insert(EVENTS_KEY, Value::Null);
        update.insert(REGISTRATION_KEY, Value::Null);
        match self
            .loader
            .store()
            .upsert(customer.secret_name(), update)
            .await
        {
            Ok(merged) if merged.contains_key(TYPEFORM_SECRET_KEY) => {}
            Ok(_) => {
                self.suspend(provider, &instance, COMMENT_INTERNAL).await;
                return Err(InstallError::NotStored);
            }
            Err(err) => {
                self.suspend(provider, &instance, COMMENT_INTERNAL).await;
                return Err(InstallError::Store(err));
            }
        }
        let expect = record.map_or(Expect::Absent, |r| Expect::Version(r.version));
        let data =
            serde_json::to_value(&wanted).map_err(|e| InstallError::Record(e.to_string()))?;
        match state.put(&key, &data, None, expect).await {
            Ok(Written::Done(_)) => {}
            Ok(Written::Conflict(_)) => {
                return Err(InstallError::Record(
                    "changed meanwhile by another attempt".into(),
                ));
            }
            Err(err) => return Err(InstallError::Record(err.to_string())),
        }
        if lift_suspension {
            match update_app_instance(provider, &instance.id, &InstanceUpdate::unsuspend()).await {
                Ok(()) => {
                    tracing::info!(account, "Unsuspended instance of {reference} for {account}")
                }
                Err(err) => tracing::error!(account, error = %err, "Unable to unsuspend instance"),
            }
        } else if instance.suspended {
            tracing::info!(
                account,
                "Instance of {reference} for {account} stays suspended (not suspended by this function)"
            );
        } else {
            tracing::info!(
                account,
                "Instance of {reference} for {account} was not suspended"
            );
        }
        Ok(())
    }

    /// Suspends the instance with `comment`; a failure is logged (the installation fails anyway).
    async fn suspend(&self, provider: &FourMeClient, instance: &AppInstance, comment: &str) {
        match update_app_instance(provider, &instance.id, &InstanceUpdate::suspend(comment)).await {
            Ok(()) => tracing::info!(instance = %instance.id, comment, "suspended instance"),
            Err(err) => {
                tracing::error!(instance = %instance.id, error = %err, "Unable to suspend instance")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_128_lowercase_hex_chars() {
        let secret = new_webhook_secret().unwrap();
        assert_eq!(secret.len(), 128);
        assert!(secret.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_ne!(secret, new_webhook_secret().unwrap());
    }

    #[test]
    fn webhook_url_appends_the_account() {
        assert_eq!(
            webhook_url(
                "https://sadasda.execute-api.eu-west-1.amazonaws.com/Prod/integration/",
                "test-account"
            )
            .unwrap(),
            "https://sadasda.execute-api.eu-west-1.amazonaws.com/Prod/integration/?account=test-account"
        );
    }
}
