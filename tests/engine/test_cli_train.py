"""`posebh train-mdt` turns recipe mistakes into one line naming the key, exit status 2."""
import yaml
from typer.testing import CliRunner

from posebh_cli.cli import app


def test_bad_recipe_key_exits_2_with_one_line(tiny, tmp_path):
    raw = yaml.safe_load(tiny.read_text())
    raw["train"]["warmup"] = 10
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["train-mdt", "--recipe", str(bad), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "field 'train.warmup': unknown key" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_set_override_is_validated(tiny, tmp_path):
    result = CliRunner().invoke(app, ["train-mdt", "--recipe", str(tiny), "--out", str(tmp_path / "run"),
                                      "--set", "train.lr=-1"])
    assert result.exit_code == 2 and "field 'train.lr': must be > 0" in result.output
