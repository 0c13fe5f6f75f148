//! Starting shards, waiting for signals, and shutting down.
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{EngineFlag, Listen, ServeArgs, ServeConfig};
use crate::handler::{Handler, Router};
use crate::metrics::Board;
use crate::stats::ShardStats;
use crate::sys::socket::ListenFd;
use crate::sys::{cpus, signals, socket};
use crate::wake::Wakeup;

/// A running server: its shards and how to stop them.
pub struct Running {
    /// The first TCP address listened on, if any.
    addr: Option<SocketAddr>,
    /// Every listener, as started.
    listening: Vec<Listen>,
    /// Every listener's sockets. They belong to the process, not to the shards (which accept
    /// from copies), so that a shard that dies leaves its backlog to its replacement; let go
    /// when the shards stop accepting.
    sockets: std::sync::Mutex<Vec<Group>>,
    /// The sockets went to a new process (an upgrade): the unix socket files stay.
    handed_over: std::sync::atomic::AtomicBool,
    steering: Option<Arc<crate::steer::Steering>>,
    wakeups: Vec<Wakeup>,
    done: mpsc::Receiver<(usize, Ended)>,
    threads: Vec<Option<std::thread::JoinHandle<()>>>,
    log: Option<Arc<crate::access_log::LogFile>>,
    board: Option<Arc<Board>>,
    start_shard: Arc<StartShard>,
    /// When shards died lately (see [`Running::replace_dead`]).
    deaths: std::collections::VecDeque<Instant>,
}

/// Starts shard `id` on its own thread, accepting from the given sockets.
type StartShard = dyn Fn(
        usize,
        Vec<ListenFd>,
        Wakeup,
        mpsc::Sender<Result<String, String>>,
    ) -> Result<std::thread::JoinHandle<()>, String>
    + Send
    + Sync;

/// How a shard's thread ended.
enum Ended {
    Stopped(Box<ShardStats>),
    /// Its loop panicked (the message and backtrace) or its ring stopped answering.
    Died(String),
}

/// This many shard deaths within [`DEATH_WINDOW`] end the process (non-zero exit), so that a
/// supervisor restarts it rather than a fault repeating forever.
const MAX_DEATHS: usize = 3;
const DEATH_WINDOW: Duration = Duration::from_secs(60);

/// A listener's sockets: one per shard (a TCP address: a `SO_REUSEPORT` group; `--listen-fd`
/// given once per shard), or one that every shard accepts from (a unix socket, one systemd
/// passed). After an upgrade that runs fewer shards, a shard may accept from several sockets of
/// one group; with more, the extra shards' sockets are new members of the group.
struct Group {
    /// Names the listener across an upgrade (`tcp:ADDR` as configured, `unix:PATH`); `None` for
    /// descriptors passed by number, which keep their number.
    key: Option<String>,
    fds: Vec<OwnedFd>,
    shared: bool,
}

impl Group {
    /// Copies of the sockets shard `i` of `n` accepts from.
    fn copies_for(&self, i: usize, n: usize) -> Result<Vec<ListenFd>, String> {
        let copy = |fd: &OwnedFd, shared| {
            Ok(ListenFd {
                fd: fd
                    .try_clone()
                    .map_err(|e| format!("cannot copy a listening socket: {e}"))?,
                shared,
            })
        };
        if self.shared {
            return Ok(vec![copy(&self.fds[0], n > 1)?]);
        }
        self.fds
            .iter()
            .skip(i)
            .step_by(n)
            .map(|fd| copy(fd, false))
            .collect()
    }
}

/// Copies of every listening socket shard `i` of `n` accepts from.
fn copies(groups: &[Group], i: usize, n: usize) -> Result<Vec<ListenFd>, String> {
    let mut out = Vec::new();
    for g in groups {
        out.extend(g.copies_for(i, n)?);
    }
    Ok(out)
}

/// What steers new connections away from full shards: each TCP address's group, with the shard
/// that accepts from each of its sockets (in the order they joined the group).
fn steering_for(groups: &[Group], shards: usize) -> crate::steer::Steering {
    let tcp = groups
        .iter()
        .filter(|g| !g.shared && g.key.as_deref().is_some_and(|k| k.starts_with("tcp:")))
        .filter_map(|g| {
            let owners = (0..g.fds.len()).map(|j| j % shards).collect();
            Some((g.fds[0].try_clone().ok()?, owners))
        })
        .collect();
    crate::steer::Steering::new(tcp, shards)
}

