"""Forwarding of ComfyUI's execution events to a framecast producer.

When ``FRAMECAST_FORWARD_EVENTS`` is on, the package wraps the running
``PromptServer``'s ``send_json`` at import (``install_from_env``), as
comfyui-deploy's custom routes do. Every event ComfyUI sends to its own
websocket clients (``status``, ``execution_start``, ``executing``,
``progress``, ``executed``, ``execution_cached``, ``execution_error``,
``execution_success``, and those of other custom nodes) is then also
published to ``POST {producer}/v1/events?client_id=<sid>`` as
``{"event": <name>, "data": <data>}``; an event ComfyUI sends with sid None
is published without client_id, to every client. Like comfyui-deploy, the
package adds two events of its own, sent after the event they come from:

- ``live_status`` ``{"prompt_id", "current_node", "progress"}`` after each
  ``executing`` of a new node: the node's class_type, and the share of the
  workflow's nodes executed or cached so far, 0..1 rounded to 2 places;
- ``elapsed_time`` ``{"prompt_id", "elapsed_time"}`` when a prompt
  finishes (``execution_success``, or ``executing`` with node None,
  whichever comes first): seconds since its ``execution_start``.

ComfyUI is never slowed by the producer. The wrapper only encodes the
event and puts it in a bounded queue (QUEUE_EVENTS events, QUEUE_BYTES
bytes); one background thread posts the queue in order, retrying a
producer that is down or answers 503. When the queue is full:

- a ``progress`` event makes room by dropping the oldest queued
  ``progress`` event, or is dropped itself when none is queued;
- any other event makes room the same way; when no ``progress`` event is
  queued it waits for room, at most FULL_WAIT seconds, without blocking
  the event loop (only ComfyUI's delivery of its next messages to its own
  sockets waits), and is then dropped. While the producer is unreachable
  it does not wait. Later events wait behind it, so the order holds;
  a ``progress`` event arriving while others wait is dropped.

Every drop is counted (``Forwarder.stats()``) and logged (the first at
once, then at most one line per LOG_EVERY seconds with the totals).
"""

import asyncio
import collections
import contextlib
import http.client
import json
import logging
import os
import threading
import time
import urllib.parse
import uuid

from . import publish

log = logging.getLogger(__name__)

# The producer's limits on an event.
MAX_EVENT = 64 << 10
MAX_EVENT_NAME = 64

# The queue between ComfyUI and the sender thread.
QUEUE_EVENTS = 1024
QUEUE_BYTES = 8 << 20
# FULL_WAIT bounds how long an event other than progress waits for room.
FULL_WAIT = 1.0
_POLL = 0.01

# Retry pauses of the sender while the producer is down or answers 503.
RETRY_MIN, RETRY_MAX = 0.2, 5.0
# LOG_EVERY is the least time between two log lines of one kind.
LOG_EVERY = 10.0
# TRACKED_PROMPTS bounds the prompts whose progress is tracked at once.
TRACKED_PROMPTS = 64

_FULL, _QUEUED, _EVICTED = "full", "queued", "evicted"

# _LABELS name the counters in log lines.
_LABELS = {
    "dropped_progress": "progress events dropped",
    "dropped": "other events dropped",
    "refused": "events refused",
    "invalid": "events not forwardable",
    "retries": "failed attempts",
}


def forward_enabled(environ=None):
    """Whether FRAMECAST_FORWARD_EVENTS asks to forward events; ValueError
    for a value that is neither on nor off."""
    env = os.environ if environ is None else environ
    return publish.env_flag(env, "FRAMECAST_FORWARD_EVENTS", "forward")


def validate_event_name(name):
    """Return name if the producer accepts it as an event name, else raise ValueError."""
    allowed = (f"allowed: 1..{MAX_EVENT_NAME} bytes of printable ASCII 0x20-0x7E, "
               "not starting or ending with a space")
    if not isinstance(name, str):
        raise ValueError(f"event name {name!r} is a {type(name).__name__}; {allowed}")
    if not name or len(name) > MAX_EVENT_NAME or name[0] == " " or name[-1] == " ":
        raise ValueError(f"event name {name!r} is not allowed; {allowed}")
    for i, c in enumerate(name):
        if not " " <= c <= "~":
            raise ValueError(f"event name {name!r} has {c!r} at offset {i}; {allowed}")
    return name


