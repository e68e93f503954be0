//! How a program ends (exit, exit from another thread, fatal signals), the
//! shared segment read while the program runs, and fork.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use common::{Harness, assert_dump_matches_live, check_hist, describe, run, sites, wait_limited};
use panic_runtime::{Live, SegmentError, Snapshot, State};

/// Starts a driver that writes into segment `seg` and dumps to `dump`, with
/// stdin and stdout piped, and waits for its first line (the driver's "ready").
fn spawn_until_ready(
    mut cmd: std::process::Command,
    seg: &std::path::Path,
    dump: &std::path::Path,
) -> (std::process::Child, String) {
    let mut child = cmd
        .env("CARGO_PANIC_SHM", seg)
        .env("CARGO_PANIC_DUMP", dump)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read the ready line");
    (child, line)
}

/// Lets a driver started by [`spawn_until_ready`] go on (a line on its stdin)
/// and waits for it, boundedly.
fn release(child: &mut std::process::Child) -> std::process::ExitStatus {
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(b"go\n")
        .expect("release the driver");
    wait_limited(child)
}

/// Parses the `<word> <tid>` line a driver prints.
fn printed_tid(stdout: &[u8], word: &str) -> u32 {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix(word)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no `{word} <tid>` line in {text:?}"))
}

/// Runs the crash driver in `mode` with a dump requested.
fn crash(mode: &str) -> (std::process::Output, Snapshot) {
    let h = Harness::new();
    let exe = h.build("crash", 4, 2);
    let dump = h.path("crash.dump");
    let out = run(h.command(&exe).arg(mode).env("CARGO_PANIC_DUMP", &dump));
    let snap = Snapshot::read(&dump)
        .unwrap_or_else(|e| panic!("dump unreadable: {e}\n{}", describe(&out)));
    for hist in &snap.hists {
        check_hist(hist);
    }
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("survived"),
        "{}",
        describe(&out)
    );
    // Everything before the crash is in the dump, and only the dump is left.
    assert_eq!(snap.counters[0], 5);
    assert_eq!(snap.counters[2], 1);
    let leftovers: Vec<_> = std::fs::read_dir(h.dir.path())
        .expect("list the temp dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary dump files left: {leftovers:?}"
    );
    (out, snap)
}

/// Checks a dump of a program killed by `signal` taken in thread `tid`.
fn assert_signaled(out: &std::process::Output, snap: &Snapshot, signal: i32, tid: u32) {
    assert_eq!(out.status.signal(), Some(signal), "{}", describe(out));
    let hdr = &snap.header;
    assert_eq!(
        (hdr.state, hdr.signal, hdr.signal_tid),
        (State::Signaled, signal, tid)
    );
    assert!(hdr.end().is_some(), "no end point recorded");
    // The faulting thread's open region is visible.
    let t = snap.thread(tid).expect("the signaled thread's slot");
    assert!(t.depth >= 1 && t.cur_site.is_some(), "{t:?}");
}

#[test]
fn dump_on_sigsegv_from_a_null_write() {
    let (out, snap) = crash("segv");
    let main = printed_tid(&out.stdout, "main");
    assert_signaled(&out, &snap, libc::SIGSEGV, main);
    assert_eq!(snap.header.fault_addr, 16);
    assert_eq!(snap.header.pid as u32, main);
    assert_eq!(snap.thread(main).expect("main").frames, vec![2]);
}