/// Every listener's sockets, and what each listener is (with its real port): a TCP address is
/// a socket per shard with `SO_REUSEPORT` (all on the same port, even when asked for port 0); a
/// unix socket and a socket systemd passed are one socket every shard accepts from;
/// `--listen-fd` descriptors are one per shard, or one shared. In a process an upgrade
/// started, a listener whose sockets were handed over uses them rather than new ones, and a
/// handed-over listener no longer configured is still served.
fn listeners(cfg: &ServeConfig, shards: usize) -> Result<(Vec<Group>, Vec<Listen>), String> {
    let mut groups = Vec::new();
    let mut what = Vec::new();
    if !cfg.inherited.is_empty() {
        let fds = cfg
            .inherited
            .iter()
            .map(|&fd| socket::from_inherited(fd).map_err(|e| format!("--listen-fd {fd}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let addr = socket::local_addr(&fds[0]).ok();
        what.push(addr.map_or(
            Listen::Fd(fds[0].as_raw_fd(), "--listen-fd".into()),
            Listen::Tcp,
        ));
        groups.push(Group {
            key: None,
            shared: fds.len() == 1,
            fds,
        });
    }
    let bind = |addr| bind_tcp(addr, cfg.backlog);
    for l in &cfg.listen {
        match l {
            Listen::Tcp(addr) => {
                let key = format!("tcp:{addr}");
                let mut fds = crate::upgrade::take(&key)?;
                if fds.is_empty() {
                    fds.push(bind(*addr)?);
                }
                let addr = socket::local_addr(&fds[0]).map_err(|e| e.to_string())?;
                while fds.len() < shards {
                    fds.push(bind(addr)?);
                }
                what.push(Listen::Tcp(addr));
                groups.push(Group {
                    key: Some(key),
                    fds,
                    shared: false,
                });
            }
            Listen::Unix(path) => {
                let key = format!("unix:{}", path.display());
                let mut fds = crate::upgrade::take(&key)?;
                if fds.is_empty() {
                    let fd = socket::bind_unix(path, cfg.unix_mode, cfg.backlog).map_err(|e| {
                        let why = match e.raw_os_error() {
                            Some(libc::EADDRINUSE) => "another program listens there".to_string(),
                            _ => e.to_string(),
                        };
                        format!("cannot listen on unix:{}: {why}", path.display())
                    })?;
                    fds.push(fd);
                }
                groups.push(Group {
                    key: Some(key),
                    fds,
                    shared: true,
                });
                what.push(l.clone());
            }
            Listen::Fd(fd, name) => {
                let owned = socket::from_inherited(*fd)
                    .map_err(|e| format!("LISTEN_FDS: descriptor {fd} ({name}): {e}"))?;
                what.push(socket::local_addr(&owned).map_or(l.clone(), Listen::Tcp));
                groups.push(Group {
                    key: None,
                    fds: vec![owned],
                    shared: true,
                });
            }
        }
    }
    for (key, fds) in crate::upgrade::take_rest()? {
        eprintln!(
            "ringshard: {key}: handed over by the previous process and no longer configured; \
             still served (a restart closes it)"
        );
        let unix = key.strip_prefix("unix:").map(std::path::PathBuf::from);
        what.push(match (unix, socket::local_addr(&fds[0])) {
            (Some(path), _) => Listen::Unix(path),
            (None, Ok(addr)) => Listen::Tcp(addr),
            (None, Err(_)) => Listen::Fd(fds[0].as_raw_fd(), key.clone()),
        });
        groups.push(Group {
            shared: key.starts_with("unix:"),
            key: Some(key),
            fds,
        });
    }
    Ok((groups, what))
}

impl Running {
    /// Starts `cfg.shards` shards, each with its own handler from `factory`; returns once every
    /// shard has its ring set up and is accepting, or with the first shard's error.
    pub fn start<F, H>(cfg: ServeConfig, factory: F) -> Result<Running, String>
    where
        F: Fn() -> H + Send + Sync + 'static,
        H: Handler,
    {
        Running::start_publishing(cfg, None, factory)
    }

    /// As [`Running::start`], each shard publishing its counters to `board` (which `/metrics`
    /// renders).
    pub fn start_publishing<F, H>(
        cfg: ServeConfig,
        board: Option<Arc<Board>>,
        factory: F,
    ) -> Result<Running, String>
    where
        F: Fn() -> H + Send + Sync + 'static,
        H: Handler,
    {
        let engine = choose_engine(cfg.engine)?;
        let log = open_log(&cfg)?;
        crate::panics::keep_backtraces();
        let shards = if cfg.inherited.len() > 1 {
            cfg.inherited.len()
        } else {
            cfg.shards
        };
        let (fds, listening) = listeners(&cfg, shards)?;
        let steering = (shards > 1).then(|| Arc::new(steering_for(&fds, shards)));
        let outputs_board = board.clone();
        let outputs = crate::shard_state::Outputs {
            board,
            log: log.clone(),
            steering: steering.clone(),
        };
        let addr = listening.iter().find_map(|l| match l {
            Listen::Tcp(a) => Some(*a),
            _ => None,
        });
        let cpus = cpus::allowed();
        warn_if_crowded(&cfg, &cpus);
        let factory = Arc::new(factory);
        let n = shards;
        let (done_tx, done) = mpsc::channel();
        let start_shard: Arc<StartShard> = Arc::new(
            move |id: usize,
                  fd: Vec<ListenFd>,
                  wakeup: Wakeup,
                  ready: mpsc::Sender<Result<String, String>>| {
                let cpu = (cfg.pin && !cpus.is_empty()).then(|| cpus[id % cpus.len()]);
                let (cfg, factory, done, outputs) = (
                    cfg.clone(),
                    factory.clone(),
                    done_tx.clone(),
                    outputs.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("ringshard-{id}"))
                    .spawn(move || {
                        let shard = ShardStart {
                            id,
                            cpu,
                            engine,
                            wakeup,
                            outputs,
                        };
                        crate::io::set_this_shard(id, n);
                        let ended = shard.run(fd, &cfg, &*factory, &ready);
                        let _ = done.send((id, ended));
                    })
                    .map_err(|e| format!("cannot start shard thread: {e}"))
            },
        );
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let mut wakeups = Vec::new();
        let mut threads = Vec::new();
        for id in 0..n {
            let wakeup = Wakeup::new().map_err(|e| format!("eventfd: {e}"))?;
            wakeups.push(wakeup.clone());
            threads.push(Some(start_shard(
                id,
                copies(&fds, id, n)?,
                wakeup,
                ready_tx.clone(),
            )?));
        }
        let running = Running {
            addr,
            listening,
            sockets: std::sync::Mutex::new(fds),
            handed_over: Default::default(),
            steering,
            wakeups,
            done,
            threads,
            log,
            board: outputs_board,
            start_shard,
            deaths: std::collections::VecDeque::new(),
        };
        for _ in 0..n {
            match ready_rx.recv() {
                Ok(Ok(line)) => eprintln!("ringshard: {line}"),
                Ok(Err(e)) => {
                    running.shutdown();
                    return Err(e);
                }
                Err(_) => return Err("a shard thread died during start-up".into()),
            }
        }
        Ok(running)
    }

    /// Shards that ended while the server runs (a panic in a shard's loop, a ring that stopped
    /// answering): each is logged, counted in `/metrics` and replaced on its CPU by a new shard
    /// with a new ring, accepting from the same listening sockets. `Err` when
    /// [`MAX_DEATHS`] died within [`DEATH_WINDOW`]: the process should end.
    fn replace_dead(&mut self) -> Result<(), String> {
        while let Ok((id, ended)) = self.done.try_recv() {
            let why = match ended {
                Ended::Died(why) => why,
                Ended::Stopped(_) => "its loop ended".to_string(),
            };
            eprintln!("ringshard: shard {id} died: {why}");
            if let Some(board) = &self.board {
                board.count_shard_restart();
            }
            let now = Instant::now();
            self.deaths
                .retain(|t| now.duration_since(*t) < DEATH_WINDOW);
            self.deaths.push_back(now);
            if self.deaths.len() >= MAX_DEATHS {
                return Err(format!(
                    "{} shards died within {} s; exiting so that a supervisor restarts the server",
                    self.deaths.len(),
                    DEATH_WINDOW.as_secs()
                ));
            }
            if let Some(t) = self.threads[id].take() {
                let _ = t.join();
            }
            let n = self.wakeups.len();
            let sockets = copies(
                &self.sockets.lock().unwrap_or_else(|e| e.into_inner()),
                id,
                n,
            )?;
            let wakeup = Wakeup::new().map_err(|e| format!("eventfd: {e}"))?;
            let (ready_tx, ready_rx) = mpsc::channel();
            let thread = (self.start_shard)(id, sockets, wakeup.clone(), ready_tx)?;
            match ready_rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Ok(line)) => eprintln!("ringshard: replaced: {line}"),
                Ok(Err(e)) => return Err(format!("cannot replace shard {id}: {e}")),
                Err(_) => return Err(format!("cannot replace shard {id}: it did not start")),
            }
            self.wakeups[id] = wakeup;
            self.threads[id] = Some(thread);
        }
        Ok(())
    }

    /// Debug builds only: `RINGSHARD_DEBUG_PANIC_FILE` names a file; when it appears, the shard
    /// whose number it holds is made to panic in its loop, and the file is removed.
    #[cfg(debug_assertions)]
    fn debug_panic_hook(&self) {
        let Some(path) = std::env::var_os("RINGSHARD_DEBUG_PANIC_FILE") else {
            return;
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        let _ = std::fs::remove_file(&path);
        if let Some(w) = text
            .trim()
            .parse::<usize>()
            .ok()
            .and_then(|i| self.wakeups.get(i))
        {
            w.request_panic();
        }
    }

    /// The first TCP address the shards listen on (the real port when port 0 was asked for);
    /// `0.0.0.0:0` when every listener is a unix socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Every listener, as started (real ports).
    pub fn listening(&self) -> &[Listen] {
        &self.listening
    }

    /// Opens the access log's path again (SIGUSR1, after logrotate moved the file away).
    pub fn reopen_log(&self) {
        let Some(log) = &self.log else { return };
        match log.reopen() {
            Ok(()) => eprintln!("ringshard: SIGUSR1: reopened {}", log.path().display()),
            Err(e) => eprintln!(
                "ringshard: SIGUSR1: cannot reopen {}: {e}; still writing to the old file",
                log.path().display()
            ),
        }
    }

    /// Asks every shard to drain and stop.
    /// Wakes every shard for one loop turn (see [`Running::poke`]'s use by the watchdog).
    pub fn poke(&self) {
        for w in &self.wakeups {
            w.poke();
        }
    }

    pub fn shutdown(&self) {
        for w in &self.wakeups {
            w.request_shutdown();
        }
        self.let_go_of_sockets();
    }

    /// Starts an upgrade: `binary` with `args`, handed every listening socket.
    fn start_upgrade(
        &self,
        binary: &std::path::PathBuf,
        args: &[std::ffi::OsString],
    ) -> Result<crate::upgrade::Upgrade, String> {
        let groups = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        let raw = |g: &Group| g.fds.iter().map(|f| f.as_raw_fd()).collect::<Vec<_>>();
        let keyed: Vec<(String, Vec<i32>)> = groups
            .iter()
            .filter_map(|g| Some((g.key.clone()?, raw(g))))
            .collect();
        let all: Vec<i32> = groups.iter().flat_map(raw).collect();
        crate::upgrade::Upgrade::start(binary, args, &keyed, &all)
    }

    /// The new process serves: the drain that follows is gentle (its listeners keep the
    /// backlogs) and leaves the unix socket files to it.
    fn hand_over(&self) {
        self.handed_over
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for w in &self.wakeups {
            w.drain_gently();
        }
    }

    /// The listening sockets close once the shards' copies do (a backlog no shard accepts
    /// from would hold connections until the process exits, instead of refusing them).
    fn let_go_of_sockets(&self) {
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if let Some(s) = &self.steering {
            s.let_go();
        }
    }

    /// Waits for every shard to stop, up to `timeout`; returns each shard's counters, or how
    /// many shards were still running.
    pub fn wait(self, timeout: Option<Duration>) -> Result<Vec<ShardStats>, usize> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut each = vec![ShardStats::default(); self.threads.len()];
        let mut left = self.threads.len();
        while left > 0 {
            let got = match deadline {
                Some(d) => self
                    .done
                    .recv_timeout(d.saturating_duration_since(Instant::now()))
                    .ok(),
                None => self.done.recv().ok(),
            };
            match got {
                Some((id, ended)) => {
                    if let Ended::Stopped(s) = ended {
                        each[id] = *s;
                    }
                    left -= 1;
                }
                None => {
                    self.remove_unix_sockets(); // the process exits without them
                    return Err(left);
                }
            }
        }
        self.remove_unix_sockets();
        for t in self.threads.into_iter().flatten() {
            let _ = t.join();
        }
        Ok(each)
    }

    /// Removes the unix socket files this server created (once its shards are gone), unless
    /// an upgrade's new process serves them.
    fn remove_unix_sockets(&self) {
        if self.handed_over.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        for l in &self.listening {
            if let Listen::Unix(path) = l {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// A TCP listener of a `SO_REUSEPORT` group; the error says why in a user's words.
fn bind_tcp(addr: SocketAddr, backlog: i32) -> Result<OwnedFd, String> {
    socket::bind_reuseport(addr, backlog).map_err(|e| match e.raw_os_error() {
        Some(libc::EADDRINUSE) => {
            format!("cannot listen on {addr}: the address is in use by another program")
        }
        Some(libc::EACCES) => {
            format!("cannot listen on {addr}: permission denied (ports below 1024 need privileges)")
        }
        Some(libc::EADDRNOTAVAIL) => format!("cannot listen on {addr}: no such local address"),
        _ => format!("cannot listen on {addr}: {e}"),
    })
}

/// The access log's file, opened (and created) now, where an error is one line at start-up.
fn open_log(cfg: &ServeConfig) -> Result<Option<Arc<crate::access_log::LogFile>>, String> {
    let Some(path) = &cfg.access_log else {
        return Ok(None);
    };
    let file = crate::access_log::LogFile::open(path).map_err(|e| {
        format!(
            "--access-log {}: cannot open it for appending: {e}",
            path.display()
        )
    })?;
    Ok(Some(file))
}

/// More pinned shards than CPUs is allowed for experiments, but it is no longer one shard per
/// core: say so.
fn warn_if_crowded(cfg: &ServeConfig, cpus: &[usize]) {
    if cfg.pin && cfg.shards > cpus.len() && !cpus.is_empty() {
        eprintln!(
            "ringshard: warning: {} shards on {} CPUs: shards share CPUs, several pinned to each",
            cfg.shards,
            cpus.len()
        );
    }
}

/// What a shard's thread starts from.
struct ShardStart {
    id: usize,
    cpu: Option<usize>,
    engine: EngineFlag,
    wakeup: Wakeup,
    outputs: crate::shard_state::Outputs,
}

impl ShardStart {
    /// On the shard's own thread: pins it, builds the engine's shard (rings are single-issuer,
    /// and the handler never leaves the core it was made on), says so on `ready`, and runs it.
    fn run<H: Handler>(
        self,
        fd: Vec<ListenFd>,
        cfg: &ServeConfig,
        factory: &(dyn Fn() -> H + Send + Sync),
        ready: &mpsc::Sender<Result<String, String>>,
    ) -> Ended {
        let ShardStart {
            id,
            cpu,
            engine,
            wakeup,
            outputs,
        } = self;
        let pinned = cpu.map(cpus::pin);
        let place = match (cpu, pinned) {
            (Some(c), Some(true)) => format!("on cpu {c}"),
            (Some(c), _) => format!("not pinned (cpu {c} refused)"),
            _ => "not pinned".to_string(),
        };
        // The shard lives in a box that a panic or a dead ring leaks rather than drops: the
        // kernel may still write into its buffers.
        macro_rules! run_shard {
            ($shard:ty) => {
                match <$shard>::new(id, fd, cfg, factory(), wakeup, outputs) {
                    Ok(shard) => {
                        let _ = ready.send(Ok(format!("shard {id} {place}: {}", shard.describe())));
                        let mut shard = Box::new(shard);
                        let ran =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.run()));
                        match ran {
                            Ok(stats) if !shard.abandoned() => Ended::Stopped(Box::new(stats)),
                            Ok(_) => {
                                std::mem::forget(shard);
                                Ended::Died("its ring stopped answering".into())
                            }
                            Err(payload) => {
                                let why = crate::panics::describe(&*payload);
                                let _ =
                                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                        shard.stop_after_panic()
                                    }));
                                std::mem::forget(shard);
                                Ended::Died(why)
                            }
                        }
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        Ended::Stopped(Box::default())
                    }
                }
            };
        }
        match engine {
            EngineFlag::Epoll => run_shard!(crate::epoll::shard::Shard<H>),
            _ => run_shard!(crate::uring::shard::Shard<H>),
        }
    }
}

