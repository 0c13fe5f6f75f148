//! `ringshard serve --config FILE`: the server's configuration as a TOML file.
//!
//! The file holds what the flags hold, section by section (each key maps to one flag, so one
//! validation serves both, and a flag given on the command line overrides the file), and what
//! flags cannot: an ordered list of routes, and where `/health` and `/metrics` answer. Every
//! error names the file, the line and the key, and every error is reported at once (a TOML
//! syntax error stops at the first). An unknown section or key is an error, not ignored.
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// How a key's value becomes its flag's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    /// A string, or a list of strings: the flag once per item.
    Texts,
    /// A whole number.
    Count,
    /// A number of bytes, or a string such as `16k`.
    Size,
    /// A string such as `10s` or `500ms`, or a number of seconds.
    Duration,
    /// `true` gives the flag, `false` leaves it out.
    Switch,
    /// `false` gives the flag, `true` leaves it out.
    NotSwitch,
}

use Kind::*;

/// A key of a section, the flag it sets, and how its value is read.
type Key = (&'static str, &'static str, Kind);

/// Sections of flags.
const SECTIONS: &[(&str, &[Key])] = &[
    (
        "server",
        &[
            ("listen", "--listen", Texts),
            ("unix_mode", "--unix-mode", Text),
            ("shards", "--shards", Count),
            ("engine", "--engine", Text),
            ("backlog", "--backlog", Count),
            ("pin", "--no-pin", NotSwitch),
            ("stats", "--stats", Switch),
            ("pid_file", "--pid-file", Text),
            ("binary", "--binary", Text),
            ("access_log", "--access-log", Text),
            ("access_log_format", "--access-log-format", Text),
        ],
    ),
    (
        "limits",
        &[
            ("max_head_size", "--max-head-size", Size),
            ("max_headers", "--max-headers", Count),
            ("max_body_size", "--max-body-size", Size),
        ],
    ),
    (
        "timeouts",
        &[
            ("header", "--header-timeout", Duration),
            ("body", "--body-timeout", Duration),
            ("keepalive", "--keepalive-timeout", Duration),
            ("write", "--write-timeout", Duration),
            ("shutdown", "--shutdown-timeout", Duration),
        ],
    ),
    (
        "ring",
        &[
            ("entries", "--ring-entries", Count),
            ("taskrun", "--taskrun", Text),
            ("wait_batch", "--wait-batch", Count),
            ("wait_usec", "--wait-usec", Count),
            ("wait_busy", "--wait-busy", Count),
            ("registered_files", "--registered-files", Count),
            ("sqpoll", "--sqpoll", Duration),
            ("send_zc", "--send-zc", Size),
            ("reap", "--reap", Count),
            ("recv", "--recv", Text),
            ("buf_count", "--buf-count", Count),
            ("buf_size", "--buf-size", Size),
        ],
    ),
];

/// Where in the file a value was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub line: usize,
    /// `section.key`, or `route[N].key`.
    pub key: String,
}

/// A flag the file gives, as it would be written on the command line.
#[derive(Clone, Debug)]
pub struct FileFlag {
    pub flag: &'static str,
    pub value: Option<String>,
    pub at: Place,
}

/// What a route serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The built-in demonstration routes (`/`, `/plaintext`, `/json`, `/echo`).
    Builtin,
    /// Files from a directory.
    Static {
        dir: PathBuf,
        opts: crate::files::StaticOptions,
    },
    /// Upstream servers.
    Proxy(Box<crate::proxy::ProxyOptions>),
}

/// One route: requests whose path starts with `prefix` (and, if given, whose `Host` is `host`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    pub prefix: String,
    pub host: Option<String>,
    pub target: Target,
}

/// The keys of a static route's options.
const STATIC_KEYS: &str =
    "cache_control, precompressed, cache_entries, cache_valid, cache_max_file";
macro_rules! static_keys_pat {
    () => {
        "cache_control"
            | "precompressed"
            | "listing"
            | "cache_entries"
            | "cache_valid"
            | "cache_max_file"
    };
}

/// The keys of a proxy route's options.
const POOL_VALUES: &str = "expected \"auto\" (shared with fewer processes than shards), \"shared\" (every shard sends to every process) or \"per-shard\" (each shard to its own)";

const PROXY_KEYS: &str = "balance, upstream_host, forwarded, trusted_proxies, connect_timeout, first_byte_timeout, read_timeout, idle_connections, idle_timeout, tries, request_buffer, response_buffer";
macro_rules! proxy_keys_pat {
    () => {
        "balance"
            | "upstream_host"
            | "forwarded"
            | "trusted_proxies"
            | "connect_timeout"
            | "first_byte_timeout"
            | "read_timeout"
            | "idle_connections"
            | "idle_timeout"
            | "tries"
            | "request_buffer"
            | "response_buffer"
    };
}

