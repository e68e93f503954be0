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

/// Where Debian's linux-libc-dev defines the x86-64 system call numbers.
const UNISTD: &str = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";

/// `$OUT_DIR/syscall_names.rs`: `SYSCALL_NAMES: &[(u32, &str)]` from the
/// kernel headers' `#define __NR_<name> <nr>` (empty when the header is
/// absent: the profile then names calls by number).
fn syscall_names(out_dir: &std::path::Path) {
    println!("cargo::rerun-if-changed={UNISTD}");
    let text = std::fs::read_to_string(UNISTD).unwrap_or_default();
    let mut out = String::from("pub const SYSCALL_NAMES: &[(u32, &str)] = &[\n");
    for line in text.lines() {
        let mut w = line.split_whitespace();
        if let (Some("#define"), Some(name), Some(nr)) = (w.next(), w.next(), w.next())
            && let (Some(name), Ok(nr)) = (name.strip_prefix("__NR_"), nr.parse::<u32>())
        {
            out.push_str(&format!("    ({nr}, \"{name}\"),\n"));
        }
    }
    out.push_str("];\n");
    std::fs::write(out_dir.join("syscall_names.rs"), out).expect("cannot write syscall_names.rs");
}

fn main() {
    println!("cargo::rerun-if-changed=src/bpf");
    syscall_names(&PathBuf::from(
        env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"),
    ));
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
