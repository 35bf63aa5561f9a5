//! Parquet files (written by pyarrow, `scripts/reference/data_reference.py`), folders and
//! hub datasets from a local cache.

use std::path::{Path, PathBuf};

use resa_data::{Error, QaRow, ReadOptions, Source, load_dataset, read_qa};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn parquet_snappy_with_numeric_answers_and_a_null() {
    let (rows, report) = read_qa(fixture("qa_snappy.parquet"), &ReadOptions::default()).expect("parquet");
    assert_eq!(rows[0], QaRow::new("What is 2+3?", "5"));
    assert_eq!(rows[1].answer, "42");
    assert_eq!((report.rows, report.missing_answer), (3, 1));
    match read_qa(fixture("qa_snappy.parquet"), &ReadOptions::strict()) {
        Err(Error::MissingField { line, field, .. }) => assert_eq!((line, field.as_str()), (4, "answer")),
        other => panic!("expected MissingField, got {other:?}"),
    }
}

#[test]
fn parquet_zstd_with_row_groups() {
    let (rows, _) = read_qa(fixture("qa_zstd.parquet"), &ReadOptions::default()).expect("parquet");
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[9], QaRow::new("Compute 9 + 9.", "18"));
}

#[test]
fn not_parquet_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("fake.parquet");
    std::fs::write(&p, b"{\"problem\": 1}").expect("write");
    let err = read_qa(&p, &ReadOptions::default()).expect_err("not parquet");
    assert!(err.to_string().contains("fake.parquet") && err.to_string().contains("Parquet"), "{err}");
}

#[test]
fn a_folder_reads_its_split_files() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
    std::fs::copy(fixture("qa_zstd.parquet"), dir.path().join("data/train-00000-of-00001.parquet")).expect("cp");
    std::fs::copy(fixture("qa_snappy.parquet"), dir.path().join("data/test-00000-of-00001.parquet")).expect("cp");
    std::fs::write(dir.path().join("README.md"), "# card").expect("readme");
    let (rows, _, source) =
        load_dataset(dir.path().to_str().expect("utf8"), "train", &ReadOptions::default()).expect("folder");
    assert_eq!(rows.len(), 10);
    assert!(matches!(source, Source::Folder(f) if f.len() == 1));
    let (rows, _, _) = load_dataset(dir.path().to_str().expect("utf8"), "test", &ReadOptions::default()).expect("test");
    assert_eq!(rows.len(), 3);
}

/// A hub dataset already in the cache loads offline, by id and by registry name.
#[cfg(feature = "hub")]
#[test]
fn hub_datasets_load_offline_from_the_cache() {
    use resa_data::{HubOptions, load_dataset_with};
    let cache = tempfile::tempdir().expect("tmp");
    let repo = cache.path().join("datasets--agentica-org--DeepScaleR-Preview-Dataset");
    let rev = "fedcba9876543210fedcba9876543210fedcba98";
    std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
    std::fs::write(repo.join("refs/main"), rev).expect("ref");
    let snap = repo.join("snapshots").join(rev);
    std::fs::create_dir_all(&snap).expect("mkdir");
    std::fs::copy(fixture("qa_zstd.parquet"), snap.join("deepscaler.parquet")).expect("cp");
    let hub = HubOptions { cache_dir: Some(cache.path().to_path_buf()), offline: true };
    let (rows, _, source) =
        load_dataset_with("deepscaler", "train", &ReadOptions::default(), &hub).expect("cached dataset");
    assert_eq!(rows.len(), 10);
    assert!(matches!(source, Source::Hub { ref repo, .. } if repo == "agentica-org/DeepScaleR-Preview-Dataset"));
    let (rows, _, _) =
        load_dataset_with("agentica-org/DeepScaleR-Preview-Dataset", "train", &ReadOptions::default(), &hub)
            .expect("by id");
    assert_eq!(rows.len(), 10);
    let err = load_dataset_with("nobody/nothing", "train", &ReadOptions::default(), &hub).expect_err("miss");
    assert!(err.to_string().contains("nobody/nothing") && err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
}

/// Without the `hub` feature, registry names and hub ids say that they need it.
#[cfg(not(feature = "hub"))]
#[test]
fn hub_datasets_without_the_feature_say_so() {
    for spec in ["deepscaler", "agentica-org/DeepScaleR-Preview-Dataset"] {
        let err = load_dataset(spec, "train", &ReadOptions::default()).expect_err("needs the hub feature");
        assert!(err.to_string().contains("`hub` feature"), "{err}");
    }
}

#[test]
fn unknown_dataset_names_are_typed_errors() {
    let err = load_dataset("not-a-dataset", "train", &ReadOptions::default()).expect_err("unknown");
    assert!(matches!(err, Error::UnknownDataset { .. }), "{err}");
}
