//! Any JSON list of Lansweeper assets: a `discoveredConfigurationItems` input, never a panic.
#![no_main]

use lansweeper::api::Asset;
use lansweeper::discovery::DiscoveryBatch;
use lansweeper::references::References;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(assets) = serde_json::from_slice::<Vec<Asset>>(data) {
        let refs = References::new("");
        let mut batch = DiscoveryBatch::new(true);
        for asset in &assets {
            batch.add(asset, &refs);
        }
        let _ = batch.into_input("HQ", &["HQ".to_owned()]);
    }
});
