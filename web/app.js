// linechat browser client: the line protocol (protocol.md) over a WebSocket
// to the origin that served this page. Every server text is put into the
// page with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const HISTORY_PAGE = 50;
const SEARCH_PAGE = 20;     // the server's page size (protocol.md, SEARCH)
const TYPING_EVERY_MS = 3000;
const TYPING_SHOWN_MS = 5000;
const RECONNECT_MAX_MS = 30000;

let ws = null;
let received = new Uint8Array(0); // bytes not yet read as a line or a body
let body = null;            // a FETCH body on its way: {left, parts, mime, onBody}
let pending = [];           // commands sent, oldest first: {onData, onDone, onBody}
let me = null;              // the logged-in user
let credentials = null;     // kept in memory only, to log in again after a drop
let reconnectMs = 1000;
let current = null;         // the open conversation's name
let lastTypingSent = 0;
const convs = new Map();    // name -> conversation state
const presence = new Map(); // user -> "online" | "offline"
const requests = new Map(); // user -> state of their request to us
const sentRequests = new Set(); // users we asked, still pending
const blobUrls = new Map(); // blob id -> object URL, or the callbacks waiting for it
const encoder = new TextEncoder();
const decoder = new TextDecoder();
// An attachment message's text (protocol.md, ATTACH).
const ATTACHMENT = /^\[(file|image) ([0-9a-f]{64}) (\S+) (\d+) (\S+)\]$/;
const MIME = /^[a-z0-9!#$&^_.+-]{1,64}\/[a-z0-9!#$&^_.+-]{1,64}$/;

function conv(name) {
  let c = convs.get(name);
  if (!c) {
    c = { name, msgs: new Map(), unread: 0, loaded: false, oldest: null, atStart: false,
      loading: false, readSent: 0, receipts: new Map(), typing: new Map(), kind: name.startsWith("@") ? "direct" : "room" };
    convs.set(name, c);
  }
  return c;
}

// ---- connection ----

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(scheme + "//" + location.host + "/");
  ws.binaryType = "arraybuffer";
  received = new Uint8Array(0);
  body = null;
  pending = [];
  ws.onopen = () => {
    reconnectMs = 1000;
    setConn(true);
    if (credentials) login(credentials.user, credentials.password, "LOGIN", true);
  };
  // Frames are cut anywhere in one byte stream (protocol.md, WebSocket):
  // text frames are whole UTF-8 characters, so encoding them back gives
  // the bytes the server sent, which FETCH bodies are counted in.
  ws.onmessage = (ev) => {
    onBytes(typeof ev.data === "string" ? encoder.encode(ev.data) : new Uint8Array(ev.data));
  };
  ws.onclose = () => {
    setConn(false);
    // Their answers will not come; the login after reconnecting reloads.
    pending = [];
    for (const [id, waiting] of blobUrls) if (Array.isArray(waiting)) blobUrls.delete(id);
    for (const c of convs.values()) c.loading = false;
    setTimeout(connect, reconnectMs);
    reconnectMs = Math.min(reconnectMs * 2, RECONNECT_MAX_MS);
  };
}

function setConn(up) {
  const el = $("conn");
  el.textContent = up ? "online" : "offline, reconnecting";
  el.classList.toggle("off", !up);
}

// Lines, and the raw body after a FETCH's BLOB line, out of the stream.
function onBytes(bytes) {
  const all = new Uint8Array(received.length + bytes.length);
  all.set(received);
  all.set(bytes, received.length);
  let at = 0;
  while (at < all.length) {
    if (body) {
      const take = Math.min(body.left, all.length - at);
      body.parts.push(all.slice(at, at + take));
      body.left -= take;
      at += take;
      if (body.left > 0) break;
      const done = body;
      body = null;
      // The LF after the bytes is not the file's.
      const blob = new Blob(done.parts);
      done.onBody(blob.slice(0, blob.size - 1, done.mime));
      continue;
    }
    const nl = all.indexOf(10, at);
    if (nl < 0) break;
    const line = decoder.decode(all.subarray(at, nl));
    at = nl + 1;
    onLine(line);
  }
  received = all.slice(at);
}

