"""TensorBoard's own event format, for resa-pipeline's `tensorboard` module.

Writes `crates/resa-pipeline/tests/fixtures/tensorboard/`: `reference.tfevents`, a file of
events encoded by TensorBoard's protocol buffers (`event_pb2.Event`, `summary_pb2.Summary`)
and framed by TensorBoard's own `RecordWriter`, and `events.json`, the same events as data,
so that `cargo test -p resa-pipeline --test tensorboard` checks the Rust encoder byte for
byte without Python.

With `--check RUN_DIR LOGDIR` it instead reads the event files resa wrote for a run
(`resa tensorboard RUN_DIR LOGDIR`) through TensorBoard's reader (`EventAccumulator`) and
checks that every numeric value of every `metrics.jsonl` line is there, at its step.
"""

import json
import math
import os
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

NOT_SCALARS = {"step", "total", "epoch", "tokens", "hookpoint"}


def write_fixture(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    events = [{"wall_time": 1765000000.25, "step": 0, "file_version": "brain.Event:2"}]
    for step, (loss, lr) in enumerate([(2.5, 1e-3), (1.75, 9.5e-4), (float("1e-7"), 0.0)], start=1):
        wall = 1765000001.5 + step
        events.append({"wall_time": wall, "step": step, "tag": "loss", "value": loss})
        events.append({"wall_time": wall, "step": step, "tag": "lr", "value": lr})
    events.append({"wall_time": 1765000100.0, "step": 300000, "tag": "layers.3/fvu", "value": -0.125})
    with open(out / "reference.tfevents", "wb") as f:
        w = RecordWriter(f)
        for e in events:
            ev = event_pb2.Event(wall_time=e["wall_time"], step=e["step"])
            if "file_version" in e:
                ev.file_version = e["file_version"]
            else:
                ev.summary.CopyFrom(
                    summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=e["tag"], simple_value=e["value"])])
                )
            w.write(ev.SerializeToString())
        w.flush()
    (out / "events.json").write_text(json.dumps(events, indent=1) + "\n")
    print(f"wrote {out}/reference.tfevents ({len(events)} events)")


def check(run: Path, logdir: Path) -> None:
    checked = 0
    for metrics in sorted(run.rglob("metrics.jsonl")):
        if any(p.startswith(".") for p in metrics.relative_to(run).parts):
            continue
        rel = metrics.parent.relative_to(run)
        acc = EventAccumulator(str(logdir / rel), size_guidance={"scalars": 0})
        acc.Reload()
        got = {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}
        for line in metrics.read_text().splitlines():
            m = json.loads(line)
            prefix = f"{m['hookpoint']}/" if "hookpoint" in m else ""
            for k, v in m.items():
                if k in NOT_SCALARS or not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                    continue
                tag = prefix + k
                have = got.get(tag, {}).get(m["step"])
                if have is None or abs(have - v) > 1e-6 * max(1.0, abs(v)):
                    sys.exit(f"{rel}: {tag} at step {m['step']}: metrics.jsonl {v}, TensorBoard {have}")
                checked += 1
    if checked == 0:
        sys.exit(f"no scalar found under {run}")
    print(f"TensorBoard's reader has all {checked} values of {run}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--check":
        check(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        root = Path(__file__).resolve().parents[2]
        write_fixture(root / "crates/resa-pipeline/tests/fixtures/tensorboard")
