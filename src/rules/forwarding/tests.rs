//! Unit tests of the policy side: providers, scope, CIDR, approved pairs,
//! disabled signals, the providers file, validation. The message cases live in
//! `tests/forwarding_rule.rs` with the fixtures.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::message::{Connection, Envelope};
use crate::policy::LoadedPolicy;
use crate::policy::load::Severity;

fn msg(sender: &str, rcpts: &[&str], headers: &[(&str, &str)]) -> Message {
    let mut m = Message {
        envelope: Envelope {
            sender: sender.into(),
            recipients: rcpts.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
        connection: Arc::new(Connection {
            addr: Some("203.0.113.9".parse().unwrap()),
            ..Default::default()
        }),
        ..Default::default()
    };
    for (n, v) in headers {
        m.push_header(n, v);
    }
    m.end_headers();
    m
}

fn from_client(mut m: Message, ip: &str, daemon: Option<&str>) -> Message {
    let mut c = Connection {
        addr: Some(ip.parse::<IpAddr>().unwrap()),
        ..Default::default()
    };
    if let Some(d) = daemon {
        c.macros.insert("{daemon_name}", d);
    }
    m.connection = Arc::new(c);
    m
}

fn load(text: &str) -> Policy {
    let p = LoadedPolicy::from_text(text, Path::new("test.toml")).unwrap();
    Arc::try_unwrap(p.policy).unwrap()
}

fn problems(text: &str) -> Vec<(String, String)> {
    match LoadedPolicy::from_text(text, Path::new("test.toml")) {
        Ok(p) => p
            .warnings
            .iter()
            .map(|w| (w.problem.key.clone(), w.problem.message.clone()))
            .collect(),
        Err(crate::policy::ConfigError::Invalid { problems }) => problems
            .iter()
            .map(|w| (w.problem.key.clone(), w.problem.message.clone()))
            .collect(),
        Err(e) => panic!("{e}"),
    }
}

/// A Postfix .forward copy re-sent through the outbound instance on loopback:
/// envelope sender kept, `Delivered-To:` of the local mailbox.
fn dot_forward(rcpt: &str) -> Message {
    let m = msg(
        "partner@example.com",
        &[rcpt],
        &[
            ("Delivered-To", "ngocnt_stttt@bacgiang.gov.vn"),
            ("From", "Đối tác <partner@example.com>"),
            ("To", "ngocnt_stttt@bacgiang.gov.vn"),
            ("Subject", "Hồ sơ"),
        ],
    );
    from_client(m, "127.0.0.1", None)
}

const DOT_FORWARD_SIGNALS: &str = "foreign_sender_internal_client, delivered_to_local";

#[test]
fn default_policy_loads_with_the_curated_list() {
    let p = load("");
    assert!(p.forwarding.enabled);
    assert_eq!(p.forwarding.scope, Scope::All);
    assert!(p.forwarding.public_providers.iter().any(|d| d == "yahoo.*"));
    assert!(p.forwarding.is_public(&p, "mail.yahoo.com.vn"));
    assert!(p.forwarding.is_public(&p, "gmail.com"));
    assert!(!p.forwarding.is_public(&p, "example.com"));
}

#[test]
fn local_and_state_domains_are_never_public() {
    let p =
        load("[forwarding]\npublic_providers = [\"gov.*\", \"bacgiang.gov.vn\", \"gmail.com\"]\n");
    assert!(!p.forwarding.is_public(&p, "bacgiang.gov.vn"));
    assert!(!p.forwarding.is_public(&p, "hanoi.gov.vn"));
    assert!(!p.forwarding.in_scope(&p, "hanoi.gov.vn"));
    assert!(p.forwarding.is_public(&p, "gmail.com"));
}

#[test]
fn scope_all_covers_every_other_domain_scope_public_only_providers() {
    let all = load("");
    assert!(all.forwarding.in_scope(&all, "example.com"));
    assert!(all.forwarding.in_scope(&all, "gmail.com"));
    let public = load("[forwarding]\nscope = \"public\"\n");
    assert!(!public.forwarding.in_scope(&public, "example.com"));
    assert!(public.forwarding.in_scope(&public, "gmail.com"));

    let m = dot_forward("partner@example.com");
    let f = detect(&m, &all).unwrap();
    assert_eq!(f.peer_domain, "example.com");
    assert!(!f.public);
    assert_eq!(
        f.detail(),
        format!("outbound to example.com: signals {DOT_FORWARD_SIGNALS}")
    );
    assert!(detect(&m, &public).is_none());
}

#[test]
fn violation_names_rule_article_direction_and_signals() {
    let p = load("");
    let v = evaluate(&dot_forward("ngoc.nt@gmail.com"), &p);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].rule.name, "forwarding");
    assert_eq!(v[0].rule.article, "Điều 4 khoản 4");
    assert_eq!(
        v[0].detail,
        format!("outbound to gmail.com (public provider): signals {DOT_FORWARD_SIGNALS}")
    );
    assert_eq!(
        v[0].var("signal"),
        Some("foreign_sender_internal_client,delivered_to_local")
    );
    assert_eq!(v[0].var("direction"), Some("outbound"));
    let m = dot_forward("ngoc.nt@gmail.com");
    let finding = p.judge(&v[0], &m).unwrap();
    let reply = finding.reply.unwrap().render();
    assert!(reply.starts_with("550 5.7.1 "), "{reply}");
    assert!(reply.contains("Dieu 4 khoan 4"), "{reply}");
}

