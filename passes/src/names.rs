//! Symbol names and stable identifiers. Pure.

use std::ops::Range;

use cpp_demangle::{DemangleOptions, Symbol};

/// Demangles a Rust (legacy or v0) or Itanium C++ symbol; anything else is returned
/// unchanged. Rust hashes are dropped, so the result is stable across builds.
///
/// C++ goes through cpp_demangle with two repairs (see `demangle_cxx`). Symbols it
/// cannot read at all, such as clang's C++20 manglings of constrained templates
/// (`Tk`, `Tn`, `Q` requires-clauses), stay mangled: exact and unique, where a
/// guess could merge two functions' names.
pub fn demangle(symbol: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(symbol) {
        return format!("{d:#}");
    }
    demangle_cxx(symbol, &DemangleOptions::new()).unwrap_or_else(|| symbol.to_string())
}

/// An Itanium C++ symbol split for matching: the qualified name without return
/// type or parameters (`std::unique_lock<std::mutex>::unique_lock`), and the
/// parameter list with any trailing qualifiers (`(std::mutex&)`, `() const`; empty
/// for data). `None` for Rust symbols and for anything cpp_demangle cannot read.
pub fn demangle_cxx_parts(symbol: &str) -> Option<(String, String)> {
    if rustc_demangle::try_demangle(symbol).is_ok() {
        return None;
    }
    let mut name = demangle_cxx(symbol, &DemangleOptions::new().no_return_type())?;
    let params = match param_list(&name) {
        Some(range) => name.split_off(range.start),
        None => String::new(),
    };
    Some((name, params))
}

/// cpp_demangle's rendering with two of its slips repaired:
///
/// - a constructor that is itself a template (`_ZNSt6threadC2IZ1fiE3$_1JEvEEOT_DpOT0_`)
///   loses its first parameter, which cpp_demangle takes for a return type; a `v`
///   return type is put in front of the parameters, where it is not shown;
/// - an empty pack expansion leaves an empty template argument (`std::lock<A, B, >`)
///   and a bare declarator as a parameter (`(A&, B&, &)`); both are dropped.
fn demangle_cxx(symbol: &str, options: &DemangleOptions) -> Option<String> {
    if !symbol.starts_with("_Z") {
        return None;
    }
    let patched = with_ctor_return_type(symbol);
    let s = render(patched.as_deref().unwrap_or(symbol), options)?;
    Some(drop_empty_packs(s))
}

fn render(symbol: &str, options: &DemangleOptions) -> Option<String> {
    Symbol::new(symbol)
        .ok()?
        .demangle_with_options(options)
        .ok()
}

/// For a template constructor, the symbol with `v` inserted where its parameters
/// begin: the first place, just after an `E`, where the insertion leaves the name
/// exactly as it was (anywhere inside the name it breaks or changes it).
fn with_ctor_return_type(symbol: &str) -> Option<String> {
    if !["C1I", "C2I", "C3I"].iter().any(|m| symbol.contains(m)) {
        return None;
    }
    let name_only = DemangleOptions::new().no_params().no_return_type();
    let name = render(symbol, &name_only)?;
    if !is_template_ctor(&name) {
        return None;
    }
    symbol.match_indices('E').find_map(|(at, _)| {
        let patched = format!("{}v{}", &symbol[..=at], &symbol[at + 1..]);
        (render(&patched, &name_only).as_deref() == Some(name.as_str())).then_some(patched)
    })
}

/// `A<T>::A<U>`: the last component has template arguments and names its class.
fn is_template_ctor(name: &str) -> bool {
    let parts = top_level_components(name);
    let ident = |c: &str| c.split(['<', '[']).next().unwrap_or(c).to_string();
    match parts.as_slice() {
        [.., class, last] => last.ends_with('>') && ident(last) == ident(class),
        _ => false,
    }
}

