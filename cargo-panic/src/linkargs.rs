//! The linker command line rustc hands to the link driver (gcc flavour), parsed
//! into what the driver needs: file operands, `-l` libraries and search paths, the
//! LTO plugin options, the output; and the options the driver adds to it. Pure
//! apart from reading `@response` files.

use std::path::{Path, PathBuf};

/// Options whose value is the next argument (gcc driver syntax).
const TAKES_VALUE: &[&str] = &[
    "-o", "-L", "-l", "-z", "-T", "-Xlinker", "-e", "-u", "-x", "-MF", "-B",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A file operand (object, archive, shared library), at its position.
    File(PathBuf),
    /// `-l name` / `-lname` / `-l:file`, with whether `-Bstatic` was in force.
    Lib { spec: String, static_mode: bool },
    /// Anything else, passed through verbatim (may be several argv words, e.g. `-o x`).
    Other(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkLine {
    pub args: Vec<Arg>,
    pub output: Option<PathBuf>,
    pub search_paths: Vec<PathBuf>,
    /// `-plugin-opt=` values (`O3`, `mcpu=x86-64`, `mattr=...`), removed from `args`.
    pub plugin_opts: Vec<String>,
    pub shared: bool,
}

impl LinkLine {
    /// Optimisation level the LTO plugin would use (`O0`..`O3`), default `O2`.
    pub fn opt_level(&self) -> String {
        self.plugin_opts
            .iter()
            .find(|o| o.len() == 2 && o.starts_with('O'))
            .cloned()
            .unwrap_or_else(|| "O2".to_string())
    }

    pub fn cpu(&self) -> String {
        self.plugin_opts
            .iter()
            .find_map(|o| o.strip_prefix("mcpu="))
            .unwrap_or("x86-64")
            .to_string()
    }

    pub fn features(&self) -> String {
        self.plugin_opts
            .iter()
            .find_map(|o| o.strip_prefix("mattr="))
            .unwrap_or("")
            .to_string()
    }
}

/// Expands `@file` arguments (rustc writes one argument per line, escaping `\` and
/// spaces with a backslash).
pub fn expand_response_files(
    args: &[String],
    read: &mut dyn FnMut(&Path) -> std::io::Result<String>,
) -> std::io::Result<Vec<String>> {
    let mut out = Vec::with_capacity(args.len());
    for a in args {
        match a.strip_prefix('@') {
            Some(path) => {
                let text = read(Path::new(path))?;
                out.extend(text.lines().filter(|l| !l.is_empty()).map(unescape));
            }
            None => out.push(a.clone()),
        }
    }
    Ok(out)
}

fn unescape(line: &str) -> String {
    let mut s = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                s.push(n);
            }
        } else {
            s.push(c);
        }
    }
    s
}

