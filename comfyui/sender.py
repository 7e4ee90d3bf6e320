"""The background sender of FRAMECAST_ASYNC.

With FRAMECAST_ASYNC on, the node validates its inputs, copies the images
out of the tensor as uint8 (the seed's conversion) and hands the batch to
the Sender, then returns; ComfyUI goes on with the next node while one
background thread encodes each batch with PIL (which releases the GIL) and
publishes it.

- Order: batches are published one after another in the order the node
  ran, each in batch order.
- Retries: a producer that is unreachable or answers 429, 502, 503 or 504
  is retried (RETRY_MIN doubling to RETRY_MAX seconds, or its Retry-After)
  with the batch's Idempotency-Key, from the request that failed, until it
  stores the batch. Nothing is stored twice within the stream's duplicate
  window (2 minutes by default).
- Refusals: a batch the producer refuses (401/403 without the right
  token, 413 for an image over its limits) cannot be sent as it is: it is
  dropped, counted and logged as an error with the producer's message.
- Memory: the queue holds at most ``max_bytes`` of pixels
  (FRAMECAST_ASYNC_MAX_BYTES). When a batch does not fit, the node waits
  for room: that is the only time it blocks. A batch larger than the bound
  waits until the queue is empty, then goes alone. A node that found no
  room within ``full_wait`` seconds fails with QueueFull, and its batch is
  not queued.
"""

import atexit
import collections
import logging
import threading
import time

from . import publish

log = logging.getLogger(__name__)

# Pauses between attempts while the producer is unreachable or busy.
RETRY_MIN, RETRY_MAX = 0.2, 5.0
# FULL_WAIT bounds how long the node waits for room in a full queue.
FULL_WAIT = 300.0
# EXIT_WAIT is what the process's Sender gets to send its queue at exit.
EXIT_WAIT = 30.0
# Statuses worth another attempt with the same key.
RETRY_STATUSES = (429, 502, 503, 504)


class QueueFull(RuntimeError):
    """The queue stayed full for the whole wait; the batch was not queued."""


class _Job:
    __slots__ = ("batch", "settings", "size")

    def __init__(self, batch, settings):
        self.batch, self.settings = batch, settings
        self.size = batch.nbytes


