//! Software, people and operating-system references of Lansweeper assets in 4me, looked up with
//! the customer token, and the OS end-of-support updates (docs/original.md#lansweeper).
//!
//! Memory stays flat in the number of assets: the software index holds the account's software
//! CIs (bounded by 4me's data, not by Lansweeper's), people are looked up per page and kept in a
//! cache of at most [`PEOPLE_CACHE_LIMIT`] names, and end-of-support dates are kept per software
//! CI id (again bounded by the software index).

use std::collections::HashMap;

use app_builder_core::fourme::{FourMeClient, FourMeError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::Asset;

/// Default `USERS_TO_IGNORE`: Lansweeper user names that are never linked to people.
pub const DEFAULT_USERS_TO_IGNORE: &str = "Administrator;Guest;DefaultAccount;WDAGUtilityAccount";

/// Most people (found or not) remembered between pages; the cache is emptied when full.
pub const PEOPLE_CACHE_LIMIT: usize = 10_000;

/// Names per people query (the original's `maxPeopleCount`).
const PEOPLE_CHUNK: usize = 100;

const SOFTWARE_QUERY: &str = "query AllSoftware($previousEndCursor: String, $statuses: [CiStatus!]!) { configurationItems(first: 100, after: $previousEndCursor, filter: {ruleSet: {values: [software]}, status: {values: $statuses}}) { pageInfo { hasNextPage endCursor } nodes { id name alternateNames } } }";

const SOFTWARE_STATUSES: [&str; 6] = [
    "reserved",
    "being_built",
    "installed",
    "being_tested",
    "standby_for_continuity",
    "in_production",
];

/// People attributes a Lansweeper user name may match, in order of precedence.
const PEOPLE_FIELDS: [&str; 5] = [
    "authenticationID",
    "primaryEmail",
    "sourceID",
    "employeeID",
    "supportID",
];

const CI_UPDATE: &str = "mutation OsEndOfSupport($input: ConfigurationItemUpdateInput!) { configurationItemUpdate(input: $input) { errors { path message } configurationItem { id } } }";

/// Collapses runs of whitespace to one space and trims.
pub fn collapse(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The user names of an asset (`extractUserNames`, original case): `userName`, then the e-mail
/// (or else the name) of every user not ignored; `userName` is dropped again when a user with
/// exactly that name has an e-mail (the e-mail identifies the same person better).
pub fn asset_users(asset: &Asset, ignored: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |v: &str| {
        if !out.iter().any(|o| o == v) {
            out.push(v.to_owned());
        }
    };
    let user_name = asset
        .asset_basic_info
        .as_ref()
        .and_then(|b| b.user_name.as_deref())
        .filter(|n| !n.is_empty());
    if let Some(n) = user_name {
        push(n);
    }
    for user in &asset.users {
        let Some(name) = user.name.as_deref().filter(|n| !n.is_empty()) else {
            continue;
        };
        if ignored.iter().any(|i| i == name) {
            continue;
        }
        match user.email.as_deref().filter(|e| !e.is_empty()) {
            Some(email) => push(email),
            None => push(name),
        }
    }
    if let Some(n) = user_name {
        let has_email = asset.users.iter().any(|u| {
            u.name.as_deref() == Some(n) && u.email.as_deref().is_some_and(|e| !e.is_empty())
        });
        if has_email {
            out.retain(|v| v != n);
        }
    }
    out
}

/// The collapsed operating-system name of an asset.
fn os_name(asset: &Asset) -> Option<String> {
    asset
        .operating_system
        .as_ref()
        .and_then(|o| o.name.as_deref())
        .map(collapse)
        .filter(|n| !n.is_empty())
}

/// The collapsed software names of an asset (entries without a name skipped).
pub fn software_names(asset: &Asset) -> impl Iterator<Item = String> + '_ {
    asset
        .softwares
        .iter()
        .flatten()
        .filter_map(|s| s.name.as_deref())
        .map(collapse)
        .filter(|n| !n.is_empty())
}

/// `(OS name, end-of-support date)` of an asset when its recognised OS metadata names the same
/// OS (`extractOperatingSystemEndOfSupport`).
fn os_end_of_support(asset: &Asset) -> Option<(String, String)> {
    let os = os_name(asset)?;
    let meta = asset.recognition_info.as_ref()?.os_metadata.as_ref()?;
    let (Some(name), Some(date)) = (meta.name.as_deref(), meta.end_of_support_date.as_deref())
    else {
        return None;
    };
    if os.contains(&collapse(name)) {
        Some((os, date.to_owned()))
    } else {
        tracing::warn!(os = %os, metadata = %name, "operatingSystem and osMetadata mismatch");
        None
    }
}

/// Outcome of the OS end-of-support updates.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OsUpdates {
    /// CI ids updated.
    pub updated: Vec<String>,
    /// CI ids whose update failed.
    pub errored: Vec<String>,
}

