//! Kernel mode: the runtime maps a pinned BPF thread table
//! (`CARGO_PANIC_KTHREADS`, the layout of `bpf/src/bpf/panic_kabi.h`), publishes
//! each thread's tid and innermost region there, and keeps self times. With
//! per-site budgets pinned next to the table ("budgets"), it also publishes
//! each thread's stack of budgeted regions and never demotes them.
//!
//! These tests create real BPF maps and pin them on bpffs, so they need root
//! (and bpffs, which they mount at /sys/fs/bpf when it is not there). Without
//! either they fail saying what is missing: they never skip.

mod common;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use common::bpf::{
    array, mmapable_array, new_pin_dir, pin_map, remove_pins, require_root_and_bpffs,
};
use common::{Driver, Harness, LayoutValues, check_hist, describe, run, sites};
use panic_runtime::{ClockKind, Snapshot, State};

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
    budgets_over: usize,
    slot: usize,
    slot_size: usize,
    tid: usize,
    site: usize,
    seq: usize,
    n_budgets: usize,
    fired: usize,
    budget: usize,
    kbudget_size: usize,
    kb_site: usize,
    kb_depth: usize,
    kb_since: usize,
    /// PANIC_KBUDGETS: entries of a slot's budget stack.
    kbudgets: usize,
    /// `struct panic_site_budget`, the value of the "budgets" map.
    sb_size: usize,
    sb_budget_ns: usize,
    sb_action: usize,
    sb_hist: usize,
    budget_record: u32,
    slots: usize,
    magic_value: u64,
    version_value: u32,
    no_site: u32,
    /// The driver's counter slots (the runtime's N_SITES), from a dump: the
    /// "budgets" map has one element more.
    n_sites: usize,
}

impl Layout {
    fn from_driver(h: &Harness, exe: &Path) -> Layout {
        let dump = h.path("layout.dump");
        let out = run(h.command(exe).arg("layout").env("CARGO_PANIC_DUMP", &dump));
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let n_sites = Snapshot::read(&dump)
            .expect("the layout run's dump")
            .header
            .n_sites;
        let values = LayoutValues::parse(String::from_utf8(out.stdout).expect("utf-8"));
        let get = |k: &str| values.get(k);
        let layout = Layout {
            size: get("size") as usize,
            magic: get("magic") as usize,
            version: get("version") as usize,
            owner: get("owner") as usize,
            claims: get("claims") as usize,
            budgets_over: get("budgets_over") as usize,
            slot: get("slot") as usize,
            slot_size: get("slot_size") as usize,
            tid: get("tid") as usize,
            site: get("site") as usize,
            seq: get("seq") as usize,
            n_budgets: get("n_budgets") as usize,
            fired: get("fired") as usize,
            budget: get("budget") as usize,
            kbudget_size: get("kbudget_size") as usize,
            kb_site: get("kb_site") as usize,
            kb_depth: get("kb_depth") as usize,
            kb_since: get("kb_since") as usize,
            kbudgets: get("kbudgets") as usize,
            sb_size: get("sb_size") as usize,
            sb_budget_ns: get("sb_budget_ns") as usize,
            sb_action: get("sb_action") as usize,
            sb_hist: get("sb_hist") as usize,
            budget_record: get("budget_record") as u32,
            slots: get("slots") as usize,
            magic_value: get("magic_value"),
            version_value: get("version_value") as u32,
            no_site: get("no_site") as u32,
            n_sites: usize::try_from(n_sites).expect("small"),
        };
        // What the runtime relies on: one table slot per runtime thread slot.
        assert_eq!(layout.slots as u64, panic_runtime::abi::MAX_THREADS);
        assert_eq!(u64::from(layout.no_site), panic_runtime::abi::NO_SITE);
        assert_eq!(layout.size, layout.slot + layout.slots * layout.slot_size);
        assert_eq!(
            layout.slot_size,
            layout.budget + layout.kbudgets * layout.kbudget_size
        );
        assert!(layout.n_sites > 9, "the budget tests use sites 1-9");
        layout
    }
}

