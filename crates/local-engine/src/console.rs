//! The console of the local engine, `/_console`: every invocation the engine ran, newest first
//! and live, with its verdict, status, duration and log lines; filters; a replay button per
//! entry; the counters of every function; buttons for what a customer or the scheduler does.
//!
//! Plain server-rendered HTML: it works without JavaScript (filters are a `GET` form, buttons
//! `POST` forms answered with a redirect back), and a few lines of script poll
//! `/_console/rows` for new entries and `/_console/panel` for the counters once a second.
//!
//! | Route | |
//! |---|---|
//! | `GET /_console` | the page (`?function=&account=&outcome=` filter it; `notice` is shown) |
//! | `GET /_console/rows?after=ID` | the rows of the entries after `ID`, newest first (`x-last-entry`: the newest id) |
//! | `GET /_console/panel` | the counters table |
//! | `GET /_console/entries?after=ID` | the entries as JSON (never their input) |
//! | `POST /_console/replay/{id}` | sends entry `id`'s input again (see [`crate::LocalEngine::replay`]) |
//! | `POST /_console/inject` | sends a recorded [`Input`] (JSON) again (`cargo xtask replay`) |
//! | `POST /_console/actions/{name}` | runs an action: `schedule`, or one of the [`ConsoleActions`] |
//!
//! What it shows is what the functions log and count, never a secret: an entry's input (which
//! may hold one) is not shown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Weak};

use app_builder_core::configuration::page::escape;
use app_builder_core::metrics::{self, Counters};
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::future::BoxFuture;
use serde::Deserialize;

use crate::journal::{Entry, Input};
use crate::{Inner, LocalEngine};

/// What the console can do beyond the engine (install an app in the local 4me, add a note,
/// ...) and how a 4me delivery is signed again for a replay; given by whoever runs the local
/// 4me ([`LocalEngine::set_console_actions`]).
pub trait ConsoleActions: Send + Sync {
    /// The actions offered, in order.
    fn actions(&self) -> Vec<ConsoleAction>;

    /// Runs action `name` with the form's `fields`; what happened, or why it failed.
    fn run<'a>(
        &'a self,
        name: &'a str,
        fields: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<String, String>>;

    /// `token` signed again as 4me does for a redelivery (new `jti`, `iat`, `exp`), or `None`
    /// when it is not a token this 4me issued (the request is then sent as received).
    fn resign(&self, token: &str) -> Option<String>;
}

/// A button of the console, with the fields its form asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleAction {
    /// The action's name in its URL.
    pub name: String,
    /// The button's text.
    pub label: String,
    /// The form's fields.
    pub fields: Vec<ConsoleField>,
}

/// A field of an action's form: a choice when `choices` is not empty, else a text input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleField {
    /// The field's name.
    pub name: String,
    /// Its label.
    pub label: String,
    /// The choices (the first is selected).
    pub choices: Vec<String>,
    /// The initial text of a text input.
    pub value: String,
}

/// The built-in action: every scheduled function invoked once now.
pub const SCHEDULE_ACTION: &str = "schedule";

pub(crate) fn router(engine: Weak<Inner>) -> Router {
    Router::new()
        .route("/_console", get(page))
        .route("/_console/rows", get(rows))
        .route("/_console/panel", get(panel))
        .route("/_console/entries", get(entries))
        .route("/_console/replay/{id}", post(replay))
        .route("/_console/inject", post(inject))
        .route("/_console/actions/{name}", post(action))
        .with_state(engine)
}

fn engine(weak: &Weak<Inner>) -> Option<LocalEngine> {
    weak.upgrade().map(|inner| LocalEngine { inner })
}

/// The answer once the engine has stopped.
fn stopped() -> Response {
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

/// The filters of the page (empty: everything).
#[derive(Debug, Default, Deserialize)]
struct Filter {
    #[serde(default)]
    function: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    after: u64,
    #[serde(default)]
    notice: String,
}

impl Filter {
    fn keeps(&self, entry: &Entry) -> bool {
        (self.function.is_empty() || entry.function == self.function)
            && (self.outcome.is_empty() || entry.verdict.outcome() == self.outcome)
            && (self.account.is_empty()
                || entry
                    .account
                    .as_deref()
                    .is_some_and(|account| account.contains(self.account.trim())))
    }

    fn query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("function", &self.function)
            .append_pair("account", &self.account)
            .append_pair("outcome", &self.outcome)
            .finish()
    }
}