/// A program that installs its own SIGSEGV handler keeps it: the runtime
/// records the fault first, then hands the signal to the program's handler
/// (the program saw SIG_DFL before its own, as without the runtime).
#[test]
fn the_programs_own_fault_handler_runs_after_the_record() {
    let (out, snap) = crash("own-handler-segv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("old default"), "{}", describe(&out));
    assert!(stdout.contains("own handler"), "{}", describe(&out));
    assert_eq!(out.status.code(), Some(42), "{}", describe(&out));
    let hdr = &snap.header;
    assert_eq!((hdr.state, hdr.signal, hdr.fault_addr), (State::Signaled, libc::SIGSEGV, 16));
}

#[test]
fn dump_on_abort() {
    let (out, snap) = crash("abort");
    assert_signaled(&out, &snap, libc::SIGABRT, printed_tid(&out.stdout, "main"));
}

#[test]
fn a_raised_sigsegv_is_raised_again_after_the_dump() {
    // si_code <= 0: returning would not fault again, so the handler re-raises.
    let (out, snap) = crash("raise-segv");
    assert_signaled(&out, &snap, libc::SIGSEGV, printed_tid(&out.stdout, "main"));
}

#[test]
fn dump_on_main_thread_stack_overflow() {
    // Needs the alternate signal stack the constructor gives the main thread.
    let (out, snap) = crash("overflow");
    assert_signaled(&out, &snap, libc::SIGSEGV, printed_tid(&out.stdout, "main"));
    // The fault is just below the stack pointer the handler recorded.
    let (addr, sp) = (snap.header.fault_addr, snap.header.fault_sp);
    assert!(addr <= sp + 4096 && sp - addr < 1 << 20, "fault {addr:#x}, sp {sp:#x}");
}

#[test]
fn dump_on_stack_overflow_of_a_main_thread_without_a_slot() {
    // Only the constructor's alternate stack is there to run the handler on.
    let (out, snap) = crash("bare-overflow");
    let main = printed_tid(&out.stdout, "main");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSEGV),
        "{}",
        describe(&out)
    );
    assert_eq!(
        (snap.header.state, snap.header.signal_tid),
        (State::Signaled, main)
    );
    assert!(snap.thread(main).is_none());
}

#[test]
fn dump_on_stack_overflow_in_another_thread() {
    // Needs the alternate signal stack a thread gets with its slot.
    let (out, snap) = crash("thread-overflow");
    let thread = printed_tid(&out.stdout, "thread");
    assert_ne!(thread, printed_tid(&out.stdout, "main"));
    assert_signaled(&out, &snap, libc::SIGSEGV, thread);
    assert_eq!(snap.counters[3], 1);
    assert_eq!(snap.thread(thread).expect("thread").cur_site, Some(3));
}

#[test]
fn dump_on_exit_from_a_second_thread() {
    let h = Harness::new();
    let exe = h.build("exit_thread", 3, 2);
    let dump = h.path("exit.dump");
    let out = run(h.command(&exe).env("CARGO_PANIC_DUMP", &dump));
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let snap = Snapshot::read(&dump).expect("dump");
    assert_eq!(
        (snap.header.state, snap.header.exit_code),
        (State::Exited, 7)
    );
    assert_eq!(sites(&snap, 3), vec![0, 1, 1]);
    let worker = snap
        .thread(printed_tid(&out.stdout, "worker"))
        .expect("worker slot");
    assert_eq!((worker.depth, worker.cur_site), (1, Some(2)));
    let main = snap.thread(snap.header.pid as u32).expect("main slot");
    assert_eq!((main.depth, main.cur_site), (1, Some(1)));
}

#[test]
fn live_segment_is_readable_while_the_program_runs() {
    let h = Harness::new();
    let exe = h.build("live", 4, 1);
    let seg = h.path("live.seg");
    let dump = h.path("live.dump");
    let (mut child, line) = spawn_until_ready(h.command(&exe), &seg, &dump);
    let fields: Vec<_> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "unexpected line {line:?}");
    assert_eq!(fields[0], "ready", "unexpected line {line:?}");
    // The runtime took both variables out of the environment children inherit.
    assert_eq!(&fields[2..], ["shm-unset", "dump-unset"]);
    let tid: u32 = fields[1].parse().expect("tid");

    let mut live = Live::open(&seg).expect("open the segment");
    let snap = live.snapshot().expect("live snapshot");
    assert_eq!(snap.header.state, State::Running);
    assert_eq!(snap.header.pid as u32, child.id());
    assert_eq!(snap.header.end(), None);
    assert_eq!(sites(&snap, 4), vec![0, 5, 1, 0]);
    let t = snap.thread(tid).expect("the thread's slot");
    assert_eq!((t.depth, t.cur_site, t.entered), (1, Some(2), 1));
    assert_eq!(t.frames, vec![2]);
    assert!(snap.hists[0].is_empty());
    // No dump while running.
    assert!(!dump.exists());

    assert_eq!(release(&mut child).code(), Some(0));

    // The same mapping now shows the end, and the dump agrees with it.
    let end = live.snapshot().expect("final snapshot");
    assert_eq!((end.header.state, end.header.exit_code), (State::Exited, 0));
    assert_eq!(end.hists[0].count, 1);
    check_hist(&end.hists[0]);
    let t = end.thread(tid).expect("slot");
    assert_eq!((t.depth, t.cur_site, t.last_exit), (0, None, Some(2)));
    assert_dump_matches_live(&Snapshot::read(&dump).expect("dump"), &end);
}

