//! Verification of 4me webhook-policy JWTs.
//!
//! 4me signs every policy-protected webhook delivery as a compact JWS (`{"jwt": "<token>"}` body).
//! This module verifies such tokens with `aws-lc-rs` only (no `jsonwebtoken` at run time, which
//! lacks ES512 — the algorithm of the provider policy created by the bootstrap):
//!
//! - the header `alg` must equal the policy algorithm exactly (`none` is never accepted, and a
//!   lower-case header `alg` is rejected, as jose does);
//! - HMAC algorithms only work with a shared secret and RSA/ECDSA algorithms only with an
//!   asymmetric key, which defeats the "HS256 signed with the RSA public key as secret" attack;
//! - the issuer must be `https://<account>.<domain>` or its Xurrent-branded variant (see
//!   [`expected_issuers`]);
//! - the audience is checked according to [`Audience`];
//! - `exp` and `nbf` are honoured when present (with a leeway, [`DEFAULT_LEEWAY_SECS`] unless
//!   changed with [`Verifier::with_leeway`]); `exp` is not required and `iat` is ignored, like the
//!   Node original.
//!
//! Entry points: build a [`WebhookPolicy`] from the stored policy, turn it into a [`Verifier`]
//! (which parses the key once), then call [`Verifier::verify`] / [`Verifier::verify_at`].
//! The typed `data` claim of 4me webhooks is [`WebhookEnvelope`].

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, PublicKey as RsaPublicKey};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, ParsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret as _, SecretSlice};
use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest compact token accepted (64 KiB); longer input is rejected before any decoding.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Default clock leeway in seconds applied to `exp` and `nbf`.
///
/// The Node original (jose) used no leeway; a small tolerance avoids spurious rejections caused by
/// clock skew between 4me and Lambda. Use [`Verifier::with_leeway`]`(0)` for the strict behaviour.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// Errors of JWT verification. Messages never contain token contents or key material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// The token is not a well-formed compact JWS (segments, base64url, JSON header, size).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm this verifier does not support (including `none`).
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm,
    /// The header algorithm differs from the policy algorithm.
    #[error("token algorithm {found} not allowed, policy requires {expected}")]
    AlgorithmMismatch {
        /// The algorithm of the policy.
        expected: Algorithm,
        /// The algorithm named in the token header.
        found: Algorithm,
    },
    /// The signature does not verify with the policy key.
    #[error("signature verification failed")]
    BadSignature,
    /// A required claim is absent.
    #[error("missing required \"{0}\" claim")]
    MissingClaim(&'static str),
    /// The `iss` claim is not one of the expected issuers.
    #[error("unexpected \"iss\" claim value")]
    WrongIssuer,
    /// The `aud` claim does not contain the policy audience.
    #[error("unexpected \"aud\" claim value")]
    WrongAudience,
    /// The `exp` claim lies in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// The `nbf` claim lies in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The policy key cannot be used (unparsable PEM, wrong key type for the algorithm, ...).
    #[error("policy key rejected: {0}")]
    KeyRejected(&'static str),
    /// The claims are not valid JSON or do not match the expected types.
    #[error("invalid claims: {0}")]
    InvalidClaims(String),
}

impl JwtError {
    /// The check that failed, as the metrics name it (`Rejected.<check>`).
    pub fn check(&self) -> &'static str {
        match self {
            JwtError::Malformed(_) | JwtError::InvalidClaims(_) => "malformed",
            JwtError::UnsupportedAlgorithm | JwtError::AlgorithmMismatch { .. } => "algorithm",
            JwtError::BadSignature => "signature",
            JwtError::MissingClaim(_) => "claims",
            JwtError::WrongIssuer => "issuer",
            JwtError::WrongAudience => "audience",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not-yet-valid",
            JwtError::KeyRejected(_) => "policy-key",
        }
    }
}

