fn main() -> std::process::ExitCode {
    vault_injector_agent::cli::main()
}
