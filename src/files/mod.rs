//! Files from a directory, through the shard's ring (`crate::io`): opened beneath the root by
//! the kernel (no `..`, absolute path or symlink reaches outside it), `statx`ed and read without
//! blocking the shard on the disk.
//!
//! Each route keeps a per-shard open-file cache (nginx's `open_file_cache`): a bounded number of
//! entries, each trusted for a short time and then revalidated with a `statx` (a file changed
//! since is read again). A small file is kept as bytes with its whole `200` response encoded in
//! advance, so a plain request for it costs what a fixed route costs; a larger one keeps its
//! descriptor and is streamed a chunk at a time (`stream::FileStream`). Validators (`ETag`,
//! `Last-Modified`) and a single `Range` are answered from the entry (`conditional`);
//! precompressed siblings are chosen by `Accept-Encoding` (`coding`).
//!
//! The path is percent-decoded once; an encoded `/`, `\` or NUL, or a malformed escape, is a 400
//! (never a second decoding); a dotfile or dot-directory is a 404 (`/.git`, `/.env`), except
//! `/.well-known/`. A directory is served by its `index.html`; asked for without its trailing
//! slash, it is a 301 to the same path with one, on the same host (a path that starts with `//`
//! would read as another host: the redirect keeps a single leading slash).
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::handler::{Answer, Handler};
use crate::http::request::Request;
use crate::http::response::{Body, Fixed, Reply, Response};

mod coding;
mod conditional;
mod listing;
mod mime;
mod path;
mod stream;

use coding::Coding;
use conditional::{Ask, Outcome, Validators};

/// How a static route serves and caches its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticOptions {
    /// `Cache-Control` on every file answer, if set.
    pub cache_control: Option<String>,
    /// Serve `NAME.br`, `NAME.zst`, `NAME.gz` in place of `NAME` to clients that accept them.
    pub precompressed: bool,
    /// Open-file cache entries per shard (0: no cache).
    pub cache_entries: usize,
    /// How long an entry is trusted before a `statx` revalidates it.
    pub cache_valid: Duration,
    /// Files up to this size are kept in memory.
    pub cache_max_file: u64,
    /// A directory without an `index.html` gets an HTML list of its entries (else 404).
    pub listing: bool,
}

impl Default for StaticOptions {
    fn default() -> StaticOptions {
        StaticOptions {
            cache_control: None,
            precompressed: false,
            cache_entries: 1000,
            cache_valid: Duration::from_secs(1),
            cache_max_file: 64 * 1024,
            listing: false,
        }
    }
}

/// Serves the files of a directory at a path prefix (a route of `Router::prefix` or of a
/// configured site). Built on the shard's thread: its cache is the shard's own.
pub struct FileRoute(Rc<Inner>);

struct Inner {
    root: OwnedFd,
    prefix: Box<str>,
    opts: StaticOptions,
    /// Keyed by the request path below the prefix, as sent: a hit decodes nothing.
    cache: RefCell<HashMap<Box<str>, Rc<Entry>>>,
}

struct Entry {
    checked: Instant,
    what: What,
}

enum What {
    /// A directory asked for without its trailing slash.
    Redirect,
    File(Representation),
    /// A directory without an `index.html`, on a route that lists them (never cached).
    Listing(std::cell::Cell<Option<OwnedFd>>),
}

/// A file and its precompressed siblings.
struct Representation {
    plain: Variant,
    coded: Vec<(Coding, Variant)>,
    content_type: &'static str,
}

/// One file on disk as it is served.
#[derive(Clone)]
struct Variant {
    id: FileId,
    etag: Rc<str>,
    last_modified: Rc<str>,
    source: Source,
    /// The whole `200` response, encoded once (small files).
    whole: Option<Rc<Fixed>>,
}

/// What tells a file apart from the one that was there before.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: (u32, u32),
    ino: u64,
    len: u64,
    mtime: (i64, u32),
}

#[derive(Clone)]
enum Source {
    Bytes(Bytes),
    File(Rc<OwnedFd>),
}

