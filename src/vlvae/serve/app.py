"""The web application of ``vlvae serve``: the page, its JSON API and the run's report.

:func:`create_app` builds a FastAPI application around one opened run
(:class:`vlvae.inference.Inference`); it keeps no global state (unless asked to set torch's
threads), so tests and the load benchmark can build as many as they like. Every image is a PNG made in
memory and sent as a ``data:`` URL. Bad input is answered with a 4xx status and
``{"detail": "one line naming the problem"}``, and the server keeps serving:

=====  =====================================================================
400    unknown word, wrong text length, n or seed out of range, bad parameter
404    no such validation image, no report, no such figure, no such path
405    a method the path does not take
409    a stage of the run that is not trained (the message names the command)
413    an upload over :data:`vlvae.serve.images.MAX_UPLOAD_BYTES` or
       :data:`vlvae.serve.images.MAX_UPLOAD_PIXELS` (read from the file's header, before decoding)
415    an upload that is not a PNG or JPEG image
=====  =====================================================================

Every answer of every path is JSON with a ``detail`` when it is an error (an unknown path too), and
an unforeseen failure answers 500 with a one-line ``detail`` instead of a traceback.

The event loop only parses requests and answers them: decoding uploads, the models and PNG encoding
run in bounded pools of threads (``workers``, and the model thread of :class:`_Sampler`), so that one
slow request (a large upload) delays no other, not even ``/api/health``. Sampling requests that arrive
while the models are busy are run together as one batch by the model thread: each request's noise is
drawn with its own seed as :class:`vlvae.inference.Inference` draws it, and the networks run once for
the batch (a batch of 64 samples costs far less than eight of 8, which is what lets concurrent clients
share a small machine). By default every z is drawn on its own, so that a seeded request gives
exactly the images of ``vlvae sample`` whatever else is served with it; with ``exact=False``
(``vlvae serve --batch-flows``) a flow's transform also runs once per batch, faster, but a batched
z can then differ by a float rounding (see :func:`create_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import random
import re
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartParser
from torch.distributions import Independent, Normal
from zuko.distributions import NormalizingFlow

from vlvae.errors import VLVAEError
from vlvae.inference import (
    PRIORS,
    TEXT_POSTERIORS,
    Inference,
    MissingStage,
    Samples,
    check_sample_count,
    to_uint8,
)
from vlvae.runs import STAGE1
from vlvae.serve.images import MAX_UPLOAD_BYTES, UploadRefused, png_data_url, read_upload
from vlvae.serve.markdown import render_markdown

__all__ = [
    "PAGE_MAX_SAMPLES",
    "MAX_SEED",
    "MAX_BATCH_SAMPLES",
    "default_workers",
    "create_app",
]

#: The most samples one API request may ask for, per column (two columns of 64 fill a large screen).
PAGE_MAX_SAMPLES = 64
#: Seeds stay below 2**31 so that a page's number survives JavaScript and URLs unchanged.
MAX_SEED = 2**31 - 1
#: The most samples one batch of the model thread draws (several requests' samples together).
MAX_BATCH_SAMPLES = 256
#: A figure's name: a plain file name of at most 128 characters (longer ones are refused, not looked up).
_FIGURE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}\.(png|jpg|jpeg|svg|json)$")
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


def default_workers() -> int:
    """Worker threads for decoding and PNG encoding: one per core (at least 2, so that one slow upload
    never holds every worker)."""
    return max(2, _cores())


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class _Job:
    """One column of one request: n samples from a text posterior (``ids`` given) or a prior."""

    kind: str  # "text" or "prior"
    name: str
    n: int
    seed: int
    ids: torch.Tensor | None = None
    future: Future = field(default_factory=Future)


class _Sampler:
    """The model thread(s): draw the samples of every waiting request as one batch.

    A thread takes the jobs waiting (up to ``max_batch`` samples), draws each job's z with the job's
    seed under the run's lock (torch's random state put back afterwards, as
    :meth:`vlvae.inference.Inference.from_text` and ``from_prior`` draw it), and decodes the images,
    texts and the classifier's scores of all of them in one pass. A request that arrives while a
    batch runs joins the next one: with one client every request is decoded alone, with many the cost
    per request falls. With ``exact`` each z is drawn whole on its own (:func:`create_app`).
    """

    def __init__(
        self, inference: Inference, max_batch: int = MAX_BATCH_SAMPLES, exact: bool = False, threads: int = 1
    ):
        self.inference = inference
        self.max_batch = max_batch
        self.exact = exact
        self.threads = threads
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._start = threading.Lock()
        #: The sizes (samples) of the batches drawn so far, for tests and the load benchmark.
        self.batches: list[int] = []

    def submit(self, job: _Job) -> Future:
        with self._start:
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            while len(self._threads) < self.threads:
                thread = threading.Thread(target=self._loop, name="vlvae-serve-model", daemon=True)
                thread.start()
                self._threads.append(thread)
        self._jobs.put(job)
        return job.future

    def close(self) -> None:
        """Stop the model threads once the jobs already waiting are done."""
        with self._start:
            for _ in self._threads:
                self._jobs.put(None)
            for thread in self._threads:
                thread.join(timeout=30)
            self._threads = []

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:  # one stop signal per thread
                return
            jobs, total = [job], job.n
            while total < self.max_batch:
                try:
                    following = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if following is None:
                    self._jobs.put(None)  # a stop signal: left for a thread once this batch is done
                    break
                jobs.append(following)
                total += following.n
            self._run(jobs)

    def _draw(self, kind: str, name: str, jobs: list[_Job]) -> list[torch.Tensor]:
        """z (n, latent) of each job from one text posterior or prior, each seeded by its job exactly as
        :class:`Inference` seeds it (under the run's lock, torch's random state put back after).

        A flow's base noise is drawn job by job and its transform run once over all of them (the
        transform costs about the same for 8 samples as for 256); any other distribution is drawn job
        by job."""
        inference = self.inference
        # The run's lock keeps torch's global random state to one seeded draw at a time (Inference's
        # own methods take it too); q(z|y) and the priors are reached as Inference reaches them.
        if kind == "text":
            q = inference.text_posterior(name)
            ys = [job.ids.reshape(1, -1).expand(job.n, -1).contiguous().to(inference.device) for job in jobs]
            whole = q(torch.cat(ys)) if len(jobs) > 1 and not self.exact else None
            if not _normal_flow(whole):
                with inference.drawing():
                    drawn = []
                    for job, y in zip(jobs, ys):
                        torch.manual_seed(job.seed)
                        drawn.append(q(y).sample())
                    return drawn
            normal, ndims = whole.base.base_dist, whole.base.reinterpreted_batch_ndims
            noise, at = [], 0
            with inference.drawing():
                for job in jobs:
                    rows = slice(at, at + job.n)
                    torch.manual_seed(job.seed)
                    noise.append(Independent(Normal(normal.loc[rows], normal.scale[rows]), ndims).rsample())
                    at += job.n
            return list(whole.transform.inv(torch.cat(noise)).split([job.n for job in jobs]))
        with inference.drawing():
            dist = inference.prior_distribution(name)
            if len(jobs) == 1 or self.exact or not _normal_flow(dist) or dist.base.batch_shape:
                drawn = []
                for job in jobs:
                    torch.manual_seed(job.seed)
                    drawn.append(dist.sample((job.n,)))
                return drawn
            noise = []
            for job in jobs:
                torch.manual_seed(job.seed)
                noise.append(dist.base.rsample((job.n,)))
        return list(dist.transform.inv(torch.cat(noise)).split([job.n for job in jobs]))

    @torch.no_grad()
    def _run(self, jobs: list[_Job]) -> None:
        groups: dict[tuple[str, str], list[_Job]] = {}
        for job in jobs:
            if job.future.set_running_or_notify_cancel():
                groups.setdefault((job.kind, job.name), []).append(job)
        drawn = []
        for (kind, name), group in groups.items():
            try:
                zs = self._draw(kind, name, group)
            except Exception as exc:  # the group's own error (a missing stage): its requests answer it
                for job in group:
                    job.future.set_exception(exc)
                continue
            for job, z in zip(group, zs):
                y = job.ids.reshape(1, -1).expand(job.n, -1) if kind == "text" else None
                drawn.append((job, z, y))
        if not drawn:
            return
        try:
            model, inference = self.inference.model, self.inference
            z = torch.cat([z for _, z, _ in drawn])
            images = model.image_mean(z)
            ids = model.generate_text(z)
            scores = None
            if inference.scorer is not None:
                parts, at = [], 0
                for job, _, judged in drawn:
                    parts.append(ids[at : at + job.n].cpu() if judged is None else judged.cpu())
                    at += job.n
                scores = inference.correctness(images, torch.cat(parts))
            pixels, texts = to_uint8(images), inference.decode_texts(ids)
        except Exception as exc:  # every job of the batch shares the failure
            for job, _, _ in drawn:
                job.future.set_exception(exc)
            return
        self.batches.append(len(z))
        at = 0
        for job, _, _ in drawn:
            part = slice(at, at + job.n)
            job.future.set_result(
                Samples(pixels[part], texts[part], None if scores is None else scores[part])
            )
            at += job.n


def _normal_flow(dist) -> bool:
    """A flow (zuko's NormalizingFlow) over a diagonal normal base: its sample is the base's
    reparameterised noise through the transform's inverse, so the two can be split."""
    return (
        isinstance(dist, NormalizingFlow)
        and isinstance(dist.base, Independent)
        and isinstance(dist.base.base_dist, Normal)
        and dist.reinterpreted == 0
    )


async def _columns(
    choice: str, options: dict, what: str, draw: Callable[[str], Awaitable[list[dict]]]
) -> list[dict]:
    """One column per chosen option (``both`` = every option), drawn together; a missing stage greys
    its column out, and answers 409 only when every chosen column is missing."""
    if choice == "both":
        names = list(options)
    elif choice in options:
        names = [choice]
    else:
        raise VLVAEError(f"{what} must be {', '.join(repr(o) for o in options)} or 'both', got {choice!r}")
    answers = await asyncio.gather(*(draw(name) for name in names), return_exceptions=True)
    columns, missing = [], []
    for name, answer in zip(names, answers):
        column = {"name": name, "label": options[name][1]}
        if isinstance(answer, MissingStage):
            column.update(available=False, detail=str(answer), samples=[])
            missing.append(answer)
        elif isinstance(answer, BaseException):
            raise answer
        else:
            column.update(available=True, samples=answer)
        columns.append(column)
    if len(missing) == len(names):
        raise MissingStage(missing[0].stage, "; ".join(str(exc) for exc in missing))
    return columns


_LONG_WORD = re.compile(r"\S{81,}")


def _one_line(text: str, limit: int = 2000) -> str:
    """``text`` on one line, each word of over 80 characters (an echoed input) cut to 60 and the
    whole to ``limit`` characters."""
    line = _LONG_WORD.sub(lambda m: m.group()[:60] + "…", " ".join(str(text).split()))
    return line if len(line) <= limit else line[: limit - 1] + "…"


def create_app(
    inference: Inference,
    report_dir: Path | None = None,
    max_samples: int = PAGE_MAX_SAMPLES,
    workers: int | None = None,
    torch_threads: int | None = None,
    exact: bool = True,
    model_threads: int = 1,
) -> FastAPI:
    """The application for one opened run.

    Args:
        inference: the opened run (:meth:`vlvae.inference.Inference.open`).
        report_dir: the folder with ``report.md`` and ``figures/`` (default: the run folder).
        max_samples: the most samples per column one request may ask for.
        workers: threads that decode uploads, run the image → text models and encode PNGs
            (default :func:`default_workers`); sampling runs in one more thread, batched.
        torch_threads: when given, ``torch.set_num_threads`` for the whole process (the models' own
            threads; 1 suits a small machine where the requests themselves run in parallel); None
            leaves torch's setting (``vlvae serve --threads``).
        exact: draw each request's z on its own even when requests are batched (the default), so
            that an answer never depends on the requests served with it. With False a flow's transform
            runs once for all the requests of a batch, which is faster per request but can move z by a
            float rounding (about 1e-7): a pixel by one level or, at a near tie, a decoded word
            (``vlvae serve --batch-flows``). A request served alone gives the images of
            ``vlvae sample`` with the same seed either way.
        model_threads: threads that draw batches of samples. With one (the default) every request that
            arrives while a batch runs joins the next batch; more threads run batches side by side,
            which are then smaller (on the two-core machine, loaded, two gave 18 ms of CPU per request
            against 14 ms and a lower throughput).

    Example:
        >>> from fastapi.testclient import TestClient  # doctest: +SKIP
        >>> client = TestClient(create_app(Inference.open("runs/cpu/run")))  # doctest: +SKIP
        >>> client.get("/api/text", params={"text": "small red metal cube left large blue rubber sphere"})
        ... # doctest: +SKIP
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise VLVAEError(f"workers must be at least 1, got {workers}")
    if torch_threads is not None:
        if torch_threads < 1:
            raise VLVAEError(f"torch_threads must be at least 1, got {torch_threads}")
        torch.set_num_threads(torch_threads)
    report_dir = Path(report_dir if report_dir is not None else inference.run)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vlvae-serve")
    if model_threads < 1:
        raise VLVAEError(f"model_threads must be at least 1, got {model_threads}")
    sampler = _Sampler(inference, exact=exact, threads=model_threads)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await asyncio.get_running_loop().run_in_executor(None, sampler.close)
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="vlvae serve",
        version="1",
        description=f"Text → image, prior samples and image → text for the run {inference.run}. "
        'Bad input answers 4xx with {"detail": "..."} naming the problem.',
        lifespan=lifespan,
    )
    app.state.sampler = sampler
    app.state.workers = workers
    app.mount("/static", StaticFiles(directory=_static()), name="static")
    evaluate_command = f"vlvae evaluate --run {inference.run} --classifier CLS"

    async def offload(function: Callable, *args, **kwargs):
        """``function(*args, **kwargs)`` in the worker pool; the event loop goes on meanwhile."""
        call = functools.partial(function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(pool, call)

    async def draw(job: _Job) -> list[dict]:
        samples = await asyncio.wrap_future(sampler.submit(job))
        return await offload(_samples_json, samples)

    @app.exception_handler(MissingStage)
    async def _missing(request: Request, exc: MissingStage):
        return JSONResponse({"detail": _one_line(str(exc)), "stage": exc.stage}, status_code=409)

    @app.exception_handler(UploadRefused)
    async def _refused(request: Request, exc: UploadRefused):
        return JSONResponse({"detail": _one_line(str(exc))}, status_code=exc.status)

    @app.exception_handler(VLVAEError)
    async def _bad_input(request: Request, exc: VLVAEError):
        return JSONResponse({"detail": _one_line(str(exc))}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _one_line(_validation_message(exc))}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        # Unknown paths (404), wrong methods (405) and the static files' own errors: JSON like the rest.
        detail = exc.detail if exc.status_code != 404 or exc.detail != "Not Found" else None
        if detail is None:
            detail = f"no such path: {request.url.path}; the API is described at /docs"
        return JSONResponse({"detail": _one_line(detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unforeseen(request: Request, exc: Exception):
        return JSONResponse(
            {"detail": _one_line(f"the server failed on this request ({type(exc).__name__}: {exc})")},
            status_code=500,
        )

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(_static() / "index.html", media_type="text/html")

    @app.get("/api/health")
    async def health() -> dict:
        """The server is up; the run it serves, which of its stages are loaded and the device its
        models run on (answered on the event loop, never behind a model)."""
        return {
            "status": "ok",
            "run": str(inference.run),
            "stages": {stage: why is None for stage, why in inference.stages().items()},
            "device": str(inference.device),
        }

    def _vocab() -> dict:
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
            "validation_count": inference.validation_count(),
        }

    @app.get("/api/vocab")
    async def vocab() -> dict:
        """What the page needs to build its text entry: slots and their words, text length, data set,
        which stages are present (with the command that trains each missing one), limits, and the
        number of validation images."""
        return await offload(_vocab)  # the first call reads the validation split from disk

    @app.get("/api/text")
    async def text_to_images(
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
        columns = await _columns(
            posterior, TEXT_POSTERIORS, "posterior", lambda name: draw(_Job("text", name, n, seed, ids))
        )
        return {
            "text": " ".join(words),
            "unknown_words": inference.unknown_words(words),
            "n": n,
            "seed": seed,
            "columns": columns,
        }

    @app.get("/api/prior")
    async def prior_samples(
        prior: str = Query("both", description=f"{_menu(PRIORS)} or both."),
        n: int = Query(8, description=f"Samples per prior (1 to {max_samples})."),
        seed: int = Query(0, description=f"Random seed (0 to {MAX_SEED})."),
    ) -> dict:
        """n images and decoded texts from z ~ each chosen prior; with a classifier, each image's
        correctness against its own decoded text."""
        check_sample_count(n, max_samples, "n")
        _check_seed(seed)
        columns = await _columns(prior, PRIORS, "prior", lambda name: draw(_Job("prior", name, n, seed)))
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

    def _uploaded(data: bytes) -> dict:
        image, (width, height) = read_upload(data, inference.image_size)
        return _described(image, resized_from=[width, height])

    @app.post("/api/caption")
    async def caption(request: Request) -> dict:
        """Upload a PNG or JPEG (multipart field ``file``, or the raw bytes with Content-Type image/png or
        image/jpeg; at most 2 MB and 25 million pixels). Its central square is resized to the model's
        size; the answer holds that image, its reconstruction and caption (both from the mean of
        q(z|x)) and, with a classifier, whether the caption describes the image (correctness)."""
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
                    _one_line(f"the multipart body could not be read ({exc}); send the image as field 'file'")
                ) from exc
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise VLVAEError("the multipart body has no file field 'file'; send the image as file=@IMAGE")
            data = await upload.read()
            await form.close()
        else:
            data = bytes(body)
        # Decoding (up to 25 million pixels), the models and the PNGs: in the pool, not on the loop.
        return await offload(_uploaded, data)

    def _validation(index: int) -> dict:
        try:
            image, text = inference.validation_example(index)
        except VLVAEError as exc:
            raise HTTPException(404, str(exc)) from exc
        fields = {"index": index, "count": inference.validation_count(), "text": text}
        if inference.scorer is not None and text:
            fields["text_correctness"] = round(float(inference.judge(image, text)[0]), 4)
        return _described(image, **fields)

    def _random_validation(seed: int | None) -> dict:
        count = inference.validation_count()
        if count == 0:
            raise HTTPException(404, f"the validation split of {inference.data} is empty")
        return _validation(random.Random(seed).randrange(count))

    @app.get("/api/validation/random")
    async def validation_random(seed: int | None = Query(None, description="Pick reproducibly.")) -> dict:
        """A validation image picked at random, with its text, reconstruction and caption."""
        return await offload(_random_validation, seed)

    @app.get("/api/validation/{index}")
    async def validation(index: int) -> dict:
        """Validation image ``index`` (0-based; ``count`` images, 0 to count − 1) with its text, its
        reconstruction and caption (from the mean of q(z|x)), and, with a classifier, the correctness
        of the caption (and of the true text)."""
        return await offload(_validation, index)

    def _report() -> HTMLResponse:
        path = report_dir / "report.md"
        if not path.is_file():
            raise HTTPException(404, f"{report_dir} has no report.md; make it with `{evaluate_command}`")
        body = render_markdown(path.read_text(encoding="utf-8"), base="/report/")
        return HTMLResponse(
            '<!doctype html><html><head><meta charset="utf-8"><title>vlvae report</title>'
            '<link rel="stylesheet" href="/static/style.css"></head>'
            f'<body class="report">{body}</body></html>'
        )

    @app.get("/report", response_class=HTMLResponse)
    async def report() -> HTMLResponse:
        """The run's report.md (written by ``vlvae evaluate``) as HTML, with its figures."""
        return await offload(_report)

    @app.get("/report/figures/{name}")
    async def figure(name: str) -> FileResponse:
        """A file of the run's figures/ folder (PNG, JPEG, SVG or JSON)."""
        folder = report_dir / "figures"
        missing = HTTPException(404, f"no figure {name!r} in {folder}")
        # The name is checked before it touches the file system: no NUL, no path, no endless name.
        if not _FIGURE.match(name):
            raise missing
        path = folder / name
        try:
            found = path.resolve().parent == folder.resolve() and path.is_file()
        except (OSError, ValueError):
            found = False
        if not found:
            raise missing
        return FileResponse(path)

    return app
