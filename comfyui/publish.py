"""Client for the framecast producer HTTP API.

It publishes an IMAGE batch with ``POST {producer}/v1/outputs/{output_id}/images``
and returns the producer's JSON answer. By default each image is encoded
here with PIL exactly as the seed node does (encode.py) and the encoded
images go as one multipart request, which the producer forwards byte for
byte; FRAMECAST_ENCODE=producer sends the raw pixels instead and lets the
producer encode. Only the standard library, numpy and PIL (which ComfyUI
ships) are used, so it runs inside ComfyUI without installing anything.

Settings come from the environment (read on every call, see ``Settings``):

- ``FRAMECAST_PRODUCER_URL``: the producer's base URL, default
  ``http://127.0.0.1:8081``.
- ``FRAMECAST_TOKEN``: sent as ``Authorization: Bearer <token>`` when set.
- ``FRAMECAST_TIMEOUT``: seconds each socket operation may take, default 30.
- ``FRAMECAST_MAX_BODY_BYTES``: the largest request body, default 64 MiB
  (the producer's default limit); larger batches go in several requests.
- ``FRAMECAST_ENCODE``: ``node`` (default, PIL here) or ``producer`` (raw
  pixels, the producer encodes).
- ``FRAMECAST_ASYNC``: on to let a background sender publish (sender.py).
- ``FRAMECAST_ASYNC_MAX_BYTES``: the pixels the background sender may hold,
  default 512 MiB.
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

from . import encode

DEFAULT_PRODUCER_URL = "http://127.0.0.1:8081"
DEFAULT_TIMEOUT = 30.0

# FILE_TYPES are the seed node's choices; the first is the default.
FILE_TYPES = ("WEBP", "PNG", "JPEG")
MIN_QUALITY, MAX_QUALITY, DEFAULT_QUALITY = 1, 100, 80

# Id limits in bytes, as the producer enforces them. 24 is the seed's limit:
# its wire frame has 24 bytes for the output id.
MAX_OUTPUT_ID = 24
MAX_CLIENT_ID = 128

# previews: the longest side of each image's preview, 0 for none.
MIN_PREVIEW, MAX_PREVIEW = 16, 1024

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

# Where images are encoded (FRAMECAST_ENCODE): here with PIL, or by the
# producer from raw pixels.
ENCODE_NODE, ENCODE_PRODUCER = "node", "producer"
ENCODE_MODES = (ENCODE_NODE, ENCODE_PRODUCER)

# Values of on/off variables, compared without case and spaces.
ON_VALUES = ("1", "true", "yes", "on")
OFF_VALUES = ("", "0", "false", "no", "off")

# DEFAULT_ASYNC_MAX_BYTES bounds the pixels the background sender holds.
DEFAULT_ASYNC_MAX_BYTES = 512 << 20

# Error bodies longer than this are cut before they go into a message.
_MAX_ERROR_BODY = 64 << 10


class ProducerError(RuntimeError):
    """The producer refused a request or could not be reached.

    ``status`` is the HTTP status, or None when the producer was unreachable;
    ``code`` and ``message`` come from the JSON error body
    ``{"error": {"code", "message", "published"}}`` when it had one;
    ``published`` lists the frames of the batch that were stored before it
    failed, in batch order with their batch_index in the whole batch
    (usually empty); ``retry_after`` is the answer's Retry-After in seconds
    (within 0..MAX_RETRY_AFTER), or None without one.
    """

    def __init__(self, text, url, status=None, code=None, message=None, published=None, retry_after=None):
        super().__init__(text)
        self.url = url
        self.status = status
        self.code = code
        self.message = message
        self.published = published or []
        self.retry_after = retry_after


class Settings:
    """Where and how to reach the producer, and how to publish.

    ``url`` is the base URL (http or https, no trailing slash needed),
    ``token`` the bearer token or "" for none, ``timeout`` the seconds each
    socket operation may take, ``max_body_bytes`` the largest request body
    to send (match the producer's --max-body-bytes). ``encode`` is
    ENCODE_NODE (PIL here, the default) or ENCODE_PRODUCER (raw pixels);
    ``asynchronous`` lets the node return at once and a background sender
    publish, holding at most ``async_max_bytes`` of pixels.
    """

    def __init__(self, url=DEFAULT_PRODUCER_URL, token="", timeout=DEFAULT_TIMEOUT,
                 max_body_bytes=DEFAULT_MAX_BODY_BYTES, encode=ENCODE_NODE, asynchronous=False,
                 async_max_bytes=DEFAULT_ASYNC_MAX_BYTES):
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
        for name, value in (("FRAMECAST_MAX_BODY_BYTES", max_body_bytes), ("FRAMECAST_ASYNC_MAX_BYTES", async_max_bytes)):
            if not value > 0:
                raise ValueError(f"{name} {value!r} is not allowed; it must be a positive number of bytes")
        if encode not in ENCODE_MODES:
            raise ValueError(
                f"FRAMECAST_ENCODE {encode!r} is not allowed; allowed: {ENCODE_NODE} (PIL in ComfyUI, the default) "
                f"or {ENCODE_PRODUCER} (raw pixels, the producer encodes)"
            )
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self.encode = encode
        self.asynchronous = bool(asynchronous)
        self.async_max_bytes = async_max_bytes

    @classmethod
    def from_env(cls, environ=None):
        """Settings from FRAMECAST_PRODUCER_URL, FRAMECAST_TOKEN, FRAMECAST_TIMEOUT,
        FRAMECAST_MAX_BODY_BYTES, FRAMECAST_ENCODE, FRAMECAST_ASYNC and
        FRAMECAST_ASYNC_MAX_BYTES."""
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
        return cls(
            url=env.get("FRAMECAST_PRODUCER_URL", "").strip() or DEFAULT_PRODUCER_URL,
            token=env.get("FRAMECAST_TOKEN", "").strip(),
            timeout=timeout,
            max_body_bytes=_env_bytes(env, "FRAMECAST_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            encode=env.get("FRAMECAST_ENCODE", "").strip().lower() or ENCODE_NODE,
            asynchronous=env_flag(env, "FRAMECAST_ASYNC", "publish from a background sender"),
            async_max_bytes=_env_bytes(env, "FRAMECAST_ASYNC_MAX_BYTES", DEFAULT_ASYNC_MAX_BYTES),
        )


def _env_bytes(env, name, default):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} {raw!r} is not an integer; it must be a positive number of bytes") from None


def env_flag(env, name, what):
    """Whether the on/off variable name is on; ValueError for a value that
    is neither. what says what on does, for the message."""
    raw = env.get(name, "")
    value = raw.strip().lower()
    if value in ON_VALUES:
        return True
    if value in OFF_VALUES:
        return False
    raise ValueError(
        f"{name} {raw!r} is not allowed; allowed: {', '.join(ON_VALUES)} to {what}, "
        f"{', '.join(v for v in OFF_VALUES if v)} or unset not to (any case)"
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


def validate_previews(previews):
    """Return previews if it is 0 or an integer MIN_PREVIEW..MAX_PREVIEW, else raise ValueError."""
    ok = isinstance(previews, (int, np.integer)) and not isinstance(previews, bool)
    if not ok or not (previews == 0 or MIN_PREVIEW <= previews <= MAX_PREVIEW):
        raise ValueError(
            f"previews {previews!r} is not allowed; it must be 0 (no previews) or an integer "
            f"{MIN_PREVIEW}..{MAX_PREVIEW}, the longest side in pixels of each image's preview"
        )
    return int(previews)


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


def images_url(settings, output_id, client_id, file_type, quality, shape, dtype, part=None, previews=0):
    """Return the POST URL for a raw-pixel batch of the given shape and dtype.

    part, when set, is (offset, total): the request carries frames
    offset.. of a batch of total sent in several requests. previews, when
    not 0, asks the producer for a preview of each image with that longest
    side.
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
    return _url(settings, output_id, params, part, previews)


def encoded_url(settings, output_id, client_id, part=None, previews=0):
    """Return the POST URL for a multipart batch of encoded images.

    It names neither file_type nor quality, so the producer forwards the
    images byte for byte. part and previews are as for images_url.
    """
    return _url(settings, output_id, [("client_id", client_id)], part, previews)


def _url(settings, output_id, params, part, previews):
    if previews:
        params = params + [("previews", str(previews))]
    if part is not None:
        params = params + [("batch_offset", str(part[0])), ("batch_total", str(part[1]))]
    path = "/v1/outputs/" + urllib.parse.quote(output_id, safe="") + "/images"
    return settings.url + path + "?" + urllib.parse.urlencode(params)


def multipart(images, content_type):
    """Return (Content-Type, body) of a multipart/form-data body with one
    part per encoded image, in order, each declared as content_type."""
    boundary = uuid.uuid4().hex
    # A boundary must not occur in the data; a random one almost never
    # does, and is drawn again when it does.
    while any(boundary.encode() in img for img in images):
        boundary = uuid.uuid4().hex
    chunks = []
    for i, img in enumerate(images):
        chunks.append(_part_head(boundary, i, content_type))
        chunks.append(img)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(chunks)


def _part_head(boundary, index, content_type):
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{index}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode()


# MULTIPART_OVERHEAD is at least the bytes a part adds to its image in a
# multipart body, and the closing line, with a 32-character boundary.
MULTIPART_OVERHEAD = len(_part_head("b" * 32, MAX_BATCH, "image/jpeg")) + 2 + 36 + 2


class Batch:
    """One execution's images, validated and ready to send.

    Made by prepare(). ``pixels`` is the [B,H,W,C] array (None once
    encoded), ``encoded`` the encoded images when encoding happens here
    (ENCODE_NODE), ``key`` the Idempotency-Key every request of the batch
    carries, ``frames`` the producer's frames of the requests answered so
    far. A Batch is used by one thread at a time.
    """

    def __init__(self, output_id, client_id, file_type, quality, pixels, encode_mode, key, previews=0):
        self.output_id, self.client_id, self.previews = output_id, client_id, previews
        self.file_type, self.quality = file_type, quality
        self.pixels, self.encode_mode, self.key = pixels, encode_mode, key
        self.total = pixels.shape[0]
        self.height, self.width = pixels.shape[1], pixels.shape[2]
        self.encoded = None
        self.frames = []
        self._sent = 0  # images of the batch stored by the producer

    @property
    def content_type(self):
        return encode.CONTENT_TYPES[self.file_type]

    @property
    def nbytes(self):
        """Bytes held: the pixels, or the encoded images once encoded."""
        if self.pixels is not None:
            return self.pixels.nbytes
        return sum(len(b) for b in self.encoded or ())

    def encode(self):
        """Encode the images with PIL (ENCODE_NODE; once) and let the pixels go."""
        if self.encode_mode == ENCODE_NODE and self.encoded is None:
            self.encoded = encode.batch(self.pixels, self.file_type, self.quality)
            self.pixels = None

    def requests(self, settings):
        """Yield the requests still to send, in order, as (first image,
        images, URL, Content-Type, body), from the first image not yet
        stored. Each body is made when it is yielded, so a large batch is
        not held twice."""
        self.encode()
        if self.encoded is not None:
            groups = _groups([len(b) + MULTIPART_OVERHEAD for b in self.encoded], settings.max_body_bytes)
        else:
            per_image = self.pixels[0].nbytes
            groups = _groups([per_image] * self.total, settings.max_body_bytes)
        split = len(groups) > 1
        for start, count in groups:
            if start + count <= self._sent:
                continue
            part = (start, self.total) if split else None
            if self.encoded is not None:
                url = encoded_url(settings, self.output_id, self.client_id, part, self.previews)
                content_type, body = multipart(self.encoded[start:start + count], self.content_type)
            else:
                pixels = self.pixels[start:start + count]
                url = images_url(settings, self.output_id, self.client_id, self.file_type, self.quality,
                                 pixels.shape, pixels.dtype, part, self.previews)
                # A flat byte view of the array: no copy of a batch that may be large.
                content_type, body = "application/octet-stream", memoryview(pixels.reshape(-1).view(np.uint8))
            yield start, count, url, content_type, body

    def send(self, settings, retry=True):
        """Send every request not yet answered, in order; return the answer.

        A refusal or a failed retry raises ProducerError, which says which
        frames of the batch were already published; calling send again
        (with the same key) goes on from the request that failed. With
        retry False each request is tried once: the caller retries.
        """
        for start, count, url, content_type, body in self.requests(settings):
            try:
                frames = _post(settings, url, body, content_type, self.key, retry)
            except ProducerError as err:
                # Every frame of the batch stored so far, with its batch_index.
                published = err.published = self.frames + err.published
                if published and count < self.total:
                    err.args = (
                        f"{err}; frames 0..{len(published) - 1} of the batch of {self.total} were published "
                        f"(seq {published[0].get('seq')}..{published[-1].get('seq')})",
                    )
                raise
            self.frames.extend(frames)
            self._sent = start + count
        return {"output_id": self.output_id, "client_id": self.client_id, "frames": self.frames}


def _groups(sizes, limit):
    """Split items of the given sizes, in order, into (start, count) groups
    of at most limit bytes and MAX_BATCH items; an item over limit goes alone."""
    groups, start, used = [], 0, 0
    for i, size in enumerate(sizes):
        if i > start and (used + size > limit or i - start >= MAX_BATCH):
            groups.append((start, i - start))
            start, used = i, 0
        used += size
    if sizes:
        groups.append((start, len(sizes) - start))
    return groups


def prepare(images, output_id, client_id="", file_type="WEBP", quality=DEFAULT_QUALITY,
            encode_mode=ENCODE_NODE, idempotency_key=None, snapshot=False, previews=0):
    """Validate every input and return the Batch to send (ValueError first).

    With ENCODE_NODE the images are converted to uint8 as the seed does;
    with ENCODE_PRODUCER they stay float32 or uint8 for the producer to
    convert, unless snapshot is set: then they are converted here too
    (the same bytes once encoded, a quarter of the memory) and the Batch
    holds a copy that later changes to the tensor cannot reach.
    """
    output_id = validate_output_id(output_id)
    client_id = validate_client_id(client_id)
    file_type = validate_file_type(file_type)
    quality = validate_quality(quality)
    previews = validate_previews(previews)
    arr = pixels(images)
    if encode_mode == ENCODE_NODE or snapshot:
        arr = encode.to_uint8(arr)
    key = idempotency_key or str(uuid.uuid4())
    return Batch(output_id, client_id, file_type, quality, arr, encode_mode, key, previews)


def publish(images, output_id, client_id="", file_type="WEBP", quality=DEFAULT_QUALITY,
            settings=None, idempotency_key=None, previews=0):
    """Publish an image batch and return the producer's JSON answer.

    The answer is ``{"output_id", "client_id", "frames": [{"seq",
    "batch_index", "content_type", "width", "height", "bytes"}]}`` with one
    frame per image, in batch order; with previews (16..1024, the longest
    side) the producer publishes a WEBP preview just before each image, and
    the answer lists both, each with its "rendition" (preview or full). An
    empty batch publishes nothing and returns no frames without a request.

    Every input is validated before any request (ValueError). With
    settings.encode ENCODE_NODE (the default) the images are encoded here
    with PIL as the seed does and sent as multipart, which the producer
    forwards byte for byte; with ENCODE_PRODUCER the raw pixels are sent.
    A batch whose body would exceed settings.max_body_bytes is sent in
    several requests of whole images, in order, each placed in the batch
    with batch_offset and batch_total: the frames are published as one
    batch, and batch_index, in the answer as on the wire, is the index in
    the whole batch. A connection error, or a 503 from a producer that lost
    its broker, is retried once with the same Idempotency-Key (a fresh
    uuid4 unless idempotency_key is given; one key serves every request of
    a batch), so a retry never publishes twice. A refusal or a failed retry
    raises ProducerError, which says which frames of the batch were already
    published. settings defaults to Settings.from_env().
    """
    if settings is None:
        settings = Settings.from_env()
    batch = prepare(images, output_id, client_id, file_type, quality, settings.encode, idempotency_key,
                    previews=previews)
    if batch.total == 0:
        return {"output_id": batch.output_id, "client_id": batch.client_id, "frames": []}
    return batch.send(settings)


def _post(settings, url, body, content_type, key, retry=True):
    """POST one request and return the answer's frames; with retry, a 503
    or an unreachable producer is tried once more."""
    headers = {
        "Content-Type": content_type,
        "Content-Length": str(len(body) if isinstance(body, bytes) else body.nbytes),
        "Accept": "application/json",
        "Idempotency-Key": key,
    }
    if settings.token:
        headers["Authorization"] = "Bearer " + settings.token
    where = url.split("?", 1)[0]
    attempts = 2 if retry else 1
    for attempt in range(1, attempts + 1):
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=settings.timeout) as resp:
                raw = resp.read()
            break
        except urllib.error.HTTPError as err:
            refused = _refused(err, where)
            if err.code != 503 or attempt == attempts:
                raise refused from None
            time.sleep(retry_after(err.headers, RETRY_DELAY))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            if attempt == attempts:
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


