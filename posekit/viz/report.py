"""A small self-contained HTML page of pose results: per image, the overlay and a table of persons.

Plain HTML and a few lines of CSS, no scripts. Overlays are linked by relative path (the page
works when the folder is moved or zipped), or embedded as base64 PNG with ``embed_images=True`` (a
single file to send around).
"""
from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posekit.errors import PosekitError

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
section { margin-bottom: 2.5em; border-top: 1px solid #ddd; padding-top: 1em; }
img { max-width: 100%; height: auto; border: 1px solid #ccc; }
table { border-collapse: collapse; margin-top: .6em; font-size: 90%; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; }
.failed { color: #a00; }
"""


@dataclass
class ReportItem:
    """One image of the report: its result and the files written for it (either may be None)."""

    result: object                     # PoseResult
    overlay: Path | None = None
    json: Path | None = None


def _href(target: Path, page_dir: Path) -> str:
    return html.escape(Path(os.path.relpath(Path(target).resolve(), page_dir.resolve())).as_posix(), quote=True)


def _image_tag(overlay: Path, page_dir: Path, embed: bool, alt: str) -> str:
    if embed:
        try:
            data = base64.b64encode(Path(overlay).read_bytes()).decode("ascii")
        except OSError as exc:
            raise PosekitError(f"{overlay}: cannot read the overlay ({exc.strerror or type(exc).__name__})") from None
        src = f"data:image/png;base64,{data}"
    else:
        src = _href(overlay, page_dir)
    return f'<img src="{src}" alt="{html.escape(alt, quote=True)}">'


def _person_table(result, kpt_thr: float) -> str:
    rows = ["<tr><th>#</th><th>track</th><th>score</th><th>box x1, y1, x2, y2</th>"
            f"<th>keypoints &ge; {kpt_thr:g}</th><th>mean keypoint score</th></tr>"]
    for i, person in enumerate(result.persons):
        scores = np.asarray(person.keypoint_scores, dtype=float)
        box = ", ".join(f"{v:.0f}" for v in person.box)
        track = str(person.track_id) if person.track_id >= 0 else "&ndash;"
        rows.append(f"<tr><td>{i + 1}</td><td>{track}</td><td>{person.score:.3f}</td><td>{box}</td>"
                    f"<td>{int((scores >= kpt_thr).sum())} / {len(scores)}</td><td>{scores.mean():.3f}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def write_html_report(path, items, *, title: str = "posekit results", failures=(), kpt_thr: float = 0.3,
                      embed_images: bool = False) -> Path:
    """Write the page to ``path``. items: :class:`ReportItem` s (or (result, overlay, json) tuples);
    failures: one line per input that could not be processed, listed at the top."""
    path = Path(path)
    page_dir = path.parent
    items = [item if isinstance(item, ReportItem) else ReportItem(*item) for item in items]
    failures = list(failures)
    total = sum(len(item.result.persons) for item in items)
    parts = [f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(items)} image{'s' * (len(items) != 1)}, {total} person{'s' * (total != 1)}"
             f"{f', {len(failures)} failed' if failures else ''}.</p>"]
    if failures:
        parts.append("<ul class=\"failed\">" + "".join(f"<li>{html.escape(str(f))}</li>" for f in failures)
                     + "</ul>")
    for item in items:
        result = item.result
        name = result.source or (item.overlay.name if item.overlay else "image")
        width, height = result.image_size
        links = f' &middot; <a href="{_href(item.json, page_dir)}">JSON</a>' if item.json else ""
        parts.append(f"<section><h2>{html.escape(Path(name).name)}</h2>"
                     f"<p>{width} &times; {height} px, {len(result.persons)} person"
                     f"{'s' * (len(result.persons) != 1)}, skeleton {html.escape(result.skeleton.name)}{links}</p>")
        if item.overlay is not None:
            parts.append(_image_tag(item.overlay, page_dir, embed_images, name))
        parts.append(_person_table(result, kpt_thr) + "</section>")
    parts.append("</body></html>\n")
    try:
        path.write_text("\n".join(parts), encoding="utf-8")
    except OSError as exc:
        raise PosekitError(f"{path}: cannot write ({exc.strerror or type(exc).__name__})") from None
    return path


__all__ = ["write_html_report", "ReportItem"]
