//! The ai-router policy: read the request once into [`Facts`], try the rules in order (asking the
//! intent classifier only when a rule needs it), and apply the winner's action — set the body's
//! `model` for ai-proxy, or point the request at a non-LLM upstream — with `x-ai-route` naming the
//! rule for the upstream and the client. In `shadow` mode the decision is logged and counted, and the
//! request goes on unchanged.

use crate::config::{Classifier, Config, IntentFailure, DEFAULT_RULE, ROUTE_HEADER};
use crate::intent;
use crate::rules::{chat_texts_of, evaluate, Eval, Facts, Intent, Said, Target};
use serde_json::Value;
use shared::chat::{Api, Class};
use shared::config::Mode;
use shared::decision;
use shared::error::ApiError;
use shared::host::{Body, CallResponse, Host, LocalReply, LogLevel, Policy, ResponseMode, Route, Step};
use shared::llm::{Inputs, Run, Source};
use shared::metrics;
use shared::rand::Rng;
use shared::ratelimit::identity;
use std::rc::Rc;

pub struct Router {
    config: Rc<Config>,
    rng: Rng,
    stage: Stage,
    /// The rule whose action was applied (enforce mode): the answer's `x-ai-route`.
    routed: Option<String>,
}

enum Stage {
    Idle,
    AwaitingBody {
        api: Option<Api>,
    },
    /// The model classifier is running for the rule at `from`.
    Classifying(Box<Classifying>),
}

struct Classifying {
    facts: Facts,
    from: usize,
    run: Run,
}

/// What the intent was, for the log and the metric.
fn intent_label(intent: &Intent) -> &str {
    match intent {
        Intent::Unknown => "-",
        Intent::Label(l) => l,
        Intent::Unlabelled => "none",
        Intent::Failed => "failed",
    }
}

impl Router {
    pub fn new(config: Rc<Config>, seed: u64) -> Router {
        Router {
            config,
            rng: Rng::new(seed),
            stage: Stage::Idle,
            routed: None,
        }
    }

    fn refuse(&mut self, host: &mut dyn Host, err: ApiError) -> Step {
        host.log(
            LogLevel::Warn,
            &format!(
                "ai-router: refused status={} code={}: {}",
                err.status, err.code, err.message
            ),
        );
        host.counter_add(
            &metrics::name("ai_router_refused_total", &[("code", err.code)]),
            1,
        );
        Step::Reply(LocalReply::from(err))
    }

    /// Everything some rule reads, from the request and its body.
    fn facts(&self, host: &dyn Host, api: Option<Api>, body: &mut Body) -> Facts {
        let needs = &self.config.needs;
        let content_type = host.request_header("content-type");
        let mut facts = Facts::default();
        if let Ok(v) = body.json() {
            if v.is_object() {
                let (texts, tokens) = chat_texts_of(api, v);
                facts.tokens = tokens;
                facts.texts = texts;
                facts.model = v.get("model").and_then(Value::as_str).map(str::to_string);
                facts.messages = v
                    .get("messages")
                    .and_then(Value::as_array)
                    .map_or(0, |m| m.len() as u64);
                facts.features = shared::chat::features(api, v);
            }
        }
        if facts.texts.is_empty() {
            // Not a chat request (a ticket, a form, plain text): its readable text, as the user's.
            let text = shared::lang::body_text(body.bytes(), content_type.as_deref());
            facts.tokens = shared::chat::estimate::text_tokens(&text);
            facts.texts = vec![Said::user(text)];
        }
        if needs.language || needs.code {
            let user = facts.text_of(&["user".to_string()]);
            if needs.language {
                facts.language = shared::lang::language(&user).to_string();
            }
            facts.code = needs.code && shared::lang::looks_like_code(&user);
        }
        let context = &self.config.context;
        if needs.consumer {
            facts.consumer = identity::resolve_first(&context.consumer, host);
        }
        if needs.tier {
            facts.tier = identity::resolve_first(&context.tier, host);
        }
        if needs.group {
            facts.group = identity::resolve_first(&self.config.group, host);
        }
        if needs.claims {
            facts.claims = context.claims(host).unwrap_or_default();
        }
        for name in &needs.headers {
            if let Some(v) = host.request_header(name) {
                facts.headers.push((name.clone(), v));
            }
        }
        facts
    }