#[test]
fn an_unmappable_segment_falls_back_to_private_memory_with_one_line() {
    let h = Harness::new();
    let exe = h.build("early", 2, 1);
    let seg = h.path("missing-dir/seg");
    let dump = h.path("fallback.dump");
    let out = run(h
        .command(&exe)
        .env("CARGO_PANIC_SHM", &seg)
        .env("CARGO_PANIC_DUMP", &dump));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "cargo-panic runtime: cannot map shared segment {}: No such file or directory; \
             profiling into private memory\n",
            seg.display()
        )
    );
    let snap = Snapshot::read(&dump).expect("dump");
    assert_eq!(sites(&snap, 2), vec![4, 2]);
}

#[test]
fn a_forked_child_neither_counts_into_the_segment_nor_dumps() {
    let h = Harness::new();
    let exe = h.build("fork", 3, 3);
    let seg = h.path("fork.seg");
    let dump = h.path("fork.dump");
    let out = run(h
        .command(&exe)
        .arg(&dump)
        .env("CARGO_PANIC_SHM", &seg)
        .env("CARGO_PANIC_DUMP", &dump));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let live = Live::open(&seg)
        .and_then(|mut l| l.snapshot())
        .expect("segment");
    assert_eq!(sites(&live, 3), vec![1, 0, 1]);
    assert_eq!(
        live.hists.iter().map(|h| h.count).collect::<Vec<_>>(),
        vec![1, 0, 1]
    );
    let snap = Snapshot::read(&dump).expect("dump");
    assert_dump_matches_live(&snap, &live);
    assert_eq!(snap.header.state, State::Exited);
}

#[test]
fn a_segment_file_not_yet_set_up_is_not_ready() {
    let h = Harness::new();
    let seg = h.path("empty.seg");
    std::fs::File::create(&seg).expect("create");
    let err = Live::open(&seg)
        .expect("open")
        .snapshot()
        .expect_err("empty file");
    assert!(matches!(err, SegmentError::NotReady { .. }), "{err}");
}

#[test]
fn a_live_reader_sees_the_counts_of_running_threads() {
    let h = Harness::new();
    let exe = h.build("probes", 3, 1);
    let seg = h.path("probes-live.seg");
    let dump = h.path("probes-live.dump");
    let mut cmd = h.command(&exe);
    cmd.arg("park");
    let (mut child, line) = spawn_until_ready(cmd, &seg, &dump);
    assert_eq!(line, "ready\n");

    // The workers exited (their counts were folded into the shared counters);
    // the parked thread's 7 and main's 3 are still in their own blocks.
    let mut live = Live::open(&seg).expect("open the segment");
    let snap = live.snapshot().expect("live snapshot");
    assert_eq!(snap.header.state, State::Running);
    assert_eq!(sites(&snap, 3), vec![4_800_000, 3, 7]);

    assert_eq!(release(&mut child).code(), Some(0));
    let end = live.snapshot().expect("final snapshot");
    assert_eq!(sites(&end, 3), vec![4_800_000, 3, 7]);
    assert_dump_matches_live(&Snapshot::read(&dump).expect("dump"), &end);
}
