//! The manual pages the Debian package installs, written by `congvu-milter man DIR`:
//! congvu-milter(8) and one page per subcommand from the command line definition
//! (clap_mangen), and congvu-milter.toml(5) from the shipped policy, whose comments
//! are the reference of every key. Generated, so neither can drift from what the
//! binary accepts and ships.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap_mangen::Man;
use roff::{Roff, bold, roman};

/// The shipped policy: config/congvu-milter.toml, installed as
/// /etc/congvu-milter/congvu-milter.toml.
pub const SHIPPED_POLICY: &str = include_str!("../config/congvu-milter.toml");

/// Where every subcommand reads the policy unless `--config` says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/congvu-milter/congvu-milter.toml";

/// Sections of congvu-milter(8) after the command line reference.
const DAEMON_SECTIONS: &[(&str, &str)] = &[
    (
        "FILES",
        "/etc/congvu-milter/congvu-milter.toml\n\
         The policy, read by every subcommand unless --config names another file; \
         see congvu-milter.toml(5).\n\
         /var/spool/postfix/congvu-milter/milter.sock\n\
         The shipped policy's socket; Postfix, chrooted in /var/spool/postfix, names it \
         unix:/congvu-milter/milter.sock.\n\
         /usr/share/doc/congvu-milter/\n\
         README.md (install, attach to Postfix, rules, logs, metrics) and contrib/ \
         (Postfix snippets, systemd unit, Prometheus alerts, Grafana dashboard).",
    ),
    (
        "SIGNALS",
        "SIGHUP reloads the policy: a policy that does not load is refused with a log \
         line naming file, line and key, and the running one stays in force. Sockets \
         move only on restart.\n\
         SIGTERM and SIGINT stop accepting connections; messages in flight get \
         [milter] shutdown_grace to finish.",
    ),
    (
        "LOGGING",
        "One line per message on standard error, starting with the Postfix queue id: \
         QUEUEID: ACTION queue_id=... client=... sender=<...> recipients=... \
         rules=... reply=\"...\". Under systemd the journal keeps it \
         (journalctl -u congvu-milter); elsewhere the supervisor does.",
    ),
    (
        "EXIT STATUS",
        "0 success (for scan: every message accepted).\n\
         1 a policy with errors (check-config, serve), or for scan at least one message \
         not accepted as is, or for trace no message found.\n\
         2 bad usage or an unreadable file.\n\
         3 the daemon failed at run time (a socket it cannot bind, ...).",
    ),
    (
        "SEE ALSO",
        "congvu-milter.toml(5), postconf(5), master(5), clamd.conf(5), journalctl(1)",
    ),
];

/// Writes every page into `dir` and returns their paths.
pub fn write_all(cli: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cli = cli.disable_help_subcommand(true);
    cli.build();
    let mut written = Vec::new();
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = Man::new(sub.clone()).section("8");
        written.push(man.generate_to(dir)?);
    }
    let main = dir.join("congvu-milter.8");
    std::fs::write(&main, daemon_page(&cli)?)?;
    written.push(main);
    let policy = dir.join("congvu-milter.toml.5");
    std::fs::write(&policy, policy_page(SHIPPED_POLICY, &version(&cli)))?;
    written.push(policy);
    Ok(written)
}

fn version(cli: &clap::Command) -> String {
    cli.get_version().unwrap_or_default().to_owned()
}

/// congvu-milter(8): clap_mangen's sections, then [`DAEMON_SECTIONS`].
fn daemon_page(cli: &clap::Command) -> std::io::Result<Vec<u8>> {
    let man = Man::new(cli.clone()).section("8");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    let mut roff = Roff::new();
    for (heading, body) in DAEMON_SECTIONS {
        roff.control("SH", [*heading]);
        for line in body.lines() {
            roff.text([roman(line)]);
            roff.control("br", []);
        }
    }
    out.write_all(roff.render().as_bytes())?;
    Ok(out)
}

/// One entry of the policy reference: a key with its shipped value and the
/// comment above it, or a table heading with its comment.
enum PolicyItem {
    Table { name: String, comment: Vec<String> },
    Key { line: String, comment: Vec<String> },
}