#[test]
fn disabled_rule_or_signal_finds_nothing() {
    let m = dot_forward("ngoc.nt@gmail.com");
    let off = load("[forwarding]\nenabled = false\n");
    assert!(evaluate(&m, &off).is_empty());
    let one = load("[forwarding]\ndisabled_signals = [\"delivered_to_local\"]\n");
    assert_eq!(
        detect(&m, &one).unwrap().signals,
        vec!["foreign_sender_internal_client"]
    );
    let both = load(
        "[forwarding]\ndisabled_signals = [\"delivered_to_local\", \"foreign_sender_internal_client\"]\n",
    );
    assert!(evaluate(&m, &both).is_empty());
}

#[test]
fn approved_pairs_by_address() {
    let p = load(
        "[forwarding]\napproved_pairs = [{ from = \"ngocnt_stttt@bacgiang.gov.vn\", to = \"ngoc.nt@gmail.com\" }]\n",
    );
    assert!(detect(&dot_forward("ngoc.nt@gmail.com"), &p).is_none());
    assert!(detect(&dot_forward("someone.else@gmail.com"), &p).is_some());
    // Every out-of-scope recipient must be approved.
    let mut both = dot_forward("ngoc.nt@gmail.com");
    both.envelope.recipients.push("x@yahoo.com".into());
    assert!(detect(&both, &p).is_some());
    // Inbound: the Gmail mailbox that forwards, to the local recipient.
    let inbound = msg(
        "ngoc.nt+caf_=ngocnt_stttt=bacgiang.gov.vn@gmail.com",
        &["ngocnt_stttt@bacgiang.gov.vn"],
        &[("From", "a@example.com")],
    );
    assert!(detect(&inbound, &load("")).is_some());
    let back = load(
        "[forwarding]\napproved_pairs = [{ from = \"ngoc.nt@gmail.com\", to = \"ngocnt_stttt@bacgiang.gov.vn\" }]\n",
    );
    assert!(detect(&inbound, &back).is_none());
}

#[test]
fn internal_client_by_network_or_daemon_name() {
    let p = load(
        "[forwarding]\ninternal_networks = [\"10.10.0.0/16\", \"::1\"]\ninternal_daemon_names = [\"postfix-out/smtpd\"]\n",
    );
    let relayed = || {
        msg(
            "partner@example.com",
            &["ngoc.nt@gmail.com"],
            &[("From", "partner@example.com"), ("Subject", "x")],
        )
    };
    let inside = from_client(relayed(), "10.10.3.4", None);
    assert!(p.forwarding.is_internal_client(&inside));
    assert_eq!(
        detect(&inside, &p).unwrap().signals,
        vec!["foreign_sender_internal_client"]
    );
    let by_name = from_client(relayed(), "192.0.2.1", Some("postfix-out/smtpd"));
    assert!(p.forwarding.is_internal_client(&by_name));
    let outside = from_client(relayed(), "192.0.2.1", Some("smtpd"));
    assert!(!p.forwarding.is_internal_client(&outside));
    assert!(detect(&outside, &p).is_none());
    // The client_addr macro serves when the connection has no address.
    let mut m = relayed();
    let mut c = Connection::default();
    c.macros.insert("{client_addr}", "10.10.9.9");
    m.connection = Arc::new(c);
    assert!(p.forwarding.is_internal_client(&m));
}

