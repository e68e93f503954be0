//! Finds rustc's own LLVM shared library (the one the link driver uses through
//! inkwell) and records the toolchain cargo-panic was built with, so the CLI can
//! refuse a different toolchain with a clear message instead of a loader error.

use std::path::Path;
use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = run(&rustc, &["--print", "sysroot"]);
    let version = run(&rustc, &["-vV"]);
    let field = |name: &str| {
        version
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let lib_dir = Path::new(sysroot.trim()).join("lib");
    // The linker script `libLLVM-<major>-rust-<version>.so` names the real library.
    let mut link_name = None;
    let mut real_file = None;
    for entry in std::fs::read_dir(&lib_dir)
        .expect("read the toolchain's lib dir")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_prefix("lib").and_then(|n| n.strip_suffix(".so"))
            && stem.starts_with("LLVM-")
        {
            link_name = Some(stem.to_string());
        }
        if name.starts_with("libLLVM.so.") {
            real_file = Some(name);
        }
    }
    let link_name = link_name.unwrap_or_else(|| {
        panic!(
            "no libLLVM-*.so in {}: install a rustup toolchain that ships rustc's LLVM",
            lib_dir.display()
        )
    });
    let real_file = real_file.unwrap_or_else(|| panic!("no libLLVM.so.* in {}", lib_dir.display()));
    println!("cargo::rustc-link-search=native={}", lib_dir.display());
    println!("cargo::rustc-link-arg-bin=cargo-panic-link=-l{link_name}");
    println!(
        "cargo::rustc-link-arg-bin=cargo-panic-link=-Wl,-rpath,{}",
        lib_dir.display()
    );
    println!(
        "cargo::rustc-env=CARGO_PANIC_BUILT_RUSTC_RELEASE={}",
        field("release:")
    );
    println!(
        "cargo::rustc-env=CARGO_PANIC_BUILT_RUSTC_COMMIT={}",
        field("commit-hash:")
    );
    println!(
        "cargo::rustc-env=CARGO_PANIC_BUILT_LLVM_VERSION={}",
        field("LLVM version:")
    );
    println!("cargo::rustc-env=CARGO_PANIC_BUILT_HOST={}", field("host:"));
    println!("cargo::rustc-env=CARGO_PANIC_LLVM_LIB={real_file}");
    plugin_source_hash();
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RUSTC");
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("run rustc");
    assert!(out.status.success(), "{cmd} {args:?} failed");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A hash of everything the clang plugin is built from, so `cargo panic` knows
/// whether the plugin it built earlier is still current without running cargo.
fn plugin_source_hash() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in [
        "passes/src",
        "passes/clang-plugin/src",
        "passes/clang-plugin/cpp",
        "runtime/c",
    ] {
        let dir = root.join(dir);
        println!("cargo::rerun-if-changed={}", dir.display());
        for e in std::fs::read_dir(&dir)
            .expect("plugin source dir")
            .flatten()
        {
            files.push(e.path());
        }
    }
    for f in [
        "passes/Cargo.toml",
        "passes/clang-plugin/Cargo.toml",
        "passes/clang-plugin/Cargo.lock",
        "passes/clang-plugin/build.rs",
        "runtime/Cargo.toml",
        "runtime/build.rs",
    ] {
        let f = root.join(f);
        println!("cargo::rerun-if-changed={}", f.display());
        files.push(f);
    }
    files.sort();
    let mut h: u64 = 0xcbf29ce484222325;
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        let name = f
            .strip_prefix(&root)
            .unwrap_or(f)
            .to_string_lossy()
            .into_owned();
        for b in name.bytes().chain([0u8]).chain(bytes).chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    println!("cargo::rustc-env=CARGO_PANIC_PLUGIN_SOURCE_HASH={h:016x}");
    println!(
        "cargo::rustc-env=CARGO_PANIC_PLUGIN_SOURCE_DIR={}",
        root.join("passes/clang-plugin")
            .canonicalize()
            .expect("plugin dir")
            .display()
    );
}
