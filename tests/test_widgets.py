"""Channel widgets: the throttle, two-way bindings, event log, cache editor, and the same
bindings in a real ``beacon`` kernel talking comm messages to a simulated front end.

In-process tests use real channels on the session's Redis and a real peer process; the
widgets have no front end there, so "the front end moved the slider" is
``widget.set_state(...)``, exactly what ipywidgets runs when a comm update arrives.
Kernel tests read the comm traffic on iopub and send comm messages as a browser would.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

import gevent
import ipywidgets
import pytest
import redis as redis_py
from jupyter_helpers import STOCK_KERNEL_NAME, started_kernel
from jupyter_widget_helpers import (
    CommWatcher,
    comm_models,
    send_update,
    widget_views,
)
from peer import Peer
from waiting import wait_for

from beacon_ipy.channels import Cache, Channel, EventChannel, wire
from beacon_ipy.jupyter.registry import REGISTRY
from beacon_ipy.jupyter.throttle import Throttle
from beacon_ipy.widgets import DictEditor, bind, cache_editor, default_widget, event_log

pytestmark = pytest.mark.timeout(60)

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"test:widgets:{prefix}:{os.getpid()}:{next(_names)}"


@pytest.fixture
def peer(redis_url):
    with Peer("channel_peer.py") as p:
        p.expect("ready")
        yield p


@pytest.fixture(autouse=True)
def _close_widgets():
    yield
    REGISTRY.close_all()


# -- the main hub ----------------------------------------------------------------------


def test_work_handed_over_from_another_thread_runs_on_the_main_hub():
    """What a widget observer run in a kernel subshell's thread does (issue 12, §1):
    greenlets, timers and calls end up on the main thread's hub, which runs them."""
    import threading

    import gevent.event

    from beacon_ipy.jupyter import mainhub

    main = gevent.get_hub()
    assert mainhub.capture() is main and mainhub.on_main_thread()
    ran: list[tuple[str, object]] = []
    done = gevent.event.Event()
    throttle = Throttle(lambda value: ran.append(("throttled", value)), interval=0.05)
    outcome: dict[str, object] = {}

    def other_thread() -> None:
        outcome["on main thread"] = mainhub.on_main_thread()
        mainhub.run_soon(lambda: ran.append(("run_soon", gevent.get_hub() is main)))
        timer = mainhub.spawn_later(0.01, lambda: ran.append(("timer", gevent.get_hub()
                                                               is main)))
        outcome["timer parent is the main hub"] = timer.parent is main
        outcome["call"] = mainhub.call(lambda a, b: (a + b, gevent.get_hub() is main), 2, 3)
        try:
            mainhub.call(lambda: 1 / 0)
        except ZeroDivisionError:
            outcome["error re-raised"] = True
        for value in range(5):  # a burst: one call at once, the last value from a timer
            throttle(value)
        mainhub.run_soon(done.set)

    worker = threading.Thread(target=other_thread)
    worker.start()
    assert done.wait(10), "the main hub never ran what the other thread handed over"
    worker.join(10)
    wait_for(lambda: ("throttled", 4) in ran and any(r[0] == "timer" for r in ran),
             what="the throttle's last value and the timer")
    assert outcome == {"on main thread": False, "timer parent is the main hub": True,
                       "call": (5, True), "error re-raised": True}
    assert ("run_soon", True) in ran and ("timer", True) in ran
    assert not throttle.pending


# -- throttle --------------------------------------------------------------------------


def test_throttle_calls_at_once_when_quiet_then_at_most_once_per_interval():
    calls: list[tuple[float, int]] = []
    throttle = Throttle(lambda v: calls.append((time.monotonic(), v)), interval=0.02)
    throttle(0)
    assert [v for _, v in calls] == [0], "an isolated submission must be applied at once"
    start = time.monotonic()
    for i in range(1, 301):  # ~1 kHz for ~0.3 s
        throttle(i)
        gevent.sleep(0.001)
    elapsed = time.monotonic() - start
    wait_for(lambda: not throttle.pending, what="the trailing call")
    values = [v for _, v in calls]
    assert values[-1] == 300, "the last submitted value must always land"
    assert values == sorted(values), "calls carry submissions in order"
    # At most one call per interval over the span of the calls (plus the leading one).
    span = calls[-1][0] - calls[0][0]
    assert len(calls) <= span / 0.02 + 2, (len(calls), span, calls[:4])
    assert span >= elapsed * 0.9, "the calls must cover the burst"
    assert len(calls) < 100, "the throttle let most of the 300 submissions through"
    gaps = [b - a for (a, _), (b, _) in zip(calls, calls[1:], strict=False)]
    assert min(gaps) >= 0.02 * 0.9, min(gaps)


