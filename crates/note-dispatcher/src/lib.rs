//! The note-dispatcher Lambda function (docs/original.md#note-dispatcher).
//!
//! An app-offering automation rule calls the offering's webhook
//! (`<IntegrationApi>?account=<customer>`) for every note added to a request in a customer
//! account, with `payload {text, url}` signed by the customer's webhook policy. The function
//!
//! 1. accepts POST only (405), needs `?account=` (400 `Missing account parameter`) and the
//!    customer's secret with a webhook policy (400 `Unable to determine customer context`);
//! 2. verifies the `{"jwt"}` body with that policy — the verifier binds the issuer to the
//!    account, so a token of another customer is rejected (400 `Bad JWT - …`);
//! 3. answers `webhook.verify` by GETting the callback (200 `Webhook verified` / 500);
//! 4. for `automation_rule`: checks the target URL ([`guard`]: http(s) only, no loopback,
//!    link-local, private… addresses unless allowed, connection pinned to the checked
//!    addresses), translates `text` with a random style ([`translate`]; a 429 is a soft result),
//!    POSTs `{input, translationResponse}` to the URL and answers 200
//!    `note-dispatcher event handling complete` (500 `Unable to process note-dispatcher event`
//!    when translation or delivery fails). Each delivery is dispatched once, in any number of
//!    containers: its keys (the signed token's `iss` + `jti`, and the delivery id) are claimed
//!    in the engine's state store before dispatching ([`app_builder_core::idempotency`]); a
//!    duplicate gets 200 without a second dispatch, a copy that arrives while the first is being
//!    dispatched gets 503 (4me retries it later), and a failed dispatch gives the keys up so
//!    4me's retry runs.
//!
//! It also subscribes to the engine's bus: when the app is uninstalled, the customer secret is
//! scheduled for deletion ([`installation`]). [`NoteDispatcher::handle_payload`] routes a raw
//! Lambda payload to one or the other.
//!
//! The library holds the handler over ports ([`NoteDispatcher`] over a
//! [`SecretStore`](app_builder_core::secrets::SecretStore) and a
//! [`StateStore`](app_builder_core::state::StateStore)); `main.rs` only wires AWS.
#![warn(missing_docs)]

pub mod config;
pub mod guard;
pub mod handler;
pub mod installation;
pub mod translate;

pub use config::DispatcherConfig;
pub use guard::{AddressClass, CheckedUrl, UrlGuard, UrlRefused, classify};
pub use handler::{NoteDispatcher, SetupError};
pub use translate::{FunTranslationsClient, TRANSLATIONS, Translation};
