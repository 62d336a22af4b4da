//! Webhook-policy JWT verification: tokens are signed in the test with keys generated in the test
//! (jsonwebtoken for RS*, ES256, ES384 and HS*; aws-lc-rs directly for ES512), then verified with
//! `app_builder_core::policy`.
// Test-only helpers (key generation, signing) unwrap on fixed, test-generated data.
#![allow(clippy::unwrap_used)]

use std::sync::LazyLock;

use app_builder_core::policy::{
    Algorithm, Audience, EcCurve, JwtError, MAX_TOKEN_LEN, PolicyKey, VerifiedToken, Verifier,
    WebhookEnvelope, WebhookPolicy, expected_issuers,
};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const NOW: i64 = 1_700_000_000;
const ACCOUNT: &str = "wdc";
const DOMAIN: &str = "4me-staging.com";
const AUDIENCE: &str = "integrations provided by wdc@4me-staging.com";
const SECRET: &[u8] = b"a shared secret that is long enough for HS512 tests.....";

// ---------------------------------------------------------------------------------------------
// Key material

/// A generated RSA key in every encoding the tests need.
struct RsaKeys {
    /// PKCS#1 `RSAPrivateKey` DER (what jsonwebtoken's aws-lc backend signs with).
    pkcs1_private_der: Vec<u8>,
    pkcs8_private_der: Vec<u8>,
    spki_der: Vec<u8>,
    pkcs1_public_der: Vec<u8>,
}

/// A generated EC key in every encoding the tests need.
struct EcKeys {
    curve: EcCurve,
    pkcs8_der: Vec<u8>,
    sec1_der: Vec<u8>,
    spki_der: Vec<u8>,
}

/// Reads one DER TLV, returning (tag, contents, rest).
fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let first = input[1];
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        let len = input[2..2 + n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    (tag, &input[header..header + len], &input[header + len..])
}

/// Extracts the PKCS#1 `RSAPrivateKey` from a PKCS#8 `PrivateKeyInfo`.
fn pkcs8_to_pkcs1(pkcs8: &[u8]) -> Vec<u8> {
    let (tag, seq, _) = der_tlv(pkcs8);
    assert_eq!(tag, 0x30);
    let (tag, _version, rest) = der_tlv(seq);
    assert_eq!(tag, 0x02);
    let (tag, _alg_id, rest) = der_tlv(rest);
    assert_eq!(tag, 0x30);
    let (tag, octets, _) = der_tlv(rest);
    assert_eq!(tag, 0x04);
    octets.to_vec()
}

fn gen_rsa() -> RsaKeys {
    let kp = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp)
        .unwrap()
        .as_ref()
        .to_vec();
    let pkcs1 = pkcs8_to_pkcs1(&pkcs8);
    // Sanity: the extracted structure is a valid PKCS#1 key.
    RsaKeyPair::from_der(&pkcs1).unwrap();
    RsaKeys {
        pkcs1_private_der: pkcs1,
        pkcs8_private_der: pkcs8,
        spki_der: kp.public_key().as_der().unwrap().as_ref().to_vec(),
        pkcs1_public_der: kp.public_key().as_ref().to_vec(),
    }
}

fn gen_ec(curve: EcCurve) -> EcKeys {
    let alg = signing_alg(curve);
    let kp = EcdsaKeyPair::generate(alg).unwrap();
    EcKeys {
        curve,
        pkcs8_der: kp.to_pkcs8v1().unwrap().as_ref().to_vec(),
        sec1_der: kp.private_key().as_der().unwrap().as_ref().to_vec(),
        spki_der: kp.public_key().as_der().unwrap().as_ref().to_vec(),
    }
}

fn signing_alg(curve: EcCurve) -> &'static signature::EcdsaSigningAlgorithm {
    match curve {
        EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        EcCurve::P521 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
    }
}

static RSA: LazyLock<RsaKeys> = LazyLock::new(gen_rsa);
static RSA_OTHER: LazyLock<RsaKeys> = LazyLock::new(gen_rsa);
static P256: LazyLock<EcKeys> = LazyLock::new(|| gen_ec(EcCurve::P256));
static P384: LazyLock<EcKeys> = LazyLock::new(|| gen_ec(EcCurve::P384));
static P521: LazyLock<EcKeys> = LazyLock::new(|| gen_ec(EcCurve::P521));
static P521_OTHER: LazyLock<EcKeys> = LazyLock::new(|| gen_ec(EcCurve::P521));

fn pem_text(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}

// ---------------------------------------------------------------------------------------------
// Token construction