// Sends one command line; `onDone(final)` gets its OK/ERR line,
// `onData(line)` the data lines before it, and `onBody(blob)` a FETCH's file.
function send(line, onDone, onData, onBody) {
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    if (onDone) onDone("ERR DISCONNECTED not connected");
    return false;
  }
  ws.send(line.replace(/[\r\n]+/g, " "));
  pending.push({ onDone: onDone || (() => {}), onData: onData || (() => {}), onBody });
  return true;
}

const EVENTS = new Set(["MSG", "JOINED", "LEFT", "ADDED", "KICKED", "OPPED", "PRESENCE",
  "FRIEND", "RECEIPT", "TYPING", "EDITED", "DELETED", "UNREAD"]);

function onLine(line) {
  const word = line.split(" ", 1)[0];
  if (word === "OK" || word === "ERR") {
    const p = pending.shift();
    if (p) p.onDone(line);
    else if (word === "ERR") showError(line); // SLOW_CONSUMER, LOGIN_TIMEOUT
    return;
  }
  if (EVENTS.has(word)) return onEvent(word, line);
  if (word === "HELLO") return;
  if (word === "BYE") return showError(line);
  if (word === "BLOB" && pending.length && pending[0].onBody) {
    const [, , size, mime] = fields(line, 3);
    body = { left: +size + 1, parts: [], mime: mime.trim(), onBody: pending[0].onBody };
    return;
  }
  if (pending.length) pending[0].onData(line);
}

// Splits `line` into `n` words and the rest of the line.
function fields(line, n) {
  const out = [];
  let rest = line;
  for (let i = 0; i < n; i++) {
    const sp = rest.indexOf(" ");
    if (sp < 0) { out.push(rest); rest = ""; continue; }
    out.push(rest.slice(0, sp));
    rest = rest.slice(sp + 1);
  }
  out.push(rest);
  return out;
}

// An unsolicited ERR or BYE, shown where the user is looking.
function showError(line) {
  $(current ? "chat-error" : me ? "home-error" : "login-error").textContent = line;
}

function errText(final) {
  return final.startsWith("ERR ") ? fields(final, 2)[2] || final : "";
}

// ---- events ----

function onEvent(word, line) {
  switch (word) {
    case "MSG": {
      const [, name, seq, msgid, sender, time, text] = fields(line, 6);
      addMessage(name, { seq: +seq, msgid, sender, time, state: "sent", text }, true);
      break;
    }
    case "EDITED": {
      const [, name, seq, , , text] = fields(line, 5);
      const m = conv(name).msgs.get(+seq);
      if (m) { m.text = text; m.state = "edited"; }
      if (name === current) renderMessages(false);
      break;
    }
    case "DELETED": {
      const [, name, seq] = fields(line, 3);
      const m = conv(name).msgs.get(+seq);
      if (m) { m.text = ""; m.state = "deleted"; }
      if (name === current) renderMessages(false);
      break;
    }
    case "RECEIPT": {
      const [, name, seq, user, kind] = fields(line, 4);
      const c = conv(name);
      const r = c.receipts.get(user) || { delivered: 0, read: 0 };
      r.delivered = Math.max(r.delivered, +seq);
      if (kind === "read") r.read = Math.max(r.read, +seq);
      c.receipts.set(user, r);
      if (name === current) renderMessages(false);
      break;
    }
    case "UNREAD": {
      // Read on another device: take its count.
      const [, name, n] = fields(line, 2);
      conv(name).unread = +n;
      if (!+n) conv(name).mentioned = false;
      renderHome();
      break;
    }
    case "TYPING": {
      const [, name, user] = fields(line, 2);
      conv(name).typing.set(user, Date.now() + TYPING_SHOWN_MS);
      renderTyping();
      setTimeout(renderTyping, TYPING_SHOWN_MS + 100);
      break;
    }
    case "PRESENCE": {
      const [, user, state] = fields(line, 2);
      presence.set(user, state.split(" ")[0]);
      renderHome();
      break;
    }
    case "FRIEND": {
      const [, what, user] = fields(line, 2);
      if (what === "REQUEST") requests.set(user, "pending");
      else if (what === "REQUESTED") sentRequests.add(user);
      else if (what === "ACCEPTED") { requests.delete(user); sentRequests.delete(user); conv("@" + user); loadFriends(); }
      else if (what === "REJECTED") { requests.delete(user); sentRequests.delete(user); }
      else if (what === "REMOVED") loadFriends();
      renderHome();
      break;
    }
    case "JOINED": case "LEFT": case "ADDED": case "KICKED": case "OPPED": {
      const [, name, user] = fields(line, 2);
      if (user.split(" ")[0] === me && (word === "KICKED" || word === "LEFT")) {
        convs.delete(name);
        if (current === name) showHome();
      }
      loadRooms();
      if (name === current && !$("members").hidden) loadMembers();
      break;
    }
  }
}

