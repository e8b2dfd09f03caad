"""pyproject.toml installs every package of the source tree: a package left out of
``[tool.setuptools] packages`` works in the editable install and is missing from a wheel."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_of_the_tree_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    folders = {"hwq": "hwq", **{name: folder for folder, name in
                                ((folder, name) for name, folder in config["package-dir"].items())}}
    found = set()
    for name, folder in folders.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            parts = init.parent.relative_to(ROOT / folder).parts
            if "__pycache__" not in parts:
                found.add(".".join((name, *parts)))
    assert found - listed == set(), "packages missing from pyproject.toml"
    data_only = {name for name in listed - found if (ROOT / Path(*name.split("."))).is_dir()}
    assert listed - found == data_only, "pyproject.toml lists packages that do not exist"
