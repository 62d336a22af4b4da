//! The App Store as a customer sees it, for the offerings provisioned in this sandbox: without a
//! 4me account, anyone can look at an offering's card and fill in its installation form.
//!
//! - `GET /app_store`: a card per app offering (name, avatar, description).
//! - `GET /app_store/{reference}?account=<customer>`: the offering's card (name, avatar,
//!   description, features, compliance, the scopes the customer grants, the automation rules
//!   installed in the customer's account) and its installation form: the offering's UI
//!   extension (its active version's HTML, CSS and JavaScript) in a page that provides the
//!   parts of 4me's `ITRP` object the extensions use (`assets/itrp.js`: `ITRP.$` is jQuery
//!   3.7.1, `ITRP.hooks`, the `.required()` and `.readonly()` jQuery additions, rich-text
//!   fields) and 4me's row and section styles (`assets/4me.css`, an approximation).
//! - Saving checks every visible `required` field, as 4me does, and names the ones missing;
//!   then `POST /app_store/{reference}/install` installs the app for the customer
//!   ([`crate::Sandbox::install_app`]): plain fields become the instance's custom fields,
//!   `data-secret` fields travel only in the `app_instance.secrets-update` delivery.
//! - `GET /avatars/{node}/{file}`: an avatar uploaded through REST.
//!
//! What 4me's own App Store shows beyond this (ratings, the provider's page, pricing) and the
//! exact wording of its messages are not emulated.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::Shared;
use crate::state::Record;
use crate::webhooks::InstallOptions;

const JQUERY: &str = include_str!("../assets/jquery-3.7.1.min.js");
const ITRP: &str = include_str!("../assets/itrp.js");
const STYLE: &str = include_str!("../assets/4me.css");

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/app_store", get(store))
        .route("/app_store/assets/{file}", get(asset))
        .route("/app_store/{reference}", get(offering_page))
        .route("/app_store/{reference}/install", post(install))
        .route("/avatars/{node}/{file}", get(avatar))
        .with_state(shared)
}

/// `&`, `<`, `>`, `"` and `'` escaped for HTML text and attribute values. (The engine has the
/// same in `app_builder_core::configuration::page`; the sandbox stands for 4me and shares no
/// code with the engine it tests.)
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
<link rel=\"stylesheet\" href=\"/app_store/assets/4me.css\"></head><body>{body}</body></html>",
        escape(title)
    )
}

/// The app offerings of every account, by reference.
fn offerings(shared: &Shared) -> Vec<Record> {
    let state = shared.lock();
    state
        .records
        .values()
        .filter(|r| r.kind == "AppOffering")
        .cloned()
        .collect()
}

fn offering(shared: &Shared, reference: &str) -> Option<Record> {
    offerings(shared)
        .into_iter()
        .find(|r| r.str("reference").as_deref() == Some(reference))
}

async fn store(State(shared): State<Arc<Shared>>) -> Response {
    let mut body = String::from("<h1>App Store</h1><div class=\"cards\">");
    for offering in offerings(&shared) {
        let reference = offering.str("reference").unwrap_or_default();
        body.push_str(&format!(
            "<a class=\"card\" href=\"/app_store/{}\">{}<h2>{}</h2><p>{}</p></a>",
            escape(&reference),
            avatar_img(&offering),
            escape(&offering.str("name").unwrap_or_default()),
            escape(&offering.str("description").unwrap_or_default()),
        ));
    }
    body.push_str("</div>");
    html(StatusCode::OK, page("App Store", &body))
}

fn avatar_img(offering: &Record) -> String {
    offering
        .str("avatar")
        .and_then(|url| url.split_once("/avatars/").map(|(_, path)| path.to_owned()))
        .map(|path| {
            format!(
                "<img class=\"avatar\" src=\"/avatars/{}\" alt=\"\" width=\"64\" height=\"64\">",
                escape(&path)
            )
        })
        .unwrap_or_else(|| "<span class=\"avatar none\"></span>".into())
}

#[derive(Debug, Deserialize)]
struct Customer {
    #[serde(default)]
    account: String,
}