/// A string, or a list of strings, from a TOML value.
fn strings(v: &DeValue<'_>) -> Option<Vec<String>> {
    match v {
        DeValue::String(s) => Some(vec![s.to_string()]),
        DeValue::Array(a) => a
            .iter()
            .map(|x| match x.get_ref() {
                DeValue::String(s) => Some(s.to_string()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// A string or an integer's text (a size or duration may be either).
fn scalar_text(v: &DeValue<'_>) -> Option<String> {
    match v {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(n) => Some(n.as_str().to_string()),
        _ => None,
    }
}

/// Sets one proxy-route option from its TOML value.
fn proxy_option(
    opts: &mut crate::proxy::ProxyOptions,
    key: &str,
    v: &DeValue<'_>,
) -> Result<(), String> {
    use crate::proxy::options::{Balance, Cidr, Forwarded};
    let text = scalar_text;
    let duration = |v: &DeValue<'_>| {
        let t = text(v).ok_or("expected a duration, e.g. \"5s\"")?;
        crate::config::parse_duration(&t)
    };
    let count = |v: &DeValue<'_>, what: &str| {
        text(v)
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or(format!("expected a whole number ({what})"))
    };
    let size = |v: &DeValue<'_>| {
        let t = text(v).ok_or("expected a size, e.g. \"1m\"")?;
        crate::config::parse_size(&t)
    };
    match key {
        "balance" => {
            opts.balance = match text(v).as_deref() {
                Some("round-robin") => Balance::RoundRobin,
                Some("least-outstanding") => Balance::LeastOutstanding,
                _ => return Err("expected \"round-robin\" or \"least-outstanding\"".into()),
            }
        }
        "upstream_host" => match v {
            DeValue::String(h) if !h.is_empty() && crate::http::conn::host_ok(h.as_bytes()) => {
                opts.upstream_host = Some(h.to_string())
            }
            _ => return Err("expected a host name (with a port if need be)".into()),
        },
        "forwarded" => {
            opts.forwarded = match text(v).as_deref() {
                Some("x-forwarded") => Forwarded::XForwarded,
                Some("forwarded") => Forwarded::Rfc7239,
                _ => return Err("expected \"x-forwarded\" or \"forwarded\"".into()),
            }
        }
        "trusted_proxies" => {
            let list = strings(v).ok_or("expected a list of addresses or networks")?;
            opts.trusted = list
                .iter()
                .map(|s| Cidr::parse(s))
                .collect::<Result<_, _>>()?;
        }
        "connect_timeout" => opts.connect_timeout = duration(v)?,
        "first_byte_timeout" => opts.first_byte_timeout = duration(v)?,
        "read_timeout" => opts.read_timeout = duration(v)?,
        "idle_timeout" => opts.idle_timeout = duration(v)?,
        "idle_connections" => {
            opts.idle_connections = count(v, "idle connections per upstream")? as usize
        }
        "tries" => {
            opts.tries = match count(v, "tries in all")? {
                n @ 1..=16 => n as u32,
                _ => return Err("expected 1 to 16 tries".into()),
            }
        }
        "request_buffer" => opts.request_buffer = size(v)?,
        _ => opts.response_buffer = size(v)?,
    }
    Ok(())
}

/// Sets one static-route option from its TOML value.
fn static_option(
    opts: &mut crate::files::StaticOptions,
    key: &str,
    v: &DeValue<'_>,
) -> Result<(), String> {
    let text = scalar_text;
    match (key, v) {
        ("cache_control", DeValue::String(s))
            if !s.is_empty() && !s.bytes().any(|b| b.is_ascii_control()) =>
        {
            opts.cache_control = Some(s.to_string())
        }
        ("cache_control", _) => return Err("expected a header value, e.g. \"max-age=3600\"".into()),
        ("precompressed", DeValue::Boolean(b)) => opts.precompressed = *b,
        ("precompressed", _) => return Err("expected true or false".into()),
        ("listing", DeValue::Boolean(b)) => opts.listing = *b,
        ("listing", _) => return Err("expected true or false".into()),
        ("cache_entries", v) => {
            opts.cache_entries = text(v)
                .and_then(|t| t.parse().ok())
                .ok_or("expected a number of entries (0: no cache)")?
        }
        ("cache_valid", v) => {
            let t = text(v).ok_or("expected a duration, e.g. \"1s\"")?;
            opts.cache_valid = crate::config::parse_duration(&t)?;
        }
        (_, v) => {
            let t = text(v).ok_or("expected a size, e.g. \"64k\"")?;
            opts.cache_max_file = crate::config::parse_size(&t)? as u64;
        }
    }
    Ok(())
}

/// Where a special endpoint (`/health`, `/metrics`) answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub path: String,
    /// A listener of its own, where it alone answers (`listen = "127.0.0.1:9100"`); it then
    /// answers nowhere else.
    pub listen: Option<crate::config::Listen>,
    /// That listener's index among the server's (set when the configuration is resolved).
    pub listener: Option<usize>,
}

impl Endpoint {
    fn at(path: &str) -> Endpoint {
        Endpoint {
            path: path.to_string(),
            listen: None,
            listener: None,
        }
    }
}

/// A special endpoint, or `None` when it is turned off.
pub type EndpointPath = Option<Endpoint>;

/// What a configuration file says.
#[derive(Clone, Debug)]
pub struct FileConfig {
    pub path: PathBuf,
    pub flags: Vec<FileFlag>,
    pub routes: Vec<RouteSpec>,
    pub health: EndpointPath,
    pub metrics: EndpointPath,
    pub apps: Vec<crate::app::AppSpec>,
}

/// Every error found, each naming file, line and key.
#[derive(Debug)]
pub struct Errors(pub Vec<String>);

impl std::fmt::Display for Errors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for Errors {}

/// Reads and checks a configuration file; `check` validates one flag's value as the command
/// line would (returning its error message).
pub fn load(
    path: &Path,
    check: impl Fn(&str, Option<&str>) -> Result<(), String>,
) -> Result<FileConfig, Errors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Errors(vec![format!("{}: cannot read: {e}", path.display())]))?;
    parse(path, &text, check)
}