    /// Tries the rules from `from` with what is known of the intent, classifying when a rule needs it.
    fn decide(
        &mut self,
        host: &mut dyn Host,
        facts: Facts,
        mut from: usize,
        mut intent: Intent,
        body: &mut Body,
    ) -> Step {
        let config = Rc::clone(&self.config);
        loop {
            match evaluate(&config.rules, &facts, &intent, from) {
                Eval::Rule(i) => return self.apply(host, Some(i), &facts, &intent, body),
                Eval::Default => return self.apply(host, None, &facts, &intent, body),
                Eval::NeedIntent(i) => {
                    let Some(ic) = &config.intent else {
                        return self.apply(host, None, &facts, &intent, body);
                    };
                    let text = facts.last_user_text();
                    match ic.classifier {
                        Classifier::Local => {
                            intent = match intent::classify_local(&ic.labels, &text) {
                                Some(l) => Intent::Label(l),
                                None => Intent::Unlabelled,
                            };
                            from = i;
                        }
                        Classifier::Model => {
                            let mut inputs =
                                Inputs::new().with_request_id(host.request_header("x-request-id"));
                            inputs.set_var(intent::PROMPT_VAR, text);
                            let run = config.tasks.run(inputs);
                            self.stage = Stage::Classifying(Box::new(Classifying { facts, from: i, run }));
                            return self.next(host, body);
                        }
                    }
                }
                Eval::IntentFailed(i) => {
                    let failure = config
                        .intent
                        .as_ref()
                        .map_or(IntentFailure::Default, |c| c.failure);
                    match failure {
                        IntentFailure::Default => return self.apply(host, None, &facts, &intent, body),
                        IntentFailure::Skip => from = i + 1,
                        IntentFailure::Deny if config.mode == Mode::Enforce => {
                            let err = ApiError::new(
                                503,
                                "server_error",
                                "routing_failed",
                                "the request could not be routed: its intent could not be classified",
                            );
                            return self.refuse(host, err);
                        }
                        IntentFailure::Deny => return self.apply(host, None, &facts, &intent, body),
                    }
                }
            }
        }
    }

    /// The next wave of the classifier's task, or, when it is over, the decision.
    fn next(&mut self, host: &mut dyn Host, body: &mut Body) -> Step {
        let config = Rc::clone(&self.config);
        let Stage::Classifying(c) = &mut self.stage else {
            return Step::Continue;
        };
        if let Some(step) = c.run.step(&config.tasks, host) {
            return step;
        }
        let Stage::Classifying(c) = std::mem::replace(&mut self.stage, Stage::Idle) else {
            return Step::Continue;
        };
        let source = Source::Task(intent::TASK.to_string(), Some("/intent".to_string()));
        let intent = match c.run.value(&config.tasks, &source) {
            Some(Value::String(l)) => Intent::Label(l),
            _ if c.run.done(0).is_some_and(|d| d.outcome.failed()) => Intent::Failed,
            _ => Intent::Unlabelled,
        };
        self.decide(host, c.facts, c.from, intent, body)
    }

