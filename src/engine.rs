//! The half of a shard that is the same whichever way it talks to the kernel: the connection
//! table, deadlines, woken handler tasks and draining. Each engine (io_uring, epoll) keeps its
//! own connection record and does its own I/O, and implements [`Engine`] for what differs:
//! how a connection is aborted, how its output is queued, when it is released, how accepting
//! stops. The rest is written here once.
use std::time::Duration;

use slab::Slab;

use crate::http::handler::Handler;
use crate::session::{Env, Next, Session, Stage};
use crate::shard_state::ShardState;
use crate::timer::Millis;

/// What the shared half needs of an engine's connection record.
pub(crate) trait Link {
    /// The generation its slot was given when it was accepted.
    fn gen(&self) -> u32;
    fn session(&mut self) -> &mut Session;
    fn session_ref(&self) -> &Session;
    /// Since when output has waited on the peer (a send in flight, or output waiting for the
    /// socket to take it); `None` when nothing waits.
    fn sending_since(&self) -> Option<Millis>;
    fn sending(&self) -> bool {
        self.sending_since().is_some()
    }
}

/// A shard's engine-independent state and its connections.
pub(crate) struct Core<H: Handler, C> {
    pub shard: ShardState<H>,
    pub conns: Slab<C>,
    next_gen: u32,
    woken: Vec<(u32, u32)>,
    expired: Vec<(u32, u32)>,
}

impl<H: Handler, C: Link> Core<H, C> {
    pub fn new(st: ShardState<H>) -> Self {
        Core {
            shard: st,
            conns: Slab::with_capacity(1024),
            next_gen: 1,
            woken: Vec::new(),
            expired: Vec::new(),
        }
    }

    /// The live connection in `slot` if it is the one of generation `gen`.
    pub fn get(&mut self, slot: u32, gen: u32) -> Option<&mut C> {
        self.conns.get_mut(slot as usize).filter(|c| c.gen() == gen)
    }

    /// The generation for the next accepted connection.
    pub fn next_gen(&mut self) -> u32 {
        let gen = self.next_gen;
        self.next_gen = crate::token::next_gen(gen);
        gen
    }

    /// Splits the borrows a session call needs from the rest of the shard.
    pub fn env(&mut self) -> (&mut Slab<C>, Env<'_, H>) {
        (&mut self.conns, self.shard.env())
    }

    /// Task (`slot`, `gen`) was woken by a message from another shard's ring.
    pub fn woken_by_message(&mut self, slot: u32, gen: u32) {
        self.woken.push((slot, gen));
    }

    /// How long the shard may wait for I/O: until the nearest deadline (at least 1 ms), and at
    /// most 100 ms while accepting backs off; `None`: no deadline.
    pub fn wait_timeout(&self) -> Option<Duration> {
        if self.shard.wakeup.pending() {
            return Some(Duration::ZERO); // a task woken on this thread after the last look
        }
        let mut ms = self
            .shard
            .timers
            .next()
            .map(|at| at.saturating_sub(self.shard.now).max(1));
        if self.shard.accept_retry_at != 0 {
            ms = Some(ms.map_or(100, |t| t.min(100)));
        }
        if self.shard.gentle_until != 0 {
            let t = self
                .shard
                .gentle_until
                .saturating_sub(self.shard.now)
                .max(1);
            ms = Some(ms.map_or(t, |m| m.min(t)));
        }
        if let Some(at) = self.shard.log.as_ref().and_then(|l| l.deadline()) {
            let t = at.saturating_sub(self.shard.now).max(1);
            ms = Some(ms.map_or(t, |m| m.min(t)));
        }
        if let Some(at) = crate::io::driver().next_deadline() {
            let t = at.saturating_duration_since(std::time::Instant::now());
            let t = (t.as_millis() as u64).max(1);
            ms = Some(ms.map_or(t, |m| m.min(t)));
        }
        ms.map(Duration::from_millis)
    }

    /// Moves a connection's deadline to what its state says now.
    pub fn refresh_deadline(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        let gen = c.gen();
        let sending = c.sending_since();
        let s = c.session();
        let at = s.deadline_at(sending, self.shard.now, &self.shard.timeouts);
        self.shard.timers.set(&mut s.deadline, at, slot, gen);
    }
}

/// An engine's shard: what the shared half calls back into, and the shared half itself.
pub(crate) trait Engine {
    type H: Handler;
    type C: Link;

    fn core(&mut self) -> &mut Core<Self::H, Self::C>;
    /// Closes at once, cancelling what is in flight.
    fn abort(&mut self, slot: u32);
    /// After a session produced output or changed state: queue the output, apply
    /// backpressure, move the deadline.
    fn after_output(&mut self, slot: u32);
    /// Moves a connection along its close once what it waited for is done.
    fn release_if_done(&mut self, slot: u32);
    /// Stops accepting new connections (shutdown).
    fn stop_accepting(&mut self);

