//! Waking a shard from outside its loop: handler futures that became ready, and shutdown.
//!
//! Not on the fast path: a handler that answers at once never creates a waker. A future's
//! waker records the connection's token and pokes the shard's eventfd, whose read the ring
//! keeps armed, so a wake from any thread ends the shard's wait. A wake on the shard's own
//! thread (a ring completion that finished a route's operation, one task waking another) only
//! records the token: the loop looks at the list before it waits, so no system call is made.
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

use crate::sys::eventfd::EventFd;

struct Shared {
    woken: Mutex<Vec<u64>>,
    pending: AtomicBool,
    shutdown: AtomicBool,
    /// The drain leaves idle keep-alive connections open (an upgrade's old process).
    gentle: AtomicBool,
    #[cfg(debug_assertions)]
    panic: AtomicBool,
    efd: EventFd,
}

/// A shard's wake-up channel. Cloning shares it (the main thread keeps one to stop the shard).
#[derive(Clone)]
pub struct Wakeup(Arc<Shared>);

struct TaskWaker {
    token: u64,
    shared: Arc<Shared>,
}

thread_local! {
    /// The wake-up channel of the shard running on this thread, if any.
    static HOME: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared
            .woken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.token);
        let home = HOME.with(|h| std::ptr::eq(h.get(), Arc::as_ptr(&self.shared)));
        if !self.shared.pending.swap(true, Ordering::AcqRel) && !home {
            self.shared.efd.notify();
        }
    }
}

impl Wakeup {
    pub fn new() -> std::io::Result<Wakeup> {
        Ok(Wakeup(Arc::new(Shared {
            woken: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            gentle: AtomicBool::new(false),
            #[cfg(debug_assertions)]
            panic: AtomicBool::new(false),
            efd: EventFd::new()?,
        })))
    }

    /// Called on the shard's thread before its loop starts: wakes from this thread then skip
    /// the eventfd, since the loop checks [`Wakeup::pending`] before it waits.
    pub fn enter(&self) {
        HOME.with(|h| h.set(Arc::as_ptr(&self.0)));
    }

    /// Whether tasks were woken since the last [`Wakeup::take_woken`].
    pub fn pending(&self) -> bool {
        self.0.pending.load(Ordering::Acquire)
    }

    /// The eventfd the shard keeps a read armed on.
    pub fn eventfd(&self) -> &EventFd {
        &self.0.efd
    }

    /// A waker that reports connection (`slot`, `gen`) when woken.
    pub fn waker(&self, slot: u32, gen: u32) -> Waker {
        let token = u64::from(slot) << 32 | u64::from(gen);
        Waker::from(Arc::new(TaskWaker {
            token,
            shared: self.0.clone(),
        }))
    }

    /// Moves the (slot, generation) pairs woken since the last call into `into` (cheap when
    /// none were).
    pub fn take_woken(&self, into: &mut Vec<(u32, u32)>) {
        if self.0.pending.load(Ordering::Acquire) {
            self.0.pending.store(false, Ordering::Release);
            let woken =
                std::mem::take(&mut *self.0.woken.lock().unwrap_or_else(|e| e.into_inner()));
            into.extend(woken.into_iter().map(|t| ((t >> 32) as u32, t as u32)));
        }
    }

    /// Ends the shard's wait without asking anything of it (the watchdog's way to see that its
    /// loop turns).
    pub fn poke(&self) {
        self.0.efd.notify();
    }

    /// Asks the shard to shut down gracefully.
    pub fn request_shutdown(&self) {
        self.0.shutdown.store(true, Ordering::Release);
        self.0.efd.notify();
    }

    /// Asks the shard to drain as an upgrade's old process does: idle keep-alive connections
    /// stay open until their next request (answered with `Connection: close`) or their idle
    /// timeout, instead of being closed under a client that may be sending.
    pub fn request_gentle_shutdown(&self) {
        self.0.gentle.store(true, Ordering::Release);
        self.request_shutdown();
    }

    pub fn shutdown_requested(&self) -> bool {
        self.0.shutdown.load(Ordering::Acquire)
    }

    pub fn gentle(&self) -> bool {
        self.0.gentle.load(Ordering::Acquire)
    }

    /// Debug builds only: makes the shard's loop panic at its next wake (the tests of shard
    /// replacement).
    #[cfg(debug_assertions)]
    pub fn request_panic(&self) {
        self.0.panic.store(true, Ordering::Release);
        self.0.efd.notify();
    }

    /// Debug builds only: panics if [`Wakeup::request_panic`] was called.
    #[cfg(debug_assertions)]
    pub fn panic_if_asked(&self) {
        if self.0.panic.swap(false, Ordering::AcqRel) {
            panic!("a panic asked for by the debug hook (RINGSHARD_DEBUG_PANIC_FILE)");
        }
    }
}
