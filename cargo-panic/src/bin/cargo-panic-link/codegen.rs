//! Parallel instrumentation and code generation, one inkwell context per module
//! on a fixed pool of worker threads, with a content-addressed object cache.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, Result, anyhow};
use cargo_panic_core::fsutil;
use inkwell::OptimizationLevel;
use inkwell::context::Context;
use inkwell::memory_buffer::MemoryBuffer;
use inkwell::module::Module;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine, TargetTriple,
};
use memmap2::Mmap;
use panic_passes::{CompiledRule, ModuleSites, Options};

/// One bitcode module to compile: a byte range of a mapped input.
pub struct Job {
    pub key: String,
    pub data: Arc<Mmap>,
    pub range: Range<usize>,
}

impl Job {
    fn bytes(&self) -> &[u8] {
        &self.data[self.range.clone()]
    }
}

pub struct Settings {
    pub opt: String,
    pub cpu: String,
    pub features: String,
    pub rule: CompiledRule,
    pub rule_json: String,
    pub cache_dir: PathBuf,
    /// False for shared-library outputs: compile without probes.
    pub instrument: bool,
    /// Hash of this link driver's executable: a new build of the pass never
    /// reuses objects made by an older one, whatever `PASS_VERSION` says.
    pub driver_id: String,
}

pub struct Done {
    pub sites: ModuleSites,
    pub object: PathBuf,
    pub cache_hit: bool,
}

/// Initialises LLVM's X86 target (with the asm parser, which inline `asm!` needs).
pub fn init_llvm() {
    Target::initialize_x86(&InitializationConfig {
        asm_parser: true,
        asm_printer: true,
        base: true,
        disassembler: false,
        info: true,
        machine_code: true,
    });
}

const WORKER_STACK: usize = 256 << 20;

pub fn run_all(jobs: &[Job], settings: &Settings, threads: usize) -> Result<Vec<Done>> {
    init_llvm();
    // Largest first, so one big module does not start last and finish alone.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].range.len()));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Done>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            // LLVM's optimiser recurses deeply on big functions; std's default
            // 2 MiB thread stack overflows on real crates (rustc uses more too).
            let worker = std::thread::Builder::new()
                .name("cargo-panic-codegen".into())
                .stack_size(WORKER_STACK);
            worker
                .spawn_scoped(s, || {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = order.get(n) else { break };
                        let r = compile(&jobs[i], settings);
                        let failed = r.is_err();
                        results
                            .lock()
                            .expect("no worker panics while holding the lock")[i] = Some(r);
                        if failed {
                            // Stop handing out work; the error is reported below.
                            next.store(order.len(), Ordering::Relaxed);
                        }
                    }
                })
                .expect("spawn a code generation worker");
        }
    });
    let results = results.into_inner().expect("workers finished");
    let mut out = Vec::with_capacity(jobs.len());
    for r in results.into_iter().flatten() {
        out.push(r?);
    }
    if out.len() != jobs.len() {
        return Err(anyhow!(
            "internal error: {} of {} modules were compiled",
            out.len(),
            jobs.len()
        ));
    }
    Ok(out)
}

fn cache_key(job: &Job, s: &Settings) -> String {
    let mut h = blake3::Hasher::new();
    for part in [
        format!("pass={}", panic_passes::PASS_VERSION),
        format!("abi={}", panic_runtime::abi::ABI_VERSION),
        format!("llvm={}", env!("CARGO_PANIC_BUILT_LLVM_VERSION")),
        format!("opt={}", s.opt),
        format!("cpu={}", s.cpu),
        format!("features={}", s.features),
        format!("rule={}", s.rule_json),
        format!("instrument={}", s.instrument),
        format!("key={}", job.key),
        format!("driver={}", s.driver_id),
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update(job.bytes());
    h.finalize().to_hex()[..32].to_string()
}

fn compile(job: &Job, s: &Settings) -> Result<Done> {
    let key = cache_key(job, s);
    let object = s.cache_dir.join(format!("{key}.o"));
    let sites_path = s.cache_dir.join(format!("{key}.sites.json"));
    if object.exists()
        && sites_path.exists()
        && let Ok(sites) = fsutil::read_json::<ModuleSites>(&sites_path)
    {
        return Ok(Done {
            sites,
            object,
            cache_hit: true,
        });
    }
    let ctx = Context::create();
    let buf = MemoryBuffer::create_from_memory_range_copy(job.bytes(), &job.key);
    let module = Module::parse_bitcode_from_buffer(&buf, &ctx).map_err(|e| {
        anyhow!(
            "cannot read the LLVM bitcode of {}: {}",
            job.key,
            e.to_string()
        )
    })?;
    let tm = target_machine(s)?;
    module
        .run_passes(
            &format!("default<{}>", s.opt),
            &tm,
            PassBuilderOptions::create(),
        )
        .map_err(|e| anyhow!("optimising {} failed: {}", job.key, e.to_string()))?;
    let sites = if s.instrument {
        panic_passes::instrument_module(
            &module,
            &Options {
                module_key: &job.key,
                rule: &s.rule,
            },
        )?
    } else {
        ModuleSites {
            key: job.key.clone(),
            suffix: String::new(),
            sites: Vec::new(),
            n_hists: 0,
        }
    };
    if let Some(dir) = std::env::var_os(cargo_panic_core::env::DUMP_IR) {
        let path = Path::new(&dir).join(format!("{key}.ll"));
        module
            .print_to_file(&path)
            .map_err(|e| anyhow!("failed to dump IR to {}: {e}", path.display()))?;
    }
    let obj = tm
        .write_to_memory_buffer(&module, FileType::Object)
        .map_err(|e| anyhow!("code generation for {} failed: {}", job.key, e.to_string()))?;
    // The object first, then its sites: a reader that finds the sites finds the object.
    write_cache(&object, obj.as_slice())?;
    fsutil::write_json_atomic(&sites_path, &sites)?;
    Ok(Done {
        sites,
        object,
        cache_hit: false,
    })
}

fn write_cache(path: &Path, bytes: &[u8]) -> Result<()> {
    fsutil::write_atomic(path, bytes)
        .with_context(|| format!("failed to write cache entry {}", path.display()))
}

pub fn target_machine(s: &Settings) -> Result<TargetMachine> {
    let triple = TargetTriple::create(env!("CARGO_PANIC_BUILT_HOST"));
    let target =
        Target::from_triple(&triple).map_err(|e| anyhow!("no LLVM target for the host: {e}"))?;
    let level = match s.opt.as_str() {
        "O0" => OptimizationLevel::None,
        "O1" => OptimizationLevel::Less,
        "O2" => OptimizationLevel::Default,
        _ => OptimizationLevel::Aggressive,
    };
    target
        .create_target_machine(
            &triple,
            &s.cpu,
            &s.features,
            level,
            RelocMode::PIC,
            CodeModel::Default,
        )
        .ok_or_else(|| anyhow!("LLVM could not create a target machine for cpu `{}`", s.cpu))
}

/// The identity of this pass and code generator: its executable's content hash.
pub fn driver_id() -> Result<String> {
    let exe = std::env::current_exe().context("failed to find the link driver's executable")?;
    fsutil::content_id(&exe)
}
