"""stats [NUMBER...]: the count, mean, median and standard deviation of the numbers given as
arguments or, without arguments, of the numbers in /data/numbers.txt (one per line).

A WASI 0.2 command component built with componentize-py: the CPython interpreter and the parts
of its standard library this program imports are inside the component. /data exists for the
module only if the profile grants it (`mounts = ["/data"]`).
"""

import statistics
import sys

from wit_world import exports

NUMBERS_FILE = "/data/numbers.txt"


def numbers_from(args: list[str]) -> list[float]:
    if args:
        return [float(a) for a in args]
    with open(NUMBERS_FILE, encoding="utf-8") as f:
        return [float(line) for line in f if line.strip()]


class Run(exports.Run):
    def run(self) -> None:
        print(f"Hello from Python {sys.version.split()[0]} in a WebAssembly component")
        try:
            numbers = numbers_from(sys.argv[1:])
        except (OSError, ValueError) as e:
            print(f"stats: {e}", file=sys.stderr)
            sys.exit(1)
        if not numbers:
            print("stats: no numbers", file=sys.stderr)
            sys.exit(1)
        stdev = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
        print(
            f"count={len(numbers)} mean={statistics.mean(numbers):g} "
            f"median={statistics.median(numbers):g} stdev={stdev:.3f}"
        )
