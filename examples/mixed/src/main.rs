//! A Rust program calling C compiled by the `cc` crate: one profile holds both
//! languages' sites (see README.md for the counts).

unsafe extern "C" {
    fn native_sum(n: u64) -> u64;
}

#[inline(never)]
fn rust_side(calls: u64, n: u64) -> u64 {
    let mut total = 0u64;
    for _ in 0..calls {
        // SAFETY: a pure C function over integers.
        total = total.wrapping_add(unsafe { native_sum(std::hint::black_box(n)) });
    }
    total
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().expect("a number"));
    let calls = args.next().unwrap_or(3);
    let n = args.next().unwrap_or(100);
    println!("mixed: {}", rust_side(calls, n));
}
