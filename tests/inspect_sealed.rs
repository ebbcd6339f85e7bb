//! S/MIME and PGP/MIME messages made by openssl and gpg
//! (fixtures/messages/make-sealed.sh): what an opaque signature carries is
//! inspected like an attached message, what is encrypted cannot be inspected.

use std::path::PathBuf;

use congvu_milter::inspect::{FileKind, Signature, inspect_message};
use congvu_milter::policy::{LimitsSection, Policy};
use congvu_milter::rules::attachments::evaluate;

use crate::inspect_archives::Rng;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/messages")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (rule, file, limit) of every violation.
fn violations(raw: &[u8]) -> Vec<(String, String, String)> {
    let inspection = inspect_message(raw, &LimitsSection::default());
    evaluate(&inspection, &Policy::default())
        .into_iter()
        .map(|v| {
            (
                v.rule.name.to_owned(),
                v.var("file").unwrap_or_default().to_owned(),
                v.var("limit").unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn exe_inside_opaque_signed_ber_and_der_is_found() {
    for name in [
        "fail-smime-opaque-exe-ber.eml",
        "fail-smime-opaque-exe-der.eml",
    ] {
        assert_eq!(
            violations(&fixture(name)),
            [(
                "executable".to_owned(),
                "smime.p7m > hoso.pdf.exe".to_owned(),
                String::new()
            )],
            "{name}"
        );
        let i = inspect_message(&fixture(name), &LimitsSection::default());
        assert_eq!(i.signed, Some(Signature::Smime), "{name}");
        let exe = i
            .files
            .iter()
            .find(|f| f.name.as_deref() == Some("hoso.pdf.exe"))
            .unwrap();
        assert!(matches!(exe.kind, FileKind::Executable(_)), "{name}");
        // The text beside it, 17 KB cut into chunks by openssl, came out whole.
        let minutes = i
            .files
            .iter()
            .find(|f| f.name.as_deref() == Some("bien-ban.txt"))
            .unwrap();
        assert!(minutes.size > 16_000, "{}", minutes.size);
        // The clam.exe bytes reach the virus scanner.
        assert!(
            i.scan_parts
                .iter()
                .any(|p| p.data.starts_with(b"MZ") && p.label.contains("hoso.pdf.exe")),
            "{name}"
        );
    }
}

#[test]
fn clean_opaque_signed_message_passes() {
    let raw = fixture("pass-smime-opaque-signed.eml");
    assert_eq!(violations(&raw), []);
    let i = inspect_message(&raw, &LimitsSection::default());
    assert_eq!(i.signed, Some(Signature::Smime));
    // Its CSV attachment was seen inside.
    assert!(
        i.files
            .iter()
            .any(|f| f.path == ["smime.p7m", "so-lieu.csv"])
    );
}

#[test]
fn exe_inside_detached_signed_message_is_found() {
    assert_eq!(
        violations(&fixture("fail-smime-detached-exe.eml")),
        [(
            "executable".to_owned(),
            "hoso.pdf.exe".to_owned(),
            String::new()
        )]
    );
}

#[test]
fn encrypted_smime_and_pgp_mime_are_uninspectable() {
    let smime = violations(&fixture("fail-smime-encrypted.eml"));
    assert_eq!(smime.len(), 1, "{smime:?}");
    assert_eq!(smime[0].0, "uninspectable");
    assert_eq!(smime[0].1, "smime.p7m");
    assert!(smime[0].2.contains("S/MIME encrypted"), "{smime:?}");

    let pgp = violations(&fixture("fail-pgp-encrypted.eml"));
    assert_eq!(pgp.len(), 1, "{pgp:?}");
    assert_eq!(pgp[0].0, "uninspectable");
    assert_eq!(pgp[0].1, "(encrypted message)");
    assert!(pgp[0].2.contains("PGP/MIME encrypted"), "{pgp:?}");
}

#[test]
fn damaged_pkcs7_body_is_uninspectable_and_a_p7m_name_alone_is_a_file() {
    let declared = b"Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\nMIIB\r\n";
    let v = violations(declared);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].0, "uninspectable");
    assert!(v[0].2.starts_with("damaged S/MIME body"), "{v:?}");
    // Only the name says .p7m, the bytes are not CMS: an ordinary attachment.
    let named = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream; name=hop-dong.pdf.p7m\r\n\r\nnot cms\r\n--b--\r\n";
    assert_eq!(violations(named), []);
}

/// The CMS body of a fixture message (its base64 body decoded).
fn cms_body(name: &str) -> Vec<u8> {
    let raw = String::from_utf8(fixture(name)).unwrap();
    let body = raw.split("\r\n\r\n").nth(1).unwrap();
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in body.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        bits = bits << 6 | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[test]
fn mangled_cms_bodies_never_panic_nor_grow() {
    use congvu_milter::inspect::cms::{Pkcs7, read_content_info};
    for name in [
        "fail-smime-opaque-exe-ber.eml",
        "fail-smime-opaque-exe-der.eml",
        "fail-smime-encrypted.eml",
    ] {
        let original = cms_body(name);
        assert!(matches!(
            read_content_info(&original),
            Ok(Pkcs7::Signed(_) | Pkcs7::Encrypted)
        ));
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut next = |below: usize| rng.below(below);
        for round in 0..3000 {
            let mut data = original.clone();
            match round % 3 {
                0 => data.truncate(next(data.len())),
                1 => {
                    for _ in 0..4 {
                        let at = next(data.len());
                        data[at] ^= 1 << next(8);
                    }
                }
                _ => {
                    // A length byte made indefinite or huge.
                    let at = next(200);
                    data[at] = [0x80, 0x84, 0xFF][next(3)];
                }
            }
            if let Ok(Pkcs7::Signed(content)) = read_content_info(&data) {
                assert!(content.len() <= data.len());
            }
        }
    }
}

#[test]
fn a_file_signed_by_itself_is_checked_under_its_own_name() {
    // cai-dat.js.p7m holds the script cai-dat.js, no MIME headers: its
    // content is text, so only its name tells what it is.
    assert_eq!(
        violations(&fixture("fail-p7m-signed-script.eml")),
        [(
            "executable".to_owned(),
            "cai-dat.js.p7m > cai-dat.js".to_owned(),
            String::new()
        )]
    );
}
