fn main() {
    cc::Build::new().file("src/native.c").compile("native");
    println!("cargo::rerun-if-changed=src/native.c");
}
