//! Fuses: in kernel mode the runtime maps the fuse map pinned next to the
//! thread table ("fuses", `struct panic_fuses` of `bpf/src/bpf/panic_kabi.h`)
//! read-write, and a program asks it through `panic_fuse`, which `c/panic.h`
//! wraps (`cargo_panic_fuse`, 0 without the runtime); every ask is counted in
//! the map.
//!
//! The tests that create and pin BPF maps need root and bpffs (mounted at
//! /sys/fs/bpf when it is not there); without them they fail saying what is
//! missing: they never skip.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use common::bpf::{KernelRun, Mapped, TableHead};
use common::{Driver, Harness, LayoutValues, describe, dynamic_symbols, run};

/// The layouts panic_kabi.h defines, printed by the driver (`fuses layout`)
/// so that no number is copied by hand.
#[derive(Clone, Debug)]
struct Layout {
    /// `struct panic_kthreads`'s head.
    table: TableHead,
    /// `struct panic_fuses`: the fuse map's value size and fields.
    fuses_size: usize,
    fuses_magic: usize,
    fuses_version: usize,
    fuses_n: usize,
    unknown: usize,
    fuse: usize,
    /// `struct panic_fuse`: its size and fields.
    fuse_size: usize,
    name: usize,
    tripped: usize,
    asks: usize,
    sheds: usize,
    /// PANIC_FUSES, PANIC_FUSE_NAME, panic.h's PANIC_FUSE_NAME_MAX.
    fuses: usize,
    name_len: usize,
    name_max: usize,
    fuses_magic_value: u64,
}

impl Layout {
    fn from_driver(h: &Harness, exe: &Path) -> Layout {
        let v = LayoutValues::from_driver(h, exe);
        let l = Layout {
            table: TableHead::from_values(&v),
            fuses_size: v.at("fuses_size"),
            fuses_magic: v.at("fuses_magic"),
            fuses_version: v.at("fuses_version"),
            fuses_n: v.at("fuses_n"),
            unknown: v.at("unknown"),
            fuse: v.at("fuse"),
            fuse_size: v.at("fuse_size"),
            name: v.at("name"),
            tripped: v.at("tripped"),
            asks: v.at("asks"),
            sheds: v.at("sheds"),
            fuses: v.at("fuses"),
            name_len: v.at("name_len"),
            name_max: v.at("name_max"),
            fuses_magic_value: v.get("fuses_magic_value"),
        };
        assert_eq!(l.fuses_size, l.fuse + l.fuses * l.fuse_size);
        assert_eq!(l.name_max + 1, l.name_len, "panic.h's longest name");
        // The test writes version and n of the fuse map as one 8-byte word.
        assert!(l.fuses_version.is_multiple_of(8) && l.fuses_n == l.fuses_version + 4);
        for off in [l.fuse, l.fuse_size, l.asks, l.sheds, l.unknown] {
            assert!(off.is_multiple_of(8), "8-byte counters: {l:?}");
        }
        assert!(l.tripped.is_multiple_of(4));
        l
    }
}

/// One run's pins: the thread table and, when asked, a fuse map next to it
/// ("fuses"), for the test to play the loader and the controller.
type Run = KernelRun<Layout>;

impl Run {
    fn new(layout: &Layout) -> Run {
        KernelRun::pin_table(&layout.table, "fuses", layout.clone())
    }

    fn fuses_pin(&self) -> PathBuf {
        self.extra_pin()
    }

    /// The fuse map, once pinned.
    fn fuses(&self) -> Option<&Mapped> {
        self.extra.as_ref()
    }