/// Resolves `--engine auto`: io_uring if a ring can be set up here, else epoll, saying why.
fn choose_engine(flag: EngineFlag) -> Result<EngineFlag, String> {
    if flag == EngineFlag::Epoll {
        return Ok(flag);
    }
    // On a thread of its own: a ring's teardown is asynchronous and would interrupt the
    // caller's next blocking call with EINTR (which matters to programs that embed ringshard).
    let probe = std::thread::spawn(crate::uring::ring::usable).join();
    match probe.unwrap_or_else(|_| {
        Err(crate::uring::ring::explain(&std::io::Error::other(
            "probe thread panicked",
        )))
    }) {
        Ok(()) => Ok(EngineFlag::Uring),
        Err(why) if flag == EngineFlag::Auto => {
            eprintln!("ringshard: {why}; using the epoll engine");
            Ok(EngineFlag::Epoll)
        }
        Err(why) => Err(why.to_string()),
    }
}

/// `ringshard serve`: the site of a configuration file (`--config`) or of `--static DIR`, else
/// the built-in routes. `argv` is the command line after `serve`, read again over the file's
/// settings.
pub fn run_cli(
    args: ServeArgs,
    argv: Vec<std::ffi::OsString>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    // Before any thread starts (the apps' supervisors): a signal must never reach a thread
    // that would take its default action.
    signals::block_shutdown_signals()?;
    crate::upgrade::take_env()?;
    let (cfg, site) = crate::config_file::resolve(args, &argv)?;
    let builtin = cfg.builtin;
    let shards = if cfg.inherited.len() > 1 {
        cfg.inherited.len()
    } else {
        cfg.shards
    };
    let board = Board::new(shards);
    // The app pools start first: their processes take the time they need, and the proxy
    // routes meanwhile send a request only to one that accepts it.
    let mut pools = Vec::new();
    for app in site.iter().flat_map(|s| s.apps.iter()) {
        pools.push(crate::app::Supervisor::start(app.clone())?);
    }
    let app_start: Duration = site
        .iter()
        .flat_map(|s| s.apps.iter())
        .map(|a| a.ready_timeout)
        .sum();
    crate::upgrade::allow_for_apps(app_start);
    if crate::upgrade::is_upgrade() {
        // The old process serves meanwhile: this one says it is ready only with its apps.
        for pool in &pools {
            pool.wait_ready()?;
        }
    }
    let served = match site {
        Some(site) => {
            // Checked here, where an error is one line, before any shard starts.
            crate::routes::Site::new(&site.routes, None, None)
                .map_err(|e| format!("cannot serve the configured routes: {e}"))?;
            serve_publishing(cfg, Some(board.clone()), move || {
                let metrics = site.metrics.as_ref().map(|e| (e, board.clone()));
                crate::routes::Site::new(&site.routes, site.health.as_ref(), metrics)
                    .expect("routes checked at start-up")
            })
        }
        None => serve_publishing(cfg, Some(board.clone()), move || {
            let router = crate::routes::metrics(Router::new(), board.clone());
            if builtin {
                crate::routes::builtin(router)
            } else {
                router
            }
        }),
    };
    // Requests are finished: now the apps stop (SIGTERM, then SIGKILL after their grace).
    for pool in pools {
        pool.stop();
    }
    served
}

