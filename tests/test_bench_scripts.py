"""The benchmark scripts' helpers: FLOPs include the fused CPU attention; HF weights map onto ours exactly."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import _bench_utils as bu  # noqa: E402


def test_flop_count_includes_sdpa():
    q = torch.randn(2, 3, 16, 8)
    macs = 2 * 3 * 16 * 16 * 8  # one [16, 8] x [8, 16] product per (batch, head); attn @ v the same
    assert bu.count_flops(lambda: F.scaled_dot_product_attention(q, q, q)) == 2 * (2 * macs)  # 2 FLOPs per MAC


def test_time_call_reports_wall_and_cpu_spreads():
    stats = bu.time_call(lambda: torch.randn(64, 64) @ torch.randn(64, 64), torch.device("cpu"), iters=2, repeats=3)
    assert len(stats["values"]) == 3 and stats["min"] <= stats["median"] <= stats["max"]
    assert len(stats["cpu"]["values"]) == 3 and stats["cpu"]["min"] >= 0


def test_hf_model_and_ours_compute_the_same_heatmaps():
    pytest.importorskip("transformers")
    import bench_infer

    ours, hf = bench_infer.build_models("vit_pico", experts=3, with_hf=True)
    fns = bench_infer.forward_fns(ours, hf, 2, torch.device("cpu"))
    with torch.no_grad():
        expected = fns["hf"]()
        torch.testing.assert_close(fns["ours"](), expected, atol=1e-4, rtol=1e-4)
    assert expected.shape == (2, 17, 64, 48) and expected.std() > 0.01  # not a vacuous all-zero match


def test_mdt_summary_marks_unscored_datasets_and_reports_union_points():
    import bench_mdt

    run = {"datasets": {d: 0.5 for d in bench_mdt.MDT_DATASETS}, "mean": 0.5, "cross": {"coco@aic": 0.2},
           "cross_mean": 0.2}
    student = {"datasets": {d: (0.4 if d in ("coco", "mpii") else None) for d in bench_mdt.MDT_DATASETS},
               "mean": 0.4, "cross": {"coco@mpii": 0.1}, "cross_mean": 0.1, "extra_points": 0.3}
    table = bench_mdt.summarize({"multihead": {0: run, 1: run}, "distill": {0: student}})
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert "50.0 ± 0.0" in rows["multihead"] and rows["multihead"].rstrip(" |").endswith("2")
    cells = [c.strip() for c in rows["distill"].strip("|").split("|")]
    assert cells[1:7] == ["40.0 ± 0.0", "-", "40.0 ± 0.0", "-", "-", "-"]
    assert "distill: AP of the union points" in table and "30.0 ± 0.0" in table


def test_mdt_base_refuses_an_evaluation_zoo_it_trained_on():
    import bench_mdt

    card = json.loads((bench_mdt.REPO / "posebh_cli" / "weights" / "zoo-base" / "card.json").read_text())
    trained_on = card["train_zoo"]["seed"]
    with pytest.raises(SystemExit, match="--eval-zoo-seed"):
        bench_mdt.resolve_base("zoo-base", eval_seed=trained_on)
    assert bench_mdt.resolve_base("zoo-base", eval_seed=trained_on + 1).name == "zoo-base"
    args = bench_mdt.parse_args(["--base", "zoo-base", "--eval-zoo-seed", "3000"])
    assert args.base == "zoo-base" and args.eval_zoo_seed == 3000


def test_mdt_precision_reaches_every_arm_recipe(tmp_path):
    import bench_mdt

    data = {name: tmp_path / name for name in bench_mdt.MDT_DATASETS}

    def precision(argv):
        args = bench_mdt.parse_args(argv)
        recipe = bench_mdt.make_recipe("zoo-bench-posebh.yaml", "x", data, args, seed=0, epochs=6, init=None)
        return recipe["train"]["mixed_precision"]

    assert precision([]) == "no"                            # fp32 on the CPU unless asked
    assert precision(["--device", "cuda"]) == "bf16"
    assert precision(["--precision", "bf16"]) == "bf16"
    assert precision(["--device", "cuda", "--precision", "no"]) == "no"


def test_mdt_arms_continue_the_base_at_its_input_size(tmp_path):
    import bench_mdt

    data = {name: tmp_path / name for name in bench_mdt.MDT_DATASETS}
    base = tmp_path / "base"
    base.mkdir()
    (base / "model.json").write_text(json.dumps({"config": {"img_size": [384, 288]}}))

    def size(argv, init):
        recipe = bench_mdt.make_recipe("zoo-bench-posebh.yaml", "x", data, bench_mdt.parse_args(argv), seed=0,
                                       epochs=6, init=init)
        return recipe["model"]["img_size"]

    assert size([], base) == [384, 288] and size([], None) == [256, 192]
    assert size(["--img-size", "128x96"], base) == [128, 96]


def test_every_script_imports_names_the_package_has():
    """The scripts import lazily, inside functions: a moved name would only fail hours into a benchmark."""
    import ast
    import importlib

    missing = []
    for script in sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("posebh_cli"):
                module = importlib.import_module(node.module)
                missing += [f"{script.name}:{node.lineno} {node.module}.{alias.name}" for alias in node.names
                            if not hasattr(module, alias.name)
                            and importlib.util.find_spec(f"{node.module}.{alias.name}") is None]
    assert not missing


def test_oks_margin_r_below_one_is_a_keypoint_oks_above_half():
    import oks_margin

    sigmas = np.array([0.05, 0.1, 0.02])
    truth = [10.0, 10.0, 2, 20.0, 20.0, 2, 30.0, 30.0, 0]
    ann = {"id": 7, "bbox": [0.0, 0.0, 40.0, 50.0], "area": 400.0, "keypoints": truth, "head_box": [0, 0, 6, 8]}
    pred = [13.0, 10.0, 1.0, 20.0, 21.0, 1.0, 99.0, 99.0, 1.0]
    gt, results = {"annotations": [ann]}, [{"ann_id": 7, "keypoints": pred}]

    m = oks_margin.keypoint_margins(gt, results, sigmas, "coco")
    d, s = np.array([3.0, 1.0]), 20.0
    keypoint_oks = np.exp(-d ** 2 / (2 * s ** 2 * (2 * sigmas[:2]) ** 2))   # the unlabelled third is left out
    assert m["r"].shape == (2,) and np.array_equal(m["r"] < 1, keypoint_oks > 0.5)
    np.testing.assert_allclose(np.exp(-(m["r"] * oks_margin.OKS_HALF) ** 2 / 2), keypoint_oks)
    np.testing.assert_allclose(m["d_over_s"], d / s)

    no_area = oks_margin.keypoint_margins(gt, results, sigmas, "coco_noarea")
    np.testing.assert_allclose(no_area["d_over_s"], d / np.sqrt(40 * 50 * 0.53))
    pckh = oks_margin.keypoint_margins(gt, results, sigmas, "pckh")
    np.testing.assert_allclose(pckh["r"], d / (0.5 * 0.6 * 10.0))   # head box diagonal 10

    # per keypoint: the unlabelled third has no row; the worst median r comes first, with its error in pixels
    np.testing.assert_allclose(m["d_px"], d)
    rows = oks_margin.per_keypoint(m, ["a", "b", "c"])
    assert [name for name, _, _ in rows] == ["a", "b"] and rows[0][1] > rows[1][1]
    assert rows[0][2] == 3.0 and rows[1][2] == 1.0


def test_oks_margin_other_side_counts_keypoints_placed_on_the_mirror_partner():
    import oks_margin

    # a nose (unpaired) and a left/right pair 20 px apart in a 40 x 40 box: s = 40, the pair is 0.5 s apart
    flip = [0, 2, 1]
    truth = [20.0, 5.0, 2, 10.0, 20.0, 2, 30.0, 20.0, 2]
    gt = {"annotations": [{"id": 1, "bbox": [0.0, 0.0, 40.0, 40.0], "keypoints": truth}]}

    def share(pred):
        return oks_margin.other_side_share(gt, [{"ann_id": 1, "keypoints": pred}], flip)

    assert share([20, 5, 1, 11, 20, 1, 29, 20, 1]) == 0.0     # each side on its own truth
    assert share([20, 5, 1, 29, 20, 1, 11, 20, 1]) == 1.0     # swapped
    assert share([20, 5, 1, 11, 20, 1, 11, 20, 1]) == 0.5     # both on the left limb: one of two on the wrong side
    assert oks_margin.other_side_share(gt, [{"ann_id": 1, "keypoints": [0] * 9}], flip, min_apart=0.6) == 0.0


def test_continue_zoo_base_grows_depth_without_changing_the_output_and_writes_valid_recipes():
    import continue_zoo_base as cz

    from posebh_cli.models.pose_model import PoseModel
    from posebh_cli.recipe import recipe_from_dict
    from posebh_cli.skeletons import load_skeleton

    names = ["coco", "ap10k"]
    source = PoseModel("vit_pico", names, [load_skeleton(n) for n in names], img_size=(64, 48)).eval()
    grown = cz.grow_depth(source, "vit_tiny")
    assert len(grown.backbone.blocks) == 3 * len(source.backbone.blocks)
    images, index = torch.randn(2, 3, 64, 48), torch.tensor([0, 1])
    with torch.no_grad():
        before, after = source(images, index)["heatmaps"], grown(images, index)["heatmaps"]
        for a, b in zip(before, after):
            torch.testing.assert_close(a, b)
        grown.backbone.blocks[1].attn.proj.weight.normal_()   # a new block that is not identity shows
        assert not torch.allclose(grown(images, index)["heatmaps"][0], before[0])
    for arm in cz.ARMS:
        recipe = recipe_from_dict(cz.arm_recipe(arm, Path("init"), epochs=3, low_epochs=1, lr=3e-4), check_paths=False)
        assert [s.lr for s in recipe.stages] == pytest.approx([3e-4, 3e-5])
        assert recipe.model.init.kind == "ours" and recipe.model.arch == cz.ARMS[arm][0]


def _stage_run(tmp_path, recipe_name: str, steps: int):
    """A run folder of a bundled stage recipe with `steps` logged steps at 16 samples/s; the recipe's dict."""
    import yaml

    from posebh_cli.recipe import find_recipe

    raw = yaml.safe_load(find_recipe(recipe_name).read_text())
    run = tmp_path / "runs" / recipe_name
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump(raw))
    (run / "metrics.jsonl").write_text(json.dumps({"step": steps - 10, "samples_per_s": 16.0}) + "\n"
                                       + json.dumps({"step": steps, "loss": 1.0}) + "\n")
    return run, raw


