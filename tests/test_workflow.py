"""The publishing workflow (.github/workflows/book.yml), read as data: it tests before it builds, builds
pull requests without publishing them, publishes main only, uses the current (Node 24) action majors,
caches the trained models and keys the execution cache on the requirements and vaelib, and refuses to
publish a book built on the offline data subset."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
# The first major of each action that runs on Node 24 (Node 20 actions are deprecated on GitHub's runners).
CURRENT_MAJORS = {"actions/checkout": 6, "actions/setup-python": 6, "actions/setup-node": 6,
                  "actions/cache": 5, "actions/configure-pages": 6, "actions/upload-pages-artifact": 5,
                  "actions/deploy-pages": 5, "actions/upload-artifact": 6, "actions/download-artifact": 7}
# requirements.txt and the files it includes (`-r`): the installed packages, which the caches must follow.
REQUIREMENTS = ["requirements.txt"] + re.findall(r"^-r (\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
PUBLISH_ONLY = re.compile(r"github\.event_name != 'pull_request' && github\.ref == 'refs/heads/main'")


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def _steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def _index(steps: list[dict], predicate) -> int:
    found = [i for i, s in enumerate(steps) if predicate(s)]
    assert found, "no such step"
    return found[0]


def test_it_runs_on_pushes_to_main_and_on_pull_requests(workflow):
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in on
    assert on["push"]["branches"] == ["main"]


def test_it_runs_every_test_before_it_builds_and_publishes(workflow):
    build = workflow["jobs"]["build"]
    steps = _steps(build)
    run = lambda s: s.get("run", "")
    tests = _index(steps, lambda s: re.search(r"(^|\s)(\.ci/run|make test)(\s|$)", run(s)))
    book = _index(steps, lambda s: re.search(r"\bmake book\b", run(s)))
    upload = _index(steps, lambda s: s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert tests < book < upload
    if ".ci/run" in run(steps[tests]):
        assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M), ".ci/run no longer runs make test"
    assert steps[upload]["with"]["path"] == "_build/html"


def test_pull_requests_are_built_but_never_published(workflow):
    jobs = workflow["jobs"]
    build_steps = _steps(jobs["build"])
    assert "if" not in jobs["build"], "the build job must run for pull requests too"
    for step in build_steps:
        if step.get("uses", "").startswith(("actions/upload-pages-artifact", "actions/configure-pages",
                                            "actions/upload-artifact")):
            assert PUBLISH_ONLY.fullmatch(step.get("if", "")), step
    deploy = jobs["deploy"]
    assert deploy["needs"] == "build" and PUBLISH_ONLY.fullmatch(deploy.get("if", "")), deploy
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in _steps(deploy))
    assert workflow["permissions"] == {"contents": "read"}, "only the deploy jobs may write"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}


def test_every_action_is_a_current_major(workflow):
    used = [s["uses"] for job in workflow["jobs"].values() for s in _steps(job) if "uses" in s]
    assert used
    for uses in used:
        name, _, ref = uses.partition("@")
        assert name in CURRENT_MAJORS, f"{uses}: not in CURRENT_MAJORS; check its current major and add it"
        m = re.fullmatch(r"v(\d+)", ref)
        assert m, f"{uses}: pin a major version tag (vN)"
        assert int(m.group(1)) >= CURRENT_MAJORS[name], f"{uses}: the current major is v{CURRENT_MAJORS[name]}"


def _cache_steps(workflow) -> list[dict]:
    return [s for s in _steps(workflow["jobs"]["build"]) if s.get("uses", "").startswith("actions/cache@")]


def test_the_trained_models_are_cached(workflow):
    paths = [s["with"]["path"] for s in _cache_steps(workflow)]
    assert any("~/.cache/vaelib" in p.split() for p in paths), paths


def test_the_execution_cache_is_keyed_on_the_requirements_and_vaelib(workflow):
    caches = [s for s in _cache_steps(workflow) if ".jupyter_cache" in s["with"]["path"]]
    assert caches, "no cache step for the notebook execution cache"
    for step in caches:
        paths = step["with"]["path"].split()
        assert "_build/.jupyter_cache" in paths and "_build/quick/_build/.jupyter_cache" in paths, paths
        for key in [step["with"]["key"], *str(step["with"].get("restore-keys", "")).splitlines()]:
            hashed = " ".join(re.findall(r"hashFiles\(([^)]*)\)", key))
            assert "'vaelib/" in hashed and all(f"'{name}'" in hashed for name in REQUIREMENTS), \
                f"cache key {key!r} does not depend on vaelib and every requirements file {REQUIREMENTS}"


def test_a_published_book_requires_the_full_data(workflow):
    build_steps = _steps(workflow["jobs"]["build"])
    book = build_steps[_index(build_steps, lambda s: re.search(r"\bmake book\b", s.get("run", "")))]
    value = str(book.get("env", {}).get("VAELIB_REQUIRE_FULL_DATA", ""))
    # '1' whenever the run can publish (anything but a pull request)
    assert value in ("1", "${{ github.event_name == 'pull_request' && '0' || '1' }}"), value
    assert "VAELIB_REQUIRE_FULL_DATA" in (ROOT / "vaelib" / "book.py").read_text()


def test_main_publishes_the_reader_notebooks_on_the_branch_colab_opens(workflow):
    """The build keeps _build/reader (written by tools/executed_notebooks.py); a publish-only job, the only
    one that may write to the repository, pushes it whole to _config.yml's reader_notebooks_branch."""
    build = _steps(workflow["jobs"]["build"])
    keep = build[_index(build, lambda s: s.get("uses", "").startswith("actions/upload-artifact@"))]
    assert keep["with"]["path"] == "_build/reader", keep
    book = _index(build, lambda s: s.get("run") == "make book")
    assert book < build.index(keep)
    job = workflow["jobs"]["notebooks"]
    assert job["needs"] == "build" and PUBLISH_ONLY.fullmatch(job.get("if", "")), job
    assert job["permissions"] == {"contents": "write"}, job["permissions"]
    fetch = _steps(job)[0]
    assert fetch["uses"].startswith("actions/download-artifact@") and fetch["with"]["name"] == keep["with"]["name"]
    branch = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["sphinx"]["config"][
        "reader_notebooks_branch"]
    push = _steps(job)[-1]["run"]
    assert re.search(rf"git init -q -b {branch}\b", push) and re.search(rf"git push --force \S+ {branch}$", push, re.M), push
