"""Rows per second and peak RSS of `sentinel registry import` on a generated CSV (default 50 MB).

Run: python -m bench.registry_import [--mb 50] [--keep]
The import runs as the real CLI in a child process (limits raised to fit the file), so the peak RSS is
that process's own (ru_maxrss of the child), not this generator's.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADER = "系统编号,系统名称,责任部门,联系人,邮箱,层级,等保级别,关键信息基础设施,网址,IP地址,端口,标签\n"


def generate(path: Path, megabytes: float) -> int:
    """A CSV of valid, distinct systems of about `megabytes` MB; returns the number of data rows."""
    target = int(megabytes * 1024 * 1024)
    rows = 0
    size = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        size += len(HEADER.encode())
        while size < target:
            a, b = divmod(rows, 250)
            line = (
                f"sys-{rows:07d},市政务系统{rows},市大数据管理中心第{rows % 97}科,张工,ops{rows}@example.cn,"
                f"{('市级', '区级', '街道')[rows % 3]},{('二级', '三级')[rows % 2]},{'是' if rows % 7 == 0 else '否'},"
                f"https://s{rows}.gov.example.cn/,10.{a // 250 % 250}.{a % 250}.{b + 1},22;443,e-gov;bench\n"
            )
            out.write(line)
            size += len(line.encode())
            rows += 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=50.0, help="size of the generated CSV in MB")
    parser.add_argument("--keep", action="store_true", help="keep the CSV and YAML in the temporary folder")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sentinel-bench-import-"))
    csv_file, yaml_file = folder / "systems.csv", folder / "registry.yaml"
    rows = generate(csv_file, args.mb)
    size = csv_file.stat().st_size
    print(f"generated {csv_file}: {size / 1e6:.1f} MB, {rows:,} rows")
    command = [
        sys.executable,
        "-m",
        "sentinel",
        "registry",
        "import",
        str(csv_file),
        "-o",
        str(yaml_file),
        "--scope",
        "10.0.0.0/8",
        "--scope",
        "gov.example.cn",
        "--max-bytes",
        str(size + 1),
        "--max-rows",
        str(rows + 1),
    ]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
    if result.returncode != 0:
        print(result.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"import failed with exit code {result.returncode}")
    print(f"imported in {elapsed:.1f} s: {rows / elapsed:,.0f} rows/s, {size / 1e6 / elapsed:.2f} MB/s")
    print(f"peak RSS of the import: {peak_kib / 1024:.0f} MiB; output {yaml_file.stat().st_size / 1e6:.1f} MB")
    if not args.keep:
        csv_file.unlink()
        yaml_file.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
