"""The block path (blocks.py, in-process or in worker processes) gives the same results as run(), record for record."""

import io
import json
from pathlib import Path

import pytest

from cloudft.data import blocks
from cloudft.data.pipeline import Options, Pipeline
from cloudft.data.version import DatasetWriter


def _messy(path: Path, n: int = 600) -> None:
    lines = []
    for i in range(n):
        rec = {"prompt": f"question {i % 250}?", "completion": f" answer {i % 400} text"}
        if i % 97 == 5:
            lines.append(b"{not json")
        elif i % 89 == 7:
            lines.append(b'{"prompt": "caf\xe9", "completion": "x"}')
        elif i % 83 == 3:
            lines.append(json.dumps({"prompt": "p\u0001", "completion": "c"}).encode())
        elif i % 79 == 2:
            lines.append(json.dumps({"prompt": " ", "completion": "c"}).encode())
        elif i % 71 == 1:
            lines.append(b"")
        elif i % 67 == 4:
            lines.append(json.dumps({"prompt": "mail me at a@b.example.com", "completion": "x" * 900}).encode())
        else:
            lines.append(json.dumps(rec).encode() + (b"\r" if i % 5 == 0 else b""))
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")


def _run(tmp: Path, sources, options: Options, reference: bool) -> tuple:
    out = tmp / ("ref" if reference else "blk")
    writer = DatasetWriter(out)
    q = io.StringIO()
    pipe = Pipeline(options, q, roles=[r for _, r in sources])
    for path, role in sources:
        if reference:
            for o in pipe.run(path, role):
                writer.add(o.split, o.line, o.digest)
        else:
            pipe.consume(path, role, writer)
    summary = pipe.finish().to_dict()
    counts, versions = writer.close()
    files = {f.name: f.read_bytes() for f in sorted(out.iterdir())}
    return summary, q.getvalue(), counts, versions, files


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("opts", [dict(holdout={"validation": 0.1}, max_length=20, pii=True, batch_size=16),
                                  dict(batch_size=7), dict(holdout={"validation": 0.2, "test": 0.1})])
def test_block_path_matches_run(tmp_path, monkeypatch, workers, opts):
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 1500)  # many blocks: batches and duplicates cross them
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    _messy(train)
    _messy(val, 120)
    sources = [(train, "train"), (val, "validation")]
    ref = _run(tmp_path, sources, Options(**opts), reference=True)
    got = _run(tmp_path, sources, Options(workers=workers, **opts), reference=False)
    assert got == ref
    assert ref[0]["quarantined"] > 0 and ref[0]["counts"].get("duplicate")


def test_block_path_gzip_matches_run(tmp_path, monkeypatch):
    import gzip

    monkeypatch.setattr(blocks, "BLOCK_BYTES", 1000)
    plain = tmp_path / "t.jsonl"
    _messy(plain)
    gz = tmp_path / "t.jsonl.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    opts = dict(holdout={"validation": 0.1}, batch_size=10)
    assert _run(tmp_path, [(gz, "train")], Options(**opts), True) == _run(tmp_path, [(gz, "train")], Options(**opts), False)


def test_block_path_matches_run_with_unused_columns_and_repeated_keys(tmp_path, monkeypatch):
    """The unused-column report, late target-like columns and repeated keys agree between the two paths."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 800)
    lines = []
    for i in range(300):
        rec = {"prompt": f"question {i}?", "completion": f" answer {i}"}
        if i % 7 == 0:
            rec["id"] = i
        if i == 250:
            rec["score"] = 3  # target-like, first seen after the detection window: that record quarantined
        line = json.dumps(rec)
        if i % 41 == 3:
            line = line[:-1] + ', "prompt": "again"}'
        lines.append(line)
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ref = _run(tmp_path, [(path, "train")], Options(batch_size=9), reference=True)
    got = _run(tmp_path, [(path, "train")], Options(batch_size=9), reference=False)
    assert got == ref
    assert ref[0]["counts"]["unused_column"] == 1 and ref[0]["counts"]["duplicate_key"] == 8
    assert ref[0]["counts"]["unused_target"] == 1


_UNDER_SIGTERM_HANDLER = """
import io, signal, sys
from pathlib import Path
from cloudft.data import blocks
from cloudft.data.pipeline import Options, Pipeline
from cloudft.data.version import DatasetWriter

blocks.BLOCK_BYTES = 1500
signal.signal(signal.SIGTERM, lambda signum, frame: None)  # what train_entry's checkpoint handler does
for n in range(8):
    pipe = Pipeline(Options(workers=2), io.StringIO(), roles=["train"])
    writer = DatasetWriter(Path(sys.argv[2]) / str(n))
    pipe.consume(Path(sys.argv[1]), "train", writer)
    writer.close()
    print(pipe.finish().to_dict()["records_out"])
"""


def test_workers_end_when_the_parent_had_taken_sigterm(tmp_path):
    """Forked workers inherit their parent's handlers. A parent that had taken SIGTERM (train_entry's checkpoint
    handler, an app's) gave workers that ignored Pool.terminate(): consume() then waited for them forever. The hang
    needs a worker caught waiting at terminate(), so a child process makes and ends the pool several times."""
    import subprocess
    import sys

    train = tmp_path / "train.jsonl"
    _messy(train)
    try:
        done = subprocess.run([sys.executable, "-c", _UNDER_SIGTERM_HANDLER, str(train), str(tmp_path / "out")],
                              capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("the data pipeline's worker pool never ended under a SIGTERM handler")
    assert done.returncode == 0, done.stderr
    assert len(set(done.stdout.split())) == 1 and len(done.stdout.split()) == 8, done.stdout