def test_throttle_flush_close_and_failures(caplog):
    seen = []
    throttle = Throttle(seen.append, interval=10)
    throttle(1)
    throttle(2)
    throttle(3)
    assert seen == [1] and throttle.pending
    throttle.flush()
    assert seen == [1, 3] and not throttle.pending
    throttle(4)
    throttle.close()
    throttle(5)
    assert seen == [1, 3], "close() drops the pending call and later submissions"

    def bad(value):
        if value == "boom":
            raise ValueError("broken update")
        seen.append(value)

    failing = Throttle(bad, interval=0)
    with caplog.at_level(logging.ERROR, logger="beacon_ipy.jupyter"):
        failing("boom")
    failing("after")
    assert seen[-1] == "after"
    assert "broken update" in caplog.text
    with pytest.raises(ValueError, match=">= 0"):
        Throttle(print, interval=-1)


# -- default widgets -------------------------------------------------------------------


@pytest.mark.parametrize(("value", "kwargs", "widget_type", "shown"), [
    (True, {}, ipywidgets.Checkbox, True),
    (3, {}, ipywidgets.IntText, 3),
    (2.5, {}, ipywidgets.FloatText, 2.5),
    (3, {"bounds": (0, 10)}, ipywidgets.IntSlider, 3),
    (2.5, {"bounds": (0, 10)}, ipywidgets.FloatSlider, 2.5),
    ("fast", {"choices": ["slow", "fast"]}, ipywidgets.Dropdown, "fast"),
    ("hello", {}, ipywidgets.Text, "hello"),
    ({"a": 1, "b": "x"}, {}, DictEditor, {"a": 1, "b": "x"}),
    ([1, 2], {}, ipywidgets.Text, "[1, 2]"),
    (None, {}, ipywidgets.Text, "None"),
])
def test_default_widget_follows_the_value(value, kwargs, widget_type, shown):
    channel = Channel(unique("default"), value=value)
    try:
        binding = bind(channel, **kwargs)
        assert type(binding.widget) is widget_type
        assert binding.widget.value == shown
        assert binding.widget.description == channel.name
    finally:
        channel.close()


# -- bindings, in process, with a real peer process ------------------------------------


@pytest.mark.parametrize("bounds, step, fmt", [
    ((0, 1), None, ".3f"), ((0.0, 0.3), None, ".4f"), ((0, 10.0), None, ".2f"),
    ((0, 1), 0.25, ".2f"), ((0, 1000.0), None, ".0f"),
])
def test_slider_readout_keeps_its_number_of_digits(bounds, step, fmt):
    """A float slider's readout has fixed decimals, enough for its step, so its width does
    not change as the value moves (".4g" showed 0.1000, 0.000, 0.05000; issue 12 §3)."""
    widget, _adapter = default_widget(0.1, bounds=bounds, step=step)
    assert isinstance(widget, ipywidgets.FloatSlider)
    assert widget.readout_format == fmt
    shown = {format(v, widget.readout_format) for v in (0.0, widget.step, 0.05, 0.1)}
    assert len({len(s) for s in shown}) == 1, shown


