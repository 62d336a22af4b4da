//! The Lansweeper GraphQL schema of the fake (derive-based: unknown fields, arguments or enum
//! values are validation errors).

use std::sync::Arc;

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Enum, Error, ID, InputObject, Json, Object, Result,
    Schema, SimpleObject,
};
use serde_json::Value;

use super::LsShared;
use super::assets::{self, FILTER_PATHS, Filter, Op, SiteData};

/// Maximum element paths per `assetResources` query (Lansweeper's limit).
pub(crate) const MAX_FIELDS: usize = 30;
/// Maximum conditions in one filter (Lansweeper's limit).
pub(crate) const MAX_CONDITIONS: usize = 100;
/// Maximum page size.
pub(crate) const MAX_LIMIT: i32 = 500;

pub(crate) type LsSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub(crate) fn build(shared: Arc<LsShared>) -> LsSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .data(shared)
        .finish()
}

pub(crate) fn sdl() -> String {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .finish()
        .sdl()
}

fn shared<'a>(ctx: &Context<'a>) -> Result<&'a Arc<LsShared>> {
    ctx.data::<Arc<LsShared>>()
}

/// Query root.
pub(crate) struct Query;

#[Object]
impl Query {
    /// Sites the token is authorized for.
    async fn authorized_sites(&self, ctx: &Context<'_>) -> Result<AuthorizedSites> {
        let sites = shared(ctx)?
            .lock()
            .sites
            .iter()
            .map(|s| SiteRef {
                id: ID(s.id.clone()),
                name: s.name.clone(),
            })
            .collect();
        Ok(AuthorizedSites { sites })
    }

    /// One site.
    async fn site(&self, ctx: &Context<'_>, id: ID) -> Result<Site> {
        let site = shared(ctx)?
            .lock()
            .sites
            .iter()
            .find(|s| s.id == id.0)
            .cloned()
            .ok_or_else(|| Error::new(format!("Site {} not found", id.0)))?;
        Ok(Site(Arc::new(site)))
    }
}

/// `authorizedSites` result.
#[derive(SimpleObject)]
pub(crate) struct AuthorizedSites {
    sites: Vec<SiteRef>,
}

/// A site id and name.
#[derive(SimpleObject)]
pub(crate) struct SiteRef {
    id: ID,
    name: String,
}

/// An installation (source) of a site.
#[derive(SimpleObject)]
pub(crate) struct Installation {
    id: ID,
    site_id: ID,
    name: String,
    fqdn: Option<String>,
    description: Option<String>,
    unlinked_on: Option<String>,
    unlinked_by: Option<String>,
    link_status: String,
    installation_date: Option<String>,
    #[graphql(name = "type")]
    kind: String,
    total_assets: i64,
    sync_server_status: String,
    last_available: Option<String>,
    version: String,
    sync_server: String,
}

/// A site.
pub(crate) struct Site(Arc<SiteData>);

/// Page direction.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AssetsPage {
    First,
    Prev,
    Next,
    Last,
}

/// Paging input.
#[derive(InputObject, Debug)]
#[graphql(name = "AssetsPaginationInputValidated")]
pub(crate) struct AssetsPaginationInput {
    limit: Option<i32>,
    page: Option<AssetsPage>,
    cursor: Option<ID>,
}

/// Conjunction of a filter group.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Conjunction {
    And,
    Or,
}

/// Filter operators.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "AssetsFilterOperator")]
pub(crate) enum Operator {
    Equal,
    NotEqual,
    Exists,
    GreaterThan,
    LessThan,
    Regexp,
}

/// One filter condition.
#[derive(InputObject, Debug)]
#[graphql(name = "AssetsFilterConditionInput")]
pub(crate) struct ConditionInput {
    operator: Operator,
    path: String,
    value: String,
}

/// A (nested) filter group.
#[derive(InputObject, Debug)]
#[graphql(name = "AssetsFilterGroupedInput")]
pub(crate) struct GroupInput {
    conjunction: Conjunction,
    groups: Option<Vec<GroupInput>>,
    conditions: Option<Vec<ConditionInput>>,
}

/// Paging info of a page.
#[derive(SimpleObject)]
#[graphql(name = "AssetsPagination")]
pub(crate) struct Pagination {
    limit: i32,
    current: Option<String>,
    next: Option<String>,
    page: Option<AssetsPage>,
}

/// One page of assets.
#[derive(SimpleObject)]
pub(crate) struct AssetResources {
    total: i64,
    pagination: Pagination,
    items: Vec<Json<Value>>,
}

