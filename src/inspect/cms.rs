//! S/MIME bodies (`application/pkcs7-mime`, `.p7m`): a CMS `ContentInfo`
//! (RFC 5652) read far enough to tell what it holds and, for signed-data, to
//! give back the signed content, which is in the clear (an opaque signed
//! message carries its whole MIME entity there).
//!
//! A small BER reader of our own: `openssl smime -sign -nodetach` writes
//! indefinite lengths and cuts the content into a constructed OCTET STRING of
//! chunks; DER writers give one primitive OCTET STRING. Everything is checked:
//! lengths against the input, nesting against [`MAX_DEPTH`], and the content
//! gathered is never longer than the input (so its memory is bounded by the
//! body it came from, which the caller holds from the message's budget). Each
//! byte is looked at a bounded number of times, so the work is linear.

/// Nested BER levels followed, at most. CMS needs about eight; chunked OCTET
/// STRINGs add one or two.
pub const MAX_DEPTH: u32 = 32;

/// `id-signedData` 1.2.840.113549.1.7.2
const SIGNED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02];
/// `id-envelopedData` 1.2.840.113549.1.7.3
const ENVELOPED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x03];
/// `id-ct-authEnvelopedData` 1.2.840.113549.1.9.16.1.23
const AUTH_ENVELOPED_DATA: &[u8] = &[
    0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x10, 0x01, 0x17,
];
/// `id-ct-compressedData` 1.2.840.113549.1.9.16.1.9
const COMPRESSED_DATA: &[u8] = &[
    0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x10, 0x01, 0x09,
];

const TAG_SEQUENCE: u8 = 0x10;
const TAG_SET: u8 = 0x11;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_INTEGER: u8 = 0x02;

/// What a CMS body holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Pkcs7 {
    /// Signed-data with its content inside (empty when the signature is
    /// detached or the body carries only certificates).
    Signed(Vec<u8>),
    /// Encrypted (enveloped-data or authenticated enveloped-data): nothing can
    /// be read without the recipient's key.
    Encrypted,
    /// Another content type the filter does not open (compressed-data, ...),
    /// named for the reason.
    Other(&'static str),
}

/// Reads a CMS `ContentInfo`; `Err` says why it is not one the filter can read.
pub fn read_content_info(data: &[u8]) -> Result<Pkcs7, String> {
    let reader = Reader { data };
    let info = reader.header(0, data.len())?;
    info.expect(Class::Universal, TAG_SEQUENCE, true, "ContentInfo")?;
    let mut fields = reader.children(&info, 1)?;
    let oid = fields.next_header()?.ok_or("ContentInfo without a type")?;
    oid.expect(Class::Universal, TAG_OID, false, "content type")?;
    let oid = reader.primitive(&oid);
    if oid == ENVELOPED_DATA || oid == AUTH_ENVELOPED_DATA {
        return Ok(Pkcs7::Encrypted);
    }
    if oid == COMPRESSED_DATA {
        return Ok(Pkcs7::Other("compressed-data"));
    }
    if oid != SIGNED_DATA {
        return Ok(Pkcs7::Other("an unknown CMS content type"));
    }
    let explicit = fields.next_header()?.ok_or("signed-data without content")?;
    explicit.expect(Class::Context, 0, true, "[0] content")?;
    let signed = reader
        .children(&explicit, 2)?
        .next_header()?
        .ok_or("empty signed-data")?;
    signed.expect(Class::Universal, TAG_SEQUENCE, true, "SignedData")?;
    let mut fields = reader.children(&signed, 3)?;
    let version = fields
        .next_header()?
        .ok_or("SignedData without a version")?;
    version.expect(Class::Universal, TAG_INTEGER, false, "version")?;
    let digests = fields.next_header()?.ok_or("SignedData without digests")?;
    digests.expect(Class::Universal, TAG_SET, true, "digestAlgorithms")?;
    let encap = fields
        .next_header()?
        .ok_or("SignedData without encapContentInfo")?;
    encap.expect(Class::Universal, TAG_SEQUENCE, true, "encapContentInfo")?;
    let mut fields = reader.children(&encap, 4)?;
    let econtent_type = fields
        .next_header()?
        .ok_or("encapContentInfo without a type")?;
    econtent_type.expect(Class::Universal, TAG_OID, false, "eContentType")?;
    let Some(explicit) = fields.next_header()? else {
        return Ok(Pkcs7::Signed(Vec::new()));
    };
    explicit.expect(Class::Context, 0, true, "[0] eContent")?;
    let octets = reader
        .children(&explicit, 5)?
        .next_header()?
        .ok_or("empty eContent")?;
    let mut content = Vec::new();
    reader.octets(&octets, 6, &mut content)?;
    Ok(Pkcs7::Signed(content))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Universal,
    Application,
    Context,
    Private,
}