    /// Applies rule `rule`'s action (the default's for `None`), or in shadow mode only reports it.
    fn apply(
        &mut self,
        host: &mut dyn Host,
        rule: Option<usize>,
        facts: &Facts,
        intent: &Intent,
        body: &mut Body,
    ) -> Step {
        let config = Rc::clone(&self.config);
        let (name, action) = match rule.and_then(|i| config.rules.get(i)) {
            Some(r) => (r.name.as_str(), Some(&r.action)),
            None => (DEFAULT_RULE, config.default.as_ref()),
        };
        let branch = action.and_then(|a| a.branch(self.rng.below(a.total_weight().max(1))));
        let upstream = |i: usize| config.upstreams.get(i);
        let target = match branch.map(|b| &b.target) {
            Some(Target::Model(m)) => format!("model:{m}"),
            Some(Target::Upstream(i)) => {
                format!("upstream:{}", upstream(*i).map_or("-", |u| u.name.as_str()))
            }
            None => "unchanged".to_string(),
        };
        let mode = config.mode.as_str();
        host.counter_add(
            &metrics::name("ai_router_decisions_total", &[("rule", name), ("mode", mode)]),
            1,
        );
        if !matches!(intent, Intent::Unknown) {
            host.counter_add(
                &metrics::name("ai_router_intents_total", &[("result", intent_label(intent))]),
                1,
            );
        }
        host.log(
            LogLevel::Info,
            &format!(
                "ai-router: mode={mode} rule={name} target={target} intent={} requested_model={} request_id={}",
                intent_label(intent),
                facts.model.as_deref().unwrap_or("-"),
                host.request_header("x-request-id").as_deref().unwrap_or("-"),
            ),
        );
        decision::publish(
            host,
            "router",
            &[
                ("rule", Value::from(name)),
                ("target", Value::from(target.as_str())),
                ("intent", Value::from(intent_label(intent))),
                ("mode", Value::from(mode)),
            ],
        );
        if config.mode == Mode::Shadow {
            return Step::Continue;
        }
        match branch.map(|b| &b.target) {
            Some(Target::Model(m)) if facts.model.as_deref() != Some(m.as_str()) => match body.json_mut() {
                Ok(Value::Object(obj)) => {
                    obj.insert("model".to_string(), Value::from(m.as_str()));
                }
                _ => host.log(
                    LogLevel::Warn,
                    &format!("ai-router: rule={name}: the body is not a JSON object, its model is not set"),
                ),
            },
            Some(Target::Upstream(i)) => {
                let Some(u) = upstream(*i) else {
                    return Step::Continue;
                };
                let current = host.request_header(":path").unwrap_or_default();
                let route = Route {
                    cluster: &u.cluster,
                    host: &u.host,
                    path: u.path.as_deref().unwrap_or(&current),
                    header: &config.route_header,
                };
                if let Err(e) = host.route_to(&route) {
                    let err = ApiError::upstream(502, "routing_failed", format!("upstream {}: {e}", u.name));
                    return self.refuse(host, err);
                }
            }
            Some(Target::Model(_)) | None => {}
        }
        if let Err(e) = host.set_request_header(ROUTE_HEADER, Some(name)) {
            let err = ApiError::new(
                500,
                "server_error",
                "gateway_error",
                format!("{ROUTE_HEADER}: {e}"),
            );
            return self.refuse(host, err);
        }
        self.routed = Some(name.to_string());
        Step::Continue
    }
}

impl Policy for Router {
    fn request_body_limit(&self) -> usize {
        self.config.max_body_bytes
    }

    fn on_request_headers(&mut self, host: &mut dyn Host, has_body: bool) -> Step {
        // A client never names the route itself.
        if host.request_header(ROUTE_HEADER).is_some() {
            if let Err(e) = host.set_request_header(ROUTE_HEADER, None) {
                let err = ApiError::new(
                    500,
                    "server_error",
                    "gateway_error",
                    format!("{ROUTE_HEADER}: {e}"),
                );
                return self.refuse(host, err);
            }
        }
        let method = host.request_header(":method").unwrap_or_default();
        let path = host.request_header(":path").unwrap_or_default();
        match self.config.routes.classify(&method, &path) {
            Class::Chat(api) if has_body => {
                self.stage = Stage::AwaitingBody { api };
                Step::ReadBody
            }
            // Ambiguous paths are refused by the filters that serve them; the router leaves them be.
            _ => Step::Continue,
        }
    }

    fn on_request_too_large(&mut self, host: &mut dyn Host, limit: usize) -> Option<LocalReply> {
        // Routing picks a place; it does not refuse what it cannot read.
        self.stage = Stage::Idle;
        host.log(
            LogLevel::Info,
            &format!("ai-router: body over max_body_bytes ({limit}): not routed"),
        );
        host.counter_add(
            &metrics::name(
                "ai_router_decisions_total",
                &[("rule", "too-large"), ("mode", self.config.mode.as_str())],
            ),
            1,
        );
        None
    }

