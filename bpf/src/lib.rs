//! `panic-bpf`: the kernel side of cargo-panic. eBPF programs in C
//! (`src/bpf/panic.bpf.c`, types in `src/bpf/panic_kabi.h`, the one definition
//! of the kernel/user boundary) compiled by libbpf-cargo into a skeleton, and
//! [`Monitor`], which loads them, watches a process tree and reads back where
//! its time went: per task on-CPU / run queue / blocked (I/O apart), and the
//! same split per instrumented site, through the thread table the runtime
//! writes (`CARGO_PANIC_KTHREADS`).
//!
//! Lifecycle: the programs' links and the maps live as long as the
//! [`Monitor`]; the run's pins live in a run directory under bpffs that is
//! removed when the monitor is dropped, and swept by the next run if this
//! process was killed first. Links are never pinned, so a killed loader leaves
//! no program attached.

#[allow(clippy::undocumented_unsafe_blocks)] // generated code
mod skel {
    include!(concat!(env!("OUT_DIR"), "/panic.skel.rs"));
}

pub mod bpffs;

mod syscall_names {
    include!(concat!(env!("OUT_DIR"), "/syscall_names.rs"));
}

/// The name of x86-64 system call `nr` (from the kernel headers at build
/// time), or `syscall_<nr>`.
pub fn syscall_name(nr: u32) -> String {
    syscall_names::SYSCALL_NAMES
        .iter()
        .find(|(n, _)| *n == nr)
        .map_or_else(|| format!("syscall_{nr}"), |(_, name)| (*name).to_string())
}

/// What `Monitor::start` loads beyond the scheduler accounting.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    /// Dwell budgets to enforce (a 1 ms tick per CPU when not empty).
    pub budgets: &'a [BudgetSpec],
    /// The syscall path: count and time per system call (sys_enter/sys_exit).
    pub syscalls: bool,
    /// Sample the syscall path instead of keeping it attached: attached for
    /// this percentage (1 to 99) of every [`SAMPLE_PERIOD`] while the target
    /// runs (with `syscalls`).
    pub syscall_sample: Option<u32>,
    /// The network path: bytes the watched tasks send and receive on
    /// sockets (for a controller that prices `network`).
    pub network: bool,
    /// The names of the run's fuses (at most [`MAX_FUSES`], each shorter than
    /// [`FUSE_NAME_BYTES`]), in the order `set_fuses` takes their states.
    pub fuses: &'a [String],
}

/// How often a program asked a fuse, and how often the answer was "shed".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FuseCounts {
    pub asks: u64,
    pub sheds: u64,
}

/// The sampled syscall path's cycle: attached for the sample percentage of
/// each period.
pub const SAMPLE_PERIOD: std::time::Duration = std::time::Duration::from_millis(100);

/// How long the sampled syscall path was attached, of how long it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallSampling {
    pub percent: u32,
    pub attached_ns: u64,
    pub elapsed_ns: u64,
}

/// The sampled syscall path's state: its links while attached, and time.
struct Sampler {
    percent: u32,
    links: Option<(libbpf_rs::Link, libbpf_rs::Link)>,
    /// Monotonic ns: when sampling began, and when the current window did.
    began: Option<u64>,
    window: u64,
    attached_ns: u64,
    ended: Option<u64>,
}

/// One system call number over all watched tasks (syscall path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallTimes {
    pub nr: u32,
    pub name: String,
    pub count: u64,
    /// From entry to exit, time blocked inside included.
    pub ns: u64,
}

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject};

use bpffs::RunDir;
use skel::types;

/// The file name of the thread table's pin in the run directory.
pub const THREADS_PIN: &str = "threads";
/// The per-site budgets' pin, next to the thread table (the runtime finds it there).
pub const BUDGETS_PIN: &str = "budgets";
/// The price map's pin, next to the thread table (the runtime finds it there).
pub const PRICES_PIN: &str = "prices";
/// The fuse table's pin, next to the thread table (the runtime finds it there).
pub const FUSES_PIN: &str = "fuses";
/// How many fuses a run can have, and how long a name can be (with its NUL).
pub const MAX_FUSES: usize = 64;
pub const FUSE_NAME_BYTES: usize = 48;
/// Resources with a price, in the price map's order (`PANIC_RES_*`).
pub const RESOURCES: [&str; 5] = ["cpu", "memory", "io", "network", "dwell"];
/// How often each CPU checks the budgets of the thread it is running.
pub const BUDGET_TICK_NS: u64 = 1_000_000;

/// A dwell budget on one site (the entry of a timed region).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSpec {
    pub site: u32,
    /// The site's histogram index (the runtime never demotes the region).
    pub hist: u32,
    pub budget_ns: u64,
    /// The signal sent to the thread over budget (SIGKILL for kill); None: record only.
    pub signal: Option<i32>,
}

/// Who acted on a thread over budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActedBy {
    /// The BPF program signalled it, on the CPU it was running on.
    Kernel,
    /// It was off-CPU; the loader signalled it on the kernel's event.
    Loader,
    /// Record only.
    Nobody,
}

