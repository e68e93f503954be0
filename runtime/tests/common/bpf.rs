//! BPF maps for the kernel-mode tests: bpf(2) called raw (libc has no
//! `union bpf_attr`), bpffs, and mmapable array maps pinned the way
//! cargo-panic's loader pins them.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::LayoutValues;

// Commands, map type and flag of linux/bpf.h.
pub const BPF_MAP_CREATE: libc::c_long = 0;
pub const BPF_OBJ_PIN: libc::c_long = 6;
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// `statfs.f_type` of bpffs (linux/magic.h).
pub const BPF_FS_MAGIC: u64 = 0xcafe_4a11;
pub const BPFFS: &str = "/sys/fs/bpf";

/// The leading fields of `union bpf_attr` for BPF_MAP_CREATE. The kernel reads
/// the fields past the size we pass as zero.
#[repr(C)]
pub struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

/// `union bpf_attr` for BPF_OBJ_PIN: path, fd, flags.
#[repr(C)]
pub struct ObjPinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

pub fn bpf<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` points to a live, initialised `#[repr(C)]` prefix of
    // `union bpf_attr` of exactly the size passed; the kernel only reads it
    // (and the path it may point to, which outlives the call).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_ref(attr),
            std::mem::size_of::<T>(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Fails the test unless it runs as root with bpffs at /sys/fs/bpf (mounting
/// it there when it is missing, once per test binary).
pub fn require_root_and_bpffs() {
    static MOUNT: Once = Once::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "the kernel-mode tests need root: they create BPF maps and pin them on bpffs \
             (run `cargo test -p panic-runtime` as root)"
        );
    }
    MOUNT.call_once(|| {
        if fs_type(BPFFS) != Some(BPF_FS_MAGIC) {
            let c = |s: &str| CString::new(s).expect("no NUL");
            let (src, target, fstype) = (c("bpf"), c(BPFFS), c("bpf"));
            // SAFETY: all three are valid NUL-terminated strings that outlive
            // the call; bpffs takes no mount data.
            let r = unsafe {
                libc::mount(
                    src.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            if r != 0 {
                panic!(
                    "bpffs is not mounted at {BPFFS} and mounting it failed: {} \
                     (mount -t bpf bpf {BPFFS})",
                    std::io::Error::last_os_error()
                );
            }
        }
    });
    assert_eq!(
        fs_type(BPFFS),
        Some(BPF_FS_MAGIC),
        "{BPFFS} is not bpffs even after mounting it"
    );
}

pub fn fs_type(path: &str) -> Option<u64> {
    let p = CString::new(path).expect("no NUL");
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `p` is NUL-terminated and `st` is writable and large enough.
    let r = unsafe { libc::statfs(p.as_ptr(), &mut st) };
    (r == 0).then_some(st.f_type as u64)
}

/// A new BPF array of `entries` values of `value_size` bytes.
pub fn array(value_size: usize, entries: u32, map_flags: u32) -> OwnedFd {
    let attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: u32::try_from(value_size).expect("small"),
        max_entries: entries,
        map_flags,
    };
    let fd =
        bpf(BPF_MAP_CREATE, &attr).unwrap_or_else(|e| panic!("cannot create a BPF array map: {e}"));
    // SAFETY: the kernel just returned this fd, and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// A new mmapable BPF array of `entries` values of `value_size` bytes, mapped
/// here (read-write, `value_size * entries` bytes rounded up to pages).
pub fn mmapable_array(value_size: usize, entries: u32) -> (OwnedFd, *mut u8, usize) {
    let fd = array(value_size, entries, BPF_F_MMAPABLE);
    let len = (value_size * entries as usize).div_ceil(4096) * 4096;
    // SAFETY: mapping a fresh shared region of the map's pages; nothing
    // else refers to the address range the kernel picks.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        map,
        libc::MAP_FAILED,
        "cannot mmap the BPF map: {}",
        std::io::Error::last_os_error()
    );
    (fd, map.cast(), len)
}

/// Pins the map `fd` at `path`.
pub fn pin_map(fd: &OwnedFd, path: &Path) {
    let c = CString::new(path.to_str().expect("utf-8")).expect("no NUL");
    let attr = ObjPinAttr {
        pathname: c.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        file_flags: 0,
    };
    bpf(BPF_OBJ_PIN, &attr)
        .unwrap_or_else(|e| panic!("cannot pin the map at {}: {e}", path.display()));
}

/// Creates a directory of its own on bpffs for one run's pins:
/// `<prefix>-<pid>-<n>`.
pub fn new_pin_dir(prefix: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(BPFFS).join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Removes the pins under `dir` (maps, or directories standing where a map
/// should be), then `dir` itself; what is already gone is no error.
pub fn remove_pins(dir: &Path, pins: &[PathBuf]) {
    for pin in pins {
        let _ = std::fs::remove_file(pin).or_else(|_| std::fs::remove_dir(pin));
    }
    let _ = std::fs::remove_dir(dir);
}

/// A one-entry mmapable BPF array of `value_size` bytes, mapped here
/// read-write. Dropping it unmaps it (and closes the map, which lives on
/// while it is pinned).
pub struct Mapped {
    pub fd: OwnedFd,
    map: *mut u8,
    pub len: usize,
}

impl Mapped {
    pub fn new(value_size: usize) -> Mapped {
        let (fd, map, len) = mmapable_array(value_size, 1);
        Mapped { fd, map, len }
    }

    /// The 8 bytes at `off`, as an atomic.
    pub fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.len);
        // SAFETY: in bounds (checked) and 8-aligned in a page-aligned mapping
        // that lives as long as `self`; the runtime accesses it atomically.
        unsafe { AtomicU64::from_ptr(self.map.add(off).cast()) }
    }

    /// The 4 bytes at `off`, as an atomic.
    pub fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off.is_multiple_of(4) && off + 4 <= self.len);
        // SAFETY: in bounds (checked) and 4-aligned in a page-aligned mapping
        // that lives as long as `self`; the runtime accesses it atomically.
        unsafe { AtomicU32::from_ptr(self.map.add(off).cast()) }
    }

    /// Copies `bytes` to `off`, before any other process maps the map.
    pub fn write(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= self.len);
        // SAFETY: in bounds of the mapping (checked), which no other process
        // maps yet.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.map.add(off), bytes.len()) };
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, used by nothing past this point.
        unsafe { libc::munmap(self.map.cast(), self.len) };
    }
}

