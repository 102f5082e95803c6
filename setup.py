"""Build hook: the wheel carries the folders of `widget_server.bundled.SOURCES`
(email templates, widget assets, demo directory, example partner site), which
stay at the top of the repository, inside the package as `widget_server/_bundled/`.

Everything else about the build is in `pyproject.toml`.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SKIPPED = shutil.ignore_patterns(".*", "__pycache__", "*.pyc")


def _bundled_table() -> tuple[str, dict[str, str]]:
    # Read the table from the module without importing the package (its
    # dependencies may not be installed where the wheel is built).
    tree = ast.parse((HERE / "widget_server" / "bundled.py").read_text(encoding="utf-8"))
    constants = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    return constants["BUNDLE"], constants["SOURCES"]


class BuildWithBundledData(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the folders where they are
        bundle, sources = _bundled_table()
        for name, source in sources.items():
            target = Path(self.build_lib) / "widget_server" / bundle / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(HERE / source, target, ignore=SKIPPED)


setup(cmdclass={"build_py": BuildWithBundledData})
