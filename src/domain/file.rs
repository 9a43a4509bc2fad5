//! Room files: their keys (public, so unguessable), the names and types they are kept and
//! served with, and the rules for both. No I/O.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use unicode_normalization::UnicodeNormalization as _;

use super::ids::InvalidId;
use super::{AccountId, RoomId, Timestamp, UserId};

/// Random bytes in a key: 128 bits, well over the 96 that make a public URL unguessable.
const KEY_RANDOM_BYTES: usize = 16;
/// Longest extension a key carries (`.jpeg`, `.webm`, `.docx`); longer ones are left off.
const MAX_KEY_EXTENSION: usize = 10;
/// Longest filename kept, in bytes (the common file-system limit).
const MAX_FILENAME_BYTES: usize = 255;
/// What a file is called when its name has nothing left after sanitising.
const FALLBACK_FILENAME: &str = "file";
/// How many of a file's first bytes its type is sniffed from.
pub const SNIFF_BYTES: usize = 8192;

/// A file's key: `<first 8 hex digits of the room id>/<32 random hex digits>[.ext]`. The
/// random part makes it unguessable and never reused, so a key's bytes never change.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey(String);

impl FileKey {
    /// A new key for a file of `room` called `filename` (which gives the extension).
    pub fn generate(room: RoomId, filename: &str) -> Result<Self, getrandom::Error> {
        let mut random = [0_u8; KEY_RANDOM_BYTES];
        getrandom::fill(&mut random)?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let room = room.as_uuid().simple().to_string();
        let mut key = format!("{}/{hex}", &room[..8]);
        if let Some(extension) = key_extension(filename) {
            key.push('.');
            key.push_str(&extension);
        }
        Ok(Self(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The random part: what tells this file's bytes apart from every other's (its ETag).
    pub fn random_part(&self) -> &str {
        let name = self.0.split_once('/').map_or("", |(_, name)| name);
        name.split_once('.').map_or(name, |(random, _)| random)
    }
}

/// The extension a key gets from a filename: lower-case ASCII letters and digits only.
fn key_extension(filename: &str) -> Option<String> {
    let (_, extension) = filename.rsplit_once('.')?;
    let extension = extension.to_ascii_lowercase();
    let plain = !extension.is_empty()
        && extension.len() <= MAX_KEY_EXTENSION
        && extension
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    plain.then_some(extension)
}

impl FromStr for FileKey {
    type Err = InvalidId;

    fn from_str(text: &str) -> Result<Self, InvalidId> {
        let (room, name) = text.split_once('/').ok_or(InvalidId)?;
        let (random, extension) = match name.split_once('.') {
            Some((random, extension)) => (random, Some(extension)),
            None => (name, None),
        };
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let extension_ok =
            extension.is_none_or(|e| key_extension(&format!(".{e}")).as_deref() == Some(e));
        if hex(room, 8) && hex(random, 2 * KEY_RANDOM_BYTES) && extension_ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidId)
        }
    }
}

impl fmt::Display for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileKey({})", self.0)
    }
}

impl Serialize for FileKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A file of a room.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageFile<'a> {
    #[schema(value_type = String, example = "c3003c93/uploads/screenshot.png")]
    pub key: &'a FileKey,
    /// `<files.public_url>/v1/accounts/<accountId>/storage/<key>`: public, by key.
    pub url: String,
    pub filename: &'a str,
    /// Sniffed from the file's first bytes, never taken from the client.
    pub mime_type: &'a str,
    /// Bytes.
    pub size: i64,
    pub uploaded_at: Timestamp,
    pub uploaded_by: UserId,
}

/// A stored file, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub key: FileKey,
    pub account_id: AccountId,
    pub room_id: RoomId,
    pub filename: String,
    pub mime_type: String,
    pub size: i64,
    pub uploaded_at: Timestamp,
    pub uploaded_by: UserId,
}

impl StoredFile {
    /// The documented StorageFile (camelCase), its `url` below `base` (the server's public
    /// address, no trailing slash).
    pub fn json(&self, base: &str) -> serde_json::Value {
        serde_json::to_value(self.wire(base)).expect("a file serializes")
    }

    /// The documented StorageFile, its `url` below `base`.
    pub fn wire(&self, base: &str) -> StorageFile<'_> {
        StorageFile {
            key: &self.key,
            url: self.url(base),
            filename: &self.filename,
            mime_type: &self.mime_type,
            size: self.size,
            uploaded_at: self.uploaded_at,
            uploaded_by: self.uploaded_by,
        }
    }

    pub fn url(&self, base: &str) -> String {
        format!(
            "{base}/v1/accounts/{}/storage/{}",
            self.account_id, self.key
        )
    }
}

/// The name a file is kept under: its last path component, NFC-normalised, without control
/// or invisible formatting characters (bidirectional overrides), without leading dots or
/// surrounding spaces, at most 255 bytes (the extension kept), never empty, `.` or `..`.
pub fn sanitize_filename(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .nfc()
        .filter(|c| !c.is_control() && !is_invisible_format(*c))
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').trim();
    if trimmed.is_empty() {
        return FALLBACK_FILENAME.to_owned();
    }
    truncate_keeping_extension(trimmed, MAX_FILENAME_BYTES)
}

/// Characters that change how a name is displayed without showing (a right-to-left override
/// makes `gpj.exe` look like `exe.jpg`).
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let extension = name
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| e.len() <= MAX_KEY_EXTENSION * 2);
    let keep = max - extension.map_or(0, |e| e.len() + 1);
    let mut end = keep;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    match extension {
        Some(extension) => format!("{}.{extension}", &name[..end]),
        None => name[..end].to_owned(),
    }
}

