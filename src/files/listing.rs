//! An HTML index of a directory without an `index.html`, for a static route with
//! `listing = true`. No ring operation reads a directory, so the entries are read on a helper
//! thread (one for the process, jobs in turn) while the shard goes on; names are escaped for
//! HTML and percent-encoded in links, and dotfiles are left out as they are never served.
use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use crate::http::response::Response;

/// The most entries listed.
const MAX_ENTRIES: usize = 10_000;

/// A directory entry as listed: its name as bytes, whether it is a directory, its size.
type Listed = (Vec<u8>, bool, u64);

#[derive(Default)]
struct Slot {
    result: Option<std::io::Result<Vec<Listed>>>,
    waker: Option<Waker>,
}

type Job = (OwnedFd, Arc<Mutex<Slot>>);

/// The helper thread's queue, started on first use.
fn helper() -> &'static Mutex<mpsc::Sender<Job>> {
    static HELPER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    HELPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ringshard-dirs".into())
            .spawn(move || {
                for (dir, slot) in rx {
                    let result = read(&dir);
                    drop(dir);
                    let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
                    s.result = Some(result);
                    if let Some(w) = s.waker.take() {
                        w.wake();
                    }
                }
            })
            .expect("start the directory-listing thread");
        Mutex::new(tx)
    })
}

/// The entries of an open directory, dotfiles left out, sorted by name.
fn read(dir: &OwnedFd) -> std::io::Result<Vec<Listed>> {
    use std::os::unix::ffi::OsStrExt;
    // The descriptor was opened beneath the route's root; its /proc link names that directory.
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        let entry = entry?;
        let name = entry.file_name().as_bytes().to_vec();
        if name.starts_with(b".") {
            continue;
        }
        let meta = entry.metadata()?;
        out.push((name, meta.is_dir(), meta.len()));
        if out.len() == MAX_ENTRIES {
            break;
        }
    }
    out.sort();
    Ok(out)
}

struct Reading(Arc<Mutex<Slot>>);

impl Future for Reading {
    type Output = std::io::Result<Vec<Listed>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The listing of `dir`, asked for at `path`.
pub async fn render(dir: OwnedFd, path: &str) -> Response {
    let slot = Arc::new(Mutex::new(Slot::default()));
    let sent = helper()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((dir, slot.clone()));
    if sent.is_err() {
        return Response::text(500, "internal server error\n");
    }
    match Reading(slot).await {
        Ok(entries) => Response::new(200)
            .content_type("text/html; charset=utf-8")
            .body(page(path, &entries)),
        Err(_) => Response::text(500, "internal server error\n"),
    }
}

/// The HTML page.
fn page(path: &str, entries: &[Listed]) -> String {
    let title = escape(path.as_bytes());
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n<ul>\n<li><a href=\"../\">../</a></li>\n"
    );
    for (name, is_dir, size) in entries {
        let slash = if *is_dir { "/" } else { "" };
        let size = if *is_dir {
            String::new()
        } else {
            format!(" ({size} bytes)")
        };
        html += &format!(
            "<li><a href=\"./{}{slash}\">{}{slash}</a>{size}</li>\n",
            encode(name),
            escape(name)
        );
    }
    html += "</ul>\n</body></html>\n";
    html
}

/// Text for HTML: `&`, `<`, `>`, `"` and `'` as entities; bytes that are not UTF-8 replaced.
fn escape(s: &[u8]) -> String {
    let mut out = String::new();
    for c in String::from_utf8_lossy(s).chars() {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            '\'' => out += "&#39;",
            c => out.push(c),
        }
    }
    out
}

/// A name as one path segment of a link: every byte but the unreserved ones percent-encoded.
fn encode(name: &[u8]) -> String {
    let mut out = String::new();
    for &b in name {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_encoded() {
        let entries = vec![
            (b"a b&<c>.txt".to_vec(), false, 5),
            (b"sub".to_vec(), true, 0),
            (b"x\"'y".to_vec(), false, 1),
        ];
        let html = page("/dir/<x>/", &entries);
        assert!(
            html.contains("<title>Index of /dir/&lt;x&gt;/</title>"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"./a%20b%26%3Cc%3E.txt\">a b&amp;&lt;c&gt;.txt</a> (5 bytes)"),
            "{html}"
        );
        assert!(html.contains("<a href=\"./sub/\">sub/</a>"), "{html}");
        assert!(
            html.contains("<a href=\"./x%22%27y\">x&quot;&#39;y</a>"),
            "{html}"
        );
        assert!(!html.contains("<c>"));
    }
}