/// Checks a configuration's text (`path` names it in messages).
pub fn parse(
    path: &Path,
    text: &str,
    check: impl Fn(&str, Option<&str>) -> Result<(), String>,
) -> Result<FileConfig, Errors> {
    let mut r = Reader {
        path,
        text,
        errors: Vec::new(),
    };
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let line = e.span().map_or(1, |s| r.line(s.start));
            let msg = e.message().trim().to_string();
            return Err(Errors(vec![format!("{}:{line}: {msg}", path.display())]));
        }
    };
    let mut cfg = FileConfig {
        path: path.to_path_buf(),
        flags: Vec::new(),
        routes: Vec::new(),
        health: Some(Endpoint::at("/health")),
        metrics: Some(Endpoint::at("/metrics")),
        apps: Vec::new(),
    };
    for (name, value) in doc.get_ref().iter() {
        let at = name.span().start;
        match (name.get_ref().as_ref(), value.get_ref()) {
            ("route", DeValue::Array(routes)) => {
                for (i, route) in routes.iter().enumerate() {
                    if let Some(spec) = r.route(i, route) {
                        cfg.routes.push(spec);
                    }
                }
            }
            ("app", DeValue::Table(apps)) => {
                for (app, table) in apps.iter() {
                    if let Some(spec) = r.app(app.get_ref(), app.span().start, table) {
                        cfg.apps.push(spec);
                    }
                }
            }
            ("health", DeValue::Table(t)) => cfg.health = r.endpoint("health", "/health", t),
            ("metrics", DeValue::Table(t)) => cfg.metrics = r.endpoint("metrics", "/metrics", t),
            (section, DeValue::Table(t)) => match SECTIONS.iter().find(|(s, _)| *s == section) {
                Some((_, keys)) => r.flags(section, keys, t, &check, &mut cfg.flags),
                None => r.error(at, section, "unknown section"),
            },
            (key, _) => r.error(at, key, "not in a section (expected [server], [limits], [timeouts], [ring], [health], [metrics] or [[route]])"),
        }
    }
    // A route naming an app sends to its processes.
    for route in &cfg.routes {
        if let Target::Proxy(p) = &route.target {
            let Some(name) = &p.app else { continue };
            // Its processes' addresses are set once their number is known.
            if !cfg.apps.iter().any(|a| &a.name == name) {
                r.errors.push(format!(
                    "{}: route {}: app = \"{name}\", but there is no [app.{name}] section",
                    path.display(),
                    route.prefix
                ));
            }
        }
    }
    if r.errors.is_empty() {
        Ok(cfg)
    } else {
        Err(Errors(r.errors))
    }
}

struct Reader<'a> {
    path: &'a Path,
    text: &'a str,
    errors: Vec<String>,
}

