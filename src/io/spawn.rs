//! Tasks a route starts that no connection awaits: a proxied response's body read on from the
//! upstream while the client is still being sent the start of it. Each is polled on its shard's
//! thread when its waker fires, like a connection's handler future.
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};

use slab::Slab;

use crate::wake::Wakeup;

/// The generation a spawned task's waker carries in place of a connection's: connections'
/// generations are 24 bits, so this one never names a connection.
pub const TASK_GEN: u32 = u32::MAX;

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// A shard's spawned tasks. A task is taken out of its slot while it is polled, so that it
/// may spawn others.
#[derive(Default)]
pub(super) struct Tasks {
    tasks: RefCell<Slab<Option<Task>>>,
    wakeup: RefCell<Option<Wakeup>>,
}

impl Tasks {
    pub(super) fn set_wakeup(&self, wakeup: Wakeup) {
        *self.wakeup.borrow_mut() = Some(wakeup);
    }

    pub(super) fn len(&self) -> usize {
        self.tasks.borrow().len()
    }

    pub(super) fn poll(&self, id: u32, waker: &Waker) {
        let Some(mut task) = self
            .tasks
            .borrow_mut()
            .get_mut(id as usize)
            .and_then(Option::take)
        else {
            return;
        };
        let done = task
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_ready();
        let mut tasks = self.tasks.borrow_mut();
        if done {
            tasks.remove(id as usize);
        } else {
            tasks[id as usize] = Some(task);
        }
    }
}

/// Runs `task` on this shard: it is polled at the end of the current loop turn, then whenever
/// its waker fires. It must end on its own (its operations carry deadlines).
pub fn spawn(task: impl Future<Output = ()> + 'static) {
    let driver = super::driver();
    let id = driver.tasks.tasks.borrow_mut().insert(Some(Box::pin(task)));
    let wakeup = driver.tasks.wakeup.borrow().clone();
    match wakeup {
        Some(w) => w.waker(id as u32, TASK_GEN).wake(),
        None => {
            // Not on a shard (a unit test): poll it once here.
            struct Noop;
            impl std::task::Wake for Noop {
                fn wake(self: std::sync::Arc<Self>) {}
            }
            let waker = Waker::from(std::sync::Arc::new(Noop));
            driver.tasks.poll(id as u32, &waker);
        }
    }
}
