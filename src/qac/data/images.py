"""Image folders and EDM-style zips (docs/design.md §10), read with PIL.

* Files: ``.png .jpg .jpeg .bmp .webp`` (any case), found recursively, in sorted order of their
  relative POSIX path; names with a component starting with ``.`` (and ``__MACOSX``) are skipped.
* Labels: an optional ``dataset.json`` at the root, ``{"labels": [["00000/img00000000.png", 6], ...]}``
  or ``{"labels": null}`` (EDM's format). Without it the data set is unlabelled.
* Channels: grayscale (``L``, ``1``) -> 1 channel; ``RGB``, ``RGBA``, palette, CMYK, YCbCr -> 3
  channels (alpha dropped). Grayscale+alpha (2 channels) and 16-bit/float modes are errors.
* Sizes: every image must have the same square size and channel count, unless ``resolution=`` is
  given, which centre-crops each image to a square and resizes it with Lanczos.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from qac.data.base import (
    ArrayDataset,
    center_crop_resize,
    check_image_memory,
    check_resolution,
    image_dataset_from_nhwc,
    subset_indices,
)
from qac.errors import QACError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
_TARGET_MODE = {"1": "L", "L": "L", "RGB": "RGB", "RGBA": "RGB", "P": "RGB", "PA": "RGB", "CMYK": "RGB",
                "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}


def _is_image_name(rel: str) -> bool:
    parts = rel.split("/")
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return Path(parts[-1]).suffix.lower() in IMAGE_SUFFIXES


def _to_1_or_3_channels(img: Image.Image, where: str) -> Image.Image:
    target = _TARGET_MODE.get(img.mode)
    if target is None:
        why = "2 channels (grayscale + alpha)" if img.mode == "LA" else f"unsupported mode {img.mode}"
        raise QACError(f"image {where} has {why}; need 1 (grayscale) or 3 (RGB) channels")
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")  # applies palette transparency before dropping alpha
    return img if img.mode == target else img.convert(target)


def decode_image(fp: IO[bytes], where: str, resolution: int | None) -> np.ndarray:
    """Decode one image file to ``uint8 [H, W, C]`` (C in {1, 3}); errors name ``where``."""
    try:
        with Image.open(fp) as img:
            img.load()
            img = _to_1_or_3_channels(img, where)
            if resolution is not None:
                img = center_crop_resize(img, resolution)
            arr = np.asarray(img, dtype=np.uint8)
    except UnidentifiedImageError as exc:
        raise QACError(f"cannot read image {where}: not a recognised or intact image file") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise QACError(f"cannot read image {where}: {msg}") from exc
    return arr[:, :, None] if arr.ndim == 2 else arr


def stack_images(names: Sequence[str], read: Callable[[str], np.ndarray], *, prefix: str = "",
                 progress: bool = False, desc: str = "images") -> np.ndarray:
    """Decode ``names`` with ``read`` and stack to ``uint8 [N, H, W, C]``, checking uniformity.

    Error messages name files as ``prefix + name`` (the folder path or ``"archive.zip:"``).
    """
    out: np.ndarray | None = None
    first = ""
    for i, rel in enumerate(tqdm(names, desc=desc, disable=not progress, leave=False)):
        arr = read(rel)
        name = prefix + rel
        h, w, c = arr.shape
        if out is None:
            if h != w:
                raise QACError(f"image {name} is {w}x{h}, not square; pass resolution= to centre-crop "
                               "and resize")
            out, first = np.empty((len(names), h, w, c), dtype=np.uint8), name
        elif c != out.shape[3]:
            raise QACError(f"mixed channel counts: {name} has {c} channel(s), {first} has {out.shape[3]}")
        elif (h, w) != out.shape[1:3]:
            raise QACError(f"mixed image sizes: {name} is {w}x{h}, {first} is {out.shape[2]}x"
                           f"{out.shape[1]}; pass resolution= to resize them all")
        out[i] = arr
    assert out is not None
    return out


def parse_labels(text: bytes | str, where: str, names: Sequence[str]) -> np.ndarray | None:
    """Labels for ``names`` from an EDM ``dataset.json`` text; ``None`` when it says ``null``."""
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise QACError(f"{where} is not valid JSON: {exc}") from exc
    raw = meta.get("labels") if isinstance(meta, dict) else None
    if raw is None:
        return None
    try:
        table = {str(fname).replace("\\", "/"): label for fname, label in raw}
    except (TypeError, ValueError) as exc:
        raise QACError(f"{where}: 'labels' must be a list of [filename, label] pairs or null") from exc
    labels = np.empty(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        if name not in table:
            raise QACError(f"{where} has no label for image {name}")
        label = table[name]
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise QACError(f"{where}: label of {name} must be a non-negative integer, got {label!r}")
        labels[i] = label
    return labels


def open_image_folder(path: str, *, resolution: int | None = None, max_items: int | None = None,
                      seed: int = 0, progress: bool = False) -> ArrayDataset:
    """All images under folder ``path`` (recursive), with ``dataset.json`` labels if present.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); Image.new("L", (4, 4), 7).save(os.path.join(d, "a.png"))
    >>> tuple(open_image_folder(d).data.shape)
    (1, 1, 4, 4)
    """
    check_resolution(resolution)
    root = Path(path)
    if not root.is_dir():
        raise QACError(f"image folder {path} does not exist")
    rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    names = [r for r in rels if _is_image_name(r)]
    if not names:
        raise QACError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in folder {path}")
    names = [names[i] for i in subset_indices(len(names), max_items, seed)]
    check_image_memory(len(names), resolution)

    def read(name: str) -> np.ndarray:
        with open(root / name, "rb") as fh:
            return decode_image(fh, str(root / name), resolution)

    data = stack_images(names, read, prefix=f"{root}/", progress=progress, desc=root.name)
    meta = root / "dataset.json"
    labels = parse_labels(meta.read_bytes(), str(meta), names) if meta.is_file() else None
    return image_dataset_from_nhwc(data, labels, root.name)


def open_image_zip(path: str, *, resolution: int | None = None, max_items: int | None = None,
                   seed: int = 0, progress: bool = False) -> ArrayDataset:
    """All images inside an EDM-style zip, with labels from its root ``dataset.json`` if present.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "tiny.zip"); buf = io.BytesIO()
    >>> Image.new("RGB", (2, 2)).save(buf, format="PNG")
    >>> with zipfile.ZipFile(p, "w") as zf: zf.writestr("00000/img00000000.png", buf.getvalue())
    >>> tuple(open_image_zip(p).data.shape)
    (1, 3, 2, 2)
    """
    check_resolution(resolution)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise QACError(f"cannot open zip {path}: {exc}") from exc
    with zf:
        members = set(zf.namelist())
        names = sorted(n for n in members if not n.endswith("/") and _is_image_name(n))
        if not names:
            raise QACError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in zip {path}")
        names = [names[i] for i in subset_indices(len(names), max_items, seed)]
        check_image_memory(len(names), resolution)

        def read(name: str) -> np.ndarray:
            where = f"{path}:{name}"
            try:
                raw = zf.read(name)
            except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
                raise QACError(f"cannot read image {where}: {exc}") from exc
            return decode_image(io.BytesIO(raw), where, resolution)

        data = stack_images(names, read, prefix=f"{path}:", progress=progress, desc=Path(path).stem)
        labels = None
        if "dataset.json" in members:
            labels = parse_labels(zf.read("dataset.json"), f"{path}:dataset.json", names)
    return image_dataset_from_nhwc(data, labels, Path(path).stem)