impl Reader<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    fn error(&mut self, offset: usize, key: &str, msg: &str) {
        let line = self.line(offset);
        self.errors
            .push(format!("{}:{line}: {key}: {msg}", self.path.display()));
    }

    /// The keys of a section of flags.
    fn flags(
        &mut self,
        section: &str,
        keys: &[Key],
        table: &DeTable<'_>,
        check: &impl Fn(&str, Option<&str>) -> Result<(), String>,
        out: &mut Vec<FileFlag>,
    ) {
        for (name, value) in table.iter() {
            let key = format!("{section}.{}", name.get_ref());
            let at = value.span().start;
            let Some(&(_, flag, kind)) = keys.iter().find(|(k, _, _)| *k == name.get_ref()) else {
                self.error(name.span().start, &key, "unknown key");
                continue;
            };
            // A list (`listen = ["a", "b"]`) is the flag given once per item.
            let items: Vec<&DeValue<'_>> = match (kind, value.get_ref()) {
                (Texts, DeValue::Array(a)) => a.iter().map(|v| v.get_ref()).collect(),
                (_, v) => vec![v],
            };
            for item in items {
                let value = match flag_value(kind, item) {
                    Ok(Some(v)) => v,
                    Ok(None) => continue, // a switch left off
                    Err(want) => {
                        self.error(at, &key, &format!("expected {want}"));
                        continue;
                    }
                };
                if let Err(e) = check(flag, value.as_deref()) {
                    self.error(at, &key, &e);
                    continue;
                }
                out.push(FileFlag {
                    flag,
                    value,
                    at: Place {
                        line: self.line(at),
                        key: key.clone(),
                    },
                });
            }
        }
    }

    /// `[health]` or `[metrics]`: `path = "/..."` or `enabled = false`.
    fn endpoint(&mut self, section: &str, default: &str, table: &DeTable<'_>) -> EndpointPath {
        let mut endpoint = Endpoint::at(default);
        let mut enabled = true;
        for (name, value) in table.iter() {
            let key = format!("{section}.{}", name.get_ref());
            let at = value.span().start;
            match (name.get_ref().as_ref(), value.get_ref()) {
                ("path", DeValue::String(p)) if p.starts_with('/') => endpoint.path = p.to_string(),
                ("path", _) => self.error(at, &key, "expected a path starting with '/'"),
                ("enabled", DeValue::Boolean(b)) => enabled = *b,
                ("enabled", _) => self.error(at, &key, "expected true or false"),
                ("listen", DeValue::String(l)) => match crate::config::parse_listen(l) {
                    Ok(l) => endpoint.listen = Some(l),
                    Err(e) => self.error(at, &key, &e),
                },
                ("listen", _) => self.error(at, &key, "expected an address or unix:PATH"),
                _ => self.error(
                    name.span().start,
                    &key,
                    "unknown key (path, enabled, listen)",
                ),
            }
        }
        enabled.then_some(endpoint)
    }

    /// One `[app.NAME]` table.
    fn app(
        &mut self,
        name: &str,
        at: usize,
        table: &Spanned<DeValue<'_>>,
    ) -> Option<crate::app::AppSpec> {
        use crate::app::{AppSpec, Listen};
        let here = format!("app.{name}");
        if !crate::app::valid_name(name) {
            self.error(at, &here, "an app's name is letters, digits, '-' and '_'");
            return None;
        }
        let DeValue::Table(t) = table.get_ref() else {
            self.error(at, &here, "expected a table ([app.NAME])");
            return None;
        };
        let mut spec = AppSpec::new(name, "", 1);
        let mut processes = None;
        let mut ok = true;
        for (k, v) in t.iter() {
            let key = format!("{here}.{}", k.get_ref());
            let vat = v.span().start;
            let duration = |v: &DeValue<'_>| {
                scalar_text(v)
                    .ok_or_else(|| "expected a duration, e.g. \"30s\"".to_string())
                    .and_then(|t| crate::config::parse_duration(&t))
            };
            let result: Result<(), String> = match (k.get_ref().as_ref(), v.get_ref()) {
                ("command", DeValue::String(c)) if !c.trim().is_empty() => {
                    spec.command = c.to_string();
                    Ok(())
                }
                ("command", _) => Err("expected the command that starts the app".into()),
                ("processes", v) => match scalar_text(v).and_then(|t| t.parse::<usize>().ok()) {
                    Some(n @ 1..=1024) => {
                        processes = Some(n);
                        Ok(())
                    }
                    _ => Err("expected 1 to 1024 processes".into()),
                },
                ("environment", DeValue::Table(env)) => {
                    for (ek, ev) in env.iter() {
                        match ev.get_ref() {
                            DeValue::String(s) => {
                                spec.environment.push((ek.get_ref().to_string(), s.to_string()))
                            }
                            _ => ok = false,
                        }
                    }
                    if ok {
                        Ok(())
                    } else {
                        Err("expected a table of strings, e.g. { RACK_ENV = \"production\" }".into())
                    }
                }
                ("environment", _) => Err("expected a table of strings".into()),
                ("directory", DeValue::String(d)) => {
                    let dir = self.path.parent().unwrap_or(Path::new(".")).join(d.as_ref());
                    if dir.is_dir() {
                        spec.directory = Some(dir);
                        Ok(())
                    } else {
                        Err(format!("'{d}' is not a directory"))
                    }
                }
                ("directory", _) => Err("expected a directory".into()),
                ("listen", DeValue::String(l)) if l.as_ref() == "unix" => Ok(()),
                ("listen", DeValue::String(l)) if l.as_ref() == "port" => {
                    spec.listen = Listen::Port;
                    Ok(())
                }
                ("listen", _) => Err("expected \"unix\" (RINGSHARD_SOCKET) or \"port\" (PORT)".into()),
                ("pool", DeValue::String(p)) => match p.as_ref() {
                    "auto" => Ok(crate::app::Pool::Auto),
                    "shared" => Ok(crate::app::Pool::Shared),
                    "per-shard" => Ok(crate::app::Pool::PerShard),
                    _ => Err(POOL_VALUES.into()),
                }
                .map(|pool| spec.gate.pool = pool),
                ("pool", _) => Err(POOL_VALUES.into()),
                ("ready_timeout", v) => duration(v).map(|d| spec.ready_timeout = d),
                ("crash_window", v) => duration(v).map(|d| spec.crash_window = d),
                ("grace", v) => duration(v).map(|d| spec.grace = d),
                ("queue_timeout", v) => duration(v).map(|d| spec.gate.queue_timeout = d),
                ("max_requests", v) => match scalar_text(v).and_then(|t| t.parse::<u64>().ok()) {
                    Some(n) => {
                        spec.max_requests = n;
                        spec.gate.max_requests = n;
                        Ok(())
                    }
                    None => Err("expected a number of requests (0: never)".into()),
                },
                ("max_memory", v) => scalar_text(v)
                    .ok_or_else(|| "expected a size, e.g. \"512m\" (0: no limit)".to_string())
                    .and_then(|t| crate::config::parse_size(&t))
                    .map(|n| spec.max_memory = n as u64),
                ("request_timeout", v) => duration(v).map(|d| spec.request_timeout = d),
                ("concurrency", v) => match scalar_text(v).and_then(|t| t.parse::<u32>().ok()) {
                    Some(n @ 1..=10_000) => {
                        spec.gate.concurrency = n;
                        Ok(())
                    }
                    _ => Err("expected 1 to 10000 requests at a time per process".into()),
                },
                ("queue", v) => match scalar_text(v).and_then(|t| t.parse::<usize>().ok()) {
                    Some(n) => {
                        spec.gate.queue = n;
                        Ok(())
                    }
                    None => Err("expected a number of requests that may wait (0: none)".into()),
                },
                ("max_crashes", v) => match scalar_text(v).and_then(|t| t.parse::<u32>().ok()) {
                    Some(n @ 1..) => {
                        spec.max_crashes = n;
                        Ok(())
                    }
                    _ => Err("expected a number of exits, at least 1".into()),
                },
                _ => Err("unknown key (command, processes, environment, directory, listen, pool, ready_timeout, concurrency, queue, queue_timeout, request_timeout, max_requests, max_memory, max_crashes, crash_window, grace)".into()),
            };
            if let Err(msg) = result {
                self.error(vat, &key, &msg);
                ok = false;
            }
        }
        if spec.command.is_empty() {
            self.error(at, &here, "no command");
            return None;
        }
        spec.processes = processes.unwrap_or(0); // 0: one per shard, decided at start-up
        ok.then_some(spec)
    }

    /// One `[[route]]` table.
    fn route(&mut self, i: usize, route: &Spanned<DeValue<'_>>) -> Option<RouteSpec> {
        let here = route.span().start;
        let DeValue::Table(table) = route.get_ref() else {
            self.error(here, &format!("route[{i}]"), "expected a table ([[route]])");
            return None;
        };
        let mut parts = RouteParts::default();
        let mut ok = true;
        for (name, value) in table.iter() {
            let key = format!("route[{i}].{}", name.get_ref());
            let at = value.span().start;
            if let Err(msg) = self.route_key(&mut parts, name.get_ref(), value.get_ref(), at, &key)
            {
                let at = if msg.starts_with("unknown key") {
                    name.span().start
                } else {
                    at
                };
                self.error(at, &key, &msg);
                ok = false;
            }
        }
        let RouteParts {
            prefix,
            host,
            mut target,
            opts,
            opts_at,
            proxy,
            proxy_at,
        } = parts;
        match (&mut target, opts_at) {
            (Some(Target::Static { opts: o, .. }), _) => *o = opts,
            (_, Some((at, key))) if ok => {
                self.error(at, &key, "applies to static routes only");
                ok = false;
            }
            _ => {}
        }
        match (&mut target, proxy_at) {
            (Some(Target::Proxy(o)), _) => {
                let upstreams = std::mem::take(&mut o.upstreams);
                let app = o.app.take();
                **o = proxy;
                o.upstreams = upstreams;
                o.app = app;
            }
            (_, Some((at, key))) if ok => {
                self.error(at, &key, "applies to proxy routes only");
                ok = false;
            }
            _ => {}
        }
        let Some(prefix) = prefix else {
            if ok {
                self.error(here, &format!("route[{i}]"), "no prefix");
            }
            return None;
        };
        let Some(target) = target else {
            if ok {
                self.error(
                    here,
                    &format!("route[{i}]"),
                    "serves nothing: give builtin = true, static = \"DIR\" or proxy = \"URL\"",
                );
            }
            return None;
        };
        ok.then_some(RouteSpec {
            prefix,
            host,
            target,
        })
    }
}