/// Splits at `::` outside `<>`, `()` and `{}`.
fn top_level_components(name: &str) -> Vec<&str> {
    let b = name.as_bytes();
    let (mut out, mut depth, mut start, mut i) = (Vec::new(), 0i32, 0, 0);
    while i < b.len() {
        match b[i] {
            b'<' | b'(' | b'{' => depth += 1,
            b'>' | b')' | b'}' => depth -= 1,
            b':' if depth == 0 && b.get(i + 1) == Some(&b':') => {
                out.push(&name[start..i]);
                i += 2;
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&name[start..]);
    out
}

/// The byte range of the final parameter list, from its `(` to the end of the
/// string (trailing `const`, `volatile` and ref-qualifiers included).
fn param_list(s: &str) -> Option<Range<usize>> {
    let mut end = s.len();
    'strip: loop {
        for q in [" const", " volatile", " &&", " &"] {
            if s[..end].ends_with(q) {
                end -= q.len();
                continue 'strip;
            }
        }
        break;
    }
    if !s[..end].ends_with(')') {
        return None;
    }
    let mut depth = 0i32;
    for (i, c) in s[..end].char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i..s.len());
                }
            }
            _ => {}
        }
    }
    None
}

/// Removes what an empty pack expansion leaves behind: `, >`, `<, `, `, , ` in
/// template argument lists, and parameters that are only a declarator (`&&`,
/// ` const&`, `*`) in the final parameter list.
fn drop_empty_packs(mut s: String) -> String {
    loop {
        let next = s
            .replace(">, >", "> >")
            .replace(", >", ">")
            .replace("<, ", "<")
            .replace(", , ", ", ");
        if next == s {
            break;
        }
        s = next;
    }
    let Some(range) = param_list(&s) else {
        return s;
    };
    let close = range.start + matching_close(&s[range.start..]);
    let inner = &s[range.start + 1..close];
    let all = split_top_level(inner);
    let kept: Vec<&str> = all
        .iter()
        .copied()
        .filter(|p| {
            let bare = p.replace("const", "").replace("volatile", "");
            !bare.chars().all(|c| matches!(c, '&' | '*' | ' '))
        })
        .collect();
    if kept.len() == all.len() || inner.trim().is_empty() {
        return s;
    }
    let params = kept.iter().map(|p| p.trim()).collect::<Vec<_>>().join(", ");
    format!("{}({params}{}", &s[..range.start], &s[close..])
}

