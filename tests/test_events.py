"""The event bus: numbered events, delivered to every listener in their order."""

from __future__ import annotations

import threading
import time

from cht import events as ev


def test_events_reach_a_listener_in_number_order_when_two_threads_publish_at_once():
    """A page's stream skips an event whose number it has passed: one delivered after a later
    one is lost to the page (a capture's thumbnail and text, once in a full suite)."""
    bus = ev.EventBus()
    seen: list[int] = []
    first_arrived = threading.Event()

    def listener(event: ev.Event) -> None:
        if event.seq == 1:
            first_arrived.set()
            time.sleep(0.2)  # the first publisher is still delivering ...
        seen.append(event.seq)

    bus.subscribe(listener)
    first = threading.Thread(target=bus.publish, args=(ev.Warning("scene"),))
    first.start()
    assert first_arrived.wait(5)
    bus.publish(ev.Warning("capture"))  # ... when another thread publishes
    first.join()
    assert seen == [1, 2]
    bus.publish(ev.Warning("after"))  # and delivery goes on in the publisher's own thread
    assert seen == [1, 2, 3]
