//! Deliberate failure modes for testing how a profile survives a crash.
//! Usage: `crashy MODE` where MODE is panic, segv, abort, exit-thread, unwrap,
//! index, recurse, deadlock or ok.
//! Every mode first calls `step` exactly 100 times so a profile has counts.

use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex, mpsc};

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

/// A user record, as `find_user` would return it.
#[derive(Debug)]
struct User {
    name: String,
}

/// Looks a user up by id: there are no users, so always `None`.
#[inline(never)]
fn find_user(id: u64) -> Option<User> {
    black_box(id);
    None
}

/// Unwraps `find_user`'s answer: panics with "called `Option::unwrap()` on a
/// `None` value".
#[inline(never)]
fn lookup(id: u64) -> usize {
    find_user(black_box(id)).unwrap().name.len()
}

/// Indexes a 4-element array at `i` (a run-time value): panics with "index
/// out of bounds" for `i >= 4`.
#[inline(never)]
fn element(i: usize) -> u8 {
    let table = black_box([1u8, 2, 3, 4]);
    table[black_box(i)]
}

/// Recurses with no base case, 512 bytes of `pad` per call, until the main
/// thread's stack overflows. `black_box` keeps the call from becoming a loop.
#[inline(never)]
#[allow(unconditional_recursion)]
fn descend(depth: u64, pad: &mut [u8; 512]) -> u64 {
    pad[(depth % 512) as usize] = depth as u8;
    let mut inner = black_box([0u8; 512]);
    let below = descend(black_box(depth + 1), &mut inner);
    black_box(below.wrapping_add(u64::from(pad[(depth * 7 % 512) as usize])))
}

/// Takes `first`, waits until the other worker holds its first lock too,
/// then takes `second`: with the other worker taking them in the opposite
/// order, neither ever gets its second lock.
#[inline(never)]
fn take_both(first: &Mutex<u64>, second: &Mutex<u64>, both_hold_one: &Barrier) -> u64 {
    let a = first.lock().unwrap();
    both_hold_one.wait();
    let b = second.lock().unwrap();
    *a + *b
}

/// Two threads take two mutexes in opposite orders: a deadlock; the
/// process never ends.
#[inline(never)]
fn deadlock() -> u64 {
    let (x, y) = (Arc::new(Mutex::new(1)), Arc::new(Mutex::new(2)));
    let barrier = Arc::new(Barrier::new(2));
    let (x2, y2, b2) = (x.clone(), y.clone(), barrier.clone());
    let other = std::thread::spawn(move || take_both(&y2, &x2, &b2));
    let mine = take_both(&x, &y, &barrier);
    mine + other.join().unwrap()
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "ok".to_string());
    let sum = warm_up();
    match mode.as_str() {
        "panic" => panic!("crashy: deliberate panic after {STEPS} steps (sum {sum})"),
        "segv" => segv(),
        "abort" => std::process::abort(),
        "exit-thread" => exit_from_thread(),
        "unwrap" => println!("{}", lookup(42)),
        "index" => println!("{}", element(7)),
        "recurse" => println!("{}", descend(0, &mut [0u8; 512])),
        "deadlock" => println!("{}", deadlock()),
        "ok" => println!("ok"),
        other => {
            eprintln!(
                "usage: crashy [panic|segv|abort|exit-thread|unwrap|index|recurse|deadlock|ok] (got {other:?})"
            );
            std::process::exit(2);
        }
    }
}