fn claims() -> Value {
    json!({
        "jti": "4f1c2e",
        "sub": "12",
        "iss": format!("https://{ACCOUNT}.{DOMAIN}"),
        "aud": AUDIENCE,
        "iat": NOW - 5,
        "nbf": NOW - 5,
        "data": {
            "webhook_id": 12,
            "webhook_nodeID": "NG1lLXN0YWdpbmcuY29tL1dlYmhvb2svMTI",
            "account_id": "wdc",
            "account": "https://wdc.4me-staging.com",
            "name": "app_instance.secrets-update",
            "event": "app_instance.secrets-update",
            "object_id": 7,
            "object_nodeID": "NG1lLXN0YWdpbmcuY29tL0FwcEluc3RhbmNlLzc",
            "person_id": 3,
            "person_nodeID": "NG1lLXN0YWdpbmcuY29tL1BlcnNvbi8z",
            "person_name": "Howard Tanner",
            "instance_name": "my-app",
            "some_future_field": true,
            "payload": {"customer_account_id": "wna-it"}
        }
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn jwt_alg(alg: Algorithm) -> jsonwebtoken::Algorithm {
    match alg {
        Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        Algorithm::RS384 => jsonwebtoken::Algorithm::RS384,
        Algorithm::RS512 => jsonwebtoken::Algorithm::RS512,
        Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        Algorithm::ES384 => jsonwebtoken::Algorithm::ES384,
        Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
        Algorithm::HS384 => jsonwebtoken::Algorithm::HS384,
        Algorithm::HS512 => jsonwebtoken::Algorithm::HS512,
        Algorithm::ES512 => unreachable!("jsonwebtoken has no ES512"),
    }
}

/// Signs with jsonwebtoken.
fn jwt_sign(alg: Algorithm, key: &jsonwebtoken::EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jwt_alg(alg)), claims, key).unwrap()
}

fn rsa_token(alg: Algorithm, claims: &Value) -> String {
    jwt_sign(
        alg,
        &jsonwebtoken::EncodingKey::from_rsa_der(&RSA.pkcs1_private_der),
        claims,
    )
}

fn hs_token(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jwt_sign(alg, &jsonwebtoken::EncodingKey::from_secret(secret), claims)
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// Signs `header.payload` with aws-lc-rs ECDSA (fixed r||s form) — used for ES512, which
/// jsonwebtoken lacks.
fn ec_token_raw(keys: &EcKeys, header: &Value, payload: &[u8]) -> String {
    let kp = EcdsaKeyPair::from_pkcs8(signing_alg(keys.curve), &keys.pkcs8_der).unwrap();
    let signing_input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload));
    let sig = kp
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .unwrap();
    format!("{signing_input}.{}", b64(sig.as_ref()))
}

fn es512_token(claims: &Value) -> String {
    ec_token_raw(
        &P521,
        &json!({"typ": "JWT", "alg": "ES512"}),
        claims.to_string().as_bytes(),
    )
}

// ---------------------------------------------------------------------------------------------
// Verification helpers

fn verifier(alg: Algorithm, key: PolicyKey, audience: Audience) -> Verifier {
    Verifier::for_account(
        WebhookPolicy {
            algorithm: alg,
            key,
            audience,
        },
        ACCOUNT,
        DOMAIN,
    )
    .unwrap()
}

fn exact() -> Audience {
    Audience::Exact(AUDIENCE.to_owned())
}

fn rsa_verifier(alg: Algorithm) -> Verifier {
    verifier(
        alg,
        PolicyKey::from_pem(&pem_text("PUBLIC KEY", &RSA.spki_der)).unwrap(),
        exact(),
    )
}

fn ec_verifier(alg: Algorithm, keys: &EcKeys) -> Verifier {
    verifier(
        alg,
        PolicyKey::from_pem(&pem_text("PUBLIC KEY", &keys.spki_der)).unwrap(),
        exact(),
    )
}

fn hs_verifier(alg: Algorithm) -> Verifier {
    verifier(alg, PolicyKey::shared_secret(SECRET).unwrap(), exact())
}

fn es512_verifier() -> Verifier {
    ec_verifier(Algorithm::ES512, &P521)
}

fn check(v: &Verifier, token: &str) -> Result<VerifiedToken<WebhookEnvelope>, JwtError> {
    v.verify_at::<WebhookEnvelope>(token, NOW)
}

fn assert_valid(v: &Verifier, token: &str, alg: Algorithm) {
    let t = check(v, token).unwrap();
    assert_eq!(t.algorithm, alg);
    assert_eq!(t.claims.iss, "https://wdc.4me-staging.com");
    assert_eq!(t.claims.sub.as_deref(), Some("12"));
    assert_eq!(t.claims.jti.as_deref(), Some("4f1c2e"));
    assert_eq!(t.claims.aud, Some(vec![AUDIENCE.to_owned()]));
    assert_eq!(t.claims.iat, Some(NOW - 5));
    assert_eq!(t.claims.nbf, Some(NOW - 5));
    assert_eq!(t.claims.exp, None);
    assert_eq!(t.data.event, "app_instance.secrets-update");
    assert_eq!(t.data.payload["customer_account_id"], "wna-it");
}