impl FileRoute {
    /// Serves the directory `dir` at `prefix` with the default options.
    pub fn new(dir: &std::path::Path, prefix: &str) -> std::io::Result<FileRoute> {
        FileRoute::with_options(dir, prefix, StaticOptions::default())
    }

    /// Serves the directory `dir` at `prefix`.
    pub fn with_options(
        dir: &std::path::Path,
        prefix: &str,
        opts: StaticOptions,
    ) -> std::io::Result<FileRoute> {
        use std::os::unix::fs::OpenOptionsExt;
        let root = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_PATH)
            .open(dir)?;
        Ok(FileRoute(Rc::new(Inner {
            root: root.into(),
            prefix: prefix.into(),
            opts,
            cache: RefCell::new(HashMap::new()),
        })))
    }
}

impl Handler for FileRoute {
    fn call(&self, req: &Request<'_>) -> Reply {
        match self.answer(req) {
            Answer::Reply(r) => r,
            Answer::Fixed(f) => f.to_response().into(),
            Answer::Shared(f) => f.to_response().into(),
        }
    }

    fn answer(&self, req: &Request<'_>) -> Answer<'_> {
        // HEAD is answered as GET: the core writes only the head.
        if !matches!(req.method(), "GET" | "HEAD") {
            let resp = error(405).header("Allow", "GET, HEAD");
            return Answer::Reply(resp.into());
        }
        let path = req.path();
        let rel = path.strip_prefix(&*self.0.prefix).unwrap_or("");
        let ask = Ask::of(req.headers());
        let now = Instant::now();
        let cached = self.0.cache.borrow().get(rel).cloned();
        if let Some(entry) = cached.filter(|e| now - e.checked < self.0.opts.cache_valid) {
            if let What::File(rep) = &entry.what {
                let variant = rep.choose(&ask).1;
                if let (true, Some(whole)) = (ask.is_plain(), &variant.whole) {
                    return Answer::Shared(whole.clone());
                }
            }
            return Answer::Reply(self.0.respond(&entry, &ask, path).into());
        }
        let (inner, rel, path, ask) = (
            self.0.clone(),
            rel.to_string(),
            path.to_string(),
            ask.to_owned(),
        );
        Answer::Reply(Reply::Later(Box::pin(async move {
            match inner.lookup(&rel, &path, now).await {
                Ok(entry) => match &entry.what {
                    What::Listing(dir) => match dir.take() {
                        Some(dir) => listing::render(dir, &path).await,
                        None => error(500),
                    },
                    _ => inner.respond(&entry, &ask.borrow(), &path),
                },
                Err(status) => error(status),
            }
        })))
    }
}

impl Representation {
    /// The variant `Accept-Encoding` selects, and its coding.
    fn choose(&self, ask: &Ask<'_>) -> (Option<Coding>, &Variant) {
        if self.coded.is_empty() {
            return (None, &self.plain);
        }
        match coding::choose(ask.accept_encoding, self.coded.iter().map(|(c, _)| *c)) {
            Some(c) => (
                Some(c),
                &self.coded.iter().find(|(k, _)| *k == c).unwrap().1,
            ),
            None => (None, &self.plain),
        }
    }
}

impl Inner {
    /// The answer to a GET (the core drops the body of a HEAD's).
    fn respond(&self, entry: &Entry, ask: &Ask<'_>, path: &str) -> Response {
        let rep = match &entry.what {
            What::Redirect => {
                // Same host: a single leading slash, so `//evil.example` cannot read as a host.
                let location = format!("/{}/", path.trim_start_matches('/'));
                return Response::text(301, "moved\n").header("Location", location);
            }
            What::File(rep) => rep,
            What::Listing(_) => return error(404), // answered by `listing::render`
        };
        let (coding, v) = rep.choose(ask);
        let len = v.id.len;
        let file = Validators {
            etag: &v.etag,
            modified: v.id.mtime.0.max(0) as u64,
            len,
        };
        let outcome = conditional::evaluate(ask, &file);
        let status = match outcome {
            Outcome::Whole => 200,
            Outcome::NotModified => 304,
            Outcome::Part(..) => 206,
            Outcome::Unsatisfiable => 416,
        };
        let resp = self.validated(Response::new(status), v);
        if outcome == Outcome::NotModified {
            return resp;
        }
        let mut resp = with_body_fields(resp, coding);
        let (start, end) = match outcome {
            Outcome::Unsatisfiable => {
                return resp
                    .header("Content-Range", format!("bytes */{len}"))
                    .content_type("text/plain")
                    .body("range not satisfiable\n");
            }
            Outcome::Part(start, end) => {
                resp = resp.header("Content-Range", format!("bytes {start}-{end}/{len}"));
                (start, end + 1)
            }
            _ => (0, len),
        };
        resp = resp.content_type(rep.content_type);
        match &v.source {
            Source::Bytes(b) => resp.body(b.slice(start as usize..end as usize)),
            Source::File(fd) => resp.body(Body::Sized(
                end - start,
                Box::new(stream::FileStream::new(fd.clone(), start, end - start)),
            )),
        }
    }

