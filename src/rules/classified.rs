//! Classified documents must not leave the state network (Điều 15 khoản 2): a
//! message with any recipient outside the state domains (`[domains] state` and
//! `local`) whose Subject, body text or attached documents carry a
//! classification stamp ("MẬT", "TỐI MẬT", "TUYỆT MẬT"; src/inspect/text/)
//! gets the rule's action, by default the hold queue, for the whole message.
//! Mail between state mailboxes is not affected. Documents whose text cannot be
//! read for stamps are not refused by this rule: the report counts and logs
//! them ([`unreadable_documents`]).

use super::attachments::{long_path, short_path};
use super::{Detector, Evidence};
use crate::address;
use crate::inspect::names::decode_rfc2047;
use crate::inspect::text::DocumentText;
use crate::inspect::text::stamp::subject_stamp;
use crate::inspect::{FileFacts, Inspection};
use crate::message::{Message, unfold};
use crate::policy::Policy;
use crate::rule::{Control, Rule, RuleAction, Violation};

pub const CLASSIFIED: Rule = Rule {
    name: "classified",
    article: "Điều 15 khoản 2",
    default_action: RuleAction::Quarantine,
    code: 550,
    enhanced: "5.7.1",
    reply: "Thu co tai lieu dong dau \"{signal}\" ({file}) khong duoc gui ra ngoai mang cong vu (Quy che, Dieu 15 khoan 2) / classified content may not leave the state network",
    control: Control::RulesTable,
};

pub const DETECTOR: Detector = Detector {
    rules: &[&CLASSIFIED],
    at_end_of_message: Some(evaluate),
};

/// Whether any recipient is outside the state domains: only then are documents
/// read for stamps (the inspection skips that work for mail between state
/// mailboxes).
pub fn reaches_outside_the_state(msg: &Message, policy: &Policy) -> bool {
    !outside_recipients(msg, policy).is_empty()
}

/// Recipients outside the state domains: the ones a stamp must not reach.
fn outside_recipients<'m>(msg: &'m Message, policy: &Policy) -> Vec<&'m str> {
    msg.envelope
        .recipients
        .iter()
        .map(|r| address::bare(r))
        .filter(|r| address::domain(r).is_some_and(|d| !policy.domains.is_state(&d)))
        .collect()
}

/// Where the stamps are: the Subject, the body texts, the documents.
fn stamps<'i>(
    msg: &Message,
    inspection: &'i Inspection,
) -> Vec<(String, &'static str, Option<&'i FileFacts>)> {
    let mut found = Vec::new();
    if let Some(subject) = msg.header_values("Subject").next()
        && let Some(stamp) = subject_stamp(&decode_rfc2047(&unfold(subject)))
    {
        found.push(("Subject".to_owned(), stamp, None));
    }
    for (place, stamp) in &inspection.body_stamps {
        found.push((place.clone(), *stamp, None));
    }
    for f in &inspection.files {
        if let Some(DocumentText::Stamp(stamp)) = &f.text {
            found.push((short_path(f), *stamp, Some(f)));
        }
    }
    found
}

/// The rule's violation for one message: one, naming the first stamp found and
/// how many places carry one.
pub fn evaluate(evidence: &Evidence<'_>) -> Vec<Violation> {
    let outside = outside_recipients(evidence.msg, evidence.policy);
    if outside.is_empty() {
        return Vec::new();
    }
    let found = stamps(evidence.msg, evidence.inspection);
    let Some((place, stamp, file)) = found.first() else {
        return Vec::new();
    };
    let where_ = match file {
        Some(f) => long_path(f),
        None => place.clone(),
    };
    let more = match found.len() {
        1 => String::new(),
        n => format!(" (and {} more places)", n - 1),
    };
    let shown: Vec<&str> = outside.iter().take(5).copied().collect();
    let detail = format!(
        "{where_}: classification stamp \"{stamp}\"{more}; recipients outside the state network: {}{}",
        shown.join(", "),
        if outside.len() > shown.len() {
            ", ..."
        } else {
            ""
        }
    );
    vec![
        Violation::new(&CLASSIFIED, detail)
            .with("file", place.clone())
            .with("signal", *stamp),
    ]
}

/// Documents whose text could not be read for stamps, with the reason: for the
/// metrics and the log line (they are not refused for it).
pub fn unreadable_documents(inspection: &Inspection) -> impl Iterator<Item = (&FileFacts, &str)> {
    inspection.files.iter().filter_map(|f| match &f.text {
        Some(DocumentText::Unreadable(reason)) => Some((f, reason.as_str())),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::inspect_message;
    use crate::policy::LimitsSection;

    fn judge(eml: &str, recipients: &[&str]) -> Vec<Violation> {
        let mut msg = Message::from_eml(eml.as_bytes());
        msg.envelope.recipients = recipients.iter().map(|r| format!("<{r}>")).collect();
        let policy = Policy::default();
        let inspection = inspect_message(eml.as_bytes(), &LimitsSection::default());
        evaluate(&Evidence {
            msg: &msg,
            policy: &policy,
            inspection: &inspection,
        })
    }

    const STAMPED_BODY: &str = "Subject: Ke hoach\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nTỐI MẬT\r\nNội dung\r\n";

    #[test]
    fn a_stamp_leaving_the_state_network_is_classified() {
        let v = judge(STAMPED_BODY, &["a@bacgiang.gov.vn", "b@gmail.com"]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].rule, &CLASSIFIED);
        assert_eq!(v[0].var("signal"), Some("TỐI MẬT"));
        assert!(v[0].detail.contains("b@gmail.com"), "{}", v[0].detail);
        assert!(!v[0].detail.contains("a@bacgiang"), "{}", v[0].detail);
    }

    #[test]
    fn state_mail_is_not_affected() {
        assert!(judge(STAMPED_BODY, &["a@bacgiang.gov.vn", "b@hanoi.gov.vn"]).is_empty());
    }

    #[test]
    fn subject_stamps_encoded_or_not() {
        let eml = "Subject: =?UTF-8?B?W03huqxUXSBL4bq/IGhv4bqhY2g=?=\r\n\r\nx\r\n";
        let v = judge(eml, &["b@gmail.com"]);
        assert_eq!(v.len(), 1, "[MẬT] Kế hoạch");
        assert_eq!(v[0].var("file"), Some("Subject"));
        let eml = "Subject: =?UTF-8?Q?M=E1=BA=ADt_kh=E1=BA=A9u_m=E1=BB=9Bi?=\r\n\r\nx\r\n";
        assert!(judge(eml, &["b@gmail.com"]).is_empty(), "Mật khẩu mới");
    }

    #[test]
    fn running_text_is_not_a_stamp() {
        let eml = "Subject: Doi mat khau\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Đổi mật khẩu, giữ bí mật.</p><h1>LUẬT BẢO VỆ BÍ MẬT NHÀ NƯỚC</h1><p>Mật độ</p>\r\n";
        assert!(judge(eml, &["b@gmail.com"]).is_empty());
    }
}
