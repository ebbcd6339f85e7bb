//! The operations kit in `contrib/` and the Debian package, checked with the tools
//! that consume them: promtool (alert rules, their unit tests, the scrape config,
//! the dashboard's PromQL), the real daemon's `/metrics` (every metric the dashboard
//! and the alerts name must exist), postconf (the Postfix snippets), systemd-analyze
//! (the unit), and dpkg (the package installs, its policy checks clean, it purges).
//!
//! These tests need, on the CI machine (Debian 12, root): `prometheus` (promtool),
//! `postfix` (postconf, postmulti, group `postfix`), `systemd` (systemd-analyze),
//! `adduser`, `init-system-helpers`, and cargo-deb (installed by
//! `contrib/debian/build-deb.sh` when missing). A missing tool fails the test with a
//! message saying what to install; nothing is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::daemon_support::{self, Daemon};
use congvu_milter::message::Envelope;
use congvu_milter::milter::client::{Offer, StageMacros};

// ---------------------------------------------------------------------------
// helpers

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn contrib(rel: &str) -> PathBuf {
    root().join("contrib").join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs a tool; a tool that is not installed fails the test, naming the package.
fn run(cmd: &mut Command, package: &str) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{program}` is not installed: install the Debian package `{package}` \
             (apt-get install -y {package}); this test does not skip"
        ),
        Err(e) => panic!("cannot run {program}: {e}"),
    }
}

fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn promtool(args: &[&str], dir: &Path) -> Output {
    run(
        Command::new("promtool").args(args).current_dir(dir),
        "prometheus",
    )
}

/// "25 MiB", "15 MB", "1048576" -> bytes (the policy's size notation).
fn parse_size(s: &str) -> u64 {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| (s[..i].trim(), s[i..].trim()))
        .unwrap_or((s, ""));
    let n: f64 = num.parse().unwrap_or_else(|_| panic!("size {s:?}"));
    let mult = match unit {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => panic!("unknown size unit {other:?} in {s:?}"),
    };
    (n * mult) as u64
}

/// "30s", "5m", "250ms", "45" -> seconds.
fn parse_secs(s: &str) -> f64 {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("min") {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    num.trim()
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("duration {s:?}"))
        * mult
}

/// The shipped policy, as TOML.
fn shipped_policy() -> toml::Table {
    read(&root().join("config/congvu-milter.toml"))
        .parse()
        .expect("config/congvu-milter.toml is TOML")
}

fn policy_str(p: &toml::Table, section: &str, key: &str) -> String {
    p.get(section)
        .and_then(|s| s.get(key))
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("[{section}] {key} missing from the shipped policy"))
        .to_owned()
}

// ---------------------------------------------------------------------------
// metric names and labels

/// One metric the daemon declares in src/metrics.rs.
#[derive(Debug, Clone)]
struct Declared {
    kind: &'static str,
    labels: Vec<String>,
}

/// The metrics declared in src/metrics.rs: name -> type and label names, read from
/// the registration calls (`counter_vec(&r, "name", "help", &["l1", ...])`,
/// `HistogramOpts::new("name", ...)` ... `&["endpoint"]`).
fn declared_metrics() -> BTreeMap<String, Declared> {
    let full = read(&root().join("src/metrics.rs"));
    let src = full.split("#[cfg(test)]").next().unwrap_or(&full);
    let mut out = BTreeMap::new();
    let ctors: [(&str, &'static str); 6] = [
        ("counter_vec(", "counter"),
        ("counter(", "counter"),
        ("gauge_vec(", "gauge"),
        ("gauge(", "gauge"),
        ("histogram(", "histogram"),
        ("HistogramOpts::new(", "histogram"),
    ];
    let mut pos = 0;
    while let Some(i) = src[pos..].find("\"congvu_milter_") {
        let start = pos + i + 1;
        let end = start
            + src[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .expect("end of the literal");
        let name = src[start..end].to_owned();
        pos = end + 1;
        if !src[end..].starts_with('"') || name.ends_with('_') {
            continue; // not a whole metric name
        }
        // The constructor is the nearest one before the literal.
        let before = &src[..start];
        let kind = ctors
            .iter()
            .filter_map(|(c, k)| before.rfind(c).map(|at| (at, *k)))
            .max_by_key(|(at, _)| *at)
            .map(|(_, k)| k)
            .unwrap_or_else(|| panic!("no constructor before {name}"));
        // Labels: the `&[...]` after the literal, if it comes before the next metric.
        let rest = &src[pos..];
        let next_metric = rest.find("\"congvu_milter_").unwrap_or(rest.len());
        let next_call = rest.find("),\n").unwrap_or(rest.len());
        let labels = match rest.find("&[") {
            Some(l) if l < next_metric && (l < next_call || kind == "histogram") => {
                let close = rest[l..].find(']').expect("closing bracket") + l;
                rest[l + 2..close]
                    .split(',')
                    .map(|s| s.trim().trim_matches('"').to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            }
            _ => Vec::new(),
        };
        out.insert(name, Declared { kind, labels });
    }
    out
}

/// `# TYPE name kind` lines of a /metrics body.
fn exported_metrics(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.to_owned()))
        })
        .collect()
}

/// Every `congvu_milter_*` identifier in `text`.
fn referenced_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("congvu_milter_") {
        let tail = &rest[i..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..len].to_owned());
        rest = &tail[len..];
    }
    out
}

/// `name{a="x", b=~"y"}` selectors in `text`: (name, label names used).
fn selectors(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("congvu_milter_") {
        let tail = &rest[i..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..len].to_owned();
        let after = &tail[len..];
        if let Some(inner) = after.strip_prefix('{') {
            let close = inner.find('}').expect("closing brace of a selector");
            let labels = split_matchers(&inner[..close])
                .into_iter()
                .filter_map(|m| {
                    let n = m
                        .split(['=', '!'])
                        .next()
                        .map(|s| s.trim().to_owned())
                        .unwrap_or_default();
                    (!n.is_empty()).then_some(n)
                })
                .collect();
            out.push((name, labels));
        } else {
            out.push((name, Vec::new()));
        }
        rest = after;
    }
    out
}

