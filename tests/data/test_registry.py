"""The dataset registry: every entry is usable (terms, citation, a URL or manual instructions, a converter)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from optidel.data.convert import SPLITS_DIR, packaged_test_ids
from optidel.data.registry import REGISTRY, DatasetSpec, UnknownDatasetError, get_dataset

PAPER_DATASETS = (
    "kvasir-seg",
    "kvasir-instrument",
    "imageclefmed-polyp",
    "etis-laribpolypdb",
    "polypgen",
    "cvc-300",
    "cvc-clinicdb",
    "cvc-colondb",
    "busi",
    "drive",
)


def test_registry_covers_the_paper_datasets() -> None:
    assert set(PAPER_DATASETS) <= set(REGISTRY)


@pytest.mark.parametrize("spec", list(REGISTRY.values()), ids=list(REGISTRY))
def test_entry_is_complete(spec: DatasetSpec) -> None:
    assert spec.name == spec.name.lower() and re.fullmatch(r"[a-z0-9-]+", spec.name)
    assert REGISTRY[spec.name] is spec
    assert len(spec.licence) > 20, "every entry needs a licence / terms note"
    assert len(spec.citation) > 20
    assert spec.homepage.startswith(("http://", "https://"))
    assert spec.layout, "the expected archive/folder layout must be described"
    assert callable(spec.converter)
    assert spec.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
    if spec.download == "direct":
        assert spec.urls and all(u.startswith("https://") for u in spec.urls)
        assert spec.archive_name
    else:
        assert spec.download == "manual"
        assert len(spec.manual_instructions) > 20
        msg = spec.manual_message("/data")
        assert f"optidel data fetch {spec.name} --root /data --archive" in msg
        assert spec.layout in msg


def test_direct_downloads_are_the_official_ones() -> None:
    assert get_dataset("kvasir-seg").urls == ("https://datasets.simula.no/downloads/kvasir-seg.zip",)
    assert get_dataset("kvasir-instrument").urls == (
        "https://datasets.simula.no/downloads/kvasir-instrument.zip",
    )
    assert get_dataset("busi").urls == ("https://scholar.cu.edu.eg/Dataset_BUSI.zip",)
    assert get_dataset("drive").download == "manual"  # registration-gated
    assert get_dataset("polypgen").download == "manual"  # Synapse account


def test_get_dataset_accepts_aliases_and_case() -> None:
    assert get_dataset("Kvasir_SEG").name == "kvasir-seg"
    assert get_dataset("ETIS").name == "etis-laribpolypdb"
    assert get_dataset("cvc-612").name == "cvc-clinicdb"


def test_aliases_do_not_collide() -> None:
    seen: dict[str, str] = {}
    for spec in REGISTRY.values():
        for alias in (spec.name, *spec.aliases):
            assert alias not in seen, f"{alias} used by {seen.get(alias)} and {spec.name}"
            seen[alias] = spec.name


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(KeyError) as info:
        get_dataset("kvasir-segg")
    assert isinstance(info.value, UnknownDatasetError)
    msg = str(info.value)
    assert "kvasir-segg" in msg and "kvasir-seg" in msg and "drive" in msg


def test_packaged_split_lists() -> None:
    assert len(packaged_test_ids("kvasir-seg")) == 100  # the PraNet test split
    assert len(packaged_test_ids("busi")) == 129
    for path in SPLITS_DIR.glob("*.csv"):
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows and {r["split"] for r in rows} == {"test"}
        assert len({r["id"] for r in rows}) == len(rows)


@pytest.mark.parametrize("name", ["kvasir-seg", "busi"])
def test_packaged_split_matches_shared_data(name: str, request: pytest.FixtureRequest) -> None:
    shared: Path = request.getfixturevalue("kvasir" if name == "kvasir-seg" else "busi")
    with (shared / "splits.csv").open(newline="") as f:
        shared_test = {r["id"] for r in csv.DictReader(f) if r["split"] == "test"}
    assert set(packaged_test_ids(name)) == shared_test
