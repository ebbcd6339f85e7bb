//! Signed documents and documents with macros (fixtures/documents,
//! make-documents.sh: LibreOffice, pyHanko, XlsxWriter's Excel-made VBA
//! project, the cfb crate): signatures are found and reported by `scan`, macro
//! documents get `macro_document` (tagged by default, refused when set to
//! `reject`), plain documents pass.

use std::path::PathBuf;

use congvu_milter::inspect::budget::Budget;
use congvu_milter::inspect::file::inspect_file;
use congvu_milter::inspect::{FileFacts, SignatureFormat};
use congvu_milter::policy::LimitsSection;

use crate::common::mail::with_attachment;
use crate::inspect_carriers::scan_json;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/documents")
}

pub fn document(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap()
}

/// Every fixture of the directory (not the scripts), sorted.
fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !(n.ends_with(".sh") || n.ends_with(".py") || n.ends_with(".md")))
        .collect();
    names.sort();
    names
}

fn inspect(name: &str) -> Vec<FileFacts> {
    let mut budget = Budget::new(&LimitsSection::default());
    let mut out = Vec::new();
    inspect_file(
        vec![name.to_owned()],
        Some(name),
        &document(name),
        0,
        &mut budget,
        &mut out,
    );
    out
}

/// The signed documents of a fixture, by its name: path and format.
fn expected_signed(name: &str) -> Vec<(Vec<&str>, &'static str)> {
    match name {
        "signed.pdf" => vec![(vec![name], "pdf")],
        "signed.docx" => vec![(vec![name], "ooxml")],
        "signed.odt" => vec![(vec![name], "odf")],
        "signed-in.zip" => vec![(vec![name, "signed.pdf"], "pdf")],
        _ => vec![],
    }
}

#[test]
fn each_signature_is_a_fact_of_the_document_itself() {
    for (name, format) in [
        ("signed.pdf", SignatureFormat::Pdf),
        ("signed.docx", SignatureFormat::Ooxml),
        ("signed.odt", SignatureFormat::Odf),
    ] {
        let facts = inspect(name);
        assert_eq!(facts[0].signature, Some(format), "{name}");
        assert!(facts[1..].iter().all(|f| f.signature.is_none()), "{name}");
        assert!(facts.iter().all(|f| !f.macros), "{name}");
        assert!(facts.iter().all(|f| f.uninspectable.is_none()), "{name}");
    }
}

#[test]
fn macros_are_a_fact_of_the_document_and_nothing_else_is() {
    for name in fixture_names() {
        let facts = inspect(&name);
        let macros = facts.iter().any(|f| f.macros);
        assert_eq!(macros, name.starts_with("macros"), "{name}: {facts:#?}");
        if name.starts_with("macros.") {
            assert!(facts[0].macros, "{name}: the document itself");
        }
    }
}

/// Runs `scan --json` on each fixture attached to a message, under `policy`.
fn scan_all(policy: &str) -> Vec<(String, serde_json::Value)> {
    let names = fixture_names();
    assert!(names.len() >= 15, "fixtures present: {names:?}");
    let tmp = tempfile::tempdir().unwrap();
    let policy_path = tmp.path().join("policy.toml");
    std::fs::write(&policy_path, format!("[clamav]\nenabled = false\n{policy}")).unwrap();
    let messages: Vec<PathBuf> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let raw = with_attachment(
                "a@example.org",
                "b@bacgiang.gov.vn",
                name,
                "application/octet-stream",
                &document(name),
            );
            let path = tmp.path().join(format!("{i:03}.eml"));
            std::fs::write(&path, raw).unwrap();
            path
        })
        .collect();
    let reports = scan_json(&policy_path, &messages);
    names.into_iter().zip(reports).collect()
}

fn rules(report: &serde_json::Value) -> Vec<String> {
    report["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r["rule"].as_str().unwrap(), r["file"]))
        .collect()
}

/// The value of the tag header `scan` would add, if any.
fn tag_header(report: &serde_json::Value) -> Option<String> {
    report["headers"].as_array().unwrap().iter().find_map(|h| {
        let text = h.to_string();
        text.contains("X-Congvu-Policy").then_some(text)
    })
}

#[test]
fn scan_reports_signed_documents_and_tags_macro_documents() {
    let mut problems = Vec::new();
    for (name, report) in scan_all("") {
        let signed: Vec<serde_json::Value> = report["signed_documents"].as_array().unwrap().clone();
        let want_signed: Vec<serde_json::Value> = expected_signed(&name)
            .into_iter()
            .map(|(path, format)| serde_json::json!({"path": path, "format": format}))
            .collect();
        if signed != want_signed {
            problems.push(format!(
                "{name}: signed documents {signed:?}, not {want_signed:?}"
            ));
        }
        let action = report["action"].as_str().unwrap();
        let rules = rules(&report);
        let ok = if name.starts_with("macros") {
            action == "accept"
                && rules.len() == 1
                && rules[0].starts_with("macro_document")
                && tag_header(&report).is_some_and(|h| h.contains("macro_document"))
        } else {
            action == "accept" && rules.is_empty() && tag_header(&report).is_none()
        };
        if !ok {
            problems.push(format!("{name}: {action} {rules:?} {}", report["headers"]));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn macro_documents_are_refused_when_the_rule_says_reject() {
    let mut problems = Vec::new();
    for (name, report) in scan_all("[rules.macro_document]\naction = \"reject\"\n") {
        let action = report["action"].as_str().unwrap();
        let reply = report["reply"].as_str().unwrap_or("");
        let ok = if name.starts_with("macros") {
            action == "reject" && reply.starts_with("550 5.7.1 ") && reply.contains("chua macro")
        } else {
            action == "accept"
        };
        if !ok {
            problems.push(format!("{name}: {action} {reply:?}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn a_macro_document_inside_a_zip_is_named_by_its_path() {
    let reports = scan_all("");
    let (_, report) = reports
        .iter()
        .find(|(name, _)| name == "macros-in.zip")
        .unwrap();
    let reasons = report["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{report}");
    assert_eq!(reasons[0]["rule"], "macro_document");
    assert!(
        reasons[0]["detail"]
            .as_str()
            .unwrap()
            .contains("\"macros-in.zip\" → \"macros.docm\""),
        "{report}"
    );
}