    /// Pins a fuse map of `value_size`-byte elements next to the table, as
    /// the loader does: magic, version, n and the names given (at their
    /// entry index), nothing tripped, nothing counted.
    fn pin_fuses_with(
        &mut self,
        value_size: usize,
        magic: u64,
        version: u64,
        n: u64,
        names: &[(usize, &[u8])],
    ) {
        let l = self.layout.clone();
        self.pin_extra(value_size, |map| {
            if value_size != l.fuses_size {
                return;
            }
            for &(i, name) in names {
                assert!(i < l.fuses && name.len() <= l.name_len);
                let off = l.fuse + i * l.fuse_size + l.name;
                assert!(off + l.name_len <= map.len);
                map.write(off, name);
            }
            map.u64_at(l.fuses_magic).store(magic, Ordering::Relaxed);
            // version and n: two u32s in one word.
            map.u64_at(l.fuses_version)
                .store(version | n << 32, Ordering::Release);
        });
    }

    /// A fuse map set up for this ABI with `names` as entries 0, 1, ...
    fn pin_fuses(&mut self, names: &[&str]) {
        let l = &self.layout;
        let (size, magic, version) = (l.fuses_size, l.fuses_magic_value, l.table.version_value);
        let named: Vec<(usize, &[u8])> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.as_bytes()))
            .collect();
        self.pin_fuses_with(size, magic, version, names.len() as u64, &named);
    }

    /// Trips (or resets) entry `i`, as the controller does.
    fn trip(&self, i: usize, tripped: bool) {
        let l = &self.layout;
        let off = l.fuse + i * l.fuse_size + l.tripped;
        // The runtime only loads it.
        self.extra_map()
            .u32_at(off)
            .store(u32::from(tripped), Ordering::Relaxed);
    }

    /// (asks, sheds) of entry `i`.
    fn counts(&self, i: usize) -> (u64, u64) {
        let l = &self.layout;
        let base = l.fuse + i * l.fuse_size;
        (
            self.extra_word(base + l.asks).load(Ordering::Relaxed),
            self.extra_word(base + l.sheds).load(Ordering::Relaxed),
        )
    }

    fn unknown(&self) -> u64 {
        self.extra_word(self.layout.unknown).load(Ordering::Relaxed)
    }
}

/// The fuses driver, built the way the link driver links programs: with
/// the fuse API exported for dlsym.
type Setup = common::Setup<Layout>;

const EXPORT: [&str; 1] = ["-Wl,--export-dynamic-symbol=panic_fuse"];

fn setup() -> Setup {
    Setup::exported("fuses", &EXPORT, Layout::from_driver)
}

fn spawn_ask(s: &Setup, kthreads: Option<&Path>) -> Driver {
    s.spawn("ask", kthreads)
}

fn ask(d: &mut Driver, cmd: &str) -> String {
    d.send(cmd);
    let line = d.line();
    line.strip_suffix('\n')
        .unwrap_or_else(|| panic!("driver ended: {line:?}"))
        .to_string()
}

/// What the test expects the map to count: per entry (asks, sheds), and
/// unknown.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    fuses: Vec<(u64, u64)>,
    unknown: u64,
}

impl Counts {
    fn new(n: usize) -> Counts {
        Counts {
            fuses: vec![(0, 0); n],
            unknown: 0,
        }
    }

    /// One "ask" (ingest = entry 0, batch = entry 1, nope unknown) with
    /// these entries tripped.
    fn ask(&mut self, tripped: [bool; 2]) {
        for (i, t) in tripped.into_iter().enumerate() {
            self.fuses[i].0 += 1;
            self.fuses[i].1 += u64::from(t);
        }
        self.unknown += 1;
    }

    fn read(r: &Run, n: usize) -> Counts {
        Counts {
            fuses: (0..n).map(|i| r.counts(i)).collect(),
            unknown: r.unknown(),
        }
    }
}

/// The answer line for "ask" with these entries tripped.
fn answers(tag: &str, [ingest, batch]: [bool; 2]) -> String {
    let prefix = if tag.is_empty() {
        String::new()
    } else {
        format!("{tag} ")
    };
    format!("{prefix}{} {} 0", u8::from(ingest), u8::from(batch))
}

