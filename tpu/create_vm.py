"""Creates a Cloud TPU VM (one host or a pod slice) with `gcloud compute tpus tpu-vm create`.

Example (prints the command only):

    python tpu/create_vm.py --name mtl-v5e --zone us-west4-a \
        --accelerator-type v5litepod-8 --runtime-version v2-alpha-tpuv5-lite --dry-run
"""

from __future__ import annotations

import kit


def commands(args) -> list[list[str]]:  # noqa: ANN001
    kit.hosts(args.accelerator_type)  # a malformed type fails before anything runs
    extra = ["--spot"] if args.spot else []
    kind, version = f"--accelerator-type={args.accelerator_type}", f"--version={args.runtime_version}"
    return [kit.tpu_vm(args, "create", kind, version, *extra)]


def main() -> None:
    p = kit.parser(__doc__.splitlines()[0])
    p.add_argument("--accelerator-type", required=True, help="e.g. v5litepod-8 (one v5e host), v6e-8, v6e-16 (2 hosts)")
    p.add_argument("--runtime-version", required=True, help="TPU software version, e.g. v2-alpha-tpuv5-lite (v5e) or "
                   "v2-alpha-tpuv6e (v6e); list them with gcloud compute tpus tpu-vm versions list --zone=ZONE")
    p.add_argument("--spot", action="store_true", help="a Spot VM: much cheaper, can be preempted at any time")
    args = p.parse_args()
    kit.execute(commands(args), args.dry_run)


if __name__ == "__main__":
    main()