/// Splits the shipped policy into its opening comment and its items. A value
/// that spans lines (an array) is joined into one line.
fn policy_items(policy: &str) -> (Vec<String>, Vec<PolicyItem>) {
    let mut intro = Vec::new();
    let mut items = Vec::new();
    let mut comment: Vec<String> = Vec::new();
    let mut seen_setting = false;
    let mut lines = policy.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if let Some(text) = trimmed.strip_prefix('#') {
            comment.push(text.strip_prefix(' ').unwrap_or(text).to_owned());
            continue;
        }
        if trimmed.is_empty() {
            if !seen_setting && !comment.is_empty() {
                intro.append(&mut comment);
                intro.push(String::new());
            }
            continue;
        }
        seen_setting = true;
        let comment = std::mem::take(&mut comment);
        if trimmed.starts_with('[') {
            let name = trimmed.to_owned();
            items.push(PolicyItem::Table { name, comment });
            continue;
        }
        let mut joined = trimmed.to_owned();
        let depth = |s: &str| s.matches('[').count() as i64 - s.matches(']').count() as i64;
        while depth(&joined) > 0 {
            match lines.next() {
                Some(more) => {
                    joined.push(' ');
                    joined.push_str(more.trim());
                }
                None => break,
            }
        }
        items.push(PolicyItem::Key {
            line: joined,
            comment,
        });
    }
    (intro, items)
}

/// Comment lines as roff text: indented lines (examples) and lines aligned in
/// columns keep their line breaks.
fn comment_text(roff: &mut Roff, lines: &[String]) {
    for line in lines {
        if line.is_empty() {
            roff.control("PP", []);
        } else if line.starts_with("  ") || line.trim().contains("   ") {
            roff.control("br", []);
            roff.text([roman(line.trim_start())]);
            roff.control("br", []);
        } else {
            roff.text([roman(line)]);
        }
    }
}

/// congvu-milter.toml(5) from the shipped policy's comments and values.
pub fn policy_page(policy: &str, version: &str) -> String {
    let (intro, items) = policy_items(policy);
    let mut roff = Roff::new();
    let source = format!("congvu-milter {version}");
    roff.control("TH", ["CONGVU-MILTER.TOML", "5", "", &source, ""]);
    roff.control("SH", ["NAME"]);
    roff.text([roman(
        "congvu-milter.toml - policy of congvu-milter, the milter for the Bac Giang official-duty e-mail regulation",
    )]);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([bold(DEFAULT_CONFIG)]);
    roff.control("SH", ["DESCRIPTION"]);
    comment_text(&mut roff, &intro);
    roff.control("PP", []);
    roff.text([roman(
        "Each key below is shown with the value the package ships. Check a changed \
         policy with congvu-milter check-config; apply it with systemctl reload \
         congvu-milter (SIGHUP).",
    )]);
    roff.control("SH", ["KEYS"]);
    for item in &items {
        match item {
            PolicyItem::Table { name, comment } => {
                roff.control("SS", [name.as_str()]);
                comment_text(&mut roff, comment);
            }
            PolicyItem::Key { line, comment } => {
                roff.control("TP", []);
                roff.text([bold(line.as_str())]);
                if comment.is_empty() {
                    roff.text([roman("(described with the key above)")]);
                } else {
                    comment_text(&mut roff, comment);
                }
            }
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman("congvu-milter(8), postconf(5), clamd.conf(5)")]);
    roff.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_key_and_table_is_in_the_policy_page() {
        let page = policy_page(SHIPPED_POLICY, "0.0.0");
        let shipped: toml::Table = toml::from_str(SHIPPED_POLICY).expect("shipped policy");
        let mut missing = Vec::new();
        for (key, value) in &shipped {
            match value {
                toml::Value::Table(table) => {
                    for (sub, inner) in table {
                        let shown = if inner.is_table() {
                            page.contains(&format!(".SS [{key}.{sub}]"))
                        } else {
                            page.contains(&format!("\\fB{sub} = "))
                        };
                        if !shown {
                            missing.push(format!("{key}.{sub}"));
                        }
                    }
                }
                _ => {
                    if !page.contains(&format!("\\fB{key} = ")) {
                        missing.push(key.clone());
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "not in congvu-milter.toml(5): {missing:?}"
        );
        assert!(page.contains(".SS [clamav]"), "{page}");
        assert!(
            page.contains("StreamMaxLength"),
            "the key comments are lost"
        );
    }

    #[test]
    fn multi_line_arrays_become_one_entry() {
        let (_, items) =
            policy_items("[a]\n# the list\nlist = [\n  \"x\",\n  \"y\",\n]\nnext = 1\n");
        let keys: Vec<&str> = items
            .iter()
            .filter_map(|i| match i {
                PolicyItem::Key { line, .. } => Some(line.as_str()),
                PolicyItem::Table { .. } => None,
            })
            .collect();
        assert_eq!(keys, ["list = [ \"x\", \"y\", ]", "next = 1"]);
    }
}
