//! The signals of automatic forwarding, one named check each, and the guards that
//! keep what is not forwarding (lists, auto-replies, bounces, a person's
//! redirect) from tripping the checks that such mail can also set off.
//!
//! Each signal on a message shaped like the real system's: `fixtures/forwarding/`
//! (its README.md lists the cases).

use crate::address;
use crate::message::Message;
use crate::message::unfold;
use crate::policy::Policy;

use super::{Direction, ForwardingPolicy};

/// How much one signal proves on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strength {
    /// Enough alone.
    Strong,
    /// Also set by things that are not forwarding: counts only together with
    /// another signal.
    Weak,
}

impl Strength {
    pub fn as_str(self) -> &'static str {
        match self {
            Strength::Strong => "strong",
            Strength::Weak => "weak",
        }
    }
}

/// Kinds of mail that are not forwarding but can carry some signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// `List-Id`, `List-Unsubscribe`, `List-Post`, `Precedence: list|bulk`, a
    /// `-bounces` or `owner-` envelope sender.
    MailingList,
    /// `Auto-Submitted: auto-replied` (or another automatic value but
    /// `auto-forwarded`), `X-Autoreply`, "Automatic reply:" subjects.
    AutoReply,
    /// Null envelope sender, or a `multipart/report` (DSN, MDN).
    Bounce,
    /// `Resent-*` headers on a message sent with a SASL login: a person's
    /// "Redirect" in a mail client (RFC 5322 3.6.6), not server-side forwarding.
    ManualRedirect,
}

impl Guard {
    pub fn as_str(self) -> &'static str {
        match self {
            Guard::MailingList => "mailing_list",
            Guard::AutoReply => "auto_reply",
            Guard::Bounce => "bounce",
            Guard::ManualRedirect => "manual_redirect",
        }
    }
}

/// What a signal found: the forwarding mailbox when the signal names it
/// (an address, or a bare domain such as `yandex.ru`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hit {
    pub mailbox: Option<String>,
}

impl Hit {
    fn mailbox(m: impl Into<String>) -> Option<Hit> {
        Some(Hit {
            mailbox: Some(m.into()),
        })
    }
}

/// One named check.
pub struct Signal {
    /// Stable snake_case name: logs, metrics, `forwarding.disabled_signals`.
    pub name: &'static str,
    pub outbound: bool,
    pub inbound: bool,
    pub strength: Strength,
    /// The kinds of mail on which this check does not count.
    pub suppressed_by: &'static [Guard],
    /// One line for documentation and `check-config`.
    pub description: &'static str,
    pub(super) check: fn(&Ctx, Direction) -> Option<Hit>,
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signal")
            .field("name", &self.name)
            .field("outbound", &self.outbound)
            .field("inbound", &self.inbound)
            .field("strength", &self.strength)
            .finish()
    }
}

impl Signal {
    pub fn applies(&self, direction: Direction) -> bool {
        match direction {
            Direction::Outbound => self.outbound,
            Direction::Inbound => self.inbound,
        }
    }
}

use Guard::*;
use Strength::*;

const NO_GUARD: &[Guard] = &[];

