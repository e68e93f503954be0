//! What a C/C++ compiler command line does, as far as the compiler wrappers of
//! `cargo panic cc` need to know: does it compile sources (then the plugin is
//! added), does it link (then the runtime is added and a manifest written), what
//! is the output. Pure.

/// The classified command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CcLine {
    /// Source files compiled by this invocation.
    pub sources: Vec<String>,
    /// Object files, archives and shared libraries given as operands.
    pub link_inputs: Vec<String>,
    /// `-o` value.
    pub output: Option<String>,
    /// `-c`, `-S`, `-E`, `-fsyntax-only`, `-M`/`-MM`: nothing is linked.
    pub no_link: bool,
    /// `-E` or `-M`/`-MM`: nothing is compiled either.
    pub preprocess_only: bool,
    /// `-shared`
    pub shared: bool,
    /// `-r` (a relocatable partial link: no runtime, no manifest).
    pub relocatable: bool,
    /// `--version`, `-v` alone, `-###`, `-print-*`, `-dump*`: a query.
    pub query: bool,
}

const SOURCE_EXTS: &[&str] = &[
    "c", "cc", "cp", "cpp", "cxx", "c++", "C", "CPP", "i", "ii", "m", "mm", "M",
];

/// Options whose value is the next argument (`-o` handled apart).
const TAKES_VALUE: &[&str] = &[
    "-I",
    "-D",
    "-U",
    "-include",
    "-imacros",
    "-isystem",
    "-idirafter",
    "-iprefix",
    "-iwithprefix",
    "-iquote",
    "-isysroot",
    "-MF",
    "-MT",
    "-MQ",
    "-L",
    "-l",
    "-x",
    "-Xlinker",
    "-Xassembler",
    "-Xpreprocessor",
    "-Xclang",
    "-arch",
    "-target",
    "--target",
    "-T",
    "-u",
    "-z",
    "-e",
    "-aux-info",
    "--param",
    "-mllvm",
    "-dependency-file",
    "-wrapper",
];

pub fn is_source(arg: &str) -> bool {
    std::path::Path::new(arg)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| SOURCE_EXTS.contains(&e))
}

pub fn parse(args: &[String]) -> CcLine {
    let mut line = CcLine::default();
    let mut lang_forced = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        match a {
            "-o" => {
                line.output = args.get(i).cloned();
                i += 1;
            }
            "-c" | "-S" | "-fsyntax-only" => line.no_link = true,
            "-E" | "-M" | "-MM" => {
                line.no_link = true;
                line.preprocess_only = true;
            }
            "-shared" => line.shared = true,
            "-r" | "--relocatable" => line.relocatable = true,
            "--version" | "-###" | "-dumpversion" | "-dumpmachine" | "-dumpspecs" => {
                line.query = true
            }
            "-x" => {
                lang_forced = args.get(i).is_some_and(|l| l != "none");
                i += 1;
            }
            _ if TAKES_VALUE.contains(&a) => i += 1,
            _ if a.starts_with("-print-") || a.starts_with("--print") => line.query = true,
            _ if a.starts_with("-o") && a.len() > 2 => line.output = Some(a[2..].to_string()),
            _ if a.starts_with('-') => {}
            _ if a.starts_with('@') => {}
            _ => {
                if is_source(a) || lang_forced {
                    line.sources.push(a.to_string());
                } else {
                    line.link_inputs.push(a.to_string());
                }
            }
        }
    }
    // `cc -v` alone asks for the version.
    if args.len() == 1 && args[0] == "-v" {
        line.query = true;
    }
    line
}

impl CcLine {
    /// Whether sources are compiled to code (the plugin applies).
    pub fn compiles(&self) -> bool {
        !self.query && !self.preprocess_only && !self.sources.is_empty()
    }

    /// Whether this links an executable or shared library (runtime + manifest).
    pub fn links(&self) -> bool {
        let has_inputs = !self.sources.is_empty() || !self.link_inputs.is_empty();
        !self.query && !self.no_link && !self.relocatable && has_inputs
    }

    /// The linked file.
    pub fn link_output(&self) -> String {
        self.output.clone().unwrap_or_else(|| "a.out".into())
    }

    /// The object a single-source `-c` compile writes (for the module key).
    pub fn single_object(&self) -> Option<String> {
        if !self.no_link || self.sources.len() != 1 {
            return None;
        }
        match &self.output {
            Some(o) => Some(o.clone()),
            None => {
                let stem = std::path::Path::new(&self.sources[0]).file_stem()?;
                Some(format!("{}.o", stem.to_string_lossy()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CcLine {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn compile_only() {
        let l = p("-O2 -Iinclude -c src/x.c -o build/x.o -MD -MF build/x.d");
        assert!(l.compiles());
        assert!(!l.links());
        assert_eq!(l.sources, vec!["src/x.c"]);
        assert_eq!(l.single_object().as_deref(), Some("build/x.o"));
        assert_eq!(p("-c a.cpp").single_object().as_deref(), Some("a.o"));
    }

    #[test]
    fn compile_and_link() {
        let l = p("a.c b.cc -lm -o prog");
        assert!(l.compiles() && l.links());
        assert_eq!(l.sources, vec!["a.c", "b.cc"]);
        assert_eq!(l.link_output(), "prog");
        assert_eq!(l.single_object(), None);
    }

    #[test]
    fn link_only() {
        let l = p("build/main.o build/libutil.a -o app -Wl,--as-needed -L/usr/lib -l pthread");
        assert!(!l.compiles());
        assert!(l.links());
        assert_eq!(l.link_inputs, vec!["build/main.o", "build/libutil.a"]);
        assert!(p("x.o -shared -o libx.so").shared);
        assert!(!p("x.o -r -o y.o").links());
        assert_eq!(p("x.o").link_output(), "a.out");
    }

    #[test]
    fn queries_and_preprocessing() {
        assert!(p("--version").query);
        assert!(p("-v").query);
        assert!(!p("-v x.c").query);
        assert!(p("-print-search-dirs").query);
        let e = p("-E x.c");
        assert!(!e.compiles() && !e.links());
        let m = p("-M x.c");
        assert!(!m.compiles());
        // -MD writes dependencies while compiling: still a compile.
        assert!(p("-MD -c x.c").compiles());
    }

    #[test]
    fn forced_language_and_values() {
        // Standard input is not a file the wrapper can name: not counted.
        assert!(p("-x c - -o out").sources.is_empty());
        let l = p("-x c foo.txt -c");
        assert_eq!(l.sources, vec!["foo.txt"]);
        let l = p("-include cfg.h -D X=1 -c y.c -oout.o");
        assert_eq!(l.sources, vec!["y.c"]);
        assert_eq!(l.output.as_deref(), Some("out.o"));
    }
}