/// One thread table slot as the runtime left it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KSlot {
    tid: u32,
    site: u32,
    seq: u32,
    fired: u32,
    /// `(site, depth, since)` of the `n_budgets` entries in use, outermost first.
    budgets: Vec<(u32, u32, u64)>,
}

/// A pinned, mmapable one-entry BPF array holding a thread table, mapped here
/// too, and optionally a "budgets" array pinned next to it. Dropping it unmaps
/// it and removes the pins and their directory.
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
        let (fd, map, len) = mmapable_array(layout.size, 1);
        let dir = new_pin_dir("cargo-panic-test");
        let pin = dir.join("threads");
        let table = Table {
            layout: layout.clone(),
            _fd: fd,
            map,
            len,
            dir,
            pin,
        };
        if init {
            table.store_u64(layout.magic, layout.magic_value);
            table.store_u32(layout.version, layout.version_value);
        }
        pin_map(&table._fd, &table.pin);
        table
    }

    /// Where the runtime looks for the budgets: next to the table.
    fn budgets_pin(&self) -> PathBuf {
        self.dir.join("budgets")
    }

    /// Pins a "budgets" array of `entries` elements next to the table, as the
    /// loader would: a budget (1 s, record only) for each site of `budgeted`,
    /// whose histogram has the site's number (as in the driver).
    fn pin_budgets(&self, entries: u32, budgeted: &[u32]) {
        self.pin_budgets_sized(self.layout.sb_size, entries, budgeted);
    }

    /// Like [`Table::pin_budgets`], with elements of `value_size` bytes.
    fn pin_budgets_sized(&self, value_size: usize, entries: u32, budgeted: &[u32]) {
        let l = &self.layout;
        let (fd, map, len) = mmapable_array(value_size, entries);
        for &site in budgeted {
            let at = site as usize * value_size;
            assert!(at + l.sb_size <= len, "site {site} is past the budgets map");
            let put = |off: usize, bytes: &[u8]| {
                // SAFETY: in bounds of the `len`-byte mapping (checked above);
                // nothing else writes the map yet.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), map.add(at + off), bytes.len());
                }
            };
            put(l.sb_budget_ns, &1_000_000_000u64.to_le_bytes());
            put(l.sb_action, &l.budget_record.to_le_bytes());
            put(l.sb_hist, &site.to_le_bytes());
        }
        // SAFETY: the mapping made by `mmapable_array`, not used past this.
        unsafe { libc::munmap(map.cast(), len) };
        pin_map(&fd, &self.budgets_pin());
    }

    /// A "budgets" map of the largest size the runtime reads (`n_sites + 1`).
    fn pin_budgets_for(&self, budgeted: &[u32]) {
        let entries = u32::try_from(self.layout.n_sites + 1).expect("small");
        self.pin_budgets(entries, budgeted);
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

    fn budgets_over(&self) -> u64 {
        self.u64(self.layout.budgets_over)
    }

    /// Slot `i` with its budget stack (the stack read only while `seq` is even
    /// and unchanged: the runtime's writes are a seqlock).
    fn kslot(&self, i: usize) -> KSlot {
        let l = &self.layout;
        let at = l.slot + i * l.slot_size;
        for _ in 0..1000 {
            let seq = self.u32(at + l.seq);
            if seq % 2 == 1 {
                std::thread::yield_now();
                continue;
            }
            let n = self.u32(at + l.n_budgets) as usize;
            assert!(n <= l.kbudgets, "slot {i}: n_budgets {n}");
            let budgets = (0..n)
                .map(|k| {
                    let b = at + l.budget + k * l.kbudget_size;
                    (
                        self.u32(b + l.kb_site),
                        self.u32(b + l.kb_depth),
                        self.u64(b + l.kb_since),
                    )
                })
                .collect();
            let slot = KSlot {
                tid: self.u32(at + l.tid),
                site: self.u32(at + l.site),
                seq,
                fired: self.u32(at + l.fired),
                budgets,
            };
            if self.u32(at + l.seq) == seq {
                return slot;
            }
        }
        panic!("slot {i}: the budget stack never stood still");
    }

    /// The index of the one slot naming `tid`.
    fn slot_of(&self, tid: u32) -> usize {
        let found: Vec<_> = (self.slots().iter().enumerate())
            .filter(|(_, s)| s.0 == tid)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(found.len(), 1, "slots naming tid {tid}: {found:?}");
        found[0]
    }

    /// Sets every slot's `fired` (as the kernel would after acting on budgets).
    fn set_fired(&self, v: u32) {
        let l = &self.layout;
        for i in 0..l.slots {
            self.store_u32(l.slot + i * l.slot_size + l.fired, v);
        }
    }

    /// `n_budgets` of every slot.
    fn n_budgets(&self) -> Vec<u32> {
        let l = &self.layout;
        (0..l.slots)
            .map(|i| self.u32(l.slot + i * l.slot_size + l.n_budgets))
            .collect()
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
        remove_pins(&self.dir, &[self.pin.clone(), self.budgets_pin()]);
    }
}

