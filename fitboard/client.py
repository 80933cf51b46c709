"""fitboard.Client: submit recipes and sweeps, read runs, compare them, all over the REST API."""
from __future__ import annotations

from pathlib import Path

from fitboard import recipe_files, tables
from fitboard.http import Http
from fitboard.runs import Run, RunList

PAGE = 500  # the API's largest page of runs


def recipe_dict(recipe) -> dict:
    """A recipe from a dict, a YAML/JSON file path, or an object with model_dump (a RunSpec)."""
    if hasattr(recipe, "model_dump"):
        return recipe.model_dump(mode="json")
    if isinstance(recipe, dict):
        return recipe
    if isinstance(recipe, (str, Path)):
        return recipe_files.read_recipe_file(recipe)  # RecipeFileError (a ValueError) names the file
    raise TypeError(f"a recipe is a dict, a path to a YAML or JSON file, or a RunSpec; got {type(recipe).__name__}")


class Client:
    """A fitboard server: url, token and project default to FITBOARD_URL, FITBOARD_API_TOKEN and FITBOARD_PROJECT.
    The project is where submit, sweep and search launch and what runs() lists (none: the token's default project);
    a run, sweep or search read by id is read in its own project."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0, retries: int = 3,
                 project: str | None = None):
        self.http = Http(url, token, timeout, retries, project=project)

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def project(self) -> str | None:
        return self.http.project

    def __repr__(self) -> str:
        return f"<fitboard.Client {self.url}" + (f" project={self.project}>" if self.project else ">")

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def submit(self, recipe, priority: str | None = None) -> Run:
        """Queue a run from a recipe (dict, YAML/JSON path or RunSpec), at a priority (high, normal, low; default
        normal) in the fair queue; ValidationError names each bad field."""
        body = recipe_dict(recipe)
        if priority is not None:
            body = {**body, "priority": priority}
        return Run(self.http, self.http.json("POST", "runs", json=body))

    def run(self, run_id: int) -> Run:
        """One run by id; NotFound if none."""
        return Run(self.http, self.http.json("GET", f"runs/{run_id}"))

    def runs(self, status: str | list[str] | None = None, tag: str | None = None, dataset: str | None = None,
             name: str | None = None, archived: str = "hide", limit: int | None = None) -> RunList:
        """Every run matching the filters (newest first; at most limit), each in full: `.to_pandas()` for a table,
        `.total` for how many match in all."""
        params = {"status": status, "tag": tag, "dataset": dataset, "name": name, "archived": archived,
                  "detail": "true"}
        params = {k: v for k, v in params.items() if v is not None}
        out, cursor = RunList(), None
        while limit is None or len(out) < limit:
            size = PAGE if limit is None else min(PAGE, limit - len(out))
            page = self.http.json("GET", "runs", params={**params, "limit": size, **({"cursor": cursor} if cursor
                                                                                     else {})})
            out.extend(page["items"])
            out.total = page.get("total")
            cursor = page.get("next_cursor")
            if not page["items"] or not cursor:
                break
        return out

    def compare(self, ids, baseline: int | None = None, curves: bool = False):
        """Runs side by side as a DataFrame: final values, differences to the baseline (the oldest run unless
        given), the recipe fields that differ; curves=True returns (table, long-form curves)."""
        params = {"ids": ",".join(str(getattr(i, "id", i)) for i in ids)}
        if baseline is not None:
            params["baseline"] = baseline
        doc = self.http.json("GET", "compare", params=params)
        table = tables.compare_frame(doc)
        return (table, tables.curves_frame(doc)) if curves else table

    def sweep(self, base=None, vary: dict | None = None, seeds=(0, 1, 2), mode: str = "one_at_a_time", *,
              id: int | None = None, priority: str | None = None):
        """With an int (or id=): that sweep's report as a DataFrame, one row per variant (runs, mean and std of
        accuracy, paired difference to base, verdict). With a base recipe and vary: start a sweep, returning
        (sweep id, the queued Runs); priority: its runs' place in the fair queue (high, normal, low; default
        normal)."""
        if isinstance(base, int) and not isinstance(base, bool):
            id, base = base, None
        if id is not None:
            return tables.sweep_frame(self.http.json("GET", f"sweeps/{id}"))
        if base is None or not vary:
            raise ValueError("sweep needs an id, or a base recipe and vary={field path: [values]}")
        body = {"base": recipe_dict(base), "vary": vary, "seeds": list(seeds), "mode": mode}
        report = self.http.json("POST", "sweeps", json={**body, **({"priority": priority} if priority else {})})
        return report["id"], [Run(self.http, r) for r in report["queued"]]

    def search(self, base=None, space: dict | None = None, *, id: int | None = None, **options) -> dict:
        """With an int (or id=): that search's report (status, trials, budget, verify). With a base recipe and a
        space ({field path: [choices] or {int|float|log: [low, high]}}): start a search, options as the API takes
        them (max_trials, max_parallel, pruner, sampler, metric, k, seeds, priority); its report."""
        if isinstance(base, int) and not isinstance(base, bool):
            id, base = base, None
        if id is not None:
            return self.http.json("GET", f"searches/{id}")
        if base is None or not space:
            raise ValueError("search needs an id, or a base recipe and space={field path: choices or range}")
        return self.http.json("POST", "searches", json={"base": recipe_dict(base), "space": space,
                                                        "options": options})
