//! One shard's view of a route's upstreams: each one's keep-alive pool, requests in flight and
//! passive health. Nothing here is shared with another shard.
use std::cell::{Cell, RefCell};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::http::client::ResponseParser;
use crate::io::Recv;
use crate::sys::socket::SockAddr;

use super::options::{Balance, ProxyOptions};

/// How long an idle connection beyond the pool's bound may wait for a request before it closes.
pub const SURPLUS_GRACE: Duration = Duration::from_millis(100);

/// Bytes one receive from an upstream takes at most while a head is awaited (a burst of
/// requests can have hundreds of connections waiting at once; each holds this much).
pub const RECV_SIZE: usize = 8 * 1024;
/// The receive buffer of a connection whose body is read on after its head went out.
pub const BODY_RECV_SIZE: usize = 64 * 1024;

/// A connection to an upstream. While it waits in the pool it keeps a receive armed: an upstream
/// that closes it (or sends what nobody asked for) completes that receive, and the connection
/// is then known dead before any request is written to it.
pub struct UpConn {
    /// Declared before `fd`: dropped first, so its cancel is queued before the descriptor goes.
    pub recv: Option<Recv>,
    pub fd: OwnedFd,
    pub parser: ResponseParser,
    /// The receive buffer, while no receive holds it.
    pub buf: Option<Vec<u8>>,
    /// Requests it carried.
    pub requests: u64,
    /// Since when it waits in the pool.
    idle_since: Option<Instant>,
}

impl UpConn {
    pub fn new(fd: OwnedFd) -> UpConn {
        UpConn {
            recv: None,
            fd,
            parser: ResponseParser::new(false),
            buf: Some(vec![0; RECV_SIZE]),
            requests: 0,
            idle_since: None,
        }
    }

    /// Starts a receive (with the buffer it does not hold now), to end by `deadline`.
    pub fn arm(&mut self, deadline: Option<Instant>) {
        use std::os::fd::AsRawFd;
        if self.recv.is_none() {
            let buf = self.buf.take().unwrap_or_else(|| vec![0; RECV_SIZE]);
            self.recv = Some(crate::io::recv(self.fd.as_raw_fd(), buf, deadline));
        }
    }
}

/// One upstream, as this shard sees it.
pub struct Upstream {
    pub addr: SockAddr,
    pub name: String,
    idle: RefCell<Vec<UpConn>>,
    /// Requests this shard has in flight to it.
    pub outstanding: Cell<u32>,
    fails: Cell<u32>,
    down_until: Cell<Option<Instant>>,
    /// A task closes the pool's connections when their time is up (see [`Upstream::sweep`]).
    sweeping: Cell<bool>,
}

impl Upstream {
    /// An idle connection believed alive (the most recently used: its socket is warm), if any;
    /// dead ones met on the way are closed and counted in `dead`.
    pub fn take_idle(&self, dead: &mut u32) -> Option<UpConn> {
        let mut idle = self.idle.borrow_mut();
        while let Some(c) = idle.pop() {
            if let Some(r) = c.recv.as_ref().filter(|r| !r.finished()) {
                r.set_background(false);
                return Some(c);
            }
            *dead += 1;
        }
        None
    }

    /// Puts a connection whose response is complete back in the pool, with a receive armed to
    /// notice its close and to end it after `idle_timeout`. Beyond `idle_connections` idle ones,
    /// the longest idle are closed once they have waited [`SURPLUS_GRACE`]: a turn that
    /// finishes many responses at once is followed by one that sends as many requests, and
    /// closing the surplus at once would only open as many again.
    pub fn put_idle(self: &Rc<Self>, mut c: UpConn, opts: &ProxyOptions) {
        let now = Instant::now();
        if opts.idle_connections == 0 {
            return;
        }
        c.parser.reset();
        c.idle_since = Some(now);
        if c.buf.as_ref().is_some_and(|b| b.len() > RECV_SIZE) {
            c.buf = None; // a body's large buffer: an idle connection keeps a small one
        }
        c.arm(Some(now + opts.idle_timeout));
        if let Some(r) = &c.recv {
            r.set_background(true);
        }
        let mut idle = self.idle.borrow_mut();
        Self::trim(&mut idle, now, opts.idle_connections, opts.idle_timeout);
        idle.push(c);
        if !self.sweeping.replace(true) {
            let sweep = Self::sweep(self.clone(), opts.idle_connections, opts.idle_timeout);
            crate::io::spawn_background(sweep);
        }
    }

