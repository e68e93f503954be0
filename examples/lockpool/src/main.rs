//! A small worker pool: W threads pull J jobs from a mutex-protected queue,
//! process each job, and add the result to a deliberately contended total.
//! Usage: `lockpool [WORKERS] [JOBS]` (defaults 4 and 2000).

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Mutex;

/// Does a little deterministic CPU work for one job and returns its result.
#[inline(never)]
fn process(job: u64) -> u64 {
    let mut x = black_box(job).wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut round = 0u64;
    while round < black_box(64) {
        // One xorshift step per round keeps the work sequential.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        round += 1;
    }
    black_box(x)
}

/// Number of spin rounds `hold` runs while the total lock is held.
const HOLD_ROUNDS: u64 = 5000;

/// Spins for `HOLD_ROUNDS` dependent rounds seeded by `seed` while the caller
/// holds the total lock, so other workers really contend for that lock.
#[inline(never)]
fn hold(seed: u64) -> u64 {
    let rounds = black_box(HOLD_ROUNDS);
    let mut acc = black_box(seed);
    let mut i = 0u64;
    while i < rounds {
        acc = black_box(acc.rotate_left(5) ^ i);
        i += 1;
    }
    black_box(acc)
}

/// Pops jobs until the queue is empty and returns how many this worker did.
#[inline(never)]
fn worker(queue: &Mutex<VecDeque<u64>>, total: &Mutex<u64>) -> u64 {
    let mut done = 0u64;
    loop {
        // The queue guard is dropped at the end of this statement, so the job
        // is processed without holding the queue lock.
        let job = queue.lock().expect("queue lock poisoned").pop_front();
        let Some(job) = job else { break };
        let result = process(black_box(job));
        let mut guard = total.lock().expect("total lock poisoned");
        // The spin result only feeds `black_box`, so the total stays a plain
        // sum of job results that does not depend on scheduling.
        black_box(hold(result));
        *guard = guard.wrapping_add(result);
        drop(guard);
        done += 1;
    }
    black_box(done)
}

/// Parses argument `idx` as a number, falling back to `default` when absent.
fn arg(args: &[String], idx: usize, default: u64) -> u64 {
    match args.get(idx) {
        Some(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("lockpool: argument {idx} ({s:?}) is not a non-negative integer");
            std::process::exit(2)
        }),
        None => default,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let workers = arg(&args, 1, 4);
    let jobs = arg(&args, 2, 2000);

    let queue = Mutex::new((0..jobs).collect::<VecDeque<u64>>());
    let total = Mutex::new(0u64);

    // Scoped threads borrow the two mutexes directly; each returns its count.
    let processed: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| s.spawn(|| worker(&queue, &total)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .sum()
    });

    let total = total.into_inner().expect("total lock poisoned");
    println!("workers {workers} jobs {jobs}");
    println!("processed {processed}");
    println!("total {total}");
}
