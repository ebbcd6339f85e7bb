//! Notices to the official concerned (`[notices]`, off by default): when a
//! message is quarantined, the local mailboxes it was for (or its local sender
//! when none is local) get a short notice in Vietnamese and English; when a
//! forward out of an official mailbox is refused, the mailbox the forwarding
//! signals name gets one (none named: no notice, logged). At most one per
//! mailbox and rule per `interval`.
//!
//! A notice never holds up the verdict: the daemon only queues it (a bounded
//! queue; full, the notice is dropped), and one task sends the queue by SMTP to
//! `relay` (the sandboxed unit cannot run sendmail). Every outcome is counted in
//! `congvu_milter_notices_total{result}` and failures are logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::address;
use crate::message::Message;
use crate::metrics::metrics;
use crate::pipeline::Facts;
use crate::policy::{Policy, Seconds};
use crate::rules::forwarding::Direction;
use crate::verdict::{Action, Verdict};

/// `[notices]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoticesSection {
    pub enabled: bool,
    /// SMTP server the notices are handed to, `HOST:PORT`.
    pub relay: String,
    /// At most one notice per mailbox and rule in this time.
    pub interval: Seconds,
    /// Envelope sender and From: of the notices.
    pub from: String,
}

impl Default for NoticesSection {
    fn default() -> Self {
        NoticesSection {
            enabled: false,
            relay: "127.0.0.1:25".into(),
            interval: Seconds::secs(3600),
            from: "postmaster".into(),
        }
    }
}

/// Notices waiting to be sent; past it new ones are dropped.
const QUEUE: usize = 256;
/// One SMTP conversation must end within this.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// One notice to send.
#[derive(Debug, Clone)]
struct Notice {
    relay: String,
    from: String,
    to: String,
    text: String,
}

/// The daemon's notice queue and rate limit.
#[derive(Default)]
pub struct Notifier {
    queue: Mutex<Option<mpsc::Sender<Notice>>>,
    /// When each (mailbox, rule) was last given a notice.
    last_sent: Mutex<HashMap<(String, String), Instant>>,
}

/// Why a notice is sent.
struct Occasion<'a> {
    rule: &'a str,
    article: &'a str,
    detail: &'a str,
    quarantined: bool,
}

impl Notifier {
    /// Queues the notices a verdict calls for. Called after every decision;
    /// does nothing unless `[notices] enabled`.
    pub fn after_verdict(&self, msg: &Message, verdict: &Verdict, facts: &Facts, policy: &Policy) {
        let settings = &policy.notices;
        if !settings.enabled {
            return;
        }
        match verdict.action {
            Action::Quarantine => {
                let mailboxes = concerned_by_quarantine(msg, policy);
                for reason in &verdict.reasons {
                    let occasion = Occasion {
                        rule: &reason.rule,
                        article: &reason.article,
                        detail: &reason.detail,
                        quarantined: true,
                    };
                    for mailbox in &mailboxes {
                        self.queue_one(settings, mailbox, msg, &occasion);
                    }
                }
            }
            Action::Reject | Action::Discard => {
                let Some(finding) = &facts.forwarding else {
                    return;
                };
                let Some(reason) = verdict.reasons.iter().find(|r| r.rule == "forwarding") else {
                    return;
                };
                if finding.direction != Direction::Outbound {
                    return;
                }
                let occasion = Occasion {
                    rule: &reason.rule,
                    article: &reason.article,
                    detail: &reason.detail,
                    quarantined: false,
                };
                match &finding.mailbox {
                    Some(mailbox) => self.queue_one(settings, mailbox, msg, &occasion),
                    None => {
                        metrics().notices.with_label_values(&["no_mailbox"]).inc();
                        tracing::info!(
                            queue_id = %crate::server::logging::message_id(msg),
                            "refused forward: the forwarding signals name no mailbox, no notice sent"
                        );
                    }
                }
            }
            _ => {}
        }
    }

