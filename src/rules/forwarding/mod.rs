//! Automatic forwarding out of official mailboxes and into them (Điều 4 khoản 4).
//!
//! "Issued by a state agency" means the local and the state domains
//! (`[domains]`). Outbound, a message from an official mailbox to a domain in
//! scope that carries an auto-forward signal is refused; inbound, a message for a
//! local recipient that was auto-forwarded out of a mailbox in scope is refused,
//! and so is Gmail's forwarding-confirmation mail, so that such forwarding cannot
//! be set up. By default every domain outside the state domains is in scope;
//! `scope = "public"` narrows it to the public providers.
//!
//! Each signal is a named check ([`signals::SIGNALS`]); weak ones count only
//! together with another; guards keep mailing lists, auto-replies, bounces and a
//! person's redirect from tripping the checks they could set off. A person's
//! manual Forward is a new message and carries none of the signals.
//!
//! The milter sees forwarded copies only where they cross SMTP: Postfix expands
//! virtual aliases (Zimbra account forwarding) in cleanup(8) after the milter, and
//! local(8) re-injects `.forward` copies with milters off. Run the milter on the
//! outbound hop too (a second Postfix instance or the Internet relay), and name
//! that instance's `{daemon_name}` in `internal_daemon_names`.

pub mod net;
pub mod providers;
pub mod signals;

use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;

use super::Detector;
use crate::address;
use crate::message::Message;
use crate::policy::{Policy, Problem};
use crate::rule::{Control, Rule, RuleAction, Violation};

use net::Cidr;
use providers::{DEFAULT_PROVIDERS, Pattern, ProviderMatcher, parse_pattern};
use signals::{Ctx, Guard, Hit, SIGNALS, Signal, Strength};

pub const FORWARDING: Rule = Rule {
    name: "forwarding",
    article: "Điều 4 khoản 4",
    default_action: RuleAction::Reject,
    code: 550,
    enhanced: "5.7.1",
    reply: "Khong duoc tu dong chuyen tiep thu cong vu sang hop thu khong do co quan nha nuoc cap va nguoc lai (Quy che, Dieu 4 khoan 4) / automatic forwarding not allowed",
    control: Control::RulesTable,
};

/// Called by the pipeline, which keeps the finding as a fact of the decision.
pub const DETECTOR: Detector = Detector {
    rules: &[&FORWARDING],
    at_end_of_message: None,
};

/// Which domains outside the state domains the rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every domain that is neither local nor a state domain (the regulation's
    /// letter).
    #[default]
    All,
    /// Only the public providers.
    Public,
}

/// A forwarding the department approved: `from` forwards to `to`. Each side is an
/// address (`user@domain`) or a domain (covering its subdomains).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovedPair {
    pub from: String,
    pub to: String,
}

/// `[forwarding]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardingPolicy {
    /// Turns the forwarding checks off (`false`); `[rules.forwarding]` still sets
    /// the action.
    pub enabled: bool,
    /// `all` (default) or `public`.
    pub scope: Scope,
    /// Public providers: domains (covering subdomains) and `name.*` patterns,
    /// where `*` stands for one or more trailing labels. Local and state domains
    /// never count as public.
    pub public_providers: Vec<String>,
    /// More providers, one a line (`#` comments), relative to the policy file's
    /// directory; read again on every reload.
    pub providers_file: Option<String>,
    /// Clients that are the organisation's own mail servers (CIDR).
    pub internal_networks: Vec<String>,
    /// Postfix `{daemon_name}` values of the outbound instance: every client of
    /// such an instance counts as internal.
    pub internal_daemon_names: Vec<String>,
    /// Forwardings the department approved.
    pub approved_pairs: Vec<ApprovedPair>,
    /// Signals switched off, by name.
    pub disabled_signals: Vec<String>,
    /// Patterns read from `providers_file` by [`ForwardingPolicy::prepare`].
    #[serde(skip)]
    extra_providers: Vec<Pattern>,
    #[serde(skip)]
    matcher: OnceLock<ProviderMatcher>,
}

impl Default for ForwardingPolicy {
    fn default() -> Self {
        ForwardingPolicy {
            enabled: true,
            scope: Scope::All,
            public_providers: DEFAULT_PROVIDERS.iter().map(|s| s.to_string()).collect(),
            providers_file: None,
            internal_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            internal_daemon_names: Vec::new(),
            approved_pairs: Vec::new(),
            disabled_signals: Vec::new(),
            extra_providers: Vec::new(),
            matcher: OnceLock::new(),
        }
    }
}

