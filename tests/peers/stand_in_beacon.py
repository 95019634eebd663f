"""A minimal Beacon server speaking BLISS's framing, for the error cases a real one cannot show.

``python stand_in_beacon.py SETTINGS_ADDRESS DATA_MODE [DATA_ADDRESS]`` listens on a free
localhost TCP port, prints it, and answers every client as ``bliss/beacon/beacon_api.py`` does:
``REDIS_QUERY`` (30) → ``REDIS_QUERY_ANSWER`` (31, SETTINGS_ADDRESS such as
``localhost:/path/redis.sock``), and ``REDIS_DATA_SERVER_QUERY`` (32, ``key|``) according to
DATA_MODE: ``ok`` → 34 ``key|host|port`` from DATA_ADDRESS (``host:port``); ``failed`` → 33
``key|reason``; ``unknown`` → -1 echoing the message (a Beacon without a data server);
``silent`` → nothing. It serves until killed; it counts clients on stderr.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading

HEADER = struct.Struct("<ii")


def serve_client(conn: socket.socket, settings: bytes, mode: str, data: bytes) -> None:
    buffer = b""
    with conn:
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                return
            buffer += chunk
            while len(buffer) >= HEADER.size:
                kind, length = HEADER.unpack_from(buffer)
                if len(buffer) < HEADER.size + length:
                    break
                message = buffer[HEADER.size:HEADER.size + length]
                buffer = buffer[HEADER.size + length:]
                key = message.partition(b"|")[0]
                if kind == 30:
                    conn.sendall(HEADER.pack(31, len(settings)) + settings)
                elif kind == 32 and mode == "ok":
                    body = key + b"|" + data.replace(b":", b"|", 1)
                    conn.sendall(HEADER.pack(34, len(body)) + body)
                elif kind == 32 and mode == "failed":
                    body = key + b"|no data server configured"
                    conn.sendall(HEADER.pack(33, len(body)) + body)
                elif kind == 32 and mode == "unknown" or kind not in (30, 32):
                    conn.sendall(HEADER.pack(-1, len(message)) + message)


def main() -> int:
    settings = sys.argv[1].encode()
    mode = sys.argv[2]
    data = sys.argv[3].encode() if len(sys.argv) > 3 else b""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    print(server.getsockname()[1], flush=True)
    clients = 0
    while True:
        conn, _ = server.accept()
        clients += 1
        print(f"client {clients}", file=sys.stderr, flush=True)
        threading.Thread(target=serve_client, args=(conn, settings, mode, data),
                         daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
