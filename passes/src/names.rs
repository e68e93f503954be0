//! Symbol names and stable identifiers. Pure.

/// Demangles a Rust (legacy or v0) or Itanium C++ symbol; anything else is returned
/// unchanged. Rust hashes are dropped, so the result is stable across builds.
pub fn demangle(symbol: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(symbol) {
        return format!("{d:#}");
    }
    if symbol.starts_with("_Z")
        && let Ok(sym) = cpp_demangle::Symbol::new(symbol)
        && let Ok(s) = sym.demangle()
    {
        return s;
    }
    symbol.to_string()
}

/// A 64-bit stable hash of the given parts, as 16 lowercase hex digits. Parts are
/// length-prefixed so that ("ab","c") and ("a","bc") differ.
pub fn stable_id(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let bytes = h.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes.as_bytes()[..8]);
    format!("{:016x}", u64::from_be_bytes(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_without_hashes() {
        assert_eq!(
            demangle("_ZN3std6thread5sleep17h1234567890abcdefE"),
            "std::thread::sleep"
        );
        assert_eq!(
            demangle("_RNvCsfLfy6EI15iL_7___rustc12___rust_alloc"),
            "__rustc::__rust_alloc"
        );
        assert_eq!(demangle("_ZNSt5mutex4lockEv"), "std::mutex::lock()");
        assert_eq!(demangle("main"), "main");
    }

    #[test]
    fn ids_are_stable_and_separated() {
        let a = stable_id(&[b"ab", b"c"]);
        assert_eq!(a, stable_id(&[b"ab", b"c"]));
        assert_ne!(a, stable_id(&[b"a", b"bc"]));
        assert_eq!(a.len(), 16);
    }
}
