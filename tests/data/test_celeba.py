"""CelebA as words (docs/design.md §1.2, §2.1), tested on a miniature CelebA the tests build."""

import doctest

import numpy as np
import pytest
from celeba_fixture import make_celeba_fixture
from PIL import Image

from vlvae.data.format import load_images, read_manifest, read_records, read_vocabulary
from vlvae.datasets import verify as verify_dataset
from vlvae.datasets.celeba import build as celeba
from vlvae.datasets.celeba.build import build_celeba
from vlvae.datasets.celeba.files import find_celeba_files, read_attributes, read_partition
from vlvae.datasets.celeba.images import preprocess
from vlvae.datasets.celeba.scoring import correctness_all_labels, correctness_paper
from vlvae.datasets.celeba.words import (
    BLANK,
    CELEBA_LABELS,
    CELEBA_WORDS,
    attribute_words,
    celeba_text,
    label_targets,
    word_probabilities,
    words_present,
)
from vlvae.errors import VLVAEError


def _build(source, out, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return build_celeba(source["root"], out, **kw)


def _bytes(out):
    return {
        p: (out / p).read_bytes()
        for p in ("train/images.npy", "val/images.npy", "train/scenes.json", "val/scenes.json", "vocab.json")
    }


@pytest.fixture(scope="module")
def built(celeba_source, tmp_path_factory):
    """The paper-split build of the session fixture, made once."""
    out = tmp_path_factory.mktemp("celeba_built") / "set"
    _build(celeba_source, out, chunk_size=16)
    return out


# ----------------------------------------------------------------------------- words


def test_vocabulary_words():
    assert len(CELEBA_WORDS) == 20 and CELEBA_WORDS[-1] == BLANK
    assert CELEBA_WORDS[:3] == ("Bushy_Eyebrows", "Male", "Female")
    assert len(CELEBA_LABELS) == 18 and "Female" not in CELEBA_LABELS


def test_male_female_mapping():
    names = list(CELEBA_LABELS)
    row = np.zeros(18, dtype=np.int8)
    assert attribute_words(row, names) == ["Female"]
    row[names.index("Male")] = 1
    row[names.index("Smiling")] = 1
    assert attribute_words(row, names) == ["Male", "Smiling"]
    # CelebA's own -1/1 coding means the same
    assert attribute_words(2 * row - 1, names) == ["Male", "Smiling"]
    targets = label_targets(np.array([row, 1 - row]), names)
    assert targets[:, names.index("Male")].tolist() == [1, 0]


def test_every_fixture_image_has_exactly_one_of_male_female(celeba_source):
    names, values = celeba_source["names"], celeba_source["values"]
    for row in values:
        words = attribute_words(row, names)
        assert ("Male" in words) != ("Female" in words)
        assert ("Male" in words) == bool(row[names.index("Male")])
        assert words == [w for w in CELEBA_WORDS if w in words]  # canonical order


def test_text_is_a_padded_permutation_of_the_words():
    words = ["Female", "Smiling", "Bangs", "Wavy_Hair"]
    rng = np.random.default_rng(0)
    texts = [celeba_text(words, rng) for _ in range(20)]
    for text in texts:
        assert len(text) == 9
        assert sorted(text[:4]) == sorted(words) and text[4:] == [BLANK] * 5
    assert len({tuple(t) for t in texts}) > 1  # the order changes between draws


def test_long_text_keeps_a_random_subset():
    words = list(CELEBA_WORDS[:12])
    rng = np.random.default_rng(1)
    texts = [celeba_text(words, rng) for _ in range(20)]
    for text in texts:
        assert len(text) == 9 and len(set(text)) == 9 and set(text) <= set(words)
    assert len({frozenset(t) for t in texts}) > 1


def test_words_present_counts_occurrences():
    counts = words_present([["Male", "Smiling", "-", "Smiling"], ["-"] * 9])
    assert counts.shape == (2, 19)
    assert counts[0, CELEBA_WORDS.index("Smiling")] == 2 and counts[0].sum() == 3
    assert counts[1].sum() == 0
    with pytest.raises(VLVAEError, match="not a CelebA word"):
        words_present([["Beard"]])


# ----------------------------------------------------------------------------- images


def test_preprocess_geometry():
    pixels = np.zeros((218, 178, 3), dtype=np.uint8)
    top, left = celeba.CROP_BOX[1], celeba.CROP_BOX[0]
    # a bright 2x2-aligned 4x4 square at crop rows 20-23, columns 30-33 -> output rows 10-11, cols 15-16
    pixels[top + 20 : top + 24, left + 30 : left + 34] = (200, 100, 50)
    # one pixel at crop (41, 61): the 2x2 block (20, 30) averages to (200 + 2) // 4 rounded half up
    pixels[top + 41, left + 61] = (202, 6, 1)
    # marks outside the crop box must vanish
    pixels[top - 1, left + 10] = 255
    pixels[top + 10, left - 1] = 255
    pixels[top + 128, left + 10] = 255
    pixels[top + 10, left + 128] = 255
    out = preprocess(Image.fromarray(pixels))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    expected = np.zeros((64, 64, 3), dtype=np.uint8)
    expected[10:12, 15:17] = (200, 100, 50)
    expected[20, 30] = (51, 2, 0)  # (202+2)//4, (6+2)//4, (1+2)//4
    np.testing.assert_array_equal(out, expected)


def test_preprocess_other_sizes_and_modes():
    image = Image.new("L", (178, 218), 77)
    for size in (32, 48, 128):
        out = preprocess(image, size)
        assert out.shape == (size, size, 3) and (out == 77).all()
    with pytest.raises(VLVAEError, match="aligned 178x218"):
        preprocess(Image.new("RGB", (64, 64)))
    with pytest.raises(VLVAEError, match="out of range"):
        preprocess(image, 200)


# ----------------------------------------------------------------------------- files


def test_read_attributes_handles_odd_whitespace(celeba_source):
    names, filenames, values = read_attributes(celeba_source["root"] / "list_attr_celeba.txt")
    assert names == celeba_source["names"] and len(names) == 40
    assert filenames == celeba_source["filenames"]
    assert values.dtype == np.int8
    np.testing.assert_array_equal(values, celeba_source["values"])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda lines: ["41"] + lines[1:], "says it lists 41 images but has 40 rows"),
        (lambda lines: lines[:5] + [lines[5] + " 1"] + lines[6:], "line 6 has 41 values for 40 attributes"),
        (
            lambda lines: lines[:4] + [lines[4].replace("-1", " 0", 1)] + lines[5:],
            r"line 5 gives .* '0', not -1 or 1",
        ),
        (
            lambda lines: lines[:4] + [lines[4].replace("-1", "x", 1)] + lines[5:],
            r"line 5 gives .* 'x', not -1 or 1",
        ),
    ],
)
def test_read_attributes_errors(celeba_source, tmp_path, damage, message):
    lines = (celeba_source["root"] / "list_attr_celeba.txt").read_text().splitlines()
    path = tmp_path / "list_attr_celeba.txt"
    path.write_text("\n".join(damage(lines)) + "\n")
    with pytest.raises(VLVAEError, match=message):
        read_attributes(path)


