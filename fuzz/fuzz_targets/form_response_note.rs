//! Any JSON as a Typeform `form_response`: a note, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = typeform::note::form_response_to_note(&response);
    }
});
