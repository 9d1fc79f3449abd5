"""core.tone_labels: the checked reader of by-eye tone label files."""

from __future__ import annotations

import pytest

from core.tone_labels import TONE_LABELS, ToneLabelError, read_tone_labels


def _write(tmp_path, text: str):
    path = tmp_path / "labels.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_every_label_and_keeps_the_text(tmp_path):
    text = "image,tone_by_eye,note\n" + "".join(
        f"images/{i}.jpg,{label},\n" for i, label in enumerate(TONE_LABELS)
    )
    path = _write(tmp_path, text)
    read_text, labels = read_tone_labels(path, images=[f"images/{i}.jpg" for i in range(5)])
    assert read_text == text
    assert labels == {f"images/{i}.jpg": label for i, label in enumerate(TONE_LABELS)}


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("picture,tone\nx,y\n", 1, "missing column(s) image, tone_by_eye"),
        ("image,tone_by_eye\nimages/a.jpg,I-II\nimages/b.jpg,dark\n", 3, "'dark'"),
        ("image,tone_by_eye\nimages/a.jpg,I-II\nimages/a.jpg,V-VI\n", 3, "labelled twice"),
        ("image,tone_by_eye\nimages/a.jpg,I-II\nimages/zz.jpg,V-VI\n", 3, "not in the dataset"),
    ],
)
def test_a_bad_file_is_named_with_its_line(tmp_path, text, line, words):
    path = _write(tmp_path, text)
    with pytest.raises(ToneLabelError) as err:
        read_tone_labels(path, images=["images/a.jpg", "images/b.jpg"])
    assert f"{path}:{line}:" in str(err.value) and words in str(err.value)


def test_an_unreadable_file_is_named(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes(b"image,tone_by_eye\n\xff\xfe,I-II\n")
    with pytest.raises(ToneLabelError, match="cannot read the tone labels") as err:
        read_tone_labels(path)
    assert str(path) in str(err.value)
    with pytest.raises(ToneLabelError, match="cannot read"):
        read_tone_labels(tmp_path / "missing.csv")
