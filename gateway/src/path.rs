//! Request paths: `/ipfs/{cid}/{path}` on the path gateway, `/{path}` on a subdomain.
//!
//! Each segment is percent-decoded on its own, so `%2F` can never add a level. A decoded
//! segment must be valid UTF-8 and a name a directory could hold: `.`, `..`, and names with
//! `/`, `\` or NUL are refused with 400, as are paths longer than [`MAX_PATH_BYTES`] or deeper
//! than [`MAX_SEGMENTS`]. A content path cannot escape its root in any case, but refusing
//! these outright keeps logs honest and caches from storing one file under many names.

use cairn_node::merkle::Cid;
use percent_encoding::percent_decode_str;

/// The longest request path accepted, in bytes as sent.
pub const MAX_PATH_BYTES: usize = 4096;
/// The most segments below the root CID.
pub const MAX_SEGMENTS: usize = 256;

/// Why a path is refused, with the status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// 414: the path is too long.
    #[error("request path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    /// 400: the path is malformed.
    #[error("{0}")]
    Bad(String),
}

/// A content path: the root CID and the names below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentPath {
    /// The root CID as the request spelled it.
    pub root_text: String,
    /// The root CID.
    pub root: Cid,
    /// Decoded names below the root, none empty.
    pub segments: Vec<String>,
    /// Whether the request path ended with `/`.
    pub trailing_slash: bool,
}

impl ContentPath {
    /// Refuses (414) a path whose URL path built back, as `X-Ipfs-Path` and redirect
    /// locations carry it (each name percent-encoded, a `/` at the end), would be longer
    /// than [`MAX_PATH_BYTES`]: names sent unencoded (raw UTF-8, `"`, `{`) grow up to
    /// threefold when encoded, and a redirect that the gateway would refuse to follow is
    /// no answer.
    pub fn within_limit(self) -> Result<Self, PathError> {
        match self.to_url_path(true).len() > MAX_PATH_BYTES {
            true => Err(PathError::TooLong),
            false => Ok(self),
        }
    }

    /// `/ipfs/{root}/{segments...}` with each segment percent-encoded, and a `/` at the end
    /// when `slash`.
    pub fn to_url_path(&self, slash: bool) -> String {
        let mut out = format!("/ipfs/{}", self.root_text);
        for s in &self.segments {
            out.push('/');
            out.push_str(&encode_segment(s));
        }
        if slash {
            out.push('/');
        }
        out
    }

    /// The segments below the root as a `/`-joined path, percent-encoded, with a leading `/`
    /// (just `/` when there are none).
    pub fn rest_url_path(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            out.push('/');
            out.push_str(&encode_segment(s));
        }
        if out.is_empty() || self.trailing_slash {
            out.push('/');
        }
        out
    }

    /// The last name, or `None` at the root.
    pub fn last_name(&self) -> Option<&str> {
        self.segments.last().map(String::as_str)
    }
}

/// What a path may be encoded with: everything but unreserved characters and a few safe
/// sub-delimiters is percent-encoded.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// One name, percent-encoded for a URL path.
pub fn encode_segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}

/// Splits and decodes a raw (still percent-encoded) path below a root.
pub fn decode_segments(raw: &str) -> Result<(Vec<String>, bool), PathError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let trailing_slash = raw.ends_with('/');
    let mut out = Vec::new();
    for seg in raw.split('/').filter(|s| !s.is_empty()) {
        let name = percent_decode_str(seg)
            .decode_utf8()
            .map_err(|_| PathError::Bad(format!("path segment {seg:?} is not valid UTF-8 once decoded")))?;
        if name == "." || name == ".." {
            return Err(PathError::Bad(format!("path segment {seg:?} is {name:?}: relative paths are not allowed")));
        }
        if name.contains(['/', '\\', '\0']) {
            return Err(PathError::Bad(format!("path segment {seg:?} decodes to a name with '/', '\\' or NUL")));
        }
        out.push(name.into_owned());
        if out.len() > MAX_SEGMENTS {
            return Err(PathError::Bad(format!("path is deeper than {MAX_SEGMENTS} levels")));
        }
    }
    Ok((out, trailing_slash))
}

/// Parses the root CID text.
pub fn parse_root(text: &str) -> Result<Cid, PathError> {
    let decoded = percent_decode_str(text)
        .decode_utf8()
        .map_err(|_| PathError::Bad(format!("invalid CID {text:?}: not UTF-8")))?;
    cairn_node::merkle::hash::parse_cid(&decoded).map_err(|e| PathError::Bad(format!("invalid CID {decoded:?}: {e}")))
}