class Item:
    """One encoded event: its name, body, client id ("" for every client)
    and the Idempotency-Key its retries share."""

    __slots__ = ("name", "body", "client_id", "key")

    def __init__(self, name, body, client_id):
        self.name = name
        self.body = body
        self.client_id = client_id
        self.key = uuid.uuid4().hex

    @property
    def progress(self):
        return self.name == "progress"


class EventQueue:
    """A FIFO of Items bounded in count and bytes, safe for any thread.

    offer never blocks: when the item does not fit it drops the oldest
    queued progress items until it does, and refuses it when no progress
    item is left to drop (a progress item is never queued in place of
    another kind).
    """

    def __init__(self, max_events=QUEUE_EVENTS, max_bytes=QUEUE_BYTES):
        if max_events < 1 or max_bytes < MAX_EVENT:
            raise ValueError(f"queue of {max_events} events, {max_bytes} bytes; want >= 1 event, >= {MAX_EVENT} bytes")
        self.max_events, self.max_bytes = max_events, max_bytes
        self._items = collections.deque()
        self._bytes = 0
        self._unfinished = 0  # queued or being sent
        self._closed = False
        self._cond = threading.Condition()

    def _fits(self, item):
        return len(self._items) < self.max_events and self._bytes + len(item.body) <= self.max_bytes

    def offer(self, item):
        """Queue item; return (outcome, progress items dropped for it), the
        outcome _QUEUED, _EVICTED (queued after dropping), or _FULL."""
        with self._cond:
            if self._closed:
                return _FULL, 0
            evicted = []
            while not self._fits(item):
                i = next((i for i, q in enumerate(self._items) if q.progress), None)
                if i is None:
                    # Put back what was taken out: nothing changes.
                    for j, q in reversed(evicted):
                        self._items.insert(j, q)
                        self._bytes += len(q.body)
                    return _FULL, 0
                evicted.append((i, self._items[i]))
                self._bytes -= len(self._items[i].body)
                del self._items[i]
            self._items.append(item)
            self._bytes += len(item.body)
            self._unfinished += 1 - len(evicted)
            self._cond.notify_all()
            return (_EVICTED if evicted else _QUEUED), len(evicted)

    def take(self):
        """The next item, waiting for one; None once closed."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            item = self._items.popleft()
            self._bytes -= len(item.body)
            return item

    def done(self):
        """Say that the item last taken was sent or given up."""
        with self._cond:
            self._unfinished -= 1
            self._cond.notify_all()

    def join(self, timeout):
        """Wait until every queued item was sent or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._unfinished > 0 and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return self._unfinished == 0

    def close(self):
        """Stop: take returns None; return how many items were still queued."""
        with self._cond:
            self._closed = True
            left = len(self._items)
            self._items.clear()
            self._bytes = 0
            self._cond.notify_all()
            return left

    def __len__(self):
        with self._cond:
            return len(self._items)


