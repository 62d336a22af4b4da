//! `discoveredConfigurationItems` input from Lansweeper assets (docs/original.md#lansweeper), with the software,
//! people and OS references resolved by [`References`] (`userIds`, `ciRelations`,
//! `operatingSystemId`).

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value, json};

use crate::api::Asset;
use crate::references::References;

/// `toReference`: lower-case, runs outside `[a-z0-9]` → `_`, one leading/trailing `_` removed,
/// at most 128 characters.
pub fn to_reference(value: &str) -> String {
    let mut out = String::new();
    let mut in_run = false;
    for c in value.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    let out = out.strip_prefix('_').unwrap_or(&out);
    let out = out.strip_suffix('_').unwrap_or(out);
    out.chars().take(128).collect()
}

/// `("Lansweeper-" + name)` truncated to 30 characters.
pub fn source_name(installation: &str) -> String {
    format!("Lansweeper-{installation}")
        .chars()
        .take(30)
        .collect()
}

/// 4me CI status of a Lansweeper state name.
pub fn ci_status(state: Option<&str>) -> &'static str {
    match state {
        Some("Active") => "in_production",
        Some("Non-active") => "installed",
        Some("Sold") => "removed",
        Some("Stolen") => "lost_or_stolen",
        Some("Broken") => "broken_down",
        Some("Don't show") => "to_be_removed",
        Some("Spare") => "standby_for_continuity",
        Some("In repair") => "being_repaired",
        Some("Stock") => "in_stock",
        _ => "installed",
    }
}

/// `bytesToGB` (docs/original.md#lansweeper `SizeHelper`).
pub fn bytes_to_gb(total: f64) -> f64 {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let factors = [
        GIB,
        1000.0 * 1024.0 * 1024.0,
        1000.0 * 1000.0 * 1024.0,
        1000.0 * 1000.0 * 1000.0,
    ];
    for f in factors {
        let v = total / f;
        if v > 0.0 && v.log2().fract() == 0.0 {
            return v;
        }
    }
    for f in factors {
        let v = total / f;
        if v.fract() == 0.0 {
            return v;
        }
    }
    (total / GIB).round()
}

fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(value.get(..10)?, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
        .filter(|t| t.timestamp() > 0)
}

fn canonical(registry: &mut Vec<String>, value: &str) -> String {
    match registry.iter().find(|v| v.eq_ignore_ascii_case(value)) {
        Some(v) => v.clone(),
        None => {
            registry.push(value.to_owned());
            value.to_owned()
        }
    }
}

/// Most configuration items one `discoveredConfigurationItems` call may carry (4me's
/// developer documentation of the mutation: at most 100 items per request).
pub const MAX_ITEMS_PER_UPLOAD: usize = 100;

/// Builds the input of one batch (a fresh registry per batch, as the original).
///
/// 4me requires `name` and `sourceID` on every discovered CI and refuses the whole request when
/// one lacks them. An asset without a Lansweeper key has no stable identity to upsert by: it is
/// skipped and counted ([`DiscoveryBatch::skipped_without_key`]). An asset without a name is
/// named after its product, as the `lansweeper_asset_name` label generator names every CI.
#[derive(Debug, Default)]
pub struct DiscoveryBatch {
    categories: Vec<(String, Map<String, Value>, Vec<String>)>,
    products: Vec<(String, Map<String, Value>)>,
    brands: Vec<String>,
    models: Vec<String>,
    generate_labels: bool,
    skipped_without_key: u64,
}

impl DiscoveryBatch {
    /// An empty batch; `generate_labels`: CI name = product name, label = asset name.
    pub fn new(generate_labels: bool) -> Self {
        DiscoveryBatch {
            generate_labels,
            ..Self::default()
        }
    }

