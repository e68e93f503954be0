//! Compiles `src/bpf/panic.bpf.c` with clang (`-target bpf`) and generates its
//! libbpf-rs skeleton, `$OUT_DIR/panic.skel.rs`. The types the kernel and user
//! space share come from `src/bpf/panic_kabi.h` through that skeleton.

use std::env;
use std::path::PathBuf;
use std::process::Command;

use libbpf_cargo::SkeletonBuilder;

const SOURCE: &str = "src/bpf/panic.bpf.c";

/// The clang that compiles BPF: `$CLANG`, else Debian's clang-19, else `clang`.
fn clang() -> PathBuf {
    if let Some(c) = env::var_os("CLANG") {
        return PathBuf::from(c);
    }
    for name in ["clang-19", "clang"] {
        if Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return PathBuf::from(name);
        }
    }
    panic!(
        "panic-bpf needs clang to compile its eBPF programs and found none \
         (tried $CLANG, clang-19, clang): run scripts/install-deps.sh"
    );
}

fn main() {
    println!("cargo::rerun-if-changed=src/bpf");
    println!("cargo::rerun-if-env-changed=CLANG");
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("panic.skel.rs");
    if let Err(e) = SkeletonBuilder::new()
        .source(SOURCE)
        .clang(clang())
        // v3: atomic fetch-and-add on map values.
        .clang_args(["-Isrc/bpf", "-mcpu=v3", "-Wall", "-Werror"])
        .build_and_generate(&out)
    {
        panic!("building the eBPF programs failed: {e:#}");
    }
}
