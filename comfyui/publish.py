"""Client for the framecast producer HTTP API.

It sends an IMAGE batch as raw pixels to
``POST {producer}/v1/outputs/{output_id}/images`` and returns the producer's
JSON answer. Only the standard library and numpy are used, so it runs inside
ComfyUI without installing anything.

Settings come from the environment (read on every call, see ``Settings``):

- ``FRAMECAST_PRODUCER_URL``: the producer's base URL, default
  ``http://127.0.0.1:8081``.
- ``FRAMECAST_TOKEN``: sent as ``Authorization: Bearer <token>`` when set.
- ``FRAMECAST_TIMEOUT``: seconds each socket operation may take, default 30.
- ``FRAMECAST_MAX_BODY_BYTES``: the largest request body, default 64 MiB
  (the producer's default limit); larger batches go in several requests.
"""

import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import numpy as np

DEFAULT_PRODUCER_URL = "http://127.0.0.1:8081"
DEFAULT_TIMEOUT = 30.0

# FILE_TYPES are the seed node's choices; the first is the default.
FILE_TYPES = ("WEBP", "PNG", "JPEG")
MIN_QUALITY, MAX_QUALITY, DEFAULT_QUALITY = 1, 100, 80

# Id limits in bytes, as the producer enforces them. 24 is the seed's limit:
# its wire frame has 24 bytes for the output id.
MAX_OUTPUT_ID = 24
MAX_CLIENT_ID = 128

# Channel counts the producer accepts for raw pixels.
CHANNELS = (1, 3, 4)

# RETRY_DELAY is the pause before the single retry after a connection
# error; a 503 is retried after its Retry-After, at most MAX_RETRY_AFTER.
RETRY_DELAY = 0.5
MAX_RETRY_AFTER = 10.0

# Limits of one request: the producer's default body limit and its largest
# batch. Larger batches are split into several requests.
DEFAULT_MAX_BODY_BYTES = 64 << 20
MAX_BATCH = 4096

# Error bodies longer than this are cut before they go into a message.
_MAX_ERROR_BODY = 64 << 10


class ProducerError(RuntimeError):
    """The producer refused a request or could not be reached.

    ``status`` is the HTTP status, or None when the producer was unreachable;
    ``code`` and ``message`` come from the JSON error body
    ``{"error": {"code", "message", "published"}}`` when it had one;
    ``published`` lists the frames of the batch that were stored before it
    failed, in batch order with their batch_index in the whole batch
    (usually empty).
    """

    def __init__(self, text, url, status=None, code=None, message=None, published=None):
        super().__init__(text)
        self.url = url
        self.status = status
        self.code = code
        self.message = message
        self.published = published or []


class Settings:
    """Where and how to reach the producer.

    ``url`` is the base URL (http or https, no trailing slash needed),
    ``token`` the bearer token or "" for none, ``timeout`` the seconds each
    socket operation may take, ``max_body_bytes`` the largest request body
    to send (match the producer's --max-body-bytes).
    """

    def __init__(self, url=DEFAULT_PRODUCER_URL, token="", timeout=DEFAULT_TIMEOUT,
                 max_body_bytes=DEFAULT_MAX_BODY_BYTES):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"FRAMECAST_PRODUCER_URL {url!r} is not a valid URL; "
                f"allowed: http:// or https:// with a host, e.g. {DEFAULT_PRODUCER_URL}"
            )
        if parsed.query or parsed.fragment:
            raise ValueError(
                f"FRAMECAST_PRODUCER_URL {url!r} has a query or fragment; allowed: scheme://host[:port][/path]"
            )
        if not timeout > 0:
            raise ValueError(f"FRAMECAST_TIMEOUT {timeout!r} is not allowed; it must be a positive number of seconds")
        if not max_body_bytes > 0:
            raise ValueError(
                f"FRAMECAST_MAX_BODY_BYTES {max_body_bytes!r} is not allowed; it must be a positive number of bytes"
            )
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes

    @classmethod
    def from_env(cls, environ=None):
        """Settings from FRAMECAST_PRODUCER_URL, FRAMECAST_TOKEN, FRAMECAST_TIMEOUT
        and FRAMECAST_MAX_BODY_BYTES."""
        env = os.environ if environ is None else environ
        raw = env.get("FRAMECAST_TIMEOUT", "").strip()
        timeout = DEFAULT_TIMEOUT
        if raw:
            try:
                timeout = float(raw)
            except ValueError:
                raise ValueError(
                    f"FRAMECAST_TIMEOUT {raw!r} is not a number; it must be a positive number of seconds"
                ) from None
        raw = env.get("FRAMECAST_MAX_BODY_BYTES", "").strip()
        max_body = DEFAULT_MAX_BODY_BYTES
        if raw:
            try:
                max_body = int(raw)
            except ValueError:
                raise ValueError(
                    f"FRAMECAST_MAX_BODY_BYTES {raw!r} is not an integer; it must be a positive number of bytes"
                ) from None
        return cls(
            url=env.get("FRAMECAST_PRODUCER_URL", "").strip() or DEFAULT_PRODUCER_URL,
            token=env.get("FRAMECAST_TOKEN", "").strip(),
            timeout=timeout,
            max_body_bytes=max_body,
        )


