//! In-memory state of the sandbox: accounts, OAuth applications, tokens, faults, rate-limit
//! windows and the 4me records (stored generically as JSON field maps keyed by node id).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::Rng as _;
use serde_json::{Map, Value};

use crate::keys::PolicyKey;
use crate::webhooks::Delivery;
use crate::{
    Fault, FaultTarget, HOURLY_COST, HOURLY_REQUESTS, OperationAnswer, OperationFault, RATE_LIMIT,
    RATE_WINDOW, Stats,
};

/// A registered OAuth application.
#[derive(Clone)]
pub(crate) struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
    pub account: String,
    pub node_id: String,
}

/// An issued access token.
#[derive(Clone)]
pub(crate) struct TokenInfo {
    pub account: String,
    pub expires_at: Instant,
}

/// A pending or ready async query result.
pub(crate) struct AsyncResult {
    pub polls_remaining: u32,
    pub body: Value,
}

/// A 4me record: node id, sequence number, type name, owning account and its fields
/// (camelCase keys, as in GraphQL).
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub id: String,
    pub num: u64,
    pub kind: &'static str,
    pub account: String,
    pub fields: Map<String, Value>,
}

impl Record {
    /// A string field.
    pub fn str(&self, key: &str) -> Option<String> {
        match self.fields.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }

    /// A boolean field (absent → `None`).
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.fields.get(key).and_then(Value::as_bool)
    }

    /// A field deserialized into `T`.
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.fields
            .get(key)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// A string-list field.
    pub fn strings(&self, key: &str) -> Vec<String> {
        self.get::<Vec<String>>(key).unwrap_or_default()
    }
}

/// Outcome of a rate-limit check: the token's hourly request and cost budgets (what the
/// `x-ratelimit-*` and `x-costlimit-*` headers report) and whether a limit (the hourly ones or
/// the 20 requests per 2 s) refused the request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateInfo {
    pub limit: u32,
    pub remaining: u32,
    /// Unix time (seconds) when the hourly window resets.
    pub reset: u64,
    pub cost_limit: u32,
    pub cost_remaining: u32,
    /// Cost points of this request.
    pub cost: u32,
    /// Seconds to wait when a limit is exceeded.
    pub retry_after: u64,
    pub exceeded: bool,
}

impl RateInfo {
    /// The budgets of a request no token is charged for (a fresh window).
    pub fn uncharged(limits: HourlyLimits) -> RateInfo {
        RateInfo {
            limit: limits.requests,
            remaining: limits.requests,
            reset: unix_now() + HOUR_SECS,
            cost_limit: limits.cost,
            cost_remaining: limits.cost,
            cost: 0,
            retry_after: 0,
            exceeded: false,
        }
    }
}

/// A token's hourly budget: a fixed 60-minute window from its first request.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HourWindow {
    pub start: u64,
    pub requests: u32,
    pub cost: u32,
}

/// The hourly limits the sandbox enforces per token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HourlyLimits {
    pub requests: u32,
    pub cost: u32,
    /// Cost points of one counted request.
    pub request_cost: u32,
}

impl Default for HourlyLimits {
    fn default() -> Self {
        HourlyLimits {
            requests: HOURLY_REQUESTS,
            cost: HOURLY_COST,
            request_cost: 1,
        }
    }
}

/// Drops the requests older than `length` from a sliding rate window.
fn slide(window: &mut VecDeque<Instant>, now: Instant, length: Duration) {
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= length)
    {
        window.pop_front();
    }
}

/// Length of the hourly windows.
pub(crate) const HOUR_SECS: u64 = 3600;