// ---------------------------------------------------------------------------------------------
// Every algorithm verifies

#[test]
fn rs256_valid() {
    assert_valid(
        &rsa_verifier(Algorithm::RS256),
        &rsa_token(Algorithm::RS256, &claims()),
        Algorithm::RS256,
    );
}

#[test]
fn rs384_valid() {
    assert_valid(
        &rsa_verifier(Algorithm::RS384),
        &rsa_token(Algorithm::RS384, &claims()),
        Algorithm::RS384,
    );
}

#[test]
fn rs512_valid() {
    assert_valid(
        &rsa_verifier(Algorithm::RS512),
        &rsa_token(Algorithm::RS512, &claims()),
        Algorithm::RS512,
    );
}

#[test]
fn es256_valid() {
    let token = jwt_sign(
        Algorithm::ES256,
        &jsonwebtoken::EncodingKey::from_ec_der(&P256.pkcs8_der),
        &claims(),
    );
    assert_valid(
        &ec_verifier(Algorithm::ES256, &P256),
        &token,
        Algorithm::ES256,
    );
}

#[test]
fn es384_valid() {
    let token = jwt_sign(
        Algorithm::ES384,
        &jsonwebtoken::EncodingKey::from_ec_der(&P384.pkcs8_der),
        &claims(),
    );
    assert_valid(
        &ec_verifier(Algorithm::ES384, &P384),
        &token,
        Algorithm::ES384,
    );
}

#[test]
fn es512_valid() {
    assert_valid(&es512_verifier(), &es512_token(&claims()), Algorithm::ES512);
}

#[test]
fn hs256_valid() {
    assert_valid(
        &hs_verifier(Algorithm::HS256),
        &hs_token(Algorithm::HS256, SECRET, &claims()),
        Algorithm::HS256,
    );
}

#[test]
fn hs384_valid() {
    assert_valid(
        &hs_verifier(Algorithm::HS384),
        &hs_token(Algorithm::HS384, SECRET, &claims()),
        Algorithm::HS384,
    );
}

#[test]
fn hs512_valid() {
    assert_valid(
        &hs_verifier(Algorithm::HS512),
        &hs_token(Algorithm::HS512, SECRET, &claims()),
        Algorithm::HS512,
    );
}

#[test]
fn verify_with_system_clock_accepts_current_token() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let c = with(
        with(claims(), "nbf", json!(now - 60)),
        "exp",
        json!(now + 3600),
    );
    let token = es512_token(&c);
    let t = es512_verifier().verify::<WebhookEnvelope>(&token).unwrap();
    assert_eq!(t.claims.exp, Some(now + 3600));
    // The same token is expired two hours later.
    assert_eq!(
        es512_verifier()
            .verify_at::<WebhookEnvelope>(&token, now + 7200)
            .unwrap_err(),
        JwtError::Expired
    );
}

#[test]
fn one_shot_policy_verify() {
    let policy = WebhookPolicy {
        algorithm: Algorithm::HS256,
        key: PolicyKey::shared_secret(SECRET).unwrap(),
        audience: exact(),
    };
    let c = without(without(claims(), "nbf"), "iat");
    let t: VerifiedToken<Value> = policy
        .verify(
            &hs_token(Algorithm::HS256, SECRET, &c),
            expected_issuers(ACCOUNT, DOMAIN),
        )
        .unwrap();
    assert_eq!(t.data["event"], "app_instance.secrets-update");
}

// ---------------------------------------------------------------------------------------------
// Algorithm rules

#[test]
fn header_alg_differs_from_policy_alg() {
    // The original's "wrong algorithm" case: RS512 expected, RS256 token.
    let err = check(
        &rsa_verifier(Algorithm::RS512),
        &rsa_token(Algorithm::RS256, &claims()),
    )
    .unwrap_err();
    assert_eq!(
        err,
        JwtError::AlgorithmMismatch {
            expected: Algorithm::RS512,
            found: Algorithm::RS256
        }
    );
}

#[test]
fn lower_case_header_alg_is_rejected() {
    let token = ec_token_raw(
        &P521,
        &json!({"alg": "es512"}),
        claims().to_string().as_bytes(),
    );
    assert_eq!(
        check(&es512_verifier(), &token).unwrap_err(),
        JwtError::UnsupportedAlgorithm
    );
}

#[test]
fn alg_none_is_always_rejected() {
    for alg in ["none", "None", "NONE"] {
        let header = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        let payload = b64(claims().to_string().as_bytes());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.{}", b64(b"x")),
        ] {
            for v in [es512_verifier(), hs_verifier(Algorithm::HS256)] {
                assert_eq!(
                    check(&v, &token).unwrap_err(),
                    JwtError::UnsupportedAlgorithm
                );
            }
        }
    }
}