    /// Adds an asset with its references (looked up beforehand with
    /// [`References::prepare`]); assets without `assetCustom` and `Location` assets are skipped.
    /// Returns whether a CI was added.
    pub fn add(&mut self, asset: &Asset, refs: &References) -> bool {
        let Some(custom) = &asset.asset_custom else {
            return false;
        };
        if asset.key.as_deref().is_none_or(|k| k.trim().is_empty()) {
            self.skipped_without_key += 1;
            return false;
        }
        let basic = asset.asset_basic_info.clone().unwrap_or_default();
        let category = basic
            .asset_type
            .clone()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "Unknown".into());
        if category == "Location" {
            return false;
        }
        let category_ref = to_reference(&category);
        let brand_raw = custom.manufacturer.clone().filter(|s| !s.is_empty());
        let model_raw = custom.model.clone().filter(|s| !s.is_empty());
        let brand = canonical(&mut self.brands, brand_raw.as_deref().unwrap_or("Unknown"));
        let model = canonical(&mut self.models, model_raw.as_deref().unwrap_or("Unknown"));
        let sku = custom.sku.clone().filter(|s| !s.is_empty());
        let product_name = match &sku {
            Some(sku) => format!("{brand} {model} {sku} {category}"),
            None => format!("{brand} {model} {category}"),
        };
        let product_ref = to_reference(&product_name);
        if !self.products.iter().any(|(r, _)| *r == product_ref) {
            let mut p = Map::new();
            p.insert("meta".into(), json!({"strategy": "CREATE"}));
            p.insert("sourceID".into(), json!(product_ref));
            p.insert("name".into(), json!(product_name));
            p.insert("brand".into(), json!(brand));
            p.insert("model".into(), json!(model));
            if let Some(sku) = &sku {
                p.insert("productID".into(), json!(sku));
            }
            p.insert("configurationItems".into(), json!([]));
            self.products.push((product_ref.clone(), p));
            match self
                .categories
                .iter_mut()
                .find(|(r, _, _)| *r == category_ref)
            {
                Some((_, _, products)) => products.push(product_ref.clone()),
                None => {
                    let mut c = Map::new();
                    c.insert("meta".into(), json!({"strategy": "CREATE"}));
                    c.insert("reference".into(), json!(category_ref));
                    c.insert("name".into(), json!(category));
                    self.categories
                        .push((category_ref.clone(), c, vec![product_ref.clone()]));
                }
            }
        }
        let ci = self.ci(asset, &basic, custom, &product_name, refs);
        if let Some((_, p)) = self.products.iter_mut().find(|(r, _)| *r == product_ref)
            && let Some(Value::Array(cis)) = p.get_mut("configurationItems")
        {
            cis.push(Value::Object(ci));
        }
        true
    }

    fn ci(
        &self,
        asset: &Asset,
        basic: &crate::api::BasicInfo,
        custom: &crate::api::Custom,
        product_name: &str,
        refs: &References,
    ) -> Map<String, Value> {
        let mut ci = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                ci.insert(k.into(), v);
            }
        };
        put("sourceID", asset.key.clone().map(Value::from));
        put("serialNr", custom.serial_number.clone().map(Value::from));
        put("systemID", asset.url.clone().map(Value::from));
        put(
            "status",
            Some(json!(ci_status(custom.state_name.as_deref()))),
        );
        let asset_name = basic.name.clone().filter(|n| !n.trim().is_empty());
        if self.generate_labels {
            put("name", Some(json!(product_name)));
            put("label", asset_name.map(Value::from));
        } else {
            put(
                "name",
                Some(json!(asset_name.as_deref().unwrap_or(product_name))),
            );
        }
        put("lastSeenAt", basic.last_seen.clone().map(Value::from));
        let purchase = custom.purchase_date.as_deref().and_then(parse_time);
        let warranty = custom.warranty_date.as_deref().and_then(parse_time);
        put(
            "inUseSince",
            purchase.map(|t| json!(t.format("%Y-%m-%d").to_string())),
        );
        if let Some(w) = warranty
            && purchase.is_none_or(|p| p <= w)
        {
            put(
                "warrantyExpiryDate",
                Some(json!(w.format("%Y-%m-%d").to_string())),
            );
        }
        let users = refs.user_ids(asset);
        if !users.is_empty() {
            put("userIds", Some(json!(users)));
        }
        let software = refs.software_ids(asset);
        if !software.is_empty() {
            put("ciRelations", Some(json!({"childIds": software})));
        }
        put(
            "operatingSystemId",
            refs.operating_system_id(asset).map(Value::from),
        );
        let ram: f64 = asset.memory_modules.iter().filter_map(|m| m.size).sum();
        if ram > 0.0 {
            // 4me's developer pages type `ramAmount` as Int (the SDK as Decimal): a whole number
            // of GB is sent as an integer, which both accept.
            let gb = bytes_to_gb(ram);
            let value = if gb.fract() == 0.0 && gb.abs() < 1e15 {
                json!(gb as i64)
            } else {
                json!(gb)
            };
            put("ramAmount", Some(value));
        }
        if !asset.processors.is_empty() {
            put("nrOfProcessors", Some(json!(asset.processors.len())));
        }
        let cores: f64 = asset
            .processors
            .iter()
            .filter_map(|p| p.number_of_cores)
            .sum();
        if cores > 0.0 {
            put("nrOfCores", Some(json!(cores as i64)));
        }
        ci
    }

    /// Whether no CI was added.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// Assets left out because Lansweeper gave them no key.
    pub fn skipped_without_key(&self) -> u64 {
        self.skipped_without_key
    }

    /// The `DiscoveredConfigurationItemsInput`.
    pub fn into_input(self, installation: &str, installations: &[String]) -> Value {
        let mut products: Map<String, Value> = self
            .products
            .into_iter()
            .map(|(r, p)| (r, Value::Object(p)))
            .collect();
        let assets: Vec<Value> = self
            .categories
            .into_iter()
            .map(|(_, mut c, refs)| {
                let list: Vec<Value> = refs.iter().filter_map(|r| products.remove(r)).collect();
                c.insert("products".into(), Value::Array(list));
                Value::Object(c)
            })
            .collect();
        let mut alternatives: Vec<String> = installations
            .iter()
            .filter(|n| n.as_str() != installation)
            .map(|n| source_name(n))
            .collect();
        alternatives.push("Lansweeper".into());
        json!({
            "source": source_name(installation),
            "alternativeSources": alternatives,
            "referenceStrategies": {"ciUserIds": {"strategy": "APPEND"}},
            "physicalAssets": assets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_sources_states_and_sizes_follow_the_original() {
        assert_eq!(to_reference("ESXi server"), "esxi_server");
        assert_eq!(to_reference("VMware, Inc."), "vmware_inc");
        assert_eq!(to_reference("Café Noir"), "caf_noir");
        assert_eq!(to_reference(&" a".repeat(65)), "a_".repeat(64));
        assert_eq!(
            source_name("a123456789012345678901234"),
            "Lansweeper-a123456789012345678"
        );
        const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
        assert_eq!(bytes_to_gb(16.0 * GIB), 16.0);
        assert_eq!(bytes_to_gb(3.0 * GIB), 3.0);
        assert_eq!(bytes_to_gb(6.8 * GIB), 7.0);
        assert_eq!(bytes_to_gb(6.1 * GIB), 6.0);
        assert_eq!(bytes_to_gb(0.5 * GIB), 0.5);
    }

    #[test]
    fn generates_labels_when_requested_and_skips_locations() {
        let asset = |key: &str, kind: &str, brand: &str| -> Asset {
            serde_json::from_value(json!({
                "key": key, "url": format!("https://x/{key}"),
                "assetBasicInfo": {"name": key.to_uppercase(), "type": kind},
                "assetCustom": {"manufacturer": brand, "model": "M1", "stateName": "Active",
                                 "purchaseDate": "2020-01-02T00:00:00Z", "warrantyDate": "2019-01-01T00:00:00Z"},
                "processors": [{"numberOfCores": 4}, {"numberOfCores": 4}]
            }))
            .unwrap()
        };
        let refs = References::new("");
        let mut batch = DiscoveryBatch::new(true);
        assert!(batch.add(&asset("a", "Windows", "HP"), &refs));
        assert!(batch.add(&asset("b", "Windows", "hp"), &refs));
        assert!(batch.add(&asset("c", "Linux", "Dell"), &refs));
        assert!(!batch.add(&asset("d", "Location", "Dell"), &refs));
        assert!(!batch.add(&Asset::default(), &refs));
        let input = batch.into_input("HQ", &["HQ".into(), "Branch".into()]);
        assert_eq!(input["source"], "Lansweeper-HQ");
        assert_eq!(
            input["alternativeSources"],
            json!(["Lansweeper-Branch", "Lansweeper"])
        );
        let cats = input["physicalAssets"].as_array().unwrap();
        assert_eq!(cats.len(), 2);
        let product = &cats[0]["products"][0];
        assert_eq!(product["name"], "HP M1 Windows");
        assert_eq!(product["sourceID"], "hp_m1_windows");
        let cis = product["configurationItems"].as_array().unwrap();
        assert_eq!(cis.len(), 2);
        assert_eq!(cis[0]["name"], "HP M1 Windows");
        assert_eq!(cis[0]["label"], "A");
        assert_eq!(cis[0]["status"], "in_production");
        assert_eq!(cis[0]["inUseSince"], "2020-01-02");
        assert!(cis[0].get("warrantyExpiryDate").is_none());
        assert_eq!(
            (
                cis[0]["nrOfProcessors"].clone(),
                cis[0]["nrOfCores"].clone()
            ),
            (json!(2), json!(8))
        );
    }

    #[test]
    fn every_ci_has_the_name_and_source_id_4me_requires() {
        let asset = |v: Value| -> Asset { serde_json::from_value(v).unwrap() };
        let refs = References::new("");
        let mut batch = DiscoveryBatch::new(false);
        // No key: no identity to upsert by, skipped and counted.
        assert!(!batch.add(
            &asset(json!({"assetBasicInfo": {"name": "PC", "type": "Windows"}, "assetCustom": {}})),
            &refs
        ));
        assert!(!batch.add(
            &asset(json!({"key": " ", "assetBasicInfo": {"name": "PC"}, "assetCustom": {}})),
            &refs
        ));
        // No name: named after its product.
        assert!(batch.add(
            &asset(json!({"key": "k1", "assetBasicInfo": {"type": "Windows"},
                          "assetCustom": {"manufacturer": "HP", "model": "M1"}})),
            &refs
        ));
        assert_eq!(batch.skipped_without_key(), 2);
        let input = batch.into_input("HQ", &[]);
        let ci = &input["physicalAssets"][0]["products"][0]["configurationItems"][0];
        assert_eq!(ci["sourceID"], "k1");
        assert_eq!(ci["name"], "HP M1 Windows");
    }

    #[test]
    fn uploads_stay_within_4mes_documented_limit() {
        assert_eq!(
            MAX_ITEMS_PER_UPLOAD,
            app_builder_schema::limits::MAX_DISCOVERED_ITEMS
        );
    }

    #[test]
    fn maps_state_names() {
        for (state, status) in [
            ("Active", "in_production"),
            ("Non-active", "installed"),
            ("Sold", "removed"),
            ("Stolen", "lost_or_stolen"),
            ("Broken", "broken_down"),
            ("Don't show", "to_be_removed"),
            ("Spare", "standby_for_continuity"),
            ("In repair", "being_repaired"),
            ("Stock", "in_stock"),
        ] {
            assert_eq!(ci_status(Some(state)), status);
        }
        assert_eq!(ci_status(Some("whatever")), "installed");
        assert_eq!(ci_status(None), "installed");
    }

    fn dated(purchase: Option<&str>, warranty: Option<&str>) -> Value {
        let asset: Asset = serde_json::from_value(json!({
            "key": "k", "assetBasicInfo": {"name": "PC", "type": "Windows"},
            "assetCustom": {"purchaseDate": purchase, "warrantyDate": warranty}
        }))
        .unwrap();
        let mut batch = DiscoveryBatch::new(false);
        assert!(batch.add(&asset, &References::new("")));
        batch.into_input("a", &[])["physicalAssets"][0]["products"][0]["configurationItems"][0]
            .clone()
    }

    #[test]
    fn check_dates() {
        let ci = dated(Some("1969-12-31T00:00:00Z"), Some("1960-01-01T00:00:00Z"));
        assert!(ci.get("inUseSince").is_none() && ci.get("warrantyExpiryDate").is_none());
        let ci = dated(Some("2021-05-01T10:00:00Z"), Some("2020-01-01T00:00:00Z"));
        assert_eq!(ci["inUseSince"], "2021-05-01");
        assert!(
            ci.get("warrantyExpiryDate").is_none(),
            "warranty before purchase"
        );
        let ci = dated(None, Some("2024-03-02T00:00:00Z"));
        assert_eq!(ci["warrantyExpiryDate"], "2024-03-02");
        assert!(ci.get("inUseSince").is_none());
    }

    #[test]
    fn generates_object_without_resolved_references() {
        let asset: Asset = serde_json::from_value(json!({
            "key": "k1", "url": "https://app.lansweeper.com/s/asset/k1/summary",
            "assetBasicInfo": {"name": "PC-1", "type": "Windows", "userName": "jdoe",
                               "lastSeen": "2024-01-01T00:00:00.000Z"},
            "assetCustom": {"manufacturer": "Dell Inc.", "model": "OptiPlex", "sku": "X1",
                            "stateName": "Spare", "serialNumber": "SN1"},
            "operatingSystem": {"name": "Windows 11"},
            "softwares": [{"name": "Zoom"}],
            "users": [{"name": "jdoe"}],
            "memoryModules": [{"size": 17179869184.0}, {"size": 17179869184.0}],
            "processors": [{"numberOfCores": 12}]
        }))
        .unwrap();
        let mut batch = DiscoveryBatch::new(false);
        assert!(batch.add(&asset, &References::new("")));
        let input = batch.into_input("a", &["a".into()]);
        assert_eq!(input["source"], "Lansweeper-a");
        assert_eq!(input["alternativeSources"], json!(["Lansweeper"]));
        assert_eq!(
            input["referenceStrategies"],
            json!({"ciUserIds": {"strategy": "APPEND"}})
        );
        let category = &input["physicalAssets"][0];
        assert_eq!(category["reference"], "windows");
        let product = &category["products"][0];
        assert_eq!(product["name"], "Dell Inc. OptiPlex X1 Windows");
        assert_eq!(product["sourceID"], "dell_inc_optiplex_x1_windows");
        assert_eq!(product["productID"], "X1");
        let ci = &product["configurationItems"][0];
        assert_eq!(
            ci,
            &json!({
                "sourceID": "k1", "serialNr": "SN1",
                "systemID": "https://app.lansweeper.com/s/asset/k1/summary",
                "status": "standby_for_continuity", "name": "PC-1",
                "lastSeenAt": "2024-01-01T00:00:00.000Z",
                "ramAmount": 32, "nrOfProcessors": 1, "nrOfCores": 12
            })
        );
    }
}