/// A route's keys as read so far.
#[derive(Default)]
struct RouteParts {
    prefix: Option<String>,
    host: Option<String>,
    target: Option<Target>,
    opts: crate::files::StaticOptions,
    /// Where the first static option was given (an error if the route is not static).
    opts_at: Option<(usize, String)>,
    proxy: crate::proxy::ProxyOptions,
    /// Where the first proxy option was given (an error if the route is not a proxy).
    proxy_at: Option<(usize, String)>,
}

impl Reader<'_> {
    /// Reads one key of a route into `parts`; what is wrong with it, if anything.
    fn route_key(
        &self,
        parts: &mut RouteParts,
        name: &str,
        value: &DeValue<'_>,
        at: usize,
        key: &str,
    ) -> Result<(), String> {
        let mut serve = |t: Target| match parts.target.replace(t) {
            Some(_) => Err("a route serves one thing: builtin, static or proxy".to_string()),
            None => Ok(()),
        };
        match (name, value) {
            ("prefix", DeValue::String(p)) if p.starts_with('/') => {
                parts.prefix = Some(p.to_string())
            }
            ("prefix", _) => return Err("expected a path prefix starting with '/'".into()),
            ("host", DeValue::String(h)) if !h.is_empty() => {
                parts.host = Some(h.to_ascii_lowercase())
            }
            ("host", _) => return Err("expected a host name".into()),
            ("builtin", DeValue::Boolean(true)) => serve(Target::Builtin)?,
            ("builtin", _) => return Err("expected true".into()),
            ("static", DeValue::String(d)) => {
                // A relative directory is the configuration file's neighbour.
                let dir = self
                    .path
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(d.as_ref());
                if !dir.is_dir() {
                    return Err(format!("'{d}' is not a directory"));
                }
                let opts = Default::default();
                serve(Target::Static { dir, opts })?
            }
            ("static", _) => return Err("expected a directory".into()),
            ("app", DeValue::String(name)) if crate::app::valid_name(name) => {
                let mut opts = crate::proxy::ProxyOptions::new(Vec::new());
                opts.app = Some(name.to_string());
                serve(Target::Proxy(Box::new(opts)))?
            }
            ("app", _) => return Err("expected the name of an [app.NAME] section".into()),
            ("proxy", v) => {
                let list = strings(v).filter(|l| !l.is_empty()).ok_or(
                    "expected an upstream (http://HOST:PORT or unix:/path) or a list of them",
                )?;
                let upstreams = list
                    .iter()
                    .map(|u| crate::proxy::options::parse_upstream(u))
                    .collect::<Result<Vec<_>, _>>()?;
                serve(Target::Proxy(Box::new(crate::proxy::ProxyOptions::new(
                    upstreams,
                ))))?
            }
            (opt @ static_keys_pat!(), v) => {
                parts.opts_at.get_or_insert((at, key.to_string()));
                static_option(&mut parts.opts, opt, v)?
            }
            (opt @ proxy_keys_pat!(), v) => {
                parts.proxy_at.get_or_insert((at, key.to_string()));
                proxy_option(&mut parts.proxy, opt, v)?
            }
            _ => {
                return Err(format!(
                "unknown key (prefix, host, builtin, static, proxy, {STATIC_KEYS}, {PROXY_KEYS})"
            ))
            }
        }
        Ok(())
    }
}

