//! C and C++: `cargo panic cc -- <build command>`, the compiler wrappers it
//! installs as `CC`/`CXX`, and `plugin-path` / `cflags` / `ldflags` for builds
//! integrated by hand.
//!
//! The wrappers are this binary under the names `cargo-panic-cc` and
//! `cargo-panic-c++` (symlinks in cargo-panic's home, so a build system that
//! caches the compiler path, like CMake, keeps a path that stays valid). A compile
//! gets the plugin; a link gets the runtime archive last (an executable also
//! exports the runtime's price API) and, once it succeeded,
//! `<output>.panic.json` derived from the linked file. With `--sanitize`,
//! both also get clang's sanitizer flags ([`sanitizers`] says how the
//! sanitizers and the runtime share a process).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use cargo_panic_core::ccargs::{self, CcLine};
use cargo_panic_core::clang;
use cargo_panic_core::manifest::{self, Input, Manifest};
use cargo_panic_core::{env, fsutil, linkargs, linked};
use object::Object;
use panic_passes::plugin_env;

pub const WRAPPER_CC: &str = "cargo-panic-cc";
pub const WRAPPER_CXX: &str = "cargo-panic-c++";

/// `cargo panic plugin-path`
pub fn plugin_path() -> Result<i32> {
    let clang = clang::check_compiler(&clang::default_compiler(false), "clang")?;
    println!("{}", clang::ensure_plugin(&clang, false)?.display());
    Ok(0)
}

/// `cargo panic cflags`: what a compile needs (put it before your own flags).
pub fn cflags() -> Result<i32> {
    let clang = clang::check_compiler(&clang::default_compiler(false), "clang")?;
    println!(
        "-fpass-plugin={} -idirafter {}",
        clang::ensure_plugin(&clang, false)?.display(),
        clang::user_include_dir(&clang::home()?.join("runtime"))?.display()
    );
    Ok(0)
}

/// `cargo panic ldflags`: what a link needs (put it after every object). Only
/// the runtime archive, as one path: callers pass it as one argument (the
/// tests do), and it goes to shared-library links and to any linker alike.
/// Exporting the price API, as the wrappers do, is left to the user (README).
pub fn ldflags() -> Result<i32> {
    println!(
        "{}",
        clang::runtime_archive(&clang::home()?.join("runtime"))?.display()
    );
    Ok(0)
}

/// What one wrapped link reports to `cargo panic cc`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LinkRecord {
    pub output: PathBuf,
    pub manifest: PathBuf,
    pub sites: usize,
    pub shared: bool,
    /// Inputs with code that were not compiled through the plugin.
    pub uninstrumented: Vec<String>,
}

pub struct CcOptions {
    pub out: Option<PathBuf>,
    pub uninstrumented_on_error: bool,
    pub rule_json: String,
    /// `--sanitize` values as given (each may be a comma list).
    pub sanitize: Vec<String>,
}

/// The sanitizers `--sanitize` accepts, in clang's spelling, with the
/// `libclang_rt` library a link needs for each.
const SANITIZERS: &[(&str, &str)] = &[
    ("address", "asan"),
    ("undefined", "ubsan_standalone"),
    ("thread", "tsan"),
];