    /// Polls a connection's handler future or streaming body.
    fn poll_task(&mut self, slot: u32) {
        let core = self.core();
        let c = &mut core.conns[slot as usize];
        let gen = c.gen();
        // One waker per connection, made at its first task and kept.
        let waker = match c.session().waker.take() {
            Some(w) => w,
            None => core.shard.wakeup.waker(slot, gen),
        };
        let (conns, mut env) = core.env();
        let s = conns[slot as usize].session();
        s.poll_task(&waker, &mut env);
        s.waker = Some(waker);
    }

    /// Handler futures whose wakers fired since the last turn, and those they woke in turn
    /// (a bounded number of rounds; what is left ends the next wait at once).
    fn run_woken(&mut self) {
        for _ in 0..4 {
            let core = self.core();
            if !core.shard.wakeup.pending() && core.woken.is_empty() {
                return;
            }
            self.run_woken_once();
        }
    }

    fn run_woken_once(&mut self) {
        let core = self.core();
        let mut woken = std::mem::take(&mut core.woken);
        core.shard.wakeup.take_woken(&mut woken);
        for &(slot, gen) in &woken {
            if gen == crate::io::TASK_GEN {
                let waker = self.core().shard.wakeup.waker(slot, gen);
                crate::io::driver().poll_spawned(slot, &waker);
                continue;
            }
            let live = self
                .core()
                .get(slot, gen)
                .is_some_and(|c| c.session_ref().stage != Stage::Closing);
            if live {
                self.poll_task(slot);
                self.after_output(slot);
                self.release_if_done(slot);
            }
        }
        woken.clear();
        self.core().woken = woken;
    }

    /// Deadlines that passed: a request still arriving gets its 408, anything else closes.
    /// Each expiry is checked against its connection's generation again when its turn comes,
    /// since an earlier one in the same batch may have closed it, and a connection told to
    /// finish moves on at once (it may have nothing left to send).
    fn expire(&mut self) {
        let core = self.core();
        let mut expired = std::mem::take(&mut core.expired);
        let now = core.shard.now;
        while let Some(entry) = core.shard.timers.pop_due(now) {
            let (_, slot, gen) = entry;
            let Some(c) = core.conns.get_mut(slot as usize).filter(|c| c.gen() == gen) else {
                continue;
            };
            if core
                .shard
                .timers
                .fired(entry, &mut c.session().deadline, now)
            {
                expired.push((slot, gen));
            }
        }
        for &(slot, gen) in &expired {
            let core = self.core();
            if core.get(slot, gen).is_none() {
                continue;
            }
            let (conns, mut env) = core.env();
            let c = &mut conns[slot as usize];
            let sending = c.sending();
            let (next, kind) = c.session().on_deadline(sending, &mut env);
            core.shard.count_expiry(kind);
            match next {
                Next::Close => self.abort(slot),
                Next::Finish => {
                    self.after_output(slot);
                    self.release_if_done(slot);
                }
                Next::Stay => {}
            }
        }
        expired.clear();
        self.core().expired = expired;
        self.end_gentle_drain_if_due();
    }

    /// Graceful shutdown: stop accepting, close idle connections, let requests in flight
    /// finish (their responses say `Connection: close`). A gentle drain (an upgrade's old
    /// process, whose listeners the new one accepts from) closes no idle connection under its
    /// client: each is closed after its next response, or at its idle timeout, or once the
    /// shutdown timeout is a second away.
    fn begin_drain(&mut self) {
        let st = &mut self.core().shard;
        st.draining = true;
        if st.wakeup.gentle() {
            let left = st
                .cfg
                .shutdown_timeout
                .saturating_sub(Duration::from_secs(1));
            st.gentle_until = st.now + (left.as_millis() as u64).max(1);
        }
        self.stop_accepting();
        if self.core().shard.gentle_until == 0 {
            self.close_idle();
        }
    }

    /// A gentle drain's time is up: the idle connections left close now.
    fn end_gentle_drain_if_due(&mut self) {
        let st = &mut self.core().shard;
        if st.gentle_until != 0 && st.now >= st.gentle_until {
            st.gentle_until = 0;
            self.close_idle();
        }
    }

