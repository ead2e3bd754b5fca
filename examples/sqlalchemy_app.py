"""A WSGI app that uses SQLAlchemy's ORM on :class:`gpool.sqlalchemy.GeventPool`, for gunicorn -k gevent.

    GPOOL_MYSQL_URL=mysql://root@127.0.0.1:3306/test \\
        gunicorn -k gevent -w 2 --pythonpath examples sqlalchemy_app:app

Endpoints (GET): ``/orm?token=X`` adds a ``Note(token=X)`` in an ORM ``Session``, commits, reads it
back in a second session and answers ``{"token", "id", "pid", "conn_id"}``; ``/stats`` answers this
process's pid and ``engine.pool.stats()``. Configuration: ``GPOOL_MYSQL_URL`` (required),
``GPOOL_MYSQL_MAX_CONNECTIONS`` (pool_size, default 10), ``GPOOL_POOL_TIMEOUT`` (default 5 s; then 503).

The engine is built on first use, in the worker: after the fork and after the gevent worker patched
the process (the same rule as examples/wsgi_app.py; see examples/gunicorn.conf.py).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Optional
from urllib.parse import parse_qs

from gevent.lock import Semaphore
from sqlalchemy import String, create_engine, text
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from gpool.sqlalchemy import GeventPool

_TOKEN = re.compile(r"\A[A-Za-z0-9_.:-]{1,100}\Z")


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "gpool_sqlalchemy_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(100))
    conn_id: Mapped[int]


_engine: Optional[Any] = None
_building = Semaphore()  # the first request builds the engine; the others arriving meanwhile wait for it


def get_engine() -> Any:
    """This process's engine, built on the first call; it creates the table when missing."""
    global _engine
    if _engine is not None:
        return _engine
    with _building:  # creating the table yields: without the lock each request arriving meanwhile builds one
        if _engine is not None:
            return _engine
        url = os.environ.get("GPOOL_MYSQL_URL")
        if not url:
            raise RuntimeError("GPOOL_MYSQL_URL is not set")
        engine = create_engine(
            url.replace("mysql://", "mysql+pymysql://", 1),
            poolclass=GeventPool,
            pool_size=int(os.environ.get("GPOOL_MYSQL_MAX_CONNECTIONS", "10")),
            pool_timeout=float(os.environ.get("GPOOL_POOL_TIMEOUT", "5")),
            pool_pre_ping=True,
            connect_args={"ssl_disabled": True},
        )
        with engine.begin() as conn:  # IF NOT EXISTS: several workers may get here at once
            conn.execute(text(
                f"CREATE TABLE IF NOT EXISTS {Note.__tablename__} "
                "(id INT AUTO_INCREMENT PRIMARY KEY, token VARCHAR(100) NOT NULL, conn_id BIGINT NOT NULL)"))
        _engine = engine
        return engine


def _orm(token: str) -> dict[str, Any]:
    engine = get_engine()
    with Session(engine) as session:
        conn_id = session.execute(text("SELECT CONNECTION_ID()")).scalar_one()
        note = Note(token=token, conn_id=conn_id)
        session.add(note)
        session.commit()
        note_id = note.id
    with Session(engine) as session:
        stored = session.get(Note, note_id)
        assert stored is not None
        return {"token": stored.token, "id": note_id, "pid": os.getpid(), "conn_id": stored.conn_id}


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The WSGI entry point."""
    path = environ.get("PATH_INFO", "/")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    status, data = "200 OK", {}
    if path == "/":
        data = {"endpoints": ["/orm?token=X", "/stats"]}
    elif path == "/orm":
        token = (query.get("token") or [""])[0]
        if not _TOKEN.match(token):
            status, data = "400 Bad Request", {"error": "token: 1-100 of A-Z a-z 0-9 _ . : -"}
        else:
            try:
                data = _orm(token)
            except SATimeoutError as exc:
                status, data = "503 Service Unavailable", {"error": str(exc)}
    elif path == "/stats":
        data = {"pid": os.getpid(), "pool": get_engine().pool.stats().as_dict()}
    else:
        status, data = "404 Not Found", {"error": f"no such path {path!r}"}
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
