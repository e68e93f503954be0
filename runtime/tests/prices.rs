//! Prices: in kernel mode the runtime maps the price map pinned next to the
//! thread table ("prices", `struct panic_prices` of `bpf/src/bpf/panic_kabi.h`)
//! read-only, and a program reads it through `panic_price` /
//! `panic_price_seq`, which `c/panic.h` wraps (`cargo_panic_price`, 0 without
//! the runtime).
//!
//! The tests that create and pin BPF maps need root and bpffs (mounted at
//! /sys/fs/bpf when it is not there); without them they fail saying what is
//! missing: they never skip.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering, fence};

use common::bpf::{KernelRun, Mapped, TableHead};
use common::{Driver, Harness, LayoutValues, describe, dynamic_symbols, run};

/// The layouts panic_kabi.h defines, printed by the driver (`prices layout`)
/// so that no number is copied by hand.
#[derive(Clone, Debug)]
struct Layout {
    /// `struct panic_kthreads`'s head.
    table: TableHead,
    /// `struct panic_prices`: the price map's value size and fields.
    prices_size: usize,
    prices_magic: usize,
    prices_version: usize,
    n_resources: usize,
    seq: usize,
    updated_ns: usize,
    price: usize,
    price_slots: usize,
    prices_magic_value: u64,
    price_one: u64,
    resources: u64,
}

impl Layout {
    fn from_driver(h: &Harness, exe: &Path) -> Layout {
        let v = LayoutValues::from_driver(h, exe);
        // panic.h's resources are panic_kabi.h's (the runtime also checks
        // this at compile time).
        for r in ["cpu", "memory", "io", "network", "dwell"] {
            assert_eq!(v.get(r), v.get(&format!("res_{r}")), "resource {r}");
        }
        let l = Layout {
            table: TableHead::from_values(&v),
            prices_size: v.at("prices_size"),
            prices_magic: v.at("prices_magic"),
            prices_version: v.at("prices_version"),
            n_resources: v.at("n_resources"),
            seq: v.at("seq"),
            updated_ns: v.at("updated_ns"),
            price: v.at("price"),
            price_slots: v.at("price_slots"),
            prices_magic_value: v.get("prices_magic_value"),
            price_one: v.get("price_one"),
            resources: v.get("resources"),
        };
        assert_eq!(l.prices_size, l.price + l.price_slots * 8);
        // Run writes version and n_resources of the price map as one 8-byte
        // word.
        assert!(l.prices_version.is_multiple_of(8) && l.n_resources == l.prices_version + 4);
        assert!(l.resources as usize <= l.price_slots);
        l
    }
}

/// One run's pins: the thread table and, when asked, a price map next to it
/// ("prices"), for the test to play the controller.
type Run = KernelRun<Layout>;

impl Run {
    fn new(layout: &Layout) -> Run {
        KernelRun::pin_table(&layout.table, "prices", layout.clone())
    }

    fn prices_pin(&self) -> PathBuf {
        self.extra_pin()
    }

    /// The price map, once pinned.
    fn prices(&self) -> Option<&Mapped> {
        self.extra.as_ref()
    }

    /// Pins a price map of `value_size`-byte elements next to the table, as
    /// the loader does: magic, version and n_resources, prices 0, seq 0.
    fn pin_prices_with(&mut self, value_size: usize, magic: u64, version: u64, n_resources: u64) {
        let l = self.layout.clone();
        self.pin_extra(value_size, |map| {
            if value_size == l.prices_size {
                map.u64_at(l.prices_magic).store(magic, Ordering::Relaxed);
                // version and n_resources: two u32s in one word.
                map.u64_at(l.prices_version)
                    .store(version | n_resources << 32, Ordering::Release);
            }
        });
    }

    fn pin_prices(&mut self, n_resources: u64) {
        let l = &self.layout;
        let (size, magic, version) = (l.prices_size, l.prices_magic_value, l.table.version_value);
        self.pin_prices_with(size, magic, version, n_resources);
    }

    fn prices_word(&self, off: usize) -> &AtomicU64 {
        self.extra_word(off)
    }

    fn seq(&self) -> u64 {
        self.prices_word(self.layout.seq).load(Ordering::Acquire)
    }

