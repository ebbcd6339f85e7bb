//! Several clamd behind one [`Scanner`]: least-loaded choice among the healthy
//! ones, failover to another endpoint when one fails before answering, a
//! background PING probe that takes failing endpoints out of service and puts
//! them back, bounded concurrency, and a deadline per message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use tokio::sync::{Semaphore, watch};
use tokio::time::{MissedTickBehavior, timeout_at};

use super::clamd::{ClamdAddr, ClamdAnswer, ClamdError};
use super::{ClamavPolicy, ScanOutcome, ScanProblem};
use crate::inspect::ScanPart;
use crate::metrics::{Metrics, metrics};

/// Health and counters of one endpoint, for logs, metrics and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointHealth {
    /// As configured, normalised (`unix:/run/clamav/clamd.ctl`, `tcp:10.0.0.5:3310`).
    pub name: String,
    /// In service. An endpoint leaves service when a scan or PING fails before
    /// answering, and comes back when it answers PING (or a scan) again.
    pub healthy: bool,
    /// Failures (scans or probes) since the last answer.
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// Scans running or waiting for this endpoint now.
    pub in_flight: usize,
    /// Scans this endpoint answered (OK, FOUND or ERROR).
    pub scans: u64,
    /// Of those, FOUND.
    pub infected: u64,
    /// Scans that failed here: no answer (connect, I/O, timeout) or an ERROR reply.
    pub errors: u64,
    /// Of the errors, timeouts (connect or scan).
    pub timeouts: u64,
    /// PINGs that failed.
    pub probe_failures: u64,
    /// Total time of the answered scans (for an average latency).
    pub latency_sum: Duration,
}

#[derive(Debug, Default)]
struct State {
    healthy: bool,
    consecutive_failures: u32,
    last_error: Option<String>,
    scans: u64,
    infected: u64,
    errors: u64,
    timeouts: u64,
    probe_failures: u64,
    latency_sum: Duration,
}

struct Endpoint {
    name: String,
    addr: ClamdAddr,
    /// The daemon's metrics; `None` in the offline `scan` command and in tests.
    metrics: Option<&'static Metrics>,
    permits: Semaphore,
    in_flight: AtomicUsize,
    state: Mutex<State>,
}

/// Counts one clamd answer in the metrics.
fn count_answer(m: &Metrics, endpoint: &str, answer: &ClamdAnswer, elapsed: Duration) {
    let result = match answer {
        ClamdAnswer::Clean => "clean",
        ClamdAnswer::Infected(_) => "infected",
        ClamdAnswer::SizeLimit(_) => "size_limit",
        ClamdAnswer::Error(_) => "error",
    };
    m.clamd_scans.with_label_values(&[endpoint, result]).inc();
    m.clamd_scan_seconds
        .with_label_values(&[endpoint])
        .observe(elapsed.as_secs_f64());
    if matches!(answer, ClamdAnswer::Error(_)) {
        m.clamd_errors.with_label_values(&[endpoint]).inc();
    }
    m.clamd_endpoint_up.with_label_values(&[endpoint]).set(1);
}

impl Endpoint {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain counters; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_healthy(&self) -> bool {
        self.state().healthy
    }

    /// An answer: counts it, and puts the endpoint back in service.
    fn answered(&self, answer: &ClamdAnswer, elapsed: Duration) {
        if let Some(m) = self.metrics {
            count_answer(m, &self.name, answer, elapsed);
        }
        let back = {
            let mut s = self.state();
            s.scans += 1;
            s.latency_sum += elapsed;
            match answer {
                ClamdAnswer::Infected(_) => s.infected += 1,
                ClamdAnswer::Error(e) => {
                    s.errors += 1;
                    s.last_error = Some(e.clone());
                }
                ClamdAnswer::Clean | ClamdAnswer::SizeLimit(_) => {}
            }
            s.consecutive_failures = 0;
            !std::mem::replace(&mut s.healthy, true)
        };
        if back {
            tracing::info!(endpoint = %self.name, "clamd endpoint back in service (answered a scan)");
        }
    }

