"""``python -m luigi_tasks disk``: the bytes kept under the data directory, per dataset and kind."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from luigi_tasks.config import data_path, pipeline
from luigi_tasks.files import human_size

HELP = "the bytes kept under the data directory: raw Parquet and CSV files per dataset ([pipeline] keep)"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--data-dir", help="the data directory (default: [pipeline] data_dir)")


def _size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    return sum(p.stat().st_size for p in files), len(files)


def run(args: argparse.Namespace) -> int:
    root = Path(args.data_dir) if args.data_dir else data_path()
    usage = {}
    for kind in ("raw", "csv"):
        base = root / kind
        for directory in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
            size, count = _size(directory)
            usage[f"{kind}/{directory.name}"] = {"bytes": size, "files": count}
    total = sum(u["bytes"] for u in usage.values())
    if args.json:
        print(json.dumps({"data_dir": str(root), "keep": pipeline().keep, "usage": usage, "bytes": total}, indent=1))
        return 0
    print(f"{root} ([pipeline] keep = {pipeline().keep}): {human_size(total)} in raw and CSV files")
    for name, u in usage.items():
        print(f"  {name:<16} {human_size(u['bytes']):>12}  {u['files']} file(s)")
    return 0
