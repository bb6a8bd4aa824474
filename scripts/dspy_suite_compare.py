"""Compare two junit files of DSPy's suite (tracing off, tracing on): same outcome for every test?"""

import sys
import xml.etree.ElementTree as ET
from collections import Counter


def outcomes(path: str) -> dict[str, str]:
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        out[name] = ("failed" if "failure" in kinds else "error" if "error" in kinds
                     else "skipped" if "skipped" in kinds else "passed")
    return out


def main(off_path: str, on_path: str) -> int:
    off, on = outcomes(off_path), outcomes(on_path)
    for label, res in (("off", off), ("on", on)):
        print(f"tracing {label}: {len(res)} tests: " + ", ".join(f"{v} {k}" for k, v in sorted(Counter(res.values()).items())))
    diff = sorted(n for n in off.keys() | on.keys() if off.get(n) != on.get(n))
    for name in diff:
        print(f"  {off.get(name, 'absent'):>8} -> {on.get(name, 'absent'):<8} {name}")
    print("same pass/fail set" if not diff else f"{len(diff)} test(s) differ")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
