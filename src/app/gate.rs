//! Admission to an app's processes, on one shard: a request takes a free slot of a ready process
//! (each process takes `concurrency` requests at a time), or waits in a bounded queue, first come
//! first served; 503 when the queue is full, 504 when it waited `queue_timeout`. A client that
//! goes away leaves the queue (its future is dropped). Nothing here is shared with another
//! shard: each shard sends to the processes it owns (see DESIGN.md, "The application pool").
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
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
    waker: RefCell<Option<Waker>>,
}

/// One shard's admission to one app.
pub struct Gate {
    status: Arc<AppStatus>,
    /// The processes this shard sends to.
    owned: Vec<usize>,
    /// Requests in flight per process (all of the app's indexes; only owned ones move).
    busy: RefCell<Vec<u32>>,
    next: Cell<usize>,
    spec: GateSpec,
    max_queue: usize,
    queue: RefCell<VecDeque<Rc<Waiter>>>,
}

impl Gate {
    /// The gate of shard `shard` of `shards`: it owns the processes `i` with `i % shards ==
    /// shard` when there are at least as many processes as shards, else all of them.
    pub fn new(status: Arc<AppStatus>, spec: GateSpec, shard: usize, shards: usize) -> Gate {
        let n = status.processes();
        let owned: Vec<usize> = if n >= shards {
            (0..n).filter(|i| i % shards == shard).collect()
        } else {
            (0..n).collect()
        };
        Gate {
            status,
            owned,
            busy: RefCell::new(vec![0; n]),
            next: Cell::new(0),
            spec,
            max_queue: match spec.queue {
                0 => 0,
                q => q.div_ceil(shards).max(1),
            },
            queue: RefCell::new(VecDeque::new()),
        }
    }

    /// A ready process with a free slot, not in `exclude`, taken.
    fn try_take(&self, exclude: &[usize]) -> Option<usize> {
        let n = self.owned.len();
        let start = self.next.get();
        let mut busy = self.busy.borrow_mut();
        for k in 0..n {
            let p = self.owned[(start + k) % n];
            let spent = self.spec.max_requests > 0
                && self.status.served[p].load(Ordering::Relaxed) + u64::from(busy[p])
                    >= self.spec.max_requests;
            if busy[p] < self.spec.concurrency
                && self.status.is_ready(p)
                && !spent
                && !exclude.contains(&p)
            {
                busy[p] += 1;
                self.next.set((start + k + 1) % n);
                return Some(p);
            }
        }
        None
    }

    /// Takes a slot of a process (not one of `exclude`), waiting in the queue if need be.
    pub async fn acquire(self: &Rc<Self>, exclude: &[usize]) -> Result<usize, Refused> {
        if self.queue.borrow().is_empty() {
            if let Some(p) = self.try_take(exclude) {
                return Ok(p);
            }
        }
        if self.queue.borrow().len() >= self.max_queue {
            return Err(Refused::Full);
        }
        let me = Rc::new(Waiter {
            waker: RefCell::new(None),
        });
        self.queue.borrow_mut().push_back(me.clone());
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
        if let Some(b) = self.busy.borrow_mut().get_mut(p) {
            *b = b.saturating_sub(1);
        }
        self.wake_head();
    }

    fn wake_head(&self) {
        let head = self.queue.borrow().front().cloned();
        if let Some(w) = head.and_then(|h| h.waker.borrow_mut().take()) {
            w.wake();
        }
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.queue.borrow().len()
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
    me: Rc<Waiter>,
    exclude: Vec<usize>,
    deadline: Instant,
    /// While at the head: a short sleep, after which it looks for a process that became ready.
    recheck: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

impl Future for Queued {
    type Output = Result<usize, Refused>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let at_head = self
            .gate
            .queue
            .borrow()
            .front()
            .is_some_and(|h| Rc::ptr_eq(h, &self.me));
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
        *self.me.waker.borrow_mut() = Some(cx.waker().clone());
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
        let mut q = self.gate.queue.borrow_mut();
        let Some(i) = q.iter().position(|w| Rc::ptr_eq(w, &self.me)) else {
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
