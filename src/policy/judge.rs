//! The judge: [`Policy::judge`] turns a rule's [`Violation`] into a [`Finding`]
//! under the policy in force — the rule's `[rules.NAME]` table (action, exceptions,
//! reply text), `[clamav] on_failure` for clamd's failures, and the global mode.
//! Every rule goes through here, the daemon's own faults included, so monitor mode,
//! tags and replies work the same way for all of them.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Mode, Policy};
use crate::address;
use crate::message::Message;
use crate::quarantine::tag::PolicyTag;
use crate::rule::{Control, OnFailure, RuleAction, Violation};

use crate::verdict::{Action, Finding, HeaderEdit, Reason, SmtpReply, TEMPFAIL_TEXT};

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
        let rule = violation.rule;
        let reason = Reason {
            rule: rule.name.to_owned(),
            article: rule.article.to_owned(),
            detail: violation.detail.clone(),
            path: violation.path.clone(),
        };
        let tag = || HeaderEdit::Add {
            name: self.headers.tag_header.clone(),
            value: PolicyTag {
                rule: rule.name.to_owned(),
                detail: ascii_only(&violation.detail),
                article: ascii_only(rule.article),
                file: violation.var("file").map(ascii_only).unwrap_or_default(),
            }
            .render(),
        };
        let finding = |action, reply: Option<SmtpReply>, headers| Finding {
            action,
            reason: reason.clone(),
            reply,
            headers,
            monitor_action: None,
        };
        // In monitor mode: what enforcing would have done instead.
        let monitored = |enforced: Action| {
            let mut f = finding(Action::Accept, None, vec![tag()]);
            f.monitor_action = Some(enforced);
            f
        };
        let tempfail_reply = |text: &str| Some(SmtpReply::new(451, "4.7.1", text));
        let action = match rule.control {
            Control::Fixed => rule.default_action,
            Control::ClamavOnFailure => match (self.mode, self.clamav.on_failure) {
                (_, OnFailure::Accept) => return Some(finding(Action::Accept, None, vec![])),
                (Mode::Monitor, OnFailure::Tempfail) => return Some(monitored(Action::Tempfail)),
                (Mode::Monitor, OnFailure::Reject) => return Some(monitored(Action::Reject)),
                (Mode::Enforce, OnFailure::Tempfail) => {
                    let reply = tempfail_reply(TEMPFAIL_TEXT);
                    return Some(finding(Action::Tempfail, reply, vec![]));
                }
                (Mode::Enforce, OnFailure::Reject) => RuleAction::Reject,
            },
            Control::RulesTable => {
                let settings = self.rule_settings(rule.name);
                if !self.rule_enabled(rule.name) || self.excepted(settings, msg) {
                    return None;
                }
                settings
                    .and_then(|s| s.action)
                    .unwrap_or(rule.default_action)
            }
        };
        let settings = self.rule_settings(rule.name);
        let template = settings
            .and_then(|s| s.reply.as_deref())
            .unwrap_or(rule.reply);
        let hide = settings.and_then(|s| s.hide_details).unwrap_or(false);
        let text = render_template(template, violation, hide);
        // Monitor mode refuses nothing, except where the daemon protects itself.
        let enforce = self.mode == Mode::Enforce || rule.control == Control::Fixed;
        Some(match (enforce, action) {
            (false, RuleAction::Reject) => monitored(Action::Reject),
            (false, RuleAction::Tempfail) => monitored(Action::Tempfail),
            (false, RuleAction::Quarantine) => monitored(Action::Quarantine),
            (false, RuleAction::Discard) => monitored(Action::Discard),
            (_, RuleAction::Tag) => finding(Action::Accept, None, vec![tag()]),
            (true, RuleAction::Reject) => finding(
                Action::Reject,
                Some(SmtpReply::new(rule.code, rule.enhanced, text)),
                vec![],
            ),
            (true, RuleAction::Tempfail) => {
                finding(Action::Tempfail, tempfail_reply(&text), vec![])
            }
            (true, RuleAction::Quarantine) => finding(Action::Quarantine, None, vec![tag()]),
            (true, RuleAction::Discard) => finding(Action::Discard, None, vec![]),
        })
    }

    /// True when the rule's exceptions cover the message: its envelope sender, or
    /// every one of its recipients.
    fn excepted(&self, settings: Option<&RuleSettings>, msg: &Message) -> bool {
        let Some(s) = settings else {
            return false;
        };
        let sender = &msg.envelope.sender;
        if !sender.is_empty()
            && s.except_senders
                .iter()
                .any(|e| address::matches_entry(sender, e))
        {
            return true;
        }
        let rcpts = &msg.envelope.recipients;
        !rcpts.is_empty()
            && rcpts.iter().all(|r| {
                s.except_recipients
                    .iter()
                    .any(|e| address::matches_entry(r, e))
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
    use crate::rules::attachments::EXECUTABLE;

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
        Violation::new(&EXECUTABLE, "\"hồ sơ.exe\": PE").with("file", "hồ sơ.exe")
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
        let HeaderEdit::Add { value, .. } = &f.headers[0] else {
            unreachable!()
        };
        let tag = PolicyTag::parse(value).unwrap();
        assert_eq!(
            (tag.rule.as_str(), tag.article.as_str(), tag.file.as_str()),
            ("executable", "Dieu 4 khoan 7", "ho so.exe")
        );
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
    fn memory_budget_defers_in_every_mode() {
        let v = crate::rules::budget::over_budget(10, 5);
        for mode in [Mode::Enforce, Mode::Monitor] {
            let p = Policy {
                mode,
                ..Default::default()
            };
            let f = p.judge(&v, &message("a@x.test", &["b@y.test"])).unwrap();
            assert_eq!(f.action, Action::Tempfail);
            let reply = f.reply.unwrap();
            assert_eq!((reply.code, reply.lines[0].as_str()), (451, TEMPFAIL_TEXT));
            assert_eq!(f.reason.rule, "memory_budget");
        }
    }
}