    /// A failure before any answer: takes the endpoint out of service.
    fn failed(&self, error: &ClamdError, probe: bool) {
        if let Some(m) = self.metrics {
            m.clamd_endpoint_up.with_label_values(&[&self.name]).set(0);
            if !probe {
                let result = if error.is_timeout() {
                    "timeout"
                } else {
                    "no_answer"
                };
                m.clamd_scans.with_label_values(&[&self.name, result]).inc();
                m.clamd_errors.with_label_values(&[&self.name]).inc();
                if error.is_timeout() {
                    m.clamd_timeouts.with_label_values(&[&self.name]).inc();
                }
            }
        }
        let out = {
            let mut s = self.state();
            if probe {
                s.probe_failures += 1;
            } else {
                s.errors += 1;
                if error.is_timeout() {
                    s.timeouts += 1;
                }
            }
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            s.last_error = Some(error.to_string());
            std::mem::replace(&mut s.healthy, false)
        };
        if out {
            tracing::warn!(endpoint = %self.name, error = %error, probe, "clamd endpoint taken out of service");
        }
    }

    fn probe_ok(&self) {
        if let Some(m) = self.metrics {
            m.clamd_endpoint_up.with_label_values(&[&self.name]).set(1);
        }
        let back = {
            let mut s = self.state();
            s.consecutive_failures = 0;
            !std::mem::replace(&mut s.healthy, true)
        };
        if back {
            tracing::info!(endpoint = %self.name, "clamd endpoint back in service (PONG)");
        }
    }

    fn health(&self) -> EndpointHealth {
        let s = self.state();
        EndpointHealth {
            name: self.name.clone(),
            healthy: s.healthy,
            consecutive_failures: s.consecutive_failures,
            last_error: s.last_error.clone(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            scans: s.scans,
            infected: s.infected,
            errors: s.errors,
            timeouts: s.timeouts,
            probe_failures: s.probe_failures,
            latency_sum: s.latency_sum,
        }
    }
}

/// Counts a scan as in flight on an endpoint for as long as it lives (also when
/// the message's deadline drops the scan).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Inner {
    cfg: ClamavPolicy,
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    shutdown: watch::Sender<bool>,
}

/// The clamd pool. Cheap to clone; all clones share endpoints, health and the
/// probe task. The probe task ends on [`Scanner::shutdown`] or when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Scanner {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("endpoints", &self.health())
            .finish()
    }
}

/// A part's result: `Ok(None)` clean, `Ok(Some(signature))` infected.
type PartResult = Result<Option<String>, ScanProblem>;

impl Scanner {
    /// Builds the pool from `[clamav]`. Every endpoint starts in service; when
    /// called inside a tokio runtime, the probe task starts and PINGs each
    /// endpoint at once, then every `probe_interval`. It counts nothing in the
    /// process's metrics: the offline `scan` command and tests use it.
    pub fn new(cfg: &ClamavPolicy) -> Result<Scanner, String> {
        Scanner::build(cfg, None)
    }

    /// The pool of the daemon, which reports scans and endpoint health to the
    /// process's metrics.
    pub fn reporting_metrics(cfg: &ClamavPolicy) -> Result<Scanner, String> {
        Scanner::build(cfg, Some(metrics()))
    }