    /// Finds what `rel` (the path below the prefix, as sent) names, revalidating what the cache
    /// had, and caches it.
    async fn lookup(&self, rel: &str, path: &str, now: Instant) -> Result<Rc<Entry>, u16> {
        let before = self.cache.borrow().get(rel).cloned();
        let name = path::beneath(rel)?;
        let file = open(&self.root, if name.is_empty() { "." } else { &name }).await?;
        let mut st = crate::io::statx(&file).await.map_err(|_| 500u16)?;
        let mut file = file;
        let mut name = name;
        if u32::from(st.stx_mode) & libc::S_IFMT == libc::S_IFDIR {
            if !path.ends_with('/') {
                crate::io::close(file).await;
                return Ok(self.keep(
                    rel,
                    Entry {
                        checked: now,
                        what: What::Redirect,
                    },
                ));
            }
            name = if name.is_empty() {
                "index.html".to_string()
            } else {
                format!("{name}/index.html")
            };
            let dir = file;
            file = match open(&self.root, &name).await {
                Ok(f) => {
                    crate::io::close(dir).await;
                    f
                }
                Err(404) if self.opts.listing => {
                    let what = What::Listing(std::cell::Cell::new(Some(dir)));
                    return Ok(Rc::new(Entry { checked: now, what }));
                }
                Err(status) => {
                    crate::io::close(dir).await;
                    return Err(status);
                }
            };
            st = crate::io::statx(&file).await.map_err(|_| 500u16)?;
        }
        let was = |c: Option<Coding>| match before.as_deref() {
            Some(Entry {
                what: What::File(rep),
                ..
            }) => match c {
                None => Some(rep.plain.clone()),
                Some(c) => rep
                    .coded
                    .iter()
                    .find(|(k, _)| *k == c)
                    .map(|(_, v)| v.clone()),
            },
            _ => None,
        };
        let content_type = mime::content_type(&name);
        let plain = self
            .variant(file, &st, was(None), content_type, None)
            .await?;
        let mut coded = Vec::new();
        if self.opts.precompressed {
            for c in Coding::ALL {
                let Ok(f) = open(&self.root, &format!("{name}{}", c.suffix())).await else {
                    continue;
                };
                match crate::io::statx(&f).await {
                    Ok(st) => {
                        if let Ok(v) = self
                            .variant(f, &st, was(Some(c)), content_type, Some(c))
                            .await
                        {
                            coded.push((c, v));
                        }
                    }
                    Err(_) => crate::io::close(f).await,
                }
            }
        }
        let rep = Representation {
            plain,
            coded,
            content_type,
        };
        Ok(self.keep(
            rel,
            Entry {
                checked: now,
                what: What::File(rep),
            },
        ))
    }

    /// Puts an entry in the cache, making room if it is full.
    fn keep(&self, rel: &str, entry: Entry) -> Rc<Entry> {
        let entry = Rc::new(entry);
        let mut cache = self.cache.borrow_mut();
        if self.opts.cache_entries == 0 {
            return entry;
        }
        if cache.len() >= self.opts.cache_entries && !cache.contains_key(rel) {
            // Any entry: the map's order is as good as random, and costs nothing to keep.
            if let Some(k) = cache.keys().next().cloned() {
                cache.remove(&k);
            }
        }
        cache.insert(rel.into(), entry.clone());
        entry
    }

