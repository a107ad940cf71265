//! Every filter's configuration parser (`shared::wasm::Filter::configure`, as `on_configure` calls it)
//! on arbitrary bytes, arbitrary JSON and valid fixtures mutated field by field: it answers `Ok` or a
//! `ConfigError` naming a field, and never panics. A configuration it accepts then serves a request
//! through the driver without panicking either.

use super::{config, json_leaf, json_value, nasty_string};
use proptest::prelude::*;
use serde_json::Value;
use shared::host::fake::{ClientRequest, Named, Runtime, UpstreamResponse};
use shared::host::HostKind;
use shared::wasm::Filter;
use std::path::PathBuf;
use std::rc::Rc;

const FILTERS: [&str; 6] = [
    "ai-proxy",
    "ai-pii-redact",
    "ai-prompt-guard",
    "ai-token-ratelimit",
    "ai-enrich",
    "ai-router",
];

/// Every variable set, to a value long enough for an HS256 key (ai-enrich's token needs 32 bytes).
fn env(name: &str) -> Option<String> {
    (!name.is_empty()).then(|| format!("env-{name}-0123456789abcdef0123456789abcdef"))
}

/// Parses with filter `F`; if accepted, plays one chat request through it on both fake hosts.
fn parse_and_serve<F: Filter>(json: &[u8]) -> Result<(), String> {
    let parsed = F::configure(json, &env);
    let config = match parsed {
        Ok(c) => Rc::new(c),
        Err(e) => {
            if e.to_string().is_empty() {
                return Err("empty error".into());
            }
            return Ok(());
        }
    };
    for kind in [HostKind::Envoy, HostKind::Kong] {
        let mut rt = Runtime::new(kind, vec![Named::new(F::NAME, F::new_policy(&config, 7))]);
        let body = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi bob@example.com"}]}"#;
        let ex = rt.run(
            ClientRequest::post("/v1/chat/completions", body).header("x-consumer-id", "ann"),
            |_| UpstreamResponse::json(200, r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#),
        );
        if ex.hung.is_some() || ex.status.is_none() {
            return Err(format!("{kind:?}: no answer ({:?})", ex.hung));
        }
    }
    Ok(())
}

fn check(filter: &str, json: &[u8]) -> Result<(), String> {
    match filter {
        "ai-proxy" => parse_and_serve::<ai_proxy::config::Config>(json),
        "ai-pii-redact" => parse_and_serve::<ai_pii_redact::config::Config>(json),
        "ai-prompt-guard" => parse_and_serve::<ai_prompt_guard::config::Config>(json),
        "ai-token-ratelimit" => parse_and_serve::<ai_token_ratelimit::config::Config>(json),
        "ai-enrich" => parse_and_serve::<ai_enrich::config::Config>(json),
        "ai-router" => parse_and_serve::<ai_router::config::Config>(json),
        other => Err(format!("unknown filter {other}")),
    }
}

/// The valid fixtures of every filter: `(filter, config)`.
fn fixtures() -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    for f in FILTERS {
        let dir: PathBuf = e2e::repo_root().join("filters").join(f).join("fixtures/valid");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for p in files {
            let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            out.push((f, v));
        }
    }
    out
}

/// One change to a JSON document at the place `path` picks (each index taken modulo what is there).
#[derive(Debug, Clone)]
enum Mutation {
    Replace(Vec<usize>, Value),
    Remove(Vec<usize>),
    Insert(Vec<usize>, String, Value),
    Duplicate(Vec<usize>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let path = prop::collection::vec(any::<usize>(), 0..5);
    prop_oneof![
        4 => (path.clone(), prop_oneof![3 => json_leaf(), 1 => json_value()]).prop_map(|(p, v)| Mutation::Replace(p, v)),
        2 => path.clone().prop_map(Mutation::Remove),
        1 => (path.clone(), nasty_string(), json_leaf()).prop_map(|(p, k, v)| Mutation::Insert(p, k, v)),
        1 => path.prop_map(Mutation::Duplicate),
    ]
}

/// The node `path` leads to (stopping early at a leaf).
fn walk<'a>(v: &'a mut Value, path: &[usize]) -> &'a mut Value {
    let Some((&i, rest)) = path.split_first() else {
        return v;
    };
    let len = match &*v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    if len == 0 {
        return v;
    }
    match v {
        Value::Object(m) => {
            let key = m.keys().nth(i % len).cloned().unwrap();
            walk(m.get_mut(&key).unwrap(), rest)
        }
        Value::Array(a) => walk(&mut a[i % len], rest),
        _ => unreachable!(),
    }
}

fn apply(doc: &mut Value, m: &Mutation) {
    match m {
        Mutation::Replace(p, value) => *walk(doc, p) = value.clone(),
        Mutation::Remove(p) | Mutation::Duplicate(p) => {
            let (last, parent) = match p.split_last() {
                Some((l, rest)) => (*l, walk(doc, rest)),
                None => return,
            };
            match parent {
                Value::Object(map) if !map.is_empty() => {
                    let key = map.keys().nth(last % map.len()).cloned().unwrap();
                    if matches!(m, Mutation::Remove(_)) {
                        map.remove(&key);
                    } else {
                        let v = map[&key].clone();
                        map.insert(format!("{key}_copy"), v);
                    }
                }
                Value::Array(a) if !a.is_empty() => {
                    let i = last % a.len();
                    if matches!(m, Mutation::Remove(_)) {
                        a.remove(i);
                    } else {
                        let v = a[i].clone();
                        a.push(v);
                    }
                }
                _ => {}
            }
        }
        Mutation::Insert(p, key, value) => {
            if let Value::Object(map) = walk(doc, p) {
                map.insert(key.clone(), value.clone());
            }
        }
    }
}

proptest! {
    #![proptest_config(config(2))]

    #[test]
    fn mutated_fixtures_never_panic(which in any::<usize>(), mutations in prop::collection::vec(mutation(), 1..5)) {
        let all = fixtures();
        let (filter, mut doc) = all[which % all.len()].clone();
        for m in &mutations {
            apply(&mut doc, m);
        }
        let text = doc.to_string();
        prop_assert_eq!(check(filter, text.as_bytes()), Ok(()), "{}", text);
    }

    #[test]
    fn arbitrary_json_never_panics(filter in prop::sample::select(FILTERS.to_vec()), doc in json_value()) {
        let text = doc.to_string();
        prop_assert_eq!(check(filter, text.as_bytes()), Ok(()), "{}", text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(filter in prop::sample::select(FILTERS.to_vec()), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(check(filter, &bytes), Ok(()));
    }
}

/// Every valid fixture is accepted and serves a request (the mutations above start from real configs).
#[test]
fn every_valid_fixture_is_accepted() {
    for (filter, doc) in fixtures() {
        let text = doc.to_string();
        let ok = match filter {
            "ai-proxy" => ai_proxy::config::Config::configure(text.as_bytes(), &env).is_ok(),
            "ai-pii-redact" => ai_pii_redact::config::Config::configure(text.as_bytes(), &env).is_ok(),
            "ai-prompt-guard" => ai_prompt_guard::config::Config::configure(text.as_bytes(), &env).is_ok(),
            "ai-enrich" => ai_enrich::config::Config::configure(text.as_bytes(), &env).is_ok(),
            "ai-router" => ai_router::config::Config::configure(text.as_bytes(), &env).is_ok(),
            _ => ai_token_ratelimit::config::Config::configure(text.as_bytes(), &env).is_ok(),
        };
        assert!(ok, "{filter}: {text}");
        assert_eq!(check(filter, text.as_bytes()), Ok(()));
    }
}
