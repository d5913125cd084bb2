"""Image folders and EDM-style zips: pixel round trips, labels, channel rules, and every error."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from qac.data import open_dataset
from qac.errors import QACError


def _rng_images(n: int, size: int, channels: int, seed: int = 0) -> np.ndarray:
    shape = (n, size, size) if channels == 1 else (n, size, size, channels)
    return np.random.RandomState(seed).randint(0, 256, size=shape, dtype=np.uint8)


def _save(path, arr: np.ndarray, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_folder_round_trip_grayscale_nested(tmp_path):
    imgs = _rng_images(4, 6, 1)
    rels = ["b/z.png", "a.png", "b/c/y.PNG", "b/c/x.bmp"]  # sorted: a.png, b/c/x.bmp, b/c/y.PNG, b/z.png
    for rel, im in zip(rels, imgs):
        _save(tmp_path / rel, im)
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.png").write_bytes(b"ignored too")
    ds = open_dataset(str(tmp_path))
    assert ds.kind == "image" and tuple(ds.data.shape) == (4, 1, 6, 6) and ds.labels is None
    order = [rels.index(r) for r in sorted(rels)]
    assert np.array_equal(ds.data[:, 0].numpy(), imgs[order])


def test_folder_round_trip_rgb_rgba_palette(tmp_path):
    imgs = _rng_images(3, 5, 3, seed=1)
    _save(tmp_path / "0.png", imgs[0])
    rgba = np.concatenate([imgs[1], np.full((5, 5, 1), 17, np.uint8)], axis=2)
    _save(tmp_path / "1.png", rgba)  # RGBA -> RGB, alpha dropped
    pal = Image.fromarray(imgs[2]).quantize(colors=16)
    pal.save(tmp_path / "2.png")  # palette -> RGB
    ds = open_dataset(str(tmp_path))
    assert tuple(ds.data.shape) == (3, 3, 5, 5) and ds.num_channels == 3
    got = ds.data.permute(0, 2, 3, 1).numpy()
    assert np.array_equal(got[0], imgs[0]) and np.array_equal(got[1], imgs[1])
    assert np.array_equal(got[2], np.asarray(pal.convert("RGB")))


def test_folder_resolution_resizes_mixed_sizes(tmp_path):
    _save(tmp_path / "a.png", _rng_images(1, 8, 1)[0])
    _save(tmp_path / "b.png", _rng_images(1, 6, 1)[0])
    _save(tmp_path / "c.png", np.full((4, 8), 200, np.uint8))  # non-square: centre-cropped
    ds = open_dataset(str(tmp_path), resolution=4)
    assert tuple(ds.data.shape) == (3, 1, 4, 4)
    assert bool((ds.data[2] == 200).all())


def test_folder_max_items_seeded_subset(tmp_path):
    imgs = _rng_images(10, 4, 1)
    for i, im in enumerate(imgs):
        _save(tmp_path / f"{i:02d}.png", im)
    a = open_dataset(str(tmp_path), max_items=4, seed=5)
    b = open_dataset(str(tmp_path), max_items=4, seed=5)
    assert len(a) == 4 and torch.equal(a.data, b.data)
    rows = {imgs[i].tobytes(): i for i in range(10)}
    idx = [rows[x.numpy().tobytes()] for x in a.data[:, 0]]
    assert idx == sorted(idx)


def test_folder_dataset_json_labels(tmp_path):
    imgs = _rng_images(3, 4, 1)
    names = ["00000/img00000000.png", "00000/img00000001.png", "00000/img00000002.png"]
    for n, im in zip(names, imgs):
        _save(tmp_path / n, im)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": [[n, l] for n, l in zip(names, [2, 0, 5])]}))
    ds = open_dataset(str(tmp_path))
    assert ds.labels.tolist() == [2, 0, 5] and ds.num_classes == 6


def _write_zip(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_zip_round_trip_with_labels(tmp_path):
    imgs = _rng_images(5, 4, 3, seed=2)
    names = [f"{i // 3:05d}/img{i:08d}.png" for i in range(5)]
    labels = [3, 1, 4, 1, 5]
    members = {n: _png_bytes(im) for n, im in zip(names, imgs)}
    members["dataset.json"] = json.dumps({"labels": [[n, l] for n, l in zip(names, labels)]}).encode()
    _write_zip(tmp_path / "set.zip", members)
    ds = open_dataset(str(tmp_path / "set.zip"))
    assert ds.name == "set" and tuple(ds.data.shape) == (5, 3, 4, 4)
    assert np.array_equal(ds.data.permute(0, 2, 3, 1).numpy(), imgs)
    assert ds.labels.tolist() == labels
    sub = open_dataset(str(tmp_path / "set.zip"), max_items=2, seed=0)
    for x, y in zip(sub.data, sub.labels):  # labels stay aligned with their images
        i = next(i for i in range(5) if np.array_equal(x.permute(1, 2, 0).numpy(), imgs[i]))
        assert labels[i] == int(y)


def test_zip_null_labels(tmp_path):
    _write_zip(tmp_path / "n.zip", {"a.png": _png_bytes(_rng_images(1, 4, 1)[0]),
                                    "dataset.json": b'{"labels": null}'})
    assert open_dataset(str(tmp_path / "n.zip")).labels is None


@pytest.mark.parametrize("case", ["corrupt", "truncated", "mixed_size", "mixed_channels", "two_channels",
                                  "non_square", "missing_label", "bad_label", "bad_json"])
def test_folder_errors_name_the_file(tmp_path, case):
    _save(tmp_path / "a.png", _rng_images(1, 4, 1)[0])
    bad = tmp_path / "sub" / "bad.png"
    if case == "corrupt":
        bad.parent.mkdir()
        bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    elif case == "truncated":
        bad.parent.mkdir()
        bad.write_bytes(_png_bytes(_rng_images(1, 4, 1)[0])[:-30])
    elif case == "mixed_size":
        _save(bad, _rng_images(1, 5, 1)[0])
    elif case == "mixed_channels":
        _save(bad, _rng_images(1, 4, 3)[0])
    elif case == "two_channels":
        _save(bad, np.zeros((4, 4, 2), np.uint8))  # PIL saves this as LA
    elif case == "non_square":
        (tmp_path / "a.png").unlink()
        _save(bad, np.zeros((4, 6), np.uint8))
    else:
        _save(bad, _rng_images(1, 4, 1)[0])
        meta = {"missing_label": '{"labels": [["a.png", 1]]}',
                "bad_label": '{"labels": [["a.png", 1], ["sub/bad.png", "cat"]]}',
                "bad_json": "{labels: oops"}[case]
        (tmp_path / "dataset.json").write_text(meta)
    with pytest.raises(QACError) as info:
        open_dataset(str(tmp_path))
    msg = str(info.value)
    assert "\n" not in msg
    assert ("dataset.json" if case == "bad_json" else "bad.png") in msg


def test_zip_errors_name_the_file(tmp_path):
    _write_zip(tmp_path / "c.zip", {"ok.png": _png_bytes(_rng_images(1, 4, 1)[0]), "x/broken.png": b"junk"})
    with pytest.raises(QACError, match=r"c\.zip:x/broken\.png"):
        open_dataset(str(tmp_path / "c.zip"))
    _write_zip(tmp_path / "empty.zip", {"readme.txt": b"no images"})
    with pytest.raises(QACError, match=r"no images.*empty\.zip"):
        open_dataset(str(tmp_path / "empty.zip"))
    (tmp_path / "fake.zip").write_bytes(b"not a zip at all")
    with pytest.raises(QACError, match=r"fake\.zip"):
        open_dataset(str(tmp_path / "fake.zip"))


def test_path_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(QACError, match="no images.*empty"):
        open_dataset(str(tmp_path / "empty"))
    with pytest.raises(QACError, match="missing_dir"):
        open_dataset(str(tmp_path / "missing_dir"))
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(QACError, match=r"data\.csv"):
        open_dataset(str(tmp_path / "data.csv"))
    with pytest.raises(QACError, match="resolution"):
        open_dataset("digits", resolution=0)


def test_torchvision_sets_give_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("QAC_DATA_ROOT", raising=False)
    for name in ("mnist", "cifar10"):
        with pytest.raises(QACError, match="QAC_DATA_ROOT"):
            open_dataset(name, root=tmp_path)