/// Every signal, in the order findings list them.
pub static SIGNALS: &[Signal] = &[
    Signal {
        name: "gmail_caf_sender",
        outbound: false,
        inbound: true,
        strength: Strong,
        suppressed_by: NO_GUARD,
        description: "envelope sender user+caf_=dest=domain@ (Gmail auto-forward)",
        check: gmail_caf_sender,
    },
    Signal {
        name: "gmail_forwarding_confirmation",
        outbound: false,
        inbound: true,
        strength: Strong,
        suppressed_by: NO_GUARD,
        description: "Gmail's forwarding confirmation from forwarding-noreply@google.com (blocks setting Gmail forwarding up)",
        check: gmail_forwarding_confirmation,
    },
    Signal {
        name: "srs_sender",
        outbound: true,
        inbound: true,
        strength: Strong,
        suppressed_by: NO_GUARD,
        description: "envelope sender rewritten by SRS: SRS0=... or SRS1=...",
        check: srs_sender,
    },
    Signal {
        name: "ms_srs_sender",
        outbound: true,
        inbound: true,
        strength: Strong,
        suppressed_by: NO_GUARD,
        description: "envelope sender <mailbox>+SRS=...@ (Microsoft 365 / Outlook.com forwarding)",
        check: ms_srs_sender,
    },
    Signal {
        name: "ms_srs_bounces",
        outbound: true,
        inbound: true,
        strength: Weak,
        suppressed_by: NO_GUARD,
        description: "envelope sender bounces+SRS=...@ (Microsoft 365; also plain relaying)",
        check: ms_srs_bounces,
    },
    Signal {
        name: "foreign_sender_internal_client",
        outbound: true,
        inbound: false,
        strength: Strong,
        suppressed_by: &[AutoReply, Bounce],
        description: "envelope sender outside the local domains, from an internal client (network or outbound daemon_name) without SASL login",
        check: foreign_sender_internal_client,
    },
    Signal {
        name: "local_sender_foreign_from",
        outbound: true,
        inbound: false,
        strength: Strong,
        suppressed_by: &[MailingList, AutoReply, Bounce],
        description: "envelope sender local, From: outside the local domains, no SASL login (Zimbra redirect)",
        check: local_sender_foreign_from,
    },
    Signal {
        name: "delivered_to_local",
        outbound: true,
        inbound: false,
        strength: Strong,
        suppressed_by: &[MailingList, Bounce, ManualRedirect],
        description: "Delivered-To: names a local address (Postfix .forward, Dovecot, Gmail)",
        check: delivered_to_local,
    },
    Signal {
        name: "x_original_to_local",
        outbound: true,
        inbound: false,
        strength: Strong,
        suppressed_by: &[MailingList, Bounce, ManualRedirect],
        description: "X-Original-To: names a local address",
        check: x_original_to_local,
    },
    Signal {
        name: "delivered_to_foreign",
        outbound: false,
        inbound: true,
        strength: Strong,
        suppressed_by: &[MailingList, Bounce],
        description: "Delivered-To: names an address outside the local domains (the mailbox that forwarded)",
        check: delivered_to_foreign,
    },
    Signal {
        name: "x_forwarded_to",
        outbound: true,
        inbound: true,
        strength: Strong,
        suppressed_by: &[ManualRedirect],
        description: "X-Forwarded-To: names a local address or a recipient (Gmail)",
        check: x_forwarded_to,
    },
    Signal {
        name: "x_forwarded_for",
        outbound: true,
        inbound: true,
        strength: Strong,
        suppressed_by: &[ManualRedirect],
        description: "X-Forwarded-For: names a local address or a recipient (Gmail)",
        check: x_forwarded_for,
    },
    Signal {
        name: "exchange_forwarding_loop",
        outbound: true,
        inbound: true,
        strength: Strong,
        suppressed_by: &[ManualRedirect],
        description: "X-MS-Exchange-ForwardingLoop (Exchange / Microsoft 365 forwarding)",
        check: exchange_forwarding_loop,
    },
    Signal {
        name: "exchange_inbox_rules_loop",
        outbound: true,
        inbound: true,
        strength: Weak,
        suppressed_by: &[AutoReply, Bounce, ManualRedirect],
        description: "X-MS-Exchange-Inbox-Rules-Loop (inbox rules; also on out-of-office replies)",
        check: exchange_inbox_rules_loop,
    },
    Signal {
        name: "exchange_rules_agent",
        outbound: true,
        inbound: true,
        strength: Strong,
        suppressed_by: &[AutoReply, Bounce, ManualRedirect],
        description: "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent",
        check: exchange_rules_agent,
    },
    Signal {
        name: "sieve_redirect",
        outbound: true,
        inbound: true,
        strength: Strong,
        suppressed_by: &[ManualRedirect],
        description: "X-Sieve-Redirected-From (Dovecot Pigeonhole redirect)",
        check: sieve_redirect,
    },
    Signal {
        name: "zimbra_forwarded",
        outbound: true,
        inbound: true,
        strength: Strong,
        suppressed_by: &[AutoReply, Bounce, ManualRedirect],
        description: "X-Zimbra-Forwarded (Zimbra filter redirect; auto-replies and read receipts excluded)",
        check: zimbra_forwarded,
    },
    Signal {
        name: "auto_submitted_forwarded",
        outbound: true,
        inbound: true,
        strength: Strong,
        suppressed_by: NO_GUARD,
        description: "Auto-Submitted: auto-forwarded",
        check: auto_submitted_forwarded,
    },
    Signal {
        name: "yandex_forward",
        outbound: false,
        inbound: true,
        strength: Strong,
        suppressed_by: NO_GUARD,
        description: "X-Yandex-Forward (Yandex forwarding)",
        check: yandex_forward,
    },
    Signal {
        name: "mailru_forward",
        outbound: false,
        inbound: true,
        strength: Strong,
        suppressed_by: NO_GUARD,
        description: "X-MailRu-Forward (Mail.ru forwarding)",
        check: mailru_forward,
    },
    Signal {
        name: "yahoo_forward",
        outbound: false,
        inbound: true,
        strength: Strong,
        suppressed_by: NO_GUARD,
        description: "X-Yahoo-Forwarded: from A to B (old Yahoo samples; unverified today)",
        check: yahoo_forward,
    },
];

