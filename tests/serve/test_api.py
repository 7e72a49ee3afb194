"""`vlvae serve`'s JSON API, page and report on a tiny run, through FastAPI's test client: every
endpoint, and every kind of bad input answered 4xx with one message while the server keeps serving."""

import base64
import doctest
import io
import shutil
import socket

import numpy as np
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

import vlvae.inference
import vlvae.serve.app
import vlvae.serve.images
import vlvae.serve.markdown
from vlvae.cli import app
from vlvae.errors import VLVAEError
from vlvae.inference import Inference, MissingStage
from vlvae.serve import create_app
from vlvae.serve.app import MAX_SEED, PAGE_MAX_SAMPLES, _Job, _Sampler
from vlvae.serve.images import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, png_bytes, read_upload
from vlvae.serve.markdown import render_markdown

TEXT = "small red metal cube left large blue rubber sphere"


@pytest.fixture(scope="module")
def client(inference):
    return TestClient(create_app(inference))


@pytest.fixture(scope="module")
def partial(partial_run):
    return TestClient(create_app(Inference.open(partial_run)))


def decode(data_url, size=16):
    assert data_url.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
    assert image.format == "PNG" and image.size == (size, size) and image.mode == "RGB"
    return np.asarray(image)


def png(width, height, colour=(200, 30, 30), fmt="PNG"):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format=fmt)
    return buffer.getvalue()


def refused(response, status, *fragments):
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    for fragment in fragments:
        assert fragment in detail, detail
    return detail


# ----------------------------------------------------------------------------- run, vocabulary, health


def test_health_and_vocab(client, tiny):
    health = client.get("/api/health").json()
    assert health == {
        "status": "ok",
        "run": str(tiny / "run"),
        "stages": {"q_agg": True, "q_true": True, "prior": True},
        "device": "cpu",
    }
    vocab = client.get("/api/vocab").json()
    assert vocab["dataset"] == "two_objects" and vocab["layout"] == "slots"
    assert vocab["slot_names"][:5] == ["O1size", "O1colour", "O1material", "O1shape", "R"]
    assert len(vocab["slots"]) == vocab["text_length"] == 9 and "red" in vocab["slots"][1]
    assert vocab["stages"] == {"stage1": True, "q_agg": True, "q_true": True, "prior": True}
    assert vocab["missing"] == {} and vocab["classifier"] is True and vocab["report"] is True
    # The menus and the stage behind each entry come from the stage registry (the page reads them).
    assert vocab["posteriors"] == {"agg": "q_Agg(z|y)", "true": "q_True(z|y)"}
    assert vocab["priors"] == {"standard": "N(0, I)", "learned": "q_φ(z)"}
    assert vocab["posterior_stages"] == {"agg": "q_agg", "true": "q_true"}
    assert vocab["prior_stages"] == {"standard": None, "learned": "prior"}
    assert len(vocab["example"].split()) == 9 and vocab["image_size"] == 16
    assert vocab["max_samples"] == PAGE_MAX_SAMPLES
    assert vocab["opposite_relations"] == {
        "right": "left",
        "left": "right",
        "front": "behind",
        "behind": "front",
    }


# ----------------------------------------------------------------------------- text -> images


def test_text_gives_both_columns_with_images_captions_and_correctness(client, inference):
    answer = client.get("/api/text", params={"text": TEXT, "n": 3, "seed": 5}).json()
    assert answer["text"] == TEXT and answer["n"] == 3 and answer["seed"] == 5
    assert [c["name"] for c in answer["columns"]] == ["agg", "true"]
    assert [c["label"] for c in answer["columns"]] == ["q_Agg(z|y)", "q_True(z|y)"]
    for column in answer["columns"]:
        assert column["available"] and len(column["samples"]) == 3
        for sample in column["samples"]:
            decode(sample["image"])
            assert len(sample["caption"].split()) == 9 and 0 <= sample["correctness"] <= 1
    # The same images as the inference object (and so as `vlvae sample`) with the same seed.
    direct = inference.from_text(TEXT, "true", 3, 5)
    images = [decode(s["image"]) for s in answer["columns"][1]["samples"]]
    assert np.array_equal(np.stack(images), direct.images)
    assert [s["caption"] for s in answer["columns"][1]["samples"]] == direct.texts
    again = client.get("/api/text", params={"text": TEXT, "n": 3, "seed": 5}).json()
    assert again == answer
    other = client.get("/api/text", params={"text": TEXT, "n": 3, "seed": 6}).json()
    assert other["columns"][0]["samples"][0]["image"] != answer["columns"][0]["samples"][0]["image"]


