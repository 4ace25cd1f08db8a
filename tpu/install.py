"""Installs Python 3.11, TensorFlow for TPUs and tfmtl (a wheel of this checkout) in a venv on every TPU VM host.

Example:

    python tpu/install.py --name mtl-v5e --zone us-west4-a --dry-run
"""

from __future__ import annotations

import shlex

import kit


def commands(args) -> list[list[str]]:  # noqa: ANN001
    wheel = f"tfmtl-{args.version}-py3-none-any.whl"
    python = shlex.quote(args.python)
    setup = " && ".join([
        "sudo add-apt-repository -y ppa:deadsnakes/ppa",
        "sudo apt-get update -q",
        f"sudo apt-get install -y -q {python} {python}-venv",
        f"{python} -m venv {kit.VENV}",
        f"{kit.VENV}/bin/pip install -q {shlex.quote(args.tensorflow)} -f {kit.LIBTPU_INDEX}",
        f"{kit.VENV}/bin/pip install -q {shlex.quote(wheel + '[tpu]')}",
    ])  # fmt: skip
    return [
        ["python", "-m", "pip", "wheel", "--no-deps", "-w", "dist", "."],
        kit.scp(args, "all", f"dist/{wheel}", f"{args.name}:{wheel}"),
        kit.ssh(args, "all", setup),
    ]


def main() -> None:
    p = kit.parser(__doc__.splitlines()[0])
    p.add_argument("--tensorflow", default="tensorflow-tpu", help="pip requirement for TensorFlow with TPU support "
                   "(pin it to the release your runtime supports, e.g. tensorflow-tpu==2.18.0)")
    p.add_argument("--python", default="python3.11", help="the Python (3.11+) installed from deadsnakes for the venv")
    p.add_argument("--version", default=_tfmtl_version(), help="tfmtl version of the wheel built from this checkout")
    args = p.parse_args()
    kit.execute(commands(args), args.dry_run)


def _tfmtl_version() -> str:
    import re
    from pathlib import Path

    init = Path(__file__).resolve().parents[1] / "tfmtl" / "__init__.py"
    return re.search(r'__version__ = "([^"]+)"', init.read_text()).group(1)


if __name__ == "__main__":
    main()