/// Splits `a="x,y", b=~"z"` at the commas outside quotes.
fn split_matchers(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Label names in `by (...)` / `without (...)` clauses.
fn grouping_labels(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for kw in ["by (", "by(", "without (", "without("] {
        let mut rest = expr;
        while let Some(i) = rest.find(kw) {
            let inner = &rest[i + kw.len()..];
            let close = inner.find(')').expect("closing paren of by()");
            for l in inner[..close].split(',') {
                let l = l.trim();
                if !l.is_empty() {
                    out.insert(l.to_owned());
                }
            }
            rest = &inner[close..];
        }
    }
    out
}

/// Labels Prometheus attaches to every scraped series (and the histogram's `le`).
const TARGET_LABELS: [&str; 4] = ["instance", "job", "role", "le"];

// ---------------------------------------------------------------------------
// the dashboard

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(&contrib("grafana/congvu-milter.json")))
        .expect("the dashboard is JSON")
}

/// Every PromQL string of the dashboard: panel targets, annotations, and the
/// template variables' queries (`label_values(...)`, flagged `true`).
fn dashboard_queries(v: &serde_json::Value) -> Vec<(String, bool)> {
    fn walk(v: &serde_json::Value, in_templating: bool, out: &mut Vec<(String, bool)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, val) in m {
                    let tmpl = in_templating || k == "templating";
                    match (k.as_str(), val) {
                        ("expr", serde_json::Value::String(s)) => out.push((s.clone(), tmpl)),
                        ("query" | "definition", serde_json::Value::String(s))
                            if tmpl && s.contains("congvu_milter_") =>
                        {
                            out.push((s.clone(), true))
                        }
                        _ => walk(val, tmpl, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, in_templating, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, false, &mut out);
    out
}

fn dashboard_panels(v: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for p in v["panels"].as_array().expect("panels") {
        out.push(p.clone());
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner.iter().cloned());
        }
    }
    out
}

/// The Grafana variables replaced by values PromQL accepts.
fn substitute_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__range", "1h")
        .replace("$__interval", "1m")
        .replace("${instance}", ".+")
        .replace("$instance", ".+")
}

// ---------------------------------------------------------------------------
// 1. promtool

/// `promtool check rules` accepts the alert rules, and `promtool test rules` runs
/// their unit tests (alerts.test.yml states when each alert must and must not fire).
#[test]
fn promtool_accepts_the_alert_rules_and_their_unit_tests() {
    let dir = contrib("prometheus");
    let out = promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(
        out.status.success(),
        "promtool check rules:\n{}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rules = read(&dir.join("alerts.yml"));
    let alerts = rules.matches("- alert: ").count();
    assert!(
        alerts >= 10 && stdout.contains(&format!("SUCCESS: {alerts} rules found")),
        "expected the {alerts} alerts of alerts.yml:\n{stdout}"
    );
    let out = promtool(&["test", "rules", "alerts.test.yml"], &dir);
    assert!(out.status.success(), "promtool test rules:\n{}", text(&out));

    // Every alert has a severity, an English and a Vietnamese summary and a runbook.
    for key in [
        "severity: ",
        "summary: ",
        "summary_vi: ",
        "description: ",
        "runbook: ",
    ] {
        let n = rules.matches(&format!("  {key}")).count();
        assert_eq!(n, alerts, "{alerts} alerts but {n} with `{key}`");
    }
    // Every alert has at least one unit test.
    let tests = read(&dir.join("alerts.test.yml"));
    for name in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {name}")),
            "alert {name} has no case in alerts.test.yml"
        );
    }
}

/// `promtool check config` accepts the scrape configuration (which loads alerts.yml
/// through rule_files, so the rules are checked in that setting too).
#[test]
fn promtool_accepts_the_scrape_config() {
    let dir = contrib("prometheus");
    let out = promtool(&["check", "config", "scrape.yml"], &dir);
    assert!(
        out.status.success(),
        "promtool check config:\n{}",
        text(&out)
    );
    let scrape = read(&dir.join("scrape.yml"));
    // The port scraped is the shipped policy's metrics port.
    let listen = policy_str(&shipped_policy(), "metrics", "listen");
    assert!(
        scrape.contains(&format!("\"{listen}\"")),
        "scrape.yml does not scrape [metrics] listen = {listen}"
    );
    let port = listen.rsplit(':').next().expect("port");
    assert!(
        scrape.contains(&format!("$1:{port}")),
        "the fleet relabelling does not add port {port}"
    );
}

/// Every PromQL expression of the dashboard parses: each becomes a recording rule
/// (Grafana's variables replaced by constants) that `promtool check rules` must accept.
#[test]
fn dashboard_promql_parses() {
    let dash = dashboard();
    let queries = dashboard_queries(&dash);
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for (q, templating) in &queries {
        if *templating {
            // label_values(...) is Grafana's, not PromQL: check the metric inside it.
            assert!(
                q.starts_with("label_values(congvu_milter_"),
                "unexpected variable query {q}"
            );
            continue;
        }
        let expr = substitute_grafana_variables(q);
        assert!(!expr.contains('$'), "unknown Grafana variable in {q}");
        n += 1;
        yaml.push_str(&format!(
            "      - record: dashboard:query{n}\n        expr: {}\n",
            serde_json::to_string(&expr).expect("json string")
        ));
    }
    assert!(n >= 25, "only {n} queries found in the dashboard");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("dashboard.rules.yml"), &yaml).expect("write rules");
    let out = promtool(&["check", "rules", "dashboard.rules.yml"], dir.path());
    assert!(
        out.status.success(),
        "a dashboard query does not parse:\n{}\n{yaml}",
        text(&out)
    );
}

