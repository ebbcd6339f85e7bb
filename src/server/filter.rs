//! The bridge between the milter session and the pipeline: the [`Filter`] the
//! daemon plugs into every session, judging with the policy in force, sharing the
//! memory budget and the turns at inspecting (`[limits]
//! max_concurrent_inspections`) among all decisions. While a message waits for
//! its turn the session keeps sending Postfix progress replies.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::message::Message;
use crate::milter::{BoxFuture, Filter, Limit};
use crate::pipeline::{self, Shared};
use crate::policy::{LimitsSection, Policy};
use crate::verdict::Verdict;

use super::DaemonState;
use super::report::{Audit, Stage, report};

/// Judges messages with the daemon's current policy.
pub struct PolicyFilter {
    state: Arc<DaemonState>,
    turns: Mutex<Turns>,
}

/// Turns at inspecting, as many as the policy in force allows.
struct Turns {
    count: usize,
    semaphore: Arc<Semaphore>,
}

impl Turns {
    fn new(count: usize) -> Turns {
        Turns {
            count,
            semaphore: Arc::new(Semaphore::new(count)),
        }
    }
}

impl PolicyFilter {
    pub fn new(state: Arc<DaemonState>) -> Self {
        let count = state.policy().policy.limits.concurrent_inspections();
        PolicyFilter {
            state,
            turns: Mutex::new(Turns::new(count)),
        }
    }

    fn audit<'a>(&'a self, policy: &'a Policy) -> Audit<'a> {
        Audit {
            log: &self.state.audit,
            policy,
        }
    }

    /// The turns at inspecting for `limits`. A reload that changes their number
    /// starts a new set: messages holding a turn of the old one finish with it.
    fn turns(&self, limits: &LimitsSection) -> Arc<Semaphore> {
        let count = limits.concurrent_inspections();
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        if turns.count != count {
            *turns = Turns::new(count);
        }
        turns.semaphore.clone()
    }
}

impl Filter for PolicyFilter {
    fn mail(&self, msg: &Message) -> Option<Verdict> {
        let started = Instant::now();
        let loaded = self.state.policy();
        let verdict = pipeline::at_mail(msg, &loaded.policy)?;
        report(
            msg,
            &verdict,
            None,
            Stage::Mail,
            started.elapsed(),
            self.audit(&loaded.policy),
        );
        Some(verdict)
    }

    fn body_chunk(&self, msg: &Message, chunk_len: usize) -> Option<Verdict> {
        let started = Instant::now();
        let loaded = self.state.policy();
        let verdict = pipeline::at_body_chunk(msg, chunk_len, &loaded.policy)?;
        report(
            msg,
            &verdict,
            None,
            Stage::Body,
            started.elapsed(),
            self.audit(&loaded.policy),
        );
        Some(verdict)
    }

