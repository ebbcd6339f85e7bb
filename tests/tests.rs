//! The integration tests as one binary, so the crate is linked once rather than
//! once per subject: a module per subject file beside this one (tests/NAME.rs),
//! and the helpers they share, declared here once (`crate::common`, the private
//! Postfix and clamd test bed; `crate::daemon_support`, the real daemon).
//!
//! One subject: `cargo test --test tests NAME::`. tests/inspect_memory.rs is a
//! binary of its own (Cargo.toml): it installs a counting global allocator.
//!
//! All subjects share one process and run two tests at a time (libtest's
//! default on two cores), each test on its own directories, ports and child
//! processes.

mod common;
mod daemon_support;

mod admin_path;
mod audit_log;
mod audit_report;
mod clamd_scan;
mod daemon;
mod e2e_audit_report;
mod e2e_classified;
mod e2e_forwarding;
mod e2e_metrics;
mod e2e_notices;
mod e2e_postfix;
mod e2e_progress;
mod e2e_quarantine;
mod e2e_rspamd;
mod forwarding_rule;
mod fuzz_regressions;
mod hostile_peers;
mod inspect_archives;
mod inspect_carriers;
mod inspect_classified;
mod inspect_documents;
mod inspect_messages;
mod inspect_ole;
mod inspect_sealed;
mod milter_session;
mod miltertest;
mod ops_kit;
mod testbed_milter_stub;
mod testbed_selftest;
