//! What a program sees of cargo-panic's prices and fuses, through `panic-api`.
//!
//! `prices` prints one line; `prices watch N` prints it for each of the next N
//! lines on stdin (so a test can change the prices between two reads).

use std::io::BufRead;

use cargo_panic::{Resource, instrumented, price, prices_seq};

fn line() -> String {
    format!(
        "instrumented={} cpu={} memory={} seq={} fuse={}",
        instrumented(),
        price(Resource::Cpu),
        price(Resource::Memory),
        prices_seq(),
        cargo_panic::fuse!("ingest")
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => println!("{}", line()),
        ["watch", n] if n.parse::<u64>().is_ok() => {
            let mut stdin = std::io::stdin().lock().lines();
            for _ in 0..n.parse::<u64>().unwrap() {
                if stdin.next().is_none() {
                    break;
                }
                println!("{}", line());
            }
        }
        _ => {
            eprintln!("usage: prices [watch N]");
            std::process::exit(2);
        }
    }
}
