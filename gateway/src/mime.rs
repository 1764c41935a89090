//! Content types: from the name's extension, else from the first bytes.
//!
//! Sniffing follows the WHATWG MIME sniffing rules that browsers and other gateways use: known
//! signatures of binary formats (images, audio, video, archives, fonts; the `infer` crate's
//! table), HTML and XML markers after leading whitespace, byte-order marks, and otherwise
//! `text/plain` when no byte is a control byte that text never holds, else
//! `application/octet-stream`.

/// How many leading bytes sniffing looks at.
pub const SNIFF_LEN: usize = 512;

/// The type for a file named `name` (if it has a name) whose content starts with `head`.
#[cfg(test)]
fn content_type(name: Option<&str>, head: &[u8]) -> String {
    if let Some(t) = name.and_then(by_extension) {
        return t;
    }
    sniff(head)
}

/// The type for a name's extension, if the name has a known one.
pub fn by_extension(name: &str) -> Option<String> {
    let (_, ext) = name.rsplit_once('.')?;
    if ext.is_empty() {
        return None;
    }
    let mime = mime_guess::from_ext(ext).first()?;
    let essence = mime.essence_str();
    Some(if needs_charset(essence) { format!("{essence}; charset=utf-8") } else { essence.to_owned() })
}

fn needs_charset(essence: &str) -> bool {
    essence.starts_with("text/")
        || matches!(essence, "application/javascript" | "application/json" | "application/xml" | "image/svg+xml")
}

/// Markers that make a document HTML when followed by a space or `>` (compared ASCII
/// case-insensitively, after leading whitespace).
const HTML_TAGS: &[&[u8]] = &[
    b"<!DOCTYPE HTML",
    b"<HTML",
    b"<HEAD",
    b"<SCRIPT",
    b"<IFRAME",
    b"<H1",
    b"<DIV",
    b"<FONT",
    b"<TABLE",
    b"<A",
    b"<STYLE",
    b"<TITLE",
    b"<B",
    b"<BODY",
    b"<BR",
    b"<P",
    b"<!--",
];

/// The type of content starting with `head`.
pub fn sniff(head: &[u8]) -> String {
    let head = &head[..head.len().min(SNIFF_LEN)];
    let text = head.trim_ascii_start();
    for tag in HTML_TAGS {
        if text.len() > tag.len()
            && text[..tag.len()].eq_ignore_ascii_case(tag)
            && matches!(text[tag.len()], b' ' | b'>')
        {
            return "text/html; charset=utf-8".into();
        }
    }
    if text.starts_with(b"<?xml") {
        return "text/xml; charset=utf-8".into();
    }
    if is_json(text, head.len() == SNIFF_LEN) {
        return "application/json".into();
    }
    if head.starts_with(b"%PDF-") {
        return "application/pdf".into();
    }
    if head.starts_with(b"%!PS-Adobe-") {
        return "application/postscript".into();
    }
    // Any EBML document: WebM, as browsers sniff it.
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return "video/webm".into();
    }
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    if head.starts_with(&[0xFE, 0xFF]) || head.starts_with(&[0xFF, 0xFE]) {
        return "text/plain; charset=utf-16".into();
    }
    if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return "text/plain; charset=utf-8".into();
    }
    let binary = head.iter().any(|&b| matches!(b, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F));
    if binary {
        "application/octet-stream".into()
    } else {
        "text/plain; charset=utf-8".into()
    }
}

/// Whether `text` is a JSON object or array (or, when it is only the start of the file, the
/// start of one), as other gateways sniff JSON documents kept as files.
fn is_json(text: &[u8], cut: bool) -> bool {
    if !matches!(text.first(), Some(b'{' | b'[')) {
        return false;
    }
    match serde_json::from_slice::<serde_json::Value>(text) {
        Ok(_) => true,
        Err(e) => cut && e.is_eof(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_wins() {
        assert_eq!(content_type(Some("a.html"), b"\x00\x01"), "text/html; charset=utf-8");
        assert_eq!(content_type(Some("v.mp4"), b""), "video/mp4");
        assert_eq!(content_type(Some("x.svg"), b""), "image/svg+xml; charset=utf-8");
        assert_eq!(content_type(Some("s.css"), b""), "text/css; charset=utf-8");
    }

    #[test]
    fn unknown_extensions_and_none_sniff() {
        assert_eq!(content_type(Some("README"), b"  \n<!doctype html><p>x"), "text/html; charset=utf-8");
        assert_eq!(content_type(Some("x.unknownext"), b"hello world\n"), "text/plain; charset=utf-8");
        assert_eq!(content_type(None, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(content_type(None, b"\0\x01\x02binary"), "application/octet-stream");
        assert_eq!(content_type(None, b"%PDF-1.7"), "application/pdf");
        assert_eq!(content_type(None, b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm"), "video/webm");
        assert_eq!(content_type(None, b""), "text/plain; charset=utf-8");
        assert_eq!(content_type(None, br#" {"a": [1, 2]}"#), "application/json");
        assert_eq!(content_type(None, b"[1, 2"), "text/plain; charset=utf-8", "a whole file that is not JSON");
        let mut long = br#"{"a": ""#.to_vec();
        long.resize(SNIFF_LEN, b'x');
        assert_eq!(content_type(None, &long), "application/json", "the start of a longer document");
        assert_eq!(content_type(None, b"{not json}"), "text/plain; charset=utf-8");
        // `<a` must be followed by a space or `>` to count as HTML.
        assert_eq!(content_type(None, b"<abc"), "text/plain; charset=utf-8");
    }
}
