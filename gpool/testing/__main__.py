"""``python -m gpool.testing mysql|redis``: run a private throwaway server until Ctrl-C."""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import Optional

from ._server import _Server
from .mariadb import MariaDBServer
from .redis import RedisServer


def _main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gpool.testing",
                                     description="Run a private throwaway test server until Ctrl-C.")
    parser.add_argument("kind", choices=("mysql", "redis"))
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("-v", "--verbose", action="store_true", help="log lifecycle messages")
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")
    server: _Server = MariaDBServer(port=args.port) if args.kind == "mysql" else RedisServer(port=args.port)
    try:
        server.start()
        print(server.url, flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while server.running:
            time.sleep(0.5)
        print(f"server exited:\n{server.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.cleanup()


if __name__ == "__main__":
    sys.exit(_main())