    fn on_request_body(&mut self, host: &mut dyn Host, body: &mut Body) -> Step {
        let Stage::AwaitingBody { api } = self.stage else {
            return Step::Continue;
        };
        self.stage = Stage::Idle;
        let facts = self.facts(host, api, body);
        self.decide(host, facts, 0, Intent::Unknown, body)
    }

    fn on_call_responses(
        &mut self,
        host: &mut dyn Host,
        responses: Vec<CallResponse>,
        body: Option<&mut Body>,
    ) -> Step {
        let config = Rc::clone(&self.config);
        let Stage::Classifying(c) = &mut self.stage else {
            return Step::Continue;
        };
        c.run.answers(&config.tasks, host, responses);
        match body {
            Some(body) => self.next(host, body),
            None => {
                self.stage = Stage::Idle;
                Step::Continue
            }
        }
    }

    fn on_response_headers(&mut self, host: &mut dyn Host) -> ResponseMode {
        if let Some(rule) = &self.routed {
            let _logged = host.set_response_header(ROUTE_HEADER, Some(rule));
        }
        ResponseMode::PassThrough
    }
}

/// One smoke test of the policy against the fake host; real behaviour is proven in Envoy
/// (tests/tests/router.rs).
#[cfg(test)]
mod tests {
    use super::*;
    use shared::host::{FakeHost, HostKind};

    #[test]
    fn routes_code_to_another_model_and_names_the_rule() {
        let json = br#"{"rules": [{"name": "code", "when": {"code": true}, "action": {"model": "big"}}],
            "default": {"model": "small"}}"#;
        let config = Rc::new(Config::parse(json, &|_| None).unwrap());
        let mut host = FakeHost::new(HostKind::Envoy).with_request_headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            ("x-ai-route", "forged"),
        ]);
        let mut p = Router::new(Rc::clone(&config), 1);
        assert_eq!(p.on_request_headers(&mut host, true), Step::ReadBody);
        assert!(!host.request_headers.contains_key("x-ai-route"));
        let mut body = Body::new(
            br#"{"model":"auto","messages":[{"role":"user","content":"fix:\n```\nx = 1\n```"}]}"#.to_vec(),
        );
        assert_eq!(p.on_request_body(&mut host, &mut body), Step::Continue);
        let sent: Value = serde_json::from_slice(&body.into_bytes()).unwrap();
        assert_eq!(sent["model"], "big");
        assert_eq!(host.request_headers["x-ai-route"], "code");
        p.on_response_headers(&mut host);
        assert_eq!(host.response_headers["x-ai-route"], "code");
        assert_eq!(
            host.counters["ai_router_decisions_total_rule=code_mode=enforce"],
            1
        );
    }

    /// A non-LLM route on Kong: the host seam writes Kong's properties, the rule is named.
    #[test]
    fn routes_a_ticket_to_its_upstream_on_kong() {
        let json = br#"{"paths": ["/support/tickets"],
            "upstreams": {"desk": {"cluster": "desk", "host": "desk.internal:8443", "path": "/in"}},
            "rules": [{"name": "angry", "when": {"text": {"keywords": ["refund"]}}, "action": {"upstream": "desk"}}]}"#;
        let config = Rc::new(Config::parse(json, &|_| None).unwrap());
        let mut host = FakeHost::new(HostKind::Kong).with_request_headers(&[
            (":method", "POST"),
            (":path", "/support/tickets"),
            ("content-type", "application/x-www-form-urlencoded"),
        ]);
        let mut p = Router::new(config, 1);
        assert_eq!(p.on_request_headers(&mut host, true), Step::ReadBody);
        let mut body = Body::new(b"subject=Order&text=I+want+a+refund".to_vec());
        assert_eq!(p.on_request_body(&mut host, &mut body), Step::Continue);
        assert_eq!(host.properties["kong.service.target"], "desk.internal:8443");
        assert_eq!(host.properties["ngx.upstream_uri"], "/in");
        assert_eq!(host.request_headers["x-ai-route"], "angry");
        assert!(!body.changed(), "a non-chat body is not rewritten");
    }
}
