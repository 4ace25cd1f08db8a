"""Copies training data (tables or `tfmtl data to-tfrecord` folders) to a GCS bucket, where every host reads it.

Example:

    python tpu/stage_data.py --name mtl-v5e --zone us-west4-a --bucket gs://my-bucket/mtl \
        --files train.parquet test.parquet --dry-run
"""

from __future__ import annotations

import kit


def commands(args) -> list[list[str]]:  # noqa: ANN001
    if not args.bucket.startswith("gs://"):
        raise SystemExit(f"--bucket: expected gs://BUCKET[/PREFIX], got {args.bucket!r}")
    return [["gcloud", "storage", "cp", "--recursive", *args.files, f"{args.bucket.rstrip('/')}/data/"]]


def main() -> None:
    p = kit.parser(__doc__.splitlines()[0])
    p.add_argument("--bucket", required=True, help="gs://BUCKET[/PREFIX]; data goes under PREFIX/data/")
    p.add_argument("--files", nargs="+", required=True, help="local files or folders to stage")
    args = p.parse_args()
    kit.execute(commands(args), args.dry_run)


if __name__ == "__main__":
    main()
