"""The error tree drawn in ``schemas.errors`` names every exception class the service defines."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import schemas.errors

PACKAGES = ("consumer", "models", "schemas")


def exception_classes() -> dict[str, str]:
    """Every exception class defined in the service's packages: name -> defining module."""
    found: dict[str, str] = {}
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == info.name:
                    found[name] = info.name
    return found


def test_the_error_tree_drawing_names_every_exception_class() -> None:
    classes = exception_classes()
    assert {"CrmScorerError", "PublishError", "NotAuthorized"} <= classes.keys()  # the walk found the tree
    drawing = schemas.errors.__doc__ or ""
    # a node of the drawing: a name after the tree's lines, then its description column (or nothing)
    drawn = set(re.findall(r"^[ │├└─]*(\w+)(?: {2,}|$)", drawing, re.MULTILINE))
    missing = {name: module for name, module in classes.items() if name not in drawn}
    assert missing == {}, f"exception classes missing from the drawing in schemas/errors.py: {missing}"
