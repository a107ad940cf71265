//! JWT (`shared::jwt`): no string panics the decoder or the verifier; what `sign` makes, `verify`
//! accepts with the same claims under the same key and refuses under any other key or after any
//! one-character change; `exp`/`nbf` are judged exactly at their bounds.

use super::config;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use shared::jwt::{decode_segment, decode_unverified, sign, verify, JwtError, Object};

/// JSON without floats (their text form need not round-trip bit for bit).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn claims() -> impl Strategy<Value = Object> {
    prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..6).prop_map(|m| {
        m.into_iter()
            .filter(|(k, _)| k != "exp" && k != "nbf")
            .collect::<Map<String, Value>>()
    })
}

/// Strings shaped like tokens: segments of base64url-ish characters and dots, sometimes real JSON.
fn token_like() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        "[A-Za-z0-9_=+/-]{0,40}",
        json_value().prop_map(|v| shared::crypto::base64url_encode(v.to_string().as_bytes())),
        Just(shared::crypto::base64url_encode(br#"{"alg":"HS256"}"#)),
        Just(shared::crypto::base64url_encode(br#"{"alg":"none"}"#)),
    ];
    prop::collection::vec(segment, 0..5).prop_map(|s| s.join("."))
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn no_string_panics(token in prop_oneof![token_like(), ".{0,80}"], key in prop::collection::vec(any::<u8>(), 0..40), now in any::<u64>(), leeway in any::<u64>()) {
        let _ = decode_unverified(&token);
        let _ = decode_segment(&token);
        let _ = verify(&token, &key, now, leeway);
    }

    #[test]
    fn signed_tokens_verify_with_their_claims(key in prop::collection::vec(any::<u8>(), 0..80), kid in ".{0,10}", claims in claims()) {
        let mut header = Map::new();
        header.insert("kid".into(), Value::String(kid));
        let token = sign(&key, &header, &claims);
        prop_assert_eq!(&verify(&token, &key, 0, 0).unwrap(), &claims);
        let decoded = decode_unverified(&token).unwrap();
        prop_assert_eq!(&decoded.claims, &claims);
        prop_assert_eq!(decoded.header.get("alg"), Some(&json!("HS256")));
        let mut other = key.clone();
        // Not a trailing zero byte: HMAC pads keys with zeros, so `k` and `k\0` are the same key.
        other.push(1);
        prop_assert_eq!(verify(&token, &other, 0, 0), Err(JwtError::BadSignature));
    }

    #[test]
    fn any_one_character_change_is_refused(key in prop::collection::vec(any::<u8>(), 1..40), claims in claims(), at in any::<usize>(), with in "[A-Za-z0-9_=.-]") {
        let token = sign(&key, &Map::new(), &claims);
        let i = at % token.len();
        let mut changed = token.clone();
        changed.replace_range(i..=i, &with);
        prop_assume!(changed != token);
        prop_assert!(verify(&changed, &key, 0, 0).is_err(), "{} verifies", changed);
    }

    #[test]
    fn exp_and_nbf_are_exact(key in prop::collection::vec(any::<u8>(), 1..40), now in 0u64..1 << 40, exp_off in -100i64..100, nbf_off in -100i64..100, leeway in 0u64..50) {
        let exp = now as i64 + exp_off;
        let nbf = now as i64 + nbf_off;
        let mut claims = Map::new();
        claims.insert("exp".into(), json!(exp));
        claims.insert("nbf".into(), json!(nbf));
        let got = verify(&sign(&key, &Map::new(), &claims), &key, now, leeway);
        let (now, leeway) = (now as i64, leeway as i64);
        let expected = if now >= exp + leeway {
            Err(JwtError::Expired)
        } else if now + leeway < nbf {
            Err(JwtError::NotYetValid)
        } else {
            Ok(claims)
        };
        prop_assert_eq!(got, expected);
    }
}
