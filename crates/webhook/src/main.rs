fn main() -> std::process::ExitCode {
    vault_injector::cli::main()
}