const OUTCOMES: [&str; 4] = ["accepted", "duplicate", "rejected", "failed"];

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d1d1f;font-size:14px}\
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.05rem;margin:1.2rem 0 .4rem}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e3e3e3;vertical-align:top}\
th{background:#f6f6f6;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\
.accepted{color:#0a7d32}.duplicate{color:#8a5a00}.rejected{color:#b00020}.failed{color:#b00020;font-weight:600}\
form.inline{display:inline}button{padding:.25rem .7rem;border:1px solid #0a5cd5;background:#0a5cd5;color:#fff;border-radius:3px;cursor:pointer}\
.actions{display:flex;flex-wrap:wrap;gap:.6rem}.actions form{border:1px solid #e3e3e3;border-radius:4px;padding:.5rem;display:flex;gap:.4rem;align-items:center}\
.notice{border-left:4px solid #0a5cd5;padding:.3rem .8rem;background:#f0f5ff}\
pre{margin:.3rem 0;white-space:pre-wrap;word-break:break-all;font-size:12px;background:#f8f8f8;padding:.4rem}\
.muted{color:#6e6e73}summary{cursor:pointer}";

const SCRIPT: &str = "(function(){\
var table=document.getElementById('entries');var last=Number(table.dataset.last)||0;var query=table.dataset.query;\
async function poll(){try{\
var r=await fetch('/_console/rows?after='+last+'&'+query);var html=await r.text();\
if(html.trim()){table.querySelector('thead').insertAdjacentHTML('afterend',html);last=Number(r.headers.get('x-last-entry'))||last;table.dataset.last=last;}\
var p=await fetch('/_console/panel');document.getElementById('metrics').innerHTML=await p.text();\
}catch(e){}setTimeout(poll,1000);}\
setTimeout(poll,1000);})();";

async fn page(State(weak): State<Weak<Inner>>, Query(filter): Query<Filter>) -> Response {
    let Some(engine) = engine(&weak) else {
        return stopped();
    };
    let entries = engine.inner.journal.entries_after(0);
    let last = entries.last().map_or(0, |entry| entry.id);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Local engine console</title><style>{STYLE}</style></head><body>\
<h1>Local engine console</h1><p class=\"muted\">{} · every invocation of the local engine, newest first, live</p>",
        escape(engine.url())
    );
    if !filter.notice.is_empty() {
        let _ = write!(
            html,
            "<p class=\"notice\" id=\"notice\" role=\"status\">{}</p>",
            escape(&filter.notice)
        );
    }
    html.push_str("<h2>Do</h2><div class=\"actions\">");
    html.push_str(&action_form(&ConsoleAction {
        name: SCHEDULE_ACTION.into(),
        label: "Fire the schedule".into(),
        fields: Vec::new(),
    }));
    if let Some(actions) = engine.console_actions() {
        for action in actions.actions() {
            html.push_str(&action_form(&action));
        }
    }
    html.push_str("</div><h2>Counters</h2><div id=\"metrics\">");
    html.push_str(&counters_table(&engine.metrics()));
    html.push_str("</div><h2>Invocations</h2>");
    html.push_str(&filter_form(&engine, &filter));
    let _ = write!(
        html,
        "<table id=\"entries\" data-last=\"{last}\" data-query=\"{}\"><thead><tr><th>#</th><th>Time</th>\
<th>Function</th><th>Source</th><th>Account</th><th>Verdict</th><th class=\"num\">Status</th>\
<th class=\"num\">ms</th><th></th></tr></thead>",
        escape(&filter.query())
    );
    for entry in entries.iter().rev().filter(|entry| filter.keeps(entry)) {
        html.push_str(&row(entry));
    }
    let _ = write!(html, "</table><script>{SCRIPT}</script></body></html>");
    html_response(html)
}

async fn rows(State(weak): State<Weak<Inner>>, Query(filter): Query<Filter>) -> Response {
    let Some(engine) = engine(&weak) else {
        return stopped();
    };
    let entries = engine.inner.journal.entries_after(filter.after);
    let last = entries.last().map_or(filter.after, |entry| entry.id);
    let html: String = entries
        .iter()
        .rev()
        .filter(|entry| filter.keeps(entry))
        .map(row)
        .collect();
    let mut response = html_response(html);
    if let Ok(value) = last.to_string().parse() {
        response.headers_mut().insert("x-last-entry", value);
    }
    response
}

async fn panel(State(weak): State<Weak<Inner>>) -> Response {
    match engine(&weak) {
        Some(engine) => html_response(counters_table(&engine.metrics())),
        None => stopped(),
    }
}

async fn entries(State(weak): State<Weak<Inner>>, Query(filter): Query<Filter>) -> Response {
    match engine(&weak) {
        Some(engine) => axum::Json(engine.entries_after(filter.after)).into_response(),
        None => stopped(),
    }
}

/// Whether a browser says the request comes from another site's page (a form there posting to
/// this console: refused, so no web page can replay or install anything).
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"cross-site")
}

fn refused() -> Response {
    (StatusCode::FORBIDDEN, "cross-site request refused").into_response()
}

async fn replay(
    State(weak): State<Weak<Inner>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    if cross_site(&headers) {
        return refused();
    }
    let Some(engine) = engine(&weak) else {
        return stopped();
    };
    let notice = match engine.replay(id).await {
        Ok(done) => format!("Replayed #{id}: {done}"),
        Err(error) => format!("Could not replay #{id}: {error}"),
    };
    back(&notice)
}

async fn inject(
    State(weak): State<Weak<Inner>>,
    headers: HeaderMap,
    axum::Json(input): axum::Json<Input>,
) -> Response {
    if cross_site(&headers) {
        return refused();
    }
    let Some(engine) = engine(&weak) else {
        return stopped();
    };
    match engine.inject(input, None).await {
        Ok(done) => axum::Json(serde_json::json!({ "message": done })).into_response(),
        Err(error) => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "message": error.to_string() })),
        )
            .into_response(),
    }
}

