import numpy as np
import pytest
import skimage.data
import torch

from posebh_cli.data.codecs import MSRAHeatmap, UDPHeatmap
from posebh_cli.errors import PosebhError
from posebh_cli.inference.predictor import Predictor
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.skeletons import load_skeleton

IMG_SIZE = (64, 48)  # (h, w): a tiny input keeps the test fast


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = PoseModel("vit_pico", ["coco", "ap10k"], [load_skeleton("coco"), load_skeleton("ap10k")],
                  with_embedding=True, img_size=IMG_SIZE)
    # Random heads give near-zero maps; larger output weights give peaks the decoder can find.
    with torch.no_grad():
        for head in m.heads:
            head.final_layer.weight.normal_(0, 0.5)
    return m.eval()


def test_codec_defaults_and_head_selection(model):
    assert isinstance(Predictor(model, dataset="coco").codec, UDPHeatmap)
    ap10k = Predictor(model, skeleton="ap10k")
    assert isinstance(ap10k.codec, MSRAHeatmap) and ap10k.target.dataset_idx == 1
    assert Predictor(model).target.name == "coco"
    proto = Predictor(model, dataset="ap10k", source="prototypes")
    assert proto.target.keypoint_offset == 17 and proto.skeleton.name == "ap10k"
    with pytest.raises(PosebhError, match="no dataset or skeleton 'mpii'"):
        Predictor(model, dataset="mpii")


