//! The whole SAE-Tuning pipeline on the built-in toy model through the library, the same
//! as `resa demo`: Stage I (SAE from scratch), Stage II (SAE-guided LoRA), the CoT-free SFT
//! baseline, and evaluation of all three.
//!
//! ```text
//! cargo run --release --example demo            # full demo, a few minutes on 2 cores
//! cargo run --release --example demo -- quick   # a reduced run in seconds
//! ```

use burn::backend::Flex;
use resa::pipeline::PipelineEvent;
use resa::toy::demo::{DemoConfig, DemoEvent, ToyStages, run_demo, table};

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().nth(1).as_deref() == Some("quick");
    let mut cfg = DemoConfig { out: "resa-demo-example".into(), ..DemoConfig::default() };
    if quick {
        // Fewer rows, steps and test problems: the plumbing, not the numbers.
        let stages = ToyStages { stage1_steps: 5, stage2_steps: 4, ..cfg.stages };
        cfg = DemoConfig { train_rows: 200, test_problems: 10, stages, ..cfg };
    }
    let report = run_demo::<Flex>(&cfg, &Default::default(), &mut |event| match event {
        DemoEvent::Begin(part) => println!("== {part}"),
        DemoEvent::Pipeline(name, PipelineEvent::Stage2(m)) if m.step == m.total => {
            println!("{name}: loss {:.4} after {} steps", m.loss, m.step);
        }
        _ => {}
    })?;
    println!("{}", table(&report));
    println!("artifacts and report.md in {}", cfg.out.display());
    Ok(())
}