// ---- running the driver ----

type Setup = common::Setup<Layout>;

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
    // The regions sleep: never shorter than asked (less the clock's
    // calibration error), longer by whatever a loaded machine adds.
    let near = |what: &str, got: f64, want: f64| {
        assert!(
            (want * 0.9..=want + 500.0).contains(&got),
            "{what}: {got:.1} ms, expected {want} ms (more on a loaded machine)"
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
    table.pin_budgets_for(&[1, 3, 5]);
    let mut cmd = s.h.command(&s.exe);
    cmd.arg("fork").env("CARGO_PANIC_KTHREADS", &table.pin);
    let mut d = Driver::spawn(cmd);
    assert_eq!(d.line(), "ready\n");
    let parent = d.child.id();
    assert_eq!(table.owner(), parent as i32);
    assert_eq!(table.site_of(parent), 1);
    // The parent is inside budgeted region 1 (depth 0): one entry to pop.
    let k = table.kslot(table.slot_of(parent));
    assert_eq!(
        k.budgets.iter().map(|b| (b.0, b.1)).collect::<Vec<_>>(),
        vec![(1, 0)]
    );
    let before = table.bytes();

    // The child enters and leaves regions (budgeted ones among them: 1, 3, 5),
    // leaves some open, and starts a thread that does the same: in the
    // parent's table nothing may change.
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

// ---- budgets ----

/// `(site, depth)` of a budget stack.
fn sites_depths(k: &KSlot) -> Vec<(u32, u32)> {
    k.budgets.iter().map(|b| (b.0, b.1)).collect()
}

/// Walks the `budgets` driver through its steps (sites 5-9 budgeted) and checks
/// the worker's budget stack at each one.
fn budget_walk(env: &[(&str, &str)]) -> Snapshot {
    let s = setup();
    let table = Table::new(&s.layout, true);
    table.pin_budgets_for(&[5, 6, 7, 8, 9]);
    // As if the kernel had acted on every entry of every slot before.
    table.set_fired(0xf);
    let dump = s.h.path("budgets.dump");
    let mut cmd = s.h.command(&s.exe);
    cmd.arg("budgets")
        .env("CARGO_PANIC_KTHREADS", &table.pin)
        .env("CARGO_PANIC_DUMP", &dump)
        .envs(env.iter().copied());
    let mut d = Driver::spawn(cmd);

    // Parked (blocked reading a pipe) in 5 at depth 1, inside unbudgeted 1.
    let line = d.line();
    let f: Vec<_> = line.split_whitespace().collect();
    assert!(f.len() == 4 && f[0] == "parked", "unexpected line {line:?}");
    let worker: u32 = f[1].parse().expect("tid");
    let (before, after): (u64, u64) = (f[2].parse().expect("ns"), f[3].parse().expect("ns"));
    let i = table.slot_of(worker);
    let k = table.kslot(i);
    assert_eq!((k.tid, k.site), (worker, 5));
    assert_eq!(sites_depths(&k), vec![(5, 1)]);
    let since = k.budgets[0].2;
    assert!(
        (before..=after).contains(&since),
        "entered at {since} ns, not between {before} and {after} (CLOCK_MONOTONIC)"
    );
    assert!(k.seq > 0, "seq {} is even but never moved", k.seq);
    assert_eq!(k.fired, 0xe, "the push at 0 clears bit 0 of fired, only it");
    assert_eq!(table.budgets_over(), 0);

    // Each further step: the line, the stack, whether the stack changed (seq).
    let mut last = k;
    let mut step = |d: &mut Driver, line: &str, site: u32, want: &[(u32, u32)], changed: bool| {
        d.go();
        assert_eq!(d.line(), format!("{line}\n"));
        let k = table.kslot(i);
        assert_eq!((k.tid, k.site), (worker, site), "at {line:?}");
        assert_eq!(sites_depths(&k), want, "budget stack at {line:?}");
        assert_eq!(
            k.seq != last.seq,
            changed,
            "seq {} -> {} at {line:?}",
            last.seq,
            k.seq
        );
        assert!(k.seq >= last.seq, "seq went back at {line:?}");
        assert!(
            k.budgets.windows(2).all(|w| w[0].2 <= w[1].2),
            "entry times out of order at {line:?}: {:?}",
            k.budgets
        );
        last = k.clone();
        k
    };
    // 2 (no budget, depth 2) pushes nothing; 6 (depth 3) goes on top.
    let k = step(&mut d, "nested", 6, &[(5, 1), (6, 3)], true);
    assert_eq!(k.budgets[0].2, since, "the outer entry is untouched");
    assert_eq!(k.fired, 0xc);
    step(&mut d, "inner closed", 2, &[(5, 1)], true);
    step(&mut d, "unbudgeted closed", 5, &[(5, 1)], false);
    step(&mut d, "outer closed", 1, &[], true);
    // Five nested budgeted regions: the fifth is not pushed, only counted.
    let k = step(
        &mut d,
        "five deep",
        9,
        &[(5, 1), (6, 2), (7, 3), (8, 4)],
        true,
    );
    assert_eq!(k.fired, 0, "each push cleared its bit");
    assert_eq!(table.budgets_over(), 1);
    step(
        &mut d,
        "fifth closed",
        8,
        &[(5, 1), (6, 2), (7, 3), (8, 4)],
        false,
    );
    step(&mut d, "fourth closed", 7, &[(5, 1), (6, 2), (7, 3)], true);
    // Outer exits pop the entries of the regions they abandon.
    step(&mut d, "abandoned by a budgeted exit", 1, &[], true);
    step(&mut d, "abandoned by an unbudgeted exit", 1, &[], true);
    step(&mut d, "exiting inside", 7, &[(7, 1)], true);

    // The worker exits inside 7: its slot is freed with an empty stack.
    d.go();
    assert_eq!(d.line(), "joined\n");
    let k = table.kslot(i);
    assert_eq!((k.tid, k.site), (0, s.layout.no_site));
    assert!(k.budgets.is_empty(), "freed slot keeps {:?}", k.budgets);
    assert!(k.seq > last.seq, "the exit's pop moved seq");
    assert_eq!(table.budgets_over(), 1);

    d.go();
    let (code, err) = d.finish();
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(err, "", "budgets say nothing when they work");
    let snap = Snapshot::read(&dump).expect("dump");
    assert!(snap.header.kthreads);
    assert_eq!(snap.header.abandoned, 4);
    for (site, h) in snap.hists.iter().enumerate().take(10) {
        assert_eq!(h.pinned, site >= 5, "hist {site}");
        check_hist(h);
    }
    snap
}

#[test]
fn the_budget_stack_follows_budgeted_regions() {
    let snap = budget_walk(&[]);
    assert_eq!(snap.header.clock.kind, ClockKind::Tsc);
}

#[test]
fn the_budget_stack_on_the_general_paths_too() {
    // CARGO_PANIC_CLOCK=ns: kernel mode through enter_slow/exit_slow.
    let snap = budget_walk(&[("CARGO_PANIC_CLOCK", "ns")]);
    assert_eq!(snap.header.clock.kind, ClockKind::Ns);
}

/// Runs the `pin` driver (4096 empty regions 5, then 4096 of 2) with `table`;
/// checks that kernel mode worked and returns the stderr and the dump.
fn run_pin(s: &Setup, table: &Table) -> (String, Snapshot) {
    let (out, snap) = run_with_table(s, &table.pin, "pin", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(snap.header.kthreads, "kernel mode is on, budgets or not");
    assert_eq!(table.owner(), snap.header.pid);
    assert!(table.claims() >= 1);
    let h = &snap.hists;
    assert_eq!((h[5].count, h[2].count), (4096, 4096));
    assert!(
        h[5].self_total > 0 && h[2].self_total > 0,
        "self times are kept"
    );
    assert!(
        table.n_budgets().iter().all(|&n| n == 0),
        "every budget stack is empty at the end"
    );
    (String::from_utf8_lossy(&out.stderr).into_owned(), snap)
}

#[test]
fn budgeted_regions_are_never_demoted() {
    let s = setup();
    let table = Table::new(&s.layout, true);
    table.pin_budgets_for(&[5]);
    let (err, snap) = run_pin(&s, &table);
    assert_eq!(err, "");
    let h = &snap.hists;
    // Thousands of activations of a few ns: 2 is demoted, budgeted 5 is not.
    assert!(
        h[5].pinned && !h[5].demoted,
        "hist 5: {:?}",
        (h[5].pinned, h[5].demoted)
    );
    assert!(
        h[2].demoted && !h[2].pinned,
        "hist 2: {:?}",
        (h[2].pinned, h[2].demoted)
    );
    assert!(h.iter().enumerate().all(|(i, h)| h.pinned == (i == 5)));
}

#[test]
fn without_budgets_kernel_mode_runs_as_before_and_silently() {
    let s = setup();
    let table = Table::new(&s.layout, true);
    let (err, snap) = run_pin(&s, &table);
    assert_eq!(err, "", "no budgets pin is no budgets, said nothing");
    // The same region as the budgeted one above, unbudgeted: demoted.
    assert!(snap.hists[5].demoted && snap.hists[2].demoted);
    assert!(snap.hists.iter().all(|h| !h.pinned));
    assert_eq!(table.budgets_over(), 0);
}

#[test]
fn a_budgets_map_sized_for_the_manifest_is_read_to_its_end() {
    let s = setup();
    // The loader sizes the map for the manifest's sites (plus one), fewer
    // than the runtime's counter slots: the sites it holds are budgeted.
    let table = Table::new(&s.layout, true);
    table.pin_budgets(7, &[5]);
    let (err, snap) = run_pin(&s, &table);
    assert_eq!(err, "");
    assert!(snap.hists[5].pinned && !snap.hists[5].demoted);
    assert!(snap.hists[2].demoted);

    // A map that ends before site 5 (a manifest without sites): site 5 reads
    // as unbudgeted, quietly.
    let table = Table::new(&s.layout, true);
    table.pin_budgets(1, &[]);
    let (err, snap) = run_pin(&s, &table);
    assert_eq!(err, "");
    assert!(snap.hists.iter().all(|h| !h.pinned));
    assert!(snap.hists[5].demoted);
}

#[test]
fn budgets_the_runtime_cannot_use_are_refused_with_one_line() {
    let s = setup();
    let refused = |table: &Table, reason: &str| {
        let (err, snap) = run_pin(&s, table);
        assert_eq!(
            err,
            format!(
                "cargo-panic runtime: {reason}; running without budgets\n",
                reason = reason.replace("{}", &table.budgets_pin().display().to_string())
            )
        );
        assert!(snap.hists.iter().all(|h| !h.pinned));
        assert!(snap.hists[5].demoted);
    };

    // Elements of another size (another panic_kabi.h).
    let table = Table::new(&s.layout, true);
    table.pin_budgets_sized(16, 8, &[]);
    refused(
        &table,
        &format!(
            "cannot use budgets {{}}: Invalid argument (elements of 16 bytes, this runtime \
             reads {})",
            s.layout.sb_size
        ),
    );

    // Not mmapable.
    let table = Table::new(&s.layout, true);
    let fd = array(s.layout.sb_size, 8, 0);
    pin_map(&fd, &table.budgets_pin());
    refused(
        &table,
        "cannot use budgets {}: Invalid argument (not mmapable)",
    );

    // Not a map at all.
    let table = Table::new(&s.layout, true);
    std::fs::create_dir(table.budgets_pin()).expect("mkdir on bpffs");
    refused(&table, "cannot open budgets {}: Permission denied");
}