// ---- login ----

// REGISTER or LOGIN; `again` after a reconnect, when the open conversation
// catches up with SYNC.
function login(user, password, verb, again) {
  send(verb + " " + user + " " + password, (final) => {
    if (!final.startsWith("OK ")) {
      credentials = null;
      $("login-error").textContent = errText(final);
      showLogin();
      return;
    }
    me = user;
    credentials = { user, password };
    $("login-error").textContent = "";
    const ready = () => {
      loadInbox();
      loadRooms();
      loadFriends();
      loadRequests();
      if (again && current) catchUp(current);
      if (current) showChat(current); else showHome();
    };
    // LOGIN's implied SYNC ends with its own OK, the next line for us.
    if (verb === "LOGIN") pending.unshift({ onDone: ready, onData: () => {} });
    else ready();
  });
}

// Messages of `name` past the newest we have, missed while disconnected.
function catchUp(name) {
  const c = conv(name);
  const newest = Math.max(0, ...c.msgs.keys());
  if (newest > 0) send("SYNC " + name + " " + newest);
}

// ---- lists ----

// Unread counts as the server keeps them, so they agree across devices.
function loadInbox() {
  send("INBOX", () => renderHome(), (line) => {
    const [word, name, kind, , unread] = fields(line, 4);
    if (word !== "INBOX") return;
    const c = conv(name);
    c.kind = kind;
    const [count, mentions] = unread.split(" ");
    c.unread = name === current ? 0 : +count;
    c.mentioned = name !== current && +mentions > 0;
  });
}

function loadRooms() {
  const rooms = [];
  send("ROOMS", (final) => {
    if (!final.startsWith("OK ")) return;
    for (const [name, kind, role] of rooms) {
      conv(name).kind = kind;
      conv(name).admin = role === "admin";
    }
    for (const c of [...convs.values()]) {
      if (c.kind !== "direct" && !rooms.some(([n]) => n === c.name)) convs.delete(c.name);
    }
    // Admin rights may have changed what the open conversation offers.
    if (current && convs.has(current)) renderMessages(false);
    else renderHome();
  }, (line) => {
    const [, name, kind, , role] = fields(line, 4);
    if (line.startsWith("ROOM ")) rooms.push([name, kind, role.trim()]);
  });
}

function loadFriends() {
  const friends = [];
  send("FRIEND LIST", (final) => {
    if (!final.startsWith("OK ")) return;
    for (const c of [...convs.values()]) {
      if (c.kind === "direct" && !friends.includes(c.name.slice(1)) && !c.msgs.size) convs.delete(c.name);
    }
    for (const f of friends) conv("@" + f);
    renderHome();
  }, (line) => {
    const [word, user, state] = fields(line, 3);
    if (word !== "FRIENDINFO") return;
    friends.push(user);
    presence.set(user, state.split(" ")[0]);
  });
}

function loadRequests() {
  send("FRIEND REQUESTS", (final) => {
    if (final.startsWith("OK ")) renderHome();
  }, (line) => {
    const [word, dir, user, state] = fields(line, 4);
    if (word !== "REQUEST") return;
    const pendingNow = state.startsWith("pending");
    if (dir === "out") {
      if (pendingNow) sentRequests.add(user); else sentRequests.delete(user);
    } else if (pendingNow) requests.set(user, "pending");
    else requests.delete(user);
  });
}

// ---- messages ----

function addMessage(name, m, live) {
  const c = conv(name);
  const had = c.msgs.has(m.seq);
  c.msgs.set(m.seq, m);
  if (c.oldest === null || m.seq < c.oldest) c.oldest = m.seq;
  if (!live || had) return;
  if (name === current && document.visibilityState === "visible") {
    renderMessages(true);
    markRead(c);
  } else if (m.sender !== me) {
    c.unread++;
    renderHome();
  }
  c.typing.delete(m.sender);
  renderTyping();
}

