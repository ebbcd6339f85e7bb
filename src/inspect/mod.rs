//! Inspection: what a message contains — parts, names, real types, archives and
//! what is inside them. Facts only; the rules in `crate::rules` decide.
//!
//! Two layers: [`file`] tells everything about one file's bytes (its real type by
//! content, and, for an archive, every entry inside, recursively, within the
//! message's [`budget`]), and for a file that carries files (PDF, RTF, HTML,
//! BinHex: [`carrier`]) every file it carries; the MIME walk finds every file in
//! a message (attachments, nested messages, uuencoded blocks, TNEF) and collects
//! the facts into an [`Inspection`].

pub mod archive;
pub mod binhex;
pub mod budget;
pub mod carrier;
pub mod cms;
pub mod document;
pub mod file;
pub mod filetype;
pub mod html;
pub mod mime;
pub mod names;
pub mod pdf;
pub mod rtf;
pub mod saved_message;
pub mod text;
pub mod tnef;
pub mod transfer;
pub mod uuencode;

use bytes::Bytes;

pub use mime::{inspect_message, inspect_message_shared};

/// The real type of a file, by content (never by name or declared type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// A program or script that runs when opened.
    Executable(ExecKind),
    /// An archive the filter opens (its entries follow as their own facts).
    Archive(ArchiveKind),
    /// An office document that is a zip or OLE2 container (docx, xlsx, odt, doc...);
    /// not an archive, but what hides inside is still inspected.
    Document(&'static str),
    /// Anything else: the MIME type `infer` gives, or `application/octet-stream`.
    Other(String),
}

/// Kinds of executable content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecKind {
    /// Windows PE (`MZ` with a `PE\0\0` header): .exe, .dll, .scr, .com in PE form.
    Pe,
    /// DOS program without a PE header (`MZ` only).
    Dos,
    Elf,
    /// Mach-O, thin or universal.
    MachO,
    /// Windows Installer: an OLE2 file whose root entry has the MSI class id.
    Msi,
    JavaClass,
    /// A script that starts with `#!`.
    Script,
    /// Microsoft Compiled HTML Help (`ITSF`): Windows opens it with hh.exe, and
    /// its pages run scripts and ActiveX with the user's rights.
    Chm,
}

/// Archive formats the filter knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Zip,
    SevenZip,
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Rar4,
    Rar5,
    /// Microsoft cabinet (`MSCF`).
    Cab,
    /// ISO 9660 image.
    Iso,
    /// LHA/LZH.
    Lha,
    /// cpio (binary, odc, newc).
    Cpio,
    /// Unix ar (also .deb packages).
    Ar,
    /// Recognised but cannot be opened here: InstallShield cab, arj, ace, xar,
    /// img, vhd, vhdx, wim, zstd, lzip.
    Unsupported(&'static str),
}

/// What one file is: an attachment, or an entry inside an archive at any depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    /// Where it sits: the attachment's name, then the entry names down to this
    /// file (`["a.zip", "docs/b.7z", "x.exe"]`). Unnamed levels are `"(unnamed)"`.
    pub path: Vec<String>,
    /// Its own name, if it has one (decoded; may hold any Unicode).
    pub name: Option<String>,
    /// Decoded (or unpacked) size in bytes; for entries that are listed but not
    /// unpacked (rar), the size the archive states.
    pub size: u64,
    pub kind: FileKind,
    /// An archive with encrypted entries or encrypted headers.
    pub encrypted: bool,
    /// Why this file could not be fully inspected (a limit that was hit, a format
    /// that cannot be opened), if so.
    pub uninspectable: Option<String>,
    /// A digitally signed document: where its signature sits (detected, not
    /// verified).
    pub signature: Option<SignatureFormat>,
    /// An office document that holds macros: a VBA project, Excel 4.0 macro
    /// sheets, ODF Basic modules or scripts ([`document`]).
    pub macros: bool,
    /// SHA-256 of the decoded bytes (what `sha256sum` gives for the saved file);
    /// `None` when not all of them were read (encrypted, cut by a limit, only listed).
    pub sha256: Option<[u8; 32]>,
    /// For a document (text, HTML, office, RTF, PDF): the classification stamp
    /// its text carries, or why its text cannot be read (src/inspect/text/).
    pub text: Option<text::DocumentText>,
}