/// The flag's value for a key's TOML value (`None`: a switch left off), or what was expected.
fn flag_value(kind: Kind, v: &DeValue<'_>) -> Result<Option<Option<String>>, &'static str> {
    Ok(match (kind, v) {
        (Text | Texts, DeValue::String(s)) => Some(Some(s.to_string())),
        (Text, _) => return Err("a string"),
        (Texts, _) => return Err("a string or a list of strings"),
        (Count | Size | Duration, DeValue::Integer(n)) => Some(Some(n.as_str().to_string())),
        (Size | Duration, DeValue::String(s)) => Some(Some(s.to_string())),
        (Count, _) => return Err("a whole number"),
        (Size, _) => return Err("a number of bytes or a size such as \"16k\""),
        (Duration, _) => return Err("a duration such as \"10s\" or \"500ms\""),
        (Switch, DeValue::Boolean(b)) => b.then_some(None),
        (NotSwitch, DeValue::Boolean(b)) => (!b).then_some(None),
        (Switch | NotSwitch, _) => return Err("true or false"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &str, _: Option<&str>) -> Result<(), String> {
        Ok(())
    }

    #[test]
    fn flags_routes_and_endpoints_are_read() {
        let dir = std::env::temp_dir();
        let text = format!(
            "[server]\nshards = 2\npin = false\n[limits]\nmax_body_size = \"2m\"\n[timeouts]\nheader = \"5s\"\n\n[health]\npath = \"/up\"\n[metrics]\nenabled = false\n\n[[route]]\nprefix = \"/files/\"\nstatic = \"{}\"\n[[route]]\nprefix = \"/\"\nhost = \"Example.org\"\nbuiltin = true\n",
            dir.display()
        );
        let cfg = parse(Path::new("site.toml"), &text, ok).unwrap();
        let flags: Vec<(&str, Option<&str>, usize)> = cfg
            .flags
            .iter()
            .map(|f| (f.flag, f.value.as_deref(), f.at.line))
            .collect();
        assert_eq!(
            flags,
            [
                ("--shards", Some("2"), 2),
                ("--no-pin", None, 3),
                ("--max-body-size", Some("2m"), 5),
                ("--header-timeout", Some("5s"), 7),
            ]
        );
        assert_eq!(flags.len(), 4);
        assert_eq!(cfg.health.map(|e| e.path).as_deref(), Some("/up"));
        assert_eq!(cfg.metrics, None);
        assert_eq!(
            cfg.routes,
            [
                RouteSpec {
                    prefix: "/files/".into(),
                    host: None,
                    target: Target::Static {
                        dir: dir.clone(),
                        opts: Default::default(),
                    },
                },
                RouteSpec {
                    prefix: "/".into(),
                    host: Some("example.org".into()),
                    target: Target::Builtin,
                },
            ]
        );
    }

    #[test]
    fn every_error_names_its_line_and_key() {
        let text = "[server]\nshards = \"two\"\nport = 8\n[limits]\nmax_headers = 10\n[bogus]\nx = 1\n[[route]]\nprefix = \"files\"\nstatic = \"/nonexistent/dir\"\n[[route]]\nprefix = \"/\"\n[[route]]\nprefix = \"/app/\"\nproxy = \"http://127.0.0.1:9/app\"\n[[route]]\nprefix = \"/api/\"\nproxy = [\"unix:/run/app.sock\"]\ntries = 0\ntrusted_proxies = [\"10.0.0.0/33\"]\nbalance = \"random\"\n[[route]]\nprefix = \"/s/\"\nbuiltin = true\nread_timeout = \"1s\"\n[[route]]\nprefix = \"/z/\"\napp = \"nope\"\n[app.bad]\nprocesses = 0\npool = \"global\"\n";
        let check = |flag: &str, v: Option<&str>| {
            if flag == "--max-headers" && v == Some("10") {
                Err("must be at least 11".to_string())
            } else {
                Ok(())
            }
        };
        let errs = parse(Path::new("bad.toml"), text, check).unwrap_err().0;
        let want = [
            "bad.toml:2: server.shards: expected a whole number",
            "bad.toml:3: server.port: unknown key",
            "bad.toml:5: limits.max_headers: must be at least 11",
            "bad.toml:6: bogus: unknown section",
            "bad.toml:9: route[0].prefix: expected a path prefix starting with '/'",
            "bad.toml:10: route[0].static: '/nonexistent/dir' is not a directory",
            "bad.toml:11: route[1]: serves nothing: give builtin = true, static = \"DIR\" or proxy = \"URL\"",
            "bad.toml:15: route[2].proxy: upstream 'http://127.0.0.1:9/app' names a path; give the server only (http://HOST:PORT or unix:/path)",
            "bad.toml:19: route[3].tries: expected 1 to 16 tries",
            "bad.toml:20: route[3].trusted_proxies: '10.0.0.0/33' is not an IP address or network like 10.0.0.0/8",
            "bad.toml:21: route[3].balance: expected \"round-robin\" or \"least-outstanding\"",
            "bad.toml:25: route[4].read_timeout: applies to proxy routes only",
            "bad.toml: route /z/: app = \"nope\", but there is no [app.nope] section",
            "bad.toml:30: app.bad.processes: expected 1 to 1024 processes",
            "bad.toml:31: app.bad.pool: expected \"auto\" (shared with fewer processes than shards), \"shared\" (every shard sends to every process) or \"per-shard\" (each shard to its own)",
            "bad.toml:29: app.bad: no command",
        ];
        for w in want {
            assert!(errs.iter().any(|e| e == w), "missing {w:?} in {errs:#?}");
        }
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
    }

    #[test]
    fn a_syntax_error_stops_at_the_first_and_names_its_line() {
        let errs = parse(Path::new("x.toml"), "[server]\nshards = 2\nlisten = \n", ok)
            .unwrap_err()
            .0;
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("x.toml:3: "), "{errs:?}");
    }
}

/// What `serve` runs besides the server's own settings: the routes, and where `/health` and
/// `/metrics` answer. `None` from [`resolve`]: the built-in routes, as without a file.
#[derive(Clone, Debug)]
pub struct SiteSpec {
    pub routes: Vec<RouteSpec>,
    /// The app pools to start.
    pub apps: Vec<crate::app::AppSpec>,
    pub health: EndpointPath,
    pub metrics: EndpointPath,
}

/// `serve`'s settings from its flags (`args`, as parsed from `argv`, the command line after
/// `serve`), with a configuration file's (`--config`) underneath them, or the one route of
/// `--static DIR`.
pub fn resolve(
    args: crate::config::ServeArgs,
    argv: &[std::ffi::OsString],
) -> Result<(crate::config::ServeConfig, Option<SiteSpec>), Errors> {
    use crate::config::ServeCommand;
    if let Some(dir) = &args.static_dir {
        if !dir.is_dir() {
            return Err(Errors(vec![format!(
                "--static {}: not a directory",
                dir.display()
            )]));
        }
        let cfg = args.validate().map_err(|e| Errors(vec![e]))?;
        let site = SiteSpec {
            routes: vec![RouteSpec {
                prefix: "/".into(),
                host: None,
                target: Target::Static {
                    dir: dir.clone(),
                    opts: Default::default(),
                },
            }],
            health: Some(Endpoint::at("/health")),
            metrics: Some(Endpoint::at("/metrics")),
            apps: Vec::new(),
        };
        return Ok((cfg, Some(site)));
    }
    if !args.proxy.is_empty() || args.app.is_some() {
        let mut cfg = args.validate().map_err(|e| Errors(vec![e]))?;
        cfg.peers = true;
        let mut opts = crate::proxy::ProxyOptions::new(args.proxy.clone());
        let mut apps = Vec::new();
        if let Some(command) = &args.app {
            let processes = args.processes.map_or(0, usize::from);
            apps.push(crate::app::AppSpec::new("app", command, processes));
            opts.app = Some("app".into());
        }
        let mut site = SiteSpec {
            routes: vec![RouteSpec {
                prefix: "/".into(),
                host: None,
                target: Target::Proxy(Box::new(opts)),
            }],
            apps,
            health: None,
            metrics: None,
        };
        place_apps(&cfg, &mut site).map_err(|e| Errors(vec![e]))?;
        return Ok((cfg, Some(site)));
    }
    let Some(path) = &args.config else {
        let cfg = args.validate().map_err(|e| Errors(vec![e]))?;
        return Ok((cfg, None));
    };
    let check = |flag: &str, value: Option<&str>| {
        let one: Vec<&str> = std::iter::once(flag).chain(value).collect();
        ServeCommand::parse(one).map(drop)
    };
    let file = load(path, check)?;
    let mut merged: Vec<std::ffi::OsString> = Vec::new();
    // A flag that can be given several times adds up; the command line's replace the file's.
    let on_command_line = |flag: &str| {
        argv.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
        })
    };
    for f in &file.flags {
        if f.flag == "--listen" && on_command_line(f.flag) {
            continue;
        }
        merged.push(f.flag.into());
        merged.extend(f.value.as_deref().map(Into::into));
    }
    merged.extend(argv.iter().cloned());
    let args = ServeCommand::parse(merged).map_err(|e| Errors(vec![e]))?;
    let mut cfg = args
        .validate()
        .map_err(|e| Errors(vec![place(&e, &file, argv)]))?;
    let mut site = SiteSpec {
        routes: file.routes,
        apps: file.apps,
        health: file.health,
        metrics: file.metrics,
    };
    place_apps(&cfg, &mut site).map_err(|e| Errors(vec![format!("{}: {e}", path.display())]))?;
    cfg.peers |= site
        .routes
        .iter()
        .any(|r| matches!(r.target, Target::Proxy(_)));
    for e in [&mut site.health, &mut site.metrics].into_iter().flatten() {
        own_listener(&mut cfg, e).map_err(|m| Errors(vec![format!("{}: {m}", path.display())]))?;
    }
    Ok((cfg, Some(site)))
}