def test_binding_follows_a_peer_and_sets_it_without_echo(peer, redis_url):
    name = unique("two-way")
    channel = Channel(name, default_value=1.0)
    binding = bind(channel, bounds=(0.0, 10.0))
    # Count every message on the wire for this channel, whoever sends it. (Subscribed
    # only now: a subscriber that never answers queries would stall every reader.)
    raw = redis_py.Redis.from_url(redis_url).pubsub()
    raw.subscribe(name)
    raw.get_message(timeout=5)
    try:
        assert isinstance(binding.widget, ipywidgets.FloatSlider)
        assert binding.widget.value == 1.0
        peer.request(cmd="callback", name=name)
        # Another process sets the channel: the widget shows it...
        peer.request(cmd="set", name=name, value=4.5)
        wait_for(lambda: binding.widget.value == 4.5, what="the peer's value in the widget")
        # ...and the binding did not send it back: exactly one message on the wire
        # before a marker published once everything this process queued was written.
        assert channel.bus.flush()
        redis_py.Redis.from_url(redis_url).publish(name, b"marker")
        values = [m for m in map(wire.decode, _until_marker(raw))
                  if isinstance(m, wire.WireValue)]  # (queries and replies aside)
        assert [v.value for v in values] == [4.5], values
        # The front end moves the slider: every process sees the new value.
        binding.widget.set_state({"value": 7.25})
        assert channel.value == 7.25
        assert peer.expect("callback")["value"] == 7.25
        # A value beyond the slider's range widens it; it is not clamped back into
        # the channel (which would overwrite the peer's value).
        peer.request(cmd="set", name=name, value=42.0)
        wait_for(lambda: binding.widget.value == 42.0, what="the out-of-range value")
        assert binding.widget.max == 42.0
        assert channel.value == 42.0
    finally:
        raw.close()
        channel.close()


def _until_marker(pubsub, timeout: float = 10.0) -> list:
    """Messages received before the b"marker" message."""
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.5)
        if msg is None or msg["type"] != "message":
            continue
        if msg["data"] == b"marker":
            return out
        out.append(msg["data"])
    raise AssertionError(f"no marker within {timeout} s; got {out}")


def test_binding_keeps_up_with_a_1khz_channel(peer):
    name = unique("fast")
    channel = Channel(name, default_value=0)
    try:
        binding = bind(channel, interval=0.05)
        applied = []
        binding.widget.observe(lambda change: applied.append(change.new), "value")
        values = list(range(1, 501))
        start = time.monotonic()
        peer.request(cmd="set_many", name=name, values=values, timeout=30)
        wait_for(lambda: binding.widget.value == 500, what="the last value in the widget")
        elapsed = time.monotonic() - start
        assert channel.value == 500
        # Throttled: at most one widget update per interval, not one per value.
        assert len(applied) <= elapsed / 0.05 + 2, (len(applied), elapsed)
        assert applied == sorted(applied) and applied[-1] == 500
    finally:
        channel.close()


def test_bad_input_is_reported_and_the_channel_keeps_its_value():
    channel = Channel(unique("literal"), value=[1, 2])
    try:
        binding = bind(channel)
        binding.widget.set_state({"value": "[1, 2, 3]"})
        assert channel.value == [1, 2, 3]
        binding.widget.set_state({"value": "[1, 2"})
        assert channel.value == [1, 2, 3]
        assert "not a Python literal" in binding.error.value
        # Something that cannot travel on a channel: refused, and said.
        binding.widget.set_state({"value": "{1: object}"})
        assert channel.value == [1, 2, 3]
        assert binding.error.value
        # A good value clears the error.
        binding.widget.set_state({"value": "(4, 5)"})
        assert channel.value == (4, 5) and binding.error.value == ""
        # A value the widget cannot show is reported, not applied.
        ints = Channel(unique("ints"), value=3)
        int_binding = bind(ints)
        ints.value = 2.5
        wait_for(lambda: int_binding.error.value, what="the error shown")
        assert "not an integer" in int_binding.error.value
        assert ints.value == 2.5
        ints.close()
    finally:
        channel.close()


