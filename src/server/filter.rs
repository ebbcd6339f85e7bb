//! The bridge between the milter session and the pipeline: the [`Filter`] the
//! daemon plugs into every session, judging with the policy in force.

use std::sync::Arc;
use std::time::Instant;

use crate::message::Message;
use crate::milter::{BoxFuture, Filter, Limit};
use crate::pipeline;
use crate::verdict::Verdict;

use super::DaemonState;
use super::report::{Stage, report};

/// Judges messages with the daemon's current policy.
pub struct PolicyFilter {
    state: Arc<DaemonState>,
}

impl PolicyFilter {
    pub fn new(state: Arc<DaemonState>) -> Self {
        PolicyFilter { state }
    }
}

impl Filter for PolicyFilter {
    fn mail(&self, msg: &Message) -> Option<Verdict> {
        let started = Instant::now();
        let loaded = self.state.policy();
        let verdict = pipeline::at_mail(msg, &loaded.policy)?;
        report(msg, &verdict, None, Stage::Mail, started.elapsed());
        Some(verdict)
    }

    fn body_chunk(&self, msg: &Message, chunk_len: usize) -> Option<Verdict> {
        let started = Instant::now();
        let loaded = self.state.policy();
        let verdict = pipeline::at_body_chunk(msg, chunk_len, &loaded.policy)?;
        report(msg, &verdict, None, Stage::Body, started.elapsed());
        Some(verdict)
    }

    fn end_of_message(&self, msg: Message) -> BoxFuture<'static, Verdict> {
        let loaded = self.state.policy();
        let scanner = self.state.scanner();
        Box::pin(async move {
            let started = Instant::now();
            let decision = pipeline::decide(&msg, &loaded.policy, scanner.as_ref()).await;
            let elapsed = started.elapsed();
            let facts = Some(&decision.facts);
            report(&msg, &decision.verdict, facts, Stage::EndOfMessage, elapsed);
            decision.verdict
        })
    }

    fn over_budget(&self, msg: &Message) -> Verdict {
        let budget = &self.state.budget;
        let loaded = self.state.policy();
        let verdict = pipeline::over_budget(msg, &loaded.policy, budget.used(), budget.limit());
        report(msg, &verdict, None, Stage::Body, std::time::Duration::ZERO);
        verdict
    }

    fn over_limit(&self, msg: &Message, limit: Limit) -> Verdict {
        let loaded = self.state.policy();
        let verdict = pipeline::over_limit(msg, &loaded.policy, limit);
        let stage = match limit {
            Limit::Recipients(_) => Stage::Recipient,
            Limit::Headers(_) => Stage::Header,
        };
        report(msg, &verdict, None, stage, std::time::Duration::ZERO);
        verdict
    }

    fn aborted(&self, msg: &Message) {
        tracing::debug!(
            queue_id = %super::logging::message_id(msg),
            "message aborted by the MTA before a verdict"
        );
    }
}
