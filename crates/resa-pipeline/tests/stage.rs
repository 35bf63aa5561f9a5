//! `run_stage`: a stage runs once, is skipped while its stamp matches and its output is on
//! disk, and runs again when either changes; the stamp is written only after a run succeeds.

use std::cell::Cell;
use std::path::PathBuf;

use burn::tensor::DType;
use resa_pipeline::{Error, PipelineEvent, Stage, run_stage};

type B = burn::backend::Autodiff<burn::backend::Flex>;

struct Counting {
    dir: PathBuf,
    stamp: String,
    runs: Cell<u32>,
    fail: bool,
}

impl Stage<B> for Counting {
    type Output = PathBuf;

    fn name(&self) -> &'static str {
        "counting"
    }

    fn stamp_file(&self) -> PathBuf {
        self.dir.join("done.json")
    }

    fn work_dir(&self) -> PathBuf {
        self.dir.clone()
    }

    fn stamp(&self) -> resa_pipeline::Result<String> {
        Ok(self.stamp.clone())
    }

    fn finished(&self) -> Option<PathBuf> {
        let out = self.dir.join("out.txt");
        out.is_file().then_some(out)
    }

    fn run(
        &self,
        _device: &<B as burn::tensor::backend::BackendTypes>::Device,
        _dtype: DType,
        _on_event: &mut dyn FnMut(PipelineEvent<'_>),
    ) -> resa_pipeline::Result<PathBuf> {
        self.runs.set(self.runs.get() + 1);
        if self.fail {
            return Err(Error::io(&self.dir, std::io::Error::other("failed on purpose")));
        }
        std::fs::create_dir_all(&self.dir).expect("dir");
        std::fs::write(self.dir.join("out.txt"), &self.stamp).expect("out");
        Ok(self.dir.join("out.txt"))
    }
}

#[test]
fn a_stage_is_skipped_only_while_its_stamp_and_output_hold() {
    let tmp = tempfile::tempdir().expect("tmp");
    let device = Default::default();
    let stage = |stamp: &str, fail: bool| Counting {
        dir: tmp.path().join("stage"),
        stamp: stamp.into(),
        runs: Cell::new(0),
        fail,
    };
    let skipped = std::cell::RefCell::new(Vec::new());
    let mut events = |e: PipelineEvent<'_>| {
        if let PipelineEvent::Skipped(name) = e {
            skipped.borrow_mut().push(name.to_string());
        }
    };

    // A failing run leaves no stamp.
    let s = stage("a", true);
    assert!(run_stage(&s, &device, DType::F32, &mut events).is_err());
    assert!(!tmp.path().join("stage/done.json").exists());

    let s = stage("a", false);
    let (_, ran) = run_stage(&s, &device, DType::F32, &mut events).expect("run");
    assert!(ran && s.runs.get() == 1);
    let (_, ran) = run_stage(&s, &device, DType::F32, &mut events).expect("skip");
    assert!(!ran && s.runs.get() == 1);
    assert_eq!(*skipped.borrow(), ["counting"]);

    // Another configuration runs again.
    let s = stage("b", false);
    let (_, ran) = run_stage(&s, &device, DType::F32, &mut events).expect("new stamp");
    assert!(ran && s.runs.get() == 1);
    // The stamp holds but the output is gone: it runs again.
    std::fs::remove_file(tmp.path().join("stage/out.txt")).expect("rm");
    let (_, ran) = run_stage(&s, &device, DType::F32, &mut events).expect("missing output");
    assert!(ran && s.runs.get() == 2);
}

/// A folder left by a run of another configuration (finished, or killed with its partial
/// work) is started over; one left by a killed run of the same configuration is kept for the
/// stage to resume.
#[test]
fn a_changed_configuration_starts_over_and_the_same_one_resumes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let device = Default::default();
    let dir = tmp.path().join("stage");
    let stage = |stamp: &str, fail: bool| Counting { dir: dir.clone(), stamp: stamp.into(), runs: Cell::new(0), fail };
    // A killed run of "a" left partial work and its started stamp.
    assert!(run_stage::<B, _>(&stage("a", true), &device, DType::F32, &mut |_| {}).is_err());
    std::fs::write(dir.join("checkpoint"), "a's partial work").expect("partial");
    // The same configuration again: the partial work is there for it to resume.
    let s = stage("a", true);
    assert!(run_stage::<B, _>(&s, &device, DType::F32, &mut |_| {}).is_err());
    assert!(dir.join("checkpoint").is_file(), "the same configuration keeps its partial work");
    // Another configuration: the folder is started over.
    let s = stage("b", false);
    run_stage::<B, _>(&s, &device, DType::F32, &mut |_| {}).expect("runs");
    assert!(!dir.join("checkpoint").exists(), "another configuration's checkpoints are not resumed");
    assert_eq!(std::fs::read_to_string(dir.join("done.json")).expect("stamp"), "b");
    assert!(!dir.join("done.json.started").exists());
    // And a finished folder of "b" is started over for "c" too.
    std::fs::write(dir.join("checkpoint"), "b's").expect("partial");
    run_stage::<B, _>(&stage("c", false), &device, DType::F32, &mut |_| {}).expect("runs");
    assert!(!dir.join("checkpoint").exists());
}
