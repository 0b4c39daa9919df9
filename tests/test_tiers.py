"""The suite's tiers: the README's command runs the fast tier, `--all` every test, `-m` the marked tiers; every tier
marker is registered, and CI runs the fast tier, then the others."""

import tomllib

import pytest

from conftest import FULL_TIER, REPO, pytest_collection_modifyitems


class Item:
    def __init__(self, name: str, *marks: str):
        self.name, self.marks = name, marks

    def get_closest_marker(self, name: str):
        return name if name in self.marks else None


class Config:
    def __init__(self, everything: bool = False, markexpr: str = ""):
        self.options = {"--all": everything, "markexpr": markexpr}
        self.deselected = []
        self.hook = self

    def getoption(self, name: str):
        return self.options[name]

    def pytest_deselected(self, items):
        self.deselected += items


@pytest.mark.parametrize("everything, markexpr, kept", [(False, "", ["unit"]), (True, "", ["unit", "run", "learns"]),
                                                        (False, "learning", ["unit", "run", "learns"])])
def test_the_fast_tier_leaves_out_the_marked_tests_unless_asked(everything, markexpr, kept):
    """By default the full tier's tests are deselected (and reported so); --all keeps all, and so does -m, whose
    expression pytest applies itself."""
    items = [Item("unit"), Item("run", "cli"), Item("learns", "learning", "cli")]
    config = Config(everything, markexpr)
    pytest_collection_modifyitems(config, items)
    assert [i.name for i in items] == kept
    assert [i.name for i in config.deselected] == ([] if everything or markexpr else ["run", "learns"])


def test_every_tier_marker_is_registered_and_ci_runs_every_tier():
    registered = {line.split(":")[0] for line in
                  tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]}
    assert registered == set(FULL_TIER)
    ci = (REPO / ".ci" / "run").read_text()
    assert 'pip install ".[test]" && python -m pytest -q tests\n' in ci
    assert f'TIERS="{" or ".join(FULL_TIER)}"' in ci  # every other tier, its files split over two processes
    first = ci.split('FIRST="')[1].split('"')[0].split()
    assert all((REPO / f).is_file() for f in first) and 'python -m pytest -q -n 0 $FIRST -m "$TIERS"' in ci
    assert "python -m pytest -q -n 0 tests $(printf -- '--ignore=%s ' $FIRST) -m \"$TIERS\"" in ci


def test_the_readme_command_runs_the_fast_tier_in_a_worker_per_core_with_what_the_test_extra_installs():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "--numprocesses=auto --maxprocesses=4" in project["tool"]["pytest"]["ini_options"]["addopts"]
    assert any(dep.startswith("pytest-xdist") for dep in project["project"]["optional-dependencies"]["test"])
