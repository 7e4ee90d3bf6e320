// framecast.js — browser client for framecast gateways. An ES module with no
// dependencies and no build step:
//
//   import { FramecastClient } from "/framecast.js";
//   const fc = new FramecastClient({ urls: ["https://gw1", "https://gw2"], outputId: "x" });
//   fc.addEventListener("frame", (e) => { img.src = e.detail.url; });
//   fc.connect();
//
// It speaks both gateway endpoints: native (/v1/ws, sequence-stamped frames,
// resumable) and ComfyDeploy-compatible (/comfyui-deploy/ws, the seed node's
// 32-byte frames). On a lost connection it reconnects with exponential backoff
// and full jitter, moving round robin across the gateway URLs, and resumes
// with since=<last seq seen>&epoch=<its stream epoch> so no frame in the
// stream's window is lost; frames seen twice (by seq) are dropped. A reset
// from the gateway (the resume point is of another epoch, or the stream was
// recreated) moves the client to the epoch and sequence it names, even to
// lower sequences, which are then not taken for duplicates. ComfyUI
// execution events (progress, executing, status, …) come as "event" events;
// on the native endpoint they carry stream sequences and are resumed and
// de-duplicated exactly like frames. On the native endpoint the rendition
// option picks the full images (the default), their previews (published
// when the producer was asked for previews=N), or both.

/** Image type numbers of the ComfyDeploy frame, and their media types. */
export const IMAGE_TYPES = Object.freeze({ 1: "image/jpeg", 2: "image/png", 3: "image/webp" });

/** Close codes the gateways use. */
export const CLOSE_GOING_AWAY = 1001; // gateway drains: reconnect elsewhere with since
export const CLOSE_POLICY = 1008; // authentication or authorization failed
export const CLOSE_SLOW_CLIENT = 4008; // client fell too far behind: reconnect with since

/** Renditions the native endpoint takes (rendition option). */
export const RENDITIONS = Object.freeze(["full", "preview", "all"]);

/** Limits shared with the gateway's wire package. */
export const MAX_NATIVE_HEADER = 4096;
export const COMFY_HEADER_SIZE = 32;
export const MAX_OUTPUT_ID = 24;

const textDecoder = new TextDecoder("utf-8", { fatal: true });

function bytesOf(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError("frame data must be an ArrayBuffer or a typed array");
}

/**
 * Decodes a native frame: uint32 big-endian header length, the JSON header,
 * then the image bytes. Returns {header, image}; image is a view into data.
 * Throws an Error naming what was wrong on a malformed frame.
 */
export function decodeNative(data) {
  const b = bytesOf(data);
  if (b.length < 4) {
    throw new Error(`malformed message: native frame of ${b.length} bytes is shorter than its 4-byte length`);
  }
  const n = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, false);
  if (n > MAX_NATIVE_HEADER || n > b.length - 4) {
    throw new Error(`malformed message: native header length ${n} exceeds the frame (${b.length} bytes) or the limit ${MAX_NATIVE_HEADER}`);
  }
  let header;
  try {
    header = JSON.parse(textDecoder.decode(b.subarray(4, 4 + n)));
  } catch (err) {
    throw new Error(`malformed message: native header: ${err.message}`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new Error("malformed message: native header is not a JSON object");
  }
  return { header, image: b.subarray(4 + n) };
}

/**
 * Decodes a ComfyDeploy frame: uint32 BE event type (1), uint32 BE image type
 * (1 JPEG, 2 PNG, 3 WEBP), the output id as ASCII NUL-padded to 24 bytes,
 * then the image. Returns {event, imageType, contentType, outputId, image};
 * image is a view into data. Throws an Error on a malformed frame.
 */