def test_read_partition(celeba_source, tmp_path):
    assert read_partition(celeba_source["root"] / "list_eval_partition.txt") == celeba_source["partition"]
    bad = tmp_path / "list_eval_partition.txt"
    bad.write_text("000001.jpg 0\n000002.jpg 3\n")
    with pytest.raises(VLVAEError, match="line 2"):
        read_partition(bad)


def test_official_layout_is_found_and_builds_the_same(celeba_source, built, tmp_path):
    fixture = make_celeba_fixture(tmp_path / "celeba", layout="official")
    files = find_celeba_files(fixture["root"])
    assert files.images == fixture["root"] / "Img" / "img_align_celeba"
    assert files.attributes.parent.name == "Anno" and files.partition.parent.name == "Eval"
    out = _build(fixture, tmp_path / "out", chunk_size=16)
    assert _bytes(out) == _bytes(built)


# ----------------------------------------------------------------------------- the build


def test_paper_split_build(celeba_source, built):
    manifest = read_manifest(built)
    n_train = 40 * 180_000 // 202_599  # 35: the paper's fraction of 40 images
    n_val = (40 - n_train + 1) // 2  # 3: the first half of the rest, rounded up; the second half is test
    assert manifest["counts"] == {"train": n_train, "val": n_val, "test": 40 - n_train - n_val}
    assert manifest["dataset"] == "celeba" and manifest["text_length"] == 9
    assert manifest["settings"]["crop_box"] == {"left": 25, "top": 48, "right": 153, "bottom": 176}
    assert manifest["settings"]["pooling"] == "mean 2x2"
    records = {s: read_records(built, s) for s in ("train", "val", "test")}
    assert [r["filename"] for r in records["train"]] == celeba_source["filenames"][:n_train]
    assert [r["filename"] for r in records["val"]] == celeba_source["filenames"][n_train : n_train + n_val]
    assert [r["filename"] for r in records["test"]] == celeba_source["filenames"][n_train + n_val :]
    images = {s: load_images(built, s) for s in ("train", "val", "test")}
    assert images["train"].shape == (n_train, 64, 64, 3) and images["val"].shape == (n_val, 64, 64, 3)
    assert images["test"].shape == (40 - n_train - n_val, 64, 64, 3)
    # image i of the set is the preprocessed JPEG of record i
    with Image.open(celeba_source["root"] / "img_align_celeba" / records["val"][2]["filename"]) as image:
        np.testing.assert_array_equal(images["val"][2], preprocess(image))
    with Image.open(celeba_source["root"] / "img_align_celeba" / records["test"][1]["filename"]) as image:
        np.testing.assert_array_equal(images["test"][1], preprocess(image))

    names, values = celeba_source["names"], celeba_source["values"]
    counts = []
    for r in records["train"] + records["val"] + records["test"]:
        i = celeba_source["filenames"].index(r["filename"])
        assert r["attributes"] == dict(zip(names, values[i].tolist()))
        assert r["words"] == attribute_words(values[i], names)
        assert len(r["text"]) == 9
        kept = [w for w in r["text"] if w != BLANK]
        assert set(kept) <= set(r["words"]) and len(kept) == min(9, len(r["words"]))
        counts.append(len(r["words"]))
    stats = manifest["word_counts"]
    assert stats["max"] == 19 - 1  # image 3 has every attribute: 18 words (Female excluded)
    assert stats["median"] == float(np.median(counts))
    assert sum(stats["histogram"].values()) == 40
    assert stats["over_length"]["count"] == sum(c > 9 for c in counts) >= 1

    assert manifest["image_size"] == 64
    assert verify_dataset(built)["counts"] == manifest["counts"]

    vocab = read_vocabulary(built)
    assert vocab.words == CELEBA_WORDS
    assert vocab.slot_names == tuple(f"w{i}" for i in range(1, 10))
    assert all(slot == CELEBA_WORDS for slot in vocab.slots)
    assert not (built / ".partial").exists()