#[test]
fn missing_header_alg_is_rejected() {
    let token = ec_token_raw(
        &P521,
        &json!({"typ": "JWT"}),
        claims().to_string().as_bytes(),
    );
    assert_eq!(
        check(&es512_verifier(), &token).unwrap_err(),
        JwtError::UnsupportedAlgorithm
    );
}

#[test]
fn hs256_signed_with_rsa_public_key_as_secret_is_rejected() {
    let public_pem = pem_text("PUBLIC KEY", &RSA.spki_der);
    let forged = hs_token(Algorithm::HS256, public_pem.as_bytes(), &claims());
    // Against the RS256 policy: the header algorithm is not the policy's.
    assert_eq!(
        check(&rsa_verifier(Algorithm::RS256), &forged).unwrap_err(),
        JwtError::AlgorithmMismatch {
            expected: Algorithm::RS256,
            found: Algorithm::HS256
        }
    );
    // And a policy cannot be configured to use the RSA public key as an HMAC secret.
    let err = Verifier::for_account(
        WebhookPolicy {
            algorithm: Algorithm::HS256,
            key: PolicyKey::from_pem(&public_pem).unwrap(),
            audience: exact(),
        },
        ACCOUNT,
        DOMAIN,
    )
    .unwrap_err();
    assert!(matches!(err, JwtError::KeyRejected(_)), "{err:?}");
}

#[test]
fn asymmetric_algorithm_with_shared_secret_is_rejected() {
    for alg in [Algorithm::RS256, Algorithm::ES512] {
        let err = Verifier::for_account(
            WebhookPolicy {
                algorithm: alg,
                key: PolicyKey::shared_secret(SECRET).unwrap(),
                audience: exact(),
            },
            ACCOUNT,
            DOMAIN,
        )
        .unwrap_err();
        assert!(matches!(err, JwtError::KeyRejected(_)), "{alg}: {err:?}");
    }
}

#[test]
fn ec_key_of_other_curve_or_rsa_key_for_es_is_rejected() {
    let p256 = PolicyKey::from_pem(&pem_text("PUBLIC KEY", &P256.spki_der)).unwrap();
    assert_eq!(p256.ec_curve(), Some(EcCurve::P256));
    let err = Verifier::new(
        WebhookPolicy {
            algorithm: Algorithm::ES512,
            key: p256,
            audience: exact(),
        },
        vec![],
    )
    .unwrap_err();
    assert!(matches!(err, JwtError::KeyRejected(_)));
    let err = Verifier::new(
        WebhookPolicy {
            algorithm: Algorithm::ES256,
            key: PolicyKey::from_pem(&pem_text("PUBLIC KEY", &RSA.spki_der)).unwrap(),
            audience: exact(),
        },
        vec![],
    )
    .unwrap_err();
    assert!(matches!(err, JwtError::KeyRejected(_)));
}

#[test]
fn der_encoded_ecdsa_signature_is_rejected() {
    // JWS requires the fixed r||s form; an ASN.1 DER signature must not verify.
    let kp = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &P256.pkcs8_der)
        .unwrap();
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "ES256"}).to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let sig = kp.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    let token = format!("{input}.{}", b64(sig.as_ref()));
    assert_eq!(
        check(&ec_verifier(Algorithm::ES256, &P256), &token).unwrap_err(),
        JwtError::BadSignature
    );
}

#[test]
fn crit_header_is_rejected() {
    let token = ec_token_raw(
        &P521,
        &json!({"alg": "ES512", "crit": ["exp"]}),
        claims().to_string().as_bytes(),
    );
    assert!(matches!(
        check(&es512_verifier(), &token).unwrap_err(),
        JwtError::Malformed(_)
    ));
}

// ---------------------------------------------------------------------------------------------
// Issuer

#[test]
fn expected_issuers_include_xurrent_variant() {
    assert_eq!(
        expected_issuers("wdc", "4me-staging.com"),
        vec![
            "https://wdc.4me-staging.com",
            "https://wdc.xurrent-staging.com"
        ]
    );
    assert_eq!(
        expected_issuers("acme", "4me.com"),
        vec!["https://acme.4me.com", "https://acme.xurrent.com"]
    );
    assert_eq!(
        expected_issuers("acme", "4me.qa"),
        vec!["https://acme.4me.qa", "https://acme.xurrent.qa"]
    );
    // Only the first occurrence is replaced.
    assert_eq!(
        expected_issuers("a", "4me.4me.com"),
        vec!["https://a.4me.4me.com", "https://a.xurrent.4me.com"]
    );
    assert_eq!(
        expected_issuers("a", "example.com"),
        vec!["https://a.example.com"]
    );
}

