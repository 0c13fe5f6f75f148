//! Target URLs: `http://host[:port]/path` (IPv4, `[IPv6]`, names) and `unix:/socket[:/path]`.
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Where the connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "{a}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A parsed URL: the endpoint, the `Host` header value and the request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub endpoint: Endpoint,
    pub host: String,
    pub path: String,
}

/// Parses (and for host names, resolves) one URL.
pub fn parse(url: &str) -> Result<Target, String> {
    let bad = |why: &str| format!("malformed URL '{url}': {why}");
    if let Some(rest) = url.strip_prefix("unix:") {
        return unix(rest).map_err(&bad);
    }
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err(bad("https is not supported (plain HTTP/1.1 only)"))
        }
        Some((scheme, _)) => return Err(bad(&format!("unsupported scheme '{scheme}'"))),
        None => return Err(bad("expected http://host[:port]/path or unix:/socket")),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let path = path.split('#').next().unwrap_or("/").to_string();
    check_path(&path).map_err(&bad)?;
    if authority.contains('@') {
        return Err(bad("user info is not supported"));
    }
    let (host, port) = host_port(authority).map_err(|why| bad(&why))?;
    let ip_host = if authority.starts_with('[') {
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("invalid IPv6 address"))?;
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{host}': {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve '{host}': no addresses"))?;
    let host_header = if port == 80 {
        ip_host
    } else {
        format!("{ip_host}:{port}")
    };
    Ok(Target {
        endpoint: Endpoint::Tcp(addr),
        host: host_header,
        path,
    })
}

/// `unix:/path/to.sock[:/http/path]`, after `unix:`.
fn unix(rest: &str) -> Result<Target, &'static str> {
    // The socket path ends at ":/" (the HTTP path) when one is given.
    let (sock, path) = match rest.find(":/") {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, "/"),
    };
    if sock.is_empty() {
        return Err("no socket path after unix:");
    }
    check_path(path)?;
    Ok(Target {
        endpoint: Endpoint::Unix(PathBuf::from(sock)),
        host: "localhost".into(),
        path: path.into(),
    })
}

/// The host (without brackets) and the port (80 if none) of an authority.
fn host_port(authority: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed '[' in host")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after ']'")?),
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:%".contains(&b))
    {
        return Err("invalid character in host".into());
    }
    let port: u16 = match port {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("invalid port '{p}'")),
        },
    };
    Ok((host, port))
}

/// A request target must be origin-form and must not break the request line.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("path must start with '/'");
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("path contains spaces or control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let t = parse("http://127.0.0.1:8080/a?b=1").unwrap();
        assert_eq!(t.endpoint, Endpoint::Tcp("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.path, "/a?b=1");
        let t = parse("http://[::1]:9000").unwrap();
        assert_eq!(t.endpoint, Endpoint::Tcp("[::1]:9000".parse().unwrap()));
        assert_eq!(t.host, "[::1]:9000");
        assert_eq!(t.path, "/");
        let t = parse("http://127.0.0.1").unwrap();
        assert_eq!(t.host, "127.0.0.1");
        let t = parse("unix:/tmp/x.sock:/hello").unwrap();
        assert_eq!(t.endpoint, Endpoint::Unix("/tmp/x.sock".into()));
        assert_eq!(t.path, "/hello");
        assert_eq!(parse("unix:/tmp/x.sock").unwrap().path, "/");
    }

    #[test]
    fn rejects() {
        for u in [
            "127.0.0.1:80",
            "https://x/",
            "ftp://x/",
            "http://",
            "http://:80/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:99999/",
            "http://127.0.0.1:8x/",
            "http://[::1/",
            "http://a b/",
            "unix:",
        ] {
            assert!(parse(u).is_err(), "{u}");
        }
    }
}
