//! The daemon: listeners, the connection cap, the policy in force (reloaded on
//! SIGHUP), graceful shutdown (SIGTERM/SIGINT), the HTTP endpoint (`http`:
//! metrics and health), and the one reporting step per verdict (`report`: the
//! log line, the metrics and the audit record, `audit`).

pub mod audit;
mod filter;
mod http;
mod listen;
pub(crate) mod logging;
mod report;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::metrics;
use crate::milter::budget::MemoryBudget;
use crate::milter::session::{SessionConfig, SessionStats, run_session};
use crate::notices::Notifier;
use crate::policy::{ListenAddr, LoadedPolicy};
use crate::scan::Scanner;
use audit::AuditLog;

pub use filter::PolicyFilter;
pub use listen::Listener;
pub use logging::init_logging;

/// What every session shares: the policy in force and the id counter.
pub struct DaemonState {
    policy: RwLock<Arc<LoadedPolicy>>,
    /// The clamd pool for the policy in force; `None` when scanning is off.
    scanner: RwLock<Option<Scanner>>,
    config_path: PathBuf,
    next_connection_id: AtomicU64,
    /// Message bytes held by all sessions (`[limits] max_buffered_bytes`).
    pub budget: Arc<MemoryBudget>,
    /// Notices to the officials concerned (`[notices]`).
    pub notices: Notifier,
    /// `[audit]`: one record per message; reopened on every reload.
    pub audit: Arc<AuditLog>,
}

