"""MkDocs hooks (mkdocs.yml ``hooks:``): add the figures of docs/_gen/figures.py to the site.

The SVGs are computed at every build and given to MkDocs as generated files
(``figures/<name>.svg``), so nothing is written into docs/ and ``--strict`` checks the image
links against them like any other file.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from mkdocs.structure.files import File

_FIGURES = Path(__file__).with_name("figures.py")


def _figures_module():
    spec = importlib.util.spec_from_file_location("equilayers_docs_figures", _FIGURES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_config(config, **kwargs):
    # draw with the equilayers of this checkout, also when `mkdocs` runs as a console script
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def on_files(files, config, **kwargs):
    for name, data in _figures_module().render_all().items():
        files.append(File.generated(config, f"figures/{name}", content=data))
    return files
