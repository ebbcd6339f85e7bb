//! The forwarding rule (Điều 4 khoản 4) against the fixtures in
//! `fixtures/forwarding`: every case of `cases.toml` with the default policy
//! (`scope = "all"`) and with `scope = "public"`, plus coverage checks (every
//! signal, both directions, every kind of mail that must pass).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use congvu_milter::message::{Connection, Message};
use congvu_milter::policy::{LoadedPolicy, Policy};
use congvu_milter::rules::forwarding::{self, Direction, signals::SIGNALS};
use congvu_milter::verdict::Action;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    what: String,
    file: String,
    sender: String,
    recipients: Vec<String>,
    client_addr: String,
    #[serde(default)]
    auth: String,
    daemon_name: String,
    expect_all: String,
    expect_public: String,
    #[serde(default)]
    signals: Vec<String>,
    direction: Option<String>,
    peer: Option<String>,
    public: Option<bool>,
    #[serde(default)]
    forwarding: toml::Table,
    #[serde(default)]
    must_pass: bool,
}

#[derive(Debug, Deserialize)]
struct Cases {
    case: Vec<Case>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/forwarding")
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(dir().join("cases.toml")).unwrap();
    toml::from_str::<Cases>(&text).unwrap().case
}

/// The message as the milter would hold it at end of message.
fn message(c: &Case) -> Message {
    let raw = std::fs::read(dir().join(&c.file)).unwrap_or_else(|e| panic!("{}: {e}", c.file));
    let mut msg = Message::from_eml(&raw);
    msg.envelope.sender = c.sender.clone();
    msg.envelope.recipients = c.recipients.clone();
    let mut conn = Connection {
        addr: c.client_addr.parse().ok(),
        hostname: format!("[{}]", c.client_addr),
        ..Default::default()
    };
    conn.macros.insert("{daemon_name}", &c.daemon_name);
    conn.macros.insert("{client_addr}", &c.client_addr);
    msg.connection = Arc::new(conn);
    if !c.auth.is_empty() {
        msg.macros.insert("{auth_authen}", &c.auth);
    }
    msg
}

fn policy(c: &Case, scope: &str) -> Policy {
    let mut text = format!("[forwarding]\nscope = \"{scope}\"\n");
    for (k, v) in &c.forwarding {
        text.push_str(&format!("{k} = {v}\n"));
    }
    let loaded = LoadedPolicy::from_text(&text, Path::new("policy.toml"))
        .unwrap_or_else(|e| panic!("{}: {e}", c.name));
    Arc::try_unwrap(loaded.policy).unwrap()
}

fn check(c: &Case, scope: &str, expected: &str) -> Result<(), String> {
    let msg = message(c);
    let policy = policy(c, scope);
    let violations = forwarding::evaluate(&msg, &policy);
    let finding = forwarding::detect(&msg, &policy);
    let ctx = format!("{} (scope {scope}): {}", c.name, c.what);
    match expected {
        "accept" => {
            if !violations.is_empty() {
                return Err(format!(
                    "{ctx}: expected accept, got {:?}",
                    violations[0].detail
                ));
            }
        }
        "reject" => {
            let [v] = violations.as_slice() else {
                return Err(format!("{ctx}: expected one violation, got {violations:?}"));
            };
            let f = finding.expect("detect agrees with evaluate");
            let signals: Vec<&str> = c.signals.iter().map(String::as_str).collect();
            if f.signals != signals {
                return Err(format!(
                    "{ctx}: signals {:?}, expected {signals:?}",
                    f.signals
                ));
            }
            let dir = c.direction.as_deref().unwrap();
            let want_dir = if dir == "outbound" {
                Direction::Outbound
            } else {
                Direction::Inbound
            };
            if f.direction != want_dir {
                return Err(format!(
                    "{ctx}: direction {:?}, expected {dir}",
                    f.direction
                ));
            }
            if Some(f.peer_domain.as_str()) != c.peer.as_deref() || Some(f.public) != c.public {
                return Err(format!(
                    "{ctx}: peer {} public {}, expected {:?} {:?}",
                    f.peer_domain, f.public, c.peer, c.public
                ));
            }
            assert_eq!(v.rule.name, "forwarding");
            assert_eq!(v.rule.article, "Điều 4 khoản 4");
            assert_eq!(v.var("signal"), Some(c.signals.join(",").as_str()));
            assert_eq!(v.var("direction"), Some(dir));
            let prep = if dir == "outbound" { "to" } else { "from" };
            let public = if f.public { " (public provider)" } else { "" };
            assert_eq!(
                v.detail,
                format!(
                    "{dir} {prep} {}{public}: signals {}",
                    f.peer_domain,
                    c.signals.join(", ")
                )
            );
            let judged = policy.judge(v, &msg).expect("rule is on by default");
            assert_eq!(judged.action, Action::Reject);
            let reply = judged.reply.unwrap().render();
            assert!(reply.starts_with("550 5.7.1 "), "{ctx}: {reply}");
            assert!(reply.contains("Dieu 4 khoan 4"), "{ctx}: {reply}");
        }
        other => return Err(format!("{ctx}: unknown expectation {other:?}")),
    }
    Ok(())
}