    /// Starts an update the way the controller does (seq odd), writes the
    /// fixed-point prices given (slot index, value) and, when `finish`,
    /// ends it (seq even). Returns the new seq.
    fn update(&self, prices: &[(usize, u64)], finish: bool) -> u64 {
        let l = &self.layout;
        let seq = self.prices_word(l.seq);
        let s0 = seq.load(Ordering::Relaxed);
        let odd = s0 | 1;
        seq.store(odd, Ordering::Relaxed);
        fence(Ordering::Release);
        for &(i, v) in prices {
            assert!(i < l.price_slots);
            self.prices_word(l.price + 8 * i)
                .store(v, Ordering::Relaxed);
        }
        self.prices_word(l.updated_ns).store(1, Ordering::Relaxed);
        if !finish {
            return odd;
        }
        seq.store(odd + 1, Ordering::Release);
        odd + 1
    }
}

/// The prices driver, built the way the link driver links programs: with
/// the price API exported for dlsym.
type Setup = common::Setup<Layout>;

const EXPORT: [&str; 2] = [
    "-Wl,--export-dynamic-symbol=panic_price",
    "-Wl,--export-dynamic-symbol=panic_price_seq",
];

fn setup() -> Setup {
    Setup::exported("prices", &EXPORT, Layout::from_driver)
}

/// The resources the driver reads: 0-8, 1000 and u32::MAX.
const READ: [u64; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 1000, u32::MAX as u64];

/// One "prices"/"dlsym"/"child" line: the tag, seq and the prices as printed.
#[derive(Debug, PartialEq)]
struct Read {
    tag: String,
    seq: u64,
    prices: Vec<String>,
}

fn parse(line: &str) -> Read {
    let f: Vec<_> = line.split_whitespace().collect();
    assert_eq!(f.len(), 2 + READ.len(), "unexpected line {line:?}");
    Read {
        tag: f[0].to_string(),
        seq: f[1].parse().expect("seq"),
        prices: f[2..].iter().map(|s| (*s).to_string()).collect(),
    }
}

/// What the driver prints for seq `seq` and these prices of resources 0-8
/// (the rest: 0).
fn expect(tag: &str, seq: u64, prices: &[f64]) -> Read {
    Read {
        tag: tag.to_string(),
        seq,
        prices: (0..READ.len())
            .map(|i| format!("{:.6}", prices.get(i).copied().unwrap_or(0.0)))
            .collect(),
    }
}

fn ask(d: &mut Driver, cmd: &str) -> Read {
    d.send(cmd);
    parse(&d.line())
}

fn spawn_read(s: &Setup, kthreads: Option<&Path>) -> Driver {
    s.spawn("read", kthreads)
}

fn fixed(l: &Layout, v: f64) -> u64 {
    (v * l.price_one as f64).round() as u64
}

#[test]
fn programs_read_the_prices_the_controller_writes() {
    let s = setup();
    let l = &s.layout;
    let mut r = Run::new(l);
    r.pin_prices(l.resources);
    // A value past n_resources, and one written outside an update (the
    // loader leaves them 0; the runtime does not rely on it): both read 0.
    r.prices_word(l.price + 8 * l.resources as usize)
        .store(fixed(l, 9.0), Ordering::Relaxed);
    r.prices_word(l.price)
        .store(fixed(l, 8.0), Ordering::Relaxed);
    let mut d = spawn_read(&s, Some(&r.threads));

    // Before the first update: 0 everywhere, seq 0.
    assert_eq!(ask(&mut d, "read"), expect("prices", 0, &[]));
    assert_eq!(r.owner(), d.child.id() as i32, "kernel mode is on");

    // An update: each resource's price, in the program.
    let first = [1.5, 2.0, 0.25, 1234.567891, 0.000001];
    let seq = r.update(
        &first
            .iter()
            .enumerate()
            .map(|(i, &v)| (i, fixed(l, v)))
            .collect::<Vec<_>>(),
        true,
    );
    assert_eq!(seq, 2);
    assert_eq!(ask(&mut d, "read"), expect("prices", 2, &first));
    // The same through what dlsym(RTLD_DEFAULT) finds (the panic-api crate's way).
    assert_eq!(ask(&mut d, "dlsym"), expect("dlsym", 2, &first));

    // The next one moves seq and the prices.
    let second = [0.0, 3.0, 0.25, 7.0, 1.0];
    let seq = r.update(
        &second
            .iter()
            .enumerate()
            .map(|(i, &v)| (i, fixed(l, v)))
            .collect::<Vec<_>>(),
        true,
    );
    assert_eq!(seq, 4);
    assert_eq!(ask(&mut d, "read"), expect("prices", 4, &second));

    // A forked child keeps reading the run's prices.
    assert_eq!(ask(&mut d, "fork"), expect("child", 4, &second));
    assert_eq!(d.line(), "forked\n");

    // A controller stopped in the middle of an update (seq odd for good):
    // the read gives up after a bounded number of tries and returns what
    // it read; it never waits for the writer.
    let seq = r.update(&[(0, fixed(l, 5.0))], false);
    assert_eq!(seq % 2, 1);
    let mut stuck = second;
    stuck[0] = 5.0;
    assert_eq!(ask(&mut d, "read"), expect("prices", seq, &stuck));
    assert_eq!(r.seq(), seq);

    d.send("quit");
    let (code, err) = d.finish();
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(err, "", "prices say nothing when they work");
}

