//! The JSON document stored in a secret and the merge that applies an update to it (docs/original.md#secret-updates).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Why a stored secret string is not a usable document.
///
/// The messages never contain secret values: syntax errors only carry a position, and
/// type errors only the JSON type that was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Not valid JSON.
    #[error("secret is not valid JSON: {category} error at line {line}, column {column}")]
    Syntax {
        /// serde_json's error category (`syntax`, `eof`, …).
        category: &'static str,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// Valid JSON, but not an object.
    #[error("secret JSON is a {0}, not an object")]
    NotAnObject(&'static str),
    /// The secret holds binary data instead of a string.
    #[error("secret holds binary data, not a JSON string")]
    Binary,
}

/// A secret's content: a JSON object.
///
/// `Debug` and `Display` show the keys only, never the values, so a document can be logged.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretDocument(Map<String, Value>);

impl SecretDocument {
    /// An empty document.
    pub fn new() -> Self {
        Self(Map::new())
    }

    /// Wraps a JSON object.
    pub fn from_map(map: Map<String, Value>) -> Self {
        Self(map)
    }

    /// Parses a stored secret string.
    pub fn from_json_str(raw: &str) -> Result<Self, DocumentError> {
        let value: Value = serde_json::from_str(raw).map_err(|e| DocumentError::Syntax {
            category: match e.classify() {
                serde_json::error::Category::Io => "io",
                serde_json::error::Category::Syntax => "syntax",
                serde_json::error::Category::Data => "data",
                serde_json::error::Category::Eof => "eof",
            },
            line: e.line(),
            column: e.column(),
        })?;
        Self::try_from(value)
    }

    /// Serialises to the compact JSON string that is stored.
    pub fn to_json_string(&self) -> String {
        // A map of `Value`s with string keys always serialises.
        Value::Object(self.0.clone()).to_string()
    }

    /// The underlying JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Mutable access to the underlying JSON object.
    pub fn as_map_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.0
    }

    /// Consumes the document, returning the JSON object.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// The value of a top-level key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The string value of a top-level key, if it is a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// Sets a top-level key (in an update, `Value::Null` removes the key).
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        self.0.insert(key.into(), value.into())
    }

    /// Removes a top-level key.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key)
    }

    /// Whether a top-level key is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// The top-level keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Number of top-level keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the document has no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Value> for SecretDocument {
    type Error = DocumentError;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        match value {
            Value::Object(map) => Ok(Self(map)),
            Value::Null => Err(DocumentError::NotAnObject("null")),
            Value::Bool(_) => Err(DocumentError::NotAnObject("boolean")),
            Value::Number(_) => Err(DocumentError::NotAnObject("number")),
            Value::String(_) => Err(DocumentError::NotAnObject("string")),
            Value::Array(_) => Err(DocumentError::NotAnObject("array")),
        }
    }
}

impl From<Map<String, Value>> for SecretDocument {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

impl From<SecretDocument> for Value {
    fn from(doc: SecretDocument) -> Self {
        Value::Object(doc.0)
    }
}

impl FromIterator<(String, Value)> for SecretDocument {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl fmt::Debug for SecretDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretDocument")
            .field("keys", &self.0.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SecretDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, key) in self.0.keys().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{key:?}: <redacted>")?;
        }
        f.write_str("}")
    }
}

/// Applies `update` to `current` (docs/original.md#secret-updates `updateSecrets`, improved):
///
/// - shallow: each top-level key of `update` replaces the stored value entirely (a new `secrets`
///   object replaces the old one; nested values are never merged, nested nulls are kept);
/// - a top-level key whose resulting value is `null` is removed;
/// - the same rules apply on create (`current == None`): nulls are dropped rather than stored as
///   the original did.
pub fn merge(current: Option<SecretDocument>, update: &SecretDocument) -> SecretDocument {
    let mut merged = current.map(SecretDocument::into_map).unwrap_or_default();
    for (key, value) in &update.0 {
        if value.is_null() {
            merged.remove(key);
        } else {
            merged.insert(key.clone(), value.clone());
        }
    }
    // Nulls stored by the original on create are removed on the next update, as there.
    merged.retain(|_, value| !value.is_null());
    SecretDocument(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(value: Value) -> SecretDocument {
        SecretDocument::try_from(value).unwrap()
    }

    #[test]
    fn merge_is_shallow_and_removes_nulls() {
        let current =
            doc(json!({"a": 1, "secrets": {"x": 1, "y": 2}, "gone": "v", "old_null": null}));
        let update = doc(json!({"secrets": {"x": 3, "n": null}, "gone": null, "b": true}));
        let merged = merge(Some(current), &update);
        assert_eq!(
            Value::from(merged),
            json!({"a": 1, "secrets": {"x": 3, "n": null}, "b": true})
        );
    }

    #[test]
    fn merge_on_create_drops_nulls() {
        let merged = merge(None, &doc(json!({"a": null, "b": "x"})));
        assert_eq!(Value::from(merged), json!({"b": "x"}));
    }

    #[test]
    fn debug_and_display_hide_values() {
        let d = doc(json!({"token": "s3cr3t-value"}));
        let shown = format!("{d:?} {d}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("token"), "{shown}");
    }

    #[test]
    fn parse_errors_hide_values() {
        let err = SecretDocument::from_json_str("\"s3cr3t-value\"").unwrap_err();
        assert_eq!(err, DocumentError::NotAnObject("string"));
        let err = SecretDocument::from_json_str("{\"a\": s3cr3t}").unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(matches!(err, DocumentError::Syntax { line: 1, .. }));
    }
}