function markRead(c) {
  const newest = Math.max(0, ...c.msgs.keys());
  if (newest > c.readSent) {
    c.readSent = newest;
    send("READ " + c.name + " " + newest);
  }
  c.unread = 0;
  c.mentioned = false;
}

// One page of HISTORY: the newest, or the one before our oldest.
function loadHistory(name, older) {
  const c = conv(name);
  const before = older && c.oldest !== null ? " BEFORE " + c.oldest : "";
  let count = 0;
  const list = $("messages");
  const fromBottom = list.scrollHeight - list.scrollTop;
  if (c.loading) return;
  c.loading = true;
  send("HISTORY " + name + before + " LIMIT " + HISTORY_PAGE, (final) => {
    c.loading = false;
    if (!final.startsWith("OK ")) { $("chat-error").textContent = errText(final); return; }
    c.loaded = true;
    if (count < HISTORY_PAGE) c.atStart = true;
    if (name !== current) return;
    renderMessages(!older);
    // Keep the message that was at the top where it was.
    if (older) list.scrollTop = list.scrollHeight - fromBottom;
    markRead(c);
  }, (line) => {
    const [word, , seq, msgid, sender, time, state, text] = fields(line, 7);
    if (word !== "HISTORY") return;
    count++;
    addMessage(name, { seq: +seq, msgid, sender, time, state, text }, false);
  });
}

function say(text) {
  const name = current;
  send("SAY " + name + " " + text, (final) => {
    if (!final.startsWith("OK ")) { $("chat-error").textContent = errText(final); return; }
    $("chat-error").textContent = "";
    const [, , , seq, msgid] = fields(final, 4);
    addMessage(name, { seq: +seq, msgid: msgid.trim(), sender: me,
      time: new Date().toISOString(), state: "sent", text }, true);
  });
}

function edit(name, m) {
  const text = prompt("Edit message (empty to cancel)", m.text);
  if (!text || text === m.text) return;
  send("EDIT " + name + " " + m.seq + " " + text, (final) => {
    if (!final.startsWith("OK ")) { $("chat-error").textContent = errText(final); return; }
    m.text = text;
    m.state = "edited";
    renderMessages(false);
  });
}

function remove(name, m) {
  if (!confirm("Delete this message?")) return;
  send("DELETE " + name + " " + m.seq, (final) => {
    if (!final.startsWith("OK ")) { $("chat-error").textContent = errText(final); return; }
    m.text = "";
    m.state = "deleted";
    renderMessages(false);
  });
}

// ---- attachments ----

// A name ATTACH takes: 1-255 bytes without spaces or control characters.
function attachName(name) {
  let out = name.replace(/[\s\x00-\x1f\x7f]+/g, "_") || "file";
  while (encoder.encode(out).length > 255) out = out.slice(0, -1);
  return out;
}

// Uploads `file` to the open conversation: the ATTACH line, then its bytes
// in a binary message. The bytes are read first, so that no other command
// can be sent between the two and be taken for part of the body.
async function attach(file) {
  const name = current;
  const bytes = await file.arrayBuffer();
  const filename = attachName(file.name);
  const type = (file.type || "").toLowerCase();
  const mime = MIME.test(type) ? type : "application/octet-stream";
  const line = "ATTACH " + name + " " + filename + " " + mime + " " + bytes.byteLength;
  const sent = send(line, (final) => {
    if (!final.startsWith("OK ")) { $("chat-error").textContent = errText(final); return; }
    $("chat-error").textContent = "";
    const [, , , seq, msgid, blob] = fields(final, 5);
    const kind = mime.startsWith("image/") ? "image" : "file";
    addMessage(name, { seq: +seq, msgid, sender: me, time: new Date().toISOString(), state: "sent",
      text: "[" + kind + " " + blob.trim() + " " + mime + " " + bytes.byteLength + " " + filename + "]" }, true);
  });
  if (sent) ws.send(bytes);
}