/// `--sanitize` values (each may be a comma list) as one list in the order
/// given, without repeats. Refuses any other name (only these three were
/// checked with the runtime, below) and address with thread, which clang
/// refuses.
///
/// Sanitizers and the runtime (found with ASan, UBSan and TSan builds of
/// examples/c-bugs, c-threads and a C++ std::thread program, run under
/// `cargo panic run`):
/// - Clang links the sanitizer's runtime before every object (whole-archive),
///   so where it and the runtime both define a function weakly, the
///   sanitizer's wins. For the C library calls the runtime wraps to inject
///   faults (`read`, `write`, `fwrite`, ...) that is what we want: the
///   interceptor checks the call and forwards it to the C library
///   (dlsym(RTLD_NEXT)), past the runtime's wrapper. The cost, accepted:
///   errno fault rules do not fire on calls a sanitizer intercepts, and since
///   the runtime's definitions are hidden, the symbol ends up hidden, so
///   shared libraries call the C library's directly (those calls go
///   unchecked by ASan, and unseen by TSan).
/// - `pthread_create` is the exception: with ASan's or TSan's, a thread
///   counted into the shared counters until its first timed region, and lost
///   counts to races (8 threads, 800000 calls of an untimed function: 10 to
///   40% missing). So executables with either get
///   `--defsym=pthread_create=__panic_sanitized_pthread_create`: the
///   runtime's, which gives the thread its block and starts it through the
///   sanitizer's interceptor (panic_runtime.c). It stays exported, so
///   `std::thread` in libstdc++ goes through it too, and the sanitizer still
///   sees every thread (its reports name them).
/// - A fatal signal reaches the runtime's handler first (it is installed
///   after the sanitizer's, which lets a program handle SIGSEGV): it records
///   the signal in the segment and restores the previous handler, the
///   sanitizer's, which prints its report (`SEGV on unknown address`,
///   `stack-overflow`) and exits 1. The profile says `signaled` with the
///   signal, and the exit code is 1.
/// - A report that is not a signal (heap-use-after-free, double free, heap
///   overflow) ends the process with the sanitizer's own `_exit(1)`: no exit
///   handler runs, so the profile's runtime state stays `running` (ended
///   without exit handlers), with every count, which `cargo panic run` reads
///   from the shared segment.
/// - The counter arrays live in the `panic_counters` section, which ASan
///   does not pad with redzones (a section named like a C identifier), so
///   the runtime's layout check still holds.
pub fn sanitizers(values: &[String]) -> Result<Vec<&'static str>> {
    let mut out: Vec<&'static str> = Vec::new();
    for name in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        let Some(&(known, _)) = SANITIZERS.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = SANITIZERS.iter().map(|(n, _)| *n).collect();
            let what = if name.is_empty() {
                "an empty sanitizer name (a stray comma?)".to_string()
            } else {
                format!("unknown sanitizer `{name}`")
            };
            bail!(
                "{what} in --sanitize: cargo panic cc supports {}",
                known.join(", ")
            );
        };
        if !out.contains(&known) {
            out.push(known);
        }
    }
    if out.contains(&"address") && out.contains(&"thread") {
        bail!(
            "--sanitize address and thread cannot be combined: ASan and TSan each lay out their own \
             shadow memory, and clang refuses -fsanitize=address,thread; build once with each"
        );
    }
    Ok(out)
}

