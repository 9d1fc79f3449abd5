"""The TFDS build CLI and a crop cache that lives outside the dataset folder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from data import tfds_builder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 synthetic 64x64 faces in the canonical format."""
    from data.synthetic import SynthConfig, generate_dataset

    out = tmp_path_factory.mktemp("tfds_cli") / "faces"
    generate_dataset(out, SynthConfig(n=24, seed=5, size=64), progress=False)
    return out


def test_cli_builds_outside_the_dataset_and_prints_json(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "tfds"
    code = tfds_builder.main(
        ["--data", str(dataset), "--out", str(cache), "--image-size", "32", "--json"]
    )
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads(out)  # stdout is only the JSON (TFDS's chatter goes to stderr)
    rows = pd.read_csv(dataset / "metadata.csv")
    assert summary["num_examples"] == len(rows)
    assert summary["splits"] == rows["split"].value_counts().sort_index().to_dict()
    assert summary["image_size"] == 32
    assert sum(summary["face_detection"].values()) == len(rows)
    assert Path(summary["data_dir"]).is_relative_to(cache.resolve())
    assert list(cache.rglob("*.array_record*"))
    assert not (dataset / "tfds").exists()

    # A reader that must not write finds the build; a missing crop size is an error, not a build.
    again = tfds_builder.build_dataset(dataset, crop_size=32, cache_dir=cache, build=False)
    assert again.data_dir == summary["data_dir"]
    with pytest.raises(tfds_builder.NotBuiltError, match="python -m data.tfds_builder"):
        tfds_builder.build_dataset(dataset, crop_size=40, cache_dir=cache, build=False)
    assert not any("crop40" in p.name for p in cache.rglob("*"))


def test_cli_summary_path_is_relative_inside_the_working_directory(
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code = tfds_builder.main(
        ["--data", str(dataset), "--out", "cache", "--image-size", "32", "--json"]
    )
    assert code == 0
    data_dir = json.loads(capsys.readouterr().out)["data_dir"]
    assert not Path(data_dir).is_absolute() and data_dir.startswith("cache/canonical_faces/")
    assert (tmp_path / data_dir).is_dir()


def test_cli_second_run_reuses_the_build(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "tfds"
    args = ["--data", str(dataset), "--out", str(cache), "--image-size", "32"]
    assert tfds_builder.main(args) == 0
    shards = {p: p.stat().st_mtime_ns for p in cache.rglob("*.array_record*")}
    assert tfds_builder.main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.array_record*")} == shards
    assert f"{len(pd.read_csv(dataset / 'metadata.csv'))} face crops" in capsys.readouterr().out


def test_cli_missing_dataset_is_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = tfds_builder.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == tfds_builder.EXIT_DATA
    assert err.startswith("error: ") and "no metadata.csv" in err and err.count("\n") == 1


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_cli_names_a_missing_or_corrupt_image_and_exits_3(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    import shutil

    copy = tmp_path / "faces"
    shutil.copytree(dataset, copy)
    image = copy / pd.read_csv(copy / "metadata.csv")["image"].iloc[3]
    if damage == "missing":
        image.unlink()
    else:
        image.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    code = tfds_builder.main(["--data", str(copy), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == tfds_builder.EXIT_DATA
    last = err.strip().splitlines()[-1]  # after the "building ..." line
    assert last.startswith("error: ") and image.name in last


def test_two_builds_in_separate_processes_write_identical_shards(
    dataset: Path, tmp_path: Path
) -> None:
    import hashlib
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    digests = []
    for name in ("one", "two"):
        cache = tmp_path / name
        cmd = [sys.executable, "-m", "data.tfds_builder", "--data", str(dataset)]
        cmd += ["--out", str(cache), "--image-size", "32"]
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)
        shards = sorted(cache.rglob("*.array_record*"))
        assert shards
        digests.append({p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in shards})
    # The feature map of each tf.train.Example is serialized in key order, not in a
    # per-process hash order: the DVC hash of the crop cache is reproducible.
    assert digests[0] == digests[1]


def _shard_digests(cache: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in cache.rglob("*.array_record*")}


def test_several_datasets_in_one_call_crop_each_image_file_once(
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crops = []
    make_cropper = tfds_builder.make_cropper

    def counting_cropper(size: int):
        crop, mode = make_cropper(size)
        return (lambda image: crops.append(1) or crop(image)), mode

    monkeypatch.setattr(tfds_builder, "make_cropper", counting_cropper)
    pairs = ["--data", str(dataset), "--out", str(tmp_path / "first")]
    pairs += ["--data", str(dataset), "--out", str(tmp_path / "second")]
    assert tfds_builder.main([*pairs, "--image-size", "32", "--json"]) == 0
    summaries = json.loads(capsys.readouterr().out)
    n = len(pd.read_csv(dataset / "metadata.csv"))
    assert sorted(summaries) == ["first", "second"]
    assert [s["num_examples"] for s in summaries.values()] == [n, n]
    assert len(crops) == n  # the second build found every image file's crop
    alone = tmp_path / "alone"
    args = ["--data", str(dataset), "--out", str(alone), "--image-size", "32"]
    assert tfds_builder.main(args) == 0
    assert len(crops) == 2 * n
    digests = _shard_digests(alone)
    assert digests and _shard_digests(tmp_path / "second") == digests
    assert _shard_digests(tmp_path / "first") == digests


@pytest.mark.parametrize(
    ("outs", "message"),
    [(["a"], "2 --data need as many --out"), (["x/a", "y/a"], "different names")],
)
def test_several_datasets_need_one_named_out_each(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], outs, message
) -> None:
    args = ["--data", str(dataset), "--data", str(dataset)]
    for out in outs:
        args += ["--out", str(tmp_path / out)]
    with pytest.raises(SystemExit) as exc:
        tfds_builder.main(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_features_carry_severity_count_tone_source_and_group_only_rows(
    dataset: Path, tmp_path: Path
) -> None:
    import shutil

    data = tmp_path / "faces"
    shutil.copytree(dataset, data, ignore=shutil.ignore_patterns("tfds"))
    meta = pd.read_csv(data / "metadata.csv")
    meta["fitzpatrick"] = meta["fitzpatrick"].astype("Int64")
    meta["acne_severity"] = meta["acne_severity"].astype("Int64")
    meta["fitzpatrick_group"] = ""
    meta["tone_source"] = ""
    meta.loc[0, "acne_severity"] = pd.NA  # unknown severity
    # a lesion count inside each row's severity band; unknown on row 4
    meta["acne_lesion_count"] = meta["acne_severity"].map({0: 3, 1: 11, 2: 30, 3: 64})
    meta["acne_lesion_count"] = meta["acne_lesion_count"].astype("Int64")
    meta.loc[4, "acne_lesion_count"] = pd.NA
    meta.loc[[1, 2], ["fitzpatrick", "fitzpatrick_group", "tone_source"]] = [
        pd.NA,
        "V-VI",
        "estimated",
    ]  # an estimated group (acne-new)
    meta.loc[3, ["fitzpatrick", "fitzpatrick_group"]] = [pd.NA, "III-IV"]  # a group-only label
    meta.to_csv(data / "metadata.csv", index=False)

    builder = tfds_builder.build_dataset(data, crop_size=32, cache_dir=tmp_path / "cache")
    records = {}
    for split in builder.info.splits:
        source = builder.as_data_source(split=split)
        records.update({int(source[i]["row"]): source[i] for i in range(len(source))})
    assert sorted(records) == list(range(len(meta)))
    assert int(records[0]["acne_severity"]) == -1
    assert int(records[4]["acne_lesion_count"]) == -1
    for row in set(range(len(meta))) - {0, 4}:
        assert int(records[row]["acne_lesion_count"]) == int(meta.loc[row, "acne_lesion_count"])
    for row in range(1, len(meta)):
        assert int(records[row]["acne_severity"]) == int(meta.loc[row, "acne_severity"])
    for row in (1, 2):  # group from fitzpatrick_group, no type, estimated
        assert int(records[row]["group"]) == 2 and int(records[row]["fitzpatrick"]) == 0
        assert records[row]["tone_source"] == b"estimated"
    assert int(records[3]["group"]) == 1 and records[3]["tone_source"] == b""
    fitz = int(meta.loc[4, "fitzpatrick"])
    assert int(records[4]["group"]) == (fitz - 1) // 2
    assert records[4]["tone_source"] == b"labelled"  # a type and no tone_source: labelled


def test_tone_source_rule() -> None:
    assert tfds_builder.tone_source("estimated", None) == "estimated"
    assert tfds_builder.tone_source(" labelled ", 3) == "labelled"
    assert tfds_builder.tone_source(float("nan"), 3) == "labelled"
    assert tfds_builder.tone_source("", None) == ""
    with pytest.raises(ValueError, match=r"one of \['estimated', 'labelled'\]"):
        tfds_builder.tone_source("guessed", None)
