//! Short byte strings compared a machine word at a time: methods, paths and header names are
//! a few bytes long, where `==` calls `memcmp` and `eq_ignore_ascii_case` maps every byte
//! through a table.

/// Whether `a` and `b` are equal once bit `fold` is set in every byte of both (0: exactly
/// equal). Compared in (overlapping) 8-, 4- or 2-byte windows.
#[inline]
fn eq_folded(a: &[u8], b: &[u8], fold: u8) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let f8 = u64::from_ne_bytes([fold; 8]);
    let f4 = u32::from_ne_bytes([fold; 4]);
    let w8 = |s: &[u8], i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().unwrap()) | f8;
    let w4 = |s: &[u8], i: usize| u32::from_ne_bytes(s[i..i + 4].try_into().unwrap()) | f4;
    let f2 = u16::from_ne_bytes([fold; 2]);
    let w2 = |s: &[u8], i: usize| u16::from_ne_bytes([s[i], s[i + 1]]) | f2;
    match n {
        // Two overlapping windows cover the whole string.
        8..=16 => w8(a, 0) == w8(b, 0) && w8(a, n - 8) == w8(b, n - 8),
        17.. => {
            let mut i = 0;
            while i + 8 < n {
                if w8(a, i) != w8(b, i) {
                    return false;
                }
                i += 8;
            }
            w8(a, n - 8) == w8(b, n - 8)
        }
        4.. => w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4),
        // Methods such as GET and PUT.
        2.. => w2(a, 0) == w2(b, 0) && w2(a, n - 2) == w2(b, n - 2),
        1 => a[0] | fold == b[0] | fold,
        0 => true,
    }
}

/// Byte equality of short byte strings (header values).
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    eq_folded(a, b, 0)
}

/// Byte equality of short strings (methods, paths).
#[inline]
pub(crate) fn same(a: &str, b: &str) -> bool {
    eq_folded(a.as_bytes(), b.as_bytes(), 0)
}

/// Whether a header name is `lower`, in any case. Header names are tokens (httparse checked),
/// and the names compared here are letters and `-`: setting bit 0x20 lower-cases a letter and
/// maps no other token byte onto a letter or `-`.
#[inline]
pub(crate) fn is_name(name: &[u8], lower: &[u8]) -> bool {
    eq_folded(name, lower, 0x20)
}

/// Whether `s` holds the byte `b`, in overlapping 8- or 4-byte windows (`contains` calls out
/// to a searcher built for long haystacks; request targets are short).
pub(crate) fn has_byte(s: &[u8], b: u8) -> bool {
    const LO: u64 = u64::from_ne_bytes([0x01; 8]);
    const HI: u64 = u64::from_ne_bytes([0x80; 8]);
    // A zero byte in `w ^ pat` is a `b` in `w` (the classic has-zero-byte test).
    let hit = |w: u64| {
        let x = w ^ (LO * u64::from(b));
        x.wrapping_sub(LO) & !x & HI != 0
    };
    let w8 = |i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().unwrap());
    let w4 = |i: usize| u64::from(u32::from_ne_bytes(s[i..i + 4].try_into().unwrap()));
    let n = s.len();
    match n {
        8.. => {
            let mut i = 0;
            while i + 8 < n {
                if hit(w8(i)) {
                    return true;
                }
                i += 8;
            }
            hit(w8(n - 8))
        }
        // Two 4-byte windows, high halves padded with a byte that is not `b`.
        4.. => {
            let pad = u64::from_ne_bytes([!b; 8]) << 32;
            hit(w4(0) | pad) || hit(w4(n - 4) | pad)
        }
        _ => s.contains(&b),
    }
}

/// A field value without the optional whitespace (spaces and tabs) around it.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_byte_agrees_with_contains() {
        // Every length a window split handles, the byte at every place or nowhere, among
        // neighbours that differ from it by one bit or by the high bit.
        for n in 0..=20 {
            for at in 0..=n {
                for filler in [b'"', b'$', b'#' ^ 0x80, b'/', 0x00, 0xff] {
                    let mut s = vec![filler; n];
                    if at < n {
                        s[at] = b'#';
                    }
                    assert_eq!(has_byte(&s, b'#'), s.contains(&b'#'), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn same_agrees_with_eq() {
        let words = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcde",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "/plaintext",
            "/plaintexu",
            "/a/b/c/d/e/f/g/h/i",
            "/a/b/c/d/e/f/g/h/j",
        ];
        for x in words {
            for y in words {
                assert_eq!(same(x, y), x == y, "{x:?} {y:?}");
            }
        }
    }

    #[test]
    fn header_names_match_in_any_case_and_only_themselves() {
        for lower in [
            "host",
            "expect",
            "connection",
            "content-length",
            "transfer-encoding",
            "te",
        ] {
            let upper = lower.to_ascii_uppercase();
            assert!(is_name(lower.as_bytes(), lower.as_bytes()));
            assert!(is_name(upper.as_bytes(), lower.as_bytes()));
            // Every single-byte change to another token byte is a different name.
            let tokens =
                (0u8..128).filter(|b| b.is_ascii_graphic() && !b"\"(),/:;<=>?@[\\]{}".contains(b));
            for t in tokens {
                for i in 0..lower.len() {
                    let mut other = lower.as_bytes().to_vec();
                    other[i] = t;
                    let same = other[i].eq_ignore_ascii_case(&lower.as_bytes()[i]);
                    assert_eq!(is_name(&other, lower.as_bytes()), same, "{lower} {other:?}");
                }
            }
            assert!(!is_name(&lower.as_bytes()[1..], lower.as_bytes()));
        }
    }
}
