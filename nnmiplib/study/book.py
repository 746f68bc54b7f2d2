"""Execute the chapter notebooks with papermill and build the HTML book.

``make book`` calls ``python -m nnmiplib.study.book --scale quick``; the tests call
:func:`execute_chapters` and :func:`build_html` on a copy of the book in a temporary
folder at ``smoke`` scale. A chapter that fails keeps its partly executed notebook (with
the error) in ``book/`` and the build stops with the chapter's name; every finished cell
of the chapters' grids stays in the cache, so a rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .common import SCALES, check_scale

log = logging.getLogger(__name__)

__all__ = ["build_html", "chapters", "copy_book_sources", "execute_chapter", "execute_chapters", "main",
           "required_nets", "train_nets"]

BOOK_FILES = ("_config.yml", "_toc.yml")


def project_root() -> Path:
    from ..paths import repo_root

    root = repo_root()
    if root is None:
        raise RuntimeError("the book is built from a source checkout of nnmiplib (no pyproject.toml found)")
    return root


def chapters(root: Path | None = None) -> list[Path]:
    """Chapter sources ``notebooks/NN_*.ipynb`` in book order."""
    root = root or project_root()
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _hide_injected_parameters(path: Path) -> None:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, path)


def execute_chapter(src: Path, dst: Path, scale: str, parameters: dict | None = None, *, cwd: Path | None = None,
                    timeout: int | None = None) -> float:
    """Run one chapter with papermill; returns wall seconds. Raises with the chapter's name on failure."""
    import papermill as pm

    check_scale(scale)
    params = {"scale": scale, **(parameters or {})}
    dst.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name="python3", progress_bar=False,
                            cwd=str(cwd or src.parent), execution_timeout=timeout)
    except pm.PapermillExecutionError as exc:
        raise RuntimeError(
            f"chapter {src.name} failed at scale {scale!r} in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
            f"the executed notebook with the traceback is {dst}; finished grid cells are cached, "
            "so rerunning resumes"
        ) from None
    _hide_injected_parameters(dst)
    return time.perf_counter() - t0


def execute_chapters(scale: str, out_dir: Path, *, only: list[str] | None = None, parameters: dict | None = None,
                     root: Path | None = None) -> dict[str, float]:
    """Execute every chapter (or those whose name contains one of ``only``) into ``out_dir``."""
    times = {}
    for src in chapters(root):
        if only and not any(o in src.name for o in only):
            continue
        log.info("executing %s at scale %s", src.name, scale)
        print(f"[book] {src.name} (scale {scale}) ...", file=sys.stderr, flush=True)
        times[src.name] = execute_chapter(src, out_dir / src.name, scale, parameters)
        print(f"[book] {src.name} done in {times[src.name]:.0f} s", file=sys.stderr, flush=True)
    return times


def required_nets(scale: str) -> list[tuple]:
    """Every zoo net the chapters load at ``scale``, ``(arch, reg, lam, penalty_scale)``:
    chapter 1's zoo and penalty comparison (which hold the nets of chapters 2–4) and the
    (15, 15) net of chapter 4's mineps."""
    from . import ch1, ch4

    return ch1.required_nets(ch1.preset(scale)) + [("15x2", ch4.REG, ch4.LAM, "sum")]


def train_nets(scale: str, n_jobs: int = 1, progress: bool = True) -> dict:
    """Train the nets of :func:`required_nets` that are not cached (one progress bar with an
    ETA over all of them, on the terminal rather than in a chapter); ``{"trained", "seconds"}``."""
    from ..train import train_missing

    return train_missing(required_nets(scale), scale, n_jobs=n_jobs, progress=progress)


