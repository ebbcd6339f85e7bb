//! Writes a generated year of audit records for a province to standard output,
//! for `bench/report.sh`: `gen-audit [RECORDS] [SEED]` (default 50,000,000 records,
//! the order of a year of Bac Giang's official mail). Records are schema 1, written
//! with the daemon's own record struct: 2,000 agencies of 10 mailboxes each,
//! two-thirds outgoing, one attachment in three (half of them in a zip), 3% refused,
//! 1% quarantined, 1% tempfailed; a quarter of the documents signed (by their
//! hash, so the other fields are those of earlier runs); one outgoing message in four is logged again by
//! the outbound hop a few hundred milliseconds later, as two hosts' logs interleave.

use std::borrow::Cow;
use std::io::{self, BufWriter, Write};

use congvu_milter::audit::record::{
    Action, AuditRecord, Direction, FileEntry, Recipient, SCHEMA_VERSION, SignedDocument,
    ViolationEntry,
};

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const FIRST_NAMES: [&str; 8] = [
    "ngocnt", "hongnt", "lanpt", "minhlq", "tuanvd", "hanhtt", "dungnv", "thuylt",
];
const OUTSIDE: [&str; 4] = ["gmail.com", "yahoo.com", "outlook.com", "vnpt.vn"];
const FILES: [(&str, &str); 4] = [
    (
        "bao_cao.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("cong_van.pdf", "application/pdf"),
    (
        "so_lieu.xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    ("anh.jpg", "image/jpeg"),
];

fn mailbox(rng: &mut Rng) -> String {
    let agency = rng.below(2000);
    let person = FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize];
    format!("{person}{}_cq{agency:04}@bacgiang.gov.vn", rng.below(2))
}

fn hex(rng: &mut Rng) -> String {
    (0..4).map(|_| format!("{:016x}", rng.next())).collect()
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let records: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(17);
    let mut rng = Rng(seed | 1);
    let out = io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 20, out);
    // 2026-01-01T00:00Z, spread evenly over 365 days.
    let year_ms: u64 = 365 * 86_400_000;
    let step = (year_ms / records.max(1)).max(1);
    let mut written = 0u64;
    let mut n = 0u64;
    while written < records {
        n += 1;
        let ms = n * step;
        let outgoing = rng.below(3) < 2;
        let sender = if outgoing {
            mailbox(&mut rng)
        } else {
            format!("x{}@{}", rng.below(100_000), OUTSIDE[rng.below(4) as usize])
        };
        let mut recipients = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let local = !outgoing || rng.below(2) == 0;
            let address = if local {
                mailbox(&mut rng)
            } else {
                format!("y{}@{}", rng.below(100_000), OUTSIDE[rng.below(4) as usize])
            };
            recipients.push(Recipient {
                address: address.into(),
                local,
            });
        }
        let roll = rng.below(100);
        let (action, violation) = match roll {
            0..=1 => (Action::Reject, Some(("executable", "Điều 4 khoản 7"))),
            2 => (Action::Reject, Some(("forwarding", "Điều 4 khoản 4"))),
            3 => (Action::Quarantine, Some(("attachment_size", "Điều 10"))),
            4 => (
                Action::Tempfail,
                Some(("clamav_unavailable", "Điều 4 khoản 6")),
            ),
            _ => (Action::Accept, None),
        };
        let mut files = Vec::new();
        let mut signed_documents = Vec::new();
        if rng.below(3) == 0 {
            let (name, kind) = FILES[rng.below(4) as usize];
            let zipped = rng.below(2) == 0;
            if zipped {
                files.push(FileEntry {
                    path: vec!["ho_so.zip".into()],
                    size: 20_000 + rng.below(1_000_000),
                    file_type: "application/zip".into(),
                    sha256: Some(hex(&mut rng).into()),
                });
            }
            let path: Vec<Cow<str>> = if zipped {
                vec!["ho_so.zip".into(), name.into()]
            } else {
                vec![name.into()]
            };
            // In the order of earlier runs' draws: size, then hash.
            let size = 10_000 + rng.below(1_000_000);
            let sha256 = hex(&mut rng);
            let format = match kind {
                "application/pdf" => Some("pdf"),
                "image/jpeg" => None,
                _ => Some("ooxml"),
            };
            if let Some(format) = format
                && sha256.as_bytes()[0] < b'4'
            {
                signed_documents.push(SignedDocument {
                    path: path.clone(),
                    format: format.into(),
                });
            }
            files.push(FileEntry {
                path,
                size,
                file_type: kind.into(),
                sha256: Some(sha256.into()),
            });
        }
        let queue = format!("{:010X}", rng.below(1 << 40));
        let mut record = AuditRecord {
            audit: SCHEMA_VERSION,
            time: timestamp(ms).into(),
            host: "mail".into(),
            instance: Some("submission".into()),
            queue_id: Some(queue.into()),
            message_id: Some(format!("<{n}.{:x}@bacgiang.gov.vn>", rng.next()).into()),
            sasl_login: outgoing.then(|| sender.split('@').next().unwrap_or("").to_owned().into()),
            sender: sender.into(),
            recipients,
            client_addr: Some(
                format!(
                    "10.{}.{}.{}",
                    rng.below(256),
                    rng.below(256),
                    rng.below(256)
                )
                .into(),
            ),
            direction: if outgoing {
                Direction::Outgoing
            } else {
                Direction::Incoming
            },
            action,
            monitor_action: None,
            reply: (action != Action::Accept)
                .then(|| "550 5.7.1 Quy che thu dien tu cong vu".into()),
            violations: violation
                .map(|(rule, article)| ViolationEntry {
                    rule: rule.into(),
                    article: article.into(),
                    path: vec![],
                })
                .into_iter()
                .collect(),
            files,
            files_omitted: 0,
            signed_documents,
        };
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
        written += 1;
        if outgoing && action == Action::Accept && rng.below(4) == 0 && written < records {
            record.host = "relay".into();
            record.instance = Some("postfix-out".into());
            record.time = timestamp(ms + 350).into();
            record.sasl_login = None;
            serde_json::to_writer(&mut out, &record)?;
            out.write_all(b"\n")?;
            written += 1;
        }
    }
    out.flush()
}

/// Milliseconds since 2026-01-01T00:00Z as RFC 3339 UTC.
fn timestamp(ms: u64) -> String {
    let days = ms / 86_400_000;
    let rest = ms % 86_400_000;
    const MONTHS: [u64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let (mut month, mut day) = (0, days % 365);
    while day >= MONTHS[month] {
        day -= MONTHS[month];
        month += 1;
    }
    format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        month + 1,
        day + 1,
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}