class Forwarder:
    """Sends events to the producer's POST /v1/events from one background
    thread, in the order they were put.

    encode and put run on ComfyUI's event loop; put never blocks it (see
    the module doc for what happens when the queue is full). The thread is
    a daemon thread owned by the Forwarder; close ends it. stats() may be
    called from any thread.
    """

    def __init__(self, settings, max_events=QUEUE_EVENTS, max_bytes=QUEUE_BYTES, full_wait=FULL_WAIT):
        self.settings = settings
        self.full_wait = full_wait
        self._queue = EventQueue(max_events, max_bytes)
        parsed = urllib.parse.urlsplit(settings.url)
        self._https = parsed.scheme == "https"
        self._host, self._port = parsed.hostname, parsed.port
        self._path = parsed.path.rstrip("/") + "/v1/events"
        self._conn = None
        self._counts = collections.Counter()
        self._logged = {}  # kind -> time of its last log line
        self._lock = threading.Lock()
        self._waiters = collections.deque()  # put calls waiting for room, in order
        self._stop = threading.Event()
        self.available = True  # the last attempt reached the producer
        self._thread = threading.Thread(target=self._run, name="framecast-events", daemon=True)
        self._thread.start()

    def stats(self):
        """Counters: sent (stored by the producer), dropped_progress and
        dropped (progress and other events dropped for lack of room, or at
        close), refused (the producer answered 4xx), invalid (not an event
        the producer takes), retries (failed attempts: producer
        unreachable or 503), and queued (waiting now)."""
        with self._lock:
            out = {k: self._counts[k] for k in ("sent", "dropped_progress", "dropped", "refused", "invalid", "retries")}
        out["queued"] = len(self._queue)
        return out

    def _count(self, kind, n=1, why=None):
        """Add n to a counter; with why, log it (at most once per
        LOG_EVERY seconds per kind) with the counter's total."""
        with self._lock:
            self._counts[kind] += n
            total = self._counts[kind]
            now = time.monotonic()
            if why is None or now - self._logged.get(kind, -LOG_EVERY) < LOG_EVERY:
                return
            self._logged[kind] = now
        log.warning("framecast: %s (%s: %d so far)", why, _LABELS.get(kind, kind), total)

    def encode(self, event, data, sid):
        """The Item of one send_json call, or None (counted as invalid,
        logged) when the producer would refuse it."""
        try:
            validate_event_name(event)
            if not isinstance(data, dict):
                raise ValueError(f"its data is a {type(data).__name__}; allowed: an object (dict)")
            client_id = publish.validate_client_id(sid)
            body = json.dumps({"event": event, "data": data}, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode("utf-8")
            if len(body) > MAX_EVENT:
                raise ValueError(f"it is {len(body)} bytes as JSON; allowed: at most {MAX_EVENT} bytes")
        except (TypeError, ValueError) as err:
            self._count("invalid", why=f"event {event!r} not forwarded: {err}")
            return None
        return Item(event, body, client_id)

    def put_nowait(self, item):
        """Queue item without waiting; False when there is no room."""
        outcome, evicted = self._queue.offer(item)
        if evicted:
            self._count("dropped_progress", evicted, "progress events dropped: the event queue is full")
        return outcome != _FULL

    async def put(self, item):
        """Queue item, in order with earlier puts (see the module doc)."""
        if not self._waiters and self.put_nowait(item):
            return
        if item.progress:
            self._count("dropped_progress", why="progress events dropped: the event queue is full")
            return
        if not self.available:
            self._count("dropped", why=f"event {item.name!r} dropped: the event queue is full and the producer is unreachable")
            return
        token = object()
        self._waiters.append(token)
        deadline = time.monotonic() + self.full_wait
        try:
            while True:
                if self._waiters[0] is token:
                    if self.put_nowait(item):
                        return
                    if time.monotonic() >= deadline or not self.available:
                        self._count("dropped", why=f"event {item.name!r} dropped: the event queue stayed full for {self.full_wait} s")
                        return
                await asyncio.sleep(_POLL)
        finally:
            self._waiters.remove(token)

    def flush(self, timeout=10.0):
        """Wait until every queued event was sent or given up; False on timeout."""
        return self._queue.join(timeout)

    def close(self, timeout=10.0):
        """Stop the sender thread; events still queued are dropped (counted)."""
        self._stop.set()
        left = self._queue.close()
        if left:
            self._count("dropped", left, f"{left} queued events dropped at close")
        self._thread.join(timeout)

    # The sender thread.

    def _run(self):
        while True:
            item = self._queue.take()
            if item is None:
                break
            try:
                self._deliver(item)
            except Exception:  # never let one event end the thread
                log.exception("framecast: event %r not forwarded", item.name)
            finally:
                self._queue.done()
        if self._conn is not None:
            self._conn.close()

    def _deliver(self, item):
        """Post item until the producer stores or refuses it, or close."""
        delay = RETRY_MIN
        while not self._stop.is_set():
            try:
                status, headers, raw = self._post(item)
            except (OSError, http.client.HTTPException) as err:
                wait = delay
                why = f"producer at {self.settings.url} is unreachable ({err}); retrying, events queue up meanwhile"
            else:
                if status not in (429, 502, 503, 504):
                    self.available = True
                    if status == 200:
                        self._count("sent")
                    else:
                        self._count("refused", why=_refusal(status, raw, item))
                    return
                wait = publish.retry_after(headers, delay, RETRY_MIN, RETRY_MAX)
                why = f"producer at {self.settings.url} answered an event with HTTP {status}; retrying in {wait:g} s"
            self.available = False
            self._count("retries", why=why)
            self._stop.wait(wait)
            delay = min(2 * delay, RETRY_MAX)
        self._count("dropped", why=f"event {item.name!r} dropped at close, undelivered")

    def _post(self, item):
        """POST item on the kept-alive connection; one fresh retry when a
        reused connection turns out closed."""
        target = self._path
        if item.client_id:
            target += "?client_id=" + urllib.parse.quote(item.client_id, safe="")
        headers = {"Content-Type": "application/json", "Accept": "application/json", "Idempotency-Key": item.key}
        if self.settings.token:
            headers["Authorization"] = "Bearer " + self.settings.token
        for attempt in (1, 2):
            reused = self._conn is not None
            if not reused:
                cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                self._conn = cls(self._host, self._port, timeout=self.settings.timeout)
            try:
                self._conn.request("POST", target, body=item.body, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
                if resp.will_close:
                    self._conn.close()
                    self._conn = None
                return resp.status, resp.headers, raw
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if not reused or attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _refusal(status, raw, item):
    """The log line of an event the producer refused."""
    code, message, _ = publish.error_detail(raw)
    return publish.refusal_text(f"event {item.name!r}", status, code, message)


class PromptTracker:
    """Derives comfyui-deploy's live_status and elapsed_time from ComfyUI's
    events, per prompt.

    workflow_of(prompt_id) returns the prompt's API-format workflow (node
    id -> {"class_type", "inputs"}) or None. At most `limit` prompts are
    tracked; the oldest is forgotten first. Not safe for concurrent use:
    ComfyUI calls send_json on its event loop only.
    """

    class _Prompt:
        __slots__ = ("start", "workflow", "done", "last")

        def __init__(self, start, workflow):
            self.start, self.workflow, self.done, self.last = start, workflow, set(), None

    def __init__(self, workflow_of, clock=time.monotonic, limit=TRACKED_PROMPTS):
        self._workflow_of = workflow_of
        self._clock = clock
        self._limit = limit
        self._prompts = collections.OrderedDict()

    def _track(self, prompt_id, started):
        state = self._Prompt(self._clock() if started else None, self._workflow_of(prompt_id))
        self._prompts[prompt_id] = state
        while len(self._prompts) > self._limit:
            self._prompts.popitem(last=False)
        return state

    def observe(self, event, data):
        """The (event, data) pairs to send after this event, in order."""
        if not isinstance(data, dict):
            return []
        prompt_id = data.get("prompt_id")
        if prompt_id is None or not isinstance(prompt_id, (str, int)):
            return []
        state = self._prompts.get(prompt_id)
        if event == "execution_start":
            self._track(prompt_id, started=True)
        elif event == "execution_cached" and state is not None and state.workflow:
            nodes = data.get("nodes")
            if isinstance(nodes, list):
                state.done.update(n for n in nodes if isinstance(n, (str, int)) and n in state.workflow)
        elif event == "execution_success" or (event == "executing" and data.get("node") is None):
            return self._finish(prompt_id)
        elif event == "executing":
            return self._executing(state or self._track(prompt_id, started=False), prompt_id, data)
        return []

    def _executing(self, state, prompt_id, data):
        if state.workflow is None:
            state.workflow = self._workflow_of(prompt_id)
        workflow = state.workflow
        if not isinstance(workflow, dict) or not workflow:
            return []
        # A node that expansion added is not in the workflow: ComfyUI names
        # the workflow node it came from as display_node.
        node = next((n for n in (data.get("node"), data.get("display_node"))
                     if isinstance(n, (str, int)) and n in workflow), None)
        if node is None:
            return []
        state.done.add(node)
        if state.last == node:
            return []
        state.last = node
        class_type = workflow[node].get("class_type") if isinstance(workflow[node], dict) else None
        if not isinstance(class_type, str):
            return []
        progress = round(len(state.done) / len(workflow), 2)
        return [("live_status", {"prompt_id": prompt_id, "current_node": class_type, "progress": progress})]

    def _finish(self, prompt_id):
        state = self._prompts.pop(prompt_id, None)
        if state is None or state.start is None:
            return []
        return [("elapsed_time", {"prompt_id": prompt_id, "elapsed_time": self._clock() - state.start})]


def prompt_workflow(server, prompt_id):
    """The workflow of prompt_id from ComfyUI's prompt queue: running,
    done (history) or queued; None when it is in none of them."""
    queue = getattr(server, "prompt_queue", None)
    if queue is None:
        return None
    try:
        with getattr(queue, "mutex", None) or contextlib.nullcontext():
            items = list(getattr(queue, "currently_running", {}).values())
            done = getattr(queue, "history", {}).get(prompt_id)
            if done is not None:
                items.append(done.get("prompt"))
            items.extend(getattr(queue, "queue", []))
        for item in items:
            if isinstance(item, (tuple, list)) and len(item) > 2 and item[1] == prompt_id and isinstance(item[2], dict):
                return item[2]
    except Exception:  # another ComfyUI's queue: no live_status rather than a broken send_json
        log.debug("framecast: reading prompt %s from the queue failed", prompt_id, exc_info=True)
    return None


def install(server, settings=None, forwarder=None, clock=time.monotonic):
    """Wrap server.send_json (a PromptServer) so that every event is also
    forwarded; return the Forwarder. Installing twice returns the first
    one's Forwarder. settings defaults to publish.Settings.from_env()."""
    current = server.send_json
    existing = getattr(current, "framecast_forwarder", None)
    if existing is not None:
        return existing
    fwd = forwarder or Forwarder(settings or publish.Settings.from_env())
    tracker = PromptTracker(lambda prompt_id: prompt_workflow(server, prompt_id), clock=clock)
    original = current

    async def send_json(event, data, sid=None):
        try:
            pairs = [(event, data)] + tracker.observe(event, data)
            for name, value in pairs:
                item = fwd.encode(name, value, sid)
                if item is not None:
                    await fwd.put(item)
        except Exception:  # forwarding must never break ComfyUI's own messages
            log.exception("framecast: forwarding event %r failed", event)
        await original(event, data, sid)

    send_json.framecast_forwarder = fwd
    server.send_json = send_json
    return fwd


def install_from_env(environ=None):
    """Install the hook on ComfyUI's running PromptServer when
    FRAMECAST_FORWARD_EVENTS is on; return the Forwarder or None. Problems
    are logged, never raised: the node works without events."""
    env = os.environ if environ is None else environ
    try:
        if not forward_enabled(env):
            return None
        settings = publish.Settings.from_env(env)
    except ValueError as err:
        log.error("framecast: %s; ComfyUI events are not forwarded", err)
        return None
    try:
        import server as comfy_server

        instance = comfy_server.PromptServer.instance
    except (ImportError, AttributeError):
        log.error("framecast: FRAMECAST_FORWARD_EVENTS is on but ComfyUI's PromptServer is not running; "
                  "ComfyUI events are not forwarded")
        return None
    fwd = install(instance, settings=settings)
    log.info("framecast: forwarding ComfyUI events to %s/v1/events", settings.url)
    return fwd