#[test]
fn xurrent_issuer_is_accepted_with_kid_header() {
    let c = with(claims(), "iss", json!("https://wdc.xurrent-staging.com"));
    let token = ec_token_raw(
        &P521,
        &json!({"kid": "k-1", "alg": "ES512"}),
        c.to_string().as_bytes(),
    );
    let t = check(&es512_verifier(), &token).unwrap();
    assert_eq!(t.claims.iss, "https://wdc.xurrent-staging.com");
    assert_eq!(t.kid.as_deref(), Some("k-1"));
}

#[test]
fn wrong_issuer_is_rejected() {
    for iss in [
        "https://wdc.4me-demo.com",      // wrong environment
        "https://other.4me-staging.com", // wrong account
        "https://wdc.4me-staging.com/",  // not exact
        "http://wdc.4me-staging.com",    // scheme
        "https://wdc.xurrent-demo.com",  // xurrent of another environment
    ] {
        let token = es512_token(&with(claims(), "iss", json!(iss)));
        assert_eq!(
            check(&es512_verifier(), &token).unwrap_err(),
            JwtError::WrongIssuer,
            "{iss}"
        );
    }
}

#[test]
fn missing_issuer_is_rejected() {
    let token = es512_token(&without(claims(), "iss"));
    assert_eq!(
        check(&es512_verifier(), &token).unwrap_err(),
        JwtError::MissingClaim("iss")
    );
}

// ---------------------------------------------------------------------------------------------
// Audience

#[test]
fn wrong_audience_is_rejected() {
    let token = es512_token(&with(
        claims(),
        "aud",
        json!("integrations provided by x@4me.com"),
    ));
    assert_eq!(
        check(&es512_verifier(), &token).unwrap_err(),
        JwtError::WrongAudience
    );
    let token = es512_token(&with(claims(), "aud", json!(["a", "b"])));
    assert_eq!(
        check(&es512_verifier(), &token).unwrap_err(),
        JwtError::WrongAudience
    );
}

#[test]
fn audience_array_containing_policy_audience_is_accepted() {
    let token = es512_token(&with(claims(), "aud", json!(["other", AUDIENCE])));
    let t = check(&es512_verifier(), &token).unwrap();
    assert_eq!(
        t.claims.aud,
        Some(vec!["other".to_owned(), AUDIENCE.to_owned()])
    );
}

#[test]
fn audience_modes() {
    let p521_key = || PolicyKey::from_pem(&pem_text("PUBLIC KEY", &P521.spki_der)).unwrap();
    let missing = es512_token(&without(claims(), "aud"));
    let other = es512_token(&with(claims(), "aud", json!("anything")));

    let exact_v = verifier(Algorithm::ES512, p521_key(), exact());
    assert_eq!(
        check(&exact_v, &missing).unwrap_err(),
        JwtError::MissingClaim("aud")
    );

    let present = verifier(Algorithm::ES512, p521_key(), Audience::Present);
    assert!(check(&present, &other).is_ok());
    assert_eq!(
        check(&present, &missing).unwrap_err(),
        JwtError::MissingClaim("aud")
    );

    let unchecked = verifier(Algorithm::ES512, p521_key(), Audience::Unchecked);
    assert!(check(&unchecked, &other).is_ok());
    let t = check(&unchecked, &missing).unwrap();
    assert_eq!(t.claims.aud, None);
}

#[test]
fn audience_from_stored_policy_value() {
    assert_eq!(Audience::from_stored(None), Audience::Unchecked);
    assert_eq!(Audience::from_stored(Some(&Value::Null)), Audience::Present);
    assert_eq!(Audience::from_stored(Some(&json!(""))), Audience::Present);
    assert_eq!(
        Audience::from_stored(Some(&json!("aud-x"))),
        Audience::Exact("aud-x".to_owned())
    );
}

#[test]
fn non_string_audience_is_invalid_claims() {
    let token = es512_token(&with(claims(), "aud", json!(42)));
    assert!(matches!(
        check(&es512_verifier(), &token).unwrap_err(),
        JwtError::InvalidClaims(_)
    ));
}

// ---------------------------------------------------------------------------------------------
// Time

#[test]
fn expired_token_is_rejected() {
    let token = es512_token(&with(claims(), "exp", json!(NOW - 3600)));
    assert_eq!(
        check(&es512_verifier(), &token).unwrap_err(),
        JwtError::Expired
    );
}

#[test]
fn future_nbf_is_rejected() {
    let token = es512_token(&with(claims(), "nbf", json!(NOW + 3600)));
    assert_eq!(
        check(&es512_verifier(), &token).unwrap_err(),
        JwtError::NotYetValid
    );
}

#[test]
fn future_iat_is_accepted() {
    let token = es512_token(&with(claims(), "iat", json!(NOW + 3600)));
    assert!(check(&es512_verifier(), &token).is_ok());
}

