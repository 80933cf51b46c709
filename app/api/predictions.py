"""/api/v1/runs/{id}/predict and /api/v1/predictions/{id}: send images to a succeeded run's model."""
from __future__ import annotations

from fastapi import File, Path, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from fitboard.app.api import RunId, api_router, errors
from fitboard.app.core.redact import redact
from fitboard.app.core.schemas import MAX_ID
from fitboard.app.core.status import PredictionStatus
from fitboard.app.services import predictions
from fitboard.app.services.predictions import MAX_IMAGES, MAX_TOTAL_BYTES
from fitboard.app.services.serializers import PredictionOut, serialize_prediction
from fitboard.app.web.access import needs
from fitboard.app.web.admission import leave_admission
from fitboard.app.web.deps import SessionDep, SettingsDep

router = api_router("predictions")
PENDING = {202: {"model": PredictionOut, "description": "not answered within `wait` seconds (a model loading, a busy "
                                                      "predictor): poll Location, /api/v1/predictions/{id}"}}


def _answer(prediction) -> JSONResponse:
    """200 with the answer, 422 naming the images when the predictor failed on them (a failed prediction is not a
    success), or 202 with where to poll while a predictor is still at it."""
    body = serialize_prediction(prediction)
    if prediction.status == PredictionStatus.done:
        return JSONResponse(body)
    if prediction.status == PredictionStatus.failed:
        msg = redact(f"prediction {prediction.id} failed: {prediction.error or 'the predictor gave no reason'}")
        return JSONResponse({"detail": [{"loc": "images", "msg": msg}]}, status_code=422)
    return JSONResponse(body, status_code=202, headers={"Location": f"/api/v1/predictions/{prediction.id}"})


@router.post("/runs/{run_id}/predict", response_model=PredictionOut,
             responses={**PENDING, **errors(403, 404, 409, 413, 422, 503)})
@needs("member")
def post_run_predict(run_id: RunId, request: Request, session: SessionDep, settings: SettingsDep,
                     images: list[UploadFile] = File(..., description=f"1 to {MAX_IMAGES} image files, "
                                                     f"{MAX_TOTAL_BYTES // 2**20} MB in all",
                                                     json_schema_extra={"minItems": 1, "maxItems": MAX_IMAGES}),
                     wait: float | None = Query(None, ge=0, le=120, description="seconds to wait for the answer "
                                                "(default FITBOARD_PREDICT_WAIT); 0 answers 202 at once")):
    """The top 5 classes with probabilities for each image, from the run's exported model (a predictor process
    loads it on the run's first request: `loaded_model` says so). 409 unless the run succeeded; 503 when no
    predictor process is running."""
    # The body limit (11 MB) already bounds what these reads return; the service checks the 10 MB of images.
    files = [((upload.filename or f"image-{i}")[:200], upload.file.read()) for i, upload in enumerate(images)]
    prediction = predictions.submit(session, run_id, files)
    waiting = request.app.state.predict_waiting
    if not waiting.acquire(blocking=False):
        return _answer(prediction)  # enough requests sit in threads waiting already: this one polls (202)
    leave_admission(request)  # waiting for the predictor holds no connection: other requests may go in
    try:
        return _answer(predictions.wait(request.app.state.engine, prediction.id,
                                        settings.predict_wait if wait is None else wait))
    finally:
        waiting.release()


@router.get("/predictions/{prediction_id}", response_model=PredictionOut, responses=errors(404, 422))
@needs("read")
def get_prediction(session: SessionDep, prediction_id: int = Path(ge=1, le=MAX_ID)):
    """A prediction request as it stands: queued, loading (the model), running, done (results) or failed (error)."""
    return _answer(predictions.status(session, prediction_id))

