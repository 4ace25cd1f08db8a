"""Streams the training log of one host of the TPU VM (Ctrl-C stops streaming, not training).

Example:

    python tpu/logs.py --name mtl-v5e --zone us-west4-a --dry-run
"""

from __future__ import annotations

import kit


def commands(args) -> list[list[str]]:  # noqa: ANN001
    tail = ["tail", "-n", "200", *(["-F"] if args.follow else []), kit.LOG_FILE]
    return [kit.ssh(args, args.worker, " ".join(tail))]


def main() -> None:
    p = kit.parser(__doc__.splitlines()[0])
    p.add_argument("--worker", default="0", help="which host's log (0 is the chief)")
    p.add_argument("--no-follow", dest="follow", action="store_false", help="print the last lines and stop")
    args = p.parse_args()
    kit.execute(commands(args), args.dry_run)


if __name__ == "__main__":
    main()
