//! Prints the adapter output for one file: `cargo run -p preflight-adapters --example
//! features -- FILE [FORMAT]`. A quick way to inspect what a file turns into.

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: features FILE [FORMAT]");
        std::process::exit(2);
    };
    let format = match args.next().map(|n| n.parse()) {
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
        None => None,
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    match preflight_adapters::features_from_bytes(&bytes, format) {
        Ok(out) => println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serializable")
        ),
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    }
}