/// Fails, saying which package to install, unless `clang` has the runtime
/// library of every sanitizer in `list` (Debian ships them apart from clang).
fn check_sanitizer_runtimes(clang: &Path, list: &[&str]) -> Result<()> {
    for name in list {
        let lib = SANITIZERS
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| *l)
            .unwrap_or(name);
        let file = format!("libclang_rt.{lib}-{}.a", std::env::consts::ARCH);
        let found = Command::new(clang)
            .arg(format!("-print-file-name={file}"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .is_some_and(|p| p.is_absolute() && p.is_file());
        if !found {
            bail!(
                "--sanitize {name} needs clang {}'s sanitizer runtime ({file}), which {} cannot find: \
                 install libclang-rt-{}-dev (scripts/install-deps.sh does)",
                clang::CLANG_MAJOR,
                clang.display(),
                clang::CLANG_MAJOR
            );
        }
    }
    Ok(())
}

/// `cargo panic cc [--out DIR] -- <command...>`
pub fn cc(opts: &CcOptions, command: &[String]) -> Result<i32> {
    // Before anything is built: a bad --sanitize would fail every compile.
    let sanitize = sanitizers(&opts.sanitize)?;
    let (cc_path, cxx_path) = real_compilers()?;
    let clang = clang::check_compiler(&cc_path, "CC")?;
    let clangxx = clang::check_compiler(&cxx_path, "CXX")?;
    if clangxx.version != clang.version {
        bail!(
            "CC is clang {} but CXX is clang {}: use the same clang {} for both",
            clang.version,
            clangxx.version,
            clang::CLANG_MAJOR
        );
    }
    check_sanitizer_runtimes(&clang.path, &sanitize)?;
    let plugin = clang::ensure_plugin(&clang, false)?;
    let home = clang::home()?;
    let runtime = clang::runtime_archive(&home.join("runtime"))?;
    let (wcc, wcxx) = install_wrappers(&home)?;
    if let Some(out) = &opts.out {
        std::fs::create_dir_all(out)
            .with_context(|| format!("cannot create the --out directory {}", out.display()))?;
    }
    let log = tempfile::Builder::new()
        .prefix("cargo-panic-cc-")
        .tempdir()
        .context("failed to create a temporary directory")?;

    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("CC", &wcc)
        .env("CXX", &wcxx)
        .env(env::REAL_CC, &clang.path)
        .env(env::REAL_CXX, &clangxx.path)
        .env(env::PLUGIN, &plugin)
        .env(env::RUNTIME, &runtime)
        .env(env::CC_LOG, log.path())
        .env(plugin_env::RULE, &opts.rule_json);
    // LLVM 19's binutils, unless the user chose: GNU ar cannot index archives
    // of LLVM 19 bitcode (-flto), llvm-ar handles native objects as well.
    for (var, tool) in [
        ("AR", "llvm-ar-19"),
        ("RANLIB", "llvm-ranlib-19"),
        ("NM", "llvm-nm-19"),
    ] {
        if std::env::var_os(var).is_none()
            && let Some(p) = clang::which(tool)
        {
            cmd.env(var, p);
        }
    }
    if opts.uninstrumented_on_error {
        cmd.env(plugin_env::ON_ERROR, plugin_env::ON_ERROR_UNINSTRUMENTED);
    }
    if sanitize.is_empty() {
        cmd.env_remove(env::SANITIZE);
    } else {
        cmd.env(env::SANITIZE, sanitize.join(","));
    }
    let status = cmd
        .status()
        .with_context(|| format!("failed to run the build command `{}`", command[0]))?;

    let mut records: Vec<LinkRecord> = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(log.path())?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for e in entries {
        if let Ok(r) = fsutil::read_json::<LinkRecord>(&e) {
            records.push(r);
        }
    }
    for r in &records {
        eprintln!(
            "cargo-panic: {} {} ({} sites, manifest {})",
            if r.shared {
                "shared library"
            } else {
                "executable"
            },
            r.output.display(),
            r.sites,
            r.manifest.display()
        );
    }
    if let Some(out) = &opts.out {
        for r in &records {
            if let Some(name) = r.manifest.file_name()
                && let Ok(bytes) = std::fs::read(&r.manifest)
            {
                fsutil::write_atomic(&out.join(name), &bytes)?;
            }
        }
        fsutil::write_json_atomic(&out.join("links.json"), &records)?;
    }
    let code = cargo_panic_core::exit_code(status);
    if code != 0 {
        eprintln!("cargo-panic: the build command failed ({status})");
    } else if records.is_empty() {
        eprintln!(
            "cargo-panic: warning: the build linked nothing through the wrappers (was it up to date, \
             or does it ignore CC/CXX?); run its clean step first"
        );
    }
    Ok(code)
}

/// The compilers a build should use: the user's CC/CXX when set, else clang-19.
fn real_compilers() -> Result<(PathBuf, PathBuf)> {
    let pick = |var: &str, cxx: bool| -> PathBuf {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => {
                let first = v.split_whitespace().next().unwrap_or_default().to_string();
                clang::which(&first).unwrap_or_else(|| PathBuf::from(first))
            }
            _ => clang::default_compiler(cxx),
        }
    };
    Ok((pick("CC", false), pick("CXX", true)))
}

