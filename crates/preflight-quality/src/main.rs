//! `preflight-quality`: runs the decision-quality benchmark on the shared real data and
//! writes `report.md` and `report.json` to `--out`.
//!
//! Usage: `preflight-quality [--seed N] [--out DIR] [--data DIR] [--small] [--no-protocols]`
//! (the issue #14 protocols run unless `--no-protocols`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use preflight_engine::Policy;
use preflight_quality::{bench, data, protocols, report};

fn main() -> ExitCode {
    let mut seed = 42u64;
    let mut out = PathBuf::from("target/quality");
    let mut dir = data::default_data_dir();
    let mut small = false;
    let mut no_protocols = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("{name} needs a value");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--seed" => {
                seed = val("--seed").parse().unwrap_or_else(|_| {
                    eprintln!("--seed must be an unsigned integer");
                    std::process::exit(2)
                })
            }
            "--out" => out = PathBuf::from(val("--out")),
            "--data" => dir = PathBuf::from(val("--data")),
            "--small" => small = true,
            "--no-protocols" => no_protocols = true,
            "-h" | "--help" => {
                println!("preflight-quality [--seed N] [--out DIR] [--data DIR] [--small] [--no-protocols]");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let corpus = match data::load(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = if small {
        bench::Config::small(seed)
    } else {
        bench::Config::full(seed)
    };
    let started = std::time::Instant::now();
    let run = bench::run(&corpus.docs, &cfg, &Policy::default());
    let mut by_source: BTreeMap<String, usize> = BTreeMap::new();
    for d in &corpus.docs {
        *by_source.entry(d.source.to_string()).or_default() += 1;
    }
    let groups = data::by_group(&corpus.docs).len();
    let mut rep = report::build(&run, &cfg, &corpus.data_version, by_source, groups);
    if !no_protocols {
        match protocols::run(&dir, &corpus.docs, &cfg, &Policy::default()) {
            Ok(p) => rep.protocols = Some(protocols::build(&p)),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let md = report::markdown(&rep);
    if let Err(e) = std::fs::create_dir_all(&out)
        .and_then(|_| std::fs::write(out.join("report.md"), &md))
        .and_then(|_| {
            std::fs::write(
                out.join("report.json"),
                serde_json::to_string_pretty(&rep).expect("report serializes"),
            )
        })
    {
        eprintln!("error: cannot write to {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!("{md}");
    eprintln!(
        "wrote {}/report.md and report.json in {:.1} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