/// A webhook-policy signing algorithm.
///
/// Parses from 4me's lower-case names (`es512`) and from JWS header names (`ES512`) with
/// [`FromStr`]; serialises lower case (the form 4me uses in policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// ECDSA P-521 with SHA-512.
    ES512,
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
    ];

    /// The JWS header name (`"ES512"`).
    pub fn jws_name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    /// 4me's policy name (`"es512"`).
    pub fn fourme_name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "rs256",
            Algorithm::RS384 => "rs384",
            Algorithm::RS512 => "rs512",
            Algorithm::ES256 => "es256",
            Algorithm::ES384 => "es384",
            Algorithm::ES512 => "es512",
            Algorithm::HS256 => "hs256",
            Algorithm::HS384 => "hs384",
            Algorithm::HS512 => "hs512",
        }
    }

    /// Parses the exact JWS header name (upper case only, as in a token header).
    pub fn from_jws_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.jws_name() == name)
    }

    /// Whether this is an HMAC (shared-secret) algorithm.
    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }

    fn ec_curve(self) -> Option<EcCurve> {
        match self {
            Algorithm::ES256 => Some(EcCurve::P256),
            Algorithm::ES384 => Some(EcCurve::P384),
            Algorithm::ES512 => Some(EcCurve::P521),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jws_name())
    }
}

/// Error of [`Algorithm::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown JWT algorithm")]
pub struct UnknownAlgorithm;

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Accepts 4me's names (`es512`) and JWS names (`ES512`), ASCII case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.jws_name().eq_ignore_ascii_case(s.trim()))
            .ok_or(UnknownAlgorithm)
    }
}

impl Serialize for Algorithm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.fourme_name())
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse()
            .map_err(|_| de::Error::custom("unknown JWT algorithm"))
    }
}

/// An elliptic curve of an ECDSA key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcCurve {
    /// NIST P-256 (ES256).
    P256,
    /// NIST P-384 (ES384).
    P384,
    /// NIST P-521 (ES512).
    P521,
}

impl EcCurve {
    const ALL: [EcCurve; 3] = [EcCurve::P256, EcCurve::P384, EcCurve::P521];

    fn verification(self) -> &'static signature::EcdsaVerificationAlgorithm {
        match self {
            EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
            EcCurve::P521 => &signature::ECDSA_P521_SHA512_FIXED,
        }
    }

    fn signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            EcCurve::P521 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
        }
    }
}

enum KeyMaterial {
    /// RSA public key, DER (PKCS#1 `RSAPublicKey` or SPKI).
    Rsa(Vec<u8>),
    /// EC public key, DER SPKI or uncompressed point.
    Ec(EcCurve, Vec<u8>),
    /// HMAC shared secret.
    Hmac(SecretSlice<u8>),
}

/// The verification key of a webhook policy.
///
/// Built from PEM text ([`PolicyKey::from_pem`]) — an SPKI public key (RSA or EC), a PKCS#1 RSA
/// public key, or a private key (PKCS#8, SEC1 `EC PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY`) from
/// which the public key is derived (4me's README and the original's ES512 fixture store an EC
/// private key as "public key") — or from an HMAC shared secret ([`PolicyKey::shared_secret`]).
/// `Debug` never shows a shared secret.
pub struct PolicyKey(KeyMaterial);

impl fmt::Debug for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            KeyMaterial::Rsa(_) => f.write_str("PolicyKey::Rsa"),
            KeyMaterial::Ec(curve, _) => write!(f, "PolicyKey::Ec({curve:?})"),
            KeyMaterial::Hmac(_) => f.write_str("PolicyKey::SharedSecret([REDACTED])"),
        }
    }
}

impl PolicyKey {
    /// Parses a PEM key (first PEM block of `text`; surrounding whitespace is ignored).
    pub fn from_pem(text: &str) -> Result<PolicyKey, JwtError> {
        let block = pem::parse(text.trim()).map_err(|_| JwtError::KeyRejected("unparsable PEM"))?;
        let der = block.contents();
        match block.tag() {
            "PUBLIC KEY" => Self::from_spki_der(der),
            "RSA PUBLIC KEY" => RsaPublicKey::from_der(der)
                .map(|_| PolicyKey(KeyMaterial::Rsa(der.to_vec())))
                .map_err(|_| JwtError::KeyRejected("invalid PKCS#1 RSA public key")),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(der)
                .map(|kp| PolicyKey(KeyMaterial::Rsa(kp.public_key().as_ref().to_vec())))
                .map_err(|_| JwtError::KeyRejected("invalid PKCS#1 RSA private key")),
            "EC PRIVATE KEY" => Self::from_ec_private_der(der)
                .ok_or(JwtError::KeyRejected("invalid SEC1 EC private key")),
            "PRIVATE KEY" => {
                if let Ok(kp) = RsaKeyPair::from_pkcs8(der) {
                    return Ok(PolicyKey(KeyMaterial::Rsa(
                        kp.public_key().as_ref().to_vec(),
                    )));
                }
                Self::from_ec_private_der(der).ok_or(JwtError::KeyRejected(
                    "invalid or unsupported PKCS#8 private key",
                ))
            }
            _ => Err(JwtError::KeyRejected("unsupported PEM block type")),
        }
    }

