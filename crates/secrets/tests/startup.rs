//! Start-up configuration: a missing or malformed setting fails naming it — checked on the real
//! binary (which logs the error and exits non-zero before contacting the Lambda runtime API).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use app_builder_core::config::{ConfigError, EnabledOfferings, Settings};
use secrets::{DEFAULT_VERIFY_TIMEOUT, FunctionConfig};

fn config(pairs: &[(&str, &str)]) -> Result<FunctionConfig, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    FunctionConfig::from_settings(&Settings::from_lookup(move |name| map.get(name).cloned()))
}

const FULL: [(&str, &str); 5] = [
    ("PARAM_4ME_DOMAIN", "4me-demo.com"),
    ("PARAM_BOOTSTRAP_APP", "4me-app-builder"),
    ("PARAM_BOOTSTRAP_ACCOUNT", "wdc"),
    ("STATE_TABLE", "engine-state"),
    ("EVENT_BUS", "engine-bus"),
];

#[test]
fn configuration_from_the_original_settings() {
    let c = config(&FULL).unwrap();
    assert_eq!(c.context.domain, "4me-demo.com");
    assert_eq!(c.context.app, "4me-app-builder");
    assert_eq!(c.context.provider_account, "wdc");
    assert_eq!(c.context.offering_reference, None);
    assert_eq!(c.enabled, EnabledOfferings::All);
    assert_eq!(c.verify_timeout, DEFAULT_VERIFY_TIMEOUT);
    assert_eq!(c.state_table, "engine-state");
    assert_eq!(c.event_bus, "engine-bus");

    let mut more = FULL.to_vec();
    more.push(("PARAM_ENABLED_OFFERINGS", "typeform, note-dispatcher"));
    more.push(("WEBHOOK_VERIFY_TIMEOUT_MS", "2500"));
    let c = config(&more).unwrap();
    assert_eq!(
        c.enabled,
        EnabledOfferings::Only(vec!["typeform".into(), "note-dispatcher".into()])
    );
    assert_eq!(c.verify_timeout, Duration::from_millis(2500));
}

#[test]
fn missing_or_malformed_settings_are_named() {
    for missing in 0..FULL.len() {
        let mut pairs = FULL.to_vec();
        let (name, _) = pairs.remove(missing);
        assert_eq!(config(&pairs), Err(ConfigError::Missing(name)));
    }
    for bad in ["0", "soon", "-1"] {
        let mut pairs = FULL.to_vec();
        pairs.push(("WEBHOOK_VERIFY_TIMEOUT_MS", bad));
        let error = config(&pairs).unwrap_err();
        assert!(
            matches!(
                error,
                ConfigError::Invalid {
                    name: "WEBHOOK_VERIFY_TIMEOUT_MS",
                    ..
                }
            ),
            "{bad}: {error:?}"
        );
    }
}

#[test]
fn binary_fails_at_start_up_naming_the_missing_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_secrets"))
        .env_clear()
        .env("PARAM_4ME_DOMAIN", "4me-demo.com")
        .env("PARAM_BOOTSTRAP_APP", "4me-app-builder")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        all.contains("missing setting PARAM_BOOTSTRAP_ACCOUNT"),
        "{all}"
    );
}