async fn action(
    State(weak): State<Weak<Inner>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(fields): Form<BTreeMap<String, String>>,
) -> Response {
    if cross_site(&headers) {
        return refused();
    }
    let Some(engine) = engine(&weak) else {
        return stopped();
    };
    if name == SCHEDULE_ACTION {
        engine.run_schedule_once().await;
        return back("The schedule fired");
    }
    let Some(actions) = engine.console_actions() else {
        return back(&format!("No action `{name}`"));
    };
    if !actions.actions().iter().any(|action| action.name == name) {
        return back(&format!("No action `{name}`"));
    }
    match actions.run(&name, &fields).await {
        Ok(done) => back(&done),
        Err(error) => back(&format!("Failed: {error}")),
    }
}

/// Back to the page, showing `notice` (303: the browser follows with a `GET`).
fn back(notice: &str) -> Response {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("notice", notice)
        .finish();
    Redirect::to(&format!("/_console?{query}")).into_response()
}

fn html_response(html: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

fn action_form(action: &ConsoleAction) -> String {
    let mut html = format!(
        "<form method=\"post\" action=\"/_console/actions/{name}\" id=\"action-{name}\">",
        name = escape(&action.name)
    );
    for field in &action.fields {
        let name = escape(&field.name);
        let _ = write!(html, "<label>{} ", escape(&field.label));
        if field.choices.is_empty() {
            let _ = write!(
                html,
                "<input name=\"{name}\" value=\"{}\" size=\"14\"></label>",
                escape(&field.value)
            );
        } else {
            let _ = write!(html, "<select name=\"{name}\">");
            for choice in &field.choices {
                let choice = escape(choice);
                let _ = write!(html, "<option value=\"{choice}\">{choice}</option>");
            }
            html.push_str("</select></label>");
        }
    }
    let _ = write!(
        html,
        "<button type=\"submit\" id=\"run-{}\">{}</button></form>",
        escape(&action.name),
        escape(&action.label)
    );
    html
}

fn filter_form(engine: &LocalEngine, filter: &Filter) -> String {
    let mut html = String::from(
        "<form method=\"get\" action=\"/_console\" id=\"filters\"><label>Function <select name=\"function\"><option value=\"\">all</option>",
    );
    for function in engine.function_names() {
        let selected = if function == filter.function {
            " selected"
        } else {
            ""
        };
        let function = escape(&function);
        let _ = write!(
            html,
            "<option value=\"{function}\"{selected}>{function}</option>"
        );
    }
    let _ = write!(
        html,
        "</select></label> <label>Account <input name=\"account\" value=\"{}\" size=\"18\"></label> \
<label>Outcome <select name=\"outcome\"><option value=\"\">all</option>",
        escape(&filter.account)
    );
    for outcome in OUTCOMES {
        let selected = if outcome == filter.outcome {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            html,
            "<option value=\"{outcome}\"{selected}>{outcome}</option>"
        );
    }
    html.push_str("</select></label> <button type=\"submit\" id=\"filter\">Filter</button></form>");
    html
}

/// One entry: its summary row, and a row with its log lines.
fn row(entry: &Entry) -> String {
    let outcome = entry.verdict.outcome();
    let replayed = entry
        .replay_of
        .map(|of| format!(" <span class=\"muted\">(replay of #{of})</span>"))
        .unwrap_or_default();
    let delivery = entry
        .delivery
        .as_deref()
        .map(|id| format!("<br><span class=\"muted\">delivery {}</span>", escape(id)))
        .unwrap_or_default();
    let time = entry.at.get(11..23).unwrap_or(&entry.at);
    let mut logs = String::new();
    for line in &entry.logs {
        let _ = writeln!(logs, "{}", escape(line));
    }
    format!(
        "<tbody class=\"entry\" id=\"entry-{id}\" data-function=\"{function}\" data-outcome=\"{outcome}\">\
<tr><td class=\"num\">{id}</td><td>{time}</td><td>{function}</td><td>{source}{delivery}{replayed}</td>\
<td class=\"account\">{account}</td><td class=\"verdict {outcome}\">{verdict}</td><td class=\"num status\">{status}</td>\
<td class=\"num\">{duration:.1}</td><td><form class=\"inline\" method=\"post\" action=\"/_console/replay/{id}\">\
<button type=\"submit\" id=\"replay-{id}\">Replay</button></form></td></tr>\
<tr><td></td><td colspan=\"8\"><details><summary>{count} log lines</summary><pre class=\"logs\">{logs}</pre></details></td></tr></tbody>",
        id = entry.id,
        function = escape(&entry.function),
        source = escape(&entry.source),
        account = escape(entry.account.as_deref().unwrap_or("")),
        verdict = escape(&entry.verdict.to_string()),
        status = entry.status,
        duration = entry.duration_ms,
        count = entry.logs.len(),
    )
}

/// The counters the console shows, in this order (the rest of what a function counts is in
/// each entry's EMF line).
const SHOWN: [(&str, &str); 11] = [
    (metrics::INVOCATIONS, "Invocations"),
    (metrics::DELIVERIES_ACCEPTED, "Accepted"),
    (metrics::DELIVERIES_REJECTED, "Rejected"),
    (metrics::DELIVERIES_FAILED, "Failed"),
    (metrics::DUPLICATES, "Duplicates"),
    (metrics::EVENTS_FAILED, "Events failed"),
    (
        metrics::INSTALLATION_EVENTS_PUBLISHED,
        "Installation events published",
    ),
    (
        metrics::INSTALLATION_EVENTS_HANDLED,
        "Installation events handled",
    ),
    (metrics::SYNC_ASSETS, "Sync assets"),
    (metrics::FOURME_THROTTLED, "4me 429s"),
    (metrics::LANSWEEPER_THROTTLED, "Lansweeper 429s"),
];

fn counters_table(totals: &BTreeMap<String, Counters>) -> String {
    let mut html = String::from("<table id=\"counters\"><thead><tr><th>Function</th>");
    for (_, label) in SHOWN {
        let _ = write!(html, "<th class=\"num\">{label}</th>");
    }
    html.push_str("<th>Rejections by check</th></tr></thead><tbody>");
    for (function, counters) in totals {
        let _ = write!(
            html,
            "<tr data-function=\"{0}\"><td>{0}</td>",
            escape(function)
        );
        for (name, _) in SHOWN {
            let _ = write!(
                html,
                "<td class=\"num\" data-metric=\"{name}\">{}</td>",
                counters.get(name)
            );
        }
        let checks: Vec<String> = counters
            .rejections()
            .map(|(check, count)| format!("{check} {count}"))
            .collect();
        let _ = write!(html, "<td>{}</td></tr>", escape(&checks.join(", ")));
    }
    html.push_str("</tbody></table>");
    html
}

impl LocalEngine {
    /// Gives the console its actions and the way to sign a 4me delivery again.
    pub fn set_console_actions(&self, actions: Arc<dyn ConsoleActions>) {
        *self
            .inner
            .console
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(actions);
    }

    pub(crate) fn console_actions(&self) -> Option<Arc<dyn ConsoleActions>> {
        self.inner
            .console
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
