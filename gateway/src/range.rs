//! `Range: bytes=...` for file responses (RFC 9110, section 14).
//!
//! One range is served as 206. A request for a few ranges at once gets the first of them (206
//! with its `Content-Range`, as other gateways answer); more than [`MAX_RANGES`], a range that
//! starts past the end, a suffix of zero bytes, numbers that overflow and anything malformed
//! are answered with 416 and a line saying why, so that a client never gets bytes it did not
//! ask for in the belief that they are the ones it did. An empty file has no ranges: it is
//! served whole.

use hyper::header::HeaderValue;

/// The most ranges one request may name.
pub const MAX_RANGES: usize = 16;

/// What a `Range` header asks of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No range (or a unit other than bytes, which is ignored): the whole file.
    Whole,
    /// Bytes `start..end` (half-open, within the file).
    Part {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// 416, with the reason.
    Unsatisfiable(String),
}

/// Reads the `Range` header against a file of `size` bytes.
pub fn parse(header: Option<&HeaderValue>, size: u64) -> RangeRequest {
    let Some(header) = header else { return RangeRequest::Whole };
    let Ok(text) = header.to_str() else {
        return RangeRequest::Unsatisfiable("Range header is not ASCII".into());
    };
    let text = text.trim();
    let Some(specs) = text.strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if size == 0 {
        return RangeRequest::Whole;
    }
    let specs: Vec<&str> = specs.split(',').map(str::trim).filter(|s| !s.is_empty()).take(MAX_RANGES + 1).collect();
    if specs.len() > MAX_RANGES {
        return RangeRequest::Unsatisfiable(format!("more than {MAX_RANGES} ranges in one request"));
    }
    let Some(&spec) = specs.first() else {
        return RangeRequest::Unsatisfiable("the Range header names no range".into());
    };
    let bad = || RangeRequest::Unsatisfiable(format!("malformed byte range {spec:?}"));
    let Some((first, last)) = spec.split_once('-') else { return bad() };
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if first.is_empty() {
        // `-N`: the last N bytes.
        let Some(n) = number(last) else { return bad() };
        if n == 0 {
            return RangeRequest::Unsatisfiable(format!("range {spec:?} selects no bytes of a {size}-byte file"));
        }
        return RangeRequest::Part { start: size - n.min(size), end: size };
    }
    let Some(start) = number(first) else { return bad() };
    let end = if last.is_empty() {
        size
    } else {
        let Some(last) = number(last) else { return bad() };
        if last < start {
            return bad();
        }
        last.saturating_add(1).min(size)
    };
    if start >= size {
        return RangeRequest::Unsatisfiable(format!("range {spec:?} starts past the end of a {size}-byte file"));
    }
    RangeRequest::Part { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(h: &str, size: u64) -> RangeRequest {
        parse(Some(&HeaderValue::from_str(h).unwrap()), size)
    }

    #[test]
    fn single_ranges() {
        assert_eq!(parse(None, 10), RangeRequest::Whole);
        assert_eq!(p("bytes=0-0", 10), RangeRequest::Part { start: 0, end: 1 });
        assert_eq!(p("bytes=2-", 10), RangeRequest::Part { start: 2, end: 10 });
        assert_eq!(p("bytes=-3", 10), RangeRequest::Part { start: 7, end: 10 });
        assert_eq!(p("bytes=-30", 10), RangeRequest::Part { start: 0, end: 10 });
        assert_eq!(p("bytes=5-999999999999999999", 10), RangeRequest::Part { start: 5, end: 10 });
        assert_eq!(p("items=0-1", 10), RangeRequest::Whole);
        // A few ranges: the first is served.
        assert_eq!(p("bytes=6-16,0-4", 31), RangeRequest::Part { start: 6, end: 17 });
        // An empty file is served whole.
        assert_eq!(p("bytes=0-", 0), RangeRequest::Whole);
    }

    #[test]
    fn bad_ranges_are_416() {
        for h in [
            "bytes=10-",
            "bytes=10-20",
            "bytes=-0",
            "bytes=5-2",
            "bytes=-5-10",
            "bytes=a-b",
            "bytes=99999999999999999999999-",
            "bytes=+1-2",
            "bytes=",
            &format!("bytes={}", "0-1,".repeat(1000)),
        ] {
            assert!(matches!(p(h, 10), RangeRequest::Unsatisfiable(_)), "{h}");
        }
    }
}