/// Gives each app its number of processes (by default one per shard) and their addresses (ports
/// chosen now for `listen = "port"`), and the routes that name an app those addresses.
fn place_apps(cfg: &crate::config::ServeConfig, site: &mut SiteSpec) -> Result<(), String> {
    let shards = if cfg.inherited.len() > 1 {
        cfg.inherited.len()
    } else {
        cfg.shards
    };
    for app in &mut site.apps {
        if app.processes == 0 {
            app.processes = shards.max(1);
        }
        if app.listen == crate::app::Listen::Port {
            app.choose_ports()
                .map_err(|e| format!("app {}: cannot choose ports: {e}", app.name))?;
        }
    }
    for r in &mut site.routes {
        if let Target::Proxy(p) = &mut r.target {
            if let Some(app) = p
                .app
                .as_ref()
                .and_then(|n| site.apps.iter().find(|a| &a.name == n))
            {
                p.upstreams = app.upstreams();
                p.gate = Some(app.gate);
                p.first_byte_timeout = app.request_timeout;
            }
        }
    }
    Ok(())
}

/// Adds an endpoint's own listener to the server's and notes its index (the shards list an
/// inherited `--listen-fd` socket first, then `--listen`'s in order). Two endpoints may share
/// one; the site's own addresses may not be one.
fn own_listener(cfg: &mut crate::config::ServeConfig, e: &mut Endpoint) -> Result<(), String> {
    use crate::config::Listen;
    let Some(l) = &e.listen else { return Ok(()) };
    let first = usize::from(!cfg.inherited.is_empty());
    let fixed = !matches!(l, Listen::Tcp(a) if a.port() == 0);
    if let Some(i) = cfg.listen.iter().position(|x| x == l).filter(|_| fixed) {
        if i < cfg.listen.len() - usize::from(cfg.endpoint_listeners) {
            return Err(format!(
                "{l} is where the site listens: give the endpoint an address of its own"
            ));
        }
        e.listener = Some(first + i);
        return Ok(());
    }
    cfg.listen.push(l.clone());
    cfg.endpoint_listeners += 1;
    e.listener = Some(first + cfg.listen.len() - 1);
    Ok(())
}

