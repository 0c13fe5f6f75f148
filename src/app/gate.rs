//! Admission to an app's processes: a request takes a free slot of a ready process (each process
//! takes `concurrency` requests at a time), or waits in a bounded queue, first come first
//! served; 503 when the queue is full, 504 when it waited `queue_timeout`. A client that goes
//! away leaves the queue (its future is dropped). Per shard (`pool = "per-shard"`), each shard
//! counts and queues for the processes it owns, and nothing is shared with another shard;
//! shared (`pool = "shared"`), every shard counts in the app's one set of books (an atomic per
//! process, taken by compare-and-swap) and waits in its one queue, and a slot given back on one
//! shard wakes the request at the head on whichever shard it is (its waker pokes that shard's
//! ring). See DESIGN.md, "The application pool".
use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::AppStatus;

/// How a route of an app admits requests (from `[app.NAME]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateSpec {
    /// Requests one process takes at a time.
    pub concurrency: u32,
    /// Requests that may wait for a process, per app (split between the shards).
    pub queue: usize,
    pub queue_timeout: Duration,
    /// A process that has taken this many requests takes no more (it is being recycled; its
    /// replacement takes them once it is ready); 0: no limit.
    pub max_requests: u64,
    /// Whether every shard sends to every process, in one set of books, or each to its own.
    pub pool: Pool,
}

/// `pool` of `[app.NAME]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// Shared when there are fewer processes than shards, per shard otherwise
    /// (`scripts/app-balance.sh` measured why).
    Auto,
    Shared,
    PerShard,
}

impl Pool {
    pub fn name(self) -> &'static str {
        match self {
            Pool::Auto => "auto",
            Pool::Shared => "shared",
            Pool::PerShard => "per-shard",
        }
    }

    /// Whether `processes` processes behind `shards` shards are shared.
    pub fn shared(self, processes: usize, shards: usize) -> bool {
        match self {
            Pool::Auto => processes < shards,
            Pool::Shared => true,
            Pool::PerShard => false,
        }
    }
}

/// Why a request was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full: 503 with `Retry-After`.
    Full,
    /// It waited `queue_timeout`: 504.
    Timeout,
}

/// How often the request at the head of the queue looks again for a process that became ready.
const RECHECK: Duration = Duration::from_millis(20);

struct Waiter {
    waker: Mutex<Option<Waker>>,
}

/// Requests in flight per process, and the requests waiting: a shard's own, or the app's.
pub struct Books {
    busy: Vec<AtomicU32>,
    queue: Mutex<VecDeque<Arc<Waiter>>>,
}

impl Default for Books {
    fn default() -> Books {
        Books::new(0)
    }
}

