"""Load a previous revision of `resilient_mcp` next to the current one, in one process.

`bench_client.py --baseline REV` measures the working tree's `resilient_mcp` and the
package as it was at REV side by side, interleaved like every other contender. This
module materialises REV's package and imports it under another top-level name:

1. `git -C <repo> archive <commit> resilient_mcp` (a tar stream, read with `tarfile`'s
   "data" filter: no absolute paths, links or devices) into a fresh temporary directory;
2. the extracted `resilient_mcp/` is renamed to `resilient_mcp_baseline/`;
3. every module of it outside `testing/` and `cli/` is parsed, and an *absolute* import
   of `resilient_mcp` anywhere in it is an error: it would silently bind to the current
   code (the core imports itself relatively, `from ._config import ...`; only the
   `testing/` and `cli/` subpackages import `resilient_mcp` absolutely, and nothing here
   imports them);
4. `importlib.util.spec_from_file_location("resilient_mcp_baseline", .../__init__.py,
   submodule_search_locations=[...])` and `exec_module`; afterwards every module under
   that name must come from the temporary directory, and loading it must not have
   imported any new `resilient_mcp` module.

`Baseline.close()` removes the directory; it is idempotent, registered with `atexit`,
and the benchmark also calls it from `finally`, from its watchdog (which exits with
`os._exit`, skipping both) and on SIGTERM (turned into `SystemExit` while it runs).

Also here: `describe_origins` (which files each side was imported from, and whether
they are the same code) and `judge`, the noise rule of the "ours / baseline" lines.
"""

from __future__ import annotations

import ast
import atexit
import hashlib
import importlib.util
import io
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

PACKAGE = "resilient_mcp"
BASELINE_NAME = "resilient_mcp_baseline"
OURS_NAME = "resilient_mcp_ours"
GIT_TIMEOUT = 60.0  # seconds, for each git command


class BaselineError(RuntimeError):
    """The baseline revision could not be materialised or imported."""


def _git(repo: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BaselineError(f"git {' '.join(args)}: {exc}") from exc
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise BaselineError(f"git {' '.join(args)}: {message or f'exit {done.returncode}'}")
    return done.stdout


# Subpackages that are applications *of* the library (the fault server, the command
# line): they import `resilient_mcp` absolutely, as users do, and the benchmark never
# imports them from a copy.
APPLICATIONS = frozenset({"testing", "cli"})


def source_digest(package_dir: Path) -> str:
    """A digest of the package's Python sources outside `testing/` and `cli/` (names and contents),
    to tell whether two copies are the same code."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir)
        if relative.parts[0] in APPLICATIONS:
            continue
        digest.update(relative.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def absolute_self_imports(package_dir: Path, name: str = PACKAGE) -> list[str]:
    """`file:line` of every absolute import of `name` outside `testing/` and `cli/`."""
    found: list[str] = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir)
        if relative.parts[0] in APPLICATIONS:
            continue
        tree = ast.parse(path.read_bytes(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            if any(m == name or m.startswith(name + ".") for m in modules):
                found.append(f"{relative.as_posix()}:{node.lineno}")
    return found


@dataclass
class Baseline:
    """A previous revision of `resilient_mcp`, imported as `BASELINE_NAME`."""

    rev: str  # as asked for
    commit: str  # the full commit id it resolved to
    subject: str  # that commit's subject line
    module: ModuleType
    origin: Path  # the baseline package's __init__.py
    digest: str  # source_digest of the baseline package
    tmpdir: Path
    _closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        """Remove the temporary directory (the module stays imported; nothing may be
        lazily imported from it afterwards)."""
        if not self._closed:
            self._closed = True
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def load_baseline(repo: Path, rev: str) -> Baseline:
    """Materialise `rev`'s `resilient_mcp/` and import it as `resilient_mcp_baseline`."""
    commit = _git(repo, "rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}")
    commit_id = commit.decode().strip()
    subject = _git(repo, "log", "-1", "--format=%s", commit_id).decode().strip()
    return _load(repo, rev, commit_id, subject, BASELINE_NAME)


def load_working_copy(repo: Path) -> Baseline:
    """The working tree's `resilient_mcp/`, imported through the same loader as the
    baseline (as `resilient_mcp_ours`), so that the two sides of "ours / baseline" differ
    in nothing but their code. (Against the installed package instead, an A/A run of
    identical sources measured our side 3-6 % slower in (a): the comparison was not
    symmetric.)"""
    state = working_tree_state(repo)
    return _load(repo, "working tree", None, state, OURS_NAME)


def _load(repo: Path, rev: str, commit_id: str | None, subject: str, name: str) -> Baseline:
    if name in sys.modules:
        raise BaselineError(f"{name} is already imported")
    tmpdir = Path(tempfile.mkdtemp(prefix="bench-baseline-"))

    def cleanup() -> None:
        shutil.rmtree(tmpdir, ignore_errors=True)

    atexit.register(cleanup)
    try:
        module, package_dir = _materialise(repo, rev, commit_id, tmpdir, name)
    except BaseException:
        cleanup()
        atexit.unregister(cleanup)
        raise
    baseline = Baseline(
        rev=rev,
        commit=commit_id or "working tree",
        subject=subject,
        module=module,
        origin=Path(module.__file__ or package_dir / "__init__.py"),
        digest=source_digest(package_dir),
        tmpdir=tmpdir,
    )
    atexit.unregister(cleanup)
    atexit.register(baseline.close)
    return baseline


def _materialise(
    repo: Path, rev: str, commit_id: str | None, tmpdir: Path, name: str
) -> tuple[ModuleType, Path]:
    """Put `commit_id`'s package (None: the working tree's) into `tmpdir` as `name`;
    import it."""
    if commit_id is None:
        shutil.copytree(
            repo / PACKAGE, tmpdir / PACKAGE, ignore=shutil.ignore_patterns("__pycache__")
        )
    else:
        archive = _git(repo, "archive", "--format=tar", commit_id, PACKAGE)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmpdir, filter="data")
    extracted = tmpdir / PACKAGE
    if not (extracted / "__init__.py").is_file():
        raise BaselineError(f"{rev} has no {PACKAGE}/__init__.py")
    package_dir = tmpdir / name
    extracted.rename(package_dir)
    bad = absolute_self_imports(package_dir)
    if bad:
        raise BaselineError(
            f"{rev}: absolute imports of {PACKAGE} would load the current code instead: "
            + ", ".join(bad)
        )
    return _import(package_dir, name), package_dir