def test_zoo_base_later_stage_cards_continue_the_earlier_stage_cards(tmp_path):
    """The card of the 384x288 stage counts the first stage's steps, hours and segments before its own; the card of
    the no-flip stage counts both before its own, shows all three stages' scores and says which were scored without
    flip test. Each bundled later-stage recipe starts from the folder the script ships the stage before it to."""
    import train_zoo_base as tzb

    from posebh_cli.inference.predictor import default_flip_test
    from posebh_cli.recipe import recipe_from_dict

    first = {"recipe": "zoo-base", "input": [256, 192], "steps": 100, "samples_seen": 3200, "train_hours": 1.0,
             "train_zoo": {"seed": tzb.TRAIN_SEED, "scale": tzb.TRAIN_SCALE},
             "eval_zoo": {"seed": 2000, "scale": 2.0, "flip_test": True},
             "segments": [{"steps": [0, 100], "train_hours": 1.0, "commit": "abc", "precision": "no",
                           "start": "random init"}],
             "scores": {"coco": {"AP": 0.2}, "mpii": {"PCKh": 0.6}}}
    (tmp_path / tzb.FIRST_STAGE).mkdir()
    (tmp_path / tzb.FIRST_STAGE / "card.json").write_text(json.dumps(first))
    assert tzb.is_first_stage(tmp_path / tzb.FIRST_STAGE)
    hires_run, hires_raw = _stage_run(tmp_path, tzb.HIRES_RECIPE, 60)
    recipe = recipe_from_dict(hires_raw, check_paths=False)
    assert recipe.model.init.kind == "ours" and recipe.model.init.path == tzb.FIRST_STAGE
    assert recipe.model.img_size == (384, 288) and default_flip_test(hires_raw)
    figures = tzb.card_figures(hires_run, tmp_path)
    assert figures["steps"] == 160 and figures["samples_seen"] == 3200 + 60 * 32
    assert figures["train_hours"] == pytest.approx(1.0 + round(60 * 32 / 16 / 3600, 2))
    assert [s["steps"] for s in figures["segments"]] == [[0, 100], [100, 160]]
    assert figures["segments"][1]["recipe"] == tzb.HIRES_RECIPE and "384x288" in figures["segments"][1]["start"]
    hires = {"recipe": tzb.HIRES_RECIPE, "input": [384, 288], "train_zoo": first["train_zoo"], "commit": "def",
             "machine": "m", "eval_zoo": {"seed": 2000, "scale": 2.0, "flip_test": True}, **figures,
             "scores": {"coco": {"AP": 0.3}, "mpii": {"PCKh": 0.65}}}
    text = tzb.card_markdown(hires)
    assert "| coco | AP | 20.0 | 30.0 |" in text and "| mpii | PCKh | 60.0 | 65.0 |" in text
    assert "zoo-base (256x192)" in text and "zoo-base-384 (384x288)" in text and "recipe zoo-base-384" in text
    assert "ground-truth boxes, flip test (x100)" in text
    assert not tzb.is_first_stage(tmp_path / "runs")

    (tmp_path / tzb.HIRES_STAGE).mkdir()
    (tmp_path / tzb.HIRES_STAGE / "card.json").write_text(json.dumps(hires))
    noflip_run, noflip_raw = _stage_run(tmp_path, tzb.NOFLIP_RECIPE, 40)
    recipe = recipe_from_dict(noflip_raw, check_paths=False)
    assert recipe.model.init.kind == "ours" and recipe.model.init.path == tzb.HIRES_STAGE
    assert recipe.model.img_size == (384, 288) and not default_flip_test(noflip_raw)
    figures = tzb.card_figures(noflip_run, tmp_path)
    assert figures["steps"] == 200 and [s["steps"] for s in figures["segments"]] == [[0, 100], [100, 160], [160, 200]]
    assert [stage["recipe"] for stage in figures["earlier_stages"]] == ["zoo-base", tzb.HIRES_RECIPE]
    assert "interpolated" not in figures["segments"][2]["start"]
    noflip = {**hires, "recipe": tzb.NOFLIP_RECIPE, **figures, "eval_zoo": {"seed": 2000, "scale": 2.0,
                                                                             "flip_test": False},
              "scores": {"coco": {"AP": 0.45}, "mpii": {"PCKh": 0.75}}}
    text = tzb.card_markdown(noflip)
    assert "| coco | AP | 20.0 | 30.0 | 45.0 |" in text and "zoo-base-noflip (384x288)" in text
    assert "none for `zoo-base-noflip`" in text and "`zoo-base-noflip` continuing it without mirrored crops" in text

    # the fourth stage, trained on one machine to step 30 and resumed on another to step 50: both segments count
    (tmp_path / tzb.NOFLIP_STAGE).mkdir()
    (tmp_path / tzb.NOFLIP_STAGE / "card.json").write_text(json.dumps(noflip))
    wholebody_run, wholebody_raw = _stage_run(tmp_path, tzb.WHOLEBODY_RECIPE, 50)
    assert recipe_from_dict(wholebody_raw, check_paths=False).model.init.path == tzb.NOFLIP_STAGE
    tzb.write_segments(wholebody_run, [{"steps": [0, 30], "train_hours": 0.01, "commit": "gpu", "precision": "bf16",
                                        "start": "random init", "same_run": True, "machine": "a GPU"}])
    figures = tzb.card_figures(wholebody_run, tmp_path)
    assert [s["steps"] for s in figures["segments"]][-2:] == [[200, 230], [230, 250]]
    assert "zoo-base-noflip model of step 200" in figures["segments"][-2]["start"]
    assert figures["segments"][-1]["start"].startswith("this stage's state at step 230")
    text = tzb.card_markdown({**noflip, "recipe": tzb.WHOLEBODY_RECIPE, **figures,
                              "scores": {"coco": {"AP": 0.5}, "mpii": {"PCKh": 0.8}}})
    assert "| coco | AP | 20.0 | 30.0 | 45.0 | 50.0 |" in text and "on a GPU, commit gpu" in text