/// The dashboard's structure: schema, the datasource and instance variables used
/// by every panel, unique ids, a layout without overlaps, and the panels the
/// operators asked for.
#[test]
fn dashboard_is_wired_to_its_variables() {
    let dash = dashboard();
    let schema = dash["schemaVersion"].as_i64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    assert_eq!(var("instance")["type"], "query");
    assert_eq!(var("instance")["datasource"]["uid"], "${datasource}");

    let panels = dashboard_panels(&dash);
    let mut ids = BTreeSet::new();
    let mut cells: Vec<(String, i64, i64, i64, i64)> = Vec::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?").to_owned();
        let id = p["id"].as_i64().expect("panel id");
        assert!(ids.insert(id), "duplicate panel id {id}");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_i64().expect("x"),
            g["y"].as_i64().expect("y"),
            g["w"].as_i64().expect("w"),
            g["h"].as_i64().expect("h"),
        );
        assert!(x >= 0 && w > 0 && x + w <= 24 && h > 0, "{title}: {g}");
        for (other, ox, oy, ow, oh) in &cells {
            let overlap = x < ox + ow && ox < &(x + w) && y < oy + oh && oy < &(y + h);
            assert!(!overlap, "panels {title:?} and {other:?} overlap");
        }
        cells.push((title.clone(), x, y, w, h));
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{title}: panel datasource"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no queries");
        for t in targets {
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "{title}: target datasource"
            );
            let expr = t["expr"].as_str().expect("expr");
            for (name, _) in selectors(expr) {
                assert!(
                    expr.contains(&format!("{name}{{instance=~\"$instance\"")),
                    "{title}: {name} is not filtered by $instance in {expr}"
                );
            }
        }
    }
    let titles: Vec<String> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap_or("").to_lowercase())
        .collect();
    for wanted in [
        "messages by action",
        "verdicts by rule and article",
        "forwarding blocks",
        "attachments by type",
        "encrypted archives",
        "clamd endpoint health",
        "clamd scan latency",
        "decision latency",
        "message size",
        "connections",
        "protocol errors",
        "policy reloads",
        "loaded policy",
        "signed messages",
        "memory budget",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "no panel about {wanted:?} in {titles:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// 2. metric names against the real daemon

fn mime_message(subject: &str, parts: &str, content_type: &str) -> Vec<u8> {
    format!(
        "From: a@example.org\r\nTo: b@bacgiang.gov.vn\r\nSubject: {subject}\r\n\
         MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n{parts}"
    )
    .into_bytes()
}

/// A few messages that make labelled series appear: an executable attachment
/// (verdicts, attachments), a signed message (signed_messages), plain text.
fn exercise_messages() -> Vec<Vec<u8>> {
    // "MZ" + a PE-looking header, base64.
    let exe = "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAAA4fug4AtAnNIbgBTM0hVGhpcyBwcm9ncmFtIGNhbm5vdCBiZSBydW4gaW4gRE9TIG1vZGUuDQ0KJAAAAAAAAABQRQAATAEDAA==";
    let with_exe = mime_message(
        "setup",
        &format!(
            "--b1\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n\
             --b1\r\nContent-Type: application/octet-stream; name=\"setup.exe\"\r\n\
             Content-Disposition: attachment; filename=\"setup.exe\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{exe}\r\n--b1--\r\n"
        ),
        "multipart/mixed; boundary=\"b1\"",
    );
    let signed = mime_message(
        "signed",
        "--s1\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n\
         --s1\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n--s1--\r\n",
        "multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"s1\"",
    );
    let plain =
        b"From: a@example.org\r\nTo: b@bacgiang.gov.vn\r\nSubject: hi\r\n\r\nhello\r\n".to_vec();
    vec![with_exe, signed, plain]
}

async fn drive(daemon: &Daemon, messages: &[Vec<u8>]) {
    for (i, m) in messages.iter().enumerate() {
        let mut c = daemon.milter_client(Offer::POSTFIX_3_7).await;
        let qid = format!("OPS{i}");
        let env = Envelope {
            sender: "a@example.org".into(),
            sender_params: vec![],
            recipients: vec!["b@bacgiang.gov.vn".into()],
        };
        let macros = StageMacros::new()
            .with(b'T', "i", &qid)
            .with(b'E', "i", &qid);
        c.send_message(&env, m, &macros)
            .await
            .expect("message judged");
        let _ = c.quit().await;
    }
}

/// Every metric name the dashboard's queries and the alert rules name exists in
/// the daemon's `/metrics`.
///
/// The prometheus crate's text encoder leaves out metric families that have no
/// series yet, and a labelled (`*Vec`) metric has none until first used: a fresh
/// daemon exports only the plain counters, gauges and histograms plus the
/// pre-initialised `messages_total` and `policy_reloads_total`. So the test
/// 1. runs the real binary with a clamd endpoint that cannot answer (so
///    `clamd_endpoint_up` appears) and drives messages through it with the in-repo
///    milter client (an executable attachment, a signed message, plain text), so
///    the message, decision and size series appear, and the rule, attachment and
///    signature series too once the rules count them;
/// 2. for the labelled metrics that still have no series (forwarding, encrypted
///    archives, clamd scans against a real clamd, ...), falls back to the registrations
///    in src/metrics.rs — the same code that serves /metrics — and first proves
///    that fallback faithful: every family the daemon exported must be declared
///    there with the same type.
///
/// Histogram series (`_bucket`, `_sum`, `_count`) must belong to a histogram, and
/// the label names used in selectors and `by (...)` must be labels of the metrics
/// (or the target labels Prometheus adds).
#[tokio::test(flavor = "multi_thread")]
async fn every_metric_in_the_dashboard_and_alerts_is_exported() {
    let daemon = Daemon::start(
        "[clamav]\nendpoints = [\"unix:/nonexistent/congvu-ops-test/clamd.sock\"]\n\
         probe_interval = \"1s\"\nmax_attempts = 1\n",
    );
    drive(&daemon, &exercise_messages()).await;
    // clamd_endpoint_up is set by the first probe.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = daemon.http_get("/metrics");
        assert_eq!(status, 200, "{body}");
        if body.contains("# TYPE congvu_milter_clamd_endpoint_up") || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let exported = exported_metrics(&body);
    let declared = declared_metrics();

    // The source parser agrees with what the daemon serves.
    assert!(
        declared.len() >= 20,
        "src/metrics.rs parsed badly: {declared:?}"
    );
    for (name, kind) in &exported {
        let d = declared
            .get(name)
            .unwrap_or_else(|| panic!("{name} exported but not found in src/metrics.rs"));
        assert_eq!(&d.kind, kind, "type of {name}");
    }
    // What this daemon exports for sure after the messages; the rule, attachment
    // and signature counters join as the rules that feed them count.
    for must in [
        "congvu_milter_messages_total",
        "congvu_milter_clamd_endpoint_up",
        "congvu_milter_decision_duration_seconds",
        "congvu_milter_policy_info",
    ] {
        assert!(
            exported.contains_key(must),
            "{must} missing from /metrics after the test messages:\n{body}"
        );
    }

    let dash = dashboard();
    let dash_text: String = dashboard_queries(&dash)
        .into_iter()
        .map(|(q, _)| q + "\n")
        .collect();
    let alerts_text = read(&contrib("prometheus/alerts.yml"));
    let alert_tests = read(&contrib("prometheus/alerts.test.yml"));

    let mut only_declared = BTreeSet::new();
    for (source, txt) in [
        ("dashboard", &dash_text),
        ("alerts.yml", &alerts_text),
        ("alerts.test.yml", &alert_tests),
    ] {
        let names = referenced_names(txt);
        assert!(names.len() >= 5, "{source}: only {names:?}");
        for name in &names {
            let (base, suffix) = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).map(|b| (b.to_owned(), *s)))
                .filter(|(b, _)| {
                    declared.get(b).is_some_and(|d| d.kind == "histogram")
                        || exported.get(b).is_some_and(|k| k == "histogram")
                })
                .unwrap_or((name.clone(), ""));
            let live = exported.contains_key(&base);
            let decl = declared.get(&base);
            assert!(
                live || decl.is_some(),
                "{source} names {name}, which the daemon does not export"
            );
            if !live {
                only_declared.insert(base.clone());
            }
            let kind = exported
                .get(&base)
                .cloned()
                .or_else(|| decl.map(|d| d.kind.to_owned()))
                .unwrap_or_default();
            if kind == "histogram" {
                assert!(
                    !suffix.is_empty(),
                    "{source}: histogram {base} used without _bucket/_sum/_count"
                );
            }
        }
        // Label names in selectors.
        for (name, labels) in selectors(txt) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| declared.contains_key(*b))
                .unwrap_or(&name);
            let Some(d) = declared.get(base) else {
                continue;
            };
            for l in labels {
                assert!(
                    d.labels.contains(&l) || TARGET_LABELS.contains(&l.as_str()),
                    "{source}: {name} has no label {l:?} (labels: {:?})",
                    d.labels
                );
            }
        }
    }
    // Label names in by (...) must belong to some metric of the expression.
    for expr in dash_text
        .lines()
        .map(str::to_owned)
        .chain(alert_exprs(&alerts_text))
    {
        let allowed: BTreeSet<String> = referenced_names(&expr)
            .into_iter()
            .flat_map(|n| {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| n.strip_suffix(s).map(str::to_owned))
                    .filter(|b| declared.contains_key(b))
                    .unwrap_or(n);
                declared
                    .get(&base)
                    .map(|d| d.labels.clone())
                    .unwrap_or_default()
            })
            .chain(TARGET_LABELS.iter().map(|s| s.to_string()))
            .collect();
        for l in grouping_labels(&expr) {
            assert!(allowed.contains(&l), "by ({l}) is no label of {expr}");
        }
    }
    if !only_declared.is_empty() {
        eprintln!(
            "checked against src/metrics.rs only (no series in a fresh daemon): {only_declared:?}"
        );
    }
}

