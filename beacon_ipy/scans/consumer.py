"""One way to consume scans: a :class:`ScanConsumer` driven by a :class:`ScanRunner`.

As event_model's ``DocumentRouter`` or bluesky's ``CallbackBase``: a consumer is a class
with one method per kind of event; it never reads Redis, never loops, never reconnects.
The runner (:mod:`beacon_ipy.scans.runner`) does all of that, on blissdata 2.x, for
scans of ANY blissdata producer (real BLISS 2.4, beacon-ipy's producer, a script).

Writing a consumer
------------------
::

    from beacon_ipy.scans import ScanConsumer, ScanRunner

    class Printer(ScanConsumer):
        def new_scan(self, scan):
            print("scan", scan.number, scan.info["title"])
        def new_stream(self, scan, stream):
            print("  stream", stream.name, stream.kind, stream.shape)
        def new_data(self, scan, stream, block):
            print("  ", stream.name, block.start, block.stop)
        def end_scan(self, scan, end):
            print("end", scan.number, end.reason)

    runner = ScanRunner(Printer(), session="demo")   # from_next=True: new scans only
    runner.run()              # blocks (gevent-cooperatively) until runner.stop()
    # or: greenlet = runner.spawn()  ...  runner.stop(); greenlet.join()

Methods (override those you need; the defaults do nothing, except ``data_lost``):

``new_scan(scan) -> bool | None``
    A scan of the followed session appeared. ``scan`` is a :class:`ScanHandle` (below).
    Return ``False`` to ignore it (no further call for this scan): this is how a
    consumer that resumes (e.g. a saver restarted with ``from_next=False``) skips
    scans it already finished.
``new_stream(scan, stream)``
    A data stream of the scan, as a :class:`~beacon_ipy.scans.streams.StreamDescription`
    (name, kind 0d/1d/image, dtype, shape of one point, unit, display name, image file
    info). blissdata declares every stream before the scan is PREPARED, so all
    ``new_stream`` calls of a scan come together, right after ``new_scan``, in the
    producer's declaration order.
``new_data(scan, stream, block)``
    New points of one stream: ``block.start`` (index of its first point), ``block.stop``
    (exclusive), and ``block.data`` (numpy array of shape ``(stop-start, *stream.shape)``,
    read-only) for 0d/1d streams (:class:`~beacon_ipy.scans.events.ChannelData`), or
    ``block.references`` (one :class:`~beacon_ipy.scans.events.ImageRef` ``(file, path,
    index)`` per image) for image streams (:class:`~beacon_ipy.scans.events.ImageData`).
    Per stream, blocks come in order, contiguous, without gaps; several streams' blocks
    interleave as they were read.
``end_scan(scan, end)``
    Last call for the scan, AFTER every block of every stream (the streams are sealed),
    once the scan is CLOSED (``scan.info`` is final: ``end_reason``,
    ``positioners_end``...). ``end`` is a :class:`~beacon_ipy.scans.events.ScanEnd`:
    ``end.reason`` an :class:`~beacon_ipy.scans.events.EndReason` value (SUCCESS,
    FAILURE, ABORTED, DELETION, DIED), ``end.by`` (``"producer"``, ``"watchdog"``,
    ``"deleted"``), ``end.counts`` (points per stream), ``end.detail`` (words).
``data_lost(scan, stream, error)``
    Points of ``stream`` were trimmed from Redis (BLISS's memory tracker, or beacon-ipy's
    :mod:`~beacon_ipy.scans.memory`) before they were read. ``error`` is a
    :class:`~beacon_ipy.scans.errors.ScanDataTrimmedError` naming the scan, the stream and
    the lost index range. The default RAISES it (the runner stops, the error propagates
    out of ``run()``): never a silent gap. Override to recover (e.g. read the saved file),
    after which the runner continues with the points that are still there.

An exception raised by a consumer method propagates out of ``run()`` (a consumer bug is
never swallowed). Several consumers can share one runner (``ScanRunner([a, b])``); they
are called in order, and ``new_scan`` returning False drops the scan for that consumer
only.

:class:`ScanHandle` (the ``scan`` argument), read-only:
``key`` (blissdata key, unique), ``session``, ``number``, ``name`` (identity name, e.g.
``"ascan"``), ``node_name`` (``"<number>_<name>"``, the seed's node name), ``identity``
(dict), ``path`` (absolute directory of its data, or None), ``info`` (scan_info, refreshed
at each state change), ``state`` (blissdata's ``ScanState``: CREATED < PREPARED < STARTED
< STOPPED < CLOSED), ``streams`` (name -> StreamDescription), ``end`` (ScanEnd or None),
``get(name, start=0, stop=None)`` (numpy array of points already in Redis),
``references(name, start=0, stop=None)`` (ImageRefs), ``get_image(name, index)``, and
``blissdata_scan`` (the underlying read-only ``blissdata.Scan``, for anything else).

The runner's rules (what ``ScanRunner`` guarantees)
----------------------------------------------------
- **Following a session**: new scans are found through blissdata's scan history
  (``DataStore.get_next_scan``), filtered on ``identity.session``. ``from_next=True``
  (default): scans created after the runner started only. ``from_next=False``: first the
  session's scans still in Redis (``search_existing_scans``, oldest first, each from its
  first point), then new ones. ``scan_key=...`` follows one scan only and ``run()``
  returns after its ``end_scan``.
- **Cursors**: one blissdata ``CursorGroup`` per followed scan; data is read with
  non-blocking ``read`` calls. The only wait is a single ``XREAD BLOCK`` over the scan
  history, the followed scans' state streams and their data streams, done on a private
  connection watched by the gevent hub: it never freezes other greenlets, in a
  monkey-patched process or a stock kernel alike, and :meth:`ScanRunner.stop` (or a
  ``StopHandler``) wakes it at once.
- **Scan-load race** (blissdata reads a scan's JSON and its state in two requests): a
  scan seen at state >= PREPARED without streams is reloaded, and once more at CLOSED,
  so no stream is ever missed (:mod:`beacon_ipy.scans.bdgaps`).
- **Redis lost**: the runner retries with back-off (0.1 s doubling to 2 s) for
  ``reconnect_timeout`` seconds (default 30), then raises ``redis.ConnectionError``.
  Followed scans resume where their cursors were.
- **Dead producers** (blissdata has no heartbeat): a scan whose producer is beacon-ipy
  carries a liveness key (``scan_info["beacon_ipy"]["liveness_key"]``, a Redis key with
  a TTL the producer refreshes): when the key is gone and the scan is not CLOSED, the
  runner ends it at once with reason DIED (``by="watchdog"``). Other producers (BLISS):
  a scan not CLOSED with no new state or data entry for ``idle_limit`` seconds (default
  :data:`DEFAULT_IDLE_LIMIT`, env ``BEACON_IPY_SCAN_IDLE_LIMIT``; None = never) is
  ended with reason DIED. The runner writes nothing into the scan: other readers are
  unaffected.
- **Deleted scans** (``delete_scan``, memory tracker expiry): ``end_scan`` with reason
  DELETION (``by="deleted"``) after whatever data could still be read.
- **Trimmed data**: ``data_lost`` (see above), never a gap. A saver that must not lose
  anything runs with ``hold_as="<name>"``: beacon-ipy's memory tracker then never trims
  points this runner has not read (:mod:`beacon_ipy.scans.memory`).
- **Stopping**: ``stop()`` from any greenlet or thread, ``timeout=`` seconds, or a
  ``StopHandler`` shared with other walks. ``run()`` then returns without calling
  ``end_scan`` for scans still running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from beacon_ipy.scans.errors import ScanDataTrimmedError
    from beacon_ipy.scans.events import ChannelData, ImageData, ScanEnd
    from beacon_ipy.scans.handle import ScanHandle
    from beacon_ipy.scans.streams import StreamDescription

DEFAULT_IDLE_LIMIT = 3600.0
"""Seconds without any new entry after which a foreign (non beacon-ipy) scan that is not
CLOSED is considered dead. Long on purpose: a BLISS scan may wait on a slow count."""


class ScanConsumer:
    """Base class of scan consumers: override the event methods you need.

    See the module docstring for the call order and guarantees. ``wants_data = False``
    (class or instance attribute): the runner never reads this consumer's scans' data
    streams (``new_data`` is never called; ``new_stream`` still is).
    """

    wants_data: bool = True

    def new_scan(self, scan: ScanHandle) -> bool | None:
        """A scan appeared; return False to ignore it."""
        return None

    def new_stream(self, scan: ScanHandle, stream: StreamDescription) -> None:
        """A stream of ``scan`` (all come right after ``new_scan``)."""

    def new_data(self, scan: ScanHandle, stream: StreamDescription,
                 block: ChannelData | ImageData) -> None:
        """Points ``block.start`` to ``block.stop`` of ``stream``."""

    def end_scan(self, scan: ScanHandle, end: ScanEnd) -> None:
        """The scan ended; every block was delivered before."""

    def data_lost(self, scan: ScanHandle, stream: StreamDescription,
                  error: ScanDataTrimmedError) -> None:
        """Points were trimmed before they were read: raises ``error`` by default."""
        raise error


class CallbackConsumer(ScanConsumer):
    """A consumer built from functions (any of them may be omitted)."""

    def __init__(self, new_scan=None, new_stream=None, new_data=None, end_scan=None,
                 data_lost=None):
        self._callbacks: dict[str, Any] = {
            "new_scan": new_scan, "new_stream": new_stream, "new_data": new_data,
            "end_scan": end_scan, "data_lost": data_lost}

    def new_scan(self, scan):
        cb = self._callbacks["new_scan"]
        return None if cb is None else cb(scan)

    def new_stream(self, scan, stream):
        if self._callbacks["new_stream"] is not None:
            self._callbacks["new_stream"](scan, stream)

    def new_data(self, scan, stream, block):
        if self._callbacks["new_data"] is not None:
            self._callbacks["new_data"](scan, stream, block)

    def end_scan(self, scan, end):
        if self._callbacks["end_scan"] is not None:
            self._callbacks["end_scan"](scan, end)

    def data_lost(self, scan, stream, error):
        if self._callbacks["data_lost"] is None:
            raise error
        self._callbacks["data_lost"](scan, stream, error)
