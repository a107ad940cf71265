//! One view of an LLM request for every policy.
//!
//! - [`path`]: which requests are chat requests — one normalisation of the path and one table of APIs
//!   ([`Routes::classify`]), so no two filters can disagree (a request one skips and the next proxies
//!   would get past the guard);
//! - [`walk`]: every text the model reads, with its JSON pointer, role and [`Kind`], for each request
//!   shape ([`openai`], [`anthropic`]; a new provider's shape is one more module);
//! - [`edit`]: writing rewritten texts back, JSON inside strings kept valid;
//! - [`estimate`]: the prompt-token estimate, over the walker's texts;
//! - [`features`]: what a request asks for beyond text (images, tools, structured output);
//! - [`validate`]: the shape checks, with the JSON path of the first problem.
//!
//! Pure: no proxy-wasm, tested natively and on wasm32.

mod anthropic;
pub mod edit;
pub mod estimate;
pub mod features;
mod openai;
pub mod path;
pub mod validate;
pub mod walk;

pub use edit::Edit;
pub use features::{features, Features};
pub use path::{classify, normalize, Api, Class, RouteError, Routes};
pub use walk::{texts, Kind, Text};

use crate::error::ApiError;
use crate::host::Body;
use serde_json::Value;

/// A chat request's body as JSON, or the 400 to answer: not JSON (`invalid_json`), or a key repeated in
/// one object (`duplicate_key`) — the gateway would read the last of them, and a provider may read the
/// first, so a policy could check one prompt while the model gets another.
pub fn json(body: &mut Body) -> Result<&Value, ApiError> {
    if let Some(key) = body.duplicate_key() {
        let message = format!("request body repeats the key `{key}` in one object");
        return Err(ApiError::invalid_request("duplicate_key", message));
    }
    body.json().map_err(|e| {
        ApiError::invalid_request("invalid_json", format!("request body is not valid JSON: {e}"))
    })
}

#[cfg(test)]
mod body_tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn refuses_repeated_keys_and_bad_json() {
        let mut b = Body::new(br#"{"model":"a","messages":[],"model":"b"}"#.to_vec());
        assert_eq!(json(&mut b).unwrap_err().code, "duplicate_key");
        assert_eq!(
            json(&mut Body::new(b"{".to_vec())).unwrap_err().code,
            "invalid_json"
        );
        assert!(json(&mut Body::new(br#"{"model":"a"}"#.to_vec())).is_ok());
    }
}