export function decodeComfy(data) {
  const b = bytesOf(data);
  if (b.length < COMFY_HEADER_SIZE) {
    throw new Error(`malformed message: comfydeploy frame of ${b.length} bytes is shorter than its ${COMFY_HEADER_SIZE}-byte header`);
  }
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const event = dv.getUint32(0, false);
  const imageType = dv.getUint32(4, false);
  if (event !== 1) throw new Error(`malformed message: comfydeploy event type ${event}; want 1`);
  const contentType = IMAGE_TYPES[imageType];
  if (!contentType) throw new Error(`malformed message: comfydeploy image type ${imageType}; want 1..3`);
  const id = b.subarray(8, COMFY_HEADER_SIZE);
  let end = id.indexOf(0);
  if (end < 0) end = id.length;
  for (let i = end; i < id.length; i++) {
    if (id[i] !== 0) throw new Error("malformed message: comfydeploy output id has bytes after its NUL padding");
  }
  if (end === 0) throw new Error("malformed message: comfydeploy output id is empty");
  let outputId = "";
  for (let i = 0; i < end; i++) {
    const c = id[i];
    if (c < 0x20 || c > 0x7e) {
      throw new Error(`malformed message: comfydeploy output id has byte 0x${c.toString(16).padStart(2, "0")} at offset ${i}; allowed: printable ASCII`);
    }
    outputId += String.fromCharCode(c);
  }
  return { event, imageType, contentType, outputId, image: b.subarray(COMFY_HEADER_SIZE) };
}

/**
 * Parses a text (control) message. Native messages have a "type" (hello,
 * gap, live, reset, error); the ComfyDeploy endpoint's first message is
 * {"event":"status","data":{"sid":...}}, returned with type "status".
 * Throws an Error when the text is not a JSON object with a type or event.
 */
export function decodeControl(text) {
  let m;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw new Error(`malformed message: control message: ${err.message}`);
  }
  if (m === null || typeof m !== "object" || Array.isArray(m)) {
    throw new Error("malformed message: control message is not a JSON object");
  }
  if (typeof m.type === "string" && m.type !== "") return m;
  if (typeof m.event === "string" && m.event !== "") return { ...m, type: m.event };
  throw new Error("malformed message: control message has no type");
}

/**
 * Returns the websocket URL for one gateway. base is an http(s) or ws(s) URL
 * of the gateway (a path prefix is kept; relative URLs resolve against the
 * page). opts: {endpoint: "native"|"comfydeploy", outputId, clientId, since,
 * epoch, last, rendition, token}. since wins over last; epoch is sent only
 * with since; rendition ("full", "preview" or "all"; default full) only on
 * the native endpoint, as the ComfyDeploy endpoint sends full images only.
 */
export function socketURL(base, opts) {
  const loc = globalThis.location ? globalThis.location.href : undefined;
  const u = new URL(base, loc);
  switch (u.protocol) {
    case "http:": u.protocol = "ws:"; break;
    case "https:": u.protocol = "wss:"; break;
    case "ws:": case "wss:": break;
    default:
      throw new Error(`gateway URL ${base} has scheme ${u.protocol}; allowed: http, https, ws, wss`);
  }
  const prefix = u.pathname.replace(/\/+$/, "");
  const endpoint = opts.endpoint || "native";
  const rendition = opts.rendition || "full";
  if (!RENDITIONS.includes(rendition)) {
    throw new Error(`rendition ${JSON.stringify(rendition)} is unknown; allowed: full, preview, all`);
  }
  if (endpoint === "comfydeploy" && rendition !== "full") {
    throw new Error(`rendition ${rendition} does not apply to the comfydeploy endpoint, which sends full images only`);
  }
  const q = new URLSearchParams();
  if (endpoint === "native") {
    u.pathname = prefix + "/v1/ws";
    q.set("output_id", opts.outputId);
    if (opts.clientId) q.set("client_id", opts.clientId);
    if (rendition !== "full") q.set("rendition", rendition);
  } else if (endpoint === "comfydeploy") {
    u.pathname = prefix + "/comfyui-deploy/ws";
    if (opts.clientId) q.set("clientId", opts.clientId);
  } else {
    throw new Error(`endpoint ${JSON.stringify(endpoint)} is unknown; allowed: native, comfydeploy`);
  }
  if (opts.since != null) {
    q.set("since", String(opts.since));
    if (opts.epoch) q.set("epoch", String(opts.epoch));
  } else if (opts.last != null) {
    q.set("last", String(opts.last));
  }
  if (opts.token) q.set("token", opts.token);
  u.search = q.toString();
  u.hash = "";
  return u.toString();
}