/// The `expr:` blocks of alerts.yml, one string each.
fn alert_exprs(rules: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest != "|" {
            out.push(rest.to_owned());
            continue;
        }
        let indent = line.len() - t.len();
        let mut expr = String::new();
        while let Some(next) = lines.peek() {
            let ni = next.len() - next.trim_start().len();
            if !next.trim().is_empty() && ni <= indent {
                break;
            }
            expr.push_str(next.trim());
            expr.push(' ');
            lines.next();
        }
        out.push(expr);
    }
    out
}

// ---------------------------------------------------------------------------
// 3. Postfix snippets

/// `postconf -c DIR` over a main.cf (and master.cf): stdout, and stderr which must
/// carry no warning (postconf warns about unknown parameters, "unused parameter").
fn postconf(dir: &Path, args: &[&str]) -> String {
    let out = run(
        Command::new("postconf").arg("-c").arg(dir).args(args),
        "postfix",
    );
    assert!(out.status.success(), "postconf {args:?}:\n{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("warning"),
        "postconf {args:?} in {}:\n{stderr}",
        dir.display()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

const MINIMAL_MASTER_CF: &str = "smtp      inet  n       -       y       -       -       smtpd\n\
    pickup    unix  n       -       y       60      1       pickup\n\
    cleanup   unix  n       -       y       -       0       cleanup\n";

fn postfix_dir(main_cf: &str, master_extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("main.cf"), main_cf).expect("main.cf");
    std::fs::write(
        dir.path().join("master.cf"),
        format!("{MINIMAL_MASTER_CF}{master_extra}"),
    )
    .expect("master.cf");
    dir
}

/// The Postfix snippets parse without a postconf warning, set the milter
/// parameters explicitly, keep message_size_limit above the milter's
/// max_message_size, give each service its {daemon_name}, and point the outbound
/// instance at an address the shipped policy listens on.
#[test]
fn postfix_snippets_are_valid_and_consistent() {
    let policy = shipped_policy();
    let max_message = parse_size(&policy_str(&policy, "limits", "max_message_size"));
    let milter_listen: Vec<String> = policy["milter"]["listen"]
        .as_array()
        .expect("[milter] listen")
        .iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect();

    // The single instance.
    let single = read(&contrib("postfix/main.cf.single"));
    let master_snippet = read(&contrib("postfix/master.cf.snippet"));
    let dir = postfix_dir(&single, &master_snippet);
    postconf(dir.path(), &["-n"]);
    postconf(dir.path(), &["-M"]);
    let get = |dir: &Path, p: &str| postconf(dir, &["-hx", p]);
    assert_eq!(
        get(dir.path(), "smtpd_milters"),
        "unix:/congvu-milter/milter.sock"
    );
    assert_eq!(
        get(dir.path(), "non_smtpd_milters"),
        "unix:/congvu-milter/milter.sock"
    );
    // The shipped policy listens where chrooted smtpd looks: the spool directory
    // (Debian's chroot) plus the socket name Postfix uses.
    assert!(
        milter_listen.contains(&"unix:/var/spool/postfix/congvu-milter/milter.sock".to_owned()),
        "main.cf.single names unix:/congvu-milter/milter.sock below the chroot \
         /var/spool/postfix; the shipped policy listens on {milter_listen:?}"
    );
    assert!(
        single.contains("#smtpd_milters = inet:ADDRESS:8891"),
        "the TCP alternative for another host is not documented"
    );
    assert_eq!(get(dir.path(), "milter_protocol"), "6");
    assert_eq!(get(dir.path(), "milter_default_action"), "tempfail");
    assert_eq!(get(dir.path(), "milter_macro_daemon_name"), "inbound");
    let limit: u64 = get(dir.path(), "message_size_limit")
        .parse()
        .expect("number");
    assert!(
        limit > max_message,
        "message_size_limit {limit} <= milter max_message_size {max_message}"
    );
    // The milter's clamd deadline (default 240 s) stays below the content timeout.
    let content = parse_secs(&get(dir.path(), "milter_content_timeout"));
    assert!(content > 240.0, "milter_content_timeout {content}");
    // Every timeout is set explicitly (not only inherited defaults).
    for p in [
        "milter_connect_timeout",
        "milter_command_timeout",
        "milter_content_timeout",
        "milter_default_action",
        "milter_protocol",
        "message_size_limit",
    ] {
        assert!(
            postconf(dir.path(), &["-n", p]).starts_with(p),
            "main.cf.single does not set {p}"
        );
    }
    assert_eq!(
        postconf(
            dir.path(),
            &["-h", "-P", "submission/inet/milter_macro_daemon_name"]
        ),
        "submission"
    );

    // The outbound instance and the first instance's relayhost.
    let out_main = read(&contrib("postfix/outbound-instance/main.cf.postfix-out"));
    let out_master = read(&contrib("postfix/outbound-instance/master.cf.postfix-out"));
    let out_dir = postfix_dir(&out_main, &out_master);
    postconf(out_dir.path(), &["-n"]);
    postconf(out_dir.path(), &["-M"]);
    assert_eq!(get(out_dir.path(), "milter_default_action"), "tempfail");
    assert_eq!(get(out_dir.path(), "milter_protocol"), "6");
    assert_eq!(get(out_dir.path(), "milter_macro_daemon_name"), "outbound");
    assert_eq!(get(out_dir.path(), "inet_interfaces"), "loopback-only");
    assert_eq!(get(out_dir.path(), "master_service_disable"), "");
    let limit: u64 = get(out_dir.path(), "message_size_limit")
        .parse()
        .expect("number");
    assert!(
        limit > max_message,
        "postfix-out message_size_limit {limit}"
    );
    // postfix-out's smtpd is chrooted in its own spool: the socket the snippets
    // tell the admin to add to [milter] listen is the one it names.
    let out_milter = get(out_dir.path(), "smtpd_milters");
    assert_eq!(out_milter, "unix:/congvu-milter/milter.sock");
    let out_listen = "unix:/var/spool/postfix-out/congvu-milter/milter.sock";
    for doc in [
        "postfix/outbound-instance/main.cf.postfix-out",
        "postfix/outbound-instance/setup-outbound.sh",
        "postfix/README.md",
    ] {
        assert!(
            read(&contrib(doc)).contains(out_listen),
            "{doc} does not tell to add {out_listen} to [milter] listen"
        );
    }
    assert_eq!(
        postconf(
            out_dir.path(),
            &["-h", "-P", "127.0.0.1:10026/inet/milter_macro_daemon_name"]
        ),
        "outbound"
    );
    let first = read(&contrib("postfix/outbound-instance/main.cf.first-instance"));
    let first_dir = postfix_dir(&format!("{single}\n{first}"), "");
    postconf(first_dir.path(), &["-n"]);
    assert_eq!(get(first_dir.path(), "relayhost"), "[127.0.0.1]:10026");
}

/// setup-outbound.sh changes nothing unless told `--apply`: without arguments it
/// prints its help and exits 2; `--dry-run` lists the postmulti steps.
#[test]
fn setup_outbound_script_needs_an_explicit_argument() {
    let script = contrib("postfix/outbound-instance/setup-outbound.sh");
    let out = run(Command::new("sh").arg("-n").arg(&script), "dash");
    assert!(out.status.success(), "sh -n:\n{}", text(&out));

    let out = run(Command::new("sh").arg(&script), "dash");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("refusing to change anything"), "{all}");
    assert!(all.contains("--apply"), "{all}");

    let out = run(Command::new("sh").arg(&script).arg("--bogus"), "dash");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // The dry run needs postmulti to exist (postfix), and runs nothing.
    let out = run(Command::new("sh").arg(&script).arg("--dry-run"), "postfix");
    assert!(out.status.success(), "--dry-run:\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for step in [
        "postmulti -e init",
        "postmulti -I postfix-out -G mta -e create",
        "install -d -m 0750 -o congvu-milter -g postfix /var/spool/postfix-out/congvu-milter",
        "postconf -c /etc/postfix-out -e smtpd_milters = unix:/congvu-milter/milter.sock",
        "postconf -c /etc/postfix-out -e milter_macro_daemon_name = outbound",
        "postconf -c /etc/postfix-out -M# smtp/inet",
        "postconf -e relayhost = [127.0.0.1]:10026",
        "postmulti -i postfix-out -e enable",
    ] {
        assert!(stdout.contains(step), "--dry-run lacks {step:?}:\n{stdout}");
    }
}