impl Books {
    pub fn new(processes: usize) -> Books {
        Books {
            busy: (0..processes).map(|_| AtomicU32::new(0)).collect(),
            queue: Mutex::new(VecDeque::new()),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Waiter>>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One shard's admission to one app.
pub struct Gate {
    status: Arc<AppStatus>,
    /// The processes this shard sends to.
    owned: Vec<usize>,
    books: Arc<Books>,
    next: Cell<usize>,
    spec: GateSpec,
    max_queue: usize,
}

impl Gate {
    /// The gate of shard `shard` of `shards`. Shared, it sends to every process and keeps the
    /// app's books. Per shard, it owns the processes `i` with `i % shards == shard` when there
    /// are at least as many processes as shards, else all of them (each shard then counts only
    /// its own requests: a process may get one per shard at a time), and keeps its own books
    /// (and a share of the queue).
    pub fn new(status: Arc<AppStatus>, spec: GateSpec, shard: usize, shards: usize) -> Gate {
        let n = status.processes();
        let (owned, books, max_queue): (Vec<usize>, _, _) = if spec.pool.shared(n, shards) {
            ((0..n).collect(), status.books.clone(), spec.queue)
        } else {
            let owned = match n >= shards {
                true => (0..n).filter(|i| i % shards == shard).collect(),
                false => (0..n).collect(),
            };
            let queue = match spec.queue {
                0 => 0,
                q => q.div_ceil(shards).max(1),
            };
            (owned, Arc::new(Books::new(n)), queue)
        };
        Gate {
            status,
            // Shards start their round-robin at different processes.
            next: Cell::new(shard % owned.len().max(1)),
            owned,
            books,
            spec,
            max_queue,
        }
    }

    /// A ready process with a free slot, not in `exclude`, taken.
    fn try_take(&self, exclude: &[usize]) -> Option<usize> {
        let n = self.owned.len();
        let start = self.next.get();
        for k in 0..n {
            let p = self.owned[(start + k) % n];
            if !self.status.is_ready(p) || exclude.contains(&p) {
                continue;
            }
            let busy = &self.books.busy[p];
            let mut b = busy.load(Ordering::Relaxed);
            loop {
                let spent = self.spec.max_requests > 0
                    && self.status.served[p].load(Ordering::Relaxed) + u64::from(b)
                        >= self.spec.max_requests;
                if b >= self.spec.concurrency || spent {
                    break;
                }
                match busy.compare_exchange_weak(b, b + 1, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => {
                        self.next.set((start + k + 1) % n);
                        return Some(p);
                    }
                    Err(now) => b = now,
                }
            }
        }
        None
    }

    /// Takes a slot of a process (not one of `exclude`), waiting in the queue if need be.
    pub async fn acquire(self: &Rc<Self>, exclude: &[usize]) -> Result<usize, Refused> {
        if self.books.queue().is_empty() {
            if let Some(p) = self.try_take(exclude) {
                return Ok(p);
            }
        }
        let me = Arc::new(Waiter {
            waker: Mutex::new(None),
        });
        {
            let mut q = self.books.queue();
            if q.len() >= self.max_queue {
                return Err(Refused::Full);
            }
            q.push_back(me.clone());
        }
        let queued = Queued {
            gate: self.clone(),
            me,
            exclude: exclude.to_vec(),
            deadline: Instant::now() + self.spec.queue_timeout,
            recheck: None,
        };
        queued.await
    }

    /// Gives back a slot of process `p`; the first request waiting is woken to take it.
    pub fn release(&self, p: usize) {
        if let Some(b) = self.books.busy.get(p) {
            let _ = b.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| v.checked_sub(1));
        }
        self.wake_head();
    }

    fn wake_head(&self) {
        let head = self.books.queue().front().cloned();
        let waker = head.and_then(|h| h.waker.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Requests waiting now (the app's, with shared books).
    pub fn waiting(&self) -> usize {
        self.books.queue().len()
    }
}

/// A slot of process `p` (serving at address `alt` when it was taken), given back when
/// dropped.
pub struct Slot {
    gate: Rc<Gate>,
    pub p: usize,
    pub alt: usize,
}

impl Slot {
    /// The entry of the route's upstream list to send to.
    pub fn upstream(&self) -> usize {
        2 * self.p + self.alt
    }
}

impl Gate {
    /// [`Gate::acquire`], as a slot that gives itself back.
    pub async fn slot(self: &Rc<Self>, exclude: &[usize]) -> Result<Slot, Refused> {
        let p = self.acquire(exclude).await?;
        let alt = self.status.active(p);
        self.status.in_flight[p][alt].fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            gate: self.clone(),
            p,
            alt,
        })
    }

    /// The app's status (to ask for a stuck process to be replaced).
    pub fn status(&self) -> &AppStatus {
        &self.status
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let st = &self.gate.status;
        st.in_flight[self.p][self.alt].fetch_sub(1, Ordering::Relaxed);
        st.served[self.p].fetch_add(1, Ordering::Relaxed);
        self.gate.release(self.p);
    }
}

/// A request's wait in the queue.
struct Queued {
    gate: Rc<Gate>,
    me: Arc<Waiter>,
    exclude: Vec<usize>,
    deadline: Instant,
    /// While at the head: a short sleep, after which it looks for a process that became ready.
    recheck: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

impl Future for Queued {
    type Output = Result<usize, Refused>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The waker first: a release on another shard between the look below and this store
        // would otherwise find nobody to wake.
        *self.me.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        let at_head = self
            .gate
            .books
            .queue()
            .front()
            .is_some_and(|h| Arc::ptr_eq(h, &self.me));
        if at_head {
            if let Some(p) = self.gate.try_take(&self.exclude) {
                self.leave();
                return Poll::Ready(Ok(p));
            }
        }
        let now = Instant::now();
        if now >= self.deadline {
            self.leave();
            return Poll::Ready(Err(Refused::Timeout));
        }
        // The head looks again now and then (a process may become ready without a release);
        // every waiter wakes at its deadline.
        let wake_at = if at_head {
            (now + RECHECK).min(self.deadline)
        } else {
            self.deadline
        };
        let mut sleep = Box::pin(crate::io::sleep_until(wake_at));
        if sleep.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
        self.recheck = Some(sleep);
        Poll::Pending
    }
}

impl Queued {
    /// Leaves the queue, if still in it; the next request at its head is woken.
    fn leave(&mut self) {
        self.recheck = None;
        let mut q = self.gate.books.queue();
        let Some(i) = q.iter().position(|w| Arc::ptr_eq(w, &self.me)) else {
            return;
        };
        q.remove(i);
        drop(q);
        self.gate.wake_head();
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.leave(); // a client that went away leaves its place
    }
}

impl AppStatus {
    /// Whether process `p` accepts connections.
    pub fn is_ready(&self, p: usize) -> bool {
        self.ready.get(p).is_some_and(|r| r.load(Ordering::Relaxed))
    }

    /// How many processes the app runs.
    pub fn processes(&self) -> usize {
        self.ready.len()
    }

    /// Which of process `p`'s two addresses takes its requests now.
    pub fn active(&self, p: usize) -> usize {
        usize::from(self.active[p].load(Ordering::Relaxed))
    }
}
