"""Datasets: the canonical form, registered variants, loaders by file format, and the asset fetcher.

The fetch function is not re-exported here: ``rpp_gym.data.fetch`` stays the module (so
``import rpp_gym.data.fetch`` and ``mock.patch("rpp_gym.data.fetch.fetch")`` work); use
``from rpp_gym.data.fetch import fetch``.

Example:
    >>> from rpp_gym.data import load_dataset
    >>> ds = load_dataset("movielens-1m")  # doctest: +SKIP
"""

from __future__ import annotations

from rpp_gym.data.dataset import Dataset
from rpp_gym.data.fetch import (
    Asset,
    AssetError,
    FetchedAsset,
    LocalDirSource,
    PyPIWheelSource,
    Source,
    URLSource,
    cache_home,
)
from rpp_gym.data.loaders import (
    dataset_files,
    fix_title,
    load_dataset,
    load_grouplens_100k,
    load_grouplens_dat,
    load_recbole,
)
from rpp_gym.data.specs import DATASETS, MODELS, SMOLLM2_135M_Q4_1, DatasetSpec, get_spec

__all__ = [
    "DATASETS",
    "MODELS",
    "SMOLLM2_135M_Q4_1",
    "Asset",
    "AssetError",
    "Dataset",
    "DatasetSpec",
    "FetchedAsset",
    "LocalDirSource",
    "PyPIWheelSource",
    "Source",
    "URLSource",
    "cache_home",
    "dataset_files",
    "fix_title",
    "get_spec",
    "load_dataset",
    "load_grouplens_100k",
    "load_grouplens_dat",
    "load_recbole",
]
