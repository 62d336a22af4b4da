//! HTTP handler (docs/original.md#lansweeper): the OAuth callback `GET /integration/<customer>/<callback secret>`
//! (`?code=`) and the manual refresh (`?refresh=1`, queued instead of run inside API Gateway's
//! 29 s limit).

use app_builder_core::events::{header, path_param, query_param};
use app_builder_core::fourme::instances::{InstanceUpdate, find_app_instance, update_app_instance};
use app_builder_core::response::{ApiError, ApiResponse};
use app_builder_core::secrets::SecretStore;
use app_builder_core::state::StateStore;
use http::Method;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use secrecy::ExposeSecret;
use serde_json::Value;
use tracing::Instrument as _;

use crate::api::ClientCredentials;
use crate::configure::{CONFIGURE_PATH, ERROR_TITLE, Session, connected_page, session_key};
use crate::instance::{InstanceConfig, fields, status};
use crate::{
    CALLBACK_SECRET_KEY, CONNECTION_ERROR, LansweeperFunction, RefreshQueue, client_secret,
};
use app_builder_core::configuration::page;

/// Public message when the instance configuration cannot be read.
pub(crate) const CONFIGURATION_ERROR: &str = "Unable to process event. Configuration error.";

/// Constant-time equality of two secrets (compared as SHA-256 digests, so lengths do not leak).
fn secrets_match(a: &str, b: &str) -> bool {
    let da = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, a.as_bytes());
    let db = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b.as_bytes());
    aws_lc_rs::constant_time::verify_slices_are_equal(da.as_ref(), db.as_ref()).is_ok()
}

/// The redirect URI Lansweeper called: `https://<Host><requestContext.path>` (REST API), else
/// the request path.
fn callback_url(req: &Request) -> String {
    let host = header(req, "host").unwrap_or_default();
    let path = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.path.clone(),
        _ => None,
    }
    .unwrap_or_else(|| req.uri().path().to_owned());
    format!("https://{host}{path}")
}

impl<S: SecretStore, Q: RefreshQueue, T: StateStore> LansweeperFunction<S, Q, T> {
    /// Handles `ANY /integration/{proxy+}`: 302 to the app instance after a successful
    /// authorization, 200 after a queued manual refresh, 400 `Unauthorized` for an unknown
    /// customer, wrong callback secret, missing code or refused code, 405 for other methods,
    /// 500 `Connection error, please try again later.` when storing or queueing fails.
    pub async fn handle_http(&self, req: &Request) -> Response<Body> {
        match self.http(req).await {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        }
    }