// ---------------------------------------------------------------------------
// 4. systemd unit

/// `systemd-analyze verify` on a unit file: must exit 0 and print nothing (it
/// reports unknown keys only as messages, with exit status 0).
fn systemd_verify(unit: &Path) {
    let out = run(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg("--man=no")
            .arg(unit)
            .current_dir(unit.parent().expect("dir")),
        "systemd",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Lines about other units on the host (not ours) are not our business.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("congvu-milter") || !l.contains(".service"))
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify {}:\n{}",
        unit.display(),
        text(&out)
    );
}

fn unit_settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && !l.is_empty())
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The unit parses (systemd-analyze verify, with the binary paths pointed at the
/// test build because /usr/bin/congvu-milter need not exist here), runs the daemon
/// sandboxed as its own user, checks the policy before start and reload, and gives
/// SIGTERM more time than the policy's shutdown_grace.
#[test]
fn systemd_unit_verifies_and_is_sandboxed() {
    let unit_path = contrib("systemd/congvu-milter.service");
    let unit = read(&unit_path);
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("congvu-milter.service");
    std::fs::write(
        &local,
        unit.replace(
            "/usr/bin/congvu-milter",
            env!("CARGO_BIN_EXE_congvu-milter"),
        ),
    )
    .expect("write unit");
    systemd_verify(&local);

    let settings = unit_settings(&unit);
    let get = |k: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let one = |k: &str| -> &str {
        let v = get(k);
        assert_eq!(v.len(), 1, "{k} set {} times", v.len());
        v[0]
    };
    assert!(matches!(one("Type"), "exec" | "simple"));
    assert_eq!(one("User"), "congvu-milter");
    assert_eq!(one("Group"), "congvu-milter");
    let config = "--config /etc/congvu-milter/congvu-milter.toml";
    assert_eq!(
        one("ExecStart"),
        format!("/usr/bin/congvu-milter serve {config}")
    );
    assert_eq!(
        one("ExecStartPre"),
        format!("/usr/bin/congvu-milter check-config {config}")
    );
    assert_eq!(
        get("ExecReload"),
        vec![
            format!("/usr/bin/congvu-milter check-config {config}").as_str(),
            "/bin/kill -HUP $MAINPID"
        ]
    );
    assert_eq!(one("KillSignal"), "SIGTERM");
    assert_eq!(one("Restart"), "on-failure");
    let grace = parse_secs(&policy_str(&shipped_policy(), "milter", "shutdown_grace"));
    let stop = parse_secs(one("TimeoutStopSec"));
    assert!(
        stop > grace + 5.0,
        "TimeoutStopSec {stop}s is not above shutdown_grace {grace}s"
    );
    assert!(
        one("ReadWritePaths").contains("/var/spool/postfix/congvu-milter"),
        "the socket directory below Postfix's chroot is not writable"
    );
    for (k, v) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("SystemCallFilter", "@system-service"),
        ("CapabilityBoundingSet", ""),
        ("RuntimeDirectory", "congvu-milter"),
        ("LogsDirectory", "congvu-milter"),
    ] {
        assert_eq!(one(k), v, "{k}");
    }
    // The daemon raises its soft open-files limit to the hard one itself; a
    // LimitNOFILE= above a container's hard limit would keep the unit from starting.
    assert!(
        !settings.iter().any(|(k, _)| k == "LimitNOFILE"),
        "the unit sets LimitNOFILE"
    );
}

