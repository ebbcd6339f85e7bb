//! `[rules.NAME]`: what happens when a rule fires — action, exceptions, reply text —
//! and [`Policy::judge`], which turns a rule's [`Violation`] into a [`Finding`].

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Mode, Policy, address_domain, domain_matches};
use crate::message::Message;
use crate::verdict::{Action, Finding, HeaderEdit, Reason, SmtpReply, Violation};

/// What the admins can choose for a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Refuse with the rule's 5xx reply.
    Reject,
    /// Defer with 451 4.7.1; the sender retries.
    Tempfail,
    /// Accept into Postfix's hold queue.
    Quarantine,
    /// Accept and drop silently.
    Discard,
    /// Deliver with a header naming what was found.
    Tag,
}

/// A rule the filter knows, with its defaults.
#[derive(Debug, Clone, Copy)]
pub struct RuleSpec {
    pub name: &'static str,
    pub article: &'static str,
    pub default_action: RuleAction,
    pub code: u16,
    pub enhanced: &'static str,
    /// Reply template; `{file}`, `{signature}`, `{limit}`, `{size}`, `{signal}`,
    /// `{detail}` are replaced by the violation's values.
    pub default_reply: &'static str,
}

/// Every rule, in the order the log and `check-config` list them.
pub const RULES: &[RuleSpec] = &[
    RuleSpec {
        name: "message_size",
        article: "Điều 10",
        default_action: RuleAction::Reject,
        code: 552,
        enhanced: "5.3.4",
        default_reply: "Thu vuot qua kich thuoc toi da {limit} (Quy che, Dieu 10) / message exceeds the size limit of {limit}",
    },
    RuleSpec {
        name: "attachment_size",
        article: "Điều 10",
        default_action: RuleAction::Reject,
        code: 552,
        enhanced: "5.3.4",
        default_reply: "Tong dung luong tep dinh kem {size} vuot qua {limit} (Quy che, Dieu 10) / attachments total {size}, the limit is {limit}",
    },
    RuleSpec {
        name: "executable",
        article: "Điều 4 khoản 7",
        default_action: RuleAction::Reject,
        code: 550,
        enhanced: "5.7.1",
        default_reply: "Tep dinh kem \"{file}\" la tep thuc thi, bi cam (Quy che, Dieu 4 khoan 7) / executable attachment not allowed",
    },
    RuleSpec {
        name: "deceptive_name",
        article: "Điều 4 khoản 7",
        default_action: RuleAction::Reject,
        code: 550,
        enhanced: "5.7.1",
        default_reply: "Ten tep \"{file}\" chua ky tu dao chieu gay nham lan, bi cam (Quy che, Dieu 4 khoan 7) / deceptive file name not allowed",
    },
    RuleSpec {
        name: "encrypted_archive",
        article: "Điều 4 khoản 7",
        default_action: RuleAction::Reject,
        code: 550,
        enhanced: "5.7.1",
        default_reply: "Tep nen \"{file}\" co mat khau, bi han che (Quy che, Dieu 4 khoan 7) / password-protected archive not allowed",
    },
    RuleSpec {
        name: "uninspectable",
        article: "Điều 4 khoản 7",
        default_action: RuleAction::Reject,
        code: 550,
        enhanced: "5.7.1",
        default_reply: "Tep dinh kem \"{file}\" khong the kiem tra: {limit} (Quy che, Dieu 4 khoan 7) / attachment cannot be inspected",
    },
    RuleSpec {
        name: "forwarding",
        article: "Điều 4 khoản 4",
        default_action: RuleAction::Reject,
        code: 550,
        enhanced: "5.7.1",
        default_reply: "Khong duoc tu dong chuyen tiep thu cong vu sang hop thu khong do co quan nha nuoc cap va nguoc lai (Quy che, Dieu 4 khoan 4) / automatic forwarding not allowed",
    },
    RuleSpec {
        name: "virus",
        article: "Điều 4 khoản 6",
        default_action: RuleAction::Reject,
        code: 554,
        enhanced: "5.7.1",
        default_reply: "Thu chua virus {signature} (Quy che, Dieu 4 khoan 6) / virus found: {signature}",
    },
];

/// Looks a rule up by name.
pub fn rule_spec(name: &str) -> Option<&'static RuleSpec> {
    RULES.iter().find(|r| r.name == name)
}

/// One `[rules.NAME]` table. Every key is optional; unset keys take the rule's
/// default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// `reject`, `tempfail`, `quarantine`, `discard` or `tag`.
    pub action: Option<RuleAction>,
    /// Turn the rule off entirely (`false`).
    pub enabled: Option<bool>,
    /// Envelope senders the rule does not apply to: `user@domain` or `domain`
    /// (which covers its subdomains).
    #[serde(default)]
    pub except_senders: Vec<String>,
    /// Envelope recipients the rule does not apply to; the exception holds only
    /// when every recipient of the message is excepted.
    #[serde(default)]
    pub except_recipients: Vec<String>,
    /// Reply text template (ASCII; see the rule's default).
    pub reply: Option<String>,
    /// Leave the signature name out of the virus reply.
    pub hide_details: Option<bool>,
}

