"""Files the service reads at run time that live outside the package in the
repository: email templates, widget assets, the demo directory and the example
partner site.

In a source checkout (an editable install) they are read where they are. The
wheel carries them inside the package, under `widget_server/_bundled/NAME`,
copied there at build time by `setup.py` from the same `SOURCES` table, so
`widget-server serve` works from any directory after `pip install`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# Name inside the wheel → folder in the repository.
SOURCES = {
    "emails": "templates/emails",
    "widget_assets": "widget_assets",
    "demo_data": "examples/data",
    "host_page": "examples/host-page",
}
BUNDLE = "_bundled"


def data_dir(name: str) -> Path:
    """The folder `name` of `SOURCES`: bundled in the installed package, or in the checkout."""
    package = Path(str(files(__package__ or "widget_server")))
    bundled = package / BUNDLE / name
    if bundled.is_dir():
        return bundled
    return package.parent / SOURCES[name]