    fn build(cfg: &ClamavPolicy, metrics: Option<&'static Metrics>) -> Result<Scanner, String> {
        if cfg.endpoints.is_empty() {
            return Err("[clamav] endpoints: no clamd endpoint".into());
        }
        let mut endpoints = Vec::with_capacity(cfg.endpoints.len());
        for text in &cfg.endpoints {
            let addr = ClamdAddr::parse(text).map_err(|e| format!("[clamav] endpoints: {e}"))?;
            if let Some(m) = metrics {
                m.clamd_endpoint_up
                    .with_label_values(&[&addr.to_string()])
                    .set(1);
            }
            endpoints.push(Endpoint {
                name: addr.to_string(),
                addr,
                metrics,
                permits: Semaphore::new(cfg.max_concurrent_scans.max(1)),
                in_flight: AtomicUsize::new(0),
                state: Mutex::new(State {
                    healthy: true,
                    ..State::default()
                }),
            });
        }
        let (shutdown, _) = watch::channel(false);
        let scanner = Scanner {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                endpoints,
                next: AtomicUsize::new(0),
                shutdown,
            }),
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&scanner.inner);
            let stop = scanner.inner.shutdown.subscribe();
            let interval = cfg.probe_interval.get().max(Duration::from_millis(10));
            handle.spawn(probe_loop(weak, stop, interval));
        }
        Ok(scanner)
    }

    /// Stops the probe task.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Health and counters of every endpoint, in configuration order.
    pub fn health(&self) -> Vec<EndpointHealth> {
        self.inner.endpoints.iter().map(Endpoint::health).collect()
    }

    /// True when at least one endpoint is in service (for `/readyz`).
    pub fn any_healthy(&self) -> bool {
        self.inner.endpoints.iter().any(Endpoint::is_healthy)
    }

    /// PINGs every endpoint now and updates their health.
    pub async fn probe_now(&self) {
        probe_all(&self.inner).await;
    }

    /// Scans the decoded parts of one message, at most `max_parallel_parts` at a
    /// time, all within `message_deadline`. Parts still running at the deadline
    /// count as unscanned.
    pub async fn scan_parts(&self, parts: &[ScanPart]) -> ScanOutcome {
        let deadline = tokio::time::Instant::now() + self.inner.cfg.message_deadline.get();
        let mut results: Vec<Option<PartResult>> = vec![None; parts.len()];
        {
            // The futures are built in a loop rather than by a closure in `map`: a
            // closure here makes the caller's future fail the `Send` check
            // (rustc's higher-ranked lifetime limitation), and the daemon needs
            // `Send` futures.
            let mut pending = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                pending.push(async move { (i, self.scan_one(&part.data).await) });
            }
            let mut running =
                stream::iter(pending).buffer_unordered(self.inner.cfg.max_parallel_parts.max(1));
            loop {
                match timeout_at(deadline, running.next()).await {
                    Ok(Some((i, result))) => results[i] = Some(result),
                    Ok(None) => break,
                    Err(_) => {
                        tracing::warn!(
                            deadline = ?self.inner.cfg.message_deadline.get(),
                            "virus scan of the message hit its deadline"
                        );
                        break;
                    }
                }
            }
        }
        let deadline_problem = || {
            ScanProblem::NoAnswer(format!(
                "message_deadline of {} passed",
                self.inner.cfg.message_deadline
            ))
        };
        let results = parts
            .iter()
            .zip(results)
            .map(|(part, r)| {
                (
                    part.label.clone(),
                    r.unwrap_or_else(|| Err(deadline_problem())),
                )
            })
            .collect();
        ScanOutcome::from_parts(results)
    }

    /// Scans the raw message as one stream (`scan = "message"`), within
    /// `message_deadline`.
    pub async fn scan_raw(&self, raw: Bytes) -> ScanOutcome {
        let limit = self.inner.cfg.message_deadline.get();
        let result = match tokio::time::timeout(limit, self.scan_one(&raw)).await {
            Ok(r) => r,
            Err(_) => Err(ScanProblem::NoAnswer(format!(
                "message_deadline of {} passed",
                self.inner.cfg.message_deadline
            ))),
        };
        ScanOutcome::from_parts(vec![("message".to_owned(), result)])
    }

    /// Chooses an endpoint not yet tried for this part: healthy before unhealthy
    /// (a last resort, in case it came back before the probe noticed), then the
    /// fewest scans in flight, ties broken round-robin.
    fn pick(&self, tried: &[bool]) -> Option<usize> {
        let eps = &self.inner.endpoints;
        let n = eps.len();
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(usize, (bool, usize))> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if tried[i] {
                continue;
            }
            let key = (
                !eps[i].is_healthy(),
                eps[i].in_flight.load(Ordering::Relaxed),
            );
            if best.is_none_or(|(_, b)| key < b) {
                best = Some((i, key));
            }
        }
        best.map(|(i, _)| i)
    }

    /// One part, with failover: tries up to `max_attempts` different endpoints
    /// until one answers OK, FOUND or the size limit.
    async fn scan_one(&self, data: &Bytes) -> PartResult {
        let cfg = &self.inner.cfg;
        let size = data.len() as u64;
        if size > cfg.max_scan_size.bytes() {
            return Err(ScanProblem::SizeLimit {
                size,
                limit: Some(cfg.max_scan_size.bytes()),
            });
        }
        let scan_timeout = cfg.scan_timeout_for(size);
        let chunk = usize::try_from(cfg.chunk_size.bytes())
            .unwrap_or(64 * 1024)
            .max(1);
        let mut tried = vec![false; self.inner.endpoints.len()];
        let mut problems: Vec<String> = Vec::new();
        let mut error_reply: Option<String> = None;
        for _ in 0..cfg.max_attempts.max(1) {
            let Some(i) = self.pick(&tried) else { break };
            tried[i] = true;
            let ep = &self.inner.endpoints[i];
            let _counted = InFlight::new(&ep.in_flight);
            let Ok(_permit) = ep.permits.acquire().await else {
                break;
            };
            let started = Instant::now();
            let result = ep
                .addr
                .instream(data, chunk, cfg.connect_timeout.get(), scan_timeout)
                .await;
            match result {
                Ok(answer) => {
                    ep.answered(&answer, started.elapsed());
                    match answer {
                        ClamdAnswer::Clean => return Ok(None),
                        ClamdAnswer::Infected(sig) => return Ok(Some(sig)),
                        ClamdAnswer::SizeLimit(text) => {
                            tracing::warn!(endpoint = %ep.name, size, reply = %text, "clamd refused the stream: raise StreamMaxLength or lower max_scan_size");
                            return Err(ScanProblem::SizeLimit { size, limit: None });
                        }
                        ClamdAnswer::Error(text) => {
                            tracing::warn!(endpoint = %ep.name, reply = %text, "clamd answered ERROR; trying another endpoint");
                            problems.push(format!("{}: {text}", ep.name));
                            error_reply.get_or_insert(format!("{}: {text}", ep.name));
                        }
                    }
                }
                Err(e) => {
                    ep.failed(&e, false);
                    tracing::warn!(endpoint = %ep.name, error = %e, "clamd scan failed before an answer");
                    problems.push(format!("{}: {e}", ep.name));
                }
            }
        }
        let all = problems.join("; ");
        Err(match error_reply {
            Some(_) => ScanProblem::Error(all),
            None if all.is_empty() => ScanProblem::NoAnswer("no endpoint to try".into()),
            None => ScanProblem::NoAnswer(all),
        })
    }
}

async fn probe_all(inner: &Inner) {
    let limit = inner
        .cfg
        .connect_timeout
        .get()
        .saturating_mul(2)
        .max(Duration::from_millis(100));
    let probes = inner.endpoints.iter().map(|ep| async move {
        match ep.addr.ping(limit).await {
            Ok(()) => ep.probe_ok(),
            Err(e) => ep.failed(&e, true),
        }
    });
    futures_util::future::join_all(probes).await;
}

async fn probe_loop(inner: Weak<Inner>, mut stop: watch::Receiver<bool>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        probe_all(&inner).await;
    }
}
