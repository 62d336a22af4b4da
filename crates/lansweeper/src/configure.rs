//! The "Connect Lansweeper" page: the offering's configuration URI (`<api url>configure`).
//!
//! 4me sends the installing user here with a signed link (see
//! [`app_builder_core::configuration`]). The page checks the link, then tells the user which
//! callback URL to register with their Lansweeper application and links to Lansweeper's
//! authorization of that application (`<LANSWEEPER_APP_URL>/authorize-app/<client id>`) with a
//! one-time `state`. Lansweeper sends the user back to the callback URL with a `code` and that
//! `state`; the callback ([`crate::callback`]) connects the installation and, finding the
//! configuration session the `state` names, shows the authorized sites and the way back to
//! 4me's `confirmation_url`, where the customer enables the instance. Instances installed
//! without a configuration URI keep the earlier flow (the callback URL shown in the instance,
//! the callback redirecting to the instance page).
//!
//! A refused link, or a refusal by Lansweeper, shows a page saying what went wrong; nothing is
//! stored then.

use app_builder_core::configuration::{ConfigurationLink, LINK_LIFETIME, page, verify_link};
use app_builder_core::fourme::instances::find_app_instance;
use app_builder_core::secrets::SecretStore;
use app_builder_core::state::{Expect, StateStore, Written};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

use crate::instance::{fields, status};
use crate::{CALLBACK_SECRET_KEY, LansweeperFunction, RefreshQueue, refresh_token};

/// The path segment of the configuration page under `/integration/`.
pub const CONFIGURE_PATH: &str = "configure";

/// Title of the configuration pages.
pub(crate) const TITLE: &str = "Connect Lansweeper";
/// Title of the configuration pages when something went wrong.
pub(crate) const ERROR_TITLE: &str = "Lansweeper could not be connected";

/// Seconds after which the "preparing" page reloads itself.
const PREPARING_RELOAD_SECS: u32 = 3;

/// The state record of a configuration session: the `state` given to Lansweeper names it.
pub(crate) fn session_key(offering: &str, account: &str, state: &str) -> String {
    format!("lansweeper/{offering}/{account}/configuration/{state}")
}

/// What the callback needs to finish a configuration the page started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// The app instance being configured.
    pub instance_id: String,
    /// Where the user confirms the configuration in 4me.
    pub confirmation_url: String,
    /// The configuration link's query string (to start again after a refusal).
    pub link_query: String,
}