def _import(package_dir: Path, name: str) -> ModuleType:
    before = {loaded for loaded in sys.modules if loaded.split(".")[0] == PACKAGE}
    spec = importlib.util.spec_from_file_location(
        name,
        package_dir / "__init__.py",
        submodule_search_locations=[str(package_dir)],
    )
    if spec is None or spec.loader is None:
        raise BaselineError(f"cannot make an import spec for {package_dir}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        for loaded in [n for n in sys.modules if n.split(".")[0] == name]:
            del sys.modules[loaded]
        if isinstance(exc, Exception):
            message = f"importing it failed: {type(exc).__name__}: {exc}"
            raise BaselineError(message) from exc
        raise
    strays = [
        f"{loaded} ({getattr(mod, '__file__', None)})"
        for loaded, mod in list(sys.modules.items())
        if loaded.split(".")[0] == name
        and getattr(mod, "__file__", None) is not None
        and not Path(mod.__file__ or "").resolve().is_relative_to(package_dir.resolve())
    ]
    new_current = {n for n in sys.modules if n.split(".")[0] == PACKAGE} - before
    if strays or new_current:
        raise BaselineError(
            "the baseline package mixes in other code: "
            + ", ".join(strays + sorted(f"imported {n}" for n in new_current))
        )
    return module


def working_tree_state(repo: Path) -> str:
    """`HEAD`'s short id, plus ", uncommitted changes" if `resilient_mcp/` differs from it."""
    head = _git(repo, "rev-parse", "--short=12", "HEAD").decode().strip()
    dirty = _git(repo, "status", "--porcelain", "--", PACKAGE).decode().strip()
    return f"{head}, uncommitted changes in {PACKAGE}/" if dirty else head


def describe_origins(ours: Baseline, baseline: Baseline) -> list[str]:
    """Where each measured package comes from, and a note if both are the same code."""
    lines = [
        f"ours:     {ours.origin} (a copy of the working tree, {ours.subject}; sources "
        f"{ours.digest}; removed at exit)",
        f"baseline: {baseline.origin} ({baseline.rev} = {baseline.commit[:12]} "
        f'"{baseline.subject}"; sources {baseline.digest}; removed at exit)',
    ]
    if ours.digest == baseline.digest:
        lines.append(
            "note: ours and the baseline have identical sources: this run compares the "
            "code with itself (an A/A run: the ratios show the noise)"
        )
    return lines


# --------------------------------------------------------------------------------------
# The noise rule of the "ours / baseline" lines
# --------------------------------------------------------------------------------------


def relative_spread(samples: Sequence[float]) -> float:
    """How much a contender's samples vary, relative to their median: the interquartile
    range over the median (with fewer than four samples, half the range over it)."""
    if len(samples) < 2:
        return 0.0
    middle = statistics.median(samples)
    if middle == 0:
        return 0.0
    if len(samples) >= 4:
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
        return (q3 - q1) / middle
    return (max(samples) - min(samples)) / (2 * middle)


def judge(
    ratio: float | None, ours: Sequence[float], base: Sequence[float], higher_is_better: bool
) -> tuple[float, str, bool | None]:
    """The noise, the verdict and whether it is a regression (None: cannot tell) for
    `ratio` = median(ours) / median(base).

    The noise rule: two medians of the same code, measured in one run, differ by chance
    up to the larger relative spread of the two contenders' samples (`relative_spread`).
    A ratio worse than 1.00 by more than that noise is a REGRESSION, better by more than
    that "no regression (better)", anything in between "no regression" (within noise).
    With fewer than two samples on either side there is no spread to judge by.
    """
    noise = max(relative_spread(ours), relative_spread(base))
    if ratio is None:
        return noise, "n/a", None  # one of the two failed (the error is under the table)
    if min(len(ours), len(base)) < 2:
        return noise, "cannot tell (one sample)", None
    worse = (1 / ratio if higher_is_better else ratio) - 1  # > 0: ours is worse
    if worse > noise:
        return noise, "REGRESSION", True
    if -worse > noise:
        return noise, "no regression (better)", False
    return noise, "no regression", False