async fn offering_page(
    State(shared): State<Arc<Shared>>,
    Path(reference): Path<String>,
    Query(customer): Query<Customer>,
) -> Response {
    let Some(offering) = offering(&shared, &reference) else {
        return html(
            StatusCode::NOT_FOUND,
            page("Not found", "<h1>No such app offering</h1>"),
        );
    };
    let (version, rules) = {
        let state = shared.lock();
        let version = offering
            .str("uiExtensionVersionId")
            .and_then(|id| state.records.get(&id).cloned());
        let rules: Vec<Record> = state
            .records
            .values()
            .filter(|r| {
                r.kind == "AppOfferingAutomationRule"
                    && r.str("appOfferingId").as_deref() == Some(offering.id.as_str())
            })
            .cloned()
            .collect();
        (version, rules)
    };
    let field = |name: &str| escape(&offering.str(name).unwrap_or_default());
    let mut body = format!(
        "<div class=\"offering-card\" id=\"card\">{}<h1 id=\"name\">{}</h1>\
<p id=\"description\">{}</p><h2>Features</h2><p id=\"features\">{}</p>\
<h2>Compliance</h2><p id=\"compliance\">{}</p><h2>Access to your account</h2><ul id=\"scopes\">",
        avatar_img(&offering),
        field("name"),
        field("description"),
        field("features"),
        field("compliance"),
    );
    let scopes: Vec<Value> = offering.get("scopes").unwrap_or_default();
    for scope in scopes {
        let effect = scope["effect"].as_str().unwrap_or("allow");
        for action in scope["actions"].as_array().into_iter().flatten() {
            body.push_str(&format!(
                "<li>{} {}</li>",
                escape(effect),
                escape(action.as_str().unwrap_or_default())
            ));
        }
    }
    body.push_str("</ul><h2>Automation rules added to your account</h2><ul id=\"rules\">");
    for rule in &rules {
        body.push_str(&format!(
            "<li>{} <span class=\"muted\">({})</span></li>",
            escape(&rule.str("name").unwrap_or_default()),
            escape(&rule.str("trigger").unwrap_or_default())
        ));
    }
    if rules.is_empty() {
        body.push_str("<li class=\"muted\">none</li>");
    }
    body.push_str("</ul></div>");

    let version = version.map(|v| {
        (
            v.str("html").unwrap_or_default(),
            v.str("css").unwrap_or_default(),
            v.str("javascript").unwrap_or_default(),
        )
    });
    let (extension_html, css, javascript) = version.unwrap_or_default();
    body.push_str(&format!(
        "<div class=\"install\"><h2>Install</h2>\
<div class=\"row vertical\"><label for=\"customer_account\">Customer account</label>\
<input id=\"customer_account\" type=\"text\" value=\"{}\"></div>\
<div id=\"errors\" class=\"errors hide\" role=\"alert\"></div>\
<form id=\"record_form\" action=\"#\" data-install=\"/app_store/{}/install\">\
<div class=\"ui-extension\" id=\"extension\">{extension_html}</div>\
<button type=\"submit\" id=\"save\">Save</button></form>\
<div id=\"result\" class=\"hide\" role=\"status\"></div></div>",
        escape(&customer.account),
        escape(&reference),
    ));
    // The extension's JavaScript runs as 4me runs it: a function called with the extension's
    // container as `this`, after which the saved values are filled in ('after-prefill').
    body.push_str(&format!(
        "<style>{}</style><script src=\"/app_store/assets/jquery.js\"></script>\
<script src=\"/app_store/assets/itrp.js\"></script>\
<script>AppStorePreview.start(document.getElementById('extension'), function () {{\n{}\n}});</script>",
        css.replace("</", "<\\/"),
        javascript.replace("</script", "<\\/script"),
    ));
    let title = offering.str("name").unwrap_or_default();
    html(StatusCode::OK, page(&title, &body))
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "jquery.js" => (JQUERY, "text/javascript; charset=utf-8"),
        "itrp.js" => (ITRP, "text/javascript; charset=utf-8"),
        "4me.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn avatar(
    State(shared): State<Arc<Shared>>,
    Path((node, file)): Path<(String, String)>,
) -> Response {
    let found = shared.lock().avatars.get(&node).cloned();
    match found {
        Some((name, bytes)) if name == file => {
            let kind = match name.rsplit('.').next() {
                Some("svg") => "image/svg+xml",
                Some("png") => "image/png",
                Some("gif") => "image/gif",
                _ => "image/jpeg",
            };
            ([(header::CONTENT_TYPE, kind)], bytes).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// What the installation form sends.
#[derive(Debug, Deserialize)]
struct Installation {
    account: String,
    #[serde(default)]
    custom_fields: Map<String, Value>,
    #[serde(default)]
    secrets: Map<String, Value>,
}

async fn install(
    State(shared): State<Arc<Shared>>,
    Path(reference): Path<String>,
    axum::Json(installation): axum::Json<Installation>,
) -> Response {
    let account = installation.account.trim().to_owned();
    if account.is_empty() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"message": "Customer account is required."})),
        )
            .into_response();
    }
    let options = InstallOptions {
        custom_fields: installation.custom_fields,
        secrets: installation.secrets,
        ..InstallOptions::default()
    };
    match crate::webhooks::install_app(&shared, &reference, &account, options).await {
        Ok(installed) => axum::Json(json!({
            "app_instance_id": installed.app_instance_id,
            "configuration_url": installed.configuration_url,
            "deliveries": installed.deliveries.iter()
                .map(|d| json!({"event": d.event, "status": d.status}))
                .collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(error) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"message": error.to_string()})),
        )
            .into_response(),
    }
}
