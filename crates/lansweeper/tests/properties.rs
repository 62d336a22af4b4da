//! Properties of the Lansweeper asset → discovered CI conversion over generated assets
//! (proptest): whatever Lansweeper returns (any mix of present, missing, empty, odd and huge
//! values), the conversion never panics and builds a `DiscoveredConfigurationItemsInput` that
//! the 4me schema snapshot accepts, with every kept asset's key as a CI `sourceID`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use lansweeper::api::Asset;
use lansweeper::discovery::DiscoveryBatch;
use lansweeper::references::References;
use proptest::prelude::*;
use serde_json::{Value, json};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A text as Lansweeper may return it: absent, null, empty, blank, ordinary, odd or long.
fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!("")),
        Just(json!("   ")),
        "[A-Za-z0-9 ._-]{1,20}".prop_map(Value::String),
        ".{0,40}".prop_map(Value::String),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{3})?Z"
            .prop_map(Value::String),
        "x{300,600}".prop_map(Value::String),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<f64>()
            .prop_filter("JSON has no NaN", |n| n.is_finite())
            .prop_map(|n| json!(n)),
        (0u64..1 << 45).prop_map(|n| json!(n)),
    ]
}

fn asset() -> impl Strategy<Value = Value> {
    let basic = (
        text(),
        text(),
        text(),
        text(),
        text(),
        text(),
        text(),
        text(),
    )
        .prop_map(|(name, kind, description, ip, first, last, user, domain)| {
            json!({"name": name, "type": kind, "description": description, "ipAddress": ip,
                   "firstSeen": first, "lastSeen": last, "userName": user, "userDomain": domain})
        });
    let custom = (text(), text(), text(), text(), text(), text(), text()).prop_map(
        |(model, manufacturer, state, purchase, warranty, serial, sku)| {
            json!({"model": model, "manufacturer": manufacturer, "stateName": state,
                   "purchaseDate": purchase, "warrantyDate": warranty, "serialNumber": serial,
                   "sku": sku})
        },
    );
    (
        text(),
        text(),
        prop::option::of(basic),
        prop::option::of(custom),
        text(),
        prop::collection::vec((text(), text(), text()), 0..3),
        prop::collection::vec(text(), 0..4),
        prop::collection::vec(number(), 0..3),
        prop::collection::vec(number(), 0..3),
    )
        .prop_map(
            |(key, url, basic, custom, os, users, softwares, memory, cores)| {
                json!({
                    "_id": "id", "key": key, "url": url,
                    "assetBasicInfo": basic, "assetCustom": custom,
                    "operatingSystem": {"name": os},
                    "users": users.into_iter().map(|(name, email, full)|
                        json!({"name": name, "email": email, "fullName": full})).collect::<Vec<_>>(),
                    "softwares": softwares.into_iter().map(|name| json!({"name": name})).collect::<Vec<_>>(),
                    "memoryModules": memory.into_iter().map(|size| json!({"size": size})).collect::<Vec<_>>(),
                    "processors": cores.into_iter().map(|n| json!({"numberOfCores": n})).collect::<Vec<_>>(),
                })
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_assets_become_input_the_schema_accepts(
        assets in prop::collection::vec(asset(), 0..6), labels in any::<bool>(),
    ) {
        let refs = References::new("");
        let mut batch = DiscoveryBatch::new(labels);
        let mut kept = Vec::new();
        for value in &assets {
            let asset: Asset = serde_json::from_value(value.clone()).unwrap();
            if batch.add(&asset, &refs) {
                kept.push(asset.key.clone().unwrap_or_default());
            }
        }
        let input = batch.into_input("HQ", &["HQ".to_owned()]);
        let object = input.as_object().unwrap();
        let checked = app_builder_schema::snapshot()
            .check_partial_input("DiscoveredConfigurationItemsInput", object);
        prop_assert!(checked.is_ok(), "{checked:?}\n{input:#}");
        let text = input.to_string();
        for key in kept {
            prop_assert!(text.contains(&serde_json::to_string(&key).unwrap()), "{key:?} lost");
        }
    }
}