    fn close_idle(&mut self) {
        let idle: Vec<u32> = self
            .core()
            .conns
            .iter()
            .filter(|(_, c)| c.session_ref().is_idle(c.sending()))
            .map(|(k, _)| k as u32)
            .collect();
        for slot in idle {
            self.abort(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeConfig;
    use crate::http::request::Request;
    use crate::http::response::{Reply, Response};
    use crate::wake::Wakeup;

    /// A connection of the test engine.
    struct Conn {
        gen: u32,
        session: Session,
    }

    impl Link for Conn {
        fn gen(&self) -> u32 {
            self.gen
        }
        fn session(&mut self) -> &mut Session {
            &mut self.session
        }
        fn session_ref(&self) -> &Session {
            &self.session
        }
        fn sending_since(&self) -> Option<Millis> {
            None
        }
    }

    fn hello(_: &Request<'_>) -> Reply {
        Reply::Ready(Response::text(200, "hi"))
    }

    type H = fn(&Request<'_>) -> Reply;

    /// An engine with no I/O: it records what the shared half asks of it. Aborting a connection
    /// also closes its `partner`, as an engine may when one connection's end takes another
    /// with it (a proxied client and its upstream).
    struct Test {
        core: Core<H, Conn>,
        partner: Option<(u32, u32)>,
        calls: Vec<String>,
    }

    impl Engine for Test {
        type H = H;
        type C = Conn;
        fn core(&mut self) -> &mut Core<H, Conn> {
            &mut self.core
        }
        fn abort(&mut self, slot: u32) {
            self.calls.push(format!("abort {slot}"));
            if self.core.conns.try_remove(slot as usize).is_some() {
                if let Some((a, b)) = self.partner {
                    let other = if a == slot { b } else { a };
                    self.core.conns.try_remove(other as usize);
                }
            }
        }
        fn after_output(&mut self, slot: u32) {
            self.calls.push(format!("output {slot}"));
        }
        fn release_if_done(&mut self, slot: u32) {
            self.calls.push(format!("release {slot}"));
        }
        fn stop_accepting(&mut self) {
            self.calls.push("stop accepting".into());
        }
    }

    fn engine() -> Test {
        let cfg = ServeConfig {
            header_timeout: Duration::from_millis(5),
            keepalive_timeout: Duration::from_millis(5),
            ..ServeConfig::default()
        };
        let outputs = crate::shard_state::Outputs::default();
        let st = ShardState::new(0, &cfg, hello as H, Wakeup::new().unwrap(), outputs);
        Test {
            core: Core::new(st),
            partner: None,
            calls: Vec::new(),
        }
    }

    /// Accepts a connection and feeds it `input`.
    fn accept(t: &mut Test, input: &[u8]) -> u32 {
        let gen = t.core.next_gen();
        let now = t.core.shard.now;
        let slot = t.core.conns.insert(Conn {
            gen,
            session: Session::new(now),
        }) as u32;
        let (conns, mut env) = t.core.env();
        conns[slot as usize].session.receive(input, &mut env);
        t.core.refresh_deadline(slot);
        slot
    }

    /// Two idle connections expire in one batch, and closing the first closes the second: the
    /// second expiry finds its connection gone and is dropped, instead of acting on an empty
    /// (or reused) slot.
    #[test]
    fn an_expiry_whose_connection_went_earlier_in_the_batch_is_dropped() {
        let mut t = engine();
        let a = accept(&mut t, b"");
        let b = accept(&mut t, b"");
        t.partner = Some((a, b));
        t.core.shard.now += 10;
        t.expire();
        assert_eq!(t.calls, [format!("abort {a}")]);
        assert!(t.core.conns.is_empty());
    }

    /// A request cut off by its header timeout gets its 408 and is moved on at once: the engine
    /// is asked to queue the output and then to release the connection.
    #[test]
    fn a_request_timeout_answers_and_moves_the_close_along() {
        let mut t = engine();
        let c = accept(&mut t, b"GET / HTTP/1.1\r\nHo");
        t.core.shard.now += 10;
        t.expire();
        assert_eq!(t.calls, [format!("output {c}"), format!("release {c}")]);
        let s = &t.core.conns[c as usize].session;
        assert_eq!(s.stage, Stage::Finishing);
        assert!(
            s.out.starts_with(b"HTTP/1.1 408 "),
            "{:?}",
            String::from_utf8_lossy(&s.out)
        );
        assert_eq!(t.core.shard.stats.request_timeouts, 1);
    }

    /// Draining stops accepting and closes only the idle connections.
    #[test]
    fn draining_closes_the_idle_and_keeps_the_busy() {
        let mut t = engine();
        let idle = accept(&mut t, b"");
        let busy = accept(&mut t, b"GET / HTTP/1.1\r\nHo");
        t.begin_drain();
        assert!(t.core.shard.draining);
        assert_eq!(
            t.calls,
            ["stop accepting".to_string(), format!("abort {idle}")]
        );
        assert!(t.core.conns.contains(busy as usize));
    }
}