#[test]
fn programs_shed_the_work_the_controller_trips_and_every_ask_is_counted() {
    let s = setup();
    let mut r = Run::new(&s.layout);
    r.pin_fuses(&["ingest", "batch"]);
    let mut d = spawn_ask(&s, Some(&r.threads));
    let mut want = Counts::new(2);

    // Nothing tripped.
    assert_eq!(ask(&mut d, "ask"), answers("", [false, false]));
    want.ask([false, false]);
    assert_eq!(r.owner(), d.child.id() as i32, "kernel mode is on");

    // The controller trips and resets fuses between asks; each answer
    // follows at once.
    for tripped in [
        [true, false],
        [true, false],
        [false, true],
        [true, true],
        [false, false],
        [true, false],
    ] {
        r.trip(0, tripped[0]);
        r.trip(1, tripped[1]);
        assert_eq!(ask(&mut d, "ask"), answers("", tripped), "{tripped:?}");
        want.ask(tripped);
    }

    // Through what dlsym(RTLD_DEFAULT) finds (the panic-api crate's way).
    r.trip(1, true);
    assert_eq!(ask(&mut d, "dlsym"), answers("dlsym", [true, true]));
    want.ask([true, true]);

    // A NULL name: 0, counted as unknown.
    assert_eq!(ask(&mut d, "null"), "null 0");
    want.unknown += 1;

    // A forked child keeps the fuses: the same answers, counted in the
    // run's map.
    r.trip(1, false);
    assert_eq!(ask(&mut d, "fork"), answers("child", [true, false]));
    assert_eq!(d.line(), "forked\n");
    want.ask([true, false]);
    assert_eq!(ask(&mut d, "ask"), answers("", [true, false]));
    want.ask([true, false]);

    d.send("quit");
    let (code, err) = d.finish();
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(err, "", "fuses say nothing when they work");
    assert_eq!(Counts::read(&r, 2), want);
}

#[test]
fn names_are_compared_whole_over_at_most_the_name_field() {
    let s = setup();
    let l = s.layout.clone();
    let longest = "x".repeat(l.name_max);
    let mut r = Run::new(&l);
    // n = 6: entry 2 repeats entry 0's name, entries 3 and 5 have none,
    // entry 4 has the longest name there can be; entry 6 is past n.
    let names: Vec<(usize, &[u8])> = vec![
        (0, b"ingest"),
        (1, b"batch"),
        (2, b"ingest"),
        (4, longest.as_bytes()),
        (6, b"later"),
    ];
    let (size, magic, version) = (l.fuses_size, l.fuses_magic_value, l.table.version_value);
    r.pin_fuses_with(size, magic, version, 6, &names);
    for i in [0, 2, 4, 6] {
        r.trip(i, true);
    }
    let mut d = spawn_ask(&s, Some(&r.threads));
    let longer = format!("{longest}x");
    let shorter = &longest[1..];
    let line =
        format!("names ingest ingestx inges INGEST {longest} {longer} {shorter} later batch");
    assert_eq!(ask(&mut d, &line), "names 1 0 0 0 1 0 0 0 0");
    d.send("quit");
    let (code, err) = d.finish();
    assert_eq!((code, err.as_str()), (Some(0), ""));
    // The first of two entries with one name answers; the other, the
    // nameless one and the one past n are never asked.
    assert_eq!(
        Counts::read(&r, 7),
        Counts {
            fuses: vec![(1, 1), (1, 0), (0, 0), (0, 0), (1, 1), (0, 0), (0, 0)],
            unknown: 6,
        }
    );

    // A loader that claims more entries than the map holds: the runtime
    // reads all PANIC_FUSES of them, no more.
    let mut r = Run::new(&l);
    let last = l.fuses - 1;
    r.pin_fuses_with(
        size,
        magic,
        version,
        1000,
        &[(0, b"ingest"), (last, b"last")],
    );
    r.trip(last, true);
    let mut d = spawn_ask(&s, Some(&r.threads));
    assert_eq!(ask(&mut d, "names last ingest"), "names 1 0");
    d.send("quit");
    let (code, err) = d.finish();
    assert_eq!((code, err.as_str()), (Some(0), ""));
    assert_eq!(
        (r.counts(last), r.counts(0), r.unknown()),
        ((1, 1), (1, 0), 0)
    );
}