def test_readonly_binding_and_user_widget():
    channel = Channel(unique("readonly"), value=5)
    try:
        slider = ipywidgets.IntSlider(min=0, max=10)
        binding = bind(channel, slider, readonly=True)
        assert binding.widget is slider and slider.value == 5 and slider.disabled
        slider.value = 9  # ignored: read-only
        assert channel.value == 5
        channel.value = 7
        wait_for(lambda: slider.value == 7, what="the value in the user's slider")
        binding.close()
        channel.value = 8  # own sets run callbacks synchronously: none is left
        assert slider.value == 7, "a closed binding must not update the widget"
        assert slider.comm is not None, "the user's widget is theirs: not closed"
        with pytest.raises(TypeError, match="ipywidget"):
            bind(channel, "not a widget")
    finally:
        channel.close()


def test_dict_editor_edits_one_key_for_every_process(peer):
    name = unique("dict")
    channel = Channel(name, value={"gain": 2, "mode": "fast", "roi": [0, 10]})
    try:
        binding = bind(channel)
        editor = binding.widget
        assert isinstance(editor, DictEditor)
        fields = editor.fields
        assert fields["gain"].value == "2" and fields["mode"].value == "fast"
        fields["roi"].set_state({"value": "[5, 15]"})
        assert channel.value == {"gain": 2, "mode": "fast", "roi": [5, 15]}
        assert peer.request(cmd="get", name=name)["value"]["roi"] == [5, 15]
        fields["gain"].set_state({"value": "nope("})
        assert channel.value["gain"] == 2 and "gain" in editor.error
        peer.request(cmd="set", name=name, value={"gain": 3, "mode": "slow", "roi": [1, 2]})
        wait_for(lambda: editor.fields["mode"].value == "slow", what="the peer's dict")
        peer.request(cmd="set", name=name, value={"other": 1})
        wait_for(lambda: list(editor.fields) == ["other"], what="rebuilt fields")
    finally:
        channel.close()


def test_dict_editor_adds_and_removes_keys_for_every_process(peer):
    """Cached MCA parameters and the like are dicts: keys are added and removed from the
    editor, both ways (issue 12, §3)."""
    name = unique("dictkeys")
    channel = Channel(name, value={"gain": 2, "mode": "fast"})
    try:
        editor = bind(channel).widget
        gain_field = editor.fields["gain"]
        editor.new_key.value, editor.new_value.value = "offset", "0.5"
        editor.add_button.click()
        # rows of the keys that stay are kept: a button about to be clicked stays valid
        assert editor.fields["gain"] is gain_field and gain_field.comm is not None
        assert channel.value == {"gain": 2, "mode": "fast", "offset": 0.5}
        wait_for(lambda: peer.request(cmd="get", name=name)["value"].get("offset") == 0.5,
                 what="the added key in another process")
        assert list(editor.fields) == ["gain", "mode", "offset"]
        assert editor.new_key.value == "" and editor.error == ""
        # errors say what to do; the channel keeps its value
        editor.new_key.value, editor.new_value.value = "gain", "3"
        editor.add_button.click()
        assert "already there" in editor.error
        editor.new_key.value, editor.new_value.value = "label", "plain text"
        editor.add_button.click()
        assert "not a Python literal" in editor.error and "label" not in channel.value
        editor.new_key.value = ""
        editor.add_button.click()
        assert "type the name" in editor.error
        # remove a key: every process gets the dict without it
        remove = next(c for c in editor.children[2].children if isinstance(c, ipywidgets.Button))
        remove.click()
        assert channel.value == {"gain": 2, "offset": 0.5}
        wait_for(lambda: peer.request(cmd="get", name=name)["value"] == {"gain": 2,
                                                                         "offset": 0.5},
                 what="the removed key gone in another process")
        # a key added by another process shows as a new field
        peer.request(cmd="set", name=name, value={"gain": 2, "offset": 0.5, "roi": [1, 9]})
        wait_for(lambda: list(editor.fields) == ["gain", "offset", "roi"], what="new field")
        assert editor.fields["roi"].value == "[1, 9]"
    finally:
        channel.close()