impl<S: SecretStore, Q: RefreshQueue, T: StateStore> LansweeperFunction<S, Q, T> {
    /// `GET /integration/configure?nodeID=…&account_id=…&confirmation_url=…&created_at=…&X-4me-Signature=…`.
    pub(crate) async fn configuration_page(&self, req: &Request) -> Response<Body> {
        let link = match ConfigurationLink::from_request(req) {
            Ok(link) => link,
            Err(e) => return page::error(e.status(), ERROR_TITLE, &e.to_string()),
        };
        let configuring = match verify_link(&self.loader, &link).await {
            Ok(configuring) => configuring,
            Err(e) => {
                tracing::warn!(node = %link.node_id, account = %link.account, error = ?e, "configuration link refused");
                return page::error(e.status(), ERROR_TITLE, &e.to_string());
            }
        };
        let account = &configuring.account;
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "configuration page unavailable");
            page::error(
                503,
                ERROR_TITLE,
                "The installation could not be read right now. Please try again in a few minutes.",
            )
        };
        let provider = match self.loader.provider().await {
            Ok(provider) => provider,
            Err(e) => return unavailable(&e),
        };
        let instance = match provider.client() {
            Ok(client) => find_app_instance(client, self.offering(), account).await,
            Err(e) => return unavailable(&e),
        };
        let instance = match instance {
            Ok(instance) => instance,
            Err(e) => return unavailable(&e),
        };
        // The callback secret and URL come with the installation's secrets (a separate
        // delivery that may arrive a moment after the user): until then the page reloads.
        let secrets = self.loader.customer(account).await.ok();
        let callback_secret = secrets
            .as_ref()
            .and_then(|c| c.secrets().get_str(CALLBACK_SECRET_KEY).map(str::to_owned));
        let connected = secrets
            .as_ref()
            .and_then(|c| refresh_token(c.secrets()))
            .is_some()
            && instance.text(fields::CONNECTION_STATUS).as_deref() == Some(status::SUCCESS);
        if connected {
            return connected_page(&[], configuring.confirmation_url.as_str());
        }
        let (Some(client_id), Some(callback_url), Some(_)) = (
            instance.text(fields::CLIENT_ID),
            instance.text(fields::CALLBACK_URL),
            callback_secret,
        ) else {
            return preparing_page();
        };
        let Some(state) = crate::random_token() else {
            return unavailable(&"no random source");
        };
        let session = Session {
            instance_id: configuring.instance_id.clone(),
            confirmation_url: configuring.confirmation_url.to_string(),
            link_query: link.query_string(),
        };
        let key = session_key(self.offering(), account, &state);
        let stored = match serde_json::to_value(&session) {
            Ok(value) => {
                self.state
                    .put(
                        &key,
                        &value,
                        Some(app_builder_core::state::now() + LINK_LIFETIME),
                        Expect::Absent,
                    )
                    .await
            }
            Err(e) => return unavailable(&e),
        };
        match stored {
            Ok(Written::Done(_)) => {}
            Ok(Written::Conflict(_)) => return unavailable(&"configuration session exists"),
            Err(e) => return unavailable(&e),
        }
        let authorize = format!(
            "{}/authorize-app/{}?state={}",
            self.api.settings().app_url,
            urlencoding(&client_id),
            state
        );
        tracing::info!(account = %account, "configuration page shown");
        page::html(
            200,
            TITLE,
            &format!(
                "<p>Connect your Lansweeper sites to 4me in two steps.</p>\
<ol><li><p>In Lansweeper, open <strong>Developer Tools</strong>, then your application \
(client id <code>{client_id}</code>), and set its callback URL to:</p>\
<p><code id=\"callback-url\">{callback_url}</code></p></li>\
<li><p>Authorize the application in Lansweeper and choose the sites to synchronize:</p>\
<p><a class=\"button\" id=\"connect\" href=\"{authorize}\">Connect Lansweeper</a></p></li></ol>\
<p>Lansweeper then brings you back here, and from here back to 4me.</p>",
                client_id = page::escape(&client_id),
                callback_url = page::escape(&callback_url),
                authorize = page::escape(&authorize),
            ),
        )
    }
}

/// The page shown until the installation's callback is prepared: it reloads itself (no
/// JavaScript needed).
fn preparing_page() -> Response<Body> {
    let mut response = page::html(
        200,
        TITLE,
        "<p role=\"status\">Your installation is being prepared. This page reloads in a few seconds.</p>",
    );
    if let Ok(value) = http::HeaderValue::from_str(&PREPARING_RELOAD_SECS.to_string()) {
        response.headers_mut().insert("refresh", value);
    }
    response
}

/// The page after a successful connection: the authorized sites and the way back to 4me.
pub(crate) fn connected_page(sites: &[String], confirmation_url: &str) -> Response<Body> {
    let list = if sites.is_empty() {
        String::new()
    } else {
        let items: String = sites
            .iter()
            .map(|s| format!("<li>{}</li>", page::escape(s)))
            .collect();
        format!("<p>The application may read these sites:</p><ul id=\"sites\">{items}</ul>")
    };
    page::html(
        200,
        "Lansweeper is connected",
        &format!(
            "<p role=\"status\">Lansweeper is connected to 4me.</p>{list}\
<p>Return to 4me to finish the installation; the first synchronization starts when the app \
is enabled.</p><p><a class=\"button\" id=\"return\" href=\"{}\">Return to 4me</a></p>",
            page::escape(confirmation_url)
        ),
    )
}

/// Percent-encodes a path segment.
fn urlencoding(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}