/// Symlinks `cargo-panic-cc` / `cargo-panic-c++` in `<home>/bin/<plugin hash>`
/// to this binary. The directory changes whenever the pass or the runtime ABI
/// does, so a build that caches the compiler's path (the `cc` crate's build
/// scripts rerun when `CC_<target>` changes) recompiles its C with the new
/// plugin instead of linking objects made for another ABI. An older path
/// (cached by CMake, say) stays valid: it is a symlink to the same binary.
pub fn install_wrappers(home: &Path) -> Result<(PathBuf, PathBuf)> {
    let bin = home.join("bin").join(clang::PLUGIN_SOURCE_HASH);
    std::fs::create_dir_all(&bin).with_context(|| format!("failed to create {}", bin.display()))?;
    let me = std::env::current_exe().context("cannot find the cargo-panic executable")?;
    let mut out = Vec::new();
    for name in [WRAPPER_CC, WRAPPER_CXX] {
        let link = bin.join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(me.as_path()) {
            let tmp = bin.join(format!(".{name}.{}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&me, &tmp)?;
            std::fs::rename(&tmp, &link)?;
        }
        out.push(link);
    }
    Ok((out[0].clone(), out[1].clone()))
}

/// The wrapper: argv[0] is `cargo-panic-cc` or `cargo-panic-c++`.
pub fn wrapper(cxx: bool, args: Vec<String>) -> i32 {
    match wrap(cxx, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cargo-panic: error: {e:#}");
            1
        }
    }
}

fn wrap(cxx: bool, args: Vec<String>) -> Result<i32> {
    let real = match std::env::var_os(if cxx { env::REAL_CXX } else { env::REAL_CC }) {
        Some(p) => PathBuf::from(p),
        None => clang::default_compiler(cxx),
    };
    let mut cmd = Command::new(&real);
    if !instrumenting() {
        cmd.args(&args);
        return run(cmd);
    }
    // The `cc` crate adds -flto when rustflags carry -C linker-plugin-lto (which
    // `cargo panic build` uses for its own reasons): build native objects, which
    // carry their sites to the link driver as they are.
    let args: Vec<String> = if std::env::var_os(env::CC_FROM_CARGO).is_some() {
        args.into_iter()
            .filter(|a| !a.starts_with("-flto"))
            .collect()
    } else {
        args
    };
    let line = ccargs::parse(&args);
    // `cargo panic cc --sanitize`: clang's spelling, checked there.
    let sanitizers = std::env::var(env::SANITIZE).unwrap_or_default();
    let sanitize = (!sanitizers.is_empty()).then(|| format!("-fsanitize={sanitizers}"));
    let mut argv: Vec<String> = Vec::with_capacity(args.len() + 6);
    if line.compiles() {
        let plugin = match std::env::var_os(env::PLUGIN) {
            Some(p) => PathBuf::from(p),
            None => clang::ensure_plugin(&clang::check_compiler(&real, "the compiler")?, true)?,
        };
        argv.push(format!("-fpass-plugin={}", plugin.display()));
        // Before the user's flags, so their own -g level wins (a sanitizer's
        // report names files and lines, so it asks for full debug info); and
        // their own -fno-sanitize= can narrow the list.
        if let Some(s) = &sanitize {
            argv.push(s.clone());
            argv.push("-g".into());
        } else {
            argv.push("-gline-tables-only".into());
        }
        // panic.h (the price API); after the user's own -I (-idirafter).
        argv.push("-idirafter".into());
        argv.push(
            clang::user_include_dir(&clang::home()?.join("runtime"))?
                .display()
                .to_string(),
        );
        if let Some(obj) = line.single_object() {
            cmd.env(plugin_env::OBJECT, absolute(Path::new(&obj)));
        }
    }
    argv.extend(args.iter().cloned());
    if sanitize.is_some() && line.compiles() {
        // After the user's flags: the sanitizers' fast unwinder walks frame
        // pointers, and their reports are only as good as those stacks. A
        // call in tail position would leave no frame of its caller (a
        // `free` at the end of a function would show as freed by the
        // function's caller), hence no sibling calls either.
        argv.push("-fno-omit-frame-pointer".into());
        argv.push("-fno-optimize-sibling-calls".into());
    }
    if !line.links() {
        cmd.args(&argv);
        return run(cmd);
    }
    let runtime = match std::env::var_os(env::RUNTIME) {
        Some(p) => PathBuf::from(p),
        None => clang::runtime_archive(&clang::home()?.join("runtime"))?,
    };
    if let Some(s) = &sanitize {
        if !line.compiles() {
            // The sanitizer's runtime (an executable's; a shared library
            // leaves its symbols to the executable that loads it).
            argv.push(s.clone());
        }
        if !line.shared
            && sanitizers
                .split(',')
                .any(|n| n == "address" || n == "thread")
        {
            // ASan and TSan define pthread_create too, and win: the
            // runtime's own, which gives each thread its counter block,
            // takes over and starts threads through their interceptor
            // (panic_runtime.c, `__panic_sanitized_pthread_create`). -u
            // keeps the defsym valid even with no instrumented object.
            let sym = panic_runtime::abi::SYM_SANITIZED_PTHREAD_CREATE;
            argv.push(format!(
                "-Wl,--undefined={sym},--defsym=pthread_create={sym}"
            ));
        }
    }
    if !line.shared {
        // The price API: a C program calls it directly, but code that looks it
        // up at run time (panic-api in a Rust static library, a plugin the
        // program loads) needs it in the executable's dynamic symbol table.
        argv.push(linkargs::export_dynamic(&linkargs::RUNTIME_EXPORTS));
    }
    // Last: its trailer pages must end the data sections.
    argv.push(runtime.display().to_string());
    cmd.args(&argv);
    let status = cmd
        .status()
        .with_context(|| format!("failed to run {}", real.display()))?;
    if !status.success() {
        return Ok(cargo_panic_core::exit_code(status));
    }
    let clang_version = clang::check_compiler(&real, "the compiler")
        .map(|c| c.version)
        .unwrap_or_default();
    write_manifest(&line, &clang_version)?;
    Ok(0)
}

/// Whether this compile or link is instrumented. Under `cargo panic build` the
/// wrapper serves the `cc` crate of every build script; only those building for
/// the instrumented target (whose rustflags name cargo-panic's linker) get the
/// plugin, so host tools and proc-macros link as usual.
fn instrumenting() -> bool {
    if std::env::var_os(env::CC_FROM_CARGO).is_none() {
        return true;
    }
    std::env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| f.contains("cargo-panic-link"))
}

fn run(mut cmd: Command) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    Err(err).context("failed to run the compiler")
}