/// Escapes one argument for a gcc response file.
pub fn escape_for_response_file(arg: &str) -> String {
    let mut s = String::with_capacity(arg.len());
    for c in arg.chars() {
        if matches!(c, '\\' | ' ' | '\t' | '"' | '\'' | '\n') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

pub fn parse(argv: &[String]) -> LinkLine {
    let mut line = LinkLine::default();
    let mut static_mode = false;
    let mut i = 0;
    while i < argv.len() {
        let a = &argv[i];
        let next = argv.get(i + 1);
        i += 1;
        if a == "-shared" {
            line.shared = true;
        }
        if let Some(rest) = a.strip_prefix("-Wl,") {
            let mut kept = Vec::new();
            for part in rest.split(',') {
                if let Some(opt) = part.strip_prefix("-plugin-opt=") {
                    line.plugin_opts.push(opt.to_string());
                    continue;
                }
                match part {
                    "-Bstatic" | "-static" => static_mode = true,
                    "-Bdynamic" | "-dy" | "-call_shared" => static_mode = false,
                    _ => {}
                }
                kept.push(part);
            }
            if !kept.is_empty() {
                line.args
                    .push(Arg::Other(vec![format!("-Wl,{}", kept.join(","))]));
            }
            continue;
        }
        if a == "-l" {
            if let Some(v) = next {
                line.args.push(Arg::Lib {
                    spec: v.clone(),
                    static_mode,
                });
                i += 1;
            }
            continue;
        }
        if let Some(spec) = a.strip_prefix("-l") {
            line.args.push(Arg::Lib {
                spec: spec.to_string(),
                static_mode,
            });
            continue;
        }
        if a == "-L" {
            if let Some(v) = next {
                line.search_paths.push(PathBuf::from(v));
                line.args.push(Arg::Other(vec![a.clone(), v.clone()]));
                i += 1;
            }
            continue;
        }
        if let Some(p) = a.strip_prefix("-L") {
            line.search_paths.push(PathBuf::from(p));
            line.args.push(Arg::Other(vec![a.clone()]));
            continue;
        }
        if a == "-o" {
            if let Some(v) = next {
                line.output = Some(PathBuf::from(v));
                line.args.push(Arg::Other(vec![a.clone(), v.clone()]));
                i += 1;
            }
            continue;
        }
        if TAKES_VALUE.contains(&a.as_str()) {
            let mut words = vec![a.clone()];
            if let Some(v) = next {
                words.push(v.clone());
                i += 1;
            }
            line.args.push(Arg::Other(words));
            continue;
        }
        if a.starts_with('-') || a.is_empty() {
            line.args.push(Arg::Other(vec![a.clone()]));
            continue;
        }
        line.args.push(Arg::File(PathBuf::from(a)));
    }
    line
}

/// Resolves `-l` the way the linker would: `-l:file` by exact name, otherwise
/// `lib<name>.so` (unless static) then `lib<name>.a` along the search paths.
pub fn resolve_lib(spec: &str, static_mode: bool, search: &[PathBuf]) -> Option<PathBuf> {
    let names: Vec<String> = match spec.strip_prefix(':') {
        Some(exact) => vec![exact.to_string()],
        None if static_mode => vec![format!("lib{spec}.a")],
        None => vec![format!("lib{spec}.so"), format!("lib{spec}.a")],
    };
    for dir in search {
        for n in &names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The runtime's functions a program's own code looks up at run time (the
/// price and fuse API: `panic-api` calls `dlsym(RTLD_DEFAULT, ...)`), so they
/// must be in an instrumented executable's dynamic symbol table.
pub const RUNTIME_EXPORTS: [&str; 3] = [
    panic_runtime::abi::SYM_PRICE,
    panic_runtime::abi::SYM_PRICE_SEQ,
    panic_runtime::abi::SYM_FUSE,
];

/// The compiler-driver word that puts `symbols` into the dynamic symbol table
/// of the executable being linked: `-Wl,--export-dynamic-symbol=S,...` (GNU ld
/// since 2.35, gold, lld and rust-lld). An executable exports nothing by default,
/// not even default-visibility symbols. A symbol the link does not define is no
/// error and adds no entry (nor pulls in an archive member); in a static
/// executable, which has no dynamic symbol table, the option does nothing. A
/// shared library exports its default-visibility symbols anyway, so it is only
/// needed for executables.
pub fn export_dynamic(symbols: &[&str]) -> String {
    let opts: Vec<String> = symbols
        .iter()
        .map(|s| format!("--export-dynamic-symbol={s}"))
        .collect();
    format!("-Wl,{}", opts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_a_rustc_link_line() {
        let argv = v(&[
            "-m64",
            "/t/deps/rustcX/symbols.o",
            "/t/deps/app-1.app.abc-cgu.0.rcgu.o",
            "-Wl,--as-needed",
            "-Wl,-Bstatic",
            "/t/deps/libdep-2.rlib",
            "-Wl,-Bdynamic",
            "-lgcc_s",
            "-L",
            "/t/raw",
            "-fuse-ld=lld",
            "-Wl,-plugin-opt=O3,-plugin-opt=mcpu=x86-64",
            "-o",
            "/t/deps/app-1",
            "-pie",
        ]);
        let line = parse(&argv);
        assert_eq!(line.output.as_deref(), Some(Path::new("/t/deps/app-1")));
        assert_eq!(line.opt_level(), "O3");
        assert_eq!(line.cpu(), "x86-64");
        assert_eq!(line.search_paths, vec![PathBuf::from("/t/raw")]);
        assert!(!line.shared);
        let files: Vec<_> = line
            .args
            .iter()
            .filter_map(|a| match a {
                Arg::File(p) => Some(p.to_str().unwrap()),
                _ => None,
            })
            .collect();
        assert_eq!(
            files,
            [
                "/t/deps/rustcX/symbols.o",
                "/t/deps/app-1.app.abc-cgu.0.rcgu.o",
                "/t/deps/libdep-2.rlib"
            ]
        );
        assert!(line.args.contains(&Arg::Lib {
            spec: "gcc_s".into(),
            static_mode: false
        }));
        // The plugin options are consumed, nothing of that -Wl word is left.
        assert!(
            !line
                .args
                .iter()
                .any(|a| matches!(a, Arg::Other(w) if w[0].contains("plugin-opt")))
        );
    }

    #[test]
    fn response_files_round_trip() {
        let args = v(&["a b", "c\\d", "plain"]);
        let text: String = args
            .iter()
            .map(|a| escape_for_response_file(a) + "\n")
            .collect();
        let expanded =
            expand_response_files(&v(&["-x", "@rsp"]), &mut |_| Ok(text.clone())).unwrap();
        assert_eq!(expanded, v(&["-x", "a b", "c\\d", "plain"]));
    }

    #[test]
    fn static_mode_follows_bstatic() {
        let line = parse(&v(&["-Wl,-Bstatic", "-lfoo", "-Wl,-Bdynamic", "-lbar"]));
        assert!(line.args.contains(&Arg::Lib {
            spec: "foo".into(),
            static_mode: true
        }));
        assert!(line.args.contains(&Arg::Lib {
            spec: "bar".into(),
            static_mode: false
        }));
    }

    #[test]
    fn exports_are_one_driver_word() {
        assert_eq!(
            export_dynamic(&RUNTIME_EXPORTS),
            "-Wl,--export-dynamic-symbol=panic_price,--export-dynamic-symbol=panic_price_seq,\
             --export-dynamic-symbol=panic_fuse"
        );
        // What the driver adds parses as an option, not as an input.
        let line = parse(&[export_dynamic(&RUNTIME_EXPORTS)]);
        assert!(matches!(&line.args[..], [Arg::Other(_)]));
    }
}