/// Looks a signal up by name.
pub fn signal(name: &str) -> Option<&'static Signal> {
    SIGNALS.iter().find(|s| s.name == name)
}

/// What the checks look at, computed once per message.
pub struct Ctx<'a> {
    pub msg: &'a Message,
    pub policy: &'a Policy,
    pub fwd: &'a ForwardingPolicy,
    /// Envelope sender, lowercased; empty for `<>`.
    pub sender: String,
    pub sender_domain: Option<String>,
    pub auth: Option<&'a str>,
    pub internal_client: bool,
    /// Addresses in `From:`, lowercased.
    pub from: Vec<String>,
    pub recipients: Vec<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(msg: &'a Message, policy: &'a Policy) -> Ctx<'a> {
        let fwd = &policy.forwarding;
        let sender = address::bare(&msg.envelope.sender).to_ascii_lowercase();
        let sender_domain = address::domain(&sender);
        let from = msg
            .header_values("From")
            .flat_map(address::in_header)
            .collect();
        let recipients = msg
            .envelope
            .recipients
            .iter()
            .map(|r| address::bare(r).to_ascii_lowercase())
            .collect();
        Ctx {
            msg,
            policy,
            fwd,
            sender,
            sender_domain,
            auth: msg.auth_login(),
            internal_client: fwd.is_internal_client(msg),
            from,
            recipients,
        }
    }

    pub fn is_local_addr(&self, addr: &str) -> bool {
        address::domain(addr).is_some_and(|d| self.policy.domains.is_local(&d))
    }

    fn is_recipient(&self, addr: &str) -> bool {
        self.recipients.iter().any(|r| r.eq_ignore_ascii_case(addr))
    }

    /// The envelope sender's local part.
    fn sender_local(&self) -> &str {
        self.sender
            .rsplit_once('@')
            .map(|(l, _)| l)
            .unwrap_or(&self.sender)
    }

    fn header_addresses(&self, name: &str) -> Vec<String> {
        self.msg
            .header_values(name)
            .flat_map(address::in_header)
            .collect()
    }

    fn has_header(&self, name: &str) -> bool {
        self.msg.header_values(name).next().is_some()
    }

    /// The first value of a header, unfolded and trimmed.
    fn first(&self, name: &str) -> Option<String> {
        self.msg.header_values(name).next().map(unfold)
    }

    /// The guards that hold for this message.
    pub fn guards(&self) -> Vec<Guard> {
        let mut g = Vec::new();
        if self.is_mailing_list() {
            g.push(MailingList);
        }
        if self.is_auto_reply() {
            g.push(AutoReply);
        }
        if self.is_bounce() {
            g.push(Bounce);
        }
        if self.auth.is_some()
            && (self.has_header("Resent-From") || self.has_header("Resent-Sender"))
        {
            g.push(ManualRedirect);
        }
        g
    }

    fn is_mailing_list(&self) -> bool {
        if ["List-Id", "List-Unsubscribe", "List-Post"]
            .iter()
            .any(|h| self.has_header(h))
        {
            return true;
        }
        if let Some(p) = self.first("Precedence")
            && matches!(p.to_ascii_lowercase().as_str(), "list" | "bulk")
        {
            return true;
        }
        let local = self.sender_local();
        local.ends_with("-bounces")
            || local.contains("-bounces+")
            || local.contains("-bounces=")
            || local.starts_with("owner-")
            || local.ends_with("-owner")
    }

    fn is_auto_reply(&self) -> bool {
        if let Some(v) = self.first("Auto-Submitted")
            && matches!(
                auto_submitted_keyword(&v).as_str(),
                "auto-replied" | "auto-generated" | "auto-notified"
            )
        {
            return true;
        }
        if self.has_header("X-Autoreply") || self.has_header("X-Autorespond") {
            return true;
        }
        if self
            .first("Precedence")
            .is_some_and(|p| p.eq_ignore_ascii_case("auto_reply"))
        {
            return true;
        }
        let subject = self.first("Subject").unwrap_or_default().to_lowercase();
        [
            "automatic reply:",
            "auto:",
            "autoreply:",
            "out of office:",
            "trả lời tự động:",
        ]
        .iter()
        .any(|p| subject.starts_with(p))
    }

    fn is_bounce(&self) -> bool {
        if self.sender.is_empty() {
            return true;
        }
        self.first("Content-Type").is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .split(';')
                .next()
                .is_some_and(|t| t.trim() == "multipart/report")
        })
    }
}

