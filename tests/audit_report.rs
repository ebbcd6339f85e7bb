//! `congvu-milter report` and `trace` run as built on the audit-log fixtures
//! (fixtures/audit/make-audit-logs.py): two hosts, one log gzip-compressed under a
//! name without .gz, duplicates across hosts, other log lines, a truncated and a
//! corrupted record.

use std::process::{Command, Output, Stdio};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/audit/");

fn fixture(name: &str) -> String {
    format!("{FIXTURES}{name}")
}

pub(crate) fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_congvu-milter"))
        .args(args)
        .output()
        .unwrap()
}

fn both_hosts() -> [String; 2] {
    [fixture("mail.audit.jsonl"), fixture("relay.audit.jsonl.1")]
}

/// `report` on both hosts' logs with the agency map and `extra` options.
fn report_on_both_hosts(extra: &[&str]) -> Output {
    let [mail, relay] = both_hosts();
    let agencies = fixture("agencies.toml");
    let mut args = vec!["report", "--log", &mail, &relay, "--agencies", &agencies];
    args.extend_from_slice(extra);
    run(&args)
}

pub(crate) fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn report_csv_by_agency_merges_the_two_hosts_and_counts_bad_lines() {
    let out = report_on_both_hosts(&["--by", "agency", "--format", "csv", "--repeat", "2"]);
    assert_eq!(
        stdout(&out),
        "agency,messages,accepted,refused,quarantined,tempfailed,would_refuse,documents,signed_documents,signed_share,\
         refused_attachment_size,refused_clamav_unavailable,refused_executable,refused_forwarding,refused_virus,repeat_mailboxes\n\
         (khong ro),2,2,0,0,0,0,0,0,,0,0,0,0,0,\n\
         baodai_lucnam,1,0,1,0,0,0,0,0,,0,0,0,0,1,\n\
         sonv,5,2,1,1,1,1,2,1,50.0,0,0,0,0,1,\n\
         stttt,7,3,4,0,0,0,5,1,20.0,0,0,3,1,0,ngocnt_stttt@bacgiang.gov.vn\n"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 lines skipped: not audit records"), "{err}");
    assert!(
        err.contains("2 malformed or truncated audit lines skipped"),
        "{err}"
    );
    assert!(err.contains("mail.audit.jsonl:10:"), "{err}");
    assert!(
        err.contains("19 records read, 5 duplicates merged"),
        "{err}"
    );
}

#[test]
fn report_from_stdin_by_day_in_vietnam_time_with_bounds() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_congvu-milter"))
        .args(["report", "--log", "-", "--by", "day", "--format", "json"])
        .args(["--from", "2026-01-08", "--to", "2026-01-09"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = std::fs::read(fixture("mail.audit.jsonl")).unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &log).unwrap();
    let out = child.wait_with_output().unwrap();
    let days: Vec<(String, i64)> = stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["day"].as_str().unwrap().to_owned(),
                v["messages"].as_i64().unwrap(),
            )
        })
        .collect();
    // 2026-01-08T16:59:59.999Z is the 8th in Vietnam, 17:00:00.000Z the 9th.
    assert_eq!(
        days,
        [("2026-01-08".to_owned(), 1), ("2026-01-09".to_owned(), 3)]
    );
}

#[test]
fn gzip_on_stdin_is_read_by_content() {
    let gz = std::fs::File::open(fixture("relay.audit.jsonl.1")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_congvu-milter"))
        .args(["report", "--log", "-", "--format", "csv", "--by", "day"])
        .stdin(gz)
        .output()
        .unwrap();
    let csv = stdout(&out);
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.contains("\n2026-01-10,2,1,1,0,0,1,0,0,,1,0\n"), "{csv}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("6 records read"), "{err}");
}

#[test]
fn report_text_is_a_vietnamese_summary() {
    let out = report_on_both_hosts(&["--repeat", "3"]);
    let text = stdout(&out);
    assert!(
        text.contains("Kỳ báo cáo: từ ngày 05/01/2026 đến ngày 11/01/2026"),
        "{text}"
    );
    assert!(text.contains("- Tổng số thư được kiểm tra: 14"), "{text}");
    assert!(
        text.contains("  + executable (Điều 4 khoản 7): 3"),
        "{text}"
    );
    assert!(
        text.contains("- Sở Thông tin và Truyền thông (stttt): 7 thư"),
        "{text}"
    );
    assert!(
        text.contains("- ngocnt_stttt@bacgiang.gov.vn: 4 lần"),
        "{text}"
    );
    // Outgoing only, the message logged by both hosts once, the signed docx inside
    // a zip counted: 2 of the 7 documents.
    assert!(
        text.contains("- Văn bản điện tử gửi đi có chữ ký số: 2/7 (28,6%)"),
        "{text}"
    );
    assert!(
        text.contains(
            "tạm hoãn 1; sẽ bị từ chối (giám sát) 1; văn bản có chữ ký số 1/2 (50,0%).\n"
        ),
        "{text}"
    );
}

#[test]
fn trace_by_hash_lists_every_host_and_by_name_matches_inside_archives() {
    let [mail, relay] = both_hosts();
    let secret = "98a03894f473615f85406ce473a1c65a6c24812edf9fb8cd61a4a6e4c1189f39";
    let out = run(&[
        "trace",
        "--log",
        &mail,
        &relay,
        "--sha256",
        &secret.to_uppercase(),
        "--format",
        "json",
    ]);
    let hits: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: Vec<(&str, &str)> = hits
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap(),
                h["message_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("mail", "<0005.cv@bacgiang.gov.vn>"),
            ("mail", "<0007.cv@bacgiang.gov.vn>"),
            ("mail", "<0010.cv@bacgiang.gov.vn>"),
            ("relay", "<0005.cv@bacgiang.gov.vn>"),
            ("relay", "<0007.cv@bacgiang.gov.vn>"),
        ]
    );
    assert_eq!(hits[0]["files"][0]["sha256"], secret);

    let out = run(&["trace", "--log", &mail, &relay, "--name", "*.PDF.exe"]);
    let text = stdout(&out);
    assert_eq!(
        text.lines().filter(|l| !l.starts_with(' ')).count(),
        3,
        "{text}"
    );
    assert!(
        text.contains("    hoso.zip/hoso.pdf.exe (512 bytes"),
        "{text}"
    );

    let out = run(&[
        "trace",
        "--log",
        &mail,
        "--message-id",
        "0013.cv@bacgiang.gov.vn",
    ]);
    assert_eq!(out.status.code(), Some(1), "no such Message-ID: exit 1");
    assert!(out.stdout.is_empty());
}

#[test]
fn unreadable_log_and_bad_dates_are_usage_errors() {
    let out = run(&["report", "--log", "/nonexistent/audit.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/audit.jsonl"));
    let mail = fixture("mail.audit.jsonl");
    let out = run(&["report", "--log", &mail, "--from", "2026-02-30"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&[
        "report",
        "--log",
        &mail,
        "--from",
        "2026-02-02",
        "--to",
        "2026-02-01",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
