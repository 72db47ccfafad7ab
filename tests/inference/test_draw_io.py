import numpy as np
import pytest

from posebh_cli.errors import PosebhError
from posebh_cli.inference import draw, io
from posebh_cli.skeletons import load_skeleton


def test_draw_pose_paints_confident_points_and_links_only():
    sk = load_skeleton("coco")
    image = np.zeros((200, 300, 3), np.uint8)
    kpts = np.zeros((17, 3), np.float32)
    kpts[:, 0], kpts[:, 1], kpts[:, 2] = 150, 100, 0.1     # all under the threshold
    kpts[5] = (50, 50, 0.9)                                 # left_shoulder
    kpts[7] = (50, 150, 0.9)                                # left_elbow, linked to left_shoulder
    out = draw.draw_pose(image, kpts, sk, kpt_thr=0.3)
    assert image.max() == 0, "input must stay untouched"
    assert tuple(out[50, 50]) == sk.keypoint_colors[5]
    assert out[100, 50].any(), "the shoulder-elbow link is drawn"
    assert not out[100, 150].any(), "points under the threshold are not drawn"


def test_blend_and_paste_heatmap():
    image = np.full((40, 60, 3), 100, np.uint8)
    heat = np.zeros((8, 6), np.float32)
    heat[4, 3] = 1.0
    blended = draw.blend_heatmap(image, heat, alpha=0.6)
    assert blended.shape == image.shape and (blended != 100).any()
    # A crop cut with an identity matrix pastes back to the same place.
    pasted = draw.heatmap_to_image(np.ones((8, 6), np.float32), np.eye(2, 3), (24, 32), image.shape)
    assert pasted.shape == (40, 60) and pasted[:30, :20].min() > 0.99 and pasted[:, 30:].max() == 0


def test_contact_sheet_puts_each_row_under_its_label_at_one_height():
    red = np.zeros((100, 50, 3), np.uint8)
    red[..., 0] = 255
    wide = np.full((40, 160, 3), 200, np.uint8)
    sheet = draw.contact_sheet([("people", [red, red, red]), ("photo", [wide])], tile_height=60, columns=2)
    strip, gap = 22, 4
    assert sheet.shape == (2 * (strip + 60 + gap), 240, 3)   # widest row: the photo at 240 x 60
    assert (sheet[strip + 30, 10] == (255, 0, 0)).all() and (sheet[strip + 30, 30 + gap + 10] == (255, 0, 0)).all()
    assert (sheet[strip + 30, 2 * 30 + 2 * gap + 5] == 32).all(), "only `columns` tiles per row"
    assert (sheet[2 * strip + 60 + gap + 30, 200] == 200).all()
    assert sheet[:strip].max() > 32, "the label is written on the strip"


def test_folder_listing_skips_unreadable_images_with_a_warning(tmp_path):
    for name in ("b.png", "a.jpg"):
        io.write_image(tmp_path / name, np.full((16, 20, 3), 128, np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    paths = io.list_images(tmp_path)
    assert [p.name for p in paths] == ["a.jpg", "b.png", "broken.png"]
    warnings = []
    read = list(io.iter_images(paths, warnings.append))
    assert [r.path.name for r in read] == ["a.jpg", "b.png"] and read[0].image.shape == (16, 20, 3)
    assert len(warnings) == 1 and "broken.png" in warnings[0]
    with pytest.raises(PosebhError):
        io.list_images(tmp_path / "missing")


def test_video_round_trip(tmp_path):
    path = tmp_path / "clip.avi"
    writer = io.VideoOutput(path, fps=5, width=32, height=24)
    for i in range(3):
        writer.write(np.full((24, 32, 3), 60 * i, np.uint8))
    writer.close()
    assert path.exists() and not writer.tmp.exists()
    capture, info = io.open_video(path)
    frames = list(io.iter_frames(capture))
    assert (info.width, info.height) == (32, 24) and len(frames) == 3 and frames[0].shape == (24, 32, 3)