    /// The served form of an open file: unchanged from `was` (the cache's), or read again.
    async fn variant(
        &self,
        file: OwnedFd,
        st: &libc::statx,
        was: Option<Variant>,
        content_type: &'static str,
        coding: Option<Coding>,
    ) -> Result<Variant, u16> {
        if u32::from(st.stx_mode) & libc::S_IFMT != libc::S_IFREG {
            crate::io::close(file).await;
            return Err(404);
        }
        let id = FileId {
            dev: (st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            len: st.stx_size,
            mtime: (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec),
        };
        if let Some(was) = was.filter(|w| w.id == id) {
            crate::io::close(file).await;
            return Ok(was);
        }
        let etag: Rc<str> = format!("\"{:x}.{:x}-{:x}\"", id.mtime.0, id.mtime.1, id.len).into();
        let modified = crate::http::date::format_imf(id.mtime.0.max(0) as u64);
        let last_modified: Rc<str> = String::from_utf8_lossy(&modified).into();
        if id.len > self.opts.cache_max_file {
            return Ok(Variant {
                id,
                etag,
                last_modified,
                source: Source::File(Rc::new(file)),
                whole: None,
            });
        }
        let read = crate::io::read(&file, vec![0; id.len as usize], 0).await;
        crate::io::close(file).await;
        let bytes = read.map_err(|_| 500u16)?;
        if bytes.len() as u64 != id.len {
            return Err(503); // changed while read: the next request reads it again
        }
        let mut v = Variant {
            id,
            etag,
            last_modified,
            source: Source::Bytes(bytes.into()),
            whole: None,
        };
        v.whole = Some(Rc::new(Fixed::new(self.whole(&v, content_type, coding))));
        Ok(v)
    }

    /// The plain `200` answer for a variant kept in memory.
    fn whole(&self, v: &Variant, content_type: &'static str, coding: Option<Coding>) -> Response {
        let Source::Bytes(b) = &v.source else {
            unreachable!("only files in memory have a whole answer")
        };
        let resp = self.validated(Response::new(200).content_type(content_type), v);
        with_body_fields(resp, coding).body(b.clone())
    }

    /// The fields every answer about a file carries, 304 included: its validators, the route's
    /// `Cache-Control`, and `Vary` where a precompressed sibling may answer.
    fn validated(&self, mut resp: Response, v: &Variant) -> Response {
        resp = resp
            .header("ETag", v.etag.to_string())
            .header("Last-Modified", v.last_modified.to_string());
        if let Some(cc) = &self.opts.cache_control {
            resp = resp.header("Cache-Control", cc.clone());
        }
        if self.opts.precompressed {
            resp = resp.header("Vary", "Accept-Encoding");
        }
        resp
    }
}

/// The fields of an answer with a body: ranges are served, and the coding of a sibling.
fn with_body_fields(resp: Response, coding: Option<Coding>) -> Response {
    let resp = resp.header("Accept-Ranges", "bytes");
    match coding {
        Some(c) => resp.header("Content-Encoding", c.token()),
        None => resp,
    }
}

/// A plain-text answer with the status's reason (a 503 says when to try again).
fn error(status: u16) -> Response {
    let reason = crate::http::response::reason(status).to_ascii_lowercase();
    let resp = Response::text(status, format!("{reason}\n"));
    match status {
        503 => resp.header("Retry-After", "1"),
        _ => resp,
    }
}

/// Opens `rel` beneath the root; a path the kernel refuses to resolve beneath it is a 403, and
/// a process out of descriptors or memory answers 503 (the file may well be there).
async fn open(root: &OwnedFd, rel: &str) -> Result<OwnedFd, u16> {
    crate::io::open_beneath(root.as_raw_fd(), rel)
        .await
        .map_err(|e| match e.raw_os_error() {
            // EXDEV: the path would leave the root; ELOOP: a symlink the kernel refused.
            Some(libc::EXDEV | libc::ELOOP) => 403,
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM) => 503,
            _ => 404,
        })
}
