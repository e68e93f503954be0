//! Deliberate failure modes for testing how a profile survives a crash.
//! Usage: `crashy MODE` where MODE is panic, segv, abort, exit-thread or ok.
//! Every mode first calls `step` exactly 100 times so a profile has counts.

use std::hint::black_box;
use std::sync::mpsc;

/// Number of times every mode calls `step` before it does anything else.
const STEPS: u64 = 100;

/// Does one small unit of countable work.
#[inline(never)]
fn step(i: u64) -> u64 {
    let i = black_box(i);
    black_box(i.wrapping_mul(i).wrapping_add(7))
}

/// Calls `step` exactly `STEPS` times and returns the sum of the results.
#[inline(never)]
fn warm_up() -> u64 {
    let mut sum = 0u64;
    let mut i = 0u64;
    while i < black_box(STEPS) {
        sum = sum.wrapping_add(step(black_box(i)));
        i += 1;
    }
    black_box(sum)
}

/// Writes through a null pointer, which the kernel answers with SIGSEGV.
#[inline(never)]
fn segv() {
    // SAFETY: This is deliberately unsound: the write faults on purpose so
    // that the process is killed by SIGSEGV. A volatile write is used so the
    // compiler keeps the store instead of treating it as unreachable.
    unsafe { std::ptr::write_volatile(black_box(std::ptr::null_mut::<u64>()), 1) };
}

/// Spawns a thread that exits the whole process with code 3 while the main
/// thread blocks on a channel whose sender is alive but never sends.
#[inline(never)]
fn exit_from_thread() -> ! {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(|| std::process::exit(3));
    // The sender stays alive in this frame, so `recv` blocks forever.
    let result = rx.recv();
    drop(tx);
    unreachable!("the channel never receives anything: {result:?}");
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "ok".to_string());
    let sum = warm_up();
    match mode.as_str() {
        "panic" => panic!("crashy: deliberate panic after {STEPS} steps (sum {sum})"),
        "segv" => segv(),
        "abort" => std::process::abort(),
        "exit-thread" => exit_from_thread(),
        "ok" => println!("ok"),
        other => {
            eprintln!("usage: crashy [panic|segv|abort|exit-thread|ok] (got {other:?})");
            std::process::exit(2);
        }
    }
}
