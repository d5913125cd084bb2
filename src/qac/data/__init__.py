"""Data sources for qac: toy 2-D sets, scikit-learn digits, image folders, EDM zips, npz arrays.

Everything is opened with one call and held in memory as an :class:`ArrayDataset`:

>>> from qac.data import open_dataset
>>> ds = open_dataset("digits")
>>> ds.describe()["item_shape"], float(ds.as_float().max())
([1, 8, 8], 1.0)
"""

from qac.data.augment import xflip
from qac.data.base import ArrayDataset
from qac.data.sources import FILE_LOADERS, NAMED_SOURCES, open_dataset
from qac.data.toy import DEFAULT_TOY_POINTS, TOY_ALIASES, TOY_DATASETS, ToySpec, sample_toy

__all__ = [
    "DEFAULT_TOY_POINTS",
    "FILE_LOADERS",
    "NAMED_SOURCES",
    "TOY_ALIASES",
    "TOY_DATASETS",
    "ArrayDataset",
    "ToySpec",
    "open_dataset",
    "sample_toy",
    "xflip",
]