#[test]
fn providers_file_is_read_relative_to_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lists")).unwrap();
    std::fs::write(
        dir.path().join("lists/providers.txt"),
        "# ISP mail\nvnn.vn\nfpt.*   # all FPT domains\n",
    )
    .unwrap();
    let policy_path = dir.path().join("policy.toml");
    let text = "[forwarding]\nscope = \"public\"\nproviders_file = \"lists/providers.txt\"\n";
    std::fs::write(&policy_path, text).unwrap();
    let loaded = LoadedPolicy::load(&policy_path).unwrap();
    let p = &loaded.policy;
    assert_eq!(p.forwarding.extra_providers().len(), 2);
    assert!(p.forwarding.is_public(p, "hcm.vnn.vn"));
    assert!(p.forwarding.is_public(p, "fpt.com.vn"));
    assert!(p.forwarding.is_public(p, "gmail.com"), "defaults stay");

    // A reload sees the new contents.
    std::fs::write(dir.path().join("lists/providers.txt"), "viettel.vn\n").unwrap();
    let again = LoadedPolicy::load(&policy_path).unwrap();
    assert!(!again.policy.forwarding.is_public(&again.policy, "vnn.vn"));
    assert!(
        again
            .policy
            .forwarding
            .is_public(&again.policy, "viettel.vn")
    );
}

#[test]
fn missing_or_bad_providers_file_is_an_error_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(
        &policy_path,
        "[forwarding]\nproviders_file = \"nope.txt\"\n",
    )
    .unwrap();
    let err = LoadedPolicy::load(&policy_path).unwrap_err().to_string();
    assert!(err.contains("forwarding.providers_file"), "{err}");
    assert!(err.contains("nope.txt"), "{err}");
    assert!(err.contains("policy.toml:2:"), "line of the key: {err}");

    std::fs::write(dir.path().join("bad.txt"), "gmail.com\nbad entry\n").unwrap();
    std::fs::write(&policy_path, "[forwarding]\nproviders_file = \"bad.txt\"\n").unwrap();
    let err = LoadedPolicy::load(&policy_path).unwrap_err().to_string();
    assert!(err.contains("bad.txt:2:"), "{err}");
}

#[test]
fn validate_reports_bad_values_by_key() {
    let found = problems(
        "[forwarding]\ninternal_networks = [\"10.0.0.0/33\", \"127.0.0.0/8\"]\ndisabled_signals = [\"gmail_caf\"]\npublic_providers = [\"yah*o.com\"]\napproved_pairs = [{ from = \"\", to = \"x@gmail.com\" }]\ninternal_daemon_names = [\"\"]\n",
    );
    let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    for k in [
        "forwarding.internal_networks",
        "forwarding.disabled_signals",
        "forwarding.public_providers",
        "forwarding.approved_pairs",
        "forwarding.internal_daemon_names",
    ] {
        assert!(keys.contains(&k), "{k} missing from {found:#?}");
    }
    let unknown = found
        .iter()
        .find(|(k, _)| k == "forwarding.disabled_signals")
        .unwrap();
    assert!(
        unknown.1.contains("gmail_caf_sender"),
        "lists the known names"
    );
}

#[test]
fn unknown_keys_and_bad_scope_are_refused() {
    let found = problems("[forwarding]\nscope = \"gmail\"\n");
    assert_eq!(found[0].0, "forwarding.scope");
    let found = problems("[forwarding]\nforward_check = true\n");
    assert!(found[0].0.starts_with("forwarding"), "{found:?}");
    let found = problems(
        "[forwarding]\napproved_pairs = [{ from = \"a@b.vn\", to = \"c@d.com\", note = 1 }]\n",
    );
    assert!(!found.is_empty());
}