@pytest.mark.parametrize("dataset", ["coco", "ap10k"])
def test_flip_test_is_the_manual_flip_average(model, dataset):
    images = torch.randn(2, 3, *IMG_SIZE)
    plain = Predictor(model, dataset=dataset, flip=False)
    flipped = Predictor(model, dataset=dataset, flip=True)
    a = plain.heatmaps(images).numpy()
    b = plain.heatmaps(images.flip(-1)).numpy()
    mirror = b[:, plain.skeleton.flip_indices, :, ::-1]
    if dataset != "coco":  # MSRA: shift the mirrored maps one pixel right; UDP: no shift
        mirror = np.concatenate([mirror[..., :1], mirror[..., :-1]], axis=-1)
    np.testing.assert_allclose(flipped.heatmaps(images).numpy(), (a + mirror) / 2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("codec", [MSRAHeatmap(input_size=(48, 64), heatmap_size=(12, 16)),
                                   UDPHeatmap(input_size=(48, 64), heatmap_size=(12, 16))])
def test_heatmap_peak_maps_back_to_the_known_image_location(model, codec):
    predictor = Predictor(model, dataset="coco", codec=codec, flip=False)
    # Box 60x80 at (100, 50) has the input's aspect ratio; padded 1.25 -> 75x100 px around (130, 90).
    center_input = (23.5, 31.5) if codec.use_udp else (24.0, 32.0)
    points = {"center": (center_input, (130.0, 90.0))}
    if not codec.use_udp:  # 12 input px left of center = 18.75 image px (75 / 48 image px per input px)
        points["off"] = ((12.0, 16.0), (130.0 - 18.75, 90.0 - 25.0))
    for input_xy, image_xy in points.values():
        maps, _ = codec.encode(np.array([input_xy] * 17, np.float32), np.ones(17))
        predictor.heatmaps = lambda batch, maps=maps: torch.from_numpy(np.repeat(maps[None], len(batch), 0))
        [[inst]] = predictor.predict([np.zeros((200, 300, 3), np.uint8)], [[[100, 50, 60, 80]]], [[0.8]])
        np.testing.assert_allclose(inst["keypoints"][:, :2], np.array([image_xy] * 17), atol=0.3)
        assert np.isclose(inst["score"], 0.8 * inst["keypoints"][:, 2].mean())
        assert np.isclose(inst["area"], 75 * 100)


def test_predict_batches_crops_across_images(model):
    astronaut, cat = skimage.data.astronaut(), skimage.data.chelsea()
    predictor = Predictor(model, dataset="coco", batch_size=2)
    results = predictor.predict([astronaut, cat], [None, [[10, 10, 100, 100], [50, 40, 200, 150]]],
                                [None, [0.9, 0.5]])
    assert [len(r) for r in results] == [1, 2]
    assert results[0][0]["bbox"] == [0.0, 0.0, 512.0, 512.0] and results[1][1]["box_score"] == 0.5
    # The same crop predicted alone gives the same keypoints (batching does not mix instances).
    alone = Predictor(model, dataset="coco", batch_size=1).predict([cat], [[[50, 40, 200, 150]]])
    np.testing.assert_allclose(alone[0][0]["keypoints"], results[1][1]["keypoints"], atol=1e-4)
    # Prototype heatmaps of the AP-10K block come out in AP-10K's keypoint order.
    proto = Predictor(model, dataset="ap10k", source="prototypes").predict([cat], return_heatmaps=True)
    assert proto[0][0]["keypoints"].shape == (17, 3) and proto[0][0]["heatmaps"].shape == (17, 16, 12)


@pytest.mark.parametrize("codec_name", ["udp", "msra", "dark"])
def test_decoding_a_training_target_recovers_the_annotation(codec_name, tmp_path):
    """The training pipeline's crop + target, decoded by the predictor, lands back on the labelled points."""
    from posebh_cli.data.codecs import make_codec
    from posebh_cli.data.dataset import TopDownDataset
    from posebh_cli.data.prepared import Instance
    from posebh_cli.inference import io

    rng = np.random.default_rng(1)
    io.write_image(tmp_path / "a.png", skimage.data.astronaut()[::2, ::2])
    bbox = np.array([40.0, 30.0, 90.0, 150.0], np.float32)
    keypoints = np.concatenate([rng.uniform(bbox[:2] + 5, bbox[:2] + bbox[2:] - 5, (17, 2)), np.full((17, 1), 2)], 1)
    instance = Instance(image_path=tmp_path / "a.png", image_id=1, ann_id=1, bbox=bbox,
                        keypoints=keypoints.astype(np.float32))
    # Full-size maps: DARK-UDP is sub-pixel exact at 48x64 (tiny maps blur into their borders).
    codec = make_codec(codec_name, input_size=(192, 256), heatmap_size=(48, 64))
    sample = TopDownDataset([instance], load_skeleton("coco"), codec, train=False, dataset_idx=0,
                            input_size=(192, 256))[0]

    full_size = PoseModel("vit_pico", ["coco"], [load_skeleton("coco")])  # only its geometry is used
    predictor = Predictor(full_size, codec=codec, flip=False)
    predictor.heatmaps = lambda batch: torch.from_numpy(sample["heatmaps"][None]).repeat(len(batch), 1, 1, 1)
    # The dataset crops the GT box cleaned as mmpose 0.x; evaluate's GT boxes are cleaned the same way.
    from posebh_cli.data.dataset import clean_box
    [[inst]] = predictor.predict([io.read_image(tmp_path / "a.png")], [[clean_box(bbox)]])
    # UDP and DARK targets are sub-pixel; MSRA rounds them to the stride-4 grid (up to 2 input pixels off).
    tolerance_input_px = {"udp": 0.05, "dark": 0.2, "msra": 2.0}[codec_name]
    error = np.abs(inst["keypoints"][:, :2] - keypoints[:, :2]).max()
    assert error < tolerance_input_px * float(inst["scale"][0]) / 192, error


def test_box_padding_comes_from_the_recipe(model):
    recipe = {"datasets": [{"name": "ap10k", "codec": "msra", "box_padding": 1.0}]}
    assert Predictor(model, dataset="ap10k", recipe=recipe).box_padding == 1.0
    assert Predictor(model, dataset="coco", recipe=recipe).box_padding == 1.25
    [[inst]] = Predictor(model, dataset="ap10k", recipe=recipe, flip=False).predict(
        [np.zeros((100, 100, 3), np.uint8)], [[[10, 10, 30, 40]]])
    assert np.allclose(inst["scale"], [30, 40])  # the box already has the input's aspect ratio: no padding


def test_flip_test_follows_the_recipe_flips(model):
    from posebh_cli.inference.predictor import default_flip_test

    no_flips = {"train": {"augmentation": {"flip": 0.0}}}
    assert default_flip_test(None) and default_flip_test({"train": {"augmentation": {"flip": 0.5}}})
    assert not default_flip_test(no_flips)
    assert Predictor(model, dataset="coco").flip is True
    assert Predictor(model, dataset="coco", recipe=no_flips).flip is False
    assert Predictor(model, dataset="coco", recipe=no_flips, flip=True).flip is True   # --flip overrides


def test_an_imported_bank_is_scored_with_absolute_cosine(model):
    # The released code scores |cos|; a bank whose prototypes are negated must give the same heatmaps.
    image = np.zeros((96, 72, 3), np.uint8)
    image[20:70, 20:50] = 200
    crop = Predictor(model, dataset="ap10k", source="prototypes")
    tensor = crop.to_tensor([crop.crop(image, [10, 10, 50, 70])[0]])
    with torch.no_grad():
        plain = crop._forward(tensor)
        bank = model.prototypes.prototypes
        saved = bank.clone()
        try:
            emb = model(tensor, torch.tensor([1]), heads="own", with_embedding=True)["embeddings"]
            cos = torch.einsum("bfhw,jmf->bjmhw", torch.nn.functional.normalize(emb, dim=1), saved[17:34])
            expected = cos.abs().amax(dim=2)  # independent: |cos| by hand, max over the M prototypes
            bank.neg_()
            model.prototypes.abs_similarity = True
            flipped = crop._forward(tensor)
        finally:
            bank.copy_(saved)
            model.prototypes.abs_similarity = False
    torch.testing.assert_close(flipped, expected)
    assert not torch.allclose(plain, expected)  # plain cosine of the original bank differs (negative cosines)