#[test]
fn leeway_edges() {
    let v = es512_verifier();
    let exp = |e: i64| es512_token(&with(claims(), "exp", json!(e)));
    let nbf = |n: i64| es512_token(&with(claims(), "nbf", json!(n)));
    // Default leeway is 30 s.
    assert!(check(&v, &exp(NOW - 29)).is_ok());
    assert_eq!(check(&v, &exp(NOW - 30)).unwrap_err(), JwtError::Expired);
    assert!(check(&v, &nbf(NOW + 30)).is_ok());
    assert_eq!(
        check(&v, &nbf(NOW + 31)).unwrap_err(),
        JwtError::NotYetValid
    );
    // Fractional NumericDates are floored.
    assert!(
        check(
            &v,
            &es512_token(&with(claims(), "exp", json!((NOW - 29) as f64 + 0.5)))
        )
        .is_ok()
    );

    // Strict mode reproduces jose's zero tolerance.
    let strict = es512_verifier().with_leeway(0);
    assert!(check(&strict, &exp(NOW + 1)).is_ok());
    assert_eq!(check(&strict, &exp(NOW)).unwrap_err(), JwtError::Expired);
    assert!(check(&strict, &nbf(NOW)).is_ok());
    assert_eq!(
        check(&strict, &nbf(NOW + 1)).unwrap_err(),
        JwtError::NotYetValid
    );
}

// ---------------------------------------------------------------------------------------------
// Signatures

#[test]
fn tampered_payload_is_rejected() {
    for (v, token) in [
        (es512_verifier(), es512_token(&claims())),
        (
            rsa_verifier(Algorithm::RS256),
            rsa_token(Algorithm::RS256, &claims()),
        ),
        (
            hs_verifier(Algorithm::HS256),
            hs_token(Algorithm::HS256, SECRET, &claims()),
        ),
    ] {
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = b64(with(claims(), "sub", json!("13")).to_string().as_bytes());
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(check(&v, &forged).unwrap_err(), JwtError::BadSignature);
        // A flipped signature bit fails too.
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[0] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
        assert_eq!(check(&v, &flipped).unwrap_err(), JwtError::BadSignature);
    }
}

#[test]
fn wrong_key_is_rejected() {
    assert_eq!(
        check(
            &ec_verifier(Algorithm::ES512, &P521_OTHER),
            &es512_token(&claims())
        )
        .unwrap_err(),
        JwtError::BadSignature
    );
    let other_rsa = verifier(
        Algorithm::RS256,
        PolicyKey::from_pem(&pem_text("PUBLIC KEY", &RSA_OTHER.spki_der)).unwrap(),
        exact(),
    );
    assert_eq!(
        check(&other_rsa, &rsa_token(Algorithm::RS256, &claims())).unwrap_err(),
        JwtError::BadSignature
    );
    let other_secret = verifier(
        Algorithm::HS256,
        PolicyKey::shared_secret(b"another secret".to_vec()).unwrap(),
        exact(),
    );
    assert_eq!(
        check(
            &other_secret,
            &hs_token(Algorithm::HS256, SECRET, &claims())
        )
        .unwrap_err(),
        JwtError::BadSignature
    );
}

// ---------------------------------------------------------------------------------------------
// Garbage input

#[test]
fn garbage_inputs_are_malformed() {
    let v = es512_verifier();
    let valid = es512_token(&claims());
    let parts: Vec<&str> = valid.split('.').collect();
    let cases: Vec<String> = vec![
        String::new(),
        "   ".to_owned(),
        ".".to_owned(),
        "..".to_owned(),
        "...".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{valid}.{}", parts[2]),
        "not base64!.e30.e30".to_owned(),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.sig*", parts[0], parts[1]),
        format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"[1,2]"), parts[1], parts[2]),
        format!("{}.{}.{}", b64("é".as_bytes()), parts[1], parts[2]),
        "ÿÿÿ.ÿÿÿ.ÿÿÿ".to_owned(),
    ];
    for token in &cases {
        let err = check(&v, token).unwrap_err();
        assert!(matches!(err, JwtError::Malformed(_)), "{token:?}: {err:?}");
    }
}

#[test]
fn oversized_input_is_rejected_before_decoding() {
    let v = es512_verifier();
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(
        check(&v, &huge).unwrap_err(),
        JwtError::Malformed("token exceeds 64 KiB")
    );
    // A validly signed token whose payload pushes it over the cap is rejected too.
    let big = with(claims(), "padding", json!("x".repeat(MAX_TOKEN_LEN)));
    assert_eq!(
        check(&v, &es512_token(&big)).unwrap_err(),
        JwtError::Malformed("token exceeds 64 KiB")
    );
}

