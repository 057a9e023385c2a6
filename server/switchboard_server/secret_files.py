"""Secret settings from files: ``<VARIABLE>_FILE`` names a file that holds the value.

Docker and Kubernetes hand secrets to a container as files (``/run/secrets/...``, a
mounted Secret); an environment variable is visible to every child process and in
``/proc/<pid>/environ``. Each secret setting is a ``SecretStr`` (its ``repr`` and
``str`` are ``**********``) with a companion ``<name>_file`` setting; the settings
class calls :func:`read_secret_files` in a ``model_validator(mode="before")``, so the
file is read where every other setting is: in the settings, once. A setting given both
ways is an error (which one wins would be a guess); the message names the file, never
its contents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FILE_SUFFIX = "_file"


def read_secret_files(values: Any, names: tuple[str, ...]) -> Any:
    """``values`` (the raw input of a settings class) with each ``<name>_file`` read into
    ``<name>`` (one trailing newline dropped, as ``echo`` and editors add one)."""
    if not isinstance(values, dict):
        return values
    for name in names:
        path = values.get(name + FILE_SUFFIX)
        if not path:
            continue
        if values.get(name):
            raise ValueError(f"{name} and {name}{FILE_SUFFIX} are both set; set one")
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ValueError(f"{name}{FILE_SUFFIX}: cannot read {path}: {exc.strerror}") from None
        values = {**values, name: text.removesuffix("\n")}
    return values