/// The logrotate file rotates the shipped policy's `[audit] file`, in the
/// directory the unit makes writable, daily for 400 days, and reloads the
/// daemon after. Run by logrotate itself (forced, on a copy pointed at a temp
/// directory, the reload replaced by a marker): the file is renamed, the
/// marker made, and on the next rotation the previous one is compressed.
#[test]
fn logrotate_keeps_the_audit_records_400_days_and_reloads_the_daemon() {
    let conf = read(&contrib("logrotate/congvu-milter"));
    let audit_file = policy_str(&shipped_policy(), "audit", "file");
    let unit = read(&contrib("systemd/congvu-milter.service"));
    let logs_dir = unit_settings(&unit)
        .into_iter()
        .find(|(k, _)| k == "LogsDirectory")
        .map(|(_, v)| format!("/var/log/{v}/"))
        .expect("the unit has LogsDirectory=");
    assert!(
        audit_file.starts_with(&logs_dir),
        "{audit_file} not in {logs_dir}"
    );
    assert!(conf.contains(&format!("{audit_file} {{")), "{conf}");
    let directives: Vec<&str> = conf
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for want in [
        "daily",
        "rotate 400",
        "compress",
        "delaycompress",
        "postrotate",
    ] {
        assert!(directives.contains(&want), "{want} missing:\n{conf}");
    }
    assert!(conf.contains("systemctl reload congvu-milter"), "{conf}");

    let logrotate = crate::common::require_binary("logrotate");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let marker = dir.path().join("reloaded");
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::effective())
        .unwrap()
        .unwrap();
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::effective())
        .unwrap()
        .unwrap();
    let local = conf
        .replace(&audit_file, log.to_str().unwrap())
        .replace(
            "su congvu-milter congvu-milter",
            &format!("su {} {}", user.name, group.name),
        )
        .replace(
            "systemctl reload congvu-milter >/dev/null 2>&1 || true",
            &format!("echo >> {}", marker.display()),
        )
        .replace("dateext", "");
    let conf_path = dir.path().join("logrotate.conf");
    std::fs::write(&conf_path, local).unwrap();
    let rotate = || {
        let out = run(
            Command::new(&logrotate)
                .arg("-f")
                .arg("-s")
                .arg(dir.path().join("state"))
                .arg(&conf_path),
            "logrotate",
        );
        assert!(out.status.success(), "logrotate:\n{}", text(&out));
    };
    std::fs::write(&log, "{\"audit\":1}\n").unwrap();
    rotate();
    assert!(dir.path().join("audit.jsonl.1").is_file(), "not renamed");
    assert!(!log.exists(), "the daemon makes the new file itself");
    assert_eq!(read(&marker).lines().count(), 1, "no reload");
    std::fs::write(&log, "{\"audit\":1}\n").unwrap();
    rotate();
    assert!(
        dir.path().join("audit.jsonl.2.gz").is_file(),
        "not compressed"
    );
    assert!(dir.path().join("audit.jsonl.1").is_file());
    assert_eq!(read(&marker).lines().count(), 2);
}

// ---------------------------------------------------------------------------
// 5. the Debian package

const PKG: &str = "congvu-milter";
const USER: &str = "congvu-milter";

fn sh(cmd: &str) -> Output {
    run(Command::new("sh").arg("-c").arg(cmd), "dash")
}

fn user_exists() -> bool {
    sh(&format!("getent passwd {USER}")).status.success()
}

/// Removes the package and its user: run before (a previous run may have failed
/// half-way) and after the test, also when it panics.
struct PackageCleanup;

impl PackageCleanup {
    fn clean() {
        let _ = sh(&format!(
            "dpkg -s {PKG} >/dev/null 2>&1 && dpkg --purge {PKG} >/dev/null 2>&1; \
             getent passwd {USER} >/dev/null && deluser --system --quiet {USER} >/dev/null 2>&1; \
             getent group {USER} >/dev/null && delgroup --system --quiet {USER} >/dev/null 2>&1; \
             true"
        ));
    }
}

impl Drop for PackageCleanup {
    fn drop(&mut self) {
        PackageCleanup::clean();
    }
}

