//! Metric names with their labels embedded, one pattern for every host.
//!
//! Envoy exports a Wasm metric under its own name and Kong as `pw_<filter>_<name>`; neither takes labels
//! through the ABI. So labels ride in the name as `_key=value` segments, e.g.
//! `ai_proxy_tokens_total_provider=openai_model=gpt-4o-mini_kind=prompt`, and one regex per label,
//! `(_key=([^_=]+))`, lifts them out on both hosts (Envoy `stats_tags`, Kong `label_patterns`).

/// Builds `base` followed by `_key=value` for each label. Values are sanitised so that they never
/// contain the separators: characters outside `[A-Za-z0-9.-]` become `-`, an empty value becomes `-`.
pub fn name(base: &str, labels: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(base.len() + labels.len() * 24);
    out.push_str(base);
    for (key, value) in labels {
        out.push('_');
        out.push_str(key);
        out.push('=');
        if value.is_empty() {
            out.push('-');
        }
        // Most values are already clean (model and provider names): copied whole.
        if value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            out.push_str(value);
            continue;
        }
        out.extend(value.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 every unit test runs under wasm-bindgen-test (Node) too: `make wasm-test`.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn embeds_and_sanitises_labels() {
        assert_eq!(
            name(
                "ai_x_total",
                &[("model", "gpt-4o_mini"), ("status", "200"), ("t", "")]
            ),
            "ai_x_total_model=gpt-4o-mini_status=200_t=-"
        );
        assert_eq!(name("a", &[("m", "claude 3.5=x")]), "a_m=claude-3.5-x");
    }
}
