//! A request path as a path beneath the root: decoded once, refused where it could escape or
//! reach a hidden file.

/// The request path below the route's prefix, decoded, as a path relative to the root; or the
/// status that refuses it.
pub fn beneath(rel: &str) -> Result<String, u16> {
    let decoded = percent_decode(rel)?;
    let mut out = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" => {}
            ".well-known" if out.is_empty() => out.push(seg),
            _ if seg.starts_with('.') => return Err(404), // dotfiles, `.` and `..`
            _ => out.push(seg),
        }
    }
    Ok(out.join("/"))
}

/// Decodes `%XX` escapes once. An escape that is not two hex digits is a 400, and so are the
/// ones that would change how the path splits or ends: `/`, `\` and NUL.
fn percent_decode(s: &str) -> Result<String, u16> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) else {
                return Err(400);
            };
            let v = (h * 16 + l) as u8;
            if matches!(v, b'/' | b'\\' | 0) {
                return Err(400);
            }
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| 400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_decoded_once_and_refused_when_they_could_escape_or_hide() {
        for (rel, want) in [
            ("a.txt", Ok("a.txt")),
            ("sub/b.txt", Ok("sub/b.txt")),
            ("a%20b.txt", Ok("a b.txt")),
            ("", Ok("")),
            ("sub/", Ok("sub")),
            (".well-known/acme", Ok(".well-known/acme")),
            ("../secret", Err(404)),
            ("sub/../../x", Err(404)),
            (".git/config", Err(404)),
            (".env", Err(404)),
            ("sub/.hidden", Err(404)),
            ("sub/.well-known/x", Err(404)),
            ("%2e%2e/secret", Err(404)),
            ("%252e%252e/secret", Ok("%2e%2e/secret")), // decoded once: a literal name
            ("a%2fb", Err(400)),
            ("a%5cb", Err(400)),
            ("a%00b", Err(400)),
            ("a%zz", Err(400)),
            ("a%2", Err(400)),
        ] {
            assert_eq!(beneath(rel).as_deref().map_err(|e| *e), want, "{rel}");
        }
    }
}
