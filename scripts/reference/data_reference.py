#!/usr/bin/env python3
"""Small Parquet files for resa-data's reader tests, written with pyarrow (as the hub's
dataset viewer and `datasets` write them):

    python scripts/reference/data_reference.py crates/resa-data/tests/fixtures

  qa_snappy.parquet  columns question (str), answer (int64; one null), extra (list<int>)
  qa_zstd.parquet    columns problem (str), answer (str), two row groups
"""
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    t = pa.table({
        "question": ["What is 2+3?", "What is 7*6?", "Name a prime.", "Empty answer?"],
        "answer": pa.array([5, 42, 7, None], type=pa.int64()),
        "extra": [[1], [2, 3], [], [4]],
    })
    pq.write_table(t, os.path.join(out, "qa_snappy.parquet"), compression="snappy")
    t = pa.table({
        "problem": [f"Compute {i} + {i}." for i in range(10)],
        "answer": [str(2 * i) for i in range(10)],
    })
    pq.write_table(t, os.path.join(out, "qa_zstd.parquet"), compression="zstd", row_group_size=4)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
