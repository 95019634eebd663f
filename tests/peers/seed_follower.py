"""Peer: the seed's listener API following a session live, given only the environment.

Usage: seed_follower.py SESSION NSCANS
Prints {"ready": true} once listening, then per ended scan one JSON line:
{"number", "title", "reason", "data": {channel name: values}} (images: frame count).
"""

import json
import sys

import gevent.event

from beacon_ipy import get_session_node

session, nscans = sys.argv[1], int(sys.argv[2])
started = gevent.event.Event()
started.rawlink(lambda _: print(json.dumps({"ready": True}), flush=True))
data: dict = {}
ended = 0
for event_type, node, event in get_session_node(session).walk_on_new_events(
        from_next=True, started_event=started):
    if event_type == "NEW_DATA" and node.type == "channel":
        data.setdefault(node.scan.key, {}).setdefault(node.name, []).extend(event.data.tolist())
    elif event_type == "NEW_DATA":
        values = data.setdefault(node.scan.key, {}).setdefault(node.name, [])
        values.extend([None] * len(event))
    elif event_type == "END_SCAN":
        print(json.dumps({"number": node.scan_nb, "title": node.info["title"],
                          "reason": event.reason, "data": data.pop(node.key, {})}), flush=True)
        ended += 1
        if ended >= nscans:
            break
