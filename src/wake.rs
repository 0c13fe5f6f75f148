//! Waking a shard from outside its loop: handler futures that became ready, and shutdown.
//!
//! Not on the fast path: a handler that answers at once never creates a waker. A future's
//! waker records the connection's token and pokes the shard's eventfd, whose read the ring
//! keeps armed, so a wake from any thread ends the shard's wait. A wake on the shard's own
//! thread (a ring completion that finished a route's operation, one task waking another) only
//! records the token: the loop looks at the list before it waits, so no system call is made. A
//! wake made on another io_uring shard's thread goes to that thread's outbox, and its loop sends
//! it as a message to the target's ring (`IORING_OP_MSG_RING`): no lock, no system call.
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

use crate::sys::eventfd::EventFd;

struct Shared {
    woken: Mutex<Vec<u64>>,
    /// The shard's io_uring, for wakes sent as messages between rings (-1: none).
    ring_fd: AtomicI32,
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
    /// On an io_uring shard's thread: wakes of other shards' tasks, to be sent as messages
    /// between rings (`IORING_OP_MSG_RING`) with this turn's submissions.
    static OUTBOX: RefCell<Option<Vec<Message>>> = const { RefCell::new(None) };
}

/// A wake of task (`slot`, `gen`) of the shard whose ring is `ring_fd`, to be sent as a message;
/// `to` takes it the ordinary way if the message cannot be sent.
pub struct Message {
    pub ring_fd: i32,
    pub slot: u32,
    pub gen: u32,
    pub to: Wakeup,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let home = HOME.with(|h| std::ptr::eq(h.get(), Arc::as_ptr(&self.shared)));
        let ring_fd = self.shared.ring_fd.load(Ordering::Acquire);
        if !home && ring_fd >= 0 {
            let sent = OUTBOX.with(|o| match o.borrow_mut().as_mut() {
                Some(outbox) => {
                    outbox.push(Message {
                        ring_fd,
                        slot: (self.token >> 32) as u32,
                        gen: self.token as u32,
                        to: Wakeup(self.shared.clone()),
                    });
                    true
                }
                None => false,
            });
            if sent {
                return; // no lock, no system call: the message goes with this turn's entries
            }
        }
        self.shared
            .woken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.token);
        if !self.shared.pending.swap(true, Ordering::AcqRel) && !home {
            self.shared.efd.notify();
        }
    }
}

impl Wakeup {
    pub fn new() -> std::io::Result<Wakeup> {
        Ok(Wakeup(Arc::new(Shared {
            woken: Mutex::new(Vec::new()),
            ring_fd: AtomicI32::new(-1),
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

    /// Called on an io_uring shard's thread: its tasks may be woken by messages to `ring_fd`,
    /// and wakes it makes of other such shards' tasks wait in this thread's outbox
    /// ([`take_outbox`]) to be sent the same way.
    pub fn use_messages(&self, ring_fd: i32) {
        OUTBOX.with(|o| *o.borrow_mut() = Some(Vec::new()));
        self.0.ring_fd.store(ring_fd, Ordering::Release);
    }

    /// The shard stops: its ring will close, so wakes go the ordinary way again.
    pub fn stop_messages(&self) {
        self.0.ring_fd.store(-1, Ordering::Release);
        OUTBOX.with(|o| *o.borrow_mut() = None);
    }

    /// Takes a task's wake the ordinary way (its message could not be sent).
    pub fn wake_task(&self, slot: u32, gen: u32) {
        self.0
            .woken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(u64::from(slot) << 32 | u64::from(gen));
        if !self.0.pending.swap(true, Ordering::AcqRel) {
            self.0.efd.notify();
        }
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

    /// Makes the drain a shutdown will ask for gentle, as an upgrade's old process drains:
    /// idle keep-alive connections stay open until their next request (answered with
    /// `Connection: close`) or their idle timeout, instead of being closed under a client that
    /// may be sending.
    pub fn drain_gently(&self) {
        self.0.gentle.store(true, Ordering::Release);
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

/// This thread's ring cannot send messages (an old kernel): wakes go the ordinary way.
pub fn no_messages_from_here() {
    OUTBOX.with(|o| *o.borrow_mut() = None);
}

/// The wakes of other shards' tasks made on this thread since the last call.
pub fn take_outbox(into: &mut Vec<Message>) {
    OUTBOX.with(|o| {
        if let Some(outbox) = o.borrow_mut().as_mut() {
            into.append(outbox);
        }
    });
}
