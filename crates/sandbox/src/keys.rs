//! Webhook policy keys: generation with aws-lc-rs, SPKI PEM export and JWS signing.

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;

/// Errors of key generation and signing.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// aws-lc-rs could not generate the key pair.
    #[error("unable to generate a {0} key pair")]
    Generate(&'static str),
    /// The public key could not be encoded.
    #[error("unable to encode the public key")]
    Encode,
    /// Signing failed.
    #[error("unable to sign the token")]
    Sign,
    /// The claims could not be serialized.
    #[error("unable to serialize the token: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// A private key of a webhook policy (never printed).
pub(crate) enum PolicyKey {
    Ec {
        pair: EcdsaKeyPair,
        jws_alg: &'static str,
    },
    Rsa {
        pair: Box<RsaKeyPair>,
        encoding: &'static dyn signature::RsaEncoding,
        jws_alg: &'static str,
    },
    Hmac {
        key: Box<aws_lc_rs::hmac::Key>,
        jws_alg: &'static str,
    },
    Unsigned,
}

impl std::fmt::Debug for PolicyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyKey(<redacted>)")
    }
}

impl PolicyKey {
    /// Generates a key for a 4me `WebhookPolicyJwtAlg` item (`es512`, `rs256`, ...).
    pub fn generate(alg: &str) -> Result<PolicyKey, KeyError> {
        let ec = |a: &'static signature::EcdsaSigningAlgorithm, jws_alg: &'static str| {
            EcdsaKeyPair::generate(a)
                .map(|pair| PolicyKey::Ec { pair, jws_alg })
                .map_err(|_| KeyError::Generate(jws_alg))
        };
        let rsa = |encoding: &'static dyn signature::RsaEncoding, jws_alg: &'static str| {
            RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map(|pair| PolicyKey::Rsa {
                    pair: Box::new(pair),
                    encoding,
                    jws_alg,
                })
                .map_err(|_| KeyError::Generate(jws_alg))
        };
        let hmac = |a: aws_lc_rs::hmac::Algorithm, jws_alg: &'static str| {
            let secret = crate::state::random_hex(32);
            Ok(PolicyKey::Hmac {
                key: Box::new(aws_lc_rs::hmac::Key::new(a, secret.as_bytes())),
                jws_alg,
            })
        };
        match alg {
            "es256" => ec(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "ES256"),
            "es384" => ec(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "ES384"),
            "es512" => ec(&signature::ECDSA_P521_SHA512_FIXED_SIGNING, "ES512"),
            "rs256" => rsa(&signature::RSA_PKCS1_SHA256, "RS256"),
            "rs384" => rsa(&signature::RSA_PKCS1_SHA384, "RS384"),
            "rs512" => rsa(&signature::RSA_PKCS1_SHA512, "RS512"),
            "hs256" => hmac(aws_lc_rs::hmac::HMAC_SHA256, "HS256"),
            "hs384" => hmac(aws_lc_rs::hmac::HMAC_SHA384, "HS384"),
            "hs512" => hmac(aws_lc_rs::hmac::HMAC_SHA512, "HS512"),
            _ => Ok(PolicyKey::Unsigned),
        }
    }

    /// The JWS `alg` header value.
    pub fn jws_alg(&self) -> &'static str {
        match self {
            PolicyKey::Ec { jws_alg, .. }
            | PolicyKey::Rsa { jws_alg, .. }
            | PolicyKey::Hmac { jws_alg, .. } => jws_alg,
            PolicyKey::Unsigned => "none",
        }
    }

    /// SPKI ("PUBLIC KEY") PEM of an asymmetric key; `None` for HMAC and unsigned policies.
    pub fn public_key_pem(&self) -> Result<Option<String>, KeyError> {
        let der: PublicKeyX509Der<'static> = match self {
            PolicyKey::Ec { pair, .. } => {
                pair.public_key().as_der().map_err(|_| KeyError::Encode)?
            }
            PolicyKey::Rsa { pair, .. } => {
                pair.public_key().as_der().map_err(|_| KeyError::Encode)?
            }
            PolicyKey::Hmac { .. } | PolicyKey::Unsigned => return Ok(None),
        };
        let pem = pem::Pem::new("PUBLIC KEY", der.as_ref().to_vec());
        Ok(Some(pem::encode_config(
            &pem,
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )))
    }

    /// Signs `claims` as a compact JWS with header `{"typ":"JWT","alg":<alg>}`.
    pub fn sign_jwt(&self, claims: &serde_json::Value) -> Result<String, KeyError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = serde_json::json!({"typ": "JWT", "alg": self.jws_alg()});
        let signing_input = format!(
            "{}.{}",
            b64.encode(serde_json::to_vec(&header)?),
            b64.encode(serde_json::to_vec(claims)?)
        );
        let rng = SystemRandom::new();
        let signature: Vec<u8> = match self {
            PolicyKey::Ec { pair, .. } => pair
                .sign(&rng, signing_input.as_bytes())
                .map_err(|_| KeyError::Sign)?
                .as_ref()
                .to_vec(),
            PolicyKey::Rsa { pair, encoding, .. } => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(*encoding, &rng, signing_input.as_bytes(), &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                sig
            }
            PolicyKey::Hmac { key, .. } => aws_lc_rs::hmac::sign(key, signing_input.as_bytes())
                .as_ref()
                .to_vec(),
            PolicyKey::Unsigned => Vec::new(),
        };
        Ok(format!("{signing_input}.{}", b64.encode(signature)))
    }
}
