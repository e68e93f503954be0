//! Compiles the C++ shim against Debian's LLVM 19 headers (`llvm-config-19`).

use std::process::Command;

fn main() {
    let config = std::env::var("LLVM_CONFIG").unwrap_or_else(|_| "llvm-config-19".into());
    let out = Command::new(&config).arg("--cxxflags").output().unwrap_or_else(|e| {
        panic!("cannot run `{config}` ({e}): install llvm-19-dev (apt-get install clang-19 llvm-19-dev)")
    });
    assert!(out.status.success(), "`{config} --cxxflags` failed");
    let version = Command::new(&config)
        .arg("--version")
        .output()
        .expect("llvm-config --version");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let mut build = cc::Build::new();
    build.cpp(true).file("cpp/shim.cpp").warnings(false);
    if Command::new("clang++-19").arg("--version").output().is_ok() {
        build.compiler("clang++-19");
    }
    for flag in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        build.flag(flag);
    }
    build.compile("panic_plugin_shim");
    println!("cargo::rustc-env=PANIC_PLUGIN_LLVM_VERSION={version}");
    println!("cargo::rerun-if-changed=cpp/shim.cpp");
    println!("cargo::rerun-if-env-changed=LLVM_CONFIG");
}
