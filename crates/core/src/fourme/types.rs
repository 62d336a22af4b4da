//! Small 4me GraphQL shapes shared by callers of the client.

use serde::{Deserialize, Serialize};

/// `asyncQuery { id errorCount resultUrl resultCount }` of an asynchronous mutation
/// (e.g. `discoveredConfigurationItems`); poll `result_url` with
/// [`FourMeClient::async_result`](super::FourMeClient::async_result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsyncQuery {
    /// Node id of the async query.
    pub id: String,
    /// Number of errors (known when the query has run).
    #[serde(default)]
    pub error_count: Option<u64>,
    /// Where the JSON result will appear (a signed URL: do not log it).
    pub result_url: String,
    /// Number of results (known when the query has run).
    #[serde(default)]
    pub result_count: Option<u64>,
}

/// `pageInfo { hasNextPage endCursor }` of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    /// Whether another page follows.
    pub has_next_page: bool,
    /// Cursor to pass as `after:` for the next page.
    #[serde(default)]
    pub end_cursor: Option<String>,
}

/// A node reference `{ id }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// The node id.
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_query_deserializes_from_4me_shape() {
        let q: AsyncQuery = serde_json::from_value(serde_json::json!({
            "id": "NG1lLmNvbS9Bc3luY1F1ZXJ5LzE",
            "errorCount": null,
            "resultUrl": "https://example.test/r.json?sig=1",
            "resultCount": null
        }))
        .unwrap();
        assert_eq!(q.result_url, "https://example.test/r.json?sig=1");
        assert_eq!(q.error_count, None);
        let p: PageInfo =
            serde_json::from_value(serde_json::json!({"hasNextPage": true, "endCursor": "Mg"}))
                .unwrap();
        assert!(p.has_next_page);
        assert_eq!(p.end_cursor.as_deref(), Some("Mg"));
    }
}