#[test]
fn bad_json_payload_is_invalid_claims_without_contents() {
    let v = hs_verifier(Algorithm::HS256);
    let header = b64(json!({"alg": "HS256"}).to_string().as_bytes());
    let sign = |payload: &[u8]| {
        let input = format!("{header}.{}", b64(payload));
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", b64(tag.as_ref()))
    };
    for payload in [&b"not json"[..], b"[1,2,3]", b"{\"iss\":"] {
        let err = check(&v, &sign(payload)).unwrap_err();
        assert!(matches!(err, JwtError::InvalidClaims(_)), "{err:?}");
    }
    // A wrongly typed claim: the message names the problem but never echoes the value.
    let secretish = "s3cr3t-value-must-not-leak";
    let c = with(claims(), "exp", json!(secretish));
    let err = check(&v, &sign(c.to_string().as_bytes())).unwrap_err();
    assert!(matches!(err, JwtError::InvalidClaims(_)), "{err:?}");
    assert!(!err.to_string().contains(secretish), "{err}");
    let c = with(
        claims(),
        "data",
        json!({"event": secretish, "webhook_id": [secretish]}),
    );
    let err = check(&v, &sign(c.to_string().as_bytes())).unwrap_err();
    assert!(!err.to_string().contains(secretish), "{err}");
}