def test_official_split_build(celeba_source, tmp_path):
    out = _build(celeba_source, tmp_path / "out", split="official")
    partition = celeba_source["partition"]
    train = [r["filename"] for r in read_records(out, "train")]
    val = [r["filename"] for r in read_records(out, "val")]
    test = [r["filename"] for r in read_records(out, "test")]
    assert train == [f for f, p in partition.items() if p == 0]
    assert val == [f for f, p in partition.items() if p == 1]
    assert test == [f for f, p in partition.items() if p == 2]
    split = read_manifest(out)["split"]
    assert split["test"] == sum(p == 2 for p in partition.values()) == 6
    assert "2 test" in split["rule"]


def test_limit_and_workers(celeba_source, tmp_path):
    one = _build(celeba_source, tmp_path / "one", limit=20, chunk_size=8)
    two = _build(celeba_source, tmp_path / "two", limit=20, chunk_size=5, workers=2)
    assert _bytes(one) == _bytes(two)  # neither the chunking nor the processes change the result
    assert read_manifest(one)["counts"] == {"train": 17, "val": 2, "test": 1}


def test_rebuild_is_a_no_op_and_other_settings_are_refused(celeba_source, built):
    before = (built / "manifest.json").read_bytes()
    _build(celeba_source, built, chunk_size=16)
    assert (built / "manifest.json").read_bytes() == before
    with pytest.raises(VLVAEError, match="other settings"):
        _build(celeba_source, built, size=32)