    fn queue_one(&self, settings: &NoticesSection, mailbox: &str, msg: &Message, o: &Occasion) {
        let key = (mailbox.to_ascii_lowercase(), o.rule.to_owned());
        let now = Instant::now();
        {
            let mut last = self.last_sent.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(at) = last.get(&key)
                && now.duration_since(*at) < settings.interval.get()
            {
                metrics().notices.with_label_values(&["rate_limited"]).inc();
                return;
            }
            last.retain(|_, at| now.duration_since(*at) < settings.interval.get());
            last.insert(key, now);
        }
        let notice = Notice {
            relay: settings.relay.clone(),
            from: settings.from.clone(),
            to: mailbox.to_owned(),
            text: compose(&settings.from, mailbox, msg, o),
        };
        let Some(queue) = self.queue() else {
            metrics().notices.with_label_values(&["failed"]).inc();
            tracing::warn!(to = %mailbox, "notice not sent: no runtime to send it from");
            return;
        };
        if queue.try_send(notice).is_err() {
            metrics().notices.with_label_values(&["dropped"]).inc();
            tracing::warn!(to = %mailbox, "notice dropped: the notice queue is full");
        }
    }

    /// The queue, its sending task started on first use.
    fn queue(&self) -> Option<mpsc::Sender<Notice>> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = queue.as_ref() {
            return Some(q.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (tx, mut rx) = mpsc::channel::<Notice>(QUEUE);
        runtime.spawn(async move {
            while let Some(notice) = rx.recv().await {
                let sent = tokio::time::timeout(SMTP_TIMEOUT, send(&notice)).await;
                match sent {
                    Ok(Ok(())) => {
                        metrics().notices.with_label_values(&["sent"]).inc();
                        tracing::info!(to = %notice.to, relay = %notice.relay, "notice sent");
                    }
                    Ok(Err(e)) => {
                        metrics().notices.with_label_values(&["failed"]).inc();
                        tracing::warn!(to = %notice.to, relay = %notice.relay, "notice not sent: {e:#}");
                    }
                    Err(_) => {
                        metrics().notices.with_label_values(&["failed"]).inc();
                        tracing::warn!(to = %notice.to, relay = %notice.relay, "notice not sent: timed out");
                    }
                }
            }
        });
        *queue = Some(tx.clone());
        Some(tx)
    }
}

/// The local recipients of a quarantined message; when none is local, its
/// sender if local.
fn concerned_by_quarantine(msg: &Message, policy: &Policy) -> Vec<String> {
    let local = |a: &String| address::domain(a).is_some_and(|d| policy.domains.is_local(&d));
    let mut out: Vec<String> = msg
        .envelope
        .recipients
        .iter()
        .filter(|r| local(r))
        .cloned()
        .collect();
    if out.is_empty() && local(&msg.envelope.sender) {
        out.push(msg.envelope.sender.clone());
    }
    out.dedup();
    out
}

/// The notice, a UTF-8 text/plain message in base64 (no 8BITMIME needed).
fn compose(from: &str, to: &str, msg: &Message, o: &Occasion) -> String {
    let subject_header = msg_header(msg, "Subject").unwrap_or_default();
    let sender = if msg.envelope.sender.is_empty() {
        "<>"
    } else {
        &msg.envelope.sender
    };
    let (subject, body) = if o.quarantined {
        (
            "Thư bị tạm giữ / Message held for review",
            format!(
                "Một thư gửi cho hoặc từ hộp thư của anh/chị đã bị tạm giữ để quản trị viên xem xét.\n\
                 Người gửi: {sender}\nTiêu đề: {subject_header}\nQuy định: {rule} ({article})\nChi tiết: {detail}\n\
                 Liên hệ quản trị viên thư điện tử nếu thư này cần được chuyển.\n\n\
                 A message to or from your mailbox is held for review by the mail administrators.\n\
                 Sender: {sender}\nSubject: {subject_header}\nRule: {rule} ({article})\nDetail: {detail}\n\
                 Contact the mail administrators if it should be delivered.\n",
                rule = o.rule,
                article = o.article,
                detail = o.detail,
            ),
        )
    } else {
        (
            "Thư chuyển tiếp bị từ chối / Forward refused",
            format!(
                "Hộp thư của anh/chị đang tự động chuyển tiếp thư công vụ ra ngoài; thư sau đã bị từ chối.\n\
                 Tiêu đề: {subject_header}\nQuy định: {rule} ({article})\nChi tiết: {detail}\n\
                 Hãy tắt chế độ tự động chuyển tiếp tới hộp thư ngoài hệ thống công vụ.\n\n\
                 Your mailbox automatically forwards official mail outside; this message was refused.\n\
                 Subject: {subject_header}\nRule: {rule} ({article})\nDetail: {detail}\n\
                 Please turn off automatic forwarding to mailboxes outside the official system.\n",
                rule = o.rule,
                article = o.article,
                detail = o.detail,
            ),
        )
    };
    let encoded_body = base64_simd::STANDARD.encode_to_string(body.as_bytes());
    let mut lines = String::new();
    for chunk in encoded_body.as_bytes().chunks(76) {
        lines.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        lines.push_str("\r\n");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "From: congvu-milter <{from}>\r\nTo: <{to}>\r\nSubject: =?UTF-8?B?{}?=\r\n\
         Date: {}\r\nMessage-ID: <notice-{now:x}@congvu-milter>\r\nAuto-Submitted: auto-generated\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{lines}",
        base64_simd::STANDARD.encode_to_string(subject.as_bytes()),
        rfc5322_date(SystemTime::now()),
    )
}

/// A header of the message, unfolded, ASCII only (for the notice's text).
fn msg_header(msg: &Message, name: &str) -> Option<String> {
    msg.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| {
            h.value
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(200)
                .collect()
        })
}

