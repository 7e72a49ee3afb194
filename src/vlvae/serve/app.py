"""The web application of ``vlvae serve``: the page, its JSON API and the run's report.

:func:`create_app` builds a FastAPI application around one opened run
(:class:`vlvae.inference.Inference`); it keeps no global state, so tests and the
load benchmark can build as many as they like. Every image is a PNG made in
memory and sent as a ``data:`` URL. Bad input is answered with a 4xx status and
``{"detail": "one line naming the problem"}``, and the server keeps serving:

=====  =====================================================================
400    unknown word, wrong text length, n or seed out of range, bad parameter
404    no such validation image, no report, no such figure
409    a stage of the run that is not trained (the message names the command)
413    an upload over :data:`vlvae.serve.images.MAX_UPLOAD_BYTES`
415    an upload that is not a PNG or JPEG image
=====  =====================================================================
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartParser

from vlvae.errors import VLVAEError
from vlvae.inference import PRIORS, TEXT_POSTERIORS, Inference, MissingStage, Samples, check_sample_count
from vlvae.runs import STAGE1
from vlvae.serve.images import MAX_UPLOAD_BYTES, UploadRefused, png_data_url, read_upload
from vlvae.serve.markdown import render_markdown

__all__ = ["PAGE_MAX_SAMPLES", "MAX_SEED", "create_app"]

#: The most samples one API request may ask for, per column (two columns of 64 fill a large screen).
PAGE_MAX_SAMPLES = 64
#: Seeds stay below 2**31 so that a page's number survives JavaScript and URLs unchanged.
MAX_SEED = 2**31 - 1
_FIGURE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.(png|jpg|jpeg|svg|json)$")
#: Multipart bodies are read whole (after the size check) and parsed in memory.
_MULTIPART_MARGIN = 64 * 1024


class _InMemoryParser(MultiPartParser):
    spool_max_size = MAX_UPLOAD_BYTES + _MULTIPART_MARGIN


def _static() -> Path:
    return Path(str(resources.files("vlvae.serve") / "static"))


def _check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise VLVAEError(f"seed must be between 0 and {MAX_SEED}, got {seed}")


def _samples_json(samples: Samples) -> list[dict]:
    scores = samples.correctness
    return [
        {
            "image": png_data_url(image),
            "caption": text,
            "correctness": None if scores is None else round(float(scores[i]), 4),
        }
        for i, (image, text) in enumerate(zip(samples.images, samples.texts))
    ]


def _columns(choice: str, options: dict, what: str, draw: Callable[[str], Samples]) -> list[dict]:
    """One column per chosen option (``both`` = every option); a missing stage greys its column out,
    and answers 409 only when every chosen column is missing."""
    if choice == "both":
        names = list(options)
    elif choice in options:
        names = [choice]
    else:
        raise VLVAEError(f"{what} must be {', '.join(repr(o) for o in options)} or 'both', got {choice!r}")
    columns, missing = [], []
    for name in names:
        column = {"name": name, "label": options[name][1]}
        try:
            column.update(available=True, samples=_samples_json(draw(name)))
        except MissingStage as exc:
            column.update(available=False, detail=str(exc), samples=[])
            missing.append(exc)
        columns.append(column)
    if len(missing) == len(names):
        raise MissingStage(missing[0].stage, "; ".join(str(exc) for exc in missing))
    return columns


def _menu(options: dict) -> str:
    """``agg (q_Agg(z|y)), true (q_True(z|y))``: a menu's names with their labels, for the API's docs."""
    return ", ".join(f"{name} ({label})" for name, (_, label) in options.items())


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = [str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body")]
        value = error.get("input")
        shown = "" if value is None or isinstance(value, dict) else f", got {value!r}"
        parts.append(f"{'.'.join(where) or 'request'}: {error.get('msg', 'invalid')}{shown}")
    return "; ".join(parts)


def create_app(
    inference: Inference, report_dir: Path | None = None, max_samples: int = PAGE_MAX_SAMPLES
) -> FastAPI:
    """The application for one opened run.

    Args:
        inference: the opened run (:meth:`vlvae.inference.Inference.open`).
        report_dir: the folder with ``report.md`` and ``figures/`` (default: the run folder).
        max_samples: the most samples per column one request may ask for.

    Example:
        >>> from fastapi.testclient import TestClient  # doctest: +SKIP
        >>> client = TestClient(create_app(Inference.open("runs/cpu/run")))  # doctest: +SKIP
        >>> client.get("/api/text", params={"text": "small red metal cube left large blue rubber sphere"})
        ... # doctest: +SKIP
    """
    report_dir = Path(report_dir if report_dir is not None else inference.run)
    app = FastAPI(
        title="vlvae serve",
        version="1",
        description=f"Text → image, prior samples and image → text for the run {inference.run}. "
        'Bad input answers 4xx with {"detail": "..."} naming the problem.',
    )
    app.mount("/static", StaticFiles(directory=_static()), name="static")
    evaluate_command = f"vlvae evaluate --run {inference.run} --classifier CLS"

    @app.exception_handler(MissingStage)
    async def _missing(request: Request, exc: MissingStage):
        return JSONResponse({"detail": str(exc), "stage": exc.stage}, status_code=409)

    @app.exception_handler(UploadRefused)
    async def _refused(request: Request, exc: UploadRefused):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(VLVAEError)
    async def _bad_input(request: Request, exc: VLVAEError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _validation_message(exc)}, status_code=400)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(_static() / "index.html", media_type="text/html")

    @app.get("/api/health")
    def health() -> dict:
        """The server is up; the run it serves and which of its stages are loaded."""
        return {
            "status": "ok",
            "run": str(inference.run),
            "stages": {stage: why is None for stage, why in inference.stages().items()},
        }

    @app.get("/api/vocab")
    def vocab() -> dict:
        """What the page needs to build its text entry: slots and their words, text length, data set,
        which stages are present (with the command that trains each missing one), limits."""
        v = inference.vocab
        stages = inference.stages()
        example = ""
        try:
            if inference.validation_count():
                example = inference.validation_example(0)[1]
        except VLVAEError:
            pass
        return {
            "dataset": inference.dataset,
            # How the page lays out the text entry, from the data set's registry entry: slots, a set
            # of attributes padded with a blank word, or free text; with opposite_relations the page
            # marks a decoded word as differing only when it differs from both readings of a text.
            **inference.spec.page_layout(v),
            "words": list(v.words),
            "slots": [list(s) for s in v.slots],
            "slot_names": list(v.slot_names),
            "text_length": inference.text_length,
            "image_size": inference.image_size,
            "example": example,
            "stages": {STAGE1: True, **{stage: why is None for stage, why in stages.items()}},
            "missing": {stage: why for stage, why in stages.items() if why is not None},
            "posteriors": {name: label for name, (_, label) in TEXT_POSTERIORS.items()},
            "priors": {name: label for name, (_, label) in PRIORS.items()},
            # The stage behind each menu entry (None: N(0, I), part of the model), from the stage
            # registry: the page greys out the columns of missing stages with it.
            "posterior_stages": {name: stage for name, (stage, _) in TEXT_POSTERIORS.items()},
            "prior_stages": {name: stage for name, (stage, _) in PRIORS.items()},
            "classifier": inference.scorer is not None,
            "report": (report_dir / "report.md").is_file(),
            "max_samples": max_samples,
            "max_seed": MAX_SEED,
            "max_upload_bytes": MAX_UPLOAD_BYTES,
        }

    @app.get("/api/text")
    def text_to_images(
        text: str | None = Query(None, description="The text: words separated by spaces."),
        word: list[str] | None = Query(None, description="Or one word per slot, in order (repeat word=)."),
        posterior: str = Query("both", description=f"{_menu(TEXT_POSTERIORS)} or both."),
        n: int = Query(8, description=f"Samples per posterior (1 to {max_samples})."),
        seed: int = Query(0, description=f"Random seed (0 to {MAX_SEED}); both posteriors share it."),
    ) -> dict:
        """n images from z ~ q(z|y) for each chosen text posterior, each with the text decoded from its z
        and, with a classifier, its correctness against the given text."""
        if text is not None and word:
            raise VLVAEError("give either text=... or word=... (one per slot), not both")
        if text is None and not word:
            raise VLVAEError(
                f"give a text: text=... (words separated by spaces) or one word=... per slot "
                f"(layout: {' '.join(inference.vocab.slot_names) or 'see /api/vocab'})"
            )
        check_sample_count(n, max_samples, "n")
        _check_seed(seed)
        words = inference.words(text) if text is not None else list(word)
        ids = inference.encode_text(words)
        columns = _columns(
            posterior, TEXT_POSTERIORS, "posterior", lambda name: inference.from_text(ids, name, n, seed)
        )
        return {
            "text": " ".join(words),
            "unknown_words": inference.unknown_words(words),
            "n": n,
            "seed": seed,
            "columns": columns,
        }

    @app.get("/api/prior")
    def prior_samples(
        prior: str = Query("both", description=f"{_menu(PRIORS)} or both."),
        n: int = Query(8, description=f"Samples per prior (1 to {max_samples})."),
        seed: int = Query(0, description=f"Random seed (0 to {MAX_SEED})."),
    ) -> dict:
        """n images and decoded texts from z ~ each chosen prior; with a classifier, each image's
        correctness against its own decoded text."""
        check_sample_count(n, max_samples, "n")
        _check_seed(seed)
        columns = _columns(prior, PRIORS, "prior", lambda name: inference.from_prior(name, n, seed))
        return {"n": n, "seed": seed, "columns": columns}

    def _described(image, **fields) -> dict:
        samples = inference.reconstruct(image)
        score = None if samples.correctness is None else round(float(samples.correctness[0]), 4)
        return {
            "image": png_data_url(image),
            "reconstruction": png_data_url(samples.images[0]),
            "caption": samples.texts[0],
            "correctness": score,
            **fields,
        }

    @app.post("/api/caption")
    async def caption(request: Request) -> dict:
        """Upload a PNG or JPEG (multipart field ``file``, or the raw bytes with Content-Type image/png or
        image/jpeg; at most 2 MB). Its central square is resized to the model's size; the answer holds
        that image, its reconstruction and caption (both from the mean of q(z|x)) and, with a classifier,
        whether the caption describes the image (correctness)."""
        declared = request.headers.get("content-length")
        limit = MAX_UPLOAD_BYTES + _MULTIPART_MARGIN
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise UploadRefused(
                f"the upload has {int(declared):,} bytes, more than the limit of "
                f"{MAX_UPLOAD_BYTES:,}; send a smaller PNG or JPEG",
                413,
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise UploadRefused(
                    f"the upload has more than {MAX_UPLOAD_BYTES:,} bytes, the limit; send a "
                    "smaller PNG or JPEG",
                    413,
                )
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):

            async def stream():
                yield bytes(body)
                yield b""

            try:
                form = await _InMemoryParser(request.headers, stream(), max_files=1, max_fields=4).parse()
            except Exception as exc:  # the parser's errors are several types; each means a bad body
                raise VLVAEError(
                    f"the multipart body could not be read ({exc}); send the image as field 'file'"
                ) from exc
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise VLVAEError("the multipart body has no file field 'file'; send the image as file=@IMAGE")
            data = await upload.read()
            await form.close()
        else:
            data = bytes(body)
        image, (width, height) = read_upload(data, inference.image_size)
        return await run_in_threadpool(_described, image, resized_from=[width, height])

    def _validation(index: int) -> dict:
        try:
            image, text = inference.validation_example(index)
        except VLVAEError as exc:
            raise HTTPException(404, str(exc)) from exc
        fields = {"index": index, "count": inference.validation_count(), "text": text}
        if inference.scorer is not None and text:
            fields["text_correctness"] = round(float(inference.judge(image, text)[0]), 4)
        return _described(image, **fields)

    @app.get("/api/validation/random")
    def validation_random(seed: int | None = Query(None, description="Pick reproducibly.")) -> dict:
        """A validation image picked at random, with its text, reconstruction and caption."""
        count = inference.validation_count()
        if count == 0:
            raise HTTPException(404, f"the validation split of {inference.data} is empty")
        return _validation(random.Random(seed).randrange(count))

    @app.get("/api/validation/{index}")
    def validation(index: int) -> dict:
        """Validation image ``index`` with its text, its reconstruction and caption (from the mean of
        q(z|x)), and, with a classifier, the correctness of the caption (and of the true text)."""
        return _validation(index)

    @app.get("/report", response_class=HTMLResponse)
    def report() -> HTMLResponse:
        """The run's report.md (written by ``vlvae evaluate``) as HTML, with its figures."""
        path = report_dir / "report.md"
        if not path.is_file():
            raise HTTPException(404, f"{report_dir} has no report.md; make it with `{evaluate_command}`")
        body = render_markdown(path.read_text(encoding="utf-8"), base="/report/")
        return HTMLResponse(
            '<!doctype html><html><head><meta charset="utf-8"><title>vlvae report</title>'
            '<link rel="stylesheet" href="/static/style.css"></head>'
            f'<body class="report">{body}</body></html>'
        )

    @app.get("/report/figures/{name}")
    def figure(name: str) -> FileResponse:
        """A file of the run's figures/ folder (PNG, JPEG, SVG or JSON)."""
        folder = (report_dir / "figures").resolve()
        path = (folder / name).resolve()
        if not _FIGURE.match(name) or path.parent != folder or not path.is_file():
            raise HTTPException(404, f"no figure {name!r} in {report_dir / 'figures'}")
        return FileResponse(path)

    return app
