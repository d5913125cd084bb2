"""Image folders and EDM zips read one image at a time (for DataLoader workers), instead of all in memory.

:class:`FileImages` lists the files exactly as :func:`qac.data.images.open_image_folder` /
:func:`~qac.data.images.open_image_zip` do (same order, same ``max_items`` subset, same decoding), so item i
is the same image as row i of the in-memory data set. A zip is reopened in every process that reads it
(zip handles must not be shared across forked workers).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from qac.data.base import check_resolution, subset_indices
from qac.data.images import IMAGE_SUFFIXES, _is_image_name, decode_image
from qac.errors import QACError


class FileImages:
    """Lazily decoded images of a folder or ``.zip``: ``len``, ``shape`` (C, H, W), ``kind``, ``items(idx)``.

    >>> import tempfile
    >>> from PIL import Image
    >>> d = tempfile.mkdtemp(); Image.new("L", (4, 4), 7).save(os.path.join(d, "a.png"))
    >>> ds = FileImages(d); len(ds), ds.shape, int(ds.items(torch.tensor([0, 0])).sum())
    (1, (1, 4, 4), 224)
    """

    kind = "image"

    def __init__(self, source: str, *, resolution: int | None = None, max_items: int | None = None,
                 seed: int = 0) -> None:
        check_resolution(resolution)
        self.source, self.resolution = str(source), resolution
        self.is_zip = Path(source).suffix.lower() == ".zip"
        self.name = Path(source).stem if self.is_zip else Path(source).name
        self._zip: zipfile.ZipFile | None = None
        self._pid = -1
        if self.is_zip:
            names = sorted(n for n in self._archive().namelist() if not n.endswith("/") and _is_image_name(n))
        elif Path(source).is_dir():
            root = Path(source)
            names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                           if p.is_file() and _is_image_name(p.relative_to(root).as_posix()))
        else:
            raise QACError(f"{source!r} is neither an image folder nor a .zip")
        if not names:
            raise QACError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {source}")
        self.names = [names[i] for i in subset_indices(len(names), max_items, seed)]
        first = self._read(0)
        if first.shape[0] != first.shape[1]:
            raise QACError(f"image {self.names[0]} is not square; pass resolution= to centre-crop and resize")
        self.shape = (int(first.shape[2]), int(first.shape[0]), int(first.shape[1]))

    def __len__(self) -> int:
        return len(self.names)

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._pid != os.getpid():
            try:
                self._zip, self._pid = zipfile.ZipFile(self.source), os.getpid()
            except (zipfile.BadZipFile, OSError) as exc:
                raise QACError(f"cannot open zip {self.source}: {exc}") from exc
        return self._zip

    def _read(self, i: int) -> np.ndarray:
        name = self.names[i]
        if self.is_zip:
            return decode_image(io.BytesIO(self._archive().read(name)), f"{self.source}:{name}", self.resolution)
        path = Path(self.source) / name
        with open(path, "rb") as fh:
            return decode_image(fh, str(path), self.resolution)

    def items(self, indices: torch.Tensor) -> torch.Tensor:
        """``uint8 [len(indices), C, H, W]``; QACError if an image's size or channels differ from the first."""
        out = torch.empty((len(indices), *self.shape), dtype=torch.uint8)
        for row, i in enumerate(indices.tolist()):
            arr = self._read(i)
            if (arr.shape[2], arr.shape[0], arr.shape[1]) != self.shape:
                raise QACError(f"image {self.names[i]} has shape {arr.shape}, the first image "
                               f"{self.shape}; pass resolution= to resize them all")
            out[row] = torch.from_numpy(np.array(arr.transpose(2, 0, 1)))
        return out

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None, "_pid": -1}
