//! A proxy route's settings, as the configuration file or `--proxy` gives them.
use std::time::Duration;

use crate::load::url::Endpoint;

/// How a route picks among its upstreams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    /// The upstream with the fewest requests in flight from this shard (ties: round-robin).
    LeastOutstanding,
}

/// Which header tells the upstream who the client is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarded {
    /// `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`.
    XForwarded,
    /// RFC 7239 `Forwarded: for=...;host=...;proto=...`.
    Rfc7239,
}

/// A network a trusted proxy's address lies in (`10.0.0.0/8`, or one address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: std::net::IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = || format!("'{s}' is not an IP address or network like 10.0.0.0/8");
        let (ip, bits) = match s.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return Err(bad());
        }
        Ok(Cidr { addr, bits })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (a, b, width) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                (u128::from(u32::from(a)), u128::from(u32::from(b)), 32)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.bits);
        shift >= 128 || (a >> shift) == (b >> shift)
    }
}

/// Everything a proxy route is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyOptions {
    pub upstreams: Vec<Endpoint>,
    pub balance: Balance,
    /// `Host` sent upstream; `None` keeps the client's.
    pub upstream_host: Option<String>,
    pub forwarded: Forwarded,
    pub trusted: Vec<Cidr>,
    pub connect_timeout: Duration,
    /// From the request sent to the first byte of the response.
    pub first_byte_timeout: Duration,
    /// Between two reads of a response, and for each send of a request.
    pub read_timeout: Duration,
    /// Idle keep-alive connections kept per upstream per shard.
    pub idle_connections: usize,
    pub idle_timeout: Duration,
    /// Tries in all, across upstreams.
    pub tries: u32,
    /// A request body up to this is read whole before it goes upstream.
    pub request_buffer: usize,
    /// A response body is held in memory up to this; the rest waits in a temporary file.
    pub response_buffer: usize,
    /// An upstream failing this many times in a row is skipped for `down_for`.
    pub max_fails: u32,
    pub down_for: Duration,
    /// The app pool whose processes are the upstreams, if the route names one, and how its
    /// requests are admitted.
    pub app: Option<String>,
    pub gate: Option<crate::app::GateSpec>,
}

impl ProxyOptions {
    /// The defaults, for these upstreams.
    pub fn new(upstreams: Vec<Endpoint>) -> ProxyOptions {
        ProxyOptions {
            upstreams,
            balance: Balance::RoundRobin,
            upstream_host: None,
            forwarded: Forwarded::XForwarded,
            trusted: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(60),
            idle_connections: 32,
            idle_timeout: Duration::from_secs(4),
            tries: 2,
            request_buffer: 1 << 20,
            response_buffer: 256 << 10,
            max_fails: 3,
            down_for: Duration::from_secs(10),
            app: None,
            gate: None,
        }
    }
}

impl Default for ProxyOptions {
    fn default() -> ProxyOptions {
        ProxyOptions::new(Vec::new())
    }
}

/// An upstream address: `http://HOST:PORT` or `unix:/path` (a server, not a path on it).
pub fn parse_upstream(s: &str) -> Result<Endpoint, String> {
    let t = crate::load::url::parse(s)?;
    if t.path != "/" {
        return Err(format!(
            "upstream '{s}' names a path; give the server only (http://HOST:PORT or unix:/path)"
        ));
    }
    Ok(t.endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.2.3.4".parse().unwrap()));
        assert!(n.contains("::ffff:10.2.3.4".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("ten").is_err());
    }

    #[test]
    fn upstream_addresses() {
        assert!(parse_upstream("http://127.0.0.1:9000").is_ok());
        assert!(parse_upstream("unix:/tmp/app.sock").is_ok());
        assert!(parse_upstream("http://127.0.0.1:9000/app").is_err());
        assert!(parse_upstream("https://127.0.0.1").is_err());
    }
}