def retry_after(headers, default, low=0.0, high=MAX_RETRY_AFTER):
    """Seconds to wait before a retry: the answer's Retry-After within
    low..high, or default without one."""
    try:
        seconds = float(headers.get("Retry-After", ""))
    except (AttributeError, TypeError, ValueError):
        return default
    return min(max(seconds, low), high)


def error_detail(raw):
    """The code, message and published frames of a producer's JSON error
    body; a body that is not one gives its text (up to 500 characters) as
    the message."""
    try:
        detail = json.loads(raw)["error"]
        published = detail.get("published")
        return detail.get("code"), detail.get("message"), published if isinstance(published, list) else []
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, raw.decode("utf-8", "replace").strip()[:500] or None, []


def refusal_text(what, status, code, message):
    """The line that says the producer refused what."""
    text = f"framecast producer refused {what}: HTTP {status}"
    if code:
        text += f" {code}"
    if message:
        text += f": {message}"
    if status in (401, 403):
        text += " (set FRAMECAST_TOKEN to a token the producer accepts)"
    return text


def _refused(err, where):
    """Turn an HTTPError into a ProducerError naming status, code and message."""
    try:
        raw = err.read(_MAX_ERROR_BODY)
    except (OSError, http.client.HTTPException):
        raw = b""
    code, message, published = error_detail(raw)
    if code is None and message is None:
        message = err.reason
    text = refusal_text(f"POST {where}", err.code, code, message)
    asked = err.headers.get("Retry-After") if err.headers else None
    if err.code == 503 and asked:
        text += f" (retry after {asked} s)"
    return ProducerError(text, url=where, status=err.code, code=code, message=message, published=published,
                         retry_after=retry_after(err.headers, None))
