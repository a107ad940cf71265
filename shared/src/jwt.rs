//! Compact JSON Web Tokens signed with HS256 (HMAC-SHA256; RFC 7519, RFC 7515 §7.1, RFC 7518 §3.2),
//! and the one place that splits and decodes a JWT.
//!
//! [`sign`] and [`verify`] are for tokens the gateway issues and checks itself (a signed context
//! token passed between filters). [`decode_unverified`] reads any compact JWT without checking it, for
//! identities an authentication filter in front has already verified; never trust its claims otherwise.
//!
//! [`verify`] accepts only `alg: HS256` (so never `none`, nor an asymmetric algorithm confused with a
//! shared key), refuses a `crit` header (no extension is understood), compares the signature in
//! constant time as text (so no second encoding of the same bytes is accepted), and only then parses
//! the claims and checks `exp` and `nbf` (RFC 7519 §4.1.4-5) against the caller's clock.
//! RFC 7518 §3.2 asks for a key of at least [`MIN_KEY_BYTES`]; config should refuse shorter ones.

use crate::crypto::{base64_decode, base64url_encode, ct_eq, hmac_sha256};
use serde_json::{Map, Value};
use std::fmt;

/// The smallest HS256 key RFC 7518 §3.2 allows: the hash's output size, 256 bits.
pub const MIN_KEY_BYTES: usize = 32;

/// A JSON object: a JOSE header or a claims set.
pub type Object = Map<String, Value>;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url segments of JSON objects; says which part is wrong.
    Malformed(&'static str),
    /// An `alg` other than HS256 (the value as found, or empty when missing).
    UnsupportedAlgorithm(String),
    /// A `crit` header: it names extensions that must be understood, and none are.
    UnsupportedCritical,
    /// The signature does not match.
    BadSignature,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    NotYetValid,
    /// `exp` or `nbf` is not a number.
    InvalidClaim(&'static str),
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::Malformed(what) => write!(f, "malformed JWT: {what}"),
            JwtError::UnsupportedAlgorithm(alg) => write!(f, "JWT algorithm {alg:?} is not HS256"),
            JwtError::UnsupportedCritical => write!(f, "JWT has a crit header"),
            JwtError::BadSignature => write!(f, "JWT signature does not match"),
            JwtError::Expired => write!(f, "JWT has expired"),
            JwtError::NotYetValid => write!(f, "JWT is not valid yet (nbf)"),
            JwtError::InvalidClaim(name) => write!(f, "JWT claim {name:?} is not a number"),
        }
    }
}

impl std::error::Error for JwtError {}

/// A compact JWT split and decoded, nothing verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub header: Object,
    pub claims: Object,
}

/// The three segments of a compact JWS.
struct Segments<'a> {
    header: &'a str,
    claims: &'a str,
    signature: &'a str,
    /// `header.claims`, the bytes the signature covers.
    signing_input: &'a str,
}

fn split(token: &str) -> Result<Segments<'_>, JwtError> {
    let token = token.trim();
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or(JwtError::Malformed("not three segments"))?;
    let (header, claims) = signing_input
        .split_once('.')
        .ok_or(JwtError::Malformed("not three segments"))?;
    if claims.contains('.') {
        return Err(JwtError::Malformed("not three segments"));
    }
    Ok(Segments {
        header,
        claims,
        signature,
        signing_input,
    })
}

/// One segment decoded as a JSON object. Lenient on the encoding (either base64 alphabet, padding
/// optional), as payloads forwarded by auth filters vary; a signature check covers the raw text anyway.
pub fn decode_segment(segment: &str) -> Result<Object, JwtError> {
    let bytes = base64_decode(segment).ok_or(JwtError::Malformed("segment is not base64url"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed("segment is not a JSON object")),
    }
}

/// Splits and decodes `token` WITHOUT checking its signature or times.
pub fn decode_unverified(token: &str) -> Result<Decoded, JwtError> {
    let s = split(token)?;
    Ok(Decoded {
        header: decode_segment(s.header)?,
        claims: decode_segment(s.claims)?,
    })
}

