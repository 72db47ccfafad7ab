from typer.testing import CliRunner

from posebh_cli.cli import _one_line, app
from posebh_cli.errors import PosebhError


def test_worker_error_prints_only_its_own_message():
    raised_in_worker = PosebhError(
        "Caught PosebhError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nposebh_cli.errors.PosebhError: a.jpg: record annotation id=3: field '
        "'file_name': image file is missing or cannot be decoded\n")
    assert _one_line(raised_in_worker) == ("a.jpg: record annotation id=3: field 'file_name': "
                                           "image file is missing or cannot be decoded")
    assert _one_line(PosebhError("plain message")) == "plain message"


def test_help_lists_commands_in_the_order_of_the_flow():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    names = ["quickstart", "synth", "prepare-data", "train-mdt", "fit-prototypes", "finetune-transfer", "transfer",
             "fit-acae", "evaluate", "predict", "convert-checkpoint", "export"]
    rows = [line.split()[1] for line in result.output.splitlines() if line.startswith("│ ") and len(line.split()) > 1]
    positions = [rows.index(name) for name in names]
    assert positions == sorted(positions)
