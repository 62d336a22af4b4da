//! Verification of the `Typeform-Signature` header (docs/original.md#typeform).
//!
//! Typeform signs the raw body: `sha256=` + standard base64 of HMAC-SHA256 keyed with the
//! webhook secret's UTF-8 bytes (the 128-character hex string itself, not its decoded bytes).
//! The comparison is constant time (`aws_lc_rs::hmac::verify`); the original used `===`.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The header carrying the signature (looked up case-insensitively).
pub const SIGNATURE_HEADER: &str = "typeform-signature";

/// Why a delivery's signature is rejected. None of the variants carries the secret or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Typeform-Signature` header.
    #[error("missing Typeform-Signature header")]
    MissingHeader,
    /// The request has no body.
    #[error("empty body")]
    EmptyBody,
    /// The header is not `sha256=<base64>`.
    #[error("malformed Typeform-Signature header")]
    Malformed,
    /// The HMAC does not match.
    #[error("signature mismatch")]
    Mismatch,
}

/// Checks `header` (the `Typeform-Signature` value) against `body` signed with `secret`.
pub fn verify(secret: &str, body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::MissingHeader)?;
    if body.is_empty() {
        return Err(SignatureError::EmptyBody);
    }
    let encoded = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let tag = STANDARD
        .decode(encoded)
        .map_err(|_| SignatureError::Malformed)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, body, &tag).map_err(|_| SignatureError::Mismatch)
}

/// The `Typeform-Signature` value for `body` signed with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "sha256={}",
        STANDARD.encode(hmac::sign(&key, body).as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_and_reject_tampering() {
        let header = sign("12345", b"{\"a\":1}");
        assert_eq!(verify("12345", b"{\"a\":1}", Some(&header)), Ok(()));
        assert_eq!(
            verify("12345", b"{\"a\":2}", Some(&header)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("54321", b"{\"a\":1}", Some(&header)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("12345", b"{\"a\":1}", None),
            Err(SignatureError::MissingHeader)
        );
        assert_eq!(
            verify("12345", b"", Some(&header)),
            Err(SignatureError::EmptyBody)
        );
        assert_eq!(
            verify("12345", b"x", Some("sha1=abc")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify("12345", b"x", Some("sha256=***")),
            Err(SignatureError::Malformed)
        );
    }
}
