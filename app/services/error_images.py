"""Pictures of a run's errors: thumbnails for top losses, a confusion-matrix cell's images, disagreements.

Every thumbnail is served by the dataset image route (/datasets/{name}/images/{k}), which confines files to the data
root and serves only what PIL recognises; here image ids only become indices into that dataset.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from sqlmodel import Session

from fitboard.app.core.artifacts import ArtifactStore
from fitboard.app.core.errors import NotFound
from fitboard.app.services import datasets
from fitboard.app.store import runs as store
from fitboard.app.store.compare import cell_images

PAGE = 100  # thumbnails on one page; more are paged


def image_links(session: Session, dataset: str, image_ids: list[str], data_root: Path) -> dict[str, str]:
    """image_id -> its thumbnail URL; images the dataset no longer holds (or a dataset gone) are left out."""
    try:
        info = datasets.find(session, dataset, data_root)
    except NotFound:
        return {}
    if info.resolved is None or "/" in dataset:  # the image route takes a name, not a path
        return {}
    wanted = set(image_ids)
    index = {it.image_id: k for k, it in enumerate(info.resolved.items) if it.image_id in wanted}
    base = f"/datasets/{quote(dataset, safe='')}/images/"
    return {i: f"{base}{index[i]}" for i in image_ids if i in index}


def cell(session: Session, files: ArtifactStore, run_id: int, actual: str, predicted: str, offset: int,
         data_root: Path) -> dict | None:
    """A page of the validation images whose class is actual and prediction predicted, with thumbnail URLs; None when
    the run has no predictions file."""
    run = store.get_run(session, run_id)
    if "predictions" not in store.list_artifacts(session, run_id):
        return None
    ids = cell_images(files, run_id, actual, predicted)
    if ids is None:
        return None
    shown = ids[offset:offset + PAGE]
    links = image_links(session, run.dataset, shown, data_root)
    return {"actual": actual, "predicted": predicted, "total": len(ids), "offset": offset, "page": PAGE,
            "images": [{"image_id": i, "actual": actual, "predicted": predicted, "src": links.get(i)} for i in shown]}
