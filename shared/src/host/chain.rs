//! Several policies as one: the bundle module's chain, run on one body read and one parse.
//!
//! [`Chain`] is itself a [`Policy`], so one driver runs it. It calls its policies in the order separate
//! filters would be called on Envoy: each policy's request callbacks after the previous policy let the
//! request go on (a policy that reads the body has it before the next one sees the headers); the
//! response callbacks in reverse order, each policy's output the next one's input; the response to a
//! local reply only through the policies before the one that replied. Every policy sees the same
//! [`Body`], so the request is parsed at most once and serialised at most once however many policies
//! read or edit it.

use super::{Background, Body, CallResponse, Host, LocalReply, Policy, ResponseMode, Step, WholeResponse};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Headers,
    /// Waiting for the body, for the policy at `at`.
    Body,
    /// Waiting for the answers to calls of the policy at `at`, made from its headers or body callback.
    CallsFromHeaders,
    CallsFromBody,
    Done,
}

pub struct Chain {
    policies: Vec<Box<dyn Policy>>,
    /// The policy whose turn it is.
    at: usize,
    phase: Phase,
    has_body: bool,
    /// The policy that sent a local reply: only the ones before it see the response.
    replied_by: Option<usize>,
    /// Each policy's answer to the response headers (`PassThrough` for those that do not see it).
    modes: Vec<ResponseMode>,
}

impl Chain {
    pub fn new(policies: Vec<Box<dyn Policy>>) -> Chain {
        let n = policies.len();
        // The policies of one chain read the same stream events: the first scan serves the others.
        crate::json_canon::remember_scans();
        Chain {
            policies,
            at: 0,
            phase: Phase::Headers,
            has_body: false,
            replied_by: None,
            modes: vec![ResponseMode::PassThrough; n],
        }
    }

    fn replied(&mut self, i: usize, reply: LocalReply) -> Step {
        self.replied_by = Some(i);
        self.phase = Phase::Done;
        Step::Reply(reply)
    }

    /// Runs the request callbacks from policy `from` on: its headers, then its body if it wants it and
    /// the body is at hand, then the next policy's. Stops at the first answer that is not `Continue`.
    fn run_from(&mut self, host: &mut dyn Host, from: usize, mut body: Option<&mut Body>) -> Step {
        for i in from..self.policies.len() {
            self.at = i;
            let has_body = self.has_body;
            let Some(p) = self.policies.get_mut(i) else {
                break;
            };
            match p.on_request_headers(host, has_body) {
                Step::Continue => {}
                Step::ReadBody => match body.as_deref_mut() {
                    Some(b) => match self.body_of(host, i, b) {
                        Step::Continue => {}
                        other => return other,
                    },
                    None => {
                        self.phase = Phase::Body;
                        return Step::ReadBody;
                    }
                },
                Step::Reply(r) => return self.replied(i, r),
                Step::Call(calls) => {
                    self.phase = Phase::CallsFromHeaders;
                    return Step::Call(calls);
                }
            }
        }
        self.phase = Phase::Done;
        Step::Continue
    }

    /// The body callback of policy `i`, with its own size limit.
    fn body_of(&mut self, host: &mut dyn Host, i: usize, body: &mut Body) -> Step {
        let Some(p) = self.policies.get_mut(i) else {
            return Step::Continue;
        };
        let limit = p.request_body_limit();
        if body.len() > limit {
            return match p.on_request_too_large(host, limit) {
                Some(reply) => self.replied(i, reply),
                None => Step::Continue,
            };
        }
        match p.on_request_body(host, body) {
            Step::Continue | Step::ReadBody => Step::Continue,
            Step::Reply(r) => self.replied(i, r),
            Step::Call(calls) => {
                self.phase = Phase::CallsFromBody;
                Step::Call(calls)
            }
        }
    }

    /// The policies that see the response, last first.
    fn response_order(&self) -> impl Iterator<Item = usize> {
        let upto = self.replied_by.unwrap_or(self.policies.len());
        (0..upto).rev()
    }
}

impl Policy for Chain {
    /// The largest of the policies' limits; each policy's own limit is applied to it in turn.
    fn request_body_limit(&self) -> usize {
        self.policies
            .iter()
            .map(|p| p.request_body_limit())
            .max()
            .unwrap_or(0)
    }

    fn on_request_headers(&mut self, host: &mut dyn Host, has_body: bool) -> Step {
        self.has_body = has_body;
        self.run_from(host, 0, None)
    }

    fn on_request_body(&mut self, host: &mut dyn Host, body: &mut Body) -> Step {
        if self.phase != Phase::Body {
            return Step::Continue;
        }
        let i = self.at;
        match self.body_of(host, i, body) {
            Step::Continue => self.run_from(host, i + 1, Some(body)),
            other => other,
        }
    }

    fn on_request_too_large(&mut self, host: &mut dyn Host, limit: usize) -> Option<LocalReply> {
        // Past every policy's limit: the one waiting for the body decides, as it would alone.
        let i = self.at;
        let reply = self.policies.get_mut(i)?.on_request_too_large(host, limit);
        match reply {
            Some(r) => {
                self.replied_by = Some(i);
                self.phase = Phase::Done;
                Some(r)
            }
            None => None,
        }
    }

