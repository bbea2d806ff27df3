"""Stan's compiler front end, `stanc`, as shipped inside the httpstan wheel: check a program without C++."""
from __future__ import annotations

import subprocess
import tempfile
from importlib import resources
from pathlib import Path


def stanc_path() -> Path:
    path = Path(str(resources.files("httpstan") / "stanc"))
    if not path.exists():
        raise FileNotFoundError(f"stanc not found at {path}; reinstall httpstan")
    return path


def check(program: str, name: str = "model") -> str:
    """Run stanc on the program; return its warnings. Raises ValueError with stanc's message on error."""
    with tempfile.TemporaryDirectory(prefix="stangen_stanc_") as tmp:
        source = Path(tmp) / f"{name}.stan"
        source.write_text(program)
        done = subprocess.run([str(stanc_path()), "--o", str(Path(tmp) / "model.hpp"),
                               str(source)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise ValueError(done.stderr.strip() or done.stdout.strip())
    return done.stderr.strip()