class Sender:
    """A FIFO of batches and the thread that publishes them.

    ``max_bytes`` bounds the pixels queued, ``full_wait`` the seconds put()
    waits for room. The thread starts with the Sender and ends at close();
    put(), flush(), stats() and close() may be called from any thread.
    """

    def __init__(self, max_bytes=publish.DEFAULT_ASYNC_MAX_BYTES, full_wait=FULL_WAIT):
        if not max_bytes > 0:
            raise ValueError(f"max_bytes {max_bytes!r}; want a positive number of bytes")
        self.max_bytes, self.full_wait = max_bytes, full_wait
        self._jobs = collections.deque()
        self._bytes = 0  # of the queued jobs and the one being sent
        self._busy = False  # a job is being sent
        self._waiting = 0  # put() calls waiting for room
        self._counts = collections.Counter()
        self._last_error = None
        self._closed = False
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="framecast-sender", daemon=True)
        self._thread.start()

    def put(self, batch, settings):
        """Queue batch to be sent with settings; wait while there is no room.

        Raises QueueFull when no room came within full_wait seconds, and
        RuntimeError after close().
        """
        job = _Job(batch, settings)
        deadline = time.monotonic() + self.full_wait
        with self._cond:
            self._waiting += 1
            try:
                while not self._closed and not self._fits(job):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise QueueFull(
                            f"framecast: the background send queue stayed full for {self.full_wait:g} s "
                            f"({len(self._jobs)} batches, {self._bytes} bytes queued for at most "
                            f"{self.max_bytes}; last error: {self._last_error or 'none'}); this execution's "
                            f"{batch.total} images were not queued. Check that the producer at {settings.url} runs, "
                            "or raise FRAMECAST_ASYNC_MAX_BYTES"
                        )
                    self._cond.wait(left)
                if self._closed:
                    raise RuntimeError("framecast: the background sender is closed")
            finally:
                self._waiting -= 1
            self._jobs.append(job)
            self._bytes += job.size
            self._counts["queued_batches"] += 1
            self._cond.notify_all()

    def _fits(self, job):
        empty = not self._jobs and not self._busy
        return empty or self._bytes + job.size <= self.max_bytes

    def flush(self, timeout=None):
        """Wait until every queued batch was sent or given up; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._jobs or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def pending(self):
        """Whether a batch is queued or being sent."""
        with self._cond:
            return bool(self._jobs or self._busy)

    def stats(self):
        """Counters: sent_batches and sent_frames (stored by the producer),
        refused_batches and refused_frames (dropped after a refusal),
        retries (failed attempts), queued_batches (ever queued); and now:
        pending_batches, pending_bytes, waiting (node calls waiting for room)
        and last_error."""
        with self._cond:
            out = {k: self._counts[k] for k in ("sent_batches", "sent_frames", "refused_batches",
                                                 "refused_frames", "retries", "queued_batches")}
            out.update(pending_batches=len(self._jobs) + self._busy, pending_bytes=self._bytes,
                       waiting=self._waiting, last_error=self._last_error)
        return out

    def close(self, timeout=10.0):
        """Send what is queued for at most timeout seconds, then stop the
        thread; batches left are dropped, counted and logged. Returns the
        number of batches dropped."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            left = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
        self._stop.set()
        self._thread.join(timeout)
        if left:
            frames = sum(j.batch.total for j in left)
            log.error("framecast: %d queued batches (%d images) dropped at close, unsent", len(left), frames)
        return len(left)

    # The sender thread.

    def _run(self):
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._jobs.popleft()
                self._busy = True
            try:
                self._deliver(job)
            except Exception:  # never let one batch end the thread
                log.exception("framecast: batch for output %r not published", job.batch.output_id)
            finally:
                with self._cond:
                    self._busy = False
                    self._bytes -= job.size
                    self._cond.notify_all()

    def _deliver(self, job):
        """Encode and send job until the producer stores or refuses it, or close."""
        batch = job.batch
        delay = RETRY_MIN
        while True:
            try:
                # Tried once: this loop retries, and close can stop it.
                answer = batch.send(job.settings, retry=False)
            except publish.ProducerError as err:
                if err.status is not None and err.status not in RETRY_STATUSES:
                    self._note(refused_batches=1, refused_frames=batch.total - len(err.published), error=str(err))
                    log.error("framecast: batch of %d images for output %r dropped: %s",
                              batch.total, batch.output_id, err)
                    return
                self._note(retries=1, error=str(err))
                wait = delay
                if err.retry_after is not None:  # what the producer asked
                    wait = min(max(err.retry_after, RETRY_MIN), RETRY_MAX)
                # The first failure of a batch is a warning; the retries
                # after it, every RETRY_MAX seconds at most, are not.
                log.log(logging.WARNING if delay == RETRY_MIN else logging.DEBUG,
                        "framecast: %s; retrying in %g s with the same Idempotency-Key", err, wait)
                if self._stop.wait(wait):
                    log.error("framecast: batch of %d images for output %r dropped at close, unsent",
                              batch.total, batch.output_id)
                    return
                delay = min(2 * delay, RETRY_MAX)
                continue
            except (RuntimeError, ValueError) as err:  # PIL could not encode
                self._note(refused_batches=1, refused_frames=batch.total, error=str(err))
                log.error("framecast: batch of %d images for output %r dropped: %s",
                          batch.total, batch.output_id, err)
                return
            frames = answer["frames"]
            self._note(sent_batches=1, sent_frames=len(frames))
            log.info("framecast: published %d image(s) to output %r client %r, seq %s",
                     len(frames), batch.output_id, batch.client_id or "*", [f.get("seq") for f in frames])
            return

    def _note(self, error=None, **counts):
        with self._cond:
            self._counts.update(counts)
            if error is not None:
                self._last_error = error


_default = None
_default_lock = threading.Lock()


def default(max_bytes):
    """The process's Sender, started on first use with max_bytes; a later
    max_bytes replaces the bound of the running one. When the interpreter
    exits, it gets EXIT_WAIT seconds to send what is queued."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sender(max_bytes=max_bytes)
            atexit.register(_default.close, EXIT_WAIT)
        else:
            with _default._cond:
                _default.max_bytes = max_bytes
                _default._cond.notify_all()
        return _default


def running():
    """The process's Sender when one was started, else None."""
    return _default