impl DaemonState {
    pub fn new(
        config_path: PathBuf,
        loaded: LoadedPolicy,
        budget: Arc<MemoryBudget>,
    ) -> Arc<DaemonState> {
        let scanner = build_scanner(&loaded);
        Arc::new(DaemonState {
            budget,
            audit: AuditLog::start(&loaded.policy.audit),
            scanner: RwLock::new(scanner),
            policy: RwLock::new(Arc::new(loaded)),
            config_path,
            next_connection_id: AtomicU64::new(1),
            notices: Notifier::default(),
        })
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<LoadedPolicy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The clamd pool in force, if scanning is on.
    pub fn scanner(&self) -> Option<Scanner> {
        match self.scanner.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Loads the policy file again; a policy that does not load is refused and
    /// the running one stays in force.
    pub fn reload(&self) -> bool {
        match LoadedPolicy::load(&self.config_path) {
            Ok(new) => {
                for w in &new.warnings {
                    tracing::warn!("{w}");
                }
                let old = self.policy();
                if new.policy.milter.listen != old.policy.milter.listen {
                    tracing::warn!(
                        "[milter] listen changed; sockets move only on restart, the old ones stay open"
                    );
                }
                tracing::info!(
                    policy = %self.config_path.display(),
                    sha256 = new.hash.get(..16).unwrap_or(&new.hash),
                    "policy reloaded"
                );
                metrics().set_policy(&new.hash);
                metrics()
                    .policy_reloads
                    .with_label_values(&["success"])
                    .inc();
                // The clamd pool is rebuilt only when its settings changed, so that
                // endpoint health survives an unrelated reload.
                let clamav_changed =
                    format!("{:?}", new.policy.clamav) != format!("{:?}", old.policy.clamav);
                if clamav_changed {
                    let scanner = build_scanner(&new);
                    let mut slot = match self.scanner.write() {
                        Ok(s) => s,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    if let Some(old_scanner) = std::mem::replace(&mut *slot, scanner) {
                        old_scanner.shutdown();
                    }
                }
                self.budget
                    .set_limit(new.policy.limits.max_buffered_bytes.bytes());
                self.audit.configure(&new.policy.audit);
                match self.policy.write() {
                    Ok(mut p) => *p = Arc::new(new),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(new),
                }
                true
            }
            Err(e) => {
                metrics()
                    .policy_reloads
                    .with_label_values(&["failure"])
                    .inc();
                tracing::error!(
                    policy = %self.config_path.display(),
                    "policy reload refused, the running policy stays in force:\n{e}"
                );
                false
            }
        }
    }
}

/// What `/healthz` and `/readyz` ask the daemon.
impl DaemonState {
    /// Process alive with a policy loaded.
    fn healthy(&self) -> bool {
        // A policy is always loaded: serve refuses to start without one, and a
        // reload keeps the old one when the new one fails.
        true
    }

    /// Able to decide: at least one clamd in service when scanning is on. `Err`
    /// says why not.
    fn ready(&self) -> Result<(), String> {
        let loaded = self.policy();
        if !loaded.policy.clamav.enabled {
            return Ok(());
        }
        match self.scanner() {
            Some(s) if s.any_healthy() => Ok(()),
            Some(_) => Err("no clamd endpoint answers".into()),
            None => Err("the clamd pool could not be built".into()),
        }
    }
}

/// Builds the clamd pool for a policy (inside the runtime, so that its probe task
/// starts). The policy was validated, so a failure here is logged, and messages
/// then get the `on_failure` action.
fn build_scanner(loaded: &LoadedPolicy) -> Option<Scanner> {
    let cfg = &loaded.policy.clamav;
    if !cfg.enabled {
        return None;
    }
    match Scanner::reporting_metrics(cfg) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!("cannot set up clamd scanning: {e}");
            None
        }
    }
}

fn session_config(loaded: &LoadedPolicy, budget: &Arc<MemoryBudget>) -> SessionConfig {
    let m = &loaded.policy.milter;
    SessionConfig {
        memory_budget: Some(budget.clone()),
        max_frame_size: m.max_frame_size.bytes() as usize,
        idle_timeout: m.idle_timeout.get(),
        progress_interval: m.progress_interval.get(),
        max_recipients: m.max_recipients,
        max_headers: m.max_headers,
        max_macro_bytes: usize::try_from(m.max_macro_bytes.bytes()).unwrap_or(usize::MAX),
        write_timeout: m.write_timeout.get(),
        ..SessionConfig::default()
    }
}

/// Runs one milter session to its end and keeps the connection counts right even
/// when the session panics (a bug): the panic is counted and logged, the
/// connection is closed with the session's task, and the daemon goes on.
async fn supervise<F>(id: u64, session: F)
where
    F: Future<Output = SessionStats> + Send + 'static,
{
    let m = metrics();
    m.connections.inc();
    m.connections_open.inc();
    match tokio::spawn(session).await {
        Ok(stats) if stats.is_protocol_error() => m.protocol_errors.inc(),
        Ok(_) => {}
        Err(e) if e.is_panic() => {
            m.session_panics.inc();
            let payload = e.into_panic();
            let what = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            tracing::error!(
                connection = id,
                "milter session panicked; its connection is closed: {}",
                what.escape_debug()
            );
        }
        Err(_) => {}
    }
    m.connections_open.dec();
}

/// Runs the daemon until SIGTERM or SIGINT. `on_thread_idle`, if given, runs on
/// a runtime thread that has run out of work: at most once a second per thread
/// while messages are in memory, and once more when none is left (the daemon
/// returns the allocator's cached memory there).
pub fn run(
    config_path: PathBuf,
    loaded: LoadedPolicy,
    on_thread_idle: Option<fn()>,
) -> anyhow::Result<()> {
    match raise_open_files_limit() {
        Ok((from, to)) if from < to => {
            tracing::info!("open files limit raised from {from} to {to} (the hard limit)");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
    let budget = MemoryBudget::new(loaded.policy.limits.max_buffered_bytes.bytes());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(hook) = on_thread_idle {
        let budget = budget.clone();
        builder.on_thread_park(move || {
            let daemon_idle = budget.used() == 0;
            if idle_hook_due(daemon_idle) {
                hook();
            }
        });
    }
    let runtime = builder
        .enable_all()
        .thread_name("congvu-milter")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config_path, loaded, budget))
}

/// Raises the soft limit of open files to the hard limit, whatever the supervisor
/// set: every Postfix session is a descriptor, and clamd connections come on
/// top, so systemd's default soft limit (1024) is too low for `[milter]
/// max_connections = 512` under load. Raising the soft limit up to the hard one
/// needs no privilege, so it cannot fail where a unit's `LimitNOFILE=` that asks
/// for more than the container's hard limit stops the service from starting.
/// Returns the soft limit before and after.
pub fn raise_open_files_limit() -> nix::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok((soft, hard))
}