def validate_output_id(output_id):
    """Return output_id if the producer accepts it, else raise ValueError.

    The first two messages are the seed node's, word for word.
    """
    if not isinstance(output_id, str):
        raise ValueError(f"output_id must be a string (got {type(output_id).__name__})")
    try:
        raw = output_id.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("output_id is not ASCII encodable") from None
    if len(raw) > MAX_OUTPUT_ID:
        raise ValueError(f"output_id size is greater than {MAX_OUTPUT_ID} bytes")
    if not raw:
        raise ValueError(f"output_id is empty; it must be 1..{MAX_OUTPUT_ID} bytes of printable ASCII")
    _check_printable("output_id", raw)
    return output_id


def validate_client_id(client_id):
    """Return client_id ("" for None) if the producer accepts it, else raise ValueError.

    The empty client_id sends to every socket of the output.
    """
    if client_id is None:
        return ""
    if not isinstance(client_id, str):
        raise ValueError(f"client_id must be a string (got {type(client_id).__name__})")
    try:
        raw = client_id.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(
            f"client_id is not ASCII encodable; allowed: 0..{MAX_CLIENT_ID} bytes of printable ASCII"
        ) from None
    if len(raw) > MAX_CLIENT_ID:
        raise ValueError(f"client_id size is greater than {MAX_CLIENT_ID} bytes (got {len(raw)})")
    _check_printable("client_id", raw)
    return client_id


def _check_printable(name, raw):
    for i, c in enumerate(raw):
        if c < 0x20 or c == 0x7F:
            raise ValueError(
                f"{name} contains control character 0x{c:02X} at offset {i}; allowed: printable ASCII 0x20-0x7E"
            )


def validate_file_type(file_type):
    """Return file_type upper-cased if it is WEBP, PNG or JPEG (any case), else raise ValueError."""
    if isinstance(file_type, str) and file_type.upper() in FILE_TYPES:
        return file_type.upper()
    raise ValueError(f"file_type {file_type!r} is not supported; allowed: {', '.join(FILE_TYPES)}")


def validate_quality(quality):
    """Return quality if it is an integer 1..100, else raise ValueError."""
    ok = isinstance(quality, (int, np.integer)) and not isinstance(quality, bool)
    if not ok or not MIN_QUALITY <= quality <= MAX_QUALITY:
        raise ValueError(f"quality {quality!r} is not allowed; it must be an integer {MIN_QUALITY}..{MAX_QUALITY}")
    return int(quality)


def pixels(images):
    """Return images as a C-contiguous [B,H,W,C] array ready to send.

    images is a torch tensor (any device) or a numpy array, [B,H,W,C] or a
    single [H,W,C] image. uint8 stays uint8; floating point becomes
    little-endian float32 (the producer converts 0..1 exactly as the seed
    does). Other element types, ranks and channel counts raise ValueError.
    """
    if hasattr(images, "detach"):
        images = images.detach()
    if hasattr(images, "cpu"):
        images = images.cpu()
    if hasattr(images, "numpy"):
        try:
            images = images.numpy()
        except TypeError:
            # Element types numpy lacks (bfloat16) go through float32.
            images = images.float().numpy()
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[np.newaxis]
    if arr.ndim != 4:
        raise ValueError(f"images has shape {tuple(arr.shape)}; allowed: [batch, height, width, channels]")
    _, height, width, channels = arr.shape
    if channels not in CHANNELS:
        raise ValueError(
            f"images has {channels} channels (shape {tuple(arr.shape)}); allowed: {', '.join(map(str, CHANNELS))}"
        )
    if height < 1 or width < 1:
        raise ValueError(f"images has shape {tuple(arr.shape)}; width and height must be at least 1")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        return np.ascontiguousarray(arr, dtype="<f4")
    raise ValueError(f"images has element type {arr.dtype}; allowed: float (0..1) or uint8 (0..255)")


def images_url(settings, output_id, client_id, file_type, quality, shape, dtype, part=None):
    """Return the POST URL for a raw-pixel batch of the given shape and dtype.

    part, when set, is (offset, total): the request carries frames
    offset.. of a batch of total sent in several requests.
    """
    batch, height, width, channels = shape
    params = [
        ("client_id", client_id),
        ("file_type", file_type.lower()),
        ("quality", str(quality)),
        ("width", str(width)),
        ("height", str(height)),
        ("channels", str(channels)),
        ("dtype", "uint8" if dtype == np.uint8 else "float32"),
        ("batch", str(batch)),
    ]
    if part is not None:
        params += [("batch_offset", str(part[0])), ("batch_total", str(part[1]))]
    query = urllib.parse.urlencode(params)
    path = "/v1/outputs/" + urllib.parse.quote(output_id, safe="") + "/images"
    return settings.url + path + "?" + query