/// `Sun, 06 Dec 2026 04:00:33 +0000`.
fn rfc5322_date(at: SystemTime) -> String {
    let iso = crate::quarantine::journal::utc(at);
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month: usize = iso[5..7].parse().unwrap_or(1);
    format!(
        "{}, {} {} {} {} +0000",
        DAYS[(secs / 86400 % 7) as usize],
        &iso[8..10],
        MONTHS[month - 1],
        &iso[0..4],
        &iso[11..19]
    )
}

/// One SMTP conversation: EHLO, MAIL, RCPT, DATA, QUIT.
async fn send(notice: &Notice) -> Result<()> {
    let stream = TcpStream::connect(&notice.relay)
        .await
        .with_context(|| format!("connect to {}", notice.relay))?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    expect(&mut read, 220, "greeting").await?;
    let mut command = async |line: String, code: u16| -> Result<()> {
        write.write_all(line.as_bytes()).await?;
        expect(&mut read, code, line.trim_end()).await
    };
    command("EHLO congvu-milter\r\n".into(), 250).await?;
    command(format!("MAIL FROM:<{}>\r\n", notice.from), 250).await?;
    command(format!("RCPT TO:<{}>\r\n", notice.to), 250).await?;
    command("DATA\r\n".into(), 354).await?;
    let mut data = String::with_capacity(notice.text.len() + 8);
    for line in notice.text.split_inclusive("\r\n") {
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
    }
    data.push_str(".\r\n");
    command(data, 250).await?;
    command("QUIT\r\n".into(), 221).await?;
    Ok(())
}

/// Reads one (possibly multi-line) reply and checks its code.
async fn expect<R: tokio::io::AsyncBufRead + Unpin>(
    read: &mut R,
    code: u16,
    after: &str,
) -> Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            bail!("connection closed after {after}");
        }
        if line.len() > 4096 {
            bail!("reply line too long after {after}");
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    }
    let got: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
    if got != code {
        bail!("{after}: {}", line.trim_end());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc5322() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_529_289);
        assert_eq!(rfc5322_date(t), "Sun, 06 Dec 2026 03:54:49 +0000");
    }

    #[test]
    fn one_notice_per_mailbox_and_rule_per_interval() {
        let n = Notifier::default();
        let settings = NoticesSection {
            enabled: true,
            ..Default::default()
        };
        let msg = Message::default();
        let o = Occasion {
            rule: "executable",
            article: "Điều 4 khoản 7",
            detail: "x",
            quarantined: true,
        };
        let limited = || metrics().notices.with_label_values(&["rate_limited"]).get();
        let before = limited();
        n.queue_one(&settings, "a@bacgiang.gov.vn", &msg, &o);
        n.queue_one(&settings, "A@bacgiang.gov.vn", &msg, &o);
        n.queue_one(&settings, "b@bacgiang.gov.vn", &msg, &o);
        assert_eq!(limited() - before, 1);
    }
}
