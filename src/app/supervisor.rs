//! One thread per app: starts its processes, tells when each accepts connections, starts again
//! those that exit (at once, then with a doubling delay while they keep failing), gives up
//! after `max_crashes` crashes within `crash_window`, and stops them all (SIGTERM, then SIGKILL
//! after `grace`) when ringshard stops. Each process leads its own process group, so signals
//! reach the children it started, and its output goes to ringshard's stderr a line at a time,
//! each prefixed with the app's name and the process's pid.
use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{AppSpec, Listen};

/// What the proxy routes of an app read on each request (written by the supervisor, which is
/// seldom: a process became ready or went away).
#[derive(Default)]
pub struct AppStatus {
    /// The pool stopped restarting its processes: the app's routes answer 503.
    pub gave_up: AtomicBool,
    /// Per process: it accepts connections.
    pub(super) ready: Vec<AtomicBool>,
    /// Per process: which of its two addresses takes requests (0 or 1).
    pub(super) active: Vec<AtomicU8>,
    /// Per process and address: requests in flight (written by the shard that owns the
    /// process), so that one being recycled is stopped only once they are done.
    pub(super) in_flight: Vec<[AtomicU32; 2]>,
    /// Per process: requests answered since it started (for `max_requests`).
    pub(super) served: Vec<AtomicU64>,
    /// Processes a shard found stuck (no answer within the request timeout): the supervisor
    /// replaces them. Touched only on that failure.
    replace: Mutex<Vec<usize>>,
    /// The books every shard's gate keeps with `pool = "shared"`.
    pub(super) books: Arc<super::gate::Books>,
}

impl AppStatus {
    /// A shard found process `p` refusing connections (it went away): no request goes to it
    /// until the supervisor sees it accept again.
    pub fn not_ready(&self, p: usize) {
        if let Some(r) = self.ready.get(p) {
            r.store(false, Ordering::Relaxed);
        }
    }

    /// Asks the supervisor to replace process `p` (it kept a request past the request timeout).
    pub fn replace(&self, p: usize) {
        let mut r = self.replace.lock().unwrap_or_else(|e| e.into_inner());
        if !r.contains(&p) {
            r.push(p);
        }
    }
}

/// Every app's status, by name (written once per app at start-up, read by each shard's routes
/// when they are built).
fn registry() -> &'static Mutex<HashMap<String, Arc<AppStatus>>> {
    static APPS: OnceLock<Mutex<HashMap<String, Arc<AppStatus>>>> = OnceLock::new();
    APPS.get_or_init(Default::default)
}

/// The status of app `name` (a fresh one, with no process, if it was never started).
pub fn status(name: &str) -> Arc<AppStatus> {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name.to_string())
        .or_default()
        .clone()
}

/// Registers app `name` with `processes` processes, none ready yet.
fn register(name: &str, processes: usize) -> Arc<AppStatus> {
    let status = Arc::new(AppStatus {
        ready: (0..processes).map(|_| AtomicBool::new(false)).collect(),
        active: (0..processes).map(|_| AtomicU8::new(0)).collect(),
        in_flight: (0..processes).map(|_| Default::default()).collect(),
        served: (0..processes).map(|_| AtomicU64::new(0)).collect(),
        books: Arc::new(super::gate::Books::new(processes)),
        ..Default::default()
    });
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_string(), status.clone());
    status
}

/// A running app pool's handle.
pub struct Supervisor {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    name: String,
    status: Arc<AppStatus>,
    ready_timeout: Duration,
}

