//! The `assetResources` filter (original `getFilters`), built as a GraphQL *variable*: values are
//! never interpolated into the query text, so a `"` or `\` in an installation id or asset type
//! cannot change the query.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::LansweeperError;

/// What to select from a site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetQuery {
    /// The site id.
    pub site_id: String,
    /// Only assets last seen after this instant (or never seen).
    pub cut_off: DateTime<Utc>,
    /// `Some(true)`: only assets with an IP address; `Some(false)`: only without; `None`: all.
    /// Ignored when `asset_types` is set (as the original).
    pub with_ip: Option<bool>,
    /// Only assets of this installation.
    pub installation_id: Option<String>,
    /// Only assets of exactly these types (case-insensitively, as Lansweeper's `REGEXP`).
    pub asset_types: Option<Vec<String>>,
}

/// Regex metacharacters escaped in asset types.
const REGEX_SPECIAL: &[char] = &[
    '.', '*', '+', '?', '^', '$', '{', '}', '(', ')', '|', '[', ']', '\\',
];

/// Escapes regex metacharacters of `value` with one backslash (the value travels as a JSON
/// variable, so the original's second, GraphQL-string backslash is not needed).
pub fn escape_regex(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        if REGEX_SPECIAL.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Packs asset types into as few `^a$|^b$` regexes as possible, each at most `max_len`
/// characters long (original `getAssetTypeRegExs`); a type whose anchored form is longer than
/// `max_len` is skipped with a warning. Each type is anchored: Lansweeper's `REGEXP` matches
/// anywhere in the value, so an unanchored `Server` would also select `Webserver` assets.
pub fn asset_type_regexes(types: &[String], max_len: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for t in types {
        let escaped = format!("^{}$", escape_regex(t));
        if escaped.chars().count() > max_len {
            tracing::warn!(
                asset_type = %t,
                max_len,
                "asset type too long for a Lansweeper filter, skipped"
            );
            continue;
        }
        if current.is_empty() {
            current = escaped;
        } else if current.chars().count() + 1 + escaped.chars().count() <= max_len {
            current.push('|');
            current.push_str(&escaped);
        } else {
            out.push(std::mem::replace(&mut current, escaped));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn condition(operator: &str, path: &str, value: impl Into<Value>) -> Value {
    json!({"operator": operator, "path": path, "value": value.into()})
}

impl AssetQuery {
    /// The `AssetsFilterGroupedInput` variable: type (or IP) group, last-seen group,
    /// installation group, in the original's order.
    pub fn filters(&self, max_filter_field_length: usize) -> Result<Value, LansweeperError> {
        let mut groups = Vec::new();
        if let Some(types) = &self.asset_types {
            let regexes = asset_type_regexes(types, max_filter_field_length);
            if regexes.is_empty() {
                return Err(LansweeperError::InvalidQuery(format!(
                    "no selected asset type is at most {max_filter_field_length} characters long"
                )));
            }
            let conditions: Vec<Value> = regexes
                .into_iter()
                .map(|r| condition("REGEXP", "assetBasicInfo.type", r))
                .collect();
            groups.push(json!({"conjunction": "OR", "conditions": conditions}));
        } else if let Some(with_ip) = self.with_ip {
            groups.push(json!({"conjunction": "AND", "conditions": [
                condition("EXISTS", "assetBasicInfo.ipAddress", if with_ip { "true" } else { "false" })
            ]}));
        }
        groups.push(json!({"conjunction": "OR", "conditions": [
            condition(
                "GREATER_THAN",
                "assetBasicInfo.lastSeen",
                self.cut_off.to_rfc3339_opts(SecondsFormat::Millis, true),
            ),
            condition("EXISTS", "assetBasicInfo.lastSeen", "false"),
        ]}));
        if let Some(installation) = &self.installation_id {
            groups.push(json!({"conjunction": "AND", "conditions": [
                condition("EQUAL", "installationId", installation.as_str())
            ]}));
        }
        Ok(json!({"conjunction": "AND", "groups": groups}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn escapes_every_regex_metacharacter_once() {
        assert_eq!(escape_regex("Wind.ows"), "Wind\\.ows");
        assert_eq!(escape_regex("a\\b"), "a\\\\b");
        assert_eq!(
            escape_regex("(x)|[y]{2}^$*+?"),
            "\\(x\\)\\|\\[y\\]\\{2\\}\\^\\$\\*\\+\\?"
        );
        assert_eq!(escape_regex("quote\"d"), "quote\"d");
    }

    #[test]
    fn packs_types_greedily_within_the_maximum_length() {
        let types = s(&[
            "Automotive",
            "Mobile",
            "Monitor",
            "NAS",
            "Switch",
            "Tablet",
            "Toy",
            "VMware Guest",
            "Virtual Machine",
            "Weather",
            "Webserver",
            "Wifi",
            "Windows",
        ]);
        assert_eq!(
            asset_type_regexes(&types, 100),
            [
                "^Automotive$|^Mobile$|^Monitor$|^NAS$|^Switch$|^Tablet$|^Toy$|^VMware Guest$|^Virtual Machine$",
                "^Weather$|^Webserver$|^Wifi$|^Windows$"
            ]
        );
        assert_eq!(
            asset_type_regexes(&s(&["abcdefgh", "x", "yz"]), 9),
            ["^x$|^yz$"]
        );
        assert!(asset_type_regexes(&s(&["toolong"]), 8).is_empty());
        assert!(asset_type_regexes(&[], 3).is_empty());
    }

    #[test]
    fn builds_the_groups_in_the_original_order_with_values_as_data() {
        let cut_off = DateTime::parse_from_rfc3339("2024-10-01T22:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut q = AssetQuery {
            site_id: "s".into(),
            cut_off,
            with_ip: Some(true),
            installation_id: Some("inst\"} ]} evil".into()),
            asset_types: None,
        };
        let f = q.filters(100).unwrap();
        assert_eq!(
            f,
            json!({"conjunction": "AND", "groups": [
                {"conjunction": "AND", "conditions": [{"operator": "EXISTS", "path": "assetBasicInfo.ipAddress", "value": "true"}]},
                {"conjunction": "OR", "conditions": [
                    {"operator": "GREATER_THAN", "path": "assetBasicInfo.lastSeen", "value": "2024-10-01T22:00:00.000Z"},
                    {"operator": "EXISTS", "path": "assetBasicInfo.lastSeen", "value": "false"}]},
                {"conjunction": "AND", "conditions": [{"operator": "EQUAL", "path": "installationId", "value": "inst\"} ]} evil"}]}
            ]})
        );
        q.asset_types = Some(s(&["ipad", "linux"]));
        q.installation_id = None;
        let f = q.filters(100).unwrap();
        assert_eq!(f["groups"].as_array().unwrap().len(), 2);
        assert_eq!(f["groups"][0]["conditions"][0]["value"], "^ipad$|^linux$");
        q.with_ip = None;
        q.asset_types = None;
        assert_eq!(
            q.filters(100).unwrap()["groups"].as_array().unwrap().len(),
            1
        );
        q.asset_types = Some(s(&["far too long"]));
        assert!(matches!(
            q.filters(3),
            Err(LansweeperError::InvalidQuery(_))
        ));
    }
}