/// Offset of the `)` that closes the `(` at the start of `s`.
fn matching_close(s: &str) -> usize {
    let mut depth = 0i32;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// Splits at commas outside `<>`, `()`, `[]` and `{}`.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '<' | '(' | '[' | '{' => depth += 1,
            '>' | ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
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

    /// What the manifest shows for C and C++ (clang-19 symbols).
    #[test]
    fn demangles_c_and_cxx() {
        assert_eq!(demangle("_ZN2ns3Foo3barEi"), "ns::Foo::bar(int)");
        assert_eq!(demangle("sqlite3VdbeExec"), "sqlite3VdbeExec");
        assert_eq!(demangle("_Znwm"), "operator new(unsigned long)");
        assert_eq!(
            demangle("_ZnamSt11align_val_tRKSt9nothrow_t"),
            "operator new[](unsigned long, std::align_val_t, std::nothrow_t const&)"
        );
        assert_eq!(
            demangle("_ZNSt10lock_guardISt5mutexEC2ERS0_"),
            "std::lock_guard<std::mutex>::lock_guard(std::mutex&)"
        );
        assert_eq!(
            demangle("_ZL20__gthread_mutex_lockP15pthread_mutex_t"),
            "__gthread_mutex_lock(pthread_mutex_t*)"
        );
        assert_eq!(
            demangle("_ZNKSt6thread8joinableEv"),
            "std::thread::joinable() const"
        );
        assert_eq!(
            demangle("_ZNSt6vectorIiSaIiEE9push_backERKi"),
            "std::vector<int, std::allocator<int> >::push_back(int const&)"
        );
    }

    /// cpp_demangle prints a template constructor without its first parameter.
    #[test]
    fn template_constructors_keep_their_first_parameter() {
        assert_eq!(
            demangle("_ZNSt10_Head_baseILm0EiLb0EEC2IiEEOT_"),
            "std::_Head_base<(unsigned long)0, int, false>::_Head_base<int>(int&&)"
        );
        assert_eq!(
            demangle(
                "_ZNSt11unique_lockISt11timed_mutexEC2IlSt5ratioILl1ELl1EEEERS0_RKNSt6chrono8durationIT_T0_EE"
            ),
            "std::unique_lock<std::timed_mutex>::unique_lock<long, std::ratio<(long)1, (long)1> >\
             (std::timed_mutex&, std::chrono::duration<long, std::ratio<(long)1, (long)1> > const&)"
        );
        // Together with an empty pack (`std::thread t([]{})`).
        assert_eq!(
            demangle("_ZNSt6threadC2IZ1fiE3$_1JEvEEOT_DpOT0_"),
            "std::thread::thread<f(int)::$_1, void>(f(int)::$_1&&)"
        );
        // A template function that is not a constructor keeps its return type.
        assert_eq!(
            demangle("_ZSt8_DestroyIPiEvT_S1_"),
            "void std::_Destroy<int*>(int*, int*)"
        );
    }

    /// cpp_demangle prints an empty pack as an empty argument and a bare `&&`.
    #[test]
    fn empty_packs_leave_nothing() {
        assert_eq!(
            demangle("_ZSt4lockISt5mutexSt15recursive_mutexJEEvRT_RT0_DpRT1_"),
            "void std::lock<std::mutex, std::recursive_mutex>(std::mutex&, std::recursive_mutex&)"
        );
        assert_eq!(
            demangle("_ZSt11make_sharedISt5mutexJEESt10shared_ptrIT_EDpOT0_"),
            "std::shared_ptr<std::mutex> std::make_shared<std::mutex>()"
        );
        assert_eq!(
            demangle("_ZNSt10shared_ptrISt5mutexEC2ISaIvEJEEESt20_Sp_alloc_shared_tagIT_EDpOT0_"),
            "std::shared_ptr<std::mutex>::shared_ptr<std::allocator<void> >\
             (std::_Sp_alloc_shared_tag<std::allocator<void> >)"
        );
        assert_eq!(demangle("_Z3fooIJEEviDpRKT_i"), "void foo<>(int, int)");
    }

    /// clang's C++20 manglings (`Tk` constrained parameters, `Q` requires-clauses)
    /// are beyond cpp_demangle 0.5; the exact symbol beats a guess.
    #[test]
    fn unreadable_cxx_stays_mangled() {
        for sym in [
            "_Z5twiceITkSt8integraliET_S0_",
            "_Z4halfIdQsr3stdE14floating_pointIT_EES0_S0_",
        ] {
            assert_eq!(demangle(sym), sym);
            assert_eq!(demangle_cxx_parts(sym), None);
        }
    }

    #[test]
    fn cxx_parts_split_name_and_parameters() {
        let parts = demangle_cxx_parts;
        assert_eq!(
            parts("_ZNKSt6thread8joinableEv"),
            Some(("std::thread::joinable".into(), "() const".into()))
        );
        // No return type on a template function.
        assert_eq!(
            parts("_ZSt4lockISt5mutexSt15recursive_mutexJEEvRT_RT0_DpRT1_"),
            Some((
                "std::lock<std::mutex, std::recursive_mutex>".into(),
                "(std::mutex&, std::recursive_mutex&)".into()
            ))
        );
        assert_eq!(
            parts("_ZnwmPv"),
            Some(("operator new".into(), "(unsigned long, void*)".into()))
        );
        // Rust and C symbols are not C++.
        assert_eq!(parts("_ZN3std6thread5sleep17h1234567890abcdefE"), None);
        assert_eq!(parts("_RNvCsfLfy6EI15iL_7___rustc12___rust_alloc"), None);
        assert_eq!(parts("pthread_mutex_lock"), None);
    }

    #[test]
    fn ids_are_stable_and_separated() {
        let a = stable_id(&[b"ab", b"c"]);
        assert_eq!(a, stable_id(&[b"ab", b"c"]));
        assert_ne!(a, stable_id(&[b"a", b"bc"]));
        assert_eq!(a.len(), 16);
    }
}