fn absolute(p: &Path) -> String {
    if p.is_absolute() {
        p.display().to_string()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    }
}

fn write_manifest(line: &CcLine, clang_version: &str) -> Result<()> {
    let output = PathBuf::from(line.link_output());
    let linked = linked::read(&output)?;
    let mut inputs: Vec<Input> = line
        .sources
        .iter()
        .map(|s| Input {
            name: s.clone(),
            format: "source".into(),
            instrumented: true,
            sites: 0,
            note: None,
        })
        .collect();
    for i in &line.link_inputs {
        inputs.extend(describe_input(Path::new(i)));
    }
    let uninstrumented: Vec<String> = inputs
        .iter()
        .filter(|i| !i.instrumented && i.format != "shared")
        .map(|i| i.name.clone())
        .collect();
    for u in &uninstrumented {
        eprintln!(
            "cargo-panic: warning: {u} was not compiled through cargo-panic's plugin (it bypassed the \
             CC/CXX wrapper): its code in {} is not instrumented",
            output.display()
        );
    }
    let rule: serde_json::Value = std::env::var(plugin_env::RULE)
        .ok()
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_else(|| serde_json::to_value(panic_passes::DwellRule::default()).expect("rule"));
    let m = Manifest {
        format: manifest::FORMAT,
        tool: format!("cargo-panic {}", env!("CARGO_PKG_VERSION")),
        pass_version: panic_passes::PASS_VERSION,
        driver: clang::PLUGIN_SOURCE_HASH.into(),
        abi_version: panic_runtime::abi::ABI_VERSION as u32,
        toolchain: format!("clang {clang_version}"),
        output: output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        opt_level: String::new(),
        target_cpu: String::new(),
        dwell_rule: rule,
        inputs,
        counter_slots: linked.counter_slots,
        hist_slots: linked.hist_slots,
        sites: manifest::sites_from_linked(&linked),
    };
    let mpath = manifest::path_for(&output);
    m.write(&mpath)?;
    if let Some(log) = std::env::var_os(env::CC_LOG) {
        let record = LinkRecord {
            output: PathBuf::from(absolute(&output)),
            manifest: PathBuf::from(absolute(&mpath)),
            sites: m.sites.len(),
            shared: line.shared,
            uninstrumented,
        };
        let name = format!(
            "{}-{}.json",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        fsutil::write_json_atomic(&Path::new(&log).join(name), &record)?;
    }
    Ok(())
}

/// The manifest's view of one link operand: objects and archive members are
/// instrumented when they carry the sites section (or, as LTO bitcode, the
/// counters); code without it bypassed the plugin.
fn describe_input(path: &Path) -> Vec<Input> {
    let name = path.display().to_string();
    let Ok(data) = std::fs::read(path) else {
        return vec![];
    };
    let one = |name: String, data: &[u8]| -> Option<Input> {
        let facts = linked::inspect_input(data);
        if !facts.has_code {
            return None;
        }
        let instrumented = facts.instrumented;
        Some(Input {
            name,
            format: if facts.bitcode { "bitcode" } else { "native" }.into(),
            instrumented,
            sites: 0,
            note: (!instrumented).then(|| "compiled without cargo-panic's plugin".to_string()),
        })
    };
    if data.starts_with(b"!<arch>\n") {
        let Ok(archive) = object::read::archive::ArchiveFile::parse(&*data) else {
            return vec![];
        };
        return archive
            .members()
            .flatten()
            .filter_map(|m| {
                let member = String::from_utf8_lossy(m.name()).into_owned();
                one(format!("{name}({member})"), m.data(&*data).ok()?)
            })
            .collect();
    }
    if let Ok(f) = object::File::parse(&*data)
        && f.kind() == object::ObjectKind::Dynamic
    {
        return vec![Input {
            name,
            format: "shared".into(),
            instrumented: linked::parse(&data).is_ok_and(|l| l.n_sites() > 0),
            sites: 0,
            note: Some("shared library: its sites are in its own manifest".into()),
        }];
    }
    one(name, &data).into_iter().collect()
}

/// Whether argv[0] names a wrapper, and which.
pub fn wrapper_kind(argv0: &str) -> Option<bool> {
    match Path::new(argv0).file_name()?.to_str()? {
        WRAPPER_CC => Some(false),
        WRAPPER_CXX => Some(true),
        _ => None,
    }
}
