"""Deletes the TPU VM (billing stops; anything left on its disks is gone).

Example:

    python tpu/delete_vm.py --name mtl-v5e --zone us-west4-a --dry-run
"""

from __future__ import annotations

import kit


def commands(args) -> list[list[str]]:  # noqa: ANN001
    return [kit.tpu_vm(args, "delete", "--quiet")]


def main() -> None:
    args = kit.parser(__doc__.splitlines()[0]).parse_args()
    kit.execute(commands(args), args.dry_run)


if __name__ == "__main__":
    main()
