//! Kernel mode: the runtime maps a pinned BPF thread table
//! (`CARGO_PANIC_KTHREADS`, the layout of `bpf/src/bpf/panic_kabi.h`), publishes
//! each thread's tid and innermost region there, and keeps self times.
//!
//! These tests create real BPF maps and pin them on bpffs, so they need root
//! (and bpffs, which they mount at /sys/fs/bpf when it is not there). Without
//! either they fail saying what is missing: they never skip.

mod common;

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use common::{Harness, check_hist, describe, run, sites, wait_limited};
use panic_runtime::{ClockKind, Snapshot, State};

// ---- bpf(2), raw: libc has no `union bpf_attr` ----

// Commands, map type and flag of linux/bpf.h.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_F_MMAPABLE: u32 = 1 << 10;
/// `statfs.f_type` of bpffs (linux/magic.h).
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;
const BPFFS: &str = "/sys/fs/bpf";

/// The leading fields of `union bpf_attr` for BPF_MAP_CREATE. The kernel reads
/// the fields past the size we pass as zero.
#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

/// `union bpf_attr` for BPF_OBJ_PIN: path, fd, flags.
#[repr(C)]
struct ObjPinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` points to a live, initialised `#[repr(C)]` prefix of
    // `union bpf_attr` of exactly the size passed; the kernel only reads it
    // (and the path it may point to, which outlives the call).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_ref(attr),
            std::mem::size_of::<T>(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Fails the test unless it runs as root with bpffs at /sys/fs/bpf (mounting
/// it there when it is missing, once per test binary).
fn require_root_and_bpffs() {
    static MOUNT: Once = Once::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "the kernel-mode tests need root: they create BPF maps and pin them on bpffs \
             (run `cargo test -p panic-runtime --test kthreads` as root)"
        );
    }
    MOUNT.call_once(|| {
        if fs_type(BPFFS) != Some(BPF_FS_MAGIC) {
            let c = |s: &str| CString::new(s).expect("no NUL");
            let (src, target, fstype) = (c("bpf"), c(BPFFS), c("bpf"));
            // SAFETY: all three are valid NUL-terminated strings that outlive
            // the call; bpffs takes no mount data.
            let r = unsafe {
                libc::mount(
                    src.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            if r != 0 {
                panic!(
                    "bpffs is not mounted at {BPFFS} and mounting it failed: {} \
                     (mount -t bpf bpf {BPFFS})",
                    std::io::Error::last_os_error()
                );
            }
        }
    });
    assert_eq!(
        fs_type(BPFFS),
        Some(BPF_FS_MAGIC),
        "{BPFFS} is not bpffs even after mounting it"
    );
}

fn fs_type(path: &str) -> Option<u64> {
    let p = CString::new(path).expect("no NUL");
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `p` is NUL-terminated and `st` is writable and large enough.
    let r = unsafe { libc::statfs(p.as_ptr(), &mut st) };
    (r == 0).then_some(st.f_type as u64)
}

// ---- the thread table ----

/// The thread table's layout as panic_kabi.h defines it, printed by the
/// driver (`kthreads layout`) so that no number is copied by hand.
#[derive(Clone, Debug)]
struct Layout {
    size: usize,
    magic: usize,
    version: usize,
    owner: usize,
    claims: usize,
    slot: usize,
    slot_size: usize,
    tid: usize,
    site: usize,
    slots: usize,
    magic_value: u64,
    version_value: u32,
    no_site: u32,
}

impl Layout {
    fn from_driver(h: &Harness, exe: &Path) -> Layout {
        let out = run(h.command(exe).arg("layout"));
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let kv: HashMap<&str, u64> = text
            .split_whitespace()
            .map(|f| {
                let (k, v) = f.split_once('=').expect("name=value");
                (k, v.parse().expect("a number"))
            })
            .collect();
        let get = |k: &str| *kv.get(k).unwrap_or_else(|| panic!("no {k} in {text:?}"));
        let layout = Layout {
            size: get("size") as usize,
            magic: get("magic") as usize,
            version: get("version") as usize,
            owner: get("owner") as usize,
            claims: get("claims") as usize,
            slot: get("slot") as usize,
            slot_size: get("slot_size") as usize,
            tid: get("tid") as usize,
            site: get("site") as usize,
            slots: get("slots") as usize,
            magic_value: get("magic_value"),
            version_value: get("version_value") as u32,
            no_site: get("no_site") as u32,
        };
        // What the runtime relies on: one table slot per runtime thread slot.
        assert_eq!(layout.slots as u64, panic_runtime::abi::MAX_THREADS);
        assert_eq!(u64::from(layout.no_site), panic_runtime::abi::NO_SITE);
        assert_eq!(layout.size, layout.slot + layout.slots * layout.slot_size);
        layout
    }
}

/// A pinned, mmapable one-entry BPF array holding a thread table, mapped here
/// too. Dropping it unmaps it and removes the pin and its directory.
struct Table {
    layout: Layout,
    _fd: OwnedFd,
    map: *mut u8,
    len: usize,
    dir: PathBuf,
    pin: PathBuf,
}

impl Table {
    /// A table with the loader's magic and version when `init`, zeroed otherwise.
    fn new(layout: &Layout, init: bool) -> Table {
        require_root_and_bpffs();
        let attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_ARRAY,
            key_size: 4,
            value_size: u32::try_from(layout.size).expect("small"),
            max_entries: 1,
            map_flags: BPF_F_MMAPABLE,
        };
        let fd = bpf(BPF_MAP_CREATE, &attr)
            .unwrap_or_else(|e| panic!("cannot create a BPF_F_MMAPABLE array map: {e}"));
        // SAFETY: the kernel just returned this fd, and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let len = layout.size.div_ceil(4096) * 4096;
        // SAFETY: mapping a fresh shared region of the map's pages; nothing
        // else refers to the address range the kernel picks.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(
            map,
            libc::MAP_FAILED,
            "cannot mmap the BPF map: {}",
            std::io::Error::last_os_error()
        );
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(BPFFS).join(format!(
            "cargo-panic-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let pin = dir.join("threads");
        let table = Table {
            layout: layout.clone(),
            _fd: fd,
            map: map.cast(),
            len,
            dir,
            pin,
        };
        if init {
            table.store_u64(layout.magic, layout.magic_value);
            table.store_u32(layout.version, layout.version_value);
        }
        let path = CString::new(table.pin.to_str().expect("utf-8")).expect("no NUL");
        let attr = ObjPinAttr {
            pathname: path.as_ptr() as u64,
            bpf_fd: table._fd.as_raw_fd() as u32,
            file_flags: 0,
        };
        bpf(BPF_OBJ_PIN, &attr)
            .unwrap_or_else(|e| panic!("cannot pin the map at {}: {e}", table.pin.display()));
        table
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        assert!(off.is_multiple_of(4) && off + 4 <= self.len);
        // SAFETY: in bounds (checked) and 4-aligned in a page-aligned mapping
        // that lives as long as `self`; the runtime writes it with atomics
        // from another process, and we only use atomics.
        unsafe { AtomicU32::from_ptr(self.map.add(off).cast()) }
    }

    fn u32(&self, off: usize) -> u32 {
        self.word(off).load(Ordering::Acquire)
    }

    /// Two 32-bit halves: the counter tests only need a value that is not torn
    /// while the writer is quiet.
    fn u64(&self, off: usize) -> u64 {
        u64::from(self.u32(off)) | u64::from(self.u32(off + 4)) << 32
    }

    fn store_u32(&self, off: usize, v: u32) {
        self.word(off).store(v, Ordering::Release);
    }

    fn store_u64(&self, off: usize, v: u64) {
        self.store_u32(off, v as u32);
        self.store_u32(off + 4, (v >> 32) as u32);
    }

    fn owner(&self) -> i32 {
        self.u32(self.layout.owner) as i32
    }

    fn claims(&self) -> u64 {
        self.u64(self.layout.claims)
    }

    /// `(tid, site)` of every slot.
    fn slots(&self) -> Vec<(u32, u32)> {
        let l = &self.layout;
        (0..l.slots)
            .map(|i| {
                let at = l.slot + i * l.slot_size;
                (self.u32(at + l.tid), self.u32(at + l.site))
            })
            .collect()
    }

    /// The site published for thread `tid`, failing unless exactly one slot names it.
    fn site_of(&self, tid: u32) -> u32 {
        let found: Vec<_> = self.slots().into_iter().filter(|s| s.0 == tid).collect();
        assert_eq!(found.len(), 1, "slots naming tid {tid}: {found:?}");
        found[0].1
    }

    /// Every byte of the table.
    fn bytes(&self) -> Vec<u8> {
        (0..self.layout.size / 4)
            .flat_map(|i| self.u32(i * 4).to_le_bytes())
            .collect()
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // SAFETY: `map` is the mapping of `len` bytes made in `new`, used by
        // nothing past this point.
        unsafe { libc::munmap(self.map.cast(), self.len) };
        let _ = std::fs::remove_file(&self.pin);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

// ---- running the driver ----

struct Driver {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Driver {
    fn spawn(mut cmd: std::process::Command) -> Driver {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the driver");
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Driver {
            child,
            stdin,
            stdout,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read a line");
        line
    }

    fn go(&mut self) {
        self.stdin.write_all(b"go\n").expect("release the driver");
        self.stdin.flush().expect("flush");
    }

    /// Waits for the end (boundedly); returns the exit code and stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        drop(self.stdin);
        let status = wait_limited(&mut self.child);
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .expect("piped")
            .read_to_string(&mut err)
            .expect("read stderr");
        (status.code(), err)
    }
}

struct Setup {
    h: Harness,
    exe: PathBuf,
    layout: Layout,
}

fn setup() -> Setup {
    require_root_and_bpffs();
    let h = Harness::new();
    let exe = h.build("kthreads", 12, 12);
    let layout = Layout::from_driver(&h, &exe);
    Setup { h, exe, layout }
}

/// Runs `kthreads <mode>` to the end with the table and a dump; returns the
/// output and the parsed dump.
fn run_with_table(
    s: &Setup,
    table: &Path,
    mode: &str,
    env: &[(&str, &str)],
) -> (std::process::Output, Snapshot) {
    let dump = s.h.path(&format!("{mode}.dump"));
    let _ = std::fs::remove_file(&dump);
    let out = run(s
        .h
        .command(&s.exe)
        .arg(mode)
        .env("CARGO_PANIC_KTHREADS", table)
        .env("CARGO_PANIC_DUMP", &dump)
        .envs(env.iter().copied()));
    let snap = Snapshot::read(&dump)
        .unwrap_or_else(|e| panic!("dump unreadable: {e}\n{}", describe(&out)));
    for hist in &snap.hists {
        check_hist(hist);
    }
    (out, snap)
}

// ---- the tests ----

#[test]
fn threads_publish_their_tid_and_innermost_region() {
    let s = setup();
    let table = Table::new(&s.layout, true);
    let dump = s.h.path("park.dump");
    let mut cmd = s.h.command(&s.exe);
    cmd.arg("park")
        .env("CARGO_PANIC_KTHREADS", &table.pin)
        .env("CARGO_PANIC_DUMP", &dump);
    let mut d = Driver::spawn(cmd);

    let line = d.line();
    let fields: Vec<_> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "unexpected line {line:?}");
    assert_eq!(fields[0], "parked", "unexpected line {line:?}");
    let main: u32 = fields[1].parse().expect("tid");
    let worker: u32 = fields[2].parse().expect("tid");
    // Children the program execs must not write the table.
    assert_eq!(
        fields[3], "unset",
        "CARGO_PANIC_KTHREADS left in the environment"
    );
    assert_eq!(table.owner(), d.child.id() as i32);
    // Main: region 2 inside 1. Worker: region 3, blocked reading a pipe.
    assert_eq!(table.site_of(main), 2);
    assert_eq!(table.site_of(worker), 3);
    // Main's slot was claimed before the constructor (published by the
    // runtime's scan when it mapped the table), the worker's at its first region.
    assert_eq!(table.claims(), 2);
    let used: Vec<_> = table.slots().into_iter().filter(|s| s.0 != 0).collect();
    assert_eq!(used.len(), 2, "{used:?}");

    // The worker leaves its region and exits; main closes both of its.
    d.go();
    assert_eq!(d.line(), "closed\n");
    assert_eq!(table.site_of(main), s.layout.no_site);
    assert!(
        table.slots().iter().all(|&(tid, _)| tid != worker),
        "the exited worker's slot still names it"
    );
    let freed: Vec<_> = table
        .slots()
        .into_iter()
        .filter(|&(tid, site)| tid == 0 && site == s.layout.no_site)
        .collect();
    assert_eq!(freed.len(), 1, "the worker's slot is freed with no site");
    d.go();
    let (code, err) = d.finish();
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(err, "", "kernel mode says nothing when it works");

    let snap = Snapshot::read(&dump).expect("dump");
    assert!(snap.header.kthreads, "the header records kernel mode");
    assert_eq!(sites(&snap, 4), vec![1, 1, 1, 1]);
}

/// Runs the nested-regions driver in kernel mode and checks each region's self time.
fn nested_self_times(env: &[(&str, &str)]) -> Snapshot {
    let s = setup();
    let table = Table::new(&s.layout, true);
    let (out, snap) = run_with_table(&s, &table.pin, "nested", env);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(snap.header.kthreads);
    assert_eq!(
        (snap.header.state, snap.header.abandoned),
        (State::Exited, 1)
    );
    let h = &snap.hists;
    let ms = |ticks: u64| snap.ticks_to_ns(ticks) as f64 / 1e6;
    let near = |what: &str, got: f64, want: f64| {
        assert!(
            (want * 0.6..=want * 1.4).contains(&got),
            "{what}: {got:.1} ms, expected about {want} ms"
        );
    };
    let counts: Vec<_> = h.iter().map(|h| h.count).collect();
    assert_eq!(counts, vec![0, 0, 0, 0, 1, 1, 0, 0, 1, 2, 1, 0]);

    // 4 (100 ms of its own) around 5 (200 ms): a region's self time is its
    // duration minus its children's, to the tick.
    assert_eq!(h[5].self_total, h[5].total);
    assert_eq!(h[4].self_total, h[4].total - h[5].total);
    assert!(h[4].self_total < h[4].total);
    near("self time of region 4", ms(h[4].self_total), 100.0);
    near("self time of region 5", ms(h[5].self_total), 200.0);
    near("duration of region 4", ms(h[4].total), 300.0);
    // Two children: both subtracted.
    assert_eq!(h[8].self_total, h[8].total - h[9].total);
    near("self time of region 8", ms(h[8].self_total), 40.0);
    near("self time of region 9", ms(h[9].self_total), 60.0);
    // An abandoned child records nothing; its time stays in 10's self time.
    assert_eq!((h[11].count, h[11].self_total), (0, 0));
    assert_eq!(h[10].self_total, h[10].total);
    near("self time of region 10", ms(h[10].self_total), 60.0);

    // Regions open at exit: 6 (50 ms of its own) around 7 (100 ms). Only the
    // reader's open-frame computation gives them a self time.
    let main = snap.thread(snap.header.pid as u32).expect("main's slot");
    assert_eq!(main.frames, vec![6, 7]);
    assert_eq!((h[6].self_total, h[7].self_total), (0, 0));
    let self_ticks = snap.self_ticks();
    near("open region 6", ms(self_ticks[6]), 50.0);
    near("open region 7", ms(self_ticks[7]), 100.0);
    let open_for = |k: usize| snap.header.end_ticks() - main.stack[k].t;
    assert!(self_ticks[6] < open_for(0) && self_ticks[7] <= open_for(1));
    for i in [4, 5, 8, 9, 10, 11] {
        assert_eq!(self_ticks[i], h[i].self_total, "closed region {i}");
    }
    snap
}

#[test]
fn self_times_exclude_timed_children() {
    let snap = nested_self_times(&[]);
    assert_eq!(
        snap.header.clock.kind,
        ClockKind::Tsc,
        "this machine has an invariant TSC"
    );
}

#[test]
fn self_times_on_the_general_paths_too() {
    // CARGO_PANIC_CLOCK=ns: no fast path, kernel mode through enter_slow/exit_slow.
    let snap = nested_self_times(&[("CARGO_PANIC_CLOCK", "ns")]);
    assert_eq!(snap.header.clock.kind, ClockKind::Ns);
}

#[test]
fn a_table_the_loader_did_not_set_up_is_refused_with_one_line() {
    let s = setup();
    let expect_fallback = |table: &Path, reason: &str| {
        let (out, snap) = run_with_table(&s, table, "count", &[]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "cargo-panic runtime: {reason}; running without per-site kernel times\n",
                reason = reason.replace("{}", &table.display().to_string())
            )
        );
        // Counted and timed as without a table; no self times.
        assert!(!snap.header.kthreads);
        assert_eq!(sites(&snap, 2), vec![1, 10]);
        assert_eq!(snap.hists[1].count, 10);
        assert!(snap.hists.iter().all(|h| h.self_total == 0));
        assert!(snap.self_ticks().iter().all(|&t| t == 0));
    };

    // Not initialised: no magic.
    let table = Table::new(&s.layout, false);
    expect_fallback(
        &table.pin,
        "cannot use kernel thread table {}: Bad message (wrong magic: the loader did not set it up)",
    );
    assert!(
        table.bytes().iter().all(|&b| b == 0),
        "the runtime wrote an unusable table"
    );

    // Another version of panic_kabi.h.
    let table = Table::new(&s.layout, true);
    table.store_u32(s.layout.version, s.layout.version_value + 1);
    expect_fallback(
        &table.pin,
        &format!(
            "cannot use kernel thread table {{}}: Protocol not supported (version {}, this runtime \
             reads version {})",
            s.layout.version_value + 1,
            s.layout.version_value
        ),
    );
    assert_eq!((table.owner(), table.claims()), (0, 0));

    // No such pin.
    let missing = table.dir.join("missing");
    expect_fallback(
        &missing,
        "cannot open kernel thread table {}: No such file or directory",
    );
}

#[test]
fn a_forked_child_never_writes_the_table() {
    let s = setup();
    let table = Table::new(&s.layout, true);
    let mut cmd = s.h.command(&s.exe);
    cmd.arg("fork").env("CARGO_PANIC_KTHREADS", &table.pin);
    let mut d = Driver::spawn(cmd);
    assert_eq!(d.line(), "ready\n");
    let parent = d.child.id();
    assert_eq!(table.owner(), parent as i32);
    assert_eq!(table.site_of(parent), 1);
    let before = table.bytes();

    // The child enters and leaves regions, leaves some open, and starts a thread
    // that does the same: in the parent's table nothing may change.
    d.go();
    let line = d.line();
    let child: u32 = line
        .strip_prefix("forked ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    assert_ne!(child, parent);
    let after = table.bytes();
    assert!(
        before == after,
        "the forked child wrote the table: slots before {:?}, after {:?}",
        &before_slots(&table, &before),
        table
            .slots()
            .into_iter()
            .filter(|s| s.0 != 0)
            .collect::<Vec<_>>()
    );
    assert_eq!(table.site_of(parent), 1);
    d.go();
    let (code, err) = d.finish();
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(err, "");
}

/// The used slots of a table copy, for failure messages.
fn before_slots(table: &Table, bytes: &[u8]) -> Vec<(u32, u32)> {
    let l = &table.layout;
    let at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    (0..l.slots)
        .map(|i| {
            let base = l.slot + i * l.slot_size;
            (at(base + l.tid), at(base + l.site))
        })
        .filter(|s| s.0 != 0)
        .collect()
}