/// `ringshard check-config FILE`: the effective configuration, or every error in the file.
pub fn check_config(file: std::path::PathBuf) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let argv: Vec<std::ffi::OsString> = vec!["--config".into(), file.into_os_string()];
    let args = crate::config::ServeCommand::parse(argv.clone())?;
    let (cfg, site) = crate::config_file::resolve(args, &argv)?;
    print!("{}", crate::config_file::describe(&cfg, &site));
    Ok(ExitCode::SUCCESS)
}

/// Serves until SIGINT or SIGTERM, then drains: exit 0 when every request in flight finished
/// within the shutdown timeout, 1 when some were cut off; a second signal exits at once (130).
pub fn serve<F, H>(cfg: ServeConfig, factory: F) -> Result<ExitCode, Box<dyn std::error::Error>>
where
    F: Fn() -> H + Send + Sync + 'static,
    H: Handler,
{
    serve_publishing(cfg, None, factory)
}

/// [`serve`], each shard publishing its counters to `board`.
fn serve_publishing<F, H>(
    cfg: ServeConfig,
    board: Option<Arc<Board>>,
    factory: F,
) -> Result<ExitCode, Box<dyn std::error::Error>>
where
    F: Fn() -> H + Send + Sync + 'static,
    H: Handler,
{
    signals::block_shutdown_signals()?;
    // Every connection is a descriptor (or a registered file slot, sized from this limit).
    crate::sys::limits::raise_open_files();
    let mut cfg = cfg;
    if cfg.max_connections == 0 {
        // The open-files limit shared between the shards, less a reserve for the files and
        // upstream connections routes open: past it an accept would fail with EMFILE.
        let shards = cfg.inherited.len().max(cfg.shards).max(1) as u64;
        let per_shard = crate::sys::limits::open_files().saturating_sub(1024) / shards;
        cfg.max_connections = per_shard.max(64) as usize;
    }
    let shutdown_timeout = cfg.shutdown_timeout;
    let print_stats = cfg.stats;
    let pid_file = cfg.pid_file.clone();
    // Read now: an upgrade starts the file found at this path then, even once replaced.
    let binary = match cfg.binary.clone() {
        Some(b) => b,
        None => std::env::current_exe()
            .map_err(|e| format!("cannot tell which binary runs (for upgrades): {e}"))?,
    };
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let mut running = Running::start_publishing(cfg, board.clone(), factory)?;
    let notifier = crate::sys::notify::Notifier::from_env();
    let mut watchdog = Watchdog::new(board.clone());
    // Written once every shard listens, so a pid in the file means a server that answers.
    let pid_file = match pid_file {
        Some(path) => Some(PidFile::write(path)?),
        None => None,
    };
    for (i, l) in running.listening().iter().enumerate() {
        match i {
            0 => eprintln!(
                "ringshard: listening on {l} ({} shards)",
                running.threads.len()
            ),
            _ => eprintln!("ringshard: also listening on {l}"),
        }
    }
    if let Some(n) = &notifier {
        let first = running
            .listening()
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        n.send(&format!(
            "READY=1\nMAINPID={}\nSTATUS=listening on {first}, {} shards",
            std::process::id(),
            running.threads.len()
        ));
    }
    // After READY=1 and MAINPID=: the old process exits once it hears this.
    crate::upgrade::say_ready();
    let tick = watchdog.interval.map_or(Duration::from_millis(500), |w| {
        (w / 2).min(Duration::from_millis(500))
    });
    let mut upgrade: Option<crate::upgrade::Upgrade> = None;
    let sig = loop {
        if let Some(n) = &notifier {
            for msg in watchdog.turn(&running) {
                n.send(&msg);
            }
        }
        let wait = match upgrade {
            Some(_) => tick.min(Duration::from_millis(50)),
            None => tick,
        };
        match signals::wait(wait) {
            Some(libc::SIGUSR1) => {
                running.reopen_log();
                continue;
            }
            Some(libc::SIGUSR2) if upgrade.is_some() => {
                eprintln!("ringshard: SIGUSR2: an upgrade is already under way");
                continue;
            }
            Some(libc::SIGUSR2) => {
                match running.start_upgrade(&binary, &args) {
                    Ok(u) => {
                        // The new process steers the shared groups from now on.
                        if let Some(s) = &running.steering {
                            s.pause();
                        }
                        eprintln!(
                            "ringshard: SIGUSR2: upgrading: started {} (pid {}); serving until it is ready",
                            binary.display(),
                            u.pid()
                        );
                        if let Some(n) = &notifier {
                            n.send("RELOADING=1\nSTATUS=upgrading");
                        }
                        upgrade = Some(u);
                    }
                    Err(e) => {
                        eprintln!("ringshard: SIGUSR2: cannot upgrade: {e}; still serving");
                        if let Some(p) = &pid_file {
                            let _ = p.rewrite(); // a new mtime: `ringshard upgrade` sees it failed
                        }
                    }
                }
                continue;
            }
            Some(sig) => break sig,
            None => {}
        }
        if let Some(u) = &mut upgrade {
            match u.poll() {
                crate::upgrade::Progress::Waiting => {}
                crate::upgrade::Progress::Ready(pid) => {
                    eprintln!(
                        "ringshard: upgrade: pid {pid} serves; pid {} finishes requests in flight and exits",
                        std::process::id()
                    );
                    break libc::SIGUSR2;
                }
                crate::upgrade::Progress::Failed(why) => {
                    eprintln!("ringshard: upgrade failed: {why}; still serving");
                    if let Some(s) = &running.steering {
                        s.resume();
                    }
                    if let Some(n) = &notifier {
                        n.send(&format!("READY=1\nMAINPID={}", std::process::id()));
                    }
                    if let Some(p) = &pid_file {
                        let _ = p.rewrite(); // a new mtime: `ringshard upgrade` sees it failed
                    }
                    upgrade = None;
                }
            }
        }
        #[cfg(debug_assertions)]
        running.debug_panic_hook();
        if let Err(why) = running.replace_dead() {
            if let Some(mut u) = upgrade.take() {
                u.abandon(); // not left serving beside a process that exits
            }
            crate::lifecycle::DRAINING.store(true, std::sync::atomic::Ordering::Relaxed);
            running.shutdown();
            let _ = running.wait(Some(Duration::from_secs(1)));
            return Err(why.into());
        }
    };
    if let (Some(u), true) = (&mut upgrade, sig != libc::SIGUSR2) {
        // Stopping while a new process starts: it goes too, unless it is ready already (then
        // it serves, and this one hands over as it would have).
        match u.poll() {
            crate::upgrade::Progress::Ready(_) => {
                running.hand_over();
                crate::lifecycle::DRAINING.store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok(drain(running, shutdown_timeout, print_stats, true));
            }
            _ => u.abandon(),
        }
    }
    crate::lifecycle::DRAINING.store(true, std::sync::atomic::Ordering::Relaxed);
    if sig == libc::SIGUSR2 {
        // The new process says READY=1 and MAINPID= itself; STOPPING=1 from here would tell
        // systemd the service stops.
        running.hand_over();
        return Ok(drain(running, shutdown_timeout, print_stats, false));
    }
    let name = if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    eprintln!("ringshard: {name}: shutting down, finishing requests in flight (a second signal exits now)");
    if let Some(n) = &notifier {
        n.send("STOPPING=1\nSTATUS=draining");
    }
    Ok(drain(running, shutdown_timeout, print_stats, true))
}

