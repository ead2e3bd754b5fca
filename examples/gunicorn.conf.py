"""gunicorn settings for examples/wsgi_app.py: gevent workers, one MySQLPool and one RedisPool per worker.

    GPOOL_MYSQL_URL=mysql://... GPOOL_REDIS_URL=redis://... gunicorn -c examples/gunicorn.conf.py
    ... gunicorn -c examples/gunicorn.conf.py --preload        # works too, see below

Each worker is a separate process with its own pools, so the servers see at most
``workers x max_connections`` connections per pool (2 x 10 here, by default).

Where the pools are built (``GPOOL_POOLS``):

``post_worker_init`` (default)
    The hook below builds them when a worker has started: after the fork and after the gevent worker
    monkey-patched the process. Mistakes in the URLs show up at boot, in the worker's log.
``lazy``
    Nothing is built until the first request calls ``wsgi_app.get_pools()``, in the worker. This is
    the pattern that works under any server (``python examples/wsgi_app.py`` uses it).

Why not ``post_fork``: gunicorn calls it in the child *before* ``init_process()``, and the gevent
worker monkey-patches inside ``init_process()``. A pool built there holds unpatched locks, and with
``initial_connections`` > 0 it would open blocking sockets that stall the whole worker at every query.

``--preload`` (``preload_app = True``): the master imports the app module once, *before* any worker
exists, so before anything is monkey-patched; each worker patches after its fork. That is why
wsgi_app.py builds nothing at import time: no pool, no socket, no client. Had the master built and
used a pool, gpool's fork safety would make each worker forget the inherited connections without
closing them (closing would say goodbye on the master's sockets) and open its own; the objects
themselves would still have been built unpatched. Build per worker, as here.
"""

import os
import sys

wsgi_app = "wsgi_app:app"
pythonpath = os.path.dirname(os.path.abspath(__file__))
bind = os.environ.get("GPOOL_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GPOOL_WORKERS", "2"))
worker_class = "gevent"
worker_connections = 1000  # concurrent requests per worker; the pools cap the database connections
preload_app = os.environ.get("GPOOL_PRELOAD", "").lower() in ("1", "true", "yes")
graceful_timeout = 10  # on SIGTERM, requests in flight get this long to finish
accesslog = None
control_socket_disable = True  # gunicorn 25+: no control socket shared by every instance in $HOME

_POOLS = os.environ.get("GPOOL_POOLS", "post_worker_init")
if _POOLS not in ("post_worker_init", "lazy"):
    raise ValueError(f"GPOOL_POOLS must be post_worker_init or lazy, got {_POOLS!r}")


def post_worker_init(worker):
    """In the worker, after the fork, the monkey-patching and loading the app: build its pools."""
    if _POOLS == "post_worker_init":
        import wsgi_app  # loaded already (by this worker, or by the master with --preload)

        wsgi_app.get_pools(created_by="post_worker_init")


def worker_exit(server, worker):
    """The worker is stopping: close its pools so the servers see clean disconnects."""
    app_module = sys.modules.get("wsgi_app")
    if app_module is not None:
        app_module.close_pools()
