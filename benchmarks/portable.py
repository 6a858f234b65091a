"""Reports that can be published: no path of the machine that made them.

A bench or soak report names its dataset, model files, video and cache folder by path; committed
or shared, those paths say nothing to a reader (and tell where someone's home is). `portable`
returns the report with each dataset root as the dataset's name (its frame count is in
`frames.count`), the report folder left out, and every other file path as its file name alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# an absolute path, or one that climbs (../), of at least one folder: kept is its last part
_PATH = re.compile(r"(?<![\w:/.-])(?:/|\.\./|\./|~/)(?:[^\s\"'`,;()\[\]/]+/)*([^\s\"'`,;()\[\]/]+)")


def dataset_name(root: str | Path) -> str:
    """CamVid or Cityscapes when `root` has their layout (train/data/layouts.py), else its folder name."""
    p = Path(root).expanduser()
    if (p / "val.txt").is_file() or (p / "valannot").is_dir():
        return "CamVid"
    if (p / "leftImg8bit").is_dir():
        return "Cityscapes"
    return p.name or str(root)


def _names(doc: dict) -> dict[str, str]:
    """Known paths of the report -> what replaces them, longest first (so a root wins over its parts)."""
    config = doc.get("config", {})
    names: dict[str, str] = {}
    for key in ("data", "calib"):
        value = config.get(key)
        if isinstance(value, str) and value and "://" not in value and Path(value).expanduser().is_dir():
            for form in {value, value.rstrip("/"), str(Path(value).expanduser().resolve())}:
                names[form] = dataset_name(value)
    return dict(sorted(names.items(), key=lambda kv: -len(kv[0])))


def _scrub(text: str, names: dict[str, str]) -> str:
    for path, name in names.items():
        text = text.replace(path, name)
    return _PATH.sub(lambda m: m.group(1), text)


def portable(doc: Any, names: dict[str, str] | None = None) -> Any:
    """A copy of the report `doc` without local paths (see the module's docstring)."""
    if names is None:
        names = _names(doc) if isinstance(doc, dict) else {}
        if isinstance(doc, dict) and isinstance(doc.get("config"), dict):
            doc = {**doc, "config": {k: v for k, v in doc["config"].items() if k not in ("report", "work", "out")}}
    if isinstance(doc, str):
        return _scrub(doc, names)
    if isinstance(doc, dict):
        return {k: portable(v, names) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [portable(v, names) for v in doc]
    return doc
