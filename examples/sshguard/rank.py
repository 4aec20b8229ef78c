"""sshguard step 3 (stream): rank the hosts over the threshold.

Gets ``tag:count,HOST N`` lines from every count worker; at EOF writes
``HOST N`` for each host with N >= threshold (argv[1]), by N descending,
then HOST ascending.
"""

import sys


def main(threshold: int) -> None:
    totals: dict[str, int] = {}
    for line in sys.stdin:
        if not line.startswith("tag:count,"):
            continue
        host, _, n = line[len("tag:count,") :].rstrip("\n").rpartition(" ")
        totals[host] = totals.get(host, 0) + int(n)
    ranked = sorted((item for item in totals.items() if item[1] >= threshold),
                    key=lambda item: (-item[1], item[0]))
    for host, n in ranked:
        sys.stdout.write(f"{host} {n}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
