//! A strict local emulator of 4me for tests, demos and local development.
#![warn(missing_docs)]