#[test]
fn resources_past_n_resources_read_0() {
    let s = setup();
    let l = &s.layout;
    let mut r = Run::new(l);
    // A loader that prices only three resources, and one that claims more
    // than the map holds (the runtime bounds it by the price array).
    r.pin_prices(3);
    let all: Vec<_> = (0..l.price_slots)
        .map(|i| (i, fixed(l, i as f64 + 1.0)))
        .collect();
    r.update(&all, true);
    let mut d = spawn_read(&s, Some(&r.threads));
    assert_eq!(ask(&mut d, "read"), expect("prices", 2, &[1.0, 2.0, 3.0]));
    d.send("quit");
    let (code, err) = d.finish();
    assert_eq!((code, err.as_str()), (Some(0), ""));

    let mut r = Run::new(l);
    r.pin_prices(1000);
    r.update(&all, true);
    let mut d = spawn_read(&s, Some(&r.threads));
    let every: Vec<f64> = (0..l.price_slots).map(|i| i as f64 + 1.0).collect();
    assert_eq!(ask(&mut d, "read"), expect("prices", 2, &every));
    d.send("quit");
    let (code, err) = d.finish();
    assert_eq!((code, err.as_str()), (Some(0), ""));
}

#[test]
fn a_price_map_the_runtime_cannot_use_is_said_in_one_line_and_reads_0() {
    let s = setup();
    let l = s.layout.clone();
    let refused = |r: &Run, reason: &str| {
        // Prices in the map, which the program must not read.
        if r.prices().is_some() {
            r.update(&[(0, fixed(&l, 2.0)), (1, fixed(&l, 3.0))], true);
        }
        let mut d = spawn_read(&s, Some(&r.threads));
        let got = ask(&mut d, "read");
        assert_eq!(got, expect("prices", 0, &[]), "{reason}");
        assert_eq!(r.owner(), d.child.id() as i32, "kernel mode stays on");
        d.send("quit");
        let (code, err) = d.finish();
        assert_eq!(code, Some(0), "stderr: {err}");
        assert_eq!(
            err,
            format!(
                "cargo-panic runtime: {reason}; every price reads 0\n",
                reason = reason.replace("{}", &r.prices_pin().display().to_string())
            )
        );
    };

    // Not set up by the loader: no magic.
    let mut r = Run::new(&l);
    r.pin_prices_with(l.prices_size, 0, l.table.version_value, l.resources);
    refused(
        &r,
        "cannot use prices {}: Bad message (wrong magic: the loader did not set it up)",
    );

    // Another panic_kabi.h.
    let mut r = Run::new(&l);
    r.pin_prices_with(
        l.prices_size,
        l.prices_magic_value,
        l.table.version_value + 1,
        l.resources,
    );
    refused(
        &r,
        &format!(
            "cannot use prices {{}}: Protocol not supported (version {}, this runtime reads \
             version {})",
            l.table.version_value + 1,
            l.table.version_value
        ),
    );

    // Elements of another size.
    let mut r = Run::new(&l);
    r.pin_prices_with(64, 0, 0, 0);
    refused(
        &r,
        &format!(
            "cannot use prices {{}}: Invalid argument (elements of 64 bytes, this runtime reads {})",
            l.prices_size
        ),
    );

    // Not a map at all.
    let r = Run::new(&l);
    std::fs::create_dir(r.prices_pin()).expect("mkdir on bpffs");
    refused(&r, "cannot open prices {}: Permission denied");
}