    fn end_of_message(&self, msg: Message) -> BoxFuture<'static, Verdict> {
        let loaded = self.state.policy();
        let scanner = self.state.scanner();
        let state = self.state.clone();
        let shared = Shared {
            memory: Some(self.state.budget.clone()),
            inspections: Some(self.turns(&loaded.policy.limits)),
        };
        Box::pin(async move {
            let started = Instant::now();
            let decision =
                pipeline::decide_sharing(&msg, &loaded.policy, scanner.as_ref(), &shared).await;
            let elapsed = started.elapsed();
            let facts = Some(&decision.facts);
            let audit = Audit {
                log: &state.audit,
                policy: &loaded.policy,
            };
            report(
                &msg,
                &decision.verdict,
                facts,
                Stage::EndOfMessage,
                elapsed,
                audit,
            );
            state
                .notices
                .after_verdict(&msg, &decision.verdict, &decision.facts, &loaded.policy);
            decision.verdict
        })
    }

    fn over_budget(&self, msg: &Message) -> Verdict {
        let budget = &self.state.budget;
        let loaded = self.state.policy();
        let verdict = pipeline::over_budget(msg, &loaded.policy, budget.used(), budget.limit());
        report(
            msg,
            &verdict,
            None,
            Stage::Body,
            std::time::Duration::ZERO,
            self.audit(&loaded.policy),
        );
        verdict
    }

    fn over_limit(&self, msg: &Message, limit: Limit) -> Verdict {
        let loaded = self.state.policy();
        let verdict = pipeline::over_limit(msg, &loaded.policy, limit);
        let stage = match limit {
            Limit::Recipients(_) => Stage::Recipient,
            Limit::Headers(_) => Stage::Header,
        };
        report(
            msg,
            &verdict,
            None,
            stage,
            std::time::Duration::ZERO,
            self.audit(&loaded.policy),
        );
        verdict
    }

    fn aborted(&self, msg: &Message) {
        tracing::debug!(
            queue_id = %super::logging::message_id(msg),
            "message aborted by the MTA before a verdict"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;
    use crate::message::Envelope;
    use crate::milter::budget::{MemoryBudget, SESSION_BYTES_PER_BODY_BYTE};
    use crate::milter::client::{MessageOutcome, MilterClient, Offer, StageMacros};
    use crate::milter::codec::{Family, Reply};
    use crate::milter::session::{SessionConfig, run_session};
    use crate::policy::LoadedPolicy;

    const EML: &[u8] =
        b"From: a@example.org\r\nTo: b@bacgiang.gov.vn\r\nSubject: hi\r\n\r\nXin chao.\r\n";

    /// Sends one message through a session with `filter`, as Postfix would.
    async fn send_one<F: Filter>(filter: Arc<F>, budget: Arc<MemoryBudget>) -> MessageOutcome {
        let (mta, milter) = tokio::io::duplex(64 * 1024);
        let config = SessionConfig {
            progress_interval: Duration::from_millis(50),
            memory_budget: Some(budget),
            ..SessionConfig::default()
        };
        let session = tokio::spawn(run_session(
            milter,
            filter,
            config,
            1,
            "test".to_owned(),
            tokio_util::sync::CancellationToken::new(),
        ));
        let mut client = MilterClient::new(mta).with_timeout(Duration::from_secs(10));
        client.negotiate(Offer::POSTFIX_3_7).await.unwrap();
        client
            .connect(
                "client.test",
                Family::Inet(Ipv4Addr::new(192, 0, 2, 7), 40000),
            )
            .await
            .unwrap();
        client.helo("client.test").await.unwrap();
        let envelope = Envelope {
            sender: "a@example.org".into(),
            sender_params: Vec::new(),
            recipients: vec!["b@bacgiang.gov.vn".into()],
        };
        let outcome = client
            .send_message(&envelope, EML, &StageMacros::default())
            .await
            .unwrap();
        client.quit().await.unwrap();
        session.await.unwrap();
        outcome
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_waiting_for_its_turn_gets_progress_replies_then_451() {
        let text = "[clamav]\nenabled = false\n[metrics]\nlisten = \"\"\n[limits]\nmax_concurrent_inspections = 1\nmax_inspect_time = \"400ms\"\n";
        let loaded = LoadedPolicy::from_text(text, "test.toml".as_ref()).unwrap();
        let budget = MemoryBudget::new(loaded.policy.limits.max_buffered_bytes.bytes());
        let state = DaemonState::new("test.toml".into(), loaded, budget.clone());
        let filter = Arc::new(PolicyFilter::new(state.clone()));
        // Another message holds the only turn.
        let turn = filter
            .turns(&state.policy().policy.limits)
            .acquire_owned()
            .await
            .unwrap();
        let outcome = send_one(filter.clone(), budget.clone()).await;
        assert!(outcome.progress >= 3, "{outcome:?}");
        match &outcome.reply {
            Reply::ReplyCode(text) => assert!(text.starts_with("451 4.7.1"), "{text}"),
            other => panic!("{other:?}"),
        }
        // Its turn given back, the next message is inspected.
        drop(turn);
        let outcome = send_one(filter, budget).await;
        assert!(
            matches!(outcome.reply, Reply::Accept | Reply::Continue),
            "{outcome:?}"
        );
    }

    /// Records what the budget holds when the decision starts.
    struct Recorder {
        budget: Arc<MemoryBudget>,
        seen: Mutex<Vec<(u64, usize)>>,
    }

    impl Filter for Recorder {
        fn end_of_message(&self, msg: Message) -> BoxFuture<'static, Verdict> {
            let held = self.budget.used();
            self.seen.lock().unwrap().push((held, msg.body_len()));
            Box::pin(async { Verdict::accept() })
        }
    }

    /// The decision counts on the session charging at least
    /// SESSION_BYTES_PER_BODY_BYTE per body byte (it charges headers and
    /// recipients too).
    #[tokio::test]
    async fn the_session_charges_what_the_decision_counts_on() {
        let budget = MemoryBudget::new(1 << 30);
        let recorder = Arc::new(Recorder {
            budget: budget.clone(),
            seen: Mutex::new(Vec::new()),
        });
        send_one(recorder.clone(), budget.clone()).await;
        let seen = recorder.seen.lock().unwrap().clone();
        let (held, body) = seen[0];
        assert!(body > 0);
        assert!(
            held >= SESSION_BYTES_PER_BODY_BYTE * body as u64,
            "held {held} for a body of {body} bytes"
        );
        assert_eq!(budget.used(), 0);
    }
}