def publish(images, output_id, client_id="", file_type="WEBP", quality=DEFAULT_QUALITY,
            settings=None, idempotency_key=None):
    """Publish an image batch and return the producer's JSON answer.

    The answer is ``{"output_id", "client_id", "frames": [{"seq",
    "batch_index", "content_type", "width", "height", "bytes"}]}`` with one
    frame per image, in batch order. An empty batch publishes nothing and
    returns no frames without a request.

    Every input is validated before any request (ValueError). A batch whose
    body would exceed settings.max_body_bytes is sent in several requests
    of whole images, in order, each placed in the batch with batch_offset
    and batch_total: the frames are published as one batch, and
    batch_index, in the answer as on the wire, is the index in the whole
    batch. A connection error, or a 503 from a producer that lost its
    broker, is retried once with the same Idempotency-Key (a fresh uuid4
    unless idempotency_key is given; one key serves every request of a
    batch), so a retry never publishes twice. A refusal or a failed retry
    raises ProducerError, which says which frames of the batch were
    already published. settings defaults to Settings.from_env().
    """
    output_id = validate_output_id(output_id)
    client_id = validate_client_id(client_id)
    file_type = validate_file_type(file_type)
    quality = validate_quality(quality)
    arr = pixels(images)
    total = arr.shape[0]
    answer = {"output_id": output_id, "client_id": client_id, "frames": []}
    if total == 0:
        return answer
    if settings is None:
        settings = Settings.from_env()
    key = idempotency_key or str(uuid.uuid4())
    per_request = max(1, min(MAX_BATCH, settings.max_body_bytes // arr[0].nbytes))
    starts = range(0, total, per_request)
    split = len(starts) > 1
    for start in starts:
        part = arr[start:start + per_request]
        # A single request leaves batch_offset and batch_total out, so
        # producers that predate them still take it.
        url = images_url(settings, output_id, client_id, file_type, quality, part.shape, part.dtype,
                         part=(start, total) if split else None)
        try:
            frames = _post(settings, url, part, key)
        except ProducerError as err:
            # Every frame of the batch stored so far, with its batch_index.
            published = err.published = answer["frames"] + err.published
            if published and split:
                err.args = (
                    f"{err}; frames 0..{len(published) - 1} of the batch of {total} were published "
                    f"(seq {published[0].get('seq')}..{published[-1].get('seq')})",
                )
            raise
        answer["frames"].extend(frames)
    return answer


def _post(settings, url, part, key):
    """POST one request of raw pixels and return the answer's frames."""
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Length": str(part.nbytes),
        "Accept": "application/json",
        "Idempotency-Key": key,
    }
    if settings.token:
        headers["Authorization"] = "Bearer " + settings.token
    # A flat byte view of the array: no copy of a batch that may be large.
    body = memoryview(part.reshape(-1).view(np.uint8))
    where = url.split("?", 1)[0]
    for attempt in (1, 2):
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=settings.timeout) as resp:
                raw = resp.read()
            break
        except urllib.error.HTTPError as err:
            refused = _refused(err, where)
            if err.code != 503 or attempt == 2:
                raise refused from None
            time.sleep(_retry_after(err))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            if attempt == 2:
                reason = getattr(err, "reason", err)
                raise ProducerError(
                    f"framecast producer at {settings.url} is unreachable (POST {where}, {attempt} attempts): "
                    f"{reason}; check FRAMECAST_PRODUCER_URL and that the producer runs",
                    url=where,
                ) from None
            time.sleep(RETRY_DELAY)
    try:
        frames = json.loads(raw)["frames"]
        if not isinstance(frames, list) or not all(isinstance(f, dict) for f in frames):
            raise TypeError("frames is not a list of objects")
    except (ValueError, KeyError, TypeError) as err:
        raise ProducerError(
            f"framecast producer answered POST {where} with an unreadable body ({err}): {raw[:200]!r}",
            url=where,
        ) from None
    return frames


def _retry_after(err):
    """Seconds to wait before retrying a 503: its Retry-After, within 0..MAX_RETRY_AFTER."""
    try:
        seconds = float(err.headers.get("Retry-After", ""))
    except (AttributeError, TypeError, ValueError):
        return RETRY_DELAY
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _refused(err, where):
    """Turn an HTTPError into a ProducerError naming status, code and message."""
    try:
        raw = err.read(_MAX_ERROR_BODY)
    except (OSError, http.client.HTTPException):
        raw = b""
    code = message = None
    published = []
    try:
        detail = json.loads(raw)["error"]
        code, message = detail.get("code"), detail.get("message")
        if isinstance(detail.get("published"), list):
            published = detail["published"]
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    if code is None and message is None:
        message = raw.decode("utf-8", "replace").strip()[:500] or err.reason
    text = f"framecast producer refused POST {where}: HTTP {err.code}"
    if code:
        text += f" {code}"
    if message:
        text += f": {message}"
    if err.code in (401, 403):
        text += " (set FRAMECAST_TOKEN to a token the producer accepts)"
    retry_after = err.headers.get("Retry-After") if err.headers else None
    if err.code == 503 and retry_after:
        text += f" (retry after {retry_after} s)"
    return ProducerError(text, url=where, status=err.code, code=code, message=message, published=published)
