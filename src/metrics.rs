//! Prometheus metrics: the process's registry, which the rest of the daemon
//! reports to. A leaf: it imports nothing of the crate; the HTTP endpoint that
//! serves it lives with the server (src/server/http.rs).
//!
//! Every metric is named `congvu_milter_*` and follows Prometheus conventions
//! (`_total` counters, base units `_seconds` and `_bytes`). Labels take only
//! bounded values — actions, rule names, articles, file types, signal names,
//! configured clamd endpoints — never addresses or file names, so the series count
//! stays fixed however much mail flows. The reports the province asks for
//! (Điều 16 khoản 6, Điều 18 khoản 9) are queries over these counters.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All metrics of the process.
pub struct Metrics {
    registry: Registry,
    /// Messages by final action (`accept`, `reject`, `tempfail`, ...).
    pub messages: IntCounterVec,
    /// Rule verdicts by rule, article of the regulation and action taken.
    pub verdicts: IntCounterVec,
    /// Attachments and archive entries by detected type.
    pub attachments: IntCounterVec,
    /// Entries looked at inside archives.
    pub archive_entries: IntCounter,
    /// Encrypted archives found, by format.
    pub encrypted_archives: IntCounterVec,
    /// Forwarding verdicts by direction and signal.
    pub forwarding_blocks: IntCounterVec,
    /// Signed messages (S/MIME, OpenPGP): Điều 4 khoản 8 adoption.
    pub signed_messages: IntCounterVec,
    /// Digitally signed documents (PDF, OOXML, ODF) among the files: Điều 4
    /// khoản 8 adoption.
    pub signed_documents: IntCounterVec,
    /// clamd scans by endpoint and result (`clean`, `infected`, `error`, `timeout`).
    pub clamd_scans: IntCounterVec,
    pub clamd_errors: IntCounterVec,
    pub clamd_timeouts: IntCounterVec,
    pub clamd_scan_seconds: HistogramVec,
    /// 1 while an endpoint answers PING, 0 while it is out of service.
    pub clamd_endpoint_up: IntGaugeVec,
    /// Time from end of message to verdict.
    pub decision_seconds: Histogram,
    /// Raw message sizes.
    pub message_size_bytes: Histogram,
    pub connections_open: IntGauge,
    pub connections: IntCounter,
    pub protocol_errors: IntCounter,
    /// Milter sessions that ended in a panic (a bug): counted, logged, connection closed.
    pub session_panics: IntCounter,
    /// Message bytes held in memory by all sessions now.
    pub buffered_bytes: IntGauge,
    /// Heap bytes in use (set at each scrape; 0 in a process that does not count).
    pub heap_bytes: IntGauge,
    /// Messages deferred because the memory budget was full.
    pub budget_deferrals: IntCounter,
    /// Notices to officials by result (`sent`, `failed`, `dropped`,
    /// `rate_limited`, `no_mailbox`).
    pub notices: IntCounterVec,
    /// Documents whose text could not be read for classification stamps.
    pub documents_unreadable: IntCounter,
    /// Policy reloads by result (`success`, `failure`).
    pub policy_reloads: IntCounterVec,
    /// Audit records dropped because the writer was too far behind.
    pub audit_records_dropped: IntCounter,
    /// Audit records that could not be written (the file could not be opened or
    /// written).
    pub audit_write_errors: IntCounter,
    /// 1, labelled with the loaded policy's hash.
    pub policy_info: IntGaugeVec,
    /// 1, labelled with the version.
    pub build_info: IntGaugeVec,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    // The names and labels below are constants: registering them cannot fail, so
    // the `expect`s in the helpers above can only fire on a programming error.
    fn new() -> Metrics {
        let r = Registry::new();
        let latency = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0, 120.0, 300.0,
        ];
        let clamd_hist = HistogramVec::new(
            HistogramOpts::new(
                "congvu_milter_clamd_scan_duration_seconds",
                "Time clamd took to answer one scan, by endpoint.",
            )
            .buckets(latency.clone()),
            &["endpoint"],
        )
        .expect("valid metric");
        r.register(Box::new(clamd_hist.clone()))
            .expect("unique metric");
        let m = Metrics {
            messages: counter_vec(
                &r,
                "congvu_milter_messages_total",
                "Messages by final action.",
                &["action"],
            ),
            verdicts: counter_vec(
                &r,
                "congvu_milter_verdicts_total",
                "Rule verdicts by rule, article of the regulation and action.",
                &["rule", "article", "action"],
            ),
            attachments: counter_vec(
                &r,
                "congvu_milter_attachments_total",
                "Attachments and archive entries by detected type.",
                &["type"],
            ),
            archive_entries: counter(
                &r,
                "congvu_milter_archive_entries_inspected_total",
                "Entries inspected inside archives.",
            ),
            encrypted_archives: counter_vec(
                &r,
                "congvu_milter_encrypted_archives_total",
                "Password-protected archives found, by format.",
                &["format"],
            ),
            forwarding_blocks: counter_vec(
                &r,
                "congvu_milter_forwarding_blocks_total",
                "Automatic-forwarding verdicts by direction and signal.",
                &["direction", "signal", "public_provider"],
            ),
            signed_messages: counter_vec(
                &r,
                "congvu_milter_signed_messages_total",
                "Digitally signed messages by kind (smime, openpgp).",
                &["kind"],
            ),
            signed_documents: counter_vec(
                &r,
                "congvu_milter_signed_documents_total",
                "Digitally signed documents among the files, by format (pdf, ooxml, odf).",
                &["format"],
            ),
            clamd_scans: counter_vec(
                &r,
                "congvu_milter_clamd_scans_total",
                "clamd scans by endpoint and result.",
                &["endpoint", "result"],
            ),
            clamd_errors: counter_vec(
                &r,
                "congvu_milter_clamd_errors_total",
                "clamd connection or protocol errors by endpoint.",
                &["endpoint"],
            ),
            clamd_timeouts: counter_vec(
                &r,
                "congvu_milter_clamd_timeouts_total",
                "clamd scans that timed out, by endpoint.",
                &["endpoint"],
            ),
            clamd_scan_seconds: clamd_hist,
            clamd_endpoint_up: gauge_vec(
                &r,
                "congvu_milter_clamd_endpoint_up",
                "1 while a clamd endpoint is in service, 0 while it is not.",
                &["endpoint"],
            ),
            decision_seconds: histogram(
                &r,
                "congvu_milter_decision_duration_seconds",
                "Time from end of message to verdict.",
                latency,
            ),
            message_size_bytes: histogram(
                &r,
                "congvu_milter_message_size_bytes",
                "Raw size of judged messages.",
                prometheus::exponential_buckets(1024.0, 4.0, 10).unwrap_or_default(),
            ),
            connections_open: gauge(
                &r,
                "congvu_milter_connections_open",
                "Milter connections open now.",
            ),
            connections: counter(
                &r,
                "congvu_milter_connections_total",
                "Milter connections accepted.",
            ),
            protocol_errors: counter(
                &r,
                "congvu_milter_protocol_errors_total",
                "Milter connections closed for a protocol error.",
            ),
            session_panics: counter(
                &r,
                "congvu_milter_session_panics_total",
                "Milter sessions that ended in a panic; the connection was closed and the daemon went on.",
            ),
            buffered_bytes: gauge(
                &r,
                "congvu_milter_buffered_bytes",
                "Message bytes held in memory by all sessions.",
            ),
            heap_bytes: gauge(
                &r,
                "congvu_milter_heap_bytes",
                "Heap bytes in use, counted at the allocator (RSS minus this is memory the allocator keeps for reuse).",
            ),
            budget_deferrals: counter(
                &r,
                "congvu_milter_memory_budget_deferrals_total",
                "Messages deferred because the buffered-bytes budget was full.",
            ),
            notices: counter_vec(
                &r,
                "congvu_milter_notices_total",
                "Notices to the officials concerned by a quarantine or a refused forward, by result.",
                &["result"],
            ),
            audit_records_dropped: counter(
                &r,
                "congvu_milter_audit_records_dropped_total",
                "Audit records dropped because the writer was too far behind (a stalled disk).",
            ),
            audit_write_errors: counter(
                &r,
                "congvu_milter_audit_write_errors_total",
                "Audit records that could not be written to [audit] file.",
            ),
            documents_unreadable: counter(
                &r,
                "congvu_milter_documents_unreadable_total",
                "Documents whose text could not be read for classification stamps (Điều 15 khoản 2): scans, encrypted and legacy binary Office files; not refused for it.",
            ),
            policy_reloads: counter_vec(
                &r,
                "congvu_milter_policy_reloads_total",
                "Policy reloads by result.",
                &["result"],
            ),
            policy_info: gauge_vec(
                &r,
                "congvu_milter_policy_info",
                "The loaded policy: 1, labelled with the SHA-256 of the file (16 hex digits).",
                &["sha256"],
            ),
            build_info: gauge_vec(
                &r,
                "congvu_milter_build_info",
                "Build information: 1, labelled with the version.",
                &["version"],
            ),
            registry: r,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for action in ["accept", "reject", "tempfail", "discard", "quarantine"] {
            m.messages.with_label_values(&[action]);
        }
        for result in ["success", "failure"] {
            m.policy_reloads.with_label_values(&[result]);
        }
        for result in ["sent", "failed", "dropped", "rate_limited", "no_mailbox"] {
            m.notices.with_label_values(&[result]);
        }
        m
    }

    /// Marks which policy is loaded (the old hash's series is removed).
    pub fn set_policy(&self, hash: &str) {
        self.policy_info.reset();
        self.policy_info
            .with_label_values(&[hash.get(..16).unwrap_or(hash)])
            .set(1);
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_text_format_with_prefix() {
        let m = metrics();
        m.messages.with_label_values(&["reject"]).inc();
        m.set_policy("0123456789abcdef0123");
        let text = m.render();
        assert!(text.contains("congvu_milter_messages_total{action=\"reject\"}"));
        assert!(text.contains("congvu_milter_policy_info{sha256=\"0123456789abcdef\"} 1"));
        assert!(text.contains("congvu_milter_build_info{version="));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("congvu_milter_"), "{line}");
        }
    }
}