/// One thread over budget, as the kernel saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetEvent {
    /// CLOCK_MONOTONIC ns when the kernel saw it over budget.
    pub at_ns: u64,
    /// When the thread entered the region.
    pub since_ns: u64,
    pub budget_ns: u64,
    pub tid: u32,
    pub pid: u32,
    pub site: u32,
    pub signal: Option<i32>,
    pub by: ActedBy,
    /// What sending the signal returned (0: queued; negative errno).
    pub result: i32,
}

/// Why the kernel side cannot run. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "loading eBPF programs needs root (or the capabilities CAP_BPF and CAP_PERFMON), and this process lacks {missing}: run it with sudo, or pass --kernel=auto to run without kernel data"
    )]
    NotPermitted { missing: String },
    #[error(
        "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): the kernel side needs a kernel built with CONFIG_DEBUG_INFO_BTF=y; pass --kernel=auto to run without kernel data"
    )]
    NoBtf,
    #[error("{0}")]
    Bpffs(String),
    #[error(
        "the pin directory {0} already exists and belongs to another run; remove it if no cargo panic run is using it"
    )]
    PinBusy(PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Bpf {
        what: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },
}

fn bpf_err(what: &'static str) -> impl FnOnce(libbpf_rs::Error) -> KernelError {
    move |source| KernelError::Bpf { what, source }
}

/// Where a task or a site spent its time, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    /// On a CPU. For a site: the slices that ended while the site was published
    /// (see `panic_kabi.h`); exact per-site on-CPU time needs the runtime's
    /// self time too.
    pub cpu_ns: u64,
    /// Runnable and waiting for a CPU.
    pub runq_ns: u64,
    /// Sleeping, I/O included.
    pub blocked_ns: u64,
    /// The part of `blocked_ns` the kernel marked as I/O wait.
    pub io_ns: u64,
}

impl Times {
    fn from_raw(t: &types::panic_time) -> Times {
        Times {
            cpu_ns: t.cpu_ns,
            runq_ns: t.runq_ns,
            blocked_ns: t.blocked_ns,
            io_ns: t.io_ns,
        }
    }

    pub fn add(&mut self, o: &Times) {
        self.cpu_ns += o.cpu_ns;
        self.runq_ns += o.runq_ns;
        self.blocked_ns += o.blocked_ns;
        self.io_ns += o.io_ns;
    }

    /// Everything but on-CPU time: what a site's off-CPU attribution is exact for.
    pub fn off_cpu_ns(&self) -> u64 {
        self.runq_ns + self.blocked_ns
    }
}

/// One watched task (thread) that exited while watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTimes {
    pub tid: u32,
    /// The process (thread group) it belonged to.
    pub tgid: u32,
    pub comm: String,
    pub times: Times,
    /// Context switches the kernel counted: voluntary (it blocked) and
    /// involuntary (it was preempted).
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub minor_faults: u64,
    pub major_faults: u64,
    /// Nanoseconds between the task's first scheduler event and its exit.
    pub lifetime_ns: u64,
    /// CLOCK_MONOTONIC ns of its exit.
    pub ended_ns: u64,
    /// Scheduler events of this task the programs missed (see `panic_kabi.h`):
    /// its on-CPU time stays exact, the kind of some off-CPU time is a guess.
    pub missed_events: u32,
}

/// What the kernel saw of a watched run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelReport {
    /// Every watched task that exited, ordered by tid.
    pub tasks: Vec<TaskTimes>,
    /// Per site index of the target's manifest.
    pub sites: Vec<Times>,
    /// Time of watched tasks while in no instrumented region (including tasks
    /// of processes without the runtime).
    pub outside: Times,
    /// Exited tasks that did not fit in the kernel's table (their per-site
    /// time is still counted; their totals are not).
    pub lost_tasks: u64,
    /// Threads over budget, in the order the kernel saw them.
    pub budget_events: Vec<BudgetEvent>,
    /// Budget events the ring buffer could not hold.
    pub lost_events: u64,
    /// Per system call, busiest first (empty unless the syscall path ran).
    /// Counts and times are those of the sampled windows when sampling.
    pub syscalls: Vec<SyscallTimes>,
    /// The windows, when the syscall path was sampled.
    pub syscall_sampling: Option<SyscallSampling>,
}

impl KernelReport {
    /// The sum over the tasks.
    pub fn task_totals(&self) -> Times {
        let mut t = Times::default();
        for task in &self.tasks {
            t.add(&task.times);
        }
        t
    }

    /// The sum over the sites and the time outside every region.
    pub fn site_totals(&self) -> Times {
        let mut t = self.outside;
        for s in &self.sites {
            t.add(s);
        }
        t
    }
}

/// Checks what loading needs before anything is loaded: BTF and the
/// capabilities (root has them all).
pub fn check_supported() -> Result<(), KernelError> {
    check_supported_at(Path::new("/sys/kernel/btf/vmlinux"))
}

/// [`check_supported`] with the kernel's BTF expected at `btf`.
fn check_supported_at(btf: &Path) -> Result<(), KernelError> {
    if !btf.exists() {
        return Err(KernelError::NoBtf);
    }
    let missing = missing_capabilities();
    if !missing.is_empty() {
        return Err(KernelError::NotPermitted {
            missing: missing.join(" and "),
        });
    }
    Ok(())
}