/// A message naming a flag, pointed at the file's line when the file gave that flag and the
/// command line did not.
fn place(msg: &str, file: &FileConfig, argv: &[std::ffi::OsString]) -> String {
    let on_command_line = |flag: &str| argv.iter().any(|a| a.to_str() == Some(flag));
    for f in &file.flags {
        if msg.contains(f.flag) && !on_command_line(f.flag) {
            return format!("{}:{}: {}: {msg}", file.path.display(), f.at.line, f.at.key);
        }
    }
    msg.to_string()
}

/// The effective configuration, as `check-config` prints it.
pub fn describe(cfg: &crate::config::ServeConfig, site: &Option<SiteSpec>) -> String {
    let mut out = format!("{cfg:#?}\n");
    match site {
        None => out.push_str(
            "routes: the built-in routes (/, /plaintext, /json, /echo, /health, /metrics)\n",
        ),
        Some(site) => {
            let show = |e: &EndpointPath| match e {
                None => "off".to_string(),
                Some(Endpoint {
                    path,
                    listen: Some(l),
                    ..
                }) => format!("{path} on {l} only"),
                Some(e) => e.path.clone(),
            };
            out.push_str(&format!(
                "health: {}\nmetrics: {}\n",
                show(&site.health),
                show(&site.metrics)
            ));
            for (i, r) in site.routes.iter().enumerate() {
                let host = r
                    .host
                    .as_deref()
                    .map_or(String::new(), |h| format!(" host {h}"));
                let target = match &r.target {
                    Target::Builtin => "the built-in routes".to_string(),
                    Target::Static { dir, opts } => {
                        let d = crate::files::StaticOptions::default();
                        let mut t = format!("files of {}", dir.display());
                        if let Some(cc) = &opts.cache_control {
                            t += &format!(", Cache-Control {cc}");
                        }
                        if opts.precompressed {
                            t += ", precompressed siblings";
                        }
                        if opts.listing {
                            t += ", directory listings";
                        }
                        if (opts.cache_entries, opts.cache_valid, opts.cache_max_file)
                            != (d.cache_entries, d.cache_valid, d.cache_max_file)
                        {
                            t += &format!(
                                ", cache {} entries, {:?}, files up to {} bytes",
                                opts.cache_entries, opts.cache_valid, opts.cache_max_file
                            );
                        }
                        t
                    }
                    Target::Proxy(p) => {
                        let ups: Vec<String> = p.upstreams.iter().map(|u| u.to_string()).collect();
                        format!(
                            "proxy to {} ({:?}, {} tries, timeouts connect {:?} first byte {:?} read {:?}, {} idle connections kept {:?}, buffers {} / {} bytes)",
                            ups.join(", "),
                            p.balance,
                            p.tries,
                            p.connect_timeout,
                            p.first_byte_timeout,
                            p.read_timeout,
                            p.idle_connections,
                            p.idle_timeout,
                            p.request_buffer,
                            p.response_buffer
                        )
                    }
                };
                out.push_str(&format!("route {i}: {}{host} -> {target}\n", r.prefix));
            }
            for a in &site.apps {
                let listen = match a.listen {
                    crate::app::Listen::Unix => "RINGSHARD_SOCKET",
                    crate::app::Listen::Port => "PORT",
                };
                out.push_str(&format!(
                    "app {}: `{}`, {} processes told {listen}, {} pool, {} request(s) each at a time, queue {} for {:?}, request timeout {:?}, recycled after {} requests / {} bytes (0: never), {} crashes in {:?} give up\n",
                    a.name,
                    a.command,
                    a.processes,
                    a.gate.pool.name(),
                    a.gate.concurrency,
                    a.gate.queue,
                    a.gate.queue_timeout,
                    a.request_timeout,
                    a.max_requests,
                    a.max_memory,
                    a.max_crashes,
                    a.crash_window
                ));
            }
        }
    }
    out
}
