"""``beacon-ipy where``: which Redis each role uses, and why (one line per role).

``settings`` is the Redis of channels (BLISS's settings Redis), ``data`` the Redis of scans
(BLISS's data Redis, blissdata 2.x). Each line names the server, the rule that chose it
(argument, ``--redis-url``, ``BEACON_REDIS_URL``, ``BEACON_DATA_REDIS_URL``, ``BEACON_HOST``
or the embedded server) and whether it answers. Nothing is started: an embedded server that
does not run yet is reported as such. Exit status 0 when every role's server answers, 2 if a
role cannot be resolved or reached.
"""

from __future__ import annotations

import argparse
import json

import redis

from beacon_ipy.connection.address import ROLES, explain, redacted
from beacon_ipy.connection.client import new_client
from beacon_ipy.connection.errors import RedisUnavailableError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _answers(url: str) -> str | None:
    """``None`` if the server at ``url`` answers PING, else why not."""
    client = new_client(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
        return None
    except redis.exceptions.RedisError as exc:
        return (str(exc) or type(exc).__name__).rstrip(".")
    finally:
        client.close()


def run(args: argparse.Namespace) -> int:
    rows = []
    for role in ROLES:
        try:
            choice = explain(role=role)
        except (RedisUnavailableError, ValueError) as exc:
            rows.append({"role": role, "url": None, "source": None, "why": None,
                         "error": str(exc)})
            continue
        error = _answers(choice.url) if choice.url else "no URL"
        if error and choice.source == "embedded":
            error = None  # not running yet: started on first use
            state = "not running yet, started on first use"
        else:
            state = "answers" if error is None else f"does not answer: {error}"
        rows.append({"role": role, "url": choice.url, "source": choice.source,
                     "why": choice.why(), "state": state, "error": error})
    if args.json:
        print(json.dumps(rows))
    else:
        width = max(len(r) for r in ROLES)
        for row in rows:
            if row["url"] is None:
                print(f"{row['role']:<{width}}  error: {row['error']}")
            else:
                print(f"{row['role']:<{width}}  {redacted(row['url'])}  <- {row['why']}; "
                      f"{row['state']}")
    return 2 if any(row["error"] for row in rows) else 0