    /// Closes the connections whose time in the pool is up: those the upstream closed or that
    /// reached `idle_timeout` (their armed receive has completed), and the longest idle beyond
    /// `idle_connections` once they have waited [`SURPLUS_GRACE`].
    fn trim(idle: &mut Vec<UpConn>, now: Instant, cap: usize, idle_timeout: Duration) {
        idle.retain(|c| {
            c.recv.as_ref().is_some_and(|r| !r.finished())
                && c.idle_since.is_some_and(|t| now < t + idle_timeout)
        });
        while idle.len() > cap
            && idle[0]
                .idle_since
                .is_some_and(|t| now.duration_since(t) >= SURPLUS_GRACE)
        {
            idle.remove(0);
        }
    }

    /// Runs while the pool holds connections: wakes when the next one's time may be up, and
    /// trims. Without it a burst's surplus, and connections past their idle timeout, would stay
    /// open until the next request.
    async fn sweep(up: Rc<Upstream>, cap: usize, idle_timeout: Duration) {
        loop {
            let next = {
                let idle = up.idle.borrow();
                let wait = if idle.len() > cap {
                    SURPLUS_GRACE
                } else {
                    idle_timeout
                };
                idle.iter()
                    .filter_map(|c| c.idle_since)
                    .map(|t| t + wait)
                    .min()
            };
            let Some(at) = next else {
                up.sweeping.set(false);
                return;
            };
            crate::io::sleep_until(at + Duration::from_millis(1)).await;
            Self::trim(&mut up.idle.borrow_mut(), Instant::now(), cap, idle_timeout);
        }
    }

    /// A try that failed on this upstream (connect, reset, timeout, malformed answer).
    pub fn failed(&self, opts: &ProxyOptions) {
        let n = self.fails.get() + 1;
        self.fails.set(n);
        if n >= opts.max_fails {
            self.down_until.set(Some(Instant::now() + opts.down_for));
            self.fails.set(0);
        }
    }

    pub fn succeeded(&self) {
        self.fails.set(0);
        self.down_until.set(None);
    }

    fn down(&self, now: Instant) -> bool {
        self.down_until.get().is_some_and(|t| now < t)
    }
}

/// A route's upstreams on this shard.
pub struct Upstreams {
    pub list: Vec<Rc<Upstream>>,
    next: Cell<usize>,
    balance: Balance,
}

impl Upstreams {
    pub fn new(opts: &ProxyOptions) -> std::io::Result<Upstreams> {
        let mut list = Vec::new();
        for ep in &opts.upstreams {
            list.push(Rc::new(Upstream {
                addr: SockAddr::new(ep)?,
                name: ep.to_string(),
                idle: RefCell::new(Vec::new()),
                outstanding: Cell::new(0),
                fails: Cell::new(0),
                down_until: Cell::new(None),
                sweeping: Cell::new(false),
            }));
        }
        Ok(Upstreams {
            list,
            next: Cell::new(0),
            balance: opts.balance,
        })
    }

    /// The upstream for the next try: by round-robin or fewest in flight, among those not
    /// marked down and not in `tried` (when every one is down or tried, the one down longest
    /// ago is tried anyway: a single upstream that restarted should not be refused for 10 s).
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        let n = self.list.len();
        if n == 0 {
            return None;
        }
        let start = self.next.get();
        self.next.set((start + 1) % n);
        if n == 1 && tried.is_empty() {
            return Some(0); // down or not, it is the only one
        }
        let now = Instant::now();
        let ok = |i: usize| !tried.contains(&i) && !self.list[i].down(now);
        let order = (0..n).map(|k| (start + k) % n);
        let chosen = match self.balance {
            Balance::RoundRobin => order.clone().find(|&i| ok(i)),
            Balance::LeastOutstanding => order
                .clone()
                .filter(|&i| ok(i))
                .min_by_key(|&i| self.list[i].outstanding.get()),
        };
        chosen.or_else(|| {
            order
                .filter(|i| !tried.contains(i))
                .min_by_key(|&i| self.list[i].down_until.get())
        })
    }
}