def test_overwrite_replaces_a_set_with_other_settings(celeba_source, tmp_path):
    out = _build(celeba_source, tmp_path / "out", limit=10)
    _build(celeba_source, out, size=32, overwrite=True)
    assert read_manifest(out)["settings"]["size"] == 32
    assert load_images(out, "train").shape[1:] == (32, 32, 3)
    assert read_manifest(out)["settings"]["pooling"] == "mean 4x4"


def test_interrupted_build_resumes_to_the_same_bytes(celeba_source, built, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = celeba._decode_chunk
    calls = []

    def fails_after_first_chunk(*args):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt("killed")
        return real(*args)

    monkeypatch.setattr(celeba, "_decode_chunk", fails_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        _build(celeba_source, out, chunk_size=16)
    assert not (out / "manifest.json").exists() and not (out / "train").exists()
    assert len(list((out / ".partial").glob("chunk_*.npy"))) == 1

    monkeypatch.setattr(celeba, "_decode_chunk", real)
    decoded = []
    monkeypatch.setattr(
        celeba, "_decode_chunk", lambda paths, *a: decoded.append(len(paths)) or real(paths, *a)
    )
    _build(celeba_source, out, chunk_size=16)
    assert decoded == [16, 8]  # the first chunk was not decoded again
    assert _bytes(out) == _bytes(built)


# ----------------------------------------------------------------------------- bad input


def _assert_nothing_final(out):
    assert not (out / "manifest.json").exists()
    assert not (out / "train" / "images.npy").exists() and not (out / "val" / "images.npy").exists()


def test_missing_attribute_file(celeba_copy, tmp_path):
    (celeba_copy["root"] / "list_attr_celeba.txt").unlink()
    with pytest.raises(VLVAEError, match="lacks list_attr_celeba.txt") as err:
        _build(celeba_copy, tmp_path / "out")
    assert "Anno/" in str(err.value)
    _assert_nothing_final(tmp_path / "out")


def test_corrupt_jpeg_is_named(celeba_copy, tmp_path):
    (celeba_copy["root"] / "img_align_celeba" / "000007.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(VLVAEError, match=r"000007\.jpg is not a readable CelebA image"):
        _build(celeba_copy, tmp_path / "out")
    _assert_nothing_final(tmp_path / "out")


def test_truncated_jpeg_is_named(celeba_copy, tmp_path):
    path = celeba_copy["root"] / "img_align_celeba" / "000031.jpg"
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(VLVAEError, match=r"000031\.jpg is not a readable CelebA image"):
        _build(celeba_copy, tmp_path / "out", workers=2)
    _assert_nothing_final(tmp_path / "out")


def test_attribute_rows_without_images(celeba_copy, tmp_path):
    (celeba_copy["root"] / "img_align_celeba" / "000012.jpg").unlink()
    with pytest.raises(VLVAEError, match=r"lists 000012\.jpg but .* has no such file"):
        _build(celeba_copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_root_without_celeba(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VLVAEError, match="lacks img_align_celeba/ with .jpg files and list_attr_celeba.txt"):
        build_celeba(tmp_path / "empty", tmp_path / "out", progress=False)
    with pytest.raises(VLVAEError, match="does not exist"):
        build_celeba(tmp_path / "nowhere", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_official_split_needs_the_partition_file(celeba_copy, tmp_path):
    (celeba_copy["root"] / "list_eval_partition.txt").unlink()
    with pytest.raises(VLVAEError, match="--split official needs"):
        _build(celeba_copy, tmp_path / "out", split="official")
    _build(celeba_copy, tmp_path / "out", split="paper", limit=10)  # the paper split does not need it


def test_bad_arguments(celeba_source, tmp_path):
    with pytest.raises(VLVAEError, match="unknown split"):
        _build(celeba_source, tmp_path / "out", split="random")
    with pytest.raises(VLVAEError, match="--limit 1"):
        _build(celeba_source, tmp_path / "out", limit=1)


# ----------------------------------------------------------------------------- correctness


def test_word_probabilities_puts_female_after_male():
    p = np.arange(1, 19, dtype=float)[None] / 20  # label j has probability (j+1)/20
    words = word_probabilities(p)
    assert words.shape == (1, 19)
    assert words[0, 1] == pytest.approx(0.10) and words[0, 2] == pytest.approx(
        0.90
    )  # Male, Female = 1 - Male
    np.testing.assert_allclose(words[0, [0] + list(range(3, 19))], np.delete(p[0], 1))
    with pytest.raises(VLVAEError, match=r"expected \(N, 18\)"):
        word_probabilities(np.zeros((2, 19)))


def test_correctness_paper_by_hand():
    w = {word: i for i, word in enumerate(CELEBA_WORDS[:-1])}
    probs = np.full((3, 19), 0.1)
    probs[0, [w["Male"], w["Smiling"]]] = 0.8
    probs[1, w["Bangs"]] = 0.5  # exactly 0.5 is not "higher than 50 %"
    present = np.zeros((3, 19), dtype=bool)
    present[0, [w["Male"], w["Smiling"], w["Bald"]]] = True  # 2 of 3 words above 0.5
    present[1, [w["Bangs"], w["Female"]]] = True  # 0 of 2
    # row 2: an all-blank text
    got = correctness_paper(probs, present)
    np.testing.assert_allclose(got[:2], [2 / 3, 0.0])
    assert np.isnan(got[2])
    assert correctness_paper(probs, present, empty=0.0)[2] == 0.0
    # counts weight repeated words: Male twice (right), Bald once (wrong) -> 2/3
    counts = np.zeros((1, 19), dtype=int)
    counts[0, w["Male"]], counts[0, w["Bald"]] = 2, 1
    assert correctness_paper(probs[:1], counts)[0] == pytest.approx(2 / 3)


def test_correctness_through_word_probabilities():
    labels = np.full((1, 18), 0.2)
    labels[0, CELEBA_LABELS.index("Male")] = 0.3  # so Female has 0.7
    labels[0, CELEBA_LABELS.index("Smiling")] = 0.9
    text = words_present([["Female", "Smiling", "Bald", "-", "-", "-", "-", "-", "-"]])
    assert correctness_paper(word_probabilities(labels), text)[0] == pytest.approx(2 / 3)


def test_correctness_all_labels_by_hand():
    probs = np.array([[0.9, 0.2, 0.6, 0.4], [0.51, 0.49, 0.5, 0.0]])
    targets = np.array([[1, 0, 0, 1], [1, 0, 0, 0]])
    np.testing.assert_allclose(correctness_all_labels(probs, targets), [0.5, 1.0])
    labels = np.zeros((2, 18))
    assert correctness_all_labels(labels, np.zeros((2, 18), dtype=np.int8)).tolist() == [1.0, 1.0]


def test_docstring_examples():
    assert doctest.testmod(celeba).failed == 0