    /// Uses `secret` (raw bytes) as an HMAC shared secret.
    pub fn shared_secret(secret: impl Into<Vec<u8>>) -> Result<PolicyKey, JwtError> {
        let secret: Vec<u8> = secret.into();
        if secret.is_empty() {
            return Err(JwtError::KeyRejected("empty shared secret"));
        }
        Ok(PolicyKey(KeyMaterial::Hmac(SecretSlice::from(secret))))
    }

    fn from_spki_der(der: &[u8]) -> Result<PolicyKey, JwtError> {
        if RsaPublicKey::from_der(der).is_ok() {
            return Ok(PolicyKey(KeyMaterial::Rsa(der.to_vec())));
        }
        EcCurve::ALL
            .into_iter()
            .find(|c| ParsedPublicKey::new(c.verification(), der).is_ok())
            .map(|c| PolicyKey(KeyMaterial::Ec(c, der.to_vec())))
            .ok_or(JwtError::KeyRejected(
                "unsupported public key (need RSA or EC P-256/P-384/P-521)",
            ))
    }

    fn from_ec_private_der(der: &[u8]) -> Option<PolicyKey> {
        EcCurve::ALL.into_iter().find_map(|c| {
            EcdsaKeyPair::from_private_key_der(c.signing(), der)
                .ok()
                .map(|kp| PolicyKey(KeyMaterial::Ec(c, kp.public_key().as_ref().to_vec())))
        })
    }

    /// The curve of an EC key, `None` for RSA keys and shared secrets.
    pub fn ec_curve(&self) -> Option<EcCurve> {
        match &self.0 {
            KeyMaterial::Ec(c, _) => Some(*c),
            _ => None,
        }
    }

    /// Whether this is an RSA public key.
    pub fn is_rsa(&self) -> bool {
        matches!(self.0, KeyMaterial::Rsa(_))
    }

    /// Whether this is an HMAC shared secret.
    pub fn is_shared_secret(&self) -> bool {
        matches!(self.0, KeyMaterial::Hmac(_))
    }
}

/// How the `aud` claim is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// `aud` (a string or an array of strings) must contain exactly this value. Use it whenever
    /// the policy defines an audience — always for the provider policy
    /// (`integrations provided by <provider>@<domain>`).
    Exact(String),
    /// `aud` must be present, any value is accepted. This reproduces jose's behaviour for customer
    /// policies stored with `"audience": null` or `""`; the issuer alone then binds the account.
    Present,
    /// `aud` is not checked at all. Only appropriate when the stored policy has no audience key
    /// at all (the original then skipped the check) and the issuer check plus the key are trusted
    /// to bind the token to its account; never use it for the provider policy.
    Unchecked,
}

impl Audience {
    /// Maps a stored policy's audience value the way the Node original did: key absent →
    /// [`Audience::Unchecked`], `null`/`""`/non-string → [`Audience::Present`], non-empty string →
    /// [`Audience::Exact`].
    pub fn from_stored(value: Option<&serde_json::Value>) -> Audience {
        match value {
            None => Audience::Unchecked,
            Some(serde_json::Value::String(s)) if !s.is_empty() => Audience::Exact(s.clone()),
            Some(_) => Audience::Present,
        }
    }
}

/// A webhook policy: algorithm, verification key and audience rule.
#[derive(Debug)]
pub struct WebhookPolicy {
    /// The only algorithm accepted in token headers.
    pub algorithm: Algorithm,
    /// The verification key.
    pub key: PolicyKey,
    /// The audience rule.
    pub audience: Audience,
}

/// The issuers 4me uses for `account` on `domain`: `https://<account>.<domain>` and, when the
/// domain contains `4me`, the same with the first `4me` replaced by `xurrent`
/// (`4me-staging.com` → `xurrent-staging.com`).
pub fn expected_issuers(account: &str, domain: &str) -> Vec<String> {
    let mut issuers = vec![format!("https://{account}.{domain}")];
    if domain.contains("4me") {
        let xurrent = domain.replacen("4me", "xurrent", 1);
        issuers.push(format!("https://{account}.{xurrent}"));
    }
    issuers
}

