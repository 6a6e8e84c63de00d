"""Build hook, beside pyproject.toml (which holds everything else): the runbooks stay in the
top-level runbooks/ folder, where operators read and review them, and are shipped inside the
installed package as `drengine/runbooks/*.yaml`. setuptools' package discovery only sees folders
under drengine/, so the mapped package is added to the discovered ones here."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["drengine", "drengine.*"]), "drengine.runbooks"],
    package_dir={"drengine.runbooks": "runbooks"},  # package data (*.yaml): pyproject.toml
)
