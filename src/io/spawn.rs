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
    /// Each task, and whether it is a background one.
    tasks: RefCell<Slab<(Option<Task>, bool)>>,
    background: std::cell::Cell<usize>,
    wakeup: RefCell<Option<Wakeup>>,
}

impl Tasks {
    pub(super) fn set_wakeup(&self, wakeup: Wakeup) {
        *self.wakeup.borrow_mut() = Some(wakeup);
    }

    /// Drops the background tasks (a drained shard's).
    pub(super) fn drop_background(&self) {
        if self.background.get() == 0 {
            return;
        }
        let dropped: Vec<Task> = {
            let mut tasks = self.tasks.borrow_mut();
            let ids: Vec<usize> = tasks
                .iter()
                .filter(|(_, t)| t.1)
                .map(|(id, _)| id)
                .collect();
            ids.into_iter()
                .filter_map(|id| tasks.remove(id).0)
                .collect()
        };
        self.background.set(0);
        drop(dropped); // outside the borrow: their drops reach the driver
    }

    /// Drops every task (a dead shard's: what they hold, such as an app process's slot, is
    /// given back; the buffers of their operations stay in the driver).
    pub(super) fn drop_all(&self) {
        let dropped: Vec<Task> = self
            .tasks
            .borrow_mut()
            .drain()
            .filter_map(|t| t.0)
            .collect();
        self.background.set(0);
        drop(dropped); // outside the borrow: their drops reach the driver
    }

    /// Tasks a draining shard waits for (not the background ones).
    pub(super) fn len(&self) -> usize {
        self.tasks.borrow().len() - self.background.get()
    }

    pub(super) fn poll(&self, id: u32, waker: &Waker) {
        let Some(mut task) = self
            .tasks
            .borrow_mut()
            .get_mut(id as usize)
            .and_then(|t| t.0.take())
        else {
            return;
        };
        let done = task
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_ready();
        let mut tasks = self.tasks.borrow_mut();
        if done {
            if tasks.remove(id as usize).1 {
                self.background.set(self.background.get() - 1);
            }
        } else {
            tasks[id as usize].0 = Some(task);
        }
    }
}

/// Runs `task` on this shard: it is polled at the end of the current loop turn, then whenever
/// its waker fires. It must end on its own (its operations carry deadlines).
pub fn spawn(task: impl Future<Output = ()> + 'static) {
    start(Box::pin(task), false);
}

/// Runs `task` on this shard as [`spawn`] does, but a draining shard does not wait for it: it is
/// dropped when the shard exits (a pool's sweeper, which sleeps until its connections' time is
/// up).
pub fn spawn_background(task: impl Future<Output = ()> + 'static) {
    start(Box::pin(task), true);
}

fn start(task: Task, background: bool) {
    let driver = super::driver();
    let id = driver
        .tasks
        .tasks
        .borrow_mut()
        .insert((Some(task), background));
    if background {
        driver
            .tasks
            .background
            .set(driver.tasks.background.get() + 1);
    }
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
