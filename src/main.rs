fn main() {
    std::process::exit(abcond::cli::main());
}