/// The whole mutable sandbox state.
pub(crate) struct State {
    pub accounts: BTreeSet<String>,
    pub oauth_apps: HashMap<String, OAuthApp>,
    pub tokens: HashMap<String, TokenInfo>,
    pub token_lifetime: Duration,
    pub faults: Vec<Fault>,
    pub operation_faults: Vec<OperationFault>,
    pub stats: Stats,
    pub windows: HashMap<String, VecDeque<Instant>>,
    pub rate_window: Duration,
    pub hours: HashMap<String, HourWindow>,
    /// What each token used since the sandbox started (reported by `Sandbox::token_usage`).
    pub usage: HashMap<String, crate::TokenUsage>,
    /// The requests of each account's tokens together in the last rate window, and the most
    /// there ever were (4me documents its limits per token; whether a client-credentials
    /// application's tokens share one budget it does not say, so the stricter figure is kept too).
    pub account_windows: HashMap<String, (VecDeque<Instant>, usize)>,
    pub hourly: HourlyLimits,
    pub async_delay: u32,
    pub async_results: HashMap<String, AsyncResult>,
    pub seq: u64,
    pub records: BTreeMap<String, Record>,
    /// Ids of the `Product` and `ConfigurationItem` records by (account, kind, `sourceID`), so
    /// that a `discoveredConfigurationItems` upsert finds its records without scanning them all.
    /// An entry may be stale (the record's `sourceID` changed or it was deleted):
    /// [`State::by_source_id`] checks each record.
    source_index: HashMap<(String, &'static str, String), Vec<String>>,
    pub policy_keys: HashMap<String, PolicyKey>,
    /// Who signed each token the sandbox issued, by `jti`: (account, policy id, subject), so
    /// that a delivery can be signed again ([`crate::Sandbox::resign`]).
    pub signed: HashMap<String, (String, String, String)>,
    pub deliveries: Vec<Delivery>,
    pub verify_codes: HashMap<String, String>,
    /// Uploaded avatars by record node id: (file name, bytes).
    pub avatars: HashMap<String, (String, Vec<u8>)>,
}

/// Random lowercase hex string of `bytes` random bytes.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// The 4me-style node id of record `num` of type `kind`.
pub(crate) fn node_id(domain: &str, kind: &str, num: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{domain}/{kind}/{num}"))
}

/// Unix time in seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl State {
    pub fn new() -> State {
        State {
            accounts: BTreeSet::new(),
            oauth_apps: HashMap::new(),
            tokens: HashMap::new(),
            token_lifetime: Duration::from_secs(3600),
            faults: Vec::new(),
            operation_faults: Vec::new(),
            stats: Stats::default(),
            windows: HashMap::new(),
            rate_window: RATE_WINDOW,
            hours: HashMap::new(),
            usage: HashMap::new(),
            account_windows: HashMap::new(),
            hourly: HourlyLimits::default(),
            async_delay: 0,
            async_results: HashMap::new(),
            seq: 0,
            records: BTreeMap::new(),
            source_index: HashMap::new(),
            policy_keys: HashMap::new(),
            signed: HashMap::new(),
            deliveries: Vec::new(),
            verify_codes: HashMap::new(),
            avatars: HashMap::new(),
        }
    }

    pub fn add_account(&mut self, account: &str) {
        self.accounts.insert(account.to_owned());
    }

