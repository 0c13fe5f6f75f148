//! Steering new connections away from full shards. With `SO_REUSEPORT` the kernel hashes each
//! new connection to one socket of the group whether or not its shard accepts: a shard at
//! `--max-connections` would gather connections in its backlog while the others have room.
//! While some shards are full and some are not, each TCP group carries a classic BPF program
//! (`SO_ATTACH_REUSEPORT_CBPF`) that picks among the sockets of shards with room, by the
//! connection's hash; when none or all are full it is detached and the kernel's own hash
//! applies. A shard changes the program only when it becomes full or has room again (with the
//! hysteresis of `--max-connections`), off the request path.
use std::os::fd::OwnedFd;
use std::sync::Mutex;

/// The TCP groups of a server and which shards are full.
pub struct Steering {
    inner: Mutex<Inner>,
}

struct Inner {
    /// Per group: a socket of it (where the program is attached), and which shard accepts
    /// from each socket of the group, in the group's order.
    groups: Vec<(OwnedFd, Vec<usize>)>,
    full: Vec<bool>,
    /// An upgrade's new process steers the groups (they are its too) until it fails.
    paused: bool,
}

impl Steering {
    /// Steering for `groups`, none of whose shards is full yet: a program a previous process
    /// left on a group (it was handed over) is taken away.
    pub fn new(groups: Vec<(OwnedFd, Vec<usize>)>, shards: usize) -> Steering {
        for (fd, _) in &groups {
            let _ = crate::sys::socket::detach_reuseport_program(fd);
        }
        Steering {
            inner: Mutex::new(Inner {
                groups,
                full: vec![false; shards],
                paused: false,
            }),
        }
    }

    /// An upgrade starts: the program is taken away and this process steers no more.
    pub fn pause(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.paused = true;
        for (fd, _) in &inner.groups {
            let _ = crate::sys::socket::detach_reuseport_program(fd);
        }
    }

    /// The upgrade failed: this process steers again, from its shards' state now.
    pub fn resume(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.paused = false;
        inner.apply();
    }

    /// Shard `shard` became full (`true`) or has room again.
    pub fn set_full(&self, shard: usize, full: bool) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(f) = inner.full.get_mut(shard) else {
            return;
        };
        if *f == full {
            return;
        }
        *f = full;
        if !inner.paused {
            inner.apply();
        }
    }

    /// The server stops: the sockets go (a backlog no shard accepts from must close).
    pub fn let_go(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .groups
            .clear();
    }
}

impl Inner {
    /// Attaches each group's program for the shards full now, or takes it away.
    fn apply(&self) {
        let steer = self.full.iter().any(|f| *f) && !self.full.iter().all(|f| *f);
        for (fd, owners) in &self.groups {
            let open: Vec<u32> = (0..owners.len() as u32)
                .filter(|&i| !self.full[owners[i as usize]])
                .collect();
            let result = match steer && !open.is_empty() {
                true => crate::sys::socket::attach_reuseport_program(fd, &program(&open)),
                false => crate::sys::socket::detach_reuseport_program(fd),
            };
            if let Err(e) = result {
                eprintln!("ringshard: cannot steer new connections away from full shards: {e}");
            }
        }
    }
}

/// One classic BPF instruction.
fn op(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// A program that returns, as the index of the socket to take a new connection, one of `open`
/// chosen by the connection's receive hash (a random number where the hash is 0).
pub fn program(open: &[u32]) -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_ALU, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_MOD, BPF_RET, BPF_W};
    let ancillary = |what: i32| (libc::SKF_AD_OFF + what) as u32;
    let mut p = vec![
        op(
            BPF_LD | BPF_W | BPF_ABS,
            0,
            0,
            ancillary(libc::SKF_AD_RXHASH),
        ),
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0),
        op(
            BPF_LD | BPF_W | BPF_ABS,
            0,
            0,
            ancillary(libc::SKF_AD_RANDOM),
        ),
        op(BPF_ALU | BPF_MOD | BPF_K, 0, 0, open.len() as u32),
    ];
    for (j, &index) in open.iter().enumerate() {
        p.push(op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, j as u32));
        p.push(op(BPF_RET | BPF_K, 0, 0, index));
    }
    p.push(op(BPF_RET | BPF_K, 0, 0, u32::MAX)); // unreachable; past the group: the hash
    p
}

#[cfg(test)]
mod tests {
    /// Runs the program's few instruction kinds for a hash, as the kernel would.
    fn run(p: &[libc::sock_filter], hash: u32, random: u32) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = p[pc];
            match i.code as u32 {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    a = if i.k == (libc::SKF_AD_OFF + libc::SKF_AD_RXHASH) as u32 {
                        hash
                    } else {
                        random
                    }
                }
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                    pc += usize::from(if a == i.k { i.jt } else { i.jf });
                }
                c if c == libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K => a %= i.k,
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                c => panic!("unexpected instruction {c:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn picks_only_the_open_sockets_spread_by_hash() {
        let p = super::program(&[1, 3]);
        let picked: Vec<u32> = (1..=8).map(|h| run(&p, h, 0)).collect();
        assert_eq!(picked, [3, 1, 3, 1, 3, 1, 3, 1]);
        assert_eq!(run(&p, 0, 4), 1); // no hash: the random number decides
        assert_eq!(run(&p, 0, 5), 3);
        let one = super::program(&[2]);
        assert!((0..50).all(|h| run(&one, h, h) == 2));
    }
}
