//! Precompressed siblings (`app.js.br`, `.zst`, `.gz`) and the choice among them by the
//! request's `Accept-Encoding`.

/// A content coding a sibling file is stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Br,
    Zstd,
    Gzip,
}

impl Coding {
    /// In the server's order of preference (smallest first).
    pub const ALL: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    /// The sibling's file-name suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Zstd => ".zst",
            Coding::Gzip => ".gz",
        }
    }

    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }
}

/// The first of `available` (in the server's order) that `Accept-Encoding` accepts with a
/// non-zero weight; `None` for the file itself. No field, or an empty one, accepts only the file.
pub fn choose(
    accept: Option<&[u8]>,
    mut available: impl Iterator<Item = Coding>,
) -> Option<Coding> {
    let accept = accept?;
    available.find(|c| weight(accept, c.token()).is_some_and(|q| q > 0.0))
}

/// The weight `Accept-Encoding` gives `token`: its own entry's, else `*`'s, else `None`.
fn weight(accept: &[u8], token: &str) -> Option<f32> {
    let mut star = None;
    for item in accept.split(|&b| b == b',') {
        let mut parts = item.split(|&b| b == b';');
        let name = parts.next().unwrap_or_default().trim_ascii();
        let mut q = 1.0f32;
        for p in parts {
            let p = p.trim_ascii();
            if let Some(v) = p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q=")) {
                q = std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
            }
        }
        if name.eq_ignore_ascii_case(token.as_bytes()) {
            return Some(q);
        }
        if name == b"*" {
            star = Some(q);
        }
    }
    star
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::*;

    #[test]
    fn the_smallest_accepted_sibling_is_chosen() {
        let all = &Coding::ALL[..];
        for (accept, available, want) in [
            (Some("gzip, deflate, br, zstd"), all, Some(Br)),
            (Some("gzip, deflate, br"), &[Zstd, Gzip][..], Some(Gzip)),
            (Some("gzip"), all, Some(Gzip)),
            (Some("br;q=0, gzip;q=0.5"), all, Some(Gzip)),
            (Some("GZIP"), all, Some(Gzip)),
            (Some("*"), all, Some(Br)),
            (Some("*;q=0, gzip"), all, Some(Gzip)),
            (Some("identity"), all, None),
            (Some(""), all, None),
            (None, all, None),
            (Some("br"), &[Gzip][..], None),
            (Some("br;q=bogus, gzip"), all, Some(Gzip)),
        ] {
            assert_eq!(
                choose(accept.map(str::as_bytes), available.iter().copied()),
                want,
                "{accept:?}"
            );
        }
    }
}