    pub fn next_num(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn add_oauth_application(&mut self, account: &str) -> OAuthApp {
        self.add_account(account);
        let num = self.next_num();
        let app = OAuthApp {
            client_id: random_hex(16),
            client_secret: random_hex(32),
            account: account.to_owned(),
            node_id: node_id(crate::SANDBOX_DOMAIN, "OauthApplication", num),
        };
        self.oauth_apps.insert(app.client_id.clone(), app.clone());
        app
    }

    /// Issues a token for valid credentials.
    pub fn issue_token(&mut self, client_id: &str, client_secret: &str) -> Option<(String, u64)> {
        let app = self.oauth_apps.get(client_id)?;
        if app.client_secret != client_secret {
            return None;
        }
        let account = app.account.clone();
        let token = random_hex(32);
        let lifetime = self.token_lifetime;
        self.tokens.insert(
            token.clone(),
            TokenInfo {
                account,
                expires_at: Instant::now() + lifetime,
            },
        );
        Some((token, lifetime.as_secs()))
    }

    pub fn expire_all_tokens(&mut self) {
        let now = Instant::now();
        for info in self.tokens.values_mut() {
            info.expires_at = now;
        }
    }

    /// The account of a valid (known, unexpired) token.
    pub fn token_account(&self, token: &str) -> Option<String> {
        let info = self.tokens.get(token)?;
        (Instant::now() < info.expires_at).then(|| info.account.clone())
    }

    /// Takes the next fault matching `endpoint`, if any.
    pub fn take_fault(&mut self, endpoint: FaultTarget) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|f| f.target().matches(endpoint))?;
        let mut fault = self.faults[index].clone();
        let times = self.faults[index].times_mut();
        *times = times.saturating_sub(1);
        if *times == 0 {
            self.faults.remove(index);
        }
        if *fault.times_mut() == 0 {
            return self.take_fault(endpoint);
        }
        self.stats.faults_served += 1;
        Some(fault)
    }

    /// Takes the next operation fault of `account` naming one of `operations`, if any.
    pub fn take_operation_fault(
        &mut self,
        account: &str,
        operations: &[String],
    ) -> Option<OperationAnswer> {
        let index = self.operation_faults.iter().position(|f| {
            f.times > 0 && f.account == account && operations.contains(&f.operation)
        })?;
        let fault = &mut self.operation_faults[index];
        fault.times -= 1;
        let answer = fault.answer.clone();
        if fault.times == 0 {
            self.operation_faults.remove(index);
        }
        self.stats.faults_served += 1;
        Some(answer)
    }

    /// Checks (and with `consume`, counts) a request of token `key`: the sliding window of
    /// [`RATE_LIMIT`] requests per `rate_window`, then the hourly request and cost budgets.
    pub fn rate(&mut self, key: &str, consume: bool) -> RateInfo {
        let now = Instant::now();
        let now_unix = unix_now();
        let limits = self.hourly;
        let hour = self.hours.entry(key.to_owned()).or_default();
        if hour.requests == 0 || now_unix >= hour.start + HOUR_SECS {
            *hour = HourWindow {
                start: now_unix,
                ..HourWindow::default()
            };
        }
        let mut info = RateInfo {
            limit: limits.requests,
            remaining: limits.requests.saturating_sub(hour.requests),
            reset: hour.start + HOUR_SECS,
            cost_limit: limits.cost,
            cost_remaining: limits.cost.saturating_sub(hour.cost),
            cost: 0,
            retry_after: 0,
            exceeded: false,
        };
        let usage = self.usage.entry(key.to_owned()).or_default();
        if info.remaining == 0 || info.cost_remaining == 0 {
            info.retry_after = (hour.start + HOUR_SECS).saturating_sub(now_unix).max(1);
            info.exceeded = true;
            usage.refused += 1;
            return info;
        }
        let length = self.rate_window;
        let window = self.windows.entry(key.to_owned()).or_default();
        slide(window, now, length);
        if window.len() >= RATE_LIMIT as usize {
            let until_free = window
                .front()
                .map(|t| length.saturating_sub(now.duration_since(*t)))
                .unwrap_or(Duration::ZERO);
            info.retry_after =
                (until_free.as_secs() + u64::from(until_free.subsec_nanos() > 0)).max(1);
            info.exceeded = true;
            usage.refused += 1;
            return info;
        }
        if consume {
            window.push_back(now);
            usage.requests += 1;
            usage.busiest_window = usage.busiest_window.max(window.len());
            if let Some(token) = self.tokens.get(key) {
                let (window, busiest) = self
                    .account_windows
                    .entry(token.account.clone())
                    .or_default();
                slide(window, now, length);
                window.push_back(now);
                *busiest = (*busiest).max(window.len());
            }
            hour.requests += 1;
            hour.cost = hour.cost.saturating_add(limits.request_cost);
            info.remaining -= 1;
            info.cost_remaining = info.cost_remaining.saturating_sub(limits.request_cost);
            info.cost = limits.request_cost;
        }
        info
    }

    /// Inserts a record and returns its node id.
    pub fn insert(
        &mut self,
        domain: &str,
        kind: &'static str,
        account: &str,
        fields: Map<String, Value>,
    ) -> String {
        let num = self.next_num();
        let id = node_id(domain, kind, num);
        self.records.insert(
            id.clone(),
            Record {
                id: id.clone(),
                num,
                kind,
                account: account.to_owned(),
                fields,
            },
        );
        self.index_source(&id);
        id
    }

    /// Adds record `id` to the `sourceID` index under its current `sourceID`; called whenever
    /// a `Product` or `ConfigurationItem` is created or may have got a new `sourceID`.
    pub fn index_source(&mut self, id: &str) {
        let Some(record) = self.records.get(id) else {
            return;
        };
        if !matches!(record.kind, "Product" | "ConfigurationItem") {
            return;
        }
        let Some(source_id) = record.str("sourceID") else {
            return;
        };
        let ids = self
            .source_index
            .entry((record.account.clone(), record.kind, source_id))
            .or_default();
        if !ids.iter().any(|known| known == id) {
            ids.push(id.to_owned());
        }
    }

    /// The records of type `kind` in `account` whose `sourceID` is `source_id`.
    pub fn by_source_id<'a>(
        &'a self,
        account: &str,
        kind: &'static str,
        source_id: &str,
    ) -> impl Iterator<Item = &'a Record> + 'a {
        let source_id = source_id.to_owned();
        self.source_index
            .get(&(account.to_owned(), kind, source_id.clone()))
            .into_iter()
            .flatten()
            .filter_map(|id| self.records.get(id))
            .filter(move |r| r.str("sourceID").as_deref() == Some(source_id.as_str()))
    }

    /// Record `id` of type `kind` visible to `account`.
    pub fn find(&self, kind: &str, account: &str, id: &str) -> Option<&Record> {
        self.records
            .get(id)
            .filter(|r| r.kind == kind && r.account == account)
    }

    /// Mutable record `id` of type `kind` visible to `account`.
    pub fn find_mut(&mut self, kind: &str, account: &str, id: &str) -> Option<&mut Record> {
        self.records
            .get_mut(id)
            .filter(|r| r.kind == kind && r.account == account)
    }

    /// Adds a note to request `request_id`; returns whether the request exists.
    pub fn add_note(&mut self, domain: &str, request_id: &str, text: &str, internal: bool) -> bool {
        let note_id = node_id(domain, "Note", self.next_num());
        let Some(request) = self.records.get_mut(request_id) else {
            return false;
        };
        let notes = request
            .fields
            .entry("notes")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = notes.as_array_mut() {
            list.push(serde_json::json!({"id": note_id, "text": text, "internal": internal}));
        }
        true
    }

    /// All records of type `kind` in `account`, in creation order.
    pub fn all(&self, kind: &str, account: &str) -> Vec<Record> {
        self.all_matching(kind, account, |_| true)
    }

    /// The records of type `kind` in `account` that `keep` accepts, in creation order (only
    /// those are copied: an account may hold a million discovered CIs).
    pub fn all_matching(
        &self,
        kind: &str,
        account: &str,
        keep: impl Fn(&Record) -> bool,
    ) -> Vec<Record> {
        let mut list: Vec<Record> = self
            .records
            .values()
            .filter(|r| r.kind == kind && r.account == account && keep(r))
            .cloned()
            .collect();
        list.sort_by_key(|r| r.num);
        list
    }

    pub fn seed_ci(&mut self, domain: &str, account: &str, name: &str) -> String {
        let mut fields = Map::new();
        fields.insert("name".into(), Value::String(name.to_owned()));
        fields.insert("status".into(), Value::String("in_production".into()));
        self.insert(domain, "ConfigurationItem", account, fields)
    }

    /// Registers an async result; returns its id.
    pub fn add_async_result(&mut self, body: Value) -> String {
        let id = random_hex(12);
        self.async_results.insert(
            id.clone(),
            AsyncResult {
                polls_remaining: self.async_delay,
                body,
            },
        );
        id
    }
}