#[test]
fn every_case_with_scope_all() {
    let failures: Vec<String> = cases()
        .iter()
        .filter_map(|c| check(c, "all", &c.expect_all).err())
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_case_with_scope_public() {
    let failures: Vec<String> = cases()
        .iter()
        .filter_map(|c| check(c, "public", &c.expect_public).err())
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_signal_fires_in_some_fixture() {
    let cases = cases();
    let fired: BTreeSet<&str> = cases
        .iter()
        .flat_map(|c| c.signals.iter().map(String::as_str))
        .collect();
    let missing: Vec<&str> = SIGNALS
        .iter()
        .map(|s| s.name)
        .filter(|n| !fired.contains(n))
        .collect();
    assert!(missing.is_empty(), "signals without a fixture: {missing:?}");
    // Each signal fires in every direction it is defined for.
    for s in SIGNALS {
        for (dir, applies) in [("outbound", s.outbound), ("inbound", s.inbound)] {
            if applies {
                assert!(
                    cases.iter().any(|c| c.direction.as_deref() == Some(dir)
                        && c.signals.iter().any(|n| n == s.name)),
                    "{} has no {dir} fixture",
                    s.name
                );
            }
        }
    }
    for dir in ["outbound", "inbound"] {
        let n = cases
            .iter()
            .filter(|c| c.direction.as_deref() == Some(dir))
            .count();
        assert!(n >= 5, "only {n} {dir} rejections");
    }
}

#[test]
fn every_must_pass_kind_has_a_fixture() {
    let cases = cases();
    let passing: Vec<&Case> = cases
        .iter()
        .filter(|c| c.must_pass && c.expect_all == "accept" && c.expect_public == "accept")
        .collect();
    for kind in [
        "mailing-list-out",
        "mailing-list-in",
        "zimbra-vacation-out",
        "exchange-oof-in",
        "exchange-oof-bare-in",
        "dsn-bounce-out",
        "dsn-bounce-in",
        "manual-fwd-thunderbird-out",
        "manual-tr-outlook-out",
        "manual-chuyen-tiep-zimbra-out",
        "manual-redirect-resent-out",
        "ordinary-out",
        "ordinary-in",
        "gov-forward-in",
        "gov-sieve-redirect-out",
    ] {
        assert!(
            passing.iter().any(|c| c.name == kind),
            "no passing fixture {kind}"
        );
    }
}

#[test]
fn every_fixture_file_belongs_to_a_case() {
    let cases = cases();
    let used: BTreeSet<&str> = cases.iter().map(|c| c.file.as_str()).collect();
    for entry in std::fs::read_dir(dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".eml") {
            assert!(used.contains(name.as_str()), "{name} is in no case");
        }
    }
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "case names are unique");
}
