//! The AFL++ entry point: `intelmesh-fuzz-afl TARGET`, fed by afl-fuzz (persistent mode).

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = intelmesh_fuzz::target(&name) else {
        let names: Vec<&str> = intelmesh_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: intelmesh-fuzz-afl TARGET; targets: {}", names.join(", "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| target(data));
}