// Calls `ready(url)` with an object URL of blob `id`, fetching it once.
function blobUrl(id, ready) {
  const known = blobUrls.get(id);
  if (typeof known === "string") return ready(known);
  if (known) return known.push(ready);
  blobUrls.set(id, [ready]);
  // The body comes before the OK; an ERR means there is none.
  send("FETCH " + id, (final) => {
    if (final.startsWith("OK ")) return;
    blobUrls.delete(id);
    $("chat-error").textContent = errText(final);
  }, () => {}, (blob) => {
    const waiting = blobUrls.get(id) || [];
    const url = URL.createObjectURL(blob);
    blobUrls.set(id, url);
    for (const f of waiting) f(url);
  });
}

// An attachment: an image shown inline, or a file to download.
function attachmentView(found) {
  const [, kind, id, , size, filename] = found;
  if (kind === "image") {
    const img = el("img", "attachment");
    img.alt = filename;
    blobUrl(id, (url) => { img.src = url; });
    return img;
  }
  return button("\u2B07 " + filename + " (" + size + " bytes)", () => {
    blobUrl(id, (url) => {
      const a = el("a");
      a.href = url;
      a.download = filename;
      document.body.append(a);
      a.click();
      a.remove();
    });
  });
}

// SEARCH in the open conversation; `before` asks for the page after one
// already shown.
function search(words, before) {
  const name = current;
  const found = $("found");
  if (!before) found.replaceChildren();
  let lowest = null;
  let count = 0;
  send("SEARCH " + name + (before ? " BEFORE " + before : "") + " " + words, (final) => {
    if (!final.startsWith("OK ")) { $("chat-error").textContent = errText(final); return; }
    if (!found.children.length) found.append(item("no messages found"));
    found.hidden = false;
    $("search-close").hidden = false;
    const more = $("found-more");
    more.hidden = count < SEARCH_PAGE;
    more.onclick = () => search(words, lowest);
  }, (line) => {
    const [word, , seq, , sender, time, , text] = fields(line, 7);
    if (word !== "FOUND") return;
    count++;
    if (lowest === null || +seq < lowest) lowest = +seq;
    found.append(item(sender + " (" + shortTime(time) + "): " + text));
  });
}

// JOIN a public room or CREATE a group, then open it.
function enter(verb) {
  let name = $("join-name").value.trim();
  if (!name) return;
  if (!name.startsWith("#")) name = "#" + name;
  send(verb + " " + name, (final) => {
    $("home-error").textContent = errText(final);
    if (!final.startsWith("OK ") && !final.startsWith("ERR ALREADY_MEMBER")) return;
    $("join-name").value = "";
    loadRooms();
    showChat(name);
  });
}

// The open room's members (WHO), with the admin's ADD, KICK and OP.
function loadMembers() {
  const name = current;
  const c = conv(name);
  const list = $("members");
  const rows = [];
  send("WHO " + name, (final) => {
    if (!final.startsWith("OK ")) { $("chat-error").textContent = errText(final); return; }
    if (name !== current) return;
    list.replaceChildren();
    for (const [user, state, role] of rows) {
      const li = el("li");
      li.append(el("span", "dot" + (state === "online" ? " online" : "")));
      li.append(el("span", "name", user + (role === "admin" ? " (admin)" : "")));
      if (c.admin && user !== me) {
        if (role !== "admin") li.append(button("Make admin", () => manage("OP", user)));
        li.append(button("Kick", () => manage("KICK", user)));
      }
      list.append(li);
    }
    $("add-form").hidden = !c.admin;
    list.hidden = false;
  }, (line) => {
    const [word, , user, state, role] = fields(line, 4);
    if (word === "MEMBER") rows.push([user, state, role.trim()]);
  });
}

// ADD, KICK or OP `user` in the open room, then show its members again.
function manage(verb, user) {
  if (verb === "KICK" && !confirm("Kick " + user + " from " + current + "?")) return;
  send(verb + " " + current + " " + user, (final) => {
    $("chat-error").textContent = errText(final);
    loadMembers();
  });
}

function leave() {
  const name = current;
  if (!confirm("Leave " + name + "?")) return;
  send("LEAVE " + name, (final) => {
    if (!final.startsWith("OK ")) { $("chat-error").textContent = errText(final); return; }
    convs.delete(name);
    showHome();
    loadRooms();
  });
}

// ---- rendering ----

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function item(text) {
  const li = el("li");
  li.append(el("span", "name", text));
  return li;
}