    fn on_call_responses(
        &mut self,
        host: &mut dyn Host,
        responses: Vec<CallResponse>,
        body: Option<&mut Body>,
    ) -> Step {
        let i = self.at;
        let phase = self.phase;
        let Some(p) = self.policies.get_mut(i) else {
            return Step::Continue;
        };
        let mut body = body;
        let step = p.on_call_responses(host, responses, body.as_deref_mut());
        match (step, phase) {
            (Step::Reply(r), _) => self.replied(i, r),
            (Step::Call(calls), _) => Step::Call(calls),
            (Step::ReadBody, Phase::CallsFromHeaders) => {
                self.phase = Phase::Body;
                Step::ReadBody
            }
            (Step::Continue | Step::ReadBody, _) => self.run_from(host, i + 1, body),
        }
    }

    fn sees_own_replies(&self) -> bool {
        true
    }

    fn on_response_headers(&mut self, host: &mut dyn Host) -> ResponseMode {
        let order: Vec<usize> = self.response_order().collect();
        for i in order {
            if let (Some(p), Some(m)) = (self.policies.get_mut(i), self.modes.get_mut(i)) {
                *m = p.on_response_headers(host);
            }
        }
        if self.modes.contains(&ResponseMode::Whole) {
            ResponseMode::Whole
        } else if self.modes.contains(&ResponseMode::Stream) {
            ResponseMode::Stream
        } else {
            ResponseMode::PassThrough
        }
    }

    fn on_response_chunk(&mut self, host: &mut dyn Host, chunk: &[u8], end: bool) -> Option<Vec<u8>> {
        let order: Vec<usize> = self.response_order().collect();
        let mut data: Option<Vec<u8>> = None;
        for i in order {
            if self.modes.get(i) != Some(&ResponseMode::Stream) {
                continue;
            }
            let Some(p) = self.policies.get_mut(i) else {
                continue;
            };
            let input = data.as_deref().unwrap_or(chunk);
            if let Some(out) = p.on_response_chunk(host, input, end) {
                data = Some(out);
            }
        }
        data
    }

    fn on_response_whole(&mut self, host: &mut dyn Host, body: &[u8]) -> WholeResponse {
        let order: Vec<usize> = self.response_order().collect();
        let mut out = WholeResponse::unchanged(body);
        for i in order {
            let (Some(p), Some(mode)) = (self.policies.get_mut(i), self.modes.get(i)) else {
                continue;
            };
            match mode {
                // A streaming policy behind a whole-body one gets the body as one last chunk.
                ResponseMode::Stream => {
                    if let Some(new) = p.on_response_chunk(host, &out.body, true) {
                        out.body = new;
                    }
                }
                ResponseMode::Whole => {
                    let w = p.on_response_whole(host, &out.body);
                    out.body = w.body;
                    out.status = w.status.or(out.status);
                }
                ResponseMode::PassThrough => {}
            }
        }
        out
    }

    fn on_request_encoded(&mut self, host: &mut dyn Host, encoding: &str) -> Option<LocalReply> {
        self.policies
            .iter_mut()
            .find_map(|p| p.on_request_encoded(host, encoding))
    }

    fn on_response_too_large(&mut self, host: &mut dyn Host, limit: usize) {
        for p in &mut self.policies {
            p.on_response_too_large(host, limit);
        }
    }

    fn on_done(&mut self, host: &mut dyn Host) {
        for p in &mut self.policies {
            p.on_done(host);
        }
    }
}

/// The timer work of several policies in one root context: each runs at its own period, and the tags
/// of their calls carry the policy's index in the top byte.
pub struct Backgrounds {
    works: Vec<(Box<dyn Background>, u64)>,
    period: u64,
}

const TAG_SHIFT: u32 = 56;

impl Backgrounds {
    /// `None` without any work, the work itself for one, a multiplexer for several.
    pub fn combine(mut works: Vec<Box<dyn Background>>) -> Option<Box<dyn Background>> {
        match works.len() {
            0 => None,
            1 => works.pop(),
            _ => {
                let period = works.iter().map(|w| w.period_ms().max(1)).min().unwrap_or(1000);
                Some(Box::new(Backgrounds {
                    works: works.into_iter().map(|w| (w, 0)).collect(),
                    period,
                }))
            }
        }
    }
}

impl Background for Backgrounds {
    fn period_ms(&self) -> u64 {
        self.period
    }

    fn on_tick(&mut self, host: &mut dyn Host) -> Vec<(u64, super::HttpCall)> {
        let now = host.now_ms();
        let mut out = Vec::new();
        for (i, (work, last)) in self.works.iter_mut().enumerate() {
            if now.saturating_sub(*last) + self.period / 2 < work.period_ms() {
                continue;
            }
            *last = now;
            let index = (i as u64) << TAG_SHIFT;
            out.extend(
                work.on_tick(host)
                    .into_iter()
                    .map(|(tag, call)| (index | (tag & ((1 << TAG_SHIFT) - 1)), call)),
            );
        }
        out
    }

    fn on_call_response(&mut self, host: &mut dyn Host, tag: u64, response: CallResponse) {
        let i = usize::try_from(tag >> TAG_SHIFT).unwrap_or(usize::MAX);
        if let Some((work, _)) = self.works.get_mut(i) {
            work.on_call_response(host, tag & ((1 << TAG_SHIFT) - 1), response);
        }
    }
}