/**
 * Exponential backoff with full jitter: a uniform random delay in
 * [0, min(max, base * 2^attempt)) milliseconds. random defaults to Math.random.
 */
export function backoffDelay(attempt, base, max, random = Math.random) {
  const cap = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}

const DEFAULTS = Object.freeze({
  endpoint: "native",
  clientId: "",
  token: "",
  since: null,
  epoch: null,
  last: null,
  rendition: "full",
  reconnect: true,
  backoffBase: 250,
  backoffMax: 15000,
  blobURLs: true,
  dedupWindow: 4096,
});

/**
 * FramecastClient holds one websocket to one of several gateways and keeps it
 * up. It is an EventTarget; every event is a CustomEvent whose detail is:
 *
 *   state      {state}  "connecting" | "open" | "reconnecting" | "closed"
 *   open       {url}
 *   hello      the native hello message {type, gateway, output_id, client_id, since, epoch}
 *   status     {sid}    (ComfyDeploy endpoint's first message)
 *   live       {seq}    replay has ended; live frames follow
 *   gap        {from, to} frames from..to were past the stream's window
 *   reset      {epoch, since, message} the stream is now in epoch, and the
 *              frames after since follow: sequences started over, so they
 *              may be lower than those seen before
 *   frame      {seq, outputId, clientId, contentType, width, height,
 *               batchIndex, batchSize, ts, rendition, bytes, blob, url,
 *               header, gateway} (ComfyDeploy frames have seq null and no
 *              size or timestamp); rendition is "full" or "preview": a
 *              preview comes just before its full image, with the same
 *              outputId, clientId, batchIndex and ts
 *   event      {name, data, seq} a ComfyUI execution event for this client
 *              or every client, in stream order with the frames: name
 *              "progress", "executing", "status", …, data its object as
 *              the producer took it; seq null on the ComfyDeploy endpoint
 *   close      {code, reason, wasClean, url}
 *   reconnect  {attempt, delay, url}   a new connection is scheduled
 *   error      {message, error}
 *
 * With blobURLs (the default) every frame's url is a Blob URL that the
 * listener owns: call URL.revokeObjectURL(url) once the image is no longer
 * shown, or memory grows with every frame.
 *
 * Options (all but urls and, for native, outputId are optional):
 *   urls         gateway base URLs (string or array), http(s) or ws(s)
 *   endpoint     "native" (default) or "comfydeploy"
 *   outputId     output to watch (native; the ComfyDeploy endpoint sends every
 *                output the token may watch)
 *   clientId     client id ("" = broadcast frames only on native)
 *   token        JWT, sent as the token= query parameter
 *   since, last  where the first connection starts (since wins); later
 *                connections resume after the last sequence seen; last=n
 *                counts images of the rendition (with "all", each image
 *                comes with its preview)
 *   rendition    "full" (default), "preview" or "all" (native only)
 *   epoch        the stream epoch since was taken from (a hello's or a
 *                reset's epoch); only with since
 *   reconnect    reconnect after a lost connection (default true)
 *   backoffBase  first backoff cap in ms (default 250)
 *   backoffMax   largest backoff cap in ms (default 15000)
 *   blobURLs     create frame.url (default true)
 *   WebSocket    constructor to use (default globalThis.WebSocket)
 */
export class FramecastClient extends EventTarget {
  constructor(options = {}) {
    super();
    const o = { ...DEFAULTS, ...options };
    const urls = typeof o.urls === "string" ? [o.urls] : Array.from(o.urls || []);
    if (urls.length === 0) throw new Error("urls is empty; give at least one gateway base URL");
    if (o.endpoint === "native" && !o.outputId) throw new Error("outputId is required for the native endpoint");
    if (o.epoch != null && o.epoch !== "" && o.since == null) {
      throw new Error("epoch is set without since; give it only with the since it belongs to");
    }
    // Build each URL once so a bad base or endpoint fails here, not on a retry.
    for (const u of urls) socketURL(u, o);
    this.options = o;
    this.urls = urls;
    this.WebSocket = o.WebSocket || globalThis.WebSocket;
    /** Highest sequence seen (frames, events, hello.since, live, gap) since the last reset; null before any. */
    this.lastSeq = o.since != null ? Number(o.since) : null;
    /** The stream epoch of lastSeq (options.epoch, a hello's or a reset's); null while unknown. */
    this.epoch = o.since != null && o.epoch ? String(o.epoch) : null;
    this.state = "closed";
    this.attempt = 0;
    this.urlIndex = 0;
    this.ws = null;
    this.timer = null;
    this.stopped = true;
    this.seen = new Set();
    this.floor = this.lastSeq;
    this.frames = 0;
    this.events = 0;
    // ComfyDeploy: the gateway's status message has come on this socket.
    this.sawStatus = false;
  }