/// The keyword of an `Auto-Submitted:` value, lowercased, without parameters or
/// comments (`auto-replied (zimbra; vacation)` → `auto-replied`).
pub fn auto_submitted_keyword(value: &str) -> String {
    unfold(value)
        .split([';', '(', ' ', '\t'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

// ---- the checks ----

fn gmail_caf_sender(ctx: &Ctx, _: Direction) -> Option<Hit> {
    let local = ctx.sender_local();
    let (user, _) = local.split_once("+caf_=")?;
    let domain = ctx.sender_domain.as_deref()?;
    Hit::mailbox(format!("{user}@{domain}"))
}

const GMAIL_CONFIRMATION_SENDER: &str = "forwarding-noreply@google.com";

fn gmail_forwarding_confirmation(ctx: &Ctx, _: Direction) -> Option<Hit> {
    let from_google = ctx.from.iter().any(|a| a == GMAIL_CONFIRMATION_SENDER)
        || ctx.sender == GMAIL_CONFIRMATION_SENDER;
    if !from_google {
        return None;
    }
    // The subject names the Gmail address asking to forward: "(#123) Gmail
    // Forwarding Confirmation - Receive Mail from a@gmail.com", localised.
    let asking = ctx
        .first("Subject")
        .map(|s| address::in_header(&s))
        .and_then(|a| a.into_iter().next());
    Hit::mailbox(asking.unwrap_or_else(|| "gmail.com".to_owned()))
}

fn srs_sender(ctx: &Ctx, _: Direction) -> Option<Hit> {
    let local = ctx.sender_local();
    let is_srs = ["srs0", "srs1"].iter().any(|p| {
        local
            .strip_prefix(p)
            .is_some_and(|r| r.starts_with(['=', '+', '-']))
    });
    is_srs.then(|| Hit {
        mailbox: ctx.sender_domain.clone(),
    })
}

fn ms_srs_sender(ctx: &Ctx, _: Direction) -> Option<Hit> {
    let local = ctx.sender_local();
    let (mbox, _) = local.split_once("+srs=")?;
    if mbox.is_empty() || mbox == "bounces" {
        return None;
    }
    Hit::mailbox(format!("{mbox}@{}", ctx.sender_domain.as_deref()?))
}

fn ms_srs_bounces(ctx: &Ctx, _: Direction) -> Option<Hit> {
    ctx.sender_local().starts_with("bounces+srs=").then(|| Hit {
        mailbox: ctx.sender_domain.clone(),
    })
}

fn foreign_sender_internal_client(ctx: &Ctx, _: Direction) -> Option<Hit> {
    let domain = ctx.sender_domain.as_deref()?;
    (ctx.internal_client && ctx.auth.is_none() && !ctx.policy.domains.is_local(domain))
        .then(Hit::default)
}

fn local_sender_foreign_from(ctx: &Ctx, _: Direction) -> Option<Hit> {
    if ctx.auth.is_some() || ctx.from.is_empty() || !ctx.is_local_addr(&ctx.sender) {
        return None;
    }
    ctx.from.iter().all(|a| !ctx.is_local_addr(a)).then(|| Hit {
        mailbox: Some(ctx.sender.clone()),
    })
}

fn delivered_to_local(ctx: &Ctx, _: Direction) -> Option<Hit> {
    ctx.header_addresses("Delivered-To")
        .into_iter()
        .find(|a| ctx.is_local_addr(a))
        .and_then(Hit::mailbox)
}

fn x_original_to_local(ctx: &Ctx, _: Direction) -> Option<Hit> {
    ctx.header_addresses("X-Original-To")
        .into_iter()
        .find(|a| ctx.is_local_addr(a))
        .and_then(Hit::mailbox)
}

fn delivered_to_foreign(ctx: &Ctx, _: Direction) -> Option<Hit> {
    ctx.header_addresses("Delivered-To")
        .into_iter()
        .find(|a| !ctx.is_local_addr(a))
        .and_then(Hit::mailbox)
}

/// The forwarding mailbox named by Gmail's `X-Forwarded-For: <from> <to>`.
fn gmail_forwarder(ctx: &Ctx) -> Option<String> {
    ctx.header_addresses("X-Forwarded-For").into_iter().next()
}

fn names_local_or_recipient(ctx: &Ctx, addrs: &[String]) -> bool {
    addrs
        .iter()
        .any(|a| ctx.is_local_addr(a) || ctx.is_recipient(a))
}

fn x_forwarded_to(ctx: &Ctx, _: Direction) -> Option<Hit> {
    names_local_or_recipient(ctx, &ctx.header_addresses("X-Forwarded-To")).then(|| Hit {
        mailbox: gmail_forwarder(ctx),
    })
}

fn x_forwarded_for(ctx: &Ctx, _: Direction) -> Option<Hit> {
    names_local_or_recipient(ctx, &ctx.header_addresses("X-Forwarded-For")).then(|| Hit {
        mailbox: gmail_forwarder(ctx),
    })
}

/// The header's presence, with the first address it names as the mailbox.
fn header_hit(ctx: &Ctx, header: &str) -> Option<Hit> {
    ctx.has_header(header).then(|| Hit {
        mailbox: ctx.header_addresses(header).into_iter().next(),
    })
}

fn exchange_forwarding_loop(ctx: &Ctx, _: Direction) -> Option<Hit> {
    header_hit(ctx, "X-MS-Exchange-ForwardingLoop")
}

fn exchange_inbox_rules_loop(ctx: &Ctx, _: Direction) -> Option<Hit> {
    header_hit(ctx, "X-MS-Exchange-Inbox-Rules-Loop")
}

fn exchange_rules_agent(ctx: &Ctx, _: Direction) -> Option<Hit> {
    let agent = ctx
        .msg
        .header_values("X-MS-Exchange-Generated-Message-Source")
        .any(|v| unfold(v).eq_ignore_ascii_case("Mailbox Rules Agent"));
    if !agent {
        return None;
    }
    let mailbox = ctx
        .header_addresses("X-MS-Exchange-ForwardingLoop")
        .into_iter()
        .chain(ctx.header_addresses("X-MS-Exchange-Inbox-Rules-Loop"))
        .next();
    Some(Hit { mailbox })
}

fn sieve_redirect(ctx: &Ctx, _: Direction) -> Option<Hit> {
    header_hit(ctx, "X-Sieve-Redirected-From")
}

fn zimbra_forwarded(ctx: &Ctx, _: Direction) -> Option<Hit> {
    // Zimbra writes the account name (an address).
    header_hit(ctx, "X-Zimbra-Forwarded")
}

fn auto_submitted_forwarded(ctx: &Ctx, _: Direction) -> Option<Hit> {
    ctx.msg
        .header_values("Auto-Submitted")
        .any(|v| auto_submitted_keyword(v) == "auto-forwarded")
        .then(Hit::default)
}

/// The provider's mailbox for provider-specific headers that name nobody: the
/// envelope sender when it is at that provider, else the provider's main domain.
fn provider_mailbox(ctx: &Ctx, families: &[&str], main: &str) -> Option<Hit> {
    let at_provider = ctx
        .sender_domain
        .as_deref()
        .is_some_and(|d| families.iter().any(|f| address::domain_matches(d, f)));
    if at_provider {
        Hit::mailbox(ctx.sender.clone())
    } else {
        Hit::mailbox(main)
    }
}

fn yandex_forward(ctx: &Ctx, _: Direction) -> Option<Hit> {
    if !ctx.has_header("X-Yandex-Forward") {
        return None;
    }
    provider_mailbox(ctx, &["yandex.ru", "yandex.com", "ya.ru"], "yandex.ru")
}

fn mailru_forward(ctx: &Ctx, _: Direction) -> Option<Hit> {
    if !ctx.has_header("X-MailRu-Forward") {
        return None;
    }
    provider_mailbox(ctx, &["mail.ru", "bk.ru", "inbox.ru", "list.ru"], "mail.ru")
}

fn yahoo_forward(ctx: &Ctx, _: Direction) -> Option<Hit> {
    let value = ctx.first("X-Yahoo-Forwarded")?;
    // "from a@yahoo.com to b@bacgiang.gov.vn"
    let lower = value.to_ascii_lowercase();
    let from = lower
        .split_once("from ")
        .map(|(_, r)| r.split(" to ").next().unwrap_or(r))
        .and_then(|f| address::in_header(f).into_iter().next());
    match from {
        Some(a) => Hit::mailbox(a),
        None => provider_mailbox(ctx, &["yahoo.com"], "yahoo.com"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for s in SIGNALS {
            assert!(seen.insert(s.name), "duplicate {}", s.name);
            assert!(
                s.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                s.name
            );
            assert!(s.outbound || s.inbound, "{} has no direction", s.name);
        }
    }
}