/// One element's identifier and where its content lies.
#[derive(Debug)]
struct Header {
    class: Class,
    constructed: bool,
    /// Tag number (high tag numbers are read, and never match what is wanted).
    tag: u32,
    /// Where the content starts.
    start: usize,
    /// Definite length: the content's end. `None`: indefinite, ended by two
    /// zero bytes after the last child (only for constructed elements).
    end: Option<usize>,
    /// Where the element may end at the latest (its parent's end).
    limit: usize,
}

impl Header {
    fn expect(&self, class: Class, tag: u8, constructed: bool, what: &str) -> Result<(), String> {
        if self.class == class && self.tag == u32::from(tag) && self.constructed == constructed {
            Ok(())
        } else {
            Err(format!(
                "not a CMS structure: unexpected element for {what}"
            ))
        }
    }
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// The element at `at`, which must end by `limit`.
    fn header(&self, at: usize, limit: usize) -> Result<Header, String> {
        let short = || "not a CMS structure: cut short".to_string();
        let byte = |i: usize| {
            if i < limit {
                self.data.get(i).copied().ok_or_else(short)
            } else {
                Err(short())
            }
        };
        let first = byte(at)?;
        let class = match first >> 6 {
            0 => Class::Universal,
            1 => Class::Application,
            2 => Class::Context,
            _ => Class::Private,
        };
        let constructed = first & 0x20 != 0;
        let mut pos = at + 1;
        let mut tag = u32::from(first & 0x1F);
        if tag == 0x1F {
            tag = 0;
            for _ in 0..4 {
                let b = byte(pos)?;
                pos += 1;
                tag = (tag << 7) | u32::from(b & 0x7F);
                if b & 0x80 == 0 {
                    break;
                }
            }
            // Past four bytes: a tag no CMS structure uses.
            tag = tag.max(0x1F);
        }
        let len_byte = byte(pos)?;
        pos += 1;
        let end = if len_byte < 0x80 {
            Some(usize::from(len_byte))
        } else if len_byte == 0x80 {
            if !constructed {
                return Err("not a CMS structure: indefinite primitive".into());
            }
            None
        } else {
            let count = usize::from(len_byte & 0x7F);
            if count > std::mem::size_of::<usize>() {
                return Err("not a CMS structure: length too long".into());
            }
            let mut len = 0usize;
            for _ in 0..count {
                len = (len << 8) | usize::from(byte(pos)?);
                pos += 1;
            }
            Some(len)
        };
        let end = match end {
            Some(len) => {
                let end = pos.checked_add(len).ok_or_else(short)?;
                if end > limit {
                    return Err(short());
                }
                Some(end)
            }
            None => None,
        };
        Ok(Header {
            class,
            constructed,
            tag,
            start: pos,
            end,
            limit,
        })
    }

    fn primitive(&self, h: &Header) -> &'a [u8] {
        // Primitive elements always have a definite end, checked in `header`.
        self.data
            .get(h.start..h.end.unwrap_or(h.start))
            .unwrap_or(&[])
    }

    /// The children of a constructed element, one by one.
    fn children<'r>(&'r self, parent: &Header, depth: u32) -> Result<Children<'r, 'a>, String> {
        if depth > MAX_DEPTH {
            return Err(format!("CMS nested deeper than {MAX_DEPTH} levels"));
        }
        if !parent.constructed {
            return Err("not a CMS structure: primitive where constructed expected".into());
        }
        Ok(Children {
            reader: self,
            at: parent.start,
            end: parent.end,
            limit: parent.end.unwrap_or(parent.limit),
            depth,
            done: false,
        })
    }

    /// Where an element ends (past its end-of-contents for indefinite ones).
    fn skip(&self, h: &Header, depth: u32) -> Result<usize, String> {
        if let Some(end) = h.end {
            return Ok(end);
        }
        let mut children = self.children(h, depth + 1)?;
        while children.next_header()?.is_some() {}
        Ok(children.at)
    }

    /// Appends the bytes of an OCTET STRING, primitive or cut into chunks
    /// (constructed, at any nesting up to [`MAX_DEPTH`]), to `out`; returns
    /// where the element ends.
    fn octets(&self, h: &Header, depth: u32, out: &mut Vec<u8>) -> Result<usize, String> {
        if h.class != Class::Universal || h.tag != u32::from(TAG_OCTET_STRING) {
            return Err("not a CMS structure: eContent is not an OCTET STRING".into());
        }
        if !h.constructed {
            out.extend_from_slice(self.primitive(h));
            return Ok(h.end.unwrap_or(h.start));
        }
        let mut children = self.children(h, depth + 1)?;
        while let Some(chunk) = children.next_unskipped()? {
            children.at = self.octets(&chunk, depth + 1, out)?;
        }
        Ok(children.at)
    }
}

