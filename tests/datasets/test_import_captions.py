"""``vlvae data import``'s builder: a folder of images and a captions file made into a vlvae data set.

Round trip through Two Objects images, CSV and JSON lines alike, every kind of bad input counted
(and refused with ``strict``), image modes, resumption, and the split by image.
"""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from vlvae.data.dataset import ImageTextDataset
from vlvae.data.format import read_manifest, read_records, read_vocabulary
from vlvae.datasets.captions import build
from vlvae.datasets.captions.build import import_captions, split_counts, split_images
from vlvae.datasets.captions.images import (
    EmptyImage,
    MissingImage,
    TruncatedImage,
    UnreadableImage,
    read_image,
)
from vlvae.datasets.two_objects.build import TwoObjectsSettings, generate_two_objects
from vlvae.errors import VLVAEError

QUIET = dict(progress=False)


def _noise(seed: int, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _records_by_name(out):
    """image name -> (split, record) over every split of a finished set."""
    found = {}
    for split in read_manifest(out)["counts"]:
        for rec in read_records(out, split):
            assert rec["image"] not in found, f"{rec['image']} is in two splits"
            found[rec["image"]] = (split, rec)
    return found


def _images_by_name(out):
    found = {}
    for split in read_manifest(out)["counts"]:
        images = np.load(out / split / "images.npy")
        for rec, image in zip(read_records(out, split), images):
            found[rec["image"]] = image
    return found


def _small_set(folder, n=6, captions_per_image=None):
    """``n`` noise images img00.png... and (name, caption, colour) rows, several captions for some."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        name = f"img{i:02d}.png"
        Image.fromarray(_noise(i)).save(folder / name)
        for k in range((captions_per_image or {}).get(i, 1 + i % 2)):
            rows.append((name, f"Picture {i}, take {k}: a Noisy square!", f"c{i % 3}"))
    return rows


# ----------------------------------------------------------------------------- 1. round trip


_RELATION_WORDS = {"left": ["left", "of"], "right": ["right", "of"], "front": ["in", "front", "of"]}


def _variants(words, tag):
    """Captions of a Two Objects text written by hand, with the tokens each must give."""
    s1, c1, m1, h1, rel, s2, c2, m2, h2 = words
    rel_words = _RELATION_WORDS.get(rel, [rel])
    plain = " ".join(words)
    return [
        (plain.upper()[:1] + plain[1:] + f" {tag.upper()}.", [*words, tag, "."]),
        (
            f"A {s1.title()} {c1} {m1} {h1}, {' '.join(rel_words)} a {s2} {c2.upper()} {m2} {h2}!",
            ["a", s1, c1, m1, h1, ",", *rel_words, "a", s2, c2, m2, h2, "!"],
        ),
        (
            f"There's a {c2} {h2}; and a {c1} {h1}...",
            ["there's", "a", c2, h2, ";", "and", "a", c1, h1, ".", ".", "."],
        ),
    ]


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    root = tmp_path_factory.mktemp("round_trip")
    source = root / "two_objects"
    settings = TwoObjectsSettings(n=24, size=16, zoom=2.0, supersample=1, val_fraction=0.25)
    generate_two_objects(settings, source, workers=1, progress=False)
    folder = root / "pictures"
    folder.mkdir()
    pixels, expected, lines = {}, {}, [[], [], []]
    for split in ("train", "val"):
        images = np.load(source / split / "images.npy")
        for i, (image, rec) in enumerate(zip(images, read_records(source, split))):
            name = f"{split}_{i:03d}.png"
            Image.fromarray(image).save(folder / name)
            pixels[name] = image
            variants = _variants(rec["text"], tag=f"tag{split}{i}")
            kept = variants if i % 3 == 0 else variants[:2]
            expected[name] = [tokens for _, tokens in kept]
            for k, (caption, _) in enumerate(kept):
                lines[k].append((name, caption))  # an image's captions are spread over the file
    captions = _write_csv(root / "captions.csv", ["image", "caption"], [r for rows in lines for r in rows])
    out = root / "imported"
    manifest = import_captions(folder, captions, out, size=16, max_words=20, val=0.2, test=0.1, **QUIET)
    return out, manifest, pixels, expected


def test_round_trip_pixels_and_words(round_trip):
    out, manifest, pixels, expected = round_trip
    found = _records_by_name(out)
    assert set(found) == set(pixels)  # each image in exactly one split (checked in _records_by_name)
    images = _images_by_name(out)
    for name, image in pixels.items():
        assert images[name].dtype == np.uint8 and np.array_equal(images[name], image), name
    vocab = read_vocabulary(out)
    assert vocab.words[:2] == ("<end>", "<unk>") and (vocab.end, vocab.unknown) == ("<end>", "<unk>")
    train_words = set()
    for split, rec in found.values():
        if split == "train":
            train_words.update(w for c in rec["captions"] for w in c)
    for name, (split, rec) in found.items():
        # the vocabulary is the train split's: a word met only in other splits is <unk> there
        want = [[w if w in train_words or split == "train" else "<unk>" for w in c] for c in expected[name]]
        assert rec["captions"] == want, name
        assert "attributes" not in rec
    assert set(vocab.words[2:]) == train_words
    unknown_tags = [
        c[9] for _, (split, rec) in found.items() if split != "train" for c in rec["captions"][:1]
    ]
    assert unknown_tags and set(unknown_tags) == {"<unk>"}
    assert (
        manifest["text_length"] == 21 and manifest["image_size"] == 16 and manifest["dataset"] == "captions"
    )
    assert manifest["counts"] == {"train": 17, "val": 5, "test": 2}
    assert manifest["pairs"] == sum(len(v) for v in expected.values()) and manifest["skipped"] == {}
    assert (
        manifest["summary"]
        == f"kept {manifest['pairs']} of {manifest['pairs']} pairs (24 images); nothing skipped"
    )
    assert manifest["attributes"] == []
    assert set(manifest["settings"]) == {
        "dataset", "size", "min_count", "max_words", "val", "test", "seed", "captions_sha256", "images"
    }  # fmt: skip
    assert not (out / ".partial").exists()


def test_round_trip_loads_for_training(round_trip):
    out, manifest, _, _ = round_trip
    data = ImageTextDataset(out, "train")
    item = data[0]
    assert item["image"].shape == (3, 16, 16) and item["text"].shape == (21,)
    vocab = read_vocabulary(out)
    words = vocab.strip_end(vocab.decode(item["text"]))
    assert words in data.records[0]["captions"]


# ----------------------------------------------------------------------------- 2. CSV = JSON lines


def test_jsonl_gives_the_same_data_set_as_csv(tmp_path):
    rows = _small_set(tmp_path / "pictures", n=7)
    csv_file = _write_csv(tmp_path / "captions.csv", ["image", "caption", "colour"], rows)
    jsonl = tmp_path / "captions.jsonl"
    jsonl.write_text("".join(json.dumps({"image": i, "caption": c, "colour": k}) + "\n" for i, c, k in rows))
    options = dict(size=8, min_count=2, max_words=4, val=0.2, test=0.2, seed=3, **QUIET)
    a = import_captions(tmp_path / "pictures", csv_file, tmp_path / "a", **options)
    b = import_captions(tmp_path / "pictures", jsonl, tmp_path / "b", strict=True, **options)
    assert a["counts"] == b["counts"] == {"train": 5, "val": 1, "test": 1}
    for split in a["counts"]:
        assert (tmp_path / "a" / split / "images.npy").read_bytes() == (
            tmp_path / "b" / split / "images.npy"
        ).read_bytes()
        assert read_records(tmp_path / "a", split) == read_records(tmp_path / "b", split)
    assert read_vocabulary(tmp_path / "a") == read_vocabulary(tmp_path / "b")
    assert a["attributes"] == b["attributes"] == ["colour"]
    # Each caption is cut to max_words = 4: "picture", its image's number, ",", "take". A word enters
    # the vocabulary when the train split's captions use it twice (min_count 2), most frequent first.
    cut = {name: [] for name, _, _ in rows}
    for name, _, _ in rows:
        cut[name].append(["picture", str(int(name[3:5])), ",", "take"])
    train = [r["image"] for r in read_records(tmp_path / "a", "train")]
    counts = {}
    for name in train:
        for caption in cut[name]:
            for w in caption:
                counts[w] = counts.get(w, 0) + 1
    words = sorted((w for w, c in counts.items() if c >= 2), key=lambda w: (-counts[w], w))
    assert read_vocabulary(tmp_path / "a").words == ("<end>", "<unk>", *words)
    assert "picture" in words and any(c == 1 for c in counts.values())  # both cases occur
    for split in a["counts"]:
        for rec in read_records(tmp_path / "a", split):
            want = [[w if w in words else "<unk>" for w in c] for c in cut[rec["image"]]]
            assert rec["captions"] == want
            assert rec["attributes"] == {"colour": f"c{int(rec['image'][3:5]) % 3}"}


def test_strict_accepts_clean_input_and_jsonl_bad_lines_are_counted(tmp_path):
    rows = _small_set(tmp_path / "pictures", n=3)
    lines = [json.dumps({"image": i, "caption": c}) for i, c, _ in rows]
    lines[1:1] = ['{"image": "img00.png"', '["img00.png", "x"]', '{"image": "img01.png"}', ""]
    path = tmp_path / "captions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    manifest = import_captions(tmp_path / "pictures", path, tmp_path / "out", size=8, val=0, test=0, **QUIET)
    assert manifest["skipped"] == {"bad_row": {"count": 3, "examples": [2, 3, 4]}}
    assert manifest["counts"] == {"train": 3, "val": 0}
    assert not (tmp_path / "out" / "test").exists()
    with pytest.raises(VLVAEError, match="3 malformed rows"):
        import_captions(tmp_path / "pictures", path, tmp_path / "strict", size=8, val=0, test=0, strict=True)


# ----------------------------------------------------------------------------- 3. bad input


@pytest.fixture
def bad_input(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    good = {}
    for i in range(1, 6):
        good[f"good{i}.png"] = _noise(i)
        Image.fromarray(good[f"good{i}.png"]).save(folder / f"good{i}.png")
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.png").write_text("hello, this is not an image\n")
    Image.fromarray(_noise(9, 32)).save(folder / "whole.png")
    whole = (folder / "whole.png").read_bytes()
    (folder / "trunc.png").write_bytes(whole[: len(whole) // 2])
    (folder / "whole.png").unlink()
    lines = [
        b"Image , Caption,colour,,colour\n",  # 1: column 4 empty, column 5 repeats colour
        b"good1.png,A red square.,red,x,y\n",
        b"good2.png,A green square.,green,,\n",
        b"zero.png,An empty file.,none,,\n",
        b"text.png,Some text.,none,,\n",
        b"trunc.png,A cut file.,none,,\n",
        b"missing.png,Not there.,none,,\n",
        b"good3.png,   ,blue,,\n",  # 8: blank caption
        b"good3.png,?! ...,blue,,\n",  # 9: punctuation only
        b"good1.png,a RED  square.,red,,\n",  # 10: the same words as line 2
        b"good4.png,caf\xe9 au lait,brown,,\n",  # 11: Latin-1, not UTF-8
        b"good5.png,too short\n",  # 12: two cells of five
        b"good3.png,A blue square.,blue,,\n",
        b"good4.png,A brown square.,brown,,\n",
        b"good5.png,A grey square.,grey,,\n",
        b"good2.png,Another green one.,green,,\n",
    ]
    captions = tmp_path / "captions.csv"
    captions.write_bytes(b"".join(lines))
    kept = {
        "good1.png": [["a", "red", "square", "."]],
        "good2.png": [["a", "green", "square", "."], ["another", "green", "one", "."]],
        "good3.png": [["a", "blue", "square", "."]],
        "good4.png": [["a", "brown", "square", "."]],
        "good5.png": [["a", "grey", "square", "."]],
    }
    return folder, captions, good, kept


EXPECTED_SKIPPED = {
    "missing_image": {"count": 1, "examples": ["missing.png"]},
    "empty_image": {"count": 1, "examples": ["zero.png"]},
    "unreadable_image": {"count": 1, "examples": ["text.png"]},
    "truncated_image": {"count": 1, "examples": ["trunc.png"]},
    "empty_caption": {"count": 2, "examples": [8, 9]},
    "duplicate_pair": {"count": 1, "examples": [10]},
    "bad_row": {"count": 1, "examples": [12]},
    "not_utf8": {"count": 1, "examples": [11]},
    "unknown_column": {"count": 2, "examples": ["column 4: empty", "column 5: 'colour' again"]},
}


def test_bad_input_is_counted_and_the_good_pairs_kept(bad_input, tmp_path, capsys):
    folder, captions, good, kept = bad_input
    out = tmp_path / "out"
    manifest = import_captions(folder, captions, out, size=8, val=0, test=0, **QUIET)
    found = _records_by_name(out)  # all in train: every word is in the vocabulary
    assert {name: rec["captions"] for name, (_, rec) in found.items()} == kept
    assert found["good1.png"][1]["attributes"] == {"colour": "red"}
    images = _images_by_name(out)
    assert all(np.array_equal(images[name], good[name]) for name in kept)
    assert manifest["skipped"] == EXPECTED_SKIPPED
    assert manifest["pairs"] == 6 and manifest["counts"] == {"train": 5, "val": 0}
    assert manifest["attributes"] == ["colour"]
    summary = manifest["summary"]
    assert summary.startswith("kept 6 of 15 pairs (5 images); skipped ")
    for phrase in (
        "1 missing image (missing.png)",
        "1 empty image file (zero.png)",
        "1 unreadable image (text.png)",
        "1 truncated image (trunc.png)",
        "2 empty captions (line 8, 9)",
        "1 duplicate pair (line 10)",
        "1 malformed row (line 12)",
        "1 line not in UTF-8 (line 11)",
        "2 ignored columns (column 4: empty, column 5: 'colour' again)",
    ):
        assert phrase in summary
    assert summary in capsys.readouterr().out


def test_strict_refuses_bad_input_before_writing(bad_input, tmp_path):
    folder, captions, _, _ = bad_input
    out = tmp_path / "strict"
    with pytest.raises(VLVAEError) as caught:
        import_captions(folder, captions, out, size=8, val=0.2, test=0.2, strict=True, **QUIET)
    message = str(caught.value)
    assert "\n" not in message and "--strict" in message
    for phrase in (
        "missing image (missing.png)",
        "truncated image (trunc.png)",
        "unreadable image (text.png)",
    ):
        assert phrase in message
    assert not any((out / name).exists() for name in ("manifest.json", "vocab.json", "train", "val", "test"))
    assert not (out / ".partial").exists()


def test_fatal_input(tmp_path):
    rows = _small_set(tmp_path / "pictures", n=2)
    pictures = tmp_path / "pictures"
    headless = tmp_path / "headless.csv"
    headless.write_text("file,text\nimg00.png,a cat\n")
    with pytest.raises(
        VLVAEError, match=r"columns 'file', 'text'.*first line must be a header.*image,caption"
    ):
        import_captions(pictures, headless, tmp_path / "a", size=8, **QUIET)
    empty = tmp_path / "empty.csv"
    empty.write_text("\n \n")
    with pytest.raises(VLVAEError, match="is empty"):
        import_captions(pictures, empty, tmp_path / "b", size=8, **QUIET)
    none_good = _write_csv(
        tmp_path / "none.csv", ["image", "caption"], [("gone.png", "a cat"), ("img00.png", "")]
    )
    with pytest.raises(VLVAEError, match="no usable"):
        import_captions(pictures, none_good, tmp_path / "c", size=8, **QUIET)
    two = _write_csv(tmp_path / "two.csv", ["image", "caption"], [r[:2] for r in rows])
    with pytest.raises(VLVAEError, match="only 2 usable images.*--val 0 --test 0"):
        import_captions(pictures, two, tmp_path / "d", size=8, **QUIET)
    assert import_captions(pictures, two, tmp_path / "d", size=8, val=0, test=0, **QUIET)["counts"] == {
        "train": 2,
        "val": 0,
    }
    with pytest.raises(VLVAEError, match="images folder"):
        import_captions(tmp_path / "nowhere", two, tmp_path / "e", size=8, **QUIET)


# ----------------------------------------------------------------------------- 4. image modes


def test_image_modes(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[0] = (200, 100, 50, 255)
    rgba[1] = (200, 100, 50, 0)
    rgba[2] = (0, 0, 0, 128)
    rgba[3] = (0, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "rgba.png", 4).astype(int)
    assert (out[0] == (200, 100, 50)).all() and (out[1] == 255).all() and (out[3] == 0).all()
    assert (abs(out[2] - 127) <= 1).all()  # half-transparent black over white: mid grey

    Image.new("L", (4, 4), 77).save(tmp_path / "grey.png")
    assert (read_image(tmp_path / "grey.png", 4) == 77).all()

    deep = np.array([[0, 65535], [25700, 65280]], dtype=np.uint16)  # 65280 / 257 = 254, not 65280 >> 8
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out = read_image(tmp_path / "deep.png", 2)
    assert (out[..., 0] == [[0, 255], [100, 254]]).all() and (out == out[..., :1]).all()

    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.save(tmp_path / "palette.png", transparency=0)
    out = read_image(tmp_path / "palette.png", 2)
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[1, 1]) == (10, 20, 30)

    Image.new("1", (2, 2), 1).save(tmp_path / "bits.png")
    assert (read_image(tmp_path / "bits.png", 2) == 255).all()
    Image.new("CMYK", (2, 2), (0, 0, 0, 0)).save(tmp_path / "cmyk.tif")
    assert (read_image(tmp_path / "cmyk.tif", 2) == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((16, 32, 3), dtype=np.uint8)  # 32 wide, 16 high: left half red, right half blue
    stored[:, :16] = (255, 0, 0)
    stored[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: red on top, blue below, 16 wide, 32 high
    Image.fromarray(stored).save(tmp_path / "turned.jpg", quality=95, exif=exif.tobytes())
    out = read_image(tmp_path / "turned.jpg", 16).astype(int)
    red, blue = np.array([255, 0, 0]), np.array([0, 0, 255])
    assert np.abs(out[2, 2] - red).max() < 40 and np.abs(out[2, 13] - red).max() < 40
    assert np.abs(out[13, 2] - blue).max() < 40 and np.abs(out[13, 13] - blue).max() < 40


def test_centre_crop_cuts_the_side_bands(tmp_path):
    wide = np.zeros((8, 24, 3), dtype=np.uint8)
    wide[:, :8], wide[:, 8:16], wide[:, 16:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert (read_image(tmp_path / "wide.png", 8) == (0, 255, 0)).all()  # the central square, untouched
    Image.fromarray(np.ascontiguousarray(wide.transpose(1, 0, 2))).save(tmp_path / "tall.png")
    assert (read_image(tmp_path / "tall.png", 8) == (0, 255, 0)).all()
    big = np.repeat(np.repeat(wide, 2, axis=0), 2, axis=1)  # 48 x 16: the central 16 x 16 is green
    Image.fromarray(big).save(tmp_path / "big.png")
    out = read_image(tmp_path / "big.png", 4).astype(int)
    assert out.shape == (4, 4, 3) and np.abs(out - (0, 255, 0)).max() <= 1


def test_bad_files_raise_their_kind(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    Image.fromarray(_noise(1, 32)).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    Image.fromarray(_noise(2, 32)).save(tmp_path / "whole.jpg", quality=90)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    for name, kind in (
        ("absent.png", MissingImage),
        ("zero.png", EmptyImage),
        ("text.png", UnreadableImage),
        ("cut.png", TruncatedImage),
        ("cut.jpg", TruncatedImage),
    ):
        with pytest.raises(kind):
            read_image(tmp_path / name, 8)
    assert read_image(tmp_path / "whole.png", 8).shape == (8, 8, 3)


# ----------------------------------------------------------------------------- 5. resume


def test_resume_after_an_interruption_is_byte_identical(tmp_path, monkeypatch):
    rows = _small_set(tmp_path / "pictures", n=10)
    captions = _write_csv(tmp_path / "captions.csv", ["image", "caption"], [r[:2] for r in rows])
    options = dict(size=8, val=0.2, test=0.1, **QUIET)
    whole = tmp_path / "whole"
    import_captions(tmp_path / "pictures", captions, whole, chunk_size=4, **options)

    real = build._write_chunk
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "out"
    monkeypatch.setattr(build, "_write_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_captions(tmp_path / "pictures", captions, out, chunk_size=3, **options)
    assert not (out / "manifest.json").exists()
    assert sorted(p.name for p in (out / ".partial").glob("chunk_*.json")) == [
        "chunk_000000000_000000003.json"
    ]

    calls.clear()
    monkeypatch.setattr(build, "_write_chunk", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    import_captions(tmp_path / "pictures", captions, out, chunk_size=3, **options)
    assert calls == [3, 6, 9]  # the chunk done before the interruption is not decoded again
    for split in ("train", "val", "test"):
        assert (out / split / "images.npy").read_bytes() == (whole / split / "images.npy").read_bytes()
        assert read_records(out, split) == read_records(whole, split)
    assert (out / "vocab.json").read_bytes() == (whole / "vocab.json").read_bytes()
    assert not (out / ".partial").exists()

    def no_decoding(*args):
        raise AssertionError("a finished set was decoded again")

    monkeypatch.setattr(build, "read_image", no_decoding)
    again = import_captions(tmp_path / "pictures", captions, out, chunk_size=3, **options)
    assert again == read_manifest(out)
    with pytest.raises(VLVAEError, match="other settings.*--overwrite"):
        import_captions(tmp_path / "pictures", captions, out, **{**options, "size": 4})
    monkeypatch.setattr(build, "read_image", read_image)
    redone = import_captions(tmp_path / "pictures", captions, out, overwrite=True, **{**options, "size": 4})
    assert redone["image_size"] == 4 and np.load(out / "train" / "images.npy").shape[1:] == (4, 4, 3)


# ----------------------------------------------------------------------------- 6. split by image


def test_split_is_by_image_and_a_function_of_the_seed(tmp_path):
    rows = _small_set(tmp_path / "pictures", n=12, captions_per_image={0: 3, 5: 3})
    captions = _write_csv(tmp_path / "captions.csv", ["image", "caption"], [r[:2] for r in rows])
    names = list(dict.fromkeys(r[0] for r in rows))
    assignments = []
    for seed in (0, 1, 2, 0):
        out = tmp_path / f"seed{seed}_{len(assignments)}"
        import_captions(tmp_path / "pictures", captions, out, size=8, val=0.25, test=0.25, seed=seed, **QUIET)
        found = _records_by_name(out)
        assert set(found) == set(names)
        assert len(found["img00.png"][1]["captions"]) == 3 and len(found["img05.png"][1]["captions"]) == 3
        parts = split_images(12, 0.25, 0.25, seed)
        for split, rows_of_split in parts.items():
            assert [r["image"] for r in read_records(out, split)] == [names[i] for i in rows_of_split]
        assignments.append({name: split for name, (split, _) in found.items()})
    assert assignments[0] == assignments[3]
    assert assignments[0] != assignments[1] or assignments[0] != assignments[2]


def test_split_counts():
    assert split_counts(3, 0.05, 0.05) == {"train": 1, "val": 1, "test": 1}
    assert split_counts(100, 0.05, 0.0) == {"train": 95, "val": 5, "test": 0}
    assert split_counts(10, 0.0, 0.0) == {"train": 10, "val": 0, "test": 0}
    parts = split_images(20, 0.25, 0.1, seed=7)
    together = np.concatenate(list(parts.values()))
    assert sorted(together.tolist()) == list(range(20))
    assert [len(parts[s]) for s in ("train", "val", "test")] == [13, 5, 2]
    assert all((np.diff(p) > 0).all() for p in parts.values())