def copy_book_sources(dest: Path, root: Path | None = None) -> Path:
    """Copy the book's configuration and hand-written pages (not executed chapters) to ``dest``."""
    root = root or project_root()
    dest.mkdir(parents=True, exist_ok=True)
    for f in BOOK_FILES:
        shutil.copy2(root / f, dest / f)
    (dest / "book").mkdir(exist_ok=True)
    for f in (root / "book").iterdir():
        if f.suffix == ".ipynb":
            continue
        if f.is_dir():
            shutil.copytree(f, dest / "book" / f.name, dirs_exist_ok=True)
        else:
            shutil.copy2(f, dest / "book" / f.name)
    return dest


# sphinx-thebe writes this inline loader config twice per page (a redeclared ``const`` is a
# JavaScript error) and names a CDN URL; the book never launches thebe, so it goes.
_THEBE_LINE = re.compile(r"^[ \t]*<script>const THEBE_JS_URL = [^\n]*</script>[ \t]*\n", re.MULTILINE)


# Sphinx numbers every figure ("Fig. 3") whatever numfig says under jupyter-book; our
# captions carry the thesis's ids ("Fig 2.4 — …"), so Sphinx's own number goes.
_CAPTION_NUMBER = re.compile(r'<span class="caption-number">(Fig\.|Table) \d+ </span>')


def _postprocess_html(html_dir: Path) -> None:
    """Drop the inline sphinx-thebe loader (never launched: the book is offline) and Sphinx's figure numbers.

    The root ``index.html`` is a bare redirect without a favicon link, so browsers ask for
    ``/favicon.ico``: the book's favicon is copied there, so that request never fails.
    """
    icon = html_dir / "_static" / "favicon.png"
    if icon.exists():
        shutil.copyfile(icon, html_dir / "favicon.ico")
    for page in html_dir.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        new = _CAPTION_NUMBER.sub("", _THEBE_LINE.sub("", text))
        if new != text:
            page.write_text(new, encoding="utf-8")


def build_html(root: Path, *, strict: bool = True) -> Path:
    """``jupyter-book build`` of the book at ``root`` (strict: warnings are errors). Returns the HTML folder."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root), "--all"]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}):\n{tail}")
    html = root / "_build" / "html"
    _postprocess_html(html)
    return html


def add_parser(sub) -> None:
    p = sub.add_parser("book", help="execute the chapters with papermill and build the HTML book")
    _arguments(p)
    p.set_defaults(func=_run)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", default="quick", choices=SCALES)
    p.add_argument("--only", nargs="*", help="execute only chapters whose file name contains one of these")
    p.add_argument("--n-jobs", type=int, default=None, help="processes per chapter (default: the chapter's own)")
    p.add_argument("--no-execute", action="store_true", help="build from the chapters already in book/")
    p.add_argument("--no-html", action="store_true", help="execute the chapters only")


def _run(args) -> int:
    root = project_root()
    params = {} if args.n_jobs is None else {"n_jobs": args.n_jobs}
    t0 = time.perf_counter()
    times = {}
    if not args.no_execute:
        print(f"[book] the nets of scale {args.scale} ...", file=sys.stderr, flush=True)
        trained = train_nets(args.scale, n_jobs=args.n_jobs or 1)
        times["training"] = trained["seconds"]
        print(f"[book] {trained['trained']} nets trained in {trained['seconds']:.0f} s (the others were cached)",
              file=sys.stderr, flush=True)
        times.update(execute_chapters(args.scale, root / "book", only=args.only, parameters=params, root=root))
    if not args.no_html:
        html = build_html(root)
        print(f"[book] HTML book in {html}/index.html", file=sys.stderr)
    if times:
        print(f"\nTime per chapter at scale {args.scale}:", file=sys.stderr)
        for name, sec in times.items():
            print(f"  {name:<40} {sec:8.0f} s", file=sys.stderr)
        print(f"  {'total (with the HTML build)':<40} {time.perf_counter() - t0:8.0f} s", file=sys.stderr)
        (root / "book" / "_generated").mkdir(exist_ok=True)
        (root / "book" / "_generated" / f"times-{args.scale}.json").write_text(json.dumps(times, indent=1))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nnmiplib.study.book", description=__doc__.splitlines()[0])
    _arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    try:
        return _run(args)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
