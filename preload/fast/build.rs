fn main() {
    // Bind our own references to malloc & co inside the library (no PLT hop, no interposition of
    // our internal calls), and keep the library resident.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
