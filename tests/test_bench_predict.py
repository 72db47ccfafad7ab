"""scripts/bench_predict.py runs end to end on a tiny zoo video and skips an ONNX row it cannot run, saying why."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_predict  # noqa: E402


def test_bench_predict_runs_on_a_tiny_video_and_skips_onnx_with_a_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_predict, "export_onnx", lambda *args: "no export in this test")
    record = bench_predict.main(["--frames", "3", "--size", "128x96", "--batches", "2", "--backends", "torch,onnx",
                                 "--repeats", "1", "--threads", "1", "--model-crops", "2", "--work", str(tmp_path)])
    out = capsys.readouterr().out
    torch_row, onnx_row = record["rows"]
    assert torch_row["predict"]["instances"] == record["crops"] > 0  # the zoo's boxes, one instance each
    assert torch_row["model_crops_per_s"] > 0 and len(torch_row["predict"]["wall_s"]["values"]) == 1
    assert onnx_row["skipped"] == "no export in this test"
    assert "| torch | 2 |" in out and "| onnx | 2 | skipped: no export in this test |" in out
    assert "python scripts/bench_predict.py --frames 3" in out and "commit:" in out
    assert (tmp_path / "zoo_3.avi").exists() and not list(tmp_path.glob("out_*"))