def test_text_by_words_and_single_posterior(client):
    by_words = client.get("/api/text", params={"word": TEXT.split(), "posterior": "agg", "n": 2}).json()
    by_text = client.get("/api/text", params={"text": TEXT, "posterior": "agg", "n": 2}).json()
    assert by_words == by_text and [c["name"] for c in by_text["columns"]] == ["agg"]


@pytest.mark.parametrize(
    "params, fragments",
    [
        ({"text": "small pink metal cube left large blue rubber sphere"}, ["unknown word", "'pink'"]),
        ({"text": "small red cube"}, ["has 3 words", "reads 9", "O1size O1colour"]),
        ({"text": ""}, ["has 0 words"]),
        ({}, ["give a text", "O1size"]),
        ({"text": TEXT, "word": "small"}, ["not both"]),
        ({"text": TEXT, "posterior": "best"}, ["posterior must be", "'best'"]),
        ({"text": TEXT, "n": 0}, ["n must be between 1 and 64", "got 0"]),
        ({"text": TEXT, "n": PAGE_MAX_SAMPLES + 1}, ["n must be between 1 and 64"]),
        ({"text": TEXT, "n": "many"}, ["n:", "integer", "'many'"]),
        ({"text": TEXT, "seed": -1}, ["seed must be between 0 and", "got -1"]),
        ({"text": TEXT, "seed": MAX_SEED + 1}, ["seed must be between 0 and"]),
    ],
)
def test_bad_text_requests_answer_400_and_the_server_keeps_serving(client, params, fragments):
    refused(client.get("/api/text", params=params), 400, *fragments)
    assert client.get("/api/health").status_code == 200


# ----------------------------------------------------------------------------- priors


def test_prior_columns(client, inference):
    answer = client.get("/api/prior", params={"n": 4, "seed": 1}).json()
    assert [(c["name"], c["label"]) for c in answer["columns"]] == [
        ("standard", "N(0, I)"),
        ("learned", "q_φ(z)"),
    ]
    for column in answer["columns"]:
        assert len(column["samples"]) == 4
        for sample in column["samples"]:
            decode(sample["image"])
            assert len(sample["caption"].split()) == 9 and 0 <= sample["correctness"] <= 1
    direct = inference.from_prior("learned", 4, 1)
    assert [s["caption"] for s in answer["columns"][1]["samples"]] == direct.texts
    one = client.get("/api/prior", params={"prior": "standard", "n": 4, "seed": 1}).json()
    assert one["columns"] == answer["columns"][:1]


@pytest.mark.parametrize(
    "params, fragments",
    [
        ({"prior": "flat"}, ["prior must be", "'flat'"]),
        ({"n": 10_000}, ["n must be between 1 and 64"]),
        ({"seed": "x"}, ["seed:", "'x'"]),
    ],
)
def test_bad_prior_requests(client, params, fragments):
    refused(client.get("/api/prior", params=params), 400, *fragments)


# ----------------------------------------------------------------------------- image -> text