  /** Opens the connection (no-op when already started). Returns this. */
  connect() {
    if (!this.stopped) return this;
    this.stopped = false;
    this.open();
    return this;
  }

  /** Closes the connection for good; no reconnect follows. */
  close(code = 1000, reason = "client closed") {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= 1) ws.close(code, reason);
    this.setState("closed");
  }

  /** The URL the next connection goes to. */
  currentURL() {
    const o = this.options;
    let start = this.lastSeq != null ? { since: this.lastSeq, epoch: this.epoch, last: null } : { since: null, epoch: null, last: o.last };
    if (o.endpoint === "comfydeploy" && this.frames + this.events > 0) {
      // ComfyDeploy frames and events carry no seq: a reconnect cannot resume, and
      // repeating the first since would replay what was already delivered.
      start = { since: null, epoch: null, last: null };
    }
    return socketURL(this.urls[this.urlIndex % this.urls.length], { ...o, ...start });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", { state });
  }

  open() {
    const url = this.currentURL();
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new this.WebSocket(url);
    } catch (error) {
      this.emit("error", { message: `open ${url}: ${error.message}`, error });
      this.scheduleReconnect();
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.sawStatus = false;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.setState("open");
      this.emit("open", { url });
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      try {
        if (typeof ev.data === "string") this.onText(ev.data);
        else this.onBinary(ev.data);
      } catch (error) {
        this.emit("error", { message: error.message, error });
      }
    };
    ws.onerror = () => {
      // The browser hides the cause; the close event that follows carries
      // what is known.
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.emit("close", { code: ev.code, reason: ev.reason, wasClean: ev.wasClean, url });
      if (this.stopped) return;
      if (ev.code === CLOSE_POLICY) {
        this.emit("error", { message: `gateway refused access (1008): ${ev.reason || "check the token"}` });
        this.close();
        return;
      }
      this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    if (this.stopped || !this.options.reconnect) {
      this.close();
      return;
    }
    // Every failure moves on to the next gateway, round robin.
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    const o = this.options;
    const delay = backoffDelay(this.attempt, o.backoffBase, o.backoffMax);
    this.attempt++;
    this.setState("reconnecting");
    this.emit("reconnect", { attempt: this.attempt, delay, url: this.currentURL() });
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.stopped) this.open();
    }, delay);
  }

  // reset moves to the epoch and resume point a reset message names, even
  // downward: the sequences started over, so de-duplication starts over too.
  reset(m) {
    if (!Number.isSafeInteger(m.since) || m.since < 0) {
      throw new Error(`malformed message: reset to epoch ${JSON.stringify(m.epoch ?? "")} has no since`);
    }
    this.epoch = m.epoch ? String(m.epoch) : null;
    this.lastSeq = m.since;
    this.floor = m.since;
    this.seen.clear();
    this.emit("reset", { epoch: this.epoch, since: m.since, message: m.message || "" });
  }

  advance(seq) {
    if (typeof seq === "number" && Number.isFinite(seq) && (this.lastSeq == null || seq > this.lastSeq)) {
      this.lastSeq = seq;
    }
  }

  onText(text) {
    const m = decodeControl(text);
    if (this.options.endpoint === "comfydeploy") {
      this.onComfyText(m);
      return;
    }
    switch (m.type) {
      case "hello":
        // A connection that delivered its hello is healthy: the next failure
        // starts the backoff over.
        this.attempt = 0;
        // A hello of another epoch than ours is followed by the reset that
        // says where we stand; until then (should the connection drop) the
        // old position stands.
        if (!m.epoch || this.epoch == null || m.epoch === this.epoch) {
          if (m.epoch) this.epoch = String(m.epoch);
          this.advance(m.since);
        }
        this.emit("hello", m);
        break;
      case "reset":
        this.reset(m);
        break;
      case "live":
        this.advance(m.seq);
        this.emit("live", { seq: m.seq ?? 0 });
        break;
      case "gap":
        this.advance(m.to);
        // The sequences it names are not coming: none is taken later.
        if (this.floor == null || m.to > this.floor) this.floor = m.to;
        this.emit("gap", { from: m.from, to: m.to });
        break;
      case "error":
        this.emit("error", { message: `gateway: ${m.message || "error"}` });
        break;
      case "event":
        // Stored in the stream like frames: resumed and de-duplicated alike.
        if (!Number.isSafeInteger(m.seq) || m.seq < 1) {
          throw new Error(`malformed message: event ${JSON.stringify(m.event ?? "")} has no seq`);
        }
        if (this.isDuplicate(m.seq)) return;
        this.remember(m.seq);
        this.advance(m.seq);
        this.events++;
        this.emit("event", { name: m.event, data: m.data ?? null, seq: m.seq });
        break;
      default:
        this.emit("control", m);
    }
  }

  // onComfyText handles a ComfyDeploy text message {"event","data"}: the
  // first status with a sid is the gateway's; every other message is a
  // ComfyUI event, its status events (queue length) included.
  onComfyText(m) {
    if (!this.sawStatus && m.event === "status" && m.data && m.data.sid) {
      this.sawStatus = true;
      this.attempt = 0;
      this.emit("status", { sid: m.data.sid });
      return;
    }
    if (typeof m.event !== "string" || m.event === "") {
      this.emit("control", m);
      return;
    }
    this.events++;
    this.emit("event", { name: m.event, data: m.data ?? null, seq: null });
  }

  onBinary(data) {
    let d;
    if (this.options.endpoint === "comfydeploy") {
      const f = decodeComfy(data);
      d = {
        seq: null, outputId: f.outputId, clientId: this.options.clientId || "",
        contentType: f.contentType, width: null, height: null, batchIndex: null, batchSize: null,
        ts: null, rendition: "full", image: f.image, header: null,
      };
    } else {
      const { header: h, image } = decodeNative(data);
      if (typeof h.seq === "number") {
        if (this.isDuplicate(h.seq)) return; // a replay overlapping what was delivered
        this.remember(h.seq);
        this.advance(h.seq);
      }
      d = {
        seq: h.seq ?? null, outputId: h.output_id, clientId: h.client_id || "",
        contentType: h.content_type || "application/octet-stream", width: h.width, height: h.height,
        batchIndex: h.batch_index, batchSize: h.batch_size, ts: h.ts, rendition: h.rendition || "full",
        image, header: h,
      };
    }
    d.bytes = d.image.byteLength;
    d.blob = new Blob([d.image], { type: d.contentType });
    d.url = this.options.blobURLs ? URL.createObjectURL(d.blob) : null;
    d.gateway = this.urls[this.urlIndex % this.urls.length];
    this.frames++;
    this.emit("frame", d);
  }

  // Frames are de-duplicated by seq: a seq is a duplicate when it is in the
  // set of recently seen sequences or at or below the floor, below which
  // everything was delivered (or not wanted: the initial since).
  isDuplicate(seq) {
    return this.seen.has(seq) || (this.floor != null && seq <= this.floor);
  }

  remember(seq) {
    this.seen.add(seq);
    // Sets iterate in insertion order, which is delivery order: drop the
    // oldest and raise the floor past them.
    for (const s of this.seen) {
      if (this.seen.size <= this.options.dedupWindow) break;
      this.seen.delete(s);
      if (this.floor == null || s > this.floor) this.floor = s;
    }
  }
}

/** Shorthand: new FramecastClient(options).connect(). */
export function connect(options) {
  return new FramecastClient(options).connect();
}