    async fn http(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        let proxy = path_param(req, "proxy").unwrap_or_default();
        if proxy == CONFIGURE_PATH {
            if req.method() != Method::GET {
                return Err(ApiError::MethodNotAllowed);
            }
            return Ok(self.configuration_page(req).await);
        }
        let mut parts = proxy.split('/');
        let customer = parts.next().unwrap_or_default().to_owned();
        let given_secret = parts.next().unwrap_or_default().to_owned();
        if customer.is_empty() {
            return Err(ApiError::Unauthorized);
        }
        let span =
            tracing::info_span!("oauth_callback", account = %customer, offering = %self.offering());
        // Instrumented, not entered: a span guard held across `.await` would tag other tasks' lines.
        async {
            let context = self.loader.customer(&customer).await.map_err(|e| {
                tracing::info!(error = %e, "no customer context");
                ApiError::Unauthorized
            })?;
            if req.method() != Method::GET {
                return Err(ApiError::MethodNotAllowed);
            }
            let stored = context
                .secrets()
                .get_str(CALLBACK_SECRET_KEY)
                .unwrap_or_default();
            if stored.is_empty() || !secrets_match(stored, &given_secret) {
                tracing::info!("callback secret mismatch");
                return Err(ApiError::Unauthorized);
            }
            if query_param(req, "refresh").is_some_and(|v| !v.is_empty() && v != "0" && v != "false") {
                self.queue
                    .enqueue(&customer)
                    .await
                    .map_err(|e| ApiError::upstream(CONNECTION_ERROR, e))?;
                return Ok(ApiResponse::ok(&format!("Triggered refresh of {customer}")));
            }
            // A connection started on the configuration page names its session in `state`.
            let session = self.configuration_session(&customer, req).await;
            let refused = |message: String| match &session {
                Some((session, _)) => Ok(refused_page(&message, &session.link_query)),
                None => Err(ApiError::Unauthorized),
            };
            if let Some(error) = query_param(req, "error").filter(|e| !e.is_empty()) {
                tracing::info!(error = %error, "Lansweeper declined the authorization");
                return refused(format!(
                    "Lansweeper did not authorize the application ({error})."
                ));
            }
            let Some(code) = query_param(req, "code").filter(|c| !c.is_empty()) else {
                return refused("Lansweeper sent no authorization code.".into());
            };

            let provider = self
                .loader
                .provider()
                .await
                .map_err(|e| ApiError::upstream(CONFIGURATION_ERROR, e))?;
            let provider_client = provider
                .client()
                .map_err(|e| ApiError::upstream(CONFIGURATION_ERROR, e))?;
            let instance = find_app_instance(provider_client, self.offering(), &customer)
                .await
                .map_err(|e| ApiError::upstream(CONFIGURATION_ERROR, e))?;
            let config = InstanceConfig::from(&instance);
            let (Some(client_id), Some(secret)) = (config.client_id, client_secret(context.secrets()))
            else {
                return Err(ApiError::upstream(
                    CONFIGURATION_ERROR,
                    "client_id or client_secret missing",
                ));
            };
            let credentials = ClientCredentials {
                client_id,
                client_secret: secret,
            };
            // OAuth binds the code to the callback URL the application has registered: the one this
            // installation was given (the request's own URL when an older version gave none).
            let redirect_uri = instance
                .text(fields::CALLBACK_URL)
                .unwrap_or_else(|| callback_url(req));
            let refresh = match self
                .api
                .exchange_code(&credentials, &code, &redirect_uri)
                .await
            {
                Ok(token) => token,
                Err(e) if e.is_authorization() => {
                    tracing::info!(error = %e, "Lansweeper refused the authorization code");
                    return refused(
                        "Lansweeper refused the authorization: check the application's client id, \
                         secret and callback URL."
                            .into(),
                    );
                }
                Err(e) => return Err(ApiError::upstream(CONNECTION_ERROR, e)),
            };
            let fingerprint =
                crate::credentials_fingerprint(&credentials.client_id, &credentials.client_secret);
            self.store_refresh_token(&context, refresh.expose_secret())
                .await
                .map_err(|e| ApiError::upstream(CONNECTION_ERROR, e))?;
            self.store_validated(context.account(), &fingerprint)
                .await
                .map_err(|e| ApiError::upstream(CONNECTION_ERROR, e))?;
            let update = InstanceUpdate {
                suspended: Some(false),
                suspension_comment: None,
                custom_fields: vec![
                    (
                        fields::CONNECTION_STATUS.into(),
                        Value::from(status::SUCCESS),
                    ),
                    (fields::CALLBACK_URL.into(), Value::Null),
                ],
            };
            update_app_instance(provider_client, &instance.id, &update)
                .await
                .map_err(|e| ApiError::upstream(CONNECTION_ERROR, e))?;
            // An instance being configured is enabled when the customer confirms in 4me; its
            // first sync is queued then (the `enabled` installation change).
            if !instance.disabled {
                self.queue
                    .enqueue(&customer)
                    .await
                    .map_err(|e| ApiError::upstream(CONNECTION_ERROR, e))?;
            }
            tracing::info!(instance = %instance.id, disabled = instance.disabled, "Lansweeper authorized");
            if let Some((session, version)) = session {
                let sites = self.authorized_sites(credentials, refresh, &context).await;
                let key = session_key(self.offering(), &customer, &given_state(req));
                if let Err(e) = self.state.delete(&key, version).await {
                    tracing::warn!(error = %e, "configuration session not deleted (it expires by itself)");
                }
                return Ok(connected_page(&sites, &session.confirmation_url));
            }
            let domain = &self.loader.config().domain;
            Ok(ApiResponse::redirect(&format!(
                "https://{customer}.{domain}/app_instances/{}",
                instance.id
            )))
        }
        .instrument(span)
        .await
    }
}

/// The `state` Lansweeper sent back (empty when none).
fn given_state(req: &Request) -> String {
    query_param(req, "state")
        .map(|s| s.into_owned())
        .unwrap_or_default()
}

/// The page of a connection Lansweeper refused: what happened, nothing stored, and the way to
/// try again (the configuration page, relative to the callback URL).
fn refused_page(message: &str, link_query: &str) -> Response<Body> {
    let again = format!(
        "<p><a class=\"button\" id=\"again\" href=\"../{CONFIGURE_PATH}?{}\">Try again</a></p>",
        page::escape(link_query)
    );
    page::error_then(400, ERROR_TITLE, message, &again)
}

impl<S: SecretStore, Q: RefreshQueue, T: StateStore> LansweeperFunction<S, Q, T> {
    /// The configuration session named by the request's `state` for `account`, with its
    /// record's version; `None` without one.
    async fn configuration_session(&self, account: &str, req: &Request) -> Option<(Session, u64)> {
        let state = given_state(req);
        if state.is_empty() || state.len() > 64 {
            return None;
        }
        let key = session_key(self.offering(), account, &state);
        match self.state.get(&key).await {
            Ok(Some(record)) => serde_json::from_value(record.data)
                .ok()
                .map(|session| (session, record.version)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "configuration session not read");
                None
            }
        }
    }

    /// The names of the sites the new authorization gives access to (none when Lansweeper
    /// cannot tell right now: the connection stands).
    async fn authorized_sites(
        &self,
        credentials: ClientCredentials,
        refresh: secrecy::SecretString,
        customer: &app_builder_core::context::AccountContext,
    ) -> Vec<String> {
        let mut session = self.api.session(credentials, refresh);
        let sites = session.sites().await;
        self.store_rotated(&mut session, customer).await;
        match sites {
            Ok(sites) => sites.into_iter().map(|s| s.name).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "authorized sites not read");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::secrets_match;

    #[test]
    fn compares_secrets_exactly() {
        assert!(secrets_match("7c5c0a", "7c5c0a"));
        assert!(!secrets_match("7c5c0a", "7c5c0b"));
        assert!(!secrets_match("7c5c0a", "7c5c0a0"));
        assert!(!secrets_match("7c5c0a", ""));
    }
}