#[test]
fn threads_ask_concurrently_and_no_ask_is_lost() {
    let s = setup();
    let mut r = Run::new(&s.layout);
    r.pin_fuses(&["ingest", "batch"]);
    r.trip(0, true);
    let mut d = spawn_ask(&s, Some(&r.threads));
    // 4 threads, each asking "ingest" and "batch" 10000 times (alternating,
    // so each thread's remembered fuse keeps changing).
    assert_eq!(ask(&mut d, "threads 4 10000"), "threads 40000 0");
    d.send("quit");
    let (code, err) = d.finish();
    assert_eq!((code, err.as_str()), (Some(0), ""));
    assert_eq!(
        Counts::read(&r, 2),
        Counts {
            fuses: vec![(40000, 40000), (40000, 0)],
            unknown: 0,
        }
    );
}

#[test]
fn without_a_fuse_map_no_fuse_trips_silently() {
    let s = setup();
    // Kernel mode without fuses.
    let r = Run::new(&s.layout);
    let mut d = spawn_ask(&s, Some(&r.threads));
    assert_eq!(ask(&mut d, "ask"), "0 0 0");
    assert_eq!(ask(&mut d, "null"), "null 0");
    assert_eq!(ask(&mut d, "dlsym"), "dlsym 0 0 0");
    assert_eq!(r.owner(), d.child.id() as i32);
    d.send("quit");
    let (code, err) = d.finish();
    assert_eq!((code, err.as_str()), (Some(0), ""));

    // No kernel mode at all: a fuse map nobody named is not read.
    let mut r = Run::new(&s.layout);
    r.pin_fuses(&["ingest", "batch"]);
    r.trip(0, true);
    let mut d = spawn_ask(&s, None);
    assert_eq!(ask(&mut d, "ask"), "0 0 0");
    d.send("quit");
    let (code, err) = d.finish();
    assert_eq!((code, err.as_str()), (Some(0), ""));
    assert_eq!(Counts::read(&r, 2), Counts::new(2));
}

#[test]
fn a_fuse_map_the_runtime_cannot_use_is_said_in_one_line_and_never_trips() {
    let s = setup();
    let l = s.layout.clone();
    let refused = |r: &Run, reason: &str| {
        let usable = r.fuses().is_some_and(|map| map.len >= l.fuses_size);
        if usable {
            r.trip(0, true);
            r.trip(1, true);
        }
        let mut d = spawn_ask(&s, Some(&r.threads));
        assert_eq!(ask(&mut d, "ask"), "0 0 0", "{reason}");
        assert_eq!(ask(&mut d, "null"), "null 0", "{reason}");
        assert_eq!(r.owner(), d.child.id() as i32, "kernel mode stays on");
        d.send("quit");
        let (code, err) = d.finish();
        assert_eq!(code, Some(0), "stderr: {err}");
        assert_eq!(
            err,
            format!(
                "cargo-panic runtime: {reason}; no fuse trips\n",
                reason = reason.replace("{}", &r.fuses_pin().display().to_string())
            )
        );
        if usable {
            // Nothing counted in a map the runtime refused.
            assert_eq!(Counts::read(r, 2), Counts::new(2), "{reason}");
        }
    };
    let names: [(usize, &[u8]); 2] = [(0, b"ingest"), (1, b"batch")];

    // Not set up by the loader: no magic.
    let mut r = Run::new(&l);
    r.pin_fuses_with(l.fuses_size, 0, l.table.version_value, 2, &names);
    refused(
        &r,
        "cannot use fuses {}: Bad message (wrong magic: the loader did not set it up)",
    );

    // Another panic_kabi.h.
    let mut r = Run::new(&l);
    r.pin_fuses_with(
        l.fuses_size,
        l.fuses_magic_value,
        l.table.version_value + 1,
        2,
        &names,
    );
    refused(
        &r,
        &format!(
            "cannot use fuses {{}}: Protocol not supported (version {}, this runtime reads \
             version {})",
            l.table.version_value + 1,
            l.table.version_value
        ),
    );

    // Elements of another size.
    let mut r = Run::new(&l);
    r.pin_fuses_with(64, 0, 0, 0, &[]);
    refused(
        &r,
        &format!(
            "cannot use fuses {{}}: Invalid argument (elements of 64 bytes, this runtime reads {})",
            l.fuses_size
        ),
    );

    // Not a map at all.
    let r = Run::new(&l);
    std::fs::create_dir(r.fuses_pin()).expect("mkdir on bpffs");
    refused(&r, "cannot open fuses {}: Permission denied");
}