function button(label, onClick) {
  const b = el("button", "", label);
  b.type = "button";
  b.addEventListener("click", (ev) => { ev.stopPropagation(); onClick(); });
  return b;
}

function shortTime(time) {
  const d = new Date(time);
  return isNaN(d) ? time : d.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

function convItem(c, label) {
  const li = el("li", "open");
  let user = null;
  if (c.kind === "direct") {
    user = c.name.slice(1);
    const dot = el("span", "dot" + (presence.get(user) === "online" ? " online" : ""));
    dot.title = presence.get(user) || "offline";
    li.append(dot);
  }
  li.append(el("span", "name", label));
  if (c.unread) li.append(el("span", "badge", c.unread + (c.mentioned ? " @" : "")));
  if (user) li.append(button("Remove", () => unfriend(user)));
  li.addEventListener("click", () => showChat(c.name));
  return li;
}

function renderHome() {
  const rooms = $("rooms");
  const friends = $("friends");
  rooms.replaceChildren();
  friends.replaceChildren();
  for (const c of convs.values()) {
    if (c.kind === "direct") friends.append(convItem(c, c.name.slice(1)));
    else rooms.append(convItem(c, c.name + (c.kind === "group" ? " (group)" : "")));
  }
  if (!rooms.children.length) rooms.append(item("no rooms yet: join one above"));
  if (!friends.children.length) friends.append(item("no friends yet"));
  const reqs = $("requests");
  reqs.replaceChildren();
  for (const user of requests.keys()) {
    const li = item(user + " wants to be friends");
    li.append(button("Accept", () => answerRequest(user, "ACCEPT")));
    li.append(button("Reject", () => answerRequest(user, "REJECT")));
    reqs.append(li);
  }
  for (const user of sentRequests) reqs.append(item("asked " + user + ", waiting for an answer"));
  if (!reqs.children.length) reqs.append(item("none"));
}

function unfriend(user) {
  if (!confirm("Remove " + user + " from your friends?")) return;
  send("FRIEND REMOVE " + user, (final) => {
    $("home-error").textContent = errText(final);
    if (final.startsWith("OK ")) loadFriends();
  });
}

function answerRequest(user, verb) {
  send("FRIEND " + verb + " " + user, (final) => {
    $("home-error").textContent = errText(final);
    requests.delete(user);
    if (verb === "ACCEPT" && final.startsWith("OK ")) loadFriends();
    renderHome();
  });
}

// The tick of my message `m`: sent, delivered to / read by someone.
function tick(c, m) {
  let delivered = false;
  let read = false;
  for (const r of c.receipts.values()) {
    if (r.delivered >= m.seq) delivered = true;
    if (r.read >= m.seq) read = true;
  }
  const t = button(delivered || read ? "\u2713\u2713" : "\u2713", () => status(c, m));
  t.className = "tick" + (read ? " read" : "");
  t.title = read ? "read" : delivered ? "delivered" : "sent";
  return t;
}

// Where my message `m` stands for each other member (STATUS), shown under it.
function status(c, m) {
  const each = [];
  send("STATUS " + c.name + " " + m.seq, (final) => {
    if (!final.startsWith("OK ")) { $("chat-error").textContent = errText(final); return; }
    m.status = each.length ? each.join(", ") : "no one else is here";
    if (c.name === current) renderMessages(false);
  }, (line) => {
    const [word, , , user, state] = fields(line, 4);
    if (word === "STATUS") each.push(user + " " + state);
  });
}

function renderMessages(toBottom) {
  const c = conv(current);
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren();
  for (const seq of [...c.msgs.keys()].sort((a, b) => a - b)) {
    const m = c.msgs.get(seq);
    const mine = m.sender === me;
    const li = el("li", (mine ? "mine" : "") + (m.state === "deleted" ? " deleted" : ""));
    const meta = el("div", "meta");
    meta.append(el("span", "", m.sender), el("span", "", shortTime(m.time)));
    if (m.state === "edited") meta.append(el("span", "", "edited"));
    const file = m.state === "deleted" ? null : ATTACHMENT.exec(m.text);
    if (mine && m.state !== "deleted") {
      meta.append(tick(c, m));
      if (!file) meta.append(button("edit", () => edit(c.name, m)));
    }
    // An admin may delete anyone's message in a room or group.
    if (m.state !== "deleted" && (mine || (c.admin && c.kind !== "direct"))) {
      meta.append(button("delete", () => remove(c.name, m)));
    }
    const text = el("div", "text", m.state === "deleted" ? "message deleted" : file ? "" : m.text);
    if (file) text.append(attachmentView(file));
    li.append(meta, text);
    if (m.status) li.append(el("div", "status", m.status));
    list.append(li);
  }
  $("older").hidden = c.atStart;
  if (toBottom || atBottom) list.scrollTop = list.scrollHeight;
}

function renderTyping() {
  const now = Date.now();
  const who = [];
  if (current) {
    for (const [user, until] of conv(current).typing) {
      if (until > now) who.push(user); else conv(current).typing.delete(user);
    }
  }
  $("typing").textContent = who.length ? who.join(", ") + (who.length > 1 ? " are" : " is") + " typing\u2026" : "";
}

// ---- views ----

function showLogin() {
  $("login").hidden = false;
  $("home").hidden = $("chat").hidden = $("back").hidden = true;
  $("title").textContent = "linechat";
}

function showHome() {
  current = null;
  $("login").hidden = $("chat").hidden = $("back").hidden = true;
  $("home").hidden = false;
  $("title").textContent = "linechat: " + me;
  renderHome();
}

function showChat(name) {
  current = name;
  const c = conv(name);
  $("login").hidden = $("home").hidden = true;
  $("chat").hidden = $("back").hidden = false;
  $("found").hidden = $("search-close").hidden = $("found-more").hidden = true;
  $("members").hidden = $("add-form").hidden = true;
  $("leave").hidden = $("who").hidden = c.kind === "direct";
  $("chat-error").textContent = "";
  $("title").textContent = name;
  renderMessages(true);
  renderTyping();
  if (!c.loaded) loadHistory(name, false); else markRead(c);
}

// ---- wiring ----

function wire() {
  const credentialsFrom = () => [$("user").value.trim(), $("password").value];
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const [user, password] = credentialsFrom();
    login(user, password, "LOGIN", false);
  });
  $("do-register").addEventListener("click", () => {
    const [user, password] = credentialsFrom();
    login(user, password, "REGISTER", false);
  });
  $("back").addEventListener("click", showHome);
  $("join-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    enter("JOIN");
  });
  $("create").addEventListener("click", () => enter("CREATE"));
  $("leave").addEventListener("click", leave);
  $("who").addEventListener("click", () => {
    if ($("members").hidden) loadMembers();
    else $("members").hidden = $("add-form").hidden = true;
  });
  $("add-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const user = $("add-name").value.trim();
    if (!user) return;
    $("add-name").value = "";
    manage("ADD", user);
  });
  $("friend-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const user = $("friend-name").value.trim();
    if (!user) return;
    send("FRIEND ADD " + user, (final) => {
      $("home-error").textContent = final.startsWith("OK ") ? "request sent to " + user : errText(final);
      if (final.endsWith(" accepted")) loadFriends();
      else if (final.endsWith(" pending")) { sentRequests.add(user); renderHome(); }
    });
  });
  $("say-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("say-text").value.trim();
    if (!text || !current) return;
    $("say-text").value = "";
    say(text);
  });
  $("say-text").addEventListener("input", () => {
    const now = Date.now();
    if (current && now - lastTypingSent > TYPING_EVERY_MS) {
      lastTypingSent = now;
      send("TYPING " + current);
    }
  });
  $("attach").addEventListener("click", () => $("attach-file").click());
  $("attach-file").addEventListener("change", () => {
    const input = $("attach-file");
    if (current) for (const file of input.files) attach(file);
    input.value = "";
  });
  $("older").addEventListener("click", () => loadHistory(current, true));
  $("messages").addEventListener("scroll", () => {
    const c = current && conv(current);
    if (c && c.loaded && !c.atStart && $("messages").scrollTop === 0) loadHistory(current, true);
  });
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const words = $("search-words").value.trim();
    if (words && current) search(words, null);
  });
  $("search-close").addEventListener("click", () => {
    $("found").hidden = $("search-close").hidden = $("found-more").hidden = true;
  });
  document.addEventListener("visibilitychange", () => {
    if (current && document.visibilityState === "visible") markRead(conv(current));
  });
}

wire();
showLogin();
connect();
