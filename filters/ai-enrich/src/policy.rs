//! The ai-enrich policy: strip the headers it owns from the client's request, run the tasks (and the
//! local enrichers) over the request, and hand the outputs to the upstream as headers and a signed
//! context token, or only log them (`shadow`, `log_only`).

use crate::config::{Config, Mode};
use crate::local;
use crate::output::{ascii_json, context_token, header_value};
use serde_json::{Map, Value};
use shared::decision;
use shared::error::ApiError;
use shared::host::{Body, CallResponse, Host, LocalReply, LogLevel, Policy, Step};
use shared::llm::{Inputs, Run, Source};
use shared::metrics;
use std::rc::Rc;

pub struct Enrich {
    config: Rc<Config>,
    stage: Stage,
    /// How the request ended, for the per-request metric; `None` when it was not one to enrich.
    result: Option<&'static str>,
}

enum Stage {
    Idle,
    Running(Box<Run>),
}

/// What one enriched request gets.
struct Outputs {
    headers: Vec<(String, String)>,
    /// Values that had to be left out (JSON larger than `max_header_bytes`).
    dropped: Vec<String>,
    token: Option<(String, String)>,
}

impl Enrich {
    pub fn new(config: Rc<Config>) -> Enrich {
        Enrich {
            config,
            stage: Stage::Idle,
            result: None,
        }
    }

    fn refuse(&mut self, host: &mut dyn Host, err: ApiError) -> Step {
        host.log(
            LogLevel::Warn,
            &format!(
                "ai-enrich: refused status={} code={}: {}",
                err.status, err.code, err.message
            ),
        );
        Step::Reply(LocalReply::from(err))
    }

    /// Runs the next wave of tasks, or finishes.
    fn next(&mut self, host: &mut dyn Host) -> Step {
        let config = Rc::clone(&self.config);
        let Stage::Running(run) = &mut self.stage else {
            return Step::Continue;
        };
        match run.step(&config.tasks, host) {
            Some(step) => step,
            None => self.finish(host),
        }
    }

    /// The outputs, as headers and a token.
    fn outputs(&self, run: &Run, now_s: u64) -> Outputs {
        let config = &self.config;
        let mut out = Outputs {
            headers: Vec::new(),
            dropped: Vec::new(),
            token: None,
        };
        for (name, source) in &config.headers {
            let Some(v) = run.value(&config.tasks, source) else {
                continue;
            };
            match header_value(&v, config.max_header_bytes) {
                Some(text) => out.headers.push((name.clone(), text)),
                None if !v.is_null() => out.dropped.push(name.clone()),
                None => {}
            }
        }
        if let Some(t) = &config.token {
            let mut claims = Map::new();
            for (name, source) in &t.claims {
                if let Some(v) = run.value(&config.tasks, source) {
                    claims.insert(name.clone(), v);
                }
            }
            for c in &t.caller_claims {
                if let Some(v) = run.value(&config.tasks, &Source::Claim(c.clone())) {
                    claims.insert(c.clone(), v);
                }
            }
            out.token = Some((t.header.clone(), context_token(&t.spec, now_s, claims)));
        }
        out
    }

    fn finish(&mut self, host: &mut dyn Host) -> Step {
        let Stage::Running(run) = std::mem::replace(&mut self.stage, Stage::Idle) else {
            return Step::Continue;
        };
        let config = Rc::clone(&self.config);
        let tasks = &config.tasks;
        let denied = run
            .denied(tasks)
            .map(|(name, d)| (name.to_string(), d.outcome.label()));
        let all_ok = run.results(tasks).all(|(_, d)| !d.outcome.failed());
        let outputs = self.outputs(&run, host.now_ms() / 1000);
        let enforce = config.mode == Mode::Enforce;
        let result = match (&denied, all_ok) {
            (Some(_), _) if enforce => "denied",
            (_, true) => "enriched",
            _ => "partial",
        };
        self.result = Some(result);
        // The outputs' names only: their values may carry what the model read from the body.
        let names: Vec<&str> = outputs.headers.iter().map(|(n, _)| n.as_str()).collect();
        let risk = outputs
            .headers
            .iter()
            .find(|(n, _)| n == "x-ai-risk-score")
            .and_then(|(_, v)| v.parse::<f64>().ok());
        decision::publish(
            host,
            "enrich",
            &[
                ("result", Value::from(result)),
                ("outputs", Value::from(names)),
                ("risk_score", risk.map_or(Value::Null, Value::from)),
                (
                    "denied",
                    denied
                        .as_ref()
                        .map_or(Value::Null, |(n, _)| Value::from(n.as_str())),
                ),
            ],
        );
        for name in &outputs.dropped {
            host.counter_add(
                &metrics::name(
                    "ai_enrich_headers_dropped_total",
                    &[("mode", config.mode.label())],
                ),
                1,
            );
            host.log(
                LogLevel::Warn,
                &format!(
                    "ai-enrich: {name} left out: its JSON value is longer than max_header_bytes ({})",
                    config.max_header_bytes
                ),
            );
        }
        self.log(
            host,
            &run,
            &outputs,
            result,
            denied.as_ref().map(|(n, _)| n.as_str()),
        );
        if !enforce {
            return Step::Continue;
        }
        if let Some((task, outcome)) = denied {
            let err = ApiError::new(
                503,
                "server_error",
                "enrichment_failed",
                format!("request enrichment failed: task `{task}` ended with {outcome}"),
            );
            return self.refuse(host, err);
        }
        let token = outputs.token.iter().cloned();
        for (name, value) in outputs.headers.iter().cloned().chain(token) {
            if let Err(e) = host.set_request_header(&name, Some(&value)) {
                let err = ApiError::new(500, "server_error", "gateway_error", format!("{name}: {e}"));
                return self.refuse(host, err);
            }
        }
        if outputs.token.is_some() {
            host.counter_add("ai_enrich_tokens_issued_total", 1);
        }
        Step::Continue
    }