/// `--pid-file`: the pid, written whole (a new file renamed over the old, so a reader never
/// sees half of it), and removed when the server exits if it still names this process.
struct PidFile(std::path::PathBuf);

impl PidFile {
    fn write(path: std::path::PathBuf) -> Result<PidFile, String> {
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("--pid-file {}: {e}", path.display()))?;
        Ok(PidFile(path))
    }
}

impl PidFile {
    /// Writes the file again (the same pid, a new modification time).
    fn rewrite(&self) -> Result<(), String> {
        PidFile::write(self.0.clone()).map(std::mem::forget)
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let mine = std::fs::read_to_string(&self.0)
            .is_ok_and(|s| s.trim() == std::process::id().to_string());
        if mine {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// systemd's watchdog (`WATCHDOG_USEC`) and status line: each turn of the main thread wakes
/// every shard and pings only if every shard's loop has turned since the last look (its
/// `enter_calls_total` moved), so a stuck shard stops the pings and systemd restarts the
/// process; about once a second, `STATUS=` with connections open and requests/s.
struct Watchdog {
    board: Option<Arc<Board>>,
    interval: Option<Duration>,
    last_turns: Vec<u64>,
    last_status: Instant,
    last_requests: u64,
}

impl Watchdog {
    fn new(board: Option<Arc<Board>>) -> Watchdog {
        Watchdog {
            board,
            interval: crate::sys::notify::watchdog_interval(),
            last_turns: Vec::new(),
            last_status: Instant::now(),
            last_requests: 0,
        }
    }

    /// The messages due now.
    fn turn(&mut self, running: &Running) -> Vec<String> {
        let mut out = Vec::new();
        let Some(board) = &self.board else {
            return out;
        };
        let names: Vec<&str> = ShardStats::default().fields().iter().map(|f| f.0).collect();
        let at = |name: &str| names.iter().position(|n| *n == name);
        let (Some(turns_i), Some(open_i), Some(req_i)) = (
            at("enter_calls_total"),
            at("connections_open"),
            at("requests_total"),
        ) else {
            return out;
        };
        let shards: Vec<Vec<u64>> = (0..running.threads.len()).map(|i| board.read(i)).collect();
        if self.interval.is_some() {
            let turns: Vec<u64> = shards.iter().map(|c| c[turns_i]).collect();
            if self.last_turns.len() == turns.len()
                && turns
                    .iter()
                    .zip(&self.last_turns)
                    .all(|(now, before)| now > before)
            {
                out.push("WATCHDOG=1".to_string());
            }
            self.last_turns = turns;
            running.poke();
        }
        let elapsed = self.last_status.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let requests: u64 = shards.iter().map(|c| c[req_i]).sum();
            let open: u64 = shards.iter().map(|c| c[open_i]).sum();
            let rate = (requests - self.last_requests.min(requests)) as f64 / elapsed.as_secs_f64();
            out.push(format!("STATUS={open} connections, {rate:.0} requests/s"));
            self.last_status = Instant::now();
            self.last_requests = requests;
        }
        out
    }
}

/// Stops the shards and waits for them to finish what is in flight: exit 0 when they did within
/// the shutdown timeout, 1 when some were cut off; a second SIGINT or SIGTERM exits at once
/// (130; `signalled`: whether a signal began the drain, else a first one is only noted),
/// SIGUSR1 still reopens the access log, SIGUSR2 is ignored (no upgrade while draining).
fn drain(
    running: Running,
    shutdown_timeout: Duration,
    print_stats: bool,
    mut signalled: bool,
) -> ExitCode {
    running.shutdown();
    let log = running.log.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(running.wait(Some(shutdown_timeout)));
    });
    let started = Instant::now();
    loop {
        if let Ok(result) = rx.try_recv() {
            return match result {
                Ok(each) => {
                    if print_stats {
                        eprint!("{}", crate::metrics::table(&each));
                    }
                    eprintln!("ringshard: stopped cleanly");
                    ExitCode::SUCCESS
                }
                Err(left) => {
                    eprintln!("ringshard: shutdown timeout reached with {left} shard(s) still serving; exiting");
                    ExitCode::from(1)
                }
            };
        }
        let sig = signals::wait(Duration::from_millis(20));
        if sig == Some(libc::SIGUSR1) {
            if let Some(log) = &log {
                let _ = log.reopen();
            }
        } else if sig == Some(libc::SIGUSR2) {
            eprintln!(
                "ringshard: SIGUSR2 ignored: this process is draining (pid {})",
                std::process::id()
            );
        } else if sig.is_some() && !signalled {
            // A drain that no signal began (an upgrade's old process): this one is the first.
            eprintln!(
                "ringshard: already draining (pid {}); a second signal exits now",
                std::process::id()
            );
            signalled = true;
        } else if sig.is_some() {
            eprintln!("ringshard: second signal: exiting now");
            std::process::exit(130);
        }
        if started.elapsed() > shutdown_timeout + Duration::from_secs(5) {
            return ExitCode::from(1);
        }
    }
}