impl ForwardingPolicy {
    /// Reads the admins' file of extra provider domains, if configured.
    pub fn prepare(&mut self, policy_path: &Path) -> Vec<Problem> {
        self.extra_providers.clear();
        self.matcher = OnceLock::new();
        let Some(file) = self.providers_file.as_deref() else {
            return Vec::new();
        };
        let path = policy_path
            .parent()
            .unwrap_or_else(|| Path::new(""))
            .join(file);
        match providers::read_providers_file(&path) {
            Ok(patterns) => {
                self.extra_providers = patterns;
                Vec::new()
            }
            Err(errors) => errors
                .into_iter()
                .map(|e| Problem::error("forwarding.providers_file", e))
                .collect(),
        }
    }

    pub fn validate(&self, policy: &Policy, _policy_path: &Path) -> Vec<Problem> {
        let mut problems = Vec::new();
        for n in &self.internal_networks {
            if let Err(e) = Cidr::parse(n) {
                problems.push(Problem::error("forwarding.internal_networks", e));
            }
        }
        for d in &self.internal_daemon_names {
            if d.trim().is_empty() || d.contains(char::is_whitespace) {
                problems.push(Problem::error(
                    "forwarding.internal_daemon_names",
                    format!("{d:?} is not a Postfix service name (master.cf -o syslog_name or the service name)"),
                ));
            }
        }
        for name in &self.disabled_signals {
            if signals::signal(name).is_none() {
                let known: Vec<_> = SIGNALS.iter().map(|s| s.name).collect();
                problems.push(Problem::error(
                    "forwarding.disabled_signals",
                    format!(
                        "unknown signal {name:?}; the signals are {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        for p in &self.public_providers {
            match parse_pattern(p) {
                Err(e) => problems.push(Problem::error("forwarding.public_providers", e)),
                Ok(Pattern::Domain(d)) if policy.domains.is_state(&d) => {
                    problems.push(Problem::warning(
                        "forwarding.public_providers",
                        format!("{p:?} is a local or state domain and never counts as public"),
                    ))
                }
                Ok(_) => {}
            }
        }
        for p in &self.extra_providers {
            if let Pattern::Domain(d) = p
                && policy.domains.is_state(d)
            {
                problems.push(Problem::warning(
                    "forwarding.providers_file",
                    format!("{d:?} is a local or state domain and never counts as public"),
                ));
            }
        }
        for (i, pair) in self.approved_pairs.iter().enumerate() {
            for (side, value) in [("from", &pair.from), ("to", &pair.to)] {
                if !is_address_or_domain(value) {
                    problems.push(Problem::error(
                        "forwarding.approved_pairs",
                        format!(
                            "entry {}: {side} = {value:?} is not an address or a domain",
                            i + 1
                        ),
                    ));
                }
            }
        }
        for (i, pair) in self.approved_pairs.iter().enumerate() {
            let official = |v: &str| {
                let d = v.rsplit_once('@').map_or(v, |(_, d)| d);
                policy.domains.is_local(d)
            };
            if is_address_or_domain(&pair.from)
                && is_address_or_domain(&pair.to)
                && !official(&pair.from)
                && !official(&pair.to)
            {
                problems.push(Problem::warning(
                    "forwarding.approved_pairs",
                    format!(
                        "entry {}: neither {:?} nor {:?} is in a local domain; the pair approves nothing this rule would refuse",
                        i + 1,
                        pair.from,
                        pair.to
                    ),
                ));
            }
        }
        if self.enabled && self.scope == Scope::Public && self.matcher().is_empty() {
            problems.push(Problem::warning(
                "forwarding.scope",
                "scope is \"public\" but no public provider is listed: the rule covers nothing",
            ));
        }
        problems
    }

    /// The provider matcher: `public_providers` and the providers file.
    pub fn matcher(&self) -> &ProviderMatcher {
        self.matcher.get_or_init(|| {
            let listed: Vec<Pattern> = self
                .public_providers
                .iter()
                .filter_map(|p| parse_pattern(p).ok())
                .collect();
            ProviderMatcher::new(listed.iter().chain(&self.extra_providers))
        })
    }

    /// Patterns read from the providers file at the last load.
    pub fn extra_providers(&self) -> &[Pattern] {
        &self.extra_providers
    }

    /// A public provider, and neither a local nor a state domain.
    pub fn is_public(&self, policy: &Policy, domain: &str) -> bool {
        !policy.domains.is_state(domain) && self.matcher().matches(domain)
    }

    /// Whether the rule covers mail to or from this domain.
    pub fn in_scope(&self, policy: &Policy, domain: &str) -> bool {
        match self.scope {
            Scope::All => !policy.domains.is_state(domain),
            Scope::Public => self.is_public(policy, domain),
        }
    }

    pub fn signal_enabled(&self, name: &str) -> bool {
        !self.disabled_signals.iter().any(|d| d == name)
    }

    /// The client is one of the organisation's mail servers: its address is in
    /// `internal_networks`, or it reached the Postfix instance named in
    /// `internal_daemon_names`.
    pub fn is_internal_client(&self, msg: &Message) -> bool {
        if let Some(daemon) = msg.macro_value("daemon_name")
            && self.internal_daemon_names.iter().any(|d| d == daemon)
        {
            return true;
        }
        let addr = msg.connection.addr.or_else(|| {
            msg.macro_value("client_addr")
                .and_then(|a| a.trim().trim_start_matches("IPv6:").parse().ok())
        });
        let Some(addr) = addr else { return false };
        self.internal_networks
            .iter()
            .filter_map(|n| Cidr::parse(n).ok())
            .any(|n| n.contains(addr))
    }

    fn approved(&self, from: &[String], to: &[String]) -> bool {
        !to.is_empty()
            && to.iter().all(|t| {
                self.approved_pairs.iter().any(|p| {
                    address::matches_entry(t, &p.to)
                        && from.iter().any(|f| address::matches_entry(f, &p.from))
                })
            })
    }
}

fn is_address_or_domain(value: &str) -> bool {
    let v = value.trim();
    if v.is_empty() || v.contains(char::is_whitespace) {
        return false;
    }
    match v.rsplit_once('@') {
        Some((_, domain)) => !domain.is_empty() && domain.contains('.'),
        None => v.contains('.'),
    }
}

/// Which way the forwarding went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From an official mailbox to a mailbox in scope.
    Outbound,
    /// From a mailbox in scope to an official mailbox.
    Inbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// What [`detect`] found: for the violation, the log and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingFinding {
    pub direction: Direction,
    /// The signals that counted, in table order.
    pub signals: Vec<&'static str>,
    /// The other side: the recipient's domain (outbound) or the forwarding
    /// mailbox's domain (inbound).
    pub peer_domain: String,
    /// The other side is a public provider.
    pub public: bool,
    /// The forwarding mailbox, when a signal names it.
    pub mailbox: Option<String>,
}

impl ForwardingFinding {
    /// `outbound to gmail.com (public provider): signals delivered_to_local, x_forwarded_to`
    pub fn detail(&self) -> String {
        let (dir, prep) = match self.direction {
            Direction::Outbound => ("outbound", "to"),
            Direction::Inbound => ("inbound", "from"),
        };
        let public = if self.public {
            " (public provider)"
        } else {
            ""
        };
        format!(
            "{dir} {prep} {}{public}: signals {}",
            self.peer_domain,
            self.signals.join(", ")
        )
    }

    pub fn violation(&self) -> Violation {
        Violation::new(&FORWARDING, self.detail())
            .with("signal", self.signals.join(","))
            .with("direction", self.direction.as_str())
            .with("peer", self.peer_domain.clone())
    }
}

/// The rule: at most one violation, naming the direction and the signals.
pub fn evaluate(msg: &Message, policy: &Policy) -> Vec<Violation> {
    detect(msg, policy)
        .map(|f| f.violation())
        .into_iter()
        .collect()
}

/// Looks for automatic forwarding, outbound first, then inbound.
pub fn detect(msg: &Message, policy: &Policy) -> Option<ForwardingFinding> {
    let fwd = &policy.forwarding;
    if !fwd.enabled || !policy.rule_enabled(FORWARDING.name) {
        return None;
    }
    let ctx = Ctx::new(msg, policy);
    let guards = ctx.guards();
    detect_outbound(&ctx, &guards).or_else(|| detect_inbound(&ctx, &guards))
}

/// The signals of one direction that fire and are not switched off or guarded.
fn fired<'c>(ctx: &Ctx<'c>, guards: &[Guard], direction: Direction) -> Vec<(&'static Signal, Hit)> {
    SIGNALS
        .iter()
        .filter(|s| s.applies(direction) && ctx.fwd.signal_enabled(s.name))
        .filter_map(|s| {
            let hit = (s.check)(ctx, direction)?;
            if let Some(g) = s.suppressed_by.iter().find(|g| guards.contains(g)) {
                tracing::debug!(
                    signal = s.name,
                    guard = g.as_str(),
                    direction = direction.as_str(),
                    "forwarding signal ignored: not forwarding"
                );
                return None;
            }
            Some((s, hit))
        })
        .collect()
}

/// A weak signal counts only together with another.
fn enough<T>(hits: Vec<(&'static Signal, T)>) -> Vec<(&'static Signal, T)> {
    let strong = hits.iter().any(|(s, _)| s.strength == Strength::Strong);
    if strong || hits.len() >= 2 {
        hits
    } else {
        for (s, _) in &hits {
            tracing::debug!(signal = s.name, "weak forwarding signal alone: not counted");
        }
        Vec::new()
    }
}

fn domain_of(mailbox: &str) -> Option<String> {
    if mailbox.contains('@') {
        address::domain(mailbox)
    } else {
        let d = mailbox.trim().trim_end_matches('.').to_ascii_lowercase();
        (!d.is_empty()).then_some(d)
    }
}

fn detect_outbound(ctx: &Ctx, guards: &[Guard]) -> Option<ForwardingFinding> {
    let (policy, fwd) = (ctx.policy, ctx.fwd);
    let sender_local = (!ctx.sender.is_empty() && ctx.is_local_addr(&ctx.sender))
        || ctx.auth.is_some()
        || ctx.internal_client;
    if !sender_local {
        return None;
    }
    let out: Vec<(String, String)> = ctx
        .recipients
        .iter()
        .filter_map(|r| {
            let d = address::domain(r)?;
            fwd.in_scope(policy, &d).then(|| (r.clone(), d))
        })
        .collect();
    if out.is_empty() {
        return None;
    }
    let hits = enough(fired(ctx, guards, Direction::Outbound));
    if hits.is_empty() {
        return None;
    }
    // The official mailbox that forwarded: the envelope sender, the login, or a
    // local address a signal names.
    let mut from: Vec<String> = Vec::new();
    if ctx.is_local_addr(&ctx.sender) {
        from.push(ctx.sender.clone());
    }
    if let Some(a) = ctx.auth {
        from.push(a.to_ascii_lowercase());
    }
    from.extend(
        hits.iter()
            .filter_map(|(_, h)| h.mailbox.clone())
            .filter(|m| ctx.is_local_addr(m)),
    );
    let to: Vec<String> = out.iter().map(|(r, _)| r.clone()).collect();
    if fwd.approved(&from, &to) {
        tracing::debug!(
            direction = "outbound",
            "forwarding approved by forwarding.approved_pairs"
        );
        return None;
    }
    let peer = out
        .iter()
        .find(|(_, d)| fwd.is_public(policy, d))
        .unwrap_or(&out[0])
        .1
        .clone();
    Some(ForwardingFinding {
        direction: Direction::Outbound,
        signals: hits.iter().map(|(s, _)| s.name).collect(),
        public: fwd.is_public(policy, &peer),
        peer_domain: peer,
        mailbox: from.into_iter().next(),
    })
}

fn detect_inbound(ctx: &Ctx, guards: &[Guard]) -> Option<ForwardingFinding> {
    let (policy, fwd) = (ctx.policy, ctx.fwd);
    let local_rcpts: Vec<String> = ctx
        .recipients
        .iter()
        .filter(|r| ctx.is_local_addr(r))
        .cloned()
        .collect();
    if local_rcpts.is_empty() {
        return None;
    }
    // Each hit's forwarding mailbox: the one the signal names, else the envelope
    // sender, else From:. Only mailboxes in scope count.
    let fallback = if ctx.sender.is_empty() {
        ctx.from.first().cloned()
    } else {
        Some(ctx.sender.clone())
    };
    let hits: Vec<(&'static Signal, (String, String))> = fired(ctx, guards, Direction::Inbound)
        .into_iter()
        .filter_map(|(s, h)| {
            let mailbox = h.mailbox.or_else(|| fallback.clone())?;
            let domain = domain_of(&mailbox)?;
            if fwd.in_scope(policy, &domain) {
                Some((s, (mailbox, domain)))
            } else {
                tracing::debug!(
                    signal = s.name,
                    peer = %domain,
                    "forwarding signal from a mailbox outside the rule's scope"
                );
                None
            }
        })
        .collect();
    let hits = enough(hits);
    if hits.is_empty() {
        return None;
    }
    // The forwarding mailboxes (not the author in From:, who forwarded nothing).
    let mut from: Vec<String> = hits.iter().map(|(_, (m, _))| m.clone()).collect();
    from.extend(fallback.clone());
    if fwd.approved(&from, &local_rcpts) {
        tracing::debug!(
            direction = "inbound",
            "forwarding approved by forwarding.approved_pairs"
        );
        return None;
    }
    let (mailbox, peer) = hits
        .iter()
        .map(|(_, p)| p)
        .find(|(_, d)| fwd.is_public(policy, d))
        .unwrap_or(&hits[0].1)
        .clone();
    Some(ForwardingFinding {
        direction: Direction::Inbound,
        signals: hits.iter().map(|(s, _)| s.name).collect(),
        public: fwd.is_public(policy, &peer),
        peer_domain: peer,
        mailbox: mailbox.contains('@').then_some(mailbox),
    })
}

#[cfg(test)]
mod tests;