    /// One line per enriched request: the tasks' outcomes, what was (or would be) added, the cost. In
    /// `log_only` the values themselves, as they would be sent.
    fn log(&self, host: &mut dyn Host, run: &Run, out: &Outputs, result: &str, denied: Option<&str>) {
        let config = &self.config;
        let tasks: Vec<String> = run
            .results(&config.tasks)
            .map(|(t, d)| format!("{}:{}", t.name, d.outcome.label()))
            .collect();
        let mut line = format!("ai-enrich: mode={} result={result}", config.mode.label());
        if !tasks.is_empty() {
            line.push_str(&format!(" tasks={}", tasks.join(",")));
        }
        let names: Vec<String> = match config.mode {
            Mode::Shadow => out
                .headers
                .iter()
                .map(|(n, v)| format!("{n}({} bytes)", v.len()))
                .collect(),
            _ => out.headers.iter().map(|(n, _)| n.clone()).collect(),
        };
        let verb = if config.mode == Mode::Enforce {
            "headers"
        } else {
            "would_set"
        };
        line.push_str(&format!(
            " {verb}={}",
            if names.is_empty() {
                "-".to_string()
            } else {
                names.join(",")
            }
        ));
        if config.token.is_some() {
            line.push_str(" token=yes");
        }
        if let (Some(task), false) = (denied, config.mode == Mode::Enforce) {
            line.push_str(&format!(" would_deny={task}"));
        }
        if config.mode == Mode::LogOnly {
            let values: Map<String, Value> = out
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), Value::from(v.as_str())))
                .collect();
            line.push_str(&format!(" outputs={}", ascii_json(&Value::Object(values))));
        }
        let (usage, cost) = run.spent();
        if usage.total() > 0 {
            line.push_str(&format!(
                " prompt_tokens={} completion_tokens={} cost_usd={:.6}",
                usage.prompt_tokens,
                usage.completion_tokens,
                cost as f64 / 1e6
            ));
        }
        line.push_str(&format!(
            " request_id={}",
            run.inputs().request_id().unwrap_or("-")
        ));
        host.log(LogLevel::Info, &line);
    }
}

impl Policy for Enrich {
    fn request_body_limit(&self) -> usize {
        self.config.max_body_bytes
    }

    fn on_request_headers(&mut self, host: &mut dyn Host, _has_body: bool) -> Step {
        // Whatever the mode and the path: a client never gets to set what upstreams trust.
        let config = Rc::clone(&self.config);
        let mut forged = 0;
        for name in &config.owned {
            if host.request_header(name).is_none() {
                continue;
            }
            forged += 1;
            if let Err(e) = host.set_request_header(name, None) {
                let err = ApiError::new(500, "server_error", "gateway_error", format!("{name}: {e}"));
                return self.refuse(host, err);
            }
        }
        if forged > 0 {
            host.counter_add("ai_enrich_forged_headers_total", forged);
        }
        let path = host.request_header(":path").unwrap_or_default();
        if !config.matches(&path) {
            return Step::Continue;
        }
        // A request without a body (a GET) gets its body callback at once, empty.
        Step::ReadBody
    }

    fn on_request_encoded(&mut self, host: &mut dyn Host, _encoding: &str) -> Option<LocalReply> {
        // As for a body too large: enrichment does not refuse what it cannot read.
        self.result = Some("encoded");
        host.log(LogLevel::Info, "ai-enrich: content-encoded body: not enriched");
        None
    }

    fn on_request_too_large(&mut self, host: &mut dyn Host, limit: usize) -> Option<LocalReply> {
        // Enrichment adds context; it does not refuse an upload it cannot read.
        self.result = Some("too-large");
        host.log(
            LogLevel::Info,
            &format!("ai-enrich: body over max_body_bytes ({limit}): not enriched"),
        );
        None
    }

    fn on_request_body(&mut self, host: &mut dyn Host, body: &mut Body) -> Step {
        let config = Rc::clone(&self.config);
        let keep = config.tasks.max_input_chars().max(config.max_header_bytes);
        let mut inputs = Inputs::from_request(host, Some(body), &config.sources, &config.context, keep);
        let locals = config.locals;
        if locals.language || locals.pii {
            let content_type = host.request_header("content-type");
            let text = local::body_text(body.bytes(), content_type.as_deref());
            if locals.language {
                inputs.set_var("local.language", local::language(&text));
            }
            if locals.pii {
                inputs.set_var("local.pii", local::pii_counts(&text));
            }
        }
        if locals.body_bytes {
            inputs.set_var("local.body_bytes", body.len());
        }
        self.stage = Stage::Running(Box::new(config.tasks.run(inputs)));
        self.next(host)
    }

    fn on_call_responses(
        &mut self,
        host: &mut dyn Host,
        responses: Vec<CallResponse>,
        _body: Option<&mut Body>,
    ) -> Step {
        let config = Rc::clone(&self.config);
        if let Stage::Running(run) = &mut self.stage {
            run.answers(&config.tasks, host, responses);
        }
        self.next(host)
    }

    fn on_done(&mut self, host: &mut dyn Host) {
        if let Some(result) = self.result {
            host.counter_add(
                &metrics::name(
                    "ai_enrich_requests_total",
                    &[("mode", self.config.mode.label()), ("result", result)],
                ),
                1,
            );
        }
    }
}