#[test]
fn a_program_built_without_cargo_panic_never_trips() {
    let h = Harness::new();
    let exe = h.build_plain("plain_fuses");
    let out = run(&mut h.command(&exe));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0 0 0\n");
    // Nothing of cargo-panic was linked in: the weak reference stayed
    // undefined.
    let syms = dynamic_symbols(&exe);
    assert!(
        !syms
            .iter()
            .any(|(name, defined)| name == "panic_fuse" && *defined),
        "{syms:?}"
    );
}

#[test]
fn the_fuse_api_is_exported_from_executables_linked_to_export_it() {
    let h = Harness::new();
    let exported = h.build_args("fuses", "fuses", 4, 4, true, &EXPORT);
    let syms = dynamic_symbols(&exported);
    assert!(
        syms.contains(&(panic_runtime::abi::SYM_FUSE.to_string(), true)),
        "{} not exported: {syms:?}",
        panic_runtime::abi::SYM_FUSE
    );
    assert!(
        !syms.iter().any(|(n, _)| n.starts_with("__panic_")),
        "{syms:?}"
    );
    let mut d = Driver::spawn({
        let mut c = h.command(&exported);
        c.arg("ask");
        c
    });
    assert_eq!(ask(&mut d, "dlsym"), "dlsym 0 0 0");
    d.send("quit");
    assert_eq!(d.finish().0, Some(0));

    // Without the flag, an executable does not export it: dlsym finds
    // nothing (the program's own calls still work).
    let hidden = h.build_args("fuses", "fuses_unexported", 4, 4, true, &[]);
    let syms = dynamic_symbols(&hidden);
    assert!(!syms.iter().any(|(n, _)| n == "panic_fuse"), "{syms:?}");
    let mut d = Driver::spawn({
        let mut c = h.command(&hidden);
        c.arg("ask");
        c
    });
    assert_eq!(ask(&mut d, "dlsym"), "dlsym none");
    assert_eq!(ask(&mut d, "ask"), "0 0 0");
    d.send("quit");
    assert_eq!(d.finish().0, Some(0));
}

/// The cost of one ask in the program, with a full table (PANIC_FUSES
/// entries, the fuse asked for last): printed, never asserted
/// (`cargo test -p panic-runtime --test fuses -- --nocapture fuse_ask_cost`).
#[test]
fn fuse_ask_cost() {
    let s = setup();
    let l = &s.layout;
    let mut r = Run::new(l);
    let mut names: Vec<String> = (0..l.fuses - 1).map(|i| format!("fuse{i:02}")).collect();
    names.push("ingest".to_string());
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    r.pin_fuses(&names);
    r.trip(l.fuses - 1, true);
    let bench = |kthreads: Option<&Path>| {
        let out = run(&mut s.command(&["bench", "20000000", "ingest", "fuse00"], kthreads));
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let with = bench(Some(&r.threads));
    assert!(with.contains(" answer=1 "), "{with}");
    let without = bench(None);
    assert!(without.contains(" answer=0 "), "{without}");
    eprintln!(
        "fuse ask, {} fuses, the one asked for last (ns per ask): {with}",
        l.fuses
    );
    eprintln!("fuse ask, without fuses (ns per ask): {without}");
}