def test_caption_of_an_upload(client):
    answer = client.post("/api/caption", files={"file": ("wide.png", png(40, 20), "image/png")}).json()
    assert answer["resized_from"] == [40, 20]
    image = decode(answer["image"])
    assert (image == [200, 30, 30]).all()  # the central square of one colour, resized
    decode(answer["reconstruction"])
    assert len(answer["caption"].split()) == 9 and 0 <= answer["correctness"] <= 1
    raw = client.post("/api/caption", content=png(16, 16, fmt="JPEG"), headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 200 and raw.json()["resized_from"] == [16, 16]


def test_bad_uploads(client):
    def send(data, name="x.png", kind="image/png"):
        return client.post("/api/caption", files={"file": (name, data, kind)})

    refused(send(b"this is not an image"), 415, "not a readable PNG or JPEG")
    refused(send(b""), 415, "empty")
    refused(send(png(8, 8, fmt="GIF"), "x.gif", "image/gif"), 415, "GIF", "PNG or JPEG")
    refused(send(png(16, 16)[:60]), 415, "not a readable PNG or JPEG")  # truncated
    refused(send(b"\0" * (MAX_UPLOAD_BYTES + 1)), 413, "limit")
    refused(
        client.post(
            "/api/caption", content=b"\0" * (MAX_UPLOAD_BYTES + 70_000), headers={"Content-Type": "image/png"}
        ),
        413,
        "limit",
    )
    side = int(MAX_UPLOAD_PIXELS**0.5) + 10
    big = png(side, side)  # a few kB of PNG that would decode to more pixels than allowed
    assert len(big) < MAX_UPLOAD_BYTES
    refused(send(big), 413, f"{side} x {side} pixels")
    refused(client.post("/api/caption", files={"other": ("x.png", png(8, 8), "image/png")}), 400, "'file'")
    assert client.get("/api/health").status_code == 200


def test_png_bytes_round_trips_any_image():
    rng = np.random.default_rng(0)
    for shape in ((1, 1, 3), (16, 16, 3), (64, 64, 3), (7, 33, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        data = png_bytes(image)
        decoded = Image.open(io.BytesIO(data))
        assert decoded.format == "PNG" and decoded.mode == "RGB" and decoded.size == (shape[1], shape[0])
        assert np.array_equal(np.asarray(decoded), image)
    smooth = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 64, 0).repeat(3, 2)
    assert len(png_bytes(smooth)) < smooth.size / 10  # the filter and deflate do compress
    with pytest.raises(ValueError, match="uint8 \\(H, W, 3\\)"):
        png_bytes(np.zeros((4, 4), np.uint8))


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_and_keeps_its_size():
    wide = np.zeros((1000, 2400, 3), np.uint8)
    wide[:, 700:1700] = (30, 160, 220)  # the central square (700..1700) is one colour
    buffer = io.BytesIO()
    Image.fromarray(wide).save(buffer, format="JPEG", quality=95)
    image, size = read_upload(buffer.getvalue(), 16)
    assert size == (2400, 1000) and image.shape == (16, 16, 3)
    assert np.abs(image[2:-2, 2:-2].astype(int) - (30, 160, 220)).max() <= 8


def test_read_upload_converts_modes():
    buffer = io.BytesIO()
    Image.new("RGBA", (30, 30), (10, 20, 30, 128)).save(buffer, format="PNG")
    image, size = read_upload(buffer.getvalue(), 16)
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8 and size == (30, 30)


def test_validation_images(client, inference):
    count = inference.validation_count()
    answer = client.get("/api/validation/2").json()
    image, text = inference.validation_example(2)
    assert answer["index"] == 2 and answer["count"] == count and answer["text"] == text
    assert np.array_equal(decode(answer["image"]), image)
    decode(answer["reconstruction"])
    assert answer["caption"] == inference.caption(image)[0]
    assert 0 <= answer["correctness"] <= 1 and 0 <= answer["text_correctness"] <= 1
    first = client.get("/api/validation/random", params={"seed": 3}).json()
    assert first == client.get("/api/validation/random", params={"seed": 3}).json()
    assert 0 <= first["index"] < count
    assert client.get("/api/validation/random").status_code == 200
    refused(
        client.get(f"/api/validation/{count}"),
        404,
        f"validation image {count} does not exist",
        f"0 to {count - 1}",
    )
    refused(client.get("/api/validation/-1"), 404, "does not exist")
    refused(client.get("/api/validation/first"), 400, "index", "'first'")


# ----------------------------------------------------------------------------- report and page


def test_report_and_its_figures(client, tiny):
    page = client.get("/report")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<table>" in html and "<th>q_True(z|y)</th>" in html  # the bar inside a cell is no column break
    assert 'src="/report/figures/fig3_reconstructions.png"' in html
    figure = client.get("/report/figures/fig3_reconstructions.png")
    assert figure.status_code == 200 and figure.content[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("..%2Fconfig.yaml", "nothing.png", ".hidden.png", "report.md"):
        assert client.get(f"/report/figures/{name}").status_code == 404
    assert "Not Found" not in refused(client.get("/report/figures/missing.png"), 404, "no figure")


def test_page_and_static_files_work_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js"' in page.text
    for name in ("app.js", "style.css", "index.html"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and len(response.text) > 500
        # No CDN: the page loads nothing from another host.
        assert "http://" not in response.text and "https://" not in response.text, name
    assert client.get("/openapi.json").json()["paths"].keys() >= {
        "/api/text",
        "/api/prior",
        "/api/caption",
        "/api/vocab",
        "/api/health",
        "/api/validation/{index}",
    }


def test_docstring_examples():

    for module in (vlvae.serve.markdown, vlvae.serve.app, vlvae.serve.images, vlvae.inference):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_markdown_renders_the_reports_constructs():
    html = render_markdown(
        "## T\n\n| a | q(z|y) |\n|---|---|\n| <b> | **2** |\n\n- one *x*\n- `c|d`\n\n"
        "![f](figures/f.png) [bad](javascript:alert)",
        base="/report/",
    )
    assert "<h2>T</h2>" in html and "<th>q(z|y)</th>" in html and "<td>&lt;b&gt;</td>" in html
    assert "<strong>2</strong>" in html and "<em>x</em>" in html and "<code>c|d</code>" in html
    assert 'src="/report/figures/f.png"' in html and "javascript" not in html
    assert (
        render_markdown("#x\n| y") == "<p>#x</p>\n<p>| y</p>"
    )  # not a heading, not a table; no endless loop


# ----------------------------------------------------------------------------- a run with stages missing


def test_missing_stages_grey_out_or_answer_409(partial, partial_run):
    vocab = partial.get("/api/vocab").json()
    assert vocab["stages"] == {"stage1": True, "q_agg": True, "q_true": False, "prior": False}
    assert (
        "vlvae train text-posterior" in vocab["missing"]["q_true"]
        and "--objective true" in vocab["missing"]["q_true"]
    )
    assert "vlvae train prior" in vocab["missing"]["prior"] and vocab["report"] is False
    assert vocab["classifier"] is False
    both = partial.get("/api/text", params={"text": TEXT, "n": 2}).json()
    agg, true = both["columns"]
    assert agg["available"] and len(agg["samples"]) == 2 and agg["samples"][0]["correctness"] is None
    assert not true["available"] and true["samples"] == [] and "--objective true" in true["detail"]
    detail = refused(
        partial.get("/api/text", params={"text": TEXT, "posterior": "true"}),
        409,
        f"vlvae train text-posterior --run {partial_run} --objective true",
    )
    assert partial.get("/api/text", params={"text": TEXT, "posterior": "true"}).json()["stage"] == "q_true"
    assert "not finished" in detail
    refused(
        partial.get("/api/prior", params={"prior": "learned"}), 409, f"vlvae train prior --run {partial_run}"
    )
    prior = partial.get("/api/prior").json()
    assert [c["available"] for c in prior["columns"]] == [True, False]
    refused(partial.get("/report"), 404, "no report.md", "vlvae evaluate --run")
    assert partial.get("/api/health").json()["stages"] == {"q_agg": True, "q_true": False, "prior": False}


def test_a_run_without_any_text_posterior_answers_409(partial_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(partial_run, run)
    shutil.rmtree(run / "q_agg")
    client = TestClient(create_app(Inference.open(run)))
    refused(client.get("/api/text", params={"text": TEXT}), 409, "--objective agg", "--objective true")


# ----------------------------------------------------------------------------- the inference object


def test_inference_errors(inference, partial_run):
    with pytest.raises(VLVAEError, match="unknown word.*'pink'"):
        inference.encode_text("small pink metal cube left large blue rubber sphere")
    with pytest.raises(VLVAEError, match="has 2 words.*layout: O1size O1colour"):
        inference.encode_text(["small", "red"])
    assert inference.encode_text(TEXT).tolist() == inference.vocab.encode(TEXT)
    with pytest.raises(VLVAEError, match="between 1 and 256"):
        inference.from_text(TEXT, "agg", n=257)
    with pytest.raises(VLVAEError, match="reads 16 x 16 images, got 8 x 8"):
        inference.reconstruct(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(MissingStage, match="--objective true"):
        Inference.open(partial_run).from_text(TEXT, "true")
    with pytest.raises(VLVAEError, match="not a vlvae run folder"):
        Inference.open(partial_run.parent / "nothing")


def test_inference_reconstruct_accepts_uint8_and_float(inference):
    image, _ = inference.validation_example(0)
    from_uint8 = inference.reconstruct(image)
    from_float = inference.reconstruct(np.asarray(image, np.float32).transpose(2, 0, 1)[None] / 255)
    assert np.array_equal(from_uint8.images, from_float.images) and from_uint8.texts == from_float.texts
    assert from_uint8.images.shape == (1, 16, 16, 3) and inference.caption(image) == from_uint8.texts


# ----------------------------------------------------------------------------- devices


def test_inference_on_the_cpu_given_explicitly_draws_the_default_samples(inference, tiny):
    on_cpu = Inference.open(tiny / "run", tiny / "classifier", device="cpu")
    assert inference.device == on_cpu.device == torch.device("cpu")
    pairs = [
        (inference.from_text(TEXT, "agg", 4, 3), on_cpu.from_text(TEXT, "agg", 4, 3)),
        (inference.from_prior("learned", 4, 3), on_cpu.from_prior("learned", 4, 3)),
    ]
    for a, b in pairs:
        assert np.array_equal(a.images, b.images) and a.texts == b.texts
        assert np.array_equal(a.correctness, b.correctness)


def test_a_missing_gpu_is_refused_before_the_run_is_read(tiny, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(VLVAEError, match="^--device cuda: .*use --device cpu"):
        Inference.open(tiny / "nothing", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_inference_and_the_page_on_a_gpu(tiny, inference):
    """The models on the GPU, the classifier on the CPU: seeded draws repeat and leave torch's random
    state of both devices as it was; q(z|x)'s mean (no draw) gives the CPU's captions; the page serves
    from it, alone and batched."""
    gpu = Inference.open(tiny / "run", tiny / "classifier", device="cuda")
    assert gpu.device == torch.device("cuda", 0)
    assert all(p.is_cuda for p in gpu.model.parameters())
    cpu_state, gpu_state = torch.get_rng_state(), torch.cuda.get_rng_state()
    a, b = gpu.from_text(TEXT, "agg", 4, 3), gpu.from_text(TEXT, "agg", 4, 3)
    assert np.array_equal(a.images, b.images) and a.texts == b.texts
    assert torch.equal(torch.get_rng_state(), cpu_state)
    assert torch.equal(torch.cuda.get_rng_state(), gpu_state)
    prior = gpu.from_prior("learned", 4, 3)
    assert (
        prior.images.shape == (4, 16, 16, 3) and ((prior.correctness >= 0) & (prior.correctness <= 1)).all()
    )
    image, _ = gpu.validation_example(0)
    on_gpu, on_cpu = gpu.reconstruct(image), inference.reconstruct(image)
    assert on_gpu.texts == on_cpu.texts
    assert np.abs(on_gpu.images.astype(int) - on_cpu.images.astype(int)).max() <= 2
    client = TestClient(create_app(gpu))
    assert client.get("/api/health").json()["device"] == "cuda:0"
    answer = client.get("/api/text", params={"text": TEXT, "n": 3, "seed": 5}).json()
    direct = gpu.from_text(TEXT, "true", 3, 5)
    assert np.array_equal(
        np.stack([decode(s["image"]) for s in answer["columns"][1]["samples"]]), direct.images
    )
    assert client.get("/api/prior", params={"n": 4, "seed": 1}).status_code == 200
    caption = client.post("/api/caption", files={"file": ("a.png", png(16, 16), "image/png")})
    assert caption.status_code == 200, caption.text
    # Two requests drawn as one batch, the flows' transforms run once for both (--batch-flows).
    for kind, name in (("text", "agg"), ("prior", "learned")):
        ids = gpu.encode_text(TEXT) if kind == "text" else None
        jobs = [_Job(kind, name, 2, 7, ids), _Job(kind, name, 3, 8, ids)]
        _Sampler(gpu, exact=False)._run(jobs)
        for job in jobs:
            samples = job.future.result(timeout=60)
            assert samples.images.shape == (job.n, 16, 16, 3) and len(samples.correctness) == job.n


# ----------------------------------------------------------------------------- the command


def test_serve_command(tiny, monkeypatch):

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: calls.append((application, kw)))
    result = CliRunner().invoke(
        app, ["serve", "--run", str(tiny / "run"), "--classifier", str(tiny / "classifier"), "--port", "0"]
    )
    assert isinstance(result.exception, VLVAEError) and "--port must be between 1 and 65535" in str(
        result.exception
    )
    result = CliRunner().invoke(app, ["serve", "--run", str(tiny / "run"), "--threads", "0"])
    assert isinstance(result.exception, VLVAEError) and "--threads must be" in str(result.exception)
    assert "got 0" in str(result.exception)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--run", str(tiny / "run"), "--port", str(port)])
        assert isinstance(result.exception, VLVAEError) and f"cannot listen on 127.0.0.1:{port}" in str(
            result.exception
        )
    result = CliRunner().invoke(app, ["serve", "--run", str(tiny / "run"), "--port", str(port)])
    assert result.exit_code == 0, result.output
    application, kw = calls[-1]
    assert kw["host"] == "127.0.0.1" and kw["port"] == port and f"http://127.0.0.1:{port}/" in result.output
    assert TestClient(application).get("/api/health").status_code == 200
    result = CliRunner().invoke(
        app, ["serve", "--run", str(tiny / "run"), "--port", str(port), "--device", "cpu"]
    )
    assert result.exit_code == 0 and "models on cpu" in result.output, result.output
    assert TestClient(calls[-1][0]).get("/api/health").json()["device"] == "cpu"
    result = CliRunner().invoke(app, ["serve", "--run", str(tiny / "data")])
    assert isinstance(result.exception, VLVAEError) and "not a vlvae run folder" in str(result.exception)


# ----------------------------------------------------------------------------- CelebA


def test_celeba_run_has_an_attribute_layout(celeba_run):
    client = TestClient(create_app(Inference.open(celeba_run)))
    vocab = client.get("/api/vocab").json()
    assert vocab["dataset"] == "celeba" and vocab["layout"] == "attributes" and vocab["blank"] == "-"
    assert "Smiling" in vocab["words"] and vocab["text_length"] == 9 and vocab["opposite_relations"] is None
    assert vocab["stages"] == {"stage1": True, "q_agg": True, "q_true": False, "prior": False}
    text = "Smiling Male Bangs - - - - - -"
    answer = client.get("/api/text", params={"text": text, "n": 2}).json()
    assert [c["available"] for c in answer["columns"]] == [True, False]
    assert len(answer["columns"][0]["samples"]) == 2
    refused(client.get("/api/text", params={"text": "Smiling Male"}), 400, "has 2 words", "w1 w2")
    assert len(client.get("/api/validation/0").json()["text"].split()) >= 1
