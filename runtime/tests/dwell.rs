//! Counting and timing: real C programs linked against the runtime archive,
//! read back through their dump files.

mod common;

use common::{Harness, assert_dump_matches_live, check_hist, describe, run, sites};
use panic_runtime::hist::bucket_index;
use panic_runtime::{ClockKind, Snapshot, State};

/// Runs `exe` with a dump requested and returns the parsed dump.
fn run_and_dump(
    h: &Harness,
    exe: &std::path::Path,
    env: &[(&str, &str)],
) -> (std::process::Output, Snapshot) {
    let dump = h.path(&format!(
        "{}.dump",
        exe.file_name().and_then(|n| n.to_str()).unwrap_or("driver")
    ));
    let mut cmd = h.command(exe);
    cmd.env("CARGO_PANIC_DUMP", &dump).envs(env.iter().copied());
    let out = run(&mut cmd);
    let snap = Snapshot::read(&dump)
        .unwrap_or_else(|e| panic!("dump unreadable: {e}\n{}", describe(&out)));
    for hist in &snap.hists {
        check_hist(hist);
    }
    (out, snap)
}

/// Runs `exe` counting into private memory, then into a shared segment; each
/// time asserts a clean exit and calls `check(shared, dump)`. For the shared
/// run it also asserts that the dump agrees with the live segment, which it
/// returns.
fn run_private_then_shared(
    h: &Harness,
    exe: &std::path::Path,
    check: impl Fn(bool, &Snapshot),
) -> Snapshot {
    let seg = h.path(&format!(
        "{}.seg",
        exe.file_name().and_then(|n| n.to_str()).unwrap_or("driver")
    ));
    let seg_env = [("CARGO_PANIC_SHM", seg.to_str().expect("utf-8 path"))];
    for shared in [false, true] {
        let env: &[(&str, &str)] = if shared { &seg_env } else { &[] };
        let (out, snap) = run_and_dump(h, exe, env);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        check(shared, &snap);
        if shared {
            let live = panic_runtime::Live::open(&seg)
                .and_then(|mut l| l.snapshot())
                .expect("segment");
            assert_dump_matches_live(&snap, &live);
            return live;
        }
    }
    unreachable!("the loop returns in its shared round")
}

