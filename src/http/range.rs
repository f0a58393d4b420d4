//! Pure parsing of `Range` and of the validators in conditional requests (RFC 9110 §13, §14).

/// The part of a representation that a `Range` header selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send the whole representation with 200.
    Full,
    /// One satisfiable range, both ends inclusive.
    Partial { start: u64, end: u64 },
    /// A valid range header none of whose ranges overlaps the representation: 416.
    Unsatisfiable,
}

/// Interprets a `Range` header value for a representation of `len` bytes.
///
/// Only one range is served. A header with several ranges, another unit or bad syntax is ignored
/// (the whole representation is sent), which RFC 9110 allows and which every cache handles.
pub fn parse_range(header: &str, len: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix form `-N`: the last N bytes.
        let Some(suffix) = parse_digits(last) else {
            return RangeRequest::Full;
        };
        if suffix == 0 || len == 0 {
            return RangeRequest::Unsatisfiable;
        }
        let start = len.saturating_sub(suffix);
        return RangeRequest::Partial {
            start,
            end: len - 1,
        };
    }
    let Some(start) = parse_digits(first) else {
        return RangeRequest::Full;
    };
    let end = if last.is_empty() {
        None
    } else {
        match parse_digits(last) {
            Some(end) if end >= start => Some(end),
            // `last < first` makes the header invalid, so it is ignored.
            _ => return RangeRequest::Full,
        }
    };
    if start >= len {
        return RangeRequest::Unsatisfiable;
    }
    let end = end.map_or(len - 1, |end| end.min(len - 1));
    RangeRequest::Partial { start, end }
}

fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Splits a list of entity tags such as `"a", W/"b"`; returns `None` for `*`.
fn entity_tags(header: &str) -> Option<Vec<(bool, &str)>> {
    if header.trim() == "*" {
        return None;
    }
    Some(
        header
            .split(',')
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
            .map(|tag| match tag.strip_prefix("W/") {
                Some(rest) => (true, rest),
                None => (false, tag),
            })
            .collect(),
    )
}

/// `If-None-Match`: true when the client's copy matches `etag` (weak comparison), so 304 applies.
pub fn none_match_hits(header: &str, etag: &str) -> bool {
    match entity_tags(header) {
        None => true,
        Some(tags) => tags.iter().any(|(_, tag)| *tag == etag),
    }
}

/// `If-Match`: true when the request may proceed (strong comparison).
pub fn if_match_passes(header: &str, etag: &str) -> bool {
    match entity_tags(header) {
        None => true,
        Some(tags) => tags.iter().any(|(weak, tag)| !weak && *tag == etag),
    }
}

/// `If-Range`: true when the range may be served; a stale or weak validator means send it whole.
/// A date validator must equal `last_modified` exactly, as RFC 9110 requires for strong dates.
pub fn if_range_passes(header: &str, etag: &str, last_modified: Option<&str>) -> bool {
    let header = header.trim();
    if header.starts_with('"') {
        return header == etag;
    }
    if header.starts_with("W/") {
        return false;
    }
    last_modified == Some(header)
}

/// `If-Modified-Since`: true when the resource is unchanged since the client's date, so 304 applies.
pub fn not_modified_since(header: &str, last_modified: std::time::SystemTime) -> bool {
    match httpdate::parse_http_date(header.trim()) {
        Ok(since) => last_modified <= since,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn range_table() {
        let len = 1000;
        let cases: &[(&str, RangeRequest)] = &[
            ("bytes=0-1", Partial { start: 0, end: 1 }),
            ("bytes=0-0", Partial { start: 0, end: 0 }),
            (
                "bytes=500-",
                Partial {
                    start: 500,
                    end: 999,
                },
            ),
            (
                "bytes=-100",
                Partial {
                    start: 900,
                    end: 999,
                },
            ),
            // A suffix longer than the representation selects all of it.
            ("bytes=-5000", Partial { start: 0, end: 999 }),
            // An end past the last byte is clamped.
            (
                "bytes=990-5000",
                Partial {
                    start: 990,
                    end: 999,
                },
            ),
            (
                "bytes=999-999",
                Partial {
                    start: 999,
                    end: 999,
                },
            ),
            ("bytes=1000-", Unsatisfiable),
            ("bytes=1000-1001", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=5-2", Full),
            ("bytes=0-1,5-6", Full),
            ("items=0-1", Full),
            ("bytes=a-b", Full),
            ("bytes=-", Full),
            ("bytes=+1-2", Full),
            ("", Full),
        ];
        for (header, expected) in cases {
            assert_eq!(parse_range(header, len), *expected, "header {header:?}");
        }
    }

    #[test]
    fn none_match_uses_weak_comparison() {
        assert!(none_match_hits("\"abc\"", "\"abc\""));
        assert!(none_match_hits("W/\"abc\"", "\"abc\""));
        assert!(none_match_hits("\"x\", \"abc\"", "\"abc\""));
        assert!(none_match_hits("*", "\"abc\""));
        assert!(!none_match_hits("\"abd\"", "\"abc\""));
    }

    #[test]
    fn if_match_uses_strong_comparison() {
        assert!(if_match_passes("\"abc\"", "\"abc\""));
        assert!(!if_match_passes("W/\"abc\"", "\"abc\""));
        assert!(if_match_passes("*", "\"abc\""));
    }

    #[test]
    fn if_range_table() {
        let date = "Thu, 01 Jan 2026 00:00:00 GMT";
        assert!(if_range_passes("\"abc\"", "\"abc\"", Some(date)));
        assert!(!if_range_passes("\"old\"", "\"abc\"", Some(date)));
        assert!(!if_range_passes("W/\"abc\"", "\"abc\"", Some(date)));
        assert!(if_range_passes(date, "\"abc\"", Some(date)));
        assert!(!if_range_passes(
            "Fri, 02 Jan 2026 00:00:00 GMT",
            "\"abc\"",
            Some(date)
        ));
    }

    #[test]
    fn modified_since_compares_dates() {
        let modified = httpdate::parse_http_date("Thu, 01 Jan 2026 00:00:00 GMT").unwrap();
        assert!(not_modified_since(
            "Thu, 01 Jan 2026 00:00:00 GMT",
            modified
        ));
        assert!(not_modified_since(
            "Fri, 02 Jan 2026 00:00:00 GMT",
            modified
        ));
        assert!(!not_modified_since(
            "Wed, 31 Dec 2025 00:00:00 GMT",
            modified
        ));
        assert!(!not_modified_since("yesterday", modified));
    }
}