/// A file's type, from its first bytes (`SNIFF_BYTES` of them), never from what the client
/// claims: a PNG named `.html` is `image/png`. Text is told apart by the name's extension
/// (markup among it is served as an attachment); anything unrecognised is
/// `application/octet-stream`.
pub fn sniff_mime(head: &[u8], filename: &str) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        // A multi-byte character cut at the end of the sniffed bytes.
        Err(error) if error.error_len().is_none() => {
            std::str::from_utf8(&head[..error.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return OCTET_STREAM.to_owned(),
    };
    if text.contains('\0') {
        return OCTET_STREAM.to_owned();
    }
    let start = text
        .trim_start_matches('\u{FEFF}')
        .trim_start()
        .to_ascii_lowercase();
    if start.starts_with("<svg") || (start.starts_with("<?xml") && start.contains("<svg")) {
        return "image/svg+xml".to_owned();
    }
    if start.starts_with("<!doctype html") || start.starts_with("<html") {
        return "text/html".to_owned();
    }
    if start.starts_with("<?xml") {
        return "application/xml".to_owned();
    }
    let extension = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "json" => "application/json",
        "csv" => "text/csv",
        "md" | "markdown" => "text/markdown",
        "html" | "htm" => "text/html",
        "svg" => "image/svg+xml",
        "xml" => "application/xml",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        _ => "text/plain",
    }
    .to_owned()
}

pub const OCTET_STREAM: &str = "application/octet-stream";

/// Whether a type may be shown in the browser (`inline`): images other than SVG, audio,
/// video, PDF, plain text and JSON. Anything else (HTML, SVG, XML, scripts, unknown types)
/// could run script on the server's origin and goes out as an attachment.
pub fn displays_inline(mime_type: &str) -> bool {
    let (category, subtype) = mime_type.split_once('/').unwrap_or((mime_type, ""));
    match category {
        "image" => !subtype.contains("svg") && !subtype.contains("xml"),
        "audio" | "video" => true,
        _ => matches!(
            mime_type,
            "application/pdf" | "text/plain" | "text/csv" | "application/json"
        ),
    }
}

/// A `mimeType` filter of the list: an exact type, or a category (`image/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MimeFilter {
    Exact(String),
    Category(String),
}

impl MimeFilter {
    pub fn parse(text: &str) -> Self {
        let text = text.trim().to_ascii_lowercase();
        if text.ends_with('/') {
            Self::Category(text)
        } else {
            Self::Exact(text)
        }
    }

    pub fn matches(&self, mime_type: &str) -> bool {
        match self {
            Self::Exact(exact) => mime_type == exact,
            Self::Category(prefix) => mime_type.starts_with(prefix.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_parse_back_and_keep_a_plain_extension() {
        let room = RoomId::new();
        let a = FileKey::generate(room, "Screenshot.PNG").unwrap();
        let b = FileKey::generate(room, "Screenshot.PNG").unwrap();
        assert_ne!(a, b);
        assert!(a
            .as_str()
            .starts_with(&room.as_uuid().simple().to_string()[..8]));
        assert!(a.as_str().ends_with(".png"), "{a}");
        assert_eq!(a.random_part().len(), 32);
        assert_eq!(a.as_str().parse::<FileKey>().unwrap(), a);
        let bare = FileKey::generate(room, "x.tar.<script>").unwrap();
        assert!(!bare.as_str().contains('.'), "{bare}");
        for bad in [
            "",
            "../etc/passwd",
            "abcdef12/zz",
            "abcdef12/../../x",
            "ABCDEF12/0123456789abcdef0123456789abcdef",
        ] {
            assert!(bad.parse::<FileKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn filenames_are_sanitised() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("C:\\Users\\a\\photo.jpg"), "photo.jpg");
        assert_eq!(sanitize_filename(".."), "file");
        assert_eq!(sanitize_filename("  .hidden  "), "hidden");
        assert_eq!(sanitize_filename("a\u{0}b\nc\u{202E}gpj.exe"), "abcgpj.exe");
        // NFD "é" becomes NFC.
        assert_eq!(sanitize_filename("cafe\u{301}.txt"), "caf\u{e9}.txt");
        let long = format!("{}.png", "é".repeat(300));
        let kept = sanitize_filename(&long);
        assert!(kept.len() <= 255 && kept.ends_with(".png"), "{kept}");
    }

    #[test]
    fn types_come_from_the_bytes() {
        let png = [
            0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R',
        ];
        assert_eq!(sniff_mime(&png, "evil.html"), "image/png");
        assert_eq!(
            sniff_mime(b"<!DOCTYPE html><script>", "cat.png"),
            "text/html"
        );
        assert_eq!(
            sniff_mime(b"<svg xmlns='http://www.w3.org/2000/svg'>", "a.png"),
            "image/svg+xml"
        );
        assert_eq!(sniff_mime(b"hello", "notes.txt"), "text/plain");
        assert_eq!(sniff_mime(b"{\"a\":1}", "data.json"), "application/json");
        assert_eq!(sniff_mime(&[0xff, 0x00, 0xfe, 0x01], "x.png"), OCTET_STREAM);
        assert!(displays_inline("image/png"));
        assert!(!displays_inline("image/svg+xml"));
        assert!(!displays_inline("text/html"));
        assert!(!displays_inline(OCTET_STREAM));
    }

    #[test]
    fn mime_filters_match_types_and_categories() {
        assert!(MimeFilter::parse("image/").matches("image/png"));
        assert!(!MimeFilter::parse("image/").matches("video/mp4"));
        assert!(MimeFilter::parse("IMAGE/PNG").matches("image/png"));
        assert!(!MimeFilter::parse("image/png").matches("image/pngx"));
    }
}