fn to_filter(group: GroupInput, conditions: &mut usize) -> Result<Filter> {
    let mut parts = Vec::new();
    for g in group.groups.unwrap_or_default() {
        parts.push(to_filter(g, conditions)?);
    }
    for c in group.conditions.unwrap_or_default() {
        *conditions += 1;
        if !FILTER_PATHS.contains(&c.path.as_str()) {
            return Err(Error::new(format!(
                "The fake cannot filter on path {:?} (supported: {FILTER_PATHS:?})",
                c.path
            )));
        }
        let op = match c.operator {
            Operator::Equal => Op::Equal,
            Operator::NotEqual => Op::NotEqual,
            Operator::Exists => Op::Exists,
            Operator::GreaterThan => Op::GreaterThan,
            Operator::LessThan => Op::LessThan,
            Operator::Regexp => Op::Regexp,
        };
        if op == Op::Exists && c.value != "true" && c.value != "false" {
            return Err(Error::new(format!(
                "EXISTS takes \"true\" or \"false\", got {:?}",
                c.value
            )));
        }
        if op == Op::Regexp {
            assets::compile_regex(&c.value).map_err(Error::new)?;
        }
        parts.push(Filter::Cond {
            op,
            path: c.path,
            value: c.value,
        });
    }
    Ok(match group.conjunction {
        Conjunction::And => Filter::All(parts),
        Conjunction::Or => Filter::Any(parts),
    })
}

fn parse_cursor(site: &SiteData, cursor: &str) -> Result<u64> {
    cursor
        .strip_prefix(&format!("{}:", site.id))
        .and_then(|rest| rest.parse::<u64>().ok())
        .filter(|i| *i < site.asset_count)
        .ok_or_else(|| Error::new(format!("Invalid cursor {cursor:?}")))
}

#[Object]
impl Site {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Asset types present in the site.
    async fn asset_types(&self) -> Vec<String> {
        assets::ASSET_TYPES
            .iter()
            .map(|(t, _)| (*t).to_owned())
            .collect()
    }

    /// All installations of the site.
    async fn all_installations(&self) -> Vec<Installation> {
        let site = &self.0;
        let n = site.installations.len().max(1) as u64;
        site.installations
            .iter()
            .enumerate()
            .map(|(k, name)| Installation {
                id: ID(site.installation_id(k)),
                site_id: ID(site.id.clone()),
                name: name.clone(),
                fqdn: Some(format!(
                    "{}.example.com",
                    name.to_lowercase().replace(' ', "-")
                )),
                description: None,
                unlinked_on: None,
                unlinked_by: None,
                link_status: "Linked".into(),
                installation_date: Some("2023-01-01T00:00:00.000Z".into()),
                kind: "IT".into(),
                total_assets: (site.asset_count / n + u64::from((k as u64) < site.asset_count % n))
                    as i64,
                sync_server_status: "Up".into(),
                last_available: None,
                version: "11.1.0".into(),
                sync_server: format!("SYNC-{k}"),
            })
            .collect()
    }

    /// One page of assets.
    async fn asset_resources(
        &self,
        ctx: &Context<'_>,
        asset_pagination: Option<AssetsPaginationInput>,
        fields: Vec<String>,
        filters: Option<GroupInput>,
    ) -> Result<AssetResources> {
        let site = &self.0;
        if fields.is_empty() || fields.len() > MAX_FIELDS {
            return Err(Error::new(format!(
                "fields must list 1 to {MAX_FIELDS} element paths, got {}",
                fields.len()
            )));
        }
        let mut conditions = 0;
        let filter = filters.map(|g| to_filter(g, &mut conditions)).transpose()?;
        if conditions > MAX_CONDITIONS {
            return Err(Error::new(format!(
                "at most {MAX_CONDITIONS} filter conditions are allowed"
            )));
        }
        let pagination = asset_pagination.unwrap_or(AssetsPaginationInput {
            limit: None,
            page: None,
            cursor: None,
        });
        let limit = pagination.limit.unwrap_or(100);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::new(format!("limit must be 1 to {MAX_LIMIT}")));
        }
        let page = pagination.page.unwrap_or(AssetsPage::First);
        if page != AssetsPage::First && ctx.look_ahead().field("total").exists() {
            // Lansweeper's documented restriction: counting is only allowed on the first page.
            return Err(Error::new(
                "The field total cannot be requested with page NEXT, PREV or LAST",
            ));
        }
        let from = match page {
            AssetsPage::First => 0,
            AssetsPage::Next => match &pagination.cursor {
                Some(c) => parse_cursor(site, &c.0)?,
                None => return Err(Error::new("page NEXT requires a cursor")),
            },
            other => {
                return Err(Error::new(format!(
                    "The fake does not implement page {other:?}"
                )));
            }
        };
        let key = format!("{}|{:?}", site.id, filter);
        let state = shared(ctx)?;
        let cached = state.lock().totals.get(&key).copied();
        let total = match cached {
            Some(t) => t,
            None => {
                let t = assets::count(site, filter.as_ref());
                state.lock().totals.insert(key, t);
                t
            }
        };
        let (indices, next) = assets::page(site, filter.as_ref(), from, limit as usize);
        let paths: Vec<Vec<&str>> = fields.iter().map(|f| f.split('.').collect()).collect();
        let items = indices
            .iter()
            .map(|i| Json(assets::project(&assets::asset(site, *i), &paths)))
            .collect();
        {
            let mut s = state.lock();
            s.stats.asset_pages += 1;
            s.stats.assets_served += indices.len() as u64;
        }
        Ok(AssetResources {
            total: total as i64,
            pagination: Pagination {
                limit,
                current: Some(format!("{}:{from}", site.id)),
                next: next.map(|n| format!("{}:{n}", site.id)),
                page: Some(page),
            },
            items,
        })
    }
}