#[test]
fn counts_are_exact_across_eight_threads() {
    let h = Harness::new();
    let exe = h.build("counts", 1, 1);
    let (out, snap) = run_and_dump(&h, &exe, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(snap.header.state, State::Exited);
    assert_eq!(snap.header.exit_code, 0);
    assert_eq!(sites(&snap, 1), vec![8_000_000]);
    assert_eq!(snap.hists[0].count, 8_000_000);
    assert_eq!(
        (
            snap.header.abandoned,
            snap.header.depth_over,
            snap.header.threads_over
        ),
        (0, 0, 0)
    );
    // Eight workers, each entered 1,000,000 regions; they exited and gave their slots back.
    assert!(
        snap.header.threads_used >= 8,
        "threads_used {}",
        snap.header.threads_used
    );
    let workers: Vec<_> = snap.threads.iter().filter(|t| t.entered > 0).collect();
    assert_eq!(workers.len(), 8, "{:?}", snap.threads);
    for t in workers {
        assert_eq!(
            (t.tid, t.depth, t.entered, t.cur_site, t.last_exit),
            (0, 0, 1_000_000, None, Some(0))
        );
    }
}

/// Runs the 20 ms sleep driver under the given clock and checks the median.
fn sleep_p50(env: &[(&str, &str)]) -> Snapshot {
    let h = Harness::new();
    let exe = h.build("sleep", 2, 2);
    let (out, snap) = run_and_dump(&h, &exe, env);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(sites(&snap, 2), vec![0, 10]);
    let hist = &snap.hists[1];
    assert_eq!(hist.count, 10);
    assert!(snap.hists[0].is_empty());
    let ms = |ticks: u64| snap.ticks_to_ns(ticks) as f64 / 1e6;
    let p50 = ms(hist.quantile(0.5).expect("not empty"));
    assert!((20.0..=30.0).contains(&p50), "p50 {p50} ms");
    assert!(ms(hist.min) >= 20.0, "min {} ms", ms(hist.min));
    assert!(ms(hist.max) < 1000.0, "max {} ms", ms(hist.max));
    assert!(!hist.demoted, "long regions are never demoted");
    snap
}

#[test]
fn hot_short_regions_are_demoted_unless_adaptive_timing_is_off() {
    let h = Harness::new();
    let exe = h.build("counts", 1, 1);
    let (_, snap) = run_and_dump(&h, &exe, &[]);
    // 8,000,000 regions of a few ns: far below PANIC_DEMOTE_BELOW_NS.
    assert!(snap.hists[0].demoted, "a hot region of a few ns is demoted");
    // The runtime only flags: code that calls it anyway is still timed and counted.
    assert_eq!(snap.hists[0].count, 8_000_000);
    let (_, snap) = run_and_dump(&h, &exe, &[("CARGO_PANIC_ADAPTIVE", "0")]);
    assert!(
        !snap.hists[0].demoted,
        "CARGO_PANIC_ADAPTIVE=0 keeps every region timed"
    );
}

#[test]
fn a_20ms_region_has_a_20ms_median() {
    let snap = sleep_p50(&[]);
    // The run is long enough to calibrate: its own end point is recorded.
    assert!(snap.header.end().is_some());
}

#[test]
fn the_monotonic_clock_can_be_forced() {
    let snap = sleep_p50(&[("CARGO_PANIC_CLOCK", "ns")]);
    assert_eq!(snap.header.clock.kind, ClockKind::Ns);
    assert_eq!(snap.header.clock.tsc0, snap.header.clock.ns0);
}

#[test]
fn nesting_abandoning_and_depth_overflow() {
    let h = Harness::new();
    let exe = h.build("nesting", 4, 4);
    let (out, snap) = run_and_dump(&h, &exe, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tokens 0 1 2\n");
    let hdr = &snap.header;
    assert_eq!((hdr.state, hdr.exit_code), (State::Exited, 3));
    // Site 0: nested pair, outer exit, final open region. Site 3: 70 levels.
    assert_eq!(sites(&snap, 4), vec![3, 3, 2, 70]);
    // Timed: each proper exit once; the abandoned inner regions never; of the
    // 70 levels only the outermost; regions still open at exit not at all.
    let counts: Vec<_> = snap.hists.iter().map(|h| h.count).collect();
    assert_eq!(counts, vec![2, 1, 1, 1]);
    // Two inner regions abandoned by the outer exit, 69 by the deep one.
    assert_eq!(hdr.abandoned, 2 + 69);
    assert_eq!(hdr.depth_over, 70 - 64);
    let main = snap.thread(hdr.pid as u32).expect("the main thread's slot");
    assert_eq!(main.depth, 2);
    assert_eq!(main.frames, vec![0, 1]);
    assert_eq!(main.cur_site, Some(1));
    assert_eq!(main.last_exit, Some(3));
    assert_eq!(main.entered, 3 + 3 + 70 + 2);
}

#[test]
fn threads_without_a_slot_are_counted_not_timed_and_slots_are_reused() {
    let h = Harness::new();
    let exe = h.build("many_threads", 1, 1);
    let (out, snap) = run_and_dump(&h, &exe, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(sites(&snap, 1), vec![270]);
    assert_eq!(snap.header.threads_used, 256);
    assert_eq!(snap.header.threads_over, 4);
    // 256 timed in the first wave, all 10 of the second wave found a freed slot.
    assert_eq!(snap.hists[0].count, 266);
    assert_eq!(snap.threads.len(), 256);
    assert!(snap.threads.iter().all(|t| t.tid == 0 && t.depth == 0));
}

#[test]
fn instrumented_code_before_the_constructor_is_kept() {
    let h = Harness::new();
    let exe = h.build("early", 2, 1);
    run_private_then_shared(&h, &exe, |shared, snap| {
        assert_eq!(sites(snap, 2), vec![4, 2], "shared: {shared}");
        assert_eq!(snap.hists[0].count, 4, "shared: {shared}");
    });
}

#[test]
fn c_and_rust_bucket_indexes_agree() {
    let h = Harness::new();
    // The driver includes the runtime's source to reach its internal index function.
    let exe = h.build_with("bucket_index", 1, 1, false);
    let out = run(&mut h.command(&exe));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut n = 0;
    for line in text.lines() {
        let (v, idx) = line.split_once(' ').expect("two fields");
        let v: u64 = v.parse().expect("value");
        let idx: usize = idx.parse().expect("index");
        assert_eq!(bucket_index(v), idx, "value {v}");
        n += 1;
    }
    assert_eq!(n, 200_001);
}

#[test]
fn counting_probes_in_threads_that_come_and_go_are_exact() {
    let h = Harness::new();
    let exe = h.build("probes", 3, 1);
    let live = run_private_then_shared(&h, &exe, |shared, snap| {
        // 48 workers x 100,000 on site 0, main 3 times on site 1.
        assert_eq!(sites(snap, 3), vec![4_800_000, 3, 0], "shared: {shared}");
        assert_eq!(snap.header.blocks_over, 0);
    });
    // 41 threads at most at once (main and a wave of 40): three chunks of 16
    // blocks, never more, because exited threads hand theirs back.
    assert_eq!(live.header.n_blocks, 48, "{:?}", live.header);
}