/// Walks the children of one constructed element.
struct Children<'r, 'a> {
    reader: &'r Reader<'a>,
    /// Where the next child starts.
    at: usize,
    /// The parent's definite end, if it has one.
    end: Option<usize>,
    limit: usize,
    depth: u32,
    done: bool,
}

impl Children<'_, '_> {
    /// The next child, stepping past it (nested indefinite elements are walked
    /// to find their end).
    fn next_header(&mut self) -> Result<Option<Header>, String> {
        let Some(child) = self.next_unskipped()? else {
            return Ok(None);
        };
        self.at = self.reader.skip(&child, self.depth)?;
        Ok(Some(child))
    }

    /// The next child; the caller moves `at` past it.
    fn next_unskipped(&mut self) -> Result<Option<Header>, String> {
        if self.done {
            return Ok(None);
        }
        match self.end {
            Some(end) if self.at >= end => {
                self.done = true;
                return Ok(None);
            }
            Some(_) => {}
            None => {
                if self.reader.data.get(self.at..self.at + 2) == Some(&[0, 0]) {
                    self.at += 2;
                    self.done = true;
                    return Ok(None);
                }
            }
        }
        let child = self.reader.header(self.at, self.limit)?;
        Ok(Some(child))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// DER for `tag` with `content`.
    pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = content.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes = n.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    fn indefinite(tag: u8, children: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![tag, 0x80];
        for c in children {
            out.extend_from_slice(c);
        }
        out.extend_from_slice(&[0, 0]);
        out
    }

    pub(crate) fn signed(econtent: Vec<u8>) -> Vec<u8> {
        let encap = [
            tlv(
                0x06,
                &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01],
            ),
            econtent,
        ]
        .concat();
        let signed_data = [
            tlv(0x02, &[1]),
            tlv(0x31, &[]),
            indefinite(0x30, &[encap]),
            tlv(0x31, &[]),
        ];
        indefinite(
            0x30,
            &[
                tlv(0x06, SIGNED_DATA),
                indefinite(0xA0, &[indefinite(0x30, &signed_data)]),
            ],
        )
    }

    #[test]
    fn signed_content_primitive_and_chunked() {
        let der = signed(tlv(0xA0, &tlv(0x04, b"hello")));
        assert_eq!(
            read_content_info(&der),
            Ok(Pkcs7::Signed(b"hello".to_vec()))
        );
        let chunks = indefinite(
            0xA0,
            &[indefinite(
                0x24,
                &[
                    tlv(0x04, b"hel"),
                    indefinite(0x24, &[tlv(0x04, b"l")]),
                    tlv(0x04, b"o"),
                ],
            )],
        );
        assert_eq!(
            read_content_info(&signed(chunks)),
            Ok(Pkcs7::Signed(b"hello".to_vec()))
        );
    }

    #[test]
    fn enveloped_and_other_types() {
        let env = tlv(0x30, &[tlv(0x06, ENVELOPED_DATA), tlv(0xA0, &[])].concat());
        assert_eq!(read_content_info(&env), Ok(Pkcs7::Encrypted));
        let comp = tlv(0x30, &tlv(0x06, COMPRESSED_DATA));
        assert_eq!(
            read_content_info(&comp),
            Ok(Pkcs7::Other("compressed-data"))
        );
    }

    #[test]
    fn damaged_and_hostile_input_errs() {
        let good = signed(tlv(0xA0, &tlv(0x04, b"hello")));
        // Cut anywhere: an error, or (cut after the content, in the signer
        // infos) the whole content, never a part of it.
        for n in 0..good.len() {
            match read_content_info(&good[..n]) {
                Err(_) => {}
                Ok(got) => assert_eq!(got, Pkcs7::Signed(b"hello".to_vec()), "cut at {n}"),
            }
        }
        // Deep nesting of chunks stops at MAX_DEPTH, without recursion past it.
        let mut deep = tlv(0x04, b"x");
        for _ in 0..1000 {
            deep = indefinite(0x24, &[deep]);
        }
        let err = read_content_info(&signed(indefinite(0xA0, &[deep]))).unwrap_err();
        assert!(err.contains("deeper"), "{err}");
        // A length past the end.
        assert!(read_content_info(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        assert!(read_content_info(b"").is_err());
        assert!(read_content_info(b"MIME-Version: 1.0\r\n").is_err());
    }
}
