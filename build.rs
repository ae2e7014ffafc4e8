//! Link settings for the `vault-injector` binary.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let libc = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && libc == "gnu" {
        // Pack the relative relocations of this position-independent
        // executable (DT_RELR, glibc >= 2.36): 500 KiB of `.rela.dyn` that
        // the loader reads at every start become a few KiB, which is most
        // of the agent's resident-memory margin (docs/benchmarks.md).
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        // The agent's functions together at the front of .text, then the
        // webhook's (scripts/link-order.sh). LLD only: the linker rustc uses
        // by default for this target since Rust 1.90.
        if env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu") && lld_by_default() {
            let list = format!("{}/link/symbol-order.txt", env!("CARGO_MANIFEST_DIR"));
            println!("cargo:rerun-if-changed=link/symbol-order.txt");
            println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={list}");
            println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        }
    }
}

/// Whether rustc links with its own LLD: the default for
/// x86_64-unknown-linux-gnu from Rust 1.90 on, unless a linker is chosen.
fn lld_by_default() -> bool {
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    if env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some() {
        return false;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker") || flags.contains("fuse-ld") {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (...)"
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