/// The capabilities loading needs that this process lacks (CAP_SYS_ADMIN
/// covers both).
fn missing_capabilities() -> Vec<&'static str> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return Vec::new();
    }
    let mut missing = Vec::new();
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    missing
}

/// A read-write mapping of an mmapable BPF array, unmapped on drop.
struct MapMemory {
    ptr: *mut u8,
    len: usize,
}

impl MapMemory {
    fn new(fd: std::os::fd::BorrowedFd<'_>, len: usize) -> Result<MapMemory, KernelError> {
        let page = 4096;
        let len = len.div_ceil(page) * page;
        // SAFETY: maps `len` bytes of an mmapable BPF array; the kernel checks the size.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(KernelError::Io {
                what: "mapping a BPF array".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(MapMemory {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for MapMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// The loaded programs, attached, watching the tasks they were told to watch
/// and everything those tasks create.
pub struct Monitor {
    // Field order is drop order: the perf-event links (each closes its perf
    // event), the mappings and the skeleton (links, map fds) go before the
    // object storage the skeleton borrows, and the pins last.
    _tick_links: Vec<libbpf_rs::Link>,
    sites: MapMemory,
    kthreads: MapMemory,
    prices: MapMemory,
    fuses: MapMemory,
    n_fuses: usize,
    _budgets: Option<MapMemory>,
    events: std::sync::Mutex<Vec<BudgetEvent>>,
    skel: skel::PanicSkel<'static>,
    _object: Box<MaybeUninit<OpenObject>>,
    run: RunDir,
    n_sites: u32,
    has_budgets: bool,
    /// The sampled syscall path (`Options::syscall_sample`).
    sampler: std::cell::RefCell<Option<Sampler>>,
}

impl Monitor {
    /// Loads and attaches the programs for a target with `n_sites` sites, and
    /// pins its thread table (initialised, owner unset) and its budgets in a
    /// new run directory. With budgets, every online CPU also gets a
    /// millisecond tick that checks the thread it runs.
    pub fn start(n_sites: u32, opts: &Options<'_>) -> Result<Monitor, KernelError> {
        let budgets = opts.budgets;
        check_supported()?;
        bpffs::ensure_mounted()?;
        let run = RunDir::create()?;

        let mut object = Box::new(MaybeUninit::<OpenObject>::uninit());
        // SAFETY: the skeleton borrows the boxed object, whose heap address
        // never changes; `Monitor` drops the skeleton before the box (field order).
        let object_ref: &'static mut MaybeUninit<OpenObject> =
            unsafe { &mut *std::ptr::from_mut(object.as_mut()) };
        let mut open = skel::PanicSkelBuilder::default()
            .open(object_ref)
            .map_err(bpf_err("opening the eBPF object"))?;
        open.maps
            .sites
            .set_max_entries(n_sites + 1)
            .map_err(bpf_err("sizing the per-site map"))?;
        open.maps
            .budgets
            .set_max_entries(n_sites + 1)
            .map_err(bpf_err("sizing the budget map"))?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("the object has a .rodata section (n_sites)");
        rodata.n_sites = n_sites;
        rodata.have_budgets = u32::from(!budgets.is_empty());
        rodata.syscall_path = u32::from(opts.syscalls);
        // Without budgets the tick is never attached: do not even load it.
        open.progs.panic_tick.set_autoload(!budgets.is_empty());
        // The syscall path costs every system call two probes: only on request.
        open.progs.panic_sys_enter.set_autoload(opts.syscalls);
        open.progs.panic_sys_exit.set_autoload(opts.syscalls);
        // So does the network path each socket transfer: only on request.
        open.progs.panic_sock_send.set_autoload(opts.network);
        open.progs.panic_sock_recv.set_autoload(opts.network);
        let mut skel = open.load().map_err(load_error)?;
        skel.attach()
            .map_err(bpf_err("attaching the scheduler tracepoints"))?;
        // Sampled: detached until `wait` opens the first window.
        let sampler = opts
            .syscall_sample
            .filter(|_| opts.syscalls)
            .map(|percent| {
                skel.links.panic_sys_enter = None;
                skel.links.panic_sys_exit = None;
                Sampler {
                    percent: percent.clamp(1, 99),
                    links: None,
                    began: None,
                    window: 0,
                    attached_ns: 0,
                    ended: None,
                }
            });

        let kthreads = MapMemory::new(
            skel.maps.kthreads.as_fd(),
            size_of::<types::panic_kthreads>(),
        )?;
        let sites = MapMemory::new(
            skel.maps.sites.as_fd(),
            (n_sites as usize + 1) * size_of::<types::panic_time>(),
        )?;
        // SAFETY: the mapping holds one panic_kthreads, zeroed by the kernel.
        unsafe {
            let kt = kthreads.ptr.cast::<types::panic_kthreads>();
            (*kt).magic = PANIC_KTHREADS_MAGIC;
            (*kt).version = PANIC_KABI_VERSION;
        }
        let pin = run.path().join(THREADS_PIN);
        skel.maps
            .kthreads
            .pin(&pin)
            .map_err(bpf_err("pinning the thread table"))?;
        run.restrict(&pin)?;

        let prices = MapMemory::new(skel.maps.prices.as_fd(), size_of::<types::panic_prices>())?;
        // SAFETY: the mapping holds one panic_prices, zeroed by the kernel.
        unsafe {
            let p = prices.ptr.cast::<types::panic_prices>();
            (*p).magic = PANIC_PRICES_MAGIC;
            (*p).version = PANIC_KABI_VERSION;
            (*p).n_resources = RESOURCES.len() as u32;
        }
        let pin = run.path().join(PRICES_PIN);
        skel.maps
            .prices
            .pin(&pin)
            .map_err(bpf_err("pinning the price map"))?;
        run.restrict(&pin)?;

        if opts.fuses.len() > MAX_FUSES {
            return Err(KernelError::Io {
                what: "setting up fuses".into(),
                source: std::io::Error::other(format!(
                    "{} fuses, at most {MAX_FUSES}",
                    opts.fuses.len()
                )),
            });
        }
        let fuses = MapMemory::new(skel.maps.fuses.as_fd(), size_of::<types::panic_fuses>())?;
        // SAFETY: the mapping holds one panic_fuses, zeroed by the kernel;
        // names are cut to leave their NUL.
        unsafe {
            let f = fuses.ptr.cast::<types::panic_fuses>();
            (*f).magic = PANIC_FUSES_MAGIC;
            (*f).version = PANIC_KABI_VERSION;
            (*f).n = opts.fuses.len() as u32;
            for (i, name) in opts.fuses.iter().enumerate() {
                let bytes = name.as_bytes();
                let n = bytes.len().min(FUSE_NAME_BYTES - 1);
                for (j, b) in bytes[..n].iter().enumerate() {
                    (*f).fuse[i].name[j] = *b as i8;
                }
            }
        }
        let pin = run.path().join(FUSES_PIN);
        skel.maps
            .fuses
            .pin(&pin)
            .map_err(bpf_err("pinning the fuses"))?;
        run.restrict(&pin)?;

        let mut budget_mem = None;
        let mut tick_links = Vec::new();
        if !budgets.is_empty() {
            let mem = MapMemory::new(
                skel.maps.budgets.as_fd(),
                (n_sites as usize + 1) * size_of::<types::panic_site_budget>(),
            )?;
            let table = mem.ptr.cast::<types::panic_site_budget>();
            for b in budgets {
                if b.site >= n_sites {
                    continue;
                }
                let (action, signal) = match b.signal {
                    Some(sig) => (PANIC_BUDGET_SIGNAL, sig as u32),
                    None => (PANIC_BUDGET_RECORD, 0),
                };
                // SAFETY: site < n_sites, within the n_sites + 1 mapped elements.
                unsafe {
                    *table.add(b.site as usize) = types::panic_site_budget {
                        budget_ns: b.budget_ns,
                        action,
                        signal,
                        hist: b.hist,
                        reserved: 0,
                    };
                }
            }
            let pin = run.path().join(BUDGETS_PIN);
            skel.maps
                .budgets
                .pin(&pin)
                .map_err(bpf_err("pinning the budgets"))?;
            run.restrict(&pin)?;
            budget_mem = Some(mem);
            for cpu in online_cpus()? {
                let fd = cpu_clock_event(cpu, BUDGET_TICK_NS)?;
                let link = skel
                    .progs
                    .panic_tick
                    .attach_perf_event(fd.as_raw_fd())
                    .map_err(bpf_err("attaching the budget tick"))?;
                // The link owns the perf event now and closes it when dropped.
                let _ = fd.into_raw_fd();
                tick_links.push(link);
            }
        }
        Ok(Monitor {
            _tick_links: tick_links,
            sites,
            kthreads,
            prices,
            fuses,
            n_fuses: opts.fuses.len(),
            _budgets: budget_mem,
            events: std::sync::Mutex::new(Vec::new()),
            skel,
            _object: object,
            run,
            n_sites,
            has_budgets: !budgets.is_empty(),
            sampler: std::cell::RefCell::new(sampler),
        })
    }

    /// One step of the syscall path's sampling at monotonic `now`: opens a
    /// window at the start of each [`SAMPLE_PERIOD`] and closes it after the
    /// sample percentage of it. A window is only as precise as the calls of
    /// this method (`wait` makes one every few ms), which is why the time
    /// actually attached is measured rather than assumed.
    fn sample_step(&self, now: u64) -> Result<(), KernelError> {
        let mut guard = self.sampler.borrow_mut();
        let Some(s) = guard.as_mut() else {
            return Ok(());
        };
        if s.ended.is_some() {
            return Ok(());
        }
        let began = *s.began.get_or_insert(now);
        let period = SAMPLE_PERIOD.as_nanos() as u64;
        let open = (now - began) % period < period * u64::from(s.percent) / 100;
        match (&s.links, open) {
            (None, true) => {
                // Calls begun before this point belong to no window.
                self.skel
                    .maps
                    .sys_window
                    .update(
                        &0u32.to_ne_bytes(),
                        &monotonic_ns().to_ne_bytes(),
                        MapFlags::ANY,
                    )
                    .map_err(bpf_err("opening a syscall window"))?;
                let enter = self.skel.progs.panic_sys_enter.attach();
                let exit = self.skel.progs.panic_sys_exit.attach();
                let (enter, exit) = (
                    enter.map_err(bpf_err("attaching the syscall path"))?,
                    exit.map_err(bpf_err("attaching the syscall path"))?,
                );
                s.links = Some((enter, exit));
                s.window = monotonic_ns();
            }
            (Some(_), false) => {
                s.links = None;
                s.attached_ns += monotonic_ns().saturating_sub(s.window);
            }
            _ => {}
        }
        Ok(())
    }

    /// Ends the syscall path's sampling (the target ended).
    fn sample_end(&self) {
        if let Some(s) = self.sampler.borrow_mut().as_mut()
            && s.ended.is_none()
        {
            let now = monotonic_ns();
            if s.links.take().is_some() {
                s.attached_ns += now.saturating_sub(s.window);
            }
            s.ended = Some(now);
        }
    }

    /// The pinned thread table: the target's `CARGO_PANIC_KTHREADS`.
    pub fn threads_pin(&self) -> PathBuf {
        self.run.path().join(THREADS_PIN)
    }

    /// The run directory holding this monitor's pins.
    pub fn run_dir(&self) -> &Path {
        self.run.path()
    }

    /// Watches process `pid` (and from then on every task it creates). Call it
    /// before the process runs anything worth measuring: it is accounted from
    /// its next scheduler event on.
    pub fn watch(&self, pid: i32) -> Result<(), KernelError> {
        self.put_task(&pidfd(pid, 0)?, pid, pid, 0)
    }

    /// Creates the task storage entry of the task `fd` names.
    fn put_task(&self, fd: &OwnedFd, tgid: i32, tid: i32, state: u32) -> Result<(), KernelError> {
        let task = types::panic_task {
            tgid: tgid as u32,
            tid: tid as u32,
            state,
            site: PANIC_KNO_SITE,
            ..Default::default()
        };
        // SAFETY: panic_task is plain old data; the slice covers exactly it.
        let value = unsafe {
            std::slice::from_raw_parts(
                std::ptr::from_ref(&task).cast::<u8>(),
                size_of::<types::panic_task>(),
            )
        };
        self.skel
            .maps
            .tasks
            .update(&fd.as_raw_fd().to_ne_bytes(), value, MapFlags::ANY)
            .map_err(bpf_err("watching the target (task storage)"))
    }

    /// Starts `cmd` watched from its first instruction: the calling thread is
    /// watched while it forks, so the fork program gives the child its entry
    /// before the child runs, and nothing else is watched (the thread's own
    /// entry is removed again once the child exists).
    pub fn spawn(&self, cmd: &mut Command) -> Result<Child, KernelError> {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let me = pidfd(tid, PIDFD_THREAD)?;
        self.put_task(&me, 0, tid, PANIC_TS_CARRIER)?;
        let child = cmd.spawn();
        let unwatched = self
            .skel
            .maps
            .tasks
            .delete(&me.as_raw_fd().to_ne_bytes())
            .map_err(bpf_err("unwatching the loader's thread"));
        let mut child = child.map_err(|e| KernelError::Io {
            what: "starting the target".into(),
            source: e,
        })?;
        if let Err(e) = unwatched {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(child)
    }

    /// Publishes new prices (one per [`RESOURCES`] entry, non-negative; more
    /// are ignored) for the program to read, under the map's seqlock.
    pub fn set_prices(&self, prices: &[f64]) {
        let p = self.prices.ptr.cast::<types::panic_prices>();
        let now = monotonic_ns();
        // SAFETY: the mapping holds one panic_prices; this process is its only
        // writer; the seqlock tells readers when a write is under way.
        unsafe {
            let seq = std::ptr::addr_of_mut!((*p).seq);
            let s0 = std::ptr::read_volatile(seq);
            std::ptr::write_volatile(seq, s0 | 1);
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            for (i, v) in prices.iter().take(RESOURCES.len()).enumerate() {
                let fixed = (v.max(0.0) * PANIC_PRICE_ONE as f64)
                    .round()
                    .min(u64::MAX as f64) as u64;
                std::ptr::write_volatile(std::ptr::addr_of_mut!((*p).price[i]), fixed);
            }
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*p).updated_ns), now);
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            std::ptr::write_volatile(seq, (s0 | 1) + 1);
        }
    }

    /// Sets the fuses' states (in the order of `Options::fuses`): true = the
    /// program should shed that work now.
    pub fn set_fuses(&self, tripped: &[bool]) {
        let f = self.fuses.ptr.cast::<types::panic_fuses>();
        for (i, t) in tripped.iter().take(self.n_fuses).enumerate() {
            // SAFETY: i < n_fuses <= MAX_FUSES entries of the live mapping.
            unsafe {
                std::ptr::write_volatile(
                    std::ptr::addr_of_mut!((*f).fuse[i].tripped),
                    u32::from(*t),
                );
            }
        }
    }

    /// Per fuse (in the order of `Options::fuses`), what the program asked;
    /// and the asks with names no fuse has.
    pub fn fuse_counts(&self) -> (Vec<FuseCounts>, u64) {
        let f = self.fuses.ptr.cast::<types::panic_fuses>();
        // SAFETY: volatile reads of words of the live mapping the runtime adds to.
        unsafe {
            let counts = (0..self.n_fuses)
                .map(|i| FuseCounts {
                    asks: std::ptr::read_volatile(std::ptr::addr_of!((*f).fuse[i].asks)),
                    sheds: std::ptr::read_volatile(std::ptr::addr_of!((*f).fuse[i].sheds)),
                })
                .collect();
            (
                counts,
                std::ptr::read_volatile(std::ptr::addr_of!((*f).unknown)),
            )
        }
    }

    /// The prices as the program reads them.
    /// Bytes the watched tasks have sent and received on sockets so far
    /// (the network path; 0 without it).
    pub fn net_bytes(&self) -> u64 {
        let zero = 0u32.to_ne_bytes();
        match self.skel.maps.net.lookup_percpu(&zero, MapFlags::ANY) {
            Ok(Some(per_cpu)) => per_cpu
                .iter()
                .filter(|v| v.len() >= 16)
                .map(|v| {
                    u64::from_ne_bytes(v[..8].try_into().expect("8 bytes"))
                        + u64::from_ne_bytes(v[8..16].try_into().expect("8 bytes"))
                })
                .sum(),
            _ => 0,
        }
    }

    pub fn prices(&self) -> Vec<f64> {
        let p = self.prices.ptr.cast::<types::panic_prices>();
        (0..RESOURCES.len())
            .map(|i| {
                // SAFETY: reads one aligned u64 of the live mapping.
                let v = unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*p).price[i])) };
                v as f64 / PANIC_PRICE_ONE as f64
            })
            .collect()
    }

    /// The pid that mapped the thread table (0 until a runtime has).
    pub fn table_owner(&self) -> i32 {
        // SAFETY: reads one aligned i32 of the live mapping.
        unsafe {
            std::ptr::read_volatile(std::ptr::addr_of!(
                (*self.kthreads.ptr.cast::<types::panic_kthreads>()).owner
            ))
        }
    }

    /// Reads what has been accounted so far. Tasks appear once they exited.
    pub fn report(&self) -> Result<KernelReport, KernelError> {
        let raw_sites = self.sites.ptr.cast::<types::panic_time>();
        let n = self.n_sites as usize;
        let read = |i: usize| {
            // SAFETY: the mapping holds n_sites + 1 panic_time; volatile copies of
            // words the BPF programs update atomically.
            Times::from_raw(&unsafe { std::ptr::read_volatile(raw_sites.add(i)) })
        };
        let sites = (0..n).map(read).collect();
        let outside = read(n);

        let exited = &self.skel.maps.exited;
        let mut tasks = Vec::new();
        for key in exited.keys() {
            let Some(bytes) = exited
                .lookup(&key, MapFlags::ANY)
                .map_err(bpf_err("reading the exited tasks"))?
            else {
                continue;
            };
            if bytes.len() != size_of::<types::panic_task>() {
                continue;
            }
            // SAFETY: the value is one panic_task (size checked), read unaligned.
            let t: types::panic_task = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
            tasks.push(task_times(&t));
        }
        tasks.sort_by_key(|t| t.tid);
        // Read whether or not the path was asked for: without it the
        // programs are not loaded and every count stays 0.
        let mut syscalls = Vec::new();
        {
            let map = &self.skel.maps.syscalls;
            for nr in 0..PANIC_SYSCALLS {
                let Some(per_cpu) = map
                    .lookup_percpu(&nr.to_ne_bytes(), MapFlags::ANY)
                    .map_err(bpf_err("reading the syscall counts"))?
                else {
                    continue;
                };
                let (mut count, mut ns) = (0u64, 0u64);
                for v in per_cpu.iter().filter(|v| v.len() >= 16) {
                    count += u64::from_ne_bytes(v[..8].try_into().expect("8 bytes"));
                    ns += u64::from_ne_bytes(v[8..16].try_into().expect("8 bytes"));
                }
                if count > 0 {
                    syscalls.push(SyscallTimes {
                        nr,
                        name: syscall_name(nr),
                        count,
                        ns,
                    });
                }
            }
            syscalls.sort_by(|a, b| b.ns.cmp(&a.ns).then(a.nr.cmp(&b.nr)));
        }
        let bss = self.skel.maps.bss_data.as_deref();
        let syscall_sampling = self.sampler.borrow().as_ref().map(|s| SyscallSampling {
            percent: s.percent,
            attached_ns: s.attached_ns,
            elapsed_ns: match (s.began, s.ended) {
                (Some(b), Some(e)) => e.saturating_sub(b),
                (Some(b), None) => monotonic_ns().saturating_sub(b),
                _ => 0,
            },
        });
        Ok(KernelReport {
            syscalls,
            syscall_sampling,
            tasks,
            sites,
            outside,
            lost_tasks: bss.map_or(0, |b| b.lost_tasks),
            budget_events: self.events.lock().map(|e| e.clone()).unwrap_or_default(),
            lost_events: bss.map_or(0, |b| b.lost_events),
        })
    }

    /// Waits for `child` to end while handling the kernel's budget events
    /// (an over-budget thread that was off-CPU is signalled here, within a
    /// millisecond of the event; the events go to the report) and calling
    /// `tick` every `period` (the controller's hook).
    pub fn wait(
        &self,
        child: &mut Child,
        period: Option<std::time::Duration>,
        mut tick: impl FnMut(),
    ) -> Result<std::process::ExitStatus, KernelError> {
        let io = |e: std::io::Error| KernelError::Io {
            what: "waiting for the target".into(),
            source: e,
        };
        let sampling = self.sampler.borrow().is_some();
        if !self.has_budgets && period.is_none() && !sampling {
            return child.wait().map_err(io);
        }
        let handle = |data: &[u8]| -> i32 {
            if data.len() < size_of::<types::panic_budget_event>() {
                return 0;
            }
            // SAFETY: the record holds one panic_budget_event (size checked).
            let e: types::panic_budget_event =
                unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
            let mut ev = budget_event(&e);
            if ev.by == ActedBy::Loader
                && let Some(sig) = ev.signal
            {
                // SAFETY: tgkill takes plain integers; a gone thread gives ESRCH.
                let rc = unsafe { libc::syscall(libc::SYS_tgkill, e.pid, e.tid, sig) };
                ev.result = if rc == 0 {
                    0
                } else {
                    -std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
                };
            }
            if let Ok(mut v) = self.events.lock() {
                v.push(ev);
            }
            0
        };
        let mut builder = libbpf_rs::RingBufferBuilder::new();
        builder
            .add(&self.skel.maps.events, handle)
            .map_err(bpf_err("reading budget events"))?;
        let ring = builder.build().map_err(bpf_err("reading budget events"))?;
        let mut next_tick = period.map(|p| std::time::Instant::now() + p);
        loop {
            // Budget events need millisecond service; a controller alone does not.
            let wait = if self.has_budgets {
                std::time::Duration::from_millis(1)
            } else {
                std::time::Duration::from_millis(5)
            };
            let _ = ring.poll(wait);
            if let Some(status) = child.try_wait().map_err(io)? {
                self.sample_end();
                let _ = ring.consume();
                return Ok(status);
            }
            if let Err(e) = self.sample_step(monotonic_ns()) {
                self.sample_end();
                return Err(e);
            }
            if let (Some(at), Some(p)) = (next_tick, period)
                && std::time::Instant::now() >= at
            {
                tick();
                next_tick = Some(at + p);
            }
        }
    }
}