/// The standard claims of a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StandardClaims {
    /// `jti`: token id (numbers are rendered as strings).
    pub jti: Option<String>,
    /// `sub`: the webhook id for 4me deliveries (numbers are rendered as strings).
    pub sub: Option<String>,
    /// `iss`: the issuer (always present after verification).
    pub iss: String,
    /// `aud`: the audience values (a single string becomes one element).
    pub aud: Option<Vec<String>>,
    /// `iat`: issued-at, seconds since the epoch.
    pub iat: Option<i64>,
    /// `nbf`: not-before, seconds since the epoch.
    pub nbf: Option<i64>,
    /// `exp`: expiry, seconds since the epoch.
    pub exp: Option<i64>,
}

/// A verified token: the header key id, the standard claims and the typed `data` claim.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken<T> {
    /// The algorithm of the token (equal to the policy algorithm).
    pub algorithm: Algorithm,
    /// The `kid` header parameter, when present.
    pub kid: Option<String>,
    /// The standard claims.
    pub claims: StandardClaims,
    /// The `data` claim (the webhook envelope for 4me deliveries).
    pub data: T,
}

/// An identifier that 4me may send as a number or a string; serialises back in its original form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// A numeric id.
    Number(i64),
    /// A textual id.
    Text(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::Text(s) => f.write_str(s),
        }
    }
}

/// The `data` claim of a 4me webhook delivery. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEnvelope {
    /// Id of the webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<Id>,
    /// Node id of the webhook.
    #[serde(
        rename = "webhook_nodeID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub webhook_node_id: Option<String>,
    /// Id of the 4me account that sent the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<Id>,
    /// URL of the 4me account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Name of the webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The event, e.g. `app_instance.secrets-update` or `webhook.verify`.
    pub event: String,
    /// Id of the object the event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<Id>,
    /// Node id of the object the event is about.
    #[serde(
        rename = "object_nodeID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub object_node_id: Option<String>,
    /// Id of the person who triggered the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_id: Option<Id>,
    /// Node id of the person who triggered the event.
    #[serde(
        rename = "person_nodeID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub person_node_id: Option<String>,
    /// Name of the person who triggered the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_name: Option<String>,
    /// Name of the app instance (sent for app-instance events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
    /// The event payload (`null` when absent).
    #[serde(default)]
    pub payload: serde_json::Value,
}

enum Checker {
    Signature(ParsedPublicKey),
    Hmac(Box<hmac::Key>),
}

/// A verifier for one policy and one set of expected issuers. Parses the key once; cheap to reuse.
pub struct Verifier {
    algorithm: Algorithm,
    checker: Checker,
    audience: Audience,
    issuers: Vec<String>,
    leeway: u64,
    /// A replaced policy still accepted until the given time (seconds since the epoch).
    previous: Option<(Box<Verifier>, i64)>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .field("audience", &self.audience)
            .field("issuers", &self.issuers)
            .field("leeway", &self.leeway)
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// Deserialises a string or a number into a `String`.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(de::Error::custom("expected a string or a number")),
    })
}

/// Deserialises a JWT NumericDate (integer or fraction) into whole seconds.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Option::<serde_json::Number>::deserialize(d)? {
        None => None,
        Some(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Some(i),
            (None, Some(f)) if f.is_finite() && f.abs() < 1e15 => {
                // Within range: truncation toward negative infinity keeps the semantics.
                #[allow(clippy::cast_possible_truncation)]
                Some(f.floor() as i64)
            }
            _ => return Err(de::Error::custom("NumericDate out of range")),
        },
    })
}

/// Deserialises `aud` as a string or an array of strings.
fn audiences<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Aud>::deserialize(d)? {
        None => None,
        Some(Aud::One(s)) => Some(vec![s]),
        Some(Aud::Many(v)) => Some(v),
    })
}

#[derive(Deserialize)]
struct RawClaims<T> {
    #[serde(default, deserialize_with = "string_or_number")]
    jti: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    sub: Option<String>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default, deserialize_with = "audiences")]
    aud: Option<Vec<String>>,
    #[serde(default, deserialize_with = "numeric_date")]
    iat: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    nbf: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<i64>,
    data: Option<T>,
}

