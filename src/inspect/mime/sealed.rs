//! Sealed bodies in the MIME walk: S/MIME (`application/pkcs7-mime`, files
//! named `.p7m`) and PGP/MIME (`multipart/encrypted`).
//!
//! An opaque S/MIME signature carries its MIME entity in the clear: mail
//! clients show it, so it is walked like an attached message (src/inspect/cms.rs
//! unwraps it). Encrypted bodies cannot be read without the recipient's key:
//! they are files that cannot be inspected, with the reason, never passed as
//! opaque data. (`multipart/signed` needs nothing here: its first part is plain
//! MIME and is walked like any other.)

use std::ops::Range;

use bytes::Bytes;

use super::{Decoded, Item, PartHeaders, Src, Walker, split_headers, truncate};
use crate::inspect::cms::{self, Pkcs7};
use crate::inspect::file::record;
use crate::inspect::names::final_extension;
use crate::inspect::{FileFacts, FileKind, Signature};

const PKCS7_MIME: &str = "application/pkcs7-mime";
const PKCS7_TYPES: &[&str] = &[PKCS7_MIME, "application/x-pkcs7-mime"];

impl Walker<'_> {
    /// Walks an S/MIME body: a signed one's content goes on the stack like an
    /// attached message; an encrypted or unreadable one is recorded as a file
    /// that cannot be inspected. Gives the item back when it is not S/MIME (or
    /// carries nothing: a detached signature, certificates only), for the
    /// walk to treat as an ordinary part.
    pub(super) fn pkcs7<'a>(
        &mut self,
        item: Item<'a>,
        headers: &PartHeaders,
        ctype: &str,
        body: Range<usize>,
        stack: &mut Vec<Item<'a>>,
    ) -> Option<Item<'a>> {
        let declared = PKCS7_TYPES.contains(&ctype);
        let named = headers
            .names
            .iter()
            .any(|n| final_extension(n).is_some_and(|e| e == "p7m"));
        if !declared && !named {
            return Some(item);
        }
        // The BER reader reads the body once (and its chunks once more).
        if !self.charge(body.len() as u64) {
            return None;
        }
        let decoded = self.decode(&item.src, body.clone(), headers.encoding.as_deref());
        let (parsed, size) = {
            let data: &[u8] = match &decoded {
                Decoded::Same => &item.src.as_slice()[body],
                Decoded::New(bytes) => bytes,
            };
            (cms::read_content_info(data), data.len() as u64)
        };
        if let Decoded::New(bytes) = decoded {
            self.budget.release(bytes.len() as u64);
        }
        if let Err(problem) = self.budget.check_limits() {
            // Memory ran short (the body was read as empty) or time ran out.
            self.problem(problem);
            return None;
        }
        let says_signed = headers
            .content_type
            .as_ref()
            .and_then(|ct| ct.param("smime-type"))
            .is_some_and(|t| t.eq_ignore_ascii_case("signed-data"));
        let signed = matches!(parsed, Ok(Pkcs7::Signed(_))) || (declared && says_signed);
        if signed && item.msg_depth == 0 {
            self.signed(Signature::Smime);
        }
        let reason = match parsed {
            Ok(Pkcs7::Signed(content)) => {
                if content.is_empty() {
                    return Some(item);
                }
                let content = Self::with_inner_name(headers, content);
                let _ = self.budget.hold(content.len() as u64);
                let len = content.len();
                let src = Src::Shared(Bytes::from(content));
                self.enter_message(item, headers, PKCS7_MIME, src, 0..len, stack);
                return None;
            }
            Ok(Pkcs7::Encrypted) => "S/MIME encrypted message (enveloped-data): it cannot be read without the recipient's key".to_owned(),
            Ok(Pkcs7::Other(what)) => format!("S/MIME {what} is not opened here"),
            Err(e) if declared => format!("damaged S/MIME body: {e}"),
            // Only its name said .p7m: an ordinary file.
            Err(_) => return Some(item),
        };
        self.sealed(&item, headers, PKCS7_MIME, size, reason);
        None
    }

    /// The signed content as a MIME entity. Signing tools outside mail sign a
    /// file itself (`hop-dong.pdf.p7m` holds `hop-dong.pdf`, no headers): it is
    /// given a header naming it, so that its name is checked like any
    /// attachment's (RFC 2231 form: the name cannot break the header).
    fn with_inner_name(headers: &PartHeaders, content: Vec<u8>) -> Vec<u8> {
        let (head_end, _) = split_headers(&content);
        let inner_name = headers.names.iter().find_map(|n| {
            let stem = n.get(..n.len().checked_sub(4)?)?;
            n[stem.len()..].eq_ignore_ascii_case(".p7m").then_some(stem)
        });
        let Some(inner_name) = inner_name.filter(|_| head_end == 0) else {
            return content;
        };
        let mut header = b"Content-Disposition: attachment; filename*=utf-8''".to_vec();
        for b in inner_name.bytes() {
            if b.is_ascii_alphanumeric() || b".-_".contains(&b) {
                header.push(b);
            } else {
                header.extend(format!("%{b:02X}").as_bytes());
            }
        }
        header.extend_from_slice(b"\r\n\r\n");
        header.extend_from_slice(&content);
        header
    }

    /// A `multipart/encrypted` entity (PGP/MIME, RFC 3156): one file that
    /// cannot be inspected.
    pub(super) fn encrypted_multipart(
        &mut self,
        item: &Item<'_>,
        headers: &PartHeaders,
        body: Range<usize>,
    ) {
        let protocol = headers.protocol();
        let reason = if protocol == "application/pgp-encrypted" {
            "PGP/MIME encrypted message: it cannot be read without the recipient's key".to_owned()
        } else {
            format!(
                "encrypted multipart (protocol \"{}\"): it cannot be read",
                truncate(&protocol)
            )
        };
        self.sealed(
            item,
            headers,
            "multipart/encrypted",
            body.len() as u64,
            reason,
        );
    }

    /// Records an encrypted or unreadable body as a file that cannot be
    /// inspected (it counts as an attachment of the message it is in).
    fn sealed(
        &mut self,
        item: &Item<'_>,
        headers: &PartHeaders,
        kind: &str,
        size: u64,
        reason: String,
    ) {
        let name = headers.names.first().map(|n| truncate(n));
        let label = name
            .clone()
            .unwrap_or_else(|| "(encrypted message)".to_owned());
        if !self.charge(item.path_work) {
            return;
        }
        if item.msg_depth == 0 {
            self.out.attachments_size += size;
        }
        let index = self.out.files.len();
        let mut path = item.path.to_vec();
        path.push(label);
        record(
            &mut self.out.files,
            FileFacts {
                path,
                name,
                size,
                kind: FileKind::Other(kind.to_owned()),
                encrypted: false,
                uninspectable: Some(reason),
                signature: None,
                macros: false,
                sha256: None,
                text: None,
            },
            &mut self.budget,
        );
        self.alt_names(index, &headers.names);
    }
}