/// Whether a thread about to park runs the idle hook: a second after it last
/// did, or as soon as no message is held (`daemon_idle`) if it has not run the
/// hook since the last message was let go.
fn idle_hook_due(daemon_idle: bool) -> bool {
    use std::cell::Cell;
    use std::time::{Duration, Instant};
    thread_local! {
        /// When the hook last ran here, and whether the daemon was idle then.
        static LAST: Cell<Option<(Instant, bool)>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    LAST.with(|last| {
        let due = match last.get() {
            None => true,
            Some((at, was_idle)) => {
                now.duration_since(at) >= Duration::from_secs(1) || (daemon_idle && !was_idle)
            }
        };
        if due {
            last.set(Some((now, daemon_idle)));
        } else if let Some((at, _)) = last.get().filter(|_| !daemon_idle) {
            last.set(Some((at, false)));
        }
        due
    })
}

async fn serve(
    config_path: PathBuf,
    loaded: LoadedPolicy,
    budget: Arc<MemoryBudget>,
) -> anyhow::Result<()> {
    // Before anything listens: a SIGHUP (`systemctl reload`) or SIGTERM that comes
    // as soon as the socket answers must find its handler, not the default action,
    // which ends the process.
    let mut hangup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let milter = loaded.policy.milter.clone();
    let mut listeners = Vec::new();
    for text in &milter.listen {
        let addr = ListenAddr::parse(text).map_err(anyhow::Error::msg)?;
        let listener = Listener::bind(&addr, &milter.socket_mode, milter.socket_group.as_deref())
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(listen = %addr, "listening");
        listeners.push(listener);
    }
    let metrics_listen = loaded.policy.metrics.listen.clone();
    let http_limits = http::HttpLimits::from_policy(&loaded.policy.metrics);
    metrics().set_policy(&loaded.hash);
    let state = DaemonState::new(config_path, loaded, budget);
    let filter = Arc::new(PolicyFilter::new(state.clone()));
    let permits = Arc::new(Semaphore::new(milter.max_connections));
    let shutdown = CancellationToken::new();
    let mut http = None;
    if !metrics_listen.is_empty() {
        let addr: std::net::SocketAddr = metrics_listen
            .parse()
            .with_context(|| format!("bad [metrics] listen {metrics_listen:?}"))?;
        let std_listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        drop(std_listener);
        let stop = shutdown.clone();
        let state = state.clone();
        http = Some(tokio::spawn(async move {
            let stopped = async move { stop.cancelled().await };
            if let Err(e) = http::serve_http(addr, state, http_limits, stopped).await {
                tracing::error!("metrics endpoint failed: {e}");
            }
        }));
    }
    let sessions = TaskTracker::new();
    let mut accept_tasks = JoinSet::new();
    for listener in listeners {
        let state = state.clone();
        let filter = filter.clone();
        let permits = permits.clone();
        let sessions = sessions.clone();
        let stop = shutdown.clone();
        accept_tasks.spawn(async move {
            loop {
                // A permit first: past max_connections, new peers wait in the backlog.
                let permit = tokio::select! {
                    _ = stop.cancelled() => break,
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                };
                let accepted = tokio::select! {
                    _ = stop.cancelled() => break,
                    a = listener.accept() => a,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let id = state.next_connection_id.fetch_add(1, Ordering::Relaxed);
                let config = session_config(&state.policy(), &state.budget);
                let filter = filter.clone();
                let stop = stop.clone();
                sessions.spawn(async move {
                    let _permit = permit;
                    supervise(id, run_session(stream, filter, config, id, peer, stop)).await;
                });
            }
        });
    }

    loop {
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the policy");
                state.reload();
            }
            _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); break; }
        }
    }
    shutdown.cancel();
    while accept_tasks.join_next().await.is_some() {}
    let grace = state.policy().policy.milter.shutdown_grace.get();
    sessions.close();
    let drained = tokio::time::timeout(grace, sessions.wait()).await;
    if drained.is_err() {
        tracing::warn!(
            "messages still in flight after the {}s grace period; Postfix will retry them",
            grace.as_secs()
        );
    }
    if let Some(http) = http {
        let _ = http.await;
    }
    if !state.audit.flush(Duration::from_secs(5)) {
        tracing::warn!("audit records still queued at exit were not written");
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_session_is_counted_and_its_connection_closed() {
        let m = metrics();
        let open = m.connections_open.get();
        let panics = m.session_panics.get();
        supervise(7, async { panic!("boom") }).await;
        assert_eq!(m.session_panics.get(), panics + 1);
        assert_eq!(m.connections_open.get(), open);
        supervise(8, async { SessionStats::default() }).await;
        assert_eq!(
            m.session_panics.get(),
            panics + 1,
            "a normal end is no panic"
        );
        assert_eq!(m.connections_open.get(), open);
    }

    #[test]
    fn the_idle_hook_runs_once_a_second_and_once_more_when_the_daemon_goes_idle() {
        std::thread::spawn(|| {
            assert!(idle_hook_due(false), "the first park runs it");
            assert!(!idle_hook_due(false), "not again within a second");
            assert!(idle_hook_due(true), "the daemon just went idle");
            assert!(!idle_hook_due(true), "still idle: done already");
            assert!(!idle_hook_due(false), "busy again, within the second");
            assert!(idle_hook_due(true), "idle again after work");
            std::thread::sleep(std::time::Duration::from_millis(1100));
            assert!(idle_hook_due(true), "a second later");
        })
        .join()
        .unwrap();
    }
}