/// How a document is digitally signed (Điều 4 khoản 8 encourages it): the
/// format's own signature, found by its place, its certificates not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFormat {
    /// A signature dictionary (`/Type /Sig` with `/ByteRange`).
    Pdf,
    /// An OOXML package signature (`_xmlsignatures/`).
    Ooxml,
    /// An ODF document signature (`META-INF/documentsignatures.xml`).
    Odf,
}

impl SignatureFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureFormat::Pdf => "pdf",
            SignatureFormat::Ooxml => "ooxml",
            SignatureFormat::Odf => "odf",
        }
    }
}

/// A signed document of a message, for the audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDocument<'a> {
    /// Where it sits, as [`FileFacts::path`].
    pub path: &'a [String],
    pub format: SignatureFormat,
}

/// A decoded leaf part for the virus scanner.
#[derive(Debug, Clone)]
pub struct ScanPart {
    /// For logs: the part's name or its position (`part 2.1`).
    pub label: String,
    pub data: Bytes,
}

/// How the message is signed, for the metrics (Điều 4 khoản 8 encourages it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// `multipart/signed` with `application/(x-)pkcs7-signature`, or
    /// `application/(x-)pkcs7-mime; smime-type=signed-data`.
    Smime,
    /// `multipart/signed` with `application/pgp-signature`, or an inline
    /// `-----BEGIN PGP SIGNED MESSAGE-----` body.
    OpenPgp,
}

impl Signature {
    pub fn as_str(self) -> &'static str {
        match self {
            Signature::Smime => "smime",
            Signature::OpenPgp => "openpgp",
        }
    }
}

/// Everything the MIME walk found in one message.
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    /// Every file: attachments (named or not, inline ones too), attached messages
    /// themselves, files inside attached messages at any depth, uuencoded blocks,
    /// the files inside TNEF `winmail.dat`, and (through [`file::inspect_file`])
    /// every entry inside archives and every file a PDF, RTF, HTML or BinHex
    /// file carries. A body text part appears here only when its
    /// content is not text (an executable or archive sent as "text").
    pub files: Vec<FileFacts>,
    /// Other names a file was given, by index into `files`: a plain `filename`
    /// beside an RFC 2231 one, a `Content-Type` name that differs from the
    /// `Content-Disposition` filename. The rules check them like the file's name.
    pub alt_names: Vec<(usize, String)>,
    /// Decoded size of the message's attachments together (Điều 10): every part
    /// except the message's own body text; an attached message counts once, at
    /// its decoded size; uuencoded files in the body text count too.
    pub attachments_size: u64,
    /// Decoded leaf parts for the virus scanner: the parts `attachments_size`
    /// counts, except that an attached message is given as its decoded leaves
    /// (its body text included) rather than as one raw blob; plus uuencoded files.
    /// TNEF stays whole (clamd unpacks it).
    pub scan_parts: Vec<ScanPart>,
    /// How the message itself is signed, if it is.
    pub signed: Option<Signature>,
    /// MIME entities seen, attached messages' parts included (plus uuencoded and
    /// TNEF files).
    pub parts: u64,
    /// Why the message could not be inspected completely (a limit was hit); each
    /// makes the message uninspectable.
    pub problems: Vec<String>,
    /// Classification stamps in the body text (plain or HTML) of the message or
    /// of an attached message: where (`body`, or the attached message's path)
    /// and which stamp. Attachments' stamps are in `files[..].text`.
    pub body_stamps: Vec<(String, &'static str)>,
}

impl Inspection {
    /// The digitally signed documents among the files, at any depth.
    pub fn signed_documents(&self) -> impl Iterator<Item = SignedDocument<'_>> {
        self.files.iter().filter_map(|f| {
            f.signature.map(|format| SignedDocument {
                path: &f.path,
                format,
            })
        })
    }
}
