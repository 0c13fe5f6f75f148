//! What a request's validators and `Range` ask of a file (RFC 9110 §13 and §14), decided from
//! the file's `ETag`, modification time and length alone: sans-IO, so every case is a unit test.

/// The request fields that decide the answer, borrowed from the request.
#[derive(Default, Clone, Copy)]
pub struct Ask<'a> {
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    pub range: Option<&'a [u8]>,
    pub if_range: Option<&'a [u8]>,
    pub accept_encoding: Option<&'a [u8]>,
}

impl<'a> Ask<'a> {
    /// Reads the fields from the request's headers in one pass.
    pub fn of(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Ask<'a> {
        let mut ask = Ask::default();
        for (name, value) in headers {
            let slot = match name.len() {
                5 if name.eq_ignore_ascii_case("range") => &mut ask.range,
                8 if name.eq_ignore_ascii_case("if-range") => &mut ask.if_range,
                13 if name.eq_ignore_ascii_case("if-none-match") => &mut ask.if_none_match,
                15 if name.eq_ignore_ascii_case("accept-encoding") => &mut ask.accept_encoding,
                17 if name.eq_ignore_ascii_case("if-modified-since") => &mut ask.if_modified_since,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        ask
    }

    /// Whether the answer can be the plain `200` with the whole file.
    pub fn is_plain(&self) -> bool {
        self.if_none_match.is_none() && self.if_modified_since.is_none() && self.range.is_none()
    }

    /// The fields copied, for an answer that waits on the disk.
    pub fn to_owned(self) -> OwnedAsk {
        let own = |v: Option<&[u8]>| v.map(|v| v.to_vec().into_boxed_slice());
        OwnedAsk {
            if_none_match: own(self.if_none_match),
            if_modified_since: own(self.if_modified_since),
            range: own(self.range),
            if_range: own(self.if_range),
            accept_encoding: own(self.accept_encoding),
        }
    }
}

/// [`Ask`] with its own copies.
#[derive(Default)]
pub struct OwnedAsk {
    if_none_match: Option<Box<[u8]>>,
    if_modified_since: Option<Box<[u8]>>,
    range: Option<Box<[u8]>>,
    if_range: Option<Box<[u8]>>,
    accept_encoding: Option<Box<[u8]>>,
}

impl OwnedAsk {
    pub fn borrow(&self) -> Ask<'_> {
        Ask {
            if_none_match: self.if_none_match.as_deref(),
            if_modified_since: self.if_modified_since.as_deref(),
            range: self.range.as_deref(),
            if_range: self.if_range.as_deref(),
            accept_encoding: self.accept_encoding.as_deref(),
        }
    }
}

/// The answer the validators and `Range` select.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with the whole file.
    Whole,
    /// 304.
    NotModified,
    /// 206 with bytes `start..=end`.
    Part(u64, u64),
    /// 416 with `Content-Range: bytes */LEN`.
    Unsatisfiable,
}

/// The file as its validators see it.
pub struct Validators<'a> {
    /// The strong entity tag, quotes included.
    pub etag: &'a str,
    /// Seconds since the epoch.
    pub modified: u64,
    pub len: u64,
}

/// Decides the answer to a GET or HEAD (RFC 9110 §13.2.2's order: `If-None-Match`, else
/// `If-Modified-Since`; then `Range`, if `If-Range` allows it). A `Range` that does not parse,
/// in another unit, or with several ranges, is answered with the whole file, as the RFC allows.
pub fn evaluate(ask: &Ask<'_>, file: &Validators<'_>) -> Outcome {
    if let Some(inm) = ask.if_none_match {
        if matches_any(inm, file.etag) {
            return Outcome::NotModified;
        }
    } else if let Some(since) = ask.if_modified_since.and_then(crate::http::date::parse_imf) {
        if file.modified <= since {
            return Outcome::NotModified;
        }
    }
    let Some(range) = ask.range else {
        return Outcome::Whole;
    };
    if let Some(if_range) = ask.if_range {
        if !if_range_holds(if_range, file) {
            return Outcome::Whole;
        }
    }
    match parse_range(range, file.len) {
        Some(Some((start, end))) => Outcome::Part(start, end),
        Some(None) => Outcome::Unsatisfiable,
        None => Outcome::Whole,
    }
}

/// `If-None-Match`: `*`, or a list of tags compared weakly (a `W/` prefix ignored).
fn matches_any(list: &[u8], etag: &str) -> bool {
    let want = etag.as_bytes();
    list.split(|&b| b == b',').any(|tag| {
        let tag = tag.trim_ascii();
        tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == want
    })
}

/// `If-Range`: an entity tag compared strongly, or a date equal to the file's.
fn if_range_holds(v: &[u8], file: &Validators<'_>) -> bool {
    let v = v.trim_ascii();
    if v.starts_with(b"\"") {
        return v == file.etag.as_bytes();
    }
    crate::http::date::parse_imf(v) == Some(file.modified)
}

