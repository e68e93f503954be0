//! Small loop, call, thread, sleep and recursion workloads whose probe counts
//! are known in closed form. See README.md for the exact formulas.

use std::hint::black_box;
use std::time::Duration;

/// Does a trivial amount of work so each call is a real, countable call.
#[inline(never)]
fn bump(x: u64) -> u64 {
    black_box(black_box(x).wrapping_mul(3).wrapping_add(1))
}

/// Calls `bump` exactly `n` times from one simple loop.
#[inline(never)]
fn drive_calls(n: u64) -> u64 {
    let n = black_box(n);
    let mut sum = 0u64;
    let mut i = 0u64;
    while i < n {
        sum = sum.wrapping_add(bump(black_box(i)));
        i += 1;
    }
    black_box(sum)
}

/// Runs a single-latch loop with exactly `n` iterations. The rotate and xor
/// on a value passed through `black_box` keep the optimiser from vectorising
/// the loop or replacing it with a closed-form sum.
#[inline(never)]
fn triangle(n: u64) -> u64 {
    let n = black_box(n);
    let mut acc = 0u64;
    let mut i = 0u64;
    while i < n {
        acc = acc.rotate_left(7) ^ black_box(i);
        i += 1;
    }
    black_box(acc)
}

/// Is the per-call unit of work for the `threads` subcommand.
#[inline(never)]
fn work(x: u64) -> u64 {
    let x = black_box(x);
    black_box((x ^ (x >> 3)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60)
}

/// Sleeps for `ms` milliseconds with `std::thread::sleep`.
#[inline(never)]
fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(black_box(ms)));
}

/// Computes Fibonacci numbers by naive recursion. Both results pass through
/// `black_box`, so neither recursive call is in tail position and LLVM cannot
/// turn the recursion into a loop.
#[inline(never)]
fn fib(n: u64) -> u64 {
    let n = black_box(n);
    if n < 2 {
        return n;
    }
    let a = black_box(fib(n - 1));
    let b = black_box(fib(n - 2));
    a + b
}

/// Blocks until standard input is closed, inside its own region, so another
/// process can watch this thread sit in it. Returns the bytes read.
#[inline(never)]
fn wait_for_eof() -> usize {
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).expect("read stdin");
    black_box(buf.len())
}

/// Spawns `t` threads that each call `work` exactly `n` times.
fn run_threads(t: u64, n: u64) -> u64 {
    let handles: Vec<_> = (0..t)
        .map(|k| {
            std::thread::spawn(move || {
                let mut sum = 0u64;
                let mut i = 0u64;
                while i < n {
                    sum = sum.wrapping_add(work(black_box(k * n + i)));
                    i += 1;
                }
                sum
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("worker thread panicked"))
        .fold(0u64, u64::wrapping_add)
}

/// Parses argument `idx` as a number, falling back to `default` when absent.
fn arg(args: &[String], idx: usize, default: u64) -> u64 {
    match args.get(idx) {
        Some(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("loops: argument {idx} ({s:?}) is not a non-negative integer");
            std::process::exit(2)
        }),
        None => default,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cmd = args.get(1).map(String::as_str).unwrap_or("calls");
    match cmd {
        "calls" => {
            let n = arg(&args, 2, 1000);
            println!("calls {n} sum {}", drive_calls(n));
        }
        "iter" => {
            let n = arg(&args, 2, 1000);
            println!("iter {n} acc {}", triangle(n));
        }
        "threads" => {
            let t = arg(&args, 2, 8);
            let n = arg(&args, 3, 1_000_000);
            println!("threads {t} x {n} total {}", run_threads(t, n));
        }
        "sleep" => {
            let k = arg(&args, 2, 10);
            let ms = arg(&args, 3, 20);
            for _ in 0..k {
                nap(ms);
            }
            println!("slept {k}");
        }
        "fib" => {
            let n = arg(&args, 2, 20);
            println!("fib {n} = {}", fib(n));
        }
        "wait" => {
            let n = arg(&args, 2, 1000);
            let sum = drive_calls(n);
            println!("waiting after {n} calls (sum {sum})");
            println!("read {} bytes", wait_for_eof());
        }
        other => {
            eprintln!("usage: loops [calls N | iter N | threads T N | sleep K MS | fib N | wait N] (got {other:?})");
            std::process::exit(2);
        }
    }
}
