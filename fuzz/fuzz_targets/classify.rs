//! Any JSON as a Lambda payload, read as the runtime reads it (`ScreenedPayload`): classified or
//! refused, never a panic that escapes.
//!
//! The classifier catches the event library's panics on requests it cannot build
//! (`EventError::Unbuildable`). libfuzzer-sys's panic hook aborts on every panic, caught or not,
//! so the target puts the default hook back: a panic the classifier does not catch still
//! reaches libfuzzer-sys's own `catch_unwind`, which reports it as a crash.
#![no_main]

use std::sync::Once;

use app_builder_core::events::{EngineEvent, ScreenedPayload};
use libfuzzer_sys::fuzz_target;

static DEFAULT_HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    DEFAULT_HOOK.call_once(|| {
        let _ = std::panic::take_hook();
    });
    if let Ok(payload) = serde_json::from_slice::<ScreenedPayload>(data) {
        let _ = EngineEvent::classify(payload.0);
    }
});
