"""Bundle folders on disk, torch-free. Putting a finished folder in place atomically: shared by
export (exporters/bundle.py) and wrap (runtime/wrap.py), which both write a bundle into a hidden
staging folder first. A folder as bytes and back: how sweeps and latency tables send bundles to
Ray workers that share no file system."""
from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path


def pack_bundle(folder: Path) -> bytes:
    """``folder`` as a gzipped tar archive (paths relative to it)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(folder, arcname=".")
    return buffer.getvalue()


def unpack_bundle(data: bytes, folder: Path) -> Path:
    """Unpack ``pack_bundle``'s bytes into ``folder`` (made if missing); returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        archive.extractall(folder, filter="data")  # the data filter refuses links and paths out of folder
    return folder


def replace_folder(staging: Path, output: Path) -> None:
    """Rename ``staging`` to ``output``; an old ``output`` (force) is removed only after.

    The old folder waits in ``.NAME.<pid>.*.old/old`` between the two renames. If anything stops
    the swap there (a signal, a failed rename), it is put back before the error goes on; if the
    process is killed outright, the next export's ``sweep_stale_partials`` puts it back.
    """
    if not output.exists():
        os.replace(staging, output)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{output.name}.{os.getpid()}.", suffix=".old", dir=output.parent))
    try:
        os.replace(output, trash / "old")
        os.replace(staging, output)
    except BaseException:
        if not output.exists() and (trash / "old").exists():
            os.replace(trash / "old", output)
        raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def check_replaceable(output: Path, force: bool) -> None:
    """Refuse (UsageError, exit 2) an ``output`` that a new bundle may not replace: a file, an
    existing bundle without ``force``, or a folder that is not a bundle and is not empty.

    An existing empty folder (made ahead, e.g. ``mkdir -p out/kws``) is taken as it is: there is
    nothing in it to lose.
    """
    from edgesdk.errors import UsageError
    from edgesdk.runtime.manifest import MANIFEST_NAME

    if output.exists() and not output.is_dir():
        raise UsageError(f"{output} is a file, not a bundle folder; refusing to replace it")
    if output.is_dir() and not any(output.iterdir()):
        return
    if output.exists() and not force:
        raise UsageError(f"{output} already exists; choose another output or pass force=True (--force)")
    if output.exists() and not (output / MANIFEST_NAME).is_file() and any(output.iterdir()):
        raise UsageError(f"{output} exists and is not an edgesdk bundle; refusing to replace it")
