"""The catalog of Asterisk sounds a flow may name.

``sounds_in_dir`` lists a sounds directory (``.../sounds/en``) as the names Asterisk
plays them by: the file name without its format extension, ``dir/name`` for files
in subdirectories (``digits/1``). The development PBX lives in a chroot whose
``sounds/en`` is an absolute symlink (``/usr/share/asterisk/sounds/en_US_f_Allison``
through ``/etc/alternatives``) that only resolves inside the chroot;
``resolve_in_root`` follows such links within a root directory. The app can build
the same set from ARI ``GET /sounds`` later.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

__all__ = ["resolve_in_root", "sounds_in_dir", "system_sounds_dir"]

MAX_LINKS = 40


def resolve_in_root(root: Path, path: str | PurePosixPath) -> Path | None:
    """``path`` (relative to ``root``) with every symlink resolved as if ``root`` were /.

    Returns None when a component does not exist or the links loop.
    """
    parts = list(PurePosixPath(path).parts)
    if parts and parts[0] == "/":
        parts = parts[1:]
    current = root
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > MAX_LINKS:
                return None
            target = PurePosixPath(os.readlink(candidate))
            if target.is_absolute():
                current = root
                parts = list(target.parts[1:]) + parts
            else:
                parts = list(target.parts) + parts
            continue
        if not candidate.exists():
            return None
        current = candidate
    return current


def _find_dir(path: Path) -> Path | None:
    """``path`` itself, or resolved inside the nearest ancestor acting as a chroot."""
    if path.is_dir():
        return path
    absolute = path.absolute()
    for root in absolute.parents:
        resolved = resolve_in_root(root, PurePosixPath(absolute.relative_to(root).as_posix()))
        if resolved is not None and resolved.is_dir():
            return resolved
    return None


def sounds_in_dir(path: str | Path) -> set[str]:
    """Sound names under ``path`` (empty when it is not a directory)."""
    directory = _find_dir(Path(path))
    if directory is None:
        return set()
    names: set[str] = set()
    for dirpath, _dirs, files in os.walk(directory, followlinks=True):
        rel = Path(dirpath).relative_to(directory)
        for file in files:
            stem, dot, _ext = file.partition(".")
            if not dot or not stem:
                continue
            names.add(stem if rel == Path(".") else f"{rel.as_posix()}/{stem}")
    return names


def system_sounds_dir(pbx_root: Path | None) -> Path | None:
    """The English sounds of the development PBX (in ``pbx_root``) or of the host."""
    candidates = []
    if pbx_root is not None:
        candidates.append(pbx_root / "usr/share/asterisk/sounds/en")
    candidates.append(Path("/usr/share/asterisk/sounds/en"))
    for candidate in candidates:
        found = _find_dir(candidate)
        if found is not None and any(found.iterdir()):
            return found
    return None
