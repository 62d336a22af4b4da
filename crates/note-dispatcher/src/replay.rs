//! Best-effort suppression of repeated deliveries.
//!
//! 4me retries a delivery that did not get a 2xx answer, and a captured token could be sent
//! again (4me tokens carry no `exp`). A note already dispatched must not reach the customer's URL
//! twice, so the handler remembers the keys (`iss` + `jti`, else the delivery id) of the last
//! [`DEFAULT_CAPACITY`] *successfully* dispatched deliveries and acknowledges a repeat with 200
//! without dispatching again. Failed attempts are not remembered, so 4me's retries still work.
//!
//! The memory lives in the warm Lambda container: a repeat that reaches another container is not
//! caught. Exactly-once across containers would need a write to the customer secret per note
//! (and `secretsmanager:PutSecretValue` for this function, which the original does not grant);
//! this trade-off is deliberate.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

/// How many delivery keys are remembered.
pub const DEFAULT_CAPACITY: usize = 4096;

/// A bounded set of recently dispatched delivery keys (oldest evicted first).
#[derive(Debug)]
pub struct RecentDeliveries {
    capacity: usize,
    inner: Mutex<(VecDeque<String>, HashSet<String>)>,
}

impl Default for RecentDeliveries {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl RecentDeliveries {
    /// A set remembering at most `capacity` keys (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new((VecDeque::new(), HashSet::new())),
        }
    }

    /// Whether `key` was recorded and not yet evicted.
    pub fn contains(&self, key: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .contains(key)
    }

    /// Records `key`; returns `false` if it was already present.
    pub fn insert(&self, key: String) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (order, keys) = &mut *guard;
        if !keys.insert(key.clone()) {
            return false;
        }
        order.push_back(key);
        while order.len() > self.capacity {
            if let Some(oldest) = order.pop_front() {
                keys.remove(&oldest);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_evicts_the_oldest() {
        let recent = RecentDeliveries::with_capacity(2);
        assert!(recent.insert("a".into()));
        assert!(!recent.insert("a".into()));
        assert!(recent.insert("b".into()));
        assert!(recent.insert("c".into()));
        assert!(!recent.contains("a"));
        assert!(recent.contains("b") && recent.contains("c"));
    }
}