def test_event_log_is_bounded_and_live(peer):
    name = unique("events")
    channel = EventChannel(name)
    try:
        log = event_log(channel, maxlen=5)
        peer.request(cmd="event_channel", name=name)
        peer.request(cmd="post", name=name, values=list(range(12)))
        wait_for(lambda: log.count == 12, what="12 events")
        assert [e for _, e in log.events] == list(range(7, 12))
        def shown():
            text = re.sub(r"<[^>]+>", "", log.view.value)
            return [line.split()[-1] for line in text.splitlines()]

        wait_for(lambda: shown() == ["11", "10", "9", "8", "7"], what="newest events first")
        assert "12 events" in log.header.value
        log.clear()
        assert not log.events and log.count == 12
    finally:
        channel.close()


class Motor:
    def __init__(self, name):
        self.name = name


def test_cache_editor_edits_and_resets_for_every_process(peer):
    motor = Motor(unique("motor"))
    velocity = Cache(motor, "velocity", default_value=1.0)
    acceleration = Cache(motor, "acceleration", default_value=0.5)
    try:
        velocity.value = 3.0
        editor = cache_editor(motor)
        rows = {b.widget.description: b for b in editor.bindings}
        assert set(rows) == {"velocity", "acceleration"}
        assert rows["velocity"].widget.value == 3.0
        rows["acceleration"].widget.set_state({"value": 2.0})
        assert peer.request(cmd="get", name=acceleration.name)["value"] == 2.0
        assert peer.request(cmd="get", name=velocity.name)["value"] == 3.0
        peer.request(cmd="callback", name=velocity.name)
        editor.reset_button.click()  # clear_cache(motor): defaults in every process
        assert velocity.value == 1.0 and acceleration.value == 0.5
        assert peer.expect("callback")["value"] == 1.0
        wait_for(lambda: rows["velocity"].widget.value == 1.0, what="the reset shown")
        # A list of Cache channels works too; refresh picks up new cached values.
        by_list = cache_editor([velocity])
        assert [b.channel for b in by_list.bindings] == [velocity]
        Cache(motor, "offset", default_value=0)
        editor.refresh_button.click()
        assert len(editor.bindings) == 3
        editor.close()
        assert all(b.closed for b in editor.bindings)
    finally:
        for channel in (velocity, acceleration):
            channel.close()


# -- in a real kernel: comm messages ---------------------------------------------------


@pytest.fixture(scope="module")
def kernel(kernels_dir, redis_url):
    with started_kernel(kernels_dir) as k:
        k.run("%load_ext beacon_ipy\nfrom beacon_ipy.widgets import bind\n"
              "from beacon_ipy.channels import Channel")
        yield k


def test_peer_changes_reach_the_front_end_and_front_end_changes_reach_peers(kernel, peer):
    name = unique("kernel")
    res = kernel.run(f"b = bind(Channel({name!r}, default_value=1), bounds=(0, 100))\n"
                     f"display(b)\nb.widget.model_id")
    slider_id = eval(res.result)
    assert comm_models(res)[slider_id] == "IntSliderModel"
    assert widget_views(res), "the binding displayed as a widget view"
    watcher = CommWatcher(kernel)
    # Another process sets the channel while the kernel is idle: an update for the
    # slider arrives on iopub (we send the kernel nothing meanwhile).
    peer.request(cmd="set", name=name, value=42)
    watcher.wait(slider_id, lambda u: u.method == "update" and u.state.get("value") == 42)
    # The "browser" moves the slider: another process sees the new value.
    peer.request(cmd="callback", name=name)
    send_update(kernel, slider_id, {"value": 17})
    assert peer.expect("callback")["value"] == 17
    assert kernel.eval(f"Channel({name!r}).value") == 17
    # No echo: the kernel acknowledged the front end's value but sent no new "update".
    watcher.drain()
    assert 17 not in watcher.values(slider_id)