impl Supervisor {
    /// Creates the sockets' directory (mode 0700) and starts the processes.
    pub fn start(spec: AppSpec) -> Result<Supervisor, String> {
        if spec.listen == Listen::Unix {
            let dir = spec.socket_dir();
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)
                .and_then(|()| {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| format!("app {}: cannot create {}: {e}", spec.name, dir.display()))?;
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let status = register(&spec.name, spec.processes);
        let stop2 = stop.clone();
        let (name, ready_timeout, status2) =
            (spec.name.clone(), spec.ready_timeout, status.clone());
        let thread = std::thread::Builder::new()
            .name(format!("app-{}", spec.name))
            .spawn(move || Pool::new(spec, status2).run(&stop2))
            .map_err(|e| format!("cannot start the app supervisor: {e}"))?;
        Ok(Supervisor {
            thread: Some(thread),
            stop,
            name,
            status,
            ready_timeout,
        })
    }

    /// Waits until every process accepts connections (an upgrade's new process says it is
    /// ready only then, so capacity does not drop); `Err` when the pool gave up or its ready
    /// timeout passed first.
    pub fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + self.ready_timeout + Duration::from_secs(1);
        loop {
            if self.status.gave_up.load(Ordering::Relaxed) {
                return Err(format!("app {}: its processes keep crashing", self.name));
            }
            if self.status.ready.iter().all(|r| r.load(Ordering::Relaxed)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "app {}: not every process accepted connections within {} s",
                    self.name,
                    self.ready_timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the processes (SIGTERM, SIGKILL after the grace time) and waits for them.
    pub fn stop(mut self) {
        self.signal_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn signal_stop(&self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.signal_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One process slot.
struct Slot {
    child: Option<Child>,
    /// When the process was started, until it accepts connections.
    starting: Option<Instant>,
    /// When to start a process again (after an exit).
    restart_at: Option<Instant>,
    /// Exits in a row without having become ready (for the back-off).
    failures: u32,
    /// Since when the process accepts connections.
    ready_at: Option<Instant>,
    /// Which of the slot's two addresses `child` listens on.
    alt: usize,
    /// A replacement starting on the other address (recycling), and since when.
    next: Option<(Child, Instant)>,
    /// Recycled processes finishing their requests: the address they serve, and when they
    /// were sent SIGTERM.
    retiring: Vec<(Child, usize, Option<Instant>)>,
    /// When its resident memory was last read.
    memory_read: Option<Instant>,
}

impl Slot {
    fn new(child: Option<Child>, restart_at: Option<Instant>) -> Slot {
        Slot {
            child,
            starting: None,
            restart_at,
            failures: 0,
            ready_at: None,
            alt: 0,
            next: None,
            retiring: Vec::new(),
            memory_read: None,
        }
    }
}

struct Pool {
    spec: AppSpec,
    status: Arc<AppStatus>,
    slots: Vec<Slot>,
    /// When processes exited, within the crash window.
    exits: VecDeque<Instant>,
}

/// A process that exits within this long of accepting connections counts as a crash.
const SETTLE: Duration = Duration::from_secs(1);

/// How often the supervisor looks at its processes.
const TICK: Duration = Duration::from_millis(25);
/// The back-off after repeated failures: doubling from this, at most `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Pool {
    fn new(spec: AppSpec, status: Arc<AppStatus>) -> Pool {
        let slots = (0..spec.processes)
            .map(|_| Slot::new(None, Some(Instant::now())))
            .collect();
        Pool {
            spec,
            status,
            slots,
            exits: VecDeque::new(),
        }
    }

    fn run(mut self, stop: &(Mutex<bool>, Condvar)) {
        loop {
            if *stop.0.lock().unwrap_or_else(|e| e.into_inner()) {
                break;
            }
            self.tick();
            let guard = stop.0.lock().unwrap_or_else(|e| e.into_inner());
            if *guard {
                break;
            }
            let _ = stop.1.wait_timeout(guard, TICK);
        }
        self.stop_all();
        if self.spec.listen == Listen::Unix {
            let _ = std::fs::remove_dir_all(self.spec.socket_dir());
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let stuck = std::mem::take(
            &mut *self
                .status
                .replace
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for i in stuck {
            if let Some(c) = self.slots.get(i).and_then(|s| s.child.as_ref()) {
                eprintln!(
                    "ringshard: app {}[{}] kept a request past its timeout; replacing it",
                    self.spec.name,
                    c.id()
                );
                self.status.ready[i].store(false, Ordering::Relaxed);
                crate::sys::process::kill_group(c.id(), libc::SIGKILL);
            }
        }
        for i in 0..self.slots.len() {
            self.watch(i, now);
        }
    }

    /// Looks at slot `i`: an exit is logged and counted, a start is made when due, a starting
    /// process is checked for readiness.
    fn watch(&mut self, i: usize, now: Instant) {
        self.recycle(i, now);
        let name = self.spec.name.clone();
        let exited = match self.slots[i].child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Err(e)) => Some(format!("lost ({e})")),
            _ => None,
        };
        if let Some(how) = exited {
            self.status.ready[i].store(false, Ordering::Relaxed);
            let child = self.slots[i].child.take();
            let pid = child.as_ref().map_or(0, Child::id);
            // Whatever the process started goes with it.
            crate::sys::process::kill_group(pid, libc::SIGKILL);
            eprintln!("ringshard: app {name}[{pid}] {how}");
            self.crashed(i, now);
        }
        let slot = &mut self.slots[i];
        if slot.child.is_none() {
            if slot.restart_at.is_some_and(|t| now >= t)
                && !self.status.gave_up.load(Ordering::Relaxed)
            {
                slot.restart_at = None;
                let alt = slot.alt;
                match self.spawn(i, alt) {
                    Some(child) => {
                        let slot = &mut self.slots[i];
                        slot.child = Some(child);
                        slot.starting = Some(now);
                    }
                    None => self.crashed(i, now),
                }
            }
            return;
        }
        if slot.starting.is_none() && !self.status.is_ready(i) && accepts(&self.spec, i, slot.alt) {
            // A shard saw it refuse a connection, but it accepts again.
            self.status.ready[i].store(true, Ordering::Relaxed);
        }
        if let Some(since) = slot.starting {
            if accepts(&self.spec, i, slot.alt) {
                slot.starting = None;
                slot.failures = 0;
                slot.ready_at = Some(now);
                self.status.ready[i].store(true, Ordering::Relaxed);
                let pid = slot.child.as_ref().map_or(0, Child::id);
                eprintln!(
                    "ringshard: app {name}[{pid}] ready ({})",
                    self.spec.address(i, slot.alt)
                );
            } else if now.duration_since(since) > self.spec.ready_timeout {
                let pid = slot.child.as_ref().map_or(0, Child::id);
                eprintln!(
                    "ringshard: app {name}[{pid}] did not accept connections within {:?}; stopping it",
                    self.spec.ready_timeout
                );
                crate::sys::process::kill_group(pid, libc::SIGKILL);
            }
        }
    }

    /// A process of slot `i` exited: started again at once the first time, then after a
    /// doubling delay while it keeps failing before it is ready. An exit counts toward giving up
    /// when the process never accepted connections, or did for less than [`SETTLE`]: an app
    /// that cannot start or dies at once. One that served and was then killed (by an operator,
    /// the OOM killer) is replaced whatever the count.
    fn crashed(&mut self, i: usize, now: Instant) {
        let settled = self.slots[i]
            .ready_at
            .take()
            .is_some_and(|t| now.duration_since(t) >= SETTLE);
        if !settled {
            self.exits.push_back(now);
        }
        while self
            .exits
            .front()
            .is_some_and(|&t| now.duration_since(t) > self.spec.crash_window)
        {
            self.exits.pop_front();
        }
        if self.exits.len() as u32 >= self.spec.max_crashes {
            if !self.status.gave_up.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "ringshard: app {}: {} crashes within {:?}; not starting it again, its routes answer 503",
                    self.spec.name,
                    self.exits.len(),
                    self.spec.crash_window
                );
            }
            return;
        }
        let slot = &mut self.slots[i];
        let delay = match slot.failures {
            0 => Duration::ZERO,
            n => (FIRST_BACKOFF * 2u32.saturating_pow(n - 1)).min(MAX_BACKOFF),
        };
        if slot.starting.is_some() {
            slot.failures += 1; // it never became ready
        } else {
            slot.failures = 1;
        }
        slot.starting = None;
        slot.restart_at = Some(now + delay);
    }

    /// Starts a process for slot `i` listening at address `alt`.
    fn spawn(&self, i: usize, alt: usize) -> Option<Child> {
        let spec = &self.spec;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(&spec.command)
            .env("RINGSHARD_APP", &spec.name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match spec.address(i, alt) {
            crate::load::url::Endpoint::Unix(path) => {
                let _ = std::fs::remove_file(&path); // a dead process's socket
                cmd.env("RINGSHARD_SOCKET", path);
            }
            crate::load::url::Endpoint::Tcp(a) => {
                cmd.env("PORT", a.port().to_string());
            }
        }
        for (k, v) in &spec.environment {
            cmd.env(k, v);
        }
        if let Some(d) = &spec.directory {
            cmd.current_dir(d);
        }
        crate::sys::process::own_group_dying_with_parent(&mut cmd);
        match cmd.spawn() {
            Ok(mut child) => {
                let pid = child.id();
                for out in [
                    child
                        .stdout
                        .take()
                        .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
                    child
                        .stderr
                        .take()
                        .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
                ]
                .into_iter()
                .flatten()
                {
                    relay_lines(out, format!("app {}[{pid}]", spec.name));
                }
                Some(child)
            }
            Err(e) => {
                eprintln!(
                    "ringshard: app {}: cannot start '{}': {e}",
                    spec.name, spec.command
                );
                None
            }
        }
    }

    /// Recycling of slot `i`: a process past `max_requests` or `max_memory` gets a replacement
    /// on its other address; once that accepts connections, requests go to it, and the old one
    /// is sent SIGTERM when its requests in flight are done (SIGKILL after `grace`).
    fn recycle(&mut self, i: usize, now: Instant) {
        let name = self.spec.name.clone();
        // Processes retiring: stopped once their requests are done.
        let grace = self.spec.grace;
        let status = self.status.clone();
        self.slots[i].retiring.retain_mut(|(child, alt, term_at)| {
            let pid = child.id();
            if let Ok(Some(_)) | Err(_) = child.try_wait() {
                crate::sys::process::kill_group(pid, libc::SIGKILL);
                eprintln!("ringshard: app {name}[{pid}] recycled");
                return false;
            }
            match term_at {
                None if status.in_flight[i][*alt].load(Ordering::Relaxed) == 0 => {
                    crate::sys::process::kill_group(pid, libc::SIGTERM);
                    *term_at = Some(now);
                }
                Some(t) if now.duration_since(*t) > grace => {
                    crate::sys::process::kill_group(pid, libc::SIGKILL);
                }
                _ => {}
            }
            true
        });
        // A replacement starting: when it accepts, it takes the slot's requests.
        let other = 1 - self.slots[i].alt;
        if let Some((next, since)) = &mut self.slots[i].next {
            let pid = next.id();
            if let Ok(Some(_)) | Err(_) = next.try_wait() {
                eprintln!(
                    "ringshard: app {name}[{pid}] (a replacement) exited before it was ready"
                );
                crate::sys::process::kill_group(pid, libc::SIGKILL);
                self.slots[i].next = None;
            } else if accepts(&self.spec, i, other) {
                let slot = &mut self.slots[i];
                let Some((next, _)) = slot.next.take() else {
                    return;
                };
                self.status.active[i].store(other as u8, Ordering::Relaxed);
                self.status.served[i].store(0, Ordering::Relaxed);
                if let Some(old) = slot.child.replace(next) {
                    eprintln!(
                        "ringshard: app {name}[{}] ready ({}), taking over from {}",
                        pid,
                        self.spec.address(i, other),
                        old.id()
                    );
                    slot.retiring.push((old, 1 - other, None));
                }
                slot.alt = other;
                slot.ready_at = Some(now);
                slot.memory_read = None;
            } else if now.duration_since(*since) > self.spec.ready_timeout {
                crate::sys::process::kill_group(pid, libc::SIGKILL);
            }
            return;
        }
        // A ready process past its limits: start its replacement.
        let slot = &self.slots[i];
        let Some(child) = slot.child.as_ref().filter(|_| slot.starting.is_none()) else {
            return;
        };
        if !self.status.is_ready(i) || !slot.retiring.is_empty() {
            return;
        }
        let served = self.status.served[i].load(Ordering::Relaxed);
        let mut why = None;
        if self.spec.max_requests > 0 && served >= self.spec.max_requests {
            why = Some(format!("after {served} requests"));
        } else if self.spec.max_memory > 0
            && slot
                .memory_read
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            let rss = resident_bytes(child.id());
            self.slots[i].memory_read = Some(now);
            if rss > self.spec.max_memory {
                why = Some(format!("at {} MiB resident", rss >> 20));
            }
        }
        let Some(why) = why else { return };
        let pid = self.slots[i].child.as_ref().map_or(0, Child::id);
        eprintln!("ringshard: app {name}[{pid}] is recycled {why}: starting its replacement");
        if let Some(next) = self.spawn(i, other) {
            self.slots[i].next = Some((next, now));
        }
    }

    /// Stops every process: SIGTERM to its group, SIGKILL to what is left after the grace.
    fn stop_all(&mut self) {
        // Replacements and retiring processes go into the same wait as the others.
        let mut extra = Vec::new();
        for s in &mut self.slots {
            extra.extend(s.next.take().map(|(c, _)| c));
            extra.extend(s.retiring.drain(..).map(|(c, _, _)| c));
        }
        for c in extra {
            self.slots.push(Slot::new(Some(c), None));
        }
        let pids: Vec<u32> = self
            .slots
            .iter()
            .filter_map(|s| s.child.as_ref().map(Child::id))
            .collect();
        for &pid in &pids {
            crate::sys::process::kill_group(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + self.spec.grace;
        loop {
            let mut left = 0;
            for s in &mut self.slots {
                if let Some(c) = s.child.as_mut() {
                    match c.try_wait() {
                        Ok(Some(_)) | Err(_) => {
                            let pid = c.id();
                            crate::sys::process::kill_group(pid, libc::SIGKILL);
                            s.child = None;
                        }
                        Ok(None) => left += 1,
                    }
                }
            }
            if left == 0 {
                return;
            }
            if Instant::now() >= deadline {
                for s in &mut self.slots {
                    if let Some(mut c) = s.child.take() {
                        eprintln!(
                            "ringshard: app {}[{}] still running after {:?}; killing it",
                            self.spec.name,
                            c.id(),
                            self.spec.grace
                        );
                        crate::sys::process::kill_group(c.id(), libc::SIGKILL);
                        let _ = c.wait();
                    }
                }
                return;
            }
            std::thread::sleep(TICK);
        }
    }
}

/// The resident memory of process `pid` (and nothing for one that is gone).
fn resident_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Whether slot `i`'s process accepts connections at its address `alt`.
fn accepts(spec: &AppSpec, i: usize, alt: usize) -> bool {
    use crate::load::url::Endpoint;
    match spec.address(i, alt) {
        Endpoint::Unix(p) => std::os::unix::net::UnixStream::connect(p).is_ok(),
        Endpoint::Tcp(a) => std::net::TcpStream::connect_timeout(&a, TICK).is_ok(),
    }
}

/// Copies a process's output to stderr a line at a time, each prefixed.
fn relay_lines(out: Box<dyn std::io::Read + Send>, prefix: String) {
    let _ = std::thread::Builder::new()
        .name("app-output".into())
        .spawn(move || {
            let mut r = std::io::BufReader::new(out);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        eprintln!("{prefix}: {}", text.trim_end_matches(['\n', '\r']));
                    }
                }
            }
        });
}