/// The head of `struct panic_kthreads` (panic_kabi.h), as a driver's
/// `layout` mode prints it: the table's size, where magic, version and owner
/// are, and the values of the first two.
#[derive(Clone, Debug)]
pub struct TableHead {
    pub size: usize,
    pub magic: usize,
    pub version: usize,
    pub owner: usize,
    pub magic_value: u64,
    pub version_value: u64,
}

impl TableHead {
    pub fn from_values(v: &LayoutValues) -> TableHead {
        let head = TableHead {
            size: v.at("size"),
            magic: v.at("magic"),
            version: v.at("version"),
            owner: v.at("owner"),
            magic_value: v.get("magic_value"),
            version_value: v.get("version_value"),
        };
        // KernelRun writes version and reads owner as one 8-byte word.
        assert!(head.version.is_multiple_of(8) && head.owner == head.version + 4);
        head
    }
}

/// One run's pins, as cargo-panic's loader makes them: a thread table set up
/// for this ABI ("threads") and, when asked, one more map next to it (named
/// `extra_name`: "prices", "fuses"), mapped here read-write for the test to
/// play the loader and the controller; `layout` is the test's layout of that
/// map. Dropping it removes the pins and their directory and unmaps both.
pub struct KernelRun<L> {
    pub layout: L,
    pub dir: PathBuf,
    /// The thread table's pin, for CARGO_PANIC_KTHREADS.
    pub threads: PathBuf,
    head: TableHead,
    table: Mapped,
    extra_name: &'static str,
    /// The extra map, once pinned.
    pub extra: Option<Mapped>,
}

impl<L> KernelRun<L> {
    /// Pins a fresh thread table with the loader's magic and version in a
    /// directory of its own on bpffs.
    pub fn pin_table(head: &TableHead, extra_name: &'static str, layout: L) -> KernelRun<L> {
        require_root_and_bpffs();
        let dir = new_pin_dir(&format!("cargo-panic-{extra_name}-test"));
        let table = Mapped::new(head.size);
        table
            .u64_at(head.magic)
            .store(head.magic_value, Ordering::Release);
        // version is a u32 followed by the owner (0 until the runtime writes it).
        table
            .u64_at(head.version)
            .store(head.version_value, Ordering::Release);
        let run = KernelRun {
            layout,
            threads: dir.join("threads"),
            dir,
            head: head.clone(),
            table,
            extra_name,
            extra: None,
        };
        pin_map(&run.table.fd, &run.threads);
        run
    }

    /// Where the runtime looks for the extra map: next to the table.
    pub fn extra_pin(&self) -> PathBuf {
        self.dir.join(self.extra_name)
    }

    /// Creates the extra map with elements of `value_size` bytes, lets `init`
    /// fill it (as the loader does) and pins it next to the table.
    pub fn pin_extra(&mut self, value_size: usize, init: impl FnOnce(&Mapped)) {
        let map = Mapped::new(value_size);
        init(&map);
        pin_map(&map.fd, &self.extra_pin());
        self.extra = Some(map);
    }

    /// The 8 bytes at `off` of the extra map.
    pub fn extra_word(&self, off: usize) -> &AtomicU64 {
        self.extra_map().u64_at(off)
    }

    pub fn extra_map(&self) -> &Mapped {
        self.extra
            .as_ref()
            .unwrap_or_else(|| panic!("no {} map pinned", self.extra_name))
    }

    /// The pid the runtime wrote as the table's owner (0 before).
    pub fn owner(&self) -> i32 {
        // owner: the i32 after the u32 version (checked in TableHead).
        (self.table.u64_at(self.head.version).load(Ordering::Acquire) >> 32) as u32 as i32
    }
}

impl<L> Drop for KernelRun<L> {
    fn drop(&mut self) {
        remove_pins(&self.dir, &[self.threads.clone(), self.extra_pin()]);
    }
}