/// Parses a root CID's syntax only (any hash function): enough to name its subdomain.
pub fn parse_root_syntax(text: &str) -> Result<Cid, PathError> {
    let decoded = percent_decode_str(text)
        .decode_utf8()
        .map_err(|_| PathError::Bad(format!("invalid CID {text:?}: not UTF-8")))?;
    Cid::try_from(decoded.as_ref()).map_err(|e| PathError::Bad(format!("invalid CID {decoded:?}: {e}")))
}

/// Parses `/ipfs/{cid}[/path]` (the part after `/ipfs/` is `raw`), refusing CIDs whose hash
/// Cairn cannot verify.
pub fn parse_ipfs_path(raw: &str) -> Result<ContentPath, PathError> {
    parse_ipfs_path_with(raw, parse_root)
}

/// Parses `/ipfs/{cid}[/path]` with `parse_root` for the root.
pub fn parse_ipfs_path_with(
    raw: &str,
    parse_root: impl Fn(&str) -> Result<Cid, PathError>,
) -> Result<ContentPath, PathError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let (root_text, rest) = raw.split_once('/').unwrap_or((raw, ""));
    if root_text.is_empty() {
        return Err(PathError::Bad("missing CID after /ipfs/".into()));
    }
    let root = parse_root(root_text)?;
    let (segments, trailing_slash) = decode_segments(rest)?;
    let trailing_slash = trailing_slash || (rest.is_empty() && raw.ends_with('/'));
    ContentPath { root_text: root_text.to_owned(), root, segments, trailing_slash }.within_limit()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "bafkqaaa";

    #[test]
    fn segments_decode_one_by_one() {
        let p = parse_ipfs_path(&format!("{CID}/a%20b/%C3%BCn%C3%AF/")).unwrap();
        assert_eq!(p.segments, vec!["a b", "ünï"]);
        assert!(p.trailing_slash);
        assert_eq!(p.to_url_path(false), format!("/ipfs/{CID}/a%20b/%C3%BCn%C3%AF"));
        let p = parse_ipfs_path(CID).unwrap();
        assert!(p.segments.is_empty() && !p.trailing_slash);
        assert!(parse_ipfs_path(&format!("{CID}/")).unwrap().trailing_slash);
        // Empty segments (`//`) are dropped.
        assert_eq!(parse_ipfs_path(&format!("{CID}//a//b")).unwrap().segments, vec!["a", "b"]);
    }

    /// Found by the `gateway_path` fuzz target: a path of unencoded UTF-8 names under the
    /// limit grew past it when encoded for a redirect, which then got 414.
    #[test]
    fn a_path_is_refused_when_its_encoded_form_is_past_the_limit() {
        let fits = |n: usize| format!("{CID}/{}", "ü".repeat(n));
        // Each `ü` is 2 bytes as sent and 6 encoded (`%C3%BC`).
        let most = (MAX_PATH_BYTES - "/ipfs/".len() - CID.len() - 2) / 6;
        let p = parse_ipfs_path(&fits(most)).unwrap();
        let built = p.to_url_path(true);
        assert!(built.len() <= MAX_PATH_BYTES);
        assert_eq!(parse_ipfs_path(built.strip_prefix("/ipfs/").unwrap()).unwrap().segments, p.segments);
        assert!(fits(most + 1).len() < MAX_PATH_BYTES / 2);
        assert_eq!(parse_ipfs_path(&fits(most + 1)), Err(PathError::TooLong));
    }

    #[test]
    fn traversal_and_encoding_tricks_are_refused() {
        for bad in ["..", ".", "%2e%2e", "%2E.", "a%2Fb", "a%5Cb", "a%00b", "%ff%fe"] {
            let err = parse_ipfs_path(&format!("{CID}/x/{bad}/y")).unwrap_err();
            assert!(matches!(err, PathError::Bad(_)), "{bad}: {err:?}");
        }
        assert_eq!(parse_ipfs_path(&format!("{CID}/{}", "a/".repeat(3000))), Err(PathError::TooLong));
        assert!(matches!(parse_ipfs_path(&format!("{CID}/{}", "a/".repeat(300))), Err(PathError::Bad(_))));
    }

    #[test]
    fn bad_cids_are_refused() {
        for bad in ["", "notacid", "Qm", "bafy%ff", "%00"] {
            assert!(matches!(parse_ipfs_path(bad), Err(PathError::Bad(_))), "{bad:?}");
        }
    }

    #[test]
    fn names_encode_for_urls() {
        assert_eq!(encode_segment("a b?#%/ü"), "a%20b%3F%23%25%2F%C3%BC");
        assert_eq!(encode_segment("x-y_z.~'"), "x-y_z.~'");
    }
}
