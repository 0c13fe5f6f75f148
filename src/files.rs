//! Files from a directory, through the shard's ring (`crate::io`): opened beneath the root by
//! the kernel (no `..`, absolute path or symlink reaches outside it), `statx`ed and read without
//! blocking the shard on the disk.
//!
//! The path is percent-decoded once; an encoded `/`, `\` or NUL, or a malformed escape, is a 400
//! (never a second decoding); a dotfile or dot-directory is a 404 (`/.git`, `/.env`), except
//! `/.well-known/`. A directory is served by its `index.html`; asked for without its trailing
//! slash, it is a 301 to the same path with one, on the same host (a path that starts with `//`
//! would read as another host: the redirect keeps a single leading slash).
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

use crate::http::request::Request;
use crate::http::response::{Reply, Response};

/// Serves the files of a directory at a path prefix (a route of `Router::prefix` or of a
/// configured site). Whole files up to [`FileRoute::MAX`].
pub struct FileRoute {
    root: Rc<OwnedFd>,
    prefix: Box<str>,
}

impl FileRoute {
    /// Largest file served.
    pub const MAX: u64 = 16 << 20;

    /// Serves the directory `dir` at `prefix`.
    pub fn new(dir: &std::path::Path, prefix: &str) -> std::io::Result<FileRoute> {
        use std::os::unix::fs::OpenOptionsExt;
        let root = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_PATH)
            .open(dir)?;
        Ok(FileRoute {
            root: Rc::new(root.into()),
            prefix: prefix.into(),
        })
    }
}

impl crate::handler::Handler for FileRoute {
    fn call(&self, req: &Request<'_>) -> Reply {
        let path = req.path();
        let rel = path.strip_prefix(&*self.prefix).unwrap_or("");
        let rel = match beneath(rel) {
            Ok(rel) => rel,
            Err(status) => return Response::text(status, reason(status)).into(),
        };
        let root = self.root.clone();
        let wants_dir = path.ends_with('/');
        let path = path.to_string();
        Reply::Later(Box::pin(async move {
            serve(&root, rel, wants_dir, &path)
                .await
                .unwrap_or_else(|status| Response::text(status, reason(status)))
        }))
    }
}

fn reason(status: u16) -> String {
    format!(
        "{}\n",
        crate::http::response::reason(status).to_ascii_lowercase()
    )
}

/// The file for a request: a regular file whole, a directory's `index.html`, or a redirect.
async fn serve(root: &OwnedFd, rel: String, wants_dir: bool, path: &str) -> Result<Response, u16> {
    let file = open(root, if rel.is_empty() { "." } else { &rel }).await?;
    let mut name = rel.clone();
    let mut st = crate::io::statx(&file).await.map_err(|_| 500u16)?;
    let mut file = file;
    if u32::from(st.stx_mode) & libc::S_IFMT == libc::S_IFDIR {
        if !wants_dir {
            // Same host: a single leading slash, so `//evil.example` cannot read as a host.
            let location = format!("/{}/", path.trim_start_matches('/'));
            return Ok(Response::text(301, "moved\n").header("Location", location));
        }
        let index = if rel.is_empty() {
            "index.html".to_string()
        } else {
            format!("{rel}/index.html")
        };
        crate::io::close(file).await;
        file = open(root, &index).await?;
        st = crate::io::statx(&file).await.map_err(|_| 500u16)?;
        name = index;
    }
    if u32::from(st.stx_mode) & libc::S_IFMT != libc::S_IFREG {
        return Err(404);
    }
    if st.stx_size > FileRoute::MAX {
        return Err(413);
    }
    let body = crate::io::read(&file, vec![0; st.stx_size as usize], 0)
        .await
        .map_err(|_| 500u16)?;
    crate::io::close(file).await;
    Ok(Response::new(200)
        .content_type(content_type(&name))
        .body(body))
}

/// Opens `rel` beneath the root; a path the kernel refuses to resolve beneath it is a 403.
async fn open(root: &OwnedFd, rel: &str) -> Result<OwnedFd, u16> {
    crate::io::open_beneath(root.as_raw_fd(), rel)
        .await
        .map_err(|e| match e.raw_os_error() {
            // EXDEV: the path would leave the root; ELOOP: a symlink the kernel refused.
            Some(libc::EXDEV | libc::ELOOP) => 403,
            _ => 404,
        })
}

/// The request path below the route's prefix, decoded, as a path relative to the root; or the
/// status that refuses it.
fn beneath(rel: &str) -> Result<String, u16> {
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

/// The `Content-Type` for a file name's extension.
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        _ => "application/octet-stream",
    }
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

    #[test]
    fn content_types_come_from_the_extension() {
        assert_eq!(content_type("/x/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("/a.PNG"), "image/png");
        assert_eq!(content_type("/archive.tar.gz"), "application/octet-stream");
        assert_eq!(content_type("/noext"), "application/octet-stream");
    }
}