def follows_after_subshell_key_presses(kernel, peer) -> None:
    """Outside set, one key press and quick key presses delivered on a subshell, outside
    sets again: the slider shows each outside set within a second."""
    subshell = kernel.create_subshell()
    name = unique("subshell")
    res = kernel.run(f"from beacon_ipy.widgets import bind\n"
                     f"from beacon_ipy.channels import Channel\n"
                     f"b = bind(Channel({name!r}, default_value=0.1), bounds=(0, 1))\n"
                     f"display(b)\nb.widget.model_id")
    slider_id = eval(res.result)
    watcher = CommWatcher(kernel)

    def outside_set(value: float) -> None:
        peer.request(cmd="set", name=name, value=value)
        watcher.wait(slider_id, lambda u: u.method == "update" and u.state.get("value")
                     == value, timeout=1.0)

    outside_set(0.25)
    peer.request(cmd="callback", name=name)
    send_update(kernel, slider_id, {"value": 0.3}, subshell)  # one key press
    assert peer.expect("callback")["value"] == 0.3
    outside_set(0.5)
    for step in range(1, 6):  # quick key presses, faster than the throttle interval
        send_update(kernel, slider_id, {"value": 0.5 + step / 100}, subshell)
    kernel.wait_until(f"Channel({name!r}).value == 0.55", timeout=5)
    for value in (0.7, 0.2, 0.9):
        outside_set(value)
    assert kernel.eval("b.throttle.pending") is False


def test_slider_follows_outside_sets_after_key_presses_delivered_on_a_subshell(kernel, peer):
    """JupyterLab >= 4.4 sends widget messages to a subshell: ipykernel 7 handles them
    in another thread, with its own gevent hub that never runs. Whatever the extension
    does because of them (setting the channel, the throttle's timer) must run on the
    main hub, or the slider stops following other processes for good (issue 12, §1)."""
    follows_after_subshell_key_presses(kernel, peer)


def test_the_same_on_a_stock_kernel_with_the_gevent_integration(kernels_dir, peer):
    """On a stock kernel the main hub runs in slices between the kernel's iterations; a
    hand-over from a subshell wakes it all the same."""
    with started_kernel(kernels_dir, STOCK_KERNEL_NAME) as k:
        k.run("%load_ext beacon_ipy")
        follows_after_subshell_key_presses(k, peer)


def test_a_1khz_channel_does_not_flood_the_front_end(kernel, peer):
    name = unique("flood")
    res = kernel.run(f"b = bind(Channel({name!r}, default_value=0))\ndisplay(b)\n"
                     f"b.widget.model_id")
    widget_id = eval(res.result)
    watcher = CommWatcher(kernel)
    count = 1000
    start = time.monotonic()
    peer.request(cmd="set_many", name=name, values=list(range(1, count + 1)), timeout=30)
    watcher.wait(widget_id, lambda u: u.state.get("value") == count)
    elapsed = time.monotonic() - start
    watcher.drain(quiet=0.2)
    values = watcher.values(widget_id)
    assert values[-1] == count, "the last value must land"
    assert values == sorted(values)
    # 50 ms throttle: ~20 updates per second of traffic, instead of ~1000.
    assert len(values) <= elapsed / 0.05 + 3, (len(values), elapsed)
    assert len(values) < count / 5


def test_channels_display_as_live_widgets_in_jupyter_and_as_text_elsewhere(kernel, peer):
    name = unique("display")
    res = kernel.run(f"Channel({name!r}, default_value='idle')")
    assert res.result == f"Channel({name!r}) -> 'idle'"
    (view,) = widget_views(res)
    text_id = next(c for c, m in comm_models(res).items() if m == "TextModel")
    watcher = CommWatcher(kernel)
    peer.request(cmd="set", name=name, value="moving")
    watcher.wait(text_id, lambda u: u.state.get("value") == "moving")
    assert view != text_id  # the view is the box holding the text field
    # Shown again (a cell re-run): another view of the same live widget, no new binding
    # that would keep updating a cleared output.
    again = kernel.run(f"Channel({name!r})")
    assert widget_views(again) == [view] and not comm_models(again)
    # An EventChannel displays as a live event log.
    events = unique("display-events")
    res = kernel.run(f"from beacon_ipy.channels import EventChannel\nEventChannel({events!r})")
    assert res.result == f"EventChannel({events!r})"
    assert "HTMLModel" in comm_models(res).values() and widget_views(res)
    # Outside Jupyter, the text repr (no IPython involved).
    channel = Channel(name)
    try:
        assert channel.value == "moving"
        assert repr(channel) == f"Channel({name!r}) -> 'moving'"
    finally:
        channel.close()
