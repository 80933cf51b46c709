"""Predictions as the API, the pages and the CLI use them: check the uploaded images, store the request, and wait
for a predictor process to answer. The web process never imports torch: a predictor (`fitboard predictor`, started
by `fitboard up`) loads the run's exported model from the artifact store and writes the answer to the database."""
from __future__ import annotations

import base64
import io
import time
import warnings

from PIL import Image, UnidentifiedImageError
from sqlalchemy import Engine
from sqlmodel import Session

from fitboard.app.core.errors import FitboardError, NotFound, RecipeError, RunNotSucceeded, TooLarge
from fitboard.app.core.status import PREDICTION_FINISHED, RunStatus
from fitboard.app.store import runs as store
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Prediction
from fitboard.app.store.predictions import create_prediction, get_prediction, live_predictors

MAX_IMAGES = 16
MAX_TOTAL_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a decompression bomb stops here, named, long before it fills memory
# Pixels decoded per request, all images together: bounds the web's check and the predictor's work (16 images of
# 40 megapixels cost half a minute of CPU); a 12-megapixel photo at a time still goes through, several at once.
MAX_REQUEST_PIXELS = 64_000_000
POLL_SECONDS = 0.02  # how often a waiting request reads its row: small next to a warm prediction


class PredictorUnavailable(FitboardError):
    """No predictor process took the request: none is running."""

    status_code = 503


def check_images(files: list[tuple[str, bytes]]) -> list[str]:
    """The uploads as base64, after checking count, total size and that each decodes as an image; RecipeError naming
    the file otherwise, TooLarge over 10 MB."""
    if not files:
        raise RecipeError.one("images", "send at least one image")
    if len(files) > MAX_IMAGES:
        raise RecipeError.one("images", f"at most {MAX_IMAGES} images per request (got {len(files)})")
    total = sum(len(data) for _, data in files)
    if total > MAX_TOTAL_BYTES:
        raise TooLarge(f"images total {total / 2**20:.1f} MB; at most {MAX_TOTAL_BYTES // 2**20} MB per request")
    encoded, pixels = [], 0
    for i, (name, data) in enumerate(files):
        where = f"images[{i}] ({name})"
        pixels += _decoded_pixels(where, data, MAX_REQUEST_PIXELS - pixels)
        encoded.append(base64.b64encode(data).decode("ascii"))
    return encoded


def _decoded_pixels(where: str, data: bytes, left: int) -> int:
    """Decode one upload completely (a truncated or corrupt file fails here, named, not in the predictor); its
    pixel count. RecipeError naming the file past MAX_PIXELS, or past the `left` of the request's pixel budget."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                count = img.width * img.height
                if count > MAX_PIXELS:
                    raise RecipeError.one(where, f"{img.width} x {img.height} pixels is more than {MAX_PIXELS:,}")
                if count > left:
                    raise RecipeError.one(where, f"the images of one request may hold {MAX_REQUEST_PIXELS:,} pixels "
                                                 f"in all; this one ({img.width} x {img.height}) goes past that")
                # verify() checks nothing for JPEG: decode every pixel. LOAD_TRUNCATED_IMAGES stays False here, so
                # a cut-off file raises instead of being padded with grey.
                img.load()
                return count
    except RecipeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:
        reason = "truncated or corrupt" if isinstance(exc, (OSError, SyntaxError, EOFError)) and not isinstance(
            exc, UnidentifiedImageError) else "not an image PIL can read"
        raise RecipeError.one(where, f"{reason} ({type(exc).__name__})") from None


def submit(session: Session, run_id: int, files: list[tuple[str, bytes]]) -> Prediction:
    """Store a prediction request for a succeeded run with an exported model, committed; PredictorUnavailable at
    once when no predictor process is alive to answer it."""
    run = store.get_run(session, run_id)
    if run.status != RunStatus.succeeded:
        raise RunNotSucceeded(run_id, run.status)
    if "model" not in store.list_artifacts(session, run_id):
        raise NotFound(f"an exported model for run {run_id}")
    images = check_images(files)
    if not live_predictors(session):
        raise PredictorUnavailable(NO_PREDICTOR)
    prediction = create_prediction(session, run_id, [name for name, _ in files], images)
    session.commit()
    return prediction


def wait(engine: Engine, prediction_id: int, timeout: float) -> Prediction:
    """Poll the request until it is answered or timeout seconds pass (then it is returned as it stands)."""
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(engine) as session:
            prediction = get_prediction(session, prediction_id)
        if prediction.status in PREDICTION_FINISHED or time.monotonic() >= deadline:
            return prediction
        time.sleep(POLL_SECONDS)


NO_PREDICTOR = ("no predictor process is running to load the model: start one with `fitboard predictor` on a host "
                "that has torch (`fitboard up` starts one)")


def status(session: Session, prediction_id: int) -> Prediction:
    """One request as it stands; NotFound when unknown."""
    return get_prediction(session, prediction_id)