#[cfg(test)]
mod tests {
    use crate::inspect::cms::tests::{signed, tlv};
    use crate::inspect::inspect_message;
    use crate::policy::LimitsSection;

    #[test]
    fn signatures_nested_in_signatures_stop_at_the_message_depth() {
        let mut raw = b"Content-Type: application/octet-stream; name=a.exe\r\n\r\nx".to_vec();
        for _ in 0..300 {
            let der = signed(tlv(0xA0, &tlv(0x04, &raw)));
            raw = b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n\r\n".to_vec();
            raw.extend_from_slice(&der);
        }
        let limits = LimitsSection::default();
        let i = inspect_message(&raw, &limits);
        assert!(
            i.problems.iter().any(|p| p.contains("nested")),
            "{:?}",
            i.problems
        );
        // Five levels: the exe at the bottom is found.
        let mut raw = b"Content-Type: application/octet-stream; name=a.exe\r\n\r\nx".to_vec();
        for _ in 0..5 {
            let der = signed(tlv(0xA0, &tlv(0x04, &raw)));
            raw = b"Content-Type: application/pkcs7-mime\r\n\r\n".to_vec();
            raw.extend_from_slice(&der);
        }
        let i = inspect_message(&raw, &limits);
        assert!(i.problems.is_empty(), "{:?}", i.problems);
        let exe = i
            .files
            .iter()
            .find(|f| f.name.as_deref() == Some("a.exe"))
            .unwrap();
        assert_eq!(exe.path.len(), 6);
    }

    #[test]
    fn a_signed_file_keeps_its_name_whatever_it_holds() {
        let der = signed(tlv(0xA0, &tlv(0x04, b"WScript.Echo 1")));
        for (given, expected) in [
            ("h\u{1ed3} s\u{01a1}.vbs.p7m", "h\u{1ed3} s\u{01a1}.vbs"),
            // Quotes and line ends in the name stay in the name.
            ("a\";\r\nX: y.vbs.P7M", "a\";\r\nX: y.vbs"),
        ] {
            let mut raw = format!(
                "Content-Type: application/pkcs7-mime; name*=utf-8''{}\r\n\r\n",
                given
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect::<String>()
            )
            .into_bytes();
            raw.extend_from_slice(&der);
            let i = inspect_message(&raw, &LimitsSection::default());
            let names: Vec<_> = i.files.iter().map(|f| f.path.clone()).collect();
            assert_eq!(
                names,
                [
                    vec![given.to_owned()],
                    vec![given.to_owned(), expected.to_owned()]
                ]
            );
        }
    }
}