/// Signs `claims` with `key`. The header is `header`'s fields (e.g. `kid`) with `alg` set to `HS256`
/// and `typ` defaulting to `JWT`.
pub fn sign(key: &[u8], header: &Object, claims: &Object) -> String {
    let mut header = header.clone();
    header.insert("alg".into(), "HS256".into());
    header.entry("typ").or_insert_with(|| "JWT".into());
    let signing_input = format!(
        "{}.{}",
        base64url_encode(Value::Object(header).to_string().as_bytes()),
        base64url_encode(Value::Object(claims.clone()).to_string().as_bytes())
    );
    let signature = base64url_encode(&hmac_sha256(key, signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// Checks `token`'s HS256 signature under `key`, then `exp` and `nbf` against `now` (Unix seconds)
/// with `leeway` seconds of clock skew allowed, and returns its claims.
pub fn verify(token: &str, key: &[u8], now: u64, leeway: u64) -> Result<Object, JwtError> {
    let s = split(token)?;
    let header = decode_segment(s.header)?;
    match header.get("alg").and_then(Value::as_str) {
        Some("HS256") => {}
        other => return Err(JwtError::UnsupportedAlgorithm(other.unwrap_or("").to_string())),
    }
    if header.contains_key("crit") {
        return Err(JwtError::UnsupportedCritical);
    }
    let expected = base64url_encode(&hmac_sha256(key, s.signing_input.as_bytes()));
    if !ct_eq(expected.as_bytes(), s.signature.as_bytes()) {
        return Err(JwtError::BadSignature);
    }
    let claims = decode_segment(s.claims)?;
    // NumericDate may have a fraction (RFC 7519 §2); compare in f64, exact for any real date.
    let (now, leeway) = (now as f64, leeway as f64);
    if let Some(exp) = numeric_claim(&claims, "exp")? {
        if now >= exp + leeway {
            return Err(JwtError::Expired);
        }
    }
    if let Some(nbf) = numeric_claim(&claims, "nbf")? {
        if now + leeway < nbf {
            return Err(JwtError::NotYetValid);
        }
    }
    Ok(claims)
}

fn numeric_claim(claims: &Object, name: &'static str) -> Result<Option<f64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or(JwtError::InvalidClaim(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn object(v: Value) -> Object {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    /// RFC 7515 Appendix A.1: the HS256 example, whose header has CRLF and spaces inside (so it
    /// checks that the signature covers the segments as sent, not a re-serialisation).
    const RFC_KEY: &str =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    const RFC_TOKEN: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const RFC_EXP: u64 = 1_300_819_380;

    #[test]
    fn rfc7515_a1() {
        let key = base64_decode(RFC_KEY).unwrap();
        let claims = verify(RFC_TOKEN, &key, RFC_EXP - 1, 0).unwrap();
        assert_eq!(
            Value::Object(claims),
            json!({"iss": "joe", "exp": 1300819380, "http://example.com/is_root": true})
        );
        assert_eq!(verify(RFC_TOKEN, &key, RFC_EXP, 0), Err(JwtError::Expired));
        assert!(verify(RFC_TOKEN, &key, RFC_EXP + 59, 60).is_ok());
        assert_eq!(
            verify(RFC_TOKEN, b"wrong key", RFC_EXP - 1, 0),
            Err(JwtError::BadSignature)
        );
        let d = decode_unverified(RFC_TOKEN).unwrap();
        assert_eq!(Value::Object(d.header), json!({"typ": "JWT", "alg": "HS256"}));
    }

    /// Known answer for `sign`, computed independently with Python's `hmac` and `base64` modules over
    /// the same header and claims JSON.
    #[test]
    fn sign_known_answer_and_round_trip() {
        let key = b"secret-key-for-tests-0123456789ab";
        let header = object(json!({"kid": "k1"}));
        let claims = object(json!({"sub": "alice", "tier": "gold", "exp": 2_000_000_000}));
        let token = sign(key, &header, &claims);
        assert_eq!(
            token,
            "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.\
             eyJleHAiOjIwMDAwMDAwMDAsInN1YiI6ImFsaWNlIiwidGllciI6ImdvbGQifQ.\
             AKu4l4QpC2L3QE2epXPIFiqYu2Co40fpqJ4DgxPOW2Q"
        );
        assert_eq!(verify(&token, key, 1_000, 0).unwrap(), claims);
        let d = decode_unverified(&token).unwrap();
        assert_eq!(d.header.get("kid"), Some(&json!("k1")));
        assert_eq!(d.claims, claims);
        // A caller's alg cannot downgrade the token; its typ is kept.
        let header = object(json!({"alg": "none", "typ": "ctx+jwt"}));
        let token = sign(key, &header, &Object::new());
        let d = decode_unverified(&token).unwrap();
        assert_eq!(Value::Object(d.header), json!({"alg": "HS256", "typ": "ctx+jwt"}));
        assert_eq!(verify(&token, key, 0, 0).unwrap(), Object::new());
    }

    #[test]
    fn times_and_leeway() {
        let key = [7u8; 32];
        let token = |claims: Value| sign(&key, &Object::new(), &object(claims));
        let cases: Vec<(Value, u64, u64, Result<(), JwtError>)> = vec![
            (json!({}), 0, 0, Ok(())),
            (json!({"exp": 100}), 99, 0, Ok(())),
            (json!({"exp": 100}), 100, 0, Err(JwtError::Expired)),
            (json!({"exp": 100}), 104, 5, Ok(())),
            (json!({"exp": 100}), 105, 5, Err(JwtError::Expired)),
            (json!({"exp": 100.5}), 100, 0, Ok(())),
            (json!({"nbf": 100}), 100, 0, Ok(())),
            (json!({"nbf": 100}), 99, 0, Err(JwtError::NotYetValid)),
            (json!({"nbf": 100}), 95, 5, Ok(())),
            (json!({"nbf": 100, "exp": 200}), 150, 0, Ok(())),
            (
                json!({"exp": "tomorrow"}),
                0,
                0,
                Err(JwtError::InvalidClaim("exp")),
            ),
            (json!({"nbf": null}), 0, 0, Err(JwtError::InvalidClaim("nbf"))),
        ];
        for (claims, now, leeway, want) in cases {
            let got = verify(&token(claims.clone()), &key, now, leeway).map(|_| ());
            assert_eq!(got, want, "{claims} at {now} ± {leeway}");
        }
    }

    #[test]
    fn refuses_forged_and_malformed() {
        let key = [1u8; 32];
        let good = sign(&key, &Object::new(), &object(json!({"sub": "a"})));
        let (head, sig) = good.rsplit_once('.').unwrap();
        let b64 = |v: Value| base64url_encode(v.to_string().as_bytes());
        let claims = b64(json!({"sub": "a"}));
        // Every single-character change of the signature is caught.
        for i in 0..sig.len() {
            let mut forged: Vec<u8> = sig.as_bytes().to_vec();
            forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
            let forged = format!("{head}.{}", String::from_utf8(forged).unwrap());
            assert_eq!(verify(&forged, &key, 0, 0), Err(JwtError::BadSignature), "{i}");
        }
        let none = format!("{}.{claims}.", b64(json!({"alg": "none"})));
        let rs = format!("{}.{claims}.{sig}", b64(json!({"alg": "RS256"})));
        let no_alg = format!("{}.{claims}.{sig}", b64(json!({"typ": "JWT"})));
        let crit = format!("{}.{claims}.{sig}", b64(json!({"alg": "HS256", "crit": ["exp"]})));
        let padded = format!("{good}=");
        let cases: Vec<(&str, JwtError)> = vec![
            (&none, JwtError::UnsupportedAlgorithm("none".into())),
            (&rs, JwtError::UnsupportedAlgorithm("RS256".into())),
            (&no_alg, JwtError::UnsupportedAlgorithm(String::new())),
            (&crit, JwtError::UnsupportedCritical),
            (&padded, JwtError::BadSignature),
            ("", JwtError::Malformed("not three segments")),
            ("a.b", JwtError::Malformed("not three segments")),
            ("a.b.c.d", JwtError::Malformed("not three segments")),
            ("!!.b.c", JwtError::Malformed("segment is not base64url")),
            ("WzFd.b.c", JwtError::Malformed("segment is not a JSON object")),
        ];
        for (token, want) in cases {
            assert_eq!(verify(token, &key, 0, 0), Err(want), "{token:?}");
        }
        // A payload that is not an object is refused even with a valid signature.
        let input = format!("{}.{}", b64(json!({"alg": "HS256"})), b64(json!([1])));
        let mac = base64url_encode(&hmac_sha256(&key, input.as_bytes()));
        assert_eq!(
            verify(&format!("{input}.{mac}"), &key, 0, 0),
            Err(JwtError::Malformed("segment is not a JSON object"))
        );
    }
}