/// Builds the .deb with contrib/debian/build-deb.sh (a release build: minutes),
/// installs it with `dpkg -i` as on a fresh machine (package and user removed
/// first), and checks: the installed policy passes `check-config`; the user exists,
/// has no shell and is in group postfix; the unit is in /lib/systemd/system and
/// verifies; the socket directory below Postfix's chroot belongs to
/// congvu-milter:postfix, mode 0750; the daemon, run as that user, can put its
/// unix socket there for group postfix; the ops kit is in the documentation.
/// Then `dpkg --purge` removes everything but the system user (kept, as Debian
/// recommends), and the test removes the user to leave the machine as it was.
///
/// Needs root, dpkg, adduser and postfix (for the group); fails otherwise.
#[test]
fn debian_package_installs_and_its_policy_checks_clean() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test installs a .deb with dpkg -i and must run as root (as in CI)"
    );
    assert!(
        sh("getent group postfix").status.success(),
        "no group postfix: install the Debian package postfix"
    );
    run(Command::new("adduser").arg("--version"), "adduser");
    PackageCleanup::clean();
    assert!(!user_exists(), "could not remove a previous {USER} user");
    let _cleanup = PackageCleanup;

    // Build.
    let out = run(
        Command::new("sh")
            .arg(contrib("debian/build-deb.sh"))
            .current_dir(root()),
        "dash",
    );
    assert!(out.status.success(), "build-deb.sh:\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = PathBuf::from(stdout.lines().last().expect("path of the .deb").trim());
    assert!(
        deb.extension().is_some_and(|e| e == "deb") && deb.is_file(),
        "build-deb.sh did not name a .deb: {stdout}"
    );

    // Contents: every file of the ops kit is shipped as documentation.
    let out = run(Command::new("dpkg-deb").arg("-c").arg(&deb), "dpkg");
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut kit = vec![contrib("README.md")];
    for sub in [
        "postfix",
        "systemd",
        "logrotate",
        "prometheus",
        "grafana",
        "rspamd",
    ] {
        kit.extend(walk(&contrib(sub)));
    }
    for f in kit {
        let rel = f
            .strip_prefix(root().join("contrib"))
            .expect("under contrib");
        let want = format!("./usr/share/doc/congvu-milter/contrib/{}", rel.display());
        assert!(listing.contains(&want), "{want} not in the package");
    }
    // The binary is stripped and under 15 MB; its debug information is a
    // separate file; the man pages and the changelog are installed.
    for want in [
        "./usr/share/man/man8/congvu-milter.8.gz",
        "./usr/share/man/man8/congvu-milter-serve.8.gz",
        "./usr/share/man/man8/congvu-milter-check-config.8.gz",
        "./usr/share/man/man8/congvu-milter-scan.8.gz",
        "./usr/share/man/man8/congvu-milter-quarantine.8.gz",
        "./usr/share/man/man8/congvu-milter-report.8.gz",
        "./usr/share/man/man8/congvu-milter-trace.8.gz",
        "./usr/share/man/man5/congvu-milter.toml.5.gz",
        "./usr/share/doc/congvu-milter/changelog.Debian.gz",
        "./etc/logrotate.d/congvu-milter",
        "./usr/lib/debug/.build-id/",
    ] {
        assert!(
            listing.contains(want),
            "{want} not in the package:\n{listing}"
        );
    }
    let unpacked = tempfile::tempdir().expect("tempdir");
    let out = run(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(unpacked.path()),
        "dpkg",
    );
    assert!(out.status.success(), "{}", text(&out));
    let binary = unpacked.path().join("usr/bin/congvu-milter");
    let size = std::fs::metadata(&binary).expect("packaged binary").len();
    assert!(size < 15_000_000, "packaged binary is {size} bytes");
    let out = run(Command::new("readelf").arg("-SW").arg(&binary), "binutils");
    let sections = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "readelf: {}", text(&out));
    for section in [".symtab", ".debug_info", ".debug_line"] {
        assert!(
            !sections.contains(section),
            "the packaged binary keeps {section}:\n{sections}"
        );
    }
    // The policy page documents every table of the shipped policy.
    let out = run(
        Command::new("sh").arg("-c").arg(format!(
            "gzip -dc {}/usr/share/man/man5/congvu-milter.toml.5.gz",
            unpacked.path().display()
        )),
        "gzip",
    );
    let page = String::from_utf8_lossy(&out.stdout).into_owned();
    for table in shipped_policy().keys() {
        if shipped_policy()[table].is_table() {
            assert!(
                page.contains(&format!("[{table}")),
                "congvu-milter.toml(5) lacks [{table}]"
            );
        }
    }

    let out = run(Command::new("dpkg-deb").arg("-I").arg(&deb), "dpkg");
    let info = String::from_utf8_lossy(&out.stdout).into_owned();
    for field in [
        "Section: mail",
        "Priority: optional",
        "adduser",
        "libarchive13",
    ] {
        assert!(info.contains(field), "control lacks {field}:\n{info}");
    }

    // Install, with the spool of an outbound-hop instance present.
    let out_spool = Path::new("/var/spool/postfix-out");
    let made_out_spool = !out_spool.exists();
    if made_out_spool {
        std::fs::create_dir(out_spool).expect("mkdir /var/spool/postfix-out");
    }
    let dpkg_install = || {
        let out = run(
            Command::new("dpkg")
                .arg("-i")
                .arg(&deb)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            "dpkg",
        );
        assert!(out.status.success(), "dpkg -i:\n{}", text(&out));
    };
    dpkg_install();

    let out = run(
        Command::new("/usr/bin/congvu-milter").args([
            "check-config",
            "--config",
            "/etc/congvu-milter/congvu-milter.toml",
        ]),
        "congvu-milter",
    );
    assert!(
        out.status.success(),
        "check-config on the installed policy:\n{}",
        text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("policy OK"));
    assert_eq!(
        read(Path::new("/etc/congvu-milter/congvu-milter.toml")),
        read(&root().join("config/congvu-milter.toml"))
    );
    let out = sh(&format!("dpkg-query -W -f='${{Conffiles}}' {PKG}"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/etc/congvu-milter/congvu-milter.toml"),
        "the policy is not a conffile:\n{}",
        text(&out)
    );

    // The user.
    let out = sh(&format!("id -nG {USER}"));
    assert!(out.status.success(), "no user {USER}:\n{}", text(&out));
    let groups = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        groups.split_whitespace().any(|g| g == "postfix"),
        "{USER} is not in group postfix: {groups}"
    );
    let passwd = String::from_utf8_lossy(&sh(&format!("getent passwd {USER}")).stdout).into_owned();
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    let uid: u32 = fields[2].parse().expect("uid");
    assert!(uid < 1000, "{USER} is not a system user: {passwd}");
    assert!(
        fields[6].ends_with("nologin") || fields[6].ends_with("false"),
        "{USER} has a login shell: {passwd}"
    );

    // The unit.
    let unit = Path::new("/lib/systemd/system/congvu-milter.service");
    assert_eq!(
        read(unit),
        read(&contrib("systemd/congvu-milter.service")),
        "installed unit differs"
    );
    systemd_verify(unit);

    // The socket directory below Postfix's chroot.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let sockdir = Path::new("/var/spool/postfix/congvu-milter");
    let meta = std::fs::metadata(sockdir).expect("/var/spool/postfix/congvu-milter exists");
    let postfix_gid: u32 = String::from_utf8_lossy(&sh("getent group postfix").stdout)
        .split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .expect("gid of postfix");
    assert_eq!(meta.uid(), uid, "socket dir owner");
    assert_eq!(meta.gid(), postfix_gid, "socket dir group");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o750, "socket dir mode");
    let out_meta = std::fs::metadata(out_spool.join("congvu-milter"))
        .expect("/var/spool/postfix-out/congvu-milter exists");
    assert_eq!(
        (
            out_meta.uid(),
            out_meta.gid(),
            out_meta.permissions().mode() & 0o7777
        ),
        (uid, postfix_gid, 0o750),
        "socket dir of the outbound instance"
    );

    // Upgrades keep the admin's [milter] listen. A policy left at the TCP default
    // of earlier releases: run the maintainer scripts as dpkg does when the new
    // conffile replaces an unmodified old one.
    let conf = Path::new("/etc/congvu-milter/congvu-milter.toml");
    let shipped = read(&root().join("config/congvu-milter.toml"));
    let with_tcp = shipped.replacen(
        "listen = [\"unix:/var/spool/postfix/congvu-milter/milter.sock\"]",
        "listen = [\"inet:127.0.0.1:8891\"]",
        1,
    );
    assert_ne!(
        with_tcp, shipped,
        "the shipped policy's listen line changed"
    );
    std::fs::write(conf, &with_tcp).expect("policy");
    let script = |name: &str, args: &[&str]| {
        let out = run(
            Command::new("sh")
                .arg(format!("/var/lib/dpkg/info/{PKG}.{name}"))
                .args(args),
            "dash",
        );
        assert!(out.status.success(), "{name} {args:?}:\n{}", text(&out));
        out
    };
    script("preinst", &["upgrade", "0.1.0"]);
    std::fs::write(conf, &shipped).expect("policy");
    let out = script("postinst", &["configure", "0.1.0"]);
    assert!(
        text(&out).contains("kept [milter] listen"),
        "{}",
        text(&out)
    );
    assert_eq!(
        read(conf),
        with_tcp,
        "postinst did not put the listen line back"
    );
    // The installed daemon, as its user, creates its socket there for Postfix;
    // it is left running, as under a supervisor other than systemd, across the
    // upgrade below (it then runs the replaced binary) until the purge.
    let (mut daemon, daemon_log, _daemon_dir) = serve_as_user_on_chroot_socket(postfix_gid);

    // A real upgrade over an edited policy keeps it too (dpkg's conffile rule).
    dpkg_install();
    assert_eq!(read(conf), with_tcp, "dpkg -i replaced an edited policy");

    // Remove and purge: prerm stops the daemon, also without systemd and
    // although its binary was replaced.
    let out = run(Command::new("dpkg").args(["--purge", PKG]), "dpkg");
    let stopped = (0..200).find_map(|_| {
        let status = daemon.try_wait().expect("try_wait");
        if status.is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        status
    });
    if stopped.is_none() {
        let _ = daemon.kill();
        let _ = daemon.wait();
    }
    assert!(out.status.success(), "dpkg --purge:\n{}", text(&out));
    let stopped = stopped.unwrap_or_else(|| {
        panic!(
            "the daemon still ran 10 s after dpkg --purge:\n{}",
            text(&out)
        )
    });
    assert!(
        stopped.success(),
        "the daemon did not stop cleanly ({stopped}) on purge:\n{}",
        read(&daemon_log)
    );
    for gone in [
        "/usr/bin/congvu-milter",
        "/etc/congvu-milter",
        "/lib/systemd/system/congvu-milter.service",
        "/var/spool/postfix/congvu-milter",
        "/var/spool/postfix-out/congvu-milter",
        "/var/lib/congvu-milter",
        "/etc/systemd/system/multi-user.target.wants/congvu-milter.service",
    ] {
        assert!(
            std::fs::symlink_metadata(gone).is_err(),
            "{gone} left after purge"
        );
    }
    assert!(user_exists(), "purge is documented to keep the system user");
    if made_out_spool {
        std::fs::remove_dir(out_spool).expect("rmdir /var/spool/postfix-out");
    }
}