/// A serde error message without any echoed values (serde_json quotes offending strings).
fn sanitize_serde(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let head = if msg.starts_with("missing field") || msg.starts_with("unknown field") {
        // These only quote the field name; cut the trailing position, we add our own.
        msg.split(" at line ")
            .next()
            .unwrap_or("invalid claims")
            .to_owned()
    } else {
        msg.split(':').next().unwrap_or("invalid claims").to_owned()
    };
    format!("{head} at line {} column {}", e.line(), e.column())
}

fn b64(segment: &str, what: &'static str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed(what))
}

impl Verifier {
    /// Builds a verifier for `policy`, accepting tokens whose `iss` is one of `issuers`
    /// (see [`expected_issuers`]).
    ///
    /// Fails with [`JwtError::KeyRejected`] when the key does not suit the algorithm: an HMAC
    /// algorithm with an RSA/EC key, an RSA/ECDSA algorithm with a shared secret, an EC key of
    /// another curve, or an RSA key outside 2048–8192 bits.
    pub fn new(policy: WebhookPolicy, issuers: Vec<String>) -> Result<Verifier, JwtError> {
        let WebhookPolicy {
            algorithm,
            key,
            audience,
        } = policy;
        let checker =
            match (algorithm, &key.0) {
                (Algorithm::HS256, KeyMaterial::Hmac(s)) => Checker::Hmac(Box::new(
                    hmac::Key::new(hmac::HMAC_SHA256, s.expose_secret()),
                )),
                (Algorithm::HS384, KeyMaterial::Hmac(s)) => Checker::Hmac(Box::new(
                    hmac::Key::new(hmac::HMAC_SHA384, s.expose_secret()),
                )),
                (Algorithm::HS512, KeyMaterial::Hmac(s)) => Checker::Hmac(Box::new(
                    hmac::Key::new(hmac::HMAC_SHA512, s.expose_secret()),
                )),
                (_, KeyMaterial::Hmac(_)) => {
                    return Err(JwtError::KeyRejected(
                        "RSA/ECDSA algorithm requires a public key, not a shared secret",
                    ));
                }
                (a, _) if a.is_hmac() => {
                    return Err(JwtError::KeyRejected(
                        "HMAC algorithm requires a shared secret, not a public key",
                    ));
                }
                (a, KeyMaterial::Rsa(der)) => {
                    let alg: &'static signature::RsaParameters = match a {
                        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                        _ => return Err(JwtError::KeyRejected("ECDSA algorithm with an RSA key")),
                    };
                    let parsed = ParsedPublicKey::new(alg, der).map_err(|_| {
                        JwtError::KeyRejected("RSA key unusable for this algorithm")
                    })?;
                    Checker::Signature(parsed)
                }
                (a, KeyMaterial::Ec(curve, der)) => {
                    if a.ec_curve() != Some(*curve) {
                        return Err(JwtError::KeyRejected(
                            "EC key curve does not match the algorithm",
                        ));
                    }
                    let parsed = ParsedPublicKey::new(curve.verification(), der)
                        .map_err(|_| JwtError::KeyRejected("EC key unusable for this algorithm"))?;
                    Checker::Signature(parsed)
                }
            };
        Ok(Verifier {
            algorithm,
            checker,
            audience,
            issuers,
            leeway: DEFAULT_LEEWAY_SECS,
            previous: None,
        })
    }

    /// Also accepts tokens of `previous` (a policy this one replaced) until `until` (seconds
    /// since the epoch): deliveries 4me signed before the switch, and retries of them, still
    /// verify. Only a token this verifier refuses for its key, algorithm or audience is tried
    /// with the previous one; every other check stays this verifier's.
    #[must_use]
    pub fn accepting_previous(mut self, previous: Verifier, until: i64) -> Verifier {
        self.previous = Some((Box::new(previous), until));
        self
    }

    /// Builds a verifier for the issuers of `account` on `domain` ([`expected_issuers`]).
    pub fn for_account(
        policy: WebhookPolicy,
        account: &str,
        domain: &str,
    ) -> Result<Verifier, JwtError> {
        Self::new(policy, expected_issuers(account, domain))
    }

    /// Sets the clock leeway (seconds) applied to `exp` and `nbf`.
    #[must_use]
    pub fn with_leeway(mut self, seconds: u64) -> Verifier {
        self.leeway = seconds;
        self
    }

    /// The policy algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Verifies `token` against the current system time.
    pub fn verify<T: DeserializeOwned>(&self, token: &str) -> Result<VerifiedToken<T>, JwtError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        self.verify_at(token, now)
    }

    /// Verifies `token` as of `now` (seconds since the Unix epoch).
    pub fn verify_at<T: DeserializeOwned>(
        &self,
        token: &str,
        now: i64,
    ) -> Result<VerifiedToken<T>, JwtError> {
        match self.verify_own(token, now) {
            Err(
                e @ (JwtError::AlgorithmMismatch { .. }
                | JwtError::BadSignature
                | JwtError::WrongAudience),
            ) => match &self.previous {
                Some((previous, until)) if now <= *until => {
                    previous.verify_own(token, now).map_err(|_| e)
                }
                _ => Err(e),
            },
            other => other,
        }
    }

    fn verify_own<T: DeserializeOwned>(
        &self,
        token: &str,
        now: i64,
    ) -> Result<VerifiedToken<T>, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed("token exceeds 64 KiB"));
        }
        let token = token.trim();
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("expected three dot-separated segments"));
        };

        let header: Header = serde_json::from_slice(&b64(h64, "header is not base64url")?)
            .map_err(|_| JwtError::Malformed("header is not a JSON object"))?;
        let alg = header
            .alg
            .as_deref()
            .and_then(Algorithm::from_jws_name)
            .ok_or(JwtError::UnsupportedAlgorithm)?;
        if alg != self.algorithm {
            return Err(JwtError::AlgorithmMismatch {
                expected: self.algorithm,
                found: alg,
            });
        }
        if header.crit.is_some() {
            return Err(JwtError::Malformed(
                "unsupported critical header parameters",
            ));
        }

        let sig = b64(s64, "signature is not base64url")?;
        let signed_len = h64.len() + 1 + p64.len();
        let signed = token
            .get(..signed_len)
            .ok_or(JwtError::Malformed("expected three dot-separated segments"))?
            .as_bytes();
        let ok = match &self.checker {
            Checker::Signature(key) => key.verify_sig(signed, &sig).is_ok(),
            Checker::Hmac(key) => hmac::verify(key, signed, &sig).is_ok(),
        };
        if !ok {
            return Err(JwtError::BadSignature);
        }

        let payload = b64(p64, "payload is not base64url")?;
        let raw: RawClaims<T> = serde_json::from_slice(&payload)
            .map_err(|e| JwtError::InvalidClaims(sanitize_serde(&e)))?;

        let iss = raw.iss.ok_or(JwtError::MissingClaim("iss"))?;
        if !self.issuers.contains(&iss) {
            return Err(JwtError::WrongIssuer);
        }
        match (&self.audience, &raw.aud) {
            (Audience::Unchecked, _) => {}
            (_, None) => return Err(JwtError::MissingClaim("aud")),
            (Audience::Present, Some(_)) => {}
            (Audience::Exact(want), Some(got)) => {
                if !got.iter().any(|a| a == want) {
                    return Err(JwtError::WrongAudience);
                }
            }
        }
        let leeway = i64::try_from(self.leeway).unwrap_or(i64::MAX);
        if raw.exp.is_some_and(|exp| now >= exp.saturating_add(leeway)) {
            return Err(JwtError::Expired);
        }
        if raw.nbf.is_some_and(|nbf| now < nbf.saturating_sub(leeway)) {
            return Err(JwtError::NotYetValid);
        }
        let data = raw.data.ok_or(JwtError::MissingClaim("data"))?;
        Ok(VerifiedToken {
            algorithm: alg,
            kid: header.kid,
            claims: StandardClaims {
                jti: raw.jti,
                sub: raw.sub,
                iss,
                aud: raw.aud,
                iat: raw.iat,
                nbf: raw.nbf,
                exp: raw.exp,
            },
            data,
        })
    }
}

impl WebhookPolicy {
    /// One-shot verification: builds a [`Verifier`] for `issuers` and verifies `token` now.
    /// Prefer a long-lived [`Verifier`] when verifying many tokens.
    pub fn verify<T: DeserializeOwned>(
        self,
        token: &str,
        issuers: Vec<String>,
    ) -> Result<VerifiedToken<T>, JwtError> {
        Verifier::new(self, issuers)?.verify(token)
    }
}