#[test]
fn without_a_price_map_prices_read_0_silently() {
    let s = setup();
    // Kernel mode without prices.
    let r = Run::new(&s.layout);
    let mut d = spawn_read(&s, Some(&r.threads));
    assert_eq!(ask(&mut d, "read"), expect("prices", 0, &[]));
    assert_eq!(ask(&mut d, "dlsym"), expect("dlsym", 0, &[]));
    assert_eq!(r.owner(), d.child.id() as i32);
    d.send("quit");
    let (code, err) = d.finish();
    assert_eq!((code, err.as_str()), (Some(0), ""));

    // No kernel mode at all.
    let mut d = spawn_read(&s, None);
    assert_eq!(ask(&mut d, "read"), expect("prices", 0, &[]));
    d.send("quit");
    let (code, err) = d.finish();
    assert_eq!((code, err.as_str()), (Some(0), ""));
}

#[test]
fn a_program_built_without_cargo_panic_reads_0() {
    let h = Harness::new();
    let exe = h.build_plain("plain_prices");
    let out = run(&mut h.command(&exe));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0.000000 0.000000 0.000000 0.000000 0.000000 0\n"
    );
    // Nothing of cargo-panic was linked in: the weak references stayed
    // undefined.
    let syms = dynamic_symbols(&exe);
    assert!(
        !syms
            .iter()
            .any(|(name, defined)| name.starts_with("panic_price") && *defined),
        "{syms:?}"
    );
}

#[test]
fn the_price_api_is_exported_from_executables_linked_to_export_it() {
    let h = Harness::new();
    let exported = h.build_args("prices", "prices", 4, 4, true, &EXPORT);
    let syms = dynamic_symbols(&exported);
    for name in [
        panic_runtime::abi::SYM_PRICE,
        panic_runtime::abi::SYM_PRICE_SEQ,
    ] {
        assert!(
            syms.contains(&(name.to_string(), true)),
            "{name} not exported: {syms:?}"
        );
    }
    // The runtime's other symbols stay hidden.
    assert!(
        !syms.iter().any(|(n, _)| n.starts_with("__panic_")),
        "{syms:?}"
    );
    let mut d = Driver::spawn({
        let mut c = h.command(&exported);
        c.arg("read");
        c
    });
    assert_eq!(ask(&mut d, "dlsym"), expect("dlsym", 0, &[]));
    d.send("quit");
    assert_eq!(d.finish().0, Some(0));

    // Without the flags, an executable does not export them: dlsym finds
    // nothing (the program's own calls still work).
    let hidden = h.build_args("prices", "prices_unexported", 4, 4, true, &[]);
    let syms = dynamic_symbols(&hidden);
    assert!(
        !syms.iter().any(|(n, _)| n.starts_with("panic_price")),
        "{syms:?}"
    );
    let mut d = Driver::spawn({
        let mut c = h.command(&hidden);
        c.arg("read");
        c
    });
    d.send("dlsym");
    assert_eq!(d.line(), "dlsym none\n");
    assert_eq!(ask(&mut d, "read"), expect("prices", 0, &[]));
    d.send("quit");
    assert_eq!(d.finish().0, Some(0));
}

/// The cost of one price read in the program: printed, never asserted
/// (`cargo test -p panic-runtime --test prices -- --nocapture price_read_cost`).
#[test]
fn price_read_cost() {
    let s = setup();
    let l = &s.layout;
    let mut r = Run::new(l);
    r.pin_prices(l.resources);
    r.update(&[(0, fixed(l, 1.25))], true);
    let bench = |kthreads: Option<&Path>| {
        let out = run(&mut s.command(&["bench", "20000000"], kthreads));
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let with = bench(Some(&r.threads));
    assert!(with.contains(" seq=2 cpu=1.250000 "), "{with}");
    let without = bench(None);
    assert!(without.contains(" seq=0 cpu=0.000000 "), "{without}");
    eprintln!("price read, with a price map (ns per read): {with}");
    eprintln!("price read, without one (ns per read): {without}");
}
