//! BPF maps for the kernel-mode tests: bpf(2) called raw (libc has no
//! `union bpf_attr`), bpffs, and mmapable array maps pinned the way
//! cargo-panic's loader pins them.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Once;

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