#[test]
fn pseudo_random_garbage_never_panics() {
    let v = es512_verifier();
    let hs = hs_verifier(Algorithm::HS256);
    let alphabet: Vec<char> = "AZaz09-_.=+/ \u{e9}{}\"".chars().collect();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for len in 0..400 {
        let mut s = String::new();
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            s.push(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        assert!(check(&v, &s).is_err());
        assert!(check(&hs, &s).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Key formats

#[test]
fn ec_private_key_pems_are_accepted_as_policy_key() {
    let token = es512_token(&claims());
    for pem in [
        pem_text("EC PRIVATE KEY", &P521.sec1_der),
        pem_text("PRIVATE KEY", &P521.pkcs8_der),
    ] {
        let key = PolicyKey::from_pem(&pem).unwrap();
        assert_eq!(key.ec_curve(), Some(EcCurve::P521));
        assert!(format!("{key:?}").contains("P521"));
        let v = verifier(Algorithm::ES512, key, exact());
        assert_valid(&v, &token, Algorithm::ES512);
    }
    // P-256 SEC1 private key for ES256.
    let token = jwt_sign(
        Algorithm::ES256,
        &jsonwebtoken::EncodingKey::from_ec_der(&P256.pkcs8_der),
        &claims(),
    );
    let key = PolicyKey::from_pem(&pem_text("EC PRIVATE KEY", &P256.sec1_der)).unwrap();
    assert_valid(
        &verifier(Algorithm::ES256, key, exact()),
        &token,
        Algorithm::ES256,
    );
}

#[test]
fn rsa_key_formats_are_accepted() {
    let token = rsa_token(Algorithm::RS256, &claims());
    for pem in [
        pem_text("PUBLIC KEY", &RSA.spki_der),
        pem_text("RSA PUBLIC KEY", &RSA.pkcs1_public_der),
        pem_text("RSA PRIVATE KEY", &RSA.pkcs1_private_der),
        pem_text("PRIVATE KEY", &RSA.pkcs8_private_der),
    ] {
        let key = PolicyKey::from_pem(&pem).unwrap();
        assert!(key.is_rsa());
        assert_valid(
            &verifier(Algorithm::RS256, key, exact()),
            &token,
            Algorithm::RS256,
        );
    }
}

#[test]
fn pem_with_surrounding_whitespace_and_crlf_is_accepted() {
    let pem = pem_text("PUBLIC KEY", &P521.spki_der).replace('\n', "\r\n");
    let key = PolicyKey::from_pem(&format!("\n  {pem}\n\n")).unwrap();
    assert_valid(
        &verifier(Algorithm::ES512, key, exact()),
        &es512_token(&claims()),
        Algorithm::ES512,
    );
}

#[test]
fn unusable_keys_are_rejected() {
    for text in [
        "",
        "not a pem",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    ] {
        assert!(matches!(
            PolicyKey::from_pem(text).unwrap_err(),
            JwtError::KeyRejected(_)
        ));
    }
    let cert = pem_text("CERTIFICATE", &P521.spki_der);
    assert!(matches!(
        PolicyKey::from_pem(&cert).unwrap_err(),
        JwtError::KeyRejected(_)
    ));
    // Mislabelled: EC key in an RSA block.
    let mislabelled = pem_text("RSA PUBLIC KEY", &P521.spki_der);
    assert!(matches!(
        PolicyKey::from_pem(&mislabelled).unwrap_err(),
        JwtError::KeyRejected(_)
    ));
    assert!(matches!(
        PolicyKey::shared_secret(Vec::new()).unwrap_err(),
        JwtError::KeyRejected(_)
    ));
}

#[test]
fn debug_redacts_shared_secret() {
    let key = PolicyKey::shared_secret(b"super-secret-hmac-key".to_vec()).unwrap();
    let policy = WebhookPolicy {
        algorithm: Algorithm::HS256,
        key,
        audience: exact(),
    };
    let shown = format!("{policy:?}");
    assert!(!shown.contains("super-secret"), "{shown}");
    assert!(shown.contains("REDACTED"), "{shown}");
    let v = Verifier::new(policy, vec![]).unwrap();
    assert!(!format!("{v:?}").contains("super-secret"));
}

// ---------------------------------------------------------------------------------------------
// Algorithm names

#[test]
fn algorithm_parsing_and_serde() {
    assert_eq!("es512".parse::<Algorithm>().unwrap(), Algorithm::ES512);
    assert_eq!("ES512".parse::<Algorithm>().unwrap(), Algorithm::ES512);
    assert_eq!("rs256".parse::<Algorithm>().unwrap(), Algorithm::RS256);
    assert_eq!("HS384".parse::<Algorithm>().unwrap(), Algorithm::HS384);
    assert!("none".parse::<Algorithm>().is_err());
    assert!("ES999".parse::<Algorithm>().is_err());
    for alg in Algorithm::ALL {
        let s = serde_json::to_string(&alg).unwrap();
        assert_eq!(s, format!("\"{}\"", alg.jws_name().to_lowercase()));
        assert_eq!(serde_json::from_str::<Algorithm>(&s).unwrap(), alg);
        let upper = format!("\"{}\"", alg.jws_name());
        assert_eq!(serde_json::from_str::<Algorithm>(&upper).unwrap(), alg);
        assert_eq!(Algorithm::from_jws_name(alg.jws_name()), Some(alg));
        assert_eq!(Algorithm::from_jws_name(alg.fourme_name()), None);
    }
    assert!(serde_json::from_str::<Algorithm>("\"none\"").is_err());
}

// ---------------------------------------------------------------------------------------------
// Envelope

#[test]
fn envelope_fields_and_missing_data() {
    let t = check(&es512_verifier(), &es512_token(&claims())).unwrap();
    let env = t.data;
    assert_eq!(env.webhook_id.map(|i| i.to_string()), Some("12".to_owned()));
    assert_eq!(
        env.webhook_node_id.as_deref(),
        Some("NG1lLXN0YWdpbmcuY29tL1dlYmhvb2svMTI")
    );
    assert_eq!(
        env.account_id.map(|i| i.to_string()),
        Some("wdc".to_owned())
    );
    assert_eq!(env.account.as_deref(), Some("https://wdc.4me-staging.com"));
    assert_eq!(env.name.as_deref(), Some("app_instance.secrets-update"));
    assert_eq!(env.object_id.map(|i| i.to_string()), Some("7".to_owned()));
    assert_eq!(env.person_id.map(|i| i.to_string()), Some("3".to_owned()));
    assert_eq!(env.person_name.as_deref(), Some("Howard Tanner"));
    assert_eq!(env.instance_name.as_deref(), Some("my-app"));
    assert_eq!(
        env.person_node_id.as_deref(),
        Some("NG1lLXN0YWdpbmcuY29tL1BlcnNvbi8z")
    );
    assert_eq!(
        env.object_node_id.as_deref(),
        Some("NG1lLXN0YWdpbmcuY29tL0FwcEluc3RhbmNlLzc")
    );

    // Minimal envelope: only `event`.
    let minimal = with(claims(), "data", json!({"event": "webhook.verify"}));
    let env = check(&es512_verifier(), &es512_token(&minimal))
        .unwrap()
        .data;
    assert_eq!(env.event, "webhook.verify");
    assert_eq!(env.payload, Value::Null);
    assert_eq!(env.webhook_id, None);
    // Round trip keeps the 4me key names and number/string ids.
    let full = check(&es512_verifier(), &es512_token(&claims()))
        .unwrap()
        .data;
    let back = serde_json::to_value(&full).unwrap();
    assert_eq!(
        back["webhook_nodeID"],
        "NG1lLXN0YWdpbmcuY29tL1dlYmhvb2svMTI"
    );
    assert_eq!(back["webhook_id"], 12);
    assert_eq!(back["account_id"], "wdc");

    // Envelope without `event` is invalid; a token without `data` is rejected cleanly.
    let no_event = with(claims(), "data", json!({"name": "x"}));
    assert!(matches!(
        check(&es512_verifier(), &es512_token(&no_event)).unwrap_err(),
        JwtError::InvalidClaims(_)
    ));
    assert_eq!(
        check(&es512_verifier(), &es512_token(&without(claims(), "data"))).unwrap_err(),
        JwtError::MissingClaim("data")
    );
}

#[test]
fn numeric_jti_and_sub_are_rendered_as_strings() {
    let c = with(with(claims(), "jti", json!(99)), "sub", json!(12));
    let t = check(&es512_verifier(), &es512_token(&c)).unwrap();
    assert_eq!(t.claims.jti.as_deref(), Some("99"));
    assert_eq!(t.claims.sub.as_deref(), Some("12"));
}