/// A single byte range: `None` to ignore the field (not `bytes=`, malformed, several ranges),
/// `Some(None)` when it is unsatisfiable for a file of `len` bytes, else the inclusive range.
fn parse_range(v: &[u8], len: u64) -> Option<Option<(u64, u64)>> {
    let v = v.trim_ascii();
    let spec = match v.get(..6) {
        Some(unit) if unit.eq_ignore_ascii_case(b"bytes=") => v[6..].trim_ascii(),
        _ => return None,
    };
    if spec.contains(&b',') {
        return None; // several ranges: the whole file
    }
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    let num = |s: &[u8]| -> Option<u64> {
        if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    if first.is_empty() {
        // A suffix: the last N bytes.
        let n = num(last)?;
        if n == 0 || len == 0 {
            return Some(None);
        }
        return Some(Some((len.saturating_sub(n), len - 1)));
    }
    let start = num(first)?;
    let end = if last.is_empty() {
        u64::MAX
    } else {
        num(last)?
    };
    if end < start {
        return None; // invalid: ignored
    }
    if start >= len {
        return Some(None);
    }
    Some(Some((start, end.min(len - 1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &str = "\"5f-400\"";
    const MOD: u64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT

    fn eval(fields: &[(&str, &str)], len: u64) -> Outcome {
        let ask = Ask::of(fields.iter().map(|(n, v)| (*n, v.as_bytes())));
        let file = Validators {
            etag: TAG,
            modified: MOD,
            len,
        };
        evaluate(&ask, &file)
    }

    #[test]
    fn validators_give_304_only_when_they_match() {
        use Outcome::*;
        for (fields, want) in [
            (&[][..], Whole),
            (&[("If-None-Match", TAG)][..], NotModified),
            (&[("if-none-match", "W/\"5f-400\"")][..], NotModified),
            (&[("If-None-Match", "\"x\", \"5f-400\"")][..], NotModified),
            (&[("If-None-Match", "*")][..], NotModified),
            (&[("If-None-Match", "\"other\"")][..], Whole),
            (
                &[("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")][..],
                NotModified,
            ),
            (
                &[("If-Modified-Since", "Mon, 07 Nov 1994 08:49:37 GMT")][..],
                NotModified,
            ),
            (
                &[("If-Modified-Since", "Sat, 05 Nov 1994 08:49:37 GMT")][..],
                Whole,
            ),
            (&[("If-Modified-Since", "yesterday")][..], Whole),
            // If-None-Match decides; If-Modified-Since is then ignored.
            (
                &[
                    ("If-None-Match", "\"other\""),
                    ("If-Modified-Since", "Mon, 07 Nov 1994 08:49:37 GMT"),
                ][..],
                Whole,
            ),
        ] {
            assert_eq!(eval(fields, 1024), want, "{fields:?}");
        }
    }

    #[test]
    fn a_single_range_is_served_and_a_bad_one_ignored_or_refused() {
        use Outcome::*;
        for (range, want) in [
            ("bytes=0-99", Part(0, 99)),
            ("bytes=100-", Part(100, 1023)),
            ("bytes=-100", Part(924, 1023)),
            ("bytes=-5000", Part(0, 1023)),
            ("bytes=1000-5000", Part(1000, 1023)),
            ("BYTES=0-0", Part(0, 0)),
            ("bytes=1024-", Unsatisfiable),
            ("bytes=5000-6000", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=0-1,5-9", Whole),
            ("bytes=9-1", Whole),
            ("bytes=a-b", Whole),
            ("bytes=", Whole),
            ("bytes=-", Whole),
            ("bytes=0x10-", Whole),
            ("bytes=99999999999999999999-", Whole),
            ("items=0-1", Whole),
            ("", Whole),
        ] {
            assert_eq!(eval(&[("Range", range)], 1024), want, "{range}");
        }
        assert_eq!(eval(&[("Range", "bytes=0-")], 0), Unsatisfiable);
    }

    #[test]
    fn if_range_lets_a_range_through_only_when_the_file_is_the_same() {
        use Outcome::*;
        for (if_range, want) in [
            (TAG, Part(0, 9)),
            ("W/\"5f-400\"", Whole), // weak tags never match If-Range
            ("\"other\"", Whole),
            ("Sun, 06 Nov 1994 08:49:37 GMT", Part(0, 9)),
            ("Sun, 06 Nov 1994 08:49:38 GMT", Whole),
            ("garbage", Whole),
        ] {
            let got = eval(&[("Range", "bytes=0-9"), ("If-Range", if_range)], 1024);
            assert_eq!(got, want, "{if_range}");
        }
    }
}