/// `[rules]`: settings by rule name.
pub type RulesSection = BTreeMap<String, RuleSettings>;

/// True when `address` matches an exception entry (`user@domain`, `@domain` or
/// `domain`).
pub fn address_matches(address: &str, entry: &str) -> bool {
    let address = address.trim_start_matches('<').trim_end_matches('>');
    let entry = entry.trim();
    match entry.split_once('@') {
        Some((local, domain)) if !local.is_empty() => {
            address.eq_ignore_ascii_case(entry) && !domain.is_empty()
        }
        _ => address_domain(address).is_some_and(|d| domain_matches(&d, entry)),
    }
}

impl Policy {
    fn rule_settings(&self, name: &str) -> Option<&RuleSettings> {
        self.rules.get(name)
    }

    /// False when `[rules.NAME] enabled = false`.
    pub fn rule_enabled(&self, name: &str) -> bool {
        self.rule_settings(name)
            .and_then(|s| s.enabled)
            .unwrap_or(true)
    }

    /// Decides what a violation means for this message: `None` when the rule is
    /// off or an exception covers the message, otherwise the finding with the
    /// configured action, the rendered reply and, for tag and monitor mode, the
    /// header to add.
    pub fn judge(&self, violation: &Violation, msg: &Message) -> Option<Finding> {
        let spec = rule_spec(violation.rule)?;
        let settings = self.rule_settings(spec.name);
        if !self.rule_enabled(spec.name) {
            return None;
        }
        if let Some(s) = settings {
            let sender = &msg.envelope.sender;
            if !sender.is_empty() && s.except_senders.iter().any(|e| address_matches(sender, e)) {
                return None;
            }
            let rcpts = &msg.envelope.recipients;
            if !rcpts.is_empty()
                && rcpts
                    .iter()
                    .all(|r| s.except_recipients.iter().any(|e| address_matches(r, e)))
            {
                return None;
            }
        }
        let configured = settings
            .and_then(|s| s.action)
            .unwrap_or(spec.default_action);
        let template = settings
            .and_then(|s| s.reply.as_deref())
            .unwrap_or(spec.default_reply);
        let hide = settings.and_then(|s| s.hide_details).unwrap_or(false);
        let text = render_template(template, violation, hide);
        let reason = Reason {
            rule: spec.name.to_owned(),
            article: spec.article.to_owned(),
            detail: violation.detail.clone(),
        };
        let tag = HeaderEdit::Add {
            name: self.headers.tag_header.clone(),
            value: format!("{} ({})", spec.name, ascii_only(&violation.detail)),
        };
        let (action, reply, headers) = match (self.mode, configured) {
            (Mode::Monitor, _) | (_, RuleAction::Tag) => (Action::Accept, None, vec![tag]),
            (Mode::Enforce, RuleAction::Reject) => (
                Action::Reject,
                Some(SmtpReply::new(spec.code, spec.enhanced, text)),
                vec![],
            ),
            (Mode::Enforce, RuleAction::Tempfail) => (
                Action::Tempfail,
                Some(SmtpReply::new(451, "4.7.1", text)),
                vec![],
            ),
            (Mode::Enforce, RuleAction::Quarantine) => (Action::Quarantine, None, vec![tag]),
            (Mode::Enforce, RuleAction::Discard) => (Action::Discard, None, vec![]),
        };
        Some(Finding {
            action,
            reason,
            reply,
            headers,
        })
    }
}

/// Fills `{name}` placeholders from the violation's values; unknown placeholders
/// are left as they are. `{signature}` becomes "(hidden)" when details are hidden.
fn render_template(template: &str, violation: &Violation, hide_details: bool) -> String {
    let mut out = template.to_owned();
    for (name, value) in &violation.vars {
        let value = if hide_details && *name == "signature" {
            "(hidden)".to_owned()
        } else {
            ascii_only(value)
        };
        out = out.replace(&format!("{{{name}}}"), &value);
    }
    out.replace("{detail}", &ascii_only(&violation.detail))
}

/// SMTP replies and headers carry ASCII only: Vietnamese letters lose their
/// diacritics, anything else non-printable becomes `?`.
pub fn ascii_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            ' '..='~' => out.push(c),
            'đ' => out.push('d'),
            'Đ' => out.push('D'),
            '…' => out.push_str("..."),
            '→' => out.push('>'),
            c => out.push(strip_vietnamese_diacritic(c).unwrap_or('?')),
        }
    }
    out
}

