//! Throughput of the adapters on real extractor outputs: a multi-page Textract
//! AnalyzeDocument response and an Azure 2.1 layout result (see docs/features.md,
//! "Performance"). Reads the shared data directory like the data-driven tests.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use preflight_adapters::{features_from_bytes, Format};

fn data_dir() -> PathBuf {
    std::env::var_os("PREFLIGHT_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
        })
}

fn bench(c: &mut Criterion) {
    let dir = data_dir();
    let cases = [
        (
            "textract_analyze_document_2_pages",
            "extractors/textract/analyze_document/multi-page-forms-samples-2-page.json",
            Format::Textract,
        ),
        (
            "azure_v2_1_layout_w9_6_pages",
            "extractors/azure/same_template/irs_w9_multipage_v2.1/fw9_1.pdf.ocr.json",
            Format::Azure,
        ),
        (
            "azure_v2_1_sample_layout",
            "extractors/azure/layout_v2.1/sample-layout-output.json",
            Format::Azure,
        ),
    ];
    let mut group = c.benchmark_group("features_from_bytes");
    for (name, rel, format) in cases {
        let path = dir.join(rel);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "benchmark input {} is missing ({e}); set PREFLIGHT_DATA_DIR",
                path.display()
            )
        });
        // One element = one document converted, so Criterion reports documents per second.
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{name}_autodetect"), |b| {
            b.iter(|| features_from_bytes(std::hint::black_box(&bytes), None).expect("convertible"))
        });
        group.bench_function(format!("{name}_forced"), |b| {
            b.iter(|| {
                features_from_bytes(std::hint::black_box(&bytes), Some(format))
                    .expect("convertible")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