/// The references of one sync.
#[derive(Debug)]
pub struct References {
    ignored_users: Vec<String>,
    /// Collapsed software name or alternate name → CI id (first CI wins); loaded on first use.
    software: Option<HashMap<String, String>>,
    /// Lower-cased user name → person id (`None`: not found).
    people: HashMap<String, Option<String>>,
    /// Software CI id → end-of-support date, in first-seen order.
    end_of_support: Vec<(String, String)>,
    saw_operating_systems: bool,
}

impl References {
    /// Empty references; `users_to_ignore` as `USERS_TO_IGNORE` (`;`-separated).
    pub fn new(users_to_ignore: &str) -> Self {
        References {
            ignored_users: users_to_ignore
                .split(';')
                .map(str::to_owned)
                .filter(|s| !s.is_empty())
                .collect(),
            software: None,
            people: HashMap::new(),
            end_of_support: Vec::new(),
            saw_operating_systems: false,
        }
    }

    /// Looks up (with the customer client) every reference of `assets` not known yet, and
    /// records the end-of-support dates of their operating systems.
    pub async fn prepare(
        &mut self,
        client: &FourMeClient,
        assets: &[Asset],
    ) -> Result<(), ReferenceError> {
        let needs_software = assets
            .iter()
            .any(|a| os_name(a).is_some() || software_names(a).next().is_some());
        if needs_software && self.software.is_none() {
            self.software = Some(load_software(client).await?);
        }
        for asset in assets {
            if os_name(asset).is_some() {
                self.saw_operating_systems = true;
            }
            if let Some((os, date)) = os_end_of_support(asset)
                && let Some(id) = self.software_id(&os).map(str::to_owned)
            {
                match self.end_of_support.iter_mut().find(|(i, _)| *i == id) {
                    Some(entry) => entry.1 = date,
                    None => self.end_of_support.push((id, date)),
                }
            }
        }
        let mut wanted: Vec<String> = Vec::new();
        for asset in assets {
            for user in asset_users(asset, &self.ignored_users) {
                let lower = user.to_lowercase();
                if !self.people.contains_key(&lower) && !wanted.contains(&lower) {
                    wanted.push(lower);
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        if self.people.len() + wanted.len() > PEOPLE_CACHE_LIMIT {
            self.people.clear();
        }
        for chunk in wanted.chunks(PEOPLE_CHUNK) {
            let found = lookup_people(client, chunk).await?;
            for name in chunk {
                self.people.insert(name.clone(), found.get(name).cloned());
            }
        }
        Ok(())
    }

    /// The software CI id of a (collapsed) software or OS name.
    pub fn software_id(&self, name: &str) -> Option<&str> {
        self.software.as_ref()?.get(name).map(String::as_str)
    }

    /// The person id of a user name (case-insensitive), when looked up and found.
    pub fn person_id(&self, user: &str) -> Option<&str> {
        self.people.get(&user.to_lowercase())?.as_deref()
    }

    /// The ignored user names.
    pub fn ignored_users(&self) -> &[String] {
        &self.ignored_users
    }

    /// `userIds` of an asset: its users' person ids, else its `userName`'s.
    pub fn user_ids(&self, asset: &Asset) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for user in asset_users(asset, &self.ignored_users) {
            if let Some(id) = self.person_id(&user)
                && !ids.iter().any(|i| i == id)
            {
                ids.push(id.to_owned());
            }
        }
        if ids.is_empty()
            && let Some(id) = asset
                .asset_basic_info
                .as_ref()
                .and_then(|b| b.user_name.as_deref())
                .and_then(|n| self.person_id(n))
        {
            ids.push(id.to_owned());
        }
        ids
    }

    /// Software CI ids of an asset's software (unknown names skipped, no duplicates).
    pub fn software_ids(&self, asset: &Asset) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for name in software_names(asset) {
            if let Some(id) = self.software_id(&name)
                && !ids.iter().any(|i| i == id)
            {
                ids.push(id.to_owned());
            }
        }
        ids
    }

    /// The operating-system CI id of an asset.
    pub fn operating_system_id(&self, asset: &Asset) -> Option<&str> {
        self.software_id(&os_name(asset)?)
    }

    /// Stores the collected end-of-support dates on their OS CIs (one update each); `None` when
    /// no asset had an operating system or there was nothing to store.
    pub async fn update_end_of_support(&self, client: &FourMeClient) -> Option<OsUpdates> {
        if !self.saw_operating_systems || self.end_of_support.is_empty() {
            return None;
        }
        let mut out = OsUpdates::default();
        for (id, date) in &self.end_of_support {
            let input = json!({"id": id, "endOfSupportDate": iso_date(date)});
            match client
                .mutation::<_, Value>(CI_UPDATE, &json!({"input": input}))
                .await
            {
                Ok(_) => out.updated.push(id.clone()),
                Err(e) => {
                    tracing::error!(ci = %id, error = %e, "unable to store end-of-support date");
                    out.errored.push(id.clone());
                }
            }
        }
        Some(out)
    }
}

/// 4me's `ISO8601Date` of a Lansweeper timestamp (`2023-10-10T16:00:00.000Z` → `2023-10-10`).
fn iso_date(value: &str) -> &str {
    match value.get(..10) {
        Some(date) if chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok() => date,
        _ => value,
    }
}

/// A failed reference lookup.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The software query failed.
    #[error("Unable to query 4me software data")]
    Software(#[source] FourMeError),
    /// The people query failed.
    #[error("Unable to query 4me people data")]
    People(#[source] FourMeError),
}

impl ReferenceError {
    /// The 4me error behind the failure.
    pub fn cause(&self) -> &FourMeError {
        match self {
            ReferenceError::Software(e) | ReferenceError::People(e) => e,
        }
    }

    /// The 4me error behind the failure, owned.
    pub fn into_cause(self) -> FourMeError {
        match self {
            ReferenceError::Software(e) | ReferenceError::People(e) => e,
        }
    }
}

async fn load_software(client: &FourMeClient) -> Result<HashMap<String, String>, ReferenceError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Node {
        id: String,
        name: Option<String>,
        #[serde(default)]
        alternate_names: Option<Vec<String>>,
    }
    use futures::TryStreamExt;
    let mut index: HashMap<String, String> = HashMap::new();
    let mut nodes = std::pin::pin!(
        client.paged::<_, Node>(SOFTWARE_QUERY, &json!({"statuses": SOFTWARE_STATUSES}))
    );
    // The first CI of a name wins: names before alternate names within a CI, CIs in 4me order.
    while let Some(node) = nodes.try_next().await.map_err(ReferenceError::Software)? {
        let names = node
            .name
            .iter()
            .chain(node.alternate_names.iter().flatten())
            .map(|n| collapse(n))
            .filter(|n| !n.is_empty());
        for name in names {
            index.entry(name).or_insert_with(|| node.id.clone());
        }
    }
    Ok(index)
}

async fn lookup_people(
    client: &FourMeClient,
    names: &[String],
) -> Result<HashMap<String, String>, ReferenceError> {
    #[derive(Deserialize)]
    struct Connection {
        nodes: Vec<Node>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Node {
        user_name: Option<String>,
        id: String,
    }
    let connections: String = PEOPLE_FIELDS
        .iter()
        .map(|f| {
            format!(
                "{f}: people(first: 100, view: all, filter: {{{f}: {{values: $names}}, disabled: false}}) {{ nodes {{ userName: {f} id }} }}"
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    let query = format!("query People($names: [String!]!) {{ {connections} }}");
    let data: HashMap<String, Connection> = client
        .query(&query, &json!({"names": names}))
        .await
        .map_err(ReferenceError::People)?;
    let mut found = HashMap::new();
    for field in PEOPLE_FIELDS {
        for node in data.get(field).into_iter().flat_map(|c| &c.nodes) {
            if let Some(name) = &node.user_name {
                found
                    .entry(name.to_lowercase())
                    .or_insert_with(|| node.id.clone());
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(value: Value) -> Asset {
        serde_json::from_value(value).unwrap_or_default()
    }

    #[test]
    fn user_names_follow_the_original_extraction() {
        let a = asset(json!({
            "assetBasicInfo": {"userName": "jest"},
            "users": [
                {"name": "jest", "email": "jest-test@4me.com"},
                {"name": "Administrator"},
                {"name": "fred"},
                {"name": "jeste"},
            ]
        }));
        let ignored = vec!["Administrator".to_owned()];
        assert_eq!(
            asset_users(&a, &ignored),
            ["jest-test@4me.com", "fred", "jeste"]
        );
        let b = asset(json!({"assetBasicInfo": {"userName": "Jest"}, "users": [{"name": "Jest"}]}));
        assert_eq!(asset_users(&b, &ignored), ["Jest"]);
    }

    #[test]
    fn names_are_collapsed_and_dates_cut_to_days() {
        assert_eq!(
            collapse("  Microsoft   Office\t365 "),
            "Microsoft Office 365"
        );
        assert_eq!(iso_date("2023-10-10T16:00:00.000Z"), "2023-10-10");
        assert_eq!(iso_date("soon"), "soon");
        let a = asset(json!({
            "operatingSystem": {"name": "Microsoft  Windows Server 2012 R2 Standard"},
            "recognitionInfo": {"osMetadata": {"name": "Windows Server 2012 R2", "endOfSupportDate": "2023-10-10T16:00:00.000Z"}},
            "softwares": [null, {"name": null}, {"name": " Zoom "}]
        }));
        assert_eq!(
            os_end_of_support(&a),
            Some((
                "Microsoft Windows Server 2012 R2 Standard".to_owned(),
                "2023-10-10T16:00:00.000Z".to_owned()
            ))
        );
        assert_eq!(software_names(&a).collect::<Vec<_>>(), ["Zoom"]);
        let mismatch = asset(json!({
            "operatingSystem": {"name": "Ubuntu"},
            "recognitionInfo": {"osMetadata": {"name": "Windows 10", "endOfSupportDate": "2025-10-14"}}
        }));
        assert_eq!(os_end_of_support(&mismatch), None);
    }
}