/// CLOCK_MONOTONIC in ns (the clock of bpf_ktime_get_ns).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// pidfd_open's flag for a pidfd that names one thread (Linux 6.9).
const PIDFD_THREAD: u32 = libc::O_EXCL as u32;

fn pidfd(pid: i32, flags: u32) -> Result<OwnedFd, KernelError> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    if fd < 0 {
        return Err(KernelError::Io {
            what: format!("opening a pidfd for task {pid}"),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn budget_event(e: &types::panic_budget_event) -> BudgetEvent {
    BudgetEvent {
        at_ns: e.at,
        since_ns: e.since,
        budget_ns: e.budget_ns,
        tid: e.tid,
        pid: e.pid,
        site: e.site,
        signal: (e.action == PANIC_BUDGET_SIGNAL).then_some(e.signal as i32),
        by: match e.by {
            PANIC_BY_KERNEL => ActedBy::Kernel,
            PANIC_BY_LOADER => ActedBy::Loader,
            _ => ActedBy::Nobody,
        },
        result: e.result,
    }
}

/// The online CPUs, from sysfs ("0-3,5").
fn online_cpus() -> Result<Vec<i32>, KernelError> {
    let path = "/sys/devices/system/cpu/online";
    let text = std::fs::read_to_string(path).map_err(|e| KernelError::Io {
        what: format!("reading {path}"),
        source: e,
    })?;
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let bad = |_| KernelError::Io {
            what: format!("parsing {path}"),
            source: std::io::Error::other(format!("unexpected '{part}'")),
        };
        let (a, b): (i32, i32) = (a.parse().map_err(bad)?, b.parse().map_err(bad)?);
        cpus.extend(a..=b);
    }
    Ok(cpus)
}

/// perf_event_attr as of PERF_ATTR_SIZE_VER0 (64 bytes, a stable prefix):
/// enough for a software clock event that samples every `period` ns.
#[repr(C)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

/// A cpu-clock perf event on `cpu` firing every `period_ns`.
fn cpu_clock_event(cpu: i32, period_ns: u64) -> Result<OwnedFd, KernelError> {
    const PERF_TYPE_SOFTWARE: u32 = 1;
    const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
    const PERF_FLAG_FD_CLOEXEC: u64 = 8;
    let attr = PerfEventAttr {
        kind: PERF_TYPE_SOFTWARE,
        size: size_of::<PerfEventAttr>() as u32,
        config: PERF_COUNT_SW_CPU_CLOCK,
        sample_period: period_ns,
        sample_type: 0,
        read_format: 0,
        flags: 0,
        wakeup_events: 0,
        bp_type: 0,
        config1: 0,
    };
    // SAFETY: perf_event_open reads `attr` (size given in it); pid -1 with a
    // cpu means every task on that CPU.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            std::ptr::from_ref(&attr),
            -1,
            cpu,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(KernelError::Io {
            what: format!("opening a cpu-clock perf event on CPU {cpu}"),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn task_times(t: &types::panic_task) -> TaskTimes {
    let comm: Vec<u8> = t
        .comm
        .iter()
        .map(|&c| c as u8)
        .take_while(|&c| c != 0)
        .collect();
    TaskTimes {
        tid: t.tid,
        tgid: t.tgid,
        comm: String::from_utf8_lossy(&comm).into_owned(),
        times: Times::from_raw(&t.t),
        voluntary_switches: t.nvcsw,
        involuntary_switches: t.nivcsw,
        minor_faults: t.min_flt,
        major_faults: t.maj_flt,
        lifetime_ns: t.ended.saturating_sub(t.started),
        ended_ns: t.ended,
        missed_events: t.missed,
    }
}

/// A load failure, with the cause named where the errno is telling.
fn load_error(e: libbpf_rs::Error) -> KernelError {
    let missing = missing_capabilities();
    if !missing.is_empty() {
        return KernelError::NotPermitted {
            missing: missing.join(" and "),
        };
    }
    KernelError::Bpf {
        what: "loading the eBPF programs (the kernel's verifier log is above)",
        source: e,
    }
}

// The numbers of panic_kabi.h the loader writes. The header is the definition;
// the skeleton carries types, not macros, so these few are checked against the
// header's text at test time (tests::constants_match_the_header).
pub const PANIC_KABI_VERSION: u32 = 7;
pub const PANIC_KTHREADS_MAGIC: u64 = 0x4854_4b43_494e_4150;
pub const PANIC_KNO_SITE: u32 = u32::MAX;
pub const PANIC_TS_CARRIER: u32 = 6;
pub const PANIC_PRICES_MAGIC: u64 = 0x4352_5043_494e_4150;
pub const PANIC_PRICE_ONE: u64 = 1_000_000;
pub const PANIC_SYSCALLS: u32 = 512;
pub const PANIC_FUSES_MAGIC: u64 = 0x5355_4643_494e_4150;
pub const PANIC_BUDGET_RECORD: u32 = 1;
pub const PANIC_BUDGET_SIGNAL: u32 = 2;
pub const PANIC_BY_KERNEL: u32 = 1;
pub const PANIC_BY_LOADER: u32 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the kernel's BTF nothing is loaded, and the error says what
    /// kernel is needed and how to run without kernel data.
    #[test]
    fn a_kernel_without_btf_is_refused_before_anything_loads() {
        let err = check_supported_at(Path::new("/nonexistent/btf/vmlinux")).unwrap_err();
        assert!(matches!(err, KernelError::NoBtf));
        let msg = err.to_string();
        assert!(
            msg.contains("CONFIG_DEBUG_INFO_BTF=y") && msg.contains("--kernel=auto"),
            "{msg}"
        );
    }

    #[test]
    fn constants_match_the_header() {
        let h = include_str!("bpf/panic_kabi.h");
        let value = |name: &str| {
            h.lines()
                .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
                .unwrap_or_else(|| panic!("{name} is not in panic_kabi.h"))
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches("ULL")
                .trim_end_matches('u')
                .to_string()
        };
        let num = |s: String| {
            s.strip_prefix("0x").map_or_else(
                || s.parse::<u64>().unwrap(),
                |h| u64::from_str_radix(h, 16).unwrap(),
            )
        };
        assert_eq!(
            num(value("PANIC_KABI_VERSION")),
            u64::from(PANIC_KABI_VERSION)
        );
        assert_eq!(num(value("PANIC_KTHREADS_MAGIC")), PANIC_KTHREADS_MAGIC);
        assert_eq!(num(value("PANIC_KNO_SITE")), u64::from(PANIC_KNO_SITE));
        assert_eq!(num(value("PANIC_TS_CARRIER")), u64::from(PANIC_TS_CARRIER));
        assert_eq!(num(value("PANIC_PRICES_MAGIC")), PANIC_PRICES_MAGIC);
        assert_eq!(num(value("PANIC_PRICE_ONE")), PANIC_PRICE_ONE);
        assert_eq!(num(value("PANIC_FUSES_MAGIC")), PANIC_FUSES_MAGIC);
        for (i, r) in RESOURCES.iter().enumerate() {
            let name = format!("PANIC_RES_{}", r.to_uppercase());
            assert_eq!(num(value(&name)), i as u64, "{name}");
        }
        for (name, v) in [
            ("PANIC_BUDGET_RECORD", PANIC_BUDGET_RECORD),
            ("PANIC_BUDGET_SIGNAL", PANIC_BUDGET_SIGNAL),
            ("PANIC_BY_KERNEL", PANIC_BY_KERNEL),
            ("PANIC_BY_LOADER", PANIC_BY_LOADER),
            ("PANIC_RESOURCES", RESOURCES.len() as u32),
            ("PANIC_SYSCALLS", PANIC_SYSCALLS),
            ("PANIC_FUSES", MAX_FUSES as u32),
            ("PANIC_FUSE_NAME", FUSE_NAME_BYTES as u32),
        ] {
            assert_eq!(num(value(name)), u64::from(v), "{name}");
        }
    }
}