fn strip_vietnamese_diacritic(c: char) -> Option<char> {
    const GROUPS: &[(char, &str)] = &[
        ('a', "àáảãạăằắẳẵặâầấẩẫậ"),
        ('A', "ÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬ"),
        ('e', "èéẻẽẹêềếểễệ"),
        ('E', "ÈÉẺẼẸÊỀẾỂỄỆ"),
        ('i', "ìíỉĩị"),
        ('I', "ÌÍỈĨỊ"),
        ('o', "òóỏõọôồốổỗộơờớởỡợ"),
        ('O', "ÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢ"),
        ('u', "ùúủũụưừứửữự"),
        ('U', "ÙÚỦŨỤƯỪỨỬỮỰ"),
        ('y', "ỳýỷỹỵ"),
        ('Y', "ỲÝỶỸỴ"),
    ];
    GROUPS
        .iter()
        .find(|(_, set)| set.contains(c))
        .map(|(base, _)| *base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Envelope;

    fn message(sender: &str, rcpts: &[&str]) -> Message {
        Message {
            envelope: Envelope {
                sender: sender.into(),
                recipients: rcpts.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn exe() -> Violation {
        Violation::new("executable", "Điều 4 khoản 7", "\"hồ sơ.exe\": PE")
            .with("file", "hồ sơ.exe")
    }

    #[test]
    fn default_is_reject_with_article_in_reply() {
        let p = Policy::default();
        let f = p
            .judge(&exe(), &message("a@x.test", &["b@bacgiang.gov.vn"]))
            .unwrap();
        assert_eq!(f.action, Action::Reject);
        let reply = f.reply.unwrap().render();
        assert!(
            reply.starts_with("550 5.7.1 Tep dinh kem \"ho so.exe\""),
            "{reply}"
        );
        assert!(reply.contains("Dieu 4 khoan 7"));
        assert_eq!(f.reason.article, "Điều 4 khoản 7");
    }

    #[test]
    fn monitor_mode_tags_instead_of_rejecting() {
        let p = Policy {
            mode: Mode::Monitor,
            ..Default::default()
        };
        let f = p
            .judge(&exe(), &message("a@x.test", &["b@y.test"]))
            .unwrap();
        assert_eq!(f.action, Action::Accept);
        assert!(matches!(&f.headers[0], HeaderEdit::Add { name, .. } if name == "X-Congvu-Policy"));
    }

    #[test]
    fn recipient_exception_needs_every_recipient() {
        let mut p = Policy::default();
        p.rules.insert(
            "executable".into(),
            RuleSettings {
                except_recipients: vec!["it.bacgiang.gov.vn".into(), "boss@x.test".into()],
                ..Default::default()
            },
        );
        let all = message("a@x.test", &["admin@it.bacgiang.gov.vn", "BOSS@x.test"]);
        assert!(p.judge(&exe(), &all).is_none());
        let some = message("a@x.test", &["admin@it.bacgiang.gov.vn", "other@x.test"]);
        assert!(p.judge(&exe(), &some).is_some());
    }

    #[test]
    fn sender_exception_covers_whole_message() {
        let mut p = Policy::default();
        p.rules.insert(
            "executable".into(),
            RuleSettings {
                except_senders: vec!["@vendor.test".into()],
                ..Default::default()
            },
        );
        assert!(
            p.judge(&exe(), &message("x@ftp.vendor.test", &["b@y.test"]))
                .is_none()
        );
        assert!(
            p.judge(&exe(), &message("x@notvendor.test", &["b@y.test"]))
                .is_some()
        );
    }

    #[test]
    fn configured_actions_map_to_verdicts() {
        for (action, expected) in [
            (RuleAction::Tempfail, Action::Tempfail),
            (RuleAction::Quarantine, Action::Quarantine),
            (RuleAction::Discard, Action::Discard),
            (RuleAction::Tag, Action::Accept),
        ] {
            let mut p = Policy::default();
            p.rules.insert(
                "executable".into(),
                RuleSettings {
                    action: Some(action),
                    ..Default::default()
                },
            );
            let f = p
                .judge(&exe(), &message("a@x.test", &["b@y.test"]))
                .unwrap();
            assert_eq!(f.action, expected);
        }
    }

    #[test]
    fn hidden_signature() {
        let mut p = Policy::default();
        p.rules.insert(
            "virus".into(),
            RuleSettings {
                hide_details: Some(true),
                ..Default::default()
            },
        );
        let v = Violation::new("virus", "Điều 4 khoản 6", "Eicar")
            .with("signature", "Eicar-Test-Signature");
        let reply = p
            .judge(&v, &message("a@x.test", &["b@y.test"]))
            .unwrap()
            .reply
            .unwrap();
        assert!(!reply.render().contains("Eicar"));
        assert_eq!(reply.code, 554);
    }
}
