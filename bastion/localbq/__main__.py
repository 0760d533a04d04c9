"""``python -m bastion.localbq --port 9050 --project proj [--seed demo]``."""

from __future__ import annotations

import argparse
import logging
import sys

from .seed import SEEDS
from .server import LocalBigQuery


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bastion.localbq",
        description="A local BigQuery v2 REST server (loopback) for tests and demos.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=9050, help="port (0: any free port)")
    parser.add_argument("--project", default="local-project", help="default project id")
    parser.add_argument("--seed", choices=sorted(SEEDS), help="load a data set at start")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    parser.add_argument(
        "--no-tcp-nodelay", action="store_true", help=argparse.SUPPRESS
    )  # for the benchmark's Nagle comparison only
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    server = LocalBigQuery(
        project=args.project, host=args.host, port=args.port, tcp_nodelay=not args.no_tcp_nodelay
    )
    if args.seed:
        SEEDS[args.seed](server)
    print(f"bqserver listening on {server.url} (project {args.project})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