/// Runs /usr/bin/congvu-milter as congvu-milter (setpriv, with its groups, as
/// the README shows for supervisors other than systemd) on
/// unix:/var/spool/postfix/congvu-milter/milter.sock with socket_group postfix and
/// checks the socket: group postfix, mode 0660. Returns the running daemon, its
/// log and the directory holding both.
fn serve_as_user_on_chroot_socket(
    postfix_gid: u32,
) -> (std::process::Child, PathBuf, tempfile::TempDir) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let policy = dir.path().join("policy.toml");
    let socket = "/var/spool/postfix/congvu-milter/milter.sock";
    let metrics_port = daemon_support::free_port();
    std::fs::write(
        &policy,
        format!(
            "[milter]\nlisten = [\"unix:{socket}\"]\nsocket_mode = \"0660\"\n\
             socket_group = \"postfix\"\nshutdown_grace = \"2s\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n[clamav]\nenabled = false\n"
        ),
    )
    .expect("policy");
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let log = dir.path().join("log");
    let mut child = run_spawn(
        Command::new("setpriv")
            .args([
                "--reuid",
                USER,
                "--regid",
                USER,
                "--init-groups",
                "/usr/bin/congvu-milter",
                "serve",
                "--config",
            ])
            .arg(&policy)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log")),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let meta = loop {
        if let Ok(m) = std::fs::metadata(socket)
            && m.file_type().is_socket()
        {
            break m;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the installed daemon exited with {status} as {USER}:\n{}",
                read(&log)
            );
        }
        assert!(
            Instant::now() < deadline,
            "no socket {socket} after 20 s:\n{}",
            read(&log)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    if meta.gid() != postfix_gid || meta.permissions().mode() & 0o777 != 0o660 {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(meta.gid(), postfix_gid, "socket group:\n{}", read(&log));
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "socket mode");
    (child, log, dir)
}

fn run_spawn(cmd: &mut Command) -> std::process::Child {
    match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("cannot start {:?}: {e}", cmd.get_program()),
    }
}

/// Regular files below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}