#[test]
fn state_domain_in_provider_list_is_a_warning() {
    let p = LoadedPolicy::from_text(
        "[forwarding]\npublic_providers = [\"gmail.com\", \"hanoi.gov.vn\"]\n",
        Path::new("test.toml"),
    )
    .unwrap();
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(p.warnings[0].problem.severity, Severity::Warning);
    assert_eq!(p.warnings[0].problem.key, "forwarding.public_providers");
}

#[test]
fn weak_signal_alone_does_not_count() {
    let p = load("");
    let weak = msg(
        "boss@contoso.com",
        &["ngocnt_stttt@bacgiang.gov.vn"],
        &[
            ("X-MS-Exchange-Inbox-Rules-Loop", "boss@contoso.com"),
            ("From", "boss@contoso.com"),
            ("Subject", "Họp"),
        ],
    );
    assert!(detect(&weak, &p).is_none());
    let two = msg(
        "bounces+SRS=k2Rt4=J7@contoso.com",
        &["ngocnt_stttt@bacgiang.gov.vn"],
        &[
            ("X-MS-Exchange-Inbox-Rules-Loop", "boss@contoso.com"),
            ("From", "boss@contoso.com"),
        ],
    );
    let f = detect(&two, &p).unwrap();
    assert_eq!(
        f.signals,
        vec!["ms_srs_bounces", "exchange_inbox_rules_loop"]
    );
    assert_eq!(f.direction, Direction::Inbound);
}

#[test]
fn every_signal_has_a_check_that_can_fire() {
    // Table sanity: names used in the docs and fixtures resolve.
    for name in [
        "gmail_caf_sender",
        "x_forwarded_to",
        "x_forwarded_for",
        "exchange_forwarding_loop",
        "exchange_inbox_rules_loop",
        "exchange_rules_agent",
        "srs_sender",
        "ms_srs_sender",
        "ms_srs_bounces",
        "delivered_to_local",
        "x_original_to_local",
        "delivered_to_foreign",
        "sieve_redirect",
        "zimbra_forwarded",
        "auto_submitted_forwarded",
        "foreign_sender_internal_client",
        "local_sender_foreign_from",
        "yandex_forward",
        "mailru_forward",
        "yahoo_forward",
        "gmail_forwarding_confirmation",
    ] {
        assert!(signals::signal(name).is_some(), "{name}");
    }
    assert_eq!(SIGNALS.len(), 21);
    assert_eq!(
        signals::signal("exchange_inbox_rules_loop")
            .unwrap()
            .strength,
        Strength::Weak
    );
    assert_eq!(
        signals::signal("ms_srs_bounces").unwrap().strength,
        Strength::Weak
    );
}

#[test]
fn rule_switched_off_in_rules_section_detects_nothing() {
    let p = load("[rules.forwarding]\nenabled = false\n");
    assert!(detect(&dot_forward("ngoc.nt@gmail.com"), &p).is_none());
}

#[test]
fn approved_pair_without_a_local_side_is_a_warning() {
    let found = problems(
        "[forwarding]\napproved_pairs = [{ from = \"a@gmail.com\", to = \"b@yahoo.com\" }]\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "forwarding.approved_pairs");
}

#[test]
fn auto_submitted_keyword_ignores_comments_and_parameters() {
    use signals::auto_submitted_keyword;
    assert_eq!(
        auto_submitted_keyword("auto-replied (zimbra; vacation)"),
        "auto-replied"
    );
    assert_eq!(
        auto_submitted_keyword("Auto-Generated; owner-email=\"x@y\""),
        "auto-generated"
    );
    assert_eq!(auto_submitted_keyword(" auto-forwarded"), "auto-forwarded");
}

#[test]
fn inbound_approval_is_by_forwarding_mailbox_not_author() {
    let inbound = msg(
        "ngoc.nt+caf_=ngocnt_stttt=bacgiang.gov.vn@gmail.com",
        &["ngocnt_stttt@bacgiang.gov.vn"],
        &[("From", "partner@example.com")],
    );
    let by_author = load(
        "[forwarding]\napproved_pairs = [{ from = \"partner@example.com\", to = \"ngocnt_stttt@bacgiang.gov.vn\" }]\n",
    );
    assert!(detect(&inbound, &by_author).is_some());
}
