"""sshguard step 2 (stream): count failures per host.

The pool hashes on the host, so each worker sees every failure of the hosts it
owns and no other worker does. At EOF (the pool is stopped) it writes one
``tag:count,HOST N`` line per host it saw.
"""

import sys
from collections import Counter


def main() -> None:
    counts: Counter[str] = Counter()
    for line in sys.stdin:
        if line.startswith("tag:fail,"):
            counts[line[len("tag:fail,") :].rstrip("\n")] += 1
    for host, n in counts.items():
        sys.stdout.write(f"tag:count,{host} {n}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
